using System.Collections.Concurrent;
using Lamina.Server.Hosting;
using Lamina.Server.Protocols;

namespace Lamina.Server.ApiGateway;

/// <summary>
/// What the data plane serves for one API: its stages, each with the route table compiled from the deployment it
/// points at. Immutable once built; <see cref="ApiRegistry"/> builds a new one after every change of the API.
/// </summary>
internal sealed class LiveApi
{
    public required string ApiId { get; init; }

    /// <summary>An HTTP API (apigatewayv2); else a REST API.</summary>
    public required bool IsHttp { get; init; }

    /// <summary>The API's <c>disableExecuteApiEndpoint</c>: its default endpoint answers nothing.</summary>
    public bool Disabled { get; init; }

    public required IReadOnlyDictionary<string, LiveStage> Stages { get; init; }

    public static LiveApi Build(StoredHttpApi api, LaminaOptions options, Func<string, HttpApiSnapshot?> snapshotOf)
    {
        var apiId = api.Api.ApiId!;
        var stages = new Dictionary<string, LiveStage>(StringComparer.Ordinal);
        foreach (var stage in api.Stages)
        {
            var snapshot = stage.DeploymentId is { } deployment ? snapshotOf(deployment) : null;
            var routes = new RouteTable<LiveRoute>();
            CorsRules? cors = null;
            List<LiveAuthorizer> usedAuthorizers = [];
            if (snapshot is not null)
            {
                var integrations = snapshot.Integrations.ToDictionary(i => i.IntegrationId!, i => LiveIntegration.Of(i), StringComparer.Ordinal);
                var authorizers = snapshot.Authorizers.ToDictionary(a => a.AuthorizerId!, a => LiveAuthorizer.Of(a, apiId, options), StringComparer.Ordinal);
                foreach (var route in snapshot.Routes)
                {
                    var key = route.RouteKey!;
                    var integration = route.Target is { } target && target.StartsWith("integrations/", StringComparison.Ordinal)
                        ? integrations.GetValueOrDefault(target["integrations/".Length..]) : null;
                    var authorizer = route.AuthorizerId is { } authorizerId ? authorizers.GetValueOrDefault(authorizerId) : null;
                    if (authorizer is not null && !usedAuthorizers.Contains(authorizer))
                    {
                        usedAuthorizers.Add(authorizer);
                    }
                    var (method, path) = SplitRouteKey(key);
                    var live = new LiveRoute
                    {
                        RouteKey = key,
                        Method = method,
                        ResourcePath = path,
                        ResourceId = route.RouteId!,
                        AuthorizationType = route.AuthorizationType ?? "NONE",
                        Authorizer = authorizer,
                        Scopes = route.AuthorizationScopes,
                        ApiKeyRequired = route.ApiKeyRequired == true,
                        Integration = integration,
                        SourceArn = $"{ApiArns.ExecuteApi(options, apiId)}/{stage.StageName}/{(key == "$default" ? "$default" : method + path)}",
                        OperationName = route.OperationName,
                    };
                    if (key == "$default")
                    {
                        routes.SetDefault(live);
                    }
                    else
                    {
                        routes.Add(method, path!, live);
                    }
                }
                if (snapshot.Cors is { } c)
                {
                    cors = new CorsRules(c.AllowCredentials, c.AllowHeaders, c.AllowMethods, c.AllowOrigins, c.ExposeHeaders, c.MaxAge is -1 ? null : c.MaxAge,
                        StatusCodes.Status204NoContent);
                }
            }
            stages[stage.StageName!] = new LiveStage
            {
                Name = stage.StageName!,
                ApiId = apiId,
                Variables = stage.StageVariables ?? [],
                AccessLog = LiveAccessLog.Of(stage.AccessLogSettings?.DestinationArn, stage.AccessLogSettings?.Format),
                Routes = routes,
                Cors = cors,
                Authorizers = usedAuthorizers,
                ThrottlingBurstLimit = stage.DefaultRouteSettings?.ThrottlingBurstLimit,
                ThrottlingRateLimit = stage.DefaultRouteSettings?.ThrottlingRateLimit,
            };
        }
        return new LiveApi { ApiId = apiId, IsHttp = true, Disabled = api.Api.DisableExecuteApiEndpoint == true, Stages = stages };
    }

