using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Lamina.Server.Protocols;

namespace Lamina.Server.EventBridge;

/// <summary>
/// The EventBridge API subset for rules that invoke functions (botocore's <c>events</c> model): awsJson1_1, every call
/// a <c>POST /</c> with <c>X-Amz-Target: AWSEvents.&lt;Operation&gt;</c>. Buses, rules, targets, PutEvents and
/// TestEventPattern; <see cref="EventRules"/> keeps them and delivers.
/// </summary>
internal static partial class EventsApi
{
    public const string TargetPrefix = "AWSEvents.";

    [GeneratedRegex(@"^[\.\-_A-Za-z0-9]{1,64}\z", RegexOptions.CultureInvariant)]
    private static partial Regex RuleNamePattern();

    [GeneratedRegex(@"^[/\.\-_A-Za-z0-9]{1,256}\z", RegexOptions.CultureInvariant)]
    private static partial Regex BusNamePattern();

    public static async Task HandleAsync(HttpContext context, string operation, EventRules rules, TimeProvider time)
    {
        if (await JsonProtocolEndpoint.ReadObjectAsync(context) is not { } request)
        {
            await ErrorAsync(context, "SerializationException", "The request body must be a JSON object.");
            return;
        }
        try
        {
            switch (operation)
            {
                case "PutRule": await PutRuleAsync(context, request, rules); break;
                case "DescribeRule": await DescribeRuleAsync(context, request, rules); break;
                case "ListRules": await ListRulesAsync(context, request, rules); break;
                case "DeleteRule": await rules.DeleteRuleAsync(Bus(request, rules), RuleName(request, "Name"), Bool(request, "Force")); await EmptyAsync(context); break;
                case "EnableRule": await rules.SetStateAsync(Bus(request, rules), RuleName(request, "Name"), enabled: true); await EmptyAsync(context); break;
                case "DisableRule": await rules.SetStateAsync(Bus(request, rules), RuleName(request, "Name"), enabled: false); await EmptyAsync(context); break;
                case "PutTargets": await PutTargetsAsync(context, request, rules); break;
                case "RemoveTargets": await RemoveTargetsAsync(context, request, rules); break;
                case "ListTargetsByRule": await ListTargetsAsync(context, request, rules); break;
                case "PutEvents": await PutEventsAsync(context, request, rules, time); break;
                case "TestEventPattern": await TestEventPatternAsync(context, request); break;
                case "CreateEventBus": await CreateBusAsync(context, request, rules); break;
                case "DeleteEventBus": await rules.DeleteBusAsync(BusName(request)); await EmptyAsync(context); break;
                case "DescribeEventBus": await DescribeBusAsync(context, request, rules); break;
                case "ListEventBuses": await ListBusesAsync(context, request, rules); break;
                default:
                    await ErrorAsync(context, "UnknownOperationException", $"Lamina does not implement the EventBridge operation {operation}.");
                    break;
            }
        }
        catch (EventsException e)
        {
            await ErrorAsync(context, e.Code, e.Message);
        }
    }

    private static async Task PutRuleAsync(HttpContext context, JsonElement request, EventRules rules)
    {
        var name = RuleName(request, "Name");
        var state = String(request, "State");
        if (state is not null and not ("ENABLED" or "DISABLED" or "ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS"))
        {
            throw Validation($"1 validation error detected: Value '{state}' at 'state' failed to satisfy constraint: Member must satisfy enum value set: [ENABLED, DISABLED, ENABLED_WITH_ALL_CLOUDTRAIL_MANAGEMENT_EVENTS]");
        }
        var rule = await rules.PutRuleAsync(Bus(request, rules), name, String(request, "EventPattern"), String(request, "ScheduleExpression"), state,
            String(request, "Description"), String(request, "RoleArn"));
        await RespondAsync(context, w => w.WriteString("RuleArn", rules.RuleArn(rule.Bus, rule.Name)));
    }

    private static async Task DescribeRuleAsync(HttpContext context, JsonElement request, EventRules rules)
    {
        var rule = rules.GetRule(Bus(request, rules), RuleName(request, "Name"));
        await RespondAsync(context, w => WriteRule(w, rule, rules));
    }

