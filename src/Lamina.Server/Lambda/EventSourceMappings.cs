using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using Lamina.Server.EventBridge;
using Lamina.Server.Hosting;
using Lamina.Server.Invoke;
using Lamina.Server.Sqs;
using Lamina.Server.Storage;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Lamina.Server.Lambda;

/// <summary>An event source mapping from a Lamina queue or DynamoDB stream to a function (CreateEventSourceMapping).</summary>
internal sealed record EventSourceMapping
{
    public required string Uuid { get; init; }

    /// <summary>The queue's name; empty for a DynamoDB stream mapping.</summary>
    public required string QueueName { get; init; }
    public required string EventSourceArn { get; init; }

    /// <summary>The function's registry key.</summary>
    public required string Function { get; init; }
    public string? Qualifier { get; init; }
    public int BatchSize { get; init; } = 10;
    public int MaximumBatchingWindowInSeconds { get; init; }
    public bool Enabled { get; init; } = true;
    public bool ReportBatchItemFailures { get; init; }

    /// <summary>The FilterCriteria as given (JSON), and its patterns.</summary>
    public string? FilterCriteriaJson { get; init; }
    public IReadOnlyList<EventPattern> Filters { get; init; } = [];
    public int? MaximumConcurrency { get; init; }
    public DateTimeOffset LastModified { get; init; }
    public string LastProcessingResult { get; set; } = "No records processed";

    // DynamoDB stream mappings (issue #21): the stream, and the stream-only settings with Lambda's defaults.

    /// <summary>The DynamoDB stream's id in dynamodb.db; null for a queue mapping.</summary>
    public long? StreamId { get; init; }
    public bool IsStream => StreamId is not null;
    public string? StartingPosition { get; init; }
    public int ParallelizationFactor { get; init; } = 1;
    public bool BisectBatchOnFunctionError { get; init; }

    /// <summary>-1: retry until the record expires (Lambda's default for streams).</summary>
    public int MaximumRetryAttempts { get; init; } = -1;

    /// <summary>-1: no limit (the stream's 24 h retention bounds it).</summary>
    public int MaximumRecordAgeInSeconds { get; init; } = -1;

    /// <summary>DestinationConfig.OnFailure.Destination: an SQS queue or SNS topic ARN for discarded batches' info.</summary>
    public string? OnFailureDestination { get; init; }
    public int TumblingWindowInSeconds { get; init; }
}

/// <summary>
/// Event source mappings for Lamina's queues (issue #11): kept in <c>lamina.db</c>, each enabled one drained by its
/// pollers. A poller long-polls the queue, gathers up to BatchSize messages within MaximumBatchingWindowInSeconds,
/// drops (deletes) messages the FilterCriteria do not match, and invokes the function synchronously with Lambda's SQS
/// event, within the function's and the account's concurrency. A success deletes the batch — all of it, or, with
/// ReportBatchItemFailures, all but the <c>batchItemFailures</c>; a failure leaves the messages to reappear after the
/// queue's visibility timeout, so a poison message reaches the dead-letter queue through the queue's redrive policy.
/// Pollers scale with the backlog: one while the queue is empty, up to MaximumConcurrency (default 5) while each
/// receive comes back full. A throttle puts the batch back at once and backs off; nothing is lost. In a cluster every
/// node polls every mapping, each within its slice of MaximumConcurrency (<see cref="PollerLimit"/>).
/// </summary>
internal sealed partial class EventSourceMappings : IHostedService, IDisposable
{
    private const int DefaultMaximumConcurrency = 5;

    private readonly Database _database;
    private readonly QueueStore _queues;
    private readonly DynamoDb.DynamoStore _dynamo;
    private readonly Sns.TopicStore _topics;
    private readonly FunctionRegistry _functions;
    private readonly ConcurrencyLimiter _limiter;
    private readonly Invoker _invoker;
    private readonly LaminaOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<EventSourceMappings> _logger;
    private readonly ClusterNode? _cluster;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<string, EventSourceMapping> _mappings = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Pollers> _pollers = new(StringComparer.Ordinal);
    private readonly Lock _reloadLock = new();

