using System.Buffers;
using System.Collections.Immutable;
using System.Data.Common;
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
/// <remarks>
/// Several nodes (issue #25): topics and subscriptions live on the cluster's PostgreSQL. A write takes the cluster's
/// lock, rereads them first (so that the same CreateTopic or Subscribe on two nodes makes one) and announces itself on
/// <see cref="ClusterNode.SnsChannel"/>; the other nodes reread them when they hear of it (or reconnect). Publish reads
/// the topic's subscriptions from the database rather than from this node's copy: a subscription made on another node
/// a moment ago gets the message even if its announcement is still on the way.
/// </remarks>
internal sealed partial class TopicStore : IHostedService, IDisposable
{
    private readonly Database _database;
    private readonly ClusterNode _cluster;
    private readonly AsyncDispatcher _async;
    private readonly QueueStore _queues;
    private readonly FunctionRegistry _functions;
    private readonly LaminaOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<TopicStore> _logger;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private ImmutableDictionary<string, Topic> _topics = ImmutableDictionary<string, Topic>.Empty.WithComparers(StringComparer.Ordinal);
    private ImmutableDictionary<string, Subscription> _subscriptions = ImmutableDictionary<string, Subscription>.Empty.WithComparers(StringComparer.Ordinal);

    public TopicStore(Database database, ClusterNode cluster, AsyncDispatcher async, QueueStore queues, FunctionRegistry functions, IOptions<LaminaOptions> options,
        TimeProvider time, ILogger<TopicStore> logger)
    {
        _database = database;
        _cluster = cluster;
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
        Load();
        if (_cluster.Enabled)
        {
            _cluster.Follow(ClusterNode.SnsChannel, _ => ReloadAsync());
        }
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose() => _writeLock.Dispose();

    /// <summary>Creates a topic, or returns the existing one of that name (CreateTopic is idempotent).</summary>
    public Task<Topic> CreateAsync(string name, Dictionary<string, string> attributes) =>
        WriteAsync((connection, transaction) =>
        {
            if (_topics.TryGetValue(name, out var existing))
            {
                return existing;
            }
            Execute(connection, transaction, "INSERT INTO topics (name, attributes) VALUES ($1, $2);", name, Json(attributes));
            var topic = new Topic(name, attributes);
            _topics = _topics.SetItem(name, topic);
            return topic;
        });

    public Task DeleteAsync(string name) =>
        WriteAsync((connection, transaction) =>
        {
            Execute(connection, transaction, "DELETE FROM subscriptions WHERE topic = $1;", name);
            Execute(connection, transaction, "DELETE FROM topics WHERE name = $1;", name);
            _topics = _topics.Remove(name);
            _subscriptions = _subscriptions.RemoveRange(_subscriptions.Values.Where(s => s.Topic == name).Select(static s => s.Arn));
            return 0;
        });

    /// <summary>
    /// Subscribes an endpoint; the same protocol and endpoint on a topic is the same subscription. Null when the topic
    /// is gone (deleted on another node since the request looked it up).
    /// </summary>
    public Task<Subscription?> SubscribeAsync(Topic topic, string protocol, string endpoint, Dictionary<string, string> attributes) =>
        WriteAsync((connection, transaction) =>
        {
            if (!_topics.ContainsKey(topic.Name))
            {
                return null;
            }
            if (_subscriptions.Values.FirstOrDefault(s => s.Topic == topic.Name && s.Protocol == protocol && s.Endpoint == endpoint) is { } existing)
            {
                return existing;
            }
            var subscription = new Subscription($"{TopicArn(topic.Name)}:{Guid.NewGuid()}", topic.Name, protocol, endpoint, attributes);
            Execute(connection, transaction, "INSERT INTO subscriptions (arn, topic, protocol, endpoint, attributes) VALUES ($1, $2, $3, $4, $5);",
                subscription.Arn, topic.Name, protocol, endpoint, Json(attributes));
            _subscriptions = _subscriptions.SetItem(subscription.Arn, subscription);
            return (Subscription?)subscription;
        });

    public Task UnsubscribeAsync(string arn) =>
        WriteAsync((connection, transaction) =>
        {
            Execute(connection, transaction, "DELETE FROM subscriptions WHERE arn = $1;", arn);
            _subscriptions = _subscriptions.Remove(arn);
            return 0;
        });

    /// <summary>Sets one attribute of a subscription as it is now (another node may have set others); false when it is gone.</summary>
    public Task<bool> SetSubscriptionAttributeAsync(string arn, string name, string value) =>
        WriteAsync((connection, transaction) =>
        {
            if (!_subscriptions.TryGetValue(arn, out var subscription))
            {
                return false;
            }
            var attributes = new Dictionary<string, string>(subscription.Attributes, StringComparer.Ordinal) { [name] = value };
            Execute(connection, transaction, "UPDATE subscriptions SET attributes = $2 WHERE arn = $1;", subscription.Arn, Json(attributes));
            _subscriptions = _subscriptions.SetItem(subscription.Arn, subscription with { Attributes = attributes });
            return true;
        });

    /// <summary>Fans one message out to the matching subscriptions; returns its id.</summary>
    public async Task<string> PublishAsync(Topic topic, string message, string? subject, IReadOnlyList<TopicMessageAttribute> attributes)
    {
        var id = Guid.NewGuid().ToString();
        var timestamp = _time.GetUtcNow().UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
        // In a cluster, the database's list: this node's copy may not have heard of a subscription made elsewhere yet.
        var subscriptions = _cluster.Enabled
            ? await Task.Run(() => ReadSubscriptions(topic.Name))
            : _subscriptions.Values.Where(s => s.Topic == topic.Name).ToList();
        foreach (var subscription in subscriptions)
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
        var caller = new PolicyCaller(null, Service: "sns.amazonaws.com", SourceArn: TopicArn(topic.Name), SourceAccount: _options.AccountId);
        if (FunctionReference.TryParse(subscription.Endpoint, null, _options, out var named, out _))
        {
            await _functions.EnsureCurrentAsync(named.Name, entry => entry.ResolvePrimary(named.Qualifier) is not null
                && PermissionsApi.Allows(entry, named.Qualifier, "lambda:InvokeFunction", caller));
        }
        if (!FunctionReference.TryParse(subscription.Endpoint, null, _options, out var target, out _)
            || !_functions.TryGetEntry(target.Name, out var entry) || entry.ResolvePrimary(target.Qualifier) is null)
        {
            Log.EndpointMissing(_logger, subscription.Arn, subscription.Endpoint);
            return;
        }
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

    // ---- storage --------------------------------------------------------------------------------

    private List<Subscription> ReadSubscriptions(string topic)
    {
        using var connection = _database.OpenShared();
        using var command = Sql.Positional(connection, "SELECT arn, topic, protocol, endpoint, attributes FROM subscriptions WHERE topic = $1;", topic);
        using var reader = command.ExecuteReader();
        var subscriptions = new List<Subscription>();
        while (reader.Read())
        {
            subscriptions.Add(ReadSubscription(reader));
        }
        return subscriptions;
    }

    private static Subscription ReadSubscription(DbDataReader reader) =>
        new(reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), Map(reader.GetString(4)));

    private Task ReloadAsync() => ClusterLock.RereadAsync(_writeLock, Load);

    private void Load()
    {
        using var connection = _database.OpenShared();
        var topics = ImmutableDictionary.CreateBuilder<string, Topic>(StringComparer.Ordinal);
        using (var select = connection.CreateCommand())
        {
            select.CommandText = "SELECT name, attributes FROM topics;";
            using var reader = select.ExecuteReader();
            while (reader.Read())
            {
                topics[reader.GetString(0)] = new Topic(reader.GetString(0), Map(reader.GetString(1)));
            }
        }
        var subscriptions = ImmutableDictionary.CreateBuilder<string, Subscription>(StringComparer.Ordinal);
        using (var select = connection.CreateCommand())
        {
            select.CommandText = "SELECT arn, topic, protocol, endpoint, attributes FROM subscriptions;";
            using var reader = select.ExecuteReader();
            while (reader.Read())
            {
                var subscription = ReadSubscription(reader);
                subscriptions[subscription.Arn] = subscription;
            }
        }
        (_topics, _subscriptions) = (topics.ToImmutable(), subscriptions.ToImmutable());
    }

    /// <summary>
    /// Runs one change under the write lock, in one transaction (<see cref="ClusterLock.ChangeAsync"/>); the in-memory
    /// copy changes inside it and is put back if the change fails.
    /// </summary>
    private async Task<T> WriteAsync<T>(Func<DbConnection, DbTransaction, T> change)
    {
        await _writeLock.WaitAsync();
        var (topics, subscriptions) = (_topics, _subscriptions);
        try
        {
            return await ClusterLock.ChangeAsync(_database, _cluster, ClusterLock.Topics, ClusterNode.SnsChannel, "sns", () =>
            {
                Load();
                (topics, subscriptions) = (_topics, _subscriptions);
            }, change);
        }
        catch
        {
            (_topics, _subscriptions) = (topics, subscriptions); // nothing half-applied in memory either
            throw;
        }
        finally
        {
            _writeLock.Release();
            await ClusterLock.LeaveIoThread();
        }
    }

    /// <summary>Runs a statement with positional parameters (<see cref="Sql.Positional"/>) in the write's transaction.</summary>
    private static void Execute(DbConnection connection, DbTransaction transaction, string sql, params object?[] values)
    {
        using var command = Sql.Positional(connection, sql, values);
        command.Transaction = transaction;
        command.ExecuteNonQuery();
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
