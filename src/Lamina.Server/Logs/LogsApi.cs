using System.Data;
using System.Data.Common;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Lamina.Server.Hosting;
using Lamina.Server.Protocols;
using Lamina.Server.Storage;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Logs;

/// <summary>
/// The CloudWatch Logs API subset that reads function logs (LAMBDA.md §8.3): awsJson1_1, every call a <c>POST /</c>
/// with <c>X-Amz-Target: Logs_20140328.&lt;Operation&gt;</c>. <c>aws logs get-log-events</c>, <c>filter-log-events</c>,
/// <c>describe-log-groups / -streams</c> and CLI v2's <c>aws logs tail [--follow]</c> work against it; so do
/// CreateLogStream and PutLogEvents for an application's own groups, and subscription filters to Lambda functions
/// (<see cref="LogSubscriptions"/>, issue #23).
/// </summary>
internal static partial class LogsApi
{
    public const string TargetPrefix = "Logs_20140328.";

    /// <summary>CloudWatch's page caps: 50 groups or streams, 10,000 events.</summary>
    private const int MaxDescribeLimit = 50;
    private const int MaxEventsLimit = 10_000;

    /// <summary>CloudWatch answers at most 1 MB of events per call (then the caller pages on).</summary>
    private const int MaxResponseChars = 1024 * 1024;

    /// <summary>Rows FilterLogEvents examines per call; past it the answer is partial and says where to go on (as AWS's).</summary>
    private const int MaxScannedPerCall = 200_000;

    private static readonly int[] RetentionDays = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

    [GeneratedRegex(@"^[\.\-_/#A-Za-z0-9]{1,512}\z", RegexOptions.CultureInvariant)]
    private static partial Regex GroupNamePattern();

    /// <summary>Answers one call; <paramref name="operation"/> is the target after the prefix.</summary>
    public static async Task HandleAsync(HttpContext context, string operation, LogStore store, LogSubscriptions subscriptions, IOptions<LaminaOptions> options,
        TimeProvider time)
    {
        if (await JsonProtocolEndpoint.ReadObjectAsync(context) is not { } request)
        {
            await ErrorAsync(context, "SerializationException", "The request body must be a JSON object.");
            return;
        }

        var call = new Call(context, request, store, subscriptions, options.Value, time);
        try
        {
            switch (operation)
            {
                case "CreateLogGroup": await CreateLogGroupAsync(call); break;
                case "DeleteLogGroup": await DeleteLogGroupAsync(call); break;
                case "DescribeLogGroups": await DescribeLogGroupsAsync(call); break;
                case "DescribeLogStreams": await DescribeLogStreamsAsync(call); break;
                case "GetLogEvents": await GetLogEventsAsync(call); break;
                case "FilterLogEvents": await FilterLogEventsAsync(call); break;
                case "PutRetentionPolicy": await PutRetentionPolicyAsync(call); break;
                case "DeleteRetentionPolicy": await DeleteRetentionPolicyAsync(call); break;
                case "CreateLogStream": await CreateLogStreamAsync(call); break;
                case "PutLogEvents": await PutLogEventsAsync(call); break;
                case "PutSubscriptionFilter": await PutSubscriptionFilterAsync(call); break;
                case "DescribeSubscriptionFilters": await DescribeSubscriptionFiltersAsync(call); break;
                case "DeleteSubscriptionFilter": await DeleteSubscriptionFilterAsync(call); break;
                default:
                    await ErrorAsync(context, "UnknownOperationException", $"Lamina does not implement the CloudWatch Logs operation {operation}.");
                    break;
            }
        }
        catch (LogsException e)
        {
            await ErrorAsync(context, e.Code, e.Message);
        }
    }

    private static async Task CreateLogGroupAsync(Call call)
    {
        var name = call.GroupName(required: true)!;
        var created = await call.Store.ChangeAsync(connection =>
        {
            using var insert = connection.CreateCommand();
            insert.CommandText = "INSERT INTO log_groups (name, created_ms) VALUES (@name, @now) ON CONFLICT (name) DO NOTHING;";
            insert.Add("@name", name);
            insert.Add("@now", call.NowMs);
            return insert.ExecuteNonQuery() == 1;
        }, call.Aborted);
        if (!created)
        {
            throw new LogsException("ResourceAlreadyExistsException", "The specified log group already exists");
        }
        await call.EmptyAsync();
    }