    public static LiveApi Build(StoredRestApi api, LaminaOptions options, Func<string, RestApiSnapshot?> snapshotOf)
    {
        var apiId = api.Api.Id!;
        var stages = new Dictionary<string, LiveStage>(StringComparer.Ordinal);
        foreach (var stage in api.Stages)
        {
            var snapshot = stage.DeploymentId is { } deployment ? snapshotOf(deployment) : null;
            var routes = new RouteTable<LiveRoute> { ResourceFirst = true };
            List<LiveAuthorizer> usedAuthorizers = [];
            if (snapshot is not null)
            {
                var authorizers = snapshot.Authorizers.ToDictionary(a => a.Id!, a => LiveAuthorizer.Of(a, apiId, options), StringComparer.Ordinal);
                usedAuthorizers.AddRange(authorizers.Values);
                foreach (var resource in snapshot.Resources)
                {
                    foreach (var (httpMethod, method) in resource.ResourceMethods ?? [])
                    {
                        var path = resource.Path!;
                        routes.Add(httpMethod, path, new LiveRoute
                        {
                            RouteKey = $"{httpMethod} {path}",
                            Method = httpMethod,
                            ResourcePath = path,
                            ResourceId = resource.Id!,
                            AuthorizationType = method.AuthorizationType ?? "NONE",
                            Authorizer = method.AuthorizerId is { } id ? authorizers.GetValueOrDefault(id) : null,
                            Scopes = method.AuthorizationScopes,
                            ApiKeyRequired = method.ApiKeyRequired == true,
                            Integration = method.MethodIntegration is { } integration ? LiveIntegration.Of(integration) : null,
                            SourceArn = $"{ApiArns.ExecuteApi(options, apiId)}/{stage.StageName}/{httpMethod}{path}",
                            OperationName = method.OperationName,
                            Mock = LiveMock.Of(method.MethodIntegration),
                        });
                    }
                }
            }
            var settings = stage.MethodSettings?.GetValueOrDefault("*/*");
            stages[stage.StageName!] = new LiveStage
            {
                Name = stage.StageName!,
                ApiId = apiId,
                Variables = stage.Variables ?? [],
                AccessLog = LiveAccessLog.Of(stage.AccessLogSettings?.DestinationArn, stage.AccessLogSettings?.Format),
                Routes = routes,
                BinaryMediaTypes = snapshot?.BinaryMediaTypes,
                Authorizers = usedAuthorizers,
                ApiKeySource = snapshot?.ApiKeySource ?? "HEADER",
                ThrottlingBurstLimit = settings?.ThrottlingBurstLimit,
                ThrottlingRateLimit = settings?.ThrottlingRateLimit,
            };
        }
        return new LiveApi { ApiId = apiId, IsHttp = false, Disabled = api.Api.DisableExecuteApiEndpoint == true, Stages = stages };
    }

    /// <summary><c>GET /pets/{id}</c> → (<c>GET</c>, <c>/pets/{id}</c>); <c>$default</c> → (<c>ANY</c>, null).</summary>
    public static (string Method, string? Path) SplitRouteKey(string routeKey)
    {
        if (routeKey == "$default")
        {
            return ("ANY", null);
        }
        var space = routeKey.IndexOf(' ', StringComparison.Ordinal);
        return (routeKey[..space], routeKey[(space + 1)..]);
    }
}

internal sealed class LiveStage
{
    public required string Name { get; init; }
    public required string ApiId { get; init; }
    public required IReadOnlyDictionary<string, string> Variables { get; init; }
    public LiveAccessLog? AccessLog { get; init; }
    public required RouteTable<LiveRoute> Routes { get; init; }

    /// <summary>HTTP APIs: the API's CORS settings, answered by API Gateway itself.</summary>
    public CorsRules? Cors { get; init; }

