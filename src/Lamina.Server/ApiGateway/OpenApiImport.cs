using System.Collections.Immutable;
using System.Globalization;
using System.Text.Json;

namespace Lamina.Server.ApiGateway;

/// <summary>
/// Imports an OpenAPI 3 or Swagger 2 definition into a REST API (ImportRestApi, PutRestApi): paths become resources and
/// methods, <c>x-amazon-apigateway-integration</c> their integrations, security schemes with
/// <c>x-amazon-apigateway-authorizer</c> Lambda authorizers (and <c>api_key</c> schemes <c>apiKeyRequired</c>),
/// <c>x-amazon-apigateway-binary-media-types</c>, <c>-api-key-source</c>, <c>-policy</c> and <c>-endpoint-configuration</c>
/// the API's settings — what SAM generates for an <c>Api</c> event. Pure (no I/O): <see cref="Build"/> is what a
/// template deployment (#23) calls with a definition it has already resolved; <see cref="ImportAsync"/> stores the result.
/// </summary>
/// <remarks>What API Gateway would warn about and Lamina ignores (gateway responses, request validators, models) comes
/// back as warnings; with <c>failonwarnings</c> they fail the import.</remarks>
internal static class OpenApiImport
{
    /// <summary>
    /// The definition an import sends, as JSON: JSON as it is, or YAML (what SAM users and most OpenAPI tools write),
    /// read into the same tree. Null with the client's error when it is neither.
    /// </summary>
    public static JsonDocument? ParseDefinition(ReadOnlySpan<byte> definition, out string? error)
    {
        error = null;
        var text = definition.TrimStart(" \t\r\n"u8);
        if (text.StartsWith("\uFEFF"u8))
        {
            text = text[3..].TrimStart(" \t\r\n"u8);
        }
        try
        {
            if (text.IsEmpty || text[0] is (byte)'{' or (byte)'[')
            {
                return JsonDocument.Parse(text.ToArray());
            }
            var node = Protocols.YamlJson.ReadObject(StrictUtf8.GetString(text), cloudFormationTags: false);
            return JsonDocument.Parse(node.ToJsonString());
        }
        catch (Exception e) when (e is JsonException or FormatException or System.Text.DecoderFallbackException)
        {
            error = $"Invalid OpenAPI input: the definition is neither JSON nor YAML ({e.Message}).";
            return null;
        }
    }

    private static readonly System.Text.UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private static readonly Dictionary<string, string> OperationMethods = new(StringComparer.Ordinal)
    {
        ["get"] = "GET", ["put"] = "PUT", ["post"] = "POST", ["delete"] = "DELETE", ["options"] = "OPTIONS", ["head"] = "HEAD", ["patch"] = "PATCH",
        ["x-amazon-apigateway-any-method"] = "ANY",
    };

    /// <summary>How PutRestApi combines a definition with the API it names: <c>merge</c> adds and replaces, <c>overwrite</c> replaces everything.</summary>
    public enum Mode
    {
        Create,
        Merge,
        Overwrite,
    }

