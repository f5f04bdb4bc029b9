using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace Lamina.Server.CloudFormation;

/// <summary>An Api or HttpApi event of a function: the route it adds to its API's definition.</summary>
internal sealed record ApiRoute((string Function, string Event) Source, string Path, string Method, JsonNode Uri, JsonObject Event);

/// <summary>
/// SAM's <c>Cors</c> and <c>Auth</c> on AWS::Serverless::Api and HttpApi, and the events' own <c>Auth</c>, written into
/// the API's definition as aws-sam-translator writes them (its SwaggerEditor and OpenApiEditor): preflight OPTIONS
/// methods answered by a mock integration, security schemes for Lambda, JWT and IAM authorizers, each method's
/// security requirements, and the permissions that let API Gateway call the authorizer functions. Lamina's OpenAPI
/// import then turns that definition into authorizers and routes, as API Gateway does.
/// </summary>
internal sealed partial class SamTransform
{
    private const string Integration = "x-amazon-apigateway-integration";
    private const string AuthorizerKey = "x-amazon-apigateway-authorizer";
    private const string CallerCredentials = "arn:aws:iam::*:user/*";

    private static readonly string[] RestAuthKeys =
        ["Authorizers", "DefaultAuthorizer", "InvokeRole", "AddDefaultAuthorizerToCorsPreflight", "AddApiKeyRequiredToCorsPreflight", "ApiKeyRequired", "ResourcePolicy", "UsagePlan"];

    private static readonly string[] HttpAuthKeys = ["Authorizers", "DefaultAuthorizer", "EnableIamAuthorizer"];

    private static readonly string[] CorsKeys = ["AllowMethods", "AllowHeaders", "AllowOrigin", "MaxAge", "AllowCredentials"];

    // What CORS allows on a path with an ANY method (API Gateway's wildcard, not an HTTP method).
    private static readonly string[] AllHttpMethods = ["OPTIONS", "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"];

    // Path item keys that are not methods.
    private static readonly string[] NotMethods = ["summary", "description", "parameters"];

    /// <summary>The API's Auth section, checked for keys SAM knows; null when there is none.</summary>
    private JsonObject? ApiAuth(string logicalId, JsonObject p, string[] keys)
    {
        if (p["Auth"] is null)
        {
            return null;
        }
        if (ResolveParameterRefs(p["Auth"]) is not JsonObject auth || auth.Any(a => !keys.Contains(a.Key)))
        {
            throw Invalid(logicalId, "Invalid value for 'Auth' property");
        }
        foreach (var (unsupported, why) in new[]
        {
            ("ResourcePolicy", "Lamina's REST APIs have no resource policies yet"),
        })
        {
            if (auth[unsupported] is not null)
            {
                throw Invalid(logicalId, $"Lamina's transform does not support Auth.{unsupported} yet: {why}.");
            }
        }
        return auth;
    }

    /// <summary>The Authorizers section as a map of name to definition (an empty map when absent).</summary>
    private static JsonObject Authorizers(string logicalId, JsonObject? auth)
    {
        return auth?["Authorizers"] switch
        {
            null => [],
            JsonObject map when map.All(static a => a.Value is JsonObject) => map,
            JsonObject map => throw Invalid(logicalId, $"Property 'Auth.Authorizers.{map.First(static a => a.Value is not JsonObject).Key}' should be a map."),
            _ => throw Invalid(logicalId, "Property 'Auth.Authorizers' should be a map."),
        };
    }

    // ---- REST APIs (Swagger 2.0 / OpenAPI 3) -------------------------------------------------------------------------------

