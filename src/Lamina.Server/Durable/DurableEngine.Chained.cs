using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Lamina.Server.Invoke;
using Lamina.Server.Lambda;
using Lamina.Server.Protocols;

namespace Lamina.Server.Durable;

/// <summary>
/// Chained invokes (<c>context.invoke</c>): the function checkpoints a CHAINED_INVOKE START with
/// <c>ChainedInvokeOptions.FunctionName</c> and the payload, then suspends. Once the START is on disk the target runs:
/// a durable target as a durable execution of its own, named after the caller's execution and the operation (so a
/// replayed START after a crash finds the same execution: the name is the idempotency key); a plain target as a
/// synchronous invocation off the request thread. Its outcome completes the operation (SUCCEEDED with
/// <c>ChainedInvokeDetails.Result</c>, FAILED, TIMED_OUT or STOPPED with <c>ChainedInvokeDetails.Error</c>) and
/// resumes the caller, which replays and gets the result (or the error, thrown by <c>context.invoke</c>).
/// The log keeps what a restart needs in the ChainedInvokeStarted event (function, input, the durable target's ARN):
/// after a kill -9 a durable target is followed again, a plain one invoked again (at least once).
/// </summary>
internal sealed partial class DurableEngine
{
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<(DurableExecution Execution, string OperationId)> _waitingAtStart = [];

    /// <summary>The model's checks of a new CHAINED_INVOKE START (a bad one refuses the whole batch).</summary>
    private AwsError? ValidateChainedStart(DurableExecution execution, JsonObject update)
    {
        var functionName = (string?)update["ChainedInvokeOptions"]?["FunctionName"];
        if (string.IsNullOrEmpty(functionName))
        {
            return AwsError.InvalidParameter("1 validation error detected: Value null at 'updates.member.chainedInvokeOptions.functionName' failed to satisfy constraint: Member must not be null");
        }
        if ((string?)update["ChainedInvokeOptions"]?["TenantId"] is { } tenant && tenant.Length is < 1 or > 256)
        {
            return AwsError.InvalidParameter($"1 validation error detected: Value '{tenant}' at 'updates.member.chainedInvokeOptions.tenantId' failed to satisfy constraint: Member must have length less than or equal to 256");
        }
        var account = options.Value.SplitFunctionKey(execution.FunctionKey).Account;
        return FunctionReference.TryParse(functionName, null, options.Value, account, out _, out var error, crossAccount: true) ? null : error;
    }

    /// <summary>
    /// A new CHAINED_INVOKE START, under the execution's lock: resolves the target, starts a durable one, writes
    /// ChainedInvokeStarted, and leaves what must run after the checkpoint is saved in <paramref name="afterSave"/>.
    /// A target that cannot be invoked (missing, not permitted, unqualified durable, bad payload) fails the
    /// operation at once: the function sees the error in the checkpoint's answer and <c>context.invoke</c> throws it.
    /// </summary>
    private void StartChained(DurableExecution execution, JsonObject operation, JsonObject update, long now, List<Action> afterSave)
    {
        var id = (string)operation["Id"]!;
        var functionName = (string)update["ChainedInvokeOptions"]!["FunctionName"]!;
        var input = (string?)update["Payload"];
        var payload = Encoding.UTF8.GetBytes(string.IsNullOrEmpty(input) ? "{}" : input); // as Invoke hands an empty payload over
        var started = new JsonObject
        {
            ["FunctionName"] = functionName,
            ["TenantId"] = (string?)update["ChainedInvokeOptions"]?["TenantId"],
            ["Input"] = new JsonObject { ["Payload"] = input, ["Truncated"] = false },
        };
        var error = ResolveChained(execution, functionName, out var target);
        DurableExecution? durable = null;
        if (error is null)
        {
            started["ExecutedVersion"] = target.Config.Version;
            if (payload.Length > InvokeApi.MaxSyncPayloadBytes)
            {
                error = Error("RequestTooLargeException", $"Request must be smaller than {InvokeApi.MaxSyncPayloadBytes} bytes for the InvokeFunction operation");
            }
            else if (!InvokeApi.IsJson(payload, out var jsonError))
            {
                error = Error("InvalidRequestContentException", $"Could not parse request body into json: Could not parse payload into json: {jsonError}");
            }
            else if (target.Config.Durable is not null)
            {
                if (target.Qualifier is null)
                {
                    // Lambda's rule for durable targets: the version must be named (an alias, a number or $LATEST).
                    error = Error("InvalidParameterValueException", $"A durable function must be invoked with a qualifier (version, alias or $LATEST): {target.InvokedArn}");
                }
                else if (Start(target.Config, payload, ChainedExecutionName(execution, id), out durable) is { } startError)
                {
                    error = Error(startError.Code, startError.Message);
                }
                else
                {
                    started["DurableExecutionArn"] = durable!.Arn;
                }
            }
        }
        AddEvent(execution, operation, "ChainedInvokeStarted", now, new JsonObject { ["ChainedInvokeStartedDetails"] = started });
        if (error is not null)
        {
            CompleteChained(execution, operation, "FAILED", null, error, now);
            execution.Dirty = true; // in case the function suspends on it anyway
            return;
        }
        if (durable is not null)
        {
            afterSave.Add(() => FollowTarget(execution, id, durable));
        }
        else
        {
            afterSave.Add(() => _ = RunChainedAsync(execution, id, target.Config, target.Reserved, target.InvokedArn, payload));
        }
    }

