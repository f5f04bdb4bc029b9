using System.IO.Compression;
using System.Text;
using System.Text.Json;
using Lamina.Server.Async;
using Lamina.Server.Diagnostics;
using Lamina.Server.Hosting;
using Lamina.Server.Lambda;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Logs;

/// <summary>
/// One subscription filter of a log group (PutSubscriptionFilter): the events its pattern matches go to a Lambda
/// function. <see cref="Group"/> is the store's key for the group (<c>account:name</c> for another account's).
/// </summary>
internal sealed record SubscriptionFilter(string Group, string Name, string PatternText, FilterPattern Pattern, string DestinationArn, string? RoleArn,
    string Distribution, long CreatedMs);

/// <summary>An event the log store wrote that a subscription filter matched: its stored id, its stream and its text.</summary>
internal readonly record struct MatchedEvent(SubscriptionFilter Filter, string Stream, long Id, long TimestampMs, string Message);

/// <summary>
/// CloudWatch Logs subscriptions to Lambda functions (issue #23). The log store's writer matches each batch it stores
/// against the groups' filters (off the invoke path) and hands the matches over here; they are gathered per filter and
/// stream for up to <see cref="BatchWindow"/> (or <see cref="MaxBatchEvents"/> events, <see cref="MaxBatchChars"/>
/// characters) and sent as CloudWatch Logs sends them — <c>{"awslogs":{"data": base64(gzip(DATA_MESSAGE))}}</c> —
/// through the durable async queue, with its retries and destinations, when the function's resource policy lets
/// <c>logs.amazonaws.com</c> invoke it for that group. A batch still gathering when the server stops is lost, like a log
/// line still in the store's buffer: logs are not the system of record. The function's own log group never feeds it,
/// directly or through other subscriptions: PutSubscriptionFilter refuses such a loop, and a delivery that would close
/// one (the function's LoggingConfig changed since) is dropped.
/// </summary>
internal sealed partial class LogSubscriptions : IHostedService, IDisposable
{
    /// <summary>CloudWatch Logs allows two subscription filters per log group.</summary>
    public const int MaxFiltersPerGroup = 2;

    /// <summary>Events in one delivery (PutLogEvents' own batch limit).</summary>
    public const int MaxBatchEvents = 10_000;

    /// <summary>
    /// Message characters in one delivery: compressed and base64-encoded, even text that hardly compresses stays within
    /// an asynchronous invocation's 256 KB payload.
    /// </summary>
    public const int MaxBatchChars = 192 * 1024;

    /// <summary>How long matches gather before they are sent: a function's START, output, END and REPORT lines go together.</summary>
    public static readonly TimeSpan BatchWindow = TimeSpan.FromMilliseconds(500);

    private const string GenericRefusal = "Could not execute the lambda function. Make sure you have given CloudWatch Logs permission to execute your function.";

    private readonly LogStore _store;
    private readonly AsyncDispatcher _async;
    private readonly FunctionRegistry _functions;
    private readonly LaminaOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<LogSubscriptions> _logger;
    private readonly CancellationTokenSource _stopping = new();
    private Task? _loop;

    public LogSubscriptions(LogStore store, AsyncDispatcher async, FunctionRegistry functions, IOptions<LaminaOptions> options, TimeProvider time,
        ILogger<LogSubscriptions> logger)
    {
        _store = store;
        _async = async;
        _functions = functions;
        _options = options.Value;
        _time = time;
        _logger = logger;
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _loop = Task.Run(RunAsync, CancellationToken.None);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        if (_loop is not null)
        {
            await _loop.WaitAsync(cancellationToken).ContinueWith(static _ => { }, TaskScheduler.Default);
        }
    }

    public void Dispose() => _stopping.Dispose();

    // ---- checks made when a filter is put (and again on delivery) ----------------------------------------------------

    /// <summary>
    /// Why <paramref name="destinationArn"/> cannot receive <paramref name="group"/>'s events, as PutSubscriptionFilter's
    /// InvalidParameterException says it; null when it can. <paramref name="filters"/> are the groups' filters as they
    /// will be (for the loop check).
    /// </summary>
    public string? Refusal(string group, string destinationArn, IReadOnlyDictionary<string, SubscriptionFilter[]> filters)
    {
        var parts = destinationArn.Split(':');
        if (parts.Length < 6 || parts[0] != "arn")
        {
            return $"destinationArn '{destinationArn}' is not an ARN.";
        }
        if (parts[2] != "lambda")
        {
            // Kinesis streams, Firehose delivery streams and cross-account destinations are services Lamina does not have.
            return $"Lamina delivers subscription filters to Lambda functions only; a destination of service '{parts[2]}' ({destinationArn}) is not supported.";
        }
        var account = AccountOf(group);
        if (parts.Length < 7 || parts[5] != "function" || parts[3] != _options.Region || parts[4] != account)
        {
            return parts.Length >= 7 && parts[5] == "function" && parts[4] != account
                ? "A subscription filter's Lambda function must be in the log group's account."
                : GenericRefusal;
        }
        if (Resolve(destinationArn) is not { } resolved)
        {
            return GenericRefusal;
        }
        if (!Permitted(resolved.Entry, resolved.Qualifier, group))
        {
            return GenericRefusal;
        }
        if (LoopsBack(group, resolved.Config, filters))
        {
            return $"The function {resolved.Config.FunctionName.Split(':')[^1]} writes its logs to log group {External(group)}, directly or through other subscription filters: "
                + "it would be invoked with its own log events, without end. Subscribe another function, or give this one another log group (LoggingConfig.LogGroup).";
        }
        return null;
    }

