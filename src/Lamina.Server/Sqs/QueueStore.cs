using System.Collections.Concurrent;
using System.Data.Common;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using Lamina.Server.Hosting;
using Lamina.Server.Storage;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Lamina.Server.Sqs;

/// <summary>A queue's settings (SQS attributes Lamina acts on) and identity.</summary>
internal sealed record QueueInfo(string Name, IReadOnlyDictionary<string, string> Attributes, long CreatedMs, long ModifiedMs)
{
    public bool Fifo => Name.EndsWith(".fifo", StringComparison.Ordinal);
    public int VisibilityTimeout => Int("VisibilityTimeout", 30);
    public int DelaySeconds => Int("DelaySeconds", 0);
    public int WaitTimeSeconds => Int("ReceiveMessageWaitTimeSeconds", 0);
    public int RetentionSeconds => Int("MessageRetentionPeriod", 345_600);
    public int MaximumMessageSize => Int("MaximumMessageSize", 262_144);
    public bool ContentBasedDeduplication => Attributes.TryGetValue("ContentBasedDeduplication", out var v) && v == "true";

    /// <summary>The dead-letter queue's name and after how many receives a message goes there, when a RedrivePolicy is set.</summary>
    public (string Queue, int MaxReceiveCount)? Redrive
    {
        get
        {
            if (!Attributes.TryGetValue("RedrivePolicy", out var text) || text.Length == 0)
            {
                return null;
            }
            using var policy = JsonDocument.Parse(text);
            var arn = policy.RootElement.GetProperty("deadLetterTargetArn").GetString()!;
            var max = policy.RootElement.GetProperty("maxReceiveCount");
            var count = max.ValueKind == JsonValueKind.String ? int.Parse(max.GetString()!, CultureInfo.InvariantCulture) : max.GetInt32();
            return (arn[(arn.LastIndexOf(':') + 1)..], count);
        }
    }

    private int Int(string name, int fallback) =>
        Attributes.TryGetValue(name, out var value) && int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : fallback;
}

/// <summary>A message as ReceiveMessage hands it out.</summary>
internal sealed record QueueMessage(string MessageId, string ReceiptHandle, string Body, string Md5OfBody, string? MessageAttributesJson,
    string? Md5OfMessageAttributes, long SentMs, int ReceiveCount, long FirstReceiveMs, string? GroupId, string? DeduplicationId, long Sequence);

/// <summary>A message to send: its body, attributes (JSON, as the API took them) and FIFO fields.</summary>
internal sealed record OutgoingMessage(string Body, string? MessageAttributesJson, string? Md5OfMessageAttributes, int? DelaySeconds,
    string? GroupId, string? DeduplicationId);

/// <summary>What SendMessage answers: the id, and the FIFO sequence number.</summary>
internal sealed record SentMessage(string MessageId, string Sequence);

/// <summary>
/// Lamina's queues (issue #11): <c>&lt;data&gt;/queues.db</c>, a SQLite file of its own (WAL, <c>synchronous=FULL</c>):
/// a sent message is on disk before SendMessage answers, so a <c>kill -9</c> loses nothing. Receiving hides a message
/// for the visibility timeout and counts the receive; past the redrive policy's <c>maxReceiveCount</c> it moves to
/// the dead-letter queue instead. FIFO queues deliver each message group in order, one batch in flight at a time,
/// and drop duplicates within five minutes. Long polls wait for a send to the queue (or up to a second, for delayed
/// and reappearing messages) rather than spinning.
/// </summary>
/// <remarks>
/// A cluster node (<c>--database postgresql://…</c>, issue #25) keeps the same tables on the cluster's PostgreSQL and
/// runs the same statements there: every node serves every queue. A standard queue's receive claims its messages
/// with <c>FOR UPDATE SKIP LOCKED</c>, so receivers on several nodes never hand out one message twice within its
/// visibility timeout; a FIFO queue's sends and receives take turns on a per-queue advisory lock (group order and
/// deduplication hold across nodes). A send, a message made visible and a queue's change are announced on
/// <see cref="ClusterNode.SqsChannel"/>: the other nodes wake their long polls and reread the queue's settings.
/// </remarks>
internal sealed class QueueStore : IHostedService, IDisposable
{
    public const int MaxWaitSeconds = 20;
    private static readonly TimeSpan DeduplicationWindow = TimeSpan.FromMinutes(5);

