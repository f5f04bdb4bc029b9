using System.Diagnostics;
using Lamina.Server.Diagnostics;
using Lamina.Server.Hosting;
using Lamina.Server.Lambda;
using Lamina.Server.Logs;
using Lamina.Server.Sandbox;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Invoke;

/// <summary>
/// Runs an invocation: a warm environment if one is idle (no database, no disk, no process start), else a cold
/// start. Expected failures come back as values; only "no sandbox can be made" is reported as a platform error.
/// </summary>
internal sealed partial class Invoker(EnvironmentPool pool, LogStore logStore, LaminaMetrics metrics, IOptions<LaminaOptions> options, ILogger<Invoker> logger)
{
    // How long an invocation that waits for its log lines waits at most: logs are not the system of record.
    private static readonly TimeSpan LoggedWaitLimit = TimeSpan.FromSeconds(5);

    private readonly TimeSpan _initTimeout = options.Value.InitTimeout;

    /// <summary>
    /// Runs <paramref name="invocation"/>. <paramref name="lease"/> (its admission) is released once the
    /// environment is given back, or at once when the invocation ends without one. <paramref name="untilLogged"/>:
    /// returns only once the invocation's log lines, REPORT included, are stored (asynchronous events are settled
    /// after that, so an event a crash did not let settle runs again, and every settled one has its lines).
    /// </summary>
    public async Task<InvokeOutcome> InvokeAsync(FunctionConfig config, Invocation invocation, bool wantTail, ConcurrencyLease lease, bool untilLogged = false)
    {
        using var activity = StartInvokeActivity(config, invocation);
        metrics.InvocationStarted(config);
        var handedOver = false;
        try
        {
            var outcome = await RunAsync(config, invocation, wantTail, lease, untilLogged);
            handedOver = outcome.LeaseHandedOver;
            return outcome.Outcome;
        }
        finally
        {
            if (!handedOver)
            {
                lease.Release();
                metrics.InvocationEnded(config);
            }
        }
    }

    private async Task<(InvokeOutcome Outcome, bool LeaseHandedOver)> RunAsync(FunctionConfig config, Invocation invocation, bool wantTail, ConcurrencyLease lease, bool untilLogged)
    {
        var environment = pool.TryTakeIdle(config);
        if (environment is null)
        {
            (environment, var failure) = await ColdStartAsync(config, invocation, wantTail, untilLogged);
            if (environment is null)
            {
                return (failure, false);
            }
        }
        else
        {
            Activity.Current?.SetTag("faas.coldstart", false);
        }

        InvocationResult result;
        using (var handler = Tracing.Source.StartActivity("lamina.handler"))
        {
            result = await environment.RunAsync(invocation);
            if (result.Outcome == InvocationOutcome.FunctionError)
            {
                handler?.SetStatus(ActivityStatusCode.Error, result.ErrorType);
            }
        }
        // The environment stays busy until its phase ends (extensions may run on); so does the invocation's unit of concurrency.
        _ = ReturnAfterPhaseAsync(environment, lease, isError: result.Outcome == InvocationOutcome.FunctionError);
        string? tail = null;
        if (wantTail)
        {
            // The tail ends with the REPORT line, written when the phase ends (after extensions, if any).
            await environment.PhaseEnded;
            tail = environment.Log.Tail();
        }
        if (untilLogged)
        {
            await environment.PhaseEnded.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            await logStore.WaitForBufferedAsync(LoggedWaitLimit, CancellationToken.None);
        }
        return (new InvokeOutcome(result, tail), true);
    }

