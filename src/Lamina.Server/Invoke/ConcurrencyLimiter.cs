using System.Collections.Concurrent;
using System.Diagnostics;
using Lamina.Server.Hosting;
using Lamina.Server.Lambda;
using Lamina.Server.Storage;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Invoke;

/// <summary>
/// Admission of invocations (LAMBDA.md §11, RELIABILITY.md §1.6): at most <see cref="LaminaOptions.AccountConcurrency"/>
/// run at once. A function with reserved concurrency runs at most that many and is guaranteed them: it counts in its
/// own pool, and the functions without a reservation share what is left (account limit − Σ reserved). An admitted
/// invocation holds a <see cref="ConcurrencyLease"/> until its environment is given back.
/// </summary>
/// <remarks>
/// <para>
/// In-memory counters only, one compare-and-swap per admission and one decrement per release: the invoke path
/// takes no lock and never touches the database. A lease releases into the pool it was taken from, so changing a
/// reservation while invocations run is safe; for the moment they finish, the old and new pools may together run
/// more than the new limit (Lambda behaves the same way: a change applies to new invocations).
/// </para>
/// <para>
/// In a cluster (issue #25) each node admits its slice of every limit, so that the slices add up to the limit without
/// a round trip to the database per invocation: limit ÷ live nodes, the remainder one each to the first nodes. The
/// unreserved pool's remainder goes by rank; a reservation's is rotated by a stable hash of the function's name, so
/// that the functions reserving 1 do not all land on the first node. The slices follow the membership the heartbeat
/// last saw (<see cref="ClusterMembership"/>, one field read); until every node has seen a change (about a second) the
/// slices may add up to a little more or less than the limit. The cost: a node whose slice is full throttles even when
/// another node's has room (docs/OPERATING.md, "Running a cluster").
/// </para>
/// </remarks>
internal sealed class ConcurrencyLimiter
{
    /// <summary>Throttle reason when the shared (unreserved) pool is full.</summary>
    public const string AccountLimitReason = "ConcurrentInvocationLimitExceeded";

    /// <summary>Throttle reason when the function's own reservation is full (or 0).</summary>
    public const string ReservedLimitReason = "ReservedFunctionConcurrentInvocationLimitExceeded";

    private readonly int _accountLimit;
    private readonly Func<int> _reservedTotal;
    private readonly Func<ClusterMembership> _membership;
    private readonly ConcurrencyPool _unreserved = new(0);
    private readonly ConcurrentDictionary<string, ConcurrencyPool> _reserved = new(StringComparer.Ordinal);

    public ConcurrencyLimiter(IOptions<LaminaOptions> options, FunctionRegistry registry, ClusterNode cluster)
        : this(options.Value.AccountConcurrency, () => registry.ReservedConcurrencyTotal, () => cluster.Membership)
    {
        registry.Deleted += Forget;
    }

    /// <summary>For tests: a fixed account limit, a source for Σ reserved and one for the membership (default: one node).</summary>
    internal ConcurrencyLimiter(int accountLimit, Func<int> reservedTotal, Func<ClusterMembership>? membership = null)
    {
        _accountLimit = accountLimit;
        _reservedTotal = reservedTotal;
        _membership = membership ?? (static () => ClusterMembership.Single);
    }

    public int AccountLimit => _accountLimit;

    /// <summary>How many invocations without a reservation this node admits at once: its slice of account − Σ reserved.</summary>
    public int UnreservedSlice
    {
        get
        {
            var membership = _membership();
            return Slice(_accountLimit - _reservedTotal(), membership.Count, membership.Rank, _unreserved.Rotation);
        }
    }

    /// <summary>Invocations running now without a reservation.</summary>
    public int UnreservedInUse => Volatile.Read(ref _unreserved.InUse);

    /// <summary>Invocations of <paramref name="function"/> running now in its reserved pool.</summary>
    public int ReservedInUse(string function) => _reserved.TryGetValue(function, out var pool) ? Volatile.Read(ref pool.InUse) : 0;

