using System.Collections.Frozen;
using System.Globalization;
using System.Security.Cryptography;
using Lamina.Server.Hosting;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Security;

/// <summary>
/// Access keys (<c>./lamina keys create | list | revoke</c>), kept in <c>&lt;data&gt;/keys.db</c> (a SQLite file of its
/// own, mode 0600). The server holds the active keys in memory and looks once a second whether another process (the
/// <c>keys</c> command) changed the file (<c>PRAGMA data_version</c>), so a revocation takes effect within a second and
/// without a restart, and verifying a request never touches the disk.
/// </summary>
internal sealed partial class AccessKeys : IHostedService, IDisposable
{
    private readonly string _path;
    private readonly TimeProvider _time;
    private readonly ILogger<AccessKeys> _logger;
    private readonly CancellationTokenSource _stopping = new();
    private FrozenDictionary<string, AccessKey> _active = FrozenDictionary<string, AccessKey>.Empty;
    private SqliteConnection? _watch;
    private long _dataVersion = -1;
    private Task? _loop;

    public AccessKeys(IOptions<LaminaOptions> options, TimeProvider time, ILogger<AccessKeys> logger)
    {
        _path = PathIn(options.Value.DataDirectory);
        Internal = Generate(options.Value.AccountId);
        _time = time;
        _logger = logger;
        Reload(); // before the server listens: whether credentials exist decides what it may bind to
    }

    public static string PathIn(string dataDirectory) => Path.Combine(dataDirectory, "keys.db");

    /// <summary>True once any active key exists: then every request must be signed by one.</summary>
    public bool Required => _active.Count > 0;

    /// <summary>The active key with this id, or null.</summary>
    public AccessKey? Find(string accessKeyId) =>
        _active.GetValueOrDefault(accessKeyId) ?? (accessKeyId == Internal.AccessKeyId ? Internal : null);

    /// <summary>
    /// The server's own key for its account, made at start and never written anywhere: what the server signs its calls
    /// to its own APIs with (CloudFormation's resource providers), so they pass the same checks as any client's. It does
    /// not count towards <see cref="Required"/>.
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
            var keys = new Dictionary<string, AccessKey>(StringComparer.Ordinal);
            using var select = _watch.CreateCommand();
            select.CommandText = "SELECT access_key_id, secret_access_key, account_id FROM access_keys WHERE revoked_at IS NULL;";
            using var reader = select.ExecuteReader();
            while (reader.Read())
            {
                keys[reader.GetString(0)] = new AccessKey(reader.GetString(0), reader.GetString(1), reader.GetString(2));
            }
            _active = keys.ToFrozenDictionary(StringComparer.Ordinal);
        }
        catch (SqliteException e)
        {
            Log.ReloadFailed(_logger, _path, e.Message);
        }
    }

    // ---- the `keys` command's side: it works on the file directly, with or without a running server ----------------------

    /// <summary>Opens (creating) the key file, readable by its owner only.</summary>
    public static SqliteConnection Open(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false, DefaultTimeout = 30 }.ToString());
        connection.Open();
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        using var schema = connection.CreateCommand();
        schema.CommandText = """
            PRAGMA journal_mode=WAL;
            PRAGMA synchronous=FULL;
            CREATE TABLE IF NOT EXISTS access_keys (
                access_key_id      TEXT NOT NULL PRIMARY KEY,
                secret_access_key  TEXT NOT NULL,   -- SigV4 needs the secret itself to recompute signatures
                account_id         TEXT NOT NULL,
                created_at         TEXT NOT NULL,
                revoked_at         TEXT
            );
            """;
        schema.ExecuteNonQuery();
        return connection;
    }

    /// <summary>A new key for <paramref name="accountId"/>: an id like AWS's (LKIA + 16) and a 40-character secret.</summary>
    public static AccessKey Create(SqliteConnection connection, string accountId, DateTimeOffset now)
    {
        var key = Generate(accountId);
        using var insert = connection.CreateCommand();
        insert.CommandText = "INSERT INTO access_keys (access_key_id, secret_access_key, account_id, created_at) VALUES ($id, $secret, $account, $now);";
        insert.Parameters.AddWithValue("$id", key.AccessKeyId);
        insert.Parameters.AddWithValue("$secret", key.SecretAccessKey);
        insert.Parameters.AddWithValue("$account", accountId);
        insert.Parameters.AddWithValue("$now", now.ToString("O", CultureInfo.InvariantCulture));
        insert.ExecuteNonQuery();
        return key;
    }

    private static AccessKey Generate(string accountId)
    {
        const string Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        const string SecretAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        return new AccessKey("LKIA" + RandomNumberGenerator.GetString(Alphabet, 16), RandomNumberGenerator.GetString(SecretAlphabet, 40), accountId);
    }

    /// <summary>Every key, without its secret: id, account, created, revoked.</summary>
    public static List<(string Id, string Account, string Created, string? Revoked)> List(SqliteConnection connection)
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
    public static bool Revoke(SqliteConnection connection, string accessKeyId, DateTimeOffset now)
    {
        using var update = connection.CreateCommand();
        update.CommandText = "UPDATE access_keys SET revoked_at = $now WHERE access_key_id = $id AND revoked_at IS NULL;";
        update.Parameters.AddWithValue("$id", accessKeyId);
        update.Parameters.AddWithValue("$now", now.ToString("O", CultureInfo.InvariantCulture));
        return update.ExecuteNonQuery() == 1;
    }

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