    // The tables, in SQLite's words. On a cluster, step 5 of Database's PostgreSQL history creates them from this text
    // (PostgresSchema): a change here is a new step there.
    private const string Schema = """
        CREATE TABLE IF NOT EXISTS queues (
            name         TEXT    NOT NULL PRIMARY KEY,
            attributes   TEXT    NOT NULL,   -- JSON object of the settable attributes
            created_ms   INTEGER NOT NULL,
            modified_ms  INTEGER NOT NULL
        );
        CREATE TABLE IF NOT EXISTS messages (
            seq              INTEGER PRIMARY KEY AUTOINCREMENT,  -- send order (FIFO order, sequence numbers)
            id               TEXT    NOT NULL,
            queue            TEXT    NOT NULL,
            body             TEXT    NOT NULL,
            md5_body         TEXT    NOT NULL,
            attributes       TEXT,                               -- MessageAttributes as sent (JSON)
            md5_attributes   TEXT,
            sent_ms          INTEGER NOT NULL,
            visible_ms       INTEGER NOT NULL,                   -- hidden until (delay, visibility timeout)
            receive_count    INTEGER NOT NULL DEFAULT 0,
            first_receive_ms INTEGER,
            receipt          TEXT,                               -- the latest receive's handle
            group_id         TEXT,
            dedup_id         TEXT
        );
        CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, visible_ms, seq);
        CREATE INDEX IF NOT EXISTS messages_receipt ON messages (receipt);
        CREATE TABLE IF NOT EXISTS deduplication (
            queue       TEXT    NOT NULL,
            dedup_id    TEXT    NOT NULL,
            message_id  TEXT    NOT NULL,
            sequence    INTEGER NOT NULL,
            expires_ms  INTEGER NOT NULL,
            PRIMARY KEY (queue, dedup_id)
        );
        """;

    /// <summary>The tables on a cluster's PostgreSQL.</summary>
    internal static string PostgresSchema => Sql.ForPostgres(Schema);

    /// <summary>
    /// Each queue's messages by age, for retention: a receive finds the expired ones (usually none) without reading the
    /// queue's other messages, as it did through <c>messages_ready</c> (0.2 s a receive with a million messages queued).
    /// A step of its own in the cluster's history (9).
    /// </summary>
    internal const string RetentionIndex = "CREATE INDEX IF NOT EXISTS messages_sent ON messages (queue, sent_ms);";

    /// <summary>
    /// A FIFO queue's messages in send order, so that a receive reads its first candidates rather than sorting every
    /// visible message (0.2 s a receive with half a million queued; a standard queue's receive takes them in the order
    /// they became visible, <c>messages_ready</c>'s own), with their group, so that the messages of groups in flight are
    /// passed over in the index; and deduplication entries by expiry, so that a send removes the expired ones without
    /// reading the live ones. Partial: standard queues' sends do not write it. A step of its own in the cluster's
    /// history (10).
    /// </summary>
    internal const string OrderIndexes = """
        CREATE INDEX IF NOT EXISTS messages_fifo ON messages (queue, seq, group_id) WHERE group_id IS NOT NULL;
        CREATE INDEX IF NOT EXISTS deduplication_expiry ON deduplication (queue, expires_ms);
        """;

    private readonly string _path;
    private readonly TimeProvider _time;
    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly ConcurrentDictionary<string, QueueInfo> _queues = new(StringComparer.Ordinal);
    private readonly Lock _reloadLock = new();
    private readonly ConcurrentDictionary<string, TaskCompletionSource> _sent = new(StringComparer.Ordinal);
    private SqliteConnection? _connection;

    // A cluster node: the cluster's PostgreSQL, a pooled connection per operation; null on a single machine.
    private readonly NpgsqlDataSource? _postgres;
    private readonly ClusterNode? _cluster;

