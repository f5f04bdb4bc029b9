using System.Collections.Concurrent;
using System.Data.Common;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Lamina.Server.Hosting;
using Lamina.Server.Invoke;
using Lamina.Server.Lambda;
using Lamina.Server.Storage;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Async;

/// <summary>
/// Runs the queued asynchronous invocations (LAMBDA.md §9.1, RELIABILITY.md §1.2): leases due events from
/// <see cref="AsyncEventStore"/>, runs each through the same <see cref="Invoker"/> as synchronous calls within every
/// concurrency limit, and settles it. Function errors (timeouts and crashes included) are retried per the event invoke
/// config (<c>MaximumRetryAttempts</c>, default 2), after <c>--async-retry-delay</c> (default 60 s) and then twice as
/// long each time. Throttles and system errors never spend an attempt: the event waits 1 s, doubling up to 5 minutes,
/// for as long as its maximum age allows (at its function's reserved concurrency: for the function's next free slot,
/// <see cref="_atReservation"/>). Settled events go to their OnSuccess / OnFailure destinations.
/// </summary>
internal sealed partial class AsyncDispatcher : IHostedLifecycleService, IDisposable
{
    /// <summary>Lambda's default and largest maximum event age (6 hours).</summary>
    public const int DefaultMaximumEventAgeSeconds = 21600;

    /// <summary>Lambda's default retries after a function error.</summary>
    public const int DefaultMaximumRetryAttempts = 2;

    private static readonly TimeSpan MaxBackoff = TimeSpan.FromMinutes(5);

    private readonly AsyncEventStore _store;
    private readonly FunctionRegistry _registry;
    private readonly Invoker _invoker;
    private readonly ConcurrencyLimiter _limiter;
    private readonly LaminaOptions _options;
    private readonly TimeProvider _time;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly ILogger<AsyncDispatcher> _logger;
    private readonly Diagnostics.LaminaMetrics _metrics;
    private readonly Sqs.QueueStore _queues;
    // Topics publish into this queue (function subscriptions), and destinations publish to topics: resolved when first needed.
    private readonly IServiceProvider _services;
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<string, int> _throttles = new(StringComparer.Ordinal);
    private const int MaxThrottledTracked = 100_000;
    // Functions throttled a moment ago (name → Unix ms until which their events are left queued): a throttled
    // function's backlog waits in the queue instead of being leased and put back, event by event, every round.
    private readonly ConcurrentDictionary<string, long> _paused = new(StringComparer.Ordinal);
    private static readonly TimeSpan PauseAfterThrottle = TimeSpan.FromSeconds(1);
    // Functions throttled at their own reserved concurrency (name → Unix ms of the last such throttle): for a minute
    // after, their events are leased no faster than slots free for them here (the free slots, each round), and one
    // throttled all the same (a synchronous invoke took the slot) goes back due as it was: its turn is the next free
    // slot, not a back-off. Without this a backlog of such a function was leased 64 at a time, and all but the few
    // that could run backed off, up to 5 minutes each: 300 events of a function reserved at 5, 0.1 s each, took
    // many minutes instead of 6 s.
    private readonly ConcurrentDictionary<string, long> _atReservation = new(StringComparer.Ordinal);
    private static readonly TimeSpan AtReservationFor = TimeSpan.FromMinutes(1);
    private static readonly TimeSpan PauseWithoutSlice = TimeSpan.FromSeconds(5);
    private readonly int _maxInFlight;
    private int _inFlight;
    private Task? _loop;

