using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Lamina.Server.CloudFormation;

/// <summary>
/// The <c>AWS::Serverless-2016-10-31</c> transform: SAM's resource types expanded into plain CloudFormation, with the
/// logical ids, types and properties AWS's own transform (aws-sam-translator) gives them, so that outputs, references
/// (<c>!GetAtt HelloWorldFunctionRole.Arn</c>, <c>${ServerlessRestApi}</c>) and later updates line up. Function,
/// Api, HttpApi, SimpleTable and LayerVersion; Application is refused. Errors are reported as the transform reports
/// them ("Resource with id [X] is invalid. …").
/// </summary>
internal sealed partial class SamTransform
{
    public const string Name = "AWS::Serverless-2016-10-31";

    private const string BasicExecutionRole = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole";

    private readonly string _stackName;
    private readonly string _region;
    private readonly string _accountId;
    private readonly Dictionary<string, string> _parameters;
    private readonly List<string> _errors = [];
    private JsonObject _input = [];
    private JsonObject _output = [];

    // Implicit APIs collect the Api / HttpApi events of every function without an explicit API.
    private readonly List<ApiRoute> _implicitRest = [];
    private readonly List<ApiRoute> _implicitHttp = [];
    private readonly Dictionary<string, List<ApiRoute>> _explicitRoutes = new(StringComparer.Ordinal);

    public SamTransform(string stackName, string region, string accountId, Dictionary<string, string> parameters)
    {
        _stackName = stackName;
        _region = region;
        _accountId = accountId;
        _parameters = parameters;
    }

    /// <summary>The processed template; a ValidationError naming every invalid resource when SAM's rules are broken.</summary>
    public JsonObject Apply(JsonObject root)
    {
        _input = (JsonObject)root.DeepClone();
        _output = [];
        foreach (var (key, value) in _input)
        {
            if (key is not ("Transform" or "Globals" or "Resources"))
            {
                _output[key] = value?.DeepClone();
            }
        }
        var globals = _input["Globals"] as JsonObject ?? [];
        foreach (var section in globals.Select(static g => g.Key))
        {
            if (section is not ("Function" or "Api" or "HttpApi" or "SimpleTable" or "LayerVersion"))
            {
                _errors.Add($"'Globals' section is invalid. '{section}' is not a supported resource type in the Globals section.");
            }
        }
        var resources = new JsonObject();
        _output["Resources"] = resources;
        var input = _input["Resources"] as JsonObject ?? [];
        // Explicit APIs first: functions' events add routes to them.
        foreach (var (logicalId, node) in input)
        {
            if (node is not JsonObject resource)
            {
                continue;
            }
            var type = Intrinsics.Stringify(resource["Type"]);
            if (type is "AWS::Serverless::Api" or "AWS::Serverless::HttpApi")
            {
                _explicitRoutes[logicalId] = [];
            }
        }
        foreach (var (logicalId, node) in input)
        {
            if (node is not JsonObject resource)
            {
                continue;
            }
            var type = Intrinsics.Stringify(resource["Type"]);
            var properties = WithGlobals(type, globals, resource["Properties"] as JsonObject ?? []);
            try
            {
                switch (type)
                {
                    case "AWS::Serverless::Function":
                        Function(logicalId, resource, properties);
                        break;
                    case "AWS::Serverless::LayerVersion":
                        Layer(logicalId, resource, properties);
                        break;
                    case "AWS::Serverless::SimpleTable":
                        SimpleTable(logicalId, resource, properties);
                        break;
                    case "AWS::Serverless::Api" or "AWS::Serverless::HttpApi":
                        break; // after the functions: their events add to them
                    case "AWS::Serverless::Application":
                        throw Invalid(logicalId, "Lamina does not deploy nested applications (AWS::Serverless::Application): deploy the application's own template as a stack, and pass its outputs as parameters.");
                    case "AWS::Serverless::StateMachine" or "AWS::Serverless::GraphQLApi" or "AWS::Serverless::Connector":
                        throw Invalid(logicalId, $"Lamina does not deploy {type}.");
                    default:
                        if (type.StartsWith("AWS::Serverless::", StringComparison.Ordinal))
                        {
                            throw Invalid(logicalId, $"Unknown resource type {type}.");
                        }
                        Add(logicalId, (JsonObject)resource.DeepClone());
                        break;
                }
            }
            catch (SamException e)
            {
                _errors.Add(e.Message);
            }
        }
        ApplyBucketNotifications();
        foreach (var (logicalId, node) in input)
        {
            if (node is JsonObject resource && Intrinsics.Stringify(resource["Type"]) is var type && type is "AWS::Serverless::Api" or "AWS::Serverless::HttpApi")
            {
                try
                {
                    var properties = WithGlobals(type, globals, resource["Properties"] as JsonObject ?? []);
                    if (type == "AWS::Serverless::Api")
                    {
                        RestApi(logicalId, resource, properties, _explicitRoutes[logicalId]);
                    }
                    else
                    {
                        HttpApi(logicalId, resource, properties, _explicitRoutes[logicalId]);
                    }
                }
                catch (SamException e)
                {
                    _errors.Add(e.Message);
                }
            }
        }
        try
        {
            if (_implicitRest.Count > 0)
            {
                var properties = WithGlobals("AWS::Serverless::Api", globals, new JsonObject { ["StageName"] = "Prod" });
                RestApi("ServerlessRestApi", [], properties, _implicitRest);
            }
            if (_implicitHttp.Count > 0)
            {
                var properties = WithGlobals("AWS::Serverless::HttpApi", globals, []);
                HttpApi("ServerlessHttpApi", [], properties, _implicitHttp);
            }
        }
        catch (SamException e)
        {
            _errors.Add(e.Message);
        }
        RewriteReferences();
        if (_errors.Count > 0)
        {
            throw CloudFormationException.Validation(
                $"Transform {Name} failed with: Invalid Serverless Application Specification document. Number of errors found: {_errors.Count}. {string.Join(' ', _errors)}");
        }
        return _output;
    }

