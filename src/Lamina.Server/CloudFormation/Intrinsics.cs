using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace Lamina.Server.CloudFormation;

/// <summary>What a resource of the stack answers to <c>Ref</c> and <c>Fn::GetAtt</c>, once it exists.</summary>
internal sealed record ResourceValues(string Ref, IReadOnlyDictionary<string, JsonNode?> Attributes);

/// <summary>
/// The intrinsic functions and conditions of a template, evaluated against a stack: parameters, pseudo parameters,
/// mappings, conditions, the stack's resources (through <see cref="Resource"/>) and other stacks' exports. Values that
/// do not exist yet (a resource a change set would create) become <see cref="Unresolved"/> markers when
/// <see cref="AllowUnresolved"/> is set, and an error otherwise.
/// </summary>
internal sealed class Intrinsics
{
    /// <summary>Marks a value that is known only once the change set runs (the preview's "Dynamic" evaluation).</summary>
    public const string Unresolved = "\u2063{{unresolved}}";

    public required string AccountId { get; init; }
    public required string Region { get; init; }
    public required string StackName { get; init; }
    public required string StackId { get; init; }

    /// <summary>Parameter values: a string, or an array of strings for list types.</summary>
    public Dictionary<string, JsonNode?> Parameters { get; init; } = new(StringComparer.Ordinal);

    public JsonObject Mappings { get; init; } = [];

    /// <summary>The template's Conditions section (evaluated on first use).</summary>
    public JsonObject ConditionDefinitions { get; init; } = [];

    /// <summary>The template's resources' logical ids (after conditions): a Ref to another name is an error.</summary>
    public IReadOnlySet<string> ResourceIds { get; init; } = new HashSet<string>();

    /// <summary>A resource's values, or null when it has not been created (yet).</summary>
    public Func<string, ResourceValues?> Resource { get; init; } = static _ => null;

    /// <summary>An export's value by name, or null.</summary>
    public Func<string, string?> Import { get; init; } = static _ => null;

    public bool AllowUnresolved { get; init; }

    private readonly Dictionary<string, bool> _conditions = new(StringComparer.Ordinal);
    private readonly HashSet<string> _evaluating = new(StringComparer.Ordinal);

    public static readonly string[] PseudoParameters =
        ["AWS::AccountId", "AWS::Region", "AWS::StackName", "AWS::StackId", "AWS::Partition", "AWS::URLSuffix", "AWS::NotificationARNs", "AWS::NoValue"];

    /// <summary>The value of a condition by name.</summary>
    public bool Condition(string name)
    {
        if (_conditions.TryGetValue(name, out var known))
        {
            return known;
        }
        if (!ConditionDefinitions.TryGetPropertyValue(name, out var definition))
        {
            throw CloudFormationException.Validation($"Template format error: Unresolved dependencies [{name}]. Cannot reference resources in the Conditions block of the template");
        }
        if (!_evaluating.Add(name))
        {
            throw CloudFormationException.Validation($"Template error: circular condition dependency: {name}");
        }
        var value = EvaluateCondition(definition);
        _evaluating.Remove(name);
        _conditions[name] = value;
        return value;
    }

    /// <summary>A condition expression: Fn::Equals, Fn::And, Fn::Or, Fn::Not, or {"Condition": name}.</summary>
    public bool EvaluateCondition(JsonNode? node)
    {
        if (node is JsonValue v && v.TryGetValue<bool>(out var literal))
        {
            return literal;
        }
        if (node is not JsonObject { Count: 1 } obj)
        {
            throw CloudFormationException.Validation("Template error: a condition must be Fn::Equals, Fn::And, Fn::Or, Fn::Not or Condition");
        }
        var (name, argument) = obj.First();
        switch (name)
        {
            case "Condition":
                return Condition(Text(argument, "Condition"));
            case "Fn::Equals":
                {
                    var args = List(argument, name, 2, 2);
                    return Stringify(Resolve(args[0])) == Stringify(Resolve(args[1]));
                }
            case "Fn::Not":
                return !EvaluateCondition(List(argument, name, 1, 1)[0]);
            case "Fn::And":
                return List(argument, name, 2, 10).All(EvaluateCondition);
            case "Fn::Or":
                return List(argument, name, 2, 10).Any(EvaluateCondition);
            default:
                throw CloudFormationException.Validation($"Template error: {name} cannot be used as a condition");
        }
    }

