using System.Buffers;
using System.Globalization;
using System.Text;
using Lamina.Server.Invoke;

namespace Lamina.Server.RuntimeApi;

/// <summary>
/// The Runtime API 2018-06-01 (LAMBDA.md §5) as each environment sees it. Requests from a sandbox's socket are
/// answered here and never reach the control plane; requests from anywhere else never reach this.
/// </summary>
internal static class RuntimeApiEndpoints
{
    private const string Prefix = "/2018-06-01/runtime/";
    private const string InvocationPrefix = Prefix + "invocation/";

    private const string ResponseModeHeader = "Lambda-Runtime-Function-Response-Mode";

    private static readonly byte[] Accepted = """{"status":"OK"}"""u8.ToArray();

    /// <summary>
    /// Routes Runtime and Extensions API requests of a sandbox's connections to <see cref="HandleAsync"/> before anything
    /// else sees them. Other requests on those connections are the function calling AWS APIs through
    /// <c>AWS_ENDPOINT_URL</c>: they go on to the Lambda and Logs APIs, where they must be signed like any other.
    /// </summary>
    public static IApplicationBuilder UseRuntimeApi(this IApplicationBuilder app) => app.Use(static (context, next) =>
        RuntimeApiTransport.EnvironmentOf(context) is ExecutionEnvironment environment && IsRuntimeApiPath(context.Request.Path.Value ?? "")
            ? HandleAsync(context, environment)
            : next(context));

    /// <summary>The API versions of the Runtime, Extensions, Telemetry and Logs APIs; Lambda's control plane uses none of them.</summary>
    private static bool IsRuntimeApiPath(string path) =>
        path.StartsWith("/2018-06-01/", StringComparison.Ordinal) || path.StartsWith("/2020-01-01/", StringComparison.Ordinal)
        || path.StartsWith("/2022-07-01/", StringComparison.Ordinal) || path.StartsWith("/2020-08-15/", StringComparison.Ordinal);

    private static async Task HandleAsync(HttpContext context, ExecutionEnvironment environment)
    {
        var path = context.Request.Path.Value ?? "";
        var method = context.Request.Method;
        if (path == InvocationPrefix + "next" && HttpMethods.IsGet(method))
        {
            await NextAsync(context, environment);
            return;
        }
        if (path.StartsWith(InvocationPrefix, StringComparison.Ordinal) && HttpMethods.IsPost(method))
        {
            var rest = path.AsSpan(InvocationPrefix.Length);
            var slash = rest.IndexOf('/');
            if (slash > 0)
            {
                var requestId = rest[..slash].ToString();
                var action = rest[(slash + 1)..];
                if (action.SequenceEqual("response") && context.Request.Headers.TryGetValue(ResponseModeHeader, out var mode))
                {
                    await PostStreamedAsync(context, environment, requestId, mode.ToString());
                    return;
                }
                if (action.SequenceEqual("response"))
                {
                    await PostResultAsync(context, environment, requestId, isError: false);
                    return;
                }
                if (action.SequenceEqual("error"))
                {
                    await PostResultAsync(context, environment, requestId, isError: true);
                    return;
                }
            }
        }
        if (path == Prefix + "init/error" && HttpMethods.IsPost(method))
        {
            var body = await ReadBodyAsync(context, ExecutionEnvironment.MaxResponseBytes);
            var errorType = ErrorType(context);
            var status = environment.PostInitError(body ?? ErrorBody(errorType, "init error"), errorType);
            await WriteStatusAsync(context, status);
            return;
        }
        if ((path is "/2022-07-01/telemetry" or "/2020-08-15/logs") && HttpMethods.IsPut(method))
        {
            await ExtensionsApiEndpoints.SubscribeTelemetryAsync(context, environment);
            return;
        }
        if (path.StartsWith(ExtensionsApiEndpoints.Prefix, StringComparison.Ordinal))
        {
            await ExtensionsApiEndpoints.HandleAsync(context, environment, path);
            return;
        }
        if (path == "/2018-06-01/ping" && HttpMethods.IsGet(method))
        {
            context.Response.ContentType = "text/plain";
            await context.Response.Body.WriteAsync("pong"u8.ToArray());
            return;
        }
        await WriteErrorAsync(context, StatusCodes.Status404NotFound, "InvalidRequest", $"No Runtime API route for {method} {path}");
    }

