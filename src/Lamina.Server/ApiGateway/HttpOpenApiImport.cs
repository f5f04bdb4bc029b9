using System.Globalization;
using System.Text.Json;

namespace Lamina.Server.ApiGateway;

/// <summary>
/// Imports an OpenAPI 3 definition into an HTTP API (ImportApi, ReimportApi): each path and operation becomes a route
/// (<c>x-amazon-apigateway-any-method</c> → ANY, the <c>$default</c> path → the <c>$default</c> route) with an
/// integration from its <c>x-amazon-apigateway-integration</c>; security schemes with
/// <c>x-amazon-apigateway-authorizer</c> become JWT and Lambda (request) authorizers; <c>x-amazon-apigateway-cors</c> the
/// API's CORS — what SAM generates for an <c>HttpApi</c> event. Pure: <see cref="Build"/> is callable from C# (#23);
/// a reimport replaces routes, integrations, authorizers and CORS and keeps stages and deployments (AutoDeploy stages
/// follow, as after any change).
/// </summary>
internal static class HttpOpenApiImport
{
    private static readonly Dictionary<string, string> OperationMethods = new(StringComparer.Ordinal)
    {
        ["get"] = "GET", ["put"] = "PUT", ["post"] = "POST", ["delete"] = "DELETE", ["options"] = "OPTIONS", ["head"] = "HEAD", ["patch"] = "PATCH",
        ["x-amazon-apigateway-any-method"] = "ANY",
    };