    public QueueStore(IOptions<LaminaOptions> options, TimeProvider time, Database? database = null, ClusterNode? cluster = null)
    {
        _path = Path.Combine(options.Value.DataDirectory, "queues.db");
        _time = time;
        if (database?.Postgres is { } postgres)
        {
            _postgres = postgres;
            _cluster = cluster;
        }
    }

    public void Open()
    {
        if (_postgres is { } postgres)
        {
            using var connection = postgres.OpenConnection();
            LoadAll(connection);
            if (_cluster is { } cluster)
            {
                cluster.Notified += OnNotified;
                cluster.Reconnected += () => _ = Task.Run(() =>
                {
                    // Notifications may have been missed: every queue's settings again, and every long poll looks.
                    try
                    {
                        using var again = postgres.OpenConnection();
                        LoadAll(again);
                    }
                    catch (Exception e) when (Sql.IsPostgresFailure(e))
                    {
                    }
                    foreach (var name in _sent.Keys)
                    {
                        Signal(name);
                    }
                });
            }
            return;
        }
        Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
        _connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = _path, Pooling = false, DefaultTimeout = 30 }.ToString());
        _connection.Open();
        using (var pragmas = _connection.CreateCommand())
        {
            pragmas.CommandText = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;" + Schema + RetentionIndex + OrderIndexes;
            pragmas.ExecuteNonQuery();
        }
        LoadAll(_connection);
    }

    private void LoadAll(DbConnection connection)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        using var select = connection.CreateCommand();
        select.CommandText = "SELECT name, attributes, created_ms, modified_ms FROM queues;";
        using var reader = select.ExecuteReader();
        while (reader.Read())
        {
            var queue = ReadQueue(reader);
            _queues[queue.Name] = queue;
            seen.Add(queue.Name);
        }
        foreach (var name in _queues.Keys.Where(n => !seen.Contains(n)))
        {
            _queues.TryRemove(name, out _);
        }
    }

    private static QueueInfo ReadQueue(DbDataReader reader) => new(reader.GetString(0),
        JsonSerializer.Deserialize(reader.GetString(1), Protocols.LaminaJsonContext.Default.DictionaryStringString)!, reader.GetInt64(2), reader.GetInt64(3));

    /// <summary>Rereads one queue's row (another node created, changed or deleted it); the queue, or null when it is gone.</summary>
    private QueueInfo? Reload(string name)
    {
        // One reread at a time, reading inside the lock: the last to run caches the latest row, whatever order the
        // notifications started them in.
        lock (_reloadLock)
        {
            return ReloadOne(name);
        }
    }

    private QueueInfo? ReloadOne(string name)
    {
        using var connection = _postgres!.OpenConnection();
        using var select = Sql.Positional(connection, "SELECT name, attributes, created_ms, modified_ms FROM queues WHERE name = $1;", name);
        using var reader = select.ExecuteReader();
        if (reader.Read())
        {
            var queue = ReadQueue(reader);
            _queues[name] = queue;
            return queue;
        }
        _queues.TryRemove(name, out _);
        return null;
    }

    private void OnNotified(string channel, string subject)
    {
        if (channel != ClusterNode.SqsChannel || subject.Length < 2)
        {
            return;
        }
        var name = subject[2..];
        if (subject[0] == 'q')
        {
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
                Signal(name);
            });
            return;
        }
        Signal(name);
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        Open();
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose()
    {
        _connection?.Dispose();
        _lock.Dispose();
    }

    /// <summary>
    /// The queue named <paramref name="name"/>. A cluster node that does not know it asks the database (it may have
    /// been created on another node a moment ago, and the notification not have arrived yet).
    /// </summary>
    public bool TryGet(string name, out QueueInfo queue)
    {
        if (_queues.TryGetValue(name, out queue!))
        {
            return true;
        }
        if (_postgres is null)
        {
            return false;
        }
        queue = Reload(name)!;
        return queue is not null;
    }

    public IEnumerable<QueueInfo> Queues => _queues.Values;

    private long Now => _time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>Creates a queue; an existing one with the same attributes is returned as is, different ones are a conflict (null).</summary>
    public async Task<QueueInfo?> CreateAsync(string name, Dictionary<string, string> attributes)
    {
        return await WriteAsync(connection =>
        {
            var now = Now;
            // The table decides, not this node's memory: another node may have created (or deleted) it meanwhile.
            if (Sql.RunPositional(connection, "INSERT INTO queues (name, attributes, created_ms, modified_ms) VALUES ($1, $2, $3, $3) ON CONFLICT (name) DO NOTHING;",
                    name, JsonSerializer.Serialize(attributes, Protocols.LaminaJsonContext.Default.DictionaryStringString), now) > 0)
            {
                Announce(connection, 'q', name);
                return _queues[name] = new QueueInfo(name, attributes, now, now);
            }
            using var select = Sql.Positional(connection, "SELECT name, attributes, created_ms, modified_ms FROM queues WHERE name = $1;", name);
            using var reader = select.ExecuteReader();
            reader.Read();
            var existing = _queues[name] = ReadQueue(reader);
            return attributes.All(a => existing.Attributes.TryGetValue(a.Key, out var v) && v == a.Value) ? existing : null;
        });
    }

    public async Task SetAttributesAsync(string name, Dictionary<string, string> changes)
    {
        await WriteAsync(connection =>
        {
            // Read and written in one transaction (the row locked on PostgreSQL): two nodes' changes both land.
            using (var select = Sql.Positional(connection, "SELECT name, attributes, created_ms, modified_ms FROM queues WHERE name = $1" + (_postgres is null ? ";" : " FOR UPDATE;"), name))
            using (var reader = select.ExecuteReader())
            {
                if (!reader.Read())
                {
                    return 0; // deleted meanwhile
                }
                _queues[name] = ReadQueue(reader);
            }
            var queue = _queues[name];
            var attributes = new Dictionary<string, string>(queue.Attributes, StringComparer.Ordinal);
            foreach (var (key, value) in changes)
            {
                attributes[key] = value;
            }
            var now = Now;
            Sql.RunPositional(connection, "UPDATE queues SET attributes = $2, modified_ms = $3 WHERE name = $1;",
                name, JsonSerializer.Serialize(attributes, Protocols.LaminaJsonContext.Default.DictionaryStringString), now);
            _queues[name] = queue with { Attributes = attributes, ModifiedMs = now };
            Announce(connection, 'q', name);
            return 0;
        });
        Signal(name);
    }

    public async Task DeleteAsync(string name)
    {
        await WriteAsync(connection =>
        {
            Sql.RunPositional(connection, "DELETE FROM messages WHERE queue = $1;", name);
            Sql.RunPositional(connection, "DELETE FROM deduplication WHERE queue = $1;", name);
            Sql.RunPositional(connection, "DELETE FROM queues WHERE name = $1;", name);
            _queues.TryRemove(name, out _);
            Announce(connection, 'q', name);
            return 0;
        });
        Signal(name);
    }

    public Task PurgeAsync(string name) => WriteAsync(connection =>
    {
        Sql.RunPositional(connection, "DELETE FROM messages WHERE queue = $1;", name);
        return 0;
    });

    /// <summary>Sends messages in one transaction (a batch is all on disk, or none of it).</summary>
    public async Task<List<SentMessage>> SendAsync(QueueInfo queue, IReadOnlyList<OutgoingMessage> messages)
    {
        var sent = await WriteAsync(connection =>
        {
            if (queue.Fifo)
            {
                TakeTurn(connection, queue.Name);
            }
            var now = Now;
            if (queue.Fifo)
            {
                // Deduplication entries past their five minutes go a few at a time with each send (more than a send adds).
                Sql.RunPositional(connection, """
                    DELETE FROM deduplication WHERE queue = $1
                       AND dedup_id IN (SELECT dedup_id FROM deduplication WHERE queue = $1 AND expires_ms <= $2 LIMIT 100);
                    """, queue.Name, now);
            }
            var results = new List<SentMessage>(messages.Count);
            foreach (var message in messages)
            {
                if (queue.Fifo && message.DeduplicationId is { } dedup)
                {
                    using var find = Sql.Positional(connection, "SELECT message_id, sequence FROM deduplication WHERE queue = $1 AND dedup_id = $2 AND expires_ms > $3;",
                        queue.Name, dedup, now);
                    using var reader = find.ExecuteReader();
                    if (reader.Read())
                    {
                        results.Add(new SentMessage(reader.GetString(0), Sequence(reader.GetInt64(1))));
                        continue; // a duplicate within five minutes is accepted and dropped
                    }
                }
                var id = Guid.NewGuid().ToString();
                var delay = queue.Fifo ? queue.DelaySeconds : message.DelaySeconds ?? queue.DelaySeconds;
                using var insert = Sql.Positional(connection, """
                    INSERT INTO messages (id, queue, body, md5_body, attributes, md5_attributes, sent_ms, visible_ms, group_id, dedup_id)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING seq;
                    """, id, queue.Name, message.Body, SqsMd5.OfBody(message.Body), message.MessageAttributesJson, message.Md5OfMessageAttributes,
                    now, now + delay * 1000L, message.GroupId, message.DeduplicationId);
                var seq = Convert.ToInt64(insert.ExecuteScalar()!, CultureInfo.InvariantCulture);
                if (queue.Fifo && message.DeduplicationId is { } newDedup)
                {
                    Sql.RunPositional(connection, """
                        INSERT INTO deduplication (queue, dedup_id, message_id, sequence, expires_ms) VALUES ($1, $2, $3, $4, $5)
                        ON CONFLICT (queue, dedup_id) DO UPDATE SET message_id = excluded.message_id, sequence = excluded.sequence, expires_ms = excluded.expires_ms;
                        """, queue.Name, newDedup, id, seq, now + (long)DeduplicationWindow.TotalMilliseconds);
                }
                results.Add(new SentMessage(id, Sequence(seq)));
            }
            Announce(connection, 'm', queue.Name);
            return results;
        });
        Signal(queue.Name);
        return sent;
    }

    /// <summary>
    /// Receives up to <paramref name="max"/> visible messages, hiding them for <paramref name="visibility"/> seconds;
    /// waits up to <paramref name="waitSeconds"/> for one to arrive when none is visible.
    /// </summary>
    public async Task<List<QueueMessage>> ReceiveAsync(string name, int max, int visibility, int waitSeconds, CancellationToken cancellationToken)
    {
        var deadline = _time.GetUtcNow().AddSeconds(waitSeconds);
        while (true)
        {
            var arrived = _sent.GetOrAdd(name, static _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
            if (!_queues.TryGetValue(name, out var queue))
            {
                return [];
            }
            var woken = new List<string>();
            var received = await WriteAsync(connection => ReceiveNow(connection, queue, max, visibility, woken));
            foreach (var other in woken)
            {
                Signal(other);
            }
            var remaining = deadline - _time.GetUtcNow();
            if (received.Count > 0 || remaining <= TimeSpan.Zero || cancellationToken.IsCancellationRequested)
            {
                return received;
            }
            // A send wakes the poll at once; delayed or reappearing messages are seen within a second.
            var wait = remaining < TimeSpan.FromSeconds(1) ? remaining : TimeSpan.FromSeconds(1);
            try
            {
                await arrived.WaitAsync(wait, _time, cancellationToken);
            }
            catch (TimeoutException)
            {
            }
            catch (OperationCanceledException)
            {
                return [];
            }
        }
    }

    private List<QueueMessage> ReceiveNow(DbConnection connection, QueueInfo queue, int max, int visibility, List<string> woken)
    {
        var now = Now;
        if (queue.Fifo)
        {
            TakeTurn(connection, queue.Name);
        }
        // Receivers on other nodes skip the rows this one is claiming (a FIFO queue's receivers take turns instead).
        var skip = _postgres is not null ? " FOR UPDATE SKIP LOCKED" : "";
        var claim = queue.Fifo ? "" : skip;
        // Messages past the retention period are gone, as on SQS: up to 1,000 a receive, and the candidates below skip any
        // left (rows another receiver holds are its to settle: skipped, so that two receivers never wait on each other).
        // The candidates' "sent_ms + 0" keeps SQLite on messages_ready (the visible ones), not messages_sent (all of them).
        var retained = now - queue.RetentionSeconds * 1000L;
        Sql.RunPositional(connection, $"DELETE FROM messages WHERE seq IN (SELECT seq FROM messages WHERE queue = $1 AND sent_ms < $2 LIMIT 1000{skip});",
            queue.Name, retained);
        var candidates = new List<(long Seq, string Id, string Body, string Md5, string? Attributes, string? Md5Attributes, long Sent, int Count, long? First, string? Group, string? Dedup)>();
        // A standard queue's in the order they became visible (best-effort order, as SQS's): messages_ready's order, so
        // the first `max * 4` are read and no more. A FIFO queue's in send order, through messages_fifo ("visible_ms + 0"
        // keeps SQLite on it): the first 1,000 visible of the groups not in flight (a group in flight holds back its own
        // messages only: filtered after the read, 1,000 of a busy group's left the others' behind them undelivered).
        var candidatesWhere = queue.Fifo
            ? """
              queue = $1 AND group_id IS NOT NULL AND visible_ms + 0 <= $2 AND sent_ms + 0 >= $4
                AND group_id NOT IN (SELECT group_id FROM messages WHERE queue = $1 AND visible_ms > $2 AND receive_count > 0 AND group_id IS NOT NULL)
              ORDER BY seq
              """
            : "queue = $1 AND visible_ms <= $2 AND sent_ms + 0 >= $4 ORDER BY visible_ms, seq";
        using (var select = Sql.Positional(connection, $"""
            SELECT seq, id, body, md5_body, attributes, md5_attributes, sent_ms, receive_count, first_receive_ms, group_id, dedup_id
              FROM messages WHERE {candidatesWhere} LIMIT $3{claim};
            """, queue.Name, now, queue.Fifo ? 1000 : max * 4, retained))
        using (var reader = select.ExecuteReader())
        {
            while (reader.Read())
            {
                candidates.Add((reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.IsDBNull(4) ? null : reader.GetString(4),
                    reader.IsDBNull(5) ? null : reader.GetString(5), reader.GetInt64(6), (int)reader.GetInt64(7), reader.IsDBNull(8) ? null : reader.GetInt64(8),
                    reader.IsDBNull(9) ? null : reader.GetString(9), reader.IsDBNull(10) ? null : reader.GetString(10)));
            }
        }
        // FIFO: the groups in flight are not among the candidates (above); a group whose message this receive sends to the
        // dead-letter queue delivers nothing more in it.
        HashSet<string>? blockedGroups = queue.Fifo ? [] : null;
        var redrive = queue.Redrive;
        var result = new List<QueueMessage>();
        string? fifoGroup = null;
        foreach (var c in candidates)
        {
            if (result.Count >= max)
            {
                break;
            }
            if (blockedGroups is not null && c.Group is not null && (blockedGroups.Contains(c.Group) || (fifoGroup is not null && c.Group != fifoGroup)))
            {
                continue; // FIFO: one group per receive, in order, nothing from a group in flight
            }
            if (redrive is { } policy && c.Count >= policy.MaxReceiveCount && _queues.ContainsKey(policy.Queue))
            {
                // Received maxReceiveCount times and back again: off to the dead-letter queue, same id and body.
                Sql.RunPositional(connection, "UPDATE messages SET queue = $2, visible_ms = $3, receipt = NULL WHERE seq = $1;", c.Seq, policy.Queue, now);
                blockedGroups?.Add(c.Group ?? "");
                Announce(connection, 'm', policy.Queue);
                woken.Add(policy.Queue);
                continue;
            }
            var receipt = Convert.ToBase64String(RandomNumberGenerator.GetBytes(48));
            var first = c.First ?? now;
            Sql.RunPositional(connection, "UPDATE messages SET visible_ms = $2, receive_count = receive_count + 1, first_receive_ms = $3, receipt = $4 WHERE seq = $1;",
                c.Seq, now + visibility * 1000L, first, receipt);
            result.Add(new QueueMessage(c.Id, receipt, c.Body, c.Md5, c.Attributes, c.Md5Attributes, c.Sent, c.Count + 1, first, c.Group, c.Dedup, c.Seq));
            fifoGroup ??= queue.Fifo ? c.Group : null;
        }
        return result;
    }

    /// <summary>Deletes the message a receipt handle names; false if none has it (an unknown or stale handle).</summary>
    public Task<bool> DeleteMessageAsync(string queue, string receipt) => WriteAsync(connection =>
        Sql.RunPositional(connection, "DELETE FROM messages WHERE queue = $1 AND receipt = $2;", queue, receipt) > 0);

    /// <summary>Sets how long a received message stays hidden from now; false if the handle names no message in flight.</summary>
    public async Task<bool> ChangeVisibilityAsync(string queue, string receipt, int seconds)
    {
        var changed = await WriteAsync(connection =>
        {
            var changed = Sql.RunPositional(connection, "UPDATE messages SET visible_ms = $3 WHERE queue = $1 AND receipt = $2;", queue, receipt, Now + seconds * 1000L) > 0;
            if (changed && seconds == 0)
            {
                Announce(connection, 'm', queue);
            }
            return changed;
        });
        if (seconds == 0)
        {
            Signal(queue);
        }
        return changed;
    }

    /// <summary>ApproximateNumberOfMessages (visible), …NotVisible (in flight) and …Delayed (not yet sent-visible).</summary>
    public Task<(long Visible, long InFlight, long Delayed)> CountsAsync(string queue) => WriteAsync(connection =>
    {
        // Each count over its own range of messages_ready: the visible ones from the index alone (a filter over the
        // queue's rows read them all: 122 ms for half a million, now 22), the hidden ones (in flight, delayed: few) row by row.
        using var select = Sql.Positional(connection, """
            SELECT (SELECT COUNT(*) FROM messages WHERE queue = $1 AND visible_ms <= $2),
                   (SELECT COUNT(*) FROM messages WHERE queue = $1 AND visible_ms > $2 AND receive_count > 0),
                   (SELECT COUNT(*) FROM messages WHERE queue = $1 AND visible_ms > $2 AND receive_count = 0);
            """, queue, Now);
        using var reader = select.ExecuteReader();
        reader.Read();
        return (reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2));
    });

    private void Signal(string queue)
    {
        if (_sent.TryRemove(queue, out var waiting))
        {
            waiting.TrySetResult();
        }
    }

    /// <summary>A cluster node: tells the others, when the transaction commits, that a queue changed ('q') or has messages to receive ('m').</summary>
    private void Announce(DbConnection connection, char what, string queue)
    {
        if (_cluster is { } cluster)
        {
            // PostgreSQL folds equal notifications of one transaction into one.
            Sql.RunPositional(connection, "SELECT pg_notify('" + ClusterNode.SqsChannel + "', $1);", cluster.Payload(what + ":" + queue));
        }
    }

    /// <summary>A cluster node: a FIFO queue's sends and receives take turns across the nodes (held until the transaction ends).</summary>
    private void TakeTurn(DbConnection connection, string queue)
    {
        if (_postgres is not null)
        {
            Sql.RunPositional(connection, "SELECT pg_advisory_xact_lock(hashtext($1));", "lamina-sqs:" + queue);
        }
    }

    private static string Sequence(long seq) => seq.ToString("D20", CultureInfo.InvariantCulture);

    private async Task<T> WriteAsync<T>(Func<DbConnection, T> work)
    {
        if (_postgres is { } postgres)
        {
            // A pooled connection per operation: the node's receivers and senders run side by side, as other nodes' do.
            await ClusterLock.LeaveIoThread();
            using var shared = postgres.OpenConnection();
            using var sharedTransaction = shared.BeginTransaction();
            var sharedResult = work(shared);
            sharedTransaction.Commit();
            return sharedResult;
        }
        await _lock.WaitAsync();
        try
        {
            var connection = _connection ?? throw new InvalidOperationException("The queue store is not open.");
            using var transaction = connection.BeginTransaction();
            var result = work(connection);
            transaction.Commit();
            return result;
        }
        finally
        {
            _lock.Release();
        }
    }
}
