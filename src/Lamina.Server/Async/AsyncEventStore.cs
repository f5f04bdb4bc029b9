using System.Data.Common;
using System.Globalization;
using Lamina.Server.Hosting;
using Lamina.Server.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Async;

/// <summary>
/// The durable queue of asynchronous invocations: <c>&lt;data&gt;/async.db</c>, a SQLite file of its own (WAL,
/// <c>synchronous=FULL</c>), so the queue's write rate never contends with the control plane's.
/// </summary>
/// <remarks>
/// One connection, owned by one writer loop: every operation is queued to it and the loop runs whatever is waiting
/// in one transaction (group commit), completing each operation after the commit, i.e. once it is on disk. Many
/// concurrent Event invocations thus share an fsync, and an accepted (202) event is never lost.
/// </remarks>
internal sealed partial class AsyncEventStore : IAsyncDisposable
{
    /// <summary>Most operations committed together.</summary>
    private const int MaxBatch = 512;

    private readonly string _path;
    private readonly ILogger<AsyncEventStore> _logger;
    private SqliteConnection? _connection;
    private GroupCommitWriter? _writer;

    // A cluster node (issue #25): the queue is the cluster's PostgreSQL table, claimed with FOR UPDATE SKIP LOCKED.
    private readonly Database? _database;
    private readonly string _nodeId;
    private PostgresWriter? _postgres;

    public AsyncEventStore(IOptions<LaminaOptions> options, ILogger<AsyncEventStore> logger, Database? database = null)
    {
        _path = Path.Combine(options.Value.DataDirectory, "async.db");
        _logger = logger;
        _database = database is { IsPostgres: true } ? database : null;
        _nodeId = options.Value.EffectiveNodeId;
    }

    /// <summary>Whether the queue is the cluster's (PostgreSQL) rather than this node's file.</summary>
    public bool IsShared => _database is not null;

    // The table, in SQLite's words. On a cluster, step 5 of Database's PostgreSQL history creates it from this text
    // (PostgresSchema): a change here is a new step there.
    private const string Schema = """
        CREATE TABLE IF NOT EXISTS events (
            id               TEXT    NOT NULL PRIMARY KEY,  -- the request id the caller got
            function_name    TEXT    NOT NULL,
            qualifier        TEXT,                          -- as invoked; resolved again on every attempt
            invoked_arn      TEXT    NOT NULL,
            payload          BLOB    NOT NULL,
            trace_id         TEXT    NOT NULL,
            created_ms       INTEGER NOT NULL,              -- when it was accepted (its age counts from here)
            state            INTEGER NOT NULL,              -- 0 queued, 1 leased (running), 2 failed (kept for operators)
            attempts         INTEGER NOT NULL DEFAULT 0,    -- invocations that ended in a function error
            due_ms           INTEGER NOT NULL,              -- not before (retry delays, throttle backoff)
            condition        TEXT,                          -- failed: RetriesExhausted or EventAgeExceeded
            last_error       TEXT,                          -- the last function error's body, or why it failed
            failed_ms        INTEGER
        );
        CREATE INDEX IF NOT EXISTS events_due ON events (state, due_ms);
        """;

    /// <summary>
    /// Each function's queued events by due time, and the events by age. With the first, leasing while a function is
    /// paused reads the other functions' heads, not the paused one's whole backlog (it read every due event of it, ~0.3 s
    /// a dispatcher loop with a million queued); with the second, the oldest event's age for metrics is one lookup. A
    /// step of its own in the cluster's history (10).
    /// </summary>
    internal const string Indexes = """
        CREATE INDEX IF NOT EXISTS events_function ON events (state, function_name, due_ms);
        CREATE INDEX IF NOT EXISTS events_created ON events (state, created_ms);
        """;

    /// <summary>The table on a cluster's PostgreSQL, with the node that claimed a running event (when that node stops beating, the others put it back).</summary>
    internal static string PostgresSchema => Sql.ForPostgres(Schema) + "\nALTER TABLE events ADD COLUMN IF NOT EXISTS leased_by TEXT;\n";

