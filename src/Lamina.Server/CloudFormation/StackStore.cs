using System.Globalization;
using System.Text.Json;
using Lamina.Server.Hosting;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;

namespace Lamina.Server.CloudFormation;

/// <summary>
/// CloudFormation's state in a SQLite file of its own (<c>&lt;data&gt;/cloudformation.db</c>, WAL,
/// <c>synchronous=FULL</c>): stacks, their resources, events, change sets and exports. Every step of a stack
/// operation is written before the next begins, so a restart finds exactly where an operation stopped (see
/// <see cref="StackEngine"/>'s recovery). One connection behind a lock: stack operations are a control plane, a few
/// writes a second at most.
/// </summary>
internal sealed class StackStore : IDisposable
{
    private const int SchemaVersion = 1;
    private readonly SqliteConnection _connection;
    private readonly Lock _lock = new();

    public StackStore(IOptions<LaminaOptions> options)
        : this(Path.Combine(options.Value.DataDirectory, "cloudformation.db"))
    {
    }

    public StackStore(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        _connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false, DefaultTimeout = 30 }.ToString());
        _connection.Open();
        Execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;");
        using var version = _connection.CreateCommand();
        version.CommandText = "PRAGMA user_version;";
        var current = Convert.ToInt32(version.ExecuteScalar(), CultureInfo.InvariantCulture);
        if (current > SchemaVersion)
        {
            throw new InvalidOperationException($"{path} was written by a newer Lamina (schema {current}, this one knows {SchemaVersion})");
        }
        if (current < 1)
        {
            Execute("""
                BEGIN;
                CREATE TABLE stacks (
                    stack_id    TEXT NOT NULL PRIMARY KEY,   -- arn:aws:cloudformation:<region>:<account>:stack/<name>/<uuid>
                    name        TEXT NOT NULL,
                    deleted     INTEGER NOT NULL DEFAULT 0,  -- DELETE_COMPLETE stacks stay listed (ListStacks, by id)
                    created_at  TEXT NOT NULL,
                    stack_json  TEXT NOT NULL                -- StackRecord
                );
                CREATE UNIQUE INDEX stacks_live_name ON stacks(name) WHERE deleted = 0;
                CREATE TABLE resources (
                    stack_id       TEXT NOT NULL REFERENCES stacks(stack_id) ON DELETE CASCADE,
                    logical_id     TEXT NOT NULL,
                    resource_json  TEXT NOT NULL,            -- ResourceRecord
                    PRIMARY KEY (stack_id, logical_id)
                );
                CREATE TABLE events (
                    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
                    stack_id    TEXT NOT NULL REFERENCES stacks(stack_id) ON DELETE CASCADE,
                    event_json  TEXT NOT NULL                -- StackEventRecord
                );
                CREATE INDEX events_by_stack ON events(stack_id, seq);
                CREATE TABLE change_sets (
                    change_set_id    TEXT NOT NULL PRIMARY KEY,
                    stack_id         TEXT NOT NULL REFERENCES stacks(stack_id) ON DELETE CASCADE,
                    name             TEXT NOT NULL,
                    change_set_json  TEXT NOT NULL            -- ChangeSetRecord
                );
                CREATE TABLE exports (
                    name      TEXT NOT NULL PRIMARY KEY,
                    stack_id  TEXT NOT NULL,
                    value     TEXT NOT NULL
                );
                PRAGMA user_version = 1;
                COMMIT;
                """);
        }
    }

    public void Dispose() => _connection.Dispose();

    // ---- stacks ---------------------------------------------------------------------------------------------------------

    /// <summary>A stack by name (live ones only) or by id (deleted ones too), as CloudFormation looks them up.</summary>
    public StackRecord? FindStack(string nameOrId)
    {
        var byId = nameOrId.StartsWith("arn:", StringComparison.Ordinal);
        return Query(byId ? "SELECT stack_json FROM stacks WHERE stack_id = $k;" : "SELECT stack_json FROM stacks WHERE name = $k AND deleted = 0;",
            reader => Deserialize(reader.GetString(0), StackJsonContext.Default.StackRecord), ("$k", nameOrId)).FirstOrDefault();
    }

    /// <summary>Every stack, live ones and deleted ones, newest first.</summary>
    public List<StackRecord> AllStacks() =>
        Query("SELECT stack_json FROM stacks ORDER BY created_at DESC, rowid DESC;", reader => Deserialize(reader.GetString(0), StackJsonContext.Default.StackRecord));

    public void SaveStack(StackRecord stack)
    {
        NonQuery("""
            INSERT INTO stacks (stack_id, name, deleted, created_at, stack_json) VALUES ($id, $name, $deleted, $created, $json)
            ON CONFLICT (stack_id) DO UPDATE SET deleted = excluded.deleted, stack_json = excluded.stack_json;
            """,
            ("$id", stack.StackId), ("$name", stack.StackName), ("$deleted", stack.DeletedAt is null ? 0 : 1),
            ("$created", stack.CreatedAt.ToString("O", CultureInfo.InvariantCulture)), ("$json", JsonSerializer.Serialize(stack, StackJsonContext.Default.StackRecord)));
    }

    /// <summary>Removes a stack and everything of it (a REVIEW_IN_PROGRESS stack whose last change set was deleted).</summary>
    public void RemoveStack(string stackId) => NonQuery("DELETE FROM stacks WHERE stack_id = $id;", ("$id", stackId));

    // ---- resources ------------------------------------------------------------------------------------------------------

    public List<ResourceRecord> Resources(string stackId) =>
        Query("SELECT resource_json FROM resources WHERE stack_id = $id ORDER BY rowid;", reader => Deserialize(reader.GetString(0), StackJsonContext.Default.ResourceRecord), ("$id", stackId));

    public void SaveResource(string stackId, ResourceRecord resource) => NonQuery("""
        INSERT INTO resources (stack_id, logical_id, resource_json) VALUES ($stack, $logical, $json)
        ON CONFLICT (stack_id, logical_id) DO UPDATE SET resource_json = excluded.resource_json;
        """, ("$stack", stackId), ("$logical", resource.LogicalId), ("$json", JsonSerializer.Serialize(resource, StackJsonContext.Default.ResourceRecord)));

    public void RemoveResource(string stackId, string logicalId) =>
        NonQuery("DELETE FROM resources WHERE stack_id = $stack AND logical_id = $logical;", ("$stack", stackId), ("$logical", logicalId));

    // ---- events ---------------------------------------------------------------------------------------------------------

    public void AddEvent(StackEventRecord stackEvent) => NonQuery("INSERT INTO events (stack_id, event_json) VALUES ($stack, $json);",
        ("$stack", stackEvent.StackId), ("$json", JsonSerializer.Serialize(stackEvent, StackJsonContext.Default.StackEventRecord)));

    /// <summary>A stack's events, newest first, from position <paramref name="skip"/>.</summary>
    public List<StackEventRecord> Events(string stackId, int skip, int take) =>
        Query("SELECT event_json FROM events WHERE stack_id = $stack ORDER BY seq DESC LIMIT $take OFFSET $skip;",
            reader => Deserialize(reader.GetString(0), StackJsonContext.Default.StackEventRecord), ("$stack", stackId), ("$take", take), ("$skip", skip));

    // ---- change sets ----------------------------------------------------------------------------------------------------

    public void SaveChangeSet(ChangeSetRecord changeSet) => NonQuery("""
        INSERT INTO change_sets (change_set_id, stack_id, name, change_set_json) VALUES ($id, $stack, $name, $json)
        ON CONFLICT (change_set_id) DO UPDATE SET change_set_json = excluded.change_set_json;
        """, ("$id", changeSet.ChangeSetId), ("$stack", changeSet.StackId), ("$name", changeSet.ChangeSetName),
        ("$json", JsonSerializer.Serialize(changeSet, StackJsonContext.Default.ChangeSetRecord)));

    public ChangeSetRecord? FindChangeSet(string changeSetId) =>
        Query("SELECT change_set_json FROM change_sets WHERE change_set_id = $id;", reader => Deserialize(reader.GetString(0), StackJsonContext.Default.ChangeSetRecord), ("$id", changeSetId))
            .FirstOrDefault();

    public ChangeSetRecord? FindChangeSet(string stackId, string name) =>
        Query("SELECT change_set_json FROM change_sets WHERE stack_id = $stack AND name = $name;", reader => Deserialize(reader.GetString(0), StackJsonContext.Default.ChangeSetRecord),
            ("$stack", stackId), ("$name", name)).FirstOrDefault();

    public List<ChangeSetRecord> ChangeSets(string stackId) =>
        Query("SELECT change_set_json FROM change_sets WHERE stack_id = $stack ORDER BY rowid;", reader => Deserialize(reader.GetString(0), StackJsonContext.Default.ChangeSetRecord), ("$stack", stackId));

    public void DeleteChangeSet(string changeSetId) => NonQuery("DELETE FROM change_sets WHERE change_set_id = $id;", ("$id", changeSetId));

    public void DeleteChangeSets(string stackId) => NonQuery("DELETE FROM change_sets WHERE stack_id = $stack;", ("$stack", stackId));

    // ---- exports --------------------------------------------------------------------------------------------------------

    public List<(string Name, string StackId, string Value)> Exports() =>
        Query("SELECT name, stack_id, value FROM exports ORDER BY name;", reader => (reader.GetString(0), reader.GetString(1), reader.GetString(2)));

    /// <summary>Replaces a stack's exports with <paramref name="exports"/> in one transaction.</summary>
    public void SetExports(string stackId, IEnumerable<(string Name, string Value)> exports)
    {
        lock (_lock)
        {
            using var transaction = _connection.BeginTransaction();
            using (var delete = _connection.CreateCommand())
            {
                delete.Transaction = transaction;
                delete.CommandText = "DELETE FROM exports WHERE stack_id = $stack;";
                delete.Parameters.AddWithValue("$stack", stackId);
                delete.ExecuteNonQuery();
            }
            foreach (var (name, value) in exports)
            {
                using var insert = _connection.CreateCommand();
                insert.Transaction = transaction;
                insert.CommandText = "INSERT INTO exports (name, stack_id, value) VALUES ($name, $stack, $value);";
                insert.Parameters.AddWithValue("$name", name);
                insert.Parameters.AddWithValue("$stack", stackId);
                insert.Parameters.AddWithValue("$value", value);
                insert.ExecuteNonQuery();
            }
            transaction.Commit();
        }
    }

    // ---- plumbing -------------------------------------------------------------------------------------------------------

    private static T Deserialize<T>(string json, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) => JsonSerializer.Deserialize(json, type)!;

    private void Execute(string sql)
    {
        lock (_lock)
        {
            using var command = _connection.CreateCommand();
            command.CommandText = sql;
            command.ExecuteNonQuery();
        }
    }

    private void NonQuery(string sql, params (string Name, object Value)[] parameters)
    {
        lock (_lock)
        {
            using var command = _connection.CreateCommand();
            command.CommandText = sql;
            foreach (var (name, value) in parameters)
            {
                command.Parameters.AddWithValue(name, value);
            }
            command.ExecuteNonQuery();
        }
    }

    private List<T> Query<T>(string sql, Func<SqliteDataReader, T> read, params (string Name, object Value)[] parameters)
    {
        lock (_lock)
        {
            using var command = _connection.CreateCommand();
            command.CommandText = sql;
            foreach (var (name, value) in parameters)
            {
                command.Parameters.AddWithValue(name, value);
            }
            using var reader = command.ExecuteReader();
            var results = new List<T>();
            while (reader.Read())
            {
                results.Add(read(reader));
            }
            return results;
        }
    }
}
