using System.Collections.Frozen;
using System.Data.Common;
using System.Globalization;
using System.Security.Cryptography;
using Lamina.Server.Hosting;
using Lamina.Server.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Security;

/// <summary>
/// Access keys (<c>./lamina keys create | list | revoke</c>), kept in <c>&lt;data&gt;/keys.db</c> (a SQLite file of its
/// own, mode 0600). The server holds the active keys in memory and looks once a second whether another process (the
/// <c>keys</c> command) changed the file (<c>PRAGMA data_version</c>), so a revocation takes effect within a second and
/// without a restart, and verifying a request never touches the disk.
/// </summary>
/// <remarks>
/// On a cluster (<c>--database postgresql://…</c>) the keys are the cluster's: table <c>access_keys</c> on PostgreSQL
/// (<c>./lamina keys … --database</c> writes it), read by every node once a second, so a key made once signs requests
/// to every node and a revocation reaches them all within a second. A node's own <c>keys.db</c> is not read then.
/// </remarks>
internal sealed partial class AccessKeys : IHostedService, IDisposable
{
    // The table, in SQLite's words (Sql.ForPostgres maps them for a cluster: step 5 of Database's history).
    internal const string Schema = """
        CREATE TABLE IF NOT EXISTS access_keys (
            access_key_id      TEXT NOT NULL PRIMARY KEY,
            secret_access_key  TEXT NOT NULL,   -- SigV4 needs the secret itself to recompute signatures
            account_id         TEXT NOT NULL,
            created_at         TEXT NOT NULL,
            revoked_at         TEXT
        );
        """;

    private readonly string _path;
    private readonly Npgsql.NpgsqlDataSource? _postgres;
    private readonly bool _exposed;
    private readonly TimeProvider _time;
    private readonly ILogger<AccessKeys> _logger;
    private readonly CancellationTokenSource _stopping = new();
    private FrozenDictionary<string, AccessKey> _active = FrozenDictionary<string, AccessKey>.Empty;
    private SqliteConnection? _watch;
    private long _dataVersion = -1;
    private Task? _loop;

    public AccessKeys(IOptions<LaminaOptions> options, TimeProvider time, ILogger<AccessKeys> logger, Database? database = null)
    {
        _path = PathIn(options.Value.DataDirectory);
        _postgres = database?.Postgres;
        _exposed = !LaminaHost.IsLoopback(options.Value.Host);
        Internal = Generate(options.Value.AccountId);
        _time = time;
        _logger = logger;
        Reload(); // before the server listens: whether credentials exist decides what it may bind to
    }

    public static string PathIn(string dataDirectory) => Path.Combine(dataDirectory, "keys.db");

    /// <summary>Whether any active key exists.</summary>
    public bool AnyActive => _active.Count > 0;

    /// <summary>
    /// Whether every request must be signed by an active key: once any exists, and always on a server listening beyond
    /// loopback (it may start there only with keys; revoking the last one must lock it, not open it to the network).
    /// </summary>
    public bool Required => _exposed || _active.Count > 0;

    /// <summary>The active key with this id, or null.</summary>
    public AccessKey? Find(string accessKeyId) =>
        _active.GetValueOrDefault(accessKeyId) ?? (accessKeyId == Internal.AccessKeyId ? Internal : null);

