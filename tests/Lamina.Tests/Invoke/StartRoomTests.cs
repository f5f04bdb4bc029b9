using Lamina.Server.Invoke;

namespace Lamina.Tests.Invoke;

/// <summary>Room for cold starts (--max-cold-starts): functions waiting take turns, each function's waiters in order.</summary>
public sealed class StartRoomTests
{
    private static readonly TimeSpan Long = TimeSpan.FromMinutes(1);

    [Fact]
    public async Task A_free_room_is_taken_at_once_and_the_last_one_is_waited_for()
    {
        var room = new StartRoom(2);
        Assert.True(room.TryTake());
        Assert.True(await room.TakeAsync("a", Long, CancellationToken.None));
        Assert.False(room.TryTake());

        var waiting = room.TakeAsync("a", Long, CancellationToken.None);
        Assert.False(waiting.IsCompleted);
        Assert.Equal(1, room.Waiting);
        room.Release();
        Assert.True(await waiting);
        Assert.Equal(0, room.Waiting);
        Assert.False(room.TryTake()); // the room went to the waiter, not back to the free ones
    }

    [Fact]
    public async Task Functions_waiting_take_turns_and_each_ones_waiters_keep_their_order()
    {
        var room = new StartRoom(1);
        Assert.True(room.TryTake());
        var waiters = new List<(string Name, Task<bool> Room)>();
        for (var i = 0; i < 3; i++)
        {
            waiters.Add(($"burst{i}", room.TakeAsync("burst", Long, CancellationToken.None)));
        }
        waiters.Add(("other", room.TakeAsync("other", Long, CancellationToken.None)));
        waiters.Add(("third", room.TakeAsync("third", Long, CancellationToken.None)));

        // One release, one waiter served: the one whose turn it is.
        var served = new List<string>();
        var pending = waiters.ToList();
        while (pending.Count > 0)
        {
            room.Release();
            var done = await Task.WhenAny(pending.Select(w => w.Room));
            Assert.True(await done);
            served.Add(pending.Single(w => w.Room == done).Name);
            pending.RemoveAll(w => w.Room == done);
        }
        Assert.Equal(["burst0", "other", "third", "burst1", "burst2"], served);
        Assert.Equal(0, room.Waiting);

        room.Release();
        Assert.True(room.TryTake()); // nobody left waiting: the room is free again
    }

    [Fact]
    public async Task A_waiter_that_gave_up_is_passed_by_and_the_room_goes_to_the_next()
    {
        var room = new StartRoom(1);
        Assert.True(room.TryTake());
        var timedOut = room.TakeAsync("a", TimeSpan.FromMilliseconds(1), CancellationToken.None);
        using var cancel = new CancellationTokenSource();
        var cancelled = room.TakeAsync("b", Long, cancel.Token);
        var next = room.TakeAsync("a", Long, CancellationToken.None);

        Assert.False(await timedOut);
        await cancel.CancelAsync();
        Assert.False(await cancelled);
        Assert.Equal(1, room.Waiting);

        room.Release();
        Assert.True(await next);
        room.Release();
        Assert.True(room.TryTake());
        Assert.False(room.TryTake());
    }

    [Fact]
    public async Task A_function_whose_waiter_gave_up_keeps_one_turn()
    {
        var room = new StartRoom(1);
        Assert.True(room.TryTake());
        Assert.False(await room.TakeAsync("a", TimeSpan.FromMilliseconds(1), CancellationToken.None));
        Assert.Equal(0, room.Waiting); // it left its line at once
        var a2 = room.TakeAsync("a", Long, CancellationToken.None);
        var a3 = room.TakeAsync("a", Long, CancellationToken.None);
        var b = room.TakeAsync("b", Long, CancellationToken.None);
        Assert.Equal(3, room.Waiting);

        room.Release();
        Assert.True(await a2);
        room.Release();
        Assert.True(await b); // a's turn, queued when its first waiter came, was not doubled by the later ones
        Assert.False(a3.IsCompleted);
        room.Release();
        Assert.True(await a3);
    }

    [Fact]
    public async Task A_wait_already_cancelled_ends_at_once_without_room()
    {
        var room = new StartRoom(1);
        Assert.True(room.TryTake());
        Assert.False(await room.TakeAsync("a", Timeout.InfiniteTimeSpan, new CancellationToken(canceled: true)));
        room.Release();
        Assert.True(room.TryTake());
    }
}
