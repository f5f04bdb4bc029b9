using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Lamina.Server.CloudFormation;

/// <summary>One resource of a processed template, as written (its properties unresolved).</summary>
internal sealed record ResourceDefinition(string LogicalId, string Type, JsonObject Properties, IReadOnlyList<string> DependsOn, string? Condition,
    string? DeletionPolicy, string? UpdateReplacePolicy, JsonNode? Metadata, JsonNode? UpdatePolicy);

/// <summary>A parameter value as a request gives it.</summary>
internal sealed record ParameterInput(string Key, string? Value, bool UsePreviousValue);

/// <summary>
/// A processed template (after transforms): its sections, checked as CloudFormation checks them before anything is
/// deployed, and the parameter values a stack gets from it.
/// </summary>
internal sealed partial class StackTemplate
{
    private static readonly HashSet<string> Sections = new(StringComparer.Ordinal)
    {
        "AWSTemplateFormatVersion", "Description", "Metadata", "Parameters", "Rules", "Mappings", "Conditions", "Transform", "Resources", "Outputs",
    };

    private StackTemplate(JsonObject root)
    {
        Root = root;
        Parameters = root[nameof(Parameters)] as JsonObject ?? [];
        Mappings = root[nameof(Mappings)] as JsonObject ?? [];
        Conditions = root[nameof(Conditions)] as JsonObject ?? [];
        Resources = root[nameof(Resources)] as JsonObject ?? [];
        Outputs = root[nameof(Outputs)] as JsonObject ?? [];
        Description = root[nameof(Description)] is JsonValue d ? Intrinsics.Stringify(d) : null;
    }

    public JsonObject Root { get; }
    public JsonObject Parameters { get; }
    public JsonObject Mappings { get; }
    public JsonObject Conditions { get; }
    public JsonObject Resources { get; }
    public JsonObject Outputs { get; }
    public string? Description { get; }

    /// <summary>The template's structure checked (sections, resources' Type, DependsOn, Conditions named).</summary>
    public static StackTemplate Parse(JsonObject root)
    {
        var unknown = root.Select(static p => p.Key).Where(k => !Sections.Contains(k)).ToList();
        if (unknown.Count > 0)
        {
            throw CloudFormationException.Validation($"Template format error: Invalid template property or properties [{string.Join(", ", unknown)}]");
        }
        if (root["AWSTemplateFormatVersion"] is { } version && Intrinsics.Stringify(version) is not "2010-09-09")
        {
            throw CloudFormationException.Validation($"Template format error: '{Intrinsics.Stringify(version)}' is not a valid template version; the only one is 2010-09-09");
        }
        foreach (var section in new[] { "Parameters", "Mappings", "Conditions", "Resources", "Outputs" })
        {
            if (root[section] is { } value && value is not JsonObject)
            {
                throw CloudFormationException.Validation($"Template format error: {section} must be an object");
            }
        }
        if (root[nameof(Resources)] is not JsonObject { Count: > 0 } resources)
        {
            throw CloudFormationException.Validation("Template format error: At least one Resources member must be defined.");
        }
        var template = new StackTemplate(root);
        foreach (var (logicalId, node) in resources)
        {
            if (!LogicalIdPattern().IsMatch(logicalId))
            {
                throw CloudFormationException.Validation($"Template format error: Resource name {logicalId} is non alphanumeric.");
            }
            if (node is not JsonObject resource || resource["Type"] is not JsonValue type || !type.TryGetValue<string>(out _))
            {
                throw CloudFormationException.Validation($"Template format error: [/Resources/{logicalId}] Every Resources object must contain a Type member.");
            }
            if (resource["Properties"] is { } properties && properties is not JsonObject)
            {
                throw CloudFormationException.Validation($"Template format error: [/Resources/{logicalId}/Properties] must be an object");
            }
            foreach (var dependency in DependsOnOf(resource, logicalId))
            {
                if (!resources.ContainsKey(dependency))
                {
                    throw CloudFormationException.Validation($"Template format error: Unresolved resource dependencies [{dependency}] in the Resources block of the template");
                }
            }
            if (resource["Condition"] is { } condition && !template.Conditions.ContainsKey(Intrinsics.Stringify(condition)))
            {
                throw CloudFormationException.Validation($"Template format error: Unresolved dependencies [{Intrinsics.Stringify(condition)}]. Cannot reference resources in the Conditions block of the template");
            }
            if (resource["DeletionPolicy"] is { } policy && Intrinsics.Stringify(policy) is not ("Delete" or "Retain" or "RetainExceptOnCreate" or "Snapshot"))
            {
                throw CloudFormationException.Validation($"Template format error: Unrecognized DeletionPolicy {Intrinsics.Stringify(policy)} for resource {logicalId}");
            }
        }
        foreach (var (name, node) in template.Parameters)
        {
            if (node is not JsonObject parameter || parameter["Type"] is not JsonValue)
            {
                throw CloudFormationException.Validation($"Template format error: Every Parameters object must contain a Type member: {name}");
            }
        }
        foreach (var (name, node) in template.Outputs)
        {
            if (node is not JsonObject output || !output.ContainsKey("Value"))
            {
                throw CloudFormationException.Validation($"Template format error: Every Outputs member must contain a Value object, the Outputs member {name} does not");
            }
        }
        return template;
    }

