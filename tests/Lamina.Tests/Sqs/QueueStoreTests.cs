using Lamina.Server.Hosting;
using Lamina.Server.Sqs;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Lamina.Tests.Sqs;

/// <summary>The queue store on a real SQLite file with fake time: retention, the order receives take, deduplication entries' expiry.</summary>
public sealed class QueueStoreTests : IDisposable
{
    private readonly string _dataDirectory = Path.Combine(Path.GetTempPath(), "lamina-queues-" + Guid.NewGuid().ToString("N"));
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 6, 12, 0, 0, TimeSpan.Zero));
    private readonly QueueStore _queues;

    public QueueStoreTests()
    {
        _queues = new QueueStore(Options.Create(new LaminaOptions { DataDirectory = _dataDirectory }), _time);
        _queues.Open();
    }

    public void Dispose()
    {
        _queues.Dispose();
        SqliteConnection.ClearAllPools();
        if (Directory.Exists(_dataDirectory))
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
    }

    [Fact]
    public async Task Receive_PastTheRetentionPeriod_NeverReturnsAnExpiredMessage_AndDeletesThemAThousandAtATime()
    {
        var queue = (await _queues.CreateAsync("kept-a-minute", new Dictionary<string, string> { ["MessageRetentionPeriod"] = "60" }))!;
        for (var batch = 0; batch < 150; batch++)
        {
            await _queues.SendAsync(queue, [.. Enumerable.Range(0, 10).Select(i => new OutgoingMessage($"old {batch * 10 + i}", null, null, null, null, null))]);
        }
        _time.Advance(TimeSpan.FromSeconds(61));
        await _queues.SendAsync(queue, [new OutgoingMessage("fresh", null, null, null, null, null)]);

        // 1,500 expired: the first receive deletes 1,000 of them and skips the rest.
        var first = await _queues.ReceiveAsync("kept-a-minute", 10, 30, 0, CancellationToken.None);
        Assert.Equal(["fresh"], first.Select(static m => m.Body));
        Assert.Equal((500L, 1L, 0L), await _queues.CountsAsync("kept-a-minute"));

        var second = await _queues.ReceiveAsync("kept-a-minute", 10, 30, 0, CancellationToken.None);
        Assert.Empty(second);
        Assert.Equal((0L, 1L, 0L), await _queues.CountsAsync("kept-a-minute"));
    }
    [Fact]
    public async Task Receive_StandardQueue_InTheOrderMessagesBecameVisible_FifoQueue_InSendOrderWithinAGroup()
    {
        foreach (var name in new[] { "standard", "ordered.fifo" })
        {
            var fifo = name.EndsWith(".fifo", StringComparison.Ordinal);
            var attributes = fifo ? new Dictionary<string, string> { ["FifoQueue"] = "true" } : [];
            var queue = (await _queues.CreateAsync(name, attributes))!;
            OutgoingMessage Message(string body) => new(body, null, null, null, fifo ? "g" : null, fifo ? body : null);
            await _queues.SendAsync(queue, [Message("first")]);
            var first = Assert.Single(await _queues.ReceiveAsync(name, 10, 30, 0, CancellationToken.None));
            _time.Advance(TimeSpan.FromSeconds(1));
            await _queues.SendAsync(queue, [Message("second"), Message("third")]);
            _time.Advance(TimeSpan.FromSeconds(1));
            Assert.True(await _queues.ChangeVisibilityAsync(name, first.ReceiptHandle, 0)); // visible again, after the others

            var received = await _queues.ReceiveAsync(name, 10, 30, 0, CancellationToken.None);

            // SQS orders a standard queue's messages best-effort; a FIFO queue's group strictly, the returned one first.
            Assert.Equal(fifo ? ["first", "second", "third"] : ["second", "third", "first"], received.Select(static m => m.Body));
        }
    }

    [Fact]
    public async Task Receive_FifoQueue_AnotherGroupIsDelivered_WhileABusyGroupWithAThousandQueuedIsInFlight()
    {
        // Message groups are FIFO's unit of parallelism: a group in flight holds back its own messages, not the others',
        // however many of its own wait ahead of them.
        var queue = (await _queues.CreateAsync("groups.fifo", new Dictionary<string, string> { ["FifoQueue"] = "true" }))!;
        for (var batch = 0; batch < 120; batch++)
        {
            await _queues.SendAsync(queue, [.. Enumerable.Range(0, 10).Select(i => new OutgoingMessage($"busy {batch * 10 + i}", null, null, null, "busy", $"b{batch * 10 + i}"))]);
        }
        await _queues.SendAsync(queue, [new OutgoingMessage("quiet 0", null, null, null, "quiet", "q0")]);

        var first = await _queues.ReceiveAsync("groups.fifo", 10, 30, 0, CancellationToken.None);
        var second = await _queues.ReceiveAsync("groups.fifo", 10, 30, 0, CancellationToken.None);

        Assert.Equal([.. Enumerable.Range(0, 10).Select(i => $"busy {i}")], first.Select(static m => m.Body));
        Assert.Equal(["quiet 0"], second.Select(static m => m.Body));
        Assert.Empty(await _queues.ReceiveAsync("groups.fifo", 10, 30, 0, CancellationToken.None)); // both groups in flight
    }

    [Fact]
    public async Task Send_FifoQueue_RemovesDeduplicationEntriesPastTheirFiveMinutes_AHundredASend()
    {
        var queue = (await _queues.CreateAsync("dedup.fifo", new Dictionary<string, string> { ["FifoQueue"] = "true" }))!;
        for (var batch = 0; batch < 15; batch++)
        {
            await _queues.SendAsync(queue, [.. Enumerable.Range(0, 10).Select(i => new OutgoingMessage("m", null, null, null, "g", $"d{batch * 10 + i}"))]);
        }
        Assert.Equal(150, DeduplicationEntries());
        var again = await _queues.SendAsync(queue, [new OutgoingMessage("m", null, null, null, "g", "d0")]);
        Assert.Equal(150, DeduplicationEntries()); // a duplicate within the five minutes: the entry stays, nothing is sent
        _time.Advance(TimeSpan.FromMinutes(5));

        await _queues.SendAsync(queue, [new OutgoingMessage("m", null, null, null, "g", "new")]);
        Assert.Equal(51, DeduplicationEntries()); // 100 of the 150 expired went, one came
        var after = await _queues.SendAsync(queue, [new OutgoingMessage("m", null, null, null, "g", "d0")]);
        Assert.NotEqual(again[0].MessageId, after[0].MessageId); // d0's entry expired: a new message
        Assert.Equal(2, DeduplicationEntries()); // "new" and d0's new entry
    }

    private long DeduplicationEntries()
    {
        using var connection = new SqliteConnection($"Data Source={Path.Combine(_dataDirectory, "queues.db")};Mode=ReadOnly;Pooling=False");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT COUNT(*) FROM deduplication;";
        return (long)command.ExecuteScalar()!;
    }
}