    /// <summary>The node with every intrinsic function replaced by its value; <c>AWS::NoValue</c> removes what holds it.</summary>
    public JsonNode? Resolve(JsonNode? node) => TryResolve(node, out var value) ? value : null;

    /// <summary>Like <see cref="Resolve"/>; false when the whole value is <c>AWS::NoValue</c>.</summary>
    public bool TryResolve(JsonNode? node, out JsonNode? value)
    {
        switch (node)
        {
            case null:
                value = null;
                return true;
            case JsonValue scalar:
                value = scalar.DeepClone();
                return true;
            case JsonArray array:
                {
                    var result = new JsonArray();
                    foreach (var item in array)
                    {
                        if (TryResolve(item, out var resolved))
                        {
                            result.Add(resolved);
                        }
                    }
                    value = result;
                    return true;
                }
            case JsonObject obj when obj.Count == 1 && obj.First() is var (key, argument) && IsFunction(key):
                return Function(key, argument, out value);
            case JsonObject obj:
                {
                    var result = new JsonObject();
                    foreach (var (key, item) in obj)
                    {
                        if (TryResolve(item, out var resolved))
                        {
                            result[key] = resolved;
                        }
                    }
                    value = result;
                    return true;
                }
            default:
                value = null;
                return true;
        }
    }

    public static bool IsFunction(string key) => key == "Ref" || key == "Condition" || key.StartsWith("Fn::", StringComparison.Ordinal);

