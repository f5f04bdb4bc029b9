using Lamina.Server.Async;
using Lamina.Server.Hosting;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Lamina.Tests.Async;

/// <summary>The durable queue on a real SQLite file: what is accepted survives a reopen, a lease left by a crash comes back.</summary>
public sealed class AsyncEventStoreTests : IAsyncDisposable
{
    private readonly string _dataDirectory = Path.Combine(Path.GetTempPath(), "lamina-async-" + Guid.NewGuid().ToString("N"));
    private readonly List<AsyncEventStore> _stores = [];

    public async ValueTask DisposeAsync()
    {
        foreach (var store in _stores)
        {
            await store.DisposeAsync();
        }
        SqliteConnection.ClearAllPools();
        if (Directory.Exists(_dataDirectory))
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
    }

    private AsyncEventStore Open(out int returned)
    {
        var store = new AsyncEventStore(Options.Create(new LaminaOptions { DataDirectory = _dataDirectory }), NullLogger<AsyncEventStore>.Instance);
        returned = store.Open();
        _stores.Add(store);
        return store;
    }

    private static AsyncEvent Event(string id, long dueMs = 0, string function = "f", long createdMs = 1000) => new()
    {
        Id = id,
        FunctionName = function,
        InvokedArn = "arn:aws:lambda:us-east-1:000000000000:function:" + function,
        Payload = """{"n":1}"""u8.ToArray(),
        TraceId = "Root=1-0-0",
        CreatedMs = createdMs,
        DueMs = dueMs,
    };

    [Fact]
    public async Task ConcurrentEnqueues_AllCommitted_LeasedInDueOrder()
    {
        var store = Open(out _);
        await Task.WhenAll(Enumerable.Range(0, 500).Select(i => store.EnqueueAsync(Event($"e{i:D3}", dueMs: 1000 - i))));

        var leased = await store.LeaseDueAsync(nowMs: 2000, limit: 10);

        Assert.Equal(10, leased.Count);
        Assert.Equal("e499", leased[0].Id); // due first
        Assert.Equal((500L, 0L), await store.CountAsync());
        Assert.Empty(await store.LeaseDueAsync(nowMs: 0, limit: 10)); // nothing due that early
        Assert.Equal(490, (await store.LeaseDueAsync(nowMs: 2000, limit: 1000)).Count);
    }

    [Fact]
    public async Task PausedFunctions_EventsStayQueued_AndDoNotCountAsDue()
    {
        var store = Open(out _);
        await store.EnqueueAsync(Event("throttled-1", dueMs: 10, function: "busy"));
        await store.EnqueueAsync(Event("throttled-2", dueMs: 20, function: "busy"));
        await store.EnqueueAsync(Event("other", dueMs: 500, function: "idle \"quoted\""));

        Assert.Equal(500, await store.NextDueAsync(["busy"]));
        Assert.Equal(["other"], (await store.LeaseDueAsync(nowMs: 2000, limit: 10, paused: ["busy"])).Select(e => e.Id));
        Assert.Null(await store.NextDueAsync(["busy"]));
        Assert.Equal(10, await store.NextDueAsync());
        Assert.Equal(["throttled-1", "throttled-2"], (await store.LeaseDueAsync(nowMs: 2000, limit: 10)).Select(e => e.Id));
    }

