using System.Data.Common;
using System.Globalization;
using Lamina.Server.Hosting;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Lamina.Server.Storage;

/// <summary>
/// The control-plane file (<c>&lt;DataDirectory&gt;/lamina.db</c>): its connections and its schema history. The
/// statements on its tables live with the services that own them (Lambda/LambdaStore.cs, EventBridge/EventRules.cs,
/// Sns/TopicStore.cs, Lambda/EventSourceMappings.cs, ApiGateway/ApiRegistry.cs); the schema stays one history here, because one
/// <c>user_version</c> orders every step of it. WAL journal, <c>synchronous=FULL</c>: a write that returned has
/// reached the disk.
/// </summary>
/// <remarks>
/// A connection is opened per operation; Microsoft.Data.Sqlite pools them, and the per-connection pragmas are
/// re-applied on every open (cheap). Writers wait on SQLite's busy handler up to the command timeout.
/// </remarks>
/// <remarks>
/// A cluster node (<c>--database postgresql://…</c>, issue #25) runs the same ordered steps on PostgreSQL (through
/// <see cref="Sql.ForPostgres"/>; the version is kept in <c>lamina_schema</c>), and the stores that are shared across
/// the cluster (Lambda's control plane, the asynchronous queue, EventBridge's buses, rules and schedules, SNS's topics and
/// subscriptions, API Gateway's APIs, keys and usage plans, CloudFormation's stacks) open their connections with <see cref="OpenShared"/>.
/// The stores that keep a file of their own on a single machine (the asynchronous queue, SQS, S3, DynamoDB, durable
/// executions, CloudWatch Logs) have their tables on the cluster's database too, created by <see cref="PostgresOnly"/>'s steps: one
/// history for the whole database, run before any store opens.
/// </remarks>
internal sealed class Database : IAsyncDisposable
{
    /// <summary>Version of the schema this server writes; stored in <c>PRAGMA user_version</c>.</summary>
    public const int SchemaVersion = 11;

