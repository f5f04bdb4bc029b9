using System.Text.Json;
using Lamina.Server.DynamoDb;
using Lamina.Server.Hosting;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Item = System.Collections.Generic.Dictionary<string, Lamina.Server.DynamoDb.AttributeValue>;

namespace Lamina.Tests.DynamoDb;

/// <summary>
/// The store on a real SQLite file with fake time: TTL expiry and the 24-hour stream retention happen when the clock
/// says so (the sweep loop's delays run on the fake clock), and what was committed is there after a reopen.
/// </summary>
public sealed class DynamoStoreTests : IAsyncDisposable
{
    private readonly string _dataDirectory = Path.Combine(Path.GetTempPath(), "lamina-ddb-" + Guid.NewGuid().ToString("N"));
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 5, 12, 0, 0, TimeSpan.Zero));
    private readonly List<DynamoStore> _stores = [];

    public async ValueTask DisposeAsync()
    {
        foreach (var store in _stores)
        {
            await store.StopAsync(CancellationToken.None);
            store.Dispose();
        }
        SqliteConnection.ClearAllPools();
        if (Directory.Exists(_dataDirectory))
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
    }

    private async Task<DynamoStore> StartAsync()
    {
        var store = new DynamoStore(Options.Create(new LaminaOptions { DataDirectory = _dataDirectory }), _time, NullLogger<DynamoStore>.Instance);
        await store.StartAsync(CancellationToken.None);
        _stores.Add(store);
        return store;
    }

    private static Task<TableInfo> CreateAsync(DynamoStore store, string? ttl = null) => store.CreateTableAsync(new TableInfo
    {
        Id = 0,
        Account = "000000000000",
        Name = "things",
        TableId = Guid.NewGuid().ToString(),
        Hash = new KeyAttribute("id", AttributeKind.S),
        AttributeDefinitions = [new KeyAttribute("id", AttributeKind.S)],
        Stream = new StreamInfo(0, "", "NEW_AND_OLD_IMAGES", 0),
        TtlAttribute = ttl,
    });

    private static Item ItemOf(string json) => AttributeValue.ParseMap(JsonDocument.Parse(json).RootElement);

    private static Task<int> PutAsync(DynamoStore store, TableInfo table, Item item) => store.WriteAsync(context =>
    {
        var current = context.Store.Current(table);
        var key = ItemKey.Of(current, item);
        DynamoStore.Put(context, current, key, item, DynamoStore.Get(context, current, key));
        return 0;
    });

    private static Item? Read(DynamoStore store, TableInfo table, string id)
    {
        using var connection = store.OpenRead();
        return DynamoStore.ReadItem(connection, table, ItemKey.Of(table, ItemOf($$$"""{"id":{"S":"{{{id}}}"}}""")))?.Item;
    }

    /// <summary>Advances the fake clock a second at a time until <paramref name="done"/> holds (the sweep runs once a second).</summary>
    private async Task AdvanceUntilAsync(Func<bool> done, TimeSpan by)
    {
        _time.Advance(by);
        for (var i = 0; i < 500 && !done(); i++)
        {
            _time.Advance(TimeSpan.FromSeconds(1));
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task Stats_AreExactForASmallTable_AndUpToAMinuteOldForALargeOne()
    {
        var store = await StartAsync();
        var table = await CreateAsync(store);
        await PutAsync(store, table, ItemOf("""{"id":{"S":"one"}}"""));
        Assert.Equal(1, store.Stats(table).Count);
        await PutAsync(store, table, ItemOf("""{"id":{"S":"two"}}"""));
        Assert.Equal(2, store.Stats(table).Count); // small: counted for each call

        await store.WriteAsync(context =>
        {
            var current = context.Store.Current(table);
            for (var i = 0; i < DynamoStore.LargeTableItems; i++)
            {
                var item = ItemOf($$$"""{"id":{"S":"item-{{{i}}}"}}""");
                DynamoStore.Put(context, current, ItemKey.Of(current, item), item, null);
            }
            return 0;
        });
        var large = store.Stats(table);
        Assert.Equal(DynamoStore.LargeTableItems + 2, large.Count);
        await PutAsync(store, table, ItemOf("""{"id":{"S":"three"}}"""));
        Assert.Equal(large, store.Stats(table)); // large: as counted up to a minute ago
        _time.Advance(TimeSpan.FromSeconds(61));
        Assert.Equal(DynamoStore.LargeTableItems + 3, store.Stats(table).Count);
    }

    [Fact]
    public async Task Ttl_ExpiredItemsGo_AsServiceRemovalsInTheStream()
    {
        var store = await StartAsync();
        var table = await CreateAsync(store, ttl: "expires");
        var now = _time.GetUtcNow().ToUnixTimeSeconds();
        await PutAsync(store, table, ItemOf($$$"""{"id":{"S":"soon"},"expires":{"N":"{{{now + 60}}}"}}"""));
        await PutAsync(store, table, ItemOf($$$"""{"id":{"S":"later"},"expires":{"N":"{{{now + 7200}}}"}}"""));
        Assert.NotNull(Read(store, table, "soon"));
        await AdvanceUntilAsync(() => Read(store, table, "soon") is null, TimeSpan.FromSeconds(61));
        Assert.Null(Read(store, table, "soon"));
        Assert.NotNull(Read(store, table, "later"));
        var records = store.ReadStream(table.Stream!.Id, 0, 10);
        Assert.Equal(["INSERT", "INSERT", "REMOVE"], records.Select(static r => r.EventName));
        Assert.True(records[2].Service);
    }

    [Fact]
    public async Task StreamRecords_AreTrimmedAfter24Hours_AndCommittedItemsSurviveAReopen()
    {
        var store = await StartAsync();
        var table = await CreateAsync(store);
        await PutAsync(store, table, ItemOf("""{"id":{"S":"a"},"n":{"N":"1"}}"""));
        await PutAsync(store, table, ItemOf("""{"id":{"S":"a"},"n":{"N":"1"}}""")); // no change: no record
        await PutAsync(store, table, ItemOf("""{"id":{"S":"a"},"n":{"N":"2"}}"""));
        Assert.Equal(["INSERT", "MODIFY"], store.ReadStream(table.Stream!.Id, 0, 10).Select(static r => r.EventName));
        await AdvanceUntilAsync(() => store.ReadStream(table.Stream.Id, 0, 10).Count == 0, TimeSpan.FromHours(24) + TimeSpan.FromMinutes(2));
        Assert.Empty(store.ReadStream(table.Stream.Id, 0, 10));
        await store.StopAsync(CancellationToken.None);
        store.Dispose();
        _stores.Remove(store);
        SqliteConnection.ClearAllPools();
        var reopened = await StartAsync();
        var again = reopened.Require("000000000000", "things");
        Assert.Equal("""{"id":{"S":"a"},"n":{"N":"2"}}""", System.Text.Encoding.UTF8.GetString(AttributeValue.Serialize(Read(reopened, again, "a")!)));
    }

    [Fact]
    public async Task StreamRetention_ABacklogPastADay_GoesInBatchesAndTheNewerRecordsStay()
    {
        var store = await StartAsync();
        var table = await CreateAsync(store);
        var stream = table.Stream!.Id;
        var old = _time.GetUtcNow().ToUnixTimeMilliseconds() - (long)TimeSpan.FromHours(25).TotalMilliseconds;
        // 12,000 records from yesterday (more than two writes' worth of the sweep), then two of now.
        await store.WriteAsync(context => context.Run("""
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12000)
            INSERT INTO stream_records (stream_id, created_ms, event_name, service, body) SELECT $1, $2, 'INSERT', 0, x'7b7d' FROM n;
            """, stream, old));
        await PutAsync(store, table, ItemOf("""{"id":{"S":"a"},"n":{"N":"1"}}"""));
        await PutAsync(store, table, ItemOf("""{"id":{"S":"a"},"n":{"N":"2"}}"""));
        Assert.Equal(12_002, store.ReadStream(stream, 0, 20_000).Count);

        await store.TrimStreamsAsync();

        Assert.Equal(["INSERT", "MODIFY"], store.ReadStream(stream, 0, 20_000).Select(static r => r.EventName));
    }
}
