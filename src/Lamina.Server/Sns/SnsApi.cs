using System.Globalization;
using System.Text;
using Lamina.Server.Protocols;

namespace Lamina.Server.Sns;

/// <summary>
/// SNS-compatible topics over SNS's Query protocol (botocore's <c>sns</c> model: form-encoded <c>Action=…</c> with
/// <c>Version=2010-03-31</c> on <c>POST /</c>, XML answers): topics, subscriptions of Lamina functions and queues with
/// filter policies, Publish and PublishBatch. <see cref="TopicStore"/> keeps them and delivers.
/// </summary>
internal static class SnsApi
{
    public const string Version = "2010-03-31";
    private const string Namespace = "http://sns.amazonaws.com/doc/2010-03-31/";

    /// <summary>Whether a form-encoded request is SNS's (its Version), rather than SQS's.</summary>
    public static bool Matches(Dictionary<string, string> form) => form.GetValueOrDefault("Version") == Version;

    public static Dictionary<string, string> ParseForm(ReadOnlySpan<byte> body) => QueryProtocol.ParseForm(body);

    public static async Task HandleAsync(HttpContext context, Dictionary<string, string> form, TopicStore topics)
    {
        var action = form.GetValueOrDefault("Action") ?? "";
        var requestId = Hosting.RequestIds.Of(context);
        try
        {
            var result = new StringBuilder();
            switch (action)
            {
                case "CreateTopic":
                    {
                        var name = Required(form, "Name");
                        var bare = name.EndsWith(".fifo", StringComparison.Ordinal) ? name[..^5] : name;
                        if (bare.Length is 0 or > 256 || !bare.All(static c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
                        {
                            throw new SnsException("InvalidParameter", "Invalid parameter: Topic Name");
                        }
                        var topic = await topics.CreateAsync(name, Map(form, "Attributes"));
                        Element(result, "TopicArn", topics.TopicArn(topic.Name));
                        break;
                    }
                case "DeleteTopic":
                    await topics.DeleteAsync(Topic(form, topics).Name);
                    break;
                case "ListTopics":
                    result.Append("<Topics>");
                    foreach (var topic in topics.Topics.OrderBy(static t => t.Name, StringComparer.Ordinal))
                    {
                        result.Append("<member>");
                        Element(result, "TopicArn", topics.TopicArn(topic.Name));
                        result.Append("</member>");
                    }
                    result.Append("</Topics>");
                    break;
                case "GetTopicAttributes":
                    {
                        var topic = Topic(form, topics);
                        var subscriptions = topics.Subscriptions.Count(s => s.Topic == topic.Name);
                        var attributes = new Dictionary<string, string>(topic.Attributes, StringComparer.Ordinal)
                        {
                            ["TopicArn"] = topics.TopicArn(topic.Name),
                            ["Owner"] = "000000000000",
                            ["SubscriptionsConfirmed"] = subscriptions.ToString(CultureInfo.InvariantCulture),
                            ["SubscriptionsPending"] = "0",
                            ["SubscriptionsDeleted"] = "0",
                            ["DisplayName"] = topic.Attributes.GetValueOrDefault("DisplayName") ?? "",
                        };
                        WriteMap(result, attributes);
                        break;
                    }
                case "Subscribe":
                    {
                        var topic = Topic(form, topics);
                        var protocol = Required(form, "Protocol");
                        var endpoint = Required(form, "Endpoint");
                        if (protocol is not ("lambda" or "sqs"))
                        {
                            throw new SnsException("InvalidParameter", $"Invalid parameter: Amazon SNS on Lamina delivers to lambda and sqs endpoints, not {protocol}");
                        }
                        var service = protocol == "lambda" ? ":lambda:" : ":sqs:";
                        if (!endpoint.StartsWith("arn:aws", StringComparison.Ordinal) || !endpoint.Contains(service, StringComparison.Ordinal))
                        {
                            throw new SnsException("InvalidParameter", $"Invalid parameter: {protocol} endpoint must be an ARN");
                        }
                        var attributes = Map(form, "Attributes");
                        CheckSubscriptionAttributes(attributes);
                        var subscription = await topics.SubscribeAsync(topic, protocol, endpoint, attributes)
                            ?? throw new SnsException("NotFound", "Topic does not exist");
                        Element(result, "SubscriptionArn", subscription.Arn);
                        break;
                    }
                case "Unsubscribe":
                    await topics.UnsubscribeAsync(Required(form, "SubscriptionArn"));
                    break;
                case "ListSubscriptions":
                case "ListSubscriptionsByTopic":
                    {
                        var only = action == "ListSubscriptionsByTopic" ? Topic(form, topics).Name : null;
                        result.Append("<Subscriptions>");
                        foreach (var subscription in topics.Subscriptions.Where(s => only is null || s.Topic == only).OrderBy(static s => s.Arn, StringComparer.Ordinal))
                        {
                            result.Append("<member>");
                            Element(result, "SubscriptionArn", subscription.Arn);
                            Element(result, "Owner", "000000000000");
                            Element(result, "Protocol", subscription.Protocol);
                            Element(result, "Endpoint", subscription.Endpoint);
                            Element(result, "TopicArn", topics.TopicArn(subscription.Topic));
                            result.Append("</member>");
                        }
                        result.Append("</Subscriptions>");
                        break;
                    }
                case "GetSubscriptionAttributes":
                    {
                        var subscription = Subscription(form, topics);
                        var attributes = new Dictionary<string, string>(subscription.Attributes, StringComparer.Ordinal)
                        {
                            ["SubscriptionArn"] = subscription.Arn,
                            ["TopicArn"] = topics.TopicArn(subscription.Topic),
                            ["Protocol"] = subscription.Protocol,
                            ["Endpoint"] = subscription.Endpoint,
                            ["Owner"] = "000000000000",
                            ["PendingConfirmation"] = "false",
                            ["ConfirmationWasAuthenticated"] = "true",
                        };
                        WriteMap(result, attributes);
                        break;
                    }
                case "SetSubscriptionAttributes":
                    {
                        var subscription = Subscription(form, topics);
                        var name = Required(form, "AttributeName");
                        var value = form.GetValueOrDefault("AttributeValue") ?? "";
                        CheckSubscriptionAttributes(new Dictionary<string, string> { [name] = value });
                        if (!await topics.SetSubscriptionAttributeAsync(subscription.Arn, name, value))
                        {
                            throw new SnsException("NotFound", "Subscription does not exist");
                        }
                        break;
                    }
                case "Publish":
                    {
                        var topic = Topic(form, topics, "TopicArn", form.GetValueOrDefault("TargetArn"));
                        var message = Required(form, "Message");
                        var id = await topics.PublishAsync(topic, message, form.GetValueOrDefault("Subject"), MessageAttributes(form, "MessageAttributes"));
                        Element(result, "MessageId", id);
                        break;
                    }
                case "PublishBatch":
                    {
                        var topic = Topic(form, topics);
                        var entries = Members(form, "PublishBatchRequestEntries");
                        if (entries.Count is 0 or > 10)
                        {
                            throw new SnsException(entries.Count == 0 ? "EmptyBatchRequest" : "TooManyEntriesInBatchRequest",
                                "The batch request must contain 1 to 10 entries.");
                        }
                        result.Append("<Successful>");
                        foreach (var entry in entries)
                        {
                            var message = form.GetValueOrDefault(entry + "Message") ?? throw new SnsException("InvalidParameter", "Invalid parameter: Message");
                            var id = await topics.PublishAsync(topic, message, form.GetValueOrDefault(entry + "Subject"), MessageAttributes(form, entry + "MessageAttributes"));
                            result.Append("<member>");
                            Element(result, "Id", form.GetValueOrDefault(entry + "Id") ?? "");
                            Element(result, "MessageId", id);
                            result.Append("</member>");
                        }
                        result.Append("</Successful><Failed/>");
                        break;
                    }
                default:
                    throw new SnsException("InvalidAction", $"Lamina does not implement the SNS action {action}.");
            }
            var xml = new StringBuilder();
            xml.Append("<?xml version=\"1.0\"?><").Append(action).Append("Response xmlns=\"").Append(Namespace).Append("\">");
            if (result.Length > 0 || action is "CreateTopic" or "Subscribe" or "Publish" or "ListTopics" or "ListSubscriptions" or "ListSubscriptionsByTopic")
            {
                xml.Append('<').Append(action).Append("Result>").Append(result).Append("</").Append(action).Append("Result>");
            }
            xml.Append("<ResponseMetadata><RequestId>").Append(requestId).Append("</RequestId></ResponseMetadata></").Append(action).Append("Response>");
            await WriteAsync(context, StatusCodes.Status200OK, xml);
        }
        catch (SnsException e)
        {
            var xml = new StringBuilder();
            xml.Append("<?xml version=\"1.0\"?><ErrorResponse xmlns=\"").Append(Namespace).Append("\"><Error><Type>Sender</Type><Code>").Append(Escape(e.Code))
                .Append("</Code><Message>").Append(Escape(e.Message)).Append("</Message></Error><RequestId>").Append(requestId).Append("</RequestId></ErrorResponse>");
            await WriteAsync(context, e.Code == "NotFound" ? StatusCodes.Status404NotFound : StatusCodes.Status400BadRequest, xml);
        }
    }

    private static void CheckSubscriptionAttributes(Dictionary<string, string> attributes)
    {
        foreach (var (name, value) in attributes)
        {
            switch (name)
            {
                case "FilterPolicy" when value.Length > 0 && EventBridge.EventPattern.Parse(value, out _) is null:
                    throw new SnsException("InvalidParameter", "Invalid parameter: FilterPolicy: the policy is not a valid filter policy");
                case "FilterPolicyScope" when value is not ("MessageAttributes" or "MessageBody"):
                case "RawMessageDelivery" when value is not ("true" or "false"):
                    throw new SnsException("InvalidParameter", $"Invalid parameter: {name}");
                case "FilterPolicy" or "FilterPolicyScope" or "RawMessageDelivery" or "RedrivePolicy" or "DeliveryPolicy" or "SubscriptionRoleArn":
                    break;
                default:
                    throw new SnsException("InvalidParameter", $"Invalid parameter: AttributeName {name}");
            }
        }
    }

    private static Topic Topic(Dictionary<string, string> form, TopicStore topics, string member = "TopicArn", string? fallback = null)
    {
        var arn = form.GetValueOrDefault(member) ?? fallback ?? throw new SnsException("InvalidParameter", $"Invalid parameter: {member}");
        return topics.TryGetByArn(arn, out var topic) ? topic : throw new SnsException("NotFound", "Topic does not exist");
    }

    private static Subscription Subscription(Dictionary<string, string> form, TopicStore topics) =>
        topics.TryGetSubscription(Required(form, "SubscriptionArn"), out var subscription) ? subscription : throw new SnsException("NotFound", "Subscription does not exist");

    private static string Required(Dictionary<string, string> form, string member) =>
        form.GetValueOrDefault(member) is { Length: > 0 } value ? value : throw new SnsException("InvalidParameter", $"Invalid parameter: {member}");

    /// <summary>A Query-protocol map: <c>Name.entry.N.key</c> / <c>Name.entry.N.value</c>.</summary>
    private static Dictionary<string, string> Map(Dictionary<string, string> form, string name)
    {
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in Members(form, name, "entry"))
        {
            if (form.TryGetValue(entry + "key", out var key))
            {
                map[key] = form.GetValueOrDefault(entry + "value") ?? "";
            }
        }
        return map;
    }

    private static List<TopicMessageAttribute> MessageAttributes(Dictionary<string, string> form, string name)
    {
        var attributes = new List<TopicMessageAttribute>();
        foreach (var entry in Members(form, name, "entry"))
        {
            if (!form.TryGetValue(entry + "Name", out var attributeName))
            {
                continue;
            }
            var dataType = form.GetValueOrDefault(entry + "Value.DataType") ?? throw new SnsException("ParameterValueInvalid", $"The message attribute '{attributeName}' must contain a DataType.");
            byte[]? binary = null;
            if (form.TryGetValue(entry + "Value.BinaryValue", out var encoded))
            {
                try
                {
                    binary = Convert.FromBase64String(encoded);
                }
                catch (FormatException)
                {
                    throw new SnsException("ParameterValueInvalid", $"The message attribute '{attributeName}' has an invalid binary value.");
                }
            }
            attributes.Add(new TopicMessageAttribute(attributeName, dataType, form.GetValueOrDefault(entry + "Value.StringValue"), binary));
        }
        return attributes;
    }

    /// <summary>The prefixes <c>Name.member.1.</c>, <c>Name.member.2.</c>, … (or <c>entry</c>) in order.</summary>
    private static List<string> Members(Dictionary<string, string> form, string name, string item = "member") =>
        QueryProtocol.Indexed(form, $"{name}.{item}.");

    private static void WriteMap(StringBuilder xml, Dictionary<string, string> map)
    {
        xml.Append("<Attributes>");
        foreach (var (key, value) in map.OrderBy(static p => p.Key, StringComparer.Ordinal))
        {
            xml.Append("<entry>");
            Element(xml, "key", key);
            Element(xml, "value", value);
            xml.Append("</entry>");
        }
        xml.Append("</Attributes>");
    }

    private static void Element(StringBuilder xml, string name, string value) => QueryProtocol.Element(xml, name, value);

    private static string Escape(string text) => QueryProtocol.Escape(text);

    private static Task WriteAsync(HttpContext context, int status, StringBuilder xml) => QueryProtocol.WriteXmlAsync(context, status, xml);

    private sealed class SnsException(string code, string message) : Exception(message)
    {
        public string Code { get; } = code;
    }
}
