using System.Globalization;
using Lamina.Server.Lambda;
using Lamina.Server.Sandbox;
using Npgsql;

namespace Lamina.Server.Invoke;

/// <summary>
/// Provisioned concurrency: for each version or alias that asks for it, that many environments are initialised ahead of
/// traffic, kept warm (never reaped or evicted), used before on-demand ones, and replaced when they die. The registry is
/// the desired state; <see cref="ReconcileProvisioned"/> moves the environments towards it, at once when a
/// configuration changes and on every heartbeat (which is what replaces the dead and follows an alias that moved).
/// </summary>
/// <remarks>
/// In a cluster (issue #25) each node keeps its share of the count warm (<see cref="ConcurrencyLimiter.Slice"/>, the
/// remainder rotated by the function's name as its reservation's is, so a node whose slice of a reservation is 0 holds
/// no provisioned environment it could not use), and follows the membership on every heartbeat: when a node dies the
/// others start its share. Each node publishes what it holds in <c>provisioned_allocations</c> on its cluster
/// heartbeat; the API reports the sum over live nodes (<see cref="ClusterProvisionedAsync"/>).
/// </remarks>
internal sealed partial class EnvironmentPool
{
    private readonly Lock _provisionedLock = new();
    private readonly Dictionary<(string Function, string Qualifier), ProvisionedTarget> _provisioned = [];
    private string? _publishedProvisioned; // what this node last wrote to provisioned_allocations (cluster only)

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

    /// <summary>
    /// In a cluster: what the live nodes hold for <paramref name="function"/>'s provisioned concurrency, by qualifier
    /// and request (its LastModified, in ms): the environments ready, summed, and the first failure reported. Null on a
    /// single machine, where <see cref="GetProvisionedStatus"/> is the whole answer.
    /// </summary>
    public async Task<Dictionary<(string Qualifier, long ModifiedMs), (int Allocated, string? Failure)>?> ClusterProvisionedAsync(string function,
        CancellationToken cancellationToken)
    {
        if (_database.Postgres is not { } postgres)
        {
            return null;
        }
        await using var command = postgres.CreateCommand("""
            SELECT a.qualifier, a.modified_ms, sum(a.allocated)::int, min(a.failure)
            FROM provisioned_allocations a JOIN cluster_nodes n ON n.node_id = a.node_id AND n.expires_at > now()
            WHERE a.function_name = @function
            GROUP BY a.qualifier, a.modified_ms;
            """);
        command.Parameters.AddWithValue("function", function);
        var held = new Dictionary<(string, long), (int, string?)>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            held[(reader.GetString(0), reader.GetInt64(1))] = (reader.GetInt32(2), reader.IsDBNull(3) ? null : reader.GetString(3));
        }
        return held;
    }

    /// <summary>
    /// On the cluster's heartbeat: writes what this node holds (one row per version or alias it provisions, its share
    /// included when that is 0) when it changed since the last write, and clears the rows of nodes no longer alive.
    /// </summary>
    private async Task PublishProvisionedAsync()
    {
        var functions = new List<string>();
        var qualifiers = new List<string>();
        var modified = new List<long>();
        var allocated = new List<int>();
        var failures = new List<string?>();
        lock (_provisionedLock)
        {
            foreach (var target in _provisioned.Values)
            {
                var status = target.Status();
                functions.Add(target.Function);
                qualifiers.Add(target.Qualifier);
                modified.Add(target.LastModified.ToUnixTimeMilliseconds());
                allocated.Add(status.Allocated);
                failures.Add(target.Failure);
            }
        }
        var snapshot = string.Join('\n', functions.Select((f, i) => string.Create(CultureInfo.InvariantCulture, $"{f}|{qualifiers[i]}|{modified[i]}|{allocated[i]}|{failures[i]}")));
        if (snapshot == _publishedProvisioned)
        {
            return;
        }
        await using var batch = _database.Postgres!.CreateBatch();
        var delete = new NpgsqlBatchCommand("""
            DELETE FROM provisioned_allocations
            WHERE node_id = @node OR node_id NOT IN (SELECT node_id FROM cluster_nodes WHERE expires_at > now());
            """);
        delete.Parameters.AddWithValue("node", _cluster.NodeId);
        var insert = new NpgsqlBatchCommand("""
            INSERT INTO provisioned_allocations (node_id, function_name, qualifier, modified_ms, allocated, failure)
            SELECT @node, f, q, m, a, x FROM unnest(@functions::text[], @qualifiers::text[], @modified::bigint[], @allocated::int[], @failures::text[]) AS t(f, q, m, a, x);
            """);
        insert.Parameters.AddWithValue("node", _cluster.NodeId);
        insert.Parameters.AddWithValue("functions", functions.ToArray());
        insert.Parameters.AddWithValue("qualifiers", qualifiers.ToArray());
        insert.Parameters.AddWithValue("modified", modified.ToArray());
        insert.Parameters.AddWithValue("allocated", allocated.ToArray());
        insert.Parameters.AddWithValue("failures", failures.ToArray());
        batch.BatchCommands.Add(delete);
        batch.BatchCommands.Add(insert);
        await batch.ExecuteNonQueryAsync(CancellationToken.None); // one implicit transaction; short, so not cut off at shutdown
        _publishedProvisioned = snapshot;
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
                    Reconcile(target, provisioned, ShareOf(entry.Name, provisioned.Requested), config, toStop);
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

    /// <summary>This node's share of a function's provisioned <paramref name="requested"/> (all of it on a single machine).</summary>
    private int ShareOf(string function, int requested)
    {
        var membership = _cluster.Membership;
        return ConcurrencyLimiter.Slice(requested, membership.Count, membership.Rank, ConcurrencyLimiter.StableHash(function));
    }

    // Under _provisionedLock.
    private void Reconcile(ProvisionedTarget target, ProvisionedConcurrencyConfig provisioned, int share, FunctionConfig config, List<ExecutionEnvironment> toStop)
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
        target.Share = share; // follows the cluster's membership
        target.Environments.RemoveAll(e => !e.IsUsable); // dead ones are replaced below
        if (target.Failure is not null)
        {
            return;
        }
        var surplus = target.Environments.Count + target.Starting - target.Share;
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
        // Provisioned environments start within --max-cold-starts too, as room frees (nobody waits on them). They take
        // turns of their own, beside the function's invocations' (a name has no spaces), so that a scale-up does not
        // queue ahead of every cold start of its function.
        var holdsRoom = await _startRoom.TakeAsync(config.Name + " provisioned", Timeout.InfiniteTimeSpan, _stopping.Token);
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
        finally
        {
            if (holdsRoom)
            {
                _startRoom.Release();
            }
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
            else if (current && environment!.IsUsable && target.Environments.Count < target.Share)
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

    /// <summary>The count asked for (over the whole cluster).</summary>
    public int Requested { get; set; }

    /// <summary>How many of them this node keeps (<see cref="Requested"/> on a single machine).</summary>
    public int Share { get; set; }

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
        var status = Failure is not null ? "FAILED" : allocated >= Share ? "READY" : "IN_PROGRESS";
        return new ProvisionedStatus(Requested, allocated, status, Failure ?? (status == "IN_PROGRESS" ? Waiting : null));
    }
}

/// <summary>What GetProvisionedConcurrencyConfig reports besides the request itself.</summary>
internal readonly record struct ProvisionedStatus(int Requested, int Allocated, string Status, string? StatusReason);