    /// <summary>
    /// Builds the REST API the definition describes: a new one with <paramref name="apiId"/> (<paramref name="existing"/>
    /// null), or <paramref name="existing"/> merged with or overwritten by it. <paramref name="basePath"/> is the
    /// <c>basepath</c> import parameter: <c>ignore</c> (the default), <c>prepend</c> or <c>split</c>. Returns null with an
    /// error message when the definition cannot be imported.
    /// </summary>
    public static StoredRestApi? Build(JsonElement definition, string apiId, StoredRestApi? existing, Mode mode, string? basePath, DateTimeOffset now,
        List<string> warnings, out string? error)
    {
        error = null;
        if (definition.ValueKind != JsonValueKind.Object)
        {
            error = "The definition must be a JSON object (an OpenAPI 3 or Swagger 2 document).";
            return null;
        }
        var swagger2 = Text(definition, "swagger") is { } swagger && swagger.StartsWith("2.", StringComparison.Ordinal);
        var openApi3 = Text(definition, "openapi") is { } openapi && openapi.StartsWith("3.", StringComparison.Ordinal);
        if (!swagger2 && !openApi3)
        {
            error = "The definition is neither Swagger 2.0 (\"swagger\": \"2.0\") nor OpenAPI 3 (\"openapi\": \"3.0.x\").";
            return null;
        }
        var info = definition.TryGetProperty("info", out var infoElement) && infoElement.ValueKind == JsonValueKind.Object ? infoElement : default;
        var title = info.ValueKind == JsonValueKind.Object ? Text(info, "title") : null;
        if (string.IsNullOrWhiteSpace(title) && existing is null)
        {
            error = "The definition has no info.title: it is the API's name.";
            return null;
        }

        // 1. The API itself.
        var rootId = existing?.Api.RootResourceId ?? ApiRegistry.NewId();
        var api = existing?.Api ?? new RestApi
        {
            Id = apiId,
            CreatedDate = now,
            ApiKeySource = "HEADER",
            EndpointConfiguration = new EndpointConfiguration { Types = ["EDGE"] },
            DisableExecuteApiEndpoint = false,
            RootResourceId = rootId,
            Tags = [],
        };
        api = api with
        {
            Name = string.IsNullOrWhiteSpace(title) ? api.Name : title,
            Description = info.ValueKind == JsonValueKind.Object ? Text(info, "description") ?? (mode == Mode.Overwrite ? null : api.Description) : api.Description,
            Version = info.ValueKind == JsonValueKind.Object ? Text(info, "version") ?? api.Version : api.Version,
            ApiStatus = "AVAILABLE",
        };
        if (definition.TryGetProperty("x-amazon-apigateway-binary-media-types", out var binary) && binary.ValueKind == JsonValueKind.Array)
        {
            var types = binary.EnumerateArray().Where(static t => t.ValueKind == JsonValueKind.String).Select(static t => t.GetString()!);
            api = api with { BinaryMediaTypes = mode == Mode.Merge ? [.. (api.BinaryMediaTypes ?? []).Union(types)] : [.. types] };
        }
        if (Text(definition, "x-amazon-apigateway-api-key-source") is { } keySource)
        {
            if (keySource is not ("HEADER" or "AUTHORIZER"))
            {
                error = $"x-amazon-apigateway-api-key-source must be HEADER or AUTHORIZER, not {keySource}.";
                return null;
            }
            api = api with { ApiKeySource = keySource };
        }
        if (definition.TryGetProperty("x-amazon-apigateway-policy", out var policy) && policy.ValueKind == JsonValueKind.Object)
        {
            api = api with { Policy = policy.GetRawText() };
        }
        if (definition.TryGetProperty("x-amazon-apigateway-endpoint-configuration", out var endpoint) && endpoint.ValueKind == JsonValueKind.Object
            && endpoint.TryGetProperty("types", out var endpointTypes) && endpointTypes.ValueKind == JsonValueKind.Array)
        {
            api = api with { EndpointConfiguration = new EndpointConfiguration { Types = [.. endpointTypes.EnumerateArray().Select(static t => t.GetString() ?? "")] } };
        }
        if (definition.TryGetProperty("x-amazon-apigateway-disable-execute-api-endpoint", out var disable) && disable.ValueKind is JsonValueKind.True or JsonValueKind.False)
        {
            api = api with { DisableExecuteApiEndpoint = disable.GetBoolean() };
        }
        foreach (var ignored in new[] { "x-amazon-apigateway-gateway-responses", "x-amazon-apigateway-request-validators", "x-amazon-apigateway-documentation" })
        {
            if (definition.TryGetProperty(ignored, out _))
            {
                warnings.Add($"{ignored} is ignored: Lamina does not serve it.");
            }
        }

        // 2. Authorizers and API keys from the security schemes.
        var schemes = swagger2
            ? definition.TryGetProperty("securityDefinitions", out var definitions) ? definitions : default
            : definition.TryGetProperty("components", out var components) && components.ValueKind == JsonValueKind.Object
                && components.TryGetProperty("securitySchemes", out var securitySchemes) ? securitySchemes : default;
        var authorizers = mode == Mode.Merge && existing is not null ? existing.Authorizers.ToList() : [];
        var schemeKinds = new Dictionary<string, (string Type, string? AuthorizerId)>(StringComparer.Ordinal);
        if (schemes.ValueKind == JsonValueKind.Object)
        {
            foreach (var scheme in schemes.EnumerateObject())
            {
                if (scheme.Value.ValueKind != JsonValueKind.Object)
                {
                    continue;
                }
                if (scheme.Value.TryGetProperty("x-amazon-apigateway-authorizer", out var authorizer) && authorizer.ValueKind == JsonValueKind.Object)
                {
                    var built = Authorizer(scheme.Name, scheme.Value, authorizer, out var authorizerError);
                    if (built is null)
                    {
                        error = authorizerError;
                        return null;
                    }
                    var previous = authorizers.FirstOrDefault(a => a.Name == scheme.Name);
                    built = built with { Id = previous?.Id ?? ApiRegistry.NewId(6) };
                    authorizers.Remove(previous!);
                    authorizers.Add(built);
                    schemeKinds[scheme.Name] = ("CUSTOM", built.Id);
                }
                else if (string.Equals(Text(scheme.Value, "x-amazon-apigateway-authtype"), "awsSigv4", StringComparison.OrdinalIgnoreCase))
                {
                    schemeKinds[scheme.Name] = ("AWS_IAM", null);
                }
                else if (Text(scheme.Value, "type") == "apiKey" && string.Equals(Text(scheme.Value, "name"), "x-api-key", StringComparison.OrdinalIgnoreCase))
                {
                    schemeKinds[scheme.Name] = ("API_KEY", null);
                }
                else
                {
                    warnings.Add($"The security scheme {scheme.Name} is ignored: it is neither a Lambda authorizer, awsSigv4 nor an x-api-key API key.");
                }
            }
        }
        var globalSecurity = definition.TryGetProperty("security", out var security) ? security : default;

        // 3. Resources and methods.
        var prefix = "";
        if (basePath is "prepend" or "split")
        {
            var path = swagger2 ? Text(definition, "basePath") ?? "" : ServerBasePath(definition);
            path = path.Trim('/');
            prefix = basePath == "prepend" ? path : string.Join('/', path.Split('/').Skip(1));
            prefix = prefix.Length == 0 ? "" : "/" + prefix;
        }
        var resources = mode == Mode.Merge && existing is not null
            ? existing.Resources.ToDictionary(r => r.Path!, StringComparer.Ordinal)
            : new Dictionary<string, RestResource>(StringComparer.Ordinal);
        if (!resources.ContainsKey("/"))
        {
            resources["/"] = new RestResource { Id = rootId, Path = "/" };
        }
        if (definition.TryGetProperty("paths", out var paths) && paths.ValueKind == JsonValueKind.Object)
        {
            foreach (var pathItem in paths.EnumerateObject())
            {
                var fullPath = (prefix + (pathItem.Name == "/" ? "" : pathItem.Name)) is { Length: > 0 } p ? p : "/";
                if (RouteTemplates.Validate(fullPath) is { } invalid)
                {
                    error = $"Invalid path {pathItem.Name}: {invalid}.";
                    return null;
                }
                if (pathItem.Value.ValueKind != JsonValueKind.Object)
                {
                    continue;
                }
                var resource = EnsureResource(resources, fullPath);
                var methods = new Dictionary<string, RestMethod>(resource.ResourceMethods ?? [], StringComparer.Ordinal);
                var pathParameters = pathItem.Value.TryGetProperty("parameters", out var shared) ? shared : default;
                foreach (var operation in pathItem.Value.EnumerateObject())
                {
                    if (!OperationMethods.TryGetValue(operation.Name, out var httpMethod) || operation.Value.ValueKind != JsonValueKind.Object)
                    {
                        continue;
                    }
                    var method = Method(httpMethod, operation.Value, pathParameters, globalSecurity, schemeKinds, warnings, $"{httpMethod} {fullPath}", out var methodError);
                    if (method is null)
                    {
                        error = methodError;
                        return null;
                    }
                    methods[httpMethod] = method;
                }
                resources[fullPath] = resource with { ResourceMethods = methods };
            }
        }
        var stored = existing ?? new StoredRestApi { Api = api };
        return stored with
        {
            Api = api,
            Resources = [.. resources.Values.OrderBy(static r => r.Path, StringComparer.Ordinal)],
            Authorizers = [.. authorizers],
        };
    }