    public AsyncDispatcher(AsyncEventStore store, FunctionRegistry registry, Invoker invoker, ConcurrencyLimiter limiter,
        IOptions<LaminaOptions> options, TimeProvider time, IHostApplicationLifetime lifetime, ILogger<AsyncDispatcher> logger, Diagnostics.LaminaMetrics metrics,
        Sqs.QueueStore queues, IServiceProvider services, Storage.ClusterNode cluster)
    {
        if (cluster.Enabled)
        {
            // Another node queued events: look now rather than at the next poll. And events a dead node had claimed
            // go back to the queue once its heartbeat lapsed (issue #25).
            cluster.Notified += (channel, _) =>
            {
                if (channel == Storage.ClusterNode.AsyncChannel)
                {
                    Wake();
                }
            };
            cluster.Heartbeat += async () =>
            {
                var reclaimed = await store.ReclaimAsync();
                if (reclaimed > 0)
                {
                    Log.Reclaimed(logger, reclaimed);
                    Wake();
                }
            };
        }
        _metrics = metrics;
        _queues = queues;
        _services = services;
        _store = store;
        _registry = registry;
        _invoker = invoker;
        _limiter = limiter;
        _options = options.Value;
        _time = time;
        _lifetime = lifetime;
        _logger = logger;
        // A deleted function's queued and failed events go with it (running ones settle against a missing function and are dropped).
        registry.Deleted += name => _ = _store.DeleteFunctionAsync(name).ContinueWith(static _ => { }, TaskScheduler.Default);
        // Enough to keep a machine's environments busy without leasing (and holding) far more than can run.
        _maxInFlight = Math.Clamp(_options.AccountConcurrency, 1, 64);
    }

    /// <summary>
    /// Accepts an Event invocation: durable (committed and fsync'd) when this completes; the caller then answers 202.
    /// </summary>
    public async Task AcceptAsync(string id, string functionName, string? qualifier, string invokedArn, ReadOnlyMemory<byte> payload, string traceId)
    {
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        await _store.EnqueueAsync(new AsyncEvent
        {
            Id = id,
            FunctionName = functionName,
            Qualifier = qualifier,
            InvokedArn = invokedArn,
            Payload = payload.ToArray(),
            TraceId = traceId,
            CreatedMs = now,
            DueMs = now,
        });
        Wake();
    }

    /// <summary>Makes the loop look for due events now (an event was accepted or redriven).</summary>
    public void Wake() => _wake.Writer.TryWrite(true);

