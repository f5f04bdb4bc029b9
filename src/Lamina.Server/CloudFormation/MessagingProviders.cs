using System.Globalization;
using System.Text.Json.Nodes;

namespace Lamina.Server.CloudFormation;

/// <summary>AWS::SQS::Queue over SQS's JSON protocol.</summary>
internal sealed class SqsQueueProvider : ResourceProvider
{
    private const string ContentType = "application/x-amz-json-1.0";

    // Every attribute a template may set, with the value SQS has when it is absent (what an update that drops one sets).
    private static readonly Dictionary<string, string> Defaults = new(StringComparer.Ordinal)
    {
        ["DelaySeconds"] = "0", ["MaximumMessageSize"] = "262144", ["MessageRetentionPeriod"] = "345600", ["ReceiveMessageWaitTimeSeconds"] = "0",
        ["VisibilityTimeout"] = "30", ["RedrivePolicy"] = "", ["RedriveAllowPolicy"] = "", ["ContentBasedDeduplication"] = "false",
        ["DeduplicationScope"] = "", ["FifoThroughputLimit"] = "", ["KmsMasterKeyId"] = "", ["KmsDataKeyReusePeriodSeconds"] = "", ["SqsManagedSseEnabled"] = "",
    };

    public override string Type => "AWS::SQS::Queue";

    public override string? NameProperty => "QueueName";

    public override IReadOnlySet<string> CreateOnlyProperties { get; } = Set("QueueName", "FifoQueue");

    public override IReadOnlySet<string> AttributeNames { get; } = Set("Arn", "QueueName", "QueueUrl");

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var fifo = request.Bool("FifoQueue") == true;
        var name = request.String("QueueName") ?? (fifo ? request.GeneratedName(75) + ".fifo" : request.GeneratedName(80));
        var attributes = Attributes(request.Properties, null);
        if (fifo)
        {
            attributes["FifoQueue"] = "true";
        }
        var body = new JsonObject { ["QueueName"] = name, ["Attributes"] = attributes };
        if (LambdaPaths.Tags(request.Properties["Tags"]) is { Count: > 0 } tags)
        {
            body["tags"] = tags;
        }
        var created = await request.Client.JsonAsync("sqs", "AmazonSQS.CreateQueue", ContentType, body, cancellationToken);
        var url = created["QueueUrl"]!.GetValue<string>();
        return new ProvisionResult(url, await DescribeAsync(request, url, name, cancellationToken));
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var url = request.PhysicalId!;
        await request.Client.JsonAsync("sqs", "AmazonSQS.SetQueueAttributes", ContentType,
            new JsonObject { ["QueueUrl"] = url, ["Attributes"] = Attributes(request.Properties, request.PreviousProperties) }, cancellationToken);
        return new ProvisionResult(url, request.PreviousAttributes ?? await DescribeAsync(request, url, url[(url.LastIndexOf('/') + 1)..], cancellationToken));
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) => IgnoreNotFoundAsync(() =>
        request.Client.JsonAsync("sqs", "AmazonSQS.DeleteQueue", ContentType, new JsonObject { ["QueueUrl"] = request.PhysicalId }, cancellationToken));

    private static async Task<JsonObject> DescribeAsync(ProvisionRequest request, string url, string name, CancellationToken cancellationToken)
    {
        var answer = await request.Client.JsonAsync("sqs", "AmazonSQS.GetQueueAttributes", ContentType,
            new JsonObject { ["QueueUrl"] = url, [nameof(AttributeNames)] = new JsonArray("QueueArn") }, cancellationToken);
        return new JsonObject { ["Arn"] = answer["Attributes"]?["QueueArn"]?.GetValue<string>(), ["QueueName"] = name, ["QueueUrl"] = url };
    }

    /// <summary>The template's queue properties as SQS attributes (all strings; policies as JSON text).</summary>
    private static JsonObject Attributes(JsonObject p, JsonObject? previous)
    {
        var attributes = new JsonObject();
        foreach (var (name, fallback) in Defaults)
        {
            if (p[name] is { } value)
            {
                attributes[name] = value is JsonObject or JsonArray ? value.ToJsonString() : Intrinsics.Stringify(value);
            }
            else if (previous?[name] is not null && fallback.Length > 0 || previous?[name] is not null && name is "RedrivePolicy" or "RedriveAllowPolicy")
            {
                attributes[name] = fallback;
            }
        }
        return attributes;
    }
}