    private readonly record struct ChainedTarget(FunctionConfig Config, int? Reserved, string InvokedArn, string? Qualifier);

    /// <summary>The target as Invoke would resolve it for the caller's account (a resource policy may let it reach another account's).</summary>
    private JsonObject? ResolveChained(DurableExecution execution, string functionName, out ChainedTarget target)
    {
        target = default;
        var account = options.Value.SplitFunctionKey(execution.FunctionKey).Account;
        if (!FunctionReference.TryParse(functionName, null, options.Value, account, out var reference, out var parseError, crossAccount: true))
        {
            return Error(parseError!.Code, parseError.Message);
        }
        var arn = options.Value.FunctionArn(reference.Name);
        var invokedArn = reference.Qualifier is null ? arn : $"{arn}:{reference.Qualifier}";
        var found = registry.TryGetEntry(reference.Name, out var entry);
        if (options.Value.SplitFunctionKey(reference.Name).Account != account
            && !(found && PermissionsApi.Allows(entry!, reference.Qualifier, "lambda:InvokeFunction", new PolicyCaller(account))))
        {
            var role = registry.TryGetEntry(execution.FunctionKey, out var own) && own.Resolve(null, Random.Shared) is { } self ? self.Role : execution.FunctionArn;
            return Error("AccessDeniedException",
                $"User: {role} is not authorized to perform: lambda:InvokeFunction on resource: {invokedArn} because no resource-based policy allows the lambda:InvokeFunction action");
        }
        if (!found || entry!.Resolve(reference.Qualifier, Random.Shared) is not { } config)
        {
            return Error("ResourceNotFoundException", $"Function not found: {invokedArn}");
        }
        target = new ChainedTarget(config, entry.ReservedConcurrency, invokedArn, reference.Qualifier);
        return null;
    }

    /// <summary>The durable target's execution name: the same for a replayed START, unique per caller and operation.</summary>
    private static string ChainedExecutionName(DurableExecution execution, string operationId) =>
        $"{execution.ExecutionId}-{Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(operationId)))[..16]}";

    /// <summary>Completes the operation when the durable target's execution ends (at once if it has).</summary>
    private void FollowTarget(DurableExecution execution, string operationId, DurableExecution target)
    {
        // No lock on the target here (the caller's may be held): Finish sets the status before it completes Done.
        if (!target.IsRunning)
        {
            _ = Task.Run(() => TargetEnded(execution, operationId, target));
        }
        else
        {
            _ = target.Done.Task.ContinueWith(_ => TargetEnded(execution, operationId, target), CancellationToken.None,
                TaskContinuationOptions.None, TaskScheduler.Default);
        }
    }

