using System.Data.Common;
using System.Text.Json.Nodes;
using Lamina.Server.Hosting;
using Lamina.Server.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Durable;

/// <summary>
/// The durable executions' log: <c>&lt;data&gt;/durable.db</c>, a SQLite file of its own (WAL, <c>synchronous=FULL</c>).
/// A checkpoint is acknowledged only once it is on disk, so what the function was told survives a kill -9 and is
/// replayed to it. Checkpoints come at the pace of a function's steps, not of invocations: one connection under a
/// lock is enough (no group commit).
/// </summary>
/// <remarks>
/// A cluster node (issue #25) keeps the same tables on the cluster's PostgreSQL (<see cref="Database"/>'s cluster step
/// 4) and runs the same statements there. Only the holder of the <see cref="DurableEngine.Lease"/> lease writes: each
/// write first locks the lease's row (<c>FOR SHARE</c>) and finds it held by this node, so a holder that stalled past
/// its lease (and was replaced) cannot write over its successor's log.
/// </remarks>
internal sealed class DurableStore : IDisposable
{
    /// <summary>
    /// The tables, in SQLite's words (Sql.ForPostgres maps them for a cluster), their names after <c>{p}</c>: nothing in
    /// durable.db, <see cref="PostgresPrefix"/> on the cluster's database, which has other <c>events</c>.
    /// </summary>
    public const string Schema = """
        CREATE TABLE IF NOT EXISTS {p}executions (
            arn            TEXT    NOT NULL PRIMARY KEY,
            function_key   TEXT    NOT NULL,  -- the registry key (account:name for another account's function)
            function_arn   TEXT    NOT NULL,  -- qualified: the version it runs
            version        TEXT    NOT NULL,
            name           TEXT    NOT NULL,
            input          TEXT    NOT NULL,
            start_ms       INTEGER NOT NULL,
            timeout_s      INTEGER NOT NULL,
            retention_days INTEGER NOT NULL,
            status         TEXT    NOT NULL,  -- RUNNING, SUCCEEDED, FAILED, TIMED_OUT, STOPPED
            result         TEXT,
            error          TEXT,              -- ErrorObject JSON
            end_ms         INTEGER
        );
        CREATE UNIQUE INDEX IF NOT EXISTS {p}executions_by_name ON {p}executions (function_key, name);
        CREATE TABLE IF NOT EXISTS {p}operations (
            arn                   TEXT    NOT NULL,
            seq                   INTEGER NOT NULL,  -- order of first checkpoint
            id                    TEXT    NOT NULL,
            callback_id           TEXT,
            json                  TEXT    NOT NULL,  -- the Operation as the APIs answer it
            deadline_ms           INTEGER,           -- callback timeout
            heartbeat_s           INTEGER,
            heartbeat_deadline_ms INTEGER,
            PRIMARY KEY (arn, id)
        );
        CREATE UNIQUE INDEX IF NOT EXISTS {p}operations_by_callback ON {p}operations (callback_id) WHERE callback_id IS NOT NULL;
        CREATE TABLE IF NOT EXISTS {p}events (
            arn      TEXT    NOT NULL,
            event_id INTEGER NOT NULL,
            json     TEXT    NOT NULL,
            PRIMARY KEY (arn, event_id)
        );
        """;

    /// <summary>
    /// What reads ended executions from the store rather than memory (issue #19's audit of what grows with use): a
    /// function's executions by start time (ListDurableExecutionsByFunction) and the ended ones by when their retention
    /// runs out. A cluster's database gets them in step 11 (<see cref="Database"/>).
    /// </summary>
    public const string Indexes = """
        CREATE INDEX IF NOT EXISTS {p}executions_by_function ON {p}executions (function_key, start_ms, arn);
        CREATE INDEX IF NOT EXISTS {p}executions_by_expiry ON {p}executions ((end_ms + retention_days * 86400000)) WHERE end_ms IS NOT NULL;
        """;

    /// <summary>What the tables' names start with on a cluster's PostgreSQL.</summary>
    public const string PostgresPrefix = "durable_";