    /// <summary>
    /// The environment for an invocation that found none idle: one of the function's handed over while it waited for
    /// room to start one, or a new one past its Init. Environment is null when the invocation ends here (no sandbox,
    /// or its Init failed): Failure is its outcome.
    /// </summary>
    private async Task<(ExecutionEnvironment? Environment, InvokeOutcome Failure)> ColdStartAsync(FunctionConfig config, Invocation invocation, bool wantTail, bool untilLogged)
    {
        // A cold start creates cgroups and starts processes: never on an I/O thread (see Hosting.IoThreads).
        await IoThreads.LeaveIoThreadAsync();
        // Within the node's room for starts; while there is none, one of the function's environments going idle serves.
        var turn = await pool.WaitToStartAsync(config);
        Activity.Current?.SetTag("faas.coldstart", turn.Idle is null);
        if (turn.Idle is { } handedOver)
        {
            return (handedOver, default);
        }
        var coldStartedAt = TimeProvider.System.GetUtcNow();
        StartResult cold;
        try
        {
            cold = await StartAsync(config, invocation, _initTimeout);
        }
        finally
        {
            // Given back once Init ended or ran out of time: a retry, which may take the function's whole timeout,
            // does not keep other functions from starting.
            if (turn.HoldsRoom)
            {
                pool.EndStart();
            }
        }
        if (cold.Environment is { InitTimedOut: true } timedOut)
        {
            // Lambda retries an Init that ran out of time once, inside the invocation, bounded by the function's timeout.
            pool.Discard(timedOut);
            cold = await StartAsync(config, invocation, TimeSpan.FromSeconds(config.Timeout));
            if (cold.Environment is not null)
            {
                cold.Environment.ColdStart.Reason = timedOut.ColdStart.Reason;
            }
        }
        if (cold.Environment is not { } environment)
        {
            return (null, cold.Failure);
        }
        metrics.RecordColdStart(config, environment.ColdStart.Reason, environment.InitDurationMs);
        if (Activity.Current is not null)
        {
            RecordColdStartPhases(environment.ColdStart, coldStartedAt);
        }
        if (logger.IsEnabled(LogLevel.Information))
        {
            var coldStart = environment.ColdStart;
            var label = ColdStart.Label(coldStart.Reason);
            Log.ColdStart(logger, config.Name, config.Version, label, coldStart.SandboxMs, coldStart.InitMs ?? 0, coldStart.HandlerInitMs);
        }
        if (cold.InitError is not null)
        {
            environment.ReportFailedInit(invocation.RequestId);
            metrics.RecordInvocation(config, environment.InitDurationMs ?? 0, isError: true);
            pool.Discard(environment);
            if (untilLogged)
            {
                await logStore.WaitForBufferedAsync(LoggedWaitLimit, CancellationToken.None);
            }
            return (null, new InvokeOutcome(cold.InitError, wantTail ? environment.Log.Tail() : null));
        }
        return (environment, default);
    }

    private async Task ReturnAfterPhaseAsync(ExecutionEnvironment environment, ConcurrencyLease lease, bool isError)
    {
        try
        {
            try
            {
                await environment.PhaseEnded;
            }
            catch (Exception)
            {
                // A phase that ended in error leaves the environment in an unknown state: stop it (and free its memory).
                pool.Discard(environment);
                return;
            }
            metrics.RecordInvocation(environment.Config, environment.DurationMs, isError); // before another invocation reuses it
            pool.Return(environment);
        }
        finally
        {
            lease.Release();
            metrics.InvocationEnded(environment.Config);
        }
    }

    /// <summary>
    /// The invocation's span, under the caller's trace (its X-Ray header, which the invocation carries); null when
    /// nobody traces. The runtime's trace header then names this span as its parent.
    /// </summary>
    private static Activity? StartInvokeActivity(FunctionConfig config, Invocation invocation)
    {
        if (!Tracing.Source.HasListeners())
        {
            return null;
        }
        // A header that names no trace (malformed) starts a new one.
        var parent = Tracing.TryParseAmzn(invocation.TraceId, out var caller) ? caller : default;
        var activity = Tracing.Source.StartActivity("lamina.invoke", ActivityKind.Server, parent);
        if (activity is null)
        {
            return null;
        }
        activity.SetTag("faas.name", config.Name);
        activity.SetTag("faas.version", config.Version);
        activity.SetTag("faas.invocation_id", invocation.RequestId);
        activity.SetTag("faas.max_memory", config.MemorySize * 1024L * 1024L);
        invocation.TraceId = Tracing.AmznHeader(activity.TraceId, activity.SpanId, activity.Recorded);
        return activity;
    }

