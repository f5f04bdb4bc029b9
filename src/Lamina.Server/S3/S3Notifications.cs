using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Xml.Linq;
using Lamina.Server.Async;
using Lamina.Server.Diagnostics;
using Lamina.Server.Hosting;
using Lamina.Server.Lambda;
using Lamina.Server.Sns;
using Lamina.Server.Sqs;
using Microsoft.Extensions.Options;

namespace Lamina.Server.S3;

/// <summary>One destination of a bucket's notification configuration: what it receives, filtered by key prefix and suffix.</summary>
internal sealed record NotificationTarget(string Kind, string Id, string Arn, IReadOnlyList<string> Events, string? Prefix, string? Suffix)
{
    /// <summary>Whether an event (<c>ObjectCreated:Put</c>, …) on <paramref name="key"/> goes to this destination.</summary>
    public bool Matches(string eventName, string key)
    {
        var matched = false;
        foreach (var pattern in Events)
        {
            // s3:ObjectCreated:* covers every ObjectCreated event; s3:ObjectCreated:Put only that one.
            var name = pattern.StartsWith("s3:", StringComparison.Ordinal) ? pattern[3..] : pattern;
            if (name == eventName || (name.EndsWith(":*", StringComparison.Ordinal) && eventName.StartsWith(name[..^1], StringComparison.Ordinal)))
            {
                matched = true;
                break;
            }
        }
        return matched && (Prefix is null || key.StartsWith(Prefix, StringComparison.Ordinal)) && (Suffix is null || key.EndsWith(Suffix, StringComparison.Ordinal));
    }
}

/// <summary>
/// S3 event notifications (issue #20): the bucket's NotificationConfiguration (Lambda functions, Lamina's SQS queues
/// and SNS topics), S3's event record (eventVersion 2.1), and the delivery of the outbox <see cref="ObjectStore"/> fills in
/// the same transaction as each change: to a function through the durable async queue — when the function's resource
/// policy lets <c>s3.amazonaws.com</c> invoke it for this bucket, as on AWS — to a queue as a message, to a topic as a
/// publish. At least once: a crash between the delivery and its outbox delete delivers the event again.
/// </summary>
internal sealed partial class S3Notifications : IHostedService, IDisposable
{
    private static readonly string[] KnownEvents =
    [
        "s3:ObjectCreated:*", "s3:ObjectCreated:Put", "s3:ObjectCreated:Post", "s3:ObjectCreated:Copy", "s3:ObjectCreated:CompleteMultipartUpload",
        "s3:ObjectRemoved:*", "s3:ObjectRemoved:Delete", "s3:ObjectRemoved:DeleteMarkerCreated",
    ];

    private readonly ObjectStore _store;
    private readonly AsyncDispatcher _async;
    private readonly QueueStore _queues;
    private readonly TopicStore _topics;
    private readonly EventBridge.EventRules _rules;
    private readonly FunctionRegistry _functions;
    private readonly LaminaOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<S3Notifications> _logger;
    private readonly SemaphoreSlim _wake = new(0);
    private readonly CancellationTokenSource _stopping = new();
    private Task? _loop;

