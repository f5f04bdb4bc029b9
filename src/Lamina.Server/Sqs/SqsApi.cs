using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Lamina.Server.Hosting;
using Lamina.Server.Protocols;

namespace Lamina.Server.Sqs;

/// <summary>
/// SQS-compatible queues over the JSON protocol the current SDKs speak (botocore's <c>sqs</c> model, awsJson1_0,
/// <c>X-Amz-Target: AmazonSQS.&lt;Operation&gt;</c>), and the Query protocol through <see cref="SqsQueryProtocol"/>. Errors carry both shapes SQS sends: the JSON <c>__type</c> and the
/// Query protocol's code in <c>x-amzn-query-error</c>, which the SDKs report (e.g. <c>AWS.SimpleQueueService.NonExistentQueue</c>).
/// </summary>
internal static partial class SqsApi
{
    public const string TargetPrefix = "AmazonSQS.";
    private const int MaxBatchEntries = 10;
    private const int MaxMessageBytes = 1_048_576;

    [GeneratedRegex(@"^[A-Za-z0-9_-]{1,80}\z", RegexOptions.CultureInvariant)]
    private static partial Regex QueueNamePattern();

    [GeneratedRegex(@"^[A-Za-z0-9_-]{1,80}\z", RegexOptions.CultureInvariant)]
    private static partial Regex BatchIdPattern();

    private static readonly Dictionary<string, (int Min, int Max)> NumericAttributes = new(StringComparer.Ordinal)
    {
        ["DelaySeconds"] = (0, 900),
        ["MaximumMessageSize"] = (1024, MaxMessageBytes),
        ["MessageRetentionPeriod"] = (60, 1_209_600),
        ["ReceiveMessageWaitTimeSeconds"] = (0, 20),
        ["VisibilityTimeout"] = (0, 43_200),
        ["KmsDataKeyReusePeriodSeconds"] = (60, 86_400),
    };

    private static readonly HashSet<string> OtherAttributes = new(StringComparer.Ordinal)
    {
        "Policy", "RedrivePolicy", "RedriveAllowPolicy", "FifoQueue", "ContentBasedDeduplication", "KmsMasterKeyId", "SqsManagedSseEnabled",
        "DeduplicationScope", "FifoThroughputLimit",
    };

    public static async Task HandleAsync(HttpContext context, string operation, QueueStore queues, LaminaOptions options)
    {
        if (await JsonProtocolEndpoint.ReadObjectAsync(context) is not { } request)
        {
            await ErrorAsync(context, new SqsException("InvalidParameterValue", "InvalidParameterValue", "The request body must be a JSON object."));
            return;
        }
        var call = new Call(context, request, queues, options);
        try
        {
            switch (operation)
            {
                case "CreateQueue": await CreateQueueAsync(call); break;
                case "GetQueueUrl": await GetQueueUrlAsync(call); break;
                case "ListQueues": await ListQueuesAsync(call); break;
                case "DeleteQueue": await queues.DeleteAsync(call.Queue().Name); await call.RespondAsync(static _ => { }); break;
                case "PurgeQueue": await queues.PurgeAsync(call.Queue().Name); await call.RespondAsync(static _ => { }); break;
                case "GetQueueAttributes": await GetQueueAttributesAsync(call); break;
                case "SetQueueAttributes": await SetQueueAttributesAsync(call); break;
                case "SendMessage": await SendMessageAsync(call); break;
                case "SendMessageBatch": await SendMessageBatchAsync(call); break;
                case "ReceiveMessage": await ReceiveMessageAsync(call); break;
                case "DeleteMessage": await DeleteMessageAsync(call); break;
                case "DeleteMessageBatch": await DeleteMessageBatchAsync(call); break;
                case "ChangeMessageVisibility": await ChangeMessageVisibilityAsync(call); break;
                case "ChangeMessageVisibilityBatch": await ChangeMessageVisibilityBatchAsync(call); break;
                default:
                    throw new SqsException("UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation", $"Lamina does not implement the SQS operation {operation}.");
            }
        }
        catch (SqsException e)
        {
            await ErrorAsync(context, e);
        }
    }