    /// <summary>
    /// The HTTP API the definition describes: new with <paramref name="apiId"/>, or <paramref name="existing"/> with its
    /// routes, integrations, authorizers and CORS replaced. Null with an error message when it cannot be imported.
    /// </summary>
    public static StoredHttpApi? Build(JsonElement definition, string apiId, StoredHttpApi? existing, string? basePath, DateTimeOffset now,
        List<string> warnings, out string? error)
    {
        error = null;
        if (definition.ValueKind != JsonValueKind.Object || Text(definition, "openapi") is not { } version || !version.StartsWith("3.", StringComparison.Ordinal))
        {
            error = "HTTP APIs import OpenAPI 3 definitions (\"openapi\": \"3.0.x\") in JSON.";
            return null;
        }
        var info = definition.TryGetProperty("info", out var infoElement) && infoElement.ValueKind == JsonValueKind.Object ? infoElement : default;
        var title = info.ValueKind == JsonValueKind.Object ? Text(info, "title") : null;
        if (string.IsNullOrWhiteSpace(title) && existing is null)
        {
            error = "The definition has no info.title: it is the API's name.";
            return null;
        }
        var api = existing?.Api ?? new HttpApi
        {
            ApiId = apiId,
            ProtocolType = "HTTP",
            CreatedDate = now,
            ApiKeySelectionExpression = "$request.header.x-api-key",
            RouteSelectionExpression = "$request.method $request.path",
            DisableExecuteApiEndpoint = false,
            IpAddressType = "ipv4",
            Tags = [],
        };
        api = api with
        {
            Name = string.IsNullOrWhiteSpace(title) ? api.Name : title,
            Description = info.ValueKind == JsonValueKind.Object ? Text(info, "description") : null,
            Version = info.ValueKind == JsonValueKind.Object ? Text(info, "version") : null,
            CorsConfiguration = null,
        };
        if (definition.TryGetProperty("x-amazon-apigateway-cors", out var cors) && cors.ValueKind == JsonValueKind.Object)
        {
            api = api with { CorsConfiguration = Cors(cors) };
        }
        if (definition.TryGetProperty("x-amazon-apigateway-disable-execute-api-endpoint", out var disable) && disable.ValueKind is JsonValueKind.True or JsonValueKind.False)
        {
            api = api with { DisableExecuteApiEndpoint = disable.GetBoolean() };
        }
        if (definition.TryGetProperty("tags", out var tags) && tags.ValueKind == JsonValueKind.Array)
        {
            var map = new Dictionary<string, string>(api.Tags ?? [], StringComparer.Ordinal);
            foreach (var tag in tags.EnumerateArray())
            {
                if (Text(tag, "name") is { } name && Text(tag, "x-amazon-apigateway-tag-value") is { } value)
                {
                    map[name] = value;
                }
            }
            api = api with { Tags = map };
        }

        // Authorizers from the security schemes.
        var authorizers = new List<HttpAuthorizer>();
        var schemes = new Dictionary<string, HttpAuthorizer>(StringComparer.Ordinal);
        var iamSchemes = new HashSet<string>(StringComparer.Ordinal);
        if (definition.TryGetProperty("components", out var components) && components.ValueKind == JsonValueKind.Object
            && components.TryGetProperty("securitySchemes", out var securitySchemes) && securitySchemes.ValueKind == JsonValueKind.Object)
        {
            foreach (var scheme in securitySchemes.EnumerateObject())
            {
                // An awsSigv4 scheme is IAM authorization (the built-in AWS_IAM), not an authorizer.
                if (scheme.Value.ValueKind == JsonValueKind.Object && scheme.Value.TryGetProperty("x-amazon-apigateway-authtype", out var authType)
                    && authType.ValueKind == JsonValueKind.String && string.Equals(authType.GetString(), "awsSigv4", StringComparison.OrdinalIgnoreCase))
                {
                    iamSchemes.Add(scheme.Name);
                    continue;
                }
                if (scheme.Value.ValueKind != JsonValueKind.Object || !scheme.Value.TryGetProperty("x-amazon-apigateway-authorizer", out var spec)
                    || spec.ValueKind != JsonValueKind.Object)
                {
                    warnings.Add($"The security scheme {scheme.Name} has no x-amazon-apigateway-authorizer; it is ignored.");
                    continue;
                }
                var authorizer = Authorizer(scheme.Name, spec, out error);
                if (authorizer is null)
                {
                    return null;
                }
                authorizer = authorizer with { AuthorizerId = existing?.Authorizers.FirstOrDefault(a => a.Name == scheme.Name)?.AuthorizerId ?? ApiRegistry.NewId(6) };
                authorizers.Add(authorizer);
                schemes[scheme.Name] = authorizer;
            }
        }
        var globalSecurity = definition.TryGetProperty("security", out var security) ? security : default;

        // Routes and their integrations.
        var prefix = basePath == "prepend" ? OpenApiImport.ServerBasePath(definition).TrimEnd('/') : "";
        var routes = new List<HttpRoute>();
        var integrations = new List<HttpIntegration>();
        if (definition.TryGetProperty("paths", out var paths) && paths.ValueKind == JsonValueKind.Object)
        {
            foreach (var pathItem in paths.EnumerateObject())
            {
                if (pathItem.Value.ValueKind != JsonValueKind.Object)
                {
                    continue;
                }
                var isDefault = pathItem.Name == "$default";
                var path = isDefault ? null : (prefix + pathItem.Name) is { Length: > 0 } p ? p : "/";
                if (path is not null && RouteTemplates.Validate(path) is { } invalid)
                {
                    error = $"Invalid path {pathItem.Name}: {invalid}.";
                    return null;
                }
                foreach (var operation in pathItem.Value.EnumerateObject())
                {
                    if (!OperationMethods.TryGetValue(operation.Name, out var method) || operation.Value.ValueKind != JsonValueKind.Object)
                    {
                        continue;
                    }
                    var routeKey = isDefault || (operation.Value.TryGetProperty("isDefaultRoute", out var flag) && flag.ValueKind == JsonValueKind.True)
                        ? "$default"
                        : $"{method} {path}";
                    if (routes.Any(r => r.RouteKey == routeKey))
                    {
                        error = $"The route {routeKey} is defined twice.";
                        return null;
                    }
                    var route = new HttpRoute { RouteId = ApiRegistry.NewId(7), RouteKey = routeKey, AuthorizationType = "NONE", ApiKeyRequired = false };
                    if (operation.Value.TryGetProperty("operationId", out var operationId) && operationId.ValueKind == JsonValueKind.String)
                    {
                        route = route with { OperationName = operationId.GetString() };
                    }
                    if (operation.Value.TryGetProperty("x-amazon-apigateway-integration", out var spec) && spec.ValueKind == JsonValueKind.Object)
                    {
                        var integration = Integration(spec, routeKey, out error);
                        if (integration is null)
                        {
                            return null;
                        }
                        integrations.Add(integration);
                        route = route with { Target = $"integrations/{integration.IntegrationId}" };
                    }
                    else
                    {
                        warnings.Add($"{routeKey} has no x-amazon-apigateway-integration: it answers 500 until it gets one.");
                    }
                    var requirements = operation.Value.TryGetProperty("security", out var own) ? own : globalSecurity;
                    if (requirements.ValueKind == JsonValueKind.Array)
                    {
                        foreach (var requirement in requirements.EnumerateArray().Where(static r => r.ValueKind == JsonValueKind.Object))
                        {
                            foreach (var entry in requirement.EnumerateObject())
                            {
                                if (iamSchemes.Contains(entry.Name))
                                {
                                    route = route with { AuthorizationType = "AWS_IAM", AuthorizerId = null, AuthorizationScopes = null };
                                    continue;
                                }
                                if (!schemes.TryGetValue(entry.Name, out var authorizer))
                                {
                                    warnings.Add($"{routeKey}: the security scheme {entry.Name} is not an authorizer; it is ignored.");
                                    continue;
                                }
                                route = route with
                                {
                                    AuthorizationType = authorizer.AuthorizerType == "JWT" ? "JWT" : "CUSTOM",
                                    AuthorizerId = authorizer.AuthorizerId,
                                    AuthorizationScopes = entry.Value.ValueKind == JsonValueKind.Array && entry.Value.GetArrayLength() > 0
                                        ? [.. entry.Value.EnumerateArray().Select(static s => s.GetString() ?? "")]
                                        : null,
                                };
                            }
                        }
                    }
                    routes.Add(route);
                }
            }
        }
        var stored = existing ?? new StoredHttpApi { Api = api };
        return stored with { Api = api, Routes = [.. routes], Integrations = [.. integrations], Authorizers = [.. authorizers] };
    }