    public S3Notifications(ObjectStore store, AsyncDispatcher async, QueueStore queues, TopicStore topics, EventBridge.EventRules rules, FunctionRegistry functions,
        IOptions<LaminaOptions> options, TimeProvider time, ILogger<S3Notifications> logger)
    {
        _store = store;
        _async = async;
        _queues = queues;
        _topics = topics;
        _rules = rules;
        _functions = functions;
        _options = options.Value;
        _time = time;
        _logger = logger;
        store.OutboxWritten = () =>
        {
            if (_wake.CurrentCount == 0)
            {
                _wake.Release();
            }
        };
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

    public void Dispose()
    {
        _stopping.Dispose();
        _wake.Dispose();
    }

    private async Task RunAsync()
    {
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                if (await _store.DeliverPendingAsync(100, DeliverAsync) == 100)
                {
                    continue;
                }
                // Woken by the next commit (of this node) that writes to the outbox; the timeout retries what failed to
                // deliver and, on a cluster, takes up what a node that died left.
                await _wake.WaitAsync(TimeSpan.FromSeconds(5), _stopping.Token);
            }
            catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                Log.DeliveryFailed(_logger, e);
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), _time, _stopping.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private async Task DeliverAsync(ObjectStore.OutboxEntry entry)
    {
        var arn = entry.Destination;
        if (arn == EventBridgeBus)
        {
            using var document = JsonDocument.Parse(entry.Payload);
            await _rules.DispatchAsync(EventBridgeBus, document.RootElement, document.RootElement.GetProperty("id").GetString()!);
            return;
        }
        if (arn.StartsWith("arn:aws:sqs:", StringComparison.Ordinal))
        {
            if (_queues.TryGet(arn[(arn.LastIndexOf(':') + 1)..], out var queue))
            {
                await _queues.SendAsync(queue, [new OutgoingMessage(entry.Payload, null, null, null, null, null)]);
            }
            else
            {
                Log.TargetMissing(_logger, entry.Bucket, arn);
            }
            return;
        }
        if (arn.StartsWith("arn:aws:sns:", StringComparison.Ordinal))
        {
            if (_topics.TryGetByArn(arn, out var topic))
            {
                await _topics.PublishAsync(topic, entry.Payload, "Amazon S3 Notification", []);
            }
            else
            {
                Log.TargetMissing(_logger, entry.Bucket, arn);
            }
            return;
        }
        var owner = _store.TryGetBucket(entry.Bucket, out var bucket) ? bucket.Account : _options.AccountId;
        var caller = new PolicyCaller(null, Service: "s3.amazonaws.com", SourceArn: $"arn:aws:s3:::{entry.Bucket}", SourceAccount: owner);
        if (ResolveFunction(arn) is var (key, wanted, _))
        {
            // Made, or allowed, on another node a moment ago: not dropped for not being known here yet.
            await _functions.EnsureCurrentAsync(key, e => e.ResolvePrimary(wanted) is not null && PermissionsApi.Allows(e, wanted, "lambda:InvokeFunction", caller));
        }
        if (ResolveFunction(arn) is not var (name, qualifier, entryFound) || entryFound is null)
        {
            Log.TargetMissing(_logger, entry.Bucket, arn);
            return;
        }
        if (!PermissionsApi.Allows(entryFound, qualifier, "lambda:InvokeFunction", caller))
        {
            Log.NotPermitted(_logger, entry.Bucket, arn);
            return;
        }
        var invokedArn = qualifier is null ? _options.FunctionArn(name) : $"{_options.FunctionArn(name)}:{qualifier}";
        await _async.AcceptAsync(Guid.NewGuid().ToString(), name, qualifier, invokedArn, Encoding.UTF8.GetBytes(entry.Payload), Tracing.TraceHeader(null, null, _time));
    }

    /// <summary>The registry key, qualifier and entry of a function ARN (or bare name), when the function exists.</summary>
    public (string Name, string? Qualifier, FunctionEntry? Entry)? ResolveFunction(string arn)
    {
        string account = _options.AccountId, rest = arn;
        if (arn.StartsWith("arn:", StringComparison.Ordinal))
        {
            var parts = arn.Split(':');
            if (parts.Length < 7 || parts[2] != "lambda" || parts[5] != "function")
            {
                return null;
            }
            account = parts[4].Length > 0 ? parts[4] : account;
            rest = string.Join(':', parts[6..]);
        }
        var colon = rest.IndexOf(':', StringComparison.Ordinal);
        var (name, qualifier) = colon < 0 ? (_options.FunctionKey(account, rest), (string?)null) : (_options.FunctionKey(account, rest[..colon]), rest[(colon + 1)..]);
        return _functions.TryGetEntry(name, out var entry) && entry.ResolvePrimary(qualifier) is not null ? (name, qualifier, entry) : (name, qualifier, null);
    }

    /// <summary>
    /// Checks every destination as S3 does before it stores a configuration: the function exists and lets S3 invoke it for
    /// this bucket, the queue or topic exists. Returns the ARNs that failed.
    /// </summary>
    public List<string> Unvalidated(Bucket bucket, IReadOnlyList<NotificationTarget> targets)
    {
        var failed = new List<string>();
        foreach (var target in targets)
        {
            var ok = target.Kind switch
            {
                "Queue" => _queues.TryGet(target.Arn[(target.Arn.LastIndexOf(':') + 1)..], out var queue) && !queue.Fifo,
                "Topic" => _topics.TryGetByArn(target.Arn, out _),
                "EventBridge" => true,
                _ => ResolveFunction(target.Arn) is { Entry: { } entry } resolved
                    && PermissionsApi.Allows(entry, resolved.Qualifier, "lambda:InvokeFunction",
                        new PolicyCaller(null, Service: "s3.amazonaws.com", SourceArn: bucket.Arn, SourceAccount: bucket.Account)),
            };
            if (!ok)
            {
                failed.Add(target.Arn);
            }
        }
        return failed;
    }