/// <summary>AWS::SQS::QueuePolicy: the Policy attribute of each queue.</summary>
internal sealed class SqsQueuePolicyProvider : ResourceProvider
{
    public override string Type => "AWS::SQS::QueuePolicy";

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        await SetAsync(request, request.Properties, cancellationToken);
        return new ProvisionResult(request.GeneratedName(128), []);
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var now = Queues(request.Properties);
        foreach (var gone in Queues(request.PreviousProperties ?? []).Except(now))
        {
            await ClearAsync(request, gone, cancellationToken);
        }
        await SetAsync(request, request.Properties, cancellationToken);
        return new ProvisionResult(request.PhysicalId!, []);
    }

    public override async Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        foreach (var queue in Queues(request.Properties))
        {
            await IgnoreNotFoundAsync(() => ClearAsync(request, queue, cancellationToken));
        }
    }

    private static List<string> Queues(JsonObject p) => p["Queues"] is JsonArray queues ? [.. queues.Select(Intrinsics.Stringify)] : [];

    private static async Task SetAsync(ProvisionRequest request, JsonObject p, CancellationToken cancellationToken)
    {
        var policy = p["PolicyDocument"] is JsonObject document ? document.ToJsonString() : Intrinsics.Stringify(p["PolicyDocument"]);
        foreach (var queue in Queues(p))
        {
            await request.Client.JsonAsync("sqs", "AmazonSQS.SetQueueAttributes", "application/x-amz-json-1.0",
                new JsonObject { ["QueueUrl"] = queue, ["Attributes"] = new JsonObject { ["Policy"] = policy } }, cancellationToken);
        }
    }

    private static Task<JsonObject> ClearAsync(ProvisionRequest request, string queue, CancellationToken cancellationToken) =>
        request.Client.JsonAsync("sqs", "AmazonSQS.SetQueueAttributes", "application/x-amz-json-1.0",
            new JsonObject { ["QueueUrl"] = queue, ["Attributes"] = new JsonObject { ["Policy"] = "" } }, cancellationToken);
}

/// <summary>AWS::SNS::Topic over SNS's Query protocol, with its inline Subscription list.</summary>
internal sealed class SnsTopicProvider : ResourceProvider
{
    public override string Type => "AWS::SNS::Topic";

    public override string? NameProperty => "TopicName";

    public override IReadOnlySet<string> CreateOnlyProperties { get; } = Set("TopicName", "FifoTopic");

    public override IReadOnlySet<string> AttributeNames { get; } = Set("TopicArn", "TopicName");

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var fifo = request.Bool("FifoTopic") == true;
        var name = request.String("TopicName") ?? (fifo ? request.GeneratedName(251) + ".fifo" : request.GeneratedName(256));
        var form = new Dictionary<string, string>(StringComparer.Ordinal) { ["Action"] = "CreateTopic", ["Version"] = "2010-03-31", ["Name"] = name };
        var index = 0;
        foreach (var attribute in new[] { "DisplayName", "FifoTopic", "ContentBasedDeduplication", "KmsMasterKeyId", "SignatureVersion", "TracingConfig" })
        {
            if (request.String(attribute) is { } value)
            {
                index++;
                form[$"Attributes.entry.{index}.key"] = attribute;
                form[$"Attributes.entry.{index}.value"] = value;
            }
        }
        var created = await request.Client.QueryAsync("sns", form, cancellationToken);
        var arn = created.Descendants().First(static e => e.Name.LocalName == "TopicArn").Value;
        var subscriptions = new JsonObject();
        try
        {
            await SubscribeAsync(request, arn, Subscriptions(request.Properties), subscriptions, cancellationToken);
        }
        catch (ServiceException)
        {
            await DeleteTopicAsync(request, arn, CancellationToken.None);
            throw;
        }
        return new ProvisionResult(arn, new JsonObject { ["TopicArn"] = arn, ["TopicName"] = name, ["Subscriptions"] = subscriptions });
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var arn = request.PhysicalId!;
        var attributes = (JsonObject)(request.PreviousAttributes ?? []).DeepClone();
        var subscriptions = attributes["Subscriptions"] as JsonObject ?? [];
        var wanted = Subscriptions(request.Properties);
        foreach (var (key, subscription) in subscriptions.ToList())
        {
            if (!wanted.Contains(key))
            {
                await UnsubscribeAsync(request, Intrinsics.Stringify(subscription), cancellationToken);
                subscriptions.Remove(key);
            }
        }
        await SubscribeAsync(request, arn, wanted.Where(w => !subscriptions.ContainsKey(w)).ToList(), subscriptions, cancellationToken);
        attributes["Subscriptions"] = subscriptions;
        return new ProvisionResult(arn, attributes);
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) => DeleteTopicAsync(request, request.PhysicalId!, cancellationToken);

    private static Task DeleteTopicAsync(ProvisionRequest request, string arn, CancellationToken cancellationToken) => IgnoreNotFoundAsync(() =>
        request.Client.QueryAsync("sns", new() { ["Action"] = "DeleteTopic", ["Version"] = "2010-03-31", ["TopicArn"] = arn }, cancellationToken));

    /// <summary>The inline subscriptions as "protocol|endpoint" keys.</summary>
    private static List<string> Subscriptions(JsonObject p) => p["Subscription"] is JsonArray list
        ? [.. list.OfType<JsonObject>().Select(static s => Intrinsics.Stringify(s["Protocol"]) + "|" + Intrinsics.Stringify(s["Endpoint"])).Distinct()]
        : [];

    private static async Task SubscribeAsync(ProvisionRequest request, string topic, List<string> keys, JsonObject into, CancellationToken cancellationToken)
    {
        foreach (var key in keys)
        {
            var bar = key.IndexOf('|', StringComparison.Ordinal);
            var answer = await request.Client.QueryAsync("sns", new()
            {
                ["Action"] = "Subscribe", ["Version"] = "2010-03-31", ["TopicArn"] = topic, ["Protocol"] = key[..bar], ["Endpoint"] = key[(bar + 1)..],
                ["ReturnSubscriptionArn"] = "true",
            }, cancellationToken);
            into[key] = answer.Descendants().First(static e => e.Name.LocalName == "SubscriptionArn").Value;
        }
    }

    internal static Task UnsubscribeAsync(ProvisionRequest request, string arn, CancellationToken cancellationToken) => IgnoreNotFoundAsync(() =>
        request.Client.QueryAsync("sns", new() { ["Action"] = "Unsubscribe", ["Version"] = "2010-03-31", ["SubscriptionArn"] = arn }, cancellationToken));
}

