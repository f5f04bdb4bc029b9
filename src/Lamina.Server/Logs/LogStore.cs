using System.Data.Common;
using System.Globalization;
using System.Threading.Channels;
using Lamina.Server.Hosting;
using Lamina.Server.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Lamina.Server.Logs;

/// <summary>
/// Log groups, streams and events (what the CloudWatch Logs API reads): <c>&lt;data&gt;/logs.db</c>, a SQLite file of
/// its own. Environments write through <see cref="Write(string, string, string)"/>, which never blocks: a bounded buffer that one loop drains
/// in batches, off the invoke path. When the buffer is full, lines are dropped and counted, and a marker says so in
/// each stream that lost some. Disk use is bounded by each group's retention and by <c>--log-max-mb</c> overall (the
/// oldest events go first). The writer also matches what it stores against the groups' subscription filters and hands
/// the matches to <see cref="LogSubscriptions"/>.
/// </summary>
/// <remarks>
/// On a cluster node (<c>--database postgresql://…</c>, issue #25) the same tables are the cluster's, on PostgreSQL:
/// each node's writer stores the lines of what ran on it (on a connection of its own, one transaction per batch) and
/// matches them against the filters, which every node keeps in memory and reloads when any node changes them
/// (<see cref="ClusterNode.LogsChannel"/>); reads go through any node; housekeeping runs on the holder of the
/// <c>logs-retention</c> lease.
/// </remarks>
internal sealed partial class LogStore : IHostedService, IAsyncDisposable
{
    /// <summary>Lines buffered for the writer; beyond this they are dropped (and counted).</summary>
    public const int BufferCapacity = 100_000;

    /// <summary>Characters the buffer may hold in all (lines can be long: the line cap alone would not bound memory).</summary>
    public const long BufferMaxChars = 64L * 1024 * 1024;

    /// <summary>Largest event message stored (CloudWatch's 256 KB event limit).</summary>
    public const int MaxMessageBytes = 256 * 1024;

    // Group commit: lines that arrive within this time of the last commit wait for the next one, unless somebody waits
    // for them (WaitForBufferedAsync). A warm invoke writes its lines in two bursts (START, then END and REPORT); one
    // transaction each was ~10% of the server's CPU per warm invoke at one connection (issue #19). A commit rewrites
    // every page it touched, and the pages at the end of each tree are touched by every batch: at 9,000 invokes/s,
    // 50 ms instead of 10 took the writer from ~19 to ~15 µs of CPU per invoke. It delays only lines nobody waits for.
    private static readonly TimeSpan CommitInterval = TimeSpan.FromMilliseconds(50);

    /// <summary>
    /// Where each stream's events are: one row per stream per batch the writer stored, the first and last id of the
    /// stream's events in that batch (and its latest timestamp, for retention). Every event of a stream lies within one of
    /// its chunks, a chunk's two ends are events of its stream, and a stream's chunks never overlap (one writer per
    /// database on a single machine; on a cluster the writers lock a stream's row before they draw ids for its events).
    /// An index on (group, stream, id) did the same job, but its 16 or more insertion points (one per live stream, keys
    /// of ~80 bytes) made it half of the writer's CPU: 5 of ~6.5 µs per event, with three events per warm invoke
    /// (issue #19). A chunk is one row for a batch's share of a stream (dozens of events at load), found by its stream;
    /// its events by a range of the table's own key.
    /// </summary>
    internal const string ChunksSchema = """
        CREATE TABLE IF NOT EXISTS log_chunks (
            group_name      TEXT    NOT NULL,
            stream_name     TEXT    NOT NULL,
            first_id        INTEGER NOT NULL,
            last_id         INTEGER NOT NULL,
            last_event_ms   INTEGER NOT NULL,
            PRIMARY KEY (group_name, stream_name, first_id)
        );
        """;

    /// <summary>
    /// From a store that indexed each stream's events (before chunks): one chunk per stream over all its events, then
    /// the index goes. Run once, in a transaction (SQLite: when that index is found; PostgreSQL: a schema step).
    /// </summary>
    internal const string ChunksMigration = ChunksSchema + "\n" + """
        INSERT INTO log_chunks (group_name, stream_name, first_id, last_id, last_event_ms)
            SELECT group_name, stream_name, MIN(id), MAX(id), MAX(timestamp_ms) FROM log_events GROUP BY group_name, stream_name;
        DROP INDEX IF EXISTS log_events_stream;
        """;

    /// <summary>The lease under which one node of a cluster trims the shared logs (retention, size cap, empty streams).</summary>
    private const string HousekeepingLease = "logs-retention";

    /// <summary>
    /// The tables, in SQLite's words; a cluster's database has them too (Database's PostgreSQL-only steps, through
    /// <see cref="Sql.ForPostgres"/>). A stream's events are found through its chunks, not an index of their own.
    /// </summary>
    internal const string Schema = """
        CREATE TABLE IF NOT EXISTS log_groups (
            name            TEXT    NOT NULL PRIMARY KEY,
            created_ms      INTEGER NOT NULL,
            retention_days  INTEGER
        );
        CREATE TABLE IF NOT EXISTS log_streams (
            group_name      TEXT    NOT NULL,
            name            TEXT    NOT NULL,
            created_ms      INTEGER NOT NULL,
            first_event_ms  INTEGER,
            last_event_ms   INTEGER,
            last_ingest_ms  INTEGER,
            stored_bytes    INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (group_name, name)
        );
        CREATE TABLE IF NOT EXISTS log_events (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            group_name      TEXT    NOT NULL,
            stream_name     TEXT    NOT NULL,
            timestamp_ms    INTEGER NOT NULL,
            ingest_ms       INTEGER NOT NULL,
            message         TEXT    NOT NULL
        );
        CREATE INDEX IF NOT EXISTS log_events_group_time ON log_events (group_name, timestamp_ms, id);
        """ + "\n" + ChunksSchema + "\n" + """
        CREATE TABLE IF NOT EXISTS subscription_filters (
            group_name      TEXT    NOT NULL,
            name            TEXT    NOT NULL,
            pattern         TEXT    NOT NULL,
            destination_arn TEXT    NOT NULL,
            role_arn        TEXT,
            distribution    TEXT    NOT NULL,
            created_ms      INTEGER NOT NULL,
            PRIMARY KEY (group_name, name)
        );
        """;

