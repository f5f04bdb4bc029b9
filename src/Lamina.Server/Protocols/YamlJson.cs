using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Lamina.Server.Protocols;

/// <summary>
/// Reads a document, JSON or YAML, into one JSON tree: CloudFormation templates and the OpenAPI definitions API
/// Gateway imports. With <c>cloudFormationTags</c>, YAML's short forms become the long ones CloudFormation defines
/// (<c>!Ref X</c> → <c>{"Ref": "X"}</c>, <c>!GetAtt a.b</c> → <c>{"Fn::GetAtt": ["a", "b"]}</c>, <c>!Sub …</c> →
/// <c>{"Fn::Sub": …}</c>); without, local tags are ignored. Plain scalars keep YAML's types as CloudFormation reads
/// them (numbers, booleans, null), except numbers written with a leading zero (account ids), which stay strings.
/// Errors are <see cref="FormatException"/>s whose message says what and where.
/// </summary>
internal static partial class YamlJson
{
    /// <summary>Most nodes a template may expand to: aliases could otherwise expand a small text exponentially.</summary>
    private const int MaxNodes = 500_000;

    /// <summary>Deepest nesting accepted.</summary>
    private const int MaxDepth = 64;

    private static readonly Dictionary<string, string> ShortForms = new(StringComparer.Ordinal)
    {
        ["!Base64"] = "Fn::Base64", ["!Cidr"] = "Fn::Cidr", ["!FindInMap"] = "Fn::FindInMap", ["!GetAZs"] = "Fn::GetAZs",
        ["!ImportValue"] = "Fn::ImportValue", ["!Join"] = "Fn::Join", ["!Select"] = "Fn::Select", ["!Split"] = "Fn::Split",
        ["!Sub"] = "Fn::Sub", ["!Transform"] = "Fn::Transform", ["!And"] = "Fn::And", ["!Equals"] = "Fn::Equals",
        ["!If"] = "Fn::If", ["!Not"] = "Fn::Not", ["!Or"] = "Fn::Or", ["!ToJsonString"] = "Fn::ToJsonString",
        ["!Length"] = "Fn::Length",
    };

