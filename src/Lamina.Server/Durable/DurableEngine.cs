using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Lamina.Server.Hosting;
using Lamina.Server.Invoke;
using Lamina.Server.Lambda;
using Lamina.Server.Protocols;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Durable;

/// <summary>
/// Runs durable executions (Lambda API 2025-12-01). An execution is a log of operations (steps, waits, callbacks,
/// child contexts, chained invokes) that the function checkpoints through <c>CheckpointDurableExecution</c>; each
/// invocation gets the whole log (<c>InitialExecutionState</c>) and replays it, so completed steps are not run again.
/// When the function answers <c>PENDING</c> (it waits for time, a callback or another function) no environment is
/// held: one loop, woken by changes and every 250 ms, completes elapsed waits, due retries and expired callbacks and
/// invokes the function again (chained invokes: <c>DurableEngine.Chained.cs</c>). The log is in <c>durable.db</c>;
/// after a restart every running execution is simply invoked again and replays.
/// </summary>
/// <remarks>
/// On a cluster (issue #25) the log is on PostgreSQL and the engine runs on one node, the holder of the
/// <see cref="Lease"/> lease: when a node gains it, it loads the executions as a restart does (running ones are
/// invoked again and replay); when it loses it, it forgets them and stops sweeping. The other nodes forward durable
/// requests to the holder (<see cref="Storage.LeaseForwarder"/>). A dead holder's lease lapses and another node takes over:
/// the restart recovery, on another node.
/// </remarks>
internal sealed partial class DurableEngine(DurableStore store, FunctionRegistry registry, Invoker invoker, ConcurrencyLimiter limiter,
    IOptions<LaminaOptions> options, TimeProvider time, Storage.ClusterNode cluster, ILogger<DurableEngine> logger) : BackgroundService, IHostedLifecycleService
{
    /// <summary>The cluster lease whose holder runs the durable executions.</summary>
    public const string Lease = "durable";

    private const int MaxFailedInvocations = 3;
    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(250);

    // The running executions, by ARN and by name, and their callbacks. An ended one leaves memory (it is kept in the
    // store for its retention, 14 days by default, and read from there when asked for): memory, the sweep four times a
    // second and a start's load grow with what runs, not with everything that ran.
    private readonly ConcurrentDictionary<string, DurableExecution> _executions = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, DurableExecution> _byName = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, (DurableExecution Execution, string OperationId)> _callbacks = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _signal = new(0);
    private readonly Lock _startLock = new();
    private long _lastRetentionSweepMs;
    private volatile bool _loaded; // the executions are in memory (on a cluster: this node gained the lease and loaded them)

    /// <summary>Whether this node runs the durable executions now: always on a single machine; on a cluster, while it holds the lease and has loaded them.</summary>
    public bool Serving => _loaded && cluster.Holds(Lease);

    /// <summary>Whether <paramref name="forwarder"/> handed the request to the node that runs the executions (false: this node answers it).</summary>
    public Task<bool> ForwardedAsync(Storage.LeaseForwarder forwarder, HttpContext context, ReadOnlyMemory<byte>? body = null) =>
        forwarder.ForwardedAsync(context, Lease, () => Serving, static context =>
            new AwsError(503, "ServiceException", "No node of the cluster runs durable executions at the moment (it is failing over); retry the request.")
                .ExecuteAsync(context), body);

    private long NowMs => time.GetUtcNow().ToUnixTimeMilliseconds();

    // ---- lifecycle ------------------------------------------------------------------------------------------------

    public Task StartingAsync(CancellationToken cancellationToken)
    {
        if (cluster.Enabled)
        {
            cluster.RequestLease(Lease); // loaded once held (ExecuteAsync)
            return Task.CompletedTask;
        }
        Load();
        return Task.CompletedTask;
    }

    /// <summary>Loads the running executions from the log, each due to be invoked again (it replays).</summary>
    private void Load()
    {
        var now = NowMs;
        foreach (var execution in store.Open())
        {
            // Whatever ran when the server stopped is gone: the execution is invoked again and replays its log.
            Index(execution);
            execution.NeedsRun = true;
            execution.DueMs = now;
            NoteWaitingChainedInvokes(execution);
        }
        Log.Loaded(logger, _executions.Count);
        _loaded = true;
    }

    /// <summary>
    /// The lease moved away: forgets every execution (the new holder loads them from the log). Synchronous invokers
    /// waiting here are told to retry; an invocation still running here can no longer write (<see cref="DurableStore"/>'s fence).
    /// </summary>
    private void Drop()
    {
        _loaded = false;
        foreach (var execution in _executions.Values)
        {
            lock (execution.Lock)
            {
                execution.Token = null;
                execution.NeedsRun = false;
            }
            execution.Done.TrySetCanceled();
        }
        _executions.Clear();
        _byName.Clear();
        _callbacks.Clear();
        _waitingAtStart.Clear();
        Log.LeaseLost(logger);
    }

    public Task StartedAsync(CancellationToken cancellationToken)
    {
        if (_loaded)
        {
            ResumeChainedInvokes(); // once the functions are loaded
        }
        return Task.CompletedTask;
    }

    public Task StoppingAsync(CancellationToken cancellationToken)
    {
        _stopping.Cancel();
        return Task.CompletedTask;
    }
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private void Index(DurableExecution execution)
    {
        _executions[execution.Arn] = execution;
        _byName[NameKey(execution.FunctionKey, execution.Name)] = execution;
        foreach (var operation in execution.Operations)
        {
            if ((string?)operation["CallbackDetails"]?["CallbackId"] is { } callbackId)
            {
                _callbacks[callbackId] = (execution, (string)operation["Id"]!);
            }
        }
    }

    private static string NameKey(string functionKey, string name) => functionKey + "\n" + name;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await _signal.WaitAsync(Tick, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            try
            {
                if (cluster.Enabled)
                {
                    var holds = cluster.Holds(Lease);
                    if (holds && !_loaded)
                    {
                        Load(); // as after a restart: running executions are invoked again and replay
                        ResumeChainedInvokes();
                    }
                    else if (!holds && _loaded)
                    {
                        Drop();
                    }
                    if (!_loaded)
                    {
                        continue;
                    }
                }
                Sweep();
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                Log.SweepFailed(logger, e);
            }
        }
    }

    private void Wake() => _signal.Release();

    /// <summary>One pass over the running executions: timeouts, elapsed timers, invocations that are due.</summary>
    private void Sweep()
    {
        var now = NowMs;
        foreach (var execution in _executions.Values)
        {
            string? token = null;
            lock (execution.Lock)
            {
                if (!execution.IsRunning)
                {
                    continue;
                }
                if (now >= execution.StartMs + execution.TimeoutSeconds * 1000L)
                {
                    Finish(execution, "TIMED_OUT", null, Error("Execution.TimedOut",
                        string.Create(CultureInfo.InvariantCulture, $"The execution timed out after {execution.TimeoutSeconds} seconds.")));
                    continue;
                }
                var eventsFrom = execution.Events.Count;
                var changed = Materialize(execution, now);
                if (changed.Count > 0)
                {
                    store.Save(execution, changed, eventsFrom);
                    ResumeAfterChange(execution, now);
                }
                if (execution.Token is null && execution.NeedsRun && execution.DueMs <= now)
                {
                    execution.NeedsRun = false;
                    execution.Token = token = NewToken(execution);
                }
            }
            if (token is not null)
            {
                _ = RunAsync(execution, token);
            }
        }
        if (now - _lastRetentionSweepMs > 3_600_000)
        {
            DeleteExpired(now);
        }
    }

    /// <summary>Most executions past their retention deleted in one sweep (one transaction); the next sweep takes the rest.</summary>
    internal const int RetentionBatch = 500;

    /// <summary>
    /// Deletes executions past their retention, up to <see cref="RetentionBatch"/> in one transaction: the sweep runs
    /// every 250 ms and Save waits on the store meanwhile, so a backlog (a store stopped for days) goes a batch a
    /// sweep rather than an fsync per execution in one long pass. The hour until the next look starts once none is left.
    /// </summary>
    private void DeleteExpired(long now)
    {
        var expired = store.ReadExpired(now, RetentionBatch);
        if (expired.Count < RetentionBatch)
        {
            _lastRetentionSweepMs = now;
        }
        if (expired.Count > 0)
        {
            store.Delete(expired);
        }
    }

    private static string NewToken(DurableExecution execution)
    {
        // Valid only for this invocation: a stale invocation (timed out, or from before a restart) cannot checkpoint.
        execution.InvocationCount++;
        Span<byte> random = stackalloc byte[24];
        RandomNumberGenerator.Fill(random);
        return Convert.ToBase64String(random);
    }

    /// <summary>
    /// Completes what time has completed: waits whose end passed (SUCCEEDED), step retries that are due (READY),
    /// callbacks past their timeout or heartbeat (TIMED_OUT). Returns the operations that changed.
    /// </summary>
    private static List<JsonObject> Materialize(DurableExecution execution, long now)
    {
        var changed = new List<JsonObject>();
        foreach (var operation in execution.Operations)
        {
            var status = (string?)operation["Status"];
            var type = (string?)operation["Type"];
            if (type == "WAIT" && status == "STARTED" && operation["WaitDetails"]?["ScheduledEndTimestamp"] is JsonValue end && Ms(end) <= now)
            {
                operation["Status"] = "SUCCEEDED";
                operation["EndTimestamp"] = Timestamp(now);
                AddEvent(execution, operation, "WaitSucceeded", now, new JsonObject { ["WaitSucceededDetails"] = new JsonObject { ["Duration"] = (operation["WaitDetails"]?["Duration"])?.DeepClone() } });
                changed.Add(operation);
            }
            else if (type == "STEP" && status == "PENDING" && operation["StepDetails"]?["NextAttemptTimestamp"] is JsonValue next && Ms(next) <= now)
            {
                operation["Status"] = "READY";
                changed.Add(operation);
            }
            else if (type == "CALLBACK" && status == "STARTED" && execution.Callbacks.TryGetValue((string)operation["Id"]!, out var timers)
                && ((timers.DeadlineMs is { } deadline && deadline <= now) || (timers.HeartbeatDeadlineMs is { } heartbeat && heartbeat <= now)))
            {
                var heartbeatMissed = timers.DeadlineMs is not { } d || d > now;
                var error = Error("Callback.Timeout", heartbeatMissed ? "The callback's heartbeat timed out." : "The callback timed out.");
                operation["Status"] = "TIMED_OUT";
                operation["EndTimestamp"] = Timestamp(now);
                operation["CallbackDetails"]!["Error"] = error.DeepClone();
                StripNulls(operation);
                AddEvent(execution, operation, "CallbackTimedOut", now, new JsonObject { ["CallbackTimedOutDetails"] = new JsonObject { ["Error"] = new JsonObject { ["Payload"] = error } } });
                changed.Add(operation);
            }
        }
        return changed;
    }

    // ---- invocations --------------------------------------------------------------------------------------------

    private async Task RunAsync(DurableExecution execution, string token)
    {
        await Task.Yield();
        byte[] payload;
        lock (execution.Lock)
        {
            execution.Dirty = false;
            var operations = new JsonArray();
            foreach (var operation in execution.Operations)
            {
                operations.Add(operation.DeepClone());
            }
            payload = System.Text.Encoding.UTF8.GetBytes((new JsonObject
            {
                ["DurableExecutionArn"] = execution.Arn,
                ["CheckpointToken"] = token,
                ["InitialExecutionState"] = new JsonObject { ["Operations"] = operations, ["NextMarker"] = "" },
            }).ToJsonString());
        }
        var startedMs = NowMs;
        var requestId = Guid.NewGuid().ToString();
        InvokeOutcome? outcome = null;
        string? failure = null;
        if (!registry.TryGetEntry(execution.FunctionKey, out var entry) || entry.Resolve(execution.Version == FunctionEntry.Latest ? null : execution.Version, Random.Shared) is not { } config)
        {
            failure = "The function or its version no longer exists.";
        }
        else if (!limiter.TryAcquire(config.Name, entry.ReservedConcurrency, out var lease, out _))
        {
            lock (execution.Lock)
            {
                if (execution.Token == token)
                {
                    execution.Token = null;
                    execution.NeedsRun = true;
                    execution.DueMs = NowMs + 1000; // throttled: try again shortly, no attempt spent
                }
            }
            return;
        }
        else
        {
            var invocation = new Invocation
            {
                RequestId = requestId,
                Payload = payload,
                InvokedFunctionArn = execution.FunctionArn,
                TraceId = Invocation.NewTraceId(time),
            };
            outcome = await invoker.InvokeAsync(config, invocation, wantTail: false, lease!, untilLogged: true);
        }

        lock (execution.Lock)
        {
            if (execution.Token != token)
            {
                return; // stopped or timed out meanwhile
            }
            execution.Token = null;
            if (!execution.IsRunning)
            {
                return;
            }
            var now = NowMs;
            var eventsFrom = execution.Events.Count;
            var completed = new JsonObject
            {
                ["StartTimestamp"] = Timestamp(startedMs),
                ["EndTimestamp"] = Timestamp(now),
                ["RequestId"] = requestId,
            };
            execution.Events.Add(NewEvent(execution, "InvocationCompleted", now, new JsonObject { ["InvocationCompletedDetails"] = completed }));
            if (failure is not null)
            {
                Finish(execution, "FAILED", null, Error("ResourceNotFoundException", failure), eventsFrom);
                return;
            }
            if (outcome!.Value.Result is not { } result)
            {
                // The platform could not run it (no room, no sandbox): a system error, retried without spending an attempt.
                execution.NeedsRun = true;
                execution.DueMs = now + 1000;
                store.Save(execution, [], eventsFrom);
                return;
            }
            var answer = result.Outcome == InvocationOutcome.Success ? ParseAnswer(result.Body) : null;
            switch ((string?)answer?["Status"])
            {
                case "SUCCEEDED":
                    var value = (string?)answer!["Result"];
                    if (string.IsNullOrEmpty(value))
                    {
                        // A result too large for the response was checkpointed on the EXECUTION operation.
                        value = (string?)execution.Operations[0]["ExecutionDetails"]?["Result"] ?? value;
                    }
                    Finish(execution, "SUCCEEDED", value, null, eventsFrom);
                    return;
                case "FAILED":
                    Finish(execution, "FAILED", null, answer!["Error"] as JsonObject ?? Error("Error", "The execution failed."), eventsFrom);
                    return;
                case "PENDING":
                    execution.FailedInvocations = 0;
                    if (execution.Dirty)
                    {
                        execution.NeedsRun = true;
                        execution.DueMs = now;
                    }
                    store.Save(execution, [], eventsFrom);
                    Wake();
                    return;
            }
            // The invocation itself failed (an error outside the SDK, a timeout, a crash): retried, then the execution fails.
            var error = FunctionError(result);
            completed["Error"] = new JsonObject { ["Payload"] = error.DeepClone() };
            if (++execution.FailedInvocations >= MaxFailedInvocations)
            {
                Finish(execution, "FAILED", null, error, eventsFrom);
                return;
            }
            execution.NeedsRun = true;
            execution.DueMs = now + 1000L * execution.FailedInvocations;
            store.Save(execution, [], eventsFrom);
        }
    }

    private static JsonObject? ParseAnswer(ReadOnlyMemory<byte> body)
    {
        try
        {
            return JsonNode.Parse(body.Span) as JsonObject;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>The runtime's error body (<c>errorType</c>, <c>errorMessage</c>, Node's <c>trace</c> or Python's <c>stackTrace</c>) as an ErrorObject.</summary>
    private static JsonObject FunctionError(InvocationResult result, bool withTrace = false)
    {
        var parsed = ParseAnswer(result.Body);
        var error = Error((string?)parsed?["errorType"] ?? result.ErrorType ?? "Unhandled",
            (string?)parsed?["errorMessage"] ?? System.Text.Encoding.UTF8.GetString(result.Body.Span));
        if (withTrace && (parsed?["trace"] ?? parsed?["stackTrace"]) is JsonArray trace && trace.All(static line => line is JsonValue value && value.TryGetValue<string>(out _)))
        {
            error["StackTrace"] = trace.DeepClone();
        }
        return error;
    }

    /// <summary>Ends the execution (under its lock) and writes it down; synchronous invokers waiting on it get their answer.</summary>
    private void Finish(DurableExecution execution, string status, string? result, JsonObject? error, int? eventsFrom = null)
    {
        var now = NowMs;
        var from = eventsFrom ?? execution.Events.Count;
        execution.Status = status;
        execution.Result = result;
        execution.Error = error;
        execution.EndMs = now;
        execution.Token = null;
        execution.NeedsRun = false;
        var (eventType, detailsName) = status switch
        {
            "SUCCEEDED" => ("ExecutionSucceeded", "ExecutionSucceededDetails"),
            "FAILED" => ("ExecutionFailed", "ExecutionFailedDetails"),
            "TIMED_OUT" => ("ExecutionTimedOut", "ExecutionTimedOutDetails"),
            _ => ("ExecutionStopped", "ExecutionStoppedDetails"),
        };
        var details = status == "SUCCEEDED"
            ? new JsonObject { ["Result"] = new JsonObject { ["Payload"] = result, ["Truncated"] = false } }
            : new JsonObject { ["Error"] = new JsonObject { ["Payload"] = error?.DeepClone(), ["Truncated"] = false } };
        var execOperation = execution.Operations[0];
        execOperation["Status"] = status;
        execOperation["EndTimestamp"] = Timestamp(now);
        execution.Events.Add(NewEvent(execution, eventType, now, new JsonObject { [detailsName] = details }, execOperation));
        store.Save(execution, [execOperation], from);
        Forget(execution);
        execution.Done.TrySetResult();
        Log.Finished(logger, execution.Arn, status);
    }

    /// <summary>
    /// An ended execution leaves memory once its end is in the store: what asks for it later (GetDurableExecution, the
    /// list, a start by the same name, a late callback, its history) reads the store. A caller holding it (a
    /// synchronous invoker) still reads its record; its operations and events go. Under the execution's lock.
    /// </summary>
    private void Forget(DurableExecution execution)
    {
        foreach (var operation in execution.Operations)
        {
            if ((string?)operation["CallbackDetails"]?["CallbackId"] is { } callbackId)
            {
                _callbacks.TryRemove(callbackId, out _);
            }
        }
        _byName.TryRemove(new KeyValuePair<string, DurableExecution>(NameKey(execution.FunctionKey, execution.Name), execution));
        _executions.TryRemove(execution.Arn, out _);
        execution.Operations.Clear();
        execution.Operations.TrimExcess();
        execution.OperationsById.Clear();
        execution.OperationsById.TrimExcess();
        execution.Callbacks.Clear();
        execution.Events.Clear();
        execution.Events.TrimExcess();
    }

    /// <summary>The history events of <paramref name="execution"/>: in memory while it runs, from the store once it ended.</summary>
    public List<JsonObject> History(DurableExecution execution)
    {
        lock (execution.Lock)
        {
            if (execution.IsRunning)
            {
                return [.. execution.Events];
            }
        }
        return store.ReadEvents(execution.Arn);
    }

    // ---- the API's operations -----------------------------------------------------------------------------------

    /// <summary>Starts (or finds, by name) the execution of a durable function's invocation.</summary>
    public AwsError? Start(FunctionConfig config, ReadOnlyMemory<byte> payload, string? name, out DurableExecution? execution)
    {
        execution = null;
        var named = name is not null; // a name made here is new: no execution has it
        name ??= Guid.NewGuid().ToString();
        if (name.Length is < 1 or > 64 || !name.All(static c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
        {
            return AwsError.InvalidParameter($"1 validation error detected: Value '{name}' at 'durableExecutionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9-_]+");
        }
        var input = System.Text.Encoding.UTF8.GetString(payload.Span);
        var key = NameKey(config.Name, name);
        lock (_startLock)
        {
            if (_byName.TryGetValue(key, out var existing) || (named && (existing = store.ReadExecutionByName(config.Name, name)) is not null))
            {
                if (existing.IsRunning && !_executions.ContainsKey(existing.Arn))
                {
                    // Running, but not here: on a cluster, this node lost the durable lease a moment ago.
                    return new AwsError(503, "ServiceException", "The durable execution moved to another node; retry the request.");
                }
                if (existing.Input != input || existing.Version != config.Version)
                {
                    return new AwsError(409, "DurableExecutionAlreadyStartedException",
                        $"An execution named {name} was already started with another input: {existing.Arn}");
                }
                execution = existing; // the name is the idempotency key
                return null;
            }
            var now = NowMs;
            var id = Guid.NewGuid().ToString("N");
            var functionArn = $"{options.Value.FunctionArn(config.Name)}:{config.Version}";
            var durable = config.Durable!;
            execution = new DurableExecution
            {
                Arn = $"{functionArn}/durable-execution/{name}/{id}",
                FunctionKey = config.Name,
                FunctionArn = functionArn,
                Version = config.Version,
                Name = name,
                Input = input,
                StartMs = now,
                TimeoutSeconds = durable.ExecutionTimeout,
                RetentionDays = durable.RetentionPeriodInDays,
            };
            var operation = new JsonObject
            {
                ["Id"] = id,
                ["Name"] = name,
                ["Type"] = "EXECUTION",
                ["StartTimestamp"] = Timestamp(now),
                ["Status"] = "STARTED",
                ["ExecutionDetails"] = new JsonObject { ["InputPayload"] = input },
            };
            execution.Operations.Add(operation);
            execution.OperationsById[id] = operation;
            execution.Events.Add(NewEvent(execution, "ExecutionStarted", now, new JsonObject
            {
                ["ExecutionStartedDetails"] = new JsonObject
                {
                    ["Input"] = new JsonObject { ["Payload"] = input, ["Truncated"] = false },
                    ["ExecutionTimeout"] = durable.ExecutionTimeout,
                },
            }, operation));
            lock (execution.Lock)
            {
                store.Save(execution, [operation], 0);
                execution.NeedsRun = true;
                execution.DueMs = now;
            }
            Index(execution);
        }
        Log.Started(logger, execution.Arn);
        Wake();
        return null;
    }

    /// <summary>A running execution (in memory), or an ended one's record (read from the store).</summary>
    public bool TryGet(string arn, out DurableExecution execution)
    {
        if (_executions.TryGetValue(arn, out execution!))
        {
            return true;
        }
        execution = store.ReadExecution(arn)!;
        // A running one is only ever the engine's (a copy from the store has none of its operations): one that is
        // not, or no longer, here is not found (on a cluster the lease moved a moment ago; or it is being started).
        return execution is { IsRunning: false } || (execution is not null && _executions.TryGetValue(arn, out execution!));
    }

    /// <summary>
    /// A page of a function's executions from the store, whose records are those in memory (each change is saved
    /// before it is answered): a running one's as of its last checkpoint.
    /// </summary>
    public List<DurableExecution> List(string functionKey, ExecutionFilter filter, bool newestFirst, (long StartMs, string Arn)? after, int take) =>
        store.ListExecutions(functionKey, filter, newestFirst, after, take);

    /// <summary>CheckpointDurableExecution: applies the updates in order, on disk before it answers.</summary>
    public AwsError? Checkpoint(string arn, string? token, JsonArray? updates, out JsonObject? response)
    {
        response = null;
        if (!_executions.TryGetValue(arn, out var execution))
        {
            return AwsError.InvalidParameter($"Invalid Checkpoint Token: no durable execution {arn}");
        }
        lock (execution.Lock)
        {
            if (token is null || token != execution.Token || !execution.IsRunning)
            {
                return AwsError.InvalidParameter("Invalid Checkpoint Token: the token does not belong to the execution's current invocation.");
            }
            var now = NowMs;
            var eventsFrom = execution.Events.Count;
            var list = updates ?? [];
            if (Validate(execution, list) is { } invalid)
            {
                return invalid; // a refused batch changes nothing
            }
            var changed = new List<JsonObject>();
            var afterSave = new List<Action>();
            foreach (var update in list)
            {
                Apply(execution, (JsonObject)update!, now, changed, afterSave);
            }
            foreach (var operation in Materialize(execution, now))
            {
                if (!changed.Contains(operation))
                {
                    changed.Add(operation);
                }
            }
            store.Save(execution, changed, eventsFrom);
            foreach (var action in afterSave)
            {
                action(); // chained invokes start only once their START is on disk
            }
            if (changed.Count > 0)
            {
                Wake();
            }
            var operations = new JsonArray();
            foreach (var operation in execution.Operations)
            {
                operations.Add(operation.DeepClone());
            }
            response = new JsonObject
            {
                ["CheckpointToken"] = token,
                ["NewExecutionState"] = new JsonObject { ["Operations"] = operations },
            };
            return null;
        }
    }

    /// <summary>Checks a whole batch of updates before any is applied.</summary>
    private AwsError? Validate(DurableExecution execution, JsonArray updates)
    {
        var startedHere = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var node in updates)
        {
            if (node is not JsonObject update)
            {
                return AwsError.InvalidParameter("Each update must be an object.");
            }
            var id = (string?)update["Id"];
            var type = (string?)update["Type"];
            var action = (string?)update["Action"];
            if (string.IsNullOrEmpty(id) || id.Length > 64 || type is null || action is null)
            {
                return AwsError.InvalidParameter("An operation update needs Id, Type and Action.");
            }
            if (type is not ("EXECUTION" or "CONTEXT" or "STEP" or "WAIT" or "CALLBACK" or "CHAINED_INVOKE"))
            {
                return AwsError.InvalidParameter($"1 validation error detected: Value '{type}' at 'updates.member.type' failed to satisfy constraint: Member must satisfy enum value set: [EXECUTION, CONTEXT, STEP, WAIT, CALLBACK, CHAINED_INVOKE]");
            }
            if (action is not ("START" or "SUCCEED" or "FAIL" or "RETRY" or "CANCEL"))
            {
                return AwsError.InvalidParameter($"1 validation error detected: Value '{action}' at 'updates.member.action' failed to satisfy constraint: Member must satisfy enum value set: [START, SUCCEED, FAIL, RETRY, CANCEL]");
            }
            var allowed = type switch
            {
                "EXECUTION" => action is "SUCCEED" or "FAIL",
                "STEP" => action is "START" or "SUCCEED" or "FAIL" or "RETRY",
                "CONTEXT" => action is "START" or "SUCCEED" or "FAIL",
                _ => action is "START" or "CANCEL", // WAIT, CALLBACK, CHAINED_INVOKE
            };
            if (!allowed)
            {
                return AwsError.InvalidParameter($"Action {action} is not valid for an operation of type {type}.");
            }
            if (type == "EXECUTION")
            {
                continue;
            }
            var existingType = execution.OperationsById.TryGetValue(id, out var existing) ? (string?)existing["Type"] : startedHere.GetValueOrDefault(id);
            if (existingType is not null && existingType != type)
            {
                return AwsError.InvalidParameter($"Operation {id} is a {existingType}, not a {type}.");
            }
            // Steps and contexts may report an outcome without a START checkpoint (at-least-once steps); waits and callbacks may not.
            if (existingType is null && action == "CANCEL")
            {
                return AwsError.InvalidParameter($"Operation {id} was not started.");
            }
            if (type == "WAIT" && action == "START" && existing is null && (int?)update["WaitOptions"]?["WaitSeconds"] is not (>= 1 and <= 31_622_400))
            {
                return AwsError.InvalidParameter("1 validation error detected: Value at 'updates.member.waitOptions.waitSeconds' failed to satisfy constraint: Member must have value less than or equal to 31622400 and greater than or equal to 1");
            }
            if (type == "CHAINED_INVOKE" && action == "START" && existing is null && ValidateChainedStart(execution, update) is { } chainedInvalid)
            {
                return chainedInvalid;
            }
            startedHere[id] = type;
        }
        return null;
    }

    /// <summary>One OperationUpdate, validated already (<see cref="Validate"/>).</summary>
    private void Apply(DurableExecution execution, JsonObject update, long now, List<JsonObject> changed, List<Action> afterSave)
    {
        var id = (string)update["Id"]!;
        var type = (string)update["Type"]!;
        var action = (string)update["Action"]!;
        var existed = execution.OperationsById.TryGetValue(id, out var operation);
        if (type == "EXECUTION")
        {
            if (action == "SUCCEED")
            {
                execution.Operations[0]["ExecutionDetails"]!["Result"] = (string?)update["Payload"];
            }
            return;
        }
        if (operation is null)
        {
            operation = new JsonObject
            {
                ["Id"] = id,
                ["ParentId"] = (string?)update["ParentId"],
                ["Name"] = (string?)update["Name"],
                ["Type"] = type,
                ["SubType"] = (string?)update["SubType"],
                ["StartTimestamp"] = Timestamp(now),
                ["Status"] = "STARTED",
            };
            execution.Operations.Add(operation);
            execution.OperationsById[id] = operation;
        }
        var payload = (string?)update["Payload"];
        var error = update["Error"] as JsonObject;
        switch (type, action)
        {
            case ("STEP", "START"):
                operation["Status"] = "STARTED";
                Details(operation, "StepDetails")["Attempt"] ??= 0;
                AddEvent(execution, operation, "StepStarted", now, new JsonObject { ["StepStartedDetails"] = new JsonObject() });
                break;
            case ("STEP", "SUCCEED"):
                operation["Status"] = "SUCCEEDED";
                operation["EndTimestamp"] = Timestamp(now);
                Details(operation, "StepDetails")["Result"] = payload;
                AddEvent(execution, operation, "StepSucceeded", now, new JsonObject
                {
                    ["StepSucceededDetails"] = new JsonObject
                    {
                        ["Result"] = new JsonObject { ["Payload"] = payload, ["Truncated"] = false },
                        ["RetryDetails"] = new JsonObject { ["CurrentAttempt"] = (int?)operation["StepDetails"]?["Attempt"] ?? 0 },
                    },
                });
                break;
            case ("STEP", "FAIL"):
                operation["Status"] = "FAILED";
                operation["EndTimestamp"] = Timestamp(now);
                Details(operation, "StepDetails")["Error"] = error?.DeepClone();
                AddEvent(execution, operation, "StepFailed", now, new JsonObject
                {
                    ["StepFailedDetails"] = new JsonObject
                    {
                        ["Error"] = new JsonObject { ["Payload"] = error?.DeepClone(), ["Truncated"] = false },
                        ["RetryDetails"] = new JsonObject { ["CurrentAttempt"] = (int?)operation["StepDetails"]?["Attempt"] ?? 0 },
                    },
                });
                break;
            case ("STEP", "RETRY"):
                var delay = Math.Max(1, (int?)update["StepOptions"]?["NextAttemptDelaySeconds"] ?? 1);
                var step = Details(operation, "StepDetails");
                var attempt = ((int?)step["Attempt"] ?? 0) + 1;
                operation["Status"] = "PENDING";
                step["Attempt"] = attempt;
                step["NextAttemptTimestamp"] = Timestamp(now + delay * 1000L);
                step["Error"] = error?.DeepClone();
                AddEvent(execution, operation, "StepFailed", now, new JsonObject
                {
                    ["StepFailedDetails"] = new JsonObject
                    {
                        ["Error"] = new JsonObject { ["Payload"] = error?.DeepClone(), ["Truncated"] = false },
                        ["RetryDetails"] = new JsonObject { ["CurrentAttempt"] = attempt, ["NextAttemptDelaySeconds"] = delay },
                    },
                });
                break;
            case ("WAIT", "START"):
                if ((string?)operation["Status"] == "STARTED" && operation["WaitDetails"] is not null)
                {
                    break; // already waiting (a replay that started it again)
                }
                var seconds = (int?)update["WaitOptions"]?["WaitSeconds"] ?? 1;
                operation["Status"] = "STARTED";
                operation["WaitDetails"] = new JsonObject { ["ScheduledEndTimestamp"] = Timestamp(now + seconds * 1000L) };
                AddEvent(execution, operation, "WaitStarted", now, new JsonObject
                {
                    ["WaitStartedDetails"] = new JsonObject { ["Duration"] = seconds, ["ScheduledEndTimestamp"] = Timestamp(now + seconds * 1000L) },
                });
                break;
            case ("WAIT", "CANCEL"):
                operation["Status"] = "CANCELLED";
                operation["EndTimestamp"] = Timestamp(now);
                AddEvent(execution, operation, "WaitCancelled", now, new JsonObject { ["WaitCancelledDetails"] = new JsonObject() });
                break;
            case ("CALLBACK", "START"):
                if (operation["CallbackDetails"]?["CallbackId"] is not null)
                {
                    break;
                }
                var callbackId = NewCallbackId();
                operation["Status"] = "STARTED";
                operation["CallbackDetails"] = new JsonObject { ["CallbackId"] = callbackId };
                var timeout = (int?)update["CallbackOptions"]?["TimeoutSeconds"];
                var heartbeat = (int?)update["CallbackOptions"]?["HeartbeatTimeoutSeconds"];
                if (timeout is > 0 || heartbeat is > 0)
                {
                    execution.Callbacks[id] = new CallbackTimers
                    {
                        DeadlineMs = timeout is > 0 ? now + timeout.Value * 1000L : null,
                        HeartbeatSeconds = heartbeat is > 0 ? heartbeat : null,
                        HeartbeatDeadlineMs = heartbeat is > 0 ? now + heartbeat.Value * 1000L : null,
                    };
                }
                _callbacks[callbackId] = (execution, id);
                AddEvent(execution, operation, "CallbackStarted", now, new JsonObject
                {
                    ["CallbackStartedDetails"] = new JsonObject { ["CallbackId"] = callbackId, ["Timeout"] = timeout, ["HeartbeatTimeout"] = heartbeat },
                });
                break;
            case ("CALLBACK", "CANCEL"):
                operation["Status"] = "CANCELLED";
                operation["EndTimestamp"] = Timestamp(now);
                break;
            case ("CHAINED_INVOKE", "START"):
                if (!existed)
                {
                    StartChained(execution, operation, update, now, afterSave);
                }
                break; // else a replay: the invoke started already
            case ("CHAINED_INVOKE", "CANCEL"):
                CancelChained(execution, operation, now);
                break;
            case ("CONTEXT", "START"):
                operation["Status"] = "STARTED";
                AddEvent(execution, operation, "ContextStarted", now, new JsonObject { ["ContextStartedDetails"] = new JsonObject() });
                break;
            case ("CONTEXT", "SUCCEED"):
                operation["Status"] = "SUCCEEDED";
                operation["EndTimestamp"] = Timestamp(now);
                Details(operation, "ContextDetails")["Result"] = payload;
                if (update["ContextOptions"]?["ReplayChildren"] is JsonValue replay)
                {
                    Details(operation, "ContextDetails")["ReplayChildren"] = replay.DeepClone();
                }
                AddEvent(execution, operation, "ContextSucceeded", now, new JsonObject
                {
                    ["ContextSucceededDetails"] = new JsonObject { ["Result"] = new JsonObject { ["Payload"] = payload, ["Truncated"] = false } },
                });
                break;
            case ("CONTEXT", "FAIL"):
                operation["Status"] = "FAILED";
                operation["EndTimestamp"] = Timestamp(now);
                Details(operation, "ContextDetails")["Error"] = error?.DeepClone();
                AddEvent(execution, operation, "ContextFailed", now, new JsonObject
                {
                    ["ContextFailedDetails"] = new JsonObject { ["Error"] = new JsonObject { ["Payload"] = error?.DeepClone(), ["Truncated"] = false } },
                });
                break;
        }
        StripNulls(operation);
        if (!changed.Contains(operation))
        {
            changed.Add(operation);
        }
    }

    /// <summary>
    /// Drops members whose value is null, at every depth: AWS leaves absent members out, and the SDK compares what it
    /// replays with <c>===</c> (a stored <c>"Name": null</c> is not the <c>undefined</c> of an unnamed step).
    /// </summary>
    internal static T StripNulls<T>(T node)
        where T : JsonNode
    {
        if (node is JsonObject o)
        {
            foreach (var (key, value) in o.ToList())
            {
                if (value is null)
                {
                    o.Remove(key);
                }
                else
                {
                    StripNulls(value);
                }
            }
        }
        else if (node is JsonArray a)
        {
            foreach (var item in a)
            {
                if (item is not null)
                {
                    StripNulls(item);
                }
            }
        }
        return node;
    }

    private static JsonObject Details(JsonObject operation, string name)
    {
        if (operation[name] is not JsonObject details)
        {
            operation[name] = details = new JsonObject();
        }
        return details;
    }

    private static string NewCallbackId()
    {
        // Letters and digits only: a valid base64 string (the model's pattern) that needs no escaping in a URL.
        const string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        Span<char> id = stackalloc char[44];
        for (var i = 0; i < id.Length; i++)
        {
            id[i] = alphabet[RandomNumberGenerator.GetInt32(alphabet.Length)];
        }
        return new string(id);
    }

    /// <summary>
    /// What a caller of a callback the engine does not hold is told, from the store: an ended execution's callback
    /// timed out or was completed; any other does not exist.
    /// </summary>
    private AwsError EndedCallback(string callbackId) => store.ReadCallback(callbackId) switch
    {
        { ExecutionStatus: not "RUNNING", TimedOut: true } => new AwsError(400, "CallbackTimeoutException", $"Callback {callbackId} timed out."),
        { ExecutionStatus: not "RUNNING" } => AwsError.InvalidParameter($"Callback {callbackId} is already completed."),
        _ => AwsError.InvalidParameter($"Callback {callbackId} does not exist."),
    };

    /// <summary>SendDurableExecutionCallbackSuccess / Failure / Heartbeat.</summary>
    public AwsError? Callback(string callbackId, string kind, string? result, JsonObject? error)
    {
        if (!_callbacks.TryGetValue(callbackId, out var found))
        {
            return EndedCallback(callbackId);
        }
        var (execution, operationId) = found;
        lock (execution.Lock)
        {
            if (!execution.IsRunning)
            {
                return EndedCallback(callbackId); // it ended a moment ago: its operations left with it
            }
            var operation = execution.OperationsById[operationId];
            var status = (string?)operation["Status"];
            if (status == "TIMED_OUT")
            {
                return new AwsError(400, "CallbackTimeoutException", $"Callback {callbackId} timed out.");
            }
            if (status != "STARTED")
            {
                return AwsError.InvalidParameter($"Callback {callbackId} is already completed.");
            }
            var now = NowMs;
            var eventsFrom = execution.Events.Count;
            if (kind == "heartbeat")
            {
                if (execution.Callbacks.TryGetValue(operationId, out var timers) && timers.HeartbeatSeconds is { } seconds)
                {
                    timers.HeartbeatDeadlineMs = now + seconds * 1000L;
                    store.Save(execution, [operation], eventsFrom);
                }
                return null;
            }
            operation["EndTimestamp"] = Timestamp(now);
            if (kind == "succeed")
            {
                operation["Status"] = "SUCCEEDED";
                operation["CallbackDetails"]!["Result"] = result;
                AddEvent(execution, operation, "CallbackSucceeded", now, new JsonObject
                {
                    ["CallbackSucceededDetails"] = new JsonObject { ["Result"] = new JsonObject { ["Payload"] = result, ["Truncated"] = false } },
                });
            }
            else
            {
                error ??= Error("Error", "The callback failed.");
                operation["Status"] = "FAILED";
                operation["CallbackDetails"]!["Error"] = error.DeepClone();
                AddEvent(execution, operation, "CallbackFailed", now, new JsonObject
                {
                    ["CallbackFailedDetails"] = new JsonObject { ["Error"] = new JsonObject { ["Payload"] = error, ["Truncated"] = false } },
                });
            }
            store.Save(execution, [operation], eventsFrom);
            ResumeAfterChange(execution, now);
        }
        Wake();
        return null;
    }

    /// <summary>
    /// An operation of the execution changed outside an invocation (a wait elapsed, a callback or chained invoke
    /// completed): a suspended execution is due to be invoked now; a running one is invoked again when its invocation ends.
    /// </summary>
    private static void ResumeAfterChange(DurableExecution execution, long now)
    {
        if (execution.Token is null)
        {
            execution.NeedsRun = true;
            execution.DueMs = Math.Min(execution.DueMs == 0 ? now : execution.DueMs, now);
        }
        else
        {
            execution.Dirty = true;
        }
    }

    /// <summary>StopDurableExecution: the execution ends STOPPED; a running invocation's later answer is ignored.</summary>
    public AwsError? Stop(string arn, JsonObject? error, out long stoppedMs)
    {
        stoppedMs = 0;
        if (!TryGet(arn, out var execution))
        {
            return AwsError.NotFound($"Durable execution not found: {arn}");
        }
        lock (execution.Lock)
        {
            if (!execution.IsRunning)
            {
                return AwsError.InvalidParameter($"The execution has already ended ({execution.Status}).");
            }
            Finish(execution, "STOPPED", null, error ?? Error("Execution.Stopped", "The execution was stopped."));
            stoppedMs = execution.EndMs!.Value;
        }
        return null;
    }

    // ---- shapes -------------------------------------------------------------------------------------------------

    /// <summary>Lambda's timestamps in JSON: epoch seconds (with milliseconds).</summary>
    public static JsonValue Timestamp(long ms) => JsonValue.Create(ms / 1000.0);

    private static long Ms(JsonValue timestamp) => (long)Math.Round(timestamp.GetValue<double>() * 1000);

    public static JsonObject Error(string type, string message) => new() { ["ErrorType"] = type, ["ErrorMessage"] = message };

    private static void AddEvent(DurableExecution execution, JsonObject operation, string type, long now, JsonObject details) =>
        execution.Events.Add(NewEvent(execution, type, now, details, operation));

    private static JsonObject NewEvent(DurableExecution execution, string type, long now, JsonObject details, JsonObject? operation = null)
    {
        var e = new JsonObject
        {
            ["EventType"] = type,
            ["SubType"] = (string?)operation?["SubType"],
            ["EventId"] = execution.Events.Count + 1,
            ["Id"] = (string?)operation?["Id"],
            ["Name"] = (string?)operation?["Name"],
            ["EventTimestamp"] = Timestamp(now),
            ["ParentId"] = (string?)operation?["ParentId"],
        };
        foreach (var (key, value) in details.ToList())
        {
            details.Remove(key);
            e[key] = value;
        }
        return StripNulls(e);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = Diagnostics.EventIds.DurableExecutionsLoaded, Level = LogLevel.Information, Message = "Loaded {Count} durable executions")]
        public static partial void Loaded(ILogger logger, int count);

        [LoggerMessage(EventId = Diagnostics.EventIds.DurableExecutionStarted, Level = LogLevel.Information, Message = "Durable execution {Arn} started")]
        public static partial void Started(ILogger logger, string arn);

        [LoggerMessage(EventId = Diagnostics.EventIds.DurableExecutionFinished, Level = LogLevel.Information, Message = "Durable execution {Arn} ended {Status}")]
        public static partial void Finished(ILogger logger, string arn, string status);

        [LoggerMessage(EventId = Diagnostics.EventIds.DurableSweepFailed, Level = LogLevel.Error, Message = "The durable executions' sweep failed")]
        public static partial void SweepFailed(ILogger logger, Exception exception);

        [LoggerMessage(EventId = Diagnostics.EventIds.DurableLeaseLost, Level = LogLevel.Warning, Message = "This node no longer holds the durable lease: its executions are left to the new holder")]
        public static partial void LeaseLost(ILogger logger);

        [LoggerMessage(EventId = Diagnostics.EventIds.DurableChainedInvokeFailed, Level = LogLevel.Warning, Message = "Chained invoke {OperationId} of {Arn} could not run; trying again")]
        public static partial void ChainedInvokeFailed(ILogger logger, string arn, string operationId, Exception exception);
    }
}
