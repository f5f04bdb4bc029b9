using System.Globalization;
using System.Text;
using System.Text.Json;
using Lamina.Server.Functions;
using Lamina.Server.Hosting;
using Lamina.Server.Invoke;
using Lamina.Server.RuntimeApi;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Api;

/// <summary>Invoke (LAMBDA.md §3): RequestResponse, Event and DryRun, and the legacy InvokeAsync.</summary>
internal static partial class InvokeApi
{
    /// <summary>Synchronous request limit (6 MB).</summary>
    public const int MaxSyncPayloadBytes = 6 * 1024 * 1024;

    /// <summary>Asynchronous request limit (1 MB since 2025).</summary>
    public const int MaxAsyncPayloadBytes = 1024 * 1024;

    /// <summary>Largest X-Amz-Client-Context (base64).</summary>
    public const int MaxClientContextBytes = 3583;

    public static IEndpointRouteBuilder MapInvokeApi(this IEndpointRouteBuilder endpoints)
    {
        // Each template also matches its trailing-slash form (ASP.NET Core's matcher), so each is mapped once.
        endpoints.MapPost("/2015-03-31/functions/{functionName}/invocations", InvokeAsync);
        endpoints.MapPost("/2014-11-13/functions/{functionName}/invoke-async", InvokeAsyncLegacyAsync);
        return endpoints;
    }

    private static async Task InvokeAsync(HttpContext context, string functionName, FunctionRegistry registry, Invoker invoker,
        ConcurrencyLimiter limiter, IOptions<LaminaOptions> options, TimeProvider time, ILoggerFactory loggers)
    {
        var request = context.Request;
        var invocationType = request.Headers["X-Amz-Invocation-Type"].ToString();
        if (invocationType.Length == 0)
        {
            invocationType = "RequestResponse";
        }
        if (invocationType is not ("RequestResponse" or "Event" or "DryRun"))
        {
            await AwsError.InvalidParameter($"1 validation error detected: Value '{invocationType}' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]").ExecuteAsync(context);
            return;
        }
        var logType = request.Headers["X-Amz-Log-Type"].ToString();
        if (logType.Length > 0 && logType is not ("None" or "Tail"))
        {
            await AwsError.InvalidParameter($"1 validation error detected: Value '{logType}' at 'logType' failed to satisfy constraint: Member must satisfy enum value set: [None, Tail]").ExecuteAsync(context);
            return;
        }

        var resolved = Resolve(functionName, request.Query["Qualifier"], registry, options.Value, out var error);
        if (resolved is null)
        {
            await error!.ExecuteAsync(context);
            return;
        }

        var limit = invocationType == "Event" ? MaxAsyncPayloadBytes : MaxSyncPayloadBytes;
        var body = await RuntimeApiEndpoints.ReadBodyAsync(context, limit);
        if (body is null)
        {
            await AwsError.RequestTooLarge(string.Create(CultureInfo.InvariantCulture, $"Request must be smaller than {limit} bytes for the InvokeFunction operation")).ExecuteAsync(context);
            return;
        }
        var payload = body.Value;
        if (payload.IsEmpty)
        {
            payload = "{}"u8.ToArray(); // AWS hands an invocation without a payload to the function as {}.
        }
        if (!IsJson(payload.Span, out var jsonError))
        {
            await AwsError.InvalidRequestContent($"Could not parse request body into json: Could not parse payload into json: {jsonError}").ExecuteAsync(context);
            return;
        }

        string? clientContext = null;
        var rawClientContext = request.Headers["X-Amz-Client-Context"].ToString();
        if (rawClientContext.Length > 0)
        {
            clientContext = DecodeClientContext(rawClientContext);
            if (clientContext is null)
            {
                await AwsError.InvalidRequestContent("Client context must be a valid Base64-encoded JSON object.").ExecuteAsync(context);
                return;
            }
        }

        var (config, invokedArn, reserved) = resolved.Value;
        context.Response.Headers["X-Amz-Executed-Version"] = config.Version;
        if (invocationType == "DryRun")
        {
            context.Response.StatusCode = StatusCodes.Status204NoContent;
            return;
        }

        // Synchronous callers are throttled at once (429, never a queue); events wait for room in the background.
        ConcurrencyLease? lease = null;
        if (invocationType != "Event" && !limiter.TryAcquire(config.Name, reserved, out lease, out var throttleReason))
        {
            context.Response.Headers.Remove("X-Amz-Executed-Version");
            await AwsError.TooManyRequests(throttleReason!).ExecuteAsync(context);
            return;
        }

        var invocation = new Invocation
        {
            RequestId = RequestIds.Of(context),
            Payload = payload,
            InvokedFunctionArn = invokedArn,
            ClientContext = clientContext,
            TraceId = Invocation.NewTraceId(time),
        };

        if (invocationType == "Event")
        {
            // Accepted, then run. The durable queue with retries is issue #6; until then the event runs in the background.
            _ = RunEventAsync(config, invocation, registry, invoker, limiter, loggers);
            context.Response.StatusCode = StatusCodes.Status202Accepted;
            return;
        }

        var outcome = await invoker.InvokeAsync(config, invocation, wantTail: logType == "Tail", lease!);
        if (outcome.ThrottleReason is { } capacityReason)
        {
            context.Response.Headers.Remove("X-Amz-Executed-Version");
            await AwsError.TooManyRequests(capacityReason).ExecuteAsync(context);
            return;
        }
        if (outcome.Result is not { } result)
        {
            await AwsError.Service(outcome.PlatformFailure ?? "The invocation failed").ExecuteAsync(context);
            return;
        }

        var response = context.Response;
        response.StatusCode = StatusCodes.Status200OK;
        if (result.Outcome == InvocationOutcome.FunctionError)
        {
            response.Headers["X-Amz-Function-Error"] = "Unhandled";
        }
        if (outcome.LogTail is not null)
        {
            response.Headers["X-Amz-Log-Result"] = outcome.LogTail;
        }
        response.ContentType = result.ContentType;
        response.ContentLength = result.Body.Length;
        await response.Body.WriteAsync(result.Body, CancellationToken.None);
    }

