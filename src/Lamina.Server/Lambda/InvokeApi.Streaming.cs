using System.Buffers;
using System.Globalization;
using System.IO.Pipelines;
using System.Text.Json;
using Lamina.Server.Hosting;
using Lamina.Server.Invoke;
using Lamina.Server.Protocols;
using Lamina.Server.RuntimeApi;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Lambda;

/// <summary>
/// InvokeWithResponseStream (LAMBDA.md §3.3): the response is an event stream of <c>PayloadChunk</c> events, each
/// forwarded as soon as the runtime's streamed POST delivers it, then one <c>InvokeComplete</c> with the error, if
/// any, and the log tail. A function that answers buffered comes back as one chunk.
/// </summary>
internal static partial class InvokeApi
{
    private const string OctetStream = "application/octet-stream";

    private static async Task InvokeWithResponseStreamAsync(HttpContext context, string functionName, FunctionRegistry registry, Invoker invoker,
        ConcurrencyLimiter limiter, IOptions<LaminaOptions> options, TimeProvider time, Diagnostics.LaminaMetrics metrics)
    {
        await IoThreads.LeaveIoThreadAsync(); // a streaming caller waits on the runtime's POST: not on an I/O thread
        var request = context.Request;
        var invocationType = request.Headers["X-Amz-Invocation-Type"].ToString();
        if (invocationType.Length > 0 && invocationType is not ("RequestResponse" or "DryRun"))
        {
            await AwsError.InvalidParameter($"1 validation error detected: Value '{invocationType}' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [RequestResponse, DryRun]").ExecuteAsync(context);
            return;
        }
        var logType = request.Headers["X-Amz-Log-Type"].ToString();
        if (LogTypeError(logType) is { } logTypeError)
        {
            await logTypeError.ExecuteAsync(context);
            return;
        }
        var resolved = Resolve(context, functionName, request.QueryString.HasValue ? request.Query["Qualifier"] : default(string), registry, options.Value, out var error);
        if (resolved is null)
        {
            await error!.ExecuteAsync(context);
            return;
        }
        var (config, invokedArn, reserved, _) = resolved.Value;
        if (config.Durable is not null)
        {
            await AwsError.InvalidParameter("A durable function (one with a DurableConfig) is invoked with Invoke, not InvokeWithResponseStream.").ExecuteAsync(context);
            return;
        }
        var body = await RuntimeApiEndpoints.ReadBodyAsync(context, MaxSyncPayloadBytes);
        if (body is null)
        {
            await AwsError.RequestTooLarge(string.Create(CultureInfo.InvariantCulture, $"Request must be smaller than {MaxSyncPayloadBytes} bytes for the InvokeWithResponseStream operation")).ExecuteAsync(context);
            return;
        }
        var payload = body.Value.IsEmpty ? "{}"u8.ToArray() : body.Value;
        if (!IsJson(payload.Span, out var jsonError))
        {
            await AwsError.InvalidRequestContent($"Could not parse request body into json: Could not parse payload into json: {jsonError}").ExecuteAsync(context);
            return;
        }
        string? clientContext = null;
        if (request.Headers["X-Amz-Client-Context"].ToString() is { Length: > 0 } rawClientContext && (clientContext = DecodeClientContext(rawClientContext)) is null)
        {
            await AwsError.InvalidRequestContent("Client context must be a valid Base64-encoded JSON object.").ExecuteAsync(context);
            return;
        }
        if (invocationType == "DryRun")
        {
            context.Response.Headers["X-Amz-Executed-Version"] = config.Version;
            context.Response.StatusCode = StatusCodes.Status204NoContent;
            return;
        }
        if (!limiter.TryAcquire(config.Name, reserved, out var lease, out var throttleReason))
        {
            metrics.RecordThrottle(config, throttleReason!);
            await AwsError.TooManyRequests(throttleReason!).ExecuteAsync(context);
            return;
        }

        var stream = new ResponseStream();
        var invocation = new Invocation
        {
            RequestId = RequestIds.Of(context),
            Payload = payload,
            InvokedFunctionArn = invokedArn,
            ClientContext = clientContext,
            TraceId = Diagnostics.Tracing.TraceHeader(request.Headers["X-Amzn-Trace-Id"], request.Headers["traceparent"], time),
            Stream = stream,
        };
        stream.Watch(invocation);
        var running = invoker.InvokeAsync(config, invocation, wantTail: logType == "Tail", lease!);
        await Task.WhenAny(running, stream.Started);

        var response = context.Response;
        if (!stream.Started.IsCompleted)
        {
            // Answered buffered (or never ran): errors before any event are the API's own.
            var buffered = await running;
            if (buffered.ThrottleReason is { } capacityReason)
            {
                await AwsError.TooManyRequests(capacityReason).ExecuteAsync(context);
                return;
            }
            if (buffered.Result is not { } result)
            {
                await AwsError.Service(buffered.PlatformFailure ?? "The invocation failed").ExecuteAsync(context);
                return;
            }
            StartEventStream(response, config.Version);
            if (result.Outcome == InvocationOutcome.Success && !result.Body.IsEmpty)
            {
                WriteEvent(response.BodyWriter, "PayloadChunk", OctetStream, result.Body.Span);
            }
            WriteEvent(response.BodyWriter, "InvokeComplete", InvocationResult.JsonContentType, CompleteEvent(result, buffered.LogTail));
            await response.BodyWriter.FlushAsync(CancellationToken.None);
            return;
        }

        StartEventStream(response, config.Version);
        await response.BodyWriter.FlushAsync(CancellationToken.None); // the caller learns at once that the function streams
        await stream.ForwardAsync(invocation, response.BodyWriter, static async (writer, chunk) =>
        {
            foreach (var segment in chunk)
            {
                WriteEvent(writer, "PayloadChunk", OctetStream, segment.Span);
            }
            await writer.FlushAsync(CancellationToken.None);
        }, context.RequestAborted);
        var outcome = await running;
        if (context.RequestAborted.IsCancellationRequested)
        {
            return;
        }
        var final = outcome.Result ?? InvocationResult.PlatformError("ServiceException", outcome.PlatformFailure ?? "The invocation failed");
        WriteEvent(response.BodyWriter, "InvokeComplete", InvocationResult.JsonContentType, CompleteEvent(final, outcome.LogTail));
        await response.BodyWriter.FlushAsync(CancellationToken.None);
    }

