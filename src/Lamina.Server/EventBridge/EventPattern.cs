using System.Globalization;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Lamina.Server.EventBridge;

/// <summary>
/// An EventBridge event pattern and AWS's matching rules: every field of the pattern must match (nested objects
/// field by field); a leaf is an array of which any one value matches — exact strings, numbers, booleans and null,
/// <c>prefix</c>, <c>suffix</c>, <c>equals-ignore-case</c>, <c>wildcard</c>, <c>anything-but</c> (a value, a list, a
/// prefix or a suffix), <c>numeric</c> ranges, <c>exists</c> and <c>cidr</c>; <c>$or</c> takes alternatives; an array
/// in the event matches when any of its elements does.
/// </summary>
internal sealed class EventPattern
{
    private readonly JsonElement _root;

    private EventPattern(JsonElement root) => _root = root;

    /// <summary>Parses and checks a pattern; the error is the reason InvalidEventPatternException gives.</summary>
    public static EventPattern? Parse(string text, out string? error)
    {
        error = null;
        try
        {
            using var document = JsonDocument.Parse(text, new JsonDocumentOptions { MaxDepth = 64 });
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                error = "Filter is not an object";
                return null;
            }
            error = Check(document.RootElement);
            return error is null ? new EventPattern(document.RootElement.Clone()) : null;
        }
        catch (JsonException e)
        {
            error = $"Filter is not valid JSON: {e.Message}";
            return null;
        }
    }

    public bool Matches(JsonElement @event) => MatchesObject(_root, @event);

    private static string? Check(JsonElement pattern)
    {
        foreach (var field in pattern.EnumerateObject())
        {
            if (field.Name == "$or")
            {
                if (field.Value.ValueKind != JsonValueKind.Array || field.Value.GetArrayLength() < 2)
                {
                    return "$or must be an array of at least two patterns";
                }
                foreach (var alternative in field.Value.EnumerateArray())
                {
                    if (alternative.ValueKind != JsonValueKind.Object || Check(alternative) is { } inner)
                    {
                        return "each $or alternative must be a valid pattern";
                    }
                }
                continue;
            }
            switch (field.Value.ValueKind)
            {
                case JsonValueKind.Object:
                    if (Check(field.Value) is { } nested)
                    {
                        return nested;
                    }
                    break;
                case JsonValueKind.Array:
                    foreach (var value in field.Value.EnumerateArray())
                    {
                        if (CheckValue(value) is { } bad)
                        {
                            return $"{bad} (field \"{field.Name}\")";
                        }
                    }
                    break;
                default:
                    return $"Match value must be String, number, true, false, or null at field \"{field.Name}\"; a leaf must be an array";
            }
        }
        return null;
    }

    private static string? CheckValue(JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            return value.ValueKind == JsonValueKind.Array ? "Match value must be String, number, true, false, or null" : null;
        }
        var properties = value.EnumerateObject().ToList();
        if (properties.Count != 1)
        {
            return "Only one key allowed in match expression";
        }
        var (name, operand) = (properties[0].Name, properties[0].Value);
        return name switch
        {
            "prefix" or "suffix" => operand.ValueKind == JsonValueKind.String
                || (operand.ValueKind == JsonValueKind.Object && operand.TryGetProperty("equals-ignore-case", out var ic) && ic.ValueKind == JsonValueKind.String)
                ? null : $"{name} match pattern must be a string",
            "equals-ignore-case" or "wildcard" => operand.ValueKind == JsonValueKind.String ? null : $"{name} match pattern must be a string",
            "exists" => operand.ValueKind is JsonValueKind.True or JsonValueKind.False ? null : "exists match pattern must be either true or false.",
            "anything-but" => operand.ValueKind is JsonValueKind.String or JsonValueKind.Number or JsonValueKind.Array or JsonValueKind.Object
                ? null : "Value of anything-but must be an array or single string/number value.",
            "numeric" => CheckNumeric(operand),
            "cidr" => operand.ValueKind == JsonValueKind.String && TryCidr(operand.GetString()!, out _, out _) ? null : "Malformed CIDR",
            _ => $"Unrecognized match type {name}",
        };
    }

    private static string? CheckNumeric(JsonElement operand)
    {
        if (operand.ValueKind != JsonValueKind.Array || operand.GetArrayLength() is 0 or > 4 || operand.GetArrayLength() % 2 != 0)
        {
            return "Value of numeric must be an array of operator and number pairs.";
        }
        var items = operand.EnumerateArray().ToList();
        for (var i = 0; i < items.Count; i += 2)
        {
            if (items[i].ValueKind != JsonValueKind.String || items[i].GetString() is not ("<" or "<=" or "=" or ">" or ">=")
                || items[i + 1].ValueKind != JsonValueKind.Number)
            {
                return "Unrecognized numeric range operator or value";
            }
        }
        return null;
    }

    private static bool MatchesObject(JsonElement pattern, JsonElement @event)
    {
        foreach (var field in pattern.EnumerateObject())
        {
            if (field.Name == "$or")
            {
                var any = false;
                foreach (var alternative in field.Value.EnumerateArray())
                {
                    if (MatchesObject(alternative, @event))
                    {
                        any = true;
                        break;
                    }
                }
                if (!any)
                {
                    return false;
                }
                continue;
            }
            JsonElement value = default;
            var present = @event.ValueKind == JsonValueKind.Object && @event.TryGetProperty(field.Name, out value);
            if (field.Value.ValueKind == JsonValueKind.Object)
            {
                if (!present || !MatchesNested(field.Value, value))
                {
                    return false;
                }
            }
            else if (!MatchesLeaf(field.Value, present ? value : null))
            {
                return false;
            }
        }
        return true;
    }

    private static bool MatchesNested(JsonElement pattern, JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => MatchesObject(pattern, value),
        JsonValueKind.Array => value.EnumerateArray().Any(item => item.ValueKind == JsonValueKind.Object && MatchesObject(pattern, item)),
        _ => false,
    };

    private static bool MatchesLeaf(JsonElement alternatives, JsonElement? value)
    {
        foreach (var alternative in alternatives.EnumerateArray())
        {
            if (alternative.ValueKind == JsonValueKind.Object && alternative.TryGetProperty("exists", out var exists))
            {
                if ((exists.ValueKind == JsonValueKind.True) == (value is { } v && v.ValueKind != JsonValueKind.Object))
                {
                    return true;
                }
                continue;
            }
            if (value is not { } present)
            {
                continue;
            }
            if (present.ValueKind == JsonValueKind.Array
                ? present.EnumerateArray().Any(item => MatchesValue(alternative, item))
                : MatchesValue(alternative, present))
            {
                return true;
            }
        }
        return false;
    }

    private static bool MatchesValue(JsonElement pattern, JsonElement value)
    {
        if (pattern.ValueKind != JsonValueKind.Object)
        {
            return Equal(pattern, value);
        }
        var rule = pattern.EnumerateObject().First();
        var operand = rule.Value;
        var text = value.ValueKind == JsonValueKind.String ? value.GetString()! : null;
        switch (rule.Name)
        {
            case "prefix":
                return text is not null && (operand.ValueKind == JsonValueKind.String
                    ? text.StartsWith(operand.GetString()!, StringComparison.Ordinal)
                    : text.StartsWith(operand.GetProperty("equals-ignore-case").GetString()!, StringComparison.OrdinalIgnoreCase));
            case "suffix":
                return text is not null && (operand.ValueKind == JsonValueKind.String
                    ? text.EndsWith(operand.GetString()!, StringComparison.Ordinal)
                    : text.EndsWith(operand.GetProperty("equals-ignore-case").GetString()!, StringComparison.OrdinalIgnoreCase));
            case "equals-ignore-case":
                return text is not null && string.Equals(text, operand.GetString(), StringComparison.OrdinalIgnoreCase);
            case "wildcard":
                return text is not null && Wildcard(operand.GetString()!, text);
            case "anything-but":
                return AnythingBut(operand, value);
            case "numeric":
                return value.ValueKind == JsonValueKind.Number && Numeric(operand, value.GetDouble());
            case "cidr":
                return text is not null && IPAddress.TryParse(text, out var address) && TryCidr(operand.GetString()!, out var network, out var bits)
                    && InNetwork(address, network, bits);
            default:
                return false;
        }
    }

    private static bool AnythingBut(JsonElement operand, JsonElement value)
    {
        switch (operand.ValueKind)
        {
            case JsonValueKind.Array:
                return operand.EnumerateArray().All(excluded => !Equal(excluded, value));
            case JsonValueKind.Object:
                var text = value.ValueKind == JsonValueKind.String ? value.GetString()! : null;
                var rule = operand.EnumerateObject().First();
                return rule.Name switch
                {
                    "prefix" => text is not null && !text.StartsWith(rule.Value.GetString()!, StringComparison.Ordinal),
                    "suffix" => text is not null && !text.EndsWith(rule.Value.GetString()!, StringComparison.Ordinal),
                    "equals-ignore-case" => text is not null && (rule.Value.ValueKind == JsonValueKind.Array
                        ? rule.Value.EnumerateArray().All(e => !string.Equals(e.GetString(), text, StringComparison.OrdinalIgnoreCase))
                        : !string.Equals(rule.Value.GetString(), text, StringComparison.OrdinalIgnoreCase)),
                    "wildcard" => text is not null && !Wildcard(rule.Value.GetString() ?? "", text),
                    _ => false,
                };
            default:
                return !Equal(operand, value);
        }
    }

    private static bool Numeric(JsonElement operand, double number)
    {
        var items = operand.EnumerateArray().ToList();
        for (var i = 0; i < items.Count; i += 2)
        {
            var bound = items[i + 1].GetDouble();
            var holds = items[i].GetString() switch
            {
                "<" => number < bound,
                "<=" => number <= bound,
                "=" => number == bound,
                ">" => number > bound,
                ">=" => number >= bound,
                _ => false,
            };
            if (!holds)
            {
                return false;
            }
        }
        return true;
    }

    private static bool Equal(JsonElement pattern, JsonElement value) => (pattern.ValueKind, value.ValueKind) switch
    {
        (JsonValueKind.String, JsonValueKind.String) => pattern.GetString() == value.GetString(),
        (JsonValueKind.Number, JsonValueKind.Number) => pattern.GetDouble() == value.GetDouble(),
        (JsonValueKind.True, JsonValueKind.True) or (JsonValueKind.False, JsonValueKind.False) or (JsonValueKind.Null, JsonValueKind.Null) => true,
        _ => false,
    };

    private static bool Wildcard(string pattern, string text) =>
        Regex.IsMatch(text, "^" + Regex.Escape(pattern).Replace(@"\*", ".*", StringComparison.Ordinal) + @"\z",
            RegexOptions.CultureInvariant | RegexOptions.Singleline, TimeSpan.FromMilliseconds(100));

    private static bool TryCidr(string cidr, out IPAddress network, out int bits)
    {
        network = IPAddress.None;
        bits = 0;
        var slash = cidr.IndexOf('/', StringComparison.Ordinal);
        return slash > 0 && IPAddress.TryParse(cidr[..slash], out network!)
            && int.TryParse(cidr[(slash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out bits)
            && bits <= (network.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128);
    }

    private static bool InNetwork(IPAddress address, IPAddress network, int bits)
    {
        var a = address.GetAddressBytes();
        var n = network.GetAddressBytes();
        if (a.Length != n.Length)
        {
            return false;
        }
        for (var i = 0; i < a.Length && bits > 0; i++, bits -= 8)
        {
            var mask = bits >= 8 ? 0xFF : (byte)(0xFF << (8 - bits));
            if ((a[i] & mask) != (n[i] & mask))
            {
                return false;
            }
        }
        return true;
    }
}
