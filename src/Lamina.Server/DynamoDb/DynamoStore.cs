using System.Collections.Concurrent;
using System.Data;
using System.Data.Common;
using Lamina.Server.Hosting;
using Lamina.Server.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;
using Npgsql;
using Item = System.Collections.Generic.Dictionary<string, Lamina.Server.DynamoDb.AttributeValue>;

namespace Lamina.Server.DynamoDb;

/// <summary>
/// Lamina's DynamoDB-compatible tables (issue #21): <c>&lt;data&gt;/dynamodb.db</c>, a SQLite file of its own (WAL,
/// <c>synchronous=FULL</c>). Every write goes through one writer loop that takes whatever is waiting (up to
/// <see cref="MaxBatch"/> operations), runs each in a savepoint of one transaction and commits once: a write is
/// acknowledged only after its commit (group commit: one fsync for many writers, which is what lets 16 connections
/// scale). A transaction's items, its index entries and its stream records are one savepoint, so they commit or vanish
/// together, and stream records are numbered in commit order. Reads use their own pooled connections (WAL readers
/// never wait for the writer).
/// </summary>
/// <remarks>
/// A cluster node (<c>--database postgresql://…</c>, issue #25) keeps the same tables on the cluster's PostgreSQL and
/// runs the same statements there, each write in a transaction of its own. What SQLite's single writer gave for free
/// is then a transaction-scoped advisory lock per DynamoDB table (<see cref="TableLockClass"/>, the table's id), taken
/// in ascending id order before the write reads anything: conditions see the latest committed item, and a table's
/// stream records commit in <c>seq</c> order (a reader reading <c>seq &gt; checkpoint</c> never misses a lower one
/// committing late). Under that lock the write rereads the table's definition, so a write never misses a GSI another
/// node just added. Definition changes announce themselves on <see cref="ClusterNode.DynamoDbChannel"/>; every node
/// then reloads its cached tables and streams. The TTL and retention sweep runs on the holder of the
/// <c>dynamodb-sweep</c> lease.
/// </remarks>
internal sealed partial class DynamoStore : IHostedService, IDisposable
{
    private const int MaxBatch = 256;

    /// <summary>The first key of a table's advisory lock (the second is the table's id): "lmdd" in ASCII.</summary>
    private const int TableLockClass = 0x6c6d6464;

    private const string SweepLease = "dynamodb-sweep";

    /// <summary>
    /// The tables, in SQLite's words. On a cluster, step 5 of Database's PostgreSQL history creates them from this
    /// text (<see cref="PostgresSchema"/>): a change here is a new step there.
    /// </summary>
    private const string Schema = """
        CREATE TABLE IF NOT EXISTS tables (
            id       INTEGER PRIMARY KEY,
            account  TEXT NOT NULL,
            name     TEXT NOT NULL,
            info     BLOB NOT NULL,            -- TableInfo JSON
            UNIQUE (account, name)
        );
        CREATE TABLE IF NOT EXISTS items (
            table_id INTEGER NOT NULL,
            seg      INTEGER NOT NULL,         -- 16-bit hash of pk: Scan order and segments
            pk       BLOB    NOT NULL,         -- order-preserving key encodings (ItemKey)
            sk       BLOB    NOT NULL,         -- empty for tables without a sort key
            item     BLOB    NOT NULL,         -- the item as wire JSON
            size     INTEGER NOT NULL,
            expires  INTEGER,                  -- TTL epoch seconds, when the table has TTL on and the item the attribute
            PRIMARY KEY (table_id, seg, pk, sk)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS items_expiry ON items (expires) WHERE expires IS NOT NULL;
        CREATE TABLE IF NOT EXISTS index_entries (
            table_id INTEGER NOT NULL,
            idx      TEXT    NOT NULL,
            ipk      BLOB    NOT NULL,
            isk      BLOB    NOT NULL,
            seg      INTEGER NOT NULL,
            pk       BLOB    NOT NULL,
            sk       BLOB    NOT NULL,
            PRIMARY KEY (table_id, idx, ipk, isk, seg, pk, sk)
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS streams (
            id           INTEGER PRIMARY KEY,
            account      TEXT    NOT NULL,
            table_name   TEXT    NOT NULL,
            table_id     INTEGER NOT NULL,
            label        TEXT    NOT NULL,
            view_type    TEXT    NOT NULL,
            key_schema   TEXT    NOT NULL,     -- JSON KeySchema, for DescribeStream after the table is gone
            created_ms   INTEGER NOT NULL,
            disabled_ms  INTEGER
        );
        CREATE TABLE IF NOT EXISTS stream_records (
            seq         INTEGER PRIMARY KEY AUTOINCREMENT,  -- commit order: the SequenceNumber
            stream_id   INTEGER NOT NULL,
            created_ms  INTEGER NOT NULL,
            event_name  TEXT    NOT NULL,                   -- INSERT, MODIFY, REMOVE
            service     INTEGER NOT NULL,                   -- 1: a TTL deletion (userIdentity dynamodb.amazonaws.com)
            body        BLOB    NOT NULL                    -- the record's "dynamodb" member, without SequenceNumber
        );
        CREATE INDEX IF NOT EXISTS stream_records_by_stream ON stream_records (stream_id, seq);
        CREATE TABLE IF NOT EXISTS transaction_tokens (
            account      TEXT    NOT NULL,
            token        TEXT    NOT NULL,   -- TransactWriteItems' / ExecuteTransaction's ClientRequestToken
            fingerprint  TEXT    NOT NULL,   -- SHA-256 of the request's items: a retry must repeat them exactly
            at_ms        INTEGER NOT NULL,   -- when the transaction committed; kept 10 minutes
            PRIMARY KEY (account, token)
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS stream_checkpoints (
            mapping  TEXT    NOT NULL,   -- event source mapping UUID
            lane     INTEGER NOT NULL,   -- ParallelizationFactor lane
            seq      INTEGER NOT NULL,   -- last record done
            PRIMARY KEY (mapping, lane)
        );
        """;

