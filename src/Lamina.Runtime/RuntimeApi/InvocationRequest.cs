using System.Globalization;

namespace Lamina.Runtime.RuntimeApi;

/// <summary>One event from <c>GET /runtime/invocation/next</c> and its headers (LAMBDA.md §5.2).</summary>
internal sealed class InvocationRequest
{
    public InvocationRequest(Dictionary<string, string> headers, byte[] body)
    {
        Body = body;
        RequestId = headers.GetValueOrDefault("Lambda-Runtime-Aws-Request-Id") ?? "";
        InvokedFunctionArn = headers.GetValueOrDefault("Lambda-Runtime-Invoked-Function-Arn") ?? "";
        TraceId = headers.GetValueOrDefault("Lambda-Runtime-Trace-Id") ?? "";
        ClientContextJson = headers.GetValueOrDefault("Lambda-Runtime-Client-Context");
        CognitoIdentityJson = headers.GetValueOrDefault("Lambda-Runtime-Cognito-Identity");
        DeadlineMs = long.TryParse(headers.GetValueOrDefault("Lambda-Runtime-Deadline-Ms"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var deadline)
            ? deadline
            : long.MaxValue;
    }

    public byte[] Body { get; }

    public string RequestId { get; }

    public string InvokedFunctionArn { get; }

    public string TraceId { get; }

    public string? ClientContextJson { get; }

    public string? CognitoIdentityJson { get; }

    /// <summary>Absolute deadline, Unix epoch milliseconds.</summary>
    public long DeadlineMs { get; }
}