    private static async Task CreateQueueAsync(Call call)
    {
        var name = call.Required("QueueName");
        var fifo = name.EndsWith(".fifo", StringComparison.Ordinal);
        if (!QueueNamePattern().IsMatch(fifo ? name[..^5] : name))
        {
            throw InvalidParameter("Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length");
        }
        var attributes = call.Attributes("Attributes");
        CheckAttributes(attributes, call.Queues, fifo);
        if (fifo != (attributes.GetValueOrDefault("FifoQueue") == "true"))
        {
            throw fifo && !attributes.ContainsKey("FifoQueue")
                ? new SqsException("InvalidAttributeValue", "InvalidAttributeValue", "The name of a FIFO queue can only include alphanumeric characters, hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in length. Set the FifoQueue attribute to true.")
                : new SqsException("InvalidAttributeValue", "InvalidAttributeValue", "The name of a FIFO queue must end with the .fifo suffix.");
        }
        var queue = await call.Queues.CreateAsync(name, attributes)
            ?? throw new SqsException("QueueNameExists", "QueueAlreadyExists", "A queue already exists with the same name and a different value for attribute(s)");
        await call.RespondAsync(w => w.WriteString("QueueUrl", call.UrlOf(queue.Name)));
    }

    private static async Task GetQueueUrlAsync(Call call)
    {
        var name = call.Required("QueueName");
        if (!call.Queues.TryGet(name, out _))
        {
            throw NoSuchQueue();
        }
        await call.RespondAsync(w => w.WriteString("QueueUrl", call.UrlOf(name)));
    }

