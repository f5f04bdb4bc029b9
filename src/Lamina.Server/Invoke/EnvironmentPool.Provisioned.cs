using Lamina.Server.Lambda;
using Lamina.Server.Sandbox;

namespace Lamina.Server.Invoke;

/// <summary>
/// Provisioned concurrency: for each version or alias that asks for it, that many environments are initialised ahead of
/// traffic, kept warm (never reaped or evicted), used before on-demand ones, and replaced when they die. The registry is
/// the desired state; <see cref="ReconcileProvisioned"/> moves the environments towards it, at once when a
/// configuration changes and on every heartbeat (which is what replaces the dead and follows an alias that moved).
/// </summary>
internal sealed partial class EnvironmentPool
{
    private readonly Lock _provisionedLock = new();
    private readonly Dictionary<(string Function, string Qualifier), ProvisionedTarget> _provisioned = [];

    /// <summary>
    /// The state of <paramref name="qualifier"/>'s provisioned concurrency as Lambda reports it, or null if the pool does
    /// not (yet) track it.
    /// </summary>
    public ProvisionedStatus? GetProvisionedStatus(string function, string qualifier)
    {
        lock (_provisionedLock)
        {
            return _provisioned.TryGetValue((function, qualifier), out var target) ? target.Status() : null;
        }
    }

    /// <summary>Brings the provisioned environments in line with the registry. Cheap when nothing changed; never blocks on a start.</summary>
    public void ReconcileProvisioned()
    {
        if (_launcher is null || _stopping.IsCancellationRequested)
        {
            return;
        }
        var toStop = new List<ExecutionEnvironment>();
        lock (_provisionedLock)
        {
            var wanted = new HashSet<(string, string)>();
            foreach (var entry in _registry.ListEntries())
            {
                foreach (var (qualifier, provisioned) in entry.ProvisionedConcurrency)
                {
                    if (entry.ResolvePrimary(qualifier) is not { } config)
                    {
                        continue;
                    }
                    var key = (entry.Name, qualifier);
                    wanted.Add(key);
                    if (!_provisioned.TryGetValue(key, out var target))
                    {
                        _provisioned[key] = target = new ProvisionedTarget(entry.Name, qualifier);
                    }
                    Reconcile(target, provisioned, config, toStop);
                }
            }
            foreach (var key in _provisioned.Keys.Where(k => !wanted.Contains(k)).ToList())
            {
                var target = _provisioned[key];
                _provisioned.Remove(key);
                Release(target, target.Environments.Count, toStop);
            }
        }
        foreach (var environment in toStop)
        {
            _ = StopAsync(environment);
        }
    }

    // Under _provisionedLock.
    private void Reconcile(ProvisionedTarget target, ProvisionedConcurrencyConfig provisioned, FunctionConfig config, List<ExecutionEnvironment> toStop)
    {
        if (target.LastModified != provisioned.LastModified || !ReferenceEquals(target.Config, config))
        {
            // A new request, or the alias now points elsewhere: start over (a failure is retried only on a new request).
            if (!ReferenceEquals(target.Config, config))
            {
                Release(target, target.Environments.Count, toStop);
            }
            target.Config = config;
            target.Requested = provisioned.Requested;
            target.LastModified = provisioned.LastModified;
            target.Failure = null;
        }
        target.Environments.RemoveAll(e => !e.IsUsable); // dead ones are replaced below
        if (target.Failure is not null)
        {
            return;
        }
        var surplus = target.Environments.Count + target.Starting - target.Requested;
        if (surplus > 0)
        {
            Release(target, surplus, toStop);
            return;
        }
        for (var i = surplus; i < 0; i++)
        {
            target.Starting++;
            _ = StartProvisionedAsync(target, config, target.LastModified);
        }
    }

    // Under _provisionedLock: hands up to `count` environments back: idle ones stop, busy ones finish as on-demand ones.
    private void Release(ProvisionedTarget target, int count, List<ExecutionEnvironment> toStop)
    {
        foreach (var environment in target.Environments.OrderBy(e => e.IsUsable).Take(count).ToList())
        {
            target.Environments.Remove(environment);
            environment.Provisioned = null;
            if (_slots.TryGetValue(environment.Config, out var slot))
            {
                lock (slot)
                {
                    if (slot.ProvisionedIdle.Remove(environment))
                    {
                        toStop.Add(environment);
                    }
                }
            }
        }
    }