    /// <summary>REST APIs: the media types whose bodies pass as binary (base64 in the event).</summary>
    public IReadOnlyList<string>? BinaryMediaTypes { get; init; }

    /// <summary>REST APIs: where the API key comes from, <c>HEADER</c> (<c>x-api-key</c>) or <c>AUTHORIZER</c>.</summary>
    public string ApiKeySource { get; init; } = "HEADER";

    /// <summary>The stage's throttle (an HTTP API's default route settings, a REST API's <c>*/*</c> method settings).</summary>
    public int? ThrottlingBurstLimit { get; init; }
    public double? ThrottlingRateLimit { get; init; }

    /// <summary>The authorizers the stage's routes use (their caches).</summary>
    public IReadOnlyList<LiveAuthorizer> Authorizers { get; init; } = [];

    /// <summary>ResetAuthorizersCache / FlushStageAuthorizersCache: every cached decision of the stage is dropped.</summary>
    public void ClearAuthorizerCaches()
    {
        foreach (var authorizer in Authorizers)
        {
            authorizer.Cache.Clear();
        }
    }

    /// <summary>The token bucket of the stage's throttle, when it has one (created at first use).</summary>
    public TokenBucket? Throttle
    {
        get
        {
            if (_throttle is null && ThrottlingRateLimit is { } rate)
            {
                Interlocked.CompareExchange(ref _throttle, new TokenBucket(rate, ThrottlingBurstLimit ?? (int)Math.Ceiling(rate)), null);
            }
            return _throttle;
        }
    }

    private TokenBucket? _throttle;
}

internal sealed class LiveRoute
{
    /// <summary>The route key (<c>GET /pets/{id}</c>, <c>$default</c>); for a REST API, its method and resource path.</summary>
    public required string RouteKey { get; init; }

    /// <summary>The route's method (<c>ANY</c> included).</summary>
    public required string Method { get; init; }

    /// <summary>The path template (<c>/pets/{id}</c>); null for <c>$default</c>.</summary>
    public required string? ResourcePath { get; init; }

    /// <summary>The route id (HTTP API) or resource id (REST API).</summary>
    public required string ResourceId { get; init; }

    public required string AuthorizationType { get; init; }
    public LiveAuthorizer? Authorizer { get; init; }
    public List<string>? Scopes { get; init; }
    public bool ApiKeyRequired { get; init; }
    public LiveIntegration? Integration { get; init; }

    /// <summary>The ARN API Gateway invokes the integration's function as (<c>AWS:SourceArn</c> in its resource policy).</summary>
    public required string SourceArn { get; init; }

    public string? OperationName { get; init; }

    /// <summary>A REST MOCK integration's answer.</summary>
    public LiveMock? Mock { get; init; }
}

/// <summary>
/// What a REST API's MOCK integration answers: its default integration response (the one without a selection pattern,
/// else the first), with the header literals of its <c>responseParameters</c> and its <c>application/json</c> template.
/// </summary>
internal sealed record LiveMock(int StatusCode, IReadOnlyList<KeyValuePair<string, string>> Headers, string? Body)
{
    public static LiveMock? Of(RestIntegration? integration)
    {
        if (integration?.Type?.ToUpperInvariant() != "MOCK")
        {
            return null;
        }
        var responses = integration.IntegrationResponses?.Values.ToList() ?? [];
        var chosen = responses.FirstOrDefault(static r => string.IsNullOrEmpty(r.SelectionPattern)) ?? responses.FirstOrDefault();
        if (chosen is null)
        {
            return new LiveMock(StatusCodes.Status200OK, [], null);
        }
        var headers = new List<KeyValuePair<string, string>>();
        foreach (var (name, value) in chosen.ResponseParameters ?? [])
        {
            // method.response.header.NAME = 'literal' (anything else maps request data, which a mock has none of).
            if (name.StartsWith("method.response.header.", StringComparison.Ordinal) && value.Length >= 2 && value[0] == '\'' && value[^1] == '\'')
            {
                headers.Add(new(name["method.response.header.".Length..], value[1..^1]));
            }
        }
        var status = int.TryParse(chosen.StatusCode, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var code)
            && code is >= 100 and <= 599 ? code : StatusCodes.Status200OK;
        return new LiveMock(status, headers, chosen.ResponseTemplates?.GetValueOrDefault("application/json"));
    }
}