    /// <summary>An Api event's Auth on its method, checked as SAM checks it against the API's Auth.</summary>
    private void AddRestMethodAuth(ApiRoute route, JsonObject operation, JsonObject? apiAuth, JsonObject definitions, bool integrationAdded)
    {
        if (route.Event["Auth"] is { } node && node is not JsonObject)
        {
            throw InvalidEvent(route.Source, "Property 'Auth' should be a map.");
        }
        var auth = ResolveParameterRefs(route.Event["Auth"]) as JsonObject;
        var authorizer = auth?["Authorizer"];
        var authorizerName = Text(authorizer);
        var defaultAuthorizer = Text(apiAuth?["DefaultAuthorizer"]);

        // IAM authorization calls the function with the caller's credentials unless an InvokeRole says otherwise.
        if (integrationAdded && (authorizerName == "AWS_IAM" || (defaultAuthorizer == "AWS_IAM" && auth is not { Count: > 0 })))
        {
            var role = InvokeRole(auth) ?? InvokeRole(apiAuth);
            if (role is null || Text(role) == "CALLER_CREDENTIALS")
            {
                role = CallerCredentials;
            }
            if (Text(role) != "NONE")
            {
                ((JsonObject)operation[Integration]!)["credentials"] = role;
            }
        }
        if (auth is null)
        {
            return;
        }

        var where = $"on API method [{route.Method}] for path [{route.Path}]";
        var authorizers = apiAuth?["Authorizers"] as JsonObject;
        if (authorizer is not null)
        {
            if (authorizerName is null)
            {
                throw InvalidEvent(route.Source, $"Unable to set Authorizer {where} because it is not a string.");
            }
            if (authorizerName == "NONE")
            {
                if (defaultAuthorizer is null)
                {
                    throw InvalidEvent(route.Source, $"Unable to set Authorizer {where} because 'NONE' is only a valid value when a DefaultAuthorizer on the API is specified.");
                }
            }
            else if (authorizerName != "AWS_IAM")
            {
                if (authorizers is not { Count: > 0 })
                {
                    throw InvalidEvent(route.Source, $"Unable to set Authorizer [{authorizerName}] {where} because the related API does not define any Authorizers.");
                }
                if (authorizers[authorizerName] is null)
                {
                    throw InvalidEvent(route.Source, $"Unable to set Authorizer [{authorizerName}] {where} because it wasn't defined in the API's Authorizers.");
                }
            }
        }
        var scopes = auth["AuthorizationScopes"];
        if (scopes is not null and not JsonArray)
        {
            throw InvalidEvent(route.Source, "Property 'Auth.AuthorizationScopes' should be a list.");
        }
        if (scopes is JsonArray { Count: > 0 } && authorizer is null)
        {
            throw InvalidEvent(route.Source, "AuthorizationScopes works only when Authorizer is set");
        }
        var apiKeyRequired = auth["ApiKeyRequired"];
        if (apiKeyRequired is not null && !Truthy(apiKeyRequired) && !Truthy(apiAuth?["ApiKeyRequired"]))
        {
            throw InvalidEvent(route.Source, $"Unable to set ApiKeyRequired [False] {where} because the related API does not specify any ApiKeyRequired.");
        }
        if (auth["ResourcePolicy"] is not null)
        {
            // Lamina's REST APIs have no resource policies to write it into.
            throw InvalidEvent(route.Source, "Lamina's transform does not support Auth.ResourcePolicy yet: Lamina's REST APIs have no resource policies.");
        }

        var security = operation["security"] as JsonArray ?? [];
        if (authorizerName is not null)
        {
            JsonNode requirement = new JsonArray();
            if (authorizerName != "NONE" && authorizers?[authorizerName] is JsonObject definition)
            {
                var granted = scopes ?? definition["AuthorizationScopes"];
                if (granted is not null)
                {
                    requirement = granted.DeepClone();
                }
            }
            security.Add(new JsonObject { [authorizerName] = requirement });
            operation["security"] = security;
            if (security[0] is JsonObject first && first.ContainsKey("AWS_IAM"))
            {
                definitions["AWS_IAM"] ??= IamScheme();
            }
        }
        if (apiKeyRequired is not null)
        {
            if (Truthy(apiKeyRequired))
            {
                security.Add(new JsonObject { ["api_key"] = new JsonArray() });
                definitions["api_key"] ??= ApiKeyScheme();
            }
            else
            {
                // A marker that keeps the API's default (ApiKeyRequired) off this method; removed when defaults apply.
                security.Add(new JsonObject { ["api_key_false"] = new JsonArray() });
            }
            operation["security"] = security;
        }
    }

    private static JsonNode? InvokeRole(JsonObject? auth) =>
        auth is null || !auth.ContainsKey("InvokeRole") ? null : auth["InvokeRole"] is { } role && Text(role) is not "" ? role.DeepClone() : "NONE";

    private static bool Truthy(JsonNode? node) => node is JsonValue v && (v.TryGetValue<bool>(out var b) ? b : Text(v) is "true" or "True");