    /// <summary>The document as a JSON object; a <see cref="FormatException"/> when it is not one.</summary>
    public static JsonObject ReadObject(string text, bool cloudFormationTags)
    {
        var trimmed = text.TrimStart();
        if (trimmed.StartsWith('{'))
        {
            try
            {
                return JsonNode.Parse(text, documentOptions: new JsonDocumentOptions { MaxDepth = MaxDepth }) as JsonObject
                    ?? throw Invalid("the document must be a JSON object");
            }
            catch (JsonException e)
            {
                throw Invalid($"JSON not well-formed. (line {e.LineNumber + 1}, column {e.BytePositionInLine + 1})");
            }
        }
        YamlStream stream;
        try
        {
            stream = new YamlStream();
            stream.Load(new StringReader(text));
        }
        catch (YamlException e)
        {
            throw Invalid($"YAML not well-formed. (line {e.Start.Line}, column {e.Start.Column}): {e.Message}");
        }
        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is not YamlMappingNode root)
        {
            throw Invalid("the document must be a YAML mapping (or a JSON object)");
        }
        var count = 0;
        return (JsonObject)Convert(root, 0, ref count, tagged: true, cloudFormationTags)!;
    }

    private static FormatException Invalid(string message) => new(message);

    private static JsonNode? Convert(YamlNode node, int depth, ref int count, bool tagged, bool shortForms)
    {
        if (++count > MaxNodes || depth > MaxDepth)
        {
            throw Invalid(depth > MaxDepth ? $"the document nests deeper than {MaxDepth} levels" : $"the document expands to more than {MaxNodes} values");
        }
        var tag = node.Tag.IsEmpty ? null : node.Tag.Value;
        if (shortForms && tagged && tag is not null && tag.StartsWith('!') && !tag.StartsWith("!!", StringComparison.Ordinal) && !tag.StartsWith("tag:", StringComparison.Ordinal))
        {
            return ShortForm(tag, node, depth, ref count);
        }
        switch (node)
        {
            case YamlMappingNode mapping:
                {
                    var obj = new JsonObject();
                    foreach (var (key, value) in mapping.Children)
                    {
                        if (key is not YamlScalarNode { Value: { } name })
                        {
                            throw Invalid($"mapping keys must be strings (line {key.Start.Line})");
                        }
                        if (obj.ContainsKey(name))
                        {
                            throw Invalid($"duplicate key '{name}' (line {key.Start.Line})");
                        }
                        obj[name] = Convert(value, depth + 1, ref count, tagged: true, shortForms);
                    }
                    return obj;
                }
            case YamlSequenceNode sequence:
                {
                    var array = new JsonArray();
                    foreach (var item in sequence.Children)
                    {
                        array.Add(Convert(item, depth + 1, ref count, tagged: true, shortForms));
                    }
                    return array;
                }
            case YamlScalarNode scalar:
                return Scalar(scalar, tag);
            default:
                throw Invalid($"unsupported YAML node (line {node.Start.Line})");
        }
    }

    private static JsonObject ShortForm(string tag, YamlNode node, int depth, ref int count)
    {
        switch (tag)
        {
            case "!Ref":
                return new JsonObject { ["Ref"] = ScalarText(node, tag) };
            case "!Condition":
                return new JsonObject { ["Condition"] = ScalarText(node, tag) };
            case "!GetAtt":
                if (node is YamlScalarNode { Value: { } dotted })
                {
                    var dot = dotted.IndexOf('.', StringComparison.Ordinal);
                    if (dot <= 0 || dot == dotted.Length - 1)
                    {
                        throw Invalid($"!GetAtt needs the form LogicalId.Attribute, not '{dotted}' (line {node.Start.Line})");
                    }
                    return new JsonObject { ["Fn::GetAtt"] = new JsonArray(dotted[..dot], dotted[(dot + 1)..]) };
                }
                break;
        }
        if (!ShortForms.TryGetValue(tag, out var longForm))
        {
            throw Invalid($"unknown tag {tag} (line {node.Start.Line})");
        }
        // The value under the tag, read as if it had none.
        JsonNode? value = node switch
        {
            YamlScalarNode scalar => scalar.Value ?? "",
            _ => Convert(node, depth + 1, ref count, tagged: false, shortForms: true),
        };
        return new JsonObject { [longForm] = value };
    }

    private static string ScalarText(YamlNode node, string tag) => node is YamlScalarNode { Value: { } text }
        ? text
        : throw Invalid($"{tag} takes a name, not a list or a mapping (line {node.Start.Line})");

    private static JsonValue? Scalar(YamlScalarNode scalar, string? tag)
    {
        var text = scalar.Value ?? "";
        if (scalar.Style != ScalarStyle.Plain || tag == "tag:yaml.org,2002:str" || tag == "!!str")
        {
            return JsonValue.Create(text);
        }
        switch (text)
        {
            case "" or "~" or "null" or "Null" or "NULL":
                return null;
            case "true" or "True" or "TRUE":
                return JsonValue.Create(true);
            case "false" or "False" or "FALSE":
                return JsonValue.Create(false);
        }
        if (IntegerPattern().IsMatch(text) && long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var integer))
        {
            return JsonValue.Create(integer);
        }
        if (FloatPattern().IsMatch(text) && double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var number) && double.IsFinite(number))
        {
            return JsonValue.Create(number);
        }
        return JsonValue.Create(text);
    }

    // No leading zeros: "0123" (an account id, a zip code) stays the string it was written as.
    [GeneratedRegex(@"^[-+]?(0|[1-9][0-9]*)$")]
    private static partial Regex IntegerPattern();

    [GeneratedRegex(@"^[-+]?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$")]
    private static partial Regex FloatPattern();
}
