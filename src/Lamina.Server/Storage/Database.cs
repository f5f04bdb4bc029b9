using System.Globalization;
using System.Text.Json;
using Lamina.Server.Api;
using Lamina.Server.Functions;
using Lamina.Server.Hosting;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Storage;

/// <summary>
/// The embedded SQLite database (<c>&lt;DataDirectory&gt;/lamina.db</c>) and every SQL statement that touches it
/// (DESIGN.md §4: one place per concern, so a PostgreSQL backend stays the same design). WAL journal,
/// <c>synchronous=FULL</c>: a write that returned has reached the disk.
/// </summary>
/// <remarks>
/// A connection is opened per operation; Microsoft.Data.Sqlite pools them, and the per-connection pragmas are
/// re-applied on every open (cheap). Writers wait on SQLite's busy handler up to the command timeout.
/// </remarks>
internal sealed class Database
{
    /// <summary>Version of the schema this server writes; stored in <c>PRAGMA user_version</c>.</summary>
    public const int SchemaVersion = 1;

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
    ];

    private readonly string _connectionString;

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
    }

    public string FilePath { get; }

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
    }

    /// <summary>Every function's <c>$LATEST</c> configuration, for the registry at startup.</summary>
    public List<FunctionConfig> LoadFunctions()
    {
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT config_json FROM functions ORDER BY name;";
        using var reader = command.ExecuteReader();
        var functions = new List<FunctionConfig>();
        while (reader.Read())
        {
            var stored = JsonSerializer.Deserialize(reader.GetString(0), LaminaJsonContext.Default.StoredFunctionConfig)
                ?? throw new InvalidDataException($"A null configuration row in {FilePath}.");
            functions.Add(stored.ToConfig());
        }
        return functions;
    }

    /// <summary>Inserts a new function and its tags in one transaction. False if the name is taken.</summary>
    public async Task<bool> InsertFunctionAsync(FunctionConfig config, IReadOnlyDictionary<string, string> tags, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var transaction = connection.BeginTransaction();

        await using (var insert = connection.CreateCommand())
        {
            insert.Transaction = transaction;
            insert.CommandText = """
                INSERT INTO functions (name, revision_id, code_sha256, config_json, created_at, modified_at)
                VALUES ($name, $revision, $sha, $json, $at, $at)
                ON CONFLICT (name) DO NOTHING;
                """;
            insert.Parameters.AddWithValue("$name", config.Name);
            insert.Parameters.AddWithValue("$revision", config.RevisionId);
            insert.Parameters.AddWithValue("$sha", config.CodeSha256);
            insert.Parameters.AddWithValue("$json", Serialize(config));
            insert.Parameters.AddWithValue("$at", config.LastModified.ToString("O", CultureInfo.InvariantCulture));
            if (await insert.ExecuteNonQueryAsync(cancellationToken) == 0)
            {
                return false;
            }
        }

        foreach (var (key, value) in tags)
        {
            await using var tag = connection.CreateCommand();
            tag.Transaction = transaction;
            tag.CommandText = "INSERT INTO function_tags (function_name, key, value) VALUES ($name, $key, $value);";
            tag.Parameters.AddWithValue("$name", config.Name);
            tag.Parameters.AddWithValue("$key", key);
            tag.Parameters.AddWithValue("$value", value);
            await tag.ExecuteNonQueryAsync(cancellationToken);
        }

        // Durability checkpoint: the function exists once this commit returns (synchronous=FULL).
        await transaction.CommitAsync(cancellationToken);
        return true;
    }

    /// <summary>
    /// Replaces the configuration of <paramref name="config"/>'s function if its stored revision is still
    /// <paramref name="expectedRevisionId"/> (compare-and-swap). False if the row changed or is gone.
    /// </summary>
    public async Task<bool> UpdateFunctionAsync(FunctionConfig config, string expectedRevisionId, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var command = connection.CreateCommand();
        command.CommandText = """
            UPDATE functions
               SET revision_id = $revision, code_sha256 = $sha, config_json = $json, modified_at = $at
             WHERE name = $name AND revision_id = $expected;
            """;
        command.Parameters.AddWithValue("$name", config.Name);
        command.Parameters.AddWithValue("$revision", config.RevisionId);
        command.Parameters.AddWithValue("$sha", config.CodeSha256);
        command.Parameters.AddWithValue("$json", Serialize(config));
        command.Parameters.AddWithValue("$at", config.LastModified.ToString("O", CultureInfo.InvariantCulture));
        command.Parameters.AddWithValue("$expected", expectedRevisionId);
        // One statement is its own transaction; durable when it returns.
        return await command.ExecuteNonQueryAsync(cancellationToken) == 1;
    }

    /// <summary>Deletes a function with its tags. False if there was no such function.</summary>
    public async Task<bool> DeleteFunctionAsync(string name, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var transaction = connection.BeginTransaction();
        await using (var tags = connection.CreateCommand())
        {
            // Explicit rather than relying on ON DELETE CASCADE alone, so an old file without the pragma stays clean.
            tags.Transaction = transaction;
            tags.CommandText = "DELETE FROM function_tags WHERE function_name = $name;";
            tags.Parameters.AddWithValue("$name", name);
            await tags.ExecuteNonQueryAsync(cancellationToken);
        }
        int deleted;
        await using (var function = connection.CreateCommand())
        {
            function.Transaction = transaction;
            function.CommandText = "DELETE FROM functions WHERE name = $name;";
            function.Parameters.AddWithValue("$name", name);
            deleted = await function.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
        return deleted == 1;
    }

    /// <summary>The function's tags (function-level, not per version); empty when none.</summary>
    public async Task<Dictionary<string, string>> LoadTagsAsync(string name, CancellationToken cancellationToken)
    {
        await using var connection = Open();
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT key, value FROM function_tags WHERE function_name = $name ORDER BY key;";
        command.Parameters.AddWithValue("$name", name);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var tags = new Dictionary<string, string>(StringComparer.Ordinal);
        while (await reader.ReadAsync(cancellationToken))
        {
            tags[reader.GetString(0)] = reader.GetString(1);
        }
        return tags;
    }

    private SqliteConnection Open()
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

    private static string Serialize(FunctionConfig config) =>
        JsonSerializer.Serialize(StoredFunctionConfig.From(config), LaminaJsonContext.Default.StoredFunctionConfig);
}