    /// <summary>
    /// <see cref="Schema"/> for PostgreSQL: the rowid keys (<c>id INTEGER PRIMARY KEY</c>, numbered by SQLite) become
    /// identity columns, and <c>WITHOUT ROWID</c> goes (every PostgreSQL table is one). Keys stay byte strings: bytea
    /// compares bytewise, like SQLite's BLOB, so ItemKey's order holds.
    /// </summary>
    internal static string PostgresSchema => Sql.ForPostgres(Schema
        .Replace("INTEGER PRIMARY KEY,", "INTEGER PRIMARY KEY AUTOINCREMENT,", StringComparison.Ordinal)
        .Replace(" WITHOUT ROWID", "", StringComparison.Ordinal));

    private readonly string _path;
    private readonly LaminaOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<DynamoStore> _logger;
    // A cluster node: the cluster's PostgreSQL, a pooled connection per operation; null on a single machine.
    private readonly NpgsqlDataSource? _postgres;
    private readonly ClusterNode? _cluster;
    // Serializes changes of the cached tables and streams with a reload from PostgreSQL (cluster only).
    private readonly Lock _cacheLock = new();
    private readonly ConcurrentDictionary<(string Account, string Name), TableInfo> _tables = new();
    private readonly ConcurrentDictionary<long, StreamRow> _streams = new();
    private readonly Dictionary<string, SqliteCommand> _writerCommands = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();
    private SqliteConnection? _writer;
    private string _readConnectionString = "";
    private GroupCommitWriter? _writes;
    private bool _streamWrittenInBatch;
    private Task _sweeper = Task.CompletedTask;
    private volatile bool _closed;
    private TaskCompletionSource _streamWritten = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public DynamoStore(IOptions<LaminaOptions> options, TimeProvider time, ILogger<DynamoStore> logger, Database? database = null, ClusterNode? cluster = null)
    {
        _options = options.Value;
        _path = Path.Combine(_options.DataDirectory, "dynamodb.db");
        _time = time;
        _logger = logger;
        if (database?.Postgres is { } postgres)
        {
            _postgres = postgres;
            _cluster = cluster;
        }
    }

    /// <summary>Whether the tables are the cluster's (PostgreSQL) rather than this node's file.</summary>
    public bool IsPostgres => _postgres is not null;

    public LaminaOptions Options => _options;

    public long NowMs => _time.GetUtcNow().ToUnixTimeMilliseconds();