    /// <summary>The s3:TestEvent S3 sends to queues and topics when a configuration is stored.</summary>
    public async Task SendTestEventsAsync(Bucket bucket, IReadOnlyList<NotificationTarget> targets, string requestId)
    {
        foreach (var target in targets.Where(t => t.Kind is "Queue" or "Topic"))
        {
            var payload = new ArrayBufferWriter<byte>(256);
            using (var json = new Utf8JsonWriter(payload))
            {
                json.WriteStartObject();
                json.WriteString("Service", "Amazon S3");
                json.WriteString("Event", "s3:TestEvent");
                json.WriteString("Time", S3Xml.Time(_time.GetUtcNow()));
                json.WriteString("Bucket", bucket.Name);
                json.WriteString("RequestId", requestId);
                json.WriteString("HostId", S3Xml.HostId(requestId));
                json.WriteEndObject();
            }
            await _store.EnqueueAsync(target.Arn, bucket.Name, Encoding.UTF8.GetString(payload.WrittenSpan));
        }
    }

    // ---- the configuration document --------------------------------------------------------------

    /// <summary>Parses a stored NotificationConfiguration (validated when it was put).</summary>
    public static List<NotificationTarget> Parse(string xml) => Parse(XElement.Parse(xml), validate: false);

    /// <summary>
    /// Reads a NotificationConfiguration document (the XML names: <c>CloudFunctionConfiguration</c>/<c>CloudFunction</c>,
    /// <c>QueueConfiguration</c>/<c>Queue</c>, <c>TopicConfiguration</c>/<c>Topic</c>, <c>Filter/S3Key/FilterRule</c>).
    /// </summary>
    public static List<NotificationTarget> Parse(XElement root, bool validate)
    {
        if (validate)
        {
            // What S3's schema allows; anything else is refused, never silently dropped.
            foreach (var child in root.Elements())
            {
                switch (child.Name.LocalName)
                {
                    case "CloudFunctionConfiguration" or "QueueConfiguration" or "TopicConfiguration":
                        if (child.Elements().Any(e => e.Name.LocalName is not ("Id" or "Event" or "Filter" or "CloudFunction" or "Queue" or "Topic")))
                        {
                            throw S3Exception.MalformedXml();
                        }
                        break;
                    case "EventBridgeConfiguration":
                        if (child.HasElements)
                        {
                            throw S3Exception.MalformedXml();
                        }
                        break;
                    default:
                        throw S3Exception.MalformedXml();
                }
            }
        }
        var targets = new List<NotificationTarget>();
        foreach (var (element, kind, arnName) in new[] { ("CloudFunctionConfiguration", "Function", "CloudFunction"), ("QueueConfiguration", "Queue", "Queue"), ("TopicConfiguration", "Topic", "Topic") })
        {
            foreach (var configuration in root.Children(element))
            {
                var arn = configuration.ChildValue(arnName);
                var events = configuration.Children("Event").Select(e => e.Value).ToList();
                if (validate)
                {
                    if (string.IsNullOrEmpty(arn) || events.Count == 0)
                    {
                        throw S3Exception.MalformedXml();
                    }
                    foreach (var name in events.Where(e => !KnownEvents.Contains(e)))
                    {
                        throw S3Exception.InvalidArgument("The event is not supported for notifications", "Event", name);
                    }
                }
                string? prefix = null, suffix = null;
                foreach (var rule in configuration.Child("Filter")?.Child("S3Key")?.Children("FilterRule") ?? [])
                {
                    var ruleName = rule.ChildValue("Name")?.ToLowerInvariant();
                    var value = rule.ChildValue("Value") ?? "";
                    if (ruleName == "prefix" && prefix is null)
                    {
                        prefix = value;
                    }
                    else if (ruleName == "suffix" && suffix is null)
                    {
                        suffix = value;
                    }
                    else if (validate)
                    {
                        throw S3Exception.InvalidArgument("FilterRule names must be 'prefix' or 'suffix', each at most once.", "FilterRule", ruleName ?? "");
                    }
                }
                var id = configuration.ChildValue("Id") is { Length: > 0 } given ? given : Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes($"{kind}|{arn}|{string.Join(',', events)}|{prefix}|{suffix}")))[..32];
                targets.Add(new NotificationTarget(kind, id, arn!, events, prefix, suffix));
            }
        }
        if (root.Children("EventBridgeConfiguration").Any())
        {
            // Every event of the bucket to the default bus of its account, filtered there by rules (no S3-side filters).
            targets.Add(new NotificationTarget("EventBridge", "", EventBridgeBus, ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"], null, null));
        }
        return targets;
    }

    /// <summary>Where a bucket with EventBridge notifications sends its events: the default bus.</summary>
    public const string EventBridgeBus = "default";

    /// <summary>The document GetBucketNotificationConfiguration answers with, and the form stored.</summary>
    public static XElement Render(IReadOnlyList<NotificationTarget> targets) => S3Xml.Element("NotificationConfiguration",
        targets.Where(t => t.Kind != "EventBridge").Select(t => S3Xml.Element(t.Kind switch { "Queue" => "QueueConfiguration", "Topic" => "TopicConfiguration", _ => "CloudFunctionConfiguration" },
            S3Xml.Element("Id", t.Id),
            S3Xml.Element(t.Kind switch { "Queue" => "Queue", "Topic" => "Topic", _ => "CloudFunction" }, t.Arn),
            t.Events.Select(e => S3Xml.Element("Event", e)),
            t.Prefix is null && t.Suffix is null ? null : S3Xml.Element("Filter", S3Xml.Element("S3Key",
                t.Prefix is null ? null : S3Xml.Element("FilterRule", S3Xml.Element("Name", "Prefix"), S3Xml.Element("Value", t.Prefix)),
                t.Suffix is null ? null : S3Xml.Element("FilterRule", S3Xml.Element("Name", "Suffix"), S3Xml.Element("Value", t.Suffix)))))),
        targets.Any(t => t.Kind == "EventBridge") ? S3Xml.Element("EventBridgeConfiguration") : null);

    // ---- the event record ------------------------------------------------------------------------

    /// <summary>
    /// The object key as S3's event records carry it: URL-encoded form-style (space as <c>+</c>), with <c>/</c> kept, so
    /// handlers decode it with <c>unquote_plus</c> / <c>decodeURIComponent(key.replace(/\+/g, ' '))</c>.
    /// </summary>
    internal static string EventKey(string key)
    {
        var text = new StringBuilder(key.Length + 16);
        foreach (var b in Encoding.UTF8.GetBytes(key))
        {
            var c = (char)b;
            if (char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or '*' or '/')
            {
                text.Append(c);
            }
            else if (c == ' ')
            {
                text.Append('+');
            }
            else
            {
                text.Append('%').Append(b.ToString("X2", System.Globalization.CultureInfo.InvariantCulture));
            }
        }
        return text.ToString();
    }

    /// <summary>
    /// The event S3 sends EventBridge (source <c>aws.s3</c>, detail-type <c>Object Created</c> / <c>Object Deleted</c>), in
    /// EventBridge's envelope; the key is not URL-encoded here, unlike in the notification record.
    /// </summary>
    public static string EventBridgeEvent(Bucket bucket, string eventName, S3Object o, EventOrigin origin, DateTimeOffset now)
    {
        var created = eventName.StartsWith("ObjectCreated", StringComparison.Ordinal);
        var buffer = new ArrayBufferWriter<byte>(768);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("version", "0");
            json.WriteString("id", Guid.NewGuid().ToString());
            json.WriteString("detail-type", created ? "Object Created" : "Object Deleted");
            json.WriteString("source", "aws.s3");
            json.WriteString("account", bucket.Account);
            json.WriteString("time", now.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture));
            json.WriteString("region", bucket.Region);
            json.WriteStartArray("resources");
            json.WriteStringValue(bucket.Arn);
            json.WriteEndArray();
            json.WriteStartObject("detail");
            json.WriteString("version", "0");
            json.WriteStartObject("bucket");
            json.WriteString("name", bucket.Name);
            json.WriteEndObject();
            json.WriteStartObject("object");
            json.WriteString("key", o.Key);
            if (created)
            {
                json.WriteNumber("size", o.Size);
                json.WriteString("etag", o.ETag.Trim('"'));
            }
            if (o.VersionId != "null")
            {
                json.WriteString("version-id", o.VersionId);
            }
            json.WriteString("sequencer", o.Sequence.ToString("X16", System.Globalization.CultureInfo.InvariantCulture));
            json.WriteEndObject();
            json.WriteString("request-id", origin.RequestId);
            json.WriteString("requester", bucket.Account);
            json.WriteString("source-ip-address", origin.SourceIp);
            json.WriteString("reason", eventName switch
            {
                "ObjectCreated:Copy" => "CopyObject",
                "ObjectCreated:CompleteMultipartUpload" => "CompleteMultipartUpload",
                "ObjectCreated:Post" => "PostObject",
                "ObjectCreated:Put" => "PutObject",
                _ => "DeleteObject",
            });
            if (!created)
            {
                json.WriteString("deletion-type", eventName == "ObjectRemoved:DeleteMarkerCreated" ? "Delete Marker Created" : "Permanently Deleted");
            }
            json.WriteEndObject();
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>S3's event message, one record (eventVersion 2.1), with the key URL-encoded as S3 sends it.</summary>
    public static string EventRecord(Bucket bucket, string configurationId, string eventName, S3Object o, EventOrigin origin, long nowMs)
    {
        var buffer = new ArrayBufferWriter<byte>(1024);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteStartArray("Records");
            json.WriteStartObject();
            json.WriteString("eventVersion", "2.1");
            json.WriteString("eventSource", "aws:s3");
            json.WriteString("awsRegion", bucket.Region);
            json.WriteString("eventTime", S3Xml.Time(nowMs));
            json.WriteString("eventName", eventName);
            json.WriteStartObject("userIdentity");
            json.WriteString("principalId", origin.PrincipalId);
            json.WriteEndObject();
            json.WriteStartObject("requestParameters");
            json.WriteString("sourceIPAddress", origin.SourceIp);
            json.WriteEndObject();
            json.WriteStartObject("responseElements");
            json.WriteString("x-amz-request-id", origin.RequestId);
            json.WriteString("x-amz-id-2", S3Xml.HostId(origin.RequestId));
            json.WriteEndObject();
            json.WriteStartObject("s3");
            json.WriteString("s3SchemaVersion", "1.0");
            json.WriteString("configurationId", configurationId);
            json.WriteStartObject("bucket");
            json.WriteString("name", bucket.Name);
            json.WriteStartObject("ownerIdentity");
            json.WriteString("principalId", bucket.Account);
            json.WriteEndObject();
            json.WriteString("arn", bucket.Arn);
            json.WriteEndObject();
            json.WriteStartObject("object");
            json.WriteString("key", EventKey(o.Key));
            if (eventName.StartsWith("ObjectCreated", StringComparison.Ordinal))
            {
                json.WriteNumber("size", o.Size);
                json.WriteString("eTag", o.ETag.Trim('"'));
            }
            if (o.VersionId != "null")
            {
                json.WriteString("versionId", o.VersionId);
            }
            json.WriteString("sequencer", o.Sequence.ToString("X16", System.Globalization.CultureInfo.InvariantCulture));
            json.WriteEndObject();
            json.WriteEndObject();
            json.WriteEndObject();
            json.WriteEndArray();
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static partial class Log
    {
        [LoggerMessage(EventIds.S3NotificationFailed, LogLevel.Warning, "Delivering S3 event notifications failed; retrying")]
        public static partial void DeliveryFailed(ILogger logger, Exception error);

        [LoggerMessage(EventIds.S3NotificationTargetMissing, LogLevel.Warning, "Bucket {Bucket}: notification destination {Target} does not exist; the event is dropped")]
        public static partial void TargetMissing(ILogger logger, string bucket, string target);

        [LoggerMessage(EventIds.S3NotificationNotPermitted, LogLevel.Warning,
            "Bucket {Bucket}: function {Target}'s resource policy does not let s3.amazonaws.com invoke it for this bucket; the event is dropped")]
        public static partial void NotPermitted(ILogger logger, string bucket, string target);
    }
}