    private void TargetEnded(DurableExecution execution, string operationId, DurableExecution target)
    {
        string status;
        string? result;
        JsonObject? error;
        lock (target.Lock)
        {
            status = target.Status;
            result = target.Result;
            error = target.Error?.DeepClone().AsObject();
        }
        FinishChained(execution, operationId, status, status == "SUCCEEDED" ? result : null,
            status == "SUCCEEDED" ? null : error ?? Error("Error", $"The invoked execution ended {status}."));
    }

    /// <summary>Invokes a plain target synchronously (off the request thread) until it answers; throttles and platform failures wait and try again.</summary>
    private async Task RunChainedAsync(DurableExecution execution, string operationId, FunctionConfig config, int? reserved, string invokedArn, byte[] payload)
    {
        await Task.Yield();
        var stopping = _stopping.Token;
        while (!stopping.IsCancellationRequested && IsWaiting(execution, operationId))
        {
            if (!registry.TryGetEntry(config.Name, out _))
            {
                FinishChained(execution, operationId, "FAILED", null, Error("ResourceNotFoundException", $"Function not found: {invokedArn}"));
                return; // deleted while the invoke waited for room
            }
            try
            {
                if (limiter.TryAcquire(config.Name, reserved, out var lease, out _))
                {
                    var invocation = new Invocation
                    {
                        RequestId = Guid.NewGuid().ToString(),
                        Payload = payload,
                        InvokedFunctionArn = invokedArn,
                        TraceId = Invocation.NewTraceId(time),
                    };
                    var outcome = await invoker.InvokeAsync(config, invocation, wantTail: false, lease!, untilLogged: true);
                    if (outcome.Result is { } result)
                    {
                        if (result.Outcome == InvocationOutcome.Success)
                        {
                            FinishChained(execution, operationId, "SUCCEEDED", Encoding.UTF8.GetString(result.Body.Span), null);
                        }
                        else
                        {
                            FinishChained(execution, operationId, "FAILED", null, FunctionError(result, withTrace: true));
                        }
                        return;
                    }
                }
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                Log.ChainedInvokeFailed(logger, execution.Arn, operationId, e);
            }
            try
            {
                await Task.Delay(TimeSpan.FromSeconds(1), time, stopping);
            }
            catch (OperationCanceledException)
            {
                return; // the server stops; after a restart the invoke runs again
            }
        }
    }

    private static bool IsWaiting(DurableExecution execution, string operationId)
    {
        lock (execution.Lock)
        {
            return execution.IsRunning && execution.OperationsById.TryGetValue(operationId, out var operation) && (string?)operation["Status"] == "STARTED";
        }
    }

    /// <summary>Records the target's outcome durably and resumes the caller (at once, or after the invocation running it now).</summary>
    private void FinishChained(DurableExecution execution, string operationId, string status, string? result, JsonObject? error)
    {
        lock (execution.Lock)
        {
            if (!execution.IsRunning || !execution.OperationsById.TryGetValue(operationId, out var operation) || (string?)operation["Status"] != "STARTED")
            {
                return; // the caller ended, or the invoke was cancelled
            }
            var now = NowMs;
            var eventsFrom = execution.Events.Count;
            CompleteChained(execution, operation, status, result, error, now);
            store.Save(execution, [operation], eventsFrom);
            ResumeAfterChange(execution, now);
        }
        Wake();
    }