    /// <summary>ImportApi (<paramref name="apiId"/> null) and ReimportApi: builds and stores the API.</summary>
    public static async Task<(StoredHttpApi? Api, Protocols.AwsError? Error)> ImportAsync(ApiRegistry registry, JsonElement definition, string? apiId,
        string? basePath, bool failOnWarnings, string accountId)
    {
        if (basePath is not (null or "ignore" or "prepend" or "split"))
        {
            return (null, ApiErrors.BadRequest($"Invalid basepath parameter {basePath}: use ignore, prepend or split."));
        }
        StoredHttpApi? existing = null;
        if (apiId is not null && !registry.TryGetHttp(apiId, out existing))
        {
            return (null, ApiErrors.ApiNotFound(accountId, apiId));
        }
        var id = apiId ?? ApiRegistry.NewId();
        var warnings = new List<string>();
        var built = Build(definition, id, existing, basePath, registry.Now(), warnings, out var error);
        if (built is null)
        {
            return (null, ApiErrors.BadRequest(error!));
        }
        if (failOnWarnings && warnings.Count > 0)
        {
            return (null, ApiErrors.BadRequest($"Warnings found during import: {string.Join("; ", warnings)}"));
        }
        built = built with { Api = built.Api with { Warnings = warnings.Count > 0 ? warnings : null, ImportInfo = null } };
        return await registry.EditHttpAsync(id, edit =>
        {
            // Under the lock: stages and deployments made meanwhile are kept.
            edit.Api = built with { Stages = edit.Api.Stages, Deployments = edit.Api.Deployments };
            return (edit.Api, (Protocols.AwsError?)null);
        }, create: existing is null ? built : null);
    }

    private static ApiCors Cors(JsonElement cors) => new()
    {
        AllowOrigins = Strings(cors, "allowOrigins"),
        AllowMethods = Strings(cors, "allowMethods"),
        AllowHeaders = Strings(cors, "allowHeaders"),
        ExposeHeaders = Strings(cors, "exposeHeaders"),
        AllowCredentials = cors.TryGetProperty("allowCredentials", out var credentials) && credentials.ValueKind == JsonValueKind.True ? true : null,
        MaxAge = cors.TryGetProperty("maxAge", out var maxAge) && maxAge.TryGetInt32(out var seconds) ? seconds : null,
    };

