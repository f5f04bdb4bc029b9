using System.Globalization;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Lamina.Server.Diagnostics;
using Lamina.Server.Hosting;
using Lamina.Server.Protocols;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Lambda;

/// <summary>
/// Create/Get/Update/Delete/ListFunctionUrlConfigs (LAMBDA.md §1): one URL per <c>$LATEST</c> or alias, stored in
/// <see cref="FunctionEntry.Urls"/> and served by <see cref="Lambda.FunctionUrlEndpoint"/>.
/// </summary>
internal static partial class FunctionUrlsApi
{
    private const string QualifierPatternText = @"((?!^\d+$)^[0-9a-zA-Z-_]+$)";

    [GeneratedRegex(@"^(?!\d+$)[0-9a-zA-Z-_]{1,128}\z", RegexOptions.CultureInvariant)]
    private static partial Regex QualifierPattern();

    public static IEndpointRouteBuilder MapFunctionUrlsApi(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapPost("/2021-10-31/functions/{name}/url", CreateAsync);
        endpoints.MapGet("/2021-10-31/functions/{name}/url", Get);
        endpoints.MapPut("/2021-10-31/functions/{name}/url", UpdateAsync);
        endpoints.MapDelete("/2021-10-31/functions/{name}/url", DeleteAsync);
        endpoints.MapGet("/2021-10-31/functions/{name}/urls", List);
        return endpoints;
    }

    private static async Task<IResult> CreateAsync(HttpContext context, string name, FunctionRegistry registry, IOptions<LaminaOptions> options,
        TimeProvider time, ILoggerFactory loggers)
    {
        var limits = options.Value;
        if (Parse(context, name, limits, out var reference, out var qualifier) is { } invalid)
        {
            return invalid;
        }
        var (request, parseError) = await FunctionsApi.ReadJsonAsync(context.Request, FunctionsApi.MaxConfigurationRequestBytes, "CreateFunctionUrlConfig",
            LaminaJsonContext.Default.FunctionUrlConfigRequest, context.RequestAborted);
        if (parseError is not null)
        {
            return parseError;
        }
        if (Validate(request, create: true) is { } badRequest)
        {
            return badRequest;
        }
        var now = time.GetUtcNow();
        var (status, url, error) = await registry.SetUrlAsync<AwsError>(reference.Name, qualifier, entry =>
        {
            if (QualifierMissing(entry, qualifier, limits) is { } missing)
            {
                return (null, missing);
            }
            if (entry.Urls.ContainsKey(qualifier))
            {
                return (null, AwsError.Conflict(
                    $"Failed to create function url config for [functionArn = {Arn(limits, entry.Name, qualifier)}]. Error message:  FunctionUrlConfig exists for this Lambda function"));
            }
            return (new FunctionUrlConfig(qualifier, NewUrlId(), request.AuthType!, request.Cors, request.InvokeMode ?? "BUFFERED", now, now), null);
        }, context.RequestAborted);
        if (status == FunctionWriteStatus.NotFound)
        {
            return AwsError.FunctionNotFound(limits.FunctionArn(reference.Name));
        }
        if (error is not null)
        {
            return error;
        }
        Log.Changed(Logger(loggers), reference.Name, qualifier, "CreateFunctionUrlConfig", url!.UrlId);
        var dto = ToDto(context, limits, reference.Name, url);
        dto.LastModifiedTime = null; // Create answers without it, as Lambda does
        return FunctionsApi.Json(dto, LaminaJsonContext.Default.FunctionUrlConfigDto, StatusCodes.Status201Created);
    }

    private static IResult Get(HttpContext context, string name, FunctionRegistry registry, IOptions<LaminaOptions> options)
    {
        var limits = options.Value;
        if (Parse(context, name, limits, out var reference, out var qualifier) is { } invalid)
        {
            return invalid;
        }
        if (!registry.TryGetEntry(reference.Name, out var entry))
        {
            return AwsError.FunctionNotFound(limits.FunctionArn(reference.Name));
        }
        if (!entry.Urls.TryGetValue(qualifier, out var url))
        {
            return NoUrl();
        }
        return FunctionsApi.Json(ToDto(context, limits, entry.Name, url), LaminaJsonContext.Default.FunctionUrlConfigDto);
    }