    private static async Task InvokeAsyncLegacyAsync(HttpContext context, string functionName, FunctionRegistry registry, Invoker invoker,
        ConcurrencyLimiter limiter, IOptions<LaminaOptions> options, TimeProvider time, ILoggerFactory loggers)
    {
        var resolved = Resolve(functionName, default, registry, options.Value, out var error);
        if (resolved is null)
        {
            await error!.ExecuteAsync(context);
            return;
        }
        // The legacy API documents 256 KB.
        var body = await RuntimeApiEndpoints.ReadBodyAsync(context, 256 * 1024);
        if (body is null)
        {
            await AwsError.RequestTooLarge("Request must be smaller than 262144 bytes for the InvokeAsync operation").ExecuteAsync(context);
            return;
        }
        var payload = body.Value.IsEmpty ? "{}"u8.ToArray() : body.Value;
        if (!IsJson(payload.Span, out var jsonError))
        {
            await AwsError.InvalidRequestContent($"Could not parse request body into json: {jsonError}").ExecuteAsync(context);
            return;
        }
        var (config, invokedArn, _) = resolved.Value;
        var invocation = new Invocation
        {
            RequestId = RequestIds.Of(context),
            Payload = payload,
            InvokedFunctionArn = invokedArn,
            TraceId = Invocation.NewTraceId(time),
        };
        _ = RunEventAsync(config, invocation, registry, invoker, limiter, loggers);
        context.Response.StatusCode = StatusCodes.Status202Accepted;
        context.Response.ContentType = "application/json";
        await context.Response.Body.WriteAsync("""{"Status":202}"""u8.ToArray());
    }

