namespace Lamina.Server.Invoke;

/// <summary>One event on its way through an environment.</summary>
internal sealed class Invocation
{
    private readonly TaskCompletionSource<InvocationResult> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);

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

    public Task<InvocationResult> Completion => _completion.Task;

    public bool IsCompleted => _completion.Task.IsCompleted;

    /// <summary>Completes the invocation; the first outcome wins (a response racing a timeout, say).</summary>
    public bool TryComplete(InvocationResult result) => _completion.TrySetResult(result);

    /// <summary>An X-Ray style trace header for a new invocation.</summary>
    public static string NewTraceId(TimeProvider time)
    {
        var epoch = time.GetUtcNow().ToUnixTimeSeconds();
        Span<byte> random = stackalloc byte[20];
        System.Security.Cryptography.RandomNumberGenerator.Fill(random);
        var hex = Convert.ToHexStringLower(random);
        return $"Root=1-{epoch:x8}-{hex[..24]};Parent={hex[24..40]};Sampled=0";
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
