using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using Lamina.Server.DynamoDb;
using Lamina.Server.Invoke;

namespace Lamina.Server.Lambda;

/// <summary>
/// DynamoDB stream mappings (issue #21). Each mapping reads its stream's one shard in ParallelizationFactor lanes (a
/// record's lane is a hash of its key, so one item's changes stay in order in one lane). A lane gathers up to
/// BatchSize records (within MaximumBatchingWindowInSeconds), drops those FilterCriteria reject, and invokes the
/// function synchronously with Lambda's DynamoDB event. Only a batch that succeeded (or was given up on) moves the
/// lane's checkpoint, which is written durably to dynamodb.db before the next batch: a failing batch blocks its lane
/// — retried with backoff, bisected when BisectBatchOnFunctionError is on — until it succeeds, runs out of
/// MaximumRetryAttempts or its records pass MaximumRecordAgeInSeconds; then its batch info goes to the OnFailure
/// destination and the lane moves on. After a restart each lane resumes after its checkpoint: nothing is skipped,
/// and after a clean stop (which lets in-flight batches finish) nothing is processed twice.
/// </summary>
/// <remarks>
/// On a cluster (issue #25) the mappings and their checkpoints are the cluster's, and the lanes of every stream mapping
/// run on one node, the holder of <see cref="StreamsLease"/>: a lane stops before its next batch once this node no
/// longer holds it, and the heartbeat starts the lanes where the lease has moved to, from the shared checkpoints (a
/// batch that was running on a node that died runs again: at least once, in order per key).
/// </remarks>
internal sealed partial class EventSourceMappings
{
    /// <summary>Lambda caps a synchronous invocation's payload at 6 MB; batches stop short of it.</summary>
    private const int MaxPayloadBytes = 6 * 1024 * 1024 - 64 * 1024;

    /// <summary>The lease whose holder runs the cluster's stream mappings.</summary>
    public const string StreamsLease = "dynamodb-streams";

    private readonly ConcurrentDictionary<string, StreamPoller> _streamPollers = new(StringComparer.Ordinal);

    /// <summary>On each cluster heartbeat: starts the stream mappings' lanes here when this node holds the lease, stops them when not.</summary>
    private void FollowStreamsLease()
    {
        var holds = _cluster!.Holds(StreamsLease);
        foreach (var mapping in _mappings.Values.Where(static m => m.IsStream && m.Enabled))
        {
            var running = _streamPollers.TryGetValue(mapping.Uuid, out var poller) && poller.Running;
            if (holds != running)
            {
                ReconcileStream(mapping);
            }
        }
    }

    /// <summary>Sets the first checkpoints of a new stream mapping: TRIM_HORIZON from the oldest record, LATEST after the newest.</summary>
    public async Task InitializeStreamAsync(EventSourceMapping mapping)
    {
        var start = mapping.StartingPosition == "LATEST" ? _dynamo.LastSequence(_dynamo.FindStream(mapping.StreamId!.Value)?.TableId) : 0;
        for (var lane = 0; lane < mapping.ParallelizationFactor; lane++)
        {
            await _dynamo.SaveCheckpointAsync(mapping.Uuid, lane, start);
        }
    }

    private void ReconcileStream(EventSourceMapping mapping)
    {
        if (_streamPollers.TryRemove(mapping.Uuid, out var previous))
        {
            _ = previous.StopAsync();
        }
        if (mapping.Enabled && !_stopping.IsCancellationRequested && (_cluster is null || _cluster.Holds(StreamsLease)))
        {
            var poller = new StreamPoller(this, mapping.Uuid, _stopping.Token);
            _streamPollers[mapping.Uuid] = poller;
            poller.Start(previous);
        }
    }