    public void Open()
    {
        if (_postgres is { } postgres)
        {
            Reload();
            if (_cluster is { } cluster)
            {
                cluster.Follow(ClusterNode.DynamoDbChannel, _ => ReloadQuietly(), only: "t");
                cluster.RequestLease(SweepLease);
            }
            return;
        }
        Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
        _writer = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = _path, Pooling = false, DefaultTimeout = 30 }.ToString());
        _writer.Open();
        Execute(_writer, """
            PRAGMA journal_mode=WAL;
            PRAGMA synchronous=FULL;
            -- The writer never checkpoints on commit (a commit that checkpoints waits for the database file's fsync);
            -- the sweep loop checkpoints from its own connection every second instead (DynamoStore.Streams.cs).
            PRAGMA wal_autocheckpoint=0;
            """ + Schema);
        _readConnectionString = new SqliteConnectionStringBuilder { DataSource = _path, Pooling = true, DefaultTimeout = 30 }.ToString();
        Load(_writer);
    }

    /// <summary>Reads every table's definition and every stream into memory; what is no longer there is forgotten.</summary>
    private void Load(DbConnection connection)
    {
        var tables = new Dictionary<(string, string), TableInfo>();
        using (var select = Sql.Positional(connection, "SELECT info FROM tables;"))
        using (var reader = select.ExecuteReader())
        {
            while (reader.Read())
            {
                var table = TableInfo.Deserialize((byte[])reader[0]);
                tables[(table.Account, table.Name)] = IsPostgres ? Active(table) : table;
            }
        }
        var streams = new Dictionary<long, StreamRow>();
        using (var select = Sql.Positional(connection, "SELECT id, account, table_name, table_id, label, view_type, key_schema, created_ms, disabled_ms FROM streams;"))
        using (var reader = select.ExecuteReader())
        {
            while (reader.Read())
            {
                var row = new StreamRow(reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetInt64(3), reader.GetString(4), reader.GetString(5),
                    reader.GetString(6), reader.GetInt64(7), reader.IsDBNull(8) ? null : reader.GetInt64(8));
                streams[row.Id] = row;
            }
        }
        // Set, then drop what is gone: a lookup never finds the cache empty halfway through.
        foreach (var (key, table) in tables)
        {
            _tables[key] = table;
        }
        foreach (var key in _tables.Keys.Where(k => !tables.ContainsKey(k)).ToList())
        {
            _tables.TryRemove(key, out _);
        }
        foreach (var (id, row) in streams)
        {
            _streams[id] = row;
        }
        foreach (var id in _streams.Keys.Where(k => !streams.ContainsKey(k)).ToList())
        {
            _streams.TryRemove(id, out _);
        }
    }

    /// <summary>
    /// Another node changed a table (or it may have): the cache again from PostgreSQL. Under the cache lock, so that a
    /// reload that read before one of this node's commits cannot apply its older state after that commit's own change.
    /// </summary>
    private void Reload()
    {
        lock (_cacheLock)
        {
            using var connection = _postgres!.OpenConnection();
            Load(connection);
        }
    }

    private void ReloadQuietly()
    {
        try
        {
            Reload();
        }
        catch (Exception e) when (Sql.IsPostgresFailure(e))
        {
            // Reloaded again when the listener reconnects.
        }
    }

    /// <summary>A definition as the cache keeps it once committed: the table and its indexes ACTIVE.</summary>
    private static TableInfo Active(TableInfo table) =>
        table with { Status = "ACTIVE", Indexes = [.. table.Indexes.Select(static i => i with { Status = "ACTIVE" })] };

    public Task StartAsync(CancellationToken cancellationToken)
    {
        Open();
        if (_writer is not null)
        {
            _writes = new GroupCommitWriter(_writer, MaxBatch, AfterBatch);
        }
        _sweeper = Task.Run(SweepLoopAsync, CancellationToken.None);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _closed = true;
        var writes = _writes?.CompleteAsync() ?? Task.CompletedTask;
        await _stopping.CancelAsync();
        await Task.WhenAll(writes, _sweeper).WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    public void Dispose()
    {
        foreach (var command in _writerCommands.Values)
        {
            command.Dispose();
        }
        _writer?.Dispose();
        _stopping.Dispose();
    }

    // ---- tables ----

    public TableInfo? Find(string account, string name) => _tables.TryGetValue((account, name), out var table) ? table : null;

    public TableInfo Require(string account, string name) =>
        Find(account, name) ?? throw DynamoException.NotFound($"Requested resource not found: Table: {name} not found");

    public IEnumerable<TableInfo> Tables(string account) => _tables.Values.Where(t => t.Account == account);

    /// <summary>
    /// The current definition of <paramref name="table"/> (inside the writer: every committed change applied), or
    /// ResourceNotFound when it was deleted (or deleted and created anew) since the request looked it up.
    /// </summary>
    public TableInfo Current(TableInfo table) =>
        _tables.TryGetValue((table.Account, table.Name), out var current) && current.Id == table.Id ? current : throw DynamoException.NotFound();

    public Task<TableInfo> CreateTableAsync(TableInfo draft) => WriteAsync(barrier: true, context =>
    {
        // On a cluster the name's uniqueness is the database's (another node may have just created it).
        if (!IsPostgres && Find(draft.Account, draft.Name) is not null)
        {
            throw DynamoException.InUse($"Table already exists: {draft.Name}");
        }
        long id;
        try
        {
            id = (long)context.Scalar("INSERT INTO tables (account, name, info) VALUES ($1, $2, $3) RETURNING id;", draft.Account, draft.Name, "{}"u8.ToArray())!;
        }
        catch (Exception e) when (IsPostgres && Sql.IsUniqueViolation(e))
        {
            throw DynamoException.InUse($"Table already exists: {draft.Name}");
        }
        context.Announce = true;
        var table = draft with { Id = id };
        if (table.Stream is not null)
        {
            table = table with { Stream = AddStream(context, table, table.Stream.ViewType) };
        }
        SaveInfo(context, table);
        context.AfterCommit(() => _tables[(table.Account, table.Name)] = table with { Status = "ACTIVE" });
        return table;
    });

    public Task DeleteTableAsync(TableInfo table) => WriteAsync(barrier: true, context =>
    {
        var current = context.Current(Find(table.Account, table.Name) ?? throw DynamoException.NotFound($"Requested resource not found: Table: {table.Name} not found"));
        context.Announce = true;
        Run(context, "DELETE FROM items WHERE table_id = $1;", current.Id);
        Run(context, "DELETE FROM index_entries WHERE table_id = $1;", current.Id);
        Run(context, "DELETE FROM tables WHERE id = $1;", current.Id);
        if (current.Stream is { } stream)
        {
            DisableStream(context, stream.Id);
        }
        context.AfterCommit(() => _tables.TryRemove((current.Account, current.Name), out _));
        return 0;
    });

    /// <summary>
    /// Replaces a table's definition (UpdateTable, TTL, tags): new GSIs are filled from the items, dropped ones
    /// emptied, a stream is started or ended, TTL expiries recomputed — in one transaction with the new definition.
    /// </summary>
    public Task<TableInfo> ReplaceTableAsync(TableInfo table, Func<TableInfo, TableInfo> change) => WriteAsync(barrier: true, context =>
    {
        var current = context.Current(table);
        context.Announce = true;
        var next = change(current);
        foreach (var dropped in current.Indexes.Where(i => next.Index(i.Name) is null))
        {
            Run(context, "DELETE FROM index_entries WHERE table_id = $1 AND idx = $2;", current.Id, dropped.Name);
        }
        var added = next.Indexes.Where(i => current.Index(i.Name) is null).ToList();
        var ttlChanged = current.TtlAttribute != next.TtlAttribute;
        if (added.Count > 0 || ttlChanged)
        {
            foreach (var (key, item) in AllItems(context, current.Id))
            {
                foreach (var index in added)
                {
                    InsertIndexEntry(context, next, index, key, item);
                }
                if (ttlChanged)
                {
                    Run(context, "UPDATE items SET expires = $5 WHERE table_id = $1 AND seg = $2 AND pk = $3 AND sk = $4;",
                        current.Id, key.Segment, key.Pk, key.Sk, ExpiryOf(next, item));
                }
            }
        }
        if (current.Stream is { } oldStream && (next.Stream is null || next.Stream.Id == 0))
        {
            DisableStream(context, oldStream.Id);
        }
        if (next.Stream is { Id: 0 } newStream)
        {
            next = next with { Stream = AddStream(context, next, newStream.ViewType) };
        }
        SaveInfo(context, next);
        context.AfterCommit(() => _tables[(next.Account, next.Name)] = Active(next));
        return next;
    });

    private static void SaveInfo(WriteContext context, TableInfo table) => Run(context, "UPDATE tables SET info = $2 WHERE id = $1;", table.Id, table.Serialize());

    private static List<(ItemKey Key, Item Item)> AllItems(WriteContext context, long tableId)
    {
        var all = new List<(ItemKey, Item)>();
        using var reader = context.Read("SELECT seg, pk, sk, item FROM items WHERE table_id = $1;", tableId);
        while (reader.Read())
        {
            all.Add((new ItemKey((int)reader.GetInt64(0), (byte[])reader[1], (byte[])reader[2]), AttributeValue.Deserialize((byte[])reader[3])));
        }
        return all;
    }

    // DescribeTable's figures. DynamoDB refreshes them about every six hours; here they are counted afresh for each call
    // unless the table is large, where counting reads every item (141 ms at 600,000): then at most once a minute.
    // Tools that poll DescribeTable (waiters, deploy tools, libraries that describe a table at each cold start) no
    // longer read a large table each time.
    internal const long LargeTableItems = 10_000;
    private const long FiguresLifetimeMs = 60_000;
    private const int MaxFigures = 10_000;
    private readonly ConcurrentDictionary<(long Table, string? Index), (long Count, long Bytes, long AtMs)> _figures = new();

    private bool TryRecentFigures(long table, string? index, out (long Count, long Bytes) figures)
    {
        if (_figures.TryGetValue((table, index), out var known) && known.Count >= LargeTableItems && NowMs - known.AtMs < FiguresLifetimeMs)
        {
            figures = (known.Count, known.Bytes);
            return true;
        }
        figures = default;
        return false;
    }

    private void RememberFigures(long table, string? index, long count, long bytes)
    {
        if (_figures.Count >= MaxFigures)
        {
            _figures.Clear(); // tables come and go; the ones in use are counted again once
        }
        _figures[(table, index)] = (count, bytes, NowMs);
    }

    /// <summary>Item count and bytes of a table (DescribeTable; not on any hot path): exact, or up to a minute old for a large table.</summary>
    public (long Count, long Bytes) Stats(TableInfo table)
    {
        if (TryRecentFigures(table.Id, null, out var recent))
        {
            return recent;
        }
        var figures = CountItems(table);
        RememberFigures(table.Id, null, figures.Count, figures.Bytes);
        return figures;
    }

    private (long Count, long Bytes) CountItems(TableInfo table)
    {
        using var connection = OpenRead();
        // The sum casts: PostgreSQL's sum of bigints is a numeric.
        using var command = Sql.Positional(connection, "SELECT count(*), CAST(coalesce(sum(size), 0) AS BIGINT) FROM items WHERE table_id = $1;", table.Id);
        using var reader = command.ExecuteReader();
        reader.Read();
        return (reader.GetInt64(0), reader.GetInt64(1));
    }

    /// <summary>How many items an index of the table holds (DescribeTable), from its keys alone; for a large index up to a minute old.</summary>
    public long IndexCount(TableInfo table, string index)
    {
        if (TryRecentFigures(table.Id, index, out var recent))
        {
            return recent.Count;
        }
        using var connection = OpenRead();
        using var command = Sql.Positional(connection, "SELECT count(*) FROM index_entries WHERE table_id = $1 AND idx = $2;", table.Id, index);
        var count = Convert.ToInt64(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
        RememberFigures(table.Id, index, count, 0);
        return count;
    }

    // ---- TransactWriteItems' ClientRequestToken: in the transaction it answers for, so a retry through any node (or
    // after a restart) within 10 minutes finds it; the tables' locks the transaction holds order two retries at once.

    public static readonly TimeSpan TokenLifetime = TimeSpan.FromMinutes(10);

    /// <summary>The fingerprint of the transaction committed with this token in the last 10 minutes, if any.</summary>
    public static string? CompletedTransaction(WriteContext context, string account, string token, long nowMs) =>
        context.Scalar("SELECT fingerprint FROM transaction_tokens WHERE account = $1 AND token = $2 AND at_ms > $3;",
            account, token, nowMs - (long)TokenLifetime.TotalMilliseconds) as string;

    /// <summary>Records the token with the transaction's writes (same transaction: both commit, or neither).</summary>
    public static void RememberTransaction(WriteContext context, string account, string token, string fingerprint, long nowMs) =>
        context.Run("""
            INSERT INTO transaction_tokens (account, token, fingerprint, at_ms) VALUES ($1, $2, $3, $4)
            ON CONFLICT (account, token) DO UPDATE SET fingerprint = excluded.fingerprint, at_ms = excluded.at_ms;
            """, account, token, fingerprint, nowMs);

    // ---- the writer ----

    /// <summary>
    /// Runs <paramref name="work"/> in the writer's next transaction (in a savepoint of its own) and completes once
    /// that transaction has committed. A <see cref="DynamoException"/> thrown by the work rolls back its savepoint only.
    /// <paramref name="tables"/>: the tables the work writes, locked up front on a cluster (in id order, so that two
    /// nodes' multi-table writes never wait for each other in a circle); a table the work reaches otherwise is locked
    /// when it first reaches it.
    /// </summary>
    public Task<T> WriteAsync<T>(Func<WriteContext, T> work, params IEnumerable<TableInfo> tables) => WriteAsync(barrier: false, work, tables);

    /// <summary>
    /// <paramref name="barrier"/>: a change of a table's definition, committed in a transaction of its own, so that the
    /// writes after it in the queue run against the new definition (the in-memory tables change only after commit).
    /// </summary>
    private async Task<T> WriteAsync<T>(bool barrier, Func<WriteContext, T> work, IEnumerable<TableInfo>? tables = null)
    {
        if (_postgres is { } postgres)
        {
            return await WritePostgresAsync(postgres, work, tables);
        }
        var writes = _writes ?? throw new DynamoException("InternalServerError", "The server is shutting down.", 500);
        try
        {
            return await writes.WriteAsync(scope =>
            {
                try
                {
                    return work(new WriteContext(this, scope, NowMs));
                }
                catch (Exception e) when (e is not DynamoException and not SqliteException { SqliteErrorCode: 10 or 13 })
                {
                    throw Unexpected(e);
                }
            }, alone: barrier);
        }
        catch (SqliteException)
        {
            // The batch could not be committed (logged once in AfterBatch): nothing of this write is kept.
            throw new DynamoException("InternalServerError", "The write could not be committed; the server log has the details.", 500);
        }
        catch (ObjectDisposedException)
        {
            throw new DynamoException("InternalServerError", "The server is shutting down.", 500);
        }
    }

    /// <summary>
    /// A write on the cluster's PostgreSQL: a transaction of its own holding the advisory locks of the tables it
    /// writes (taken asynchronously, so that waiting for another node's write holds no thread), then the work, the
    /// announcement of a definition change and the commit (or rollback) in one <see cref="Task.Run(Action)"/>: they
    /// block, and the lock's completion may run on a socket's I/O thread (Hosting/IoThreads.cs), where a blocking call
    /// would stall every socket of the process; whatever follows the write runs on the pool too. A deadlock (two writes
    /// that reached their tables in opposite orders; PostgreSQL cancels one) runs the cancelled one again.
    /// </summary>
    private async Task<T> WritePostgresAsync<T>(NpgsqlDataSource postgres, Func<WriteContext, T> work, IEnumerable<TableInfo>? tables)
    {
        if (_closed)
        {
            throw new DynamoException("InternalServerError", "The server is shutting down.", 500);
        }
        var ids = tables?.Select(static t => t.Id).Distinct().Order().ToList() ?? [];
        for (var attempt = 1; ; attempt++)
        {
            NpgsqlConnection? connection = null;
            NpgsqlTransaction? transaction = null;
            Exception? failure = null;
            try
            {
                connection = await postgres.OpenConnectionAsync(CancellationToken.None).ConfigureAwait(false);
                transaction = await connection.BeginTransactionAsync(CancellationToken.None).ConfigureAwait(false);
                foreach (var id in ids)
                {
                    using var lockTable = new NpgsqlCommand("SELECT pg_advisory_xact_lock($1, $2);", connection);
                    lockTable.Parameters.Add(new NpgsqlParameter { Value = TableLockClass });
                    lockTable.Parameters.Add(new NpgsqlParameter { Value = checked((int)id) });
                    await lockTable.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
                }
            }
            catch (NpgsqlException e)
            {
                failure = e;
            }
            var held = connection;
            try
            {
                return await Task.Run(() =>
                {
                    // Disposed uncommitted (the work or a statement failed), the transaction rolls back.
                    using var owned = held;
                    using var begun = transaction;
                    if (failure is not null)
                    {
                        throw failure;
                    }
                    var context = new WriteContext(this, held!, NowMs, ids);
                    T result;
                    try
                    {
                        result = work(context);
                    }
                    catch (Exception e) when (e is not DynamoException and not NpgsqlException)
                    {
                        throw Unexpected(e);
                    }
                    if (context.Announce)
                    {
                        Sql.RunPositional(held!, "SELECT pg_notify($1, $2);", ClusterNode.DynamoDbChannel, _cluster?.Payload("t") ?? "|t");
                    }
                    begun!.Commit();
                    if (context.TakeAfterCommit() is { } afterCommit)
                    {
                        lock (_cacheLock)
                        {
                            afterCommit();
                        }
                    }
                    if (context.WroteStream)
                    {
                        Interlocked.Exchange(ref _streamWritten, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
                    }
                    return result;
                }, CancellationToken.None).ConfigureAwait(false);
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.DeadlockDetected && attempt < 3)
            {
            }
            catch (NpgsqlException e) when (Sql.IsUnavailable(e))
            {
                // Down, unreachable or too slow: AWS's common answer for a service that cannot take the request now (SDKs retry it).
                Log.CommitFailed(_logger, e);
                throw new DynamoException("ServiceUnavailable", $"The server's database is unavailable ({e.Message}); retry the request", 503, e);
            }
            catch (NpgsqlException e)
            {
                Log.CommitFailed(_logger, e);
                throw new DynamoException("InternalServerError", "The write could not be committed; the server log has the details.", 500);
            }
        }
    }

    /// <summary>After each batch: a commit that wrote stream records wakes the mappings' lanes; a failed one is logged.</summary>
    private void AfterBatch(Exception? failure)
    {
        if (failure is not null)
        {
            Log.CommitFailed(_logger, failure);
        }
        if (_streamWrittenInBatch)
        {
            _streamWrittenInBatch = false;
            if (failure is null)
            {
                Interlocked.Exchange(ref _streamWritten, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
            }
        }
    }

    private DynamoException Unexpected(Exception e)
    {
        Log.WriteFailed(_logger, e);
        return new DynamoException("InternalServerError", "Internal server error; the server log has the details.", 500);
    }

    /// <summary>
    /// What a write operation works with: on a single machine the writer's connection (inside the batch's
    /// transaction, statements prepared once); on a cluster node its own transaction on PostgreSQL. Statements take
    /// <c>$1</c>…<c>$n</c>, the same text on both.
    /// </summary>
    internal sealed class WriteContext
    {
        private readonly WriteScope? _scope;
        private readonly NpgsqlConnection? _postgres;
        private readonly HashSet<long>? _locked;
        private List<Action>? _afterCommit;

        public WriteContext(DynamoStore store, WriteScope scope, long nowMs) => (Store, _scope, NowMs) = (store, scope, nowMs);

        public WriteContext(DynamoStore store, NpgsqlConnection postgres, long nowMs, IEnumerable<long> locked) =>
            (Store, _postgres, NowMs, _locked) = (store, postgres, nowMs, [.. locked]);

        public DynamoStore Store { get; }

        public long NowMs { get; }

        /// <summary>A table's definition changed: the commit tells the other nodes (cluster only).</summary>
        public bool Announce { get; set; }

        public bool WroteStream { get; private set; }

        /// <summary>Set when the write added stream records: the lanes are woken once the batch is on disk.</summary>
        public bool StreamWritten
        {
            set
            {
                if (_scope is null)
                {
                    WroteStream |= value;
                    return;
                }
                Store._streamWrittenInBatch |= value;
            }
        }

        /// <summary>In-memory changes that must happen only if the transaction commits.</summary>
        public void AfterCommit(Action action)
        {
            if (_scope is { } scope)
            {
                scope.AfterCommit(action);
                return;
            }
            (_afterCommit ??= []).Add(action);
        }

        internal Action? TakeAfterCommit() => _afterCommit is { } actions ? () => actions.ForEach(static a => a()) : null;

        /// <summary>
        /// The current definition of <paramref name="table"/>, or ResourceNotFound when it was deleted (or deleted and
        /// created anew) since the request looked it up. On a cluster it takes the table's lock (if this write does
        /// not hold it yet) and reads the definition under it: what another node changed last is what this write sees.
        /// </summary>
        public TableInfo Current(TableInfo table)
        {
            if (_postgres is null)
            {
                return Store.Current(table);
            }
            Lock(table.Id);
            using var reader = Read("SELECT info FROM tables WHERE id = $1;", table.Id);
            return reader.Read() ? Active(TableInfo.Deserialize((byte[])reader[0])) : throw DynamoException.NotFound();
        }

        /// <summary>Takes the tables' locks (cluster only) in id order; those held already are skipped.</summary>
        public void Lock(IEnumerable<TableInfo> tables)
        {
            foreach (var id in tables.Select(static t => t.Id).Distinct().Order())
            {
                Lock(id);
            }
        }

        /// <summary>The table's advisory lock, held until this write commits (cluster only; SQLite's writer is alone).</summary>
        public void Lock(long tableId)
        {
            if (_postgres is not null && _locked!.Add(tableId))
            {
                Run("SELECT pg_advisory_xact_lock($1, $2);", TableLockClass, checked((int)tableId));
            }
        }

        public int Run(string sql, params object?[] values)
        {
            if (_postgres is { } postgres)
            {
                return Sql.RunPositional(postgres, sql, values);
            }
            var command = Store.WriterCommand(sql);
            Bind(command, values);
            return command.ExecuteNonQuery();
        }

        public object? Scalar(string sql, params object?[] values)
        {
            if (_postgres is { } postgres)
            {
                using var command = Sql.Positional(postgres, sql, values);
                return command.ExecuteScalar();
            }
            var prepared = Store.WriterCommand(sql);
            Bind(prepared, values);
            return prepared.ExecuteScalar();
        }

        /// <summary>A query's rows; the caller disposes the reader before the next statement.</summary>
        public DbDataReader Read(string sql, params object?[] values)
        {
            if (_postgres is { } postgres)
            {
                // Disposing the command is not needed for the reader to work; the reader closes with its disposal.
                return Sql.Positional(postgres, sql, values).ExecuteReader();
            }
            var command = Store.WriterCommand(sql);
            Bind(command, values);
            return command.ExecuteReader();
        }
    }

    /// <summary>The writer's statements, prepared once and reused (parameters $1…$n).</summary>
    private SqliteCommand WriterCommand(string sql)
    {
        if (!_writerCommands.TryGetValue(sql, out var command))
        {
            command = _writer!.CreateCommand();
            command.CommandText = sql;
            for (var i = 1; i <= 9 && sql.Contains("$" + i, StringComparison.Ordinal); i++)
            {
                command.Parameters.Add(new SqliteParameter("$" + i, null));
            }
            _writerCommands[sql] = command;
        }
        return command;
    }

    private static void Bind(SqliteCommand command, params object?[] values)
    {
        for (var i = 0; i < values.Length; i++)
        {
            command.Parameters[i].Value = values[i] ?? DBNull.Value;
        }
    }

    private static int Run(WriteContext context, string sql, params object?[] values) => context.Run(sql, values);

    private static void Execute(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    /// <summary>A connection for reads: one of the file's pooled readers, or a pooled one to the cluster's PostgreSQL.</summary>
    public DbConnection OpenRead()
    {
        if (_postgres is { } postgres)
        {
            return postgres.OpenConnection();
        }
        var connection = new SqliteConnection(_readConnectionString);
        connection.Open();
        return connection;
    }

    /// <summary>
    /// A read transaction whose statements all see one state: SQLite's deferred transaction (a WAL snapshot from its
    /// first read), PostgreSQL's REPEATABLE READ.
    /// </summary>
    public static DbTransaction Snapshot(DbConnection connection) =>
        connection is SqliteConnection sqlite ? sqlite.BeginTransaction(deferred: true) : connection.BeginTransaction(IsolationLevel.RepeatableRead);

    private static partial class Log
    {
        [LoggerMessage(EventId = Diagnostics.EventIds.DynamoCommitFailed, Level = LogLevel.Error, Message = "A DynamoDB write batch could not be committed; its writes were refused")]
        public static partial void CommitFailed(ILogger logger, Exception error);

        [LoggerMessage(EventId = Diagnostics.EventIds.DynamoWriteFailed, Level = LogLevel.Error, Message = "A DynamoDB write failed unexpectedly")]
        public static partial void WriteFailed(ILogger logger, Exception error);

        [LoggerMessage(EventId = Diagnostics.EventIds.DynamoSweepFailed, Level = LogLevel.Error, Message = "The DynamoDB TTL and stream retention sweep failed")]
        public static partial void SweepFailed(ILogger logger, Exception error);

        [LoggerMessage(EventId = Diagnostics.EventIds.DynamoTtlDeleted, Level = LogLevel.Debug, Message = "TTL removed {Count} expired items")]
        public static partial void TtlDeleted(ILogger logger, int count);
    }
}
