using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Lamina.Server.Protocols;

namespace Lamina.Server.Sqs;

/// <summary>
/// SQS's older Query protocol (form-encoded <c>Action=…</c> requests, XML answers), which Debian's AWS CLI v2 and older
/// SDKs still speak, on <c>POST /</c> and on a queue's URL (<c>POST /&lt;account&gt;/&lt;queue&gt;</c>). A request is
/// translated into the JSON protocol's shape and answered by <see cref="SqsApi"/>; its JSON answer is written back as
/// SQS's XML (results, flattened lists and maps, <c>ErrorResponse</c>).
/// </summary>
internal static class SqsQueryProtocol
{
    public const string Namespace = "http://queue.amazonaws.com/doc/2012-11-05/";
    private const string ActionItem = "lamina.sqs.queryAction";

    private static readonly HashSet<string> Integers = new(StringComparer.Ordinal)
    {
        "DelaySeconds", "MaxNumberOfMessages", "VisibilityTimeout", "WaitTimeSeconds", "MaxResults",
    };

    /// <summary>Whether this is a Query-protocol SQS request (form-encoded, no X-Amz-Target).</summary>
    public static bool Matches(HttpRequest request) =>
        HttpMethods.IsPost(request.Method) && request.Headers["X-Amz-Target"].Count == 0
        && request.ContentType?.StartsWith("application/x-www-form-urlencoded", StringComparison.OrdinalIgnoreCase) == true;

    /// <summary>The operation a Query request answers in XML, or null for a JSON-protocol request.</summary>
    public static string? ActionOf(HttpContext context) => context.Items[ActionItem] as string;

    /// <summary>Reads the form, remembers the action and returns the request in the JSON protocol's shape.</summary>
    public static async Task<(string Action, byte[] Json)?> TranslateAsync(HttpContext context)
    {
        var body = await RuntimeApi.RuntimeApiEndpoints.ReadBodyAsync(context, JsonProtocolEndpoint.MaxRequestBytes);
        if (body is null)
        {
            return null;
        }
        var form = QueryProtocol.ParseForm(body.Value.Span);
        foreach (var (key, value) in context.Request.Query)
        {
            form.TryAdd(key, value.ToString());
        }
        var action = form.GetValueOrDefault("Action") ?? "";
        context.Items[ActionItem] = action;
        // A request posted to the queue's own URL names the queue by its path.
        var path = context.Request.Path.Value ?? "/";
        if (!form.ContainsKey("QueueUrl") && path.Count(static c => c == '/') >= 2)
        {
            form["QueueUrl"] = $"{context.Request.Scheme}://{context.Request.Host}{path}";
        }

        var buffer = new ArrayBufferWriter<byte>(512);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            WriteMembers(w, form, "");
            foreach (var batch in new[] { "SendMessageBatchRequestEntry", "DeleteMessageBatchRequestEntry", "ChangeMessageVisibilityBatchRequestEntry" })
            {
                var entries = Indexed(form, batch + ".");
                if (entries.Count > 0)
                {
                    w.WriteStartArray("Entries");
                    foreach (var prefix in entries)
                    {
                        w.WriteStartObject();
                        WriteMembers(w, form, prefix);
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                }
            }
            w.WriteEndObject();
        }
        return (action, buffer.WrittenSpan.ToArray());
    }