    // Each step takes the schema from version i to i + 1. Append, never edit a shipped step.
    private static readonly string[] Migrations =
    [
        """
        CREATE TABLE functions (
            name         TEXT NOT NULL PRIMARY KEY,
            revision_id  TEXT NOT NULL,
            code_sha256  TEXT NOT NULL,  -- base64, as Lambda reports it; the code store key is its hex form
            config_json  TEXT NOT NULL,  -- StoredFunctionConfig: the $LATEST configuration
            created_at   TEXT NOT NULL,
            modified_at  TEXT NOT NULL
        );
        CREATE TABLE function_tags (
            function_name TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
            key           TEXT NOT NULL,
            value         TEXT NOT NULL,
            PRIMARY KEY (function_name, key)
        );
        -- Later issues add function_versions (name, version, config_json), function_aliases, layers, layer_versions.
        """,
        // 2: versions, aliases and layers (issue #4).
        """
        ALTER TABLE functions ADD COLUMN last_version INTEGER NOT NULL DEFAULT 0; -- highest version ever published
        CREATE TABLE function_versions (
            function_name       TEXT    NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
            version             INTEGER NOT NULL,
            source_revision_id  TEXT    NOT NULL,  -- the $LATEST revision it was published from
            config_json         TEXT    NOT NULL,  -- StoredFunctionConfig, Version = "<n>"; never updated
            created_at          TEXT    NOT NULL,
            PRIMARY KEY (function_name, version)
        );
        CREATE TABLE function_aliases (
            function_name       TEXT    NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
            name                TEXT    NOT NULL,
            function_version    TEXT    NOT NULL,  -- $LATEST or a version number
            description         TEXT    NOT NULL,
            additional_version  TEXT,              -- weighted routing: at most one additional version
            additional_weight   REAL,
            revision_id         TEXT    NOT NULL,
            PRIMARY KEY (function_name, name)
        );
        CREATE TABLE layers (
            name          TEXT    NOT NULL PRIMARY KEY,
            last_version  INTEGER NOT NULL          -- kept after every version is deleted: numbers are never reused
        );
        CREATE TABLE layer_versions (
            layer_name    TEXT    NOT NULL REFERENCES layers(name),
            version       INTEGER NOT NULL,
            code_sha256   TEXT    NOT NULL,
            layer_json    TEXT    NOT NULL,         -- StoredLayerVersion
            PRIMARY KEY (layer_name, version)
        );
        """,
        // 3: reserved concurrency (issue #5); NULL = the function uses the unreserved pool.
        """
        ALTER TABLE functions ADD COLUMN reserved_concurrency INTEGER;
        """,
        // 4: provisioned concurrency (issue #5), per published version or alias.
        """
        CREATE TABLE provisioned_concurrency (
            function_name  TEXT    NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
            qualifier      TEXT    NOT NULL,  -- a version number or an alias name
            requested      INTEGER NOT NULL,
            modified_at    TEXT    NOT NULL,  -- ISO 8601, as Lambda reports LastModified
            PRIMARY KEY (function_name, qualifier)
        );
        """,
        // 5: asynchronous invocation settings (issue #6), per qualifier; NULL = the setting is unset.
        """
        CREATE TABLE event_invoke_configs (
            function_name           TEXT    NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
            qualifier               TEXT    NOT NULL,  -- $LATEST, a version number or an alias name
            maximum_retry_attempts  INTEGER,
            maximum_event_age       INTEGER,           -- seconds
            on_success              TEXT,              -- destination ARNs
            on_failure              TEXT,
            modified_at             TEXT    NOT NULL,  -- ISO 8601
            PRIMARY KEY (function_name, qualifier)
        );
        """,
        // 6: resource-based policies (issue #9), per qualifier.
        """
        CREATE TABLE function_policies (
            function_name  TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
            qualifier      TEXT NOT NULL,  -- $LATEST, a version number or an alias name
            revision_id    TEXT NOT NULL,
            statements     TEXT NOT NULL,  -- JSON array of PolicyStatement, in the order they were added
            PRIMARY KEY (function_name, qualifier)
        );
        """,
        // 7: function URLs (issue #10), per qualifier ($LATEST or an alias).
        """
        CREATE TABLE function_urls (
            function_name  TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
            qualifier      TEXT NOT NULL,
            url_id         TEXT NOT NULL UNIQUE,
            auth_type      TEXT NOT NULL,
            cors           TEXT,           -- JSON (CorsDto), NULL without CORS settings
            invoke_mode    TEXT NOT NULL,
            created_at     TEXT NOT NULL,  -- ISO 8601
            modified_at    TEXT NOT NULL,
            PRIMARY KEY (function_name, qualifier)
        );
        """,
        // 8: EventBridge-compatible buses, rules and targets (issue #10); the default bus is implicit.
        """
        CREATE TABLE event_buses (
            name         TEXT NOT NULL PRIMARY KEY,
            description  TEXT,
            created_at   TEXT NOT NULL
        );
        CREATE TABLE event_rules (
            bus            TEXT NOT NULL,
            name           TEXT NOT NULL,
            event_pattern  TEXT,
            schedule       TEXT,
            state          TEXT NOT NULL,
            description    TEXT,
            role_arn       TEXT,
            PRIMARY KEY (bus, name)
        );
        CREATE TABLE event_targets (
            bus     TEXT NOT NULL,
            rule    TEXT NOT NULL,
            id      TEXT NOT NULL,
            target  TEXT NOT NULL,  -- JSON (TargetDto)
            PRIMARY KEY (bus, rule, id),
            FOREIGN KEY (bus, rule) REFERENCES event_rules (bus, name) ON DELETE CASCADE
        );
        """,
        // 9: event source mappings from Lamina's queues (issue #11).
        """
        CREATE TABLE event_source_mappings (
            uuid     TEXT NOT NULL PRIMARY KEY,
            mapping  TEXT NOT NULL   -- JSON (EventSourceMappings.Serialize)
        );
        """,
        // 10: SNS-compatible topics and their subscriptions (issue #11).
        """
        CREATE TABLE topics (
            name        TEXT NOT NULL PRIMARY KEY,
            attributes  TEXT NOT NULL   -- JSON object
        );
        CREATE TABLE subscriptions (
            arn         TEXT NOT NULL PRIMARY KEY,
            topic       TEXT NOT NULL,
            protocol    TEXT NOT NULL,   -- lambda or sqs
            endpoint    TEXT NOT NULL,   -- a function or queue ARN
            attributes  TEXT NOT NULL    -- JSON object: FilterPolicy, FilterPolicyScope, RawMessageDelivery, ...
        );
        """,
        // 11: API Gateway (issue #22): HTTP and REST APIs, their deployments' snapshots, API keys and usage plans.
        """
        CREATE TABLE apigw_apis (
            id        TEXT NOT NULL PRIMARY KEY,
            kind      TEXT NOT NULL,   -- HTTP (apigatewayv2) or REST (apigateway)
            document  TEXT NOT NULL    -- JSON (ApiGateway/StoredHttpApi or StoredRestApi): the API and all in it
        );
        CREATE TABLE apigw_deployments (
            api_id    TEXT NOT NULL REFERENCES apigw_apis(id) ON DELETE CASCADE,
            id        TEXT NOT NULL,
            snapshot  TEXT NOT NULL,   -- JSON (HttpApiSnapshot or RestApiSnapshot): what the deployment serves
            PRIMARY KEY (api_id, id)
        );
        CREATE TABLE apigw_api_keys (
            id        TEXT NOT NULL PRIMARY KEY,
            document  TEXT NOT NULL    -- JSON (ApiKey)
        );
        CREATE TABLE apigw_usage_plans (
            id        TEXT NOT NULL PRIMARY KEY,
            document  TEXT NOT NULL    -- JSON (UsagePlan, with its keys)
        );
        """,
    ];

