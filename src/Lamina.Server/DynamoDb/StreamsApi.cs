using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Lamina.Server.DynamoDb;

/// <summary>
/// DynamoDB Streams (botocore's <c>dynamodbstreams</c> model, awsJson1_0, <c>X-Amz-Target: DynamoDBStreams_20120810.*</c>):
/// ListStreams, DescribeStream, GetShardIterator, GetRecords over the records <see cref="DynamoStore"/> writes in the
/// item's own transaction. Each stream has one shard, so commit order is the shard's order. A shard iterator is the
/// stream, the next sequence number and an expiry (15 minutes, as DynamoDB's), readable by its account only.
/// </summary>
internal static class StreamsApi
{
    public const string TargetPrefix = "DynamoDBStreams_20120810.";
    private static readonly TimeSpan IteratorLifetime = TimeSpan.FromMinutes(15);

    public static async Task HandleAsync(HttpContext context, string operation, ReadOnlyMemory<byte> body, DynamoStore store)
    {
        try
        {
            JsonElement request;
            try
            {
                using var document = JsonDocument.Parse(body.Length == 0 ? "{}"u8.ToArray() : body);
                request = document.RootElement.ValueKind == JsonValueKind.Object ? document.RootElement.Clone()
                    : throw new DynamoException("SerializationException", "Start of list found where not expected");
            }
            catch (JsonException)
            {
                throw new DynamoException("SerializationException", "The request body is not valid JSON.");
            }
            var call = new DynamoDbApi.DynamoCall(context, request, store);
            switch (operation)
            {
                case "ListStreams": await ListStreamsAsync(call); break;
                case "DescribeStream": await DescribeStreamAsync(call); break;
                case "GetShardIterator": await GetShardIteratorAsync(call); break;
                case "GetRecords": await GetRecordsAsync(call); break;
                default:
                    throw new DynamoException("UnknownOperationException", $"Lamina does not implement the DynamoDB Streams operation {operation}.");
            }
        }
        catch (DynamoException e)
        {
            await DynamoDbApi.WriteErrorAsync(context, e);
        }
        catch (InvalidOperationException e) when (e.TargetSite?.DeclaringType?.Assembly == typeof(JsonElement).Assembly)
        {
            await DynamoDbApi.WriteErrorAsync(context, new DynamoException("SerializationException", "Unexpected value type in payload"));
        }
    }

    private static StreamRow Stream(DynamoDbApi.DynamoCall call)
    {
        var arn = call.String("StreamArn")
            ?? throw DynamoException.Validation("1 validation error detected: Value null at 'streamArn' failed to satisfy constraint: Member must not be null");
        return call.Store.FindStream(call.Account, arn)
            ?? throw DynamoException.NotFound($"Requested resource not found: Stream: {arn} not found");
    }