    /// <summary>The members under <paramref name="prefix"/>: scalars, and the Query protocol's numbered lists and maps.</summary>
    private static void WriteMembers(Utf8JsonWriter w, Dictionary<string, string> form, string prefix)
    {
        foreach (var (key, value) in form)
        {
            if (!key.StartsWith(prefix, StringComparison.Ordinal))
            {
                continue;
            }
            var name = key[prefix.Length..];
            if (name.Contains('.', StringComparison.Ordinal) || name is "Action" or "Version")
            {
                continue;
            }
            if (Integers.Contains(name) && int.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number))
            {
                w.WriteNumber(name, number);
            }
            else
            {
                w.WriteString(name, value);
            }
        }
        WriteList(w, form, prefix + "AttributeName.", "AttributeNames");
        WriteList(w, form, prefix + "MessageSystemAttributeName.", "MessageSystemAttributeNames");
        WriteList(w, form, prefix + "MessageAttributeName.", "MessageAttributeNames");
        var attributes = Indexed(form, prefix + "Attribute.");
        if (attributes.Count > 0)
        {
            w.WriteStartObject("Attributes");
            foreach (var item in attributes)
            {
                if (form.TryGetValue(item + "Name", out var attributeName))
                {
                    w.WriteString(attributeName, form.GetValueOrDefault(item + "Value") ?? "");
                }
            }
            w.WriteEndObject();
        }
        var messageAttributes = Indexed(form, prefix + "MessageAttribute.");
        if (messageAttributes.Count > 0)
        {
            w.WriteStartObject("MessageAttributes");
            foreach (var item in messageAttributes)
            {
                if (!form.TryGetValue(item + "Name", out var attributeName))
                {
                    continue;
                }
                w.WriteStartObject(attributeName);
                foreach (var member in new[] { "DataType", "StringValue", "BinaryValue" })
                {
                    if (form.TryGetValue(item + "Value." + member, out var memberValue))
                    {
                        w.WriteString(member, memberValue);
                    }
                }
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
    }

    private static void WriteList(Utf8JsonWriter w, Dictionary<string, string> form, string prefix, string member)
    {
        var items = form.Where(p => p.Key.StartsWith(prefix, StringComparison.Ordinal) && int.TryParse(p.Key[prefix.Length..], NumberStyles.None, CultureInfo.InvariantCulture, out _))
            .OrderBy(p => int.Parse(p.Key[prefix.Length..], CultureInfo.InvariantCulture)).Select(static p => p.Value).ToList();
        if (items.Count == 0)
        {
            return;
        }
        w.WriteStartArray(member);
        foreach (var item in items)
        {
            w.WriteStringValue(item);
        }
        w.WriteEndArray();
    }

    private static List<string> Indexed(Dictionary<string, string> form, string prefix) => QueryProtocol.Indexed(form, prefix);

    /// <summary>Writes a JSON-protocol answer as SQS's XML.</summary>
    public static async Task WriteResultAsync(HttpContext context, string action, ReadOnlyMemory<byte> json, string requestId)
    {
        using var document = JsonDocument.Parse(json);
        var xml = new StringBuilder(512);
        xml.Append("<?xml version=\"1.0\"?><").Append(action).Append("Response xmlns=\"").Append(Namespace).Append("\">");
        if (document.RootElement.EnumerateObject().Any())
        {
            xml.Append('<').Append(action).Append("Result>");
            foreach (var member in document.RootElement.EnumerateObject())
            {
                AppendMember(xml, action, member);
            }
            xml.Append("</").Append(action).Append("Result>");
        }
        xml.Append("<ResponseMetadata><RequestId>").Append(requestId).Append("</RequestId></ResponseMetadata></").Append(action).Append("Response>");
        await WriteXmlAsync(context, StatusCodes.Status200OK, xml);
    }

    public static async Task WriteErrorAsync(HttpContext context, string code, string message, string requestId)
    {
        var xml = new StringBuilder(256);
        xml.Append("<?xml version=\"1.0\"?><ErrorResponse xmlns=\"").Append(Namespace).Append("\"><Error><Type>Sender</Type><Code>").Append(Escape(code))
            .Append("</Code><Message>").Append(Escape(message)).Append("</Message><Detail/></Error><RequestId>").Append(requestId).Append("</RequestId></ErrorResponse>");
        await WriteXmlAsync(context, StatusCodes.Status400BadRequest, xml);
    }

    private static void AppendMember(StringBuilder xml, string action, JsonProperty member)
    {
        switch (member.Name)
        {
            case "QueueUrls":
                foreach (var url in member.Value.EnumerateArray())
                {
                    Element(xml, "QueueUrl", url.GetString());
                }
                return;
            case "Messages":
                foreach (var message in member.Value.EnumerateArray())
                {
                    xml.Append("<Message>");
                    foreach (var field in message.EnumerateObject())
                    {
                        AppendMember(xml, action, field);
                    }
                    xml.Append("</Message>");
                }
                return;
            case "Attributes":
                foreach (var attribute in member.Value.EnumerateObject())
                {
                    xml.Append("<Attribute>");
                    Element(xml, "Name", attribute.Name);
                    Element(xml, "Value", attribute.Value.GetString());
                    xml.Append("</Attribute>");
                }
                return;
            case "MessageAttributes":
                foreach (var attribute in member.Value.EnumerateObject())
                {
                    xml.Append("<MessageAttribute>");
                    Element(xml, "Name", attribute.Name);
                    xml.Append("<Value>");
                    foreach (var field in attribute.Value.EnumerateObject())
                    {
                        Element(xml, field.Name, field.Value.GetString());
                    }
                    xml.Append("</Value></MessageAttribute>");
                }
                return;
            case "Successful" or "Failed":
                var entry = member.Name == "Failed" ? "BatchResultErrorEntry" : action + "ResultEntry";
                foreach (var item in member.Value.EnumerateArray())
                {
                    xml.Append('<').Append(entry).Append('>');
                    foreach (var field in item.EnumerateObject())
                    {
                        AppendMember(xml, action, field);
                    }
                    xml.Append("</").Append(entry).Append('>');
                }
                return;
            default:
                Element(xml, member.Name, member.Value.ValueKind switch
                {
                    JsonValueKind.String => member.Value.GetString(),
                    JsonValueKind.True => "true",
                    JsonValueKind.False => "false",
                    _ => member.Value.GetRawText(),
                });
                return;
        }
    }

    private static void Element(StringBuilder xml, string name, string? value) => QueryProtocol.Element(xml, name, value);

    private static string Escape(string text) => QueryProtocol.Escape(text);

    private static Task WriteXmlAsync(HttpContext context, int status, StringBuilder xml) => QueryProtocol.WriteXmlAsync(context, status, xml);
}