/// <summary>
/// The persisted shape of a <see cref="FunctionConfig"/>, kept apart from the in-memory record so either can change
/// without breaking the other. New members must be optional (old rows lack them).
/// </summary>
internal sealed class StoredFunctionConfig
{
    public string Name { get; set; } = "";
    public string Version { get; set; } = "$LATEST";
    public string Runtime { get; set; } = "";
    public string Role { get; set; } = "";
    public string Handler { get; set; } = "";
    public string Description { get; set; } = "";
    public int Timeout { get; set; } = 3;
    public int MemorySize { get; set; } = 128;
    public int EphemeralStorageSize { get; set; } = 512;
    public string Architecture { get; set; } = "x86_64";
    public Dictionary<string, string>? Environment { get; set; }
    public string CodeSha256 { get; set; } = "";
    public long CodeSize { get; set; }
    public DateTimeOffset LastModified { get; set; }
    public string RevisionId { get; set; } = "";
    public string TracingMode { get; set; } = "PassThrough";
    public string LogFormat { get; set; } = "Text";
    public string? LogGroup { get; set; }
    public string? ApplicationLogLevel { get; set; }
    public string? SystemLogLevel { get; set; }
    public string? DeadLetterTargetArn { get; set; }

    public static StoredFunctionConfig From(FunctionConfig c) => new()
    {
        Name = c.Name,
        Version = c.Version,
        Runtime = c.Runtime,
        Role = c.Role,
        Handler = c.Handler,
        Description = c.Description,
        Timeout = c.Timeout,
        MemorySize = c.MemorySize,
        EphemeralStorageSize = c.EphemeralStorageSize,
        Architecture = c.Architecture,
        Environment = c.EnvironmentVariables.Count == 0 ? null : new Dictionary<string, string>(c.EnvironmentVariables, StringComparer.Ordinal),
        CodeSha256 = c.CodeSha256,
        CodeSize = c.CodeSize,
        LastModified = c.LastModified,
        RevisionId = c.RevisionId,
        TracingMode = c.TracingMode,
        LogFormat = c.LogFormat,
        LogGroup = c.LogGroup,
        ApplicationLogLevel = c.ApplicationLogLevel,
        SystemLogLevel = c.SystemLogLevel,
        DeadLetterTargetArn = c.DeadLetterTargetArn,
    };

    public FunctionConfig ToConfig() => new()
    {
        Name = Name,
        Version = Version,
        Runtime = Runtime,
        Role = Role,
        Handler = Handler,
        Description = Description,
        Timeout = Timeout,
        MemorySize = MemorySize,
        EphemeralStorageSize = EphemeralStorageSize,
        Architecture = Architecture,
        EnvironmentVariables = Environment ?? new Dictionary<string, string>(StringComparer.Ordinal),
        CodeSha256 = CodeSha256,
        CodeSize = CodeSize,
        LastModified = LastModified,
        RevisionId = RevisionId,
        TracingMode = TracingMode,
        LogFormat = LogFormat,
        LogGroup = LogGroup,
        ApplicationLogLevel = ApplicationLogLevel,
        SystemLogLevel = SystemLogLevel,
        DeadLetterTargetArn = DeadLetterTargetArn,
    };
}