    private static async Task ListStreamsAsync(DynamoDbApi.DynamoCall call)
    {
        var table = call.String("TableName");
        var limit = (int)(call.Long("Limit") ?? 100);
        if (limit is < 1 or > 100)
        {
            throw DynamoException.Validation($"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value between 1 and 100");
        }
        var start = call.String("ExclusiveStartStreamArn");
        var streams = call.Store.Streams.Where(s => s.Account == call.Account && (table is null || s.TableName == table))
            .OrderBy(static s => s.Id).ToList();
        if (start is not null)
        {
            var at = streams.FindIndex(s => s.Arn(call.Region) == start);
            streams = at < 0 ? streams : streams[(at + 1)..];
        }
        var page = streams.Take(limit).ToList();
        await call.RespondAsync(w =>
        {
            w.WriteStartArray("Streams");
            foreach (var stream in page)
            {
                w.WriteStartObject();
                w.WriteString("StreamArn", stream.Arn(call.Region));
                w.WriteString("TableName", stream.TableName);
                w.WriteString("StreamLabel", stream.Label);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            if (streams.Count > page.Count)
            {
                w.WriteString("LastEvaluatedStreamArn", page[^1].Arn(call.Region));
            }
        });
    }

    private static async Task DescribeStreamAsync(DynamoDbApi.DynamoCall call)
    {
        var stream = Stream(call);
        var (first, last) = call.Store.StreamBounds(stream.Id);
        await call.RespondAsync(w =>
        {
            w.WriteStartObject("StreamDescription");
            w.WriteString("StreamArn", stream.Arn(call.Region));
            w.WriteString("StreamLabel", stream.Label);
            w.WriteString("StreamStatus", stream.DisabledMs is null ? "ENABLED" : "DISABLED");
            w.WriteString("StreamViewType", stream.ViewType);
            w.WriteNumber("CreationRequestDateTime", stream.CreatedMs / 1000.0);
            w.WriteString("TableName", stream.TableName);
            w.WritePropertyName("KeySchema");
            DynamoStore.WriteKeySchema(w, stream);
            w.WriteStartArray("Shards");
            w.WriteStartObject();
            w.WriteString("ShardId", stream.ShardId);
            w.WriteStartObject("SequenceNumberRange");
            w.WriteString("StartingSequenceNumber", StreamRecord.SequenceNumber(Math.Max(first, 1)));
            if (stream.DisabledMs is not null)
            {
                w.WriteString("EndingSequenceNumber", StreamRecord.SequenceNumber(last));
            }
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteEndObject();
        });
    }

    private static async Task GetShardIteratorAsync(DynamoDbApi.DynamoCall call)
    {
        var stream = Stream(call);
        var shard = call.String("ShardId")
            ?? throw DynamoException.Validation("1 validation error detected: Value null at 'shardId' failed to satisfy constraint: Member must not be null");
        if (shard != stream.ShardId)
        {
            throw DynamoException.NotFound($"Requested resource not found: Shard does not exist");
        }
        var type = call.String("ShardIteratorType");
        var sequence = call.String("SequenceNumber");
        long after;
        switch (type)
        {
            case "TRIM_HORIZON":
                after = 0;
                break;
            case "LATEST":
                after = Math.Max(call.Store.StreamBounds(stream.Id).Last, call.Store.LastSequence());
                break;
            case "AT_SEQUENCE_NUMBER" or "AFTER_SEQUENCE_NUMBER":
                if (sequence is null || !long.TryParse(sequence, NumberStyles.None, CultureInfo.InvariantCulture, out var number) || number < 1)
                {
                    throw DynamoException.Validation(sequence is null
                        ? $"Must provide SequenceNumber for ShardIteratorType {type}"
                        : $"Invalid SequenceNumber: {sequence}");
                }
                var (first, _) = call.Store.StreamBounds(stream.Id);
                if (first > 0 && number < first)
                {
                    throw new DynamoException("TrimmedDataAccessException", "The operation attempted to read past the oldest stream record in a shard.");
                }
                after = type == "AT_SEQUENCE_NUMBER" ? number - 1 : number;
                break;
            default:
                throw DynamoException.Validation($"1 validation error detected: Value '{type}' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [AFTER_SEQUENCE_NUMBER, LATEST, AT_SEQUENCE_NUMBER, TRIM_HORIZON]");
        }
        var iterator = Iterator(call, stream, after);
        await call.RespondAsync(w => w.WriteString("ShardIterator", iterator));
    }

    private static string Iterator(DynamoDbApi.DynamoCall call, StreamRow stream, long after)
    {
        var expires = call.Store.NowMs + (long)IteratorLifetime.TotalMilliseconds;
        var text = $"{call.Account}|{stream.Id.ToString(CultureInfo.InvariantCulture)}|{after.ToString(CultureInfo.InvariantCulture)}|{expires.ToString(CultureInfo.InvariantCulture)}";
        return $"{stream.Arn(call.Region)}|1|" + Convert.ToBase64String(Encoding.UTF8.GetBytes(text));
    }

    private static async Task GetRecordsAsync(DynamoDbApi.DynamoCall call)
    {
        var iterator = call.String("ShardIterator")
            ?? throw DynamoException.Validation("1 validation error detected: Value null at 'shardIterator' failed to satisfy constraint: Member must not be null");
        var limit = (int)(call.Long("Limit") ?? 1000);
        if (limit is < 1 or > 1000)
        {
            throw DynamoException.Validation($"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value between 1 and 1000");
        }
        var (stream, after, expires) = ParseIterator(call, iterator);
        if (expires < call.Store.NowMs)
        {
            throw new DynamoException("ExpiredIteratorException", "Iterator expired. The iterator was created more than 15 minutes ago.");
        }
        var records = call.Store.ReadStream(stream.Id, after, limit);
        var next = records.Count > 0 ? records[^1].Sequence : after;
        // A disabled stream's shard is closed: once it is read to its end there is no next iterator.
        var closed = stream.DisabledMs is not null && records.Count < limit && next >= call.Store.StreamBounds(stream.Id).Last;
        await call.RespondAsync(w =>
        {
            w.WriteStartArray("Records");
            foreach (var record in records)
            {
                record.WriteTo(w, call.Region, null);
            }
            w.WriteEndArray();
            if (!closed)
            {
                w.WriteString("NextShardIterator", Iterator(call, stream, next));
            }
        });
    }

    private static (StreamRow Stream, long After, long Expires) ParseIterator(DynamoDbApi.DynamoCall call, string iterator)
    {
        try
        {
            var bar = iterator.LastIndexOf('|');
            var parts = Encoding.UTF8.GetString(Convert.FromBase64String(iterator[(bar + 1)..])).Split('|');
            if (parts.Length == 4 && parts[0] == call.Account
                && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var id)
                && long.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out var after)
                && long.TryParse(parts[3], NumberStyles.None, CultureInfo.InvariantCulture, out var expires)
                && call.Store.FindStream(id) is { } stream)
            {
                return (stream, after, expires);
            }
        }
        catch (FormatException)
        {
        }
        throw DynamoException.Validation("Invalid ShardIterator");
    }
}