    /// <summary>Whether the function's resource policy lets CloudWatch Logs invoke it for this group, as AWS checks.</summary>
    private bool Permitted(FunctionEntry entry, string? qualifier, string group)
    {
        var account = AccountOf(group);
        var sourceArn = $"arn:aws:logs:{_options.Region}:{account}:log-group:{External(group)}:*";
        return PermissionsApi.Allows(entry, qualifier, "lambda:InvokeFunction", new PolicyCaller(null, Service: "logs.amazonaws.com", SourceArn: sourceArn, SourceAccount: account))
            || PermissionsApi.Allows(entry, qualifier, "lambda:InvokeFunction",
                new PolicyCaller(null, Service: $"logs.{_options.Region}.amazonaws.com", SourceArn: sourceArn, SourceAccount: account));
    }

    /// <summary>
    /// Whether the events <paramref name="function"/> logs come back to <paramref name="group"/>: its own log group is
    /// that group, or is subscribed (through any chain of filters) by functions that log there.
    /// </summary>
    private bool LoopsBack(string group, FunctionConfig function, IReadOnlyDictionary<string, SubscriptionFilter[]> filters)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var next = new Queue<string>([function.LogGroupKey]);
        while (next.TryDequeue(out var logged))
        {
            if (logged == group)
            {
                return true;
            }
            if (!seen.Add(logged) || !filters.TryGetValue(logged, out var subscribed))
            {
                continue;
            }
            foreach (var filter in subscribed)
            {
                if (Resolve(filter.DestinationArn) is { } onward)
                {
                    next.Enqueue(onward.Config.LogGroupKey);
                }
            }
        }
        return false;
    }

    /// <summary>The registry key, qualifier, entry and configuration of a function ARN, when that function (and qualifier) exists.</summary>
    private (string Key, string? Qualifier, FunctionEntry Entry, FunctionConfig Config)? Resolve(string arn)
    {
        var parts = arn.Split(':');
        if (parts.Length is < 7 or > 8 || parts[2] != "lambda" || parts[5] != "function")
        {
            return null;
        }
        var key = _options.FunctionKey(parts[4], parts[6]);
        var qualifier = parts.Length == 8 ? parts[7] : null;
        return _functions.TryGetEntry(key, out var entry) && entry.ResolvePrimary(qualifier) is { } config ? (key, qualifier, entry, config) : null;
    }

    private string AccountOf(string group) => group.IndexOf(':', StringComparison.Ordinal) is var colon and > 0 ? group[..colon] : _options.AccountId;

    private static string External(string group) => group[(group.IndexOf(':', StringComparison.Ordinal) + 1)..];

    // ---- delivery ---------------------------------------------------------------------------------------------------

    private async Task RunAsync()
    {
        var reader = _store.Matched;
        var pending = new Dictionary<(SubscriptionFilter Filter, string Stream), Batch>();
        Task<bool>? readable = null;
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                readable ??= reader.WaitToReadAsync(_stopping.Token).AsTask();
                var oldest = pending.Count == 0 ? (long?)null : pending.Values.Min(static b => b.Started);
                if (oldest is { } started)
                {
                    var left = BatchWindow - _time.GetElapsedTime(started);
                    if (left > TimeSpan.Zero)
                    {
                        await Task.WhenAny(readable, Task.Delay(left, _time, _stopping.Token));
                    }
                }
                else
                {
                    await readable;
                }
                if (readable.IsCompleted)
                {
                    if (!await readable)
                    {
                        await FlushAsync(pending, all: true);
                        return; // the store stopped
                    }
                    readable = null;
                }
                while (reader.TryRead(out var matched))
                {
                    var key = (matched.Filter, matched.Stream);
                    if (!pending.TryGetValue(key, out var batch))
                    {
                        pending[key] = batch = new Batch(_time.GetTimestamp());
                    }
                    else if (batch.Events.Count == MaxBatchEvents || batch.Chars + matched.Message.Length > MaxBatchChars)
                    {
                        await DeliverAsync(matched.Filter, matched.Stream, batch.Events);
                        pending[key] = batch = new Batch(_time.GetTimestamp());
                    }
                    batch.Events.Add(matched);
                    batch.Chars += matched.Message.Length;
                }
                await FlushAsync(pending, all: false);
            }
            catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                Log.DeliveryFailed(_logger, e);
            }
        }
    }

    private async Task FlushAsync(Dictionary<(SubscriptionFilter Filter, string Stream), Batch> pending, bool all)
    {
        foreach (var (key, batch) in pending.Where(p => all || _time.GetElapsedTime(p.Value.Started) >= BatchWindow).ToList())
        {
            pending.Remove(key);
            await DeliverAsync(key.Filter, key.Stream, batch.Events);
        }
    }

    private async Task DeliverAsync(SubscriptionFilter matchedBy, string stream, List<MatchedEvent> events)
    {
        // Events matched before the filter was deleted are not sent; before it was put again, they go where it points now.
        if (!_store.Filters.TryGetValue(matchedBy.Group, out var filters) || Array.Find(filters, f => f.Name == matchedBy.Name) is not { } filter)
        {
            return;
        }
        if (Resolve(filter.DestinationArn) is not { } known || !Permitted(known.Entry, known.Qualifier, filter.Group))
        {
            // Made, or allowed, on another node a moment ago: not dropped for not being known here yet.
            var parts = filter.DestinationArn.Split(':');
            if (parts.Length is 7 or 8)
            {
                await _functions.EnsureCurrentAsync(_options.FunctionKey(parts[4], parts[6]), _ => false);
            }
        }
        if (Resolve(filter.DestinationArn) is not { } function)
        {
            Log.DestinationMissing(_logger, External(filter.Group), filter.Name, filter.DestinationArn);
            return;
        }
        if (!Permitted(function.Entry, function.Qualifier, filter.Group))
        {
            Log.NotPermitted(_logger, External(filter.Group), filter.Name, filter.DestinationArn);
            return;
        }
        if (LoopsBack(filter.Group, function.Config, _store.Filters))
        {
            Log.Loop(_logger, External(filter.Group), filter.Name, filter.DestinationArn);
            return;
        }
        var invokedArn = function.Qualifier is null ? _options.FunctionArn(function.Key) : $"{_options.FunctionArn(function.Key)}:{function.Qualifier}";
        await _async.AcceptAsync(Guid.NewGuid().ToString(), function.Key, function.Qualifier, invokedArn, Payload(AccountOf(filter.Group), filter, stream, events),
            Tracing.TraceHeader(null, null, _time));
    }

    /// <summary>What CloudWatch Logs sends a subscribed function: <c>{"awslogs":{"data": base64(gzip(DATA_MESSAGE))}}</c>.</summary>
    internal static byte[] Payload(string owner, SubscriptionFilter filter, string stream, IReadOnlyList<MatchedEvent> events)
    {
        using var compressed = new MemoryStream();
        using (var gzip = new GZipStream(compressed, CompressionLevel.Fastest, leaveOpen: true))
        using (var json = new Utf8JsonWriter(gzip, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteString("messageType", "DATA_MESSAGE");
            json.WriteString("owner", owner);
            json.WriteString("logGroup", External(filter.Group));
            json.WriteString("logStream", stream);
            json.WriteStartArray("subscriptionFilters");
            json.WriteStringValue(filter.Name);
            json.WriteEndArray();
            json.WriteStartArray("logEvents");
            foreach (var e in events)
            {
                json.WriteStartObject();
                // The stored event's id, as FilterLogEvents' eventId gives it.
                json.WriteString("id", e.Id.ToString("D20", System.Globalization.CultureInfo.InvariantCulture));
                json.WriteNumber("timestamp", e.TimestampMs);
                json.WriteString("message", e.Message);
                json.WriteEndObject();
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        var data = Convert.ToBase64String(compressed.GetBuffer(), 0, (int)compressed.Length);
        return Encoding.UTF8.GetBytes("{\"awslogs\":{\"data\":\"" + data + "\"}}");
    }

    private sealed class Batch(long started)
    {
        public long Started { get; } = started;
        public List<MatchedEvent> Events { get; } = [];
        public int Chars { get; set; }
    }

    private static partial class Log
    {
        [LoggerMessage(EventIds.LogSubscriptionFailed, LogLevel.Warning, "Delivering log events to subscription filters failed")]
        public static partial void DeliveryFailed(ILogger logger, Exception error);

        [LoggerMessage(EventIds.LogSubscriptionTargetMissing, LogLevel.Warning, "Log group {Group}, subscription filter {Filter}: function {Target} does not exist; the events are dropped")]
        public static partial void DestinationMissing(ILogger logger, string group, string filter, string target);

        [LoggerMessage(EventIds.LogSubscriptionNotPermitted, LogLevel.Warning,
            "Log group {Group}, subscription filter {Filter}: function {Target}'s resource policy does not let logs.amazonaws.com invoke it for this group; the events are dropped")]
        public static partial void NotPermitted(ILogger logger, string group, string filter, string target);

        [LoggerMessage(EventIds.LogSubscriptionLoop, LogLevel.Warning,
            "Log group {Group}, subscription filter {Filter}: function {Target} logs into this group (directly or through other filters); the events are dropped so it does not feed itself")]
        public static partial void Loop(ILogger logger, string group, string filter, string target);
    }
}