    [Fact]
    public async Task PausedFunctions_TheOthersAreLeasedInDueOrderAcrossFunctions_UpToTheLimit()
    {
        // Leasing around paused functions merges each function's oldest due (its own index), so it must give what one
        // ordered pass over the other functions' events would: the earliest due first, across functions, up to the limit.
        var store = Open(out _);
        var random = new Random(19);
        var dues = Enumerable.Range(0, 600).Select(i => i * 10L).OrderBy(_ => random.Next()).ToArray(); // distinct, shuffled
        var events = dues.Select((due, i) => Event($"e{i:D3}", dueMs: due, function: "fn" + random.Next(6))).ToList();
        await Task.WhenAll(events.Select(store.EnqueueAsync));
        string[] paused = ["fn1", "fn4"];
        var expected = events.Where(e => !paused.Contains(e.FunctionName) && e.DueMs <= 4000).OrderBy(e => e.DueMs).Select(e => e.Id).ToList();

        var first = await store.LeaseDueAsync(nowMs: 4000, limit: 25, paused);
        var rest = await store.LeaseDueAsync(nowMs: 4000, limit: 1000, paused);

        Assert.Equal(expected.Take(25), first.Select(e => e.Id));
        Assert.Equal(expected.Skip(25), rest.Select(e => e.Id));
        Assert.All(first.Concat(rest), e => Assert.Equal(AsyncEventState.Queued, e.State)); // as read, before the lease
        Assert.Equal(AsyncEventState.Leased, (await store.GetAsync(first[0].Id))!.State);
        Assert.Equal(events.Where(e => !paused.Contains(e.FunctionName) && e.DueMs > 4000).Min(e => e.DueMs), await store.NextDueAsync(paused));
        Assert.Equal(events.Where(e => paused.Contains(e.FunctionName)).Min(e => e.DueMs), await store.NextDueAsync());
        Assert.Empty(await store.LeaseDueAsync(nowMs: 4000, limit: 10, paused)); // the paused ones' due events stay queued
    }

    [Fact]
    public async Task QueueStats_CountQueuedAndRunning_NotFailed_WithTheOldestAcceptedTime()
    {
        var store = Open(out _);
        Assert.Equal((0L, (long?)null), await store.QueueStatsAsync());
        foreach (var (id, created) in new[] { ("queued", 300L), ("running", 200L), ("failed", 100L) })
        {
            await store.EnqueueAsync(Event(id, dueMs: created, createdMs: created));
        }
        await store.LeaseDueAsync(nowMs: 150, limit: 1);
        await store.SettleAsync("failed", new AsyncFailure("RetriesExhausted", 3, null, 400), []);
        Assert.Equal(["running"], (await store.LeaseDueAsync(nowMs: 250, limit: 1, paused: ["other"])).Select(e => e.Id));

        Assert.Equal((2L, (long?)200), await store.QueueStatsAsync());
    }

    [Fact]
    public async Task DeleteFunction_RemovesItsQueuedAndFailedEvents_NotRunningOnes_NorOtherFunctions()
    {
        var store = Open(out _);
        foreach (var (id, function) in new[] { ("running", "f"), ("failed", "f"), ("queued", "f"), ("other", "g") })
        {
            await store.EnqueueAsync(Event(id, dueMs: id is "running" or "failed" ? 0 : 10, function: function));
        }
        await store.LeaseDueAsync(nowMs: 5, limit: 10);
        await store.SettleAsync("failed", new AsyncFailure("RetriesExhausted", 3, null, 400), []);

        Assert.Equal(2, await store.DeleteFunctionAsync("f"));

        Assert.Equal(["other", "running"], (await store.ListAsync(null, null, 10)).Select(e => e.Id).Order());
    }

    [Fact]
    public async Task ListAndCount_ByFunctionStateBothOrNeither_OldestAcceptedFirst()
    {
        var store = Open(out _);
        foreach (var (id, function, created) in new[] { ("f-new", "f", 300L), ("g-old", "g", 100L), ("f-failed", "f", 50L), ("f-old", "f", 200L) })
        {
            await store.EnqueueAsync(Event(id, dueMs: id == "f-failed" ? 0 : 10, function: function, createdMs: created));
        }
        await store.LeaseDueAsync(nowMs: 5, limit: 10);
        await store.SettleAsync("f-failed", new AsyncFailure("RetriesExhausted", 3, null, 400), []);

        async Task<string[]> Ids(string? function, AsyncEventState? state) => [.. (await store.ListAsync(function, state, 10)).Select(e => e.Id)];
        Assert.Equal(["f-failed", "f-old", "f-new"], await Ids("f", null));
        Assert.Equal(["f-old", "f-new"], await Ids("f", AsyncEventState.Queued));
        Assert.Equal(["g-old", "f-old", "f-new"], await Ids(null, AsyncEventState.Queued));
        Assert.Equal(["f-failed", "g-old", "f-old", "f-new"], await Ids(null, null));
        Assert.Equal(["f-old"], (await store.ListAsync("f", AsyncEventState.Queued, 1)).Select(e => e.Id));
        Assert.Equal((2L, 1L), await store.CountAsync("f"));
        Assert.Equal((3L, 1L), await store.CountAsync());
    }

