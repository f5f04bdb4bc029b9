using System.Data.Common;
using System.Globalization;
using System.Text.Json;
using Lamina.Server.Hosting;
using Lamina.Server.Storage;
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
/// <remarks>
/// A cluster node (issue #25) keeps the same tables on the cluster's PostgreSQL (<see cref="Database"/>'s cluster step
/// 5, named after <see cref="PostgresPrefix"/>), through pooled connections. Only the holder of the
/// <see cref="StackEngine.Lease"/> lease writes: each write first locks the lease's row (<c>FOR SHARE</c>) and finds it
/// held by this node, so a holder that stalled past its lease (and was replaced) cannot write over its successor's
/// operations.
/// </remarks>
internal sealed class StackStore : IDisposable
{
    /// <summary>
    /// The tables, in SQLite's words (Sql.ForPostgres maps them for a cluster), their names after <c>{p}</c>: nothing in
    /// cloudformation.db, <see cref="PostgresPrefix"/> on the cluster's database, which has other <c>events</c>. IF NOT
    /// EXISTS throughout, as every step of the cluster's history from 5 on: a step may run over tables that exist.
    /// </summary>
    public const string Schema = """
        CREATE TABLE IF NOT EXISTS {p}stacks (
            stack_id    TEXT NOT NULL PRIMARY KEY,   -- arn:aws:cloudformation:<region>:<account>:stack/<name>/<uuid>
            name        TEXT NOT NULL,
            deleted     INTEGER NOT NULL DEFAULT 0,  -- DELETE_COMPLETE stacks stay listed (ListStacks, by id)
            created_at  TEXT NOT NULL,
            stack_json  TEXT NOT NULL                -- StackRecord
        );
        CREATE UNIQUE INDEX IF NOT EXISTS {p}stacks_live_name ON {p}stacks(name) WHERE deleted = 0;
        CREATE TABLE IF NOT EXISTS {p}resources (
            stack_id       TEXT NOT NULL REFERENCES {p}stacks(stack_id) ON DELETE CASCADE,
            logical_id     TEXT NOT NULL,
            resource_json  TEXT NOT NULL,            -- ResourceRecord
            PRIMARY KEY (stack_id, logical_id)
        );
        CREATE TABLE IF NOT EXISTS {p}events (
            seq         INTEGER PRIMARY KEY AUTOINCREMENT,
            stack_id    TEXT NOT NULL REFERENCES {p}stacks(stack_id) ON DELETE CASCADE,
            event_json  TEXT NOT NULL                -- StackEventRecord
        );
        CREATE INDEX IF NOT EXISTS {p}events_by_stack ON {p}events(stack_id, seq);
        CREATE TABLE IF NOT EXISTS {p}change_sets (
            change_set_id    TEXT NOT NULL PRIMARY KEY,
            stack_id         TEXT NOT NULL REFERENCES {p}stacks(stack_id) ON DELETE CASCADE,
            name             TEXT NOT NULL,
            change_set_json  TEXT NOT NULL            -- ChangeSetRecord
        );
        CREATE TABLE IF NOT EXISTS {p}exports (
            name      TEXT NOT NULL PRIMARY KEY,
            stack_id  TEXT NOT NULL,
            value     TEXT NOT NULL
        );
        """;

    /// <summary>
    /// A stack's change sets by name (schema 2; on a cluster, step 10 of its history): each deploy makes one (SAM's are
    /// named afresh each time), and finding one scanned them all (42 ms with 20,000).
    /// </summary>
    public const string ChangeSetIndex = "CREATE INDEX IF NOT EXISTS {p}change_sets_by_stack ON {p}change_sets(stack_id, name);\n";

    /// <summary>What the tables' names start with on a cluster's PostgreSQL.</summary>
    public const string PostgresPrefix = "cfn_";

    /// <summary>
    /// The tables of a cluster's database: the schema, and the order rows were first written in (what SQLite's rowid
    /// gives) as an explicit column.
    /// </summary>
    public static string PostgresSchema => Sql.ForPostgres(Schema.Replace("{p}", PostgresPrefix, StringComparison.Ordinal)) + """

        ALTER TABLE cfn_stacks ADD COLUMN IF NOT EXISTS seq BIGSERIAL;
        ALTER TABLE cfn_resources ADD COLUMN IF NOT EXISTS seq BIGSERIAL;
        ALTER TABLE cfn_change_sets ADD COLUMN IF NOT EXISTS seq BIGSERIAL;
        """;