    /// <summary>
    /// Imports <paramref name="definition"/> into the registry: a new API (<paramref name="apiId"/> null), or the API
    /// <paramref name="apiId"/> merged or overwritten. The warnings go into the answer, or fail it with
    /// <paramref name="failOnWarnings"/>.
    /// </summary>
    public static async Task<(StoredRestApi? Api, Protocols.AwsError? Error)> ImportAsync(ApiRegistry registry, JsonElement definition, string? apiId, Mode mode,
        string? basePath, bool failOnWarnings, string accountId)
    {
        if (basePath is not (null or "ignore" or "prepend" or "split"))
        {
            return (null, ApiErrors.BadRequest($"Invalid basepath parameter {basePath}: use ignore, prepend or split."));
        }
        StoredRestApi? existing = null;
        if (apiId is not null && !registry.TryGetRest(apiId, out existing))
        {
            return (null, ApiErrors.ApiNotFound(accountId, apiId));
        }
        var id = apiId ?? ApiRegistry.NewId();
        var warnings = new List<string>();
        var built = Build(definition, id, existing, mode, basePath, registry.Now(), warnings, out var error);
        if (built is null)
        {
            return (null, ApiErrors.BadRequest($"Errors found during import:\n\t{error}"));
        }
        if (failOnWarnings && warnings.Count > 0)
        {
            return (null, ApiErrors.BadRequest($"Warnings found during import:\n\t{string.Join("\n\t", warnings)}"));
        }
        built = built with { Api = built.Api with { Warnings = warnings.Count > 0 ? warnings : null } };
        var (stored, editError) = await registry.EditRestAsync(id, edit =>
        {
            // Under the lock: stages and deployments made meanwhile are kept.
            edit.Api = built with { Stages = edit.Api.Stages, Deployments = edit.Api.Deployments };
            return (edit.Api, (Protocols.AwsError?)null);
        }, create: existing is null ? built : null);
        return (stored, editError);
    }