    /// <summary>
    /// Admits one invocation of <paramref name="function"/>, whose reservation is <paramref name="reserved"/> (null:
    /// none), or says why not (<see cref="AccountLimitReason"/> or <see cref="ReservedLimitReason"/>).
    /// </summary>
    public bool TryAcquire(string function, int? reserved, out ConcurrencyLease? lease, out string? throttleReason)
    {
        ConcurrencyPool pool;
        int limit;
        if (reserved is { } own)
        {
            pool = _reserved.GetOrAdd(function, static name => new ConcurrencyPool(StableHash(name)));
            limit = own;
            throttleReason = ReservedLimitReason;
        }
        else
        {
            pool = _unreserved;
            limit = _accountLimit - _reservedTotal();
            throttleReason = AccountLimitReason;
        }
        var membership = _membership();
        limit = Slice(limit, membership.Count, membership.Rank, pool.Rotation);
        while (true)
        {
            var inUse = Volatile.Read(ref pool.InUse);
            if (inUse >= limit)
            {
                lease = null;
                return false;
            }
            if (Interlocked.CompareExchange(ref pool.InUse, inUse + 1, inUse) == inUse)
            {
                lease = new ConcurrencyLease(pool);
                throttleReason = null;
                return true;
            }
        }
    }

    /// <summary>This node's slice of <paramref name="function"/>'s reservation <paramref name="reserved"/>.</summary>
    public int ReservedSlice(string function, int reserved)
    {
        var membership = _membership();
        return Slice(reserved, membership.Count, membership.Rank, StableHash(function));
    }

    /// <summary>
    /// Forgets a deleted function's pool (its running invocations still release into it). A reservation that only
    /// changes keeps its pool, so invocations already running keep counting against the new value.
    /// </summary>
    public void Forget(string function) => _reserved.TryRemove(function, out _);

    /// <summary>
    /// This node's share of <paramref name="limit"/> among <paramref name="nodes"/> live nodes: limit ÷ nodes, plus one
    /// for the nodes whose rank, rotated by <paramref name="rotation"/>, falls below the remainder. Over all ranks the
    /// shares add up to the limit exactly.
    /// </summary>
    internal static int Slice(int limit, int nodes, int rank, uint rotation)
    {
        if (nodes <= 1 || limit <= 0)
        {
            return limit;
        }
        var position = (int)(((uint)rank + rotation % (uint)nodes) % (uint)nodes);
        return limit / nodes + (position < limit % nodes ? 1 : 0);
    }

    /// <summary>FNV-1a of the name: the same on every node and every run (string.GetHashCode is randomised per process).</summary>
    internal static uint StableHash(string name)
    {
        var hash = 2166136261u;
        foreach (var c in name)
        {
            hash = (hash ^ c) * 16777619u;
        }
        return hash;
    }
}

/// <summary>Counts the invocations running in one pool.</summary>
internal sealed class ConcurrencyPool(uint rotation)
{
    public int InUse;

    /// <summary>Where this pool's remainder starts among the nodes (see <see cref="ConcurrencyLimiter.Slice"/>).</summary>
    public readonly uint Rotation = rotation;
}

/// <summary>One admitted invocation's unit of concurrency. <see cref="Release"/> is idempotent.</summary>
internal sealed class ConcurrencyLease
{
    private ConcurrencyPool? _pool;

    internal ConcurrencyLease(ConcurrencyPool? pool) => _pool = pool;

    /// <summary>A lease that counts nowhere (for callers outside admission, such as tests).</summary>
    public static ConcurrencyLease None => new(null);

    public void Release()
    {
        if (Interlocked.Exchange(ref _pool, null) is { } pool)
        {
            var left = Interlocked.Decrement(ref pool.InUse);
            Debug.Assert(left >= 0, "a concurrency pool went negative");
        }
    }
}