    private const int SchemaVersion = 2;
    private readonly SqliteConnection? _connection; // a single machine's file; null on a cluster node
    private readonly Database? _database;           // a cluster node's PostgreSQL
    private readonly string _nodeId;
    private readonly Lock _lock = new();
    // The tables' names and their insertion order on this node's engine.
    private readonly string _stacks, _resources, _events, _changeSets, _exports, _order;

    public StackStore(IOptions<LaminaOptions> options, Database database)
    {
        _nodeId = options.Value.EffectiveNodeId;
        var prefix = database.IsPostgres ? PostgresPrefix : "";
        (_stacks, _resources, _events, _changeSets, _exports) = (prefix + "stacks", prefix + "resources", prefix + "events", prefix + "change_sets", prefix + "exports");
        _order = database.IsPostgres ? "seq" : "rowid";
        if (database.IsPostgres)
        {
            _database = database; // the schema is the cluster's (Database's step 5)
            return;
        }
        var path = Path.Combine(options.Value.DataDirectory, "cloudformation.db");
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
            Execute("BEGIN;\n" + Schema.Replace("{p}", "", StringComparison.Ordinal) + "PRAGMA user_version = 1;\nCOMMIT;");
        }
        if (current < 2)
        {
            Execute("BEGIN;\n" + ChangeSetIndex.Replace("{p}", "", StringComparison.Ordinal) + "PRAGMA user_version = 2;\nCOMMIT;");
        }
    }

    public void Dispose() => _connection?.Dispose();

    // ---- stacks ---------------------------------------------------------------------------------------------------------

    /// <summary>A stack by name (live ones only) or by id (deleted ones too), as CloudFormation looks them up.</summary>
    public StackRecord? FindStack(string nameOrId)
    {
        var byId = nameOrId.StartsWith("arn:", StringComparison.Ordinal);
        return Query(byId ? $"SELECT stack_json FROM {_stacks} WHERE stack_id = @k;" : $"SELECT stack_json FROM {_stacks} WHERE name = @k AND deleted = 0;",
            reader => Deserialize(reader.GetString(0), StackJsonContext.Default.StackRecord), ("k", nameOrId)).FirstOrDefault();
    }

    /// <summary>Every stack, live ones and deleted ones, newest first.</summary>
    public List<StackRecord> AllStacks() =>
        Query($"SELECT stack_json FROM {_stacks} ORDER BY created_at DESC, {_order} DESC;", reader => Deserialize(reader.GetString(0), StackJsonContext.Default.StackRecord));

    /// <summary>How long a deleted stack stays listed and readable by id: CloudFormation's 90 days.</summary>
    public static readonly TimeSpan DeletedStackRetention = TimeSpan.FromDays(90);

    public void SaveStack(StackRecord stack)
    {
        NonQuery($"""
            INSERT INTO {_stacks} (stack_id, name, deleted, created_at, stack_json) VALUES (@id, @name, @deleted, @created, @json)
            ON CONFLICT (stack_id) DO UPDATE SET deleted = excluded.deleted, stack_json = excluded.stack_json;
            """,
            ("id", stack.StackId), ("name", stack.StackName), ("deleted", stack.DeletedAt is null ? 0L : 1L),
            ("created", stack.CreatedAt.ToString("O", CultureInfo.InvariantCulture)), ("json", JsonSerializer.Serialize(stack, StackJsonContext.Default.StackRecord)));
        if (stack.DeletedAt is { } deletedAt)
        {
            // Each deletion takes the stacks deleted more than 90 days before it with their resources, events and change
            // sets (ON DELETE CASCADE): kept for good, they slowed every ListStacks and DescribeStacks down.
            foreach (var expired in Query($"SELECT stack_json FROM {_stacks} WHERE deleted = 1;", reader => Deserialize(reader.GetString(0), StackJsonContext.Default.StackRecord))
                .Where(s => s.DeletedAt < deletedAt - DeletedStackRetention))
            {
                RemoveStack(expired.StackId);
            }
        }
    }

    /// <summary>Removes a stack and everything of it (a REVIEW_IN_PROGRESS stack whose last change set was deleted).</summary>
    public void RemoveStack(string stackId) => NonQuery($"DELETE FROM {_stacks} WHERE stack_id = @id;", ("id", stackId));

    // ---- resources ------------------------------------------------------------------------------------------------------

    public List<ResourceRecord> Resources(string stackId) =>
        Query($"SELECT resource_json FROM {_resources} WHERE stack_id = @id ORDER BY {_order};", reader => Deserialize(reader.GetString(0), StackJsonContext.Default.ResourceRecord), ("id", stackId));

    public void SaveResource(string stackId, ResourceRecord resource) => NonQuery($"""
        INSERT INTO {_resources} (stack_id, logical_id, resource_json) VALUES (@stack, @logical, @json)
        ON CONFLICT (stack_id, logical_id) DO UPDATE SET resource_json = excluded.resource_json;
        """, ("stack", stackId), ("logical", resource.LogicalId), ("json", JsonSerializer.Serialize(resource, StackJsonContext.Default.ResourceRecord)));

    public void RemoveResource(string stackId, string logicalId) =>
        NonQuery($"DELETE FROM {_resources} WHERE stack_id = @stack AND logical_id = @logical;", ("stack", stackId), ("logical", logicalId));

    // ---- events ---------------------------------------------------------------------------------------------------------

    public void AddEvent(StackEventRecord stackEvent)
    {
        // One event at a time, numbered and committed (on PostgreSQL each write is a transaction of its own, and an
        // operation provisions resources concurrently): an event is visible only once every lower-numbered one is, so
        // a DescribeStackEvents page, which goes on below the last number it listed, never passes one still committing.
        lock (_eventsLock)
        {
            NonQuery($"INSERT INTO {_events} (stack_id, event_json) VALUES (@stack, @json);",
                ("stack", stackEvent.StackId), ("json", JsonSerializer.Serialize(stackEvent, StackJsonContext.Default.StackEventRecord)));
        }
    }

    /// <summary>
    /// A stack's events, newest first, older than the one numbered <paramref name="before"/> (null: from the newest),
    /// each with its number: a page goes on from where the last ended, however many events came meanwhile.
    /// </summary>
    public List<(long Seq, StackEventRecord Event)> Events(string stackId, long? before, int take) =>
        Query($"SELECT seq, event_json FROM {_events} WHERE stack_id = @stack AND seq < @before ORDER BY seq DESC LIMIT @take;",
            reader => (reader.GetInt64(0), Deserialize(reader.GetString(1), StackJsonContext.Default.StackEventRecord)),
            ("stack", stackId), ("before", before ?? long.MaxValue), ("take", (long)take));

    // ---- change sets ----------------------------------------------------------------------------------------------------

    public void SaveChangeSet(ChangeSetRecord changeSet) => NonQuery($"""
        INSERT INTO {_changeSets} (change_set_id, stack_id, name, change_set_json) VALUES (@id, @stack, @name, @json)
        ON CONFLICT (change_set_id) DO UPDATE SET change_set_json = excluded.change_set_json;
        """, ("id", changeSet.ChangeSetId), ("stack", changeSet.StackId), ("name", changeSet.ChangeSetName),
        ("json", JsonSerializer.Serialize(changeSet, StackJsonContext.Default.ChangeSetRecord)));

    public ChangeSetRecord? FindChangeSet(string changeSetId) =>
        Query($"SELECT change_set_json FROM {_changeSets} WHERE change_set_id = @id;", reader => Deserialize(reader.GetString(0), StackJsonContext.Default.ChangeSetRecord), ("id", changeSetId))
            .FirstOrDefault();

    public ChangeSetRecord? FindChangeSet(string stackId, string name) =>
        Query($"SELECT change_set_json FROM {_changeSets} WHERE stack_id = @stack AND name = @name;", reader => Deserialize(reader.GetString(0), StackJsonContext.Default.ChangeSetRecord),
            ("stack", stackId), ("name", name)).FirstOrDefault();

    public List<ChangeSetRecord> ChangeSets(string stackId) =>
        Query($"SELECT change_set_json FROM {_changeSets} WHERE stack_id = @stack ORDER BY {_order};", reader => Deserialize(reader.GetString(0), StackJsonContext.Default.ChangeSetRecord), ("stack", stackId));

    public void DeleteChangeSet(string changeSetId) => NonQuery($"DELETE FROM {_changeSets} WHERE change_set_id = @id;", ("id", changeSetId));

    public void DeleteChangeSets(string stackId) => NonQuery($"DELETE FROM {_changeSets} WHERE stack_id = @stack;", ("stack", stackId));

    // ---- exports --------------------------------------------------------------------------------------------------------

    public List<(string Name, string StackId, string Value)> Exports() =>
        Query($"SELECT name, stack_id, value FROM {_exports} ORDER BY name;", reader => (reader.GetString(0), reader.GetString(1), reader.GetString(2)));

    /// <summary>Replaces a stack's exports with <paramref name="exports"/> in one transaction.</summary>
    public void SetExports(string stackId, IEnumerable<(string Name, string Value)> exports) => Write((connection, transaction) =>
    {
        using (var delete = connection.CreateCommand())
        {
            delete.Transaction = transaction;
            delete.CommandText = $"DELETE FROM {_exports} WHERE stack_id = @stack;";
            delete.Add("stack", stackId);
            delete.ExecuteNonQuery();
        }
        foreach (var (name, value) in exports)
        {
            using var insert = connection.CreateCommand();
            insert.Transaction = transaction;
            insert.CommandText = $"INSERT INTO {_exports} (name, stack_id, value) VALUES (@name, @stack, @value);";
            insert.Add("name", name);
            insert.Add("stack", stackId);
            insert.Add("value", value);
            insert.ExecuteNonQuery();
        }
    });

    // ---- plumbing -------------------------------------------------------------------------------------------------------

    private static T Deserialize<T>(string json, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type) => JsonSerializer.Deserialize(json, type)!;

    private void Execute(string sql)
    {
        lock (_lock)
        {
            using var command = _connection!.CreateCommand();
            command.CommandText = sql;
            command.ExecuteNonQuery();
        }
    }

    private readonly Lock _eventsLock = new();

    /// <summary>
    /// Runs <paramref name="write"/> in a transaction: on the file's connection (under the lock), or on a pooled
    /// connection to the cluster's database after the lease's fence.
    /// </summary>
    private void Write(Action<DbConnection, DbTransaction> write)
    {
        if (_database is { } database)
        {
            using var connection = database.OpenShared();
            using var transaction = connection.BeginTransaction();
            Fence(connection, transaction);
            write(connection, transaction);
            transaction.Commit();
            return;
        }
        lock (_lock)
        {
            using var transaction = _connection!.BeginTransaction();
            write(_connection, transaction);
            transaction.Commit();
        }
    }

    /// <summary>
    /// Locks the lease's row until the transaction ends and checks that this node holds it: the lease cannot pass to
    /// another node meanwhile, and a node that lost it writes nothing.
    /// </summary>
    private void Fence(DbConnection connection, DbTransaction transaction)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = "SELECT 1 FROM cluster_leases WHERE name = @lease AND holder = @node AND expires_at > now() FOR SHARE;";
        command.Add("lease", StackEngine.Lease);
        command.Add("node", _nodeId);
        if (command.ExecuteScalar() is null)
        {
            throw new StackLeaseLostException();
        }
    }

    private void NonQuery(string sql, params (string Name, object Value)[] parameters) => Write((connection, transaction) =>
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            command.Add(name, value);
        }
        command.ExecuteNonQuery();
    });

    private List<T> Query<T>(string sql, Func<DbDataReader, T> read, params (string Name, object Value)[] parameters)
    {
        if (_database is { } database)
        {
            using var connection = database.OpenShared();
            return Read(connection, sql, read, parameters);
        }
        lock (_lock)
        {
            return Read(_connection!, sql, read, parameters);
        }
    }

    private static List<T> Read<T>(DbConnection connection, string sql, Func<DbDataReader, T> read, (string Name, object Value)[] parameters)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            command.Add(name, value);
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

/// <summary>This node no longer holds the <c>cloudformation</c> lease: its stack operations stop, the new holder finishes them.</summary>
internal sealed class StackLeaseLostException() : InvalidOperationException("This node no longer holds the cloudformation lease; the new holder finishes the stack's operation.");