    /// <summary>The path of an OpenAPI 3 definition's first server URL (its variables at their defaults).</summary>
    internal static string ServerBasePath(JsonElement definition)
    {
        if (!definition.TryGetProperty("servers", out var servers) || servers.ValueKind != JsonValueKind.Array || servers.GetArrayLength() == 0)
        {
            return "";
        }
        var server = servers[0];
        var url = Text(server, "url") ?? "";
        if (server.TryGetProperty("variables", out var variables) && variables.ValueKind == JsonValueKind.Object)
        {
            foreach (var variable in variables.EnumerateObject())
            {
                url = url.Replace("{" + variable.Name + "}", variable.Value.ValueKind == JsonValueKind.Object ? Text(variable.Value, "default") ?? "" : "", StringComparison.Ordinal);
            }
        }
        return Uri.TryCreate(url, UriKind.Absolute, out var absolute) ? absolute.AbsolutePath : url;
    }

    /// <summary>The resource of <paramref name="path"/>, creating it and its missing ancestors.</summary>
    private static RestResource EnsureResource(Dictionary<string, RestResource> resources, string path)
    {
        if (resources.TryGetValue(path, out var found))
        {
            return found;
        }
        var slash = path.LastIndexOf('/');
        var parentPath = slash == 0 ? "/" : path[..slash];
        var parent = EnsureResource(resources, parentPath);
        var resource = new RestResource { Id = ApiRegistry.NewId(6), ParentId = parent.Id, PathPart = path[(slash + 1)..], Path = path };
        resources[path] = resource;
        return resource;
    }

