namespace Lamina.Server.Invoke;

/// <summary>
/// Room for environments starting at once on the node (--max-cold-starts), shared fairly between functions. A room
/// freed goes to the functions waiting in turn, round robin, and to each function's waiters in the order they came:
/// a burst of one function's cold starts queues behind itself, and another function's first invoke waits for one
/// Init to end, not for the whole burst (a semaphore's one queue made it wait for all of it, up to the Init timeout).
/// </summary>
/// <remarks>
/// Only cold starts come here, so a lock is cheap. A waiter that gives up (timeout, cancellation) completes its own
/// task with false and stays queued until a release reaches it and passes it by.
/// </remarks>
internal sealed class StartRoom(int rooms)
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, Queue<TaskCompletionSource<bool>>> _waiters = new(StringComparer.Ordinal);
    private readonly Queue<string> _turns = new(); // functions with waiters, in the order their turns come
    private int _free = rooms;
    private int _waiting;

    /// <summary>Invocations and provisioned starts waiting for room now.</summary>
    public int Waiting => Volatile.Read(ref _waiting);

    /// <summary>Takes a room if one is free, without waiting.</summary>
    public bool TryTake()
    {
        lock (_lock)
        {
            if (_free == 0)
            {
                return false;
            }
            _free--;
            return true;
        }
    }

    /// <summary>
    /// Takes a room for a start of <paramref name="function"/>, waiting its turn at most <paramref name="timeout"/>;
    /// false when that ran out or <paramref name="cancel"/> came first.
    /// </summary>
    public async Task<bool> TakeAsync(string function, TimeSpan timeout, CancellationToken cancel)
    {
        var waiter = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lock)
        {
            if (_free > 0)
            {
                _free--;
                return true;
            }
            if (!_waiters.TryGetValue(function, out var queue))
            {
                _waiters[function] = queue = new Queue<TaskCompletionSource<bool>>();
                _turns.Enqueue(function);
            }
            queue.Enqueue(waiter);
        }
        Interlocked.Increment(ref _waiting);
        try
        {
            using var giveUp = timeout == Timeout.InfiniteTimeSpan ? null : CancellationTokenSource.CreateLinkedTokenSource(cancel);
            giveUp?.CancelAfter(timeout);
            await using var registration = (giveUp?.Token ?? cancel).Register(static state => ((TaskCompletionSource<bool>)state!).TrySetResult(false), waiter);
            return await waiter.Task;
        }
        finally
        {
            Interlocked.Decrement(ref _waiting);
        }
    }

    /// <summary>Gives a room back: to the next function's turn, or free.</summary>
    public void Release()
    {
        lock (_lock)
        {
            while (_turns.TryDequeue(out var function))
            {
                var queue = _waiters[function];
                while (queue.TryDequeue(out var waiter))
                {
                    if (waiter.TrySetResult(true))
                    {
                        if (queue.Count > 0)
                        {
                            _turns.Enqueue(function); // its next waiter's turn comes after the other functions'
                        }
                        else
                        {
                            _waiters.Remove(function);
                        }
                        return;
                    }
                }
                _waiters.Remove(function); // only waiters that had given up
            }
            _free++;
        }
    }
}
