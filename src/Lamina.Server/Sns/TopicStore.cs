using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Lamina.Server.Async;
using Lamina.Server.EventBridge;
using Lamina.Server.Hosting;
using Lamina.Server.Lambda;
using Lamina.Server.Protocols;
using Lamina.Server.Sqs;
using Lamina.Server.Storage;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Sns;

/// <summary>A topic and its settable attributes.</summary>
internal sealed record Topic(string Name, IReadOnlyDictionary<string, string> Attributes);

/// <summary>A subscription: a Lamina function (<c>lambda</c>) or queue (<c>sqs</c>), with its attributes (FilterPolicy, RawMessageDelivery…).</summary>
internal sealed record Subscription(string Arn, string Topic, string Protocol, string Endpoint, IReadOnlyDictionary<string, string> Attributes);

/// <summary>A message attribute as Publish takes it.</summary>
internal sealed record TopicMessageAttribute(string Name, string DataType, string? StringValue, byte[]? BinaryValue);

/// <summary>
/// SNS-compatible topics (issue #11), kept in <c>lamina.db</c>: Publish fans a message out to every subscription whose
/// filter policy matches its attributes (or its body, with <c>FilterPolicyScope: MessageBody</c>). A function
/// subscription is invoked asynchronously (#6) with Lambda's SNS event, if its resource policy lets
/// <c>sns.amazonaws.com</c> invoke it for the topic (as on AWS); a queue subscription gets SNS's JSON envelope, or the
/// bare message with <c>RawMessageDelivery</c>. Deliveries are durable before Publish answers.
/// </summary>
internal sealed partial class TopicStore : IHostedService
{
    private readonly Database _database;
    private readonly AsyncDispatcher _async;
    private readonly QueueStore _queues;
    private readonly FunctionRegistry _functions;
    private readonly LaminaOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<TopicStore> _logger;
    private readonly ConcurrentDictionary<string, Topic> _topics = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Subscription> _subscriptions = new(StringComparer.Ordinal);

    public TopicStore(Database database, AsyncDispatcher async, QueueStore queues, FunctionRegistry functions, IOptions<LaminaOptions> options,
        TimeProvider time, ILogger<TopicStore> logger)
    {
        _database = database;
        _async = async;
        _queues = queues;
        _functions = functions;
        _options = options.Value;
        _time = time;
        _logger = logger;
    }

    public IEnumerable<Topic> Topics => _topics.Values;

    public IEnumerable<Subscription> Subscriptions => _subscriptions.Values;

    public string TopicArn(string name) => $"arn:aws:sns:{_options.Region}:{_options.AccountId}:{name}";

    public bool TryGetByArn(string? arn, out Topic topic)
    {
        topic = null!;
        var parts = (arn ?? "").Split(':');
        return parts.Length == 6 && parts[2] == "sns" && parts[3] == _options.Region && parts[4] == _options.AccountId
            && _topics.TryGetValue(parts[5], out topic!);
    }

    public bool TryGetSubscription(string arn, out Subscription subscription) => _subscriptions.TryGetValue(arn, out subscription!);

    public Task StartAsync(CancellationToken cancellationToken)
    {
        using var connection = _database.Open();
        using (var select = connection.CreateCommand())
        {
            select.CommandText = "SELECT name, attributes FROM topics;";
            using var reader = select.ExecuteReader();
            while (reader.Read())
            {
                _topics[reader.GetString(0)] = new Topic(reader.GetString(0), Map(reader.GetString(1)));
            }
        }
        using (var select = connection.CreateCommand())
        {
            select.CommandText = "SELECT arn, topic, protocol, endpoint, attributes FROM subscriptions;";
            using var reader = select.ExecuteReader();
            while (reader.Read())
            {
                _subscriptions[reader.GetString(0)] = new Subscription(reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), Map(reader.GetString(4)));
            }
        }
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>Creates a topic, or returns the existing one of that name (CreateTopic is idempotent).</summary>
    public Topic Create(string name, Dictionary<string, string> attributes)
    {
        lock (_topics)
        {
            if (_topics.TryGetValue(name, out var existing))
            {
                return existing;
            }
            Execute("INSERT INTO topics (name, attributes) VALUES ($1, $2);", name, Json(attributes));
            return _topics[name] = new Topic(name, attributes);
        }
    }

    public void Delete(string name)
    {
        lock (_topics)
        {
            Execute("DELETE FROM subscriptions WHERE topic = $1; DELETE FROM topics WHERE name = $1;", name);
            _topics.TryRemove(name, out _);
            foreach (var subscription in _subscriptions.Values.Where(s => s.Topic == name).ToList())
            {
                _subscriptions.TryRemove(subscription.Arn, out _);
            }
        }
    }