    private static async Task ListRulesAsync(HttpContext context, JsonElement request, EventRules rules)
    {
        var prefix = String(request, "NamePrefix") ?? "";
        var all = rules.Rules(Bus(request, rules)).Where(r => r.Name.StartsWith(prefix, StringComparison.Ordinal)).ToList();
        var (page, next) = Page(all, request, static r => r.Name);
        await RespondAsync(context, w =>
        {
            w.WriteStartArray("Rules");
            foreach (var rule in page)
            {
                w.WriteStartObject();
                WriteRule(w, rule, rules);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            if (next is not null)
            {
                w.WriteString("NextToken", next);
            }
        });
    }

    private static void WriteRule(Utf8JsonWriter w, EventRule rule, EventRules rules)
    {
        w.WriteString("Name", rule.Name);
        w.WriteString("Arn", rules.RuleArn(rule.Bus, rule.Name));
        if (rule.PatternText is not null)
        {
            w.WriteString("EventPattern", rule.PatternText);
        }
        if (rule.ScheduleText is not null)
        {
            w.WriteString("ScheduleExpression", rule.ScheduleText);
        }
        w.WriteString("State", rule.State);
        if (rule.Description is not null)
        {
            w.WriteString("Description", rule.Description);
        }
        if (rule.RoleArn is not null)
        {
            w.WriteString("RoleArn", rule.RoleArn);
        }
        w.WriteString("EventBusName", rule.Bus);
    }

    private static async Task PutTargetsAsync(HttpContext context, JsonElement request, EventRules rules)
    {
        var rule = RuleName(request, "Rule");
        if (!request.TryGetProperty("Targets", out var targets) || targets.ValueKind != JsonValueKind.Array || targets.GetArrayLength() is 0 or > 10)
        {
            throw Validation("1 validation error detected: Value at 'targets' failed to satisfy constraint: Member must have length between 1 and 10");
        }
        var list = new List<TargetDto>();
        foreach (var target in targets.EnumerateArray())
        {
            list.Add(target.ValueKind == JsonValueKind.Object
                ? target.Deserialize(LaminaJsonContext.Default.TargetDto) ?? new TargetDto()
                : throw Validation("Each target must be an object."));
        }
        var failed = await rules.PutTargetsAsync(Bus(request, rules), rule, list);
        await RespondAsync(context, w => WriteFailures(w, failed));
    }

    private static async Task RemoveTargetsAsync(HttpContext context, JsonElement request, EventRules rules)
    {
        var rule = RuleName(request, "Rule");
        if (!request.TryGetProperty("Ids", out var ids) || ids.ValueKind != JsonValueKind.Array || ids.GetArrayLength() is 0 or > 100)
        {
            throw Validation("1 validation error detected: Value at 'ids' failed to satisfy constraint: Member must have length between 1 and 100");
        }
        var failed = await rules.RemoveTargetsAsync(Bus(request, rules), rule,
            ids.EnumerateArray().Select(static id => id.ValueKind == JsonValueKind.String ? id.GetString()! : "").ToList());
        await RespondAsync(context, w => WriteFailures(w, failed));
    }

    private static void WriteFailures(Utf8JsonWriter w, List<(string Id, string Code, string Message)> failed)
    {
        w.WriteNumber("FailedEntryCount", failed.Count);
        w.WriteStartArray("FailedEntries");
        foreach (var (id, code, message) in failed)
        {
            w.WriteStartObject();
            w.WriteString("TargetId", id);
            w.WriteString("ErrorCode", code);
            w.WriteString("ErrorMessage", message);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    private static async Task ListTargetsAsync(HttpContext context, JsonElement request, EventRules rules)
    {
        var rule = rules.GetRule(Bus(request, rules), RuleName(request, "Rule"));
        var (page, next) = Page(rule.Targets.ToList(), request, static t => t.Id!);
        await RespondAsync(context, w =>
        {
            w.WriteStartArray("Targets");
            foreach (var target in page)
            {
                JsonSerializer.Serialize(w, target, LaminaJsonContext.Default.TargetDto);
            }
            w.WriteEndArray();
            if (next is not null)
            {
                w.WriteString("NextToken", next);
            }
        });
    }

    /// <summary>PutEvents: each entry is checked on its own (a bad one fails alone), wrapped in the envelope, matched.</summary>
    private static async Task PutEventsAsync(HttpContext context, JsonElement request, EventRules rules, TimeProvider time)
    {
        if (!request.TryGetProperty("Entries", out var entries) || entries.ValueKind != JsonValueKind.Array || entries.GetArrayLength() is 0 or > 10)
        {
            throw Validation("1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length between 1 and 10");
        }
        var results = new List<(string? Id, string? Code, string? Message)>();
        foreach (var entry in entries.EnumerateArray())
        {
            var source = String(entry, "Source");
            var detailType = String(entry, "DetailType");
            var detail = String(entry, "Detail");
            if (string.IsNullOrEmpty(source) || string.IsNullOrEmpty(detailType) || string.IsNullOrEmpty(detail))
            {
                results.Add((null, "InvalidArgument", "Parameters Source, DetailType and Detail must be specified."));
                continue;
            }
            if (!IsJsonObject(detail))
            {
                results.Add((null, "MalformedDetail", "Detail is malformed."));
                continue;
            }
            string bus;
            try
            {
                bus = rules.ResolveBus(String(entry, "EventBusName"));
            }
            catch (EventsException e)
            {
                results.Add((null, "InvalidArgument", e.Message));
                continue;
            }
            var when = time.GetUtcNow();
            if (String(entry, "Time") is { } given && DateTimeOffset.TryParse(given, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var parsed))
            {
                when = parsed;
            }
            else if (entry.TryGetProperty("Time", out var number) && number.ValueKind == JsonValueKind.Number)
            {
                when = DateTimeOffset.FromUnixTimeMilliseconds((long)(number.GetDouble() * 1000));
            }
            var resources = entry.TryGetProperty("Resources", out var list) && list.ValueKind == JsonValueKind.Array
                ? list.EnumerateArray().Where(static r => r.ValueKind == JsonValueKind.String).Select(static r => r.GetString()!).ToList()
                : [];
            var id = Guid.NewGuid().ToString();
            using var envelope = JsonDocument.Parse(rules.Envelope(id, source, detailType, when, resources, detail));
            await rules.DispatchAsync(bus, envelope.RootElement, id);
            results.Add((id, null, null));
        }
        await RespondAsync(context, w =>
        {
            w.WriteNumber("FailedEntryCount", results.Count(static r => r.Code is not null));
            w.WriteStartArray("Entries");
            foreach (var (id, code, message) in results)
            {
                w.WriteStartObject();
                if (id is not null)
                {
                    w.WriteString("EventId", id);
                }
                else
                {
                    w.WriteString("ErrorCode", code);
                    w.WriteString("ErrorMessage", message);
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
        });
    }

    private static async Task TestEventPatternAsync(HttpContext context, JsonElement request)
    {
        var patternText = String(request, "EventPattern") ?? throw Validation("1 validation error detected: Value null at 'eventPattern' failed to satisfy constraint: Member must not be null");
        var eventText = String(request, "Event") ?? throw Validation("1 validation error detected: Value null at 'event' failed to satisfy constraint: Member must not be null");
        var pattern = EventPattern.Parse(patternText, out var reason) ?? throw new EventsException("InvalidEventPatternException", $"Event pattern is not valid. Reason: {reason}");
        if (!IsJsonObject(eventText))
        {
            throw Validation("Parameter Event is not valid.");
        }
        using var document = JsonDocument.Parse(eventText);
        var result = pattern.Matches(document.RootElement);
        await RespondAsync(context, w => w.WriteBoolean("Result", result));
    }

    private static async Task CreateBusAsync(HttpContext context, JsonElement request, EventRules rules)
    {
        var name = BusName(request);
        if (name == EventRules.DefaultBus || name.Contains('/', StringComparison.Ordinal))
        {
            throw Validation($"Event bus name {name} is not valid: it may not be 'default' nor contain '/' (partner event sources are not supported).");
        }
        var bus = await rules.CreateBusAsync(name, String(request, "Description"));
        await RespondAsync(context, w =>
        {
            w.WriteString("EventBusArn", rules.BusArn(bus.Name));
            if (bus.Description is not null)
            {
                w.WriteString("Description", bus.Description);
            }
        });
    }

    private static async Task DescribeBusAsync(HttpContext context, JsonElement request, EventRules rules)
    {
        var name = rules.ResolveBus(String(request, "Name"));
        var bus = rules.Buses.First(b => b.Name == name);
        await RespondAsync(context, w => WriteBus(w, bus, rules));
    }

    private static async Task ListBusesAsync(HttpContext context, JsonElement request, EventRules rules)
    {
        var prefix = String(request, "NamePrefix") ?? "";
        var (page, next) = Page(rules.Buses.Where(b => b.Name.StartsWith(prefix, StringComparison.Ordinal)).ToList(), request, static b => b.Name);
        await RespondAsync(context, w =>
        {
            w.WriteStartArray("EventBuses");
            foreach (var bus in page)
            {
                w.WriteStartObject();
                WriteBus(w, bus, rules);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            if (next is not null)
            {
                w.WriteString("NextToken", next);
            }
        });
    }

    private static void WriteBus(Utf8JsonWriter w, EventBus bus, EventRules rules)
    {
        w.WriteString("Name", bus.Name);
        w.WriteString("Arn", rules.BusArn(bus.Name));
        if (bus.Description is not null)
        {
            w.WriteString("Description", bus.Description);
        }
        if (bus.Name != EventRules.DefaultBus)
        {
            w.WriteNumber("CreationTime", bus.Created.ToUnixTimeMilliseconds() / 1000m);
        }
    }

    /// <summary>A page of at most <c>Limit</c> (1–100) items after <c>NextToken</c> (the last key of the previous page).</summary>
    private static (List<T> Page, string? Next) Page<T>(List<T> all, JsonElement request, Func<T, string> key)
    {
        var limit = 100;
        if (request.TryGetProperty("Limit", out var given))
        {
            if (given.ValueKind != JsonValueKind.Number || !given.TryGetInt32(out limit) || limit is < 1 or > 100)
            {
                throw Validation("1 validation error detected: Value at 'limit' failed to satisfy constraint: Member must have value between 1 and 100");
            }
        }
        all.Sort((a, b) => string.CompareOrdinal(key(a), key(b)));
        var start = String(request, "NextToken") is { } token ? all.FindIndex(item => string.CompareOrdinal(key(item), token) > 0) : 0;
        if (start < 0)
        {
            return ([], null);
        }
        var page = all.Skip(start).Take(limit).ToList();
        return (page, start + limit < all.Count ? key(page[^1]) : null);
    }

    private static string Bus(JsonElement request, EventRules rules) => rules.ResolveBus(String(request, "EventBusName"));

    private static string RuleName(JsonElement request, string member)
    {
        var name = String(request, member);
        if (name is null)
        {
            throw Validation($"1 validation error detected: Value null at '{char.ToLowerInvariant(member[0])}{member[1..]}' failed to satisfy constraint: Member must not be null");
        }
        return RuleNamePattern().IsMatch(name) ? name
            : throw Validation($"1 validation error detected: Value '{name}' at '{char.ToLowerInvariant(member[0])}{member[1..]}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+");
    }

    private static string BusName(JsonElement request)
    {
        var name = String(request, "Name") ?? throw Validation("1 validation error detected: Value null at 'name' failed to satisfy constraint: Member must not be null");
        return BusNamePattern().IsMatch(name) ? name
            : throw Validation($"1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: [/\\.\\-_A-Za-z0-9]+");
    }

    private static string? String(JsonElement element, string member)
    {
        if (!element.TryGetProperty(member, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        if (value.ValueKind != JsonValueKind.String)
        {
            throw Validation($"Member {member} must be a string.");
        }
        try
        {
            return value.GetString();
        }
        catch (InvalidOperationException)
        {
            throw Validation($"The value of {member} is not valid Unicode text.");
        }
    }

    private static bool Bool(JsonElement element, string member) => element.TryGetProperty(member, out var value) && value.ValueKind == JsonValueKind.True;

    private static bool IsJsonObject(string text)
    {
        try
        {
            using var document = JsonDocument.Parse(text);
            return document.RootElement.ValueKind == JsonValueKind.Object;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static EventsException Validation(string message) => new("ValidationException", message);

    private static Task EmptyAsync(HttpContext context) => RespondAsync(context, static _ => { });

    private static async Task RespondAsync(HttpContext context, Action<Utf8JsonWriter> write)
    {
        // Written to memory first: the serializer flushes synchronously, which Kestrel's response stream refuses.
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(512);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            write(writer);
            writer.WriteEndObject();
        }
        context.Response.ContentType = "application/x-amz-json-1.1";
        context.Response.ContentLength = buffer.WrittenCount;
        await context.Response.Body.WriteAsync(buffer.WrittenMemory);
    }

    private static Task ErrorAsync(HttpContext context, string code, string message) => Protocols.JsonProtocolEndpoint.WriteErrorAsync(context, code, message);
}
