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
/// Notifications are hints, not a log: when the listening connection was lost, some may have been missed, so
/// <see cref="Reconnected"/> tells subscribers to reload everything. A payload is <c>node-id|subject</c>, and a node
/// ignores its own (it applied the change already).
/// </remarks>
internal sealed partial class ClusterNode(Database database, IOptions<Hosting.LaminaOptions> options, ILogger<ClusterNode> logger) : IHostedService, IDisposable
{
    /// <summary>Channels: a function changed (subject: its registry key), a layer changed, async events were queued.</summary>
    public const string FunctionsChannel = "lamina_functions";
    public const string LayersChannel = "lamina_layers";
    public const string AsyncChannel = "lamina_async";

    /// <summary>How long a heartbeat keeps a node alive: long enough for a GC pause, short enough for a quick takeover.</summary>
    public static readonly TimeSpan NodeTtl = TimeSpan.FromSeconds(5);

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

    /// <summary>The payload a change of <paramref name="subject"/> is announced with.</summary>
    public string Payload(string subject) => NodeId + "|" + subject;

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
                // A clean stop hands over at once: the others need not wait for the heartbeat to lapse.
                await using var command = postgres.CreateCommand("DELETE FROM cluster_nodes WHERE node_id = @node;");
                command.Parameters.AddWithValue("node", NodeId);
                await command.ExecuteNonQueryAsync(cancellationToken);
            }
            catch (NpgsqlException)
            {
            }
        }
    }

    public void Dispose() => _stopping.Dispose();

    private async Task BeatAsync(NpgsqlDataSource postgres, CancellationToken token)
    {
        // The database's clock, not the nodes': expiries compare on one clock whatever the nodes' skew.
        await using var command = postgres.CreateCommand("""
            INSERT INTO cluster_nodes (node_id, started_at, expires_at) VALUES (@node, now(), now() + @ttl)
            ON CONFLICT (node_id) DO UPDATE SET expires_at = excluded.expires_at;
            """);
        command.Parameters.AddWithValue("node", NodeId);
        command.Parameters.AddWithValue("ttl", NodeTtl);
        await command.ExecuteNonQueryAsync(token);
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
                await using (var listen = new NpgsqlCommand($"LISTEN {FunctionsChannel}; LISTEN {LayersChannel}; LISTEN {AsyncChannel};", connection))
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
