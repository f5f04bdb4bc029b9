namespace Lamina.Server.Invoke;

/// <summary>One event on its way through an environment.</summary>
internal sealed class Invocation
{
    // Continuations of Completion run where the invocation is released: inline for the Runtime API connection that
    // answered (the caller's response goes out on the thread that read the runtime's, no hand-off: issue #19), on the
    // thread pool for everyone else (timeouts, crashes, Kestrel-served runtimes) — see Release. STYLE rule 15 asks for
    // RunContinuationsAsynchronously; the measurement wins here, and Release keeps its intent for all other completers.
    private readonly TaskCompletionSource<InvocationResult> _completion = new();
    private InvocationResult? _result;
    private int _claimed;

    public required string RequestId { get; init; }

    /// <summary>The event bytes as the runtime receives them.</summary>
    public required ReadOnlyMemory<byte> Payload { get; init; }

    /// <summary>The ARN the caller used (qualified if the caller qualified it): <c>Lambda-Runtime-Invoked-Function-Arn</c>.</summary>
    public required string InvokedFunctionArn { get; init; }

    /// <summary>The caller's client context, decoded to JSON text, or null.</summary>
    public string? ClientContext { get; init; }

    /// <summary>
    /// The X-Ray trace header the runtime gets (<c>Lambda-Runtime-Trace-Id</c>); when Lamina traces, its Parent is the
    /// invocation's span, so the function's own spans nest under it.
    /// </summary>
    public required string TraceId { get; set; }

    /// <summary>Absolute deadline, Unix epoch milliseconds; set when the invocation is handed to the runtime.</summary>
    public long DeadlineMs { get; set; }

    /// <summary>True once the runtime received it through <c>/next</c>.</summary>
    public bool Delivered { get; set; }

    /// <summary>
    /// Its caller (the synchronous Invoke API) may continue on the thread that answers it: an I/O thread, where the
    /// caller only writes its response. Everyone else is released on the thread pool (see <see cref="Release"/>).
    /// </summary>
    public bool CallerRunsInline { get; init; }

    /// <summary>
    /// Set when the caller streams the response (InvokeWithResponseStream, a <c>RESPONSE_STREAM</c> function URL): a
    /// runtime's streamed POST goes there piece by piece; otherwise a streamed POST is buffered like any response.
    /// </summary>
    public ResponseStream? Stream { get; init; }

    /// <summary>True once the runtime began a streamed response (a second one is refused).</summary>
    public bool StreamBegun { get; set; }

    /// <summary>True when the invocation ended because it ran out of time.</summary>
    public bool TimedOut { get; set; }

    public Task<InvocationResult> Completion => _completion.Task;

    /// <summary>True once an outcome was claimed (its waiter may not have been released yet).</summary>
    public bool IsCompleted => Volatile.Read(ref _claimed) != 0;

    /// <summary>Completes the invocation; the first outcome wins (a response racing a timeout, say).</summary>
    public bool TryComplete(InvocationResult result)
    {
        if (!TryClaim(result))
        {
            return false;
        }
        Release(inline: false);
        return true;
    }

    /// <summary>
    /// Takes the outcome without releasing the waiter yet, so the winner can finish its own work first (answer the
    /// runtime, write the timeout's log line) before the caller's continuation runs. The first claim wins.
    /// </summary>
    public bool TryClaim(InvocationResult result)
    {
        if (Interlocked.CompareExchange(ref _claimed, 1, 0) != 0)
        {
            return false;
        }
        _result = result;
        return true;
    }

    /// <summary>
    /// Releases the waiter of a claimed invocation. <paramref name="inline"/> (and <see cref="CallerRunsInline"/>): its
    /// continuation runs on this thread, before this returns (only for callers that hold no lock and may run the invoke
    /// path's tail); otherwise it is queued to the thread pool, as <c>RunContinuationsAsynchronously</c> would.
    /// </summary>
    public void Release(bool inline)
    {
        System.Diagnostics.Debug.Assert(_result is not null, "released before claimed");
        if (inline && CallerRunsInline)
        {
            _completion.TrySetResult(_result!);
        }
        else
        {
            ThreadPool.UnsafeQueueUserWorkItem(static invocation => invocation._completion.TrySetResult(invocation._result!), this, preferLocal: false);
        }
    }

    // Intrusive links of InvocationDeadlines' list of running invocations (no allocation per invoke).
    internal Invocation? DeadlineNext;
    internal Invocation? DeadlinePrevious;
    internal long DeadlineTimestamp;
    internal ExecutionEnvironment? RunningIn;

    /// <summary>An X-Ray style trace header for a new invocation: <c>Root=1-{epoch:x8}-{24 hex};Parent={16 hex};Sampled=0</c>.</summary>
    public static string NewTraceId(TimeProvider time)
    {
        var epoch = (uint)time.GetUtcNow().ToUnixTimeSeconds();
        Span<byte> random = stackalloc byte[20];
        Hosting.RequestIds.FillRandom(random);
        Span<char> chars = stackalloc char[74];
        "Root=1-".CopyTo(chars);
        epoch.TryFormat(chars[7..], out _, "x8", System.Globalization.CultureInfo.InvariantCulture);
        chars[15] = '-';
        Convert.TryToHexStringLower(random[..12], chars[16..40], out _);
        ";Parent=".CopyTo(chars[40..]);
        Convert.TryToHexStringLower(random[12..], chars[48..64], out _);
        ";Sampled=0".CopyTo(chars[64..]);
        return new string(chars);
    }
}

/// <summary>How an invocation ended, as the caller sees it.</summary>
internal enum InvocationOutcome
{
    Success,

    /// <summary>The function (or its runtime, or the platform on its behalf) reported an error: 200 + <c>X-Amz-Function-Error</c>.</summary>
    FunctionError,
}

internal sealed record InvocationResult(InvocationOutcome Outcome, ReadOnlyMemory<byte> Body, string ContentType, string? ErrorType = null)
{
    /// <summary>True when the body went to the caller through the invocation's <see cref="Invocation.Stream"/> (this one's is empty).</summary>
    public bool Streamed { get; init; }

    public const string JsonContentType = "application/json";

    public static InvocationResult Success(ReadOnlyMemory<byte> body, string? contentType) =>
        new(InvocationOutcome.Success, body, contentType ?? JsonContentType);

    /// <summary>A function error whose body the runtime supplied (relayed verbatim, as Lambda does).</summary>
    public static InvocationResult FunctionError(ReadOnlyMemory<byte> body, string? errorType) =>
        new(InvocationOutcome.FunctionError, body, JsonContentType, errorType);

    /// <summary>A function error that Lamina describes (timeout, crash, out of memory…).</summary>
    public static InvocationResult PlatformError(string errorType, string errorMessage)
    {
        var body = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(
            new PlatformErrorBody { ErrorType = errorType, ErrorMessage = errorMessage },
            Protocols.LaminaJsonContext.Default.PlatformErrorBody);
        return new(InvocationOutcome.FunctionError, body, JsonContentType, errorType);
    }
}

internal sealed class PlatformErrorBody
{
    [System.Text.Json.Serialization.JsonPropertyName("errorType")]
    public required string ErrorType { get; init; }

    [System.Text.Json.Serialization.JsonPropertyName("errorMessage")]
    public required string ErrorMessage { get; init; }
}
