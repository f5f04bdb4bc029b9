using System.Globalization;
using System.Threading.Channels;
using Lamina.Server.Hosting;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Logs;

/// <summary>
/// Log groups, streams and events (what the CloudWatch Logs API reads): <c>&lt;data&gt;/logs.db</c>, a SQLite file of
/// its own. Environments write through <see cref="Write(string, string, string)"/>, which never blocks: a bounded buffer that one loop drains
/// in batches, off the invoke path. When the buffer is full, lines are dropped and counted, and a marker says so in
/// each stream that lost some. Disk use is bounded by each group's retention and by <c>--log-max-mb</c> overall (the
/// oldest events go first). The writer also matches what it stores against the groups' subscription filters and hands
/// the matches to <see cref="LogSubscriptions"/>.
/// </summary>
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
    // transaction each was ~10% of the server's CPU per warm invoke at one connection (issue #19). 10 ms bounds the
    // commits to 100/s and delays only lines nobody is waiting for.
    private static readonly TimeSpan CommitInterval = TimeSpan.FromMilliseconds(10);

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
    // The writer's INSERT, prepared once and reused (see InsertBatch); finalized before the connection closes.
    private SQLitePCL.sqlite3_stmt? _insert;
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

    public LogStore(IOptions<LaminaOptions> options, TimeProvider time, ILogger<LogStore> logger)
    {
        _path = Path.Combine(options.Value.DataDirectory, "logs.db");
        _maxBytes = options.Value.LogMaxMb * 1024L * 1024L;
        _time = time;
        _logger = logger;
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
        Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = _path, Pooling = false, DefaultTimeout = 30 }.ToString());
        connection.Open();
        using (var schema = connection.CreateCommand())
        {
            // Logs are not the system of record: NORMAL (fsync at checkpoints) keeps the writer cheap.
            schema.CommandText = """
                PRAGMA journal_mode=WAL;
                PRAGMA synchronous=NORMAL;
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
                CREATE INDEX IF NOT EXISTS log_events_stream ON log_events (group_name, stream_name, id);
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
            schema.ExecuteNonQuery();
        }
        LoadFilters(connection);
        _connection = connection;
        _writer = Task.Factory.StartNew(WriterLoopAsync, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
        _housekeeping = HousekeepingAsync();
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
        _connection?.Dispose();
        _connectionLock.Dispose();
        _stopping.Dispose();
    }

    /// <summary>The subscription filters of every group, by group key (read-only: replaced whole by <see cref="LoadFilters"/>).</summary>
    public IReadOnlyDictionary<string, SubscriptionFilter[]> Filters => _filters;

    /// <summary>The events the writer matched to subscription filters, after each batch that held them was stored.</summary>
    public ChannelReader<MatchedEvent> Matched => _matched.Reader;

    /// <summary>Reads the subscription filters again, on the store's connection, after a change to them.</summary>
    public void LoadFilters(SqliteConnection connection)
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

    /// <summary>Runs <paramref name="read"/> on the store's connection (reads and the writer take turns).</summary>
    public async Task<T> ReadAsync<T>(Func<SqliteConnection, T> read, CancellationToken cancellationToken)
    {
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

    /// <summary>Runs a control-plane change (create or delete a group, retention) in a transaction of its own.</summary>
    public Task<T> ChangeAsync<T>(Func<SqliteConnection, T> change, CancellationToken cancellationToken) => ReadAsync(connection =>
    {
        using var transaction = connection.BeginTransaction();
        var result = change(connection);
        transaction.Commit();
        return result;
    }, cancellationToken);

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
            try
            {
                await ReadAsync(connection =>
                {
                    InsertBatch(connection, batch, _time.GetUtcNow().ToUnixTimeMilliseconds());
                    return true;
                }, CancellationToken.None);
                PublishMatches();
            }
            catch (SqliteException e)
            {
                Log.WriteFailed(_logger, batch.Count, e.Message);
            }
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

    private void InsertBatch(SqliteConnection connection, List<LogLine> batch, long nowMs)
    {
        using var transaction = connection.BeginTransaction();
        var streams = new Dictionary<(string, string), (long First, long Last, long Bytes)>();
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
        foreach (var ((groupKey, streamKey), (f, l, b)) in streams)
        {
            groupName.Value = groupKey;
            group.ExecuteNonQuery();
            sg.Value = groupKey;
            ss.Value = streamKey;
            first.Value = f;
            last.Value = l;
            bytes.Value = b;
            stream.ExecuteNonQuery();
        }
        transaction.Commit();
    }

    /// <summary>
    /// The batch's events through one prepared statement on the connection's own handle: Microsoft.Data.Sqlite's
    /// ExecuteNonQuery builds a reader, a statement enumerator and a binder per parameter for every row, and three rows
    /// per warm invoke made that a fifth of the server's allocation (issue #19). Same statement, same transaction.
    /// </summary>
    private void InsertEvents(SqliteConnection connection, List<LogLine> batch, long nowMs, Dictionary<(string, string), (long First, long Last, long Bytes)> streams)
    {
        var db = connection.Handle!;
        if (_insert is null)
        {
            Check(SQLitePCL.raw.sqlite3_prepare_v2(db,
                "INSERT INTO log_events (group_name, stream_name, timestamp_ms, ingest_ms, message) VALUES (?1, ?2, ?3, ?4, ?5);", out var prepared), db);
            _insert = prepared;
        }
        var insert = _insert;
        var filters = _filters;
        try
        {
            foreach (var line in batch)
            {
                var message = line.Message.Length > MaxMessageBytes / 4 && System.Text.Encoding.UTF8.GetByteCount(line.Message) > MaxMessageBytes
                    ? line.Message[..(MaxMessageBytes / 4)] + " [lamina] truncated"
                    : line.Message;
                BindText(insert, 1, line.Group, db);
                BindText(insert, 2, line.Stream, db);
                Check(SQLitePCL.raw.sqlite3_bind_int64(insert, 3, line.TimestampMs), db);
                Check(SQLitePCL.raw.sqlite3_bind_int64(insert, 4, nowMs), db);
                BindText(insert, 5, message, db);
                var rc = SQLitePCL.raw.sqlite3_step(insert);
                SQLitePCL.raw.sqlite3_reset(insert);
                if (rc != SQLitePCL.raw.SQLITE_DONE)
                {
                    Check(rc, db);
                }
                // Subscription filters match here, on the writer, where the lines are already batched: never on the invoke path.
                if (filters.Count > 0 && filters.TryGetValue(line.Group, out var subscribed))
                {
                    var id = SQLitePCL.raw.sqlite3_last_insert_rowid(db);
                    foreach (var filter in subscribed)
                    {
                        if (filter.Pattern.Matches(message))
                        {
                            _matchedBatch.Add(new MatchedEvent(filter, line.Stream, id, line.TimestampMs, message));
                        }
                    }
                }
                var key = (line.Group, line.Stream);
                streams[key] = streams.TryGetValue(key, out var seen)
                    ? (Math.Min(seen.First, line.TimestampMs), Math.Max(seen.Last, line.TimestampMs), seen.Bytes + message.Length)
                    : (line.TimestampMs, line.TimestampMs, message.Length);
            }
        }
        finally
        {
            SQLitePCL.raw.sqlite3_clear_bindings(insert);
        }
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

    /// <summary>Once a minute: each group's retention, then the overall size cap (oldest events first).</summary>
    private async Task HousekeepingAsync()
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMinutes(1), _time);
        try
        {
            while (await timer.WaitForNextTickAsync(_stopping.Token))
            {
                try
                {
                    await ReadAsync(connection =>
                    {
                        Trim(connection, _time.GetUtcNow().ToUnixTimeMilliseconds(), _maxBytes);
                        return true;
                    }, _stopping.Token);
                }
                catch (SqliteException e)
                {
                    Log.WriteFailed(_logger, 0, e.Message);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    internal static void Trim(SqliteConnection connection, long nowMs, long maxBytes)
    {
        using var transaction = connection.BeginTransaction();
        using (var retention = connection.CreateCommand())
        {
            retention.CommandText = """
                DELETE FROM log_events WHERE id IN (
                    SELECT e.id FROM log_events e JOIN log_groups g ON g.name = e.group_name
                    WHERE g.retention_days IS NOT NULL AND e.timestamp_ms < $now - g.retention_days * 86400000);
                """;
            retention.Parameters.AddWithValue("$now", nowMs);
            retention.ExecuteNonQuery();
        }
        using (var size = connection.CreateCommand())
        {
            size.CommandText = "SELECT COALESCE(SUM(LENGTH(message)), 0) FROM log_events;";
            var total = (long)size.ExecuteScalar()!;
            if (total > maxBytes)
            {
                // Oldest first, about a tenth more than the excess so this does not run on every tick.
                using var oldest = connection.CreateCommand();
                oldest.CommandText = """
                    DELETE FROM log_events WHERE id <= (
                        SELECT id FROM (SELECT id, SUM(LENGTH(message)) OVER (ORDER BY id) AS running FROM log_events)
                        WHERE running >= $excess ORDER BY id LIMIT 1);
                    """;
                oldest.Parameters.AddWithValue("$excess", total - maxBytes + maxBytes / 10);
                oldest.ExecuteNonQuery();
            }
        }
        using (var streams = connection.CreateCommand())
        {
            // Streams whose events are all gone go too (as with CloudWatch retention) — once a day has passed since they
            // were last written or created: a stream made by CreateLogStream waits for its first PutLogEvents.
            streams.CommandText = """
                DELETE FROM log_streams WHERE COALESCE(last_ingest_ms, created_ms) < $idle AND NOT EXISTS (
                    SELECT 1 FROM log_events e WHERE e.group_name = log_streams.group_name AND e.stream_name = log_streams.name);
                """;
            streams.Parameters.AddWithValue("$idle", nowMs - 86_400_000L);
            streams.ExecuteNonQuery();
        }
        transaction.Commit();
    }

    private readonly record struct LogLine(string Group, string Stream, long TimestampMs, string Message);

    private static partial class Log
    {
        [LoggerMessage(EventId = Diagnostics.EventIds.LogStoreWriteFailed, Level = LogLevel.Error, Message = "The log store could not write {Count} log events: {Reason}")]
        public static partial void WriteFailed(ILogger logger, int count, string reason);

        [LoggerMessage(EventId = Diagnostics.EventIds.LogSubscriptionDropped, Level = LogLevel.Warning,
            Message = "{Count} log events matched by subscription filters were dropped: deliveries to the subscribed functions are this far behind")]
        public static partial void MatchesDropped(ILogger logger, int count);
    }
}
