using System.Collections.Concurrent;
using System.Threading.Channels;
using Lamina.Server.Hosting;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;
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
internal sealed partial class DynamoStore : IHostedService, IDisposable
{
    private const int MaxBatch = 256;

    private readonly string _path;
    private readonly LaminaOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<DynamoStore> _logger;
    private readonly Channel<WriteOperation> _writes = Channel.CreateUnbounded<WriteOperation>(new UnboundedChannelOptions { SingleReader = true });
    private readonly ConcurrentDictionary<(string Account, string Name), TableInfo> _tables = new();
    private readonly ConcurrentDictionary<long, StreamRow> _streams = new();
    private readonly Dictionary<string, SqliteCommand> _writerCommands = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();
    private SqliteConnection? _writer;
    private string _readConnectionString = "";
    private Task _writerLoop = Task.CompletedTask;
    private Task _sweeper = Task.CompletedTask;
    private TaskCompletionSource _streamWritten = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public DynamoStore(IOptions<LaminaOptions> options, TimeProvider time, ILogger<DynamoStore> logger)
    {
        _options = options.Value;
        _path = Path.Combine(_options.DataDirectory, "dynamodb.db");
        _time = time;
        _logger = logger;
    }

    public LaminaOptions Options => _options;

    public long NowMs => _time.GetUtcNow().ToUnixTimeMilliseconds();