    /// <summary>The schema with its tables named for one engine.</summary>
    public static string SchemaNamed(string prefix) => Schema.Replace("{p}", prefix, StringComparison.Ordinal);

    private readonly string _path;
    private readonly string _executions, _operations, _events; // the tables' names on this node's engine
    private readonly Database _database;
    private readonly string _nodeId;
    private readonly Lock _lock = new();
    private SqliteConnection? _connection;

    public DurableStore(IOptions<LaminaOptions> options, Database database)
    {
        _path = Path.Combine(options.Value.DataDirectory, "durable.db");
        _database = database;
        _nodeId = options.Value.EffectiveNodeId;
        var prefix = database.IsPostgres ? PostgresPrefix : "";
        (_executions, _operations, _events) = (prefix + "executions", prefix + "operations", prefix + "events");
    }

    /// <summary>
    /// Opens (creating) the file, or on a cluster reads the cluster's tables, and loads the running executions with
    /// their operations and events (an ended one is read from the store when asked for: <see cref="ReadExecution"/>).
    /// </summary>
    public List<DurableExecution> Open()
    {
        lock (_lock)
        {
            if (_database.IsPostgres)
            {
                using var shared = _database.OpenShared();
                return Load(shared, _executions, _operations, _events);
            }
            if (_connection is null)
            {
                Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
                var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = _path, Pooling = false, DefaultTimeout = 30 }.ToString());
                connection.Open();
                using (var command = connection.CreateCommand())
                {
                    command.CommandText = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;" + SchemaNamed("") + Indexes.Replace("{p}", "", StringComparison.Ordinal);
                    command.ExecuteNonQuery();
                }
                _connection = connection;
            }
            return Load(_connection, _executions, _operations, _events);
        }
    }

    /// <summary>The history events of one execution, in order (an ended one's: the engine no longer holds them).</summary>
    public List<JsonObject> ReadEvents(string arn) => Read([], connection =>
    {
        using var command = Sql.Positional(connection, $"SELECT json FROM {_events} WHERE arn = $1 ORDER BY event_id;", arn);
        using var reader = command.ExecuteReader();
        var events = new List<JsonObject>();
        while (reader.Read())
        {
            events.Add(JsonNode.Parse(reader.GetString(0))!.AsObject());
        }
        return events;
    });

    /// <summary>
    /// One execution's record as stored, without its operations and events; null if there is none. For an ended one, which the engine no longer holds.
    /// </summary>
    public DurableExecution? ReadExecution(string arn) => Read(null, connection =>
        ReadRecords(connection, $"SELECT {RecordColumns} FROM {_executions} WHERE arn = $1;", arn).SingleOrDefault());

    /// <summary>The record of a function's execution by its name (the idempotency key of a start); null if there is none.</summary>
    public DurableExecution? ReadExecutionByName(string functionKey, string name) => Read(null, connection =>
        ReadRecords(connection, $"SELECT {RecordColumns} FROM {_executions} WHERE function_key = $1 AND name = $2;", functionKey, name).SingleOrDefault());

    /// <summary>
    /// A page of a function's executions (their records without input, result and error) in start order (by ARN within a millisecond), after <paramref name="after"/>
    /// in that order (before it, newest first, when <paramref name="newestFirst"/>): a seek in <c>executions_by_function</c>.
    /// </summary>
    public List<DurableExecution> ListExecutions(string functionKey, ExecutionFilter filter, bool newestFirst, (long StartMs, string Arn)? after, int take) =>
        Read([], connection =>
        {
            var values = new List<object?> { functionKey };
            var sql = new System.Text.StringBuilder($"SELECT {ListedColumns} FROM {_executions} WHERE function_key = $1");
            string Next(object? value)
            {
                values.Add(value);
                return "$" + values.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
            }
            if (filter.Version is { } version)
            {
                sql.Append(" AND version = ").Append(Next(version));
            }
            if (filter.Name is { } name)
            {
                sql.Append(" AND name = ").Append(Next(name));
            }
            if (filter.Statuses is { Count: > 0 } statuses)
            {
                sql.Append(" AND status IN (").AppendJoin(", ", statuses.Select(Next)).Append(')');
            }
            if (filter.StartedAfterMs is { } startedAfter)
            {
                sql.Append(" AND start_ms >= ").Append(Next(startedAfter));
            }
            if (filter.StartedBeforeMs is { } startedBefore)
            {
                sql.Append(" AND start_ms <= ").Append(Next(startedBefore));
            }
            if (after is { } position)
            {
                sql.Append(newestFirst ? " AND (start_ms, arn) < (" : " AND (start_ms, arn) > (").Append(Next(position.StartMs)).Append(", ").Append(Next(position.Arn)).Append(')');
            }
            sql.Append(newestFirst ? " ORDER BY start_ms DESC, arn DESC LIMIT " : " ORDER BY start_ms, arn LIMIT ").Append(Next((long)take)).Append(';');
            return ReadRecords(connection, sql.ToString(), [.. values]);
        });

    /// <summary>
    /// A callback's execution's status and whether the callback timed out, for one the engine no longer holds (its
    /// execution ended); null if no execution has it.
    /// </summary>
    public (string ExecutionStatus, bool TimedOut)? ReadCallback(string callbackId) => Read<(string, bool)?>(null, connection =>
    {
        using var command = Sql.Positional(connection, $"""
            SELECT e.status, o.json FROM {_operations} o JOIN {_executions} e ON e.arn = o.arn WHERE o.callback_id = $1;
            """, callbackId);
        using var reader = command.ExecuteReader();
        return reader.Read() ? (reader.GetString(0), (string?)JsonNode.Parse(reader.GetString(1))?["Status"] == "TIMED_OUT") : null;
    });

    /// <summary>Up to <paramref name="take"/> ended executions whose retention ran out before <paramref name="nowMs"/>: a range of <c>executions_by_expiry</c>.</summary>
    public List<string> ReadExpired(long nowMs, int take) => Read([], connection =>
    {
        using var command = Sql.Positional(connection, $"""
            SELECT arn FROM {_executions} WHERE end_ms IS NOT NULL AND end_ms + retention_days * 86400000 < $1
            ORDER BY end_ms + retention_days * 86400000 LIMIT $2;
            """, nowMs, (long)take);
        using var reader = command.ExecuteReader();
        var arns = new List<string>();
        while (reader.Read())
        {
            arns.Add(reader.GetString(0));
        }
        return arns;
    });

    /// <summary>Runs a read on the store's connection (the cluster's database on a cluster); <paramref name="closed"/> before it is open.</summary>
    private T Read<T>(T closed, Func<DbConnection, T> read)
    {
        if (_database.IsPostgres)
        {
            using var shared = _database.OpenShared(); // a pooled connection of its own: no wait on a checkpoint's write
            return read(shared);
        }
        lock (_lock)
        {
            return _connection is null ? closed : read(_connection);
        }
    }

    private const string RecordColumns = "arn, function_key, function_arn, version, name, input, start_ms, timeout_s, retention_days, status, result, error, end_ms";

    // What a listing shows (no input, result or error, which can be large): the record's columns with those left empty.
    private const string ListedColumns = "arn, function_key, function_arn, version, name, '' AS input, start_ms, timeout_s, retention_days, status, NULL AS result, NULL AS error, end_ms";

    /// <summary>Records read by <paramref name="sql"/> (selecting <see cref="RecordColumns"/>), ended ones trimmed and done.</summary>
    private static List<DurableExecution> ReadRecords(DbConnection connection, string sql, params object?[] values)
    {
        using var command = Sql.Positional(connection, sql, values);
        using var reader = command.ExecuteReader();
        var executions = new List<DurableExecution>();
        while (reader.Read())
        {
            var execution = new DurableExecution
            {
                Arn = reader.GetString(0),
                FunctionKey = reader.GetString(1),
                FunctionArn = reader.GetString(2),
                Version = reader.GetString(3),
                Name = reader.GetString(4),
                Input = reader.GetString(5),
                StartMs = reader.GetInt64(6),
                TimeoutSeconds = (int)reader.GetInt64(7),
                RetentionDays = (int)reader.GetInt64(8),
                Status = reader.GetString(9),
                Result = reader.IsDBNull(10) ? null : reader.GetString(10),
                Error = reader.IsDBNull(11) ? null : JsonNode.Parse(reader.GetString(11))?.AsObject(),
                EndMs = reader.IsDBNull(12) ? null : reader.GetInt64(12),
            };
            if (!execution.IsRunning)
            {
                execution.Done.TrySetResult();
            }
            executions.Add(execution);
        }
        return executions;
    }

    private static List<DurableExecution> Load(DbConnection connection, string executionsTable, string operationsTable, string eventsTable)
    {
        var executions = ReadRecords(connection, $"SELECT {RecordColumns} FROM {executionsTable} WHERE status = 'RUNNING' ORDER BY start_ms;")
            .ToDictionary(static e => e.Arn, StringComparer.Ordinal);
        using (var command = connection.CreateCommand())
        {
            // Nothing of an ended execution is read, however many days of them the store keeps.
            command.CommandText = $"""
                SELECT o.arn, o.id, o.json, o.deadline_ms, o.heartbeat_s, o.heartbeat_deadline_ms
                FROM {operationsTable} o JOIN {executionsTable} e ON e.arn = o.arn
                WHERE e.status = 'RUNNING' ORDER BY o.arn, o.seq;
                """;
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                if (!executions.TryGetValue(reader.GetString(0), out var execution))
                {
                    continue;
                }
                var operation = JsonNode.Parse(reader.GetString(2))!.AsObject();
                var id = reader.GetString(1);
                execution.Operations.Add(operation);
                execution.OperationsById[id] = operation;
                if (!reader.IsDBNull(3) || !reader.IsDBNull(4))
                {
                    execution.Callbacks[id] = new CallbackTimers
                    {
                        DeadlineMs = reader.IsDBNull(3) ? null : reader.GetInt64(3),
                        HeartbeatSeconds = reader.IsDBNull(4) ? null : (int)reader.GetInt64(4),
                        HeartbeatDeadlineMs = reader.IsDBNull(5) ? null : reader.GetInt64(5),
                    };
                }
            }
        }
        using (var command = connection.CreateCommand())
        {
            command.CommandText = $"""
                SELECT v.arn, v.json FROM {eventsTable} v JOIN {executionsTable} e ON e.arn = v.arn
                WHERE e.status = 'RUNNING' ORDER BY v.arn, v.event_id;
                """;
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                if (executions.TryGetValue(reader.GetString(0), out var execution))
                {
                    execution.Events.Add(JsonNode.Parse(reader.GetString(1))!.AsObject());
                }
            }
        }
        return [.. executions.Values];
    }

    /// <summary>
    /// Writes the execution's record, the operations that changed and the events added, in one transaction, and
    /// returns once it is on disk. Called under the execution's lock. On a cluster, throws
    /// <see cref="DurableLeaseLostException"/> (writing nothing) when this node no longer holds the lease.
    /// </summary>
    public void Save(DurableExecution execution, IReadOnlyCollection<JsonObject> operations, int eventsFrom)
    {
        lock (_lock)
        {
            var postgres = _database.IsPostgres ? _database.OpenShared() : null;
            try
            {
                var connection = postgres ?? _connection ?? throw new InvalidOperationException("durable.db is not open");
                using var transaction = connection.BeginTransaction();
                if (postgres is not null)
                {
                    Fence(postgres, transaction);
                }
                using (var command = Sql.Positional(connection, $"""
                    INSERT INTO {_executions} (arn, function_key, function_arn, version, name, input, start_ms, timeout_s, retention_days, status, result, error, end_ms)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                    ON CONFLICT (arn) DO UPDATE SET status = excluded.status, result = excluded.result, error = excluded.error, end_ms = excluded.end_ms;
                    """, execution.Arn, execution.FunctionKey, execution.FunctionArn, execution.Version, execution.Name, execution.Input,
                    execution.StartMs, (long)execution.TimeoutSeconds, (long)execution.RetentionDays, execution.Status, execution.Result,
                    execution.Error?.ToJsonString(), execution.EndMs))
                {
                    command.Transaction = transaction;
                    command.ExecuteNonQuery();
                }
                foreach (var operation in operations)
                {
                    var id = (string)operation["Id"]!;
                    execution.Callbacks.TryGetValue(id, out var timers);
                    using var command = Sql.Positional(connection, $"""
                        INSERT INTO {_operations} (arn, seq, id, callback_id, json, deadline_ms, heartbeat_s, heartbeat_deadline_ms)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                        ON CONFLICT (arn, id) DO UPDATE SET json = excluded.json, callback_id = excluded.callback_id, deadline_ms = excluded.deadline_ms,
                            heartbeat_s = excluded.heartbeat_s, heartbeat_deadline_ms = excluded.heartbeat_deadline_ms;
                        """, execution.Arn, (long)execution.Operations.IndexOf(operation), id, (string?)operation["CallbackDetails"]?["CallbackId"],
                        operation.ToJsonString(), timers?.DeadlineMs, (long?)timers?.HeartbeatSeconds, timers?.HeartbeatDeadlineMs);
                    command.Transaction = transaction;
                    command.ExecuteNonQuery();
                }
                for (var i = eventsFrom; i < execution.Events.Count; i++)
                {
                    using var command = Sql.Positional(connection, $"INSERT INTO {_events} (arn, event_id, json) VALUES ($1, $2, $3);",
                        execution.Arn, (long)(i + 1), execution.Events[i].ToJsonString());
                    command.Transaction = transaction;
                    command.ExecuteNonQuery();
                }
                transaction.Commit();
            }
            finally
            {
                postgres?.Dispose();
            }
        }
    }

    /// <summary>
    /// Locks the lease's row until the transaction ends and checks that this node holds it: the lease cannot pass to
    /// another node meanwhile, and a node that lost it writes nothing.
    /// </summary>
    private void Fence(DbConnection connection, DbTransaction transaction)
    {
        using var command = Sql.Positional(connection, "SELECT 1 FROM cluster_leases WHERE name = $1 AND holder = $2 AND expires_at > now() FOR SHARE;",
            DurableEngine.Lease, _nodeId);
        command.Transaction = transaction;
        if (command.ExecuteScalar() is null)
        {
            throw new DurableLeaseLostException();
        }
    }

    /// <summary>Deletes executions past their retention, in one transaction (one fsync for the lot).</summary>
    public void Delete(IReadOnlyList<string> arns)
    {
        lock (_lock)
        {
            var postgres = _database.IsPostgres ? _database.OpenShared() : null;
            try
            {
                var connection = postgres ?? _connection ?? throw new InvalidOperationException("durable.db is not open");
                using var transaction = connection.BeginTransaction();
                foreach (var table in (string[])[_executions, _operations, _events])
                {
                    using var command = Sql.Positional(connection, $"DELETE FROM {table} WHERE arn = $1;", "");
                    command.Transaction = transaction;
                    foreach (var arn in arns)
                    {
                        command.Parameters[0].Value = arn;
                        command.ExecuteNonQuery();
                    }
                }
                transaction.Commit();
            }
            finally
            {
                postgres?.Dispose();
            }
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            _connection?.Dispose();
            _connection = null;
        }
    }
}

/// <summary>This node no longer holds the durable lease: another node runs the executions now.</summary>
internal sealed class DurableLeaseLostException() : InvalidOperationException("This node no longer runs durable executions (the cluster's 'durable' lease moved).");

/// <summary>ListDurableExecutionsByFunction's filters (each null or empty: not filtered on).</summary>
internal readonly record struct ExecutionFilter(string? Version, string? Name, IReadOnlyCollection<string>? Statuses, long? StartedAfterMs, long? StartedBeforeMs);