    /// <summary>SAM's Cors: an OPTIONS method answered by a mock integration with the CORS headers, on every path without one.</summary>
    private static void AddCors(string logicalId, JsonObject paths, JsonNode cors)
    {
        JsonNode? allowOrigin = "'*'", allowHeaders = null, allowMethods = null, maxAge = null;
        var allowCredentials = false;
        if (cors is JsonValue || IsIntrinsic(cors))
        {
            allowOrigin = cors;
        }
        else if (cors is JsonObject settings)
        {
            foreach (var (key, _) in settings)
            {
                if (!CorsKeys.Contains(key))
                {
                    throw Invalid(logicalId, $"Invalid key '{key}' for 'Cors' property.");
                }
            }
            allowOrigin = settings["AllowOrigin"] ?? allowOrigin;
            allowHeaders = settings["AllowHeaders"];
            allowMethods = settings["AllowMethods"];
            maxAge = settings["MaxAge"];
            allowCredentials = settings["AllowCredentials"] is JsonValue c && c.TryGetValue<bool>(out var b) && b;
        }
        else
        {
            throw Invalid(logicalId, "Invalid value for 'Cors' property");
        }
        if (allowCredentials && Text(allowOrigin) == "'*'")
        {
            throw Invalid(logicalId, "Unable to add Cors configuration because 'AllowCredentials' can not be true when 'AllowOrigin' is \"'*'\" or not set");
        }

        // API Gateway treats /path and /path/ as one resource: one OPTIONS method for both.
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (path, node) in paths)
        {
            if (!seen.Add(path == "/" ? path : path.TrimEnd('/')) || node is not JsonObject item || item.ContainsKey("options"))
            {
                continue;
            }
            var methods = allowMethods?.DeepClone() ?? $"'{AllowedMethods(item)}'";
            var parameters = new JsonObject { ["method.response.header.Access-Control-Allow-Origin"] = allowOrigin!.DeepClone() };
            var headers = new JsonObject { ["Access-Control-Allow-Origin"] = new JsonObject { ["type"] = "string" } };
            if (allowHeaders is not null && Text(allowHeaders) is not "")
            {
                parameters["method.response.header.Access-Control-Allow-Headers"] = allowHeaders.DeepClone();
                headers["Access-Control-Allow-Headers"] = new JsonObject { ["type"] = "string" };
            }
            if (Text(methods) is not "")
            {
                parameters["method.response.header.Access-Control-Allow-Methods"] = methods;
                headers["Access-Control-Allow-Methods"] = new JsonObject { ["type"] = "string" };
            }
            if (maxAge is not null)
            {
                parameters["method.response.header.Access-Control-Max-Age"] = maxAge.DeepClone();
                headers["Access-Control-Max-Age"] = new JsonObject { ["type"] = "integer" };
            }
            if (allowCredentials)
            {
                parameters["method.response.header.Access-Control-Allow-Credentials"] = "'true'";
                headers["Access-Control-Allow-Credentials"] = new JsonObject { ["type"] = "string" };
            }
            item["options"] = new JsonObject
            {
                ["summary"] = "CORS support",
                ["consumes"] = new JsonArray("application/json"),
                ["produces"] = new JsonArray("application/json"),
                [Integration] = new JsonObject
                {
                    ["type"] = "mock",
                    ["requestTemplates"] = new JsonObject { ["application/json"] = "{\n  \"statusCode\" : 200\n}\n" },
                    ["responses"] = new JsonObject
                    {
                        ["default"] = new JsonObject
                        {
                            ["statusCode"] = "200",
                            ["responseParameters"] = parameters,
                            ["responseTemplates"] = new JsonObject { ["application/json"] = "{}\n" },
                        },
                    },
                },
                ["responses"] = new JsonObject
                {
                    ["200"] = new JsonObject { ["description"] = "Default response for CORS method", ["headers"] = headers },
                },
            };
        }
    }

    /// <summary>The methods a path allows, upper case and sorted, OPTIONS included; every method when the path has ANY.</summary>
    private static string AllowedMethods(JsonObject item)
    {
        var methods = item.ContainsKey("x-amazon-apigateway-any-method")
            ? AllHttpMethods
            : item.Select(static m => m.Key).Append("options").Select(static m => m.ToUpperInvariant());
        return string.Join(',', methods.Distinct().Order(StringComparer.Ordinal));
    }

    /// <summary>The API's Auth: security schemes, the default authorizer and API key requirement on every method.</summary>
    private void AddRestAuth(string logicalId, JsonObject resource, JsonObject paths, JsonObject definitions, JsonObject auth)
    {
        var defaultAuthorizer = auth["DefaultAuthorizer"];
        var defaultName = Text(defaultAuthorizer);
        if (defaultAuthorizer is not null && defaultName is null)
        {
            throw Invalid(logicalId, "DefaultAuthorizer is not a string.");
        }
        var authorizers = Authorizers(logicalId, auth);
        var names = new List<string>();
        if (defaultName == "AWS_IAM")
        {
            definitions["AWS_IAM"] = IamScheme();
            names.Add("AWS_IAM");
        }
        foreach (var (name, node) in authorizers)
        {
            definitions[name] = RestAuthorizerScheme(logicalId, name, (JsonObject)node!);
            names.Add(name);
            if (node!["FunctionArn"] is { } functionArn && !Truthy(node["DisableFunctionDefaultPermissions"]))
            {
                AuthorizerPermission(logicalId + name + "AuthorizerPermission", resource, functionArn, "arn:aws:execute-api:${AWS::Region}:${AWS::AccountId}:${__ApiId__}/authorizers/*", logicalId);
            }
        }
        if (defaultName is not null && names.Count > 0)
        {
            if (!names.Contains(defaultName))
            {
                throw Invalid(logicalId, $"Unable to set DefaultAuthorizer because '{defaultName}' was not defined in 'Authorizers'.");
            }
            var toPreflight = auth["AddDefaultAuthorizerToCorsPreflight"] is not { } p || Truthy(p);
            var scopes = (authorizers[defaultName] as JsonObject)?["AuthorizationScopes"];
            var authorizerNames = names.Append("AWS_IAM").ToHashSet(StringComparer.Ordinal);
            foreach (var (method, operation) in Methods(paths))
            {
                if (!toPreflight && method == "options")
                {
                    continue;
                }
                var existing = operation["security"] as JsonArray ?? [];
                var others = existing.Where(s => s is JsonObject o && !o.Any(k => authorizerNames.Contains(k.Key))).ToList();
                var chosen = existing.Where(s => !others.Contains(s)).ToList();
                var none = others.FindIndex(static s => ((JsonObject)s!).ContainsKey("NONE"));
                if (none >= 0)
                {
                    others.RemoveAt(none); // the method opted out of the default
                    chosen = [];
                }
                else if (chosen.Count == 0)
                {
                    chosen = [new JsonObject { [defaultName] = scopes?.DeepClone() ?? new JsonArray() }];
                }
                var security = new JsonArray([.. others.Concat(chosen).Select(static s => s!.DeepClone())]);
                if (security.Count > 0)
                {
                    operation["security"] = security;
                    if (security[0] is JsonObject first && first.ContainsKey("AWS_IAM"))
                    {
                        definitions["AWS_IAM"] ??= IamScheme();
                    }
                }
            }
        }
        if (Truthy(auth["ApiKeyRequired"]))
        {
            definitions["api_key"] ??= ApiKeyScheme();
            var toPreflight = auth["AddApiKeyRequiredToCorsPreflight"] is not { } p || Truthy(p);
            foreach (var (method, operation) in Methods(paths))
            {
                var existing = operation["security"] as JsonArray ?? [];
                var others = existing.Where(static s => s is JsonObject o && !o.ContainsKey("api_key") && !o.ContainsKey("api_key_false")).ToList();
                var optedOut = existing.Any(static s => s is JsonObject o && o.ContainsKey("api_key_false"));
                IEnumerable<JsonNode?> security = optedOut || (method == "options" && !toPreflight)
                    ? others
                    : others.Append(new JsonObject { ["api_key"] = new JsonArray() });
                var result = new JsonArray([.. security.Select(static s => s!.DeepClone())]);
                if (!JsonNode.DeepEquals(result, existing))
                {
                    operation["security"] = result;
                }
            }
        }
    }

    /// <summary>Every method of the definition with an API Gateway integration, by its lower-case name.</summary>
    private static IEnumerable<(string Method, JsonObject Operation)> Methods(JsonObject paths)
    {
        foreach (var (_, item) in paths)
        {
            if (item is not JsonObject methods)
            {
                continue;
            }
            foreach (var (name, node) in methods)
            {
                if (!NotMethods.Contains(name) && node is JsonObject operation && operation[Integration] is not null)
                {
                    yield return (name.ToLowerInvariant(), operation);
                }
            }
        }
    }

    /// <summary>A REST API Lambda authorizer (TOKEN or REQUEST) as a Swagger security scheme.</summary>
    private static JsonObject RestAuthorizerScheme(string logicalId, string name, JsonObject authorizer)
    {
        if (authorizer["UserPoolArn"] is not null)
        {
            throw Invalid(logicalId, $"Authorizer {name} is a Cognito user pool authorizer; Lamina has no Cognito user pools: use a Lambda authorizer.");
        }
        var payloadType = Text(authorizer["FunctionPayloadType"]);
        if (payloadType is not (null or "TOKEN" or "REQUEST"))
        {
            throw Invalid(logicalId, $"{name} Authorizer has invalid 'FunctionPayloadType': {payloadType}.");
        }
        var identity = authorizer["Identity"];
        if (identity is not null and not JsonObject)
        {
            throw Invalid(logicalId, "Auth.Authorizers.<Authorizer>.Identity must be a dict (LambdaTokenAuthorizationIdentity, LambdaRequestAuthorizationIdentity or CognitoAuthorizationIdentity).");
        }
        var id = identity as JsonObject;
        var request = payloadType == "REQUEST";
        var source = request ? IdentitySource(logicalId, name, id) : [];
        if (request && source.Count == 0 && (id?["ReauthorizeEvery"] is not { } ttl || !int.TryParse(Text(ttl), out var seconds) || seconds > 0))
        {
            throw Invalid(logicalId, $"{name} Authorizer must specify Identity with at least one of Headers, QueryStrings, StageVariables, or Context.");
        }
        var functionArn = authorizer["FunctionArn"] ?? throw Invalid(logicalId, $"{name} Authorizer must define 'FunctionArn'.");
        var spec = new JsonObject
        {
            ["type"] = request ? "request" : "token",
            ["authorizerUri"] = Sub("arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${__FunctionArn__}/invocations",
                new JsonObject { ["__FunctionArn__"] = functionArn.DeepClone() }),
        };
        if (id?["ReauthorizeEvery"] is { } reauthorize)
        {
            spec["authorizerResultTtlInSeconds"] = reauthorize.DeepClone();
        }
        if (authorizer["FunctionInvokeRole"] is { } role && Text(role) is not ("NONE" or ""))
        {
            spec["authorizerCredentials"] = role.DeepClone();
        }
        if (request && source.Count > 0)
        {
            spec["identitySource"] = string.Join(", ", source);
        }
        if (!request && id?["ValidationExpression"] is { } expression)
        {
            spec["identityValidationExpression"] = expression.DeepClone();
        }
        return new JsonObject
        {
            ["type"] = "apiKey",
            ["name"] = request ? "Unused" : Text(id?["Header"]) is { Length: > 0 } header ? header : "Authorization",
            ["in"] = "header",
            ["x-amazon-apigateway-authtype"] = "custom",
            [AuthorizerKey] = spec,
        };
    }

    /// <summary>A REQUEST authorizer's identity sources: headers, query strings, stage variables, context, prefixed.</summary>
    private static List<string> IdentitySource(string logicalId, string name, JsonObject? identity, bool http = false)
    {
        var source = new List<string>();
        foreach (var (property, prefix, httpPrefix) in new[]
        {
            ("Headers", "method.request.header.", "$request.header."), ("QueryStrings", "method.request.querystring.", "$request.querystring."),
            ("StageVariables", "stageVariables.", "$stageVariables."), ("Context", "context.", "$context."),
        })
        {
            switch (identity?[property])
            {
                case null:
                    break;
                case JsonArray values when values.All(static v => Text(v) is not null):
                    source.AddRange(values.Select(v => (http ? httpPrefix : prefix) + Text(v)));
                    break;
                default:
                    throw Invalid(logicalId, $"Property 'Auth.Authorizers.{name}.Identity.{property}' should be a list of strings.");
            }
        }
        return source;
    }

    private static JsonObject IamScheme() => new()
    {
        ["x-amazon-apigateway-authtype"] = "awsSigv4", ["type"] = "apiKey", ["name"] = "Authorization", ["in"] = "header",
    };

    private static JsonObject ApiKeyScheme() => new() { ["type"] = "apiKey", ["name"] = "x-api-key", ["in"] = "header" };

    private void AuthorizerPermission(string logicalId, JsonObject api, JsonNode functionArn, string sourceArn, string apiLogicalId)
    {
        var permission = Resource("AWS::Lambda::Permission", new JsonObject
        {
            ["Action"] = "lambda:InvokeFunction",
            ["FunctionName"] = functionArn.DeepClone(),
            ["Principal"] = "apigateway.amazonaws.com",
            ["SourceArn"] = Sub(sourceArn, new JsonObject { ["__ApiId__"] = Ref(apiLogicalId) }),
        });
        PassThrough(api, permission, metadata: false);
        permission.Remove("DependsOn");
        Add(logicalId, permission);
    }

    /// <summary>
    /// SAM writes Swagger 2.0 shapes; an OpenAPI 3 definition gets them where OpenAPI 3 keeps them: security schemes and
    /// models under components, and CORS preflight headers with a schema and without consumes/produces.
    /// </summary>
    private static void ToOpenApi3(JsonObject body, string? openApiVersion)
    {
        if (body.ContainsKey("swagger"))
        {
            return;
        }
        var version = openApiVersion ?? Text(body["openapi"]);
        if (version is null || !OpenApi3().IsMatch(version))
        {
            return;
        }
        foreach (var (from, to) in new[] { ("securityDefinitions", "securitySchemes"), ("definitions", "schemas") })
        {
            if (body[from] is JsonObject { Count: > 0 } moved)
            {
                var components = body["components"] as JsonObject ?? [];
                body.Remove(from);
                components[to] = moved;
                body["components"] = components;
            }
        }
        foreach (var (_, item) in body["paths"] as JsonObject ?? [])
        {
            if (item?["options"] is not JsonObject options)
            {
                continue;
            }
            options.Remove("produces");
            options.Remove("consumes");
            if (options["responses"]?["200"]?["headers"] is JsonObject headers)
            {
                foreach (var name in headers.Select(static h => h.Key).ToList())
                {
                    headers[name] = new JsonObject { ["schema"] = headers[name]?.DeepClone() };
                }
            }
        }
    }

    [GeneratedRegex(@"\A3(\.\d)(\.\d)?$")]
    private static partial Regex OpenApi3();

    private static bool IsIntrinsic(JsonNode? node) =>
        node is JsonObject { Count: 1 } o && o.First().Key is var key && (key == "Ref" || key == "Condition" || key.StartsWith("Fn::", StringComparison.Ordinal));

    // The SHARED usage plan of every API that asks for one: its stages, the key's stages and the APIs it waits for.
    private readonly JsonArray _sharedPlanStages = [];
    private readonly JsonArray _sharedKeyStages = [];
    private readonly JsonArray _sharedPlanDependsOn = [];

    private static readonly string[] UsagePlanKeys = ["CreateUsagePlan", "Description", "Quota", "Tags", "Throttle", "UsagePlanName"];

    /// <summary>
    /// Auth.UsagePlan: a usage plan for this API's stage (PER_API) or one for every such API (SHARED), with an API key
    /// and the key in the plan, named as SAM names them.
    /// </summary>
    private void AddUsagePlan(string logicalId, JsonObject resource, JsonObject? auth, string stageLogicalId)
    {
        if (auth?["UsagePlan"] is not { } node)
        {
            return;
        }
        if (node is not JsonObject settings)
        {
            throw Invalid(logicalId, "'UsagePlan' must be a dictionary");
        }
        if (settings.Any(static s => !UsagePlanKeys.Contains(s.Key)))
        {
            throw Invalid(logicalId, "Invalid property for 'UsagePlan'");
        }
        var create = Text(settings["CreateUsagePlan"]) ?? throw Invalid(logicalId, "'CreateUsagePlan' is a required field for UsagePlan.");
        if (create is not ("SHARED" or "PER_API" or "NONE"))
        {
            throw Invalid(logicalId, "'CreateUsagePlan' accepts one of ['SHARED', 'PER_API', 'NONE'].");
        }
        if (create == "NONE")
        {
            return;
        }
        var stage = new JsonObject { ["ApiId"] = Ref(logicalId), ["Stage"] = Ref(stageLogicalId) };
        var keyStage = new JsonObject { ["RestApiId"] = Ref(logicalId), ["StageName"] = Ref(stageLogicalId) };
        var shared = create == "SHARED";
        var planId = shared ? "ServerlessUsagePlan" : logicalId + "UsagePlan";
        var keyId = shared ? "ServerlessApiKey" : logicalId + "ApiKey";
        JsonArray stages, keyStages, dependsOn;
        if (shared)
        {
            _sharedPlanStages.Add(stage);
            _sharedKeyStages.Add(keyStage);
            _sharedPlanDependsOn.Add(logicalId);
            (stages, keyStages, dependsOn) = (_sharedPlanStages, _sharedKeyStages, _sharedPlanDependsOn);
        }
        else
        {
            (stages, keyStages, dependsOn) = (new JsonArray(stage), new JsonArray(keyStage), new JsonArray(logicalId));
        }
        var planProperties = new JsonObject { ["ApiStages"] = stages.DeepClone() };
        foreach (var name in new[] { "UsagePlanName", "Description", "Quota", "Tags", "Throttle" })
        {
            if (settings[name] is { } value)
            {
                planProperties[name] = value.DeepClone();
            }
        }
        var plan = Resource("AWS::ApiGateway::UsagePlan", planProperties);
        plan["DependsOn"] = dependsOn.DeepClone();
        var key = Resource("AWS::ApiGateway::ApiKey", new JsonObject { ["Enabled"] = true, ["StageKeys"] = keyStages.DeepClone() });
        key["DependsOn"] = new JsonArray(planId);
        var planKey = Resource("AWS::ApiGateway::UsagePlanKey", new JsonObject { ["KeyId"] = Ref(keyId), ["KeyType"] = "API_KEY", ["UsagePlanId"] = Ref(planId) });
        planKey["DependsOn"] = new JsonArray(keyId);
        if (!shared)
        {
            foreach (var output in new[] { plan, key, planKey })
            {
                PassCondition(resource, output);
            }
        }
        Add(planId, plan);
        Add(keyId, key);
        Add(shared ? "ServerlessUsagePlanKey" : logicalId + "UsagePlanKey", planKey);
    }

    // ---- HTTP APIs (OpenAPI 3) ---------------------------------------------------------------------------------------------

    /// <summary>An HttpApi event's Auth on its route, checked as SAM checks it against the API's Auth.</summary>
    private void AddHttpMethodAuth(ApiRoute route, JsonObject operation, JsonObject? apiAuth)
    {
        if (route.Event["Auth"] is null)
        {
            return;
        }
        if (ResolveParameterRefs(route.Event["Auth"]) is not JsonObject auth)
        {
            throw InvalidEvent(route.Source, "Property 'Auth' should be a map.");
        }
        var where = $"on API method [{route.Method}] for path [{route.Path}]";
        var defaultAuthorizer = Text(apiAuth?["DefaultAuthorizer"]);
        var authorizer = Text(auth["Authorizer"]) ?? defaultAuthorizer
            ?? throw InvalidEvent(route.Source, "'Auth' section requires either an explicit 'Authorizer' set or a 'DefaultAuthorizer' configured on the HttpApi.");
        var authorizers = apiAuth?["Authorizers"] as JsonObject;
        var iamEnabled = Truthy(apiAuth?["EnableIamAuthorizer"]);
        if (authorizer == "NONE")
        {
            if (defaultAuthorizer is null)
            {
                throw InvalidEvent(route.Source, $"Unable to set Authorizer on API method [{route.Method}] for path [{route.Path}] because 'NONE' is only a valid value when a DefaultAuthorizer on the API is specified.");
            }
        }
        else if (authorizer != "AWS_IAM" || !iamEnabled)
        {
            if (authorizers is not { Count: > 0 })
            {
                throw InvalidEvent(route.Source, $"Unable to set Authorizer [{authorizer}] {where} because the related API does not define any Authorizers.");
            }
            if (authorizers[authorizer] is null)
            {
                throw InvalidEvent(route.Source, $"Unable to set Authorizer [{authorizer}] {where} because it wasn't defined in the API's Authorizers.");
            }
        }
        var scopes = auth["AuthorizationScopes"];
        if (scopes is not null and not JsonArray)
        {
            throw InvalidEvent(route.Source, "Property 'Auth.AuthorizationScopes' should be a list.");
        }
        JsonNode requirement = new JsonArray();
        // Neither NONE nor the built-in IAM authorizer take scopes.
        if (authorizer is not ("NONE" or "AWS_IAM") && authorizers?[authorizer] is JsonObject definition)
        {
            var granted = scopes is JsonArray { Count: > 0 } ? scopes : definition["AuthorizationScopes"];
            if (granted is JsonArray { Count: > 0 })
            {
                requirement = granted.DeepClone();
            }
        }
        var security = operation["security"] as JsonArray ?? [];
        security.Add(new JsonObject { [authorizer] = requirement });
        operation["security"] = security;
    }

    /// <summary>The HTTP API's Auth: security schemes (JWT, Lambda, IAM) and the default authorizer on routes without one.</summary>
    private void AddHttpAuth(string logicalId, JsonObject resource, JsonObject body, JsonObject auth)
    {
        var components = body["components"] as JsonObject ?? [];
        var schemes = components["securitySchemes"] as JsonObject ?? [];
        var authorizers = Authorizers(logicalId, auth);
        var names = new List<string>();
        if (Truthy(auth["EnableIamAuthorizer"]))
        {
            schemes["AWS_IAM"] = new JsonObject
            {
                ["type"] = "apiKey", ["name"] = "Authorization", ["in"] = "header", ["x-amazon-apigateway-authtype"] = "awsSigv4",
            };
            names.Add("AWS_IAM");
        }
        foreach (var (name, node) in authorizers)
        {
            var authorizer = (JsonObject)node!;
            if (authorizer.ContainsKey("OpenIdConnectUrl"))
            {
                throw Invalid(logicalId, $"'OpenIdConnectUrl' is no longer a supported property for authorizer '{name}'. Please refer to the AWS SAM documentation.");
            }
            schemes[name] = HttpAuthorizerScheme(logicalId, name, authorizer);
            names.Add(name);
            if (authorizer["FunctionArn"] is { } functionArn && Truthy(authorizer["EnableFunctionDefaultPermissions"]))
            {
                AuthorizerPermission(logicalId + name + "AuthorizerPermission", resource, functionArn, "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${__ApiId__}/authorizers/*", logicalId);
            }
        }
        components["securitySchemes"] = schemes;
        body["components"] = components;
        if (Text(auth["DefaultAuthorizer"]) is not { } defaultName)
        {
            return;
        }
        if (!names.Contains(defaultName))
        {
            throw Invalid(logicalId, $"Unable to set DefaultAuthorizer because '{defaultName}' was not defined in 'Authorizers'.");
        }
        var scopes = (authorizers[defaultName] as JsonObject)?["AuthorizationScopes"];
        foreach (var (method, operation) in Methods(body["paths"] as JsonObject ?? []))
        {
            if (method != "options" && operation["security"] is not JsonArray { Count: > 0 })
            {
                operation["security"] = new JsonArray(new JsonObject { [defaultName] = scopes?.DeepClone() ?? new JsonArray() });
            }
        }
    }

    /// <summary>An HTTP API authorizer: JWT (JwtConfiguration + IdentitySource), IAM, or Lambda (REQUEST).</summary>
    private static JsonObject HttpAuthorizerScheme(string logicalId, string name, JsonObject authorizer)
    {
        if (authorizer["AuthorizationScopes"] is { } scopes and not JsonArray)
        {
            throw Invalid(logicalId, "AuthorizationScopes must be a list.");
        }
        if (authorizer["JwtConfiguration"] is { } jwt)
        {
            foreach (var property in new[] { "FunctionArn", "FunctionInvokeRole", "Identity", "AuthorizerPayloadFormatVersion", "EnableSimpleResponses", "EnableFunctionDefaultPermissions" })
            {
                if (authorizer[property] is not null)
                {
                    throw Invalid(logicalId, $"{property} is only supported for Lambda Authorizer.");
                }
            }
            if (jwt is not JsonObject configuration)
            {
                throw Invalid(logicalId, "Property 'JwtConfiguration' should be a map.");
            }
            var source = authorizer["IdentitySource"] ?? throw Invalid(logicalId, $"{name} OAuth2 Authorizer must define 'IdentitySource'.");
            return new JsonObject
            {
                ["type"] = "oauth2",
                [AuthorizerKey] = new JsonObject
                {
                    // OpenAPI's keys are lower case (CloudFormation's AWS::ApiGatewayV2::Authorizer capitalises them).
                    ["jwtConfiguration"] = new JsonObject(configuration.Select(static c => KeyValuePair.Create(c.Key.ToLowerInvariant(), c.Value?.DeepClone()))),
                    ["identitySource"] = source.DeepClone(),
                    ["type"] = "jwt",
                },
            };
        }
        foreach (var property in new[] { "AuthorizationScopes", "IdentitySource" })
        {
            if (authorizer[property] is not null)
            {
                var hint = property == "IdentitySource" ? "OAuth2 Authorizer. For Lambda Authorizer, use the 'Identity' property instead" : "OAuth2 Authorizer";
                throw Invalid(logicalId, $"{property} is only supported for {hint}.");
            }
        }
        var functionArn = authorizer["FunctionArn"] ?? throw Invalid(logicalId, $"{name} Lambda Authorizer must define 'FunctionArn'.");
        var version = authorizer["AuthorizerPayloadFormatVersion"] ?? throw Invalid(logicalId, $"{name} Lambda Authorizer must define 'AuthorizerPayloadFormatVersion'.");
        var spec = new JsonObject
        {
            ["type"] = "request",
            ["authorizerUri"] = Sub("arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${__FunctionArn__}/invocations",
                new JsonObject { ["__FunctionArn__"] = functionArn.DeepClone() }),
        };
        if (authorizer["FunctionInvokeRole"] is { } role && Text(role) is not ("NONE" or ""))
        {
            spec["authorizerCredentials"] = role.DeepClone();
        }
        if (authorizer["Identity"] is { } identity)
        {
            if (identity is not JsonObject id)
            {
                throw Invalid(logicalId, $"Property 'Authorizers.{name}.Identity' should be a map.");
            }
            if (id["ReauthorizeEvery"] is { } ttl)
            {
                spec["authorizerResultTtlInSeconds"] = ttl.DeepClone();
            }
            spec["identitySource"] = new JsonArray([.. IdentitySource(logicalId, name, id, http: true).Select(static s => (JsonNode?)s)]);
        }
        spec["authorizerPayloadFormatVersion"] = version.DeepClone();
        if (Truthy(authorizer["EnableSimpleResponses"]))
        {
            spec["enableSimpleResponses"] = authorizer["EnableSimpleResponses"]!.DeepClone();
        }
        return new JsonObject { ["type"] = "apiKey", ["name"] = "Unused", ["in"] = "header", [AuthorizerKey] = spec };
    }
}
