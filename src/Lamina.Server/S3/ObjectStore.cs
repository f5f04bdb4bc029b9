using System.Collections.Concurrent;
using System.Data.Common;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using Lamina.Server.Hosting;
using Lamina.Server.Protocols;
using Lamina.Server.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Lamina.Server.S3;

/// <summary>A bucket: its owner, and the configurations stored on it (each the XML the client sent, normalised).</summary>
internal sealed record Bucket(string Name, string Account, string Region, long CreatedMs, string? Versioning,
    IReadOnlyDictionary<string, string> Tags, string? CorsXml, string? NotificationXml)
{
    public string Arn => $"arn:aws:s3:::{Name}";

    /// <summary>Parsed once per change of the configuration (see <see cref="S3Notifications"/>).</summary>
    public IReadOnlyList<NotificationTarget> Notifications { get; init; } = [];

    public IReadOnlyList<CorsRule> Cors { get; init; } = [];
}

/// <summary>
/// One version of an object (or a delete marker). Unversioned buckets hold one version per key, id <c>null</c>.
/// <paramref name="Headers"/> are the stored representation headers (Content-Type, Cache-Control, …) and the user
/// metadata (<c>x-amz-meta-*</c>) as they came.
/// </summary>
internal sealed record S3Object(string Bucket, string Key, string VersionId, long Sequence, bool IsLatest, bool DeleteMarker, long Size,
    string ETag, long ModifiedMs, string? Blob, IReadOnlyDictionary<string, string> Headers, IReadOnlyDictionary<string, string> Tags,
    string? ChecksumAlgorithm, string? Checksum, string? ChecksumType, IReadOnlyList<long>? PartSizes)
{
    /// <summary>How many parts a multipart upload made it of; 0 for an object written whole.</summary>
    public int PartCount => PartSizes?.Count ?? 0;
}

/// <summary>What PutObject, CopyObject and CompleteMultipartUpload commit: the blob already on disk and its description.</summary>
internal sealed record NewObject(string Key, string Blob, long Size, string ETag, IReadOnlyDictionary<string, string> Headers,
    IReadOnlyDictionary<string, string> Tags, string? ChecksumAlgorithm, string? Checksum, string? ChecksumType, IReadOnlyList<long>? PartSizes);

/// <summary>A multipart upload in progress.</summary>
internal sealed record MultipartUpload(string UploadId, string Bucket, string Key, long InitiatedMs, IReadOnlyDictionary<string, string> Headers,
    IReadOnlyDictionary<string, string> Tags, string? ChecksumAlgorithm, string? ChecksumType);

/// <summary>One uploaded part.</summary>
internal sealed record UploadPart(int PartNumber, long Size, string ETag, long ModifiedMs, string Blob, string? Checksum);

/// <summary>Who caused an event and how, for the notification records (S3's userIdentity, requestParameters, responseElements).</summary>
internal sealed record EventOrigin(string PrincipalId, string SourceIp, string RequestId);

/// <summary>A page of a listing: objects (or versions) and common prefixes, in key order.</summary>
internal sealed record ListPage(List<S3Object> Objects, List<string> CommonPrefixes, bool Truncated, string? NextMarker, string? NextVersionMarker);

/// <summary>
/// Lamina's object storage (issue #20): object bytes as files under <c>&lt;data&gt;/s3/objects/</c>, metadata in
/// <c>&lt;data&gt;/s3/s3.db</c> (SQLite, WAL, <c>synchronous=FULL</c>). An upload streams to <c>s3/tmp/</c>, is
/// fsync'd and renamed into place, and only then is its row committed: an object is on disk before the 200, and a
/// crash leaves either the old object or the new one, never half of one. Files no row names (a crash between the
/// rename and the commit, or after a commit that replaced a version) are removed at startup. Notifications are
/// written to an outbox table in the same transaction as the change they describe, so a crash cannot lose one
/// (<see cref="S3Notifications"/> delivers them).
/// </summary>
/// <remarks>
/// A cluster node (<c>--database postgresql://…</c>, issue #25) keeps the same tables on the cluster's PostgreSQL and
/// runs the same statements there, and the bodies (and the uploads' temporary files, so that the rename stays in one
/// file system) under <c>&lt;--shared-dir&gt;/s3/</c>: every node serves every bucket. Writes of one key take turns on
/// an advisory lock per (bucket, key), so the last to commit is the latest version and a versioned bucket keeps each
/// with its own id; a write reads its bucket's row (locked for share, so a concurrent DeleteBucket waits) rather than
/// this node's cache. A bucket's change is announced on <see cref="ClusterNode.S3Channel"/> and the other nodes reread
/// its row. The outbox is claimed one entry at a time with <c>FOR UPDATE SKIP LOCKED</c>: each event goes to one node,
/// and one that dies mid-delivery leaves it to the others.
/// </remarks>
internal sealed partial class ObjectStore : IHostedService, IDisposable
{
    private readonly string _root;
    // Where objects/ and tmp/ are: _root on a single machine, the shared directory's s3/ on a cluster node.
    private readonly string _bodies;
    private readonly TimeProvider _time;
    private readonly ILogger<ObjectStore> _logger;
    /// <summary>Most writes committed together.</summary>
    private const int MaxBatch = 256;

    private readonly ConcurrentDictionary<string, Bucket> _buckets = new(StringComparer.Ordinal);
    private SqliteConnection? _connection;
    private string? _readConnectionString;
    private GroupCommitWriter? _writer;
    private long _lastVersionMs;

    // A cluster node: the cluster's PostgreSQL, a pooled connection per operation; null on a single machine.
    private readonly NpgsqlDataSource? _postgres;
    private readonly ClusterNode? _cluster;
    private readonly Lock _reloadLock = new();

    // Whether the write running on this thread put an event in the outbox (each write runs on one thread, start to end).
    [ThreadStatic]
    private static bool t_outboxPending;

    public ObjectStore(IOptions<LaminaOptions> options, TimeProvider time, ILogger<ObjectStore> logger, Database? database = null, ClusterNode? cluster = null)
    {
        _root = Path.Combine(options.Value.DataDirectory, "s3");
        _bodies = _root;
        if (database?.Postgres is { } postgres)
        {
            _postgres = postgres;
            _cluster = cluster;
            // Every node reads every body: they live where all nodes mount the same directory (as the code store's).
            _bodies = Path.Combine(options.Value.SharedDirectory ?? options.Value.DataDirectory, "s3");
        }
        _time = time;
        _logger = logger;
    }

    /// <summary>Set by <see cref="S3Notifications"/>: called after a commit that wrote to the outbox.</summary>
    public Action? OutboxWritten { get; set; }

    public string TempDirectory => Path.Combine(_bodies, "tmp");

    public IEnumerable<Bucket> Buckets => _buckets.Values;

    public bool TryGetBucket(string name, out Bucket bucket) => _buckets.TryGetValue(name, out bucket!);

    public long Now => _time.GetUtcNow().ToUnixTimeMilliseconds();