    private static async Task ListQueuesAsync(Call call)
    {
        var prefix = call.String("QueueNamePrefix") ?? "";
        var max = call.Int("MaxResults") ?? 1000;
        if (max is < 1 or > 1000)
        {
            throw InvalidParameter("Value for parameter MaxResults is invalid. Reason: MaxResults must be an integer between 1 and 1000.");
        }
        var names = call.Queues.Queues.Select(static q => q.Name).Where(n => n.StartsWith(prefix, StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList();
        var after = call.String("NextToken");
        var page = names.Where(n => after is null || string.CompareOrdinal(n, after) > 0).Take(max).ToList();
        var more = page.Count == max && names.Count(n => after is null || string.CompareOrdinal(n, after) > 0) > max;
        await call.RespondAsync(w =>
        {
            if (page.Count > 0)
            {
                w.WriteStartArray("QueueUrls");
                foreach (var name in page)
                {
                    w.WriteStringValue(call.UrlOf(name));
                }
                w.WriteEndArray();
            }
            if (more)
            {
                w.WriteString("NextToken", page[^1]);
            }
        });
    }

    private static async Task GetQueueAttributesAsync(Call call)
    {
        var queue = call.Queue();
        var wanted = call.StringList("AttributeNames") ?? [];
        var all = wanted.Contains("All");
        var (visible, inflight, delayed) = await call.Queues.CountsAsync(queue.Name);
        var values = new Dictionary<string, string>(queue.Attributes, StringComparer.Ordinal)
        {
            ["QueueArn"] = call.ArnOf(queue.Name),
            ["ApproximateNumberOfMessages"] = visible.ToString(CultureInfo.InvariantCulture),
            ["ApproximateNumberOfMessagesNotVisible"] = inflight.ToString(CultureInfo.InvariantCulture),
            ["ApproximateNumberOfMessagesDelayed"] = delayed.ToString(CultureInfo.InvariantCulture),
            ["CreatedTimestamp"] = (queue.CreatedMs / 1000).ToString(CultureInfo.InvariantCulture),
            ["LastModifiedTimestamp"] = (queue.ModifiedMs / 1000).ToString(CultureInfo.InvariantCulture),
            ["VisibilityTimeout"] = queue.VisibilityTimeout.ToString(CultureInfo.InvariantCulture),
            ["MaximumMessageSize"] = queue.MaximumMessageSize.ToString(CultureInfo.InvariantCulture),
            ["MessageRetentionPeriod"] = queue.RetentionSeconds.ToString(CultureInfo.InvariantCulture),
            ["DelaySeconds"] = queue.DelaySeconds.ToString(CultureInfo.InvariantCulture),
            ["ReceiveMessageWaitTimeSeconds"] = queue.WaitTimeSeconds.ToString(CultureInfo.InvariantCulture),
        };
        foreach (var name in wanted)
        {
            if (name != "All" && !values.ContainsKey(name) && !NumericAttributes.ContainsKey(name) && !OtherAttributes.Contains(name))
            {
                throw new SqsException("InvalidAttributeName", "InvalidAttributeName", $"Unknown Attribute {name}.");
            }
        }
        await call.RespondAsync(w =>
        {
            w.WriteStartObject("Attributes");
            foreach (var (key, value) in values.OrderBy(static p => p.Key, StringComparer.Ordinal))
            {
                if (all || wanted.Contains(key))
                {
                    w.WriteString(key, value);
                }
            }
            w.WriteEndObject();
        });
    }

    private static async Task SetQueueAttributesAsync(Call call)
    {
        var queue = call.Queue();
        var attributes = call.Attributes("Attributes");
        CheckAttributes(attributes, call.Queues, queue.Fifo);
        if (attributes.TryGetValue("FifoQueue", out var fifoValue) && (fifoValue == "true") != queue.Fifo)
        {
            throw new SqsException("InvalidAttributeName", "InvalidAttributeName", "Unknown Attribute FifoQueue.");
        }
        await call.Queues.SetAttributesAsync(queue.Name, attributes);
        await call.RespondAsync(static _ => { });
    }

    private static void CheckAttributes(Dictionary<string, string> attributes, QueueStore queues, bool fifo)
    {
        foreach (var (name, value) in attributes)
        {
            if (NumericAttributes.TryGetValue(name, out var range))
            {
                if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n < range.Min || n > range.Max)
                {
                    throw new SqsException("InvalidAttributeValue", "InvalidAttributeValue", $"Invalid value for the parameter {name}.");
                }
            }
            else if (!OtherAttributes.Contains(name))
            {
                throw new SqsException("InvalidAttributeName", "InvalidAttributeName", $"Unknown Attribute {name}.");
            }
            else if (name is "FifoQueue" or "ContentBasedDeduplication" && value is not ("true" or "false") || name == "ContentBasedDeduplication" && !fifo)
            {
                throw new SqsException("InvalidAttributeValue", "InvalidAttributeValue", $"Invalid value for the parameter {name}.");
            }
            else if (name == "RedrivePolicy" && value.Length > 0)
            {
                try
                {
                    using var policy = JsonDocument.Parse(value);
                    var arn = policy.RootElement.GetProperty("deadLetterTargetArn").GetString() ?? "";
                    var max = policy.RootElement.GetProperty("maxReceiveCount");
                    var count = max.ValueKind == JsonValueKind.String ? int.Parse(max.GetString()!, CultureInfo.InvariantCulture) : max.GetInt32();
                    var target = arn[(arn.LastIndexOf(':') + 1)..];
                    if (count is < 1 or > 1000 || !arn.StartsWith("arn:aws:sqs:", StringComparison.Ordinal) || !queues.TryGet(target, out var dlq) || dlq.Fifo != fifo)
                    {
                        throw new SqsException("InvalidAttributeValue", "InvalidAttributeValue",
                            $"Value {value} for parameter RedrivePolicy is invalid. Reason: Dead-letter target does not exist, is of another kind, or maxReceiveCount is not 1 to 1000.");
                    }
                }
                catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException or OverflowException)
                {
                    throw new SqsException("InvalidAttributeValue", "InvalidAttributeValue", $"Value {value} for parameter RedrivePolicy is invalid. Reason: Invalid value for deadLetterTargetArn or maxReceiveCount.");
                }
            }
        }
    }

    private static async Task SendMessageAsync(Call call)
    {
        var queue = call.Queue();
        var message = Outgoing(call.Request, queue, call.Int("DelaySeconds"));
        var sent = (await call.Queues.SendAsync(queue, [message]))[0];
        await call.RespondAsync(w =>
        {
            w.WriteString("MD5OfMessageBody", SqsMd5.OfBody(message.Body));
            if (message.Md5OfMessageAttributes is { } md5)
            {
                w.WriteString("MD5OfMessageAttributes", md5);
            }
            w.WriteString("MessageId", sent.MessageId);
            if (queue.Fifo)
            {
                w.WriteString("SequenceNumber", sent.Sequence);
            }
        });
    }