    /// <summary>The lanes of one stream mapping.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "A plain source (no timer, no wait handle) has nothing to release; what had to be undone, its link to the server's token, is undone when the lanes end.")]
    private sealed class StreamPoller(EventSourceMappings owner, string uuid, CancellationToken stopping)
    {
        // Not a linked source: that one is undone only by disposing it, which StopAsync (called twice on a replaced
        // poller) would race. The link to the server's token is undone when the lanes end, so the pollers a mapping's
        // updates and the lease's moves replace leave nothing registered on it.
        private readonly CancellationTokenSource _cancel = new();
        private Task _running = Task.CompletedTask;

        public void Start(StreamPoller? previous)
        {
            var link = stopping.Register(static source => ((CancellationTokenSource)source!).Cancel(), _cancel);
            _running = Task.Run(async () =>
            {
                try
                {
                    if (previous is not null)
                    {
                        await previous.StopAsync(); // one set of lanes per mapping at a time: the checkpoints are theirs
                    }
                    await owner.RunLanesAsync(uuid, _cancel.Token);
                }
                finally
                {
                    link.Dispose();
                }
            });
        }

        /// <summary>Whether its lanes still run (they end when this node loses the streams lease).</summary>
        public bool Running => !_running.IsCompleted;

        public async Task StopAsync()
        {
            await _cancel.CancelAsync();
            await _running.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private async Task RunLanesAsync(string uuid, CancellationToken cancellation)
    {
        if (!_mappings.TryGetValue(uuid, out var mapping))
        {
            return;
        }
        var checkpoints = _dynamo.LoadCheckpoints(uuid);
        var lanes = mapping.ParallelizationFactor;
        // A lane added by a larger ParallelizationFactor starts where the slowest existing lane is.
        var floor = checkpoints.Count == 0 ? 0 : checkpoints.Values.Min();
        await Task.WhenAll(Enumerable.Range(0, lanes).Select(lane =>
            Task.Run(() => RunLaneAsync(uuid, lane, lanes, checkpoints.TryGetValue(lane, out var at) ? at : floor, cancellation), CancellationToken.None)));
    }

    private async Task RunLaneAsync(string uuid, int lane, int lanes, long checkpoint, CancellationToken cancellation)
    {
        var window = new TumblingWindow();
        var scanned = checkpoint; // how far this lane has looked (records of other lanes need no checkpoint)
        try
        {
            while (!cancellation.IsCancellationRequested && _mappings.TryGetValue(uuid, out var mapping))
            {
                if (_cluster is { } cluster && !cluster.Holds(StreamsLease))
                {
                    return; // another node runs the lanes now, from the checkpoints this one saved
                }
                if (_dynamo.FindStream(mapping.StreamId!.Value) is not { } stream)
                {
                    mapping.LastProcessingResult = "PROBLEM: Stream not found";
                    await Task.Delay(TimeSpan.FromSeconds(5), _time, cancellation);
                    continue;
                }
                var wake = _dynamo.StreamWrittenAsync(cancellation);
                var (batch, reachedTo) = await GatherAsync(mapping, stream, lane, lanes, scanned, cancellation);
                if (batch.Count == 0)
                {
                    scanned = reachedTo;
                    if (mapping.TumblingWindowInSeconds > 0 && window.Due(_time.GetUtcNow().ToUnixTimeMilliseconds()))
                    {
                        await CloseWindowAsync(mapping, stream, window);
                    }
                    // Nothing new: sleep until a commit writes stream records (or a second passes, for windows and age).
                    await Task.WhenAny(wake, Task.Delay(TimeSpan.FromSeconds(1), _time, cancellation));
                    cancellation.ThrowIfCancellationRequested();
                    continue;
                }
                var done = await ProcessStreamBatchAsync(mapping, stream, batch, window);
                // Durability point: the lane's checkpoint moves only after its batch is done (or given up on).
                checkpoint = done ? reachedTo : batch[0].Sequence - 1;
                scanned = checkpoint;
                await _dynamo.SaveCheckpointAsync(uuid, lane, checkpoint);
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (Exception e)
        {
            Log.StreamPollerFailed(_logger, uuid, e);
        }
    }

    /// <summary>
    /// Up to BatchSize of this lane's records after <paramref name="after"/> (waiting up to the batching window for
    /// more), none past the payload limit nor across a tumbling window's end; and the sequence number read up to.
    /// </summary>
    private async Task<(List<StreamRecord> Batch, long ReachedTo)> GatherAsync(EventSourceMapping mapping, StreamRow stream, int lane, int lanes, long after,
        CancellationToken cancellation)
    {
        var batch = new List<StreamRecord>();
        var reached = after;
        var bytes = 0;
        DateTimeOffset? deadline = null;
        long? windowStart = null;
        while (true)
        {
            var records = _dynamo.ReadStream(stream.Id, reached, 1000);
            foreach (var record in records)
            {
                if (record.Lane(lanes) != lane)
                {
                    reached = record.Sequence;
                    continue;
                }
                if (mapping.TumblingWindowInSeconds > 0)
                {
                    var start = TumblingWindow.StartOf(record.CreatedMs, mapping.TumblingWindowInSeconds);
                    windowStart ??= start;
                    if (start != windowStart)
                    {
                        return (batch, reached); // the next window's records go in a batch of their own
                    }
                }
                if (batch.Count > 0 && bytes + record.Body.Length + 512 > MaxPayloadBytes)
                {
                    return (batch, reached);
                }
                batch.Add(record);
                bytes += record.Body.Length + 512;
                reached = record.Sequence;
                if (batch.Count >= mapping.BatchSize)
                {
                    return (batch, reached);
                }
            }
            if (batch.Count == 0 && records.Count == 0 || mapping.MaximumBatchingWindowInSeconds == 0 && records.Count < 1000)
            {
                return (batch, reached);
            }
            if (batch.Count == 0)
            {
                continue; // a full page of other lanes' records: read on
            }
            deadline ??= _time.GetUtcNow().AddSeconds(mapping.MaximumBatchingWindowInSeconds);
            var left = deadline.Value - _time.GetUtcNow();
            if (left <= TimeSpan.Zero)
            {
                return (batch, reached);
            }
            if (records.Count < 1000)
            {
                await Task.WhenAny(_dynamo.StreamWrittenAsync(cancellation), Task.Delay(left, _time, cancellation));
                if (cancellation.IsCancellationRequested)
                {
                    return (batch, reached);
                }
            }
        }
    }

    /// <summary>
    /// Runs one batch to its end: true when every record is done (succeeded, filtered out, or discarded to the
    /// OnFailure destination), false when the mapping was stopped or disabled before that (the batch runs again).
    /// </summary>
    private async Task<bool> ProcessStreamBatchAsync(EventSourceMapping mapping, StreamRow stream, List<StreamRecord> batch, TumblingWindow window)
    {
        var arn = stream.Arn(_options.Region);
        var pending = new List<StreamRecord>(batch.Count);
        foreach (var record in batch)
        {
            if (mapping.Filters.Count == 0 || Matches(mapping, record, arn))
            {
                pending.Add(record);
            }
        }
        if (pending.Count == 0)
        {
            return true;
        }
        if (mapping.TumblingWindowInSeconds > 0)
        {
            var start = TumblingWindow.StartOf(pending[0].CreatedMs, mapping.TumblingWindowInSeconds);
            if (window.Start is { } open && open != start)
            {
                await CloseWindowAsync(mapping, stream, window);
            }
            window.Open(start, mapping.TumblingWindowInSeconds);
        }
        // Bisection splits a failing batch into halves, each retried on its own; the queue holds what is left.
        var queue = new LinkedList<List<StreamRecord>>();
        queue.AddFirst(pending);
        var attempts = 0;
        var backoff = TimeSpan.FromMilliseconds(100);
        while (queue.First is { } first)
        {
            if (!_mappings.TryGetValue(mapping.Uuid, out var live) || !live.Enabled || _stopping.IsCancellationRequested)
            {
                return false;
            }
            mapping = live;
            var part = first.Value;
            if (mapping.MaximumRecordAgeInSeconds >= 0 && part.Any(r => _time.GetUtcNow().ToUnixTimeMilliseconds() - r.CreatedMs > mapping.MaximumRecordAgeInSeconds * 1000L))
            {
                var old = part.Where(r => _time.GetUtcNow().ToUnixTimeMilliseconds() - r.CreatedMs > mapping.MaximumRecordAgeInSeconds * 1000L).ToList();
                await DiscardAsync(mapping, stream, old, "RecordAgeExceeded", attempts, null);
                part = [.. part.Except(old)];
                if (part.Count == 0)
                {
                    queue.RemoveFirst();
                    continue;
                }
                first.Value = part;
            }
            var (outcome, failedFrom, functionError) = await InvokeStreamBatchAsync(mapping, stream, part, window);
            switch (outcome)
            {
                case StreamInvokeOutcome.Throttled:
                    await Task.Delay(backoff, _time);
                    backoff = TimeSpan.FromMilliseconds(Math.Min(backoff.TotalMilliseconds * 2, 5000));
                    continue;
                case StreamInvokeOutcome.Success:
                    mapping.LastProcessingResult = "OK";
                    queue.RemoveFirst();
                    attempts = 0;
                    backoff = TimeSpan.FromMilliseconds(100);
                    continue;
            }
            // A failure: a partial one (ReportBatchItemFailures) retries from the first failed record on.
            if (failedFrom is { } from && from > 0)
            {
                part = part[from..];
                first.Value = part;
            }
            mapping.LastProcessingResult = "PROBLEM: Function call failed";
            if (mapping.BisectBatchOnFunctionError && part.Count > 1)
            {
                queue.RemoveFirst();
                queue.AddFirst(part[(part.Count / 2)..]);
                queue.AddFirst(part[..(part.Count / 2)]);
                continue;
            }
            attempts++;
            if (mapping.MaximumRetryAttempts >= 0 && attempts > mapping.MaximumRetryAttempts)
            {
                await DiscardAsync(mapping, stream, part, "RetryAttemptsExhausted", attempts, functionError);
                queue.RemoveFirst();
                attempts = 0;
                continue;
            }
            await Task.Delay(backoff, _time);
            backoff = TimeSpan.FromMilliseconds(Math.Min(backoff.TotalMilliseconds * 2, 5000));
        }
        return true;
    }

    private enum StreamInvokeOutcome
    {
        Success, Failed, Throttled,
    }

    /// <summary>
    /// One invocation with a batch: success, a failure (with the index of the first failed record when the function
    /// reported item failures), or a throttle (nothing ran; the batch waits and goes again without counting).
    /// </summary>
    private async Task<(StreamInvokeOutcome Outcome, int? FailedFrom, string? FunctionError)> InvokeStreamBatchAsync(EventSourceMapping mapping, StreamRow stream,
        List<StreamRecord> part, TumblingWindow window, bool finalForWindow = false)
    {
        if (!_functions.TryGetEntry(mapping.Function, out var entry) || entry.Resolve(mapping.Qualifier, Random.Shared) is not { } config)
        {
            mapping.LastProcessingResult = "PROBLEM: Function not found";
            return (StreamInvokeOutcome.Throttled, null, null);
        }
        if (!_limiter.TryAcquire(config.Name, entry.ReservedConcurrency, out var lease, out _))
        {
            return (StreamInvokeOutcome.Throttled, null, null);
        }
        var arn = stream.Arn(_options.Region);
        var payload = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(payload))
        {
            w.WriteStartObject();
            w.WriteStartArray("Records");
            foreach (var record in part)
            {
                record.WriteTo(w, _options.Region, arn);
            }
            w.WriteEndArray();
            if (mapping.TumblingWindowInSeconds > 0)
            {
                window.WriteTo(w, stream.ShardId, arn, finalForWindow);
            }
            w.WriteEndObject();
        }
        var invocation = new Invocation
        {
            RequestId = Guid.NewGuid().ToString(),
            Payload = payload.WrittenMemory,
            InvokedFunctionArn = mapping.Qualifier is null ? _options.FunctionArn(mapping.Function) : $"{_options.FunctionArn(mapping.Function)}:{mapping.Qualifier}",
            TraceId = Invocation.NewTraceId(_time),
        };
        var outcome = await _invoker.InvokeAsync(config, invocation, wantTail: false, lease!, untilLogged: true);
        if (outcome.ThrottleReason is not null)
        {
            return (StreamInvokeOutcome.Throttled, null, null);
        }
        if (outcome.Result is not { Outcome: InvocationOutcome.Success } result)
        {
            return (StreamInvokeOutcome.Failed, null, "Unhandled");
        }
        if (mapping.TumblingWindowInSeconds > 0)
        {
            window.TakeState(result.Body);
        }
        if (!mapping.ReportBatchItemFailures)
        {
            return (StreamInvokeOutcome.Success, null, null);
        }
        var failed = BatchItemFailures(result.Body);
        if (failed is null)
        {
            return (StreamInvokeOutcome.Failed, 0, "Handled");
        }
        if (failed.Count == 0)
        {
            return (StreamInvokeOutcome.Success, null, null);
        }
        // Lambda retries from the lowest failed sequence number: records before it are done.
        var firstFailed = part.FindIndex(r => failed.Contains(StreamRecord.SequenceNumber(r.Sequence)));
        return firstFailed < 0 ? (StreamInvokeOutcome.Failed, 0, "Handled") : (StreamInvokeOutcome.Failed, firstFailed, "Handled");
    }

    /// <summary>A tumbling window ends: one more invocation with no records and isFinalInvokeForWindow, then its state is dropped.</summary>
    private async Task CloseWindowAsync(EventSourceMapping mapping, StreamRow stream, TumblingWindow window)
    {
        if (window.Start is null)
        {
            return;
        }
        for (var attempt = 0; attempt < 3; attempt++)
        {
            var (outcome, _, _) = await InvokeStreamBatchAsync(mapping, stream, [], window, finalForWindow: true);
            if (outcome == StreamInvokeOutcome.Success)
            {
                break;
            }
            await Task.Delay(TimeSpan.FromMilliseconds(200 * (attempt + 1)), _time);
        }
        window.Reset();
    }

    private static bool Matches(EventSourceMapping mapping, StreamRecord record, string arn)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            record.WriteTo(w, "", arn);
        }
        using var document = JsonDocument.Parse(buffer.WrittenMemory);
        return mapping.Filters.Any(f => f.Matches(document.RootElement));
    }