    /// <summary>Subscribes an endpoint; the same protocol and endpoint on a topic is the same subscription.</summary>
    public Subscription Subscribe(Topic topic, string protocol, string endpoint, Dictionary<string, string> attributes)
    {
        lock (_topics)
        {
            if (_subscriptions.Values.FirstOrDefault(s => s.Topic == topic.Name && s.Protocol == protocol && s.Endpoint == endpoint) is { } existing)
            {
                return existing;
            }
            var subscription = new Subscription($"{TopicArn(topic.Name)}:{Guid.NewGuid()}", topic.Name, protocol, endpoint, attributes);
            Execute("INSERT INTO subscriptions (arn, topic, protocol, endpoint, attributes) VALUES ($1, $2, $3, $4, $5);",
                subscription.Arn, topic.Name, protocol, endpoint, Json(attributes));
            return _subscriptions[subscription.Arn] = subscription;
        }
    }

    public void Unsubscribe(string arn)
    {
        lock (_topics)
        {
            Execute("DELETE FROM subscriptions WHERE arn = $1;", arn);
            _subscriptions.TryRemove(arn, out _);
        }
    }

    public void SetSubscriptionAttribute(Subscription subscription, string name, string value)
    {
        lock (_topics)
        {
            var attributes = new Dictionary<string, string>(subscription.Attributes, StringComparer.Ordinal) { [name] = value };
            Execute("UPDATE subscriptions SET attributes = $2 WHERE arn = $1;", subscription.Arn, Json(attributes));
            _subscriptions[subscription.Arn] = subscription with { Attributes = attributes };
        }
    }

    /// <summary>Fans one message out to the matching subscriptions; returns its id.</summary>
    public async Task<string> PublishAsync(Topic topic, string message, string? subject, IReadOnlyList<TopicMessageAttribute> attributes)
    {
        var id = Guid.NewGuid().ToString();
        var timestamp = _time.GetUtcNow().UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
        foreach (var subscription in _subscriptions.Values.Where(s => s.Topic == topic.Name).ToList())
        {
            if (!FilterMatches(subscription, message, attributes))
            {
                continue;
            }
            switch (subscription.Protocol)
            {
                case "lambda":
                    await DeliverToFunctionAsync(topic, subscription, id, message, subject, attributes, timestamp);
                    break;
                case "sqs":
                    await DeliverToQueueAsync(topic, subscription, id, message, subject, attributes, timestamp);
                    break;
            }
        }
        return id;
    }