    private static async Task SendMessageBatchAsync(Call call)
    {
        var queue = call.Queue();
        var entries = call.Entries();
        var failed = new List<(string Id, string Code, string Message)>();
        var accepted = new List<(string Id, OutgoingMessage Message)>();
        var total = 0;
        foreach (var entry in entries)
        {
            var id = entry.GetProperty("Id").GetString()!;
            try
            {
                var delay = entry.TryGetProperty("DelaySeconds", out var d) && d.ValueKind == JsonValueKind.Number ? d.GetInt32() : (int?)null;
                var message = Outgoing(entry, queue, delay);
                total += Encoding.UTF8.GetByteCount(message.Body);
                accepted.Add((id, message));
            }
            catch (SqsException e)
            {
                failed.Add((id, e.QueryCode, e.Message));
            }
        }
        if (total > queue.MaximumMessageSize)
        {
            throw new SqsException("BatchRequestTooLong", "AWS.SimpleQueueService.BatchRequestTooLong", $"Batch requests cannot be longer than {queue.MaximumMessageSize} bytes.");
        }
        var sent = accepted.Count == 0 ? [] : await call.Queues.SendAsync(queue, accepted.ConvertAll(static a => a.Message));
        await call.RespondAsync(w =>
        {
            w.WriteStartArray("Successful");
            for (var i = 0; i < sent.Count; i++)
            {
                w.WriteStartObject();
                w.WriteString("Id", accepted[i].Id);
                w.WriteString("MessageId", sent[i].MessageId);
                w.WriteString("MD5OfMessageBody", SqsMd5.OfBody(accepted[i].Message.Body));
                if (accepted[i].Message.Md5OfMessageAttributes is { } md5)
                {
                    w.WriteString("MD5OfMessageAttributes", md5);
                }
                if (queue.Fifo)
                {
                    w.WriteString("SequenceNumber", sent[i].Sequence);
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            WriteFailed(w, failed);
        });
    }

    /// <summary>Checks one message (SendMessage's request or a batch entry) and builds what the store keeps.</summary>
    private static OutgoingMessage Outgoing(JsonElement source, QueueInfo queue, int? delay)
    {
        var body = source.TryGetProperty("MessageBody", out var b) && b.ValueKind == JsonValueKind.String ? Text(b, "MessageBody") : null;
        if (string.IsNullOrEmpty(body))
        {
            throw new SqsException("MissingParameter", "MissingParameter", "The request must contain the parameter MessageBody.");
        }
        if (Encoding.UTF8.GetByteCount(body) > queue.MaximumMessageSize)
        {
            throw InvalidParameter($"One or more parameters are invalid. Reason: Message must be shorter than {queue.MaximumMessageSize} bytes.");
        }
        if (body.Any(static c => c is < '\x20' and not ('\x09' or '\x0A' or '\x0D') || c is '\uFFFE' or '\uFFFF'))
        {
            throw new SqsException("InvalidMessageContents", "InvalidMessageContents", "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF");
        }
        if (delay is < 0 or > 900)
        {
            throw InvalidParameter("Value for parameter DelaySeconds is invalid. Reason: Must be >= 0 and <= 900.");
        }
        string? group = null, dedup = null;
        if (queue.Fifo)
        {
            if (delay is > 0)
            {
                throw InvalidParameter("Value for parameter DelaySeconds is invalid. Reason: The request include parameter that is not valid for this queue type.");
            }
            group = source.TryGetProperty("MessageGroupId", out var g) && g.ValueKind == JsonValueKind.String ? Text(g, "MessageGroupId") : null;
            if (string.IsNullOrEmpty(group))
            {
                throw new SqsException("MissingParameter", "MissingParameter", "The request must contain the parameter MessageGroupId.");
            }
            dedup = source.TryGetProperty("MessageDeduplicationId", out var dd) && dd.ValueKind == JsonValueKind.String ? Text(dd, "MessageDeduplicationId") : null;
            if (dedup is null)
            {
                dedup = queue.ContentBasedDeduplication
                    ? Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(body)))
                    : throw InvalidParameter("The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId provided explicitly");
            }
        }
        var (attributesJson, md5) = MessageAttributes(source);
        return new OutgoingMessage(body, attributesJson, md5, delay, group, dedup);
    }

