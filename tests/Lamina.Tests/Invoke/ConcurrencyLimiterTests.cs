using Lamina.Server.Invoke;

namespace Lamina.Tests.Invoke;

public sealed class ConcurrencyLimiterTests
{
    private int _reservedTotal;

    private ConcurrencyLimiter CreateSut(int accountLimit) => new(accountLimit, () => _reservedTotal);

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