    public EventSourceMappings(Database database, QueueStore queues, DynamoDb.DynamoStore dynamo, Sns.TopicStore topics, FunctionRegistry functions,
        ConcurrencyLimiter limiter, Invoker invoker, IOptions<LaminaOptions> options, TimeProvider time, ILogger<EventSourceMappings> logger,
        ClusterNode? cluster = null)
    {
        _cluster = cluster is { Enabled: true } ? cluster : null;
        _database = database;
        _queues = queues;
        _dynamo = dynamo;
        _topics = topics;
        _functions = functions;
        _limiter = limiter;
        _invoker = invoker;
        _options = options.Value;
        _time = time;
        _logger = logger;
    }

    public IEnumerable<EventSourceMapping> All => _mappings.Values;

    /// <summary>
    /// The mapping <paramref name="uuid"/> names. A cluster node that does not know it asks the database (it may have
    /// been created on another node a moment ago, and the notification not have arrived yet).
    /// </summary>
    public bool TryGet(string uuid, out EventSourceMapping mapping)
    {
        if (_mappings.TryGetValue(uuid, out mapping!) || _cluster is null)
        {
            return mapping is not null;
        }
        mapping = ReadShared(uuid)!;
        return mapping is not null;
    }

    public string Arn(string uuid) => $"arn:aws:lambda:{_options.Region}:{_options.AccountId}:event-source-mapping:{uuid}";

    public Task StartAsync(CancellationToken cancellationToken)
    {
        // On a single machine the node's file holds them all; on a cluster node the cluster's database does.
        if (_cluster is null)
        {
            using var connection = _database.Open();
            foreach (var mapping in ReadAll(connection))
            {
                _mappings[mapping.Uuid] = mapping;
                Reconcile(mapping);
            }
        }
        if (_cluster is { } cluster)
        {
            // Stream mappings run on the holder of one lease (ReconcileStream); the heartbeat follows its moves.
            cluster.RequestLease(StreamsLease);
            cluster.Heartbeat += () =>
            {
                FollowStreamsLease();
                return Task.CompletedTask;
            };
            ReloadShared();
            cluster.Follow(ClusterNode.MappingsChannel, ReloadShared);
        }
        return Task.CompletedTask;
    }

    private static List<EventSourceMapping> ReadAll(System.Data.Common.DbConnection connection)
    {
        using var select = connection.CreateCommand();
        select.CommandText = "SELECT mapping FROM event_source_mappings;";
        using var reader = select.ExecuteReader();
        var mappings = new List<EventSourceMapping>();
        while (reader.Read())
        {
            mappings.Add(Deserialize(reader.GetString(0)));
        }
        return mappings;
    }

    /// <summary>A cluster node: the shared mapping <paramref name="uuid"/> as stored now (null when there is none), cached.</summary>
    private EventSourceMapping? ReadShared(string uuid) => StoredShared(uuid) is { } mapping ? _mappings[uuid] = mapping : null;

    private EventSourceMapping? StoredShared(string uuid)
    {
        using var connection = _database.OpenShared();
        using var select = connection.CreateCommand();
        select.CommandText = "SELECT mapping FROM event_source_mappings WHERE uuid = @uuid;";
        select.Add("@uuid", uuid);
        return select.ExecuteScalar() is string json ? Deserialize(json) : null;
    }

    /// <summary>
    /// A cluster node: rereads one shared mapping (another node changed it), or all of them, and starts or stops
    /// pollers to match.
    /// </summary>
    private void ReloadShared(string? uuid = null)
    {
        // One reload at a time: each reads the table inside the lock, so the last to run applies the latest state
        // (notifications start them on the pool in no particular order).
        lock (_reloadLock)
        {
            Reload(uuid);
        }
    }