    private static RestAuthorizer? Authorizer(string name, JsonElement scheme, JsonElement authorizer, out string? error)
    {
        error = null;
        var type = Text(authorizer, "type")?.ToUpperInvariant();
        if (type is "COGNITO_USER_POOLS")
        {
            error = $"The authorizer {name} is of type cognito_user_pools, which Lamina does not serve (it has no Cognito): use a Lambda authorizer.";
            return null;
        }
        if (type is not ("TOKEN" or "REQUEST"))
        {
            error = $"The authorizer {name} has type {Text(authorizer, "type") ?? "(none)"}: REST APIs take token or request.";
            return null;
        }
        var uri = Text(authorizer, "authorizerUri");
        if (uri is null || IntegrationTarget.Parse(uri) is null && !uri.Contains("${stageVariables.", StringComparison.Ordinal))
        {
            error = $"The authorizer {name} needs an authorizerUri naming a Lambda function.";
            return null;
        }
        var identitySource = Text(authorizer, "identitySource");
        if (identitySource is null && type == "TOKEN")
        {
            // A token authorizer reads the header its security scheme names.
            identitySource = $"method.request.header.{Text(scheme, "name") ?? "Authorization"}";
        }
        int? ttl = null;
        if (authorizer.TryGetProperty("authorizerResultTtlInSeconds", out var ttlElement))
        {
            ttl = ttlElement.ValueKind == JsonValueKind.Number && ttlElement.TryGetInt32(out var seconds) ? seconds
                : ttlElement.ValueKind == JsonValueKind.String && int.TryParse(ttlElement.GetString(), NumberStyles.None, CultureInfo.InvariantCulture, out var parsed) ? parsed
                : null;
        }
        return new RestAuthorizer
        {
            Name = name,
            Type = type,
            AuthType = Text(scheme, "x-amazon-apigateway-authtype") ?? "custom",
            AuthorizerUri = uri,
            AuthorizerCredentials = Text(authorizer, "authorizerCredentials"),
            IdentitySource = identitySource,
            IdentityValidationExpression = Text(authorizer, "identityValidationExpression"),
            AuthorizerResultTtlInSeconds = ttl ?? 300,
        };
    }

