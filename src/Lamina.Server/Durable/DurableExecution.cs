using System.Text.Json.Nodes;

namespace Lamina.Server.Durable;

/// <summary>
/// One durable execution: its record (what GetDurableExecution answers), its operations (the checkpoint log the
/// function replays) and its history events, as stored in <c>durable.db</c>, plus the engine's live bookkeeping
/// (whether an invocation runs it now, when it must run next). Guarded by <see cref="Lock"/>.
/// </summary>
internal sealed class DurableExecution
{
    public Lock Lock { get; } = new();

    public required string Arn { get; init; }
    public required string FunctionKey { get; init; }

    /// <summary>The qualified function ARN the execution runs (<c>…:function:f:$LATEST</c> or <c>…:f:3</c>).</summary>
    public required string FunctionArn { get; init; }

    public required string Version { get; init; }
    public required string Name { get; init; }
    public required string Input { get; init; }
    public required long StartMs { get; init; }
    public required int TimeoutSeconds { get; init; }
    public required int RetentionDays { get; init; }

    /// <summary>RUNNING, SUCCEEDED, FAILED, TIMED_OUT or STOPPED.</summary>
    public string Status { get; set; } = "RUNNING";

    public string? Result { get; set; }
    public JsonObject? Error { get; set; }
    public long? EndMs { get; set; }

    /// <summary>The operations in the order they were first checkpointed (the EXECUTION operation first).</summary>
    public List<JsonObject> Operations { get; } = [];

    public Dictionary<string, JsonObject> OperationsById { get; } = new(StringComparer.Ordinal);

    /// <summary>Callback deadlines (timeout, heartbeat), by operation id; not part of the wire shape.</summary>
    public Dictionary<string, CallbackTimers> Callbacks { get; } = new(StringComparer.Ordinal);

    public List<JsonObject> Events { get; } = [];

    // ---- live state (never stored: after a restart every RUNNING execution is simply run again) ----

    /// <summary>The checkpoint token of the invocation running it now; null when none runs (suspended).</summary>
    public string? Token { get; set; }

    /// <summary>Due to be invoked (at <see cref="DueMs"/>): started, resumed by a wait, a retry or a callback.</summary>
    public bool NeedsRun { get; set; }

    public long DueMs { get; set; }

    /// <summary>Something changed while an invocation ran (a callback completed, a wait elapsed): run again when it ends.</summary>
    public bool Dirty { get; set; }

    /// <summary>Invocations in a row that failed (crash, timeout, unhandled error outside the SDK); three fail the execution.</summary>
    public int FailedInvocations { get; set; }

    public int InvocationCount { get; set; }

    public bool IsRunning => Status == "RUNNING";

    /// <summary>Completes when the execution ends (synchronous invokers wait on it).</summary>
    public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public string ExecutionId => Arn[(Arn.LastIndexOf('/') + 1)..];
}

/// <summary>When a callback times out: overall (<c>TimeoutSeconds</c>) and without a heartbeat (<c>HeartbeatTimeoutSeconds</c>).</summary>
internal sealed class CallbackTimers
{
    public long? DeadlineMs { get; set; }
    public int? HeartbeatSeconds { get; set; }
    public long? HeartbeatDeadlineMs { get; set; }
}