    private static List<string> DependsOnOf(JsonObject resource, string logicalId) => resource["DependsOn"] switch
    {
        null => [],
        JsonValue v when v.TryGetValue<string>(out var one) => [one],
        JsonArray many when many.All(static n => n is JsonValue) => [.. many.Select(Intrinsics.Stringify)],
        _ => throw CloudFormationException.Validation($"Template format error: DependsOn of {logicalId} must be a string or a list of strings"),
    };

    /// <summary>The resources whose Condition holds, in template order.</summary>
    public List<ResourceDefinition> ActiveResources(Intrinsics intrinsics)
    {
        var active = new List<ResourceDefinition>();
        foreach (var (logicalId, node) in Resources)
        {
            var resource = (JsonObject)node!;
            var condition = resource["Condition"] is { } c ? Intrinsics.Stringify(c) : null;
            if (condition is not null && !intrinsics.Condition(condition))
            {
                continue;
            }
            active.Add(new ResourceDefinition(logicalId, Intrinsics.Stringify(resource["Type"]), resource["Properties"] as JsonObject ?? [],
                DependsOnOf(resource, logicalId), condition,
                resource["DeletionPolicy"] is { } d ? Intrinsics.Stringify(d) : null,
                resource["UpdateReplacePolicy"] is { } u ? Intrinsics.Stringify(u) : null,
                resource["Metadata"], resource["UpdatePolicy"]));
        }
        return active;
    }

