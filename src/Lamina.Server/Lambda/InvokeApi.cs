using System.Globalization;
using System.Text;
using System.Text.Json;
using Lamina.Server.Async;
using Lamina.Server.Hosting;
using Lamina.Server.Invoke;
using Lamina.Server.Protocols;
using Lamina.Server.RuntimeApi;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Lambda;

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
        // Invoke's services are resolved once, here: parameters resolved per request would create a DI scope for
        // every invoke (issue #19).
        var services = endpoints.ServiceProvider;
        var registry = services.GetRequiredService<FunctionRegistry>();
        var invoker = services.GetRequiredService<Invoker>();
        var limiter = services.GetRequiredService<ConcurrencyLimiter>();
        var queue = services.GetRequiredService<AsyncDispatcher>();
        var options = services.GetRequiredService<IOptions<LaminaOptions>>();
        var time = services.GetRequiredService<TimeProvider>();
        var metrics = services.GetRequiredService<Diagnostics.LaminaMetrics>();
        var durable = services.GetRequiredService<Durable.DurableEngine>();
        var forwarder = services.GetRequiredService<Storage.LeaseForwarder>();
        endpoints.MapPost("/2015-03-31/functions/{functionName}/invocations", (HttpContext context, string functionName) =>
            InvokeAsync(context, functionName, registry, invoker, limiter, queue, options, time, metrics, durable, forwarder));
        endpoints.MapPost("/2014-11-13/functions/{functionName}/invoke-async", InvokeAsyncLegacyAsync);
        endpoints.MapPost("/2021-11-15/functions/{functionName}/response-streaming-invocations", (HttpContext context, string functionName) =>
            InvokeWithResponseStreamAsync(context, functionName, registry, invoker, limiter, options, time, metrics));
        return endpoints;
    }

    /// <summary>The model's check of <c>X-Amz-Log-Type</c> (Invoke and InvokeWithResponseStream): null when absent or valid.</summary>
    private static AwsError? LogTypeError(string logType) => logType.Length == 0 || logType is "None" or "Tail"
        ? null
        : AwsError.InvalidParameter($"1 validation error detected: Value '{logType}' at 'logType' failed to satisfy constraint: Member must satisfy enum value set: [None, Tail]");

    private static async Task InvokeAsync(HttpContext context, string functionName, FunctionRegistry registry, Invoker invoker,
        ConcurrencyLimiter limiter, AsyncDispatcher queue, IOptions<LaminaOptions> options, TimeProvider time, Diagnostics.LaminaMetrics metrics,
        Durable.DurableEngine durable, Storage.LeaseForwarder forwarder)
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
        if (LogTypeError(logType) is { } logTypeError)
        {
            await logTypeError.ExecuteAsync(context);
            return;
        }

        // The query collection is parsed (and allocated) only when there is a query string.
        var resolved = Resolve(context, functionName, request.QueryString.HasValue ? request.Query["Qualifier"] : default(string), registry, options.Value, out var error);
        if (resolved is null && error!.StatusCode == StatusCodes.Status404NotFound && registry.Clustered
            && FunctionReference.ParseFunctionName(functionName, options.Value, Protocols.CallerIdentity.AccountOf(context, options.Value), out var key) is null)
        {
            // A function, version or alias another node made a moment ago may not have reached this node yet (FreshReads).
            await Hosting.IoThreads.LeaveIoThreadAsync();
            await registry.RereadAsync(key!);
            resolved = Resolve(context, functionName, request.QueryString.HasValue ? request.Query["Qualifier"] : default(string), registry, options.Value, out error);
        }
        if (resolved is null)
        {
            await error!.ExecuteAsync(context);
            return;
        }
        var (config, invokedArn, reserved, qualifier) = resolved.Value;

        var limit = invocationType == "Event" ? MaxAsyncPayloadBytes : MaxSyncPayloadBytes;
        var body = await RuntimeApiEndpoints.ReadBodyAsync(context, limit);
        if (body is null)
        {
            await AwsError.RequestTooLarge(string.Create(CultureInfo.InvariantCulture, $"Request must be smaller than {limit} bytes for the InvokeFunction operation")).ExecuteAsync(context);
            return;
        }
        var payload = body.Value;
        var received = payload; // as sent: what a durable invoke forwards to the node that runs the executions
        if (payload.IsEmpty)
        {
            payload = "{}"u8.ToArray(); // AWS hands an invocation without a payload to the function as {}.
        }
        if (payload.Length > 64 * 1024)
        {
            await Hosting.IoThreads.LeaveIoThreadAsync(); // validating megabytes of JSON is no work for an I/O thread
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

        context.Response.Headers["X-Amz-Executed-Version"] = config.Version;
        if (invocationType == "DryRun")
        {
            context.Response.StatusCode = StatusCodes.Status204NoContent;
            return;
        }

        if (config.Durable is not null)
        {
            await Hosting.IoThreads.LeaveIoThreadAsync(); // a durable start writes its log to disk
            if (await durable.ForwardedAsync(forwarder, context, received))
            {
                return; // on a cluster, another node runs the durable executions
            }
            await Durable.DurableApi.InvokeAsync(context, durable, config, payload, invocationType);
            return;
        }
        if (request.Headers.ContainsKey("X-Amz-Durable-Execution-Name"))
        {
            context.Response.Headers.Remove("X-Amz-Executed-Version");
            await AwsError.InvalidParameter("X-Amz-Durable-Execution-Name applies only to durable functions (functions with a DurableConfig).").ExecuteAsync(context);
            return;
        }

        // Synchronous callers are throttled at once (429, never a queue); events wait for room in the background.
        ConcurrencyLease? lease = null;
        if (invocationType != "Event" && !limiter.TryAcquire(config.Name, reserved, out lease, out var throttleReason))
        {
            metrics.RecordThrottle(config, throttleReason!);
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
            TraceId = Diagnostics.Tracing.TraceHeader(request.Headers["X-Amzn-Trace-Id"], request.Headers["traceparent"], time),
            CallerRunsInline = invocationType == "RequestResponse",
        };

        if (invocationType == "Event")
        {
            // Accepted means stored: the 202 goes out once the event is on disk. The dispatcher runs it, with retries.
            // An alias is resolved again on each attempt (its routing may change while the event waits).
            await queue.AcceptAsync(invocation.RequestId, config.Name, qualifier, invokedArn, payload, invocation.TraceId);
            context.Response.Headers.Remove("X-Amz-Executed-Version");
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

    private static async Task InvokeAsyncLegacyAsync(HttpContext context, string functionName, FunctionRegistry registry,
        AsyncDispatcher queue, IOptions<LaminaOptions> options, TimeProvider time)
    {
        var resolved = Resolve(context, functionName, default, registry, options.Value, out var error);
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
        var (config, invokedArn, _, qualifier) = resolved.Value;
        await queue.AcceptAsync(RequestIds.Of(context), config.Name, qualifier, invokedArn, payload,
            Diagnostics.Tracing.TraceHeader(context.Request.Headers["X-Amzn-Trace-Id"], context.Request.Headers["traceparent"], time));
        context.Response.StatusCode = StatusCodes.Status202Accepted;
        context.Response.ContentType = "application/json";
        await context.Response.Body.WriteAsync("""{"Status":202}"""u8.ToArray());
    }

    /// <summary>
    /// Finds the configuration an invocation runs and the ARN the caller used: <c>$LATEST</c> (unqualified or
    /// <c>:$LATEST</c>), a published version (<c>:1</c>), or an alias (<c>:prod</c>), whose weighted routing picks the
    /// version for this one invocation. The configuration returned is the concrete version's single long-lived
    /// instance (environments are keyed by it); its <see cref="FunctionConfig.Version"/> is what
    /// <c>X-Amz-Executed-Version</c> reports. Lock-free: one snapshot read, no database. A caller of another account
    /// needs a statement of the qualifier's resource policy that allows it <c>lambda:InvokeFunction</c>; without one it
    /// is refused whether or not the function exists (nothing is revealed across accounts).
    /// </summary>
    private static (FunctionConfig Config, string InvokedArn, int? ReservedConcurrency, string? Qualifier)? Resolve(HttpContext context, string functionName,
        string? qualifier, FunctionRegistry registry, LaminaOptions options, out AwsError? error)
    {
        var account = Protocols.CallerIdentity.AccountOf(context, options);
        if (!FunctionReference.TryParse(functionName, qualifier, options, account, out var reference, out error, crossAccount: true))
        {
            return null;
        }
        var arn = options.FunctionArn(reference.Name);
        var invokedArn = reference.Qualifier is null ? arn : $"{arn}:{reference.Qualifier}";
        var found = registry.TryGetEntry(reference.Name, out var entry);
        if (Protocols.CallerIdentity.Of(context) is { } caller && caller.AccountId != options.SplitFunctionKey(reference.Name).Account
            && !(found && PermissionsApi.Allows(entry!, reference.Qualifier, "lambda:InvokeFunction", new PolicyCaller(caller.AccountId))))
        {
            error = new AwsError(StatusCodes.Status403Forbidden, "AccessDeniedException",
                $"User: {caller.PrincipalArn} is not authorized to perform: lambda:InvokeFunction on resource: {invokedArn} because no resource-based policy allows the lambda:InvokeFunction action");
            return null;
        }
        if (!found || entry!.Resolve(reference.Qualifier, Random.Shared) is not { } config)
        {
            error = AwsError.FunctionNotFound(invokedArn);
            return null;
        }
        return (config, invokedArn, entry.ReservedConcurrency, reference.Qualifier);
    }

    internal static bool IsJson(ReadOnlySpan<byte> payload, out string error)
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

    internal static string? DecodeClientContext(string raw)
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