    /// <summary>The message attributes, checked, as JSON to keep, with their MD5.</summary>
    private static (string? Json, string? Md5) MessageAttributes(JsonElement source)
    {
        if (!source.TryGetProperty("MessageAttributes", out var attributes) || attributes.ValueKind != JsonValueKind.Object)
        {
            return (null, null);
        }
        var list = new List<(string Name, string DataType, string? StringValue, byte[]? BinaryValue)>();
        foreach (var attribute in attributes.EnumerateObject())
        {
            var value = attribute.Value;
            var dataType = value.TryGetProperty("DataType", out var t) && t.ValueKind == JsonValueKind.String ? Text(t, "DataType") : null;
            if (string.IsNullOrEmpty(dataType) || !(dataType.StartsWith("String", StringComparison.Ordinal) || dataType.StartsWith("Number", StringComparison.Ordinal)
                || dataType.StartsWith("Binary", StringComparison.Ordinal)))
            {
                throw InvalidParameter($"The message attribute '{attribute.Name}' has an invalid message attribute type, the set of supported type prefixes is Binary, Number, and String.");
            }
            if (dataType.StartsWith("Binary", StringComparison.Ordinal))
            {
                var binary = value.TryGetProperty("BinaryValue", out var bv) && bv.ValueKind == JsonValueKind.String ? TryBase64(bv.GetString()!) : null;
                list.Add((attribute.Name, dataType, null, binary ?? throw InvalidParameter($"The message attribute '{attribute.Name}' must contain a non-empty message attribute value for message attribute type '{dataType}'.")));
            }
            else
            {
                var text = value.TryGetProperty("StringValue", out var sv) && sv.ValueKind == JsonValueKind.String ? Text(sv, "StringValue") : null;
                if (string.IsNullOrEmpty(text))
                {
                    throw InvalidParameter($"The message attribute '{attribute.Name}' must contain a non-empty message attribute value for message attribute type '{dataType}'.");
                }
                if (dataType.StartsWith("Number", StringComparison.Ordinal) && !decimal.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out _))
                {
                    throw InvalidParameter($"Can't cast the value of message (user) attribute '{attribute.Name}' to a number.");
                }
                list.Add((attribute.Name, dataType, text, null));
            }
        }
        if (list.Count > 10)
        {
            throw InvalidParameter("Number of message attributes [" + list.Count.ToString(CultureInfo.InvariantCulture) + "] exceeds the allowed maximum [10].");
        }
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            foreach (var (name, dataType, stringValue, binaryValue) in list)
            {
                w.WriteStartObject(name);
                w.WriteString("DataType", dataType);
                if (binaryValue is not null)
                {
                    w.WriteString("BinaryValue", Convert.ToBase64String(binaryValue));
                }
                else
                {
                    w.WriteString("StringValue", stringValue);
                }
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        return list.Count == 0 ? (null, null) : (Encoding.UTF8.GetString(buffer.WrittenSpan), SqsMd5.OfAttributes(list));
    }