    private readonly Channel<LogLine> _buffer = Channel.CreateBounded<LogLine>(new BoundedChannelOptions(BufferCapacity)
    {
        SingleReader = true,
        FullMode = BoundedChannelFullMode.DropWrite,
    });
    private readonly string _path;
    private readonly long _maxBytes;
    private readonly TimeProvider _time;
    private readonly ILogger<LogStore> _logger;
    private readonly Dictionary<(string Group, string Stream), long> _dropped = [];
    private readonly Lock _droppedLock = new();
    private readonly SemaphoreSlim _connectionLock = new(1, 1);
    private SqliteConnection? _connection;
    // On a cluster: the cluster's database, and the writer's own connection to it (opened again after a failure).
    private readonly NpgsqlDataSource? _postgres;
    private readonly ClusterNode? _cluster;
    private NpgsqlConnection? _postgresWriter;
    // Control-plane changes (which reload the filters) and, on a cluster, the reloads after the other nodes' changes take
    // turns: the filters applied last are the latest.
    private readonly SemaphoreSlim _filtersLock = new(1, 1);
    // The writer's INSERTs (of one row, and of RowsPerInsert), prepared once and reused (see InsertEvents); finalized
    // before the connection closes.
    private const int RowsPerInsert = 16;
    private SQLitePCL.sqlite3_stmt? _insert;
    private SQLitePCL.sqlite3_stmt? _insertMany;
    private byte[] _utf8 = new byte[4096];
    private Task? _writer;
    private Task? _housekeeping;
    private long _accepted;
    private long _written;
    private long _bufferedChars;
    // Completed, and replaced, each time the writer has stored a batch.
    private TaskCompletionSource _batchStored = new(TaskCreationOptions.RunContinuationsAsynchronously);
    // Completed by a waiter that wants the buffered lines now; replaced before each batch is taken.
    private TaskCompletionSource _flushNow = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stopping = new();
    // A round of housekeeping is due now (on a cluster: this node just gained the lease).
    private readonly Channel<bool> _housekeepingDue = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private bool _holdsHousekeeping;
    // Subscription filters by group key, replaced whole on each change: the writer reads them without a lock.
    private volatile Dictionary<string, SubscriptionFilter[]> _filters = new(StringComparer.Ordinal);
    // Matches of the batch being written, handed to LogSubscriptions once the batch is committed.
    private readonly List<MatchedEvent> _matchedBatch = [];
    private readonly Channel<MatchedEvent> _matched = Channel.CreateBounded<MatchedEvent>(new BoundedChannelOptions(BufferCapacity)
    {
        SingleReader = true,
        SingleWriter = true,
        FullMode = BoundedChannelFullMode.DropWrite,
    });

    public LogStore(IOptions<LaminaOptions> options, TimeProvider time, ILogger<LogStore> logger, Database? database = null, ClusterNode? cluster = null)
    {
        _path = Path.Combine(options.Value.DataDirectory, "logs.db");
        _maxBytes = options.Value.LogMaxMb * 1024L * 1024L;
        _time = time;
        _logger = logger;
        if (database?.Postgres is { } postgres)
        {
            _postgres = postgres;
            _cluster = cluster;
        }
    }


    /// <summary>Queues one log event, stamped now; never blocks. False when the buffer was full and the line was dropped.</summary>
    public bool Write(string group, string stream, string message) => Write(group, stream, _time.GetUtcNow().ToUnixTimeMilliseconds(), message);