    [Fact]
    public async Task Reopen_ReturnsLeasedEventsToTheQueue_WithoutSpendingAnAttempt()
    {
        var store = Open(out _);
        await store.EnqueueAsync(Event("a"));
        await store.EnqueueAsync(Event("b"));
        await store.RequeueAsync("b", dueMs: 0, attempts: 1, lastError: "boom");
        Assert.Equal(2, (await store.LeaseDueAsync(5000, 10)).Count);
        await store.DisposeAsync(); // as if the server died with both running

        var reopened = Open(out var returned);

        Assert.Equal(2, returned);
        var again = await reopened.LeaseDueAsync(5000, 10);
        Assert.Equal(["a", "b"], again.Select(e => e.Id).Order());
        Assert.Equal(1, again.Single(e => e.Id == "b").Attempts);
        Assert.Equal("boom", again.Single(e => e.Id == "b").LastError);
    }

    [Fact]
    public async Task Settle_DeletesOrKeepsFailed_AndEnqueuesDeliveriesInTheSameTransaction()
    {
        var store = Open(out _);
        await store.EnqueueAsync(Event("ok"));
        await store.EnqueueAsync(Event("bad"));
        await store.LeaseDueAsync(5000, 10);

        await store.SettleAsync("ok", null, [Event("record-1", function: "dest")]);
        await store.SettleAsync("bad", new AsyncFailure("RetriesExhausted", 3, "error body", 6000), []);

        Assert.Null(await store.GetAsync("ok"));
        var failed = await store.GetAsync("bad");
        Assert.Equal((AsyncEventState.Failed, "RetriesExhausted", 3, "error body"), (failed!.State, failed.Condition, failed.Attempts, failed.LastError));
        Assert.Equal("dest", (await store.GetAsync("record-1"))!.FunctionName);
        Assert.Equal(["bad"], (await store.ListAsync("f", AsyncEventState.Failed, 10)).Select(e => e.Id));
    }

    [Fact]
    public async Task RedriveAndPurge_OnlyTouchFailedEvents_OfTheSelection()
    {
        var store = Open(out _);
        foreach (var (id, function) in new[] { ("f1", "f"), ("f2", "f"), ("g1", "g"), ("q", "f") })
        {
            await store.EnqueueAsync(Event(id, function: function));
        }
        await store.LeaseDueAsync(5000, 10);
        foreach (var id in new[] { "f1", "f2", "g1" })
        {
            await store.SettleAsync(id, new AsyncFailure("EventAgeExceeded", 0, null, 6000), []);
        }
        await store.RequeueAsync("q", 0, 0, null);

        Assert.Equal(2, await store.RedriveAsync(null, "f", nowMs: 9000));
        var redriven = await store.GetAsync("f1");
        Assert.Equal((AsyncEventState.Queued, 0, 9000L, (string?)null), (redriven!.State, redriven.Attempts, redriven.CreatedMs, redriven.Condition));
        Assert.Equal(1, await store.PurgeAsync("g1", null));
        Assert.Equal(0, await store.PurgeAsync(null, "f")); // nothing failed left there: queued ones are never purged
        Assert.Equal((3L, 0L), await store.CountAsync());
    }
}