    /// <summary>
    /// Runs an Event invocation once the concurrency limits admit it (<see cref="ConcurrencyLimiter.WaitForEventAsync"/>);
    /// one that cannot be admitted in time is dropped with a warning, as Lambda drops an event past its maximum age.
    /// </summary>
    private static async Task RunEventAsync(FunctionConfig config, Invocation invocation, FunctionRegistry registry, Invoker invoker, ConcurrencyLimiter limiter, ILoggerFactory loggers)
    {
        await Task.Yield(); // the caller's 202 does not wait for any of this
        var lease = await limiter.WaitForEventAsync(config.Name,
            () => registry.TryGetEntry(config.Name, out var entry) ? (true, entry.ReservedConcurrency) : (false, null), CancellationToken.None);
        if (lease is null)
        {
            Log.EventDropped(loggers.CreateLogger(typeof(InvokeApi).FullName!), config.Name, invocation.RequestId);
            return;
        }
        var outcome = await invoker.InvokeAsync(config, invocation, wantTail: false, lease);
        // No room to start an environment (the node's memory budget): an event is never throttled to its caller, so it
        // waits for room like one over the concurrency limit, for as long.
        var delay = TimeSpan.FromMilliseconds(100);
        var waited = TimeSpan.Zero;
        while (outcome.ThrottleReason is not null && waited < ConcurrencyLimiter.MaxEventWait)
        {
            await Task.Delay(delay);
            waited += delay;
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.TicksPerSecond));
            lease = await limiter.WaitForEventAsync(config.Name,
                () => registry.TryGetEntry(config.Name, out var entry) ? (true, entry.ReservedConcurrency) : (false, null), CancellationToken.None);
            if (lease is null)
            {
                break;
            }
            outcome = await invoker.InvokeAsync(config, invocation, wantTail: false, lease);
        }
        if (outcome.ThrottleReason is not null)
        {
            Log.EventDropped(loggers.CreateLogger(typeof(InvokeApi).FullName!), config.Name, invocation.RequestId);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = Diagnostics.EventIds.EventDropped, Level = LogLevel.Warning,
            Message = "Event {RequestId} for {Function} dropped: no concurrency became free in time (or too many events were waiting, or the function is gone)")]
        public static partial void EventDropped(ILogger logger, string function, string requestId);
    }

    /// <summary>
    /// Finds the configuration an invocation runs and the ARN the caller used: <c>$LATEST</c> (unqualified or
    /// <c>:$LATEST</c>), a published version (<c>:1</c>), or an alias (<c>:prod</c>), whose weighted routing picks the
    /// version for this one invocation. The configuration returned is the concrete version's single long-lived
    /// instance (environments are keyed by it); its <see cref="FunctionConfig.Version"/> is what
    /// <c>X-Amz-Executed-Version</c> reports. Lock-free: one snapshot read, no database.
    /// </summary>
    private static (FunctionConfig Config, string InvokedArn, int? ReservedConcurrency)? Resolve(string functionName, string? qualifier, FunctionRegistry registry, LaminaOptions options, out AwsError? error)
    {
        if (!FunctionReference.TryParse(functionName, qualifier, options, out var reference, out error))
        {
            return null;
        }
        var arn = options.FunctionArn(reference.Name);
        var invokedArn = reference.Qualifier is null ? arn : $"{arn}:{reference.Qualifier}";
        if (!registry.TryGetEntry(reference.Name, out var entry) || entry.Resolve(reference.Qualifier, Random.Shared) is not { } config)
        {
            error = AwsError.FunctionNotFound(invokedArn);
            return null;
        }
        return (config, invokedArn, entry.ReservedConcurrency);
    }

    private static bool IsJson(ReadOnlySpan<byte> payload, out string error)
    {
        var reader = new Utf8JsonReader(payload, new JsonReaderOptions { MaxDepth = 1000, CommentHandling = JsonCommentHandling.Disallow });
        try
        {
            while (reader.Read())
            {
            }
            error = "";
            return true;
        }
        catch (JsonException e)
        {
            error = e.Message;
            return false;
        }
    }

    private static string? DecodeClientContext(string raw)
    {
        if (raw.Length > MaxClientContextBytes)
        {
            return null;
        }
        try
        {
            var bytes = Convert.FromBase64String(raw);
            using var document = JsonDocument.Parse(bytes);
            return document.RootElement.ValueKind == JsonValueKind.Object ? Encoding.UTF8.GetString(bytes) : null;
        }
        catch (Exception e) when (e is FormatException or JsonException)
        {
            return null;
        }
    }
}