    private static async Task<IResult> UpdateAsync(HttpContext context, string name, FunctionRegistry registry, IOptions<LaminaOptions> options,
        TimeProvider time, ILoggerFactory loggers)
    {
        var limits = options.Value;
        if (Parse(context, name, limits, out var reference, out var qualifier) is { } invalid)
        {
            return invalid;
        }
        var (request, parseError) = await FunctionsApi.ReadJsonAsync(context.Request, FunctionsApi.MaxConfigurationRequestBytes, "UpdateFunctionUrlConfig",
            LaminaJsonContext.Default.FunctionUrlConfigRequest, context.RequestAborted);
        if (parseError is not null)
        {
            return parseError;
        }
        if (Validate(request, create: false) is { } badRequest)
        {
            return badRequest;
        }
        var now = time.GetUtcNow();
        var (status, url, error) = await registry.SetUrlAsync<AwsError>(reference.Name, qualifier, entry =>
        {
            if (!entry.Urls.TryGetValue(qualifier, out var current))
            {
                return (null, NoUrl());
            }
            // Members left out keep their value; Cors given replaces the whole settings.
            return (current with
            {
                AuthType = request.AuthType ?? current.AuthType,
                Cors = request.Cors ?? current.Cors,
                InvokeMode = request.InvokeMode ?? current.InvokeMode,
                LastModifiedTime = now,
            }, null);
        }, context.RequestAborted);
        if (status == FunctionWriteStatus.NotFound)
        {
            return AwsError.FunctionNotFound(limits.FunctionArn(reference.Name));
        }
        if (error is not null)
        {
            return error;
        }
        Log.Changed(Logger(loggers), reference.Name, qualifier, "UpdateFunctionUrlConfig", url!.UrlId);
        return FunctionsApi.Json(ToDto(context, limits, reference.Name, url), LaminaJsonContext.Default.FunctionUrlConfigDto);
    }

    private static async Task<IResult> DeleteAsync(HttpContext context, string name, FunctionRegistry registry, IOptions<LaminaOptions> options, ILoggerFactory loggers)
    {
        var limits = options.Value;
        if (Parse(context, name, limits, out var reference, out var qualifier) is { } invalid)
        {
            return invalid;
        }
        string? urlId = null;
        var (status, _, error) = await registry.SetUrlAsync<AwsError>(reference.Name, qualifier, entry =>
        {
            if (!entry.Urls.TryGetValue(qualifier, out var current))
            {
                return (null, NoUrl());
            }
            urlId = current.UrlId;
            return (null, null);
        }, context.RequestAborted);
        if (status == FunctionWriteStatus.NotFound)
        {
            return AwsError.FunctionNotFound(limits.FunctionArn(reference.Name));
        }
        if (error is not null)
        {
            return error;
        }
        Log.Changed(Logger(loggers), reference.Name, qualifier, "DeleteFunctionUrlConfig", urlId!);
        return TypedResults.NoContent();
    }

    private static IResult List(HttpContext context, string name, FunctionRegistry registry, IOptions<LaminaOptions> options)
    {
        var limits = options.Value;
        var (entry, page, next, error) = FunctionsApi.ListPerQualifier(context, name, registry, limits, static e => e.Urls,
            functionName => AwsError.FunctionNotFound(limits.FunctionArn(functionName)));
        if (error is not null)
        {
            return error;
        }
        var response = new ListFunctionUrlConfigsResponse { NextMarker = next };
        response.FunctionUrlConfigs.AddRange(page.ConvertAll(u => ToDto(context, limits, entry!.Name, u)));
        return FunctionsApi.Json(response, LaminaJsonContext.Default.ListFunctionUrlConfigsResponse);
    }

    /// <summary>The function and its URL qualifier: <c>$LATEST</c> when unqualified, else an alias name (never a version).</summary>
    private static AwsError? Parse(HttpContext context, string name, LaminaOptions limits, out FunctionReference reference, out string qualifier)
    {
        qualifier = FunctionEntry.Latest;
        if (!FunctionReference.TryParse(name, FunctionsApi.QueryValue(context, "Qualifier"), limits, Protocols.CallerIdentity.AccountOf(context, limits), out reference, out var error))
        {
            return error;
        }
        if (reference.Qualifier is { } given)
        {
            if (!QualifierPattern().IsMatch(given))
            {
                return AwsError.Validation($"1 validation error detected: Value '{given}' at 'qualifier' failed to satisfy constraint: Member must satisfy regular expression pattern: {QualifierPatternText}");
            }
            qualifier = given;
        }
        return null;
    }