    private async Task StartProvisionedAsync(ProvisionedTarget target, FunctionConfig config, DateTimeOffset request)
    {
        await Task.Yield(); // reconciling never waits for a sandbox
        ExecutionEnvironment? environment = null;
        string? failure = null;
        try
        {
            environment = await StartAsync(config, requestId: "", provisioned: true);
            // Init ahead of traffic is bounded by the larger of Lambda's 10 s and the function's timeout.
            var limit = TimeSpan.FromSeconds(Math.Max(_options.InitTimeout.TotalSeconds, config.Timeout));
            var initError = await environment.WaitForInitAsync(limit, "");
            _metrics.RecordColdStart(config, environment.ColdStart.Reason, environment.InitDurationMs);
            if (initError is { } error)
            {
                failure = $"FUNCTION_ERROR_INIT_FAILURE: {error.ErrorType ?? "Runtime.Unknown"}";
            }
        }
        catch (CapacityException e)
        {
            lock (_provisionedLock)
            {
                target.Starting--;
                target.Waiting = $"Waiting for memory: {e.Message}."; // tried again on the next heartbeat
            }
            return;
        }
        catch (Exception e) when (e is SandboxException or EntrypointException)
        {
            failure = $"FUNCTION_ERROR_INIT_FAILURE: {e.Message}";
        }
        catch (Exception e)
        {
            // Never leave Starting counted for a start that is over: the target would stay IN_PROGRESS for good.
            failure = $"Lamina could not start the environment: {e.Message}";
        }

        var keep = false;
        lock (_provisionedLock)
        {
            target.Starting--;
            target.Waiting = null;
            var current = _provisioned.TryGetValue((target.Function, target.Qualifier), out var now) && ReferenceEquals(now, target)
                && ReferenceEquals(target.Config, config) && target.LastModified == request;
            if (failure is not null)
            {
                if (current)
                {
                    target.Failure = failure;
                    Log.ProvisionedInitFailed(_logger, target.Function, target.Qualifier, failure);
                }
            }
            else if (current && environment!.IsUsable && target.Environments.Count < target.Requested)
            {
                environment.Provisioned = target;
                target.Environments.Add(environment);
                keep = true;
            }
        }
        if (environment is null)
        {
            return;
        }
        if (failure is not null)
        {
            Discard(environment);
        }
        else if (keep)
        {
            Return(environment); // becomes idle in its slot's provisioned list
        }
        else
        {
            _ = StopAsync(environment); // no longer wanted (deleted, lowered or moved while it started)
        }
    }
}

/// <summary>The pool's view of one version's or alias's provisioned concurrency (guarded by the pool's lock).</summary>
internal sealed class ProvisionedTarget(string function, string qualifier)
{
    public string Function { get; } = function;

    public string Qualifier { get; } = qualifier;

    /// <summary>The version the environments run (an alias's primary version).</summary>
    public FunctionConfig? Config { get; set; }

    public int Requested { get; set; }

    public DateTimeOffset LastModified { get; set; }

    /// <summary>Environments initialised (idle or busy) that count for it.</summary>
    public List<ExecutionEnvironment> Environments { get; } = [];

    /// <summary>Environments starting now.</summary>
    public int Starting { get; set; }

    /// <summary>Why Init failed (Status FAILED until the next PutProvisionedConcurrencyConfig).</summary>
    public string? Failure { get; set; }

    /// <summary>Why starting is held back for now (IN_PROGRESS).</summary>
    public string? Waiting { get; set; }

    public ProvisionedStatus Status()
    {
        var allocated = Environments.Count(static e => e.IsUsable && e.Initialized);
        var status = Failure is not null ? "FAILED" : allocated >= Requested ? "READY" : "IN_PROGRESS";
        return new ProvisionedStatus(Requested, allocated, status, Failure ?? (status == "IN_PROGRESS" ? Waiting : null));
    }
}

/// <summary>What GetProvisionedConcurrencyConfig reports besides the request itself.</summary>
internal readonly record struct ProvisionedStatus(int Requested, int Allocated, string Status, string? StatusReason);