    public Task StartingAsync(CancellationToken cancellationToken)
    {
        var returned = _store.Open();
        if (returned > 0)
        {
            Log.Redelivering(_logger, returned);
        }
        return Task.CompletedTask;
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        // Environments stop as soon as shutdown begins; what fails then is the platform's doing, not the function's.
        _lifetime.ApplicationStopping.Register(() => _stopping.Cancel());
        _loop = Task.Run(LoopAsync, CancellationToken.None);
        return Task.CompletedTask;
    }

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        if (_loop is not null)
        {
            await _loop;
        }
        // In-flight events end quickly once their environments stop; each is put back (no attempt spent).
        var deadline = _time.GetTimestamp();
        while (Volatile.Read(ref _inFlight) > 0 && _time.GetElapsedTime(deadline) < TimeSpan.FromSeconds(5))
        {
            await Task.Delay(TimeSpan.FromMilliseconds(20), _time, CancellationToken.None);
        }
    }

    public async Task StoppedAsync(CancellationToken cancellationToken) => await _store.DisposeAsync();

    public void Dispose() => _stopping.Dispose();

    private async Task LoopAsync()
    {
        var token = _stopping.Token;
        while (!token.IsCancellationRequested)
        {
            try
            {
                var free = _maxInFlight - Volatile.Read(ref _inFlight);
                var leased = 0;
                var nowMs = _time.GetUtcNow().ToUnixTimeMilliseconds();
                var paused = Paused(nowMs, out var resumeMs);
                var caps = Caps(nowMs, ref paused);
                if (free > 0)
                {
                    var events = await _store.LeaseDueAsync(nowMs, free, paused, caps);
                    leased = events.Count;
                    if (caps is not null)
                    {
                        KeepCapped(caps, events, nowMs);
                    }
                    foreach (var e in events)
                    {
                        Interlocked.Increment(ref _inFlight);
                        _ = RunAsync(e);
                    }
                }
                if (leased > 0 && leased == free)
                {
                    continue; // more may be due; look again once some finish (they wake the loop)
                }
                var delay = TimeSpan.FromSeconds(1);
                if (free > 0 && await _store.NextDueAsync(paused) is { } due)
                {
                    var untilDue = TimeSpan.FromMilliseconds(Math.Max(0, Math.Min(due, resumeMs) - _time.GetUtcNow().ToUnixTimeMilliseconds()));
                    delay = untilDue < delay ? untilDue : delay;
                }
                if (delay > TimeSpan.Zero)
                {
                    await WaitAsync(delay, token);
                }
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // The loop goes on whatever happened (it is the only thing that runs queued events).
                Log.LoopFailed(_logger, e.Message);
                await WaitAsync(TimeSpan.FromSeconds(1), token);
            }
        }
    }

    /// <summary>The functions whose events stay queued for now, and when the first of them resumes (Unix ms).</summary>
    private List<string>? Paused(long nowMs, out long resumeMs)
    {
        resumeMs = long.MaxValue;
        if (_paused.IsEmpty)
        {
            return null;
        }
        List<string>? paused = null;
        foreach (var (function, until) in _paused)
        {
            if (until <= nowMs)
            {
                _paused.TryRemove(new KeyValuePair<string, long>(function, until));
                continue;
            }
            (paused ??= []).Add(function);
            resumeMs = Math.Min(resumeMs, until);
        }
        return paused;
    }

    /// <summary>
    /// The slots free here for each function at its reserved concurrency a moment ago (<see cref="_atReservation"/>);
    /// one with none is added to <paramref name="paused"/> (one of its invocations ending wakes the loop, and the loop
    /// looks again within a second: a synchronous invoke ending does not wake it).
    /// </summary>
    private Dictionary<string, int>? Caps(long nowMs, ref List<string>? paused)
    {
        if (_atReservation.IsEmpty)
        {
            return null;
        }
        Dictionary<string, int>? caps = null;
        foreach (var (function, since) in _atReservation)
        {
            if (nowMs - since > AtReservationFor.TotalMilliseconds
                || !_registry.TryGetEntry(function, out var entry) || entry.ReservedConcurrency is not > 0)
            {
                _atReservation.TryRemove(new KeyValuePair<string, long>(function, since));
                continue;
            }
            if (paused?.Contains(function) == true)
            {
                continue;
            }
            var freeHere = _limiter.ReservedSlice(function, entry.ReservedConcurrency.Value) - _limiter.ReservedInUse(function);
            if (freeHere > 0)
            {
                (caps ??= new Dictionary<string, int>(StringComparer.Ordinal))[function] = freeHere;
            }
            else
            {
                (paused ??= []).Add(function);
            }
        }
        return caps;
    }

    /// <summary>
    /// A function whose cap was reached again this round still has a backlog at its reservation: it stays capped (were it
    /// let go after its minute, up to 64 of its events would be leased, and most throttled, once a minute).
    /// </summary>
    private void KeepCapped(Dictionary<string, int> caps, List<AsyncEvent> leased, long nowMs)
    {
        foreach (var (function, cap) in caps)
        {
            var count = 0;
            foreach (var e in leased)
            {
                count += e.FunctionName == function ? 1 : 0;
            }
            if (count >= cap)
            {
                _atReservation[function] = nowMs;
            }
        }
    }

    private async Task WaitAsync(TimeSpan delay, CancellationToken token)
    {
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(token);
            timeout.CancelAfter(delay);
            await _wake.Reader.ReadAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task RunAsync(AsyncEvent e)
    {
        try
        {
            await RunOnceAsync(e);
        }
        catch (ObjectDisposedException)
        {
            // The store closed under it: the server is stopping, and the event, still leased, runs again at the next start.
        }
        catch (Exception ex) when (Sql.CanRetryLater(ex))
        {
            // The store could not record the outcome (locked past its timeout, the disk full, the database unreachable).
            // The event goes back to the queue once the store takes a write again, no attempt spent; it may run again
            // (at least once). Left leased, it waited for the next start. A write the store refused for what it held
            // is not retried so (it would be refused again, forever): it is a system error, below.
            Log.SettleFailed(_logger, e.Describe(), ex.Message);
            _ = RequeueOnceStoredAsync(e);
        }
        catch (Exception ex)
        {
            // Anything else (a sandbox that could not be made in an unexpected way, say) is a system error: the event
            // goes back to the queue without spending an attempt, rather than staying leased with nothing running it.
            Log.SystemError(_logger, e.Describe(), ex.Message);
            try
            {
                await BackOffAsync(e);
            }
            catch (Exception requeue) when (Sql.CanRetryLater(requeue))
            {
                Log.SettleFailed(_logger, e.Describe(), requeue.Message);
                _ = RequeueOnceStoredAsync(e);
            }
            catch (ObjectDisposedException)
            {
            }
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
            Wake();
        }
    }

    private async Task RunOnceAsync(AsyncEvent e)
    {
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        // An event for a function (or version, alias) another node made a moment ago must not be dropped for not being known here yet.
        if (_registry.Clustered) // the check's closure is not allocated per event on a single machine
        {
            await _registry.EnsureCurrentAsync(e.FunctionName, entry => entry.ResolvePrimary(e.Qualifier) is not null);
        }
        if (!_registry.TryGetEntry(e.FunctionName, out var entry) || entry.Resolve(e.Qualifier, Random.Shared) is not { } config)
        {
            Log.FunctionGone(_logger, e.Describe());
            _throttles.TryRemove(e.Id, out _);
            await _store.DropAsync(e.Id);
            return;
        }
        var qualifier = e.Qualifier ?? FunctionEntry.Latest;
        entry.EventInvokeConfigs.TryGetValue(qualifier, out var invokeConfig);
        var maxAgeMs = (invokeConfig?.MaximumEventAgeInSeconds ?? DefaultMaximumEventAgeSeconds) * 1000L;
        var maxRetries = invokeConfig?.MaximumRetryAttempts ?? DefaultMaximumRetryAttempts;
        var functionArn = $"{_options.FunctionArn(e.FunctionName)}:{qualifier}";

        if (now - e.CreatedMs > maxAgeMs)
        {
            await FailAsync(e, entry, invokeConfig, "EventAgeExceeded", e.Attempts, functionArn, response: null);
            return;
        }
        if (_stopping.IsCancellationRequested)
        {
            await _store.RequeueAsync(e.Id, now, e.Attempts, e.LastError);
            return;
        }
        if (config.Durable is not null)
        {
            // A durable function's event (a trigger, InvokeAsync) starts a durable execution, as Lambda's does; the
            // event's id names it, so a redelivery after a crash finds the same execution.
            var durable = _services.GetRequiredService<Durable.DurableEngine>();
            if (!durable.Serving)
            {
                // On a cluster another node runs the durable executions: the event goes back, due now and no attempt
                // spent, for the holder of the durable lease to claim, and this node leaves the function's events
                // alone for a while (as a node without a slice of a reservation does, below).
                _paused[e.FunctionName] = _time.GetUtcNow().Add(PauseWithoutSlice).ToUnixTimeMilliseconds();
                await _store.RequeueAsync(e.Id, now, e.Attempts, e.LastError);
                return;
            }
            if (durable.Start(config, e.Payload, e.Id, out _) is { } refused)
            {
                Log.SystemError(_logger, e.Describe(), refused.Message);
            }
            _throttles.TryRemove(e.Id, out _);
            await _store.SettleAsync(e.Id, null, []);
            return;
        }
        if (!_limiter.TryAcquire(config.Name, entry.ReservedConcurrency, out var lease, out var throttleReason))
        {
            _metrics.RecordThrottle(config, throttleReason!);
            if (throttleReason == ConcurrencyLimiter.ReservedLimitReason && entry.ReservedConcurrency > 0
                && _limiter.ReservedSlice(config.Name, entry.ReservedConcurrency.Value) == 0)
            {
                // A cluster node whose slice of the reservation is 0 never runs this function: the event goes
                // straight back, due now and no back-off spent, for a node with a slice; this one leaves the
                // function's events alone for a while.
                _paused[e.FunctionName] = _time.GetUtcNow().Add(PauseWithoutSlice).ToUnixTimeMilliseconds();
                await _store.RequeueAsync(e.Id, _time.GetUtcNow().ToUnixTimeMilliseconds(), e.Attempts, e.LastError);
                return;
            }
            if (throttleReason == ConcurrencyLimiter.ReservedLimitReason)
            {
                // Only the function's own limit pauses its queue; the account's limit is every function's, and
                // another function's invocations ending frees it.
                // Until one of its invocations here ends, or a second at most (synchronous invokes hold slots too).
                _paused[e.FunctionName] = _time.GetUtcNow().Add(PauseAfterThrottle).ToUnixTimeMilliseconds();
                if (entry.ReservedConcurrency > 0)
                {
                    // Its turn is the next slot that frees (its events are leased at that pace now): back where it was.
                    _atReservation[e.FunctionName] = _time.GetUtcNow().ToUnixTimeMilliseconds();
                    await _store.RequeueAsync(e.Id, e.DueMs, e.Attempts, e.LastError);
                    return;
                }
            }
            await BackOffAsync(e);
            return;
        }

        var invocation = new Invocation
        {
            RequestId = e.Id,
            Payload = e.Payload,
            InvokedFunctionArn = e.InvokedArn,
            TraceId = e.TraceId,
        };
        var outcome = await _invoker.InvokeAsync(config, invocation, wantTail: false, lease!, untilLogged: true);
        _paused.TryRemove(e.FunctionName, out _); // a slot of its own is free again
        if (outcome.Result is not { } result || outcome.ThrottleReason is not null)
        {
            // No room to start an environment, or the platform failed: a system error, retried without spending an attempt.
            if (outcome.PlatformFailure is { } failure && outcome.ThrottleReason is null)
            {
                Log.SystemError(_logger, e.Describe(), failure);
            }
            await BackOffAsync(e);
            return;
        }
        if (result.Outcome != InvocationOutcome.Success && _stopping.IsCancellationRequested)
        {
            // Shutdown stopped its environment: not the function's failure.
            await _store.RequeueAsync(e.Id, _time.GetUtcNow().ToUnixTimeMilliseconds(), e.Attempts, e.LastError);
            return;
        }
        _throttles.TryRemove(e.Id, out _);
        var response = new AttemptResponse(config.Version, result);
        if (result.Outcome == InvocationOutcome.Success)
        {
            var deliveries = new List<AsyncEvent>();
            if (invokeConfig?.OnSuccessDestination is { } onSuccess
                && await DestinationAsync(e, onSuccess, Record(e, functionArn, "Success", e.Attempts + 1, response)) is { } delivery)
            {
                deliveries.Add(delivery);
            }
            await _store.SettleAsync(e.Id, null, deliveries);
            return;
        }

        var attempts = e.Attempts + 1;
        var lastError = ErrorText(result);
        if (attempts > maxRetries)
        {
            await FailAsync(e, entry, invokeConfig, "RetriesExhausted", attempts, functionArn, response);
            return;
        }
        // Lambda waits about a minute before the first retry and two before the second.
        var retryDelay = _options.AsyncRetryDelay * Math.Pow(2, attempts - 1);
        await _store.RequeueAsync(e.Id, _time.GetUtcNow().Add(retryDelay).ToUnixTimeMilliseconds(), attempts, lastError);
    }

    /// <summary>
    /// Puts a leased event whose outcome could not be stored back in the queue, trying again (1 s, doubling up to 30 s)
    /// until the store takes it or the server stops (then the next start does). Only a leased event is put back: if the
    /// failed write had in fact been stored, the event is settled and stays so.
    /// </summary>
    private async Task RequeueOnceStoredAsync(AsyncEvent e)
    {
        var delay = TimeSpan.FromSeconds(1);
        while (true)
        {
            try
            {
                await Task.Delay(delay, _time, _stopping.Token);
                await _store.RequeueLeasedAsync(e.Id, _time.GetUtcNow().ToUnixTimeMilliseconds());
                Log.Requeued(_logger, e.Describe());
                Wake();
                return;
            }
            catch (Exception ex) when (ex is DbException || Sql.CanRetryLater(ex))
            {
                Log.SettleFailed(_logger, e.Describe(), ex.Message);
                delay = TimeSpan.FromSeconds(Math.Min(30, delay.TotalSeconds * 2));
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
            {
                return; // stopping: still leased, it runs again at the next start
            }
        }
    }

    /// <summary>Throttled or a system error: back to the queue, 1 s, doubling up to 5 minutes; no attempt spent.</summary>
    private Task BackOffAsync(AsyncEvent e)
    {
        if (_throttles.Count >= MaxThrottledTracked)
        {
            // Counts of events that left without settling here (their function deleted, settled by another node) are
            // never removed one by one; they only shape back-off, so all start again at 1 s rather than grow for good.
            _throttles.Clear();
        }
        var count = _throttles.AddOrUpdate(e.Id, 1, static (_, n) => n + 1);
        var delay = TimeSpan.FromSeconds(Math.Min(MaxBackoff.TotalSeconds, Math.Pow(2, Math.Min(count - 1, 20))));
        return _store.RequeueAsync(e.Id, _time.GetUtcNow().Add(delay).ToUnixTimeMilliseconds(), e.Attempts, e.LastError);
    }

    private async Task FailAsync(AsyncEvent e, FunctionEntry entry, EventInvokeConfig? invokeConfig, string condition, int invokeCount,
        string functionArn, AttemptResponse? response)
    {
        _throttles.TryRemove(e.Id, out _);
        var deliveries = new List<AsyncEvent>();
        if (invokeConfig?.OnFailureDestination is { } onFailure
            && await DestinationAsync(e, onFailure, Record(e, functionArn, condition, invokeCount, response)) is { } delivery)
        {
            deliveries.Add(delivery);
        }
        var lastError = response is { } r ? ErrorText(r.Result) : e.LastError;
        if (entry.LatestConfig.DeadLetterTargetArn is { } deadLetter && !await DeadLetterAsync(e, deadLetter, lastError))
        {
            // An SNS topic (not in Lamina yet) or a queue that is gone: the event stays here, failed, where operators
            // can list and redrive it.
            Log.DeadLetterUnavailable(_logger, e.Describe(), deadLetter);
        }
        Log.Failed(_logger, e.Describe(), condition, invokeCount);
        await _store.SettleAsync(e.Id, new AsyncFailure(condition, invokeCount, lastError, _time.GetUtcNow().ToUnixTimeMilliseconds()), deliveries);
    }

    /// <summary>
    /// Delivers a record to a destination: a function's is returned, to be queued in the transaction that settles
    /// the event; a queue's or topic's is sent now (durable before the event settles: a crash in between may deliver
    /// it twice, never lose it).
    /// </summary>
    private async Task<AsyncEvent?> DestinationAsync(AsyncEvent source, string arn, byte[] record)
    {
        // This may follow an invocation's end on a socket's I/O thread, and a queue unknown to this node is read from
        // the cluster's database, blocking.
        await Hosting.IoThreads.LeaveIoThreadAsync();
        if (QueueOf(arn) is { } queue)
        {
            await _queues.SendAsync(queue, [new Sqs.OutgoingMessage(Encoding.UTF8.GetString(record), null, null, null, null, null)]);
            return null;
        }
        var topics = _services.GetRequiredService<Sns.TopicStore>();
        if (topics.TryGetByArn(arn, out var topic))
        {
            await topics.PublishAsync(topic, Encoding.UTF8.GetString(record), null, []);
            return null;
        }
        return Destination(source, arn, record);
    }

    /// <summary>
    /// The function's DeadLetterConfig: the event's payload goes to the queue with Lambda's message attributes
    /// (RequestID, ErrorCode, ErrorMessage). False when the target is not a Lamina queue.
    /// </summary>
    private async Task<bool> DeadLetterAsync(AsyncEvent e, string arn, string? lastError)
    {
        await Hosting.IoThreads.LeaveIoThreadAsync(); // as DestinationAsync
        var message = lastError is { Length: > 0 } ? lastError : "The function failed";
        var topics = _services.GetRequiredService<Sns.TopicStore>();
        if (topics.TryGetByArn(arn, out var topic))
        {
            await topics.PublishAsync(topic, Encoding.UTF8.GetString(e.Payload), null,
                [new("RequestID", "String", e.Id, null), new("ErrorCode", "Number", "200", null), new("ErrorMessage", "String", message, null)]);
            return true;
        }
        if (QueueOf(arn) is not { } queue)
        {
            return false;
        }
        var attributes = new List<(string, string, string?, byte[]?)>
        {
            ("RequestID", "String", e.Id, null),
            ("ErrorCode", "Number", "200", null),
            ("ErrorMessage", "String", message, null),
        };
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            foreach (var (name, dataType, value, _) in attributes)
            {
                w.WriteStartObject(name);
                w.WriteString("DataType", dataType);
                w.WriteString("StringValue", value);
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        var json = Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
        await _queues.SendAsync(queue, [new Sqs.OutgoingMessage(Encoding.UTF8.GetString(e.Payload), json, Sqs.SqsMd5.OfAttributes(attributes), null, null, null)]);
        return true;
    }

    /// <summary>The Lamina queue an <c>arn:aws:sqs:region:account:name</c> names, if it exists.</summary>
    private Sqs.QueueInfo? QueueOf(string arn)
    {
        var parts = arn.Split(':');
        return parts.Length == 6 && parts[2] == "sqs" && parts[3] == _options.Region && parts[4] == _options.AccountId && _queues.TryGet(parts[5], out var queue)
            ? queue : null;
    }

    private AsyncEvent? Destination(AsyncEvent source, string arn, byte[] record)
    {
        // A destination is a function of the source function's own account.
        if (!FunctionReference.TryParse(arn, null, _options, _options.SplitFunctionKey(source.FunctionName).Account, out var target, out _))
        {
            Log.DestinationUnsupported(_logger, arn);
            return null;
        }
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        return new AsyncEvent
        {
            Id = Guid.NewGuid().ToString(),
            FunctionName = target.Name,
            Qualifier = target.Qualifier,
            InvokedArn = target.Qualifier is null ? _options.FunctionArn(target.Name) : $"{_options.FunctionArn(target.Name)}:{target.Qualifier}",
            Payload = record,
            TraceId = Invocation.NewTraceId(_time),
            CreatedMs = now,
            DueMs = now,
        };
    }

    /// <summary>Lambda's invocation record (LAMBDA.md §9.1).</summary>
    private byte[] Record(AsyncEvent e, string functionArn, string condition, int invokeCount, AttemptResponse? response)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("version", "1.0");
            w.WriteString("timestamp", _time.GetUtcNow().UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture));
            w.WriteStartObject("requestContext");
            w.WriteString("requestId", e.Id);
            w.WriteString("functionArn", functionArn);
            w.WriteString("condition", condition);
            w.WriteNumber("approximateInvokeCount", invokeCount);
            w.WriteEndObject();
            w.WritePropertyName("requestPayload");
            w.WriteRawValue(e.Payload, skipInputValidation: true); // validated as JSON when accepted
            if (response is { } r)
            {
                w.WriteStartObject("responseContext");
                w.WriteNumber("statusCode", 200);
                w.WriteString("executedVersion", r.ExecutedVersion);
                if (r.Result.Outcome != InvocationOutcome.Success)
                {
                    w.WriteString("functionError", "Unhandled");
                }
                w.WriteEndObject();
                w.WritePropertyName("responsePayload");
                WritePayload(w, r.Result.Body.Span);
            }
            w.WriteEndObject();
        }
        return buffer.ToArray();
    }

    // A response that is JSON is embedded as is; anything else (a runtime may answer any bytes) as a string.
    private static void WritePayload(Utf8JsonWriter w, ReadOnlySpan<byte> body)
    {
        if (body.IsEmpty)
        {
            w.WriteNullValue();
            return;
        }
        try
        {
            var reader = new Utf8JsonReader(body);
            if (JsonDocument.TryParseValue(ref reader, out var document))
            {
                using (document)
                {
                    document.WriteTo(w);
                }
                return;
            }
        }
        catch (JsonException)
        {
        }
        w.WriteStringValue(System.Text.Encoding.UTF8.GetString(body));
    }

    private static string ErrorText(InvocationResult result)
    {
        var text = System.Text.Encoding.UTF8.GetString(result.Body.Span);
        return text.Length > 4096 ? text[..4096] : text;
    }

    private readonly record struct AttemptResponse(string ExecutedVersion, InvocationResult Result);

    private static partial class Log
    {
        [LoggerMessage(EventId = Diagnostics.EventIds.ClusterEventsReclaimed, Level = LogLevel.Warning, Message = "{Count} asynchronous events claimed by a node that stopped beating are queued again")]
        public static partial void Reclaimed(ILogger logger, int count);

        [LoggerMessage(EventId = Diagnostics.EventIds.AsyncRedelivering, Level = LogLevel.Information, Message = "Redelivering {Count} async events that were running when the server stopped")]
        public static partial void Redelivering(ILogger logger, int count);

        [LoggerMessage(EventId = Diagnostics.EventIds.AsyncFunctionGone, Level = LogLevel.Warning, Message = "Async event {Event} dropped: the function or qualifier no longer exists")]
        public static partial void FunctionGone(ILogger logger, string @event);

        [LoggerMessage(EventId = Diagnostics.EventIds.AsyncSystemError, Level = LogLevel.Warning, Message = "Async event {Event} could not run ({Reason}); retrying later")]
        public static partial void SystemError(ILogger logger, string @event, string reason);

        [LoggerMessage(EventId = Diagnostics.EventIds.AsyncEventFailed, Level = LogLevel.Warning, Message = "Async event {Event} failed: {Condition} after {Count} invocations")]
        public static partial void Failed(ILogger logger, string @event, string condition, int count);

        [LoggerMessage(EventId = Diagnostics.EventIds.AsyncDeadLetterUnavailable, Level = LogLevel.Warning, Message = "Async event {Event} kept as failed: its dead-letter target {Target} is not a Lamina queue or topic")]
        public static partial void DeadLetterUnavailable(ILogger logger, string @event, string target);

        [LoggerMessage(EventId = Diagnostics.EventIds.AsyncDestinationUnsupported, Level = LogLevel.Warning, Message = "Destination {Destination} is not a Lamina function or queue; the record is not delivered")]
        public static partial void DestinationUnsupported(ILogger logger, string destination);

        [LoggerMessage(EventId = Diagnostics.EventIds.AsyncLoopFailed, Level = LogLevel.Error, Message = "The async dispatcher could not read the queue: {Reason}")]
        public static partial void LoopFailed(ILogger logger, string reason);

        [LoggerMessage(EventId = Diagnostics.EventIds.AsyncSettleFailed, Level = LogLevel.Error, Message = "Async event {Event}: its outcome could not be stored ({Reason}); it goes back to the queue once the store takes writes again")]
        public static partial void SettleFailed(ILogger logger, string @event, string reason);

        [LoggerMessage(EventId = Diagnostics.EventIds.AsyncRequeued, Level = LogLevel.Warning, Message = "Async event {Event} is back in the queue: the store takes writes again")]
        public static partial void Requeued(ILogger logger, string @event);
    }
}
