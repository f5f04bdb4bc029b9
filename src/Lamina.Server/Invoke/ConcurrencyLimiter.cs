using System.Collections.Concurrent;
using System.Diagnostics;
using Lamina.Server.Hosting;
using Lamina.Server.Lambda;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Invoke;

/// <summary>
/// Admission of invocations (LAMBDA.md §11, RELIABILITY.md §1.6): at most <see cref="LaminaOptions.AccountConcurrency"/>
/// run at once. A function with reserved concurrency runs at most that many and is guaranteed them: it counts in its
/// own pool, and the functions without a reservation share what is left (account limit − Σ reserved). An admitted
/// invocation holds a <see cref="ConcurrencyLease"/> until its environment is given back.
/// </summary>
/// <remarks>
/// In-memory counters only, one compare-and-swap per admission and one decrement per release: the invoke path
/// takes no lock and never touches the database. A lease releases into the pool it was taken from, so changing a
/// reservation while invocations run is safe; for the moment they finish, the old and new pools may together run
/// more than the new limit (Lambda behaves the same way: a change applies to new invocations).
/// </remarks>
internal sealed class ConcurrencyLimiter
{
    /// <summary>Throttle reason when the shared (unreserved) pool is full.</summary>
    public const string AccountLimitReason = "ConcurrentInvocationLimitExceeded";

    /// <summary>Throttle reason when the function's own reservation is full (or 0).</summary>
    public const string ReservedLimitReason = "ReservedFunctionConcurrentInvocationLimitExceeded";

    private readonly int _accountLimit;
    private readonly Func<int> _reservedTotal;
    private readonly ConcurrencyPool _unreserved = new();
    private readonly ConcurrentDictionary<string, ConcurrencyPool> _reserved = new(StringComparer.Ordinal);

    public ConcurrencyLimiter(IOptions<LaminaOptions> options, FunctionRegistry registry)
        : this(options.Value.AccountConcurrency, () => registry.ReservedConcurrencyTotal)
    {
        registry.Deleted += Forget;
    }

    /// <summary>For tests: a fixed account limit and a source for Σ reserved.</summary>
    internal ConcurrencyLimiter(int accountLimit, Func<int> reservedTotal)
    {
        _accountLimit = accountLimit;
        _reservedTotal = reservedTotal;
    }

    public int AccountLimit => _accountLimit;

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
            pool = _reserved.GetOrAdd(function, static _ => new ConcurrencyPool());
            limit = own;
            throttleReason = ReservedLimitReason;
        }
        else
        {
            pool = _unreserved;
            limit = _accountLimit - _reservedTotal();
            throttleReason = AccountLimitReason;
        }
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

    /// <summary>
    /// Forgets a deleted function's pool (its running invocations still release into it). A reservation that only
    /// changes keeps its pool, so invocations already running keep counting against the new value.
    /// </summary>
    public void Forget(string function) => _reserved.TryRemove(function, out _);
}

/// <summary>Counts the invocations running in one pool.</summary>
internal sealed class ConcurrencyPool
{
    public int InUse;
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
