using System.Globalization;
using System.Text.Json;
using Lamina.Server.Storage;

namespace Lamina.Server.DynamoDb;

/// <summary>A table's stream, enabled or (for 24 hours after) disabled.</summary>
internal sealed record StreamRow(long Id, string Account, string TableName, long TableId, string Label, string ViewType, string KeySchemaJson, long CreatedMs, long? DisabledMs)
{
    /// <summary>One shard per stream, named as DynamoDB names shards (its records are all in commit order).</summary>
    public string ShardId => $"shardId-{CreatedMs.ToString("D20", CultureInfo.InvariantCulture)}-{Id.ToString("x8", CultureInfo.InvariantCulture)}";

    public string Arn(string region) => $"arn:aws:dynamodb:{region}:{Account}:table/{TableName}/stream/{Label}";
}

/// <summary>One stream record as stored: its sequence number, event and the record's <c>dynamodb</c> member.</summary>
internal sealed record StreamRecord(long Sequence, long CreatedMs, string EventName, bool Service, byte[] Body)
{
    public static string SequenceNumber(long sequence) => sequence.ToString("D21", CultureInfo.InvariantCulture);

    /// <summary>The record as GetRecords and Lambda's DynamoDB event show it.</summary>
    public void WriteTo(Utf8JsonWriter w, string region, string? eventSourceArn)
    {
        w.WriteStartObject();
        // Stable per record (a record read twice has one id), 32 hex digits like DynamoDB's.
        w.WriteString("eventID", Sequence.ToString("x32", CultureInfo.InvariantCulture));
        w.WriteString("eventName", EventName);
        w.WriteString("eventVersion", "1.1");
        w.WriteString("eventSource", "aws:dynamodb");
        w.WriteString("awsRegion", region);
        w.WritePropertyName("dynamodb");
        using (var body = JsonDocument.Parse(Body))
        {
            w.WriteStartObject();
            foreach (var member in body.RootElement.EnumerateObject())
            {
                if (member.Name == "SizeBytes")
                {
                    w.WriteString("SequenceNumber", SequenceNumber(Sequence));
                }
                member.WriteTo(w);
            }
            w.WriteEndObject();
        }
        if (Service)
        {
            // The Streams API names the members as its model does (Type, PrincipalId); Lambda's event in lower camel case.
            var lambdaEvent = eventSourceArn is not null;
            w.WriteStartObject("userIdentity");
            w.WriteString(lambdaEvent ? "type" : "Type", "Service");
            w.WriteString(lambdaEvent ? "principalId" : "PrincipalId", "dynamodb.amazonaws.com");
            w.WriteEndObject();
        }
        if (eventSourceArn is not null)
        {
            w.WriteString("eventSourceARN", eventSourceArn);
        }
        w.WriteEndObject();
    }

    /// <summary>The record's partition key (its Keys' hash attribute, encoded), for ParallelizationFactor lanes.</summary>
    public int Lane(int lanes)
    {
        if (lanes <= 1)
        {
            return 0;
        }
        using var body = JsonDocument.Parse(Body);
        var keys = body.RootElement.GetProperty("Keys").GetRawText();
        return (int)(System.IO.Hashing.XxHash32.HashToUInt32(System.Text.Encoding.UTF8.GetBytes(keys)) % (uint)lanes);
    }
}

internal sealed partial class DynamoStore
{
    /// <summary>How long stream records are kept (DynamoDB Streams: 24 hours).</summary>
    public static readonly TimeSpan StreamRetention = TimeSpan.FromHours(24);

    private static readonly TimeSpan SweepInterval = TimeSpan.FromSeconds(1);

    public IEnumerable<StreamRow> Streams => _streams.Values;

    public StreamRow? FindStream(string account, string arn) =>
        _streams.Values.FirstOrDefault(s => s.Account == account && s.Arn(_options.Region) == arn);

    public StreamRow? FindStream(long id) => _streams.TryGetValue(id, out var row) ? row : null;