    private static async Task NextAsync(HttpContext context, ExecutionEnvironment environment)
    {
        // Lamina's own runtimes say on their first /next how long the handler's Init took (a cold-start phase).
        if (environment.ColdStart.HandlerInitMs is null
            && context.Request.Headers.TryGetValue("Lamina-Handler-Init-Ms", out var handlerInit)
            && double.TryParse(handlerInit.ToString(), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var handlerInitMs)
            && handlerInitMs is >= 0 and < 3_600_000)
        {
            environment.ColdStart.HandlerInitMs = handlerInitMs;
        }
        Invocation? invocation;
        try
        {
            invocation = await environment.NextAsync(context.RequestAborted);
        }
        catch (Exception e) when (e is OperationCanceledException or System.Threading.Channels.ChannelClosedException)
        {
            // The runtime went away, or the environment is shutting down.
            if (!context.RequestAborted.IsCancellationRequested)
            {
                await WriteErrorAsync(context, StatusCodes.Status500InternalServerError, "InternalServerError", "The execution environment is shutting down");
            }
            return;
        }
        if (invocation is null)
        {
            await WriteErrorAsync(context, StatusCodes.Status403Forbidden, "InvalidStateTransition", "An invocation is already in progress in this environment");
            return;
        }

        var response = context.Response;
        var headers = response.Headers;
        headers["Lambda-Runtime-Aws-Request-Id"] = invocation.RequestId;
        headers["Lambda-Runtime-Deadline-Ms"] = invocation.DeadlineMs.ToString(CultureInfo.InvariantCulture);
        headers["Lambda-Runtime-Invoked-Function-Arn"] = invocation.InvokedFunctionArn;
        headers["Lambda-Runtime-Trace-Id"] = invocation.TraceId;
        if (invocation.ClientContext is not null)
        {
            headers["Lambda-Runtime-Client-Context"] = invocation.ClientContext;
        }
        response.ContentType = "application/json";
        response.ContentLength = invocation.Payload.Length;
        await response.Body.WriteAsync(invocation.Payload);
    }

    private static async Task PostResultAsync(HttpContext context, ExecutionEnvironment environment, string requestId, bool isError)
    {
        var request = context.Request;
        if (request.ContentLength > ExecutionEnvironment.MaxResponseBytes)
        {
            await TooLargeAsync(context, environment, requestId, request.ContentLength.Value);
            return;
        }
        var body = await ReadBodyAsync(context, ExecutionEnvironment.MaxResponseBytes);
        if (body is null)
        {
            await TooLargeAsync(context, environment, requestId, ExecutionEnvironment.MaxResponseBytes + 1L);
            return;
        }

        RuntimeApiStatus status;
        if (isError)
        {
            var errorType = ErrorType(context);
            status = environment.PostError(requestId, body.Value.Length > 0 ? body.Value : ErrorBody(errorType, ""), errorType);
        }
        else
        {
            status = environment.PostResponse(requestId, body.Value, request.ContentType);
        }
        await WriteStatusAsync(context, status);
    }