    /// <summary>Every resource's dependencies among <paramref name="resources"/>: DependsOn and every reference in its properties.</summary>
    public static Dictionary<string, List<string>> Dependencies(IReadOnlyList<ResourceDefinition> resources, Intrinsics intrinsics)
    {
        var ids = resources.Select(static r => r.LogicalId).ToHashSet(StringComparer.Ordinal);
        var result = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var resource in resources)
        {
            var references = new SortedSet<string>(StringComparer.Ordinal);
            intrinsics.CollectReferences(resource.Properties, references);
            foreach (var dependency in resource.DependsOn)
            {
                references.Add(dependency);
            }
            foreach (var reference in references)
            {
                if (!ids.Contains(reference))
                {
                    // A DependsOn or reference to a resource whose condition is false.
                    throw CloudFormationException.Validation($"Template format error: Unresolved resource dependencies [{reference}] in the Resources block of the template");
                }
            }
            references.Remove(resource.LogicalId);
            result[resource.LogicalId] = [.. references];
        }
        var cycle = FindCycle(result);
        if (cycle is not null)
        {
            throw CloudFormationException.Validation($"Circular dependency between resources: [{string.Join(", ", cycle)}]");
        }
        return result;
    }

    private static List<string>? FindCycle(Dictionary<string, List<string>> graph)
    {
        var state = new Dictionary<string, int>(StringComparer.Ordinal); // 1 visiting, 2 done
        var stack = new List<string>();
        List<string>? found = null;
        bool Visit(string node)
        {
            state[node] = 1;
            stack.Add(node);
            foreach (var next in graph[node])
            {
                if (state.GetValueOrDefault(next) == 1)
                {
                    found = stack[stack.IndexOf(next)..];
                    return true;
                }
                if (state.GetValueOrDefault(next) == 0 && Visit(next))
                {
                    return true;
                }
            }
            stack.RemoveAt(stack.Count - 1);
            state[node] = 2;
            return false;
        }
        foreach (var node in graph.Keys)
        {
            if (state.GetValueOrDefault(node) == 0 && Visit(node))
            {
                found!.Sort(StringComparer.Ordinal);
                return found;
            }
        }
        return null;
    }

    /// <summary>
    /// The stack's parameter values from what a request gave, the previous values (UsePreviousValue) and the defaults,
    /// each checked against its declaration (type, AllowedValues, AllowedPattern, lengths, bounds).
    /// </summary>
    public List<StackParameter> ResolveParameters(IReadOnlyList<ParameterInput> given, IReadOnlyList<StackParameter>? previous)
    {
        var unknown = given.Where(p => !Parameters.ContainsKey(p.Key)).Select(static p => p.Key).ToList();
        if (unknown.Count > 0)
        {
            throw CloudFormationException.Validation($"Parameters: [{string.Join(", ", unknown)}] do not exist in the template");
        }
        var values = new List<StackParameter>();
        var missing = new List<string>();
        foreach (var (name, node) in Parameters)
        {
            var declaration = (JsonObject)node!;
            var input = given.LastOrDefault(p => p.Key == name);
            string? value;
            if (input is { UsePreviousValue: true })
            {
                value = previous?.FirstOrDefault(p => p.Key == name)?.Value
                    ?? throw CloudFormationException.Validation($"Invalid input for parameter key {name}. Cannot specify usePreviousValue as true for a parameter key not in the previous template");
            }
            else
            {
                value = input?.Value ?? (declaration["Default"] is { } d ? Intrinsics.Stringify(d) : null);
            }
            if (value is null)
            {
                missing.Add(name);
                continue;
            }
            Check(name, declaration, value);
            values.Add(new StackParameter(name, value, Intrinsics.Stringify(declaration["NoEcho"]).Equals("true", StringComparison.OrdinalIgnoreCase)));
        }
        if (missing.Count > 0)
        {
            throw CloudFormationException.Validation($"Parameters: [{string.Join(", ", missing)}] must have values");
        }
        return values;
    }

    private static void Check(string name, JsonObject declaration, string value)
    {
        var type = Intrinsics.Stringify(declaration["Type"]);
        if (type.StartsWith("AWS::SSM::Parameter", StringComparison.Ordinal))
        {
            throw CloudFormationException.Validation($"Parameter '{name}': type {type} reads the SSM Parameter Store, which Lamina does not have; use String");
        }
        var isList = type is "CommaDelimitedList" or "List<Number>" || type.StartsWith("List<", StringComparison.Ordinal);
        var items = isList ? value.Split(',').Select(static s => s.Trim()).ToArray() : [value];
        if (type is "Number" or "List<Number>")
        {
            foreach (var item in items)
            {
                if (!double.TryParse(item, NumberStyles.Float, CultureInfo.InvariantCulture, out var number))
                {
                    throw CloudFormationException.Validation($"Parameter '{name}' must be a number.");
                }
                if (declaration["MinValue"] is { } min && double.TryParse(Intrinsics.Stringify(min), NumberStyles.Float, CultureInfo.InvariantCulture, out var lo) && number < lo)
                {
                    throw CloudFormationException.Validation($"Parameter '{name}' must be a number not less than {Intrinsics.Stringify(min)}");
                }
                if (declaration["MaxValue"] is { } max && double.TryParse(Intrinsics.Stringify(max), NumberStyles.Float, CultureInfo.InvariantCulture, out var hi) && number > hi)
                {
                    throw CloudFormationException.Validation($"Parameter '{name}' must be a number not greater than {Intrinsics.Stringify(max)}");
                }
            }
        }
        if (declaration["AllowedValues"] is JsonArray allowed && items.Any(item => !allowed.Any(a => Intrinsics.Stringify(a) == item)))
        {
            throw CloudFormationException.Validation($"Parameter '{name}' must be one of AllowedValues");
        }
        if (declaration["AllowedPattern"] is { } pattern)
        {
            var regex = new Regex("^(?:" + Intrinsics.Stringify(pattern) + ")$", RegexOptions.None, TimeSpan.FromSeconds(1));
            if (items.Any(item => !regex.IsMatch(item)))
            {
                throw CloudFormationException.Validation($"Parameter '{name}' must match pattern {Intrinsics.Stringify(pattern)}");
            }
        }
        if (declaration["MinLength"] is { } minLength && int.TryParse(Intrinsics.Stringify(minLength), CultureInfo.InvariantCulture, out var minChars) && value.Length < minChars)
        {
            throw CloudFormationException.Validation($"Parameter '{name}' must contain at least {minChars} characters");
        }
        if (declaration["MaxLength"] is { } maxLength && int.TryParse(Intrinsics.Stringify(maxLength), CultureInfo.InvariantCulture, out var maxChars) && value.Length > maxChars)
        {
            throw CloudFormationException.Validation($"Parameter '{name}' must contain at most {maxChars} characters");
        }
    }

    /// <summary>The values intrinsic functions see for the parameters: lists as arrays.</summary>
    public Dictionary<string, JsonNode?> ParameterValues(IEnumerable<StackParameter> parameters)
    {
        var values = new Dictionary<string, JsonNode?>(StringComparer.Ordinal);
        foreach (var parameter in parameters)
        {
            var type = Parameters[parameter.Key] is JsonObject d ? Intrinsics.Stringify(d["Type"]) : "String";
            values[parameter.Key] = type is "CommaDelimitedList" || type.StartsWith("List<", StringComparison.Ordinal)
                ? new JsonArray(parameter.Value.Split(',').Select(static s => (JsonNode?)JsonValue.Create(s.Trim())).ToArray())
                : JsonValue.Create(parameter.Value);
        }
        return values;
    }

    [GeneratedRegex("^[A-Za-z0-9]+$")]
    private static partial Regex LogicalIdPattern();
}