    /// <summary>Queues one log event with its own timestamp (PutLogEvents); never blocks. False when it was dropped.</summary>
    public bool Write(string group, string stream, long timestampMs, string message)
    {
        if (Interlocked.Add(ref _bufferedChars, message.Length) <= BufferMaxChars
            && _buffer.Writer.TryWrite(new LogLine(group, stream, timestampMs, message)))
        {
            Interlocked.Increment(ref _accepted);
            return true;
        }
        Interlocked.Add(ref _bufferedChars, -message.Length);
        lock (_droppedLock)
        {
            _dropped[(group, stream)] = _dropped.GetValueOrDefault((group, stream)) + 1;
        }
        return false;
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (_postgres is { } postgres)
        {
            // The tables are made by the cluster's schema history (Database.Initialize, already run).
            using (var connection = postgres.OpenConnection())
            {
                LoadFilters(connection);
            }
            if (_cluster is { } cluster)
            {
                cluster.Follow(ClusterNode.LogsChannel, _ => ReloadFiltersAsync(), only: "f");
                cluster.RequestLease(HousekeepingLease);
                cluster.Heartbeat += () =>
                {
                    // A node that gains the lease (at start, or when the holder died) trims at once, not at its next minute.
                    var holds = cluster.Holds(HousekeepingLease);
                    if (holds && !_holdsHousekeeping)
                    {
                        _housekeepingDue.Writer.TryWrite(true);
                    }
                    _holdsHousekeeping = holds;
                    return Task.CompletedTask;
                };
            }
        }
        else
        {
            Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
            var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = _path, Pooling = false, DefaultTimeout = 30 }.ToString());
            connection.Open();
            using (var schema = connection.CreateCommand())
            {
                // Logs are not the system of record: NORMAL (fsync at checkpoints) keeps the writer cheap.
                schema.CommandText = "PRAGMA journal_mode=WAL;\nPRAGMA synchronous=NORMAL;\n" + Schema;
                schema.ExecuteNonQuery();
            }
            using (var migrate = connection.CreateCommand())
            {
                migrate.CommandText = "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'log_events_stream';";
                if (migrate.ExecuteScalar() is not null)
                {
                    using var transaction = connection.BeginTransaction();
                    migrate.Transaction = transaction;
                    migrate.CommandText = ChunksMigration;
                    migrate.ExecuteNonQuery();
                    transaction.Commit();
                }
            }
            LoadFilters(connection);
            _connection = connection;
        }
        _writer = Task.Factory.StartNew(WriterLoopAsync, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
        _housekeeping = Task.Run(HousekeepingAsync, CancellationToken.None); // its first round runs now, off the start
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        _buffer.Writer.TryComplete();
        if (_writer is not null)
        {
            await _writer; // what was buffered is written
        }
        if (_housekeeping is not null)
        {
            await _housekeeping;
        }
    }

    public async ValueTask DisposeAsync()
    {
        _buffer.Writer.TryComplete();
        if (_writer is not null)
        {
            await _writer;
        }
        if (_insert is not null)
        {
            SQLitePCL.raw.sqlite3_finalize(_insert);
            _insert = null;
        }
        if (_insertMany is not null)
        {
            SQLitePCL.raw.sqlite3_finalize(_insertMany);
            _insertMany = null;
        }
        _connection?.Dispose();
        _postgresWriter?.Dispose();
        _connectionLock.Dispose();
        _filtersLock.Dispose();
        _stopping.Dispose();
    }

    /// <summary>The subscription filters of every group, by group key (read-only: replaced whole by <see cref="LoadFilters"/>).</summary>
    public IReadOnlyDictionary<string, SubscriptionFilter[]> Filters => _filters;

    /// <summary>The events the writer matched to subscription filters, after each batch that held them was stored.</summary>
    public ChannelReader<MatchedEvent> Matched => _matched.Reader;

    /// <summary>Reads the subscription filters again, on <paramref name="connection"/> (the store's, or in a change's transaction).</summary>
    public void LoadFilters(DbConnection connection)
    {
        var filters = new Dictionary<string, List<SubscriptionFilter>>(StringComparer.Ordinal);
        using var select = connection.CreateCommand();
        select.CommandText = "SELECT group_name, name, pattern, destination_arn, role_arn, distribution, created_ms FROM subscription_filters ORDER BY group_name, name;";
        using var reader = select.ExecuteReader();
        while (reader.Read())
        {
            var text = reader.GetString(2);
            // Validated when it was put; one the parser no longer takes (a newer server's form) matches nothing rather than everything.
            if (!FilterPattern.TryParse(text, out var pattern, out _))
            {
                continue;
            }
            var group = reader.GetString(0);
            if (!filters.TryGetValue(group, out var list))
            {
                filters[group] = list = [];
            }
            list.Add(new SubscriptionFilter(group, reader.GetString(1), text, pattern, reader.GetString(3), reader.IsDBNull(4) ? null : reader.GetString(4),
                reader.GetString(5), reader.GetInt64(6)));
        }
        _filters = filters.ToDictionary(static p => p.Key, static p => p.Value.ToArray(), StringComparer.Ordinal);
    }

    /// <summary>
    /// After this node changed the filters, in the change's transaction: reads them again and, on a cluster, announces
    /// the change (delivered with the commit) so that every node reads them again.
    /// </summary>
    public void FiltersChanged(DbConnection connection)
    {
        if (_postgres is not null)
        {
            Sql.RunPositional(connection, "SELECT pg_notify($1, $2);", ClusterNode.LogsChannel, _cluster?.Payload("f") ?? "|f");
        }
        LoadFilters(connection);
    }

    /// <summary>Another node changed the filters (or notifications may have been missed): reads them again.</summary>
    private Task ReloadFiltersAsync() => ClusterLock.RereadAsync(_filtersLock, () =>
    {
        using var connection = _postgres!.OpenConnection();
        LoadFilters(connection);
    });

    /// <summary>
    /// Runs <paramref name="read"/> on a connection: on a cluster a pooled one of its database (off the caller's thread:
    /// the statements block), else the store's own (reads and the writer take turns).
    /// </summary>
    public async Task<T> ReadAsync<T>(Func<DbConnection, T> read, CancellationToken cancellationToken)
    {
        if (_postgres is { } postgres)
        {
            return await Task.Run(() =>
            {
                using var connection = postgres.OpenConnection();
                return read(connection);
            }, cancellationToken);
        }
        await _connectionLock.WaitAsync(cancellationToken);
        try
        {
            return read(_connection ?? throw new InvalidOperationException("the log store is not open"));
        }
        finally
        {
            _connectionLock.Release();
        }
    }

    /// <summary>Runs a control-plane change (create or delete a group, retention, subscription filters) in a transaction of its own.</summary>
    public async Task<T> ChangeAsync<T>(Func<DbConnection, T> change, CancellationToken cancellationToken)
    {
        await _filtersLock.WaitAsync(cancellationToken);
        try
        {
            return await ReadAsync(connection =>
            {
                using var transaction = connection.BeginTransaction();
                if (_postgres is not null)
                {
                    // The nodes' changes take turns, as one node's do: a filter's limit and loop check see the others' filters.
                    Sql.RunPositional(connection, "SELECT pg_advisory_xact_lock($1);", ClusterLock.Logs);
                }
                var result = change(connection);
                transaction.Commit();
                return result;
            }, cancellationToken);
        }
        finally
        {
            _filtersLock.Release();
        }
    }

    /// <summary>
    /// Waits (at most <paramref name="limit"/>) until the lines accepted before this call are stored: a read right
    /// after an invocation sees its lines, and an asynchronous event is settled only once its lines are on disk.
    /// </summary>
    public Task WaitForBufferedAsync(TimeSpan limit, CancellationToken cancellationToken)
    {
        var target = Volatile.Read(ref _accepted);
        return Volatile.Read(ref _written) >= target ? Task.CompletedTask : WaitForWrittenAsync(target, limit, cancellationToken);
    }

    private async Task WaitForWrittenAsync(long target, TimeSpan limit, CancellationToken cancellationToken)
    {
        var started = _time.GetTimestamp();
        while (true)
        {
            // Read the signal before the count: a batch stored after the count was read completes this signal.
            var stored = Volatile.Read(ref _batchStored).Task;
            var left = limit - _time.GetElapsedTime(started);
            if (Volatile.Read(ref _written) >= target || left <= TimeSpan.Zero)
            {
                return;
            }
            // The lines waited for were accepted before this: the batch taken after this signal holds them.
            Volatile.Read(ref _flushNow).TrySetResult();
            try
            {
                await stored.WaitAsync(left, _time, cancellationToken);
            }
            catch (TimeoutException)
            {
                return;
            }
        }
    }

    private async Task WriterLoopAsync()
    {
        var batch = new List<LogLine>(4096);
        var lastCommit = _time.GetTimestamp();
        while (await _buffer.Reader.WaitToReadAsync())
        {
            var sinceCommit = _time.GetElapsedTime(lastCommit);
            var flushNow = Volatile.Read(ref _flushNow).Task;
            if (sinceCommit < CommitInterval && !flushNow.IsCompleted && !_stopping.IsCancellationRequested)
            {
                await Task.WhenAny(flushNow, Task.Delay(CommitInterval - sinceCommit, _time));
            }
            Volatile.Write(ref _flushNow, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
            while (batch.Count < 4096 && _buffer.Reader.TryRead(out var line))
            {
                batch.Add(line);
                Interlocked.Add(ref _bufferedChars, -line.Message.Length);
            }
            var taken = batch.Count;
            AddDropMarkers(batch);
            await StoreAsync(batch);
            _matchedBatch.Clear();
            lastCommit = _time.GetTimestamp();
            Interlocked.Add(ref _written, taken);
            Interlocked.Exchange(ref _batchStored, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
            batch.Clear();
        }
        _matched.Writer.TryComplete();
        _batchStored.TrySetResult();
    }

    /// <summary>
    /// Stores a batch. While the database cannot take it (PostgreSQL down or unreachable, SQLite's disk full or its file
    /// locked) the batch is kept and tried again, a second after the failure and then less often (up to every 30 s);
    /// lines that come meanwhile wait in the buffer, and past its bound are dropped and counted (the markers). A
    /// batch the database refuses for what it holds is dropped at once, and so is a kept batch when the server stops.
    /// </summary>
    private async Task StoreAsync(List<LogLine> batch)
    {
        var delay = TimeSpan.FromSeconds(1);
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                if (_postgres is { } postgres)
                {
                    InsertBatch(_postgresWriter ??= OpenWriter(postgres), batch, _time.GetUtcNow().ToUnixTimeMilliseconds());
                }
                else
                {
                    await ReadAsync(connection =>
                    {
                        InsertBatch((SqliteConnection)connection, batch, _time.GetUtcNow().ToUnixTimeMilliseconds());
                        return true;
                    }, CancellationToken.None);
                }
                PublishMatches();
                if (attempt > 1)
                {
                    Log.WriteResumed(_logger, batch.Count, attempt);
                }
                return;
            }
            catch (Exception e) when (e is DbException || Sql.CanRetryLater(e))
            {
                _matchedBatch.Clear(); // the failed attempt's matches: the next attempt matches again
                if (_postgresWriter is not null)
                {
                    // The connection may be broken (the database restarted, the network): the next attempt opens another.
                    await _postgresWriter.DisposeAsync();
                    _postgresWriter = null;
                }
                if (!Sql.CanRetryLater(e) || _stopping.IsCancellationRequested)
                {
                    Log.WriteFailed(_logger, batch.Count, e.Message);
                    return;
                }
                if (attempt == 1)
                {
                    Log.WriteDeferred(_logger, batch.Count, e.Message);
                }
            }
            try
            {
                await Task.Delay(delay, _time, _stopping.Token);
            }
            catch (OperationCanceledException)
            {
                // Stopping: one last attempt, then the batch is given up (above).
            }
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(30).Ticks));
        }
    }

    /// <summary>
    /// Hands the stored batch's matches to the subscriptions. Never waits: when deliveries fall this far behind, the
    /// matches are dropped and counted (as the buffer drops lines) rather than slowing the writer.
    /// </summary>
    private void PublishMatches()
    {
        var dropped = 0;
        foreach (var matched in _matchedBatch)
        {
            if (!_matched.Writer.TryWrite(matched))
            {
                dropped++;
            }
        }
        if (dropped > 0)
        {
            Log.MatchesDropped(_logger, dropped);
        }
    }

    private void AddDropMarkers(List<LogLine> batch)
    {
        lock (_droppedLock)
        {
            if (_dropped.Count == 0)
            {
                return;
            }
            var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
            foreach (var ((group, stream), count) in _dropped)
            {
                batch.Add(new LogLine(group, stream, now, string.Create(CultureInfo.InvariantCulture,
                    $"[lamina] {count} log lines dropped: they came faster than the log store could write them")));
            }
            _dropped.Clear();
        }
    }

    /// <summary>The writer's connection to the cluster's database: its commits do not wait for PostgreSQL's WAL flush.</summary>
    private static NpgsqlConnection OpenWriter(NpgsqlDataSource postgres)
    {
        var connection = postgres.OpenConnection();
        // Logs are not the system of record (as SQLite's synchronous=NORMAL here): a database crash may lose the last
        // instant's lines, never corrupt them.
        Sql.RunPositional(connection, "SET synchronous_commit = off;");
        return connection;
    }

    /// <summary>
    /// A batch on the cluster's database, in one transaction: the groups and streams it touches, in key order so that
    /// writers of several nodes lock shared rows in the same order; then the events in one statement (their ids, drawn
    /// from the identity in the order the rows go in, for the subscription matches and the chunks); then the chunks.
    /// </summary>
    private void InsertBatch(NpgsqlConnection connection, List<LogLine> batch, long nowMs)
    {
        var groups = new string[batch.Count];
        var streamNames = new string[batch.Count];
        var timestamps = new long[batch.Count];
        var messages = new string[batch.Count];
        var streams = new Dictionary<(string, string), StreamTally>();
        for (var i = 0; i < batch.Count; i++)
        {
            var line = batch[i];
            if (line.Group.Contains('\0', StringComparison.Ordinal) || line.Stream.Contains('\0', StringComparison.Ordinal) || line.Message.Contains('\0', StringComparison.Ordinal))
            {
                // PostgreSQL's text takes no NUL (one would make it refuse the whole batch, every function's lines in
                // it): each becomes U+FFFD, as the names the API stored (Sql.PostgresValue) and as invalid UTF-8 does.
                line = new LogLine((string)Sql.PostgresValue(line.Group)!, (string)Sql.PostgresValue(line.Stream)!, line.TimestampMs, (string)Sql.PostgresValue(line.Message)!);
                batch[i] = line;
            }
            (groups[i], streamNames[i], timestamps[i], messages[i]) = (line.Group, line.Stream, line.TimestampMs, Truncated(line.Message));
            Tally(streams, line, messages[i]);
        }
        var keys = streams.Keys.ToArray();
        var keyGroups = keys.Select(static k => k.Item1).ToArray();
        var keyStreams = keys.Select(static k => k.Item2).ToArray();
        using var transaction = connection.BeginTransaction();
        // The streams first, in key order: their rows stay locked to the commit, so two nodes' batches for one stream
        // take turns and draw their ids one after the other (a stream's chunks never overlap).
        using (var upsert = new NpgsqlCommand("""
            INSERT INTO log_groups (name, created_ms) SELECT DISTINCT g, @now FROM unnest(@g) AS g ORDER BY g ON CONFLICT (name) DO NOTHING;
            INSERT INTO log_streams (group_name, name, created_ms, first_event_ms, last_event_ms, last_ingest_ms, stored_bytes)
            SELECT g, s, @now, f, l, @now, b FROM unnest(@g, @s, @f, @l, @b) AS e (g, s, f, l, b) ORDER BY g, s
            ON CONFLICT (group_name, name) DO UPDATE SET
                first_event_ms = LEAST(log_streams.first_event_ms, excluded.first_event_ms),
                last_event_ms = GREATEST(log_streams.last_event_ms, excluded.last_event_ms),
                last_ingest_ms = excluded.last_ingest_ms,
                stored_bytes = log_streams.stored_bytes + excluded.stored_bytes;
            """, connection, transaction))
        {
            upsert.Parameters.AddWithValue("now", nowMs);
            upsert.Parameters.AddWithValue("g", keyGroups);
            upsert.Parameters.AddWithValue("s", keyStreams);
            upsert.Parameters.AddWithValue("f", keys.Select(k => streams[k].FirstMs).ToArray());
            upsert.Parameters.AddWithValue("l", keys.Select(k => streams[k].LastMs).ToArray());
            upsert.Parameters.AddWithValue("b", keys.Select(k => streams[k].Bytes).ToArray());
            upsert.ExecuteNonQuery();
        }
        var ids = new List<long>(batch.Count);
        using (var insert = new NpgsqlCommand("""
            INSERT INTO log_events (group_name, stream_name, timestamp_ms, ingest_ms, message)
            SELECT g, s, t, @now, m FROM unnest(@g, @s, @t, @m) WITH ORDINALITY AS e (g, s, t, m, n) ORDER BY n
            RETURNING id;
            """, connection, transaction))
        {
            insert.Parameters.AddWithValue("now", nowMs);
            insert.Parameters.AddWithValue("g", groups);
            insert.Parameters.AddWithValue("s", streamNames);
            insert.Parameters.AddWithValue("t", timestamps);
            insert.Parameters.AddWithValue("m", messages);
            using var reader = insert.ExecuteReader();
            while (reader.Read())
            {
                ids.Add(reader.GetInt64(0));
            }
        }
        // RETURNING's order is not promised; the ids' is (drawn row by row, in insertion order).
        ids.Sort();
        var filters = _filters;
        for (var i = 0; i < batch.Count; i++)
        {
            Match(filters, batch[i], messages[i], ids[i]);
            AddToChunk(streams, batch[i], ids[i]);
        }
        using (var chunks = new NpgsqlCommand("""
            INSERT INTO log_chunks (group_name, stream_name, first_id, last_id, last_event_ms)
            SELECT g, s, fi, li, l FROM unnest(@g, @s, @fi, @li, @l) AS c (g, s, fi, li, l);
            """, connection, transaction))
        {
            chunks.Parameters.AddWithValue("g", keyGroups);
            chunks.Parameters.AddWithValue("s", keyStreams);
            chunks.Parameters.AddWithValue("fi", keys.Select(k => streams[k].FirstId).ToArray());
            chunks.Parameters.AddWithValue("li", keys.Select(k => streams[k].LastId).ToArray());
            chunks.Parameters.AddWithValue("l", keys.Select(k => streams[k].LastMs).ToArray());
            chunks.ExecuteNonQuery();
        }
        transaction.Commit();
    }

    /// <summary>An event's message as stored: at most CloudWatch's 256 KB.</summary>
    private static string Truncated(string message) =>
        message.Length > MaxMessageBytes / 4 && System.Text.Encoding.UTF8.GetByteCount(message) > MaxMessageBytes
            ? message[..(MaxMessageBytes / 4)] + " [lamina] truncated"
            : message;

    /// <summary>
    /// Matches a stored event against its group's subscription filters: here, on the writer, where the lines are
    /// already batched, never on the invoke path.
    /// </summary>
    private void Match(Dictionary<string, SubscriptionFilter[]> filters, LogLine line, string message, long id)
    {
        if (filters.Count > 0 && filters.TryGetValue(line.Group, out var subscribed))
        {
            foreach (var filter in subscribed)
            {
                if (filter.Pattern.Matches(message))
                {
                    _matchedBatch.Add(new MatchedEvent(filter, line.Stream, id, line.TimestampMs, message));
                }
            }
        }
    }

    /// <summary>Adds an event to its stream's earliest and latest time and stored size.</summary>
    private static void Tally(Dictionary<(string, string), StreamTally> streams, LogLine line, string message)
    {
        var key = (line.Group, line.Stream);
        streams[key] = streams.TryGetValue(key, out var seen)
            ? seen with { FirstMs = Math.Min(seen.FirstMs, line.TimestampMs), LastMs = Math.Max(seen.LastMs, line.TimestampMs), Bytes = seen.Bytes + message.Length }
            : new StreamTally(line.TimestampMs, line.TimestampMs, message.Length, 0, 0);
    }

    /// <summary>Adds a stored event's id to its stream's chunk (ids only grow within a batch).</summary>
    private static void AddToChunk(Dictionary<(string, string), StreamTally> streams, LogLine line, long id)
    {
        var key = (line.Group, line.Stream);
        var tally = streams[key];
        streams[key] = tally with { FirstId = tally.FirstId == 0 ? id : tally.FirstId, LastId = id };
    }

    /// <summary>One stream's share of a batch: its events' earliest and latest time, their size, and its chunk (first and last id).</summary>
    private readonly record struct StreamTally(long FirstMs, long LastMs, long Bytes, long FirstId, long LastId);

    private void InsertBatch(SqliteConnection connection, List<LogLine> batch, long nowMs)
    {
        using var transaction = connection.BeginTransaction();
        var streams = new Dictionary<(string, string), StreamTally>();
        InsertEvents(connection, batch, nowMs, streams);
        using var group = connection.CreateCommand();
        group.CommandText = "INSERT INTO log_groups (name, created_ms) VALUES ($g, $now) ON CONFLICT (name) DO NOTHING;";
        var groupName = group.Parameters.Add("$g", SqliteType.Text);
        group.Parameters.AddWithValue("$now", nowMs);
        using var stream = connection.CreateCommand();
        stream.CommandText = """
            INSERT INTO log_streams (group_name, name, created_ms, first_event_ms, last_event_ms, last_ingest_ms, stored_bytes)
            VALUES ($g, $s, $now, $first, $last, $now, $bytes)
            ON CONFLICT (group_name, name) DO UPDATE SET
                first_event_ms = MIN(COALESCE(first_event_ms, excluded.first_event_ms), excluded.first_event_ms),
                last_event_ms = MAX(COALESCE(last_event_ms, excluded.last_event_ms), excluded.last_event_ms),
                last_ingest_ms = excluded.last_ingest_ms,
                stored_bytes = stored_bytes + excluded.stored_bytes;
            """;
        var sg = stream.Parameters.Add("$g", SqliteType.Text);
        var ss = stream.Parameters.Add("$s", SqliteType.Text);
        stream.Parameters.AddWithValue("$now", nowMs);
        var first = stream.Parameters.Add("$first", SqliteType.Integer);
        var last = stream.Parameters.Add("$last", SqliteType.Integer);
        var bytes = stream.Parameters.Add("$bytes", SqliteType.Integer);
        using var chunk = connection.CreateCommand();
        chunk.CommandText = "INSERT INTO log_chunks (group_name, stream_name, first_id, last_id, last_event_ms) VALUES ($g, $s, $first, $last, $lastMs);";
        var cg = chunk.Parameters.Add("$g", SqliteType.Text);
        var cs = chunk.Parameters.Add("$s", SqliteType.Text);
        var firstId = chunk.Parameters.Add("$first", SqliteType.Integer);
        var lastId = chunk.Parameters.Add("$last", SqliteType.Integer);
        var lastMs = chunk.Parameters.Add("$lastMs", SqliteType.Integer);
        foreach (var ((groupKey, streamKey), tally) in streams)
        {
            groupName.Value = groupKey;
            group.ExecuteNonQuery();
            sg.Value = cg.Value = groupKey;
            ss.Value = cs.Value = streamKey;
            first.Value = tally.FirstMs;
            last.Value = lastMs.Value = tally.LastMs;
            bytes.Value = tally.Bytes;
            stream.ExecuteNonQuery();
            firstId.Value = tally.FirstId;
            lastId.Value = tally.LastId;
            chunk.ExecuteNonQuery();
        }
        transaction.Commit();
    }

    /// <summary>
    /// The batch's events through prepared statements on the connection's own handle: Microsoft.Data.Sqlite's
    /// ExecuteNonQuery builds a reader, a statement enumerator and a binder per parameter for every row, and three rows
    /// per warm invoke made that a fifth of the server's allocation (issue #19). Rows go 16 to a statement: SQLite
    /// advances the table's AUTOINCREMENT counter (a row of its own) once per statement, not per row.
    /// </summary>
    private void InsertEvents(SqliteConnection connection, List<LogLine> batch, long nowMs, Dictionary<(string, string), StreamTally> streams)
    {
        var db = connection.Handle!;
        _insert ??= Prepare(db, 1);
        _insertMany ??= Prepare(db, RowsPerInsert);
        var filters = _filters;
        Span<long> ids = stackalloc long[RowsPerInsert];
        var messages = new string[RowsPerInsert];
        var done = 0;
        while (done < batch.Count)
        {
            var rows = batch.Count - done >= RowsPerInsert ? RowsPerInsert : 1;
            var insert = rows == 1 ? _insert : _insertMany;
            try
            {
                for (var k = 0; k < rows; k++)
                {
                    var line = batch[done + k];
                    messages[k] = Truncated(line.Message);
                    BindText(insert, k * 5 + 1, line.Group, db);
                    BindText(insert, k * 5 + 2, line.Stream, db);
                    Check(SQLitePCL.raw.sqlite3_bind_int64(insert, k * 5 + 3, line.TimestampMs), db);
                    Check(SQLitePCL.raw.sqlite3_bind_int64(insert, k * 5 + 4, nowMs), db);
                    BindText(insert, k * 5 + 5, messages[k], db);
                }
                var returned = 0;
                int rc;
                while ((rc = SQLitePCL.raw.sqlite3_step(insert)) == SQLitePCL.raw.SQLITE_ROW)
                {
                    ids[returned++] = SQLitePCL.raw.sqlite3_column_int64(insert, 0);
                }
                SQLitePCL.raw.sqlite3_reset(insert);
                Check(rc, db);
                // RETURNING's order is not promised; the ids' is (drawn row by row, in the order of VALUES).
                ids[..rows].Sort();
            }
            finally
            {
                SQLitePCL.raw.sqlite3_clear_bindings(insert);
            }
            for (var k = 0; k < rows; k++)
            {
                var line = batch[done + k];
                if (filters.Count > 0)
                {
                    Match(filters, line, messages[k], ids[k]);
                }
                Tally(streams, line, messages[k]);
                AddToChunk(streams, line, ids[k]);
            }
            done += rows;
        }
    }

    private static SQLitePCL.sqlite3_stmt Prepare(SQLitePCL.sqlite3 db, int rows)
    {
        var values = string.Join(", ", Enumerable.Range(0, rows).Select(static k => $"(?{k * 5 + 1}, ?{k * 5 + 2}, ?{k * 5 + 3}, ?{k * 5 + 4}, ?{k * 5 + 5})"));
        Check(SQLitePCL.raw.sqlite3_prepare_v2(db,
            $"INSERT INTO log_events (group_name, stream_name, timestamp_ms, ingest_ms, message) VALUES {values} RETURNING id;", out var prepared), db);
        return prepared;
    }

    // SQLite copies the text (SQLITE_TRANSIENT), so one buffer serves every value.
    private void BindText(SQLitePCL.sqlite3_stmt statement, int index, string value, SQLitePCL.sqlite3 db)
    {
        var length = System.Text.Encoding.UTF8.GetMaxByteCount(value.Length);
        if (_utf8.Length < length)
        {
            _utf8 = new byte[Math.Max(length, _utf8.Length * 2)];
        }
        var written = System.Text.Encoding.UTF8.GetBytes(value, _utf8);
        Check(SQLitePCL.raw.sqlite3_bind_text(statement, index, _utf8.AsSpan(0, written)), db);
    }

    private static void Check(int rc, SQLitePCL.sqlite3 db)
    {
        if (rc != SQLitePCL.raw.SQLITE_OK && rc != SQLitePCL.raw.SQLITE_DONE && rc != SQLitePCL.raw.SQLITE_ROW)
        {
            SqliteException.ThrowExceptionForRC(rc, db);
        }
    }

    /// <summary>
    /// At start and once a minute: each group's retention, then the overall size cap (oldest events first), then streams
    /// left empty (<see cref="Trimming"/>), a step at a time: the writer and the readers take turns with each step.
    /// </summary>
    private async Task HousekeepingAsync()
    {
        // A round at start: a store that was stopped for days, or given a lower --log-max-mb, is trimmed at once. On a
        // cluster the lease's holder does it: the heartbeat that gives this node the lease wakes a round.
        var round = _cluster is null || _cluster.Holds(HousekeepingLease);
        while (!_stopping.IsCancellationRequested)
        {
            if (round && (_cluster is null || _cluster.Holds(HousekeepingLease)))
            {
                try
                {
                    var trimming = new Trimming(_time.GetUtcNow().ToUnixTimeMilliseconds(), _maxBytes);
                    while (await ReadAsync(trimming.Step, _stopping.Token))
                    {
                    }
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                catch (Exception e) when (e is DbException || Sql.CanRetryLater(e))
                {
                    Log.WriteFailed(_logger, 0, e.Message);
                }
            }
            // Then once a minute (another node's turn when it holds the lease).
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1), _time);
            using var minute = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token, timeout.Token);
            try
            {
                await _housekeepingDue.Reader.ReadAsync(minute.Token);
            }
            catch (OperationCanceledException)
            {
            }
            round = true;
        }
    }

    /// <summary>
    /// One round of housekeeping: each group's retention, then the size cap (on a cluster, the whole cluster's logs, by
    /// the lease holder's <c>--log-max-mb</c>), then streams left empty; in statements both engines read alike, but for
    /// what the cap counts (<see cref="Used"/>). Each <see cref="Step"/> is a transaction of its own that deletes at
    /// most <see cref="MaxEventsPerStep"/> events, and what a round reads is in proportion to what it deletes, not to
    /// what the store holds: the round that read every
    /// event to sum the store's size (and, past the cap, again to find where to cut, then deleted in one transaction)
    /// held the writer and the readers for 0.85 s a minute with 4 million events stored, and for 6.3 s when the cap cut
    /// them (docs/BENCHMARKS.md, issue #19).
    /// </summary>
    internal sealed class Trimming(long nowMs, long maxBytes)
    {
        /// <summary>
        /// Events one step deletes at most. Measured on a store of 4 million events cut by 30% (bench/log_housekeeping.py):
        /// with 5,000 the longest read while it ran took 35 ms, with 20,000 79 ms; the whole cut 4.5 s either way.
        /// </summary>
        public const int MaxEventsPerStep = 5_000;

        private Phase _phase;
        // The store's size as the cap measures it (see Used); -1 until measured in this round.
        private long _used = -1;
        // The newest event the cap deleted, for the chunks that ended there.
        private long _cut;

        private enum Phase
        {
            Retention,
            SizeCap,
            Streams,
            Done,
        }

        /// <summary>Takes the next step of the round, in one transaction; false when the round is over.</summary>
        public bool Step(DbConnection connection)
        {
            using var transaction = connection.BeginTransaction();
            switch (_phase)
            {
                case Phase.Retention:
                    if (DeleteExpired(connection) < MaxEventsPerStep)
                    {
                        DeleteExpiredChunks(connection);
                        _phase = Phase.SizeCap;
                    }
                    break;
                case Phase.SizeCap:
                    if (!DeleteOldest(connection))
                    {
                        if (_cut > 0)
                        {
                            using var chunks = connection.CreateCommand();
                            // A chunk that ended at or before the cut has no event left.
                            chunks.CommandText = "DELETE FROM log_chunks WHERE last_id <= @cut;";
                            chunks.Add("@cut", _cut);
                            chunks.ExecuteNonQuery();
                        }
                        _phase = Phase.Streams;
                    }
                    break;
                default:
                    DeleteEmptyStreams(connection);
                    _phase = Phase.Done;
                    break;
            }
            transaction.Commit();
            return _phase != Phase.Done;
        }

        /// <summary>Deletes up to a step's worth of events past their group's retention (through the group-and-time index).</summary>
        private int DeleteExpired(DbConnection connection)
        {
            using var retention = connection.CreateCommand();
            retention.CommandText = """
                DELETE FROM log_events WHERE id IN (
                    SELECT e.id FROM log_groups g JOIN log_events e ON e.group_name = g.name
                    WHERE g.retention_days IS NOT NULL AND e.timestamp_ms < @now - g.retention_days * 86400000
                    LIMIT @limit);
                """;
            retention.Add("@now", nowMs);
            retention.Add("@limit", MaxEventsPerStep);
            return retention.ExecuteNonQuery();
        }

        private void DeleteExpiredChunks(DbConnection connection)
        {
            using var chunks = connection.CreateCommand();
            // A chunk whose latest event is past retention has no event left.
            chunks.CommandText = """
                DELETE FROM log_chunks WHERE EXISTS (
                    SELECT 1 FROM log_groups g WHERE g.name = log_chunks.group_name
                    AND g.retention_days IS NOT NULL AND log_chunks.last_event_ms < @now - g.retention_days * 86400000);
                """;
            chunks.Add("@now", nowMs);
            chunks.ExecuteNonQuery();
        }

        /// <summary>
        /// Past the cap: deletes the oldest events, as many as should bring the store a tenth below the cap (so that this
        /// does not run on every tick), at most a step's worth; false when the store is there or has no event left.
        /// </summary>
        private bool DeleteOldest(DbConnection connection)
        {
            _used = _used < 0 || connection is SqliteConnection ? Used(connection) : _used;
            // The round starts cutting past the cap, and once it has started, goes on to a tenth below it.
            var target = maxBytes - maxBytes / 10;
            if (_cut == 0 ? _used <= maxBytes : _used <= target)
            {
                return false;
            }
            using var command = connection.CreateCommand();
            // Two subqueries: SQLite reads MIN and MAX off the key's ends only when each is alone in its SELECT.
            command.CommandText = "SELECT (SELECT MIN(id) FROM log_events), (SELECT MAX(id) FROM log_events);";
            long first, last;
            using (var reader = command.ExecuteReader())
            {
                if (!reader.Read() || reader.IsDBNull(0))
                {
                    return false;
                }
                (first, last) = (reader.GetInt64(0), reader.GetInt64(1));
            }
            // Ids only grow, and events go oldest first: the range is about the count (retention's gaps make it more).
            var perEvent = Math.Max(1, _used / (last - first + 1));
            var count = (int)Math.Clamp((_used - target + perEvent - 1) / perEvent, 1, MaxEventsPerStep);
            // The oldest events, up to that count: on PostgreSQL, where the cap counts their text, only as many as it takes.
            var countsText = connection is not SqliteConnection;
            command.CommandText = "SELECT id, LENGTH(message) FROM log_events ORDER BY id LIMIT @count;";
            command.Add("@count", count);
            long cut = 0, freed = 0;
            using (var reader = command.ExecuteReader())
            {
                while (reader.Read())
                {
                    cut = reader.GetInt64(0);
                    freed += Convert.ToInt64(reader.GetValue(1), CultureInfo.InvariantCulture);
                    if (countsText && _used - freed <= target)
                    {
                        break;
                    }
                }
            }
            if (cut == 0)
            {
                return false; // on PostgreSQL a group deleted meanwhile can take the rest (each statement reads afresh)
            }
            command.CommandText = "DELETE FROM log_events WHERE id <= @cut;";
            command.Parameters.Clear();
            command.Add("@cut", cut);
            command.ExecuteNonQuery();
            _used = countsText ? _used - freed : _used; // SQLite's pages are measured again at the next step
            _cut = cut;
            return true;
        }

        /// <summary>
        /// What the cap counts. SQLite: the pages <c>logs.db</c> uses (what the file holds, less the pages it freed and
        /// will reuse), read without touching an event. PostgreSQL: the events' text, summed (a table's size there does
        /// not shrink when rows go, so it cannot tell a cap that was met); on the lease holder's own connection, it
        /// holds no writer up.
        /// </summary>
        private static long Used(DbConnection connection)
        {
            using var size = connection.CreateCommand();
            size.CommandText = connection is SqliteConnection
                ? "SELECT (page_count - freelist_count) * page_size FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size();"
                : "SELECT CAST(COALESCE(SUM(LENGTH(message)), 0) AS BIGINT) FROM log_events;";
            return Convert.ToInt64(size.ExecuteScalar(), CultureInfo.InvariantCulture);
        }

        private void DeleteEmptyStreams(DbConnection connection)
        {
            using var streams = connection.CreateCommand();
            // Streams whose events are all gone go too (as with CloudWatch retention) — once a day has passed since they
            // were last written or created: a stream made by CreateLogStream waits for its first PutLogEvents.
            streams.CommandText = """
                DELETE FROM log_streams WHERE COALESCE(last_ingest_ms, created_ms) < @idle AND NOT EXISTS (
                    SELECT 1 FROM log_chunks c WHERE c.group_name = log_streams.group_name AND c.stream_name = log_streams.name);
                """;
            streams.Add("@idle", nowMs - 86_400_000L);
            streams.ExecuteNonQuery();
        }
    }

    private readonly record struct LogLine(string Group, string Stream, long TimestampMs, string Message);

    private static partial class Log
    {
        [LoggerMessage(EventId = Diagnostics.EventIds.LogStoreWriteFailed, Level = LogLevel.Error, Message = "The log store could not write {Count} log events: {Reason}")]
        public static partial void WriteFailed(ILogger logger, int count, string reason);

        [LoggerMessage(EventId = Diagnostics.EventIds.LogStoreWriteDeferred, Level = LogLevel.Warning,
            Message = "The log store could not write {Count} log events now ({Reason}); it keeps them and tries again")]
        public static partial void WriteDeferred(ILogger logger, int count, string reason);

        [LoggerMessage(EventId = Diagnostics.EventIds.LogStoreWriteResumed, Level = LogLevel.Information,
            Message = "The log store wrote the {Count} log events it had kept, at attempt {Attempt}")]
        public static partial void WriteResumed(ILogger logger, int count, int attempt);

        [LoggerMessage(EventId = Diagnostics.EventIds.LogSubscriptionDropped, Level = LogLevel.Warning,
            Message = "{Count} log events matched by subscription filters were dropped: deliveries to the subscribed functions are this far behind")]
        public static partial void MatchesDropped(ILogger logger, int count);
    }
}
