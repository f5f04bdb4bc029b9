using System.Diagnostics;
using System.Globalization;
using System.Threading.Channels;
using Lamina.Server.Lambda;
using Lamina.Server.Logs;
using Lamina.Server.Sandbox;

namespace Lamina.Server.Invoke;

/// <summary>
/// One execution environment: a sandbox running one function configuration's runtime, serving one invocation at a
/// time. This class is the Runtime API's state machine (Init → Idle ⇄ Busy → Dead) shared by the invoke path and
/// the runtime's HTTP calls.
/// </summary>
internal sealed class ExecutionEnvironment
{
    /// <summary>Largest response a runtime may post (Lambda: 6 MiB + 100 bytes).</summary>
    public const int MaxResponseBytes = 6 * 1024 * 1024 + 100;

    private readonly TimeProvider _time;
    private readonly InvocationDeadlines _deadlines;
    private readonly Lock _lock = new();

    // Runtime API connections served by RuntimeApiConnection whose /next waits, first come first served (under _lock).
    // They are served before the channel, which Kestrel-served connections read (the slow path: see RuntimeApiConnection).
    private readonly List<RuntimeApi.RuntimeApiConnection> _waiters = [];
    private bool _runtimeApiClosed;

    // The runtime's pending /next reads from here; the pool guarantees at most one invocation is outstanding.
    private readonly Channel<Invocation> _next = Channel.CreateBounded<Invocation>(new BoundedChannelOptions(1) { SingleReader = false, SingleWriter = true });

    // Completes with null when the runtime first asks for an invocation (init done), or with the error to report.
    private readonly TaskCompletionSource<InvocationResult?> _init = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly long _createdTimestamp;

    private Invocation? _current;
    private string? _lastRequestId;
    private double? _initDurationMs;
    private volatile bool _dead;
    private int _end; // EnvironmentEnd: why it stopped taking invocations (the first reason wins)
    private int _memoryMb;
    private volatile bool _timedOut;

    public ExecutionEnvironment(string id, FunctionConfig config, InvocationLog log, TimeProvider time, InvocationDeadlines deadlines)
    {
        Id = id;
        Config = config;
        Log = log;
        _time = time;
        _deadlines = deadlines;
        _createdTimestamp = Stopwatch.GetTimestamp();
    }

    public string Id { get; }

    public FunctionConfig Config { get; }

    public InvocationLog Log { get; }

    public Sandbox.Sandbox? Sandbox { get; private set; }

    /// <summary>Account of the function (extensions may ask for it at registration).</summary>
    public string AccountId { get; init; } = "000000000000";

    /// <summary>The extensions registered in this environment.</summary>
    public ExtensionSet Extensions { get; } = new();

    /// <summary>Telemetry API subscriptions, created by the first subscriber.</summary>
    public Telemetry? Telemetry { get; private set; }

    /// <summary><c>PUT /2022-07-01/telemetry</c>: returns an error message for a bad request.</summary>
    public string? SubscribeTelemetry(string extension, System.Text.Json.JsonElement request)
    {
        lock (_lock)
        {
            Telemetry ??= new Telemetry(port => Sandbox?.ConnectToLoopback(port) ?? throw new Sandbox.SandboxException("the sandbox is gone"), _time);
        }
        return Telemetry.Subscribe(extension, request);
    }

    /// <summary>False once the environment crashed, timed out or was stopped; it never takes another invocation.</summary>
    public bool IsUsable => !_dead;

    /// <summary>Why the environment stopped taking invocations (<see cref="EnvironmentEnd.None"/> while it is usable).</summary>
    public EnvironmentEnd End => (EnvironmentEnd)Volatile.Read(ref _end);

    /// <summary>The SHUTDOWN event's reason for extensions: <c>timeout</c>, <c>failure</c> (crash, OOM, failed Init) or <c>spindown</c>.</summary>
    public string ShutdownReason => End == EnvironmentEnd.Failed ? (_timedOut ? "timeout" : "failure") : "spindown";

    /// <summary>True once Init succeeded: the runtime asked for its first event and every extension settled.</summary>
    public bool Initialized { get; private set; }