internal sealed class LiveIntegration
{
    /// <summary><c>AWS_PROXY</c>, <c>HTTP_PROXY</c>, <c>MOCK</c>, … (upper case).</summary>
    public required string Type { get; init; }
    public string? Uri { get; init; }

    /// <summary>The event format of a Lambda proxy integration: <c>1.0</c> or <c>2.0</c>.</summary>
    public required string PayloadFormatVersion { get; init; }
    public required int TimeoutMs { get; init; }
    public string? Credentials { get; init; }
    public string? HttpMethod { get; init; }

    /// <summary>HTTP APIs' limit and default: 30 s (timeoutInMillis 50–30000).</summary>
    public const int HttpApiDefaultTimeoutMs = 30_000;

    /// <summary>REST APIs' default: 29 s (timeoutInMillis 50–29000 unless raised).</summary>
    public const int RestApiDefaultTimeoutMs = 29_000;

    public static LiveIntegration Of(HttpIntegration integration) => new()
    {
        Type = integration.IntegrationType?.ToUpperInvariant() ?? "AWS_PROXY",
        Uri = integration.IntegrationUri,
        PayloadFormatVersion = integration.PayloadFormatVersion ?? "2.0",
        TimeoutMs = integration.TimeoutInMillis ?? HttpApiDefaultTimeoutMs,
        Credentials = integration.CredentialsArn,
        HttpMethod = integration.IntegrationMethod,
    };

    public static LiveIntegration Of(RestIntegration integration) => new()
    {
        Type = integration.Type?.ToUpperInvariant() ?? "AWS_PROXY",
        Uri = integration.Uri,
        PayloadFormatVersion = "1.0",
        TimeoutMs = integration.TimeoutInMillis ?? RestApiDefaultTimeoutMs,
        Credentials = integration.Credentials,
        HttpMethod = integration.HttpMethod,
    };
}

internal sealed class LiveAuthorizer
{
    public required string Id { get; init; }
    public required string Name { get; init; }

    /// <summary><c>REQUEST</c> or <c>TOKEN</c> (a Lambda authorizer) or <c>JWT</c>; REST's <c>COGNITO_USER_POOLS</c> is refused at creation.</summary>
    public required string Type { get; init; }
    public string? FunctionUri { get; init; }
    public required IReadOnlyList<string> IdentitySources { get; init; }
    public int TtlSeconds { get; init; }
    public bool SimpleResponses { get; init; }

    /// <summary>The event format sent to a Lambda authorizer: <c>1.0</c> (REST APIs, and HTTP APIs that ask for it) or <c>2.0</c>.</summary>
    public string PayloadFormatVersion { get; init; } = "1.0";
    public string? JwtIssuer { get; init; }
    public IReadOnlyList<string>? JwtAudience { get; init; }
    public string? IdentityValidationExpression { get; init; }
    public string? Credentials { get; init; }

    /// <summary>The ARN API Gateway invokes the authorizer's function as: <c>…:apiId/authorizers/authorizerId</c>.</summary>
    public required string SourceArn { get; init; }

    /// <summary>Most decisions one authorizer keeps cached (<see cref="Cache"/>).</summary>
    public const int MaxCachedDecisions = 10_000;

    /// <summary>Cached decisions by identity (with the TTL); a new deployment builds a new authorizer, so a new cache.</summary>
    public ConcurrentDictionary<string, CachedAuthorization> Cache { get; } = new(StringComparer.Ordinal);

    private long _lastSweepTicks;

    /// <summary>Whether this caller sweeps the full cache of its expired decisions now: once a second at most.</summary>
    public bool TakeSweep(DateTimeOffset now)
    {
        var last = Interlocked.Read(ref _lastSweepTicks);
        return now.UtcTicks - last >= TimeSpan.TicksPerSecond && Interlocked.CompareExchange(ref _lastSweepTicks, now.UtcTicks, last) == last;
    }