    private static async Task DeleteLogGroupAsync(Call call)
    {
        var name = call.GroupName(required: true)!;
        var deleted = await call.Store.ChangeAsync(connection =>
        {
            using var delete = connection.CreateCommand();
            delete.CommandText = """
                DELETE FROM log_events WHERE group_name = @name;
                DELETE FROM log_chunks WHERE group_name = @name;
                DELETE FROM log_streams WHERE group_name = @name;
                DELETE FROM subscription_filters WHERE group_name = @name;
                DELETE FROM log_groups WHERE name = @name;
                """;
            delete.Add("@name", name);
            var found = delete.ExecuteNonQuery() > 0;
            call.Store.FiltersChanged(connection);
            return found;
        }, call.Aborted);
        if (!deleted)
        {
            throw GroupNotFound();
        }
        await call.EmptyAsync();
    }

    private static async Task PutRetentionPolicyAsync(Call call)
    {
        var name = call.GroupName(required: true)!;
        var days = call.Int("retentionInDays") ?? throw Invalid("1 validation error detected: Value null at 'retentionInDays' failed to satisfy constraint: Member must not be null");
        if (Array.IndexOf(RetentionDays, days) < 0)
        {
            throw Invalid(string.Create(CultureInfo.InvariantCulture,
                $"1 validation error detected: Value '{days}' at 'retentionInDays' failed to satisfy constraint: Member must satisfy enum value set: [{string.Join(", ", RetentionDays)}]"));
        }
        await SetRetentionAsync(call, name, days);
    }

    private static async Task DeleteRetentionPolicyAsync(Call call) => await SetRetentionAsync(call, call.GroupName(required: true)!, null);

    private static async Task SetRetentionAsync(Call call, string name, int? days)
    {
        var found = await call.Store.ChangeAsync(connection =>
        {
            using var update = connection.CreateCommand();
            update.CommandText = "UPDATE log_groups SET retention_days = @days WHERE name = @name;";
            update.Add("@name", name);
            update.Add("@days", days);
            return update.ExecuteNonQuery() == 1;
        }, call.Aborted);
        if (!found)
        {
            throw GroupNotFound();
        }
        await call.EmptyAsync();
    }

    private static async Task CreateLogStreamAsync(Call call)
    {
        var group = call.GroupName(required: true)!;
        var stream = call.StreamName();
        var created = await call.Store.ChangeAsync(connection =>
        {
            if (!GroupExists(connection, group))
            {
                throw GroupNotFound();
            }
            using var insert = connection.CreateCommand();
            insert.CommandText = "INSERT INTO log_streams (group_name, name, created_ms) VALUES (@group, @name, @now) ON CONFLICT (group_name, name) DO NOTHING;";
            insert.Add("@group", group);
            insert.Add("@name", stream);
            insert.Add("@now", call.NowMs);
            return insert.ExecuteNonQuery() == 1;
        }, call.Aborted);
        if (!created)
        {
            throw new LogsException("ResourceAlreadyExistsException", "The specified log stream already exists");
        }
        await call.EmptyAsync();
    }