    private static RestMethod? Method(string httpMethod, JsonElement operation, JsonElement pathParameters, JsonElement globalSecurity,
        Dictionary<string, (string Type, string? AuthorizerId)> schemes, List<string> warnings, string where, out string? error)
    {
        error = null;
        // Security: the operation's, else the document's. Each requirement names schemes; the first authorizer or IAM wins.
        var security = operation.TryGetProperty("security", out var own) ? own : globalSecurity;
        string authorizationType = "NONE";
        string? authorizerId = null;
        var apiKeyRequired = false;
        List<string>? scopes = null;
        if (security.ValueKind == JsonValueKind.Array)
        {
            foreach (var requirement in security.EnumerateArray())
            {
                if (requirement.ValueKind != JsonValueKind.Object)
                {
                    continue;
                }
                foreach (var entry in requirement.EnumerateObject())
                {
                    if (!schemes.TryGetValue(entry.Name, out var scheme))
                    {
                        warnings.Add($"{where}: the security scheme {entry.Name} is not defined (or not served); it is ignored.");
                        continue;
                    }
                    switch (scheme.Type)
                    {
                        case "API_KEY":
                            apiKeyRequired = true;
                            break;
                        case "CUSTOM" when authorizationType == "NONE":
                            (authorizationType, authorizerId) = ("CUSTOM", scheme.AuthorizerId);
                            break;
                        case "AWS_IAM" when authorizationType == "NONE":
                            authorizationType = "AWS_IAM";
                            break;
                    }
                    if (entry.Value.ValueKind == JsonValueKind.Array && entry.Value.GetArrayLength() > 0)
                    {
                        scopes = [.. entry.Value.EnumerateArray().Select(static s => s.GetString() ?? "")];
                    }
                }
            }
        }
        var requestParameters = new Dictionary<string, bool>(StringComparer.Ordinal);
        foreach (var parameters in new[] { pathParameters, operation.TryGetProperty("parameters", out var ownParameters) ? ownParameters : default })
        {
            if (parameters.ValueKind != JsonValueKind.Array)
            {
                continue;
            }
            foreach (var parameter in parameters.EnumerateArray())
            {
                var location = parameter.ValueKind == JsonValueKind.Object ? Text(parameter, "in") : null;
                var name = parameter.ValueKind == JsonValueKind.Object ? Text(parameter, "name") : null;
                var kind = location switch { "path" => "path", "query" => "querystring", "header" => "header", _ => null };
                if (kind is not null && name is not null)
                {
                    requestParameters[$"method.request.{kind}.{name}"] = parameter.TryGetProperty("required", out var required) && required.ValueKind == JsonValueKind.True;
                }
            }
        }
        var methodResponses = new Dictionary<string, MethodResponse>(StringComparer.Ordinal);
        if (operation.TryGetProperty("responses", out var responses) && responses.ValueKind == JsonValueKind.Object)
        {
            foreach (var response in responses.EnumerateObject())
            {
                if (response.Name == "default" || response.Value.ValueKind != JsonValueKind.Object)
                {
                    continue;
                }
                Dictionary<string, bool>? headers = null;
                if (response.Value.TryGetProperty("headers", out var headerSet) && headerSet.ValueKind == JsonValueKind.Object)
                {
                    headers = headerSet.EnumerateObject().ToDictionary(h => $"method.response.header.{h.Name}", static _ => false, StringComparer.Ordinal);
                }
                methodResponses[response.Name] = new MethodResponse { StatusCode = response.Name, ResponseParameters = headers };
            }
        }
        RestIntegration? integration = null;
        if (operation.TryGetProperty("x-amazon-apigateway-integration", out var integrationElement) && integrationElement.ValueKind == JsonValueKind.Object)
        {
            integration = Integration(integrationElement, where, out error);
            if (integration is null)
            {
                return null;
            }
        }
        else
        {
            warnings.Add($"{where} has no x-amazon-apigateway-integration: it answers 500 until it gets one.");
        }
        return new RestMethod
        {
            HttpMethod = httpMethod,
            AuthorizationType = authorizationType,
            AuthorizerId = authorizerId,
            ApiKeyRequired = apiKeyRequired,
            OperationName = Text(operation, "operationId"),
            RequestParameters = requestParameters.Count > 0 ? requestParameters : null,
            MethodResponses = methodResponses.Count > 0 ? methodResponses : null,
            MethodIntegration = integration,
            AuthorizationScopes = scopes,
        };
    }