    private static HttpAuthorizer? Authorizer(string name, JsonElement spec, out string? error)
    {
        error = null;
        var type = Text(spec, "type")?.ToLowerInvariant();
        var identity = Text(spec, "identitySource") is { } sources
            ? sources.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToList()
            : spec.TryGetProperty("identitySource", out var list) && list.ValueKind == JsonValueKind.Array ? Strings(spec, "identitySource") : null;
        switch (type)
        {
            case "jwt":
                var jwt = spec.TryGetProperty("jwtConfiguration", out var configuration) && configuration.ValueKind == JsonValueKind.Object ? configuration : default;
                var issuer = jwt.ValueKind == JsonValueKind.Object ? Text(jwt, "issuer") : null;
                if (issuer is null)
                {
                    error = $"The JWT authorizer {name} needs jwtConfiguration.issuer.";
                    return null;
                }
                return new HttpAuthorizer
                {
                    Name = name, AuthorizerType = "JWT", IdentitySource = identity ?? ["$request.header.Authorization"],
                    JwtConfiguration = new JwtConfiguration { Issuer = issuer, Audience = Strings(jwt, "audience") },
                };
            case "request":
                var uri = Text(spec, "authorizerUri");
                if (uri is null || IntegrationTarget.Parse(uri) is null && !uri.Contains("${stageVariables.", StringComparison.Ordinal))
                {
                    error = $"The authorizer {name} needs an authorizerUri naming a Lambda function.";
                    return null;
                }
                int? ttl = spec.TryGetProperty("authorizerResultTtlInSeconds", out var ttlElement)
                    ? ttlElement.ValueKind == JsonValueKind.Number && ttlElement.TryGetInt32(out var seconds) ? seconds
                        : ttlElement.ValueKind == JsonValueKind.String && int.TryParse(ttlElement.GetString(), NumberStyles.None, CultureInfo.InvariantCulture, out var parsed) ? parsed
                        : null
                    : null;
                return new HttpAuthorizer
                {
                    Name = name, AuthorizerType = "REQUEST", AuthorizerUri = uri, IdentitySource = identity ?? [],
                    AuthorizerPayloadFormatVersion = Text(spec, "authorizerPayloadFormatVersion") ?? "2.0",
                    EnableSimpleResponses = spec.TryGetProperty("enableSimpleResponses", out var simple) && simple.ValueKind == JsonValueKind.True ? true : null,
                    AuthorizerResultTtlInSeconds = ttl ?? 0,
                    AuthorizerCredentialsArn = Text(spec, "authorizerCredentials"),
                };
            default:
                error = $"The authorizer {name} has type {Text(spec, "type") ?? "(none)"}: HTTP APIs take jwt or request.";
                return null;
        }
    }

    private static HttpIntegration? Integration(JsonElement spec, string routeKey, out string? error)
    {
        error = null;
        var type = Text(spec, "type")?.ToUpperInvariant();
        if (spec.TryGetProperty("uri", out var uriElement) && uriElement.ValueKind is not (JsonValueKind.String or JsonValueKind.Null))
        {
            error = $"{routeKey}: the integration's uri is not a string (resolve template functions such as Fn::Sub before importing).";
            return null;
        }
        var uri = Text(spec, "uri");
        int? timeout = spec.TryGetProperty("timeoutInMillis", out var timeoutElement) && timeoutElement.TryGetInt32(out var millis) ? millis : null;
        var integration = new HttpIntegration
        {
            IntegrationId = ApiRegistry.NewId(7),
            IntegrationType = type,
            IntegrationUri = uri,
            IntegrationMethod = Text(spec, "httpMethod")?.ToUpperInvariant(),
            PayloadFormatVersion = Text(spec, "payloadFormatVersion") ?? (type == "HTTP_PROXY" ? "1.0" : "2.0"),
            ConnectionType = Text(spec, "connectionType") ?? "INTERNET",
            CredentialsArn = Text(spec, "credentials"),
            TimeoutInMillis = timeout ?? LiveIntegration.HttpApiDefaultTimeoutMs,
        };
        switch (type)
        {
            case "AWS_PROXY" when uri is not null && (IntegrationTarget.Parse(uri) is not null || uri.Contains("${stageVariables.", StringComparison.Ordinal)):
                return integration with { IntegrationMethod = integration.IntegrationMethod ?? "POST" };
            case "AWS_PROXY":
                error = $"{routeKey}: an aws_proxy integration needs a uri naming a Lambda function.";
                return null;
            case "HTTP_PROXY" when Uri.TryCreate(uri, UriKind.Absolute, out var url) && url.Scheme is "http" or "https":
                return integration with { IntegrationMethod = integration.IntegrationMethod ?? "ANY" };
            case "HTTP_PROXY":
                error = $"{routeKey}: an http_proxy integration needs an absolute http(s) uri.";
                return null;
            default:
                error = $"{routeKey}: x-amazon-apigateway-integration has type {Text(spec, "type") ?? "(none)"}; HTTP APIs take aws_proxy or http_proxy.";
                return null;
        }
    }

    private static List<string>? Strings(JsonElement element, string name) =>
        element.TryGetProperty(name, out var list) && list.ValueKind == JsonValueKind.Array
            ? [.. list.EnumerateArray().Where(static v => v.ValueKind == JsonValueKind.String).Select(static v => v.GetString()!)]
            : null;

    private static string? Text(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
}
