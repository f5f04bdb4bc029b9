using System.Threading.Channels;
using Microsoft.Data.Sqlite;

namespace Lamina.Server.Storage;

/// <summary>
/// One SQLite connection owned by one writer loop, for the files whose writers are many and whose promises are durable
/// (the asynchronous queue, S3's metadata, DynamoDB's tables). Whatever writes are waiting run in one transaction
/// (group commit: concurrent writers share an fsync), each in a savepoint of its own, and each completes only once that
/// transaction is on disk. A write that throws leaves no trace and fails alone; a write made <c>alone</c> (a schema or
/// table change that later writes must see) gets a transaction of its own. When the commit itself fails (disk full, an
/// I/O error) every write of the batch fails with that error, nothing of it is kept, and the loop goes on.
/// </summary>
internal sealed class GroupCommitWriter
{
    // SQLITE_IOERR and SQLITE_FULL, whatever extended code: the file cannot take the batch, not one write's mistake.
    private const int IoError = 10;
    private const int Full = 13;

    private readonly Channel<Write> _writes = Channel.CreateUnbounded<Write>(new UnboundedChannelOptions { SingleReader = true });
    private readonly SqliteConnection _connection;
    private readonly int _maxBatch;
    private readonly Action<Exception?>? _afterBatch;
    private readonly Task _loop;

    /// <param name="connection">The open connection; the writer is its only user from now on.</param>
    /// <param name="maxBatch">Most writes committed together.</param>
    /// <param name="afterBatch">
    /// Called after each batch: null when it committed (stores signal their readers there), else why the commit failed.
    /// </param>
    public GroupCommitWriter(SqliteConnection connection, int maxBatch, Action<Exception?>? afterBatch = null)
    {
        _connection = connection;
        _maxBatch = maxBatch;
        _afterBatch = afterBatch;
        _loop = Task.Factory.StartNew(LoopAsync, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();
    }

    /// <summary>
    /// Queues <paramref name="work"/>; it runs inside a transaction shared with the other waiting writes, and the task
    /// completes once that transaction is on disk (or fails with what the work threw, or with why the commit failed).
    /// </summary>
    public Task<T> WriteAsync<T>(Func<WriteScope, T> work, bool alone = false)
    {
        var write = new Write<T>(work) { Alone = alone };
        return _writes.Writer.TryWrite(write) ? write.Completion : Task.FromException<T>(new ObjectDisposedException(nameof(GroupCommitWriter), "the store is closed"));
    }

    /// <summary>Takes no more writes and waits for those already queued.</summary>
    public Task CompleteAsync()
    {
        _writes.Writer.TryComplete();
        return _loop;
    }

    private async Task LoopAsync()
    {
        var batch = new List<Write>(_maxBatch);
        Write? carried = null;
        var scope = new WriteScope(_connection);
        while (carried is not null || await _writes.Reader.WaitToReadAsync())
        {
            batch.Clear();
            if (carried is not null)
            {
                batch.Add(carried);
                carried = null;
            }
            while (batch.Count < _maxBatch && !(batch.Count == 1 && batch[0].Alone) && _writes.Reader.TryRead(out var next))
            {
                if (next.Alone && batch.Count > 0)
                {
                    carried = next; // it starts a batch of its own
                    break;
                }
                batch.Add(next);
            }
            Exception? failure = null;
            try
            {
                Execute("BEGIN IMMEDIATE;");
                foreach (var write in batch)
                {
                    scope.Begin();
                    Execute("SAVEPOINT one;");
                    if (write.Execute(scope))
                    {
                        Execute("RELEASE one;");
                        write.AfterCommit = scope.TakeAfterCommit();
                    }
                    else
                    {
                        Execute("ROLLBACK TO one; RELEASE one;");
                        scope.TakeAfterCommit();
                    }
                }
                Execute("COMMIT;"); // durability: every write of the batch is on disk from here (synchronous=FULL)
            }
            catch (SqliteException e)
            {
                failure = e;
                // The file refused the batch: nothing of it is kept, each writer learns why, later batches may succeed.
                try
                {
                    Execute("ROLLBACK;");
                }
                catch (SqliteException)
                {
                    // No transaction was open (BEGIN itself failed).
                }
                foreach (var write in batch)
                {
                    write.Fail(e);
                }
            }
            foreach (var write in batch)
            {
                write.Complete();
            }
            _afterBatch?.Invoke(failure);
        }
    }

    private void Execute(string sql)
    {
        using var command = _connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    /// <summary>Whether <paramref name="e"/> means the file cannot take writes at all (then the whole batch fails).</summary>
    private static bool IsFileFailure(Exception e) => e is SqliteException { SqliteErrorCode: IoError or Full };

    private abstract class Write
    {
        public bool Alone { get; init; }

        public Action? AfterCommit { get; set; }

        /// <summary>Runs inside the batch's transaction; false when the write failed (its savepoint is rolled back).</summary>
        public abstract bool Execute(WriteScope scope);

        public abstract void Fail(Exception e);

        /// <summary>After the commit (or its failure): in-memory changes that wait for the commit, then the caller.</summary>
        public abstract void Complete();
    }

    private sealed class Write<T>(Func<WriteScope, T> work) : Write
    {
        private readonly TaskCompletionSource<T> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private T? _result;
        private Exception? _error;

        public Task<T> Completion => _completion.Task;

        public override bool Execute(WriteScope scope)
        {
            try
            {
                _result = work(scope);
                return true;
            }
            catch (Exception e) when (!IsFileFailure(e))
            {
                _error = e;
                return false;
            }
        }

        public override void Fail(Exception e)
        {
            _error ??= e;
            AfterCommit = null;
        }

        public override void Complete()
        {
            if (_error is not null)
            {
                _completion.TrySetException(_error);
                return;
            }
            AfterCommit?.Invoke();
            _completion.TrySetResult(_result!);
        }
    }
}

/// <summary>What a write works with inside its batch's transaction.</summary>
internal sealed class WriteScope(SqliteConnection connection)
{
    private List<Action>? _afterCommit;

    public SqliteConnection Connection { get; } = connection;

    /// <summary>An in-memory change that must happen only once the write is on disk (never if it fails).</summary>
    public void AfterCommit(Action action) => (_afterCommit ??= []).Add(action);

    internal void Begin() => _afterCommit = null;

    internal Action? TakeAfterCommit()
    {
        var actions = _afterCommit;
        _afterCommit = null;
        return actions is null ? null : actions.Count == 1 ? actions[0] : () => actions.ForEach(static a => a());
    }
}