    private static RestIntegration? Integration(JsonElement element, string where, out string? error)
    {
        error = null;
        var type = Text(element, "type")?.ToUpperInvariant();
        if (type is not ("AWS" or "AWS_PROXY" or "HTTP" or "HTTP_PROXY" or "MOCK"))
        {
            error = $"{where}: x-amazon-apigateway-integration has type {Text(element, "type") ?? "(none)"}; use aws_proxy, http_proxy, mock, aws or http.";
            return null;
        }
        if (element.TryGetProperty("uri", out var uriElement) && uriElement.ValueKind is not (JsonValueKind.String or JsonValueKind.Null))
        {
            error = $"{where}: the integration's uri is not a string (resolve template functions such as Fn::Sub before importing).";
            return null;
        }
        var uri = Text(element, "uri");
        if (type is "AWS_PROXY" && (uri is null || IntegrationTarget.Parse(uri) is null && !uri.Contains("${stageVariables.", StringComparison.Ordinal)))
        {
            error = $"{where}: an aws_proxy integration needs a uri naming a Lambda function (arn:aws:apigateway:REGION:lambda:path/2015-03-31/functions/FUNCTION_ARN/invocations).";
            return null;
        }
        if (type is "HTTP_PROXY" or "HTTP" && !Uri.TryCreate(uri, UriKind.Absolute, out _))
        {
            error = $"{where}: an http integration needs an absolute http(s) uri.";
            return null;
        }
        int? timeout = element.TryGetProperty("timeoutInMillis", out var timeoutElement) && timeoutElement.TryGetInt32(out var millis) ? millis : null;
        if (timeout is < 50 or > LiveIntegration.RestApiDefaultTimeoutMs)
        {
            error = $"{where}: timeoutInMillis must be between 50 and 29000.";
            return null;
        }
        Dictionary<string, IntegrationResponse>? integrationResponses = null;
        if (element.TryGetProperty("responses", out var responses) && responses.ValueKind == JsonValueKind.Object)
        {
            integrationResponses = new Dictionary<string, IntegrationResponse>(StringComparer.Ordinal);
            foreach (var response in responses.EnumerateObject())
            {
                if (response.Value.ValueKind != JsonValueKind.Object)
                {
                    continue;
                }
                var status = Text(response.Value, "statusCode") ?? "200";
                integrationResponses[status] = new IntegrationResponse
                {
                    StatusCode = status,
                    SelectionPattern = response.Name == "default" ? null : response.Name,
                    ResponseParameters = Map(response.Value, "responseParameters"),
                    ResponseTemplates = Map(response.Value, "responseTemplates"),
                    ContentHandling = Text(response.Value, "contentHandling"),
                };
            }
        }
        return new RestIntegration
        {
            Type = type,
            HttpMethod = Text(element, "httpMethod")?.ToUpperInvariant() ?? (type is "AWS_PROXY" or "AWS" ? "POST" : null),
            Uri = uri,
            ConnectionType = Text(element, "connectionType") ?? "INTERNET",
            Credentials = Text(element, "credentials"),
            RequestParameters = Map(element, "requestParameters"),
            RequestTemplates = Map(element, "requestTemplates"),
            PassthroughBehavior = Text(element, "passthroughBehavior")?.ToUpperInvariant() ?? "WHEN_NO_MATCH",
            ContentHandling = Text(element, "contentHandling"),
            TimeoutInMillis = timeout ?? LiveIntegration.RestApiDefaultTimeoutMs,
            CacheNamespace = Text(element, "cacheNamespace"),
            CacheKeyParameters = element.TryGetProperty("cacheKeyParameters", out var keys) && keys.ValueKind == JsonValueKind.Array
                ? [.. keys.EnumerateArray().Select(static k => k.GetString() ?? "")]
                : [],
            IntegrationResponses = integrationResponses,
        };
    }

    private static Dictionary<string, string>? Map(JsonElement element, string name)
    {
        if (!element.TryGetProperty(name, out var map) || map.ValueKind != JsonValueKind.Object)
        {
            return null;
        }
        return map.EnumerateObject().ToDictionary(static m => m.Name, static m => m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText(),
            StringComparer.Ordinal);
    }

    private static string? Text(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    /// <summary>The resources of an API, by path (what <see cref="Build"/> produced), for tests and callers.</summary>
    public static ImmutableDictionary<string, RestResource> ByPath(StoredRestApi api) =>
        api.Resources.ToImmutableDictionary(static r => r.Path!, StringComparer.Ordinal);
}
