using System.Text.Json.Nodes;
using Lamina.Server.Hosting;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Durable;

/// <summary>
/// The durable executions' log: <c>&lt;data&gt;/durable.db</c>, a SQLite file of its own (WAL, <c>synchronous=FULL</c>).
/// A checkpoint is acknowledged only once it is on disk, so what the function was told survives a kill -9 and is
/// replayed to it. Checkpoints come at the pace of a function's steps, not of invocations: one connection under a
/// lock is enough (no group commit).
/// </summary>
internal sealed class DurableStore : IDisposable
{
    private readonly string _path;
    private readonly Lock _lock = new();
    private SqliteConnection? _connection;

    public DurableStore(IOptions<LaminaOptions> options) => _path = Path.Combine(options.Value.DataDirectory, "durable.db");

    /// <summary>Opens (creating) the file and loads every execution with its operations and events.</summary>
    public List<DurableExecution> Open()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = _path, Pooling = false, DefaultTimeout = 30 }.ToString());
        connection.Open();
        Execute(connection, """
            PRAGMA journal_mode=WAL;
            PRAGMA synchronous=FULL;
            CREATE TABLE IF NOT EXISTS executions (
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
            CREATE UNIQUE INDEX IF NOT EXISTS executions_by_name ON executions (function_key, name);
            CREATE TABLE IF NOT EXISTS operations (
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
            CREATE UNIQUE INDEX IF NOT EXISTS operations_by_callback ON operations (callback_id) WHERE callback_id IS NOT NULL;
            CREATE TABLE IF NOT EXISTS events (
                arn      TEXT    NOT NULL,
                event_id INTEGER NOT NULL,
                json     TEXT    NOT NULL,
                PRIMARY KEY (arn, event_id)
            );
            """);
        _connection = connection;

        var executions = new Dictionary<string, DurableExecution>(StringComparer.Ordinal);
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT arn, function_key, function_arn, version, name, input, start_ms, timeout_s, retention_days, status, result, error, end_ms FROM executions ORDER BY start_ms;";
            using var reader = command.ExecuteReader();
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
                    TimeoutSeconds = reader.GetInt32(7),
                    RetentionDays = reader.GetInt32(8),
                    Status = reader.GetString(9),
                    Result = reader.IsDBNull(10) ? null : reader.GetString(10),
                    Error = reader.IsDBNull(11) ? null : JsonNode.Parse(reader.GetString(11))?.AsObject(),
                    EndMs = reader.IsDBNull(12) ? null : reader.GetInt64(12),
                };
                executions[execution.Arn] = execution;
            }
        }
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT arn, id, json, deadline_ms, heartbeat_s, heartbeat_deadline_ms FROM operations ORDER BY arn, seq;";
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
                        HeartbeatSeconds = reader.IsDBNull(4) ? null : reader.GetInt32(4),
                        HeartbeatDeadlineMs = reader.IsDBNull(5) ? null : reader.GetInt64(5),
                    };
                }
            }
        }
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT arn, json FROM events ORDER BY arn, event_id;";
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
    /// returns once it is on disk. Called under the execution's lock.
    /// </summary>
    public void Save(DurableExecution execution, IReadOnlyCollection<JsonObject> operations, int eventsFrom)
    {
        lock (_lock)
        {
            var connection = _connection ?? throw new InvalidOperationException("durable.db is not open");
            using var transaction = connection.BeginTransaction();
            using (var command = connection.CreateCommand())
            {
                command.Transaction = transaction;
                command.CommandText = """
                    INSERT INTO executions (arn, function_key, function_arn, version, name, input, start_ms, timeout_s, retention_days, status, result, error, end_ms)
                    VALUES ($arn, $key, $functionArn, $version, $name, $input, $start, $timeout, $retention, $status, $result, $error, $end)
                    ON CONFLICT (arn) DO UPDATE SET status = excluded.status, result = excluded.result, error = excluded.error, end_ms = excluded.end_ms;
                    """;
                command.Parameters.AddWithValue("$arn", execution.Arn);
                command.Parameters.AddWithValue("$key", execution.FunctionKey);
                command.Parameters.AddWithValue("$functionArn", execution.FunctionArn);
                command.Parameters.AddWithValue("$version", execution.Version);
                command.Parameters.AddWithValue("$name", execution.Name);
                command.Parameters.AddWithValue("$input", execution.Input);
                command.Parameters.AddWithValue("$start", execution.StartMs);
                command.Parameters.AddWithValue("$timeout", execution.TimeoutSeconds);
                command.Parameters.AddWithValue("$retention", execution.RetentionDays);
                command.Parameters.AddWithValue("$status", execution.Status);
                command.Parameters.AddWithValue("$result", (object?)execution.Result ?? DBNull.Value);
                command.Parameters.AddWithValue("$error", (object?)execution.Error?.ToJsonString() ?? DBNull.Value);
                command.Parameters.AddWithValue("$end", (object?)execution.EndMs ?? DBNull.Value);
                command.ExecuteNonQuery();
            }
            foreach (var operation in operations)
            {
                var id = (string)operation["Id"]!;
                execution.Callbacks.TryGetValue(id, out var timers);
                using var command = connection.CreateCommand();
                command.Transaction = transaction;
                command.CommandText = """
                    INSERT INTO operations (arn, seq, id, callback_id, json, deadline_ms, heartbeat_s, heartbeat_deadline_ms)
                    VALUES ($arn, $seq, $id, $callback, $json, $deadline, $heartbeat, $heartbeatDeadline)
                    ON CONFLICT (arn, id) DO UPDATE SET json = excluded.json, callback_id = excluded.callback_id, deadline_ms = excluded.deadline_ms,
                        heartbeat_s = excluded.heartbeat_s, heartbeat_deadline_ms = excluded.heartbeat_deadline_ms;
                    """;
                command.Parameters.AddWithValue("$arn", execution.Arn);
                command.Parameters.AddWithValue("$seq", execution.Operations.IndexOf(operation));
                command.Parameters.AddWithValue("$id", id);
                command.Parameters.AddWithValue("$callback", (object?)(string?)operation["CallbackDetails"]?["CallbackId"] ?? DBNull.Value);
                command.Parameters.AddWithValue("$json", operation.ToJsonString());
                command.Parameters.AddWithValue("$deadline", (object?)timers?.DeadlineMs ?? DBNull.Value);
                command.Parameters.AddWithValue("$heartbeat", (object?)timers?.HeartbeatSeconds ?? DBNull.Value);
                command.Parameters.AddWithValue("$heartbeatDeadline", (object?)timers?.HeartbeatDeadlineMs ?? DBNull.Value);
                command.ExecuteNonQuery();
            }
            for (var i = eventsFrom; i < execution.Events.Count; i++)
            {
                using var command = connection.CreateCommand();
                command.Transaction = transaction;
                command.CommandText = "INSERT INTO events (arn, event_id, json) VALUES ($arn, $id, $json);";
                command.Parameters.AddWithValue("$arn", execution.Arn);
                command.Parameters.AddWithValue("$id", i + 1);
                command.Parameters.AddWithValue("$json", execution.Events[i].ToJsonString());
                command.ExecuteNonQuery();
            }
            transaction.Commit();
        }
    }

    /// <summary>Deletes an execution past its retention.</summary>
    public void Delete(string arn)
    {
        lock (_lock)
        {
            var connection = _connection ?? throw new InvalidOperationException("durable.db is not open");
            using var command = connection.CreateCommand();
            command.CommandText = "DELETE FROM executions WHERE arn = $arn; DELETE FROM operations WHERE arn = $arn; DELETE FROM events WHERE arn = $arn;";
            command.Parameters.AddWithValue("$arn", arn);
            command.ExecuteNonQuery();
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

    private static void Execute(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }
}
