using Lamina.Server.Hosting;
using Lamina.Server.Logs;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Lamina.Tests.Logs;

/// <summary>The log store on a real SQLite file with fake time: subscription matches from its writer, and housekeeping.</summary>
public sealed class LogStoreTests : IAsyncDisposable
{
    private readonly string _dataDirectory = Path.Combine(Path.GetTempPath(), "lamina-logs-" + Guid.NewGuid().ToString("N"));
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 5, 12, 0, 0, TimeSpan.Zero));
    private LogStore? _store;

    public async ValueTask DisposeAsync()
    {
        if (_store is not null)
        {
            await _store.StopAsync(CancellationToken.None);
            await _store.DisposeAsync();
        }
        SqliteConnection.ClearAllPools();
        if (Directory.Exists(_dataDirectory))
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
    }

    private async Task<LogStore> CreateSutAsync()
    {
        _store = new LogStore(Options.Create(new LaminaOptions { DataDirectory = _dataDirectory }), _time, NullLogger<LogStore>.Instance);
        await _store.StartAsync(CancellationToken.None);
        return _store;
    }

    private static Task<bool> Execute(LogStore store, string sql) => store.ChangeAsync(connection =>
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
        store.LoadFilters(connection);
        return true;
    }, CancellationToken.None);

    private static List<string> Strings(System.Data.Common.DbConnection connection, string sql)
    {
        using var select = connection.CreateCommand();
        select.CommandText = sql;
        using var reader = select.ExecuteReader();
        var values = new List<string>();
        while (reader.Read())
        {
            values.Add(reader.GetString(0));
        }
        return values;
    }

    [Fact]
    public async Task Write_SubscribedGroup_HandsOnlyMatchingEventsOverAfterTheyAreStored()
    {
        var store = await CreateSutAsync();
        await Execute(store, """
            INSERT INTO log_groups (name, created_ms) VALUES ('/app', 0);
            INSERT INTO subscription_filters (group_name, name, pattern, destination_arn, distribution, created_ms)
            VALUES ('/app', 'errors', 'ERROR', 'arn:aws:lambda:us-east-1:000000000000:function:sink', 'ByLogStream', 0);
            """);

        store.Write("/app", "s", "ERROR one");
        store.Write("/app", "s", "all fine");
        store.Write("/other", "s", "ERROR elsewhere");
        await store.WaitForBufferedAsync(TimeSpan.FromSeconds(30), CancellationToken.None);

        Assert.True(store.Matched.TryRead(out var matched));
        Assert.Equal(("errors", "s", "ERROR one", _time.GetUtcNow().ToUnixTimeMilliseconds()), (matched.Filter.Name, matched.Stream, matched.Message, matched.TimestampMs));
        var storedId = await store.ReadAsync(connection =>
        {
            using var select = connection.CreateCommand();
            select.CommandText = "SELECT id FROM log_events WHERE message = 'ERROR one';";
            return (long)select.ExecuteScalar()!;
        }, CancellationToken.None);
        Assert.Equal(storedId, matched.Id);
        Assert.False(store.Matched.TryRead(out _));
    }

    [Fact]
    public async Task Trim_EmptyStreams_GoOnlyAfterADayWithoutWrites()
    {
        var store = await CreateSutAsync();
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        await Execute(store, $"""
            INSERT INTO log_groups (name, created_ms) VALUES ('/app', 0);
            INSERT INTO log_streams (group_name, name, created_ms) VALUES ('/app', 'just-created', {now - 60_000});
            INSERT INTO log_streams (group_name, name, created_ms, last_ingest_ms) VALUES ('/app', 'emptied-long-ago', 0, {now - 2 * 86_400_000L});
            """);

        var left = await store.ReadAsync(connection =>
        {
            LogStore.Trim(connection, now, long.MaxValue);
            return Strings(connection, "SELECT name FROM log_streams ORDER BY name;");
        }, CancellationToken.None);

        Assert.Equal(["just-created"], left);
    }

    [Fact]
    public async Task Start_StoreThatIndexedEachStream_GetsOneChunkPerStreamAndLosesTheIndex()
    {
        Directory.CreateDirectory(_dataDirectory);
        using (var old = new SqliteConnection($"Data Source={Path.Combine(_dataDirectory, "logs.db")};Pooling=False"))
        {
            old.Open();
            using var command = old.CreateCommand();
            command.CommandText = """
                CREATE TABLE log_events (id INTEGER PRIMARY KEY AUTOINCREMENT, group_name TEXT NOT NULL, stream_name TEXT NOT NULL,
                    timestamp_ms INTEGER NOT NULL, ingest_ms INTEGER NOT NULL, message TEXT NOT NULL);
                CREATE INDEX log_events_stream ON log_events (group_name, stream_name, id);
                INSERT INTO log_events (group_name, stream_name, timestamp_ms, ingest_ms, message) VALUES
                    ('/app', 'a', 10, 10, 'one'), ('/app', 'b', 11, 11, 'two'), ('/app', 'a', 12, 12, 'three');
                """;
            command.ExecuteNonQuery();
        }

        var store = await CreateSutAsync();
        store.Write("/app", "b", 20, "four");
        await store.WaitForBufferedAsync(TimeSpan.FromSeconds(30), CancellationToken.None);

        var (chunks, indexes) = await store.ReadAsync(connection =>
        {
            using var select = connection.CreateCommand();
            select.CommandText = "SELECT stream_name, first_id, last_id, last_event_ms FROM log_chunks ORDER BY stream_name, first_id;";
            var rows = new List<(string, long, long, long)>();
            using (var reader = select.ExecuteReader())
            {
                while (reader.Read())
                {
                    rows.Add((reader.GetString(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetInt64(3)));
                }
            }
            select.CommandText = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'log_events_stream';";
            return (rows, (long)select.ExecuteScalar()!);
        }, CancellationToken.None);

        Assert.Equal([("a", 1, 3, 12), ("b", 2, 2, 11), ("b", 4, 4, 20)], chunks);
        Assert.Equal(0, indexes);
    }

    [Fact]
    public async Task Trim_RetentionAndSizeCap_TakeTheChunksOfTheEventsTheyDelete()
    {
        var store = await CreateSutAsync();
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        await Execute(store, "INSERT INTO log_groups (name, created_ms, retention_days) VALUES ('/kept-a-day', 0, 1);");
        store.Write("/kept-a-day", "old", now - 2 * 86_400_000L, "expired");
        store.Write("/kept-a-day", "new", now, "fresh");
        await store.WaitForBufferedAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
        store.Write("/big", "s", now, new string('x', 1000));
        await store.WaitForBufferedAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
        store.Write("/big", "s", now, new string('y', 1000));
        await store.WaitForBufferedAsync(TimeSpan.FromSeconds(30), CancellationToken.None);

        var chunks = await store.ReadAsync(connection =>
        {
            // Retention takes "expired"; the cap (oldest first, a tenth below it) leaves only the last event of /big.
            LogStore.Trim(connection, now, 1500);
            return Strings(connection, "SELECT group_name || ':' || stream_name FROM log_chunks ORDER BY first_id;");
        }, CancellationToken.None);

        Assert.Equal(["/big:s"], chunks);
    }

    [Fact]
    public async Task Write_ManyLinesInOneBatch_EachMatchCarriesTheIdItWasStoredUnder()
    {
        var store = await CreateSutAsync();
        await Execute(store, """
            INSERT INTO log_groups (name, created_ms) VALUES ('/app', 0);
            INSERT INTO subscription_filters (group_name, name, pattern, destination_arn, distribution, created_ms)
            VALUES ('/app', 'errors', 'ERROR', 'arn:aws:lambda:us-east-1:000000000000:function:sink', 'ByLogStream', 0);
            """);

        // 37 lines: two statements of 16 rows and five of one, two streams interleaved.
        for (var i = 0; i < 37; i++)
        {
            store.Write("/app", i % 2 == 0 ? "a" : "b", i % 3 == 0 ? $"ERROR {i}" : $"fine {i}");
        }
        await store.WaitForBufferedAsync(TimeSpan.FromSeconds(30), CancellationToken.None);

        var matched = new List<(long, string, string)>();
        while (store.Matched.TryRead(out var m))
        {
            matched.Add((m.Id, m.Stream, m.Message));
        }
        var stored = await store.ReadAsync(connection =>
        {
            using var select = connection.CreateCommand();
            select.CommandText = "SELECT id, stream_name, message FROM log_events WHERE message LIKE 'ERROR%' ORDER BY id;";
            using var reader = select.ExecuteReader();
            var rows = new List<(long, string, string)>();
            while (reader.Read())
            {
                rows.Add((reader.GetInt64(0), reader.GetString(1), reader.GetString(2)));
            }
            return rows;
        }, CancellationToken.None);

        Assert.Equal(13, stored.Count);
        Assert.Equal(stored, matched);
        Assert.Equal(Enumerable.Range(0, 13).Select(static k => $"ERROR {k * 3}"), stored.Select(static row => row.Item3));
    }
}
