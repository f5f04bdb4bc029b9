using System.Globalization;
using System.Text.Json;
using Lamina.Server.Invoke;

namespace Lamina.Server.RuntimeApi;

/// <summary>The Extensions API 2020-01-01 (LAMBDA.md §6), served on each environment's own Runtime API socket.</summary>
internal static class ExtensionsApiEndpoints
{
    public const string Prefix = "/2020-01-01/";
    private const string ExtensionPrefix = Prefix + "extension/";

    /// <summary>Lamina's own call, made by the sandbox's init script: wait until N extensions have registered.</summary>
    private const string AwaitRegistered = Prefix + "lamina/extensions-registered";

    // Lamina's Init script (runtimes/lamina/init-extensions.sh) reports here that the runtime process ended.
    private const string RuntimeExited = Prefix + "lamina/runtime-exited";

    public static async Task HandleAsync(HttpContext context, ExecutionEnvironment environment, string path)
    {
        var method = context.Request.Method;
        var extensions = environment.Extensions;
        if (path == ExtensionPrefix + "register" && HttpMethods.IsPost(method))
        {
            await RegisterAsync(context, environment);
            return;
        }
        if (path == RuntimeExited && HttpMethods.IsPost(method))
        {
            _ = int.TryParse(context.Request.Query["status"], NumberStyles.None, CultureInfo.InvariantCulture, out var status);
            environment.OnRuntimeExited(status);
            context.Response.StatusCode = StatusCodes.Status202Accepted;
            return;
        }
        if (path == AwaitRegistered && HttpMethods.IsGet(method))
        {
            _ = int.TryParse(context.Request.Query["count"], NumberStyles.None, CultureInfo.InvariantCulture, out var count);
            try
            {
                await extensions.WaitRegisteredAsync(count, context.RequestAborted);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            context.Response.StatusCode = StatusCodes.Status200OK;
            return;
        }

        var identifier = context.Request.Headers["Lambda-Extension-Identifier"].ToString();
        if (identifier.Length == 0)
        {
            await RuntimeApiEndpoints.WriteErrorAsync(context, StatusCodes.Status403Forbidden, "Extension.MissingExtensionIdentifier", "Missing Lambda-Extension-Identifier header");
            return;
        }
        var extension = extensions.Find(identifier);
        if (extension is null)
        {
            await RuntimeApiEndpoints.WriteErrorAsync(context, StatusCodes.Status403Forbidden, "Extension.UnknownExtensionIdentifier", "Unknown extension " + identifier);
            return;
        }

        if (path == ExtensionPrefix + "event/next" && HttpMethods.IsGet(method))
        {
            byte[]? body;
            try
            {
                body = await extension.NextAsync(context.RequestAborted);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            if (body is null)
            {
                // The environment is gone (after SHUTDOWN there is no next event): the extension should exit.
                await RuntimeApiEndpoints.WriteErrorAsync(context, StatusCodes.Status500InternalServerError, "InternalServerError", "The execution environment is shutting down");
                return;
            }
            context.Response.Headers["Lambda-Extension-Event-Identifier"] = Guid.NewGuid().ToString();
            context.Response.ContentType = "application/json";
            context.Response.ContentLength = body.Length;
            await context.Response.Body.WriteAsync(body);
            return;
        }
        if (path is ExtensionPrefix + "init/error" or ExtensionPrefix + "exit/error" && HttpMethods.IsPost(method))
        {
            var errorType = context.Request.Headers["Lambda-Extension-Function-Error-Type"].ToString();
            var body = await RuntimeApiEndpoints.ReadBodyAsync(context, 1024 * 1024);
            extension.Fail();
            if (path.EndsWith("init/error", StringComparison.Ordinal))
            {
                environment.PostInitError(body ?? default, errorType.Length > 0 ? errorType : "Extension.InitError");
            }
            await RuntimeApiEndpoints.WriteAcceptedAsync(context);
            return;
        }
        await RuntimeApiEndpoints.WriteErrorAsync(context, StatusCodes.Status404NotFound, "InvalidRequest", $"No Extensions API route for {method} {path}");
    }

    /// <summary>Telemetry API 2022-07-01 (and the older Logs API 2020-08-15): subscribe an extension's listener.</summary>
    public static async Task SubscribeTelemetryAsync(HttpContext context, ExecutionEnvironment environment)
    {
        var extension = environment.Extensions.Find(context.Request.Headers["Lambda-Extension-Identifier"].ToString());
        if (extension is null)
        {
            await RuntimeApiEndpoints.WriteErrorAsync(context, StatusCodes.Status403Forbidden, "Extension.UnknownExtensionIdentifier", "Subscribing needs a registered extension's Lambda-Extension-Identifier");
            return;
        }
        var body = await RuntimeApiEndpoints.ReadBodyAsync(context, 64 * 1024);
        string? error;
        try
        {
            using var document = JsonDocument.Parse(body ?? default);
            error = environment.SubscribeTelemetry(extension.Name, document.RootElement);
        }
        catch (JsonException e)
        {
            error = "The subscription body is not JSON: " + e.Message;
        }
        if (error is not null)
        {
            await RuntimeApiEndpoints.WriteErrorAsync(context, StatusCodes.Status400BadRequest, "ValidationError", error);
            return;
        }
        context.Response.ContentType = "text/plain";
        await context.Response.WriteAsync("OK");
    }

    private static async Task RegisterAsync(HttpContext context, ExecutionEnvironment environment)
    {
        var name = context.Request.Headers["Lambda-Extension-Name"].ToString();
        if (name.Length == 0)
        {
            await RuntimeApiEndpoints.WriteErrorAsync(context, StatusCodes.Status403Forbidden, "Extension.InvalidExtensionName", "Missing Lambda-Extension-Name header");
            return;
        }
        var body = await RuntimeApiEndpoints.ReadBodyAsync(context, 64 * 1024);
        var events = new List<string>();
        try
        {
            using var document = JsonDocument.Parse(body ?? default);
            if (document.RootElement.TryGetProperty("events", out var list) && list.ValueKind == JsonValueKind.Array)
            {
                foreach (var item in list.EnumerateArray())
                {
                    events.Add(item.GetString() ?? "");
                }
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            await RuntimeApiEndpoints.WriteErrorAsync(context, StatusCodes.Status400BadRequest, "InvalidRequestFormat", "The register body must be JSON like {\"events\":[\"INVOKE\",\"SHUTDOWN\"]}");
            return;
        }

        var extension = environment.Extensions.Register(name, events, out var errorType, out var errorMessage);
        if (extension is null)
        {
            var status = errorType == "Extension.InvalidEventType" ? StatusCodes.Status400BadRequest : StatusCodes.Status403Forbidden;
            await RuntimeApiEndpoints.WriteErrorAsync(context, status, errorType!, errorMessage!);
            return;
        }

        var config = environment.Config;
        var response = new ExtensionRegistration
        {
            FunctionName = config.FunctionName,
            FunctionVersion = config.Version,
            Handler = config.Handler,
            AccountId = context.Request.Headers["Lambda-Extension-Accept-Feature"].ToString().Contains("accountId", StringComparison.Ordinal)
                ? environment.AccountId
                : null,
        };
        context.Response.Headers["Lambda-Extension-Identifier"] = extension.Id;
        context.Response.ContentType = "application/json";
        await JsonSerializer.SerializeAsync(context.Response.Body, response, Protocols.LaminaJsonContext.Default.ExtensionRegistration);
    }
}

internal sealed class ExtensionRegistration
{
    [System.Text.Json.Serialization.JsonPropertyName("functionName")]
    public required string FunctionName { get; init; }

    [System.Text.Json.Serialization.JsonPropertyName("functionVersion")]
    public required string FunctionVersion { get; init; }

    [System.Text.Json.Serialization.JsonPropertyName("handler")]
    public required string Handler { get; init; }

    [System.Text.Json.Serialization.JsonPropertyName("accountId")]
    public string? AccountId { get; init; }
}