/// <summary>AWS::SNS::Subscription: Subscribe, SetSubscriptionAttributes, Unsubscribe.</summary>
internal sealed class SnsSubscriptionProvider : ResourceProvider
{
    private static readonly string[] Settable = ["FilterPolicy", "FilterPolicyScope", "RawMessageDelivery", "RedrivePolicy", "DeliveryPolicy"];

    public override string Type => "AWS::SNS::Subscription";

    public override IReadOnlySet<string> CreateOnlyProperties { get; } = Set("Endpoint", "Protocol", "TopicArn", "Region");

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var form = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["Action"] = "Subscribe", ["Version"] = "2010-03-31", ["TopicArn"] = request.RequiredString("TopicArn"), ["Protocol"] = request.RequiredString("Protocol"),
            ["Endpoint"] = request.RequiredString("Endpoint"), ["ReturnSubscriptionArn"] = "true",
        };
        var index = 0;
        foreach (var name in Settable)
        {
            if (Value(request.Properties, name) is { } value)
            {
                index++;
                form[$"Attributes.entry.{index}.key"] = name;
                form[$"Attributes.entry.{index}.value"] = value;
            }
        }
        var answer = await request.Client.QueryAsync("sns", form, cancellationToken);
        return new ProvisionResult(answer.Descendants().First(static e => e.Name.LocalName == "SubscriptionArn").Value, []);
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        foreach (var name in Settable)
        {
            var value = Value(request.Properties, name);
            if (value != Value(request.PreviousProperties ?? [], name))
            {
                await request.Client.QueryAsync("sns", new()
                {
                    ["Action"] = "SetSubscriptionAttributes", ["Version"] = "2010-03-31", ["SubscriptionArn"] = request.PhysicalId!, ["AttributeName"] = name,
                    ["AttributeValue"] = value ?? (name == "RawMessageDelivery" ? "false" : ""),
                }, cancellationToken);
            }
        }
        return new ProvisionResult(request.PhysicalId!, []);
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) => SnsTopicProvider.UnsubscribeAsync(request, request.PhysicalId!, cancellationToken);

    private static string? Value(JsonObject p, string name) => p[name] switch
    {
        null => null,
        JsonObject o => o.ToJsonString(),
        var v => Intrinsics.Stringify(v),
    };
}

/// <summary>AWS::Events::Rule over EventBridge's JSON protocol: PutRule and its targets.</summary>
internal sealed class EventsRuleProvider : ResourceProvider
{
    private const string ContentType = "application/x-amz-json-1.1";

    public override string Type => "AWS::Events::Rule";

    public override string? NameProperty => "Name";

    public override IReadOnlySet<string> CreateOnlyProperties { get; } = Set("Name", "EventBusName");

    public override IReadOnlySet<string> AttributeNames { get; } = Set("Arn");