    // Steps after the shared history that only a cluster's database has (its own tables, never in a node's file).
    private static readonly string[] PostgresOnly =
    [
        // 1: nodes' heartbeats (a node is alive while its row's expiry is ahead), leases of singletons.
        """
        CREATE TABLE cluster_nodes (
            node_id     TEXT   NOT NULL PRIMARY KEY,
            started_at  TIMESTAMPTZ NOT NULL,
            expires_at  TIMESTAMPTZ NOT NULL  -- renewed every second; past it the node's claims go to the others
        );
        CREATE TABLE cluster_leases (
            name        TEXT   NOT NULL PRIMARY KEY,  -- the singleton: 'schedules', 'retention', ...
            holder      TEXT   NOT NULL,
            expires_at  TIMESTAMPTZ NOT NULL
        );
        """,
        // 2: EventBridge on the cluster's database (issue #25): the schedules' plan, kept so that a new holder of the
        // 'schedules' lease takes up where the last one was; and the order targets were put in (SQLite's rowid).
        """
        CREATE TABLE schedule_firings (
            bus      TEXT NOT NULL,
            rule     TEXT NOT NULL,
            next_at  TIMESTAMPTZ NOT NULL,  -- the rule's next planned firing; its holder fires it, then moves it on
            PRIMARY KEY (bus, rule)
        );
        ALTER TABLE event_targets ADD COLUMN seq BIGSERIAL;
        """,
        // 3: provisioned concurrency across nodes (issue #25): what each node holds of each request, for the API's
        // status and counts (summed over the live nodes).
        """
        CREATE TABLE provisioned_allocations (
            node_id        TEXT    NOT NULL,
            function_name  TEXT    NOT NULL,
            qualifier      TEXT    NOT NULL,
            modified_ms    BIGINT  NOT NULL,  -- the request's LastModified: rows of an older request do not count
            allocated      INTEGER NOT NULL,  -- environments initialised and usable on that node
            failure        TEXT,              -- why Init failed there (FAILED)
            PRIMARY KEY (node_id, function_name, qualifier)
        );
        """,
        // 4: durable executions on the cluster's database (issue #25): the log a single machine keeps in durable.db
        // (its tables named durable_executions, durable_operations, durable_events here), run by the holder of the
        // 'durable' lease; and each node's address, to which the others forward durable requests.
        "ALTER TABLE cluster_nodes ADD COLUMN url TEXT;\n" + Sql.ForPostgres(Durable.DurableStore.SchemaNamed(Durable.DurableStore.PostgresPrefix)),
        // 5: the asynchronous queue, SQS, S3 and DynamoDB on the cluster's database (issue #25), each store's tables as
        // it keeps them in its own file on a single machine. Until this step the stores created them at start, so a
        // database an earlier node used has them already (hence IF NOT EXISTS throughout). And the cluster's access
        // keys (a single machine's keys.db), which no earlier node had.
        Async.AsyncEventStore.PostgresSchema + Sqs.QueueStore.PostgresSchema + S3.ObjectStore.PostgresSchema + DynamoDb.DynamoStore.PostgresSchema
            + Sql.ForPostgres(Security.AccessKeys.Schema),
        // 6: CloudFormation on the cluster's database (issue #25): the stacks, resources, events, change sets and exports
        // a single machine keeps in cloudformation.db (named cfn_* here), operated on by the holder of the
        // 'cloudformation' lease.
        CloudFormation.StackStore.PostgresSchema,
        // 7: CloudWatch Logs on the cluster's database (issue #25): the groups, streams, events and subscription filters a
        // single machine keeps in logs.db, written by every node's log writer and read through any node.
        Sql.ForPostgres(Logs.LogStore.Schema),
        // 8: a log stream's events found through its chunks, not an index on (group, stream, id) (issue #19: that index
        // was half the log writer's CPU); a database from step 7 gets one chunk per stream over its events.
        Sql.ForPostgres(Logs.LogStore.ChunksMigration),
        // 9: SQS messages by queue and age, so that retention reads only the expired ones (issue #19's housekeeping audit).
        Sqs.QueueStore.RetentionIndex,
        // 10: the asynchronous queue's events by function and by age (leasing around a paused function and the metrics'
        // oldest event read no backlog), a FIFO queue's messages in send order, deduplication entries by expiry, a
        // stack's change sets by name, the live objects a listing reads (issue #19's audits of what grows with the data
        // stored).
        Async.AsyncEventStore.Indexes + Sqs.QueueStore.OrderIndexes
            + CloudFormation.StackStore.ChangeSetIndex.Replace("{p}", CloudFormation.StackStore.PostgresPrefix, StringComparison.Ordinal)
            + S3.ObjectStore.ListingIndex,
        // 11: durable executions by function and start, and the ended ones by when their retention runs out: an ended
        // execution is read from the store, no longer kept in memory (issue #19's audit of what grows with use).
        Durable.DurableStore.Indexes.Replace("{p}", Durable.DurableStore.PostgresPrefix, StringComparison.Ordinal),
    ];

