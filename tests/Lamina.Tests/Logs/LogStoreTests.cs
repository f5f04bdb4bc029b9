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
            Trim(connection, now, long.MaxValue);
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
    public async Task Trim_RetentionAndSizeCap_TakeTheOldestEventsAndTheChunksTheyEmptied()
    {
        var store = await CreateSutAsync();
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        await Execute(store, "INSERT INTO log_groups (name, created_ms, retention_days) VALUES ('/kept-a-day', 0, 1);");
        store.Write("/kept-a-day", "old", now - 2 * 86_400_000L, "expired");
        store.Write("/kept-a-day", "new", now, "fresh");
        await store.WaitForBufferedAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
        // Three batches (three chunks) of 100 events of 2,000 characters: about 600 KB of logs.db.
        for (var batch = 0; batch < 3; batch++)
        {
            for (var i = 0; i < 100; i++)
            {
                store.Write("/big", "s", now, $"{batch * 100 + i:D4} " + new string('x', 2000));
            }
            await store.WaitForBufferedAsync(TimeSpan.FromSeconds(30), CancellationToken.None);
        }
        var full = await store.ReadAsync(UsedBytes, CancellationToken.None);
        var cap = full * 2 / 3;

        var (chunks, kept, used) = await store.ReadAsync(connection =>
        {
            Trim(connection, now, cap);
            return (Strings(connection, "SELECT group_name || ':' || stream_name FROM log_chunks ORDER BY first_id;"),
                Strings(connection, "SELECT substr(message, 1, 4) FROM log_events ORDER BY id;"),
                UsedBytes(connection));
        }, CancellationToken.None);

        // Retention took "expired"; the cap took the oldest events until the file's pages in use were a tenth below it:
        // "fresh", the whole first batch (its chunk with it) and some of the second; the newest are all there.
        Assert.Equal(["/big:s", "/big:s"], chunks);
        Assert.InRange(used, 0, cap - cap / 10);
        Assert.InRange(kept.Count, 100, 199);
        Assert.Equal(Enumerable.Range(300 - kept.Count, kept.Count).Select(i => $"{i:D4}"), kept);
    }

    [Fact]
    public async Task Trim_FarPastTheCap_DeletesInStepsOfBoundedSize()
    {
        var store = await CreateSutAsync();
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        await Execute(store, """
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60000)
            INSERT INTO log_events (group_name, stream_name, timestamp_ms, ingest_ms, message)
                SELECT '/app', 's', i, i, printf('%06d ', i) || hex(randomblob(40)) FROM n;
            INSERT INTO log_chunks (group_name, stream_name, first_id, last_id, last_event_ms) VALUES ('/app', 's', 1, 60000, 60000);
            """);
        var cap = await store.ReadAsync(UsedBytes, CancellationToken.None) / 5;

        var steps = new List<long>();
        var (left, used) = await store.ReadAsync(connection =>
        {
            var trimming = new LogStore.Trimming(now, cap);
            var more = true;
            while (more)
            {
                var before = Count(connection);
                more = trimming.Step(connection);
                steps.Add(before - Count(connection));
            }
            return (Count(connection), UsedBytes(connection));
        }, CancellationToken.None);

        // Four fifths and a bit of the events go, none of them in a step of more than 20,000.
        Assert.InRange(used, 0, cap - cap / 10);
        Assert.InRange(left, 1, 12_000);
        Assert.Equal(60_000 - left, steps.Sum());
        Assert.All(steps, deleted => Assert.InRange(deleted, 0, LogStore.Trimming.MaxEventsPerStep));
        Assert.True(steps.Count(deleted => deleted > 0) >= 3);
    }

    [Fact]
    public async Task Trim_WithinTheCap_DeletesNothing()
    {
        var store = await CreateSutAsync();
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        store.Write("/app", "s", now - 400L * 86_400_000L, "old but kept: no retention, and room to spare");
        await store.WaitForBufferedAsync(TimeSpan.FromSeconds(30), CancellationToken.None);

        var left = await store.ReadAsync(connection =>
        {
            Trim(connection, now, UsedBytes(connection) + 1);
            return Count(connection);
        }, CancellationToken.None);

        Assert.Equal(1, left);
    }

    /// <summary>One whole round of housekeeping, its steps one after the other (as the store's loop takes them).</summary>
    private static void Trim(System.Data.Common.DbConnection connection, long nowMs, long maxBytes)
    {
        var trimming = new LogStore.Trimming(nowMs, maxBytes);
        while (trimming.Step(connection))
        {
        }
    }

    private static long UsedBytes(System.Data.Common.DbConnection connection)
    {
        using var select = connection.CreateCommand();
        select.CommandText = "SELECT (page_count - freelist_count) * page_size FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size();";
        return (long)select.ExecuteScalar()!;
    }

    private static long Count(System.Data.Common.DbConnection connection)
    {
        using var select = connection.CreateCommand();
        select.CommandText = "SELECT COUNT(*) FROM log_events;";
        return (long)select.ExecuteScalar()!;
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
