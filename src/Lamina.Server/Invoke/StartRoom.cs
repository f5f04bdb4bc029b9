using System.Diagnostics;

namespace Lamina.Server.Invoke;

/// <summary>
/// Room for environments starting at once on the node (--max-cold-starts), shared fairly between functions. A room
/// freed goes to the functions waiting in turn, round robin, and to each function's waiters in the order they came:
/// a burst of one function's cold starts queues behind itself, and another function's first invoke waits for its
/// turn, not for the whole burst (a semaphore's one queue made it wait for all of it, up to the Init timeout).
/// </summary>
/// <remarks>
/// Only cold starts come here, so a lock is cheap. A waiter that gives up (timeout, cancellation) leaves its queue at
/// once: a provisioned start may hold a room for the function's whole timeout, and waits that end meanwhile must not pile up.
/// </remarks>
internal sealed class StartRoom(int rooms)
{
    private readonly int _rooms = rooms;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, LinkedList<TaskCompletionSource<bool>>> _waiters = new(StringComparer.Ordinal);
    // Functions whose turn is to come, in order; a function has a line in _waiters exactly while its turn is queued (the
    // line may be empty: its waiters gave up, and the turn is passed over when it comes).
    private readonly Queue<string> _turns = new();
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
    /// Takes a room for a start of <paramref name="queue"/> (a function's name: its waiters take one turn), waiting at
    /// most <paramref name="timeout"/>; false when that ran out or <paramref name="cancel"/> came first.
    /// </summary>
    public async Task<bool> TakeAsync(string queue, TimeSpan timeout, CancellationToken cancel)
    {
        if (cancel.IsCancellationRequested)
        {
            return false;
        }
        using var giveUp = timeout == Timeout.InfiniteTimeSpan ? null : CancellationTokenSource.CreateLinkedTokenSource(cancel);
        giveUp?.CancelAfter(timeout); // before the waiter is queued: a timeout out of range throws with nothing to undo
        var waiter = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        LinkedListNode<TaskCompletionSource<bool>> place;
        lock (_lock)
        {
            if (_free > 0)
            {
                _free--;
                return true;
            }
            if (!_waiters.TryGetValue(queue, out var line))
            {
                _waiters[queue] = line = new LinkedList<TaskCompletionSource<bool>>();
                _turns.Enqueue(queue);
            }
            place = line.AddLast(waiter);
            _waiting++;
        }
        // Release completes the waiter with true under the lock, after taking it out of its line; giving up completes it
        // with false here, and takes it out. Whichever completes it first decides.
        await using (var registration = (giveUp?.Token ?? cancel).Register(static state => ((TaskCompletionSource<bool>)state!).TrySetResult(false), waiter))
        {
            if (await waiter.Task)
            {
                return true;
            }
        }
        lock (_lock)
        {
            if (place.List is { } line)
            {
                line.Remove(place);
                _waiting--;
            }
        }
        return false;
    }

    /// <summary>Gives a room back: to the next function's turn, or free.</summary>
    public void Release()
    {
        lock (_lock)
        {
            while (_turns.TryDequeue(out var queue))
            {
                var line = _waiters[queue];
                while (line.First is { } first)
                {
                    line.RemoveFirst();
                    _waiting--;
                    if (first.Value.TrySetResult(true))
                    {
                        if (line.Count > 0)
                        {
                            _turns.Enqueue(queue); // its next waiter's turn comes after the other functions'
                        }
                        else
                        {
                            _waiters.Remove(queue);
                        }
                        return;
                    }
                }
                _waiters.Remove(queue); // every waiter of that turn gave up
            }
            Debug.Assert(_free < _rooms, "a room given back twice");
            _free++;
        }
    }
}