    private readonly string _connectionString;
    private readonly NpgsqlDataSource? _postgres;

    public Database(IOptions<LaminaOptions> options)
    {
        FilePath = Path.Combine(options.Value.DataDirectory, "lamina.db");
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = FilePath,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Cache = SqliteCacheMode.Private,
            Pooling = true,
            DefaultTimeout = 30,
        }.ToString();
        if (options.Value.Database is { } url)
        {
            if (!PostgresUrl.TryParse(url, out var connectionString, out var error))
            {
                throw new InvalidOperationException($"--database {error}");
            }
            _postgres = NpgsqlDataSource.Create(connectionString);
            var parts = new NpgsqlConnectionStringBuilder(connectionString);
            SharedDescription = $"PostgreSQL {parts.Host}:{parts.Port}/{parts.Database}"; // never the password
        }
        else
        {
            SharedDescription = FilePath;
        }
    }

    public string FilePath { get; }

    /// <summary>Where the shared stores live, for messages: the file, or PostgreSQL's host, port and database.</summary>
    public string SharedDescription { get; }

    /// <summary>Whether the shared stores are on PostgreSQL (a cluster node).</summary>
    public bool IsPostgres => _postgres is not null;

    /// <summary>The cluster's PostgreSQL (null on a single machine).</summary>
    public NpgsqlDataSource? Postgres => _postgres;

    /// <summary>
    /// A connection for the stores a cluster shares: PostgreSQL on a cluster node, else the node's own file (with its
    /// pragmas, as <see cref="Open"/>). Statements use <c>@name</c> parameters (<see cref="Sql.Add(DbCommand, string, object?)"/>).
    /// </summary>
    internal DbConnection OpenShared() => _postgres is { } postgres ? postgres.OpenConnection() : Open();

    /// <summary>
    /// The cluster's schema alone (what <c>./lamina keys --database</c> needs before any node has started): creates or
    /// migrates it, refuses a newer one.
    /// </summary>
    public void InitializeCluster() => InitializePostgres(_postgres ?? throw new InvalidOperationException("not a cluster's database"));

    /// <summary>Runs the schema history on PostgreSQL: the same steps, under a lock so that nodes starting together take turns.</summary>
    private void InitializePostgres(NpgsqlDataSource postgres)
    {
        using var connection = postgres.OpenConnection();
        using var transaction = connection.BeginTransaction();
        // Transaction-scoped: released by the commit. Any constant works.
        Execute(connection, "SELECT pg_advisory_xact_lock(119165703253601);"); // "lamina" in ASCII
        Execute(connection, "CREATE TABLE IF NOT EXISTS lamina_schema (version INTEGER NOT NULL, cluster_version INTEGER NOT NULL);");
        using (var read = new NpgsqlCommand("SELECT version, cluster_version FROM lamina_schema;", connection))
        using (var reader = read.ExecuteReader())
        {
            var (version, clusterVersion) = reader.Read() ? (reader.GetInt32(0), reader.GetInt32(1)) : (-1, 0);
            reader.Close();
            if (version > SchemaVersion || clusterVersion > PostgresOnly.Length)
            {
                throw new InvalidOperationException(
                    $"The database {SharedDescription} has schema version {version}.{clusterVersion}, newer than this server's {SchemaVersion}.{PostgresOnly.Length}; upgrade this node's Lamina.");
            }
            if (version < 0)
            {
                Execute(connection, "INSERT INTO lamina_schema VALUES (0, 0);");
                version = 0;
            }
            for (var step = version; step < SchemaVersion; step++)
            {
                Execute(connection, Sql.ForPostgres(Migrations[step]));
            }
            for (var step = clusterVersion; step < PostgresOnly.Length; step++)
            {
                Execute(connection, PostgresOnly[step]);
            }
            Execute(connection, string.Create(CultureInfo.InvariantCulture, $"UPDATE lamina_schema SET version = {SchemaVersion}, cluster_version = {PostgresOnly.Length};"));
        }
        transaction.Commit();
    }

    private static void Execute(NpgsqlConnection connection, string sql)
    {
        // A schema step may build an index over a large table: it takes what it takes (the nodes wait on the lock).
        using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 0 };
        command.ExecuteNonQuery();
    }

    public ValueTask DisposeAsync() => _postgres?.DisposeAsync() ?? ValueTask.CompletedTask;

    /// <summary>Creates the file and the schema if missing, migrates an older schema, refuses a newer one.</summary>
    public void Initialize()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(FilePath)!);
        using var connection = Open();
        using (var wal = connection.CreateCommand())
        {
            // Persistent in the file: set once, every later connection uses it.
            wal.CommandText = "PRAGMA journal_mode=WAL;";
            wal.ExecuteNonQuery();
        }

        var version = Convert.ToInt32(Scalar(connection, "PRAGMA user_version;"), CultureInfo.InvariantCulture);
        if (version > SchemaVersion)
        {
            throw new InvalidOperationException(
                $"The database {FilePath} has schema version {version}, newer than this server's {SchemaVersion}; run a newer Lamina or point --data elsewhere.");
        }

        for (var step = version; step < SchemaVersion; step++)
        {
            using var transaction = connection.BeginTransaction();
            using var command = connection.CreateCommand();
            command.Transaction = transaction;
            command.CommandText = Migrations[step] + $"\nPRAGMA user_version = {step + 1};";
            command.ExecuteNonQuery();
            transaction.Commit();
        }
        if (_postgres is { } postgres)
        {
            InitializePostgres(postgres);
        }
    }

    /// <summary>A connection to the control-plane file (for the capabilities that keep their own tables in it).</summary>
    internal SqliteConnection Open()
    {
        var connection = new SqliteConnection(_connectionString);
        connection.Open();
        using var pragmas = connection.CreateCommand();
        // Per connection: a pooled connection may be new. FULL fsyncs the WAL on every commit.
        pragmas.CommandText = "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;";
        pragmas.ExecuteNonQuery();
        return connection;
    }

    private static object? Scalar(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return command.ExecuteScalar();
    }

}