    /// <summary>Initialised ahead of traffic for provisioned concurrency (<c>AWS_LAMBDA_INITIALIZATION_TYPE</c>); its REPORT has no Init Duration.</summary>
    public bool ProvisionedInit { get; init; }

    /// <summary>The provisioned concurrency this environment counts for, if any (the pool keeps it warm and replaces it).</summary>
    public ProvisionedTarget? Provisioned { get; set; }

    /// <summary>Why this environment was started, and how long each phase of its cold start took.</summary>
    public ColdStart ColdStart { get; } = new();

    /// <summary>When the environment was started (wall clock), for operators.</summary>
    public DateTimeOffset StartedAt { get; init; }

    /// <summary>The environment's role credentials (its <c>AWS_ACCESS_KEY_ID</c> etc.), accepted only on its own connections.</summary>
    public Security.SessionCredentials? Credentials { get; init; }

    /// <summary>Counts <paramref name="memoryMb"/> against the node's memory budget until <see cref="TakeMemory"/>.</summary>
    public void HoldMemory(int memoryMb) => Volatile.Write(ref _memoryMb, memoryMb);

    /// <summary>Gives the environment's share of the memory budget back, once (0 on later calls).</summary>
    public int TakeMemory() => Interlocked.Exchange(ref _memoryMb, 0);

    /// <summary>When the environment last finished an invocation (for idle reaping).</summary>
    public long IdleSinceTimestamp { get; set; }

    /// <summary>The invocation that started this environment (cold start), named in errors that end its Init.</summary>
    public string InitRequestId { get; set; } = "";