    private async Task DeliverToFunctionAsync(Topic topic, Subscription subscription, string id, string message, string? subject,
        IReadOnlyList<TopicMessageAttribute> attributes, string timestamp)
    {
        if (!FunctionReference.TryParse(subscription.Endpoint, null, _options, out var target, out _)
            || !_functions.TryGetEntry(target.Name, out var entry) || entry.ResolvePrimary(target.Qualifier) is null)
        {
            Log.EndpointMissing(_logger, subscription.Arn, subscription.Endpoint);
            return;
        }
        var caller = new PolicyCaller(null, Service: "sns.amazonaws.com", SourceArn: TopicArn(topic.Name), SourceAccount: _options.AccountId);
        if (!PermissionsApi.Allows(entry, target.Qualifier, "lambda:InvokeFunction", caller))
        {
            Log.NotPermitted(_logger, TopicArn(topic.Name), subscription.Endpoint);
            return;
        }
        var buffer = new ArrayBufferWriter<byte>(512 + message.Length);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteStartArray("Records");
            w.WriteStartObject();
            w.WriteString("EventSource", "aws:sns");
            w.WriteString("EventVersion", "1.0");
            w.WriteString("EventSubscriptionArn", subscription.Arn);
            w.WriteStartObject("Sns");
            WriteNotification(w, topic, subscription, id, message, subject, attributes, timestamp, lambdaShape: true);
            w.WriteEndObject();
            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteEndObject();
        }
        var invokedArn = target.Qualifier is null ? _options.FunctionArn(target.Name) : $"{_options.FunctionArn(target.Name)}:{target.Qualifier}";
        await _async.AcceptAsync(Guid.NewGuid().ToString(), target.Name, target.Qualifier, invokedArn, buffer.WrittenMemory, Diagnostics.Tracing.TraceHeader(null, null, _time));
    }

    private async Task DeliverToQueueAsync(Topic topic, Subscription subscription, string id, string message, string? subject,
        IReadOnlyList<TopicMessageAttribute> attributes, string timestamp)
    {
        var parts = subscription.Endpoint.Split(':');
        if (parts.Length != 6 || !_queues.TryGet(parts[5], out var queue))
        {
            Log.EndpointMissing(_logger, subscription.Arn, subscription.Endpoint);
            return;
        }
        string body;
        if (subscription.Attributes.GetValueOrDefault("RawMessageDelivery") == "true")
        {
            body = message;
        }
        else
        {
            var buffer = new ArrayBufferWriter<byte>(512 + message.Length);
            using (var w = new Utf8JsonWriter(buffer))
            {
                w.WriteStartObject();
                WriteNotification(w, topic, subscription, id, message, subject, attributes, timestamp, lambdaShape: false);
                w.WriteEndObject();
            }
            body = Encoding.UTF8.GetString(buffer.WrittenSpan);
        }
        await _queues.SendAsync(queue, [new OutgoingMessage(body, null, null, null, queue.Fifo ? "sns" : null, queue.Fifo ? id : null)]);
    }

    /// <summary>SNS's notification; Lambda's event spells the URL members with a lower-case "rl" and omits nothing.</summary>
    private void WriteNotification(Utf8JsonWriter w, Topic topic, Subscription subscription, string id, string message, string? subject,
        IReadOnlyList<TopicMessageAttribute> attributes, string timestamp, bool lambdaShape)
    {
        w.WriteString("Type", "Notification");
        w.WriteString("MessageId", id);
        w.WriteString("TopicArn", TopicArn(topic.Name));
        if (subject is not null || lambdaShape)
        {
            w.WriteString("Subject", subject);
        }
        w.WriteString("Message", message);
        w.WriteString("Timestamp", timestamp);
        w.WriteString("SignatureVersion", "1");
        w.WriteString("Signature", "EXAMPLE");
        w.WriteString(lambdaShape ? "SigningCertUrl" : "SigningCertURL", "EXAMPLE");
        w.WriteString(lambdaShape ? "UnsubscribeUrl" : "UnsubscribeURL", $"http://localhost/?Action=Unsubscribe&SubscriptionArn={subscription.Arn}");
        if (attributes.Count > 0 || lambdaShape)
        {
            w.WriteStartObject("MessageAttributes");
            foreach (var attribute in attributes)
            {
                w.WriteStartObject(attribute.Name);
                w.WriteString("Type", attribute.DataType);
                w.WriteString("Value", attribute.BinaryValue is { } binary ? Convert.ToBase64String(binary) : attribute.StringValue);
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
    }

    /// <summary>
    /// A subscription's filter policy against the message: its attributes (String as text, Number as a number,
    /// String.Array as an array), or its JSON body with <c>FilterPolicyScope: MessageBody</c>. No policy: everything.
    /// </summary>
    private static bool FilterMatches(Subscription subscription, string message, IReadOnlyList<TopicMessageAttribute> attributes)
    {
        if (!subscription.Attributes.TryGetValue("FilterPolicy", out var policyText) || string.IsNullOrWhiteSpace(policyText))
        {
            return true;
        }
        var pattern = EventPattern.Parse(policyText, out _);
        if (pattern is null)
        {
            return false;
        }
        if (subscription.Attributes.GetValueOrDefault("FilterPolicyScope") == "MessageBody")
        {
            try
            {
                using var body = JsonDocument.Parse(message);
                return body.RootElement.ValueKind == JsonValueKind.Object && pattern.Matches(body.RootElement);
            }
            catch (JsonException)
            {
                return false;
            }
        }
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            foreach (var attribute in attributes)
            {
                if (attribute.DataType.StartsWith("Number", StringComparison.Ordinal)
                    && double.TryParse(attribute.StringValue, NumberStyles.Float, CultureInfo.InvariantCulture, out var number))
                {
                    w.WriteNumber(attribute.Name, number);
                }
                else if (attribute.DataType == "String.Array" && attribute.StringValue is { } array && EventRules.IsJson(array))
                {
                    w.WritePropertyName(attribute.Name);
                    w.WriteRawValue(array);
                }
                else if (attribute.StringValue is { } text)
                {
                    w.WriteString(attribute.Name, text);
                }
            }
            w.WriteEndObject();
        }
        using var view = JsonDocument.Parse(buffer.WrittenMemory);
        return pattern.Matches(view.RootElement);
    }

    private static Dictionary<string, string> Map(string json) =>
        JsonSerializer.Deserialize(json, LaminaJsonContext.Default.DictionaryStringString) ?? new Dictionary<string, string>(StringComparer.Ordinal);

    private static string Json(Dictionary<string, string> map) => JsonSerializer.Serialize(map, LaminaJsonContext.Default.DictionaryStringString);

    private void Execute(string sql, params object?[] values)
    {
        using var connection = _database.Open();
        Storage.SqliteStatements.Run(connection, sql, values);
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = Diagnostics.EventIds.TopicEndpointMissing, Level = LogLevel.Warning, Message = "Subscription {Subscription} names {Endpoint}, which does not exist; the message is not delivered to it")]
        public static partial void EndpointMissing(ILogger logger, string subscription, string endpoint);

        [LoggerMessage(EventId = Diagnostics.EventIds.TopicNotPermitted, Level = LogLevel.Warning,
            Message = "Topic {Topic} may not invoke {Function}: no statement of its resource policy allows sns.amazonaws.com (aws lambda add-permission --principal sns.amazonaws.com --source-arn <topic arn>); the message is not delivered to it")]
        public static partial void NotPermitted(ILogger logger, string topic, string function);
    }
}
