using System.Data.Common;
using Npgsql;

namespace Lamina.Server.Storage;

/// <summary>
/// A cluster-wide write lock for a registry (functions, layers, EventBridge's buses and rules, SNS's topics, API Gateway's APIs): a transaction holding a PostgreSQL advisory lock, so
/// that the writes of all nodes take turns as one node's writes take turns on its local lock. Released by committing,
/// which also delivers the change's notification (NOTIFY is sent on commit); a node that dies mid-write loses its
/// connection and with it the lock, and nothing of the write's announcement.
/// </summary>
internal static class ClusterLock
{
    /// <summary>Lock keys ("lamina" + a letter), one per registry.</summary>
    public const long Functions = 0x6c616d696e6166;
    public const long Layers = 0x6c616d696e616c;
    public const long EventSourceMappings = 0x6c616d696e6165;
    public const long Events = 0x6c616d696e6176; // "lamina" + "v" (e is the mappings')
    public const long Topics = 0x6c616d696e6174; // "lamina" + "t": SNS's topics and subscriptions
    public const long Apis = 0x6c616d696e6161; // "lamina" + "a": API Gateway's APIs, keys and usage plans
    public const long Logs = 0x6c616d696e6167; // "lamina" + "g": CloudWatch Logs' groups, retention and subscription filters

    /// <summary>
    /// Continues on the thread pool. Npgsql's awaits resume where the socket completed (inline completions,
    /// Hosting/IoThreads.cs); what follows a write (the response, more statements, blocking rereads) belongs on the
    /// pool, never on the thread every socket's completions wait for. It always hops: a node was seen to hang on a
    /// blocking reread that a check of the current thread had let through, and a hop after a database write costs
    /// nothing that matters.
    /// </summary>
    public static async ValueTask LeaveIoThread() => await Task.Yield();

    /// <summary>Takes the lock (waiting for another node's write to end); null on a single machine.</summary>
    public static async Task<NpgsqlTransaction?> AcquireAsync(Database database, long key)
    {
        if (database.Postgres is not { } postgres)
        {
            return null;
        }
        var connection = await postgres.OpenConnectionAsync(CancellationToken.None);
        try
        {
            var transaction = await connection.BeginTransactionAsync(CancellationToken.None);
            await using var command = new NpgsqlCommand("SELECT pg_advisory_xact_lock(@key);", connection, transaction);
            command.Parameters.AddWithValue("key", key);
            await command.ExecuteNonQueryAsync(CancellationToken.None);
            return transaction;
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Runs one change of a store that every node caches in memory, in one transaction. On a single machine that is a
    /// transaction on the node's file. In a cluster it is the transaction holding lock <paramref name="key"/>:
    /// <paramref name="reread"/> first brings memory up to what the other nodes wrote (so that neither of two nodes
    /// writing at once loses the other's change), then <paramref name="change"/> runs, and the commit announces
    /// <paramref name="subject"/> on <paramref name="channel"/>. Both run off the socket's I/O thread
    /// (Hosting/IoThreads.cs): they block. The caller holds its own write lock around this.
    /// </summary>
    public static async Task<T> ChangeAsync<T>(Database database, ClusterNode cluster, long key, string channel, string subject,
        Action reread, Func<DbConnection, DbTransaction, T> change)
    {
        if (!cluster.Enabled)
        {
            using var connection = database.Open();
            using var transaction = connection.BeginTransaction();
            var result = change(connection, transaction);
            transaction.Commit(); // durable here (synchronous=FULL)
            return result;
        }
        var held = (await AcquireAsync(database, key))!;
        var heldConnection = held.Connection!; // the transaction forgets it once committed
        try
        {
            var changed = await Task.Run(() =>
            {
                reread();
                return change(held.Connection!, held);
            }, CancellationToken.None);
            await ReleaseAsync(held, channel, cluster.Payload(subject));
            return changed;
        }
        finally
        {
            await heldConnection.DisposeAsync(); // done already, unless the change failed (then rolled back)
        }
    }

    /// <summary>
    /// Another node changed a store: rereads it with <paramref name="reread"/> under the store's
    /// <paramref name="writeLock"/> (one at a time, never during this node's own write, so the last reread applies the
    /// latest state). A database away for the moment is retried when the listener reconnects.
    /// </summary>
    public static async Task RereadAsync(SemaphoreSlim writeLock, Action reread)
    {
        await writeLock.WaitAsync(CancellationToken.None);
        try
        {
            reread();
        }
        catch (Exception e) when (Sql.IsPostgresFailure(e))
        {
            // Reread again when the listener reconnects.
        }
        finally
        {
            writeLock.Release();
        }
    }

    /// <summary>Announces <paramref name="payload"/> on <paramref name="channel"/> and releases the lock.</summary>
    public static async Task ReleaseAsync(NpgsqlTransaction transaction, string channel, string payload)
    {
        var connection = transaction.Connection!;
        try
        {
            await using (var command = new NpgsqlCommand("SELECT pg_notify(@channel, @payload);", connection, transaction))
            {
                command.Parameters.AddWithValue("channel", channel);
                command.Parameters.AddWithValue("payload", payload);
                await command.ExecuteNonQueryAsync(CancellationToken.None);
            }
            await transaction.CommitAsync(CancellationToken.None);
        }
        finally
        {
            await transaction.DisposeAsync();
            await connection.DisposeAsync();
        }
    }
}