    private bool Function(string name, JsonNode? argument, out JsonNode? value)
    {
        value = null;
        switch (name)
        {
            case "Ref":
                {
                    var target = Text(argument, "Ref");
                    if (target == "AWS::NoValue")
                    {
                        return false;
                    }
                    value = Ref(target);
                    return true;
                }
            case "Condition":
                value = JsonValue.Create(Condition(Text(argument, "Condition")));
                return true;
            case "Fn::GetAtt":
                {
                    var (logicalId, attribute) = GetAttArguments(argument);
                    value = GetAtt(logicalId, Stringify(Resolve(attribute)));
                    return true;
                }
            case "Fn::Sub":
                value = JsonValue.Create(Sub(argument));
                return true;
            case "Fn::Join":
                {
                    var args = List(argument, name, 2, 2);
                    var delimiter = Stringify(Resolve(args[0]));
                    var items = Resolve(args[1]) as JsonArray ?? throw CloudFormationException.Validation("Template error: every Fn::Join object requires two parameters, (1) a string delimiter and (2) a list of strings to be joined or a function that returns a list of strings (such as Fn::GetAZs) to be joined.");
                    value = JsonValue.Create(string.Join(delimiter, items.Select(Stringify)));
                    return true;
                }
            case "Fn::Select":
                {
                    var args = List(argument, name, 2, 2);
                    var indexText = Stringify(Resolve(args[0]));
                    var items = Resolve(args[1]) as JsonArray;
                    if (!int.TryParse(indexText, NumberStyles.None, CultureInfo.InvariantCulture, out var index) || items is null)
                    {
                        throw CloudFormationException.Validation("Template error: Fn::Select requires a list argument with two elements: an integer index and a list");
                    }
                    if (index >= items.Count)
                    {
                        throw CloudFormationException.Validation("Template error: Fn::Select cannot select nonexistent value at index " + index);
                    }
                    value = items[index]?.DeepClone();
                    return true;
                }
            case "Fn::Split":
                {
                    var args = List(argument, name, 2, 2);
                    var delimiter = Stringify(Resolve(args[0]));
                    var source = Stringify(Resolve(args[1]));
                    if (delimiter.Length == 0)
                    {
                        throw CloudFormationException.Validation("Template error: Fn::Split requires a non-empty delimiter");
                    }
                    value = new JsonArray(source.Split(delimiter).Select(static s => (JsonNode?)JsonValue.Create(s)).ToArray());
                    return true;
                }
            case "Fn::If":
                {
                    var args = List(argument, name, 3, 3);
                    var chosen = Condition(Text(args[0], "Fn::If")) ? args[1] : args[2];
                    return TryResolve(chosen, out value);
                }
            case "Fn::FindInMap":
                {
                    var args = List(argument, name, 3, 4);
                    var map = Stringify(Resolve(args[0]));
                    var top = Stringify(Resolve(args[1]));
                    var second = Stringify(Resolve(args[2]));
                    var found = Mappings[map] is JsonObject m && m[top] is JsonObject t && t.TryGetPropertyValue(second, out var v) ? v : null;
                    if (found is null)
                    {
                        if (args.Count == 4 && args[3] is JsonObject d && d["DefaultValue"] is { } fallback)
                        {
                            value = Resolve(fallback);
                            return true;
                        }
                        throw CloudFormationException.Validation($"Template error: Unable to get mapping for {map}::{top}::{second}");
                    }
                    value = found.DeepClone();
                    return true;
                }
            case "Fn::ImportValue":
                {
                    var export = Stringify(Resolve(argument));
                    var imported = Import(export);
                    if (imported is null)
                    {
                        if (AllowUnresolved)
                        {
                            value = JsonValue.Create(Unresolved);
                            return true;
                        }
                        throw CloudFormationException.Validation($"No export named {export} found.");
                    }
                    value = JsonValue.Create(imported);
                    return true;
                }
            case "Fn::Base64":
                value = JsonValue.Create(Convert.ToBase64String(Encoding.UTF8.GetBytes(Stringify(Resolve(argument)))));
                return true;
            case "Fn::GetAZs":
                {
                    var region = Stringify(Resolve(argument));
                    region = region.Length == 0 ? Region : region;
                    value = new JsonArray(JsonValue.Create(region + "a"), JsonValue.Create(region + "b"), JsonValue.Create(region + "c"));
                    return true;
                }
            case "Fn::Equals" or "Fn::And" or "Fn::Or" or "Fn::Not":
                value = JsonValue.Create(EvaluateCondition(new JsonObject { [name] = argument?.DeepClone() }));
                return true;
            case "Fn::ToJsonString":
                value = JsonValue.Create(Resolve(argument)?.ToJsonString() ?? "null");
                return true;
            case "Fn::Length":
                value = JsonValue.Create((Resolve(argument) as JsonArray)?.Count ?? throw CloudFormationException.Validation("Template error: Fn::Length takes a list"));
                return true;
            default:
                throw CloudFormationException.Validation($"Template format error: Unrecognized intrinsic function {name}; Lamina supports Ref, Fn::GetAtt, Fn::Sub, Fn::Join, Fn::Select, Fn::Split, Fn::If, Fn::FindInMap, Fn::ImportValue, Fn::Base64, Fn::GetAZs and the condition functions");
        }
    }

