using System.Data.Common;
using System.Threading.Channels;
using Npgsql;

namespace Lamina.Server.Storage;

/// <summary>
/// <see cref="GroupCommitWriter"/>'s discipline on PostgreSQL, for the cluster's asynchronous queue: one connection
/// owned by one loop on a thread of its own (so the statements may block), whatever operations wait run in one
/// transaction, and each completes once the commit returned. When an operation throws, the batch is rolled back and
/// its operations run again one transaction each, so that the one that throws fails alone; when the connection or the
/// commit fails, every operation of the batch fails with that error and the next batch opens a new connection.
/// </summary>
/// <remarks>
/// Operations may therefore run twice (the second time after the first was rolled back), so they must touch nothing
/// but the connection. That is cheaper than a savepoint around each: on loopback every statement is a round trip
/// that wakes PostgreSQL, and savepoints tripled an accepted event's statements. BEGIN costs none (Npgsql sends it
/// with the first statement).
/// </remarks>
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
                if (!Commit(connection, batch) && batch.Count > 1)
                {
                    foreach (var write in batch)
                    {
                        write.Reset();
                        Commit(connection, [write]);
                    }
                }
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

    /// <summary>Runs <paramref name="writes"/> in one transaction: committed when all succeeded, else rolled back (false).</summary>
    private static bool Commit(NpgsqlConnection connection, List<Write> writes)
    {
        using var transaction = connection.BeginTransaction();
        foreach (var write in writes)
        {
            if (!write.Execute(connection))
            {
                transaction.Rollback();
                return false;
            }
        }
        transaction.Commit();
        foreach (var write in writes)
        {
            write.Committed = true; // whatever fails after this, this one's outcome stands
        }
        return true;
    }

    // A broken connection fails the whole batch; anything else is the operation's own mistake.
    private static bool IsConnectionFailure(Exception e) => e is NpgsqlException ? Sql.IsUnavailable(e) : e is IOException or TimeoutException;

    private abstract class Write
    {
        public bool Committed { get; set; }

        public abstract bool Execute(DbConnection connection);

        public abstract void Fail(Exception e);

        public abstract void Complete();

        /// <summary>Forgets the outcome of a run that was rolled back, before it runs again.</summary>
        public abstract void Reset();
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

        public override void Fail(Exception e)
        {
            if (!Committed)
            {
                _error ??= e;
            }
        }

        public override void Reset() => (_result, _error) = (default, null);

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