    public override string? PlannedPhysicalId(ProvisionRequest request) => request.String("Name") is null && request.String("EventBusName") is null or "default"
        ? request.GeneratedName(64) : null;

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var name = request.String("Name") ?? request.GeneratedName(64);
        var arn = await PutRuleAsync(request, name, cancellationToken);
        try
        {
            await PutTargetsAsync(request, name, Targets(request.Properties), cancellationToken);
        }
        catch (ServiceException)
        {
            await DeleteRuleAsync(request, name, request.Properties, CancellationToken.None);
            throw;
        }
        return new ProvisionResult(Physical(request, name), new JsonObject { ["Arn"] = arn });
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var name = RuleName(request.PhysicalId!);
        var arn = await PutRuleAsync(request, name, cancellationToken);
        var wanted = Targets(request.Properties);
        var ids = wanted.Select(static t => Intrinsics.Stringify(t["Id"])).ToHashSet(StringComparer.Ordinal);
        var gone = Targets(request.PreviousProperties ?? []).Select(static t => Intrinsics.Stringify(t["Id"])).Where(id => !ids.Contains(id)).ToList();
        if (gone.Count > 0)
        {
            await request.Client.JsonAsync("events", "AWSEvents.RemoveTargets", ContentType, Bus(request, new JsonObject
            {
                ["Rule"] = name, ["Ids"] = new JsonArray(gone.Select(static id => (JsonNode?)JsonValue.Create(id)).ToArray()),
            }), cancellationToken);
        }
        await PutTargetsAsync(request, name, wanted, cancellationToken);
        return new ProvisionResult(request.PhysicalId!, new JsonObject { ["Arn"] = arn });
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) =>
        DeleteRuleAsync(request, RuleName(request.PhysicalId!), request.Properties, cancellationToken);

    private static async Task DeleteRuleAsync(ProvisionRequest request, string name, JsonObject p, CancellationToken cancellationToken)
    {
        var ids = Targets(p).Select(static t => (JsonNode?)JsonValue.Create(Intrinsics.Stringify(t["Id"]))).ToArray();
        if (ids.Length > 0)
        {
            await IgnoreNotFoundAsync(() => request.Client.JsonAsync("events", "AWSEvents.RemoveTargets", ContentType,
                Bus(request, new JsonObject { ["Rule"] = name, ["Ids"] = new JsonArray(ids), ["Force"] = true }), cancellationToken));
        }
        await IgnoreNotFoundAsync(() => request.Client.JsonAsync("events", "AWSEvents.DeleteRule", ContentType, Bus(request, new JsonObject { ["Name"] = name, ["Force"] = true }), cancellationToken));
    }

    private static string Physical(ProvisionRequest request, string name) => request.String("EventBusName") is { } bus && bus != "default" && !bus.EndsWith(":event-bus/default", StringComparison.Ordinal)
        ? bus + "|" + name : name;

    private static string RuleName(string physical) => physical.Contains('|', StringComparison.Ordinal) ? physical[(physical.LastIndexOf('|') + 1)..] : physical;

    private static JsonObject Bus(ProvisionRequest request, JsonObject body)
    {
        if (request.String("EventBusName") is { } bus)
        {
            body["EventBusName"] = bus;
        }
        return body;
    }

    private static async Task<string> PutRuleAsync(ProvisionRequest request, string name, CancellationToken cancellationToken)
    {
        var body = Bus(request, LambdaPaths.Copy(request.Properties, new JsonObject { ["Name"] = name }, "ScheduleExpression", "Description", "RoleArn"));
        body["State"] = request.String("State") ?? "ENABLED";
        if (request.Properties["EventPattern"] is { } pattern)
        {
            body["EventPattern"] = pattern is JsonObject ? pattern.ToJsonString() : Intrinsics.Stringify(pattern);
        }
        var answer = await request.Client.JsonAsync("events", "AWSEvents.PutRule", ContentType, body, cancellationToken);
        return answer["RuleArn"]!.GetValue<string>();
    }

    private static List<JsonObject> Targets(JsonObject p) => p["Targets"] is JsonArray targets ? [.. targets.OfType<JsonObject>()] : [];

    private static async Task PutTargetsAsync(ProvisionRequest request, string name, List<JsonObject> targets, CancellationToken cancellationToken)
    {
        if (targets.Count == 0)
        {
            return;
        }
        var list = new JsonArray();
        foreach (var target in targets)
        {
            var copy = (JsonObject)target.DeepClone();
            if (copy["Input"] is JsonObject input)
            {
                copy["Input"] = input.ToJsonString();
            }
            list.Add(copy);
        }
        var answer = await request.Client.JsonAsync("events", "AWSEvents.PutTargets", ContentType, Bus(request, new JsonObject { ["Rule"] = name, ["Targets"] = list }), cancellationToken);
        if (answer["FailedEntryCount"] is JsonValue failed && failed.GetValue<int>() > 0)
        {
            var entry = answer["FailedEntries"]?[0];
            throw new ServiceException("events", 400, entry?["ErrorCode"]?.GetValue<string>() ?? "InvalidRequest",
                entry?["ErrorMessage"]?.GetValue<string>() ?? string.Create(CultureInfo.InvariantCulture, $"{failed.GetValue<int>()} target(s) could not be put"));
        }
    }
}