    /// <summary>The value of <c>Ref</c> to a parameter, pseudo parameter or resource.</summary>
    public JsonNode? Ref(string target)
    {
        switch (target)
        {
            case "AWS::AccountId": return JsonValue.Create(AccountId);
            case "AWS::Region": return JsonValue.Create(Region);
            case "AWS::StackName": return JsonValue.Create(StackName);
            case "AWS::StackId": return JsonValue.Create(StackId);
            case "AWS::Partition": return JsonValue.Create("aws");
            case "AWS::URLSuffix": return JsonValue.Create("amazonaws.com");
            case "AWS::NotificationARNs": return new JsonArray();
        }
        if (Parameters.TryGetValue(target, out var parameter))
        {
            return parameter?.DeepClone();
        }
        if (!ResourceIds.Contains(target))
        {
            throw CloudFormationException.Validation($"Template format error: Unresolved resource dependencies [{target}] in the Resources block of the template");
        }
        if (Resource(target) is { } resource)
        {
            return JsonValue.Create(resource.Ref);
        }
        return AllowUnresolved ? JsonValue.Create(Unresolved) : throw CloudFormationException.Validation($"Resource {target} is not created yet: its Ref cannot be resolved");
    }

    public JsonNode? GetAtt(string logicalId, string attribute)
    {
        if (!ResourceIds.Contains(logicalId))
        {
            throw CloudFormationException.Validation($"Template error: instance of Fn::GetAtt references undefined resource {logicalId}");
        }
        if (Resource(logicalId) is not { } resource)
        {
            return AllowUnresolved ? JsonValue.Create(Unresolved) : throw CloudFormationException.Validation($"Resource {logicalId} is not created yet: its {attribute} cannot be resolved");
        }
        if (!resource.Attributes.TryGetValue(attribute, out var value))
        {
            throw CloudFormationException.Validation($"Template error: resource {logicalId} does not support attribute type {attribute} in Fn::GetAtt");
        }
        return value?.DeepClone();
    }

    public static (string LogicalId, JsonNode? Attribute) GetAttArguments(JsonNode? argument)
    {
        switch (argument)
        {
            case JsonArray { Count: 2 } pair when pair[0] is JsonValue id && id.TryGetValue<string>(out var logicalId):
                return (logicalId, pair[1]);
            case JsonValue v when v.TryGetValue<string>(out var dotted) && dotted.IndexOf('.', StringComparison.Ordinal) is > 0 and var dot:
                return (dotted[..dot], JsonValue.Create(dotted[(dot + 1)..]));
            default:
                throw CloudFormationException.Validation("Template error: every Fn::GetAtt object requires two non-empty parameters");
        }
    }

    private string Sub(JsonNode? argument)
    {
        string template;
        var variables = new Dictionary<string, JsonNode?>(StringComparer.Ordinal);
        if (argument is JsonValue v && v.TryGetValue<string>(out var only))
        {
            template = only;
        }
        else if (argument is JsonArray { Count: 2 } pair && pair[0] is JsonValue t && t.TryGetValue<string>(out var text) && pair[1] is JsonObject vars)
        {
            template = text;
            foreach (var (name, value) in vars)
            {
                variables[name] = Resolve(value);
            }
        }
        else
        {
            throw CloudFormationException.Validation("Template error: One or more Fn::Sub intrinsic functions don't specify expected arguments. Specify a string as first argument, and an optional second argument to specify a mapping of values to replace in the string");
        }
        var result = new StringBuilder(template.Length);
        foreach (var (literal, variable) in SubParts(template))
        {
            result.Append(literal);
            if (variable is null)
            {
                continue;
            }
            if (variables.TryGetValue(variable, out var bound))
            {
                result.Append(Stringify(bound));
            }
            else if (variable.Contains('.', StringComparison.Ordinal) && !variable.StartsWith("AWS::", StringComparison.Ordinal))
            {
                var dot = variable.IndexOf('.', StringComparison.Ordinal);
                result.Append(Stringify(GetAtt(variable[..dot], variable[(dot + 1)..])));
            }
            else
            {
                result.Append(Stringify(Ref(variable)));
            }
        }
        return result.ToString();
    }

