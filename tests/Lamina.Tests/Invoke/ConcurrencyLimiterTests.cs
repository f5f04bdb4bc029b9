using Lamina.Server.Invoke;
using Lamina.Server.Storage;

namespace Lamina.Tests.Invoke;

public sealed class ConcurrencyLimiterTests
{
    private int _reservedTotal;

    private ClusterMembership _membership = ClusterMembership.Single;

    private ConcurrencyLimiter CreateSut(int accountLimit) => new(accountLimit, () => _reservedTotal, () => _membership);

    [Fact]
    public void Unreserved_AdmitsUpToAccountLimit_ThenThrottlesWithAccountReason()
    {
        var limiter = CreateSut(2);

        Assert.True(limiter.TryAcquire("a", null, out var first, out _));
        Assert.True(limiter.TryAcquire("b", null, out _, out _));
        Assert.False(limiter.TryAcquire("a", null, out var none, out var reason));

        Assert.Null(none);
        Assert.Equal(ConcurrencyLimiter.AccountLimitReason, reason);
        Assert.Equal(2, limiter.UnreservedInUse);
        first!.Release();
        Assert.True(limiter.TryAcquire("c", null, out _, out _));
    }

    [Fact]
    public void Reserved_LimitsTheFunctionToItsReservation_WithReservedReason()
    {
        var limiter = CreateSut(1000);
        _reservedTotal = 1;

        Assert.True(limiter.TryAcquire("slow", 1, out var lease, out _));
        Assert.False(limiter.TryAcquire("slow", 1, out _, out var reason));

        Assert.Equal(ConcurrencyLimiter.ReservedLimitReason, reason);
        Assert.Equal(1, limiter.ReservedInUse("slow"));
        Assert.Equal(0, limiter.UnreservedInUse);
        lease!.Release();
        Assert.Equal(0, limiter.ReservedInUse("slow"));
    }

    [Fact]
    public void ReservedZero_ThrottlesEverything()
    {
        var limiter = CreateSut(1000);

        Assert.False(limiter.TryAcquire("off", 0, out _, out var reason));
        Assert.Equal(ConcurrencyLimiter.ReservedLimitReason, reason);
    }

    [Fact]
    public void Reserved_IsGuaranteed_UnreservedShareWhatIsLeft()
    {
        var limiter = CreateSut(5);
        _reservedTotal = 3; // one function reserves 3: the others share 2

        Assert.True(limiter.TryAcquire("u1", null, out _, out _));
        Assert.True(limiter.TryAcquire("u2", null, out _, out _));
        Assert.False(limiter.TryAcquire("u3", null, out _, out var reason));
        Assert.Equal(ConcurrencyLimiter.AccountLimitReason, reason);

        // The unreserved pool is full, yet the reserved function still gets all 3 of its own.
        for (var i = 0; i < 3; i++)
        {
            Assert.True(limiter.TryAcquire("r", 3, out _, out _));
        }
        Assert.False(limiter.TryAcquire("r", 3, out _, out _));
    }

    [Fact]
    public void Release_IsIdempotent_CountersNeverGoNegative()
    {
        var limiter = CreateSut(3);
        Assert.True(limiter.TryAcquire("a", null, out var lease, out _));
        Assert.True(limiter.TryAcquire("r", 2, out var reserved, out _));

        lease!.Release();
        lease.Release();
        reserved!.Release();
        reserved.Release();
        ConcurrencyLease.None.Release();

        Assert.Equal(0, limiter.UnreservedInUse);
        Assert.Equal(0, limiter.ReservedInUse("r"));
    }

    [Fact]
    public void LeaseReleasesIntoThePoolItCameFrom_WhenTheReservationChangesMeanwhile()
    {
        var limiter = CreateSut(1000);
        _reservedTotal = 1;
        Assert.True(limiter.TryAcquire("f", 1, out var reservedLease, out _));

        _reservedTotal = 0; // DeleteFunctionConcurrency while it runs
        Assert.True(limiter.TryAcquire("f", null, out var unreservedLease, out _));
        reservedLease!.Release();

        Assert.Equal(0, limiter.ReservedInUse("f"));
        Assert.Equal(1, limiter.UnreservedInUse);
        unreservedLease!.Release();
        Assert.Equal(0, limiter.UnreservedInUse);
    }

    [Fact]
    public async Task ConcurrentAcquireAndRelease_NeverExceedTheLimit_AndEndAtZero()
    {
        var limiter = CreateSut(8);
        var running = 0;
        var highest = 0;
        await Parallel.ForAsync(0, 10_000, async (_, _) =>
        {
            if (limiter.TryAcquire("f", null, out var lease, out _))
            {
                var now = Interlocked.Increment(ref running);
                InterlockedMax(ref highest, now);
                await Task.Yield();
                Interlocked.Decrement(ref running);
                lease!.Release();
            }
        });

        Assert.InRange(highest, 1, 8);
        Assert.Equal(0, limiter.UnreservedInUse);
    }