    private sealed class SamException(string message) : Exception(message);

    /// <summary>Logical ids SAM renames (a layer version gets its hash) and the references SAM offers (Function.Alias, Function.Version).</summary>
    private readonly Dictionary<string, string> _renamed = new(StringComparer.Ordinal);

    /// <summary>Every Ref, Fn::GetAtt and Fn::Sub variable that names a renamed resource, pointed at its new logical id.</summary>
    private void RewriteReferences()
    {
        if (_renamed.Count == 0)
        {
            return;
        }
        string Map(string name) => _renamed.TryGetValue(name, out var renamed) ? renamed : name;
        void Walk(JsonNode? node)
        {
            switch (node)
            {
                case JsonObject o when o.Count == 1 && o["Ref"] is JsonValue r && r.TryGetValue<string>(out var target):
                    o["Ref"] = Map(target);
                    break;
                case JsonObject o when o.Count == 1 && o["Fn::GetAtt"] is JsonArray { Count: 2 } a && a[0] is JsonValue id && id.TryGetValue<string>(out var logicalId):
                    a[0] = Map(logicalId);
                    break;
                case JsonObject o when o.Count == 1 && o["Fn::Sub"] is { } argument:
                    var template = argument is JsonArray { Count: 2 } pair ? pair[0] : argument;
                    if (template is JsonValue t && t.TryGetValue<string>(out var text))
                    {
                        var rewritten = SubVariable().Replace(text, m => m.Groups[1].Value.StartsWith('!') ? m.Value
                            : "${" + (m.Groups[1].Value.Split('.') is var parts && _renamed.ContainsKey(parts[0]) ? string.Join('.', [Map(parts[0]), .. parts[1..]])
                                : Map(m.Groups[1].Value)) + "}");
                        if (argument is JsonArray withVariables)
                        {
                            withVariables[0] = rewritten;
                            Walk(withVariables[1]);
                        }
                        else
                        {
                            o["Fn::Sub"] = rewritten;
                        }
                    }
                    break;
                case JsonObject o:
                    foreach (var (_, value) in o.ToList())
                    {
                        Walk(value);
                    }
                    break;
                case JsonArray a:
                    foreach (var value in a.ToList())
                    {
                        Walk(value);
                    }
                    break;
            }
        }
        Walk(_output["Resources"]);
        Walk(_output["Outputs"]);
    }

    private static SamException Invalid(string logicalId, string message) => new($"Resource with id [{logicalId}] is invalid. {message}");

    /// <summary>SAM's error for an event of a function: the function named, then the event.</summary>
    private static SamException InvalidEvent((string Function, string Event) source, string message) =>
        new($"Resource with id [{source.Function}] is invalid. Event with id [{source.Event}] is invalid. {message}");

    private JsonObject OutputResources => (JsonObject)_output["Resources"]!;

    private void Add(string logicalId, JsonObject resource) => OutputResources[logicalId] = resource;

    private static JsonObject Resource(string type, JsonObject properties) => new() { ["Type"] = type, ["Properties"] = properties };

    /// <summary>DependsOn, Condition, DeletionPolicy, UpdateReplacePolicy, Metadata of a SAM resource, passed on to what it makes.</summary>
    private static void PassThrough(JsonObject from, JsonObject to, bool metadata = true)
    {
        foreach (var attribute in new[] { "Condition", "DeletionPolicy", "UpdateReplacePolicy", "DependsOn" })
        {
            if (from[attribute] is { } value)
            {
                to[attribute] = value.DeepClone();
            }
        }
        if (metadata && from["Metadata"] is { } m)
        {
            to["Metadata"] = m.DeepClone();
        }
    }