    /// <summary>
    /// A streamed response (LAMBDA.md §5.3): <c>Lambda-Runtime-Function-Response-Mode: streaming</c>, a chunked body, and
    /// a failure after the first bytes reported in the trailers <c>Lambda-Runtime-Function-Error-Type</c> and
    /// <c>-Body</c> (base64 of the error JSON). A caller that streams gets each piece as it is read, up to 20 MiB;
    /// any other caller gets the whole body once it ends, within the 6 MB of a buffered response.
    /// </summary>
    private static async Task PostStreamedAsync(HttpContext context, ExecutionEnvironment environment, string requestId, string mode)
    {
        if (!mode.Equals("streaming", StringComparison.OrdinalIgnoreCase))
        {
            await WriteErrorAsync(context, StatusCodes.Status400BadRequest, "Runtime.InvalidResponseModeHeader",
                $"Invalid value for the {ResponseModeHeader} header: {mode}");
            return;
        }
        var status = environment.BeginStream(requestId, out var invocation);
        if (status != RuntimeApiStatus.Accepted)
        {
            await WriteStatusAsync(context, status);
            return;
        }
        var request = context.Request;
        var contentType = request.ContentType is { Length: > 0 } declared ? declared : "application/octet-stream";
        if (invocation!.Stream is not { } stream)
        {
            var body = await ReadBodyAsync(context, ExecutionEnvironment.MaxResponseBytes);
            if (body is null)
            {
                await TooLargeAsync(context, environment, requestId, ExecutionEnvironment.MaxResponseBytes + 1L);
                return;
            }
            await WriteStatusAsync(context, environment.PostStreamed(requestId, TrailerError(context) ?? InvocationResult.Success(body.Value, contentType)));
            return;
        }

        stream.Start(contentType);
        var writer = stream.Body.Writer;
        var readerGone = false;
        var tooLarge = false;
        long total = 0;
        try
        {
            var scratch = Array.Empty<byte>();
            while (true)
            {
                // Once the caller went away the rest is read and dropped, so that the runtime can finish its invocation.
                var memory = readerGone ? (scratch = scratch.Length > 0 ? scratch : new byte[16 * 1024]) : writer.GetMemory(16 * 1024);
                var n = await request.Body.ReadAsync(memory, context.RequestAborted);
                if (n == 0)
                {
                    break;
                }
                total += n;
                if (total > ResponseStream.MaxBytes)
                {
                    tooLarge = true;
                    break;
                }
                if (!readerGone)
                {
                    writer.Advance(n);
                    readerGone = (await writer.FlushAsync(CancellationToken.None)).IsCompleted;
                }
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or Microsoft.AspNetCore.Connections.ConnectionResetException)
        {
            // The runtime's connection went away mid-stream (killed after a timeout, crashed): that outcome is the environment's to report.
            await writer.CompleteAsync();
            return;
        }
        await writer.CompleteAsync();
        if (tooLarge)
        {
            environment.PostStreamed(requestId, InvocationResult.PlatformError("Function.ResponseSizeTooLarge",
                string.Create(CultureInfo.InvariantCulture, $"Response payload size exceeded maximum allowed payload size ({ResponseStream.MaxBytes} bytes).")) with { Streamed = true });
            await WriteErrorAsync(context, StatusCodes.Status413PayloadTooLarge, "RequestEntityTooLarge",
                string.Create(CultureInfo.InvariantCulture, $"Exceeded maximum allowed payload size ({ResponseStream.MaxBytes} bytes)."));
            return;
        }
        var result = TrailerError(context) is { } failed ? failed with { Streamed = true }
            : new InvocationResult(InvocationOutcome.Success, ReadOnlyMemory<byte>.Empty, contentType) { Streamed = true };
        await WriteStatusAsync(context, environment.PostStreamed(requestId, result));
    }

    /// <summary>The failure a streamed response reported in its trailers, or null (read once the body has ended).</summary>
    private static InvocationResult? TrailerError(HttpContext context)
    {
        var request = context.Request;
        if (!request.SupportsTrailers() || !request.CheckTrailersAvailable())
        {
            return null;
        }
        var errorType = request.GetTrailer("Lambda-Runtime-Function-Error-Type").ToString();
        if (errorType.Length == 0)
        {
            return null;
        }
        var encoded = request.GetTrailer("Lambda-Runtime-Function-Error-Body").ToString();
        var body = new byte[encoded.Length];
        var errorBody = Convert.TryFromBase64String(encoded, body, out var written) && written > 0
            ? body.AsMemory(0, written)
            : ErrorBody(errorType, "");
        return InvocationResult.FunctionError(errorBody, errorType);
    }

    private static async Task TooLargeAsync(HttpContext context, ExecutionEnvironment environment, string requestId, long size)
    {
        environment.PostResponseTooLarge(requestId, size);
        await WriteErrorAsync(context, StatusCodes.Status413PayloadTooLarge, "RequestEntityTooLarge",
            string.Create(CultureInfo.InvariantCulture, $"Exceeded maximum allowed payload size ({ExecutionEnvironment.MaxResponseBytes} bytes)."));
    }

    private static string? ErrorType(HttpContext context)
    {
        var value = context.Request.Headers["Lambda-Runtime-Function-Error-Type"].ToString();
        return value.Length > 0 ? value : null;
    }

    internal static byte[] ErrorBody(string? errorType, string message) =>
        Encoding.UTF8.GetBytes($$"""{"errorType":{{System.Text.Json.JsonSerializer.Serialize(errorType ?? "Runtime.Unknown", Protocols.LaminaJsonContext.Default.String)}},"errorMessage":{{System.Text.Json.JsonSerializer.Serialize(message, Protocols.LaminaJsonContext.Default.String)}}}""");

    /// <summary>Reads the whole body, or returns null if it exceeds <paramref name="limit"/> bytes (a ValueTask: a body already in is no allocation).</summary>
    internal static async ValueTask<ReadOnlyMemory<byte>?> ReadBodyAsync(HttpContext context, int limit)
    {
        var declared = context.Request.ContentLength;
        if (declared > limit)
        {
            return null;
        }
        var body = context.Request.Body;
        if (declared is { } length)
        {
            var buffer = new byte[length];
            var read = 0;
            while (read < length)
            {
                var n = await body.ReadAsync(buffer.AsMemory(read), context.RequestAborted);
                if (n == 0)
                {
                    break;
                }
                read += n;
            }
            return buffer.AsMemory(0, read);
        }

        var writer = new ArrayBufferWriter<byte>(4096);
        while (true)
        {
            var memory = writer.GetMemory(16 * 1024);
            var n = await body.ReadAsync(memory, context.RequestAborted);
            if (n == 0)
            {
                return writer.WrittenMemory;
            }
            writer.Advance(n);
            if (writer.WrittenCount > limit)
            {
                return null;
            }
        }
    }

    private static Task WriteStatusAsync(HttpContext context, RuntimeApiStatus status) => status switch
    {
        RuntimeApiStatus.Accepted => WriteAcceptedAsync(context),
        RuntimeApiStatus.InvalidRequestId => WriteErrorAsync(context, StatusCodes.Status400BadRequest, "InvalidRequestID", "Invalid request ID"),
        _ => WriteErrorAsync(context, StatusCodes.Status403Forbidden, "InvalidStateTransition", "No invocation is in progress for this request"),
    };

    internal static async Task WriteAcceptedAsync(HttpContext context)
    {
        context.Response.StatusCode = StatusCodes.Status202Accepted;
        context.Response.ContentType = "application/json";
        context.Response.ContentLength = Accepted.Length;
        await context.Response.Body.WriteAsync(Accepted);
    }

    internal static async Task WriteErrorAsync(HttpContext context, int status, string errorType, string message)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        await context.Response.Body.WriteAsync(ErrorBody(errorType, message));
    }
}