    private void Reload(string? uuid)
    {
        try
        {
            List<EventSourceMapping> stored;
            if (uuid is not null)
            {
                stored = StoredShared(uuid) is { } one ? [one] : [];
            }
            else
            {
                using var connection = _database.OpenShared();
                stored = ReadAll(connection);
            }
            var storedIds = stored.Select(static m => m.Uuid).ToHashSet(StringComparer.Ordinal);
            foreach (var mapping in stored)
            {
                if (!_mappings.TryGetValue(mapping.Uuid, out var known) || Serialize(known) != Serialize(mapping) || _pollers.ContainsKey(mapping.Uuid) != mapping.Enabled)
                {
                    _mappings[mapping.Uuid] = mapping;
                    Reconcile(mapping);
                }
            }
            foreach (var gone in _mappings.Values.Where(m => !storedIds.Contains(m.Uuid) && (uuid is null || m.Uuid == uuid)).ToList())
            {
                _mappings.TryRemove(gone.Uuid, out _);
                if (_pollers.TryRemove(gone.Uuid, out var pollers))
                {
                    _ = pollers.StopAsync();
                }
                if (_streamPollers.TryRemove(gone.Uuid, out var streamPoller))
                {
                    _ = streamPoller.StopAsync();
                }
            }
        }
        catch (Exception e) when (Sql.IsPostgresFailure(e))
        {
            // Reloaded again when the listener reconnects.
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        await Task.WhenAll(_pollers.Values.Select(static p => p.StopAsync()).Concat(_streamPollers.Values.Select(static p => p.StopAsync())));
    }

    public void Dispose()
    {
        _writeLock.Dispose();
        _stopping.Dispose();
    }

    /// <summary>Stores a new or changed mapping and starts or stops its pollers to match.</summary>
    public async Task SaveAsync(EventSourceMapping mapping)
    {
        if (_cluster is { } cluster)
        {
            await WriteSharedAsync(mapping.Uuid, cluster, "INSERT INTO event_source_mappings (uuid, mapping) VALUES (@uuid, @mapping) ON CONFLICT (uuid) DO UPDATE SET mapping = excluded.mapping;",
                Serialize(mapping));
            _mappings[mapping.Uuid] = mapping;
            Reconcile(mapping);
            return;
        }
        await _writeLock.WaitAsync();
        try
        {
            using var connection = _database.Open();
            using var upsert = connection.CreateCommand();
            upsert.CommandText = "INSERT INTO event_source_mappings (uuid, mapping) VALUES ($uuid, $mapping) ON CONFLICT (uuid) DO UPDATE SET mapping = excluded.mapping;";
            upsert.Parameters.AddWithValue("$uuid", mapping.Uuid);
            upsert.Parameters.AddWithValue("$mapping", Serialize(mapping));
            upsert.ExecuteNonQuery();
            _mappings[mapping.Uuid] = mapping;
        }
        finally
        {
            _writeLock.Release();
        }
        Reconcile(mapping);
    }

    /// <summary>
    /// A cluster node: <paramref name="work"/> on the shared table in a transaction holding the cluster's lock for
    /// mappings, announced (mapping <paramref name="uuid"/> changed) at its commit.
    /// </summary>
    private async Task InSharedLockAsync(string uuid, ClusterNode cluster, Func<NpgsqlConnection, NpgsqlTransaction, Task> work)
    {
        var transaction = await ClusterLock.AcquireAsync(_database, ClusterLock.EventSourceMappings);
        try
        {
            await work(transaction!.Connection!, transaction);
        }
        catch
        {
            await transaction!.Connection!.DisposeAsync();
            throw;
        }
        await ClusterLock.ReleaseAsync(transaction, ClusterNode.MappingsChannel, cluster.Payload(uuid));
        await ClusterLock.LeaveIoThread();
    }

    /// <summary>A cluster node: one statement on the shared table under the cluster's lock for mappings.</summary>
    private Task WriteSharedAsync(string uuid, ClusterNode cluster, string sql, string? mapping) =>
        InSharedLockAsync(uuid, cluster, async (connection, transaction) =>
        {
            await using var command = new NpgsqlCommand(sql, connection, transaction);
            command.Parameters.AddWithValue("uuid", uuid);
            if (mapping is not null)
            {
                command.Parameters.AddWithValue("mapping", mapping);
            }
            await command.ExecuteNonQueryAsync(CancellationToken.None);
        });

    /// <summary>
    /// Changes a mapping from its latest stored state and stores the result: in a cluster, read and written under the
    /// cluster's lock for mappings, so that an update on one node never undoes one another node just made, nor brings
    /// back a mapping another node deleted. Null when the mapping is gone or <paramref name="change"/> refused (null).
    /// </summary>
    public async Task<EventSourceMapping?> UpdateAsync(string uuid, Func<EventSourceMapping, EventSourceMapping?> change)
    {
        if (_cluster is not { } cluster)
        {
            if (!TryGet(uuid, out var current) || change(current) is not { } changed)
            {
                return null;
            }
            await SaveAsync(changed);
            return changed;
        }
        EventSourceMapping? updated = null;
        await InSharedLockAsync(uuid, cluster, async (connection, transaction) =>
        {
            await using (var read = new NpgsqlCommand("SELECT mapping FROM event_source_mappings WHERE uuid = @uuid;", connection, transaction))
            {
                read.Parameters.AddWithValue("uuid", uuid);
                if (await read.ExecuteScalarAsync(CancellationToken.None) is string json)
                {
                    updated = change(Deserialize(json));
                }
            }
            if (updated is not null)
            {
                await using var write = new NpgsqlCommand("UPDATE event_source_mappings SET mapping = @mapping WHERE uuid = @uuid;", connection, transaction);
                write.Parameters.AddWithValue("uuid", uuid);
                write.Parameters.AddWithValue("mapping", Serialize(updated));
                await write.ExecuteNonQueryAsync(CancellationToken.None);
            }
        });
        if (updated is not null)
        {
            _mappings[uuid] = updated;
            Reconcile(updated);
        }
        return updated;
    }

    public async Task DeleteAsync(string uuid)
    {
        if (_cluster is { } cluster)
        {
            await WriteSharedAsync(uuid, cluster, "DELETE FROM event_source_mappings WHERE uuid = @uuid;", null);
            _mappings.TryRemove(uuid, out _);
        }
        else
        {
            await _writeLock.WaitAsync();
            try
            {
                using var connection = _database.Open();
                using var delete = connection.CreateCommand();
                delete.CommandText = "DELETE FROM event_source_mappings WHERE uuid = $uuid;";
                delete.Parameters.AddWithValue("$uuid", uuid);
                delete.ExecuteNonQuery();
                _mappings.TryRemove(uuid, out _);
            }
            finally
            {
                _writeLock.Release();
            }
        }
        if (_pollers.TryRemove(uuid, out var pollers))
        {
            await pollers.StopAsync();
        }
        if (_streamPollers.TryRemove(uuid, out var streamPoller))
        {
            await streamPoller.StopAsync();
        }
        await _dynamo.DeleteCheckpointsAsync(uuid);
    }

    private void Reconcile(EventSourceMapping mapping)
    {
        if (mapping.IsStream)
        {
            ReconcileStream(mapping);
            return;
        }
        // A cluster node may reconcile one mapping from a request and from a notification at once: one at a time,
        // so that no set of pollers is left running unlisted.
        lock (_pollers)
        {
            if (_pollers.TryRemove(mapping.Uuid, out var previous))
            {
                _ = previous.StopAsync();
            }
            if (mapping.Enabled && !_stopping.IsCancellationRequested)
            {
                var pollers = new Pollers(this, mapping.Uuid, _stopping.Token);
                _pollers[mapping.Uuid] = pollers;
                pollers.Start();
            }
        }
    }

    /// <summary>The pollers of one mapping: a first one always, more while receives come back full.</summary>
    private sealed class Pollers(EventSourceMappings owner, string uuid, CancellationToken stopping)
    {
        private readonly CancellationTokenSource _cancel = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        private readonly List<Task> _running = [];
        private int _count;

        public void Start() => Add();

        public void Add()
        {
            var limit = owner._mappings.TryGetValue(uuid, out var mapping) ? owner.PollerLimit(mapping) : 1;
            lock (_running)
            {
                if (_count >= limit || _cancel.IsCancellationRequested)
                {
                    return;
                }
                _count++;
                var first = _count == 1;
                // Pollers beyond the first end when receives come back empty: their tasks go, or a bursty mapping's list
                // grows by one per scale-out for as long as it lives.
                _running.RemoveAll(static task => task.IsCompleted);
                _running.Add(Task.Run(() => owner.PollAsync(uuid, this, first, _cancel.Token)));
            }
        }

        public void Remove()
        {
            lock (_running)
            {
                _count--;
            }
        }

        /// <summary>
        /// Uncounts a poller beyond <paramref name="limit"/> (the slice shrank: a node joined); true if it should stop.
        /// The first poller stays, idle while the slice is 0.
        /// </summary>
        public bool TryRetire(int limit)
        {
            lock (_running)
            {
                if (_count <= Math.Max(limit, 1))
                {
                    return false;
                }
                _count--;
                return true;
            }
        }

        public async Task StopAsync()
        {
            await _cancel.CancelAsync();
            Task[] running;
            lock (_running)
            {
                running = [.. _running];
            }
            await Task.WhenAll(running);
            _cancel.Dispose();
        }
    }

    /// <summary>
    /// How many pollers (each one batch in flight) this node runs for <paramref name="mapping"/>: its
    /// <c>MaximumConcurrency</c>, or in a cluster this node's slice of it (<see cref="Invoke.ConcurrencyLimiter.Slice"/>,
    /// rotated by the mapping's id), so that the nodes together invoke at most that many at once. Without one, Lamina's
    /// default per node.
    /// </summary>
    private int PollerLimit(EventSourceMapping mapping)
    {
        if (mapping.MaximumConcurrency is not { } max)
        {
            return DefaultMaximumConcurrency;
        }
        if (_cluster is null)
        {
            return max;
        }
        var membership = _cluster.Membership;
        return Invoke.ConcurrencyLimiter.Slice(max, membership.Count, membership.Rank, Invoke.ConcurrencyLimiter.StableHash(mapping.Uuid));
    }

    /// <summary>One poller: receive a batch, invoke, settle; scale out on a full batch, retire (if not the first) on an empty one.</summary>
    private async Task PollAsync(string uuid, Pollers pollers, bool first, CancellationToken cancellation)
    {
        var backoff = TimeSpan.Zero;
        var retired = false;
        try
        {
            while (!cancellation.IsCancellationRequested && _mappings.TryGetValue(uuid, out var mapping))
            {
                if (backoff > TimeSpan.Zero)
                {
                    await Task.Delay(backoff, _time, cancellation);
                }
                try
                {
                    var limit = PollerLimit(mapping);
                    if (!first && pollers.TryRetire(limit))
                    {
                        retired = true; // this node's slice of MaximumConcurrency shrank
                        return;
                    }
                    if (limit == 0)
                    {
                        backoff = TimeSpan.FromSeconds(1); // the other nodes poll this mapping; look again when they change
                        continue;
                    }
                    if (!_queues.TryGet(mapping.QueueName, out var queue))
                    {
                        backoff = TimeSpan.FromSeconds(5); // the queue is gone; the mapping waits (AWS disables it)
                        continue;
                    }
                    var batch = await ReceiveBatchAsync(mapping, queue, cancellation);
                    if (batch.Count == 0)
                    {
                        if (!first)
                        {
                            return;
                        }
                        backoff = TimeSpan.Zero;
                        continue;
                    }
                    if (batch.Count >= Math.Min(mapping.BatchSize, 10))
                    {
                        pollers.Add(); // a full batch: there is a backlog
                    }
                    var throttled = await ProcessAsync(mapping, queue, batch);
                    backoff = throttled ? TimeSpan.FromMilliseconds(Math.Clamp(backoff.TotalMilliseconds * 2, 100, 5000)) : TimeSpan.Zero;
                }
                catch (System.Data.Common.DbException e)
                {
                    // A cluster's database away for a moment (a failover, a dropped connection): try again shortly.
                    // What was received and not deleted reappears after the visibility timeout.
                    Log.ReceiveFailed(_logger, uuid, e.Message);
                    backoff = TimeSpan.FromSeconds(1);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (Exception e)
        {
            Log.PollerFailed(_logger, uuid, e);
        }
        finally
        {
            if (!retired)
            {
                pollers.Remove();
            }
        }
    }

    private async Task<List<QueueMessage>> ReceiveBatchAsync(EventSourceMapping mapping, QueueInfo queue, CancellationToken cancellation)
    {
        var batch = await _queues.ReceiveAsync(queue.Name, Math.Min(10, mapping.BatchSize), queue.VisibilityTimeout, QueueStore.MaxWaitSeconds, cancellation);
        if (batch.Count == 0 || mapping.MaximumBatchingWindowInSeconds == 0)
        {
            return batch;
        }
        // Gather more until the batch is full or the window has passed.
        var until = _time.GetUtcNow().AddSeconds(mapping.MaximumBatchingWindowInSeconds);
        while (batch.Count < mapping.BatchSize && _time.GetUtcNow() < until && !cancellation.IsCancellationRequested)
        {
            var wait = (int)Math.Ceiling((until - _time.GetUtcNow()).TotalSeconds);
            var more = await _queues.ReceiveAsync(queue.Name, Math.Min(10, mapping.BatchSize - batch.Count), queue.VisibilityTimeout, Math.Clamp(wait, 0, 20), cancellation);
            if (more.Count == 0)
            {
                break;
            }
            batch.AddRange(more);
        }
        return batch;
    }

    /// <summary>Filters, invokes and settles one batch; true when the function was throttled (the batch went back).</summary>
    private async Task<bool> ProcessAsync(EventSourceMapping mapping, QueueInfo queue, List<QueueMessage> batch)
    {
        var records = new List<(QueueMessage Message, byte[] Record)>();
        foreach (var message in batch)
        {
            var record = Record(message, mapping.EventSourceArn);
            if (mapping.Filters.Count > 0)
            {
                using var document = JsonDocument.Parse(FilterView(record));
                if (!mapping.Filters.Any(f => f.Matches(document.RootElement)))
                {
                    await _queues.DeleteMessageAsync(queue.Name, message.ReceiptHandle); // filtered out: dropped, as Lambda does for SQS
                    continue;
                }
            }
            records.Add((message, record));
        }
        if (records.Count == 0)
        {
            return false;
        }
        if (!_functions.TryGetEntry(mapping.Function, out var entry) || entry.Resolve(mapping.Qualifier, Random.Shared) is not { } config)
        {
            mapping.LastProcessingResult = "PROBLEM: Function not found";
            await ReturnAsync(queue, records);
            return true;
        }
        if (!_limiter.TryAcquire(config.Name, entry.ReservedConcurrency, out var lease, out _))
        {
            await ReturnAsync(queue, records);
            return true;
        }
        var payload = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(payload))
        {
            w.WriteStartObject();
            w.WriteStartArray("Records");
            foreach (var (_, record) in records)
            {
                w.WriteRawValue(record, skipInputValidation: true);
            }
            w.WriteEndArray();
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
            await ReturnAsync(queue, records);
            return true;
        }
        if (outcome.Result is not { Outcome: InvocationOutcome.Success } result)
        {
            // The whole batch stays; it reappears after the visibility timeout (and, past maxReceiveCount, goes to the DLQ).
            mapping.LastProcessingResult = "PROBLEM: Function call failed";
            return false;
        }
        var failed = mapping.ReportBatchItemFailures ? BatchItemFailures(result.Body) : null;
        foreach (var (message, _) in records)
        {
            if (failed is null || !failed.Contains(message.MessageId))
            {
                await _queues.DeleteMessageAsync(queue.Name, message.ReceiptHandle);
            }
        }
        mapping.LastProcessingResult = "OK";
        return false;
    }

    /// <summary>Throttled before running: the messages become visible again at once (no receive is held against them).</summary>
    private async Task ReturnAsync(QueueInfo queue, List<(QueueMessage Message, byte[] Record)> records)
    {
        foreach (var (message, _) in records)
        {
            await _queues.ChangeVisibilityAsync(queue.Name, message.ReceiptHandle, 0);
        }
    }

    /// <summary>
    /// The ids a ReportBatchItemFailures response names (<c>{"batchItemFailures":[{"itemIdentifier":…}]}</c>). A
    /// response that is not of that shape fails the whole batch, as Lambda does; an empty list succeeds it.
    /// </summary>
    private static HashSet<string>? BatchItemFailures(ReadOnlyMemory<byte> body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            var root = document.RootElement;
            if (root.ValueKind is JsonValueKind.Null || (root.ValueKind == JsonValueKind.Object && !root.TryGetProperty("batchItemFailures", out _)))
            {
                return [];
            }
            var failures = new HashSet<string>(StringComparer.Ordinal);
            foreach (var failure in root.GetProperty("batchItemFailures").EnumerateArray())
            {
                failures.Add(failure.GetProperty("itemIdentifier").GetString() ?? "");
            }
            return failures;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException)
        {
            return null;
        }
    }

    /// <summary>Lambda's SQS record for one message.</summary>
    private byte[] Record(QueueMessage message, string sourceArn)
    {
        var buffer = new ArrayBufferWriter<byte>(512 + message.Body.Length);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("messageId", message.MessageId);
            w.WriteString("receiptHandle", message.ReceiptHandle);
            w.WriteString("body", message.Body);
            w.WriteStartObject("attributes");
            w.WriteString("ApproximateReceiveCount", message.ReceiveCount.ToString(CultureInfo.InvariantCulture));
            w.WriteString("SentTimestamp", message.SentMs.ToString(CultureInfo.InvariantCulture));
            w.WriteString("SenderId", _options.AccountId);
            w.WriteString("ApproximateFirstReceiveTimestamp", message.FirstReceiveMs.ToString(CultureInfo.InvariantCulture));
            if (message.GroupId is { } group)
            {
                w.WriteString("MessageGroupId", group);
                w.WriteString("MessageDeduplicationId", message.DeduplicationId ?? "");
                w.WriteString("SequenceNumber", message.Sequence.ToString("D20", CultureInfo.InvariantCulture));
            }
            w.WriteEndObject();
            w.WriteStartObject("messageAttributes");
            if (message.MessageAttributesJson is { } attributes)
            {
                using var document = JsonDocument.Parse(attributes);
                foreach (var attribute in document.RootElement.EnumerateObject())
                {
                    w.WriteStartObject(attribute.Name);
                    if (attribute.Value.TryGetProperty("StringValue", out var text))
                    {
                        w.WriteString("stringValue", text.GetString());
                    }
                    if (attribute.Value.TryGetProperty("BinaryValue", out var binary))
                    {
                        w.WriteString("binaryValue", binary.GetString());
                    }
                    w.WriteStartArray("stringListValues");
                    w.WriteEndArray();
                    w.WriteStartArray("binaryListValues");
                    w.WriteEndArray();
                    w.WriteString("dataType", attribute.Value.GetProperty("DataType").GetString());
                    w.WriteEndObject();
                }
            }
            w.WriteEndObject();
            w.WriteString("md5OfBody", message.Md5OfBody);
            if (message.Md5OfMessageAttributes is { } md5)
            {
                w.WriteString("md5OfMessageAttributes", md5);
            }
            w.WriteString("eventSource", "aws:sqs");
            w.WriteString("eventSourceARN", sourceArn);
            w.WriteString("awsRegion", _options.Region);
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>What filter patterns see: the record, with a JSON body parsed as JSON (Lambda's rule for SQS).</summary>
    private static byte[] FilterView(byte[] record)
    {
        using var document = JsonDocument.Parse(record);
        var body = document.RootElement.GetProperty("body").GetString() ?? "";
        var buffer = new ArrayBufferWriter<byte>(record.Length);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            foreach (var member in document.RootElement.EnumerateObject())
            {
                if (member.Name == "body" && EventRules.IsJson(body) && body.TrimStart().StartsWith('{'))
                {
                    w.WritePropertyName("body");
                    w.WriteRawValue(body);
                    continue;
                }
                member.WriteTo(w);
            }
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    private static string Serialize(EventSourceMapping m)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("Uuid", m.Uuid);
            w.WriteString("QueueName", m.QueueName);
            w.WriteString("EventSourceArn", m.EventSourceArn);
            w.WriteString("Function", m.Function);
            w.WriteString("Qualifier", m.Qualifier);
            w.WriteNumber("BatchSize", m.BatchSize);
            w.WriteNumber("MaximumBatchingWindowInSeconds", m.MaximumBatchingWindowInSeconds);
            w.WriteBoolean("Enabled", m.Enabled);
            w.WriteBoolean("ReportBatchItemFailures", m.ReportBatchItemFailures);
            w.WriteString("FilterCriteria", m.FilterCriteriaJson);
            if (m.MaximumConcurrency is { } max)
            {
                w.WriteNumber("MaximumConcurrency", max);
            }
            if (m.StreamId is { } streamId)
            {
                w.WriteNumber("StreamId", streamId);
                w.WriteString("StartingPosition", m.StartingPosition);
                w.WriteNumber("ParallelizationFactor", m.ParallelizationFactor);
                w.WriteBoolean("BisectBatchOnFunctionError", m.BisectBatchOnFunctionError);
                w.WriteNumber("MaximumRetryAttempts", m.MaximumRetryAttempts);
                w.WriteNumber("MaximumRecordAgeInSeconds", m.MaximumRecordAgeInSeconds);
                w.WriteString("OnFailureDestination", m.OnFailureDestination);
                w.WriteNumber("TumblingWindowInSeconds", m.TumblingWindowInSeconds);
            }
            w.WriteNumber("LastModified", m.LastModified.ToUnixTimeMilliseconds());
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static EventSourceMapping Deserialize(string json)
    {
        using var document = JsonDocument.Parse(json);
        var r = document.RootElement;
        var filter = r.GetProperty("FilterCriteria").GetString();
        return new EventSourceMapping
        {
            Uuid = r.GetProperty("Uuid").GetString()!,
            QueueName = r.GetProperty("QueueName").GetString()!,
            EventSourceArn = r.GetProperty("EventSourceArn").GetString()!,
            Function = r.GetProperty("Function").GetString()!,
            Qualifier = r.GetProperty("Qualifier").GetString(),
            BatchSize = r.GetProperty("BatchSize").GetInt32(),
            MaximumBatchingWindowInSeconds = r.GetProperty("MaximumBatchingWindowInSeconds").GetInt32(),
            Enabled = r.GetProperty("Enabled").GetBoolean(),
            ReportBatchItemFailures = r.GetProperty("ReportBatchItemFailures").GetBoolean(),
            FilterCriteriaJson = filter,
            Filters = ParseFilters(filter, out _) ?? [],
            MaximumConcurrency = r.TryGetProperty("MaximumConcurrency", out var max) ? max.GetInt32() : null,
            StreamId = r.TryGetProperty("StreamId", out var streamId) ? streamId.GetInt64() : null,
            StartingPosition = r.TryGetProperty("StartingPosition", out var position) ? position.GetString() : null,
            ParallelizationFactor = r.TryGetProperty("ParallelizationFactor", out var parallel) ? parallel.GetInt32() : 1,
            BisectBatchOnFunctionError = r.TryGetProperty("BisectBatchOnFunctionError", out var bisect) && bisect.GetBoolean(),
            MaximumRetryAttempts = r.TryGetProperty("MaximumRetryAttempts", out var retries) ? retries.GetInt32() : -1,
            MaximumRecordAgeInSeconds = r.TryGetProperty("MaximumRecordAgeInSeconds", out var age) ? age.GetInt32() : -1,
            OnFailureDestination = r.TryGetProperty("OnFailureDestination", out var onFailure) ? onFailure.GetString() : null,
            TumblingWindowInSeconds = r.TryGetProperty("TumblingWindowInSeconds", out var window) ? window.GetInt32() : 0,
            LastModified = DateTimeOffset.FromUnixTimeMilliseconds(r.GetProperty("LastModified").GetInt64()),
        };
    }

    /// <summary>FilterCriteria's patterns (<c>{"Filters":[{"Pattern":"…"}]}</c>), or null with the reason.</summary>
    public static List<EventPattern>? ParseFilters(string? filterCriteria, out string? error)
    {
        error = null;
        var patterns = new List<EventPattern>();
        if (string.IsNullOrEmpty(filterCriteria))
        {
            return patterns;
        }
        try
        {
            using var document = JsonDocument.Parse(filterCriteria);
            if (!document.RootElement.TryGetProperty("Filters", out var filters) || filters.ValueKind != JsonValueKind.Array)
            {
                return patterns;
            }
            foreach (var filter in filters.EnumerateArray())
            {
                var text = filter.TryGetProperty("Pattern", out var p) && p.ValueKind == JsonValueKind.String ? p.GetString()! : "";
                patterns.Add(EventPattern.Parse(text, out error) ?? throw new FormatException(error));
            }
            return patterns;
        }
        catch (Exception e) when (e is JsonException or FormatException)
        {
            error ??= e.Message;
            return null;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = Diagnostics.EventIds.EventSourcePollerFailed, Level = LogLevel.Error, Message = "A poller of event source mapping {Uuid} stopped")]
        public static partial void PollerFailed(ILogger logger, string uuid, Exception error);

        [LoggerMessage(EventId = Diagnostics.EventIds.EventSourceReceiveFailed, Level = LogLevel.Warning, Message = "A poller of event source mapping {Uuid} lost the queue's database ({Reason}); retrying in a second")]
        public static partial void ReceiveFailed(ILogger logger, string uuid, string reason);
    }
}