    /// <summary>A Fn::Sub string as literal text and <c>${name}</c> variables; <c>${!x}</c> is the literal <c>${x}</c>.</summary>
    public static IEnumerable<(string Literal, string? Variable)> SubParts(string template)
    {
        var at = 0;
        var literal = new StringBuilder();
        while (at < template.Length)
        {
            var start = template.IndexOf("${", at, StringComparison.Ordinal);
            if (start < 0)
            {
                literal.Append(template, at, template.Length - at);
                break;
            }
            var end = template.IndexOf('}', start + 2);
            if (end < 0)
            {
                literal.Append(template, at, template.Length - at);
                break;
            }
            literal.Append(template, at, start - at);
            var inner = template[(start + 2)..end];
            if (inner.StartsWith('!'))
            {
                literal.Append("${").Append(inner[1..]).Append('}');
            }
            else
            {
                yield return (literal.ToString(), inner.Trim());
                literal.Clear();
            }
            at = end + 1;
        }
        yield return (literal.ToString(), null);
    }

    /// <summary>A resolved value as the string CloudFormation would substitute (numbers and booleans as written).</summary>
    public static string Stringify(JsonNode? node) => node switch
    {
        null => "",
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        JsonValue v when v.TryGetValue<bool>(out var b) => b ? "true" : "false",
        JsonValue v => v.ToJsonString(),
        JsonArray a => string.Join(',', a.Select(Stringify)),
        _ => node.ToJsonString(),
    };

    private static string Text(JsonNode? node, string function) => node is JsonValue v && v.TryGetValue<string>(out var text)
        ? text
        : throw CloudFormationException.Validation($"Template error: {function} takes a string, not {node?.ToJsonString() ?? "null"}");

    private static List<JsonNode?> List(JsonNode? node, string function, int min, int max) => node is JsonArray array && array.Count >= min && array.Count <= max
        ? [.. array]
        : throw CloudFormationException.Validation($"Template error: {function} takes a list of {(min == max ? min.ToString(CultureInfo.InvariantCulture) : $"{min} to {max}")} values");

    /// <summary>
    /// The resources a node refers to (Ref, Fn::GetAtt, Fn::Sub variables), following only the chosen branch of each
    /// Fn::If — the edges of the stack's dependency graph.
    /// </summary>
    public void CollectReferences(JsonNode? node, ISet<string> into)
    {
        switch (node)
        {
            case JsonArray array:
                foreach (var item in array)
                {
                    CollectReferences(item, into);
                }
                break;
            case JsonObject obj when obj.Count == 1 && obj.First() is var (key, argument) && IsFunction(key):
                switch (key)
                {
                    case "Ref" when argument is JsonValue v && v.TryGetValue<string>(out var target) && ResourceIds.Contains(target):
                        into.Add(target);
                        break;
                    case "Fn::GetAtt":
                        {
                            var (logicalId, _) = GetAttArguments(argument);
                            if (ResourceIds.Contains(logicalId))
                            {
                                into.Add(logicalId);
                            }
                            break;
                        }
                    case "Fn::Sub":
                        {
                            var template = argument is JsonArray { Count: 2 } pair ? pair[0] : argument;
                            var bound = (argument as JsonArray)?[1] as JsonObject;
                            if (template is JsonValue t && t.TryGetValue<string>(out var text))
                            {
                                foreach (var (_, variable) in SubParts(text))
                                {
                                    if (variable is null || (bound?.ContainsKey(variable) ?? false))
                                    {
                                        continue;
                                    }
                                    var name = variable.Split('.')[0];
                                    if (ResourceIds.Contains(name))
                                    {
                                        into.Add(name);
                                    }
                                }
                            }
                            if (bound is not null)
                            {
                                CollectReferences(bound, into);
                            }
                            break;
                        }
                    case "Fn::If" when argument is JsonArray { Count: 3 } branches && branches[0] is JsonValue c && c.TryGetValue<string>(out var condition):
                        CollectReferences(Condition(condition) ? branches[1] : branches[2], into);
                        break;
                    default:
                        CollectReferences(argument, into);
                        break;
                }
                break;
            case JsonObject obj:
                foreach (var (_, item) in obj)
                {
                    CollectReferences(item, into);
                }
                break;
        }
    }
}