    /// <summary>Sets the operation's outcome and adds its event (under the execution's lock; the caller saves).</summary>
    private static void CompleteChained(DurableExecution execution, JsonObject operation, string status, string? result, JsonObject? error, long now)
    {
        operation["Status"] = status;
        operation["EndTimestamp"] = Timestamp(now);
        if (status == "SUCCEEDED")
        {
            operation["ChainedInvokeDetails"] = new JsonObject { ["Result"] = result };
            AddEvent(execution, operation, "ChainedInvokeSucceeded", now, new JsonObject
            {
                ["ChainedInvokeSucceededDetails"] = new JsonObject { ["Result"] = new JsonObject { ["Payload"] = result, ["Truncated"] = false } },
            });
        }
        else
        {
            operation["ChainedInvokeDetails"] = new JsonObject { ["Error"] = error?.DeepClone() };
            var (eventType, detailsName) = status switch
            {
                "TIMED_OUT" => ("ChainedInvokeTimedOut", "ChainedInvokeTimedOutDetails"),
                "STOPPED" => ("ChainedInvokeStopped", "ChainedInvokeStoppedDetails"),
                _ => ("ChainedInvokeFailed", "ChainedInvokeFailedDetails"),
            };
            AddEvent(execution, operation, eventType, now, new JsonObject
            {
                [detailsName] = new JsonObject { ["Error"] = new JsonObject { ["Payload"] = error?.DeepClone(), ["Truncated"] = false } },
            });
        }
        StripNulls(operation);
    }

    /// <summary>CHAINED_INVOKE CANCEL: the operation ends STOPPED, and a durable target's execution is stopped.</summary>
    private void CancelChained(DurableExecution execution, JsonObject operation, long now)
    {
        if ((string?)operation["Status"] != "STARTED")
        {
            return;
        }
        var error = Error("ChainedInvoke.Cancelled", "The chained invoke was cancelled.");
        CompleteChained(execution, operation, "STOPPED", null, error, now);
        if ((string?)StartedDetails(execution, (string)operation["Id"]!)?["DurableExecutionArn"] is { } targetArn && targetArn != execution.Arn)
        {
            Stop(targetArn, error.DeepClone().AsObject(), out _);
        }
    }

    private static JsonObject? StartedDetails(DurableExecution execution, string operationId)
    {
        for (var i = execution.Events.Count - 1; i >= 0; i--)
        {
            var e = execution.Events[i];
            if ((string?)e["EventType"] == "ChainedInvokeStarted" && (string?)e["Id"] == operationId)
            {
                return e["ChainedInvokeStartedDetails"] as JsonObject;
            }
        }
        return null;
    }

    /// <summary>
    /// At load, before anything runs: the chained invokes a restart must take up (not those a new invocation may
    /// start before <see cref="ResumeChainedInvokes"/> runs, which start themselves).
    /// </summary>
    private void NoteWaitingChainedInvokes(DurableExecution execution)
    {
        foreach (var operation in execution.Operations)
        {
            if ((string?)operation["Type"] == "CHAINED_INVOKE" && (string?)operation["Status"] == "STARTED")
            {
                _waitingAtStart.Add((execution, (string)operation["Id"]!));
            }
        }
    }

    /// <summary>
    /// After a restart: every chained invoke still waiting is taken up again from its ChainedInvokeStarted event, a
    /// durable target followed (it resumes by itself), a plain one invoked again: at least once, as Lambda promises.
    /// </summary>
    private void ResumeChainedInvokes()
    {
        foreach (var (execution, id) in _waitingAtStart)
        {
            Action resume;
            lock (execution.Lock)
            {
                if (!execution.IsRunning || (string?)execution.OperationsById[id]["Status"] != "STARTED")
                {
                    continue; // ended meanwhile (the execution timed out or was stopped)
                }
                var started = StartedDetails(execution, id);
                if ((string?)started?["DurableExecutionArn"] is { } targetArn)
                {
                    resume = TryGet(targetArn, out var target)
                        ? () => FollowTarget(execution, id, target)
                        : () => FinishChained(execution, id, "FAILED", null, Error("ResourceNotFoundException", $"Durable execution not found: {targetArn}"));
                }
                else
                {
                    var input = (string?)started?["Input"]?["Payload"];
                    var payload = Encoding.UTF8.GetBytes(string.IsNullOrEmpty(input) ? "{}" : input);
                    resume = ResolveChained(execution, (string?)started?["FunctionName"] ?? "", out var plain) is { } error
                        ? () => FinishChained(execution, id, "FAILED", null, error)
                        : () => _ = RunChainedAsync(execution, id, plain.Config, plain.Reserved, plain.InvokedArn, payload);
                }
            }
            resume(); // outside the lock: FinishChained takes it
        }
        _waitingAtStart.Clear();
    }
}
