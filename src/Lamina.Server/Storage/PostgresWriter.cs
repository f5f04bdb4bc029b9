using System.Data.Common;
using System.Threading.Channels;
using Npgsql;

namespace Lamina.Server.Storage;

/// <summary>
/// <see cref="GroupCommitWriter"/>'s discipline on PostgreSQL, for the cluster's asynchronous queue: one connection
/// owned by one loop on a thread of its own (so the statements may block), whatever operations wait run in one
/// transaction, each in a savepoint of its own (one alone needs none), and each completes once the commit returned.
/// An operation that throws is rolled back alone and fails alone; when the connection or the commit fails, every
/// operation of the batch fails with that error and the next batch opens a new connection.
/// </summary>
internal sealed class PostgresWriter
{
    private readonly Channel<Write> _writes = Channel.CreateUnbounded<Write>(new UnboundedChannelOptions { SingleReader = true });
    private readonly NpgsqlDataSource _source;
    private readonly int _maxBatch;
    private readonly Action<Exception?>? _afterBatch;
    private readonly Task _loop;

    public PostgresWriter(NpgsqlDataSource source, int maxBatch, Action<Exception?>? afterBatch = null)
    {
        _source = source;
        _maxBatch = maxBatch;
        _afterBatch = afterBatch;
        _loop = Task.Factory.StartNew(Loop, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    public Task<T> WriteAsync<T>(Func<DbConnection, T> work)
    {
        var write = new Write<T>(work);
        return _writes.Writer.TryWrite(write) ? write.Completion : Task.FromException<T>(new ObjectDisposedException(nameof(PostgresWriter), "the store is closed"));
    }

    public Task CompleteAsync()
    {
        _writes.Writer.TryComplete();
        return _loop;
    }

    private void Loop()
    {
        var batch = new List<Write>(_maxBatch);
        NpgsqlConnection? connection = null;
        // Blocking waits are fine here: this loop has a thread of its own.
        while (_writes.Reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            batch.Clear();
            while (batch.Count < _maxBatch && _writes.Reader.TryRead(out var next))
            {
                batch.Add(next);
            }
            Exception? failure = null;
            try
            {
                connection ??= _source.OpenConnection();
                Execute(connection, "BEGIN;");
                var savepoints = batch.Count > 1;
                foreach (var write in batch)
                {
                    if (savepoints)
                    {
                        Execute(connection, "SAVEPOINT one;");
                    }
                    if (write.Execute(connection))
                    {
                        if (savepoints)
                        {
                            Execute(connection, "RELEASE one;");
                        }
                    }
                    else if (savepoints)
                    {
                        Execute(connection, "ROLLBACK TO one; RELEASE one;");
                    }
                }
                // With one operation alone and failed, the transaction is aborted; COMMIT then rolls it back.
                Execute(connection, "COMMIT;");
            }
            catch (Exception e) when (e is NpgsqlException or InvalidOperationException or IOException or TimeoutException)
            {
                failure = e;
                foreach (var write in batch)
                {
                    write.Fail(e);
                }
                // Whatever state the connection is in, the next batch starts on a fresh one.
                connection?.Dispose();
                connection = null;
            }
            foreach (var write in batch)
            {
                write.Complete();
            }
            _afterBatch?.Invoke(failure);
        }
        connection?.Dispose();
    }

    private static void Execute(NpgsqlConnection connection, string sql)
    {
        using var command = new NpgsqlCommand(sql, connection);
        command.ExecuteNonQuery();
    }

    // A broken connection fails the whole batch; anything else is the operation's own mistake.
    private static bool IsConnectionFailure(Exception e) => e is NpgsqlException { IsTransient: true } or IOException or TimeoutException
        || (e is NpgsqlException && e is not PostgresException);

    private abstract class Write
    {
        public abstract bool Execute(DbConnection connection);

        public abstract void Fail(Exception e);

        public abstract void Complete();
    }

    private sealed class Write<T>(Func<DbConnection, T> work) : Write
    {
        private readonly TaskCompletionSource<T> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private T? _result;
        private Exception? _error;

        public Task<T> Completion => _completion.Task;

        public override bool Execute(DbConnection connection)
        {
            try
            {
                _result = work(connection);
                return true;
            }
            catch (Exception e) when (!IsConnectionFailure(e))
            {
                _error = e;
                return false;
            }
        }

        public override void Fail(Exception e) => _error ??= e;

        public override void Complete()
        {
            if (_error is not null)
            {
                _completion.TrySetException(_error);
                return;
            }
            _completion.TrySetResult(_result!);
        }
    }
}
