using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Lamina.Server.Protocols;

namespace Lamina.Server.EventBridge;

/// <summary>
/// What a target receives for a matched event (EventBridge's target input): the event itself, a constant
/// <c>Input</c>, the part of the event <c>InputPath</c> selects, or an <c>InputTransformer</c> template filled with
/// values its paths select (<c>&lt;name&gt;</c> placeholders; inside a JSON string a value goes in as text, elsewhere as JSON).
/// </summary>
internal static partial class TargetInput
{
    [GeneratedRegex(@"^\$(?:\.[A-Za-z0-9_\-]+|\[[0-9]+\])*\z", RegexOptions.CultureInvariant)]
    private static partial Regex PathPattern();

    [GeneratedRegex(@"<([A-Za-z0-9_\-.]+)>", RegexOptions.CultureInvariant)]
    private static partial Regex Placeholder();

    /// <summary>Null when the path is one Lamina can follow: <c>$</c>, then <c>.name</c> and <c>[index]</c> steps.</summary>
    public static string? CheckPath(string path) => PathPattern().IsMatch(path) ? null : $"Invalid JSON path: {path}";

    public static byte[] For(TargetDto target, JsonElement @event, string ruleArn, string ruleName)
    {
        if (target.Input is { } constant)
        {
            return Encoding.UTF8.GetBytes(constant);
        }
        if (target.InputPath is { } path)
        {
            return Select(@event, path) is { } selected ? Encoding.UTF8.GetBytes(selected.GetRawText()) : "null"u8.ToArray();
        }
        if (target.InputTransformer is { InputTemplate: { } template } transformer)
        {
            return Encoding.UTF8.GetBytes(Transform(template, transformer.InputPathsMap ?? [], @event, ruleArn, ruleName));
        }
        return Encoding.UTF8.GetBytes(@event.GetRawText());
    }

    private static string Transform(string template, Dictionary<string, string> paths, JsonElement @event, string ruleArn, string ruleName)
    {
        var output = new StringBuilder(template.Length + 64);
        var last = 0;
        foreach (Match match in Placeholder().Matches(template))
        {
            var name = match.Groups[1].Value;
            string? json = name switch
            {
                "aws.events.rule-arn" => JsonSerializer.Serialize(ruleArn, LaminaJsonContext.Default.String),
                "aws.events.rule-name" => JsonSerializer.Serialize(ruleName, LaminaJsonContext.Default.String),
                "aws.events.event" or "aws.events.event.json" => @event.GetRawText(),
                _ => paths.TryGetValue(name, out var path) ? (Select(@event, path)?.GetRawText() ?? "null") : null,
            };
            if (json is null)
            {
                continue; // not a placeholder the transformer defines: left as written
            }
            output.Append(template, last, match.Index - last);
            if (InsideString(template, match.Index))
            {
                // In a string: a string value without its quotes, anything else as its JSON text (escaped).
                using var document = JsonDocument.Parse(json);
                var text = document.RootElement.ValueKind == JsonValueKind.String ? document.RootElement.GetString()! : json;
                var encoded = JsonSerializer.Serialize(text, LaminaJsonContext.Default.String);
                output.Append(encoded, 1, encoded.Length - 2);
            }
            else
            {
                output.Append(json);
            }
            last = match.Index + match.Length;
        }
        output.Append(template, last, template.Length - last);
        return output.ToString();
    }

    /// <summary>Whether <paramref name="index"/> lies inside a JSON string literal of <paramref name="template"/>.</summary>
    private static bool InsideString(string template, int index)
    {
        var inside = false;
        for (var i = 0; i < index; i++)
        {
            if (template[i] == '\\' && inside)
            {
                i++;
            }
            else if (template[i] == '"')
            {
                inside = !inside;
            }
        }
        return inside;
    }

    private static JsonElement? Select(JsonElement root, string path)
    {
        var current = root;
        var i = 1; // past '$'
        while (i < path.Length)
        {
            if (path[i] == '.')
            {
                var end = i + 1;
                while (end < path.Length && path[end] is not ('.' or '['))
                {
                    end++;
                }
                if (current.ValueKind != JsonValueKind.Object || !current.TryGetProperty(path[(i + 1)..end], out current))
                {
                    return null;
                }
                i = end;
            }
            else if (path[i] == '[')
            {
                var end = path.IndexOf(']', i);
                var index = int.Parse(path.AsSpan(i + 1, end - i - 1), System.Globalization.CultureInfo.InvariantCulture);
                if (current.ValueKind != JsonValueKind.Array || index >= current.GetArrayLength())
                {
                    return null;
                }
                current = current[index];
                i = end + 1;
            }
            else
            {
                return null;
            }
        }
        return current;
    }
}
