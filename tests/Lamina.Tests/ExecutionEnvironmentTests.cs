using System.Text;
using Lamina.Server.Invoke;
using Lamina.Server.Lambda;
using Lamina.Server.Logs;
using Microsoft.Extensions.Time.Testing;

namespace Lamina.Tests;

/// <summary>The Runtime API state machine of one environment, without a sandbox (the runtime's calls are made directly).</summary>
public sealed class ExecutionEnvironmentTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 23, 12, 0, 0, TimeSpan.Zero));

    private ExecutionEnvironment CreateSut(int timeoutSeconds = 3)
    {
        var config = new FunctionConfig
        {
            Name = "f",
            Runtime = "python3.12",
            Role = "arn:aws:iam::000000000000:role/r",
            Handler = "app.handler",
            CodeSha256 = Convert.ToBase64String(new byte[32]),
            CodeSize = 1,
            LastModified = _time.GetUtcNow(),
            RevisionId = Guid.NewGuid().ToString(),
            Timeout = timeoutSeconds,
        };
        return new ExecutionEnvironment("0123456789abcdef0123456789abcdef", config, new InvocationLog("/aws/lambda/f", "s"), _time, new InvocationDeadlines(_time));
    }

    private static Invocation NewInvocation(string id = "req-1") => new()
    {
        RequestId = id,
        Payload = "{\"k\":1}"u8.ToArray(),
        InvokedFunctionArn = "arn:aws:lambda:us-east-1:000000000000:function:f",
        TraceId = "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0",
    };

    [Fact]
    public async Task Next_FirstCall_EndsInit()
    {
        var sut = CreateSut();
        var next = sut.NextAsync(CancellationToken.None);

        Assert.Null(await sut.WaitForInitAsync(TimeSpan.FromSeconds(10), "req-1"));
        Assert.False(next.IsCompleted);
    }

    [Fact]
    public async Task RunAsync_RuntimeResponds_CallerGetsTheBytesAndDeadline()
    {
        var sut = CreateSut();
        var next = sut.NextAsync(CancellationToken.None);
        var invocation = NewInvocation();

        var run = sut.RunAsync(invocation);
        var delivered = await next;
        Assert.Same(invocation, delivered);
        Assert.Equal(_time.GetUtcNow().ToUnixTimeMilliseconds() + 3000, delivered!.DeadlineMs);
        Assert.Equal(RuntimeApiStatus.Accepted, sut.PostResponse("req-1", "\"ok\""u8.ToArray(), "application/json"));

        var result = await run;
        Assert.Equal(InvocationOutcome.Success, result.Outcome);
        Assert.Equal("\"ok\"", Encoding.UTF8.GetString(result.Body.Span));
    }

    [Fact]
    public async Task PostResponse_Twice_SecondIsInvalidRequestId()
    {
        var sut = CreateSut();
        var next = sut.NextAsync(CancellationToken.None);
        var run = sut.RunAsync(NewInvocation());
        await next;

        Assert.Equal(RuntimeApiStatus.Accepted, sut.PostResponse("req-1", "1"u8.ToArray(), null));
        await run;
        Assert.Equal(RuntimeApiStatus.InvalidRequestId, sut.PostResponse("req-1", "2"u8.ToArray(), null));
    }

    [Fact]
    public async Task PostResponse_UnknownId_IsInvalidRequestIdAndDoesNotComplete()
    {
        var sut = CreateSut();
        var next = sut.NextAsync(CancellationToken.None);
        var invocation = NewInvocation();
        var run = sut.RunAsync(invocation);
        await next;

        Assert.Equal(RuntimeApiStatus.InvalidRequestId, sut.PostResponse("someone-else", "1"u8.ToArray(), null));
        Assert.False(invocation.IsCompleted);
        sut.PostResponse("req-1", "1"u8.ToArray(), null);
        await run;
    }

    [Fact]
    public void PostResponse_BeforeAnyInvocation_IsInvalidStateTransition()
    {
        var sut = CreateSut();
        Assert.Equal(RuntimeApiStatus.InvalidState, sut.PostResponse("req-1", "1"u8.ToArray(), null));
    }

    [Fact]
    public async Task Next_WhileAnInvocationIsInProgress_IsRefused()
    {
        var sut = CreateSut();
        var first = sut.NextAsync(CancellationToken.None);
        var run = sut.RunAsync(NewInvocation());
        await first;

        Assert.Null(await sut.NextAsync(CancellationToken.None));
        sut.PostResponse("req-1", "1"u8.ToArray(), null);
        await run;
    }

    [Fact]
    public async Task RunAsync_NoAnswerBeforeTheTimeout_IsSandboxTimedoutAndTheEnvironmentIsReset()
    {
        var sut = CreateSut(timeoutSeconds: 2);
        var next = sut.NextAsync(CancellationToken.None);
        var run = sut.RunAsync(NewInvocation());
        await next;

        _time.Advance(TimeSpan.FromSeconds(2));
        var result = await run;

        Assert.Equal(InvocationOutcome.FunctionError, result.Outcome);
        Assert.Equal("Sandbox.Timedout", result.ErrorType);
        Assert.Contains("RequestId: req-1 Error: Task timed out after 2.00 seconds", Encoding.UTF8.GetString(result.Body.Span), StringComparison.Ordinal);
        Assert.False(sut.IsUsable);
        Assert.Equal(RuntimeApiStatus.InvalidRequestId, sut.PostResponse("req-1", "late"u8.ToArray(), null));
    }

    [Fact]
    public async Task PostError_BodyIsRelayedVerbatimAsAFunctionError()
    {
        var sut = CreateSut();
        var next = sut.NextAsync(CancellationToken.None);
        var run = sut.RunAsync(NewInvocation());
        await next;

        var body = "{\"errorType\":\"ValueError\",\"errorMessage\":\"boom\"}"u8.ToArray();
        Assert.Equal(RuntimeApiStatus.Accepted, sut.PostError("req-1", body, "ValueError"));
        var result = await run;

        Assert.Equal(InvocationOutcome.FunctionError, result.Outcome);
        Assert.Equal(body, result.Body.ToArray());
    }

    [Fact]
    public async Task PostInitError_ReachesTheFirstInvocation()
    {
        var sut = CreateSut();
        var body = "{\"errorType\":\"Runtime.ImportModuleError\",\"errorMessage\":\"x\"}"u8.ToArray();

        Assert.Equal(RuntimeApiStatus.Accepted, sut.PostInitError(body, "Runtime.ImportModuleError"));
        var initError = await sut.WaitForInitAsync(TimeSpan.FromSeconds(10), "req-1");

        Assert.NotNull(initError);
        Assert.Equal("Runtime.ImportModuleError", initError.ErrorType);
        Assert.False(sut.IsUsable);
        Assert.Equal(RuntimeApiStatus.InvalidState, sut.PostInitError(body, "again"));
    }

    [Fact]
    public async Task WaitForInitAsync_RuntimeNeverAsks_TimesOut()
    {
        var sut = CreateSut();
        var wait = sut.WaitForInitAsync(TimeSpan.FromSeconds(10), "req-1");

        _time.Advance(TimeSpan.FromSeconds(10));
        var initError = await wait;

        Assert.Equal("Sandbox.Timedout", initError!.ErrorType);
    }

    [Fact]
    public async Task PostResponseTooLarge_CallerGetsResponseSizeTooLarge()
    {
        var sut = CreateSut();
        var next = sut.NextAsync(CancellationToken.None);
        var run = sut.RunAsync(NewInvocation());
        await next;

        sut.PostResponseTooLarge("req-1", 7_000_000);
        var result = await run;

        Assert.Equal("Function.ResponseSizeTooLarge", result.ErrorType);
    }
}