    public Task StartAsync(CancellationToken cancellationToken)
    {
        Open();
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_writer is not null)
        {
            await _writer.CompleteAsync().WaitAsync(cancellationToken);
        }
    }

    // StopAsync has let the writer finish; a store that never started has none.
    public void Dispose() => _connection?.Dispose();

    /// <summary>
    /// The tables on a cluster's PostgreSQL (step 5 of Database's history). Keys compare as bytes, as in SQLite
    /// (listings page by key, and prefixes roll up in that order), not in the database's locale.
    /// </summary>
    internal static string PostgresSchema => Sql.ForPostgres(Schema).Replace(KeyColumn, KeyColumn + " COLLATE \"C\"", StringComparison.Ordinal);

    /// <summary>
    /// What a listing reads: the live objects, by bucket and key (in Schema since; a store from before has
    /// <c>objects_latest</c>, on (bucket, is_latest, key), which made a versioned bucket's listing step over its delete
    /// markers row by row: 190 ms a page behind 50,000 of them, 3 ms now). Cluster step 10.
    /// </summary>
    internal const string ListingIndex = """
        DROP INDEX IF EXISTS objects_latest;
        CREATE INDEX IF NOT EXISTS objects_listed ON objects (bucket, key) WHERE is_latest = 1 AND delete_marker = 0;
        """;

    // The tables, in SQLite's words. On a cluster, step 5 of Database's PostgreSQL history creates them from this text
    // (PostgresSchema): a change here is a new step there.
    private const string Schema = """
        CREATE TABLE IF NOT EXISTS buckets (
            name          TEXT    NOT NULL PRIMARY KEY,
            account       TEXT    NOT NULL,
            region        TEXT    NOT NULL,
            created_ms    INTEGER NOT NULL,
            versioning    TEXT,             -- NULL (never enabled), Enabled, Suspended
            tags          TEXT    NOT NULL, -- JSON object
            cors          TEXT,             -- CORSConfiguration XML
            notification  TEXT              -- NotificationConfiguration XML
        );
        CREATE TABLE IF NOT EXISTS objects (
            seq            INTEGER PRIMARY KEY AUTOINCREMENT,  -- write order: newest version last, S3's sequencer
            bucket         TEXT    NOT NULL,
            key            TEXT    NOT NULL,
            version_id     TEXT    NOT NULL,                   -- 'null' outside versioning
            is_latest      INTEGER NOT NULL,
            delete_marker  INTEGER NOT NULL,
            size           INTEGER NOT NULL,
            etag           TEXT    NOT NULL,                   -- quoted, as S3 sends it
            modified_ms    INTEGER NOT NULL,
            blob           TEXT,                               -- file under objects/, NULL for a delete marker
            headers        TEXT    NOT NULL,                   -- JSON: Content-Type, …, x-amz-meta-*
            tags           TEXT    NOT NULL,                   -- JSON object
            checksum_algorithm TEXT,
            checksum       TEXT,
            checksum_type  TEXT,                               -- FULL_OBJECT or COMPOSITE
            part_sizes     TEXT                                -- a multipart object's part sizes, comma-separated; NULL if written whole
        );
        CREATE UNIQUE INDEX IF NOT EXISTS objects_version ON objects (bucket, key, version_id);
        CREATE INDEX IF NOT EXISTS objects_listed ON objects (bucket, key) WHERE is_latest = 1 AND delete_marker = 0;
        CREATE TABLE IF NOT EXISTS uploads (
            upload_id      TEXT    NOT NULL PRIMARY KEY,
            bucket         TEXT    NOT NULL,
            key            TEXT    NOT NULL,
            initiated_ms   INTEGER NOT NULL,
            headers        TEXT    NOT NULL,
            tags           TEXT    NOT NULL,
            checksum_algorithm TEXT,
            checksum_type  TEXT
        );
        CREATE INDEX IF NOT EXISTS uploads_key ON uploads (bucket, key, initiated_ms);
        CREATE TABLE IF NOT EXISTS parts (
            upload_id    TEXT    NOT NULL,
            part_number  INTEGER NOT NULL,
            size         INTEGER NOT NULL,
            etag         TEXT    NOT NULL,
            modified_ms  INTEGER NOT NULL,
            blob         TEXT    NOT NULL,
            checksum     TEXT,
            PRIMARY KEY (upload_id, part_number)
        );
        CREATE TABLE IF NOT EXISTS outbox (
            seq          INTEGER PRIMARY KEY AUTOINCREMENT,
            destination  TEXT    NOT NULL,  -- a function, queue or topic ARN
            bucket       TEXT    NOT NULL,
            payload      TEXT    NOT NULL,  -- the event JSON
            created_ms   INTEGER NOT NULL
        );
        """;

    public void Open()
    {
        Directory.CreateDirectory(Path.Combine(_bodies, "objects"));
        RemoveTempFiles();
        if (_postgres is { } postgres)
        {
            using var shared = postgres.OpenConnection();
            LoadBuckets(shared);
            RemoveOrphans(shared);
            if (_cluster is { } cluster)
            {
                cluster.Notified += OnNotified;
                cluster.Reconnected += () => _ = Task.Run(() =>
                {
                    // Notifications may have been missed: every bucket again.
                    try
                    {
                        using var again = postgres.OpenConnection();
                        LoadBuckets(again);
                    }
                    catch (Exception e) when (Sql.IsPostgresFailure(e))
                    {
                    }
                });
            }
            return;
        }
        var database = Path.Combine(_root, "s3.db");
        _connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = database, Pooling = false, DefaultTimeout = 30 }.ToString());
        _connection.Open();
        // Reads (GETs, listings) use pooled connections of their own: under WAL they never wait for the writer.
        _readConnectionString = new SqliteConnectionStringBuilder { DataSource = database, Mode = SqliteOpenMode.ReadOnly, Pooling = true, DefaultTimeout = 30 }.ToString();
        Execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;" + Schema + ListingIndex);
        LoadBuckets(_connection);
        RemoveOrphans(_connection);
        _writer = new GroupCommitWriter(_connection, MaxBatch, failure =>
        {
            // A batch that wrote to the outbox wakes the notifier once it is on disk.
            if (t_outboxPending)
            {
                t_outboxPending = false;
                if (failure is null)
                {
                    OutboxWritten?.Invoke();
                }
            }
        });
    }

    private const string KeyColumn = "key            TEXT";

    /// <summary>
    /// Removes the temporary files of uploads that were in flight when the server stopped: nothing refers to them. In a
    /// shared directory another node may be writing one right now: only those untouched for an hour are left over.
    /// </summary>
    private void RemoveTempFiles()
    {
        if (_postgres is null)
        {
            if (Directory.Exists(TempDirectory))
            {
                Directory.Delete(TempDirectory, recursive: true);
            }
            Directory.CreateDirectory(TempDirectory);
            return;
        }
        Directory.CreateDirectory(TempDirectory);
        foreach (var file in new DirectoryInfo(TempDirectory).EnumerateFiles())
        {
            if (IsLeftover(file))
            {
                file.Delete();
            }
        }
    }

    private bool IsLeftover(FileInfo file) => _postgres is null || _time.GetUtcNow().UtcDateTime - file.LastWriteTimeUtc > TimeSpan.FromHours(1);

    private void LoadBuckets(DbConnection connection)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        using var select = Command(connection, "SELECT name, account, region, created_ms, versioning, tags, cors, notification FROM buckets;");
        using var reader = select.ExecuteReader();
        while (reader.Read())
        {
            var bucket = ReadBucket(reader);
            _buckets[bucket.Name] = WithParsed(bucket);
            seen.Add(bucket.Name);
        }
        foreach (var name in _buckets.Keys.Where(n => !seen.Contains(n)))
        {
            _buckets.TryRemove(name, out _);
        }
    }

    private static Bucket ReadBucket(DbDataReader reader) => new(reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.GetInt64(3),
        reader.IsDBNull(4) ? null : reader.GetString(4), Json(reader.GetString(5)),
        reader.IsDBNull(6) ? null : reader.GetString(6), reader.IsDBNull(7) ? null : reader.GetString(7));

    /// <summary>
    /// Deletes blob files that no object version or part names (left by a crash between rename and commit). In a shared
    /// directory another node may have just renamed one and not yet committed its row: only those an hour old go.
    /// </summary>
    private void RemoveOrphans(DbConnection connection)
    {
        var named = new HashSet<string>(StringComparer.Ordinal);
        using (var select = Command(connection, "SELECT blob FROM objects WHERE blob IS NOT NULL UNION ALL SELECT blob FROM parts;"))
        using (var reader = select.ExecuteReader())
        {
            while (reader.Read())
            {
                named.Add(reader.GetString(0));
            }
        }
        var removed = 0;
        foreach (var file in new DirectoryInfo(Path.Combine(_bodies, "objects")).EnumerateFiles("*", SearchOption.AllDirectories))
        {
            if (!named.Contains(file.Name) && IsLeftover(file))
            {
                file.Delete();
                removed++;
            }
        }
        if (removed > 0)
        {
            Log.OrphansRemoved(_logger, removed);
        }
    }

    private static Bucket WithParsed(Bucket bucket) => bucket with
    {
        Notifications = bucket.NotificationXml is { } notification ? S3Notifications.Parse(notification) : [],
        Cors = bucket.CorsXml is { } cors ? CorsRule.Parse(cors) : [],
    };

    // ---- blobs -----------------------------------------------------------------------------------

    /// <summary>Where a blob's bytes are.</summary>
    public string BlobPath(string blob) => Path.Combine(_bodies, "objects", blob[..2], blob);

    /// <summary>A new temporary file for an upload, in the same file system as the blobs (so the rename is atomic).</summary>
    public string NewTempFile() => Path.Combine(TempDirectory, Guid.NewGuid().ToString("N"));

    /// <summary>Moves a complete, flushed temporary file into the blob store and returns its blob id, once the rename is durable.</summary>
    public async Task<string> AdoptAsync(string tempFile)
    {
        var blob = Guid.NewGuid().ToString("N");
        var path = BlobPath(blob);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.Move(tempFile, path);
        await DiskSync.SyncDirectoryAsync(Path.GetDirectoryName(path)!); // the rename is durable once the directory's entry is on disk
        return blob;
    }

    private void DeleteBlobs(IEnumerable<string?> blobs)
    {
        foreach (var blob in blobs)
        {
            if (blob is null)
            {
                continue;
            }
            try
            {
                File.Delete(BlobPath(blob));
            }
            catch (IOException e)
            {
                // Left for the startup sweep.
                Log.DeleteFailed(_logger, blob, e);
            }
        }
    }

    // ---- buckets ---------------------------------------------------------------------------------

    /// <summary>Creates a bucket; the existing one when the name is taken (the caller tells owner from stranger).</summary>
    public Task<(Bucket Bucket, bool Created)> CreateBucketAsync(string name, string account, string region) => WriteAsync(connection =>
    {
        var bucket = new Bucket(name, account, region, Now, null, new Dictionary<string, string>(), null, null);
        if (_postgres is not null)
        {
            // The table decides, not this node's memory: another node may have created (or deleted) it meanwhile.
            if (Run(connection, "INSERT INTO buckets (name, account, region, created_ms, tags) VALUES ($1, $2, $3, $4, '{}') ON CONFLICT (name) DO NOTHING;",
                    name, account, region, bucket.CreatedMs) == 0)
            {
                return (ReadBucketRow(connection, name, lockRow: false) ?? bucket, false);
            }
            _buckets[name] = bucket;
            Announce(connection, name);
            return (bucket, true);
        }
        if (_buckets.TryGetValue(name, out var existing))
        {
            return (existing, false);
        }
        Run(connection, "INSERT INTO buckets (name, account, region, created_ms, tags) VALUES ($1, $2, $3, $4, '{}');", name, account, region, bucket.CreatedMs);
        _buckets[name] = bucket;
        return (bucket, true);
    });

    /// <summary>Deletes an empty bucket: false when it still holds an object version or an upload.</summary>
    public Task<bool> DeleteBucketAsync(string name) => WriteAsync(connection =>
    {
        if (_postgres is not null && ReadBucketRow(connection, name, lockRow: true) is null)
        {
            // Gone already (another node deleted it). Locked otherwise: writes into it that began before wait, the
            // check below sees what they committed, and those that begin after find no bucket.
            return true;
        }
        using (var any = Command(connection, "SELECT EXISTS (SELECT 1 FROM objects WHERE bucket = $1) OR EXISTS (SELECT 1 FROM uploads WHERE bucket = $1);", name))
        {
            if (Convert.ToInt64(any.ExecuteScalar(), CultureInfo.InvariantCulture) != 0)
            {
                return false;
            }
        }
        Run(connection, "DELETE FROM buckets WHERE name = $1;", name);
        _buckets.TryRemove(name, out _);
        Announce(connection, name);
        return true;
    });

    public Task SetVersioningAsync(string name, string status) => UpdateBucketAsync(name, "versioning", status, b => b with { Versioning = status });

    public Task SetTagsAsync(string name, IReadOnlyDictionary<string, string> tags) =>
        UpdateBucketAsync(name, "tags", JsonSerializer.Serialize(new Dictionary<string, string>(tags), LaminaJsonContext.Default.DictionaryStringString), b => b with { Tags = tags });

    public Task SetCorsAsync(string name, string? xml) => UpdateBucketAsync(name, "cors", xml, b => WithParsed(b with { CorsXml = xml }));

    public Task SetNotificationAsync(string name, string? xml) => UpdateBucketAsync(name, "notification", xml, b => WithParsed(b with { NotificationXml = xml }));

    private Task<int> UpdateBucketAsync(string name, string column, string? value, Func<Bucket, Bucket> change) => WriteAsync(connection =>
    {
        if (_postgres is not null)
        {
            // The row, not this node's copy: another node may have changed another of its settings meanwhile.
            if (Run(connection, $"UPDATE buckets SET {column} = $2 WHERE name = $1;", name, value) == 0)
            {
                throw S3Exception.NoSuchBucket(name);
            }
            ReadBucketRow(connection, name, lockRow: false);
            Announce(connection, name);
            return 0;
        }
        if (!_buckets.TryGetValue(name, out var bucket))
        {
            throw S3Exception.NoSuchBucket(name);
        }
        Run(connection, $"UPDATE buckets SET {column} = $2 WHERE name = $1;", name, value);
        _buckets[name] = change(bucket);
        return 0;
    });

    /// <summary>
    /// A cluster node: the bucket's row as committed (<paramref name="lockRow"/>: locked until the transaction ends,
    /// for update), and this node's copy brought up to date with it; null (and no copy) when there is none.
    /// </summary>
    private Bucket? ReadBucketRow(DbConnection connection, string name, bool lockRow)
    {
        using var select = Command(connection, "SELECT name, account, region, created_ms, versioning, tags, cors, notification FROM buckets WHERE name = $1"
            + (lockRow ? " FOR UPDATE;" : ";"), name);
        using var reader = select.ExecuteReader();
        if (!reader.Read())
        {
            _buckets.TryRemove(name, out _);
            return null;
        }
        var row = ReadBucket(reader);
        return _buckets[name] = WithParsed(row);
    }

    /// <summary>
    /// The bucket an object write goes to. A cluster node reads its row, locked for share (a concurrent DeleteBucket
    /// waits for the write): its versioning and notifications as committed, whether or not this node has heard of a
    /// change yet. Reparsed only when they changed.
    /// </summary>
    private Bucket CurrentBucket(DbConnection connection, string name)
    {
        if (_postgres is null)
        {
            return _buckets.TryGetValue(name, out var cached) ? cached : throw S3Exception.NoSuchBucket(name);
        }
        using var select = Command(connection, "SELECT name, account, region, created_ms, versioning, tags, cors, notification FROM buckets WHERE name = $1 FOR SHARE;", name);
        using var reader = select.ExecuteReader();
        if (!reader.Read())
        {
            _buckets.TryRemove(name, out _);
            throw S3Exception.NoSuchBucket(name);
        }
        var row = ReadBucket(reader);
        if (_buckets.TryGetValue(name, out var known) && known.Versioning == row.Versioning && known.NotificationXml == row.NotificationXml && known.CorsXml == row.CorsXml)
        {
            return known;
        }
        return _buckets[name] = WithParsed(row);
    }

    /// <summary>A cluster node: rereads one bucket's row (another node created, changed or deleted it).</summary>
    private void Reload(string name)
    {
        // One reread at a time, reading inside the lock: the last to run caches the latest row, whatever order the
        // notifications started them in.
        lock (_reloadLock)
        {
            using var connection = _postgres!.OpenConnection();
            ReadBucketRow(connection, name, lockRow: false);
        }
    }

    /// <summary>
    /// A cluster node asked for a bucket it does not know: it may have been created on another node a moment ago, and
    /// the notification not have arrived yet, so the database is asked (off the I/O thread). Nothing on a single machine.
    /// </summary>
    public async ValueTask RefreshIfUnknownAsync(string? name)
    {
        if (_postgres is null || name is null || _buckets.ContainsKey(name))
        {
            return;
        }
        await ClusterLock.LeaveIoThread();
        Reload(name);
    }

    private void OnNotified(string channel, string subject)
    {
        if (channel != ClusterNode.S3Channel || !subject.StartsWith("b:", StringComparison.Ordinal))
        {
            return;
        }
        var name = subject[2..];
        _ = Task.Run(() =>
        {
            try
            {
                Reload(name); // off the listening loop: this blocks
            }
            catch (Exception e) when (Sql.IsPostgresFailure(e))
            {
                // Reloaded again when the listener reconnects.
            }
        });
    }

    /// <summary>A cluster node: tells the others, when the transaction commits, that a bucket was created, changed or deleted.</summary>
    private void Announce(DbConnection connection, string bucket)
    {
        if (_cluster is { } cluster)
        {
            Run(connection, "SELECT pg_notify('" + ClusterNode.S3Channel + "', $1);", cluster.Payload("b:" + bucket));
        }
    }

    /// <summary>A cluster node: writes of one key take turns across the nodes (held until the transaction ends).</summary>
    private void TakeTurn(DbConnection connection, string bucket, string key)
    {
        if (_postgres is not null)
        {
            Run(connection, "SELECT pg_advisory_xact_lock(hashtext($1));", "lamina-s3:" + bucket + "/" + key);
        }
    }

    // ---- objects ---------------------------------------------------------------------------------

    /// <summary>The latest version of a key (null when there is none or it is a delete marker), or one version.</summary>
    public Task<S3Object?> GetAsync(string bucket, string key, string? versionId) => ReadAsync(connection =>
    {
        using var select = versionId is null
            ? Command(connection, $"SELECT {Columns} FROM objects WHERE bucket = $1 AND key = $2 AND is_latest = 1;", bucket, key)
            : Command(connection, $"SELECT {Columns} FROM objects WHERE bucket = $1 AND key = $2 AND version_id = $3;", bucket, key, versionId);
        using var reader = select.ExecuteReader();
        return reader.Read() ? ReadObject(reader) : null;
    });

    /// <summary>
    /// Commits a new version of <paramref name="o"/>.Key (the blob is already in place) and its notifications. In a bucket
    /// without versioning the previous version is replaced and its file deleted after the commit. <paramref name="condition"/>
    /// sees the key's latest version inside the write's transaction and may refuse it; a refused or failed write deletes
    /// the new blob.
    /// </summary>
    public async Task<S3Object> PutAsync(Bucket bucket, NewObject o, string eventName, EventOrigin origin, string? completedUpload = null,
        Func<S3Object?, S3Exception?>? condition = null)
    {
        List<string?> garbage = [];
        S3Object stored;
        try
        {
            stored = await WriteAsync(connection => Put(connection, bucket, o, eventName, origin, completedUpload, condition, garbage));
        }
        catch
        {
            DeleteBlobs([o.Blob]);
            throw;
        }
        DeleteBlobs(garbage);
        return stored;
    }

    private S3Object Put(DbConnection connection, Bucket bucket, NewObject o, string eventName, EventOrigin origin, string? completedUpload,
        Func<S3Object?, S3Exception?>? condition, List<string?> garbage)
    {
        TakeTurn(connection, bucket.Name, o.Key);
        var current = CurrentBucket(connection, bucket.Name);
        if (condition is not null)
        {
            using var latest = Command(connection, $"SELECT {Columns} FROM objects WHERE bucket = $1 AND key = $2 AND is_latest = 1;", bucket.Name, o.Key);
            using var reader = latest.ExecuteReader();
            if (condition(reader.Read() ? ReadObject(reader) : null) is { } refused)
            {
                throw refused;
            }
        }
        var versioning = current.Versioning;
        var versionId = versioning == "Enabled" ? NewVersionId() : "null";
        if (versionId == "null")
        {
            garbage.AddRange(RemoveNullVersion(connection, bucket.Name, o.Key));
        }
        Run(connection, "UPDATE objects SET is_latest = 0 WHERE bucket = $1 AND key = $2 AND is_latest = 1;", bucket.Name, o.Key);
        var now = Now;
        using var insert = Command(connection, """
            INSERT INTO objects (bucket, key, version_id, is_latest, delete_marker, size, etag, modified_ms, blob, headers, tags,
                                 checksum_algorithm, checksum, checksum_type, part_sizes)
            VALUES ($1, $2, $3, 1, 0, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING seq;
            """, bucket.Name, o.Key, versionId, o.Size, o.ETag, now, o.Blob, ToJson(o.Headers), ToJson(o.Tags),
            o.ChecksumAlgorithm, o.Checksum, o.ChecksumType, o.PartSizes is null ? null : string.Join(',', o.PartSizes));
        var seq = Convert.ToInt64(insert.ExecuteScalar(), CultureInfo.InvariantCulture);
        if (completedUpload is not null)
        {
            garbage.AddRange(DeleteUpload(connection, completedUpload));
        }
        var written = new S3Object(bucket.Name, o.Key, versionId, seq, true, false, o.Size, o.ETag, now, o.Blob, o.Headers, o.Tags,
            o.ChecksumAlgorithm, o.Checksum, o.ChecksumType, o.PartSizes);
        WriteNotifications(connection, current, eventName, written, origin);
        return written;
    }

    /// <summary>What a delete did: the version it removed or the delete marker it created.</summary>
    public readonly record struct DeleteOutcome(string? VersionId, bool DeleteMarker);

    /// <summary>Deletes the latest version (a delete marker under versioning) or one version; deleting nothing succeeds too, as in S3.</summary>
    public async Task<DeleteOutcome> DeleteAsync(Bucket bucket, string key, string? versionId, EventOrigin origin)
    {
        List<string?> garbage = [];
        var outcome = await WriteAsync(connection =>
        {
            TakeTurn(connection, bucket.Name, key);
            var current = CurrentBucket(connection, bucket.Name);
            if (versionId is not null)
            {
                S3Object? version;
                using (var select = Command(connection, $"SELECT {Columns} FROM objects WHERE bucket = $1 AND key = $2 AND version_id = $3;", bucket.Name, key, versionId))
                using (var reader = select.ExecuteReader())
                {
                    version = reader.Read() ? ReadObject(reader) : null;
                }
                if (version is null)
                {
                    return new DeleteOutcome(versionId, false);
                }
                Run(connection, "DELETE FROM objects WHERE seq = $1;", version.Sequence);
                garbage.Add(version.Blob);
                if (version.IsLatest)
                {
                    Run(connection, "UPDATE objects SET is_latest = 1 WHERE seq = (SELECT MAX(seq) FROM objects WHERE bucket = $1 AND key = $2);", bucket.Name, key);
                }
                WriteNotifications(connection, current, "ObjectRemoved:Delete", version, origin);
                return new DeleteOutcome(versionId, version.DeleteMarker);
            }
            if (current.Versioning is null)
            {
                var removed = RemoveNullVersion(connection, bucket.Name, key);
                garbage.AddRange(removed);
                if (removed.Count > 0)
                {
                    WriteNotifications(connection, current, "ObjectRemoved:Delete", Marker(bucket.Name, key, "null", NextSeq(connection)), origin);
                }
                return new DeleteOutcome(null, false);
            }
            // Under versioning (or suspended): a delete marker becomes the latest version.
            var markerId = current.Versioning == "Enabled" ? NewVersionId() : "null";
            if (markerId == "null")
            {
                garbage.AddRange(RemoveNullVersion(connection, bucket.Name, key));
            }
            Run(connection, "UPDATE objects SET is_latest = 0 WHERE bucket = $1 AND key = $2 AND is_latest = 1;", bucket.Name, key);
            using var insert = Command(connection, """
                INSERT INTO objects (bucket, key, version_id, is_latest, delete_marker, size, etag, modified_ms, blob, headers, tags)
                VALUES ($1, $2, $3, 1, 1, 0, '', $4, NULL, '{}', '{}') RETURNING seq;
                """, bucket.Name, key, markerId, Now);
            var seq = Convert.ToInt64(insert.ExecuteScalar(), CultureInfo.InvariantCulture);
            WriteNotifications(connection, current, "ObjectRemoved:DeleteMarkerCreated", Marker(bucket.Name, key, markerId, seq), origin);
            return new DeleteOutcome(markerId, true);
        });
        DeleteBlobs(garbage);
        return outcome;
    }

    private S3Object Marker(string bucket, string key, string versionId, long seq) =>
        new(bucket, key, versionId, seq, true, true, 0, "", Now, null, new Dictionary<string, string>(), new Dictionary<string, string>(), null, null, null, null);

    /// <summary>
    /// Takes a number of the objects' write order for an event that adds no row (a delete without versioning), so its
    /// sequencer sorts after every earlier write of the key and before every later one, as S3's do.
    /// </summary>
    private long NextSeq(DbConnection connection)
    {
        using var update = _postgres is not null
            ? Command(connection, "SELECT nextval(pg_get_serial_sequence('objects', 'seq'));")
            : Command(connection, "UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = 'objects' RETURNING seq;");
        return Convert.ToInt64(update.ExecuteScalar(), CultureInfo.InvariantCulture);
    }

    private static List<string?> RemoveNullVersion(DbConnection connection, string bucket, string key)
    {
        using var delete = Command(connection, "DELETE FROM objects WHERE bucket = $1 AND key = $2 AND version_id = 'null' RETURNING blob;", bucket, key);
        using var reader = delete.ExecuteReader();
        var blobs = new List<string?>();
        while (reader.Read())
        {
            blobs.Add(reader.IsDBNull(0) ? null : reader.GetString(0));
        }
        return blobs;
    }

    public Task SetObjectTagsAsync(S3Object o, IReadOnlyDictionary<string, string> tags) => WriteAsync(connection =>
        Run(connection, "UPDATE objects SET tags = $2 WHERE seq = $1;", o.Sequence, ToJson(tags)));

    /// <summary>
    /// The latest versions of the keys after <paramref name="after"/> that start with <paramref name="prefix"/>, with keys that
    /// contain <paramref name="delimiter"/> after the prefix rolled up into common prefixes; at most <paramref name="maxKeys"/>
    /// entries (objects and prefixes together), as ListObjects(V2) counts them.
    /// </summary>
    public Task<ListPage> ListAsync(string bucket, string prefix, string? delimiter, string? after, int maxKeys) => ReadAsync(connection =>
    {
        var objects = new List<S3Object>();
        var prefixes = new List<string>();
        var cursor = after is not null && string.CompareOrdinal(after, prefix) >= 0 ? after : null;
        var inclusive = cursor is null ? prefix : null;
        string? lastEntry = null;
        var truncated = false;
        while (!truncated)
        {
            using var select = inclusive is not null
                ? Command(connection, $"SELECT {Columns} FROM objects WHERE bucket = $1 AND is_latest = 1 AND delete_marker = 0 AND key >= $2 ORDER BY key LIMIT 500;", bucket, inclusive)
                : Command(connection, $"SELECT {Columns} FROM objects WHERE bucket = $1 AND is_latest = 1 AND delete_marker = 0 AND key > $2 ORDER BY key LIMIT 500;", bucket, cursor);
            using var reader = select.ExecuteReader();
            var rows = 0;
            string? skipTo = null;
            while (reader.Read())
            {
                rows++;
                var o = ReadObject(reader);
                if (!o.Key.StartsWith(prefix, StringComparison.Ordinal))
                {
                    return new ListPage(objects, prefixes, false, null, null);
                }
                cursor = o.Key;
                inclusive = null;
                string? common = null;
                if (!string.IsNullOrEmpty(delimiter))
                {
                    var at = o.Key.IndexOf(delimiter, prefix.Length, StringComparison.Ordinal);
                    if (at >= 0)
                    {
                        common = o.Key[..(at + delimiter.Length)];
                    }
                }
                if (common is not null)
                {
                    if ((after is null || string.CompareOrdinal(common, after) > 0) && (prefixes.Count == 0 || prefixes[^1] != common))
                    {
                        if (objects.Count + prefixes.Count == maxKeys)
                        {
                            truncated = true;
                            break;
                        }
                        prefixes.Add(common);
                        lastEntry = common;
                    }
                    // Every key under this prefix rolls up into it: jump past them all.
                    if (common[^1] < char.MaxValue && !char.IsSurrogate(common[^1]))
                    {
                        skipTo = common[..^1] + (char)(common[^1] + 1);
                        break;
                    }
                    continue;
                }
                if (objects.Count + prefixes.Count == maxKeys)
                {
                    truncated = true;
                    break;
                }
                objects.Add(o);
                lastEntry = o.Key;
            }
            if (skipTo is not null)
            {
                inclusive = skipTo;
                continue;
            }
            if (rows < 500)
            {
                break;
            }
        }
        return new ListPage(objects, prefixes, truncated, truncated ? lastEntry : null, null);
    });

    /// <summary>Every version and delete marker, by key and newest first, after (<paramref name="keyMarker"/>, <paramref name="versionMarker"/>).</summary>
    public Task<ListPage> ListVersionsAsync(string bucket, string prefix, string? delimiter, string? keyMarker, string? versionMarker, int maxKeys) => ReadAsync(connection =>
    {
        var objects = new List<S3Object>();
        var prefixes = new List<string>();
        using var select = Command(connection, $"SELECT {Columns} FROM objects WHERE bucket = $1 AND key >= $2 ORDER BY key, seq DESC;", bucket, keyMarker is not null && string.CompareOrdinal(keyMarker, prefix) > 0 ? keyMarker : prefix);
        using var reader = select.ExecuteReader();
        var pastMarker = keyMarker is null;
        long? markerSeq = null;
        while (reader.Read())
        {
            var o = ReadObject(reader);
            if (!o.Key.StartsWith(prefix, StringComparison.Ordinal))
            {
                break;
            }
            if (!pastMarker)
            {
                if (o.Key == keyMarker)
                {
                    if (versionMarker is null)
                    {
                        continue;
                    }
                    if (markerSeq is null)
                    {
                        if (o.VersionId == versionMarker)
                        {
                            markerSeq = o.Sequence;
                        }
                        continue;
                    }
                }
                pastMarker = o.Key != keyMarker || markerSeq is not null;
                if (!pastMarker)
                {
                    continue;
                }
            }
            if (!string.IsNullOrEmpty(delimiter) && o.Key.IndexOf(delimiter, prefix.Length, StringComparison.Ordinal) is var at and >= 0)
            {
                var common = o.Key[..(at + delimiter.Length)];
                if ((prefixes.Count == 0 || prefixes[^1] != common) && (keyMarker is null || string.CompareOrdinal(common, keyMarker) > 0))
                {
                    if (objects.Count + prefixes.Count == maxKeys)
                    {
                        return new ListPage(objects, prefixes, true, prefixes[^1], null);
                    }
                    prefixes.Add(common);
                }
                continue;
            }
            if (objects.Count + prefixes.Count == maxKeys)
            {
                var last = objects.Count > 0 ? objects[^1] : null;
                return new ListPage(objects, prefixes, true, last?.Key ?? prefixes[^1], last?.VersionId);
            }
            objects.Add(o);
        }
        return new ListPage(objects, prefixes, false, null, null);
    });

    // ---- multipart uploads -----------------------------------------------------------------------

    public Task<MultipartUpload> CreateUploadAsync(string bucket, string key, IReadOnlyDictionary<string, string> headers,
        IReadOnlyDictionary<string, string> tags, string? checksumAlgorithm, string? checksumType) => WriteAsync(connection =>
    {
        var upload = new MultipartUpload(Convert.ToBase64String(RandomNumberGenerator.GetBytes(36)).Replace('+', '-').Replace('/', '_'),
            bucket, key, Now, headers, tags, checksumAlgorithm, checksumType);
        Run(connection, "INSERT INTO uploads (upload_id, bucket, key, initiated_ms, headers, tags, checksum_algorithm, checksum_type) VALUES ($1, $2, $3, $4, $5, $6, $7, $8);",
            upload.UploadId, bucket, key, upload.InitiatedMs, ToJson(headers), ToJson(tags), checksumAlgorithm, checksumType);
        return upload;
    });

    public Task<MultipartUpload?> GetUploadAsync(string bucket, string key, string uploadId) => ReadAsync(connection =>
    {
        using var select = Command(connection, "SELECT upload_id, bucket, key, initiated_ms, headers, tags, checksum_algorithm, checksum_type FROM uploads WHERE upload_id = $1 AND bucket = $2 AND key = $3;",
            uploadId, bucket, key);
        using var reader = select.ExecuteReader();
        return reader.Read() ? ReadUpload(reader) : null;
    });

    /// <summary>
    /// Up to <paramref name="take"/> uploads under <paramref name="prefix"/> in S3's order (key, then initiation),
    /// after the markers: those of <paramref name="keyMarker"/> initiated after <paramref name="uploadIdMarker"/> (all
    /// of that key's when the marker upload is gone: the ones before it were completed or aborted too, as a paging
    /// cleanup does), then the later keys. A range of <c>uploads_key</c> from the marker (or the prefix), to the end of
    /// the prefix when its last character is ASCII (else the prefix test alone ends it), however many the bucket holds.
    /// </summary>
    public Task<List<MultipartUpload>> ListUploadsAsync(string bucket, string prefix, string keyMarker, string uploadIdMarker, int take) => ReadAsync(connection =>
    {
        List<object?> values = [bucket, prefix, (long)take];
        string Parameter(object? value)
        {
            values.Add(value);
            return "$" + values.Count.ToString(CultureInfo.InvariantCulture);
        }
        var where = new System.Text.StringBuilder("bucket = $1 AND key >= $2 AND substr(key, 1, length($2)) = $2");
        if (prefix.Length > 0 && prefix[^1] < 0x7F)
        {
            // The first key past all that start with the prefix (keys compare bytewise on both engines).
            where.Append(" AND key < ").Append(Parameter(string.Concat(prefix.AsSpan(0, prefix.Length - 1), ((char)(prefix[^1] + 1)).ToString())));
        }
        if (keyMarker.Length > 0)
        {
            // The range starts at the marker: after its key, or within it after the marker upload.
            var key = Parameter(keyMarker);
            where.Append(uploadIdMarker.Length == 0 ? " AND key > " : " AND key >= ").Append(key);
            if (uploadIdMarker.Length > 0)
            {
                using var marker = Command(connection, "SELECT initiated_ms FROM uploads WHERE upload_id = $1 AND bucket = $2 AND key = $3;", uploadIdMarker, bucket, keyMarker);
                if (marker.ExecuteScalar() is long initiated)
                {
                    var (at, id) = (Parameter(initiated), Parameter(uploadIdMarker));
                    where.Append(CultureInfo.InvariantCulture, $" AND (key > {key} OR initiated_ms > {at} OR (initiated_ms = {at} AND upload_id > {id}))");
                }
            }
        }
        using var select = Command(connection, $"""
            SELECT upload_id, bucket, key, initiated_ms, headers, tags, checksum_algorithm, checksum_type FROM uploads
            WHERE {where} ORDER BY key, initiated_ms, upload_id LIMIT $3;
            """, [.. values]);
        using var reader = select.ExecuteReader();
        var uploads = new List<MultipartUpload>();
        while (reader.Read())
        {
            uploads.Add(ReadUpload(reader));
        }
        return uploads;
    });

    /// <summary>Stores a part (replacing an earlier upload of the same number); false when the upload is gone.</summary>
    public async Task<bool> PutPartAsync(string uploadId, UploadPart part)
    {
        List<string?> garbage = [];
        var stored = await WriteAsync(connection =>
        {
            // A cluster node locks the upload for share: an abort or completion on another node waits for this part,
            // and then removes it with the others.
            using (var exists = Command(connection, "SELECT 1 FROM uploads WHERE upload_id = $1" + (_postgres is null ? ";" : " FOR SHARE;"), uploadId))
            {
                if (exists.ExecuteScalar() is null)
                {
                    garbage.Add(part.Blob);
                    return false;
                }
            }
            using (var old = Command(connection, "DELETE FROM parts WHERE upload_id = $1 AND part_number = $2 RETURNING blob;", uploadId, part.PartNumber))
            {
                garbage.Add(old.ExecuteScalar() as string);
            }
            Run(connection, "INSERT INTO parts (upload_id, part_number, size, etag, modified_ms, blob, checksum) VALUES ($1, $2, $3, $4, $5, $6, $7);",
                uploadId, part.PartNumber, part.Size, part.ETag, part.ModifiedMs, part.Blob, part.Checksum);
            return true;
        });
        DeleteBlobs(garbage);
        return stored;
    }

    public Task<List<UploadPart>> ListPartsAsync(string uploadId) => ReadAsync(connection =>
    {
        using var select = Command(connection, "SELECT part_number, size, etag, modified_ms, blob, checksum FROM parts WHERE upload_id = $1 ORDER BY part_number;", uploadId);
        using var reader = select.ExecuteReader();
        var parts = new List<UploadPart>();
        while (reader.Read())
        {
            parts.Add(new UploadPart((int)reader.GetInt64(0), reader.GetInt64(1), reader.GetString(2), reader.GetInt64(3), reader.GetString(4), reader.IsDBNull(5) ? null : reader.GetString(5)));
        }
        return parts;
    });

    public async Task<bool> AbortUploadAsync(string uploadId)
    {
        List<string?> garbage = [];
        var found = await WriteAsync(connection =>
        {
            using (var exists = Command(connection, "SELECT 1 FROM uploads WHERE upload_id = $1;", uploadId))
            {
                if (exists.ExecuteScalar() is null)
                {
                    return false;
                }
            }
            garbage.AddRange(DeleteUpload(connection, uploadId));
            return true;
        });
        DeleteBlobs(garbage);
        return found;
    }

    private List<string?> DeleteUpload(DbConnection connection, string uploadId)
    {
        if (_postgres is not null)
        {
            // Parts being stored on other nodes (they lock the upload for share) are committed first, and deleted here.
            Run(connection, "SELECT 1 FROM uploads WHERE upload_id = $1 FOR UPDATE;", uploadId);
        }
        var blobs = new List<string?>();
        using (var delete = Command(connection, "DELETE FROM parts WHERE upload_id = $1 RETURNING blob;", uploadId))
        using (var reader = delete.ExecuteReader())
        {
            while (reader.Read())
            {
                blobs.Add(reader.GetString(0));
            }
        }
        Run(connection, "DELETE FROM uploads WHERE upload_id = $1;", uploadId);
        return blobs;
    }

    // ---- notifications outbox ---------------------------------------------------------------------

    /// <summary>An event waiting to be delivered to its destination.</summary>
    public sealed record OutboxEntry(long Seq, string Destination, string Bucket, string Payload);

    private void WriteNotifications(DbConnection connection, Bucket bucket, string eventName, S3Object o, EventOrigin origin)
    {
        var wrote = false;
        foreach (var target in bucket.Notifications)
        {
            if (!target.Matches(eventName, o.Key))
            {
                continue;
            }
            var payload = target.Kind == "EventBridge"
                ? S3Notifications.EventBridgeEvent(bucket, eventName, o, origin, _time.GetUtcNow())
                : S3Notifications.EventRecord(bucket, target.Id, eventName, o, origin, Now);
            Run(connection, "INSERT INTO outbox (destination, bucket, payload, created_ms) VALUES ($1, $2, $3, $4);", target.Arn, bucket.Name, payload, Now);
            wrote = true;
        }
        if (wrote)
        {
            t_outboxPending = true;
        }
    }

    /// <summary>Queues an event that belongs to no object change (s3:TestEvent) for delivery.</summary>
    public Task EnqueueAsync(string destination, string bucket, string payload) => WriteAsync(connection =>
    {
        Run(connection, "INSERT INTO outbox (destination, bucket, payload, created_ms) VALUES ($1, $2, $3, $4);", destination, bucket, payload, Now);
        t_outboxPending = true;
        return 0;
    });

    public Task<List<OutboxEntry>> PendingAsync(int limit) => ReadAsync(connection =>
    {
        using var select = Command(connection, "SELECT seq, destination, bucket, payload FROM outbox ORDER BY seq LIMIT $1;", limit);
        using var reader = select.ExecuteReader();
        var entries = new List<OutboxEntry>();
        while (reader.Read())
        {
            entries.Add(new OutboxEntry(reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetString(3)));
        }
        return entries;
    });

    public Task DeliveredAsync(long seq) => WriteAsync(connection => Run(connection, "DELETE FROM outbox WHERE seq = $1;", seq));

    /// <summary>
    /// Delivers up to <paramref name="limit"/> outbox entries, oldest first, deleting each once delivered; how many
    /// there were. A cluster node claims each in a transaction of its own (<c>FOR UPDATE SKIP LOCKED</c>) held across
    /// its delivery: the other nodes' notifiers pass it by, and if this node dies before the delete commits, the entry
    /// is theirs again (at least once, never lost).
    /// </summary>
    public async Task<int> DeliverPendingAsync(int limit, Func<OutboxEntry, Task> deliver)
    {
        if (_postgres is not { } postgres)
        {
            var pending = await PendingAsync(limit);
            foreach (var entry in pending)
            {
                await deliver(entry);
                await DeliveredAsync(entry.Seq);
            }
            return pending.Count;
        }
        var delivered = 0;
        while (delivered < limit)
        {
            await ClusterLock.LeaveIoThread();
            await using var connection = postgres.OpenConnection();
            await using var transaction = connection.BeginTransaction();
            OutboxEntry entry;
            using (var select = Command(connection, "SELECT seq, destination, bucket, payload FROM outbox ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED;"))
            using (var reader = select.ExecuteReader())
            {
                if (!reader.Read())
                {
                    break;
                }
                entry = new OutboxEntry(reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetString(3));
            }
            await deliver(entry);
            await ClusterLock.LeaveIoThread();
            Run(connection, "DELETE FROM outbox WHERE seq = $1;", entry.Seq);
            transaction.Commit();
            delivered++;
        }
        return delivered;
    }

    // ---- plumbing --------------------------------------------------------------------------------

    private const string Columns = "bucket, key, version_id, seq, is_latest, delete_marker, size, etag, modified_ms, blob, headers, tags, checksum_algorithm, checksum, checksum_type, part_sizes";

    private static S3Object ReadObject(DbDataReader r) => new(r.GetString(0), r.GetString(1), r.GetString(2), r.GetInt64(3), r.GetInt64(4) != 0,
        r.GetInt64(5) != 0, r.GetInt64(6), r.GetString(7), r.GetInt64(8), r.IsDBNull(9) ? null : r.GetString(9), Json(r.GetString(10)), Json(r.GetString(11)),
        r.IsDBNull(12) ? null : r.GetString(12), r.IsDBNull(13) ? null : r.GetString(13), r.IsDBNull(14) ? null : r.GetString(14),
        r.IsDBNull(15) ? null : r.GetString(15).Split(',').Select(size => long.Parse(size, CultureInfo.InvariantCulture)).ToArray());

    private static MultipartUpload ReadUpload(DbDataReader r) => new(r.GetString(0), r.GetString(1), r.GetString(2), r.GetInt64(3),
        Json(r.GetString(4)), Json(r.GetString(5)), r.IsDBNull(6) ? null : r.GetString(6), r.IsDBNull(7) ? null : r.GetString(7));

    private static Dictionary<string, string> Json(string text) =>
        JsonSerializer.Deserialize(text, LaminaJsonContext.Default.DictionaryStringString) ?? new Dictionary<string, string>();

    private static string ToJson(IReadOnlyDictionary<string, string> values) =>
        JsonSerializer.Serialize(values as Dictionary<string, string> ?? new Dictionary<string, string>(values), LaminaJsonContext.Default.DictionaryStringString);

    /// <summary>Whether <paramref name="id"/> has the form of the ids <see cref="NewVersionId"/> makes.</summary>
    public static bool IsVersionId(string id) => id.Length == 32 && id.All(char.IsAsciiHexDigitLower);

    /// <summary>Version ids that sort by creation time (S3's are opaque; these are too, 32 URL-safe characters).</summary>
    private string NewVersionId()
    {
        var ms = Math.Max(Now, _lastVersionMs + 1);
        _lastVersionMs = ms;
        return ms.ToString("x12", CultureInfo.InvariantCulture) + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(10));
    }

    /// <summary>A read on a pooled read-only connection (WAL: it sees the last commit and never waits for the writer).</summary>
    private Task<T> ReadAsync<T>(Func<DbConnection, T> work)
    {
        if (_postgres is { } postgres)
        {
            return ReadSharedAsync(postgres, work);
        }
        using var connection = new SqliteConnection(_readConnectionString ?? throw new InvalidOperationException("The object store is not open."));
        connection.Open();
        return Task.FromResult(work(connection));
    }

    /// <summary>A cluster node's read: a pooled connection, off the I/O thread (the statements block).</summary>
    private static async Task<T> ReadSharedAsync<T>(NpgsqlDataSource postgres, Func<DbConnection, T> work)
    {
        await ClusterLock.LeaveIoThread();
        using var connection = postgres.OpenConnection();
        return work(connection);
    }

    /// <summary>
    /// A write, committed with whatever else waits (group commit); it completes once it is on disk. A cluster node's
    /// runs in a transaction of its own on a pooled connection, off the I/O thread, side by side with its other writes
    /// (those of one key take turns, see <see cref="TakeTurn"/>).
    /// </summary>
    private Task<T> WriteAsync<T>(Func<DbConnection, T> work) => _postgres is { } postgres
        ? WriteSharedAsync(postgres, work)
        : (_writer ?? throw new InvalidOperationException("The object store is not open.")).WriteAsync(scope => work(scope.Connection));

    private async Task<T> WriteSharedAsync<T>(NpgsqlDataSource postgres, Func<DbConnection, T> work)
    {
        await ClusterLock.LeaveIoThread();
        T result;
        t_outboxPending = false;
        try
        {
            using var connection = postgres.OpenConnection();
            using var transaction = connection.BeginTransaction();
            result = work(connection);
            transaction.Commit();
        }
        catch
        {
            t_outboxPending = false;
            throw;
        }
        if (t_outboxPending)
        {
            // This node's notifier claims the new entries at once (the others' look every few seconds).
            t_outboxPending = false;
            OutboxWritten?.Invoke();
        }
        return result;
    }

    private static DbCommand Command(DbConnection connection, string sql, params object?[] values) => Sql.Positional(connection, sql, values);

    private static int Run(DbConnection connection, string sql, params object?[] values) => Sql.RunPositional(connection, sql, values);

    private void Execute(string sql)
    {
        using var command = _connection!.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }


    private static partial class Log
    {
        [LoggerMessage(Diagnostics.EventIds.S3OrphansRemoved, LogLevel.Information, "Removed {Count} object files no object or part refers to (left by an interrupted write)")]
        public static partial void OrphansRemoved(ILogger logger, int count);

        [LoggerMessage(Diagnostics.EventIds.S3DeleteFailed, LogLevel.Warning, "Could not delete object file {Blob}; the next start removes it")]
        public static partial void DeleteFailed(ILogger logger, string blob, Exception error);
    }
}