    public void Attach(Sandbox.Sandbox sandbox)
    {
        Sandbox = sandbox;
        sandbox.Exited.ContinueWith(static (t, state) => ((ExecutionEnvironment)state!).OnExited(t.GetAwaiter().GetResult()), this, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>
    /// Waits for the Init phase to end: the runtime and every extension have asked for their first event. Returns null
    /// on success, or the error the first invocation gets (<see cref="InitTimedOut"/> tells a timeout apart).
    /// </summary>
    public async Task<InvocationResult?> WaitForInitAsync(TimeSpan limit, string requestId)
    {
        InvocationResult? outcome;
        var started = Stopwatch.GetTimestamp();
        try
        {
            outcome = await _init.Task.WaitAsync(limit, _time);
            if (outcome is null && Extensions.Any)
            {
                await Extensions.WaitSettledAsync(CancellationToken.None).WaitAsync(Remaining(limit, started), _time);
            }
        }
        catch (TimeoutException)
        {
            InitTimedOut = true;
            outcome = InvocationResult.PlatformError("Sandbox.Timedout",
                string.Create(CultureInfo.InvariantCulture, $"RequestId: {requestId} Error: Task timed out after {limit.TotalSeconds:F2} seconds"));
            _init.TrySetResult(outcome);
        }
        InitDurationMs = _initDurationMs = Stopwatch.GetElapsedTime(_createdTimestamp).TotalMilliseconds;
        var initDuration = _initDurationMs.Value;
        ColdStart.InitMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        Initialized = outcome is null;
        var initializationType = ProvisionedInit ? "provisioned-concurrency" : "on-demand";
        Telemetry?.Publish("platform.initReport", w =>
        {
            w.WriteString("initializationType", initializationType);
            w.WriteString("phase", "init");
            w.WriteString("status", outcome is null ? "success" : InitTimedOut ? "timeout" : "error");
            w.WriteStartObject("metrics");
            w.WriteNumber("durationMs", Math.Round(initDuration, 3));
            w.WriteEndObject();
        });
        if (ProvisionedInit)
        {
            _initDurationMs = null; // Init ran ahead of traffic: no invocation reports it (Lambda's REPORT has no Init Duration then).
        }
        if (outcome is not null)
        {
            MarkDead(EnvironmentEnd.Failed);
            // Whatever the failed runtime printed belongs to the error's invocation log.
            Sandbox?.DrainOutput(flushPartialLines: true);
        }
        return outcome;
    }

    /// <summary>True when Init failed by running out of time (Lambda then retries it once inside the invocation).</summary>
    public bool InitTimedOut { get; private set; }

    /// <summary>How long Init took, from the environment's creation (the first REPORT's Init Duration); null until it ended.</summary>
    public double? InitDurationMs { get; private set; }

    /// <summary>The last invocation's Duration, as its REPORT line states it (set when its phase ends).</summary>
    public double DurationMs { get; private set; }

    /// <summary>
    /// Runs one invocation until the runtime answers (or times out, or crashes) and returns what the caller gets.
    /// The invoke phase goes on until every extension has asked for its next event: <see cref="PhaseEnded"/>.
    /// </summary>
    public async Task<InvocationResult> RunAsync(Invocation invocation)
    {
        var started = Stopwatch.GetTimestamp();
        var timeout = TimeSpan.FromSeconds(Config.Timeout);
        invocation.DeadlineMs = _time.GetUtcNow().ToUnixTimeMilliseconds() + (long)timeout.TotalMilliseconds;
        Log.Start(invocation.RequestId, Config.Version, includeInitOutput: _initDurationMs is not null);
        if (Telemetry is { } startTelemetry)
        {
            PublishStart(startTelemetry, invocation.RequestId, Config.Version);
        }
        lock (_lock)
        {
            _current = invocation;
        }
        // One sweep watches every running invocation's deadline (TimeOut), not a timer each.
        _deadlines.Add(invocation, this, timeout);
        if (_dead)
        {
            // The runtime died between init and this invocation.
            var exit = Sandbox?.Exited is { IsCompleted: true } exited ? exited.GetAwaiter().GetResult() : new SandboxExitInfo(-1, false);
            invocation.TryComplete(ExitResult(invocation.RequestId, exit));
        }
        else
        {
            Deliver(invocation);
            if (Extensions.Any)
            {
                Extensions.Invoke(invocation);
            }
        }

        var result = await invocation.Completion;
        _deadlines.Remove(invocation);
        string? status = invocation.TimedOut ? "timeout" : null;
        lock (_lock)
        {
            _current = null;
            _lastRequestId = invocation.RequestId;
        }

        if (status is null && result.Outcome != InvocationOutcome.Success && _dead)
        {
            status = "error";
        }
        if (Telemetry is { } doneTelemetry)
        {
            PublishRuntimeDone(doneTelemetry, invocation.RequestId, status ?? (result.Outcome == InvocationOutcome.Success ? "success" : "error"),
                Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }
        PhaseEnded = status is null && Extensions.Any
            ? FinishAfterExtensionsAsync(invocation, started, timeout)
            : Finish(invocation, started, status);
        return result;
    }

    // What is left of a limit; never negative (WaitAsync takes -1 ms as "forever" and throws below it).
    private static TimeSpan Remaining(TimeSpan limit, long started)
    {
        var left = limit - Stopwatch.GetElapsedTime(started);
        return left > TimeSpan.Zero ? left : TimeSpan.Zero;
    }

    /// <summary>Completes when the invocation's phase is over and its REPORT line written.</summary>
    public Task PhaseEnded { get; private set; } = Task.CompletedTask;

    /// <summary>
    /// The invocation's deadline passed (<see cref="InvocationDeadlines"/>): unless the runtime answered first, the caller
    /// gets Sandbox.Timedout and the environment is reset — the runtime is killed, the next invocation starts cold.
    /// Extensions outlive it to get their SHUTDOWN event (reason "timeout") when the pool stops the environment.
    /// </summary>
    internal void TimeOut(Invocation invocation)
    {
        var timeout = TimeSpan.FromSeconds(Config.Timeout);
        var timedOut = InvocationResult.PlatformError("Sandbox.Timedout",
            string.Create(CultureInfo.InvariantCulture, $"RequestId: {invocation.RequestId} Error: Task timed out after {timeout.TotalSeconds:F2} seconds"));
        if (!invocation.TryClaim(timedOut))
        {
            return;
        }
        // The log line and the kill come before the caller's continuation, which writes END and REPORT.
        invocation.TimedOut = true;
        _timedOut = true;
        MarkDead(EnvironmentEnd.Failed);
        Sandbox?.DrainOutput(flushPartialLines: true);
        if (Extensions.Any)
        {
            Sandbox?.KillRuntime();
        }
        else
        {
            Sandbox?.Kill();
        }
        Log.Append(string.Create(CultureInfo.InvariantCulture, $"{InvocationLog.Timestamp(_time.GetUtcNow())} {invocation.RequestId} Task timed out after {timeout.TotalSeconds:F2} seconds"));
        invocation.Release(inline: false);
    }

    // Extensions keep the invocation open after the runtime answered; the whole phase stays within the timeout.
    private async Task FinishAfterExtensionsAsync(Invocation invocation, long started, TimeSpan timeout)
    {
        string? status = null;
        try
        {
            await Extensions.WaitSettledAsync(CancellationToken.None).WaitAsync(Remaining(timeout, started), _time);
        }
        catch (TimeoutException)
        {
            MarkDead(EnvironmentEnd.Failed);
            Sandbox?.Kill();
            Log.Append(string.Create(CultureInfo.InvariantCulture, $"{InvocationLog.Timestamp(_time.GetUtcNow())} {invocation.RequestId} Task timed out after {timeout.TotalSeconds:F2} seconds"));
            status = "timeout";
        }
        await Finish(invocation, started, status);
    }

    private Task Finish(Invocation invocation, long started, string? status)
    {
        var duration = DurationMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        if (status != "timeout")
        {
            Sandbox?.DrainOutput(flushPartialLines: true);
        }
        Log.End(invocation.RequestId);
        var memoryMb = (Sandbox?.Cgroup.MemoryPeakBytes() ?? 0) / (1024 * 1024);
        Log.Report(invocation.RequestId, duration, Config.MemorySize, memoryMb, _initDurationMs, status);
        if (Telemetry is { } telemetry)
        {
            PublishReport(telemetry, invocation.RequestId, status, duration, Config.MemorySize, memoryMb, _initDurationMs);
        }
        _initDurationMs = null; // Init Duration is reported on the first invocation only.
        return Task.CompletedTask;
    }

    // The platform records for Telemetry API subscribers, apart so that their closures are only made when somebody subscribed.
    private static void PublishStart(Telemetry telemetry, string requestId, string version) => telemetry.Publish("platform.start", w =>
    {
        w.WriteString("requestId", requestId);
        w.WriteString("version", version);
    });

    private static void PublishRuntimeDone(Telemetry telemetry, string requestId, string status, double durationMs) => telemetry.Publish("platform.runtimeDone", w =>
    {
        w.WriteString("requestId", requestId);
        w.WriteString("status", status);
        w.WriteStartObject("metrics");
        w.WriteNumber("durationMs", Math.Round(durationMs, 3));
        w.WriteEndObject();
    });

    private static void PublishReport(Telemetry telemetry, string requestId, string? status, double duration, int memorySizeMb, long memoryMb, double? initDurationMs) =>
        telemetry.Publish("platform.report", w =>
        {
            w.WriteString("requestId", requestId);
            w.WriteString("status", status ?? "success");
            w.WriteStartObject("metrics");
            w.WriteNumber("durationMs", Math.Round(duration, 3));
            w.WriteNumber("billedDurationMs", (long)Math.Ceiling(duration));
            w.WriteNumber("memorySizeMB", memorySizeMb);
            w.WriteNumber("maxMemoryUsedMB", memoryMb);
            if (initDurationMs is { } init)
            {
                w.WriteNumber("initDurationMs", Math.Round(init, 3));
            }
            w.WriteEndObject();
        });

    /// <summary>Writes the platform lines of an invocation that never reached a runtime (init failed).</summary>
    public void ReportFailedInit(string requestId)
    {
        Log.Start(requestId, Config.Version, includeInitOutput: true);
        Log.End(requestId);
        var memoryMb = (Sandbox?.Cgroup.MemoryPeakBytes() ?? 0) / (1024 * 1024);
        Log.Report(requestId, _initDurationMs ?? 0, Config.MemorySize, memoryMb, _initDurationMs, "error");
    }

    // ---- Runtime API side -------------------------------------------------------------------------------------

    /// <summary><c>GET /runtime/invocation/next</c>: ends Init on the first call, then waits for an invocation.</summary>
    public async ValueTask<Invocation?> NextAsync(CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            if (_current is { Delivered: true, IsCompleted: false })
            {
                return null; // 403: one invocation at a time.
            }
        }
        Extensions.CloseRegistration(); // The runtime is running: extensions had their chance.
        _init.TrySetResult(null);
        var invocation = await _next.Reader.ReadAsync(cancellationToken);
        invocation.Delivered = true;
        return invocation;
    }

    /// <summary>
    /// Hands <paramref name="invocation"/> to the runtime: to the first <see cref="RuntimeApi.RuntimeApiConnection"/>
    /// waiting in <c>/next</c> (it writes the event on this thread, no hand-off), else to the channel that
    /// Kestrel-served <c>/next</c> requests read, or that the next <c>/next</c> takes.
    /// </summary>
    internal void Deliver(Invocation invocation)
    {
        while (true)
        {
            RuntimeApi.RuntimeApiConnection waiter;
            lock (_lock)
            {
                if (_waiters.Count == 0)
                {
                    // Under the lock: a connection that starts waiting now either finds it in the channel or is found here.
                    _next.Writer.TryWrite(invocation);
                    return;
                }
                waiter = _waiters[0];
                _waiters.RemoveAt(0);
            }
            if (waiter.TryDeliver(invocation))
            {
                return;
            }
            // That connection went away (or the environment closes it): the next one, or the channel.
        }
    }

    /// <summary>
    /// <c>GET /runtime/invocation/next</c> from a connection served by <see cref="RuntimeApi.RuntimeApiConnection"/>: the
    /// invocation if one is there (<see cref="NextOutcome.Ready"/>), else the connection waits for
    /// <see cref="Deliver"/> (<see cref="NextOutcome.Waiting"/>; it has been told through BeginWait under the lock).
    /// </summary>
    internal NextOutcome TakeNext(RuntimeApi.RuntimeApiConnection connection, out Invocation? invocation)
    {
        invocation = null;
        lock (_lock)
        {
            if (_current is { Delivered: true, IsCompleted: false })
            {
                return NextOutcome.Busy; // 403: one invocation at a time.
            }
        }
        Extensions.CloseRegistration(); // The runtime is running: extensions had their chance.
        _init.TrySetResult(null);
        lock (_lock)
        {
            if (_next.Reader.TryRead(out invocation))
            {
                return NextOutcome.Ready;
            }
            if (_runtimeApiClosed)
            {
                return NextOutcome.Closed;
            }
            connection.BeginWait();
            _waiters.Add(connection);
            return NextOutcome.Waiting;
        }
    }

    /// <summary>A waiting connection went away before anything was delivered to it.</summary>
    internal void RemoveWaiter(RuntimeApi.RuntimeApiConnection connection)
    {
        lock (_lock)
        {
            _waiters.Remove(connection);
        }
    }

    /// <summary>
    /// <c>POST /runtime/invocation/{id}/response|error</c> from a <see cref="RuntimeApi.RuntimeApiConnection"/>: claims the
    /// current invocation for <paramref name="result"/> without releasing its caller, which the connection does once
    /// it has answered the runtime (<see cref="Invocation.Release"/>, inline).
    /// </summary>
    internal RuntimeApiStatus Claim(ReadOnlySpan<char> requestId, InvocationResult result, out Invocation? claimed)
    {
        lock (_lock)
        {
            claimed = null;
            var current = _current;
            if (current is null || !current.Delivered)
            {
                return requestId.SequenceEqual(_lastRequestId) ? RuntimeApiStatus.InvalidRequestId : RuntimeApiStatus.InvalidState;
            }
            if (!requestId.SequenceEqual(current.RequestId) || !current.TryClaim(result))
            {
                return RuntimeApiStatus.InvalidRequestId;
            }
            claimed = current;
            return RuntimeApiStatus.Accepted;
        }
    }

    /// <summary><c>POST /runtime/invocation/{id}/response</c>.</summary>
    public RuntimeApiStatus PostResponse(string requestId, ReadOnlyMemory<byte> body, string? contentType) =>
        Complete(requestId, InvocationResult.Success(body, contentType));

    /// <summary><c>POST /runtime/invocation/{id}/error</c>: the body is relayed verbatim.</summary>
    public RuntimeApiStatus PostError(string requestId, ReadOnlyMemory<byte> body, string? errorType) =>
        Complete(requestId, InvocationResult.FunctionError(body, errorType));

    /// <summary>
    /// A streamed <c>POST /runtime/invocation/{id}/response</c> begins: checks, as <see cref="Claim"/> does, that it
    /// answers the current invocation, without claiming it yet (the outcome is known when the stream ends, see
    /// <see cref="PostStreamed"/>). One streamed response per invocation.
    /// </summary>
    internal RuntimeApiStatus BeginStream(string requestId, out Invocation? invocation)
    {
        lock (_lock)
        {
            invocation = null;
            var current = _current;
            if (current is null || !current.Delivered)
            {
                return requestId == _lastRequestId ? RuntimeApiStatus.InvalidRequestId : RuntimeApiStatus.InvalidState;
            }
            if (requestId != current.RequestId || current.IsCompleted || current.StreamBegun)
            {
                return RuntimeApiStatus.InvalidRequestId;
            }
            current.StreamBegun = true;
            invocation = current;
            return RuntimeApiStatus.Accepted;
        }
    }

    /// <summary>The end of a streamed response: the invocation's outcome (unless a timeout or crash ended it first).</summary>
    public RuntimeApiStatus PostStreamed(string requestId, InvocationResult result) => Complete(requestId, result);

    /// <summary>The runtime tried to post a response over the limit: the caller gets Function.ResponseSizeTooLarge.</summary>
    public RuntimeApiStatus PostResponseTooLarge(string requestId, long size) =>
        Complete(requestId, InvocationResult.PlatformError("Function.ResponseSizeTooLarge",
            string.Create(CultureInfo.InvariantCulture, $"Response payload size ({size} bytes) exceeded maximum allowed payload size ({MaxResponseBytes} bytes).")));

    /// <summary><c>POST /runtime/init/error</c>: the pending first invocation gets this error.</summary>
    public RuntimeApiStatus PostInitError(ReadOnlyMemory<byte> body, string? errorType)
    {
        if (_init.Task.IsCompleted)
        {
            return RuntimeApiStatus.InvalidState;
        }
        _init.TrySetResult(InvocationResult.FunctionError(body, errorType ?? "Runtime.Unknown"));
        return RuntimeApiStatus.Accepted;
    }

    /// <summary>Stops taking invocations (the configuration was replaced, the server is stopping, it failed…) for <paramref name="reason"/>.</summary>
    public void MarkDead(EnvironmentEnd reason)
    {
        Interlocked.CompareExchange(ref _end, (int)reason, (int)EnvironmentEnd.None);
        _dead = true;
    }

    /// <summary>
    /// Ends the runtime's pending <c>next</c> (it answers 500 and the runtime exits): the last step of Shutdown,
    /// after the extensions had their SHUTDOWN event.
    /// </summary>
    public void CloseRuntimeApi()
    {
        RuntimeApi.RuntimeApiConnection[] waiters;
        lock (_lock)
        {
            _runtimeApiClosed = true;
            waiters = [.. _waiters];
            _waiters.Clear();
        }
        _next.Writer.TryComplete();
        foreach (var waiter in waiters)
        {
            waiter.Close();
        }
    }

    private RuntimeApiStatus Complete(string requestId, InvocationResult result)
    {
        var status = Claim(requestId, result, out var claimed);
        claimed?.Release(inline: false);
        return status;
    }

    /// <summary>
    /// The runtime process ended while its sandbox lives on for the extensions (Lamina's Init script reports it with
    /// the exit status): the same as the sandbox exiting, for the invocation and the environment.
    /// </summary>
    public void OnRuntimeExited(int status) => OnExited(new SandboxExitInfo(status, Sandbox?.Cgroup.OomKills() > 0));

    private void OnExited(SandboxExitInfo exit)
    {
        MarkDead(EnvironmentEnd.Failed); // unless it was being stopped already (then that reason stands)
        Invocation? current;
        lock (_lock)
        {
            current = _current;
        }
        _init.TrySetResult(ExitResult(InitRequestId, exit));
        if (current is not null)
        {
            current.TryComplete(ExitResult(current.RequestId, exit));
        }
    }

    private static InvocationResult ExitResult(string requestId, SandboxExitInfo exit)
    {
        var prefix = requestId.Length > 0 ? $"RequestId: {requestId} " : "";
        return exit.OutOfMemory
            ? InvocationResult.PlatformError("Runtime.OutOfMemory", $"{prefix}Error: Runtime exited with error: signal: killed")
            : InvocationResult.PlatformError("Runtime.ExitError", $"{prefix}Error: Runtime exited with error: {exit.Describe()}");
    }
}

/// <summary>Why an environment stopped taking invocations; the next cold start of its configuration is explained by it.</summary>
internal enum EnvironmentEnd
{
    None,

    /// <summary>It crashed, timed out, ran out of memory or failed its Init.</summary>
    Failed,

    /// <summary>Idle past the keep-alive time, or evicted for the node's memory budget.</summary>
    Evicted,

    /// <summary>Its configuration stopped being current (code or configuration changed, deleted).</summary>
    Retired,

    /// <summary>The server is stopping, or provisioned concurrency no longer needs it.</summary>
    Stopped,
}

/// <summary>Why an environment was started, as operators and metrics name it.</summary>
internal enum ColdStartReason
{
    /// <summary>The configuration's first environment.</summary>
    FirstInvoke,

    /// <summary>Every environment of the configuration was busy.</summary>
    ScaleOut,

    /// <summary>The configuration's environments had been reaped when idle or evicted for memory.</summary>
    AfterEviction,

    /// <summary>The function's code or configuration changed since its last environment.</summary>
    AfterUpdate,

    /// <summary>The configuration's last environment crashed, timed out or failed its Init.</summary>
    AfterFailure,

    /// <summary>Started ahead of traffic for provisioned concurrency.</summary>
    Provisioned,
}

/// <summary>A cold start: its reason and phases (sandbox creation, then Init, of which the handler's part when the runtime reports it).</summary>
internal sealed class ColdStart
{
    public ColdStartReason Reason { get; set; }

    /// <summary>From the decision to start to a running sandbox (namespaces, cgroup, mounts, network).</summary>
    public double SandboxMs { get; set; }

    /// <summary>Init: extensions, runtime and handler, until the runtime first asks for an event.</summary>
    public double? InitMs { get; set; }

    /// <summary>The handler's own part of Init (module load, static initialisers), when the runtime reports it.</summary>
    public double? HandlerInitMs { get; set; }

    /// <summary>The label metrics and operators see: <c>first_invoke</c>, <c>scale_out</c>, <c>after_eviction</c>, …</summary>
    public static string Label(ColdStartReason reason) => reason switch
    {
        ColdStartReason.FirstInvoke => "first_invoke",
        ColdStartReason.ScaleOut => "scale_out",
        ColdStartReason.AfterEviction => "after_eviction",
        ColdStartReason.AfterUpdate => "after_update",
        ColdStartReason.AfterFailure => "after_failure",
        _ => "provisioned",
    };
}

/// <summary>What a <c>/next</c> finds: an invocation, nothing yet (it waits), one in progress (403), or the end (500).</summary>
internal enum NextOutcome
{
    Ready,
    Waiting,
    Busy,
    Closed,
}

/// <summary>What the Runtime API answers a runtime's post.</summary>
internal enum RuntimeApiStatus
{
    Accepted,
    InvalidRequestId,
    InvalidState,
}