    /// <summary>
    /// The server's own key for its account, made at start and never written anywhere: what the server signs its calls
    /// to its own APIs with (CloudFormation's resource providers), so they pass the same checks as any client's. It does
    /// not count towards <see cref="AnyActive"/>.
    /// </summary>
    public AccessKey Internal { get; }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _loop = WatchAsync();
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        if (_loop is not null)
        {
            await _loop;
        }
    }

    public void Dispose()
    {
        _watch?.Dispose();
        _stopping.Dispose();
    }

    private async Task WatchAsync()
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1), _time);
        try
        {
            while (await timer.WaitForNextTickAsync(_stopping.Token))
            {
                Reload();
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private void Reload()
    {
        if (_postgres is not null)
        {
            ReloadShared(_postgres);
            return;
        }
        try
        {
            if (_watch is null)
            {
                if (!File.Exists(_path))
                {
                    return; // no key was ever created
                }
                _watch = Open(_path);
            }
            using (var version = _watch.CreateCommand())
            {
                version.CommandText = "PRAGMA data_version;";
                var current = (long)version.ExecuteScalar()!;
                if (current == _dataVersion)
                {
                    return;
                }
                _dataVersion = current;
            }
            _active = ReadActive(_watch);
        }
        catch (SqliteException e)
        {
            Log.ReloadFailed(_logger, _path, e.Message);
        }
    }

    // PostgreSQL has no data_version to watch: the active keys are read whole every second (a handful of rows), and
    // replace the set only when it changed.
    private void ReloadShared(Npgsql.NpgsqlDataSource postgres)
    {
        try
        {
            using var connection = postgres.OpenConnection();
            var keys = ReadActive(connection);
            var active = _active;
            if (keys.Count != active.Count || keys.Any(key => !active.TryGetValue(key.Key, out var known) || known != key.Value))
            {
                _active = keys;
            }
        }
        catch (Npgsql.PostgresException e) when (e.SqlState == Npgsql.PostgresErrorCodes.UndefinedTable)
        {
            // A database no node or keys command has prepared yet: no key exists.
        }
        catch (Exception e) when (e is Npgsql.NpgsqlException or TimeoutException)
        {
            Log.ReloadFailed(_logger, "the cluster's database", e.Message);
        }
    }

    private static FrozenDictionary<string, AccessKey> ReadActive(DbConnection connection)
    {
        var keys = new Dictionary<string, AccessKey>(StringComparer.Ordinal);
        using var select = connection.CreateCommand();
        select.CommandText = "SELECT access_key_id, secret_access_key, account_id FROM access_keys WHERE revoked_at IS NULL;";
        using var reader = select.ExecuteReader();
        while (reader.Read())
        {
            keys[reader.GetString(0)] = new AccessKey(reader.GetString(0), reader.GetString(1), reader.GetString(2));
        }
        return keys.ToFrozenDictionary(StringComparer.Ordinal);
    }

    // ---- the `keys` command's side: it works on the file (or the cluster's database) directly, with or without a running server

    /// <summary>Opens (creating) the key file, readable by its owner only.</summary>
    public static SqliteConnection Open(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false, DefaultTimeout = 30 }.ToString());
        connection.Open();
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        using var schema = connection.CreateCommand();
        schema.CommandText = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;" + Schema;
        schema.ExecuteNonQuery();
        return connection;
    }

    /// <summary>A new key for <paramref name="accountId"/>: an id like AWS's (LKIA + 16) and a 40-character secret.</summary>
    public static AccessKey Create(DbConnection connection, string accountId, DateTimeOffset now)
    {
        var key = Generate(accountId);
        Sql.RunPositional(connection, "INSERT INTO access_keys (access_key_id, secret_access_key, account_id, created_at) VALUES ($1, $2, $3, $4);",
            key.AccessKeyId, key.SecretAccessKey, accountId, now.ToString("O", CultureInfo.InvariantCulture));
        return key;
    }

    private static AccessKey Generate(string accountId)
    {
        const string Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        const string SecretAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        return new AccessKey("LKIA" + RandomNumberGenerator.GetString(Alphabet, 16), RandomNumberGenerator.GetString(SecretAlphabet, 40), accountId);
    }

    /// <summary>Every key, without its secret: id, account, created, revoked.</summary>
    public static List<(string Id, string Account, string Created, string? Revoked)> List(DbConnection connection)
    {
        using var select = connection.CreateCommand();
        select.CommandText = "SELECT access_key_id, account_id, created_at, revoked_at FROM access_keys ORDER BY created_at;";
        using var reader = select.ExecuteReader();
        var keys = new List<(string, string, string, string?)>();
        while (reader.Read())
        {
            keys.Add((reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.IsDBNull(3) ? null : reader.GetString(3)));
        }
        return keys;
    }

    /// <summary>Revokes a key; false if there is no such active key.</summary>
    public static bool Revoke(DbConnection connection, string accessKeyId, DateTimeOffset now) =>
        Sql.RunPositional(connection, "UPDATE access_keys SET revoked_at = $2 WHERE access_key_id = $1 AND revoked_at IS NULL;",
            accessKeyId, now.ToString("O", CultureInfo.InvariantCulture)) == 1;

    private static partial class Log
    {
        [LoggerMessage(EventId = Diagnostics.EventIds.AccessKeysReloadFailed, Level = LogLevel.Error, Message = "Could not read the access keys in {Path}: {Reason}; the previous set stays in force")]
        public static partial void ReloadFailed(ILogger logger, string path, string reason);
    }
}

/// <summary>One access key. The secret never leaves the server except once, when the key is created.</summary>
internal sealed record AccessKey(string AccessKeyId, string SecretAccessKey, string AccountId)
{
    /// <summary>Set for temporary credentials (<see cref="SessionCredentials"/>): requests must carry it in <c>X-Amz-Security-Token</c>.</summary>
    public string? SessionToken { get; init; }

    /// <summary>When temporary credentials stop being accepted; null for a long-term key.</summary>
    public DateTimeOffset? Expiration { get; init; }

    public override string ToString() => AccessKeyId; // never the secret, in logs or anywhere else
}
