using System.Text;
using Lamina.Server.Invoke;
using Lamina.Server.Lambda;
using Lamina.Server.Logs;
using Microsoft.Extensions.Time.Testing;

namespace Lamina.Tests.Invoke;

/// <summary>One timer for every running invocation's deadline (issue #19): it fires for what expired, and only that.</summary>
public sealed class InvocationDeadlinesTests : IDisposable
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 5, 12, 0, 0, TimeSpan.Zero));
    private readonly InvocationDeadlines _deadlines;

    public InvocationDeadlinesTests() => _deadlines = new InvocationDeadlines(_time);

    public void Dispose() => _deadlines.Dispose();

    private ExecutionEnvironment CreateEnvironment(int timeoutSeconds) => new(Guid.NewGuid().ToString("N"), new FunctionConfig
    {
        Name = "f" + timeoutSeconds,
        Runtime = "python3.12",
        Role = "arn:aws:iam::000000000000:role/r",
        Handler = "app.handler",
        CodeSha256 = Convert.ToBase64String(new byte[32]),
        CodeSize = 1,
        LastModified = _time.GetUtcNow(),
        RevisionId = "r",
        Timeout = timeoutSeconds,
    }, new InvocationLog("/aws/lambda/f", "s"), _time, _deadlines);

    private static Invocation NewInvocation(string id) => new()
    {
        RequestId = id,
        Payload = "{}"u8.ToArray(),
        InvokedFunctionArn = "arn:aws:lambda:us-east-1:000000000000:function:f",
        TraceId = "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0",
    };

    private static async Task<(ExecutionEnvironment Environment, Task<InvocationResult> Run)> StartAsync(ExecutionEnvironment environment, string id)
    {
        var next = environment.NextAsync(CancellationToken.None);
        await environment.WaitForInitAsync(TimeSpan.FromSeconds(10), "init");
        var run = environment.RunAsync(NewInvocation(id));
        await next;
        return (environment, run);
    }

    [Fact]
    public async Task Sweep_TwoDeadlines_EachTimesOutAtItsOwn()
    {
        var (shortOne, shortRun) = await StartAsync(CreateEnvironment(1), "short");
        var (longOne, longRun) = await StartAsync(CreateEnvironment(3), "long");

        _time.Advance(TimeSpan.FromMilliseconds(999));
        Assert.False(shortRun.IsCompleted);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal("Sandbox.Timedout", (await shortRun).ErrorType);
        Assert.False(shortOne.IsUsable);
        Assert.False(longRun.IsCompleted);

        _time.Advance(TimeSpan.FromSeconds(2));
        var result = await longRun;
        Assert.Equal("Sandbox.Timedout", result.ErrorType);
        Assert.Contains("Task timed out after 3.00 seconds", Encoding.UTF8.GetString(result.Body.Span), StringComparison.Ordinal);
        Assert.False(longOne.IsUsable);
    }

    [Fact]
    public async Task Sweep_AnsweredInTime_NeverTimesOutAndTheEnvironmentStays()
    {
        var (environment, run) = await StartAsync(CreateEnvironment(1), "quick");
        Assert.Equal(RuntimeApiStatus.Accepted, environment.PostResponse("quick", "1"u8.ToArray(), null));
        Assert.Equal(InvocationOutcome.Success, (await run).Outcome);

        _time.Advance(TimeSpan.FromSeconds(5));

        Assert.True(environment.IsUsable);
        Assert.Equal(RuntimeApiStatus.InvalidRequestId, environment.PostResponse("quick", "again"u8.ToArray(), null));
    }

    [Fact]
    public async Task Sweep_AnEarlierDeadlineAddedLater_RearmsTheTimer()
    {
        var (_, longRun) = await StartAsync(CreateEnvironment(10), "long");
        var (_, shortRun) = await StartAsync(CreateEnvironment(1), "short");

        _time.Advance(TimeSpan.FromSeconds(1));

        Assert.Equal("Sandbox.Timedout", (await shortRun).ErrorType);
        Assert.False(longRun.IsCompleted);
    }
}