    private StreamInfo AddStream(WriteContext context, TableInfo table, string viewType)
    {
        // The label is the creation time in ISO 8601 (milliseconds), as DynamoDB labels streams; kept unique per table.
        var created = context.NowMs;
        while (_streams.Values.Any(s => s.Account == table.Account && s.TableName == table.Name && s.CreatedMs == created))
        {
            created++;
        }
        var label = DateTimeOffset.FromUnixTimeMilliseconds(created).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff", CultureInfo.InvariantCulture);
        var keySchema = new System.Buffers.ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(keySchema))
        {
            w.WriteStartObject();
            TableInfo.WriteKeySchema(w, table.Hash, table.Range);
            w.WriteEndObject();
        }
        var schemaJson = System.Text.Encoding.UTF8.GetString(keySchema.WrittenSpan);
        var id = (long)context.Scalar("""
            INSERT INTO streams (account, table_name, table_id, label, view_type, key_schema, created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id;
            """, table.Account, table.Name, table.Id, label, viewType, schemaJson, created)!;
        var row = new StreamRow(id, table.Account, table.Name, table.Id, label, viewType, schemaJson, created, null);
        context.AfterCommit(() => _streams[id] = row);
        return new StreamInfo(id, label, viewType, created);
    }

    private void DisableStream(WriteContext context, long id)
    {
        var now = context.NowMs;
        Run(context, "UPDATE streams SET disabled_ms = $2 WHERE id = $1;", id, now);
        context.AfterCommit(() =>
        {
            if (_streams.TryGetValue(id, out var row))
            {
                _streams[id] = row with { DisabledMs = now };
            }
        });
    }

    /// <summary>The stream's records after <paramref name="afterSequence"/>, in order, at most <paramref name="limit"/>.</summary>
    public List<StreamRecord> ReadStream(long streamId, long afterSequence, int limit)
    {
        using var connection = OpenRead();
        using var select = Sql.Positional(connection, "SELECT seq, created_ms, event_name, service, body FROM stream_records WHERE stream_id = $1 AND seq > $2 ORDER BY seq LIMIT $3;",
            streamId, afterSequence, limit);
        using var reader = select.ExecuteReader();
        var records = new List<StreamRecord>();
        while (reader.Read())
        {
            records.Add(new StreamRecord(reader.GetInt64(0), reader.GetInt64(1), reader.GetString(2), reader.GetInt64(3) == 1, (byte[])reader[4]));
        }
        return records;
    }

    /// <summary>The stream's first and last sequence numbers still kept (0, 0 when it has none).</summary>
    public (long First, long Last) StreamBounds(long streamId)
    {
        using var connection = OpenRead();
        // Each bound alone in its subquery: SQLite reads it off one end of the index only then (min and max in one
        // SELECT read all of the stream's records: 61 ms at half a million).
        using var select = Sql.Positional(connection, """
            SELECT coalesce((SELECT min(seq) FROM stream_records WHERE stream_id = $1), 0), coalesce((SELECT max(seq) FROM stream_records WHERE stream_id = $1), 0);
            """, streamId);
        using var reader = select.ExecuteReader();
        reader.Read();
        return (reader.GetInt64(0), reader.GetInt64(1));
    }

    /// <summary>The highest sequence number ever given out (LATEST starts after it).</summary>
    /// <param name="tableId">
    /// On PostgreSQL, the table whose stream is about to be read from "now": its write lock is taken for the read, so
    /// that no write of it is still in flight with a lower sequence number (it would commit after the read and be
    /// skipped); every later write of it gets a higher one.
    /// </param>
    public long LastSequence(long? tableId = null)
    {
        using var connection = OpenRead();
        using var locked = IsPostgres && tableId is { } id ? connection.BeginTransaction() : null;
        if (locked is not null)
        {
            using var take = Sql.Positional(connection, "SELECT pg_advisory_xact_lock($1, $2);", TableLockClass, checked((int)tableId!.Value));
            take.Transaction = locked;
            take.ExecuteNonQuery();
        }
        // PostgreSQL: the highest kept (its identity's last value may belong to a write not yet committed).
        using var select = Sql.Positional(connection, IsPostgres
            ? "SELECT coalesce(max(seq), 0) FROM stream_records;"
            : "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'stream_records'), 0);");
        select.Transaction = locked;
        return (long)select.ExecuteScalar()!;
    }

    /// <summary>Completes when a transaction that wrote stream records commits (or at once if one did since the call began).</summary>
    public Task StreamWrittenAsync(CancellationToken cancellationToken) => Volatile.Read(ref _streamWritten).Task.WaitAsync(cancellationToken);

    // ---- event source mapping checkpoints (the stream pollers' positions, durable like the records) ----

    public Dictionary<int, long> LoadCheckpoints(string mapping)
    {
        using var connection = OpenRead();
        using var select = Sql.Positional(connection, "SELECT lane, seq FROM stream_checkpoints WHERE mapping = $1;", mapping);
        using var reader = select.ExecuteReader();
        var lanes = new Dictionary<int, long>();
        while (reader.Read())
        {
            lanes[(int)reader.GetInt64(0)] = reader.GetInt64(1);
        }
        return lanes;
    }

    public Task SaveCheckpointAsync(string mapping, int lane, long sequence) => WriteAsync(context =>
        Run(context, "INSERT INTO stream_checkpoints (mapping, lane, seq) VALUES ($1, $2, $3) ON CONFLICT (mapping, lane) DO UPDATE SET seq = excluded.seq;",
            mapping, lane, sequence));

    public Task DeleteCheckpointsAsync(string mapping) => WriteAsync(context => Run(context, "DELETE FROM stream_checkpoints WHERE mapping = $1;", mapping));

    // ---- the background sweep: TTL expiry and stream retention, one loop ----

    private async Task SweepLoopAsync()
    {
        var lastRetention = 0L;
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(SweepInterval, _time, _stopping.Token);
                if (!IsPostgres)
                {
                    Checkpoint();
                }
                else if (!_cluster!.Holds(SweepLease))
                {
                    continue; // another node sweeps the cluster's tables
                }
                await ExpireItemsAsync();
                if (NowMs - lastRetention > 60_000)
                {
                    lastRetention = NowMs;
                    await TrimStreamsAsync();
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                Log.SweepFailed(_logger, e);
            }
        }
    }

    /// <summary>
    /// Copies the WAL into the database file without blocking the writer (PASSIVE); the writer restarts the WAL
    /// from its beginning once a checkpoint has caught up, so it stays about a second of writes long.
    /// </summary>
    private void Checkpoint()
    {
        using var connection = OpenRead();
        using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA wal_checkpoint(PASSIVE);";
        command.ExecuteNonQuery();
    }

    /// <summary>
    /// Deletes items whose TTL has passed (up to 100 a sweep), each as a service deletion in the stream. Like DynamoDB,
    /// items that expired more than five years ago are left alone (the attribute is then taken for something else).
    /// </summary>
    private async Task ExpireItemsAsync()
    {
        var now = NowMs / 1000;
        var expired = new List<(long TableId, ItemKey Key)>();
        using (var connection = OpenRead())
        using (var select = Sql.Positional(connection, "SELECT table_id, seg, pk, sk FROM items WHERE expires IS NOT NULL AND expires <= $1 AND expires >= $2 LIMIT 100;",
            now, now - (5L * 365 * 24 * 3600)))
        {
            using var reader = select.ExecuteReader();
            while (reader.Read())
            {
                expired.Add((reader.GetInt64(0), new ItemKey((int)reader.GetInt64(1), (byte[])reader[2], (byte[])reader[3])));
            }
        }
        if (expired.Count == 0)
        {
            return;
        }
        var tables = expired.Select(e => _tables.Values.FirstOrDefault(t => t.Id == e.TableId)).OfType<TableInfo>().DistinctBy(static t => t.Id).ToList();
        var deleted = await WriteAsync(context =>
        {
            var count = 0;
            foreach (var (tableId, key) in expired)
            {
                var table = _tables.Values.FirstOrDefault(t => t.Id == tableId);
                if (table is not null && context.Store.IsPostgres)
                {
                    try
                    {
                        table = context.Current(table); // the definition under the table's lock: its indexes and TTL now
                    }
                    catch (DynamoException)
                    {
                        continue; // deleted meanwhile
                    }
                }
                if (table is null || Get(context, table, key) is not { } item || ExpiryOf(table, item) is not { } expires || expires > now)
                {
                    continue; // changed or gone since it was found
                }
                Delete(context, table, key, item, service: true);
                count++;
            }
            return count;
        }, tables);
        Log.TtlDeleted(_logger, deleted);
    }

    /// <summary>Stream records deleted per write at most by the retention sweep (the writer's other work takes turns).</summary>
    internal const int StreamTrimBatch = 5_000;

    /// <summary>
    /// Stream records past the 24-hour retention, oldest first, a batch per write: records are numbered in commit order,
    /// so the expired ones are the oldest, and a batch reads the oldest records only. (One <c>DELETE … WHERE created_ms
    /// &lt; cutoff</c> read every record, expired or not, in the writer: 0.25 s a minute with a million records, and
    /// after a day's backlog deleted it all in one transaction.) On a cluster the nodes' clocks may put a record a moment
    /// out of order: it holds the ones behind it back until it expires too.
    /// </summary>
    internal async Task TrimStreamsAsync()
    {
        var cutoff = NowMs - (long)StreamRetention.TotalMilliseconds;
        while (await WriteAsync(context => Run(context, """
            DELETE FROM stream_records WHERE seq IN (SELECT seq FROM stream_records ORDER BY seq LIMIT $2) AND created_ms < $1;
            """, cutoff, StreamTrimBatch)) == StreamTrimBatch)
        {
        }
        await WriteAsync(context => TrimTokensAndStreams(context, cutoff));
    }

    private int TrimTokensAndStreams(WriteContext context, long cutoff)
    {
        Run(context, "DELETE FROM transaction_tokens WHERE at_ms < $1;", context.NowMs - (long)TokenLifetime.TotalMilliseconds);
        foreach (var gone in _streams.Values.Where(s => s.DisabledMs is { } disabled && disabled < cutoff).ToList())
        {
            context.Announce = true; // the other nodes forget it too
            Run(context, "DELETE FROM streams WHERE id = $1;", gone.Id);
            context.AfterCommit(() => _streams.TryRemove(gone.Id, out _));
        }
        return 0;
    }

    /// <summary>For DescribeStream's KeySchema.</summary>
    public static void WriteKeySchema(Utf8JsonWriter w, StreamRow stream)
    {
        using var schema = JsonDocument.Parse(stream.KeySchemaJson);
        schema.RootElement.GetProperty("KeySchema").WriteTo(w);
    }
}
