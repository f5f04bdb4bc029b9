using Lamina.Server.Hosting;
using Lamina.Server.Sqs;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Lamina.Tests.Sqs;

/// <summary>The queue store on a real SQLite file with fake time: message retention.</summary>
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
}