    /// <summary>
    /// PutLogEvents into an existing stream, with CloudWatch's limits: 10,000 events and 1 MB (messages in UTF-8 plus 26
    /// bytes each), in chronological order, spanning at most 24 hours; events more than 14 days old (or past the group's
    /// retention) or 2 hours ahead are rejected and reported, the rest stored. Written through the store's buffer like
    /// function logs, so subscription filters see them too.
    /// </summary>
    private static async Task PutLogEventsAsync(Call call)
    {
        var group = call.GroupName(required: true)!;
        var stream = call.StreamName();
        if (!call.Request.TryGetProperty("logEvents", out var list) || list.ValueKind != JsonValueKind.Array)
        {
            throw Invalid("1 validation error detected: Value null at 'logEvents' failed to satisfy constraint: Member must not be null");
        }
        var count = list.GetArrayLength();
        if (count is < 1 or > MaxEventsLimit)
        {
            throw Invalid(string.Create(CultureInfo.InvariantCulture,
                $"1 validation error detected: Value at 'logEvents' failed to satisfy constraint: Member must have length between 1 and {MaxEventsLimit}"));
        }
        var events = new List<(long Timestamp, string Message)>(count);
        long bytes = 0;
        foreach (var item in list.EnumerateArray())
        {
            var at = events.Count + 1;
            if (item.ValueKind != JsonValueKind.Object
                || !item.TryGetProperty("timestamp", out var ts) || ts.ValueKind != JsonValueKind.Number || !ts.TryGetInt64(out var timestamp)
                || !item.TryGetProperty("message", out var m) || m.ValueKind != JsonValueKind.String)
            {
                throw Invalid(string.Create(CultureInfo.InvariantCulture,
                    $"1 validation error detected: Value at 'logEvents.{at}' failed to satisfy constraint: Member must have a numeric timestamp and a string message"));
            }
            var message = Call.Text(m, "message");
            if (message.Length == 0)
            {
                throw Invalid(string.Create(CultureInfo.InvariantCulture,
                    $"1 validation error detected: Value '' at 'logEvents.{at}.member.message' failed to satisfy constraint: Member must have length greater than or equal to 1"));
            }
            if (events.Count > 0 && timestamp < events[^1].Timestamp)
            {
                throw Invalid("Log events in a single PutLogEvents request must be in chronological order.");
            }
            bytes += System.Text.Encoding.UTF8.GetByteCount(message) + 26;
            events.Add((timestamp, message));
        }
        if (bytes > 1_048_576)
        {
            throw Invalid(string.Create(CultureInfo.InvariantCulture, $"Upload too large: {bytes} bytes exceeds limit of 1048576"));
        }

        var retention = await call.Store.ReadAsync(connection =>
        {
            using var select = connection.CreateCommand();
            select.CommandText = "SELECT retention_days FROM log_groups WHERE name = @name;";
            select.Add("@name", group);
            var value = select.ExecuteScalar() ?? throw GroupNotFound();
            if (!StreamExists(connection, group, stream))
            {
                throw new LogsException("ResourceNotFoundException", "The specified log stream does not exist.");
            }
            return value is DBNull ? (int?)null : Convert.ToInt32(value, CultureInfo.InvariantCulture);
        }, call.Aborted);

        // Sorted by time, so the rejected ones are a prefix (too old, expired) and a suffix (too new).
        var tooOld = events.FindIndex(e => e.Timestamp >= call.NowMs - 14 * 86_400_000L) is var o and >= 0 ? o : events.Count;
        var expired = retention is { } days ? events.FindIndex(e => e.Timestamp >= call.NowMs - days * 86_400_000L) is var x and >= 0 ? x : events.Count : 0;
        var tooNew = events.FindIndex(e => e.Timestamp > call.NowMs + 2 * 3_600_000L) is var n and >= 0 ? n : events.Count;
        var first = Math.Max(tooOld, expired);
        if (first < tooNew && events[tooNew - 1].Timestamp - events[first].Timestamp > 86_400_000L)
        {
            throw Invalid("The batch of log events in a single PutLogEvents request cannot span more than 24 hours.");
        }
        var dropped = 0;
        for (var i = first; i < tooNew; i++)
        {
            if (!call.Store.Write(group, stream, events[i].Timestamp, events[i].Message))
            {
                dropped++;
            }
        }
        if (dropped > 0)
        {
            throw new LogsException("ServiceUnavailableException", string.Create(CultureInfo.InvariantCulture,
                $"The log store's buffer is full: {dropped} of {tooNew - first} events were dropped (the store marks the loss in the stream). Retry later."));
        }
        await call.RespondAsync(w =>
        {
            if (tooOld > 0 || expired > 0 || tooNew < events.Count)
            {
                w.WriteStartObject("rejectedLogEventsInfo");
                if (tooNew < events.Count)
                {
                    w.WriteNumber("tooNewLogEventStartIndex", tooNew);
                }
                if (tooOld > 0)
                {
                    w.WriteNumber("tooOldLogEventEndIndex", tooOld);
                }
                if (expired > 0)
                {
                    w.WriteNumber("expiredLogEventEndIndex", expired);
                }
                w.WriteEndObject();
            }
        });
    }

    private static async Task DescribeLogGroupsAsync(Call call)
    {
        var prefix = call.String("logGroupNamePrefix") ?? "";
        var limit = call.Limit(MaxDescribeLimit, MaxDescribeLimit);
        var after = call.String("nextToken");
        var groups = await call.Store.ReadAsync(connection =>
        {
            using var select = connection.CreateCommand();
            // CAST: PostgreSQL's SUM of BIGINT is NUMERIC.
            select.CommandText = """
                SELECT g.name, g.created_ms, g.retention_days,
                       (SELECT CAST(COALESCE(SUM(stored_bytes), 0) AS BIGINT) FROM log_streams s WHERE s.group_name = g.name)
                FROM log_groups g
                WHERE substr(g.name, 1, length(@prefix)) = @prefix AND (@after IS NULL OR g.name > @after)
                  AND (@home = 0 OR g.name NOT LIKE '%:%')
                ORDER BY g.name LIMIT @limit;
                """;
            select.Add("@prefix", call.Internal(prefix));
            select.Add("@home", call.IsHomeAccount ? 1 : 0);
            select.Add("@after", after, DbType.String);
            select.Add("@limit", limit + 1);
            using var reader = select.ExecuteReader();
            var rows = new List<(string Name, long Created, int? Retention, long Bytes)>();
            while (reader.Read())
            {
                rows.Add((reader.GetString(0), reader.GetInt64(1), reader.IsDBNull(2) ? null : (int)reader.GetInt64(2), reader.GetInt64(3)));
            }
            return rows;
        }, call.Aborted);

        await call.RespondAsync(w =>
        {
            w.WriteStartArray("logGroups");
            foreach (var (name, created, retention, bytes) in groups.Take(limit))
            {
                w.WriteStartObject();
                w.WriteString("logGroupName", Call.External(name));
                w.WriteNumber("creationTime", created);
                if (retention is { } days)
                {
                    w.WriteNumber("retentionInDays", days);
                }
                w.WriteNumber("metricFilterCount", 0);
                w.WriteString("arn", call.GroupArn(name) + ":*");
                w.WriteString("logGroupArn", call.GroupArn(name));
                w.WriteNumber("storedBytes", bytes);
                w.WriteString("logGroupClass", "STANDARD");
                w.WriteEndObject();
            }
            w.WriteEndArray();
            if (groups.Count > limit)
            {
                w.WriteString("nextToken", groups[limit - 1].Name);
            }
        });
    }