    private static void StartEventStream(HttpResponse response, string version)
    {
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = EventStream.ContentType;
        response.Headers["X-Amz-Executed-Version"] = version;
    }

    private static void WriteEvent(PipeWriter writer, string eventType, string contentType, ReadOnlySpan<byte> payload)
    {
        var length = EventStream.MessageLength(eventType, contentType, payload.Length);
        EventStream.WriteEvent(writer.GetSpan(length)[..length], eventType, contentType, payload);
        writer.Advance(length);
    }

    /// <summary>
    /// <c>InvokeComplete</c>'s payload: on a function error, <c>ErrorCode</c> is the error type (<c>Sandbox.Timedout</c>,
    /// the handler's <c>errorType</c>…) and <c>ErrorDetails</c> its message; <c>LogResult</c> the base64 tail when asked.
    /// </summary>
    private static byte[] CompleteEvent(InvocationResult result, string? logTail)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (result.Outcome == InvocationOutcome.FunctionError)
            {
                var (errorType, message) = ErrorParts(result);
                json.WriteString("ErrorCode", errorType);
                json.WriteString("ErrorDetails", message);
            }
            if (logTail is not null)
            {
                json.WriteString("LogResult", logTail);
            }
            json.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    private static (string ErrorType, string Message) ErrorParts(InvocationResult result)
    {
        string? errorType = result.ErrorType, message = null;
        try
        {
            using var document = JsonDocument.Parse(result.Body);
            if (document.RootElement.ValueKind == JsonValueKind.Object)
            {
                if (document.RootElement.TryGetProperty("errorType", out var type) && type.ValueKind == JsonValueKind.String)
                {
                    errorType ??= type.GetString();
                }
                if (document.RootElement.TryGetProperty("errorMessage", out var text) && text.ValueKind == JsonValueKind.String)
                {
                    message = text.GetString();
                }
            }
        }
        catch (JsonException)
        {
        }
        return (errorType ?? "Unhandled", message ?? System.Text.Encoding.UTF8.GetString(result.Body.Span));
    }
}
