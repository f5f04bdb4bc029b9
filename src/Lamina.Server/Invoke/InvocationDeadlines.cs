namespace Lamina.Server.Invoke;

/// <summary>
/// The deadlines of every running invocation, swept by one timer armed for the earliest of them (STYLE rule 17, as
/// Kestrel's heartbeat), instead of a timer per invocation: <c>Task.WaitAsync(timeout)</c> created, armed and
/// disposed one for each warm invoke (issue #19). Adding and removing is a lock and two links of an intrusive list;
/// the timer fires about once per timeout period, finds what expired, and re-arms for the next deadline.
/// </summary>
internal sealed class InvocationDeadlines : IDisposable
{
    private readonly TimeProvider _time;
    private readonly ITimer _timer;
    private readonly Lock _lock = new();
    private Invocation? _head;
    private Invocation? _tail;

    // When the timer fires next (TimeProvider timestamp), long.MaxValue when disarmed. It may be earlier than the
    // earliest deadline left (the invocation finished): the sweep then finds nothing and re-arms.
    private long _due = long.MaxValue;

    public InvocationDeadlines(TimeProvider time)
    {
        _time = time;
        _timer = time.CreateTimer(static state => ((InvocationDeadlines)state!).Sweep(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    /// <summary>Watches <paramref name="invocation"/>: past <paramref name="timeout"/> from now, <paramref name="environment"/> times it out.</summary>
    public void Add(Invocation invocation, ExecutionEnvironment environment, TimeSpan timeout)
    {
        var deadline = _time.GetTimestamp() + (long)(timeout.TotalSeconds * _time.TimestampFrequency);
        invocation.DeadlineTimestamp = deadline;
        invocation.RunningIn = environment;
        lock (_lock)
        {
            invocation.DeadlinePrevious = _tail;
            invocation.DeadlineNext = null;
            if (_tail is null)
            {
                _head = invocation;
            }
            else
            {
                _tail.DeadlineNext = invocation;
            }
            _tail = invocation;
            if (deadline < _due)
            {
                Arm(deadline);
            }
        }
    }

    /// <summary>Stops watching <paramref name="invocation"/> (it ended); nothing if it is not watched.</summary>
    public void Remove(Invocation invocation)
    {
        lock (_lock)
        {
            Unlink(invocation);
        }
    }

    public void Dispose() => _timer.Dispose();

    private void Sweep()
    {
        List<Invocation>? expired = null;
        lock (_lock)
        {
            var now = _time.GetTimestamp();
            var next = long.MaxValue;
            for (var node = _head; node is not null;)
            {
                var following = node.DeadlineNext;
                if (node.DeadlineTimestamp <= now)
                {
                    Unlink(node);
                    (expired ??= []).Add(node);
                }
                else if (node.DeadlineTimestamp < next)
                {
                    next = node.DeadlineTimestamp;
                }
                node = following;
            }
            _due = long.MaxValue;
            if (next != long.MaxValue)
            {
                Arm(next);
            }
        }
        foreach (var invocation in expired ?? [])
        {
            invocation.RunningIn?.TimeOut(invocation);
        }
    }

    private void Arm(long deadline)
    {
        _due = deadline;
        var delay = (deadline - _time.GetTimestamp()) * TimeSpan.TicksPerSecond / _time.TimestampFrequency;
        _timer.Change(TimeSpan.FromTicks(Math.Max(delay, 0)), Timeout.InfiniteTimeSpan);
    }

    private void Unlink(Invocation invocation)
    {
        if (invocation.RunningIn is null)
        {
            return; // not watched (or already swept)
        }
        if (invocation.DeadlinePrevious is null)
        {
            if (_head != invocation)
            {
                return; // not in this list
            }
            _head = invocation.DeadlineNext;
        }
        else
        {
            invocation.DeadlinePrevious.DeadlineNext = invocation.DeadlineNext;
        }
        if (invocation.DeadlineNext is null)
        {
            _tail = invocation.DeadlinePrevious;
        }
        else
        {
            invocation.DeadlineNext.DeadlinePrevious = invocation.DeadlinePrevious;
        }
        invocation.DeadlineNext = invocation.DeadlinePrevious = null;
        // RunningIn stays set for the sweep's own use; a removed invocation is recognised by having no links and not being the head.
    }
}