    private static async Task DescribeLogStreamsAsync(Call call)
    {
        var group = call.GroupName(required: true)!;
        var prefix = call.String("logStreamNamePrefix") ?? "";
        var byTime = call.String("orderBy") switch
        {
            null or "LogStreamName" => false,
            "LastEventTime" => true,
            var other => throw Invalid($"1 validation error detected: Value '{other}' at 'orderBy' failed to satisfy constraint: Member must satisfy enum value set: [LogStreamName, LastEventTime]"),
        };
        if (byTime && prefix.Length > 0)
        {
            throw Invalid("Cannot order by LastEventTime with a logStreamNamePrefix.");
        }
        var descending = call.Bool("descending") ?? false;
        var limit = call.Limit(MaxDescribeLimit, MaxDescribeLimit);
        // The token is where the last page ended (its sort key and name), so streams created meanwhile shift nothing and
        // no page skips over the ones before it (by name, a seek in the key; by time, which no index orders, a scan of
        // the group's streams, as every page was before): "n+/<name>" by name, "t+/<ms>/<name>" by last event time, "-"
        // for descending; a token of another ordering or direction is refused.
        var tokenPrefix = (byTime ? "t" : "n") + (descending ? "-/" : "+/");
        var (afterTime, afterName) = StreamsToken(call.String("nextToken"), byTime, tokenPrefix);
        // As GetLogEvents and FilterLogEvents: the events put before this call count in each stream's times.
        await call.Store.WaitForBufferedAsync(TimeSpan.FromSeconds(1), call.Aborted);
        var streams = await call.Store.ReadAsync(connection =>
        {
            if (!GroupExists(connection, group))
            {
                return null;
            }
            using var select = connection.CreateCommand();
            var direction = descending ? "DESC" : "ASC";
            var beyond = descending ? "<" : ">";
            var (order, after) = byTime
                ? ($"COALESCE(last_event_ms, created_ms) {direction}, name {direction}",
                    $"(COALESCE(last_event_ms, created_ms) {beyond} @afterTime OR (COALESCE(last_event_ms, created_ms) = @afterTime AND name {beyond} @afterName))")
                : ($"name {direction}", $"name {beyond} @afterName");
            select.CommandText = $"""
                SELECT name, created_ms, first_event_ms, last_event_ms, last_ingest_ms, stored_bytes FROM log_streams
                WHERE group_name = @group AND substr(name, 1, length(@prefix)) = @prefix {(afterName is null ? "" : "AND " + after)}
                ORDER BY {order} LIMIT @limit;
                """;
            select.Add("@group", group);
            select.Add("@prefix", prefix);
            select.Add("@limit", limit + 1);
            select.Add("@afterName", afterName, DbType.String);
            select.Add("@afterTime", afterTime, DbType.Int64);
            using var reader = select.ExecuteReader();
            var rows = new List<(string Name, long Created, long? First, long? Last, long? Ingest, long Bytes)>();
            while (reader.Read())
            {
                rows.Add((reader.GetString(0), reader.GetInt64(1), NullableLong(reader, 2), NullableLong(reader, 3), NullableLong(reader, 4), reader.GetInt64(5)));
            }
            return rows;
        }, call.Aborted) ?? throw GroupNotFound();

        await call.RespondAsync(w =>
        {
            w.WriteStartArray("logStreams");
            foreach (var (name, created, first, last, ingest, bytes) in streams.Take(limit))
            {
                w.WriteStartObject();
                w.WriteString("logStreamName", name);
                w.WriteNumber("creationTime", created);
                WriteOptional(w, "firstEventTimestamp", first);
                WriteOptional(w, "lastEventTimestamp", last);
                WriteOptional(w, "lastIngestionTime", ingest);
                w.WriteString("arn", $"{call.GroupArn(group)}:log-stream:{name}");
                w.WriteNumber("storedBytes", bytes);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            if (streams.Count > limit)
            {
                var last = streams[limit - 1];
                w.WriteString("nextToken", byTime
                    ? string.Create(CultureInfo.InvariantCulture, $"{tokenPrefix}{last.Last ?? last.Created}/{last.Name}")
                    : tokenPrefix + last.Name);
            }
        });
    }

    /// <summary>Where DescribeLogStreams' <c>nextToken</c> says the last page ended; (null, null) for the first page.</summary>
    private static (long? Time, string? Name) StreamsToken(string? token, bool byTime, string prefix)
    {
        if (token is null)
        {
            return (null, null);
        }
        if (token.Length > 2 && token[1] == '/' && token[0] == prefix[0])
        {
            // "n/…", "t/…": a token of the build before tokens carried their direction, given back with the same
            // request (a paginator's) after an upgrade: its direction is the request's.
            token = prefix + token[2..];
        }
        if (!token.StartsWith(prefix, StringComparison.Ordinal))
        {
            throw Invalid("The specified nextToken is invalid.");
        }
        if (!byTime)
        {
            return (null, token[prefix.Length..]);
        }
        if (token.IndexOf('/', prefix.Length) is var slash and > 0
            && long.TryParse(token.AsSpan(prefix.Length, slash - prefix.Length), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var time))
        {
            return (time, token[(slash + 1)..]);
        }
        // Another query's token (or none of ours), as CloudWatch Logs answers it.
        throw Invalid("The specified nextToken is invalid.");
    }

    private static async Task GetLogEventsAsync(Call call)
    {
        var group = call.GroupName(required: true)!;
        var stream = call.String("logStreamName") ?? throw Invalid("1 validation error detected: Value null at 'logStreamName' failed to satisfy constraint: Member must not be null");
        var limit = call.Limit(MaxEventsLimit, MaxEventsLimit);
        var start = call.Long("startTime");
        var end = call.Long("endTime");
        // Tokens: "f/<id>" reads on after event <id>, "b/<id>" reads back before it.
        var token = call.String("nextToken");
        bool forward;
        long? from = null;
        if (token is null)
        {
            forward = call.Bool("startFromHead") ?? false;
        }
        else if (token.Length > 2 && token[1] == '/' && token[0] is 'f' or 'b'
            && long.TryParse(token.AsSpan(2), NumberStyles.None, CultureInfo.InvariantCulture, out var id))
        {
            forward = token[0] == 'f';
            from = id;
        }
        else
        {
            throw Invalid("The specified nextToken is invalid.");
        }

        await call.Store.WaitForBufferedAsync(TimeSpan.FromSeconds(1), call.Aborted);
        var events = await call.Store.ReadAsync(connection =>
        {
            if (!GroupExists(connection, group))
            {
                throw GroupNotFound();
            }
            if (!StreamExists(connection, group, stream))
            {
                throw new LogsException("ResourceNotFoundException", "The specified log stream does not exist.");
            }
            // Head-first or after a forward token: ascending. Otherwise the newest `limit`, read backwards, then reversed.
            var rows = ReadStream(connection, group, stream, forward, from, start, end, limit);
            // At most about 1 MB: the events nearest the reading position (the oldest forward, the newest backward).
            var size = 0;
            var keep = 0;
            while (keep < rows.Count && (keep == 0 || size + rows[keep].Message.Length <= MaxResponseChars))
            {
                size += rows[keep].Message.Length + 64;
                keep++;
            }
            rows.RemoveRange(keep, rows.Count - keep);
            if (!forward)
            {
                rows.Reverse();
            }
            return rows;
        }, call.Aborted);

        // An unchanged forward token tells the CLI's paginator it reached the end.
        var nextForward = events.Count > 0 ? $"f/{events[^1].Id:D20}" : forward && token is not null ? token : $"f/{from ?? 0:D20}";
        var nextBackward = events.Count > 0 ? $"b/{events[0].Id:D20}" : !forward && token is not null ? token : $"b/{from ?? 0:D20}";
        await call.RespondAsync(w =>
        {
            w.WriteStartArray("events");
            foreach (var e in events)
            {
                w.WriteStartObject();
                w.WriteNumber("timestamp", e.TimestampMs);
                w.WriteString("message", e.Message);
                w.WriteNumber("ingestionTime", e.IngestMs);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteString("nextForwardToken", nextForward);
            w.WriteString("nextBackwardToken", nextBackward);
        });
    }

    /// <summary>
    /// Up to <paramref name="limit"/> events of one stream past <paramref name="from"/> (exclusive), in id order (forward)
    /// or its reverse, through the stream's chunks (LogStore.ChunksSchema): 64 chunks at a time, found in the chunks'
    /// key from the reading position, their events by ranges of the events' key. A stream's chunks do not overlap, so
    /// the events of the chunks read so far are all the stream's events up to the last of them. (<c>group_name || ''</c>
    /// keeps SQLite, which has no statistics here, from reading the events through the group's index instead: the
    /// whole group for each chunk.)
    /// </summary>
    private static List<StoredEvent> ReadStream(DbConnection connection, string group, string stream, bool forward, long? from, long? start, long? end, int limit)
    {
        using var select = connection.CreateCommand();
        select.Add("@group", group);
        select.Add("@stream", stream);
        var position = select.Add("@from", from, DbType.Int64);
        select.Add("@start", start, DbType.Int64);
        select.Add("@end", end, DbType.Int64);
        var left = select.Add("@limit", limit);
        var rows = new List<StoredEvent>();
        while (rows.Count < limit)
        {
            // The next 64 chunks, each end of the range a seek in the chunks' key. Forward: the chunk that holds the
            // position (the last to start at or before it) and those after it.
            var after = position.Value is DBNull ? "" : forward
                ? """
                  AND last_id > @from AND first_id >= (SELECT COALESCE(MAX(first_id), 0) FROM log_chunks
                      WHERE group_name = @group AND stream_name = @stream AND first_id <= @from)
                  """
                : "AND first_id < @from";
            // A chunk whose newest event is older than startTime holds none of the window: passed over by its row alone
            // (without this, a window late in a long stream read every event before it: 34 ms for 200,000).
            var window = start is null ? "" : "AND last_event_ms >= @start";
            var chunks = $"""
                SELECT first_id, last_id FROM log_chunks WHERE group_name = @group AND stream_name = @stream {after} {window}
                ORDER BY first_id {(forward ? "ASC" : "DESC")} LIMIT 64
                """;
            // Where these chunks end: reading goes on from there when they hold fewer events than asked for.
            select.CommandText = $"SELECT {(forward ? "MAX(last_id)" : "MIN(first_id)")} FROM ({chunks}) AS c;";
            if (select.ExecuteScalar() is not { } bound || bound is DBNull)
            {
                break;
            }
            var windowEnd = Convert.ToInt64(bound, CultureInfo.InvariantCulture);
            select.CommandText = $"""
                SELECT e.id, e.timestamp_ms, e.ingest_ms, e.message
                FROM ({chunks}) AS c JOIN log_events e ON e.id BETWEEN c.first_id AND c.last_id
                WHERE e.group_name || '' = @group AND e.stream_name = @stream AND (@from IS NULL OR e.id {(forward ? ">" : "<")} @from)
                  AND (@start IS NULL OR e.timestamp_ms >= @start) AND (@end IS NULL OR e.timestamp_ms < @end)
                ORDER BY e.id {(forward ? "ASC" : "DESC")} LIMIT @limit;
                """;
            var asked = limit - rows.Count;
            left.Value = asked;
            var read = 0;
            using (var reader = select.ExecuteReader())
            {
                while (reader.Read())
                {
                    read++;
                    rows.Add(new StoredEvent(reader.GetInt64(0), "", reader.GetInt64(1), reader.GetInt64(2), reader.GetString(3)));
                }
            }
            // A full read may have stopped inside these chunks: on after its last event; otherwise after the chunks.
            position.Value = read == asked ? rows[^1].Id : windowEnd;
        }
        return rows;
    }

    private static async Task FilterLogEventsAsync(Call call)
    {
        var group = call.GroupName(required: true)!;
        var names = call.StringList("logStreamNames");
        var prefix = call.String("logStreamNamePrefix");
        if (names is not null && prefix is not null)
        {
            throw Invalid("You cannot specify both logStreamNames and logStreamNamePrefix.");
        }
        if (names is { Count: > 100 })
        {
            throw Invalid("1 validation error detected: Value at 'logStreamNames' failed to satisfy constraint: Member must have length less than or equal to 100");
        }
        if (!FilterPattern.TryParse(call.String("filterPattern"), out var filter, out var patternError))
        {
            throw Invalid($"Invalid filter pattern: {patternError}");
        }
        var limit = call.Limit(MaxEventsLimit, MaxEventsLimit);
        var start = call.Long("startTime");
        var end = call.Long("endTime");
        // Token: "<timestamp>/<id>" of the last event returned (or examined); results go on strictly after it.
        long? afterTs = null, afterId = null;
        if (call.String("nextToken") is { } token)
        {
            var slash = token.IndexOf('/', StringComparison.Ordinal);
            if (slash <= 0 || !long.TryParse(token.AsSpan(0, slash), NumberStyles.None, CultureInfo.InvariantCulture, out var ts)
                || !long.TryParse(token.AsSpan(slash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var lastId))
            {
                throw Invalid("The specified nextToken is invalid.");
            }
            (afterTs, afterId) = (ts, lastId);
        }

        await call.Store.WaitForBufferedAsync(TimeSpan.FromSeconds(1), call.Aborted);
        var (events, resume) = await call.Store.ReadAsync(connection =>
        {
            if (!GroupExists(connection, group))
            {
                throw GroupNotFound();
            }
            // Only the conditions given, so that the time window and the token's position are the group-and-time index's
            // range ("@start IS NULL OR …" kept the engines from seeking: every page read the group from its first event).
            using var select = connection.CreateCommand();
            var where = new System.Text.StringBuilder("group_name = @group");
            select.Add("@group", group);
            if (start is { } from)
            {
                where.Append(" AND timestamp_ms >= @start");
                select.Add("@start", from);
            }
            if (end is { } to)
            {
                where.Append(" AND timestamp_ms <= @end");
                select.Add("@end", to);
            }
            if (afterTs is { } ts)
            {
                where.Append(" AND (timestamp_ms, id) > (@afterTs, @afterId)");
                select.Add("@afterTs", ts);
                select.Add("@afterId", afterId);
            }
            if (prefix is not null)
            {
                where.Append(" AND substr(stream_name, 1, length(@prefix)) = @prefix");
                select.Add("@prefix", prefix);
            }
            select.CommandText = $"SELECT id, stream_name, timestamp_ms, ingest_ms, message FROM log_events WHERE {where} ORDER BY timestamp_ms, id;";
            using var reader = select.ExecuteReader();
            var matched = new List<StoredEvent>();
            var scanned = 0;
            var size = 0;
            (long Ts, long Id)? resumeAt = null;
            while (reader.Read())
            {
                var stream = reader.GetString(1);
                if (names is not null && !names.Contains(stream))
                {
                    if (++scanned == MaxScannedPerCall)
                    {
                        var examined = (Ts: reader.GetInt64(2), Id: reader.GetInt64(0));
                        resumeAt = reader.Read() ? examined : null; // go on after the last row examined
                        break;
                    }
                    continue;
                }
                var row = new StoredEvent(reader.GetInt64(0), stream, reader.GetInt64(2), reader.GetInt64(3), reader.GetString(4));
                if (filter.Matches(row.Message))
                {
                    matched.Add(row);
                    size += row.Message.Length + 128;
                }
                if (matched.Count == limit || ++scanned == MaxScannedPerCall || size >= MaxResponseChars)
                {
                    // More may follow: the caller goes on after this row.
                    resumeAt = reader.Read() ? (row.TimestampMs, row.Id) : null;
                    break;
                }
            }
            return (matched, resumeAt);
        }, call.Aborted);

        await call.RespondAsync(w =>
        {
            w.WriteStartArray("events");
            foreach (var e in events)
            {
                w.WriteStartObject();
                w.WriteString("logStreamName", e.Stream);
                w.WriteNumber("timestamp", e.TimestampMs);
                w.WriteString("message", e.Message);
                w.WriteNumber("ingestionTime", e.IngestMs);
                w.WriteString("eventId", e.Id.ToString("D20", CultureInfo.InvariantCulture));
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("searchedLogStreams");
            w.WriteEndArray();
            if (resume is { } r)
            {
                w.WriteString("nextToken", string.Create(CultureInfo.InvariantCulture, $"{r.Ts}/{r.Id}"));
            }
        });
    }

    private static bool GroupExists(DbConnection connection, string group)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1 FROM log_groups WHERE name = @name;";
        command.Add("@name", group);
        return command.ExecuteScalar() is not null;
    }

    private static bool StreamExists(DbConnection connection, string group, string stream)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1 FROM log_streams WHERE group_name = @group AND name = @name;";
        command.Add("@group", group);
        command.Add("@name", stream);
        return command.ExecuteScalar() is not null;
    }

    private static long? NullableLong(DbDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetInt64(ordinal);

    private static void WriteOptional(Utf8JsonWriter w, string name, long? value)
    {
        if (value is { } v)
        {
            w.WriteNumber(name, v);
        }
    }

    private static LogsException GroupNotFound() => new("ResourceNotFoundException", "The specified log group does not exist.");

    private static LogsException Invalid(string message) => new("InvalidParameterException", message);

    private static Task ErrorAsync(HttpContext context, string code, string message) => Protocols.JsonProtocolEndpoint.WriteErrorAsync(context, code, message);

    private readonly record struct StoredEvent(long Id, string Stream, long TimestampMs, long IngestMs, string Message);

    /// <summary>An error answered as awsJson1_1 does: 400 with <c>__type</c>.</summary>
    private sealed class LogsException(string code, string message) : Exception(message)
    {
        public string Code { get; } = code;
    }

    /// <summary>One call's request and what every operation needs to read it and answer.</summary>
    private sealed class Call(HttpContext context, JsonElement request, LogStore store, LogSubscriptions subscriptions, LaminaOptions options, TimeProvider time)
    {
        public LogStore Store { get; } = store;

        public LogSubscriptions Subscriptions { get; } = subscriptions;

        public JsonElement Request => request;

        public CancellationToken Aborted => context.RequestAborted;

        public long NowMs { get; } = time.GetUtcNow().ToUnixTimeMilliseconds();

        /// <summary>
        /// The account the caller acts for. Another account's groups are kept as <c>account:name</c> (a group name has
        /// no <c>:</c>), so each account sees and touches only its own functions' logs.
        /// </summary>
        public string Account { get; } = Protocols.CallerIdentity.AccountOf(context, options);

        private string Prefix => Account == options.AccountId ? "" : Account + ":";

        /// <summary>Whether the caller is the server's own account, whose group names carry no account.</summary>
        public bool IsHomeAccount => Prefix.Length == 0;

        /// <summary>The group name a caller knows, for one kept in the store.</summary>
        public static string External(string group) => group[(group.IndexOf(':', StringComparison.Ordinal) + 1)..];

        /// <summary>Where the store keeps the caller's group of this name.</summary>
        public string Internal(string group) => Prefix + group;

        public string GroupArn(string group) => $"arn:aws:logs:{options.Region}:{Account}:log-group:{External(group)}";

        /// <summary><c>logGroupName</c>, or the group named by <c>logGroupIdentifier</c> (a name or an ARN).</summary>
        public string? GroupName(bool required)
        {
            var name = String("logGroupName");
            if (name is null && String("logGroupIdentifier") is { } identifier)
            {
                name = identifier.StartsWith("arn:", StringComparison.Ordinal) && identifier.IndexOf(":log-group:", StringComparison.Ordinal) is var at and >= 0
                    ? identifier[(at + ":log-group:".Length)..].TrimEnd('*').TrimEnd(':')
                    : identifier;
            }
            if (name is null)
            {
                return required ? throw Invalid("1 validation error detected: Value null at 'logGroupName' failed to satisfy constraint: Member must not be null") : null;
            }
            if (!GroupNamePattern().IsMatch(name))
            {
                throw Invalid($"1 validation error detected: Value '{name}' at 'logGroupName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_/#A-Za-z0-9]+");
            }
            return Internal(name);
        }

        /// <summary><c>logStreamName</c>: 1 to 512 characters, no <c>:</c> or <c>*</c>.</summary>
        public string StreamName()
        {
            var name = String("logStreamName") ?? throw Invalid("1 validation error detected: Value null at 'logStreamName' failed to satisfy constraint: Member must not be null");
            if (name.Length is 0 or > 512 || name.AsSpan().IndexOfAny(':', '*') >= 0)
            {
                throw Invalid($"1 validation error detected: Value '{name}' at 'logStreamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [^:*]*");
            }
            return name;
        }

        public string? String(string name) => request.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? Text(value, name) : null;

        /// <summary>A string member's text; one that is not valid Unicode (a lone surrogate) is the caller's mistake.</summary>
        public static string Text(JsonElement value, string name)
        {
            try
            {
                return value.GetString()!;
            }
            catch (InvalidOperationException)
            {
                throw new LogsException("SerializationException", $"The value of {name} is not valid Unicode text.");
            }
        }

        public long? Long(string name) => request.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var n) ? n : null;

        public int? Int(string name) => request.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var n) ? n : null;

        public bool? Bool(string name) => request.TryGetProperty(name, out var value) && value.ValueKind is JsonValueKind.True or JsonValueKind.False ? value.GetBoolean() : null;

        public List<string>? StringList(string name) =>
            request.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Array
                ? value.EnumerateArray().Where(static v => v.ValueKind == JsonValueKind.String).Select(v => Text(v, name)).ToList()
                : null;

        /// <summary><c>limit</c>, 1 to <paramref name="max"/>; <paramref name="fallback"/> when absent.</summary>
        public int Limit(int max, int fallback)
        {
            if (Int("limit") is not { } limit)
            {
                return fallback;
            }
            if (limit < 1 || limit > max)
            {
                throw Invalid(string.Create(CultureInfo.InvariantCulture,
                    $"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: Member must have value between 1 and {max}"));
            }
            return limit;
        }

        public Task EmptyAsync() => RespondAsync(static _ => { });

        public async Task RespondAsync(Action<Utf8JsonWriter> body)
        {
            var response = context.Response;
            response.StatusCode = StatusCodes.Status200OK;
            response.ContentType = "application/x-amz-json-1.1";
            using var buffer = new MemoryStream();
            using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            {
                w.WriteStartObject();
                body(w);
                w.WriteEndObject();
            }
            response.ContentLength = buffer.Length;
            await response.Body.WriteAsync(buffer.GetBuffer().AsMemory(0, (int)buffer.Length), context.RequestAborted);
        }
    }
}