    private static AwsError? Validate(FunctionUrlConfigRequest request, bool create)
    {
        var errors = new List<string>();
        if (request.AuthType is null && create)
        {
            errors.Add("Value null at 'authType' failed to satisfy constraint: Member must not be null");
        }
        else if (request.AuthType is not null and not ("NONE" or "AWS_IAM"))
        {
            errors.Add($"Value '{request.AuthType}' at 'authType' failed to satisfy constraint: Member must satisfy enum value set: [AWS_IAM, NONE]");
        }
        if (request.InvokeMode is not null and not ("BUFFERED" or "RESPONSE_STREAM"))
        {
            errors.Add($"Value '{request.InvokeMode}' at 'invokeMode' failed to satisfy constraint: Member must satisfy enum value set: [BUFFERED, RESPONSE_STREAM]");
        }
        if (request.Cors is { } cors)
        {
            List(cors.AllowOrigins, "cors.allowOrigins", 100, 1, 253, errors);
            List(cors.AllowMethods, "cors.allowMethods", 6, 0, 6, errors);
            List(cors.AllowHeaders, "cors.allowHeaders", 100, 0, 1024, errors);
            List(cors.ExposeHeaders, "cors.exposeHeaders", 100, 0, 1024, errors);
            if (cors.MaxAge is < 0 or > 86_400)
            {
                errors.Add(string.Create(CultureInfo.InvariantCulture,
                    $"Value '{cors.MaxAge}' at 'cors.maxAge' failed to satisfy constraint: Member must have value {(cors.MaxAge < 0 ? "greater than or equal to 0" : "less than or equal to 86400")}"));
            }
        }
        return errors.Count == 0
            ? null
            : AwsError.Validation($"{errors.Count} validation error{(errors.Count > 1 ? "s" : "")} detected: {string.Join("; ", errors)}");

        static void List(List<string>? values, string member, int maxItems, int minLength, int maxLength, List<string> errors)
        {
            if (values is null)
            {
                return;
            }
            if (values.Count > maxItems)
            {
                errors.Add(string.Create(CultureInfo.InvariantCulture, $"Value at '{member}' failed to satisfy constraint: Member must have length less than or equal to {maxItems}"));
            }
            foreach (var value in values)
            {
                if (value is null || value.Length < minLength || value.Length > maxLength)
                {
                    errors.Add(string.Create(CultureInfo.InvariantCulture,
                        $"Value '{value}' at '{member}' failed to satisfy constraint: Member must have length between {minLength} and {maxLength}"));
                    return;
                }
            }
        }
    }

    private static AwsError? QualifierMissing(FunctionEntry entry, string qualifier, LaminaOptions limits) =>
        qualifier == FunctionEntry.Latest || entry.Aliases.ContainsKey(qualifier)
            ? null
            : AwsError.NotFound($"Cannot find alias arn: {limits.FunctionArn(entry.Name)}:{qualifier}");

    /// <summary>32 lower-case letters and digits, as Lambda's url ids.</summary>
    private static string NewUrlId() => RandomNumberGenerator.GetString("abcdefghijklmnopqrstuvwxyz0123456789", 32);

    private static string Arn(LaminaOptions limits, string function, string qualifier) =>
        qualifier == FunctionEntry.Latest ? limits.FunctionArn(function) : $"{limits.FunctionArn(function)}:{qualifier}";

    /// <summary>
    /// The URL that reaches the function: a host name under <c>localhost</c> (which curl and browsers resolve to
    /// loopback) on the port the server listens on.
    /// </summary>
    internal static string UrlOf(HttpContext context, LaminaOptions limits, string urlId) =>
        string.Create(CultureInfo.InvariantCulture, $"http://{urlId}.lambda-url.{limits.Region}.localhost:{ListeningPort(context, limits)}/");

    /// <summary>The port the API listens on (the one picked when the server was started with port 0).</summary>
    internal static int ListeningPort(HttpContext context, LaminaOptions limits)
    {
        var port = limits.Port;
        var addresses = context.RequestServices.GetService<IServer>()?.Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
        foreach (var address in addresses)
        {
            if (address.StartsWith("http://", StringComparison.Ordinal) && Uri.TryCreate(address.Replace("[::]", "localhost", StringComparison.Ordinal)
                    .Replace("+", "localhost", StringComparison.Ordinal).Replace("*", "localhost", StringComparison.Ordinal), UriKind.Absolute, out var uri))
            {
                port = uri.Port;
                break;
            }
        }
        return port;
    }

    private static FunctionUrlConfigDto ToDto(HttpContext context, LaminaOptions limits, string function, FunctionUrlConfig url) => new()
    {
        FunctionUrl = UrlOf(context, limits, url.UrlId),
        FunctionArn = Arn(limits, function, url.Qualifier),
        AuthType = url.AuthType,
        Cors = url.Cors,
        CreationTime = Timestamp(url.CreationTime),
        LastModifiedTime = Timestamp(url.LastModifiedTime),
        InvokeMode = url.InvokeMode,
    };

    private static string Timestamp(DateTimeOffset time) => time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture);

    private static AwsError NoUrl() => AwsError.NotFound("The resource you requested does not exist.");

    private static ILogger Logger(ILoggerFactory loggers) => loggers.CreateLogger(typeof(FunctionUrlsApi).FullName!);

    private static partial class Log
    {
        [LoggerMessage(EventIds.FunctionUrlChanged, LogLevel.Information, "Function URL of {Name}:{Qualifier} changed ({Operation}, url id {UrlId})")]
        public static partial void Changed(ILogger logger, string name, string qualifier, string operation, string urlId);
    }
}