    private static void PassCondition(JsonObject from, JsonObject to)
    {
        if (from["Condition"] is { } condition)
        {
            to["Condition"] = condition.DeepClone();
        }
    }

    // ---- Globals ------------------------------------------------------------------------------------------------------

    /// <summary>
    /// The resource's properties over the Globals of its type: maps merge (the resource's keys win), lists join
    /// (globals first), anything else the resource's own value wins.
    /// </summary>
    private static JsonObject WithGlobals(string type, JsonObject globals, JsonObject properties)
    {
        var section = type switch
        {
            "AWS::Serverless::Function" => "Function",
            "AWS::Serverless::Api" => "Api",
            "AWS::Serverless::HttpApi" => "HttpApi",
            "AWS::Serverless::SimpleTable" => "SimpleTable",
            "AWS::Serverless::LayerVersion" => "LayerVersion",
            _ => null,
        };
        if (section is null || globals[section] is not JsonObject defaults)
        {
            return (JsonObject)properties.DeepClone();
        }
        return (JsonObject)Merge(defaults, properties)!;
    }

    private static JsonNode? Merge(JsonNode? global, JsonNode? local)
    {
        if (local is null)
        {
            return global?.DeepClone();
        }
        if (global is JsonObject g && local is JsonObject l && !IsIntrinsic(g) && !IsIntrinsic(l))
        {
            var merged = (JsonObject)g.DeepClone();
            foreach (var (key, value) in l)
            {
                merged[key] = Merge(g[key], value);
            }
            return merged;
        }
        if (global is JsonArray ga && local is JsonArray la)
        {
            var merged = (JsonArray)ga.DeepClone();
            foreach (var item in la)
            {
                merged.Add(item?.DeepClone());
            }
            return merged;
        }
        return local.DeepClone();
    }

    private static bool IsIntrinsic(JsonObject node) => node.Count == 1 && Intrinsics.IsFunction(node.First().Key);

    // ---- helpers ------------------------------------------------------------------------------------------------------

    private static JsonObject Ref(string logicalId) => new() { ["Ref"] = logicalId };

    private static JsonObject GetAtt(string logicalId, string attribute) => new() { ["Fn::GetAtt"] = new JsonArray(logicalId, attribute) };

    private static JsonObject Sub(string text) => new() { ["Fn::Sub"] = text };

    private static JsonObject Sub(string text, JsonObject variables) => new() { ["Fn::Sub"] = new JsonArray(text, variables) };

    /// <summary>A Ref to a template parameter replaced by its value (as SAM does for the few properties it must read).</summary>
    private JsonNode? ResolveParameter(JsonNode? node) =>
        node is JsonObject { Count: 1 } o && o["Ref"] is JsonValue r && r.TryGetValue<string>(out var name) && ParameterValue(name) is { } value ? JsonValue.Create(value) : node?.DeepClone();

    private string? ParameterValue(string name)
    {
        if (_parameters.TryGetValue(name, out var given))
        {
            return given;
        }
        return (_input["Parameters"] as JsonObject)?[name] is JsonObject declaration && declaration["Default"] is { } d ? Intrinsics.Stringify(d) : name switch
        {
            "AWS::Region" => _region,
            "AWS::AccountId" => _accountId,
            "AWS::StackName" => _stackName,
            "AWS::Partition" => "aws",
            _ => null,
        };
    }

    /// <summary>Deep copy with every Ref to a parameter replaced by its value (what SAM hashes for version ids).</summary>
    private JsonNode? ResolveParameterRefs(JsonNode? node) => node is null ? null : node switch
    {
        JsonObject { Count: 1 } o when o["Ref"] is JsonValue r && r.TryGetValue<string>(out var name) && ParameterValue(name) is { } value && !name.StartsWith("AWS::", StringComparison.Ordinal)
            => JsonValue.Create(value),
        JsonObject o => new JsonObject(o.Select(p => KeyValuePair.Create(p.Key, ResolveParameterRefs(p.Value)))),
        JsonArray a => new JsonArray(a.Select(ResolveParameterRefs).ToArray()),
        _ => node.DeepClone(),
    };

    private static string? Text(JsonNode? node) => node is JsonValue v && v.TryGetValue<string>(out var s) ? s : node is JsonValue n ? Intrinsics.Stringify(n) : null;