    /// <summary>Records given up on: their batch's info (not the records) goes to the OnFailure destination, as Lambda sends it.</summary>
    private async Task DiscardAsync(EventSourceMapping mapping, StreamRow stream, List<StreamRecord> records, string condition, int attempts, string? functionError)
    {
        Log.StreamBatchDiscarded(_logger, mapping.Uuid, records.Count, condition);
        if (mapping.OnFailureDestination is not { } destination)
        {
            return;
        }
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteStartObject("requestContext");
            w.WriteString("requestId", Guid.NewGuid().ToString());
            w.WriteString("functionArn", mapping.Qualifier is null ? _options.FunctionArn(mapping.Function) : $"{_options.FunctionArn(mapping.Function)}:{mapping.Qualifier}");
            w.WriteString("condition", condition);
            w.WriteNumber("approximateInvokeCount", attempts);
            w.WriteEndObject();
            w.WriteStartObject("responseContext");
            w.WriteNumber("statusCode", 200);
            w.WriteString("executedVersion", mapping.Qualifier ?? "$LATEST");
            if (functionError is not null)
            {
                w.WriteString("functionError", functionError);
            }
            w.WriteEndObject();
            w.WriteString("version", "1.0");
            w.WriteString("timestamp", _time.GetUtcNow().UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture));
            w.WriteStartObject("DDBStreamBatchInfo");
            w.WriteString("shardId", stream.ShardId);
            w.WriteString("startSequenceNumber", StreamRecord.SequenceNumber(records[0].Sequence));
            w.WriteString("endSequenceNumber", StreamRecord.SequenceNumber(records[^1].Sequence));
            w.WriteString("approximateArrivalOfFirstRecord", Iso(records[0].CreatedMs));
            w.WriteString("approximateArrivalOfLastRecord", Iso(records[^1].CreatedMs));
            w.WriteNumber("batchSize", records.Count);
            w.WriteString("streamArn", stream.Arn(_options.Region));
            w.WriteEndObject();
            w.WriteEndObject();
        }
        var body = System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
        try
        {
            var name = destination[(destination.LastIndexOf(':') + 1)..];
            if (destination.StartsWith("arn:aws:sqs:", StringComparison.Ordinal) && _queues.TryGet(name, out var queue))
            {
                await _queues.SendAsync(queue, [new Sqs.OutgoingMessage(body, null, null, null, queue.Fifo ? "lambda" : null, queue.Fifo ? Guid.NewGuid().ToString() : null)]);
            }
            else if (destination.StartsWith("arn:aws:sns:", StringComparison.Ordinal) && _topics.TryGetByArn(destination, out var topic))
            {
                await _topics.PublishAsync(topic, body, null, []);
            }
            else
            {
                Log.StreamDestinationFailed(_logger, mapping.Uuid, destination, null);
            }
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            Log.StreamDestinationFailed(_logger, mapping.Uuid, destination, e);
        }
    }

    private static string Iso(long ms) => DateTimeOffset.FromUnixTimeMilliseconds(ms).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    /// <summary>A lane's tumbling window: its bounds and the state the function returned last (in memory, as Lambda keeps it).</summary>
    private sealed class TumblingWindow
    {
        private string _state = "{}";
        private long _end;

        public long? Start { get; private set; }

        public static long StartOf(long createdMs, int seconds) => createdMs / (seconds * 1000L) * (seconds * 1000L);

        public void Open(long start, int seconds)
        {
            if (Start == start)
            {
                return;
            }
            Start = start;
            _end = start + seconds * 1000L;
            _state = "{}";
        }

        public bool Due(long nowMs) => Start is not null && nowMs >= _end;

        public void Reset()
        {
            Start = null;
            _state = "{}";
        }

        public void TakeState(ReadOnlyMemory<byte> response)
        {
            try
            {
                using var document = JsonDocument.Parse(response);
                if (document.RootElement.ValueKind == JsonValueKind.Object && document.RootElement.TryGetProperty("state", out var state) && state.ValueKind == JsonValueKind.Object)
                {
                    _state = state.GetRawText();
                }
            }
            catch (JsonException)
            {
            }
        }

        public void WriteTo(Utf8JsonWriter w, string shardId, string arn, bool final)
        {
            w.WriteStartObject("window");
            w.WriteString("start", Iso(Start ?? 0));
            w.WriteString("end", Iso(_end));
            w.WriteEndObject();
            w.WritePropertyName("state");
            w.WriteRawValue(_state);
            w.WriteString("shardId", shardId);
            w.WriteString("eventSourceARN", arn);
            w.WriteBoolean("isFinalInvokeForWindow", final);
            w.WriteBoolean("isWindowTerminatedEarly", false);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = Diagnostics.EventIds.StreamPollerFailed, Level = LogLevel.Error, Message = "A lane of stream mapping {Uuid} stopped")]
        public static partial void StreamPollerFailed(ILogger logger, string uuid, Exception error);

        [LoggerMessage(EventId = Diagnostics.EventIds.StreamBatchDiscarded, Level = LogLevel.Warning, Message = "Stream mapping {Uuid} discarded {Count} records ({Condition})")]
        public static partial void StreamBatchDiscarded(ILogger logger, string uuid, int count, string condition);

        [LoggerMessage(EventId = Diagnostics.EventIds.StreamDestinationFailed, Level = LogLevel.Warning, Message = "Stream mapping {Uuid} could not send a discarded batch's info to {Destination}")]
        public static partial void StreamDestinationFailed(ILogger logger, string uuid, string destination, Exception? error);
    }
}