    private static async Task ReceiveMessageAsync(Call call)
    {
        var queue = call.Queue();
        var max = call.Int("MaxNumberOfMessages") ?? 1;
        if (max is < 1 or > 10)
        {
            throw InvalidParameter("Value for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.");
        }
        var visibility = call.Int("VisibilityTimeout") ?? queue.VisibilityTimeout;
        var wait = call.Int("WaitTimeSeconds") ?? queue.WaitTimeSeconds;
        if (visibility is < 0 or > 43_200 || wait is < 0 or > QueueStore.MaxWaitSeconds)
        {
            throw InvalidParameter("Value for parameter VisibilityTimeout or WaitTimeSeconds is invalid.");
        }
        var systemNames = (call.StringList("MessageSystemAttributeNames") ?? []).Concat(call.StringList("AttributeNames") ?? []).ToHashSet(StringComparer.Ordinal);
        var attributeNames = call.StringList("MessageAttributeNames") ?? [];
        // A long poll ends early when the caller goes away or the server stops (it never holds a shutdown up).
        var stopping = call.Context.RequestServices.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping;
        using var ends = CancellationTokenSource.CreateLinkedTokenSource(call.Context.RequestAborted, stopping);
        var messages = await call.Queues.ReceiveAsync(queue.Name, max, visibility, wait, ends.Token);
        await call.RespondAsync(w =>
        {
            if (messages.Count == 0)
            {
                return;
            }
            w.WriteStartArray("Messages");
            foreach (var m in messages)
            {
                w.WriteStartObject();
                w.WriteString("MessageId", m.MessageId);
                w.WriteString("ReceiptHandle", m.ReceiptHandle);
                w.WriteString("MD5OfBody", m.Md5OfBody);
                w.WriteString("Body", m.Body);
                WriteSystemAttributes(w, m, systemNames, queue);
                WriteMessageAttributes(w, m, attributeNames);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        });
    }

    private static void WriteSystemAttributes(Utf8JsonWriter w, QueueMessage m, HashSet<string> names, QueueInfo queue)
    {
        if (names.Count == 0)
        {
            return;
        }
        var all = names.Contains("All");
        var values = new List<(string, string)>
        {
            ("SenderId", "000000000000"),
            ("SentTimestamp", m.SentMs.ToString(CultureInfo.InvariantCulture)),
            ("ApproximateReceiveCount", m.ReceiveCount.ToString(CultureInfo.InvariantCulture)),
            ("ApproximateFirstReceiveTimestamp", m.FirstReceiveMs.ToString(CultureInfo.InvariantCulture)),
        };
        if (queue.Fifo)
        {
            values.Add(("MessageGroupId", m.GroupId ?? ""));
            values.Add(("MessageDeduplicationId", m.DeduplicationId ?? ""));
            values.Add(("SequenceNumber", m.Sequence.ToString("D20", CultureInfo.InvariantCulture)));
        }
        w.WriteStartObject("Attributes");
        foreach (var (name, value) in values)
        {
            if (all || names.Contains(name))
            {
                w.WriteString(name, value);
            }
        }
        w.WriteEndObject();
    }

    /// <summary>The attributes the receiver asked for (<c>All</c>, <c>.*</c>, names, or <c>prefix.*</c>), with their MD5.</summary>
    private static void WriteMessageAttributes(Utf8JsonWriter w, QueueMessage m, List<string> names)
    {
        if (m.MessageAttributesJson is null || names.Count == 0)
        {
            return;
        }
        using var document = JsonDocument.Parse(m.MessageAttributesJson);
        var selected = document.RootElement.EnumerateObject().Where(a => names.Any(n => n is "All" or ".*" || n == a.Name
            || (n.EndsWith(".*", StringComparison.Ordinal) && a.Name.StartsWith(n[..^1], StringComparison.Ordinal)))).ToList();
        if (selected.Count == 0)
        {
            return;
        }
        var forMd5 = selected.ConvertAll(static a => (a.Name, a.Value.GetProperty("DataType").GetString()!,
            a.Value.TryGetProperty("StringValue", out var s) ? s.GetString() : null,
            a.Value.TryGetProperty("BinaryValue", out var b) ? Convert.FromBase64String(b.GetString()!) : null));
        w.WriteString("MD5OfMessageAttributes", SqsMd5.OfAttributes(forMd5));
        w.WriteStartObject("MessageAttributes");
        foreach (var attribute in selected)
        {
            w.WritePropertyName(attribute.Name);
            attribute.Value.WriteTo(w);
        }
        w.WriteEndObject();
    }

    private static async Task DeleteMessageAsync(Call call)
    {
        var queue = call.Queue();
        var receipt = call.Required("ReceiptHandle");
        if (!await call.Queues.DeleteMessageAsync(queue.Name, receipt) && !LooksLikeReceipt(receipt))
        {
            throw new SqsException("ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid", $"The input receipt handle \"{receipt}\" is not a valid receipt handle.");
        }
        await call.RespondAsync(static _ => { });
    }

    private static async Task DeleteMessageBatchAsync(Call call)
    {
        var queue = call.Queue();
        var ok = new List<string>();
        var failed = new List<(string Id, string Code, string Message)>();
        foreach (var entry in call.Entries())
        {
            var id = entry.GetProperty("Id").GetString()!;
            var receipt = entry.TryGetProperty("ReceiptHandle", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString()! : "";
            if (await call.Queues.DeleteMessageAsync(queue.Name, receipt) || LooksLikeReceipt(receipt))
            {
                ok.Add(id);
            }
            else
            {
                failed.Add((id, "ReceiptHandleIsInvalid", $"The input receipt handle \"{receipt}\" is not a valid receipt handle."));
            }
        }
        await call.RespondAsync(w => WriteBatchResult(w, ok, failed));
    }

    private static async Task ChangeMessageVisibilityAsync(Call call)
    {
        var queue = call.Queue();
        var receipt = call.Required("ReceiptHandle");
        var seconds = call.Int("VisibilityTimeout") ?? throw new SqsException("MissingParameter", "MissingParameter", "The request must contain the parameter VisibilityTimeout.");
        if (seconds is < 0 or > 43_200)
        {
            throw InvalidParameter("Value for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200.");
        }
        if (!await call.Queues.ChangeVisibilityAsync(queue.Name, receipt, seconds))
        {
            throw LooksLikeReceipt(receipt)
                ? new SqsException("MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight", "Message does not exist or is not available for visibility timeout change.")
                : new SqsException("ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid", $"The input receipt handle \"{receipt}\" is not a valid receipt handle.");
        }
        await call.RespondAsync(static _ => { });
    }

    private static async Task ChangeMessageVisibilityBatchAsync(Call call)
    {
        var queue = call.Queue();
        var ok = new List<string>();
        var failed = new List<(string Id, string Code, string Message)>();
        foreach (var entry in call.Entries())
        {
            var id = entry.GetProperty("Id").GetString()!;
            var receipt = entry.TryGetProperty("ReceiptHandle", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString()! : "";
            var seconds = entry.TryGetProperty("VisibilityTimeout", out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : 0;
            if (seconds is >= 0 and <= 43_200 && await call.Queues.ChangeVisibilityAsync(queue.Name, receipt, seconds))
            {
                ok.Add(id);
            }
            else
            {
                failed.Add((id, "ReceiptHandleIsInvalid", "The receipt handle is not valid, or the message is not in flight."));
            }
        }
        await call.RespondAsync(w => WriteBatchResult(w, ok, failed));
    }

    /// <summary>A batch's answer where a success is just its entry's id (DeleteMessageBatch, ChangeMessageVisibilityBatch).</summary>
    private static void WriteBatchResult(Utf8JsonWriter w, List<string> ok, List<(string Id, string Code, string Message)> failed)
    {
        w.WriteStartArray("Successful");
        foreach (var id in ok)
        {
            w.WriteStartObject();
            w.WriteString("Id", id);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        WriteFailed(w, failed);
    }

    private static void WriteFailed(Utf8JsonWriter w, List<(string Id, string Code, string Message)> failed)
    {
        w.WriteStartArray("Failed");
        foreach (var (id, code, message) in failed)
        {
            w.WriteStartObject();
            w.WriteString("Id", id);
            w.WriteBoolean("SenderFault", true);
            w.WriteString("Code", code);
            w.WriteString("Message", message);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    // Receipt handles Lamina hands out: 64 base64 characters. A well-formed but unknown one (already deleted) is no error, as on SQS.
    private static bool LooksLikeReceipt(string receipt) => receipt.Length == 64 && receipt.All(static c => char.IsAsciiLetterOrDigit(c) || c is '+' or '/' or '=');

    private static byte[]? TryBase64(string text)
    {
        try
        {
            var bytes = Convert.FromBase64String(text);
            return bytes.Length == 0 ? null : bytes;
        }
        catch (FormatException)
        {
            return null;
        }
    }

    private static string Text(JsonElement value, string name)
    {
        try
        {
            return value.GetString()!;
        }
        catch (InvalidOperationException)
        {
            throw InvalidParameter($"The value of {name} is not valid Unicode text.");
        }
    }

    private static SqsException InvalidParameter(string message) => new("InvalidParameterValue", "InvalidParameterValue", message);

    private static SqsException NoSuchQueue() => new("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", "The specified queue does not exist.");

    private static async Task ErrorAsync(HttpContext context, SqsException e)
    {
        if (SqsQueryProtocol.ActionOf(context) is not null)
        {
            await SqsQueryProtocol.WriteErrorAsync(context, e.QueryCode, e.Message, Hosting.RequestIds.Of(context));
            return;
        }
        var response = context.Response;
        response.StatusCode = StatusCodes.Status400BadRequest;
        response.ContentType = "application/x-amz-json-1.0";
        response.Headers["x-amzn-query-error"] = $"{e.QueryCode};Sender";
        response.Headers["x-amzn-ErrorType"] = e.Shape;
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("__type", "com.amazonaws.sqs#" + e.Shape);
            writer.WriteString("message", e.Message);
            writer.WriteEndObject();
        }
        await response.Body.WriteAsync(buffer.WrittenMemory);
    }

    private sealed class SqsException(string shape, string queryCode, string message) : Exception(message)
    {
        public string Shape { get; } = shape;
        public string QueryCode { get; } = queryCode;
    }

    /// <summary>One call's request, and what every operation needs to read it and answer.</summary>
    private sealed class Call(HttpContext context, JsonElement request, QueueStore queues, LaminaOptions options)
    {
        public HttpContext Context { get; } = context;
        public JsonElement Request { get; } = request;
        public QueueStore Queues { get; } = queues;

        public string UrlOf(string name) => $"{Context.Request.Scheme}://{Context.Request.Host}/{options.AccountId}/{name}";

        public string ArnOf(string name) => $"arn:aws:sqs:{options.Region}:{options.AccountId}:{name}";

        /// <summary>The queue <c>QueueUrl</c> names (its last path segment), or QueueDoesNotExist.</summary>
        public QueueInfo Queue()
        {
            var url = Required("QueueUrl");
            var name = url.TrimEnd('/');
            name = name[(name.LastIndexOf('/') + 1)..];
            return Queues.TryGet(name, out var queue) ? queue : throw NoSuchQueue();
        }

        public string Required(string member) =>
            String(member) is { Length: > 0 } value ? value : throw new SqsException("MissingParameter", "MissingParameter", $"The request must contain the parameter {member}.");

        public string? String(string member)
        {
            if (!Request.TryGetProperty(member, out var value) || value.ValueKind == JsonValueKind.Null)
            {
                return null;
            }
            return value.ValueKind == JsonValueKind.String ? Text(value, member) : throw InvalidParameter($"Value for parameter {member} must be a string.");
        }

        public int? Int(string member)
        {
            if (!Request.TryGetProperty(member, out var value) || value.ValueKind == JsonValueKind.Null)
            {
                return null;
            }
            return value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var n) ? n : throw InvalidParameter($"Value for parameter {member} is invalid. Reason: must be an integer.");
        }

        public List<string>? StringList(string member) =>
            Request.TryGetProperty(member, out var value) && value.ValueKind == JsonValueKind.Array
                ? value.EnumerateArray().Where(static v => v.ValueKind == JsonValueKind.String).Select(v => Text(v, member)).ToList()
                : null;

        public Dictionary<string, string> Attributes(string member)
        {
            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            if (Request.TryGetProperty(member, out var value) && value.ValueKind == JsonValueKind.Object)
            {
                foreach (var attribute in value.EnumerateObject())
                {
                    result[attribute.Name] = attribute.Value.ValueKind == JsonValueKind.String ? Text(attribute.Value, attribute.Name) : attribute.Value.GetRawText();
                }
            }
            return result;
        }

        /// <summary>A batch's entries: 1 to 10, with distinct, well-formed ids.</summary>
        public List<JsonElement> Entries()
        {
            if (!Request.TryGetProperty("Entries", out var value) || value.ValueKind != JsonValueKind.Array || value.GetArrayLength() == 0)
            {
                throw new SqsException("EmptyBatchRequest", "AWS.SimpleQueueService.EmptyBatchRequest", "There should be at least one SendMessageBatchRequestEntry in the request.");
            }
            if (value.GetArrayLength() > MaxBatchEntries)
            {
                throw new SqsException("TooManyEntriesInBatchRequest", "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", "Maximum number of entries per request are 10.");
            }
            var entries = value.EnumerateArray().ToList();
            var ids = new HashSet<string>(StringComparer.Ordinal);
            foreach (var entry in entries)
            {
                var id = entry.ValueKind == JsonValueKind.Object && entry.TryGetProperty("Id", out var i) && i.ValueKind == JsonValueKind.String ? i.GetString()! : "";
                if (!BatchIdPattern().IsMatch(id))
                {
                    throw new SqsException("InvalidBatchEntryId", "AWS.SimpleQueueService.InvalidBatchEntryId", "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.");
                }
                if (!ids.Add(id))
                {
                    throw new SqsException("BatchEntryIdsNotDistinct", "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", $"Id {id} repeated.");
                }
            }
            return entries;
        }

        public async Task RespondAsync(Action<Utf8JsonWriter> write)
        {
            var buffer = new ArrayBufferWriter<byte>(512);
            using (var writer = new Utf8JsonWriter(buffer))
            {
                writer.WriteStartObject();
                write(writer);
                writer.WriteEndObject();
            }
            if (SqsQueryProtocol.ActionOf(Context) is { } action)
            {
                await SqsQueryProtocol.WriteResultAsync(Context, action, buffer.WrittenMemory, Hosting.RequestIds.Of(Context));
                return;
            }
            Context.Response.ContentType = "application/x-amz-json-1.0";
            Context.Response.ContentLength = buffer.WrittenCount;
            await Context.Response.Body.WriteAsync(buffer.WrittenMemory);
        }
    }
}