    /// <summary>The cold start's phases as child spans, from the durations the environment measured.</summary>
    private static void RecordColdStartPhases(ColdStart coldStart, DateTimeOffset startedAt)
    {
        var sandboxEnd = startedAt.AddMilliseconds(coldStart.SandboxMs);
        Phase("lamina.sandbox", startedAt, sandboxEnd);
        if (coldStart.InitMs is not { } initMs)
        {
            return;
        }
        var initEnd = sandboxEnd.AddMilliseconds(initMs);
        var handlerStart = coldStart.HandlerInitMs is { } handlerMs && handlerMs <= initMs ? initEnd.AddMilliseconds(-handlerMs) : initEnd;
        Phase("lamina.runtime_init", sandboxEnd, handlerStart);
        if (handlerStart < initEnd)
        {
            Phase("lamina.handler_init", handlerStart, initEnd);
        }

        static void Phase(string name, DateTimeOffset start, DateTimeOffset end)
        {
            using var phase = Tracing.Source.StartActivity(name, ActivityKind.Internal, parentContext: default, startTime: start);
            phase?.SetEndTime(end.UtcDateTime);
        }
    }

    /// <summary>Starts an environment and waits for its Init. Environment is null when none could be made.</summary>
    private async Task<StartResult> StartAsync(FunctionConfig config, Invocation invocation, TimeSpan initLimit)
    {
        ExecutionEnvironment environment;
        try
        {
            environment = await pool.StartAsync(config, invocation.RequestId);
        }
        catch (EntrypointException e)
        {
            metrics.RecordInvocation(config, durationMs: null, isError: true);
            return new StartResult(null, null, new InvokeOutcome(InvocationResult.PlatformError("Runtime.InvalidEntrypoint", $"RequestId: {invocation.RequestId} Error: {e.Message}"), null));
        }
        catch (CapacityException e)
        {
            metrics.RecordThrottle(config, LaminaMetrics.MemoryBudgetThrottle);
            return new StartResult(null, null, new InvokeOutcome(null, null, e.Message, ConcurrencyLimiter.AccountLimitReason));
        }
        catch (SandboxException e)
        {
            Log.SandboxStartFailed(logger, config.Name, e.Message);
            return new StartResult(null, null, new InvokeOutcome(null, null, $"The execution environment could not be created: {e.Message}"));
        }
        InvocationResult? initError;
        try
        {
            initError = await environment.WaitForInitAsync(initLimit, invocation.RequestId);
        }
        catch (Exception e)
        {
            pool.Discard(environment);
            return new StartResult(null, null, new InvokeOutcome(null, null, $"The execution environment failed during Init: {e.Message}"));
        }
        return new StartResult(environment, initError, default);
    }

    private readonly record struct StartResult(ExecutionEnvironment? Environment, InvocationResult? InitError, InvokeOutcome Failure);

    private static partial class Log
    {
        [LoggerMessage(EventId = Diagnostics.EventIds.SandboxStartFailed, Level = LogLevel.Error, Message = "Could not start an environment for {Function}: {Reason}")]
        public static partial void SandboxStartFailed(ILogger logger, string function, string reason);

        [LoggerMessage(EventId = Diagnostics.EventIds.ColdStart, Level = LogLevel.Information,
            Message = "Cold start of {Function}:{Version} ({Reason}): sandbox {SandboxMs:F1} ms, init {InitMs:F1} ms, handler init {HandlerInitMs} ms")]
        public static partial void ColdStart(ILogger logger, string function, string version, string reason, double sandboxMs, double initMs, double? handlerInitMs);
    }
}

/// <summary>
/// The result of an invocation, its log tail if asked for, or a platform failure message; with
/// <paramref name="ThrottleReason"/> the failure is a throttle (no room to start an environment).
/// </summary>
internal readonly record struct InvokeOutcome(InvocationResult? Result, string? LogTail, string? PlatformFailure = null, string? ThrottleReason = null);