    private int OpenShared(Database database)
    {
        using var connection = database.Postgres!.OpenConnection();
        // What this node claimed before it restarted was interrupted: back to the queue, no attempt spent.
        using var reset = connection.CreateCommand();
        reset.CommandText = "UPDATE events SET state = 0, leased_by = NULL WHERE state = 1 AND leased_by = @node;";
        reset.Add("@node", _nodeId);
        var returned = reset.ExecuteNonQuery();
        _postgres = new PostgresWriter(database.Postgres, MaxBatch, failure =>
        {
            if (failure is not null)
            {
                Log.WriteFailed(_logger, failure.Message);
            }
        });
        return returned;
    }

    /// <summary>
    /// A cluster node: puts back the events claimed by nodes whose heartbeat lapsed (they died while running them;
    /// at-least-once, so they run again elsewhere, no attempt spent). Returns how many.
    /// </summary>
    public Task<int> ReclaimAsync() => Run(connection =>
    {
        using var command = connection.CreateCommand();
        command.CommandText = """
            UPDATE events SET state = 0, leased_by = NULL
             WHERE state = 1 AND leased_by IS NOT NULL
               AND leased_by NOT IN (SELECT node_id FROM cluster_nodes WHERE expires_at > now());
            """;
        return command.ExecuteNonQuery();
    });

