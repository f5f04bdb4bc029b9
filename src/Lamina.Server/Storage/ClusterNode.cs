using Lamina.Server.Diagnostics;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Lamina.Server.Storage;

/// <summary>
/// This node's membership of a cluster (<c>--database postgresql://…</c>, issue #25): its heartbeat in
/// <c>cluster_nodes</c> (renewed every second, valid for <see cref="NodeTtl"/>; past it the others take over what it
/// had claimed) and one connection that <c>LISTEN</c>s for the others' changes, handed to the capabilities that
/// subscribed. On a single machine (SQLite) it does nothing.
/// </summary>
/// <remarks>
/// <para>
/// Singletons (schedules, pollers) run on the node that holds their lease in <c>cluster_leases</c>. The heartbeat's
/// one statement renews the node, renews or takes the leases it asked for (<see cref="RequestLease"/>) and lists the
/// live nodes: one round trip a second whatever the number of leases. A lease lasts <see cref="LeaseTtl"/> on
/// PostgreSQL's clock; a node acts on it only while its last successful renewal was sent less than
/// <see cref="LeaseTrust"/> ago (<see cref="Holds"/>), so a node stalled past its lease (a long GC pause, SIGSTOP, a
/// partition) stops acting before another can have taken over. A clean stop frees its leases at once.
/// </para>
/// Notifications are hints, not a log: when the listening connection was lost, some may have been missed, so
/// <see cref="Reconnected"/> tells subscribers to reload everything. A payload is <c>node-id|subject</c>, and a node
/// ignores its own (it applied the change already).
/// </remarks>
internal sealed partial class ClusterNode(Database database, IOptions<Hosting.LaminaOptions> options, Microsoft.AspNetCore.Hosting.Server.IServer server,
    ILogger<ClusterNode> logger) : IHostedService, IDisposable
{
    /// <summary>
    /// Channels: a function changed (subject: its registry key), a layer changed, async events were queued, an SQS
    /// queue changed or got messages (subject <c>q:</c> or <c>m:</c> and its name), an event source mapping changed (its
    /// UUID), an EventBridge bus, rule or target changed, an SNS topic or subscription changed, an API Gateway API
    /// (<c>a:</c> and its id) or the API keys and usage plans (<c>k</c>) changed, an S3 bucket was created, changed or
    /// deleted (<c>b:</c> and its name), a DynamoDB table's definition or its streams changed (<c>t</c>: every node rereads
    /// them), a log group's subscription filters changed (<c>f</c>: every node rereads them).
    /// </summary>
    public const string FunctionsChannel = "lamina_functions";
    public const string LayersChannel = "lamina_layers";
    public const string AsyncChannel = "lamina_async";
    public const string SqsChannel = "lamina_sqs";
    public const string MappingsChannel = "lamina_mappings";
    public const string EventsChannel = "lamina_events";
    public const string SnsChannel = "lamina_sns";
    public const string ApisChannel = "lamina_apis";
    public const string S3Channel = "lamina_s3";
    public const string DynamoDbChannel = "lamina_dynamodb";
    public const string LogsChannel = "lamina_logs";

    // Every channel above: the listening connection subscribes to them all.
    private static readonly string[] Channels =
        [FunctionsChannel, LayersChannel, AsyncChannel, SqsChannel, MappingsChannel, EventsChannel, SnsChannel, ApisChannel, S3Channel, DynamoDbChannel, LogsChannel];

    /// <summary>How long a heartbeat keeps a node alive: long enough for a GC pause, short enough for a quick takeover.</summary>
    public static readonly TimeSpan NodeTtl = TimeSpan.FromSeconds(5);

    /// <summary>How long a lease outlives its holder's last renewal before another node may take it.</summary>
    public static readonly TimeSpan LeaseTtl = TimeSpan.FromSeconds(10);

    /// <summary>How long after a renewal was sent its holder still acts on the lease: well inside <see cref="LeaseTtl"/>.</summary>
    public static readonly TimeSpan LeaseTrust = TimeSpan.FromSeconds(7);

    private readonly Lock _leasesLock = new();
    private readonly HashSet<string> _wanted = new(StringComparer.Ordinal);
    private Dictionary<string, long> _held = new(StringComparer.Ordinal); // lease → Stopwatch timestamp until which it is trusted
    private string[] _liveNodes = [];
    private Dictionary<string, string> _holderUrls = new(StringComparer.Ordinal); // lease → its (other) holder's URL
    private string? _url;
    private ClusterMembership _membership = ClusterMembership.Single;

    private readonly CancellationTokenSource _stopping = new();
    private Task? _listen;
    private Task? _heartbeat;

    public string NodeId { get; } = options.Value.EffectiveNodeId;

    public bool Enabled => database.IsPostgres;

    /// <summary>Another node changed something: (channel, subject). Raised on the listening loop; handlers must not block or throw.</summary>
    public event Action<string, string>? Notified;

    /// <summary>The listening connection was (re)established after a loss: reload whatever is cached.</summary>
    public event Action? Reconnected;

    /// <summary>After each heartbeat (about once a second), for work that follows the membership (reclaiming a dead node's claims).</summary>
    public event Func<Task>? Heartbeat;

    /// <summary>The live nodes' ids in order (this one included); on a single machine, just this node.</summary>
    public IReadOnlyList<string> LiveNodes => Enabled ? Volatile.Read(ref _liveNodes) : [NodeId];

    /// <summary>This node's place in <see cref="LiveNodes"/> (0 on a single machine).</summary>
    public int Rank => Volatile.Read(ref _membership).Rank;

    /// <summary>
    /// How many nodes are live and this node's rank among them, as one object replaced by the heartbeat: the invoke
    /// path reads it with one field read (<see cref="Invoke.ConcurrencyLimiter"/> admits this node's slice).
    /// </summary>
    public ClusterMembership Membership => Volatile.Read(ref _membership);

    /// <summary>Asks for <paramref name="lease"/> from the next heartbeat on; it is held once free (or lapsed).</summary>
    public void RequestLease(string lease)
    {
        lock (_leasesLock)
        {
            _wanted.Add(lease);
        }
    }

    /// <summary>
    /// Whether this node may act as <paramref name="lease"/>'s singleton now: always on a single machine; in a cluster,
    /// while it holds the lease and its last renewal is recent enough (<see cref="LeaseTrust"/>). Check right before acting.
    /// </summary>
    public bool Holds(string lease)
    {
        if (!Enabled)
        {
            return true;
        }
        var held = Volatile.Read(ref _held);
        return held.TryGetValue(lease, out var until) && System.Diagnostics.Stopwatch.GetTimestamp() < until;
    }

    /// <summary>
    /// The address another node holding <paramref name="lease"/> advertises (its <c>--advertise-url</c>), as of the
    /// last heartbeat; null when no live node holds it or this node does.
    /// </summary>
    public string? HolderUrl(string lease) => Volatile.Read(ref _holderUrls).GetValueOrDefault(lease);

    /// <summary>
    /// Where the other nodes reach this one: <c>--advertise-url</c>, else the address <c>serve</c> listens on (a
    /// wildcard address stands for the host's name). Null until the server listens.
    /// </summary>
    private string? AdvertisedUrl()
    {
        if (_url is not null)
        {
            return _url;
        }
        if (options.Value.AdvertiseUrl is { } configured)
        {
            return _url = configured.TrimEnd('/');
        }
        var addresses = server.Features.Get<Microsoft.AspNetCore.Hosting.Server.Features.IServerAddressesFeature>()?.Addresses ?? [];
        foreach (var address in addresses)
        {
            if (!address.StartsWith("http://", StringComparison.Ordinal) || address.Contains("lamina-runtime-api", StringComparison.Ordinal)
                || !Uri.TryCreate(address.Replace("[::]", "0.0.0.0", StringComparison.Ordinal), UriKind.Absolute, out var uri) || uri.Port == 0)
            {
                continue;
            }
            var host = uri.Host is "0.0.0.0" or "*" or "+" ? System.Net.Dns.GetHostName() : uri.Host;
            return _url = $"http://{host}:{uri.Port}";
        }
        return null;
    }

    /// <summary>
    /// The leases as the database has them (name, holder, expiry on PostgreSQL's clock); on a single machine, the
    /// leases asked for, each held by this node without expiry.
    /// </summary>
    public async Task<List<(string Name, string Holder, DateTimeOffset? ExpiresAt)>> LeasesAsync(CancellationToken cancellationToken)
    {
        var leases = new List<(string, string, DateTimeOffset?)>();
        if (database.Postgres is not { } postgres)
        {
            lock (_leasesLock)
            {
                leases.AddRange(_wanted.Order(StringComparer.Ordinal).Select(name => (name, NodeId, (DateTimeOffset?)null)));
            }
            return leases;
        }
        await using var command = postgres.CreateCommand("SELECT name, holder, expires_at FROM cluster_leases ORDER BY name;");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            leases.Add((reader.GetString(0), reader.GetString(1), reader.GetFieldValue<DateTimeOffset>(2)));
        }
        return leases;
    }

    /// <summary>The payload a change of <paramref name="subject"/> is announced with.</summary>
    public string Payload(string subject) => NodeId + "|" + subject;

    /// <summary>
    /// Rereads what the other nodes change, on the thread pool: <paramref name="reread"/> with the subject of each
    /// announcement on <paramref name="channel"/> (only those equal to <paramref name="only"/>, when given), and with
    /// null once the listening connection is back after a loss (announcements may have been missed meanwhile).
    /// Announcements are raised on a socket's I/O thread, where a reread's blocking statements must never run.
    /// </summary>
    public void Follow(string channel, Func<string?, Task> reread, string? only = null)
    {
        Notified += (announced, subject) =>
        {
            if (announced == channel && (only is null || subject == only))
            {
                _ = Task.Run(() => reread(subject));
            }
        };
        Reconnected += () => _ = Task.Run(() => reread(null));
    }

    /// <summary><see cref="Follow(string, Func{string?, Task}, string?)"/> for a reread that completes when it returns.</summary>
    public void Follow(string channel, Action<string?> reread, string? only = null) => Follow(channel, subject =>
    {
        reread(subject);
        return Task.CompletedTask;
    }, only);

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (database.Postgres is { } postgres)
        {
            BeatAsync(postgres, CancellationToken.None).GetAwaiter().GetResult(); // alive before the first claim
            _listen = Task.Run(() => ListenAsync(postgres), CancellationToken.None);
            _heartbeat = Task.Run(() => HeartbeatAsync(postgres), CancellationToken.None);
        }
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        foreach (var task in new[] { _listen, _heartbeat })
        {
            if (task is not null)
            {
                await task.ConfigureAwait(false);
            }
        }
        if (database.Postgres is { } postgres)
        {
            try
            {
                // A clean stop hands over at once: the others need not wait for the heartbeat or the leases to lapse.
                Volatile.Write(ref _held, new Dictionary<string, long>(StringComparer.Ordinal));
                await using var command = postgres.CreateCommand("DELETE FROM cluster_leases WHERE holder = @node; DELETE FROM cluster_nodes WHERE node_id = @node;");
                command.Parameters.AddWithValue("node", NodeId);
                await command.ExecuteNonQueryAsync(cancellationToken);
            }
            catch (Exception e) when (Sql.IsPostgresFailure(e))
            {
            }
        }
    }

    public void Dispose() => _stopping.Dispose();

    private async Task BeatAsync(NpgsqlDataSource postgres, CancellationToken token)
    {
        string[] wanted;
        lock (_leasesLock)
        {
            wanted = [.. _wanted];
        }
        // The database's clock, not the nodes': expiries compare on one clock whatever the nodes' skew. A lease is
        // renewed by its holder or taken once lapsed; the statement's snapshot precedes its own insert, so this node
        // is listed explicitly.
        await using var command = postgres.CreateCommand("""
            WITH beat AS (
                INSERT INTO cluster_nodes (node_id, started_at, expires_at, url) VALUES (@node, now(), now() + @ttl, @url)
                ON CONFLICT (node_id) DO UPDATE SET expires_at = excluded.expires_at, url = coalesce(excluded.url, cluster_nodes.url)
            ), leases AS (
                INSERT INTO cluster_leases (name, holder, expires_at)
                SELECT name, @node, now() + @lease FROM unnest(@wanted::text[]) AS name
                ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                    WHERE cluster_leases.holder = excluded.holder OR cluster_leases.expires_at < now()
                RETURNING name
            )
            SELECT 'n', node_id FROM cluster_nodes WHERE expires_at > now() AND node_id <> @node
            UNION ALL SELECT 'n', @node
            UNION ALL SELECT 'l', name FROM leases
            UNION ALL SELECT 'h', l.name || ' ' || n.url FROM cluster_leases l JOIN cluster_nodes n ON n.node_id = l.holder
                WHERE l.holder <> @node AND l.expires_at > now() AND n.expires_at > now() AND n.url IS NOT NULL;
            """);
        command.Parameters.Add(new NpgsqlParameter("url", NpgsqlTypes.NpgsqlDbType.Text) { Value = (object?)AdvertisedUrl() ?? DBNull.Value });
        command.Parameters.AddWithValue("node", NodeId);
        command.Parameters.AddWithValue("ttl", NodeTtl);
        command.Parameters.AddWithValue("lease", LeaseTtl);
        command.Parameters.AddWithValue("wanted", wanted);
        var sent = System.Diagnostics.Stopwatch.GetTimestamp();
        var nodes = new List<string>();
        var held = new Dictionary<string, long>(StringComparer.Ordinal);
        var holderUrls = new Dictionary<string, string>(StringComparer.Ordinal);
        var trustedUntil = sent + (long)(LeaseTrust.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
        await using (var reader = await command.ExecuteReaderAsync(token))
        {
            while (await reader.ReadAsync(token))
            {
                if (reader.GetString(0) == "n")
                {
                    nodes.Add(reader.GetString(1));
                }
                else if (reader.GetString(0) == "h")
                {
                    var row = reader.GetString(1);
                    var space = row.IndexOf(' ', StringComparison.Ordinal);
                    holderUrls[row[..space]] = row[(space + 1)..];
                }
                else
                {
                    held[reader.GetString(1)] = trustedUntil;
                }
            }
        }
        nodes.Sort(StringComparer.Ordinal);
        var live = nodes.ToArray();
        Volatile.Write(ref _liveNodes, live);
        var current = Volatile.Read(ref _membership);
        var rank = Array.IndexOf(live, NodeId);
        if (current.Count != live.Length || current.Rank != rank)
        {
            Volatile.Write(ref _membership, new ClusterMembership(live.Length, rank));
        }
        Volatile.Write(ref _held, held);
        Volatile.Write(ref _holderUrls, holderUrls);
    }

    private async Task HeartbeatAsync(NpgsqlDataSource postgres)
    {
        var token = _stopping.Token;
        while (!token.IsCancellationRequested)
        {
            try
            {
                await BeatAsync(postgres, token);
                if (Heartbeat is { } heartbeat)
                {
                    foreach (var handler in heartbeat.GetInvocationList().Cast<Func<Task>>())
                    {
                        await handler();
                    }
                }
                await Task.Delay(TimeSpan.FromSeconds(1), token);
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                Log.HeartbeatFailed(logger, e.Message);
                await Task.Delay(TimeSpan.FromSeconds(1), token).ContinueWith(static _ => { }, TaskScheduler.Default);
            }
        }
    }

    private async Task ListenAsync(NpgsqlDataSource postgres)
    {
        var token = _stopping.Token;
        var first = true;
        while (!token.IsCancellationRequested)
        {
            try
            {
                await using var connection = await postgres.OpenConnectionAsync(token);
                connection.Notification += (_, e) =>
                {
                    var bar = e.Payload.IndexOf('|', StringComparison.Ordinal);
                    if (bar < 0 || e.Payload.AsSpan(0, bar).SequenceEqual(NodeId))
                    {
                        return;
                    }
                    Notified?.Invoke(e.Channel, e.Payload[(bar + 1)..]);
                };
                await using (var listen = new NpgsqlCommand(string.Concat(Channels.Select(static channel => $"LISTEN {channel};")), connection))
                {
                    await listen.ExecuteNonQueryAsync(token);
                }
                Log.Connected(logger, NodeId, database.SharedDescription);
                if (!first)
                {
                    Reconnected?.Invoke();
                }
                first = false;
                while (true)
                {
                    await connection.WaitAsync(token);
                }
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                Log.ListenFailed(logger, e.Message);
                first = false; // whatever was missed meanwhile is reloaded once the connection is back
                await Task.Delay(TimeSpan.FromSeconds(1), token).ContinueWith(static _ => { }, TaskScheduler.Default);
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventIds.ClusterConnected, LogLevel.Information, "Cluster node {NodeId} listening for changes on {Database}")]
        public static partial void Connected(ILogger logger, string nodeId, string database);

        [LoggerMessage(EventIds.ClusterListenFailed, LogLevel.Warning, "Lost the connection that listens for the cluster's changes ({Reason}); reconnecting")]
        public static partial void ListenFailed(ILogger logger, string reason);

        [LoggerMessage(EventIds.ClusterHeartbeatFailed, LogLevel.Warning, "The node's heartbeat failed ({Reason}); past 5 s without one, the other nodes take over its claims")]
        public static partial void HeartbeatFailed(ILogger logger, string reason);
    }
}

/// <summary>The number of live nodes (at least 1) and this node's 0-based rank among them in node-id order.</summary>
internal sealed record ClusterMembership(int Count, int Rank)
{
    public static readonly ClusterMembership Single = new(1, 0);
}