    public void Open()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
        _writer = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = _path, Pooling = false, DefaultTimeout = 30 }.ToString());
        _writer.Open();
        Execute(_writer, """
            PRAGMA journal_mode=WAL;
            PRAGMA synchronous=FULL;
            -- The writer never checkpoints on commit (a commit that checkpoints waits for the database file's fsync);
            -- the sweep loop checkpoints from its own connection every second instead (DynamoStore.Streams.cs).
            PRAGMA wal_autocheckpoint=0;
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
            CREATE TABLE IF NOT EXISTS stream_checkpoints (
                mapping  TEXT    NOT NULL,   -- event source mapping UUID
                lane     INTEGER NOT NULL,   -- ParallelizationFactor lane
                seq      INTEGER NOT NULL,   -- last record done
                PRIMARY KEY (mapping, lane)
            );
            """);
        _readConnectionString = new SqliteConnectionStringBuilder { DataSource = _path, Pooling = true, DefaultTimeout = 30 }.ToString();
        using (var select = _writer.CreateCommand())
        {
            select.CommandText = "SELECT info FROM tables;";
            using var reader = select.ExecuteReader();
            while (reader.Read())
            {
                var table = TableInfo.Deserialize((byte[])reader[0]);
                _tables[(table.Account, table.Name)] = table;
            }
        }
        using (var select = _writer.CreateCommand())
        {
            select.CommandText = "SELECT id, account, table_name, table_id, label, view_type, key_schema, created_ms, disabled_ms FROM streams;";
            using var reader = select.ExecuteReader();
            while (reader.Read())
            {
                var row = new StreamRow(reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetInt64(3), reader.GetString(4), reader.GetString(5),
                    reader.GetString(6), reader.GetInt64(7), reader.IsDBNull(8) ? null : reader.GetInt64(8));
                _streams[row.Id] = row;
            }
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        Open();
        _writerLoop = Task.Run(WriterLoopAsync, CancellationToken.None);
        _sweeper = Task.Run(SweepLoopAsync, CancellationToken.None);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _writes.Writer.TryComplete();
        await _stopping.CancelAsync();
        await Task.WhenAll(_writerLoop, _sweeper).WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
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
        if (Find(draft.Account, draft.Name) is not null)
        {
            throw DynamoException.InUse($"Table already exists: {draft.Name}");
        }
        var insert = context.Command("INSERT INTO tables (account, name, info) VALUES ($1, $2, x'7B7D') RETURNING id;");
        insert.Parameters["$1"].Value = draft.Account;
        insert.Parameters["$2"].Value = draft.Name;
        var table = draft with { Id = (long)insert.ExecuteScalar()! };
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
        var current = Find(table.Account, table.Name) ?? throw DynamoException.NotFound($"Requested resource not found: Table: {table.Name} not found");
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
        var current = Find(table.Account, table.Name) is { } found && found.Id == table.Id ? found : throw DynamoException.NotFound();
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
                    var update = context.Command("UPDATE items SET expires = $5 WHERE table_id = $1 AND seg = $2 AND pk = $3 AND sk = $4;");
                    Bind(update, current.Id, key.Segment, key.Pk, key.Sk, (object?)ExpiryOf(next, item) ?? DBNull.Value);
                    update.ExecuteNonQuery();
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
        context.AfterCommit(() => _tables[(next.Account, next.Name)] = next with { Status = "ACTIVE", Indexes = [.. next.Indexes.Select(static i => i with { Status = "ACTIVE" })] });
        return next;
    });

    private static void SaveInfo(WriteContext context, TableInfo table) => Run(context, "UPDATE tables SET info = $2 WHERE id = $1;", table.Id, table.Serialize());

    private static List<(ItemKey Key, Item Item)> AllItems(WriteContext context, long tableId)
    {
        var all = new List<(ItemKey, Item)>();
        var select = context.Command("SELECT seg, pk, sk, item FROM items WHERE table_id = $1;");
        Bind(select, tableId);
        using var reader = select.ExecuteReader();
        while (reader.Read())
        {
            all.Add((new ItemKey(reader.GetInt32(0), (byte[])reader[1], (byte[])reader[2]), AttributeValue.Deserialize((byte[])reader[3])));
        }
        return all;
    }

    /// <summary>Item count and bytes of a table or of one of its indexes (DescribeTable; not on any hot path).</summary>
    public (long Count, long Bytes) Stats(TableInfo table, string? index = null)
    {
        using var connection = OpenRead();
        using var command = connection.CreateCommand();
        if (index is null)
        {
            command.CommandText = "SELECT count(*), coalesce(sum(size), 0) FROM items WHERE table_id = $1;";
            command.Parameters.AddWithValue("$1", table.Id);
        }
        else
        {
            command.CommandText = """
                SELECT count(*), coalesce(sum(i.size), 0) FROM index_entries e
                JOIN items i ON i.table_id = e.table_id AND i.seg = e.seg AND i.pk = e.pk AND i.sk = e.sk
                WHERE e.table_id = $1 AND e.idx = $2;
                """;
            command.Parameters.AddWithValue("$1", table.Id);
            command.Parameters.AddWithValue("$2", index);
        }
        using var reader = command.ExecuteReader();
        reader.Read();
        return (reader.GetInt64(0), reader.GetInt64(1));
    }

    // ---- TransactWriteItems' ClientRequestToken (kept 10 minutes, in memory: a restart forgets them) ----

    private static readonly TimeSpan TokenLifetime = TimeSpan.FromMinutes(10);
    private readonly ConcurrentDictionary<(string Account, string Token), (string Fingerprint, long AtMs)> _transactionTokens = new();

    /// <summary>The fingerprint of the transaction committed with this token in the last 10 minutes, if any.</summary>
    public string? CompletedTransaction(string account, string token, long nowMs) =>
        _transactionTokens.TryGetValue((account, token), out var done) && nowMs - done.AtMs < TokenLifetime.TotalMilliseconds ? done.Fingerprint : null;

    public void RememberTransaction(string account, string token, string fingerprint, long nowMs)
    {
        _transactionTokens[(account, token)] = (fingerprint, nowMs);
        if (_transactionTokens.Count > 10_000)
        {
            foreach (var old in _transactionTokens.Where(t => nowMs - t.Value.AtMs >= TokenLifetime.TotalMilliseconds).Select(static t => t.Key).ToList())
            {
                _transactionTokens.TryRemove(old, out _);
            }
        }
    }

    // ---- the writer ----

    /// <summary>
    /// Runs <paramref name="work"/> in the writer's next transaction (in a savepoint of its own) and completes once
    /// that transaction has committed. A <see cref="DynamoException"/> thrown by the work rolls back its savepoint only.
    /// </summary>
    public Task<T> WriteAsync<T>(Func<WriteContext, T> work) => WriteAsync(barrier: false, work);

    /// <summary>
    /// <paramref name="barrier"/>: a change of a table's definition, committed in a transaction of its own, so that the
    /// writes after it in the queue run against the new definition (the in-memory tables change only after commit).
    /// </summary>
    private Task<T> WriteAsync<T>(bool barrier, Func<WriteContext, T> work)
    {
        var operation = new WriteOperation<T>(work) { Barrier = barrier };
        if (!_writes.Writer.TryWrite(operation))
        {
            throw new DynamoException("InternalServerError", "The server is shutting down.", 500);
        }
        return operation.Task;
    }

    private async Task WriterLoopAsync()
    {
        var batch = new List<WriteOperation>(MaxBatch);
        var writer = _writer!;
        WriteOperation? carried = null;
        while (carried is not null || await _writes.Reader.WaitToReadAsync(CancellationToken.None))
        {
            batch.Clear();
            if (carried is not null)
            {
                batch.Add(carried);
                carried = null;
            }
            while (batch.Count < MaxBatch && !(batch.Count == 1 && batch[0].Barrier) && _writes.Reader.TryRead(out var next))
            {
                if (next.Barrier && batch.Count > 0)
                {
                    carried = next; // a table change starts a batch of its own
                    break;
                }
                batch.Add(next);
            }
            var context = new WriteContext(this, writer, NowMs);
            try
            {
                Execute(writer, "BEGIN IMMEDIATE;");
                foreach (var operation in batch)
                {
                    context.Begin();
                    Execute(writer, "SAVEPOINT op;");
                    try
                    {
                        operation.Run(context);
                        Execute(writer, "RELEASE op;");
                        operation.AfterCommit = context.TakeAfterCommit();
                    }
                    catch (Exception e) when (e is not SqliteException { SqliteErrorCode: 10 or 13 }) // SQLITE_IOERR, SQLITE_FULL: the whole batch fails
                    {
                        Execute(writer, "ROLLBACK TO op; RELEASE op;");
                        context.TakeAfterCommit();
                        operation.Error = e is DynamoException ? e : Unexpected(e);
                    }
                }
                // Durability point: once COMMIT returns, every operation of the batch is on disk (synchronous=FULL).
                Execute(writer, "COMMIT;");
            }
            catch (SqliteException e)
            {
                // The disk refused (full, I/O error): nothing of the batch is kept, every writer is told so, and the
                // loop goes on with the next batch (a later one may succeed once space is freed).
                Log.CommitFailed(_logger, e);
                try
                {
                    Execute(writer, "ROLLBACK;");
                }
                catch (SqliteException)
                {
                }
                foreach (var operation in batch)
                {
                    operation.Error ??= new DynamoException("InternalServerError", "The write could not be committed; the server log has the details.", 500);
                    operation.AfterCommit = null;
                }
                context.StreamWritten = false;
            }
            foreach (var operation in batch)
            {
                operation.AfterCommit?.Invoke();
                operation.Complete();
            }
            if (context.StreamWritten)
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

    private abstract class WriteOperation
    {
        public bool Barrier { get; init; }
        public Exception? Error { get; set; }
        public Action? AfterCommit { get; set; }
        public abstract void Run(WriteContext context);
        public abstract void Complete();
    }

    private sealed class WriteOperation<T>(Func<WriteContext, T> work) : WriteOperation
    {
        private readonly TaskCompletionSource<T> _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private T? _result;

        public Task<T> Task => _done.Task;

        public override void Run(WriteContext context) => _result = work(context);

        public override void Complete()
        {
            if (Error is not null)
            {
                _done.TrySetException(Error);
            }
            else
            {
                _done.TrySetResult(_result!);
            }
        }
    }

    /// <summary>What a write operation works with: the writer's connection (inside the batch's transaction).</summary>
    internal sealed class WriteContext(DynamoStore store, SqliteConnection connection, long nowMs)
    {
        private List<Action>? _afterCommit;

        public DynamoStore Store { get; } = store;
        public SqliteConnection Connection { get; } = connection;
        public long NowMs { get; } = nowMs;
        public bool StreamWritten { get; set; }

        public void Begin() => _afterCommit = null;

        /// <summary>In-memory changes that must happen only if the transaction commits.</summary>
        public void AfterCommit(Action action) => (_afterCommit ??= []).Add(action);

        public Action? TakeAfterCommit()
        {
            var actions = _afterCommit;
            _afterCommit = null;
            return actions is null ? null : () => actions.ForEach(static a => a());
        }

        public SqliteCommand Command(string sql) => Store.WriterCommand(sql);
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

    private static int Run(WriteContext context, string sql, params object?[] values)
    {
        var command = context.Command(sql);
        Bind(command, values);
        return command.ExecuteNonQuery();
    }

    private static void Execute(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    public SqliteConnection OpenRead()
    {
        var connection = new SqliteConnection(_readConnectionString);
        connection.Open();
        return connection;
    }

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