    /// <summary>Opens (creating) the file, returns every leased event to the queue (a crash left them), starts the writer.</summary>
    public int Open()
    {
        if (_database is { } shared)
        {
            return OpenShared(shared);
        }
        Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = _path, Pooling = false, DefaultTimeout = 30 }.ToString());
        connection.Open();
        Execute(connection, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
        Execute(connection, Schema + Indexes);
        // Nothing runs before the dispatcher starts: a leased event is one a crash interrupted. Redelivered; the crash
        // was a system error, so no attempt is spent.
        using var reset = connection.CreateCommand();
        reset.CommandText = "UPDATE events SET state = 0 WHERE state = 1;";
        var returned = reset.ExecuteNonQuery();
        _connection = connection;
        _writer = new GroupCommitWriter(connection, MaxBatch, failure =>
        {
            if (failure is not null)
            {
                Log.WriteFailed(_logger, failure.Message); // each writer was told; the loop goes on
            }
        });
        return returned;
    }

    /// <summary>Stores a new event; completes once it is on disk.</summary>
    public Task EnqueueAsync(AsyncEvent e) => Run(connection =>
    {
        // A cluster node wakes the other nodes' dispatchers with the same statement's round trip (the notification is
        // sent at commit, once per batch: PostgreSQL folds equal notifications).
        Insert(connection, e, IsShared ? _nodeId + "|" : null);
        return true;
    });

    /// <summary>Leases up to <paramref name="limit"/> queued events due by <paramref name="nowMs"/>, oldest due first.</summary>
    /// <remarks>
    /// Events of the functions in <paramref name="paused"/> (throttled a moment ago) stay queued: leasing them would
    /// only put them back, two writes each, while a throttled function's backlog waits. Of a function in
    /// <paramref name="caps"/> (at its reserved concurrency a moment ago), at most its cap: the slots free for it.
    /// </remarks>
    public Task<List<AsyncEvent>> LeaseDueAsync(long nowMs, int limit, IReadOnlyCollection<string>? paused = null,
        IReadOnlyDictionary<string, int>? caps = null) => Run(connection =>
    {
        if (paused is { Count: > 0 } || caps is { Count: > 0 })
        {
            return LeaseAround(connection, nowMs, limit, paused ?? [], caps);
        }
        if (IsShared)
        {
            return Claim(connection, "SELECT id FROM events WHERE state = 0 AND due_ms <= @now ORDER BY due_ms LIMIT @limit FOR UPDATE SKIP LOCKED", nowMs, limit, null);
        }
        var events = new List<AsyncEvent>();
        using (var select = connection.CreateCommand())
        {
            select.CommandText = $"SELECT {Columns} FROM events WHERE state = 0 AND due_ms <= @now ORDER BY due_ms LIMIT @limit;";
            select.Add("@now", nowMs);
            select.Add("@limit", limit);
            using var reader = select.ExecuteReader();
            while (reader.Read())
            {
                events.Add(Read(reader));
            }
        }
        MarkLeased(connection, events);
        return events;
    });

    /// <summary>
    /// Leases the due events of the functions not <paramref name="paused"/>, at most <paramref name="caps"/>' count of
    /// a function there: the oldest due of each function (its head, through <c>events_function</c>), merged, so that a
    /// paused function's backlog is never read and a capped one's only as far as its cap.
    /// </summary>
    private List<AsyncEvent> LeaseAround(DbConnection connection, long nowMs, int limit, IReadOnlyCollection<string> paused, IReadOnlyDictionary<string, int>? caps)
    {
        // Candidates: up to `limit` due of each function in the order of their heads; a function whose head is later
        // than the limit-th candidate so far has nothing among the first `limit`.
        var candidates = new List<(string Id, long DueMs)>();
        foreach (var (function, head) in Heads(connection, paused))
        {
            if (head > nowMs || (candidates.Count >= limit && candidates[limit - 1].DueMs <= head))
            {
                break;
            }
            using var select = connection.CreateCommand();
            select.CommandText = "SELECT id, due_ms FROM events WHERE state = 0 AND function_name = @function AND due_ms <= @now ORDER BY due_ms LIMIT @limit;";
            select.Add("@function", function);
            select.Add("@now", nowMs);
            select.Add("@limit", caps is not null && caps.TryGetValue(function, out var cap) ? Math.Min(cap, limit) : limit);
            using var reader = select.ExecuteReader();
            while (reader.Read())
            {
                candidates.Add((reader.GetString(0), reader.GetInt64(1)));
            }
            candidates.Sort(static (a, b) => a.DueMs.CompareTo(b.DueMs));
            if (candidates.Count > limit)
            {
                candidates.RemoveRange(limit, candidates.Count - limit);
            }
        }
        if (candidates.Count == 0)
        {
            return [];
        }
        var ids = new string[candidates.Count];
        for (var i = 0; i < ids.Length; i++)
        {
            ids[i] = candidates[i].Id;
        }
        if (IsShared)
        {
            // Another node may have claimed some since: those are skipped (the state check), or, while it is claiming them, passed by.
            return Claim(connection, "SELECT id FROM events WHERE id = ANY(@ids) AND state = 0 FOR UPDATE SKIP LOCKED", nowMs, limit, ids);
        }
        var events = new List<AsyncEvent>(ids.Length);
        using (var select = connection.CreateCommand())
        {
            select.CommandText = $"SELECT {Columns} FROM events WHERE id = @id;";
            var id = select.Add("@id", "");
            foreach (var candidate in ids)
            {
                id.Value = candidate;
                using var reader = select.ExecuteReader();
                if (reader.Read())
                {
                    events.Add(Read(reader));
                }
            }
        }
        MarkLeased(connection, events);
        return events;
    }

    /// <summary>A cluster node claims the events <paramref name="candidates"/> (a statement selecting ids) names: marks them its own, returns them oldest due first.</summary>
    private List<AsyncEvent> Claim(DbConnection connection, string candidates, long nowMs, int limit, string[]? ids)
    {
        // Several nodes claim at once: each skips the rows another is claiming, and marks its own as its.
        using var claim = connection.CreateCommand();
        claim.CommandText = $"UPDATE events SET state = 1, leased_by = @node WHERE id IN ({candidates}) RETURNING {Columns};";
        claim.Add("@node", _nodeId);
        if (ids is null)
        {
            claim.Add("@now", nowMs);
            claim.Add("@limit", limit);
        }
        else
        {
            claim.Add("@ids", ids);
        }
        var events = new List<AsyncEvent>();
        using (var reader = claim.ExecuteReader())
        {
            while (reader.Read())
            {
                events.Add(Read(reader));
            }
        }
        events.Sort(static (a, b) => a.DueMs.CompareTo(b.DueMs));
        return events;
    }

    private static void MarkLeased(DbConnection connection, List<AsyncEvent> events)
    {
        using var lease = connection.CreateCommand();
        lease.CommandText = "UPDATE events SET state = 1 WHERE id = @id;";
        var id = lease.Add("@id", "");
        foreach (var e in events)
        {
            id.Value = e.Id;
            lease.ExecuteNonQuery();
        }
    }

    /// <summary>When the next queued event is due (Unix ms), or null when none is queued; <paramref name="paused"/> as <see cref="LeaseDueAsync"/>.</summary>
    public Task<long?> NextDueAsync(IReadOnlyCollection<string>? paused = null) => Run(connection =>
    {
        if (paused is { Count: > 0 })
        {
            foreach (var (_, head) in Heads(connection, paused))
            {
                return (long?)head;
            }
            return null;
        }
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT MIN(due_ms) FROM events WHERE state = 0;";
        return command.ExecuteScalar() is long due ? (long?)due : null;
    });

    /// <summary>
    /// Each function with queued events, except the <paramref name="paused"/>, with when its first is due, earliest
    /// first: one index lookup per function (a loose scan of <c>events_function</c>), whatever its backlog.
    /// </summary>
    private static List<(string Function, long HeadMs)> Heads(DbConnection connection, IReadOnlyCollection<string> paused)
    {
        using var command = connection.CreateCommand();
        command.CommandText = """
            WITH RECURSIVE functions (name) AS (
                SELECT MIN(function_name) FROM events WHERE state = 0
                UNION ALL
                SELECT (SELECT MIN(function_name) FROM events WHERE state = 0 AND function_name > functions.name) FROM functions WHERE functions.name IS NOT NULL
            )
            SELECT name, (SELECT MIN(due_ms) FROM events WHERE state = 0 AND function_name = functions.name) FROM functions WHERE name IS NOT NULL;
            """;
        var heads = new List<(string, long)>();
        using (var reader = command.ExecuteReader())
        {
            while (reader.Read())
            {
                var function = reader.GetString(0);
                if (!paused.Contains(function))
                {
                    heads.Add((function, reader.GetInt64(1)));
                }
            }
        }
        heads.Sort(static (a, b) => a.Item2.CompareTo(b.Item2));
        return heads;
    }

    /// <summary>Puts a leased event back, due at <paramref name="dueMs"/>, with its attempt count and last error.</summary>
    public Task RequeueAsync(string id, long dueMs, int attempts, string? lastError) => Run(connection =>
    {
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE events SET state = 0, due_ms = @due, attempts = @attempts, last_error = @error" + (IsShared ? ", leased_by = NULL" : "") + " WHERE id = @id;";
        command.Add("@id", id);
        command.Add("@due", dueMs);
        command.Add("@attempts", attempts);
        command.Add("@error", (object?)lastError ?? DBNull.Value);
        command.ExecuteNonQuery();
        return true;
    });

    /// <summary>
    /// Puts an event this node leased back, due at <paramref name="dueMs"/>, as it is; one settled meanwhile, or (on a
    /// cluster) reclaimed by another node, is left alone.
    /// </summary>
    public Task RequeueLeasedAsync(string id, long dueMs) => Run(connection =>
    {
        using var command = connection.CreateCommand();
        command.CommandText = IsShared
            ? "UPDATE events SET state = 0, due_ms = @due, leased_by = NULL WHERE id = @id AND state = 1 AND leased_by = @node;"
            : "UPDATE events SET state = 0, due_ms = @due WHERE id = @id AND state = 1;";
        command.Add("@id", id);
        command.Add("@due", dueMs);
        if (IsShared)
        {
            command.Add("@node", _nodeId);
        }
        command.ExecuteNonQuery();
        return true;
    });

    /// <summary>
    /// Finishes a leased event: removes it, or keeps it as failed (<paramref name="failure"/>), and in the same
    /// transaction enqueues what its destinations get (so a record is delivered exactly when the event is settled).
    /// </summary>
    public Task SettleAsync(string id, AsyncFailure? failure, IReadOnlyList<AsyncEvent> deliveries) => Run(connection =>
    {
        using (var command = connection.CreateCommand())
        {
            if (failure is { } f)
            {
                command.CommandText = """
                    UPDATE events SET state = 2, attempts = @attempts, condition = @condition, last_error = @error, failed_ms = @failed
                    WHERE id = @id;
                    """;
                command.Add("@attempts", f.Attempts);
                command.Add("@condition", f.Condition);
                command.Add("@error", (object?)f.LastError ?? DBNull.Value);
                command.Add("@failed", f.FailedMs);
            }
            else
            {
                command.CommandText = "DELETE FROM events WHERE id = @id;";
            }
            command.Add("@id", id);
            command.ExecuteNonQuery();
        }
        foreach (var delivery in deliveries)
        {
            Insert(connection, delivery);
        }
        return true;
    });

    /// <summary>Deletes every event of a deleted function, so a new function of the same name never receives them.</summary>
    public Task<int> DeleteFunctionAsync(string function) => Run(connection =>
    {
        using var command = connection.CreateCommand();
        command.CommandText = "DELETE FROM events WHERE state IN (0, 2) AND function_name = @function;"; // not running ones (1): they settle against a missing function
        command.Add("@function", function);
        return command.ExecuteNonQuery();
    });

    /// <summary>Removes an event that can no longer run (its function was deleted).</summary>
    public Task DropAsync(string id) => SettleAsync(id, null, []);

    /// <summary>Queued and failed events, for operators: optionally of one function and one state, oldest first.</summary>
    public Task<List<AsyncEvent>> ListAsync(string? function, AsyncEventState? state, int limit) => ReadAsync(connection =>
    {
        // Each selection through its index: a function's through events_function ("+ 0": not events_created's order, which
        // would walk every event in the state to find the function's), a state's through events_created, in its order.
        using var command = connection.CreateCommand();
        var where = (function, state) switch
        {
            (not null, not null) => "state = @state AND function_name = @function ORDER BY created_ms + 0, id",
            (not null, null) => "state IN (0, 1, 2) AND function_name = @function ORDER BY created_ms, id",
            (null, not null) => "state = @state ORDER BY created_ms, id",
            _ => "TRUE ORDER BY created_ms, id",
        };
        command.CommandText = $"SELECT {Columns} FROM events WHERE {where} LIMIT @limit;";
        if (function is not null)
        {
            command.Add("@function", function);
        }
        if (state is { } s)
        {
            command.Add("@state", (int)s);
        }
        command.Add("@limit", limit);
        using var reader = command.ExecuteReader();
        var events = new List<AsyncEvent>();
        while (reader.Read())
        {
            events.Add(Read(reader));
        }
        return events;
    });

    public Task<AsyncEvent?> GetAsync(string id) => Run(connection =>
    {
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {Columns} FROM events WHERE id = @id;";
        command.Add("@id", id);
        using var reader = command.ExecuteReader();
        return reader.Read() ? Read(reader) : null;
    });

    /// <summary>Queues failed events again (one, or all of a function, or all): attempts and age start afresh.</summary>
    public Task<int> RedriveAsync(string? id, string? function, long nowMs) => Run(connection =>
    {
        using var command = connection.CreateCommand();
        command.CommandText = """
            UPDATE events SET state = 0, attempts = 0, due_ms = @now, created_ms = @now, condition = NULL, failed_ms = NULL
            WHERE state = 2 AND (CAST(@id AS TEXT) IS NULL OR id = @id) AND (CAST(@function AS TEXT) IS NULL OR function_name = @function);
            """;
        command.Add("@id", (object?)id ?? DBNull.Value);
        command.Add("@function", (object?)function ?? DBNull.Value);
        command.Add("@now", nowMs);
        return command.ExecuteNonQuery();
    });

    /// <summary>Deletes failed events (one, or all of a function, or all).</summary>
    public Task<int> PurgeAsync(string? id, string? function) => Run(connection =>
    {
        using var command = connection.CreateCommand();
        command.CommandText = "DELETE FROM events WHERE state = 2 AND (CAST(@id AS TEXT) IS NULL OR id = @id) AND (CAST(@function AS TEXT) IS NULL OR function_name = @function);";
        command.Add("@id", (object?)id ?? DBNull.Value);
        command.Add("@function", (object?)function ?? DBNull.Value);
        return command.ExecuteNonQuery();
    });

    /// <summary>How many events (of <paramref name="function"/>, or all) are queued (waiting or leased) and failed.</summary>
    public Task<(long Queued, long Failed)> CountAsync(string? function = null) => ReadAsync(connection =>
    {
        // Index-only counts: a function's range of events_function, or the states' of events_created.
        using var command = connection.CreateCommand();
        var ofFunction = function is null ? "" : " AND function_name = @function";
        command.CommandText = $"SELECT (SELECT COUNT(*) FROM events WHERE state IN (0, 1){ofFunction}), (SELECT COUNT(*) FROM events WHERE state = 2{ofFunction});";
        if (function is not null)
        {
            command.Add("@function", function);
        }
        using var reader = command.ExecuteReader();
        reader.Read();
        return (reader.GetInt64(0), reader.GetInt64(1));
    });

    /// <summary>For metrics: how many events are queued or running, and when the oldest of them was accepted (Unix ms; null when none).</summary>
    public Task<(long Depth, long? OldestCreatedMs)> QueueStatsAsync() => ReadAsync(connection =>
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT (SELECT COUNT(*) FROM events WHERE state IN (0, 1)), (SELECT MIN(created_ms) FROM events WHERE state IN (0, 1));";
        using var reader = command.ExecuteReader();
        reader.Read();
        return (reader.GetInt64(0), reader.IsDBNull(1) ? (long?)null : reader.GetInt64(1));
    });

    /// <summary>
    /// A read for operators and metrics, on a connection of its own (SQLite's WAL, PostgreSQL's MVCC: a snapshot), not
    /// the writer's: a count reads an index entry per queued event (~35 ms with a million queued), which accepted
    /// events would otherwise wait for, and behind a drain's thousands of settles the read itself waited seconds.
    /// </summary>
    private async Task<T> ReadAsync<T>(Func<DbConnection, T> read)
    {
        if (_connection is null && _postgres is null)
        {
            throw new ObjectDisposedException(nameof(AsyncEventStore), "the async event store is not open");
        }
        await Hosting.IoThreads.LeaveIoThreadAsync(); // the read blocks: never on a socket's I/O thread
        await using var connection = _database is { } shared
            ? (DbConnection)await shared.Postgres!.OpenConnectionAsync()
            : new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = _path, Mode = SqliteOpenMode.ReadOnly, Pooling = false }.ToString());
        if (connection.State != System.Data.ConnectionState.Open)
        {
            await connection.OpenAsync();
        }
        return read(connection);
    }

    public async ValueTask DisposeAsync()
    {
        if (_writer is not null)
        {
            await _writer.CompleteAsync();
        }
        if (_postgres is not null)
        {
            await _postgres.CompleteAsync();
        }
        _connection?.Dispose();
    }

    private const string Columns = "id, function_name, qualifier, invoked_arn, payload, trace_id, created_ms, state, attempts, due_ms, condition, last_error, failed_ms";

    private static AsyncEvent Read(DbDataReader reader) => new()
    {
        Id = reader.GetString(0),
        FunctionName = reader.GetString(1),
        Qualifier = reader.IsDBNull(2) ? null : reader.GetString(2),
        InvokedArn = reader.GetString(3),
        Payload = (byte[])reader.GetValue(4),
        TraceId = reader.GetString(5),
        CreatedMs = reader.GetInt64(6),
        State = (AsyncEventState)reader.GetInt32(7),
        Attempts = reader.GetInt32(8),
        DueMs = reader.GetInt64(9),
        Condition = reader.IsDBNull(10) ? null : reader.GetString(10),
        LastError = reader.IsDBNull(11) ? null : reader.GetString(11),
        FailedMs = reader.IsDBNull(12) ? null : reader.GetInt64(12),
    };

    /// <summary>Inserts <paramref name="e"/>; with a <paramref name="notice"/>, announces it on the async channel in the same round trip.</summary>
    private static void Insert(DbConnection connection, AsyncEvent e, string? notice = null)
    {
        using var command = connection.CreateCommand();
        command.CommandText = """
            INSERT INTO events (id, function_name, qualifier, invoked_arn, payload, trace_id, created_ms, state, attempts, due_ms)
            VALUES (@id, @function, @qualifier, @arn, @payload, @trace, @created, 0, 0, @due)
            ON CONFLICT (id) DO NOTHING;
            """ + (notice is null ? "" : "SELECT pg_notify('" + ClusterNode.AsyncChannel + "', @notice);");
        if (notice is not null)
        {
            command.Add("@notice", notice);
        }
        command.Add("@id", e.Id);
        command.Add("@function", e.FunctionName);
        command.Add("@qualifier", (object?)e.Qualifier ?? DBNull.Value);
        command.Add("@arn", e.InvokedArn);
        command.Add("@payload", e.Payload);
        command.Add("@trace", e.TraceId);
        command.Add("@created", e.CreatedMs);
        command.Add("@due", e.DueMs);
        command.ExecuteNonQuery();
    }

    private static void Execute(DbConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    /// <summary>An operation, committed with whatever else waits (group commit); it completes once it is on disk.</summary>
    private Task<T> Run<T>(Func<DbConnection, T> work) =>
        _postgres?.WriteAsync(work)
        ?? _writer?.WriteAsync(scope => work(scope.Connection))
        ?? Task.FromException<T>(new ObjectDisposedException(nameof(AsyncEventStore), "the async event store is closed"));

    private static partial class Log
    {
        [LoggerMessage(EventId = Diagnostics.EventIds.AsyncStoreWriteFailed, Level = LogLevel.Error, Message = "The async event store could not commit a batch of operations (their callers were told): {Reason}")]
        public static partial void WriteFailed(ILogger logger, string reason);
    }
}

/// <summary>The state of a stored event.</summary>
internal enum AsyncEventState
{
    Queued = 0,
    Leased = 1,
    Failed = 2,
}

/// <summary>One asynchronous invocation as stored.</summary>
internal sealed class AsyncEvent
{
    public required string Id { get; init; }
    public required string FunctionName { get; init; }
    public string? Qualifier { get; init; }
    public required string InvokedArn { get; init; }
    public required byte[] Payload { get; init; }
    public required string TraceId { get; init; }
    public required long CreatedMs { get; init; }
    public AsyncEventState State { get; init; }
    public int Attempts { get; init; }
    public required long DueMs { get; init; }
    public string? Condition { get; init; }
    public string? LastError { get; init; }
    public long? FailedMs { get; init; }

    public string Describe() => string.Create(CultureInfo.InvariantCulture, $"{Id} ({FunctionName}{(Qualifier is null ? "" : ":" + Qualifier)})");
}

/// <summary>Why an event failed for good, kept with it.</summary>
internal readonly record struct AsyncFailure(string Condition, int Attempts, string? LastError, long FailedMs);