    [Theory]
    [InlineData(2, 3)]
    [InlineData(7, 3)]
    [InlineData(1000, 3)]
    [InlineData(5, 5)]
    [InlineData(1, 4)]
    [InlineData(0, 3)]
    public void Slice_AddsUpToTheLimitOverTheNodes_EachWithinOneOfTheOthers(int limit, int nodes)
    {
        foreach (var rotation in new uint[] { 0, 1, 2, 7, uint.MaxValue })
        {
            var slices = Enumerable.Range(0, nodes).Select(rank => ConcurrencyLimiter.Slice(limit, nodes, rank, rotation)).ToArray();

            Assert.Equal(limit, slices.Sum());
            Assert.InRange(slices.Max() - slices.Min(), 0, 1);
        }
    }

    [Fact]
    public void Slice_OnOneNode_IsTheWholeLimit()
    {
        Assert.Equal(1000, ConcurrencyLimiter.Slice(1000, 1, 0, 12345));
        Assert.Equal(0, ConcurrencyLimiter.Slice(0, 1, 0, 0));
    }

    [Fact]
    public void Slice_RemainderGoesByRankWithoutRotation_AndMovesWithTheRotation()
    {
        Assert.Equal([2, 2, 1], Enumerable.Range(0, 3).Select(rank => ConcurrencyLimiter.Slice(5, 3, rank, 0)));
        Assert.Equal([2, 1, 2], Enumerable.Range(0, 3).Select(rank => ConcurrencyLimiter.Slice(5, 3, rank, 1)));
        Assert.Equal([1, 2, 2], Enumerable.Range(0, 3).Select(rank => ConcurrencyLimiter.Slice(5, 3, rank, 2)));
        Assert.Equal([2, 1, 2], Enumerable.Range(0, 3).Select(rank => ConcurrencyLimiter.Slice(5, 3, rank, 4))); // 4 ≡ 1
    }

    [Fact]
    public void StableHash_IsFnv1a_TheSameOnEveryNode()
    {
        // Fixed values: a node computing another rotation would let a reservation's slices overlap.
        Assert.Equal(2166136261u, ConcurrencyLimiter.StableHash(""));
        Assert.Equal(0xE40C292Cu, ConcurrencyLimiter.StableHash("a"));
        var rotations = new[] { "f1", "f2", "f3", "f4" }.Select(name => ConcurrencyLimiter.StableHash(name) % 3);
        Assert.True(rotations.Distinct().Count() > 1, "different functions' remainders land on different nodes");
    }

    [Fact]
    public void InACluster_EachNodeAdmitsItsSlice_AndTheSlicesAddUpToTheLimits()
    {
        _reservedTotal = 2;
        var admittedReserved = 0;
        var admittedUnreserved = 0;
        for (var rank = 0; rank < 3; rank++)
        {
            _membership = new ClusterMembership(3, rank);
            var node = CreateSut(7); // 5 unreserved over 3 nodes: 2, 2, 1
            var unreserved = 0;
            while (node.TryAcquire("u", null, out _, out _))
            {
                unreserved++;
            }
            var reserved = 0;
            while (node.TryAcquire("r", 2, out _, out _))
            {
                reserved++;
            }
            Assert.Equal(unreserved, node.UnreservedSlice);
            Assert.Equal(rank < 2 ? 2 : 1, unreserved);
            Assert.InRange(reserved, 0, 1);
            admittedUnreserved += unreserved;
            admittedReserved += reserved;
        }
        Assert.Equal(5, admittedUnreserved);
        Assert.Equal(2, admittedReserved);
    }

    [Fact]
    public void MembershipChange_ResizesTheSlices_ForTheNextAdmission()
    {
        _membership = new ClusterMembership(2, 1);
        var limiter = CreateSut(4); // 2 each on two nodes
        Assert.True(limiter.TryAcquire("a", null, out _, out _));
        Assert.True(limiter.TryAcquire("a", null, out _, out _));
        Assert.False(limiter.TryAcquire("a", null, out _, out _));

        _membership = ClusterMembership.Single; // the other node left: this one admits the whole limit
        Assert.True(limiter.TryAcquire("a", null, out _, out _));
        Assert.True(limiter.TryAcquire("a", null, out _, out _));
        Assert.False(limiter.TryAcquire("a", null, out _, out var reason));
        Assert.Equal(ConcurrencyLimiter.AccountLimitReason, reason);
    }

    private static void InterlockedMax(ref int target, int value)
    {
        var current = Volatile.Read(ref target);
        while (value > current)
        {
            var seen = Interlocked.CompareExchange(ref target, value, current);
            if (seen == current)
            {
                return;
            }
            current = seen;
        }
    }
}