    /// <summary>An S3 location as SAM takes it: <c>s3://bucket/key?versionId=v</c> or {Bucket, Key, Version}.</summary>
    private JsonObject S3Location(string logicalId, string property, JsonNode? uri, string bucketKey, string keyKey, string versionKey)
    {
        var resolved = ResolveParameter(uri);
        if (resolved is JsonObject o && (o["Bucket"] is not null || o["Key"] is not null))
        {
            var location = new JsonObject { [bucketKey] = o["Bucket"]?.DeepClone(), [keyKey] = o["Key"]?.DeepClone() };
            if (o["Version"] is { } version)
            {
                location[versionKey] = version.DeepClone();
            }
            return location;
        }
        if (Text(resolved) is { } text && text.StartsWith("s3://", StringComparison.Ordinal) && text.IndexOf('/', 5) is > 5 and var slash)
        {
            var query = text.IndexOf('?', StringComparison.Ordinal);
            var key = query < 0 ? text[(slash + 1)..] : text[(slash + 1)..query];
            var location = new JsonObject { [bucketKey] = text[5..slash], [keyKey] = key };
            if (query > 0 && System.Web.HttpUtility.ParseQueryString(text[query..])["versionId"] is { } versionId)
            {
                location[versionKey] = versionId;
            }
            if (key.Length > 0)
            {
                return location;
            }
        }
        throw Invalid(logicalId, $"'{property}' is not a valid S3 Uri of the form 's3://bucket/key' with optional versionId query parameter. (Package local folders first: aws cloudformation package, or ./lamina deploy, which does it.)");
    }

    /// <summary>SAM's hash of a value: SHA-1 of its sorted, compact JSON (Python's json.dumps), hex.</summary>
#pragma warning disable CA5350 // SAM's logical ids are SHA-1 of the definition: a name, not a security boundary
    internal static string Hash(JsonNode? data) =>
        Convert.ToHexStringLower(SHA1.HashData(Encoding.UTF8.GetBytes(data is JsonValue v && v.TryGetValue<string>(out var s) ? s : PythonJson(data))));
#pragma warning restore CA5350

    /// <summary>JSON as Python's <c>json.dumps(data, separators=(",", ":"), sort_keys=True)</c> writes it (ASCII only).</summary>
    internal static string PythonJson(JsonNode? node)
    {
        var builder = new StringBuilder();
        void Write(JsonNode? n)
        {
            switch (n)
            {
                case null:
                    builder.Append("null");
                    break;
                case JsonObject o:
                    builder.Append('{');
                    var first = true;
                    foreach (var (key, value) in o.OrderBy(static p => p.Key, StringComparer.Ordinal))
                    {
                        if (!first)
                        {
                            builder.Append(',');
                        }
                        first = false;
                        String(key);
                        builder.Append(':');
                        Write(value);
                    }
                    builder.Append('}');
                    break;
                case JsonArray a:
                    builder.Append('[');
                    for (var i = 0; i < a.Count; i++)
                    {
                        if (i > 0)
                        {
                            builder.Append(',');
                        }
                        Write(a[i]);
                    }
                    builder.Append(']');
                    break;
                case JsonValue v when v.TryGetValue<string>(out var s):
                    String(s);
                    break;
                case JsonValue v when v.TryGetValue<bool>(out var b):
                    builder.Append(b ? "true" : "false");
                    break;
                case JsonValue v when v.TryGetValue<double>(out var d) && d != Math.Floor(d):
                    builder.Append(d.ToString("R", CultureInfo.InvariantCulture));
                    break;
                default:
                    builder.Append(n.ToJsonString());
                    break;
            }
        }
        void String(string s)
        {
            builder.Append('"');
            foreach (var c in s)
            {
                switch (c)
                {
                    case '"': builder.Append("\\\""); break;
                    case '\\': builder.Append("\\\\"); break;
                    case '\n': builder.Append("\\n"); break;
                    case '\r': builder.Append("\\r"); break;
                    case '\t': builder.Append("\\t"); break;
                    case '\b': builder.Append("\\b"); break;
                    case '\f': builder.Append("\\f"); break;
                    default:
                        if (c < 0x20 || c > 0x7e)
                        {
                            builder.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                        }
                        else
                        {
                            builder.Append(c);
                        }
                        break;
                }
            }
            builder.Append('"');
        }
        Write(node);
        return builder.ToString();
    }

    /// <summary>SAM's tag list: <c>lambda:createdBy: SAM</c> first, then the resource's own tags.</summary>
    private static JsonArray TagList(JsonNode? tags, string createdByKey = "lambda:createdBy")
    {
        var list = new JsonArray(new JsonObject { ["Key"] = createdByKey, ["Value"] = "SAM" });
        if (tags is JsonObject map)
        {
            foreach (var (key, value) in map)
            {
                list.Add(new JsonObject { ["Key"] = key, ["Value"] = value?.DeepClone() });
            }
        }
        return list;
    }

    [GeneratedRegex(@"\{[^}]+\}")]
    private static partial Regex PathParameter();

    [GeneratedRegex(@"\$\{([^}]+)\}")]
    private static partial Regex SubVariable();

    [GeneratedRegex("^(?!^[0-9]+$)[a-zA-Z0-9-_]+$")]
    private static partial Regex AliasName();
}