    public static LiveAuthorizer Of(HttpAuthorizer authorizer, string apiId, LaminaOptions options) => new()
    {
        Id = authorizer.AuthorizerId!,
        Name = authorizer.Name ?? "",
        Type = authorizer.AuthorizerType ?? "REQUEST",
        FunctionUri = authorizer.AuthorizerUri,
        IdentitySources = authorizer.IdentitySource ?? [],
        TtlSeconds = authorizer.AuthorizerResultTtlInSeconds ?? 0,
        SimpleResponses = authorizer.EnableSimpleResponses == true,
        PayloadFormatVersion = authorizer.AuthorizerPayloadFormatVersion ?? "2.0",
        JwtIssuer = authorizer.JwtConfiguration?.Issuer,
        JwtAudience = authorizer.JwtConfiguration?.Audience,
        Credentials = authorizer.AuthorizerCredentialsArn,
        SourceArn = $"{ApiArns.ExecuteApi(options, apiId)}/authorizers/{authorizer.AuthorizerId}",
    };

    public static LiveAuthorizer Of(RestAuthorizer authorizer, string apiId, LaminaOptions options) => new()
    {
        Id = authorizer.Id!,
        Name = authorizer.Name ?? "",
        Type = authorizer.Type ?? "TOKEN",
        FunctionUri = authorizer.AuthorizerUri,
        // REST: one string, comma-separated (method.request.header.Auth, method.request.querystring.q, ...).
        IdentitySources = (authorizer.IdentitySource ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries),
        TtlSeconds = authorizer.AuthorizerResultTtlInSeconds ?? 300,
        PayloadFormatVersion = "1.0",
        IdentityValidationExpression = authorizer.IdentityValidationExpression,
        Credentials = authorizer.AuthorizerCredentials,
        SourceArn = $"{ApiArns.ExecuteApi(options, apiId)}/authorizers/{authorizer.Id}",
    };
}

/// <summary>A Lambda authorizer's decision kept for its TTL: the policy or simple answer, and the context it returned.</summary>
internal sealed record CachedAuthorization(AuthorizerDecision Decision, DateTimeOffset Expires);

/// <summary>
/// A stage's access log: the log group named by <c>destinationArn</c> (<c>arn:aws:logs:…:log-group:NAME</c>, a
/// trailing <c>:*</c> allowed) and the format with its <c>$context</c> variables.
/// </summary>
internal sealed record LiveAccessLog(string Group, string Format)
{
    public static LiveAccessLog? Of(string? destinationArn, string? format)
    {
        if (destinationArn is null || format is null)
        {
            return null;
        }
        var marker = destinationArn.IndexOf(":log-group:", StringComparison.Ordinal);
        if (marker < 0)
        {
            return null;
        }
        var group = destinationArn[(marker + ":log-group:".Length)..];
        if (group.EndsWith(":*", StringComparison.Ordinal))
        {
            group = group[..^2];
        }
        return group.Length == 0 ? null : new LiveAccessLog(group, format);
    }
}

/// <summary>
/// A token bucket (rate per second, burst capacity) for a stage's or usage plan's throttle. Lock-free enough for its
/// purpose: one lock per bucket, held for a few arithmetic operations.
/// </summary>
internal sealed class TokenBucket(double rate, int burst)
{
    private readonly Lock _lock = new();
    private double _tokens = Math.Max(1, burst);
    private long _last = System.Diagnostics.Stopwatch.GetTimestamp();

    public bool TryTake()
    {
        lock (_lock)
        {
            var now = System.Diagnostics.Stopwatch.GetTimestamp();
            var elapsed = (now - _last) / (double)System.Diagnostics.Stopwatch.Frequency;
            _last = now;
            _tokens = Math.Min(Math.Max(1, burst), _tokens + elapsed * rate);
            if (_tokens < 1)
            {
                return false;
            }
            _tokens -= 1;
            return true;
        }
    }
}
