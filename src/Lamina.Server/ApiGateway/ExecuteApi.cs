using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Lamina.Server.Diagnostics;
using Lamina.Server.Hosting;
using Lamina.Server.Invoke;
using Lamina.Server.Lambda;
using Lamina.Server.Logs;
using Lamina.Server.Protocols;
using Lamina.Server.Security;
using Microsoft.Extensions.Options;

namespace Lamina.Server.ApiGateway;

/// <summary>
/// API Gateway's data plane (issue #22): a request to <c>http://&lt;apiId&gt;.execute-api.localhost:&lt;port&gt;/…</c>, or to
/// <c>/_aws/execute-api/&lt;apiId&gt;/…</c> on any host, is routed to a stage and a route, authorized (JWT, Lambda
/// authorizers, IAM, API keys), and passed to its integration — a function (payload 1.0 or 2.0), an HTTP endpoint or a
/// mock — whose answer maps back to the response. Each request gets its stage's access log line and metrics per
/// API, stage and route.
/// </summary>
/// <remarks>
/// <para>Errors answer as each kind of API does on AWS: <c>{"message": …}</c>. HTTP APIs: 404 <c>Not Found</c> (no
/// stage or route), 401/403 from authorizers, 500 <c>Internal Server Error</c> (function error, malformed result,
/// missing permission), 503 <c>Service Unavailable</c> past the integration timeout (30 s). REST APIs: 403 <c>Missing
/// Authentication Token</c> (no route), 403 <c>Forbidden</c> (unknown stage, API key), 502 <c>Internal server error</c>
/// (function error, malformed result), 500 (missing permission), 504 <c>Endpoint request timed out</c> (29 s). A
/// throttled function answers 429 <c>Too Many Requests</c> on both (AWS answers 500; a 429 tells clients to retry).</para>
/// <para>A function is invoked only if its resource policy lets <c>apigateway.amazonaws.com</c> invoke it for the
/// route's ARN (<c>arn:aws:execute-api:REGION:ACCOUNT:apiId/stage/METHOD/path</c>, <c>…/stage/$default</c> for the
/// default route, <c>…/authorizers/id</c> for an authorizer), or the integration names credentials (a role, which
/// Lamina trusts: it has no IAM).</para>
/// </remarks>
internal sealed partial class ExecuteApi : IDisposable
{
    public const string PathPrefix = "/_aws/execute-api/";

    /// <summary>How long a Lambda authorizer may take (API Gateway's limit for authorizers).</summary>
    private const int AuthorizerTimeoutMs = 10_000;

    /// <summary>Largest request body an API takes (API Gateway's payload limit is 10 MB; a function's event 6 MB).</summary>
    private const int MaxBodyBytes = 10 * 1024 * 1024;

    private static readonly HashSet<string> HopByHop = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Host", "Content-Length",
    };

    private readonly ApiRegistry _registry;
    private readonly FunctionRegistry _functions;
    private readonly ConcurrencyLimiter _limiter;
    private readonly Invoker _invoker;
    private readonly LaminaMetrics _metrics;
    private readonly LogStore _logs;
    private readonly JwtValidator _jwt;
    private readonly AccessKeys _keys;
    private readonly UsagePlans _usage;
    private readonly TimeProvider _time;
    private readonly LaminaOptions _options;
    private readonly ILogger<ExecuteApi> _logger;
    private readonly HttpClient _http;

    public ExecuteApi(ApiRegistry registry, FunctionRegistry functions, ConcurrencyLimiter limiter, Invoker invoker, LaminaMetrics metrics, LogStore logs,
        JwtValidator jwt, AccessKeys keys, UsagePlans usage, TimeProvider time, IOptions<LaminaOptions> options, ILogger<ExecuteApi> logger)
    {
        _registry = registry;
        _functions = functions;
        _limiter = limiter;
        _invoker = invoker;
        _metrics = metrics;
        registry.Deleted += metrics.ForgetApi;
        registry.NoLongerServed += metrics.ForgetApiStageOrRoute;
        _logs = logs;
        _jwt = jwt;
        _keys = keys;
        _usage = usage;
        _time = time;
        _options = options.Value;
        _logger = logger;
        // HTTP_PROXY integrations: no cookies, no redirects followed, bodies as they are (API Gateway passes them through).
        _http = new HttpClient(new SocketsHttpHandler
        {
            UseCookies = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30),
        })
        { Timeout = Timeout.InfiniteTimeSpan };
    }

    [GeneratedRegex(@"^(?<id>[a-z0-9]{10})\.execute-api(?:\.[a-z0-9-]+)?\.localhost\.?(?::\d+)?\z", RegexOptions.CultureInvariant | RegexOptions.IgnoreCase)]
    private static partial Regex HostPattern();

    /// <summary>Whether the request is addressed to an API: by host name, or by the <c>/_aws/execute-api/ID</c> path prefix.</summary>
    public static bool TryMatch(HttpRequest request, out string apiId, out int prefixLength)
    {
        prefixLength = 0;
        apiId = "";
        // Most requests are API calls: a substring test keeps the regex off their host.
        var host = request.Host.Value ?? "";
        if (host.Contains(".execute-api.", StringComparison.OrdinalIgnoreCase) && HostPattern().Match(host) is { Success: true } match)
        {
            apiId = match.Groups["id"].Value.ToLowerInvariant();
            return true;
        }
        var path = request.Path.Value ?? "";
        if (path.StartsWith(PathPrefix, StringComparison.Ordinal))
        {
            var end = path.IndexOf('/', PathPrefix.Length);
            apiId = end < 0 ? path[PathPrefix.Length..] : path[PathPrefix.Length..end];
            prefixLength = end < 0 ? path.Length : end;
            return apiId.Length > 0;
        }
        return false;
    }

    public async Task HandleAsync(HttpContext context, string apiId, int prefixLength)
    {
        var request = context.Request;
        var requestId = RequestIds.Of(context);
        if (!_registry.TryGetLive(apiId, out var api) || api.Disabled)
        {
            // No such API: what API Gateway's default endpoint answers for an unknown host.
            await WriteMessageAsync(context, StatusCodes.Status404NotFound, "Not Found", errorType: null);
            return;
        }
        var (rawPath, rawQuery) = HttpProxyPayload.RawTarget(context, prefixLength);
        var path = request.Path.Value ?? "/";
        path = prefixLength >= path.Length ? "/" : path[prefixLength..];
        var exchange = new ApiExchange
        {
            Api = api,
            ExecuteApiArn = ApiArns.ExecuteApi(_options, apiId),
            RequestId = requestId,
            RequestTime = _time.GetUtcNow(),
            StartTimestamp = Stopwatch.GetTimestamp(),
            HttpMethod = request.Method,
            DomainName = request.Host.Host,
            Protocol = request.Protocol,
            SourceIp = HttpProxyPayload.SourceIp(context),
            UserAgent = request.Headers.UserAgent.ToString(),
            RawPath = rawPath,
            RawQuery = rawQuery,
        };
        context.Response.Headers[api.IsHttp ? "apigw-requestid" : "x-amz-apigw-id"] = requestId;
        try
        {
            if (SelectStage(api, exchange, path))
            {
                await ServeAsync(context, exchange);
            }
            else if (api.IsHttp)
            {
                await GatewayErrorAsync(context, exchange, StatusCodes.Status404NotFound, "Not Found", "RESOURCE_NOT_FOUND");
            }
            else
            {
                await GatewayErrorAsync(context, exchange, StatusCodes.Status403Forbidden, "Forbidden", "FORBIDDEN");
            }
        }
        finally
        {
            Finish(context, exchange);
        }
    }

    /// <summary>
    /// Picks the stage: the path's first segment when it names one (not <c>$default</c>), else an HTTP API's
    /// <c>$default</c> stage with the whole path. A REST API's path always starts with its stage.
    /// </summary>
    private static bool SelectStage(LiveApi api, ApiExchange exchange, string path)
    {
        var trimmed = path.TrimStart('/');
        var slash = trimmed.IndexOf('/', StringComparison.Ordinal);
        var first = slash < 0 ? trimmed : trimmed[..slash];
        if (first.Length > 0 && first != "$default" && api.Stages.TryGetValue(first, out var named))
        {
            exchange.Stage = named;
            exchange.StagePath = slash < 0 ? "/" : trimmed[slash..];
            var raw = exchange.RawPath.TrimStart('/');
            var rawSlash = raw.IndexOf('/', StringComparison.Ordinal);
            exchange.RawStagePath = rawSlash < 0 ? "/" : raw[rawSlash..];
            return true;
        }
        if (api.IsHttp && api.Stages.TryGetValue("$default", out var fallback))
        {
            exchange.Stage = fallback;
            exchange.StagePath = path.Length == 0 ? "/" : path;
            exchange.RawStagePath = exchange.RawPath;
            return true;
        }
        return false;
    }

    private async Task ServeAsync(HttpContext context, ApiExchange exchange)
    {
        var request = context.Request;
        var api = exchange.Api;
        var stage = exchange.Stage!;
        // 1. CORS preflight: an HTTP API with CORS settings answers it itself, whatever the routes.
        if (stage.Cors is { } cors && HttpProxyPayload.IsPreflight(request))
        {
            HttpProxyPayload.Preflight(context, cors);
            exchange.Status = context.Response.StatusCode;
            return;
        }
        // 2. Route.
        if (!stage.Routes.TryMatch(request.Method, exchange.StagePath, out var route, out var parameters))
        {
            if (api.IsHttp)
            {
                await GatewayErrorAsync(context, exchange, StatusCodes.Status404NotFound, "Not Found", "RESOURCE_NOT_FOUND");
            }
            else
            {
                await GatewayErrorAsync(context, exchange, StatusCodes.Status403Forbidden, "Missing Authentication Token", "MISSING_AUTHENTICATION_TOKEN");
            }
            return;
        }
        exchange.Route = route;
        exchange.PathParameters = parameters;
        // 3. The stage's throttle.
        if (stage.Throttle is { } bucket && !bucket.TryTake())
        {
            await GatewayErrorAsync(context, exchange, StatusCodes.Status429TooManyRequests, "Too Many Requests", "THROTTLED");
            return;
        }
        // 4. Authorization, then the API key (a REST API's key may come from its authorizer).
        if (!await AuthorizeAsync(context, exchange, route))
        {
            return;
        }
        if (!api.IsHttp && route.ApiKeyRequired && !await CheckApiKeyAsync(context, exchange))
        {
            return;
        }
        // 5. The body, then the integration.
        var body = await ReadBodyAsync(context);
        if (body is null)
        {
            await GatewayErrorAsync(context, exchange, StatusCodes.Status413PayloadTooLarge, "Request Entity Too Large", "REQUEST_TOO_LARGE");
            return;
        }
        var integration = route.Integration;
        switch (integration?.Type)
        {
            case "AWS_PROXY":
                await InvokeFunctionAsync(context, exchange, integration, body.Value);
                break;
            case "HTTP_PROXY":
                await ProxyHttpAsync(context, exchange, integration, body.Value);
                break;
            case "MOCK":
                await MockAsync(context, exchange, route);
                break;
            default:
                exchange.IntegrationError = integration is null
                    ? "The route has no integration."
                    : $"Lamina serves AWS_PROXY, HTTP_PROXY and MOCK integrations, not {integration.Type}.";
                await InternalErrorAsync(context, exchange);
                break;
        }
    }

    // ---- Authorization -------------------------------------------------------------------------------------------

    /// <summary>Runs the route's authorization; false when it refused (the answer is written).</summary>
    private async Task<bool> AuthorizeAsync(HttpContext context, ApiExchange exchange, LiveRoute route)
    {
        switch (route.AuthorizationType)
        {
            case "NONE":
                return true;
            case "AWS_IAM":
                return await AuthorizeIamAsync(context, exchange);
            case "JWT":
                return route.Authorizer is { } jwt ? await AuthorizeJwtAsync(context, exchange, route, jwt) : await AuthorizerMissingAsync(context, exchange);
            case "CUSTOM":
                return route.Authorizer is { } custom ? await AuthorizeLambdaAsync(context, exchange, custom) : await AuthorizerMissingAsync(context, exchange);
            default:
                exchange.AuthorizerError = $"authorizationType {route.AuthorizationType} is not served by Lamina.";
                await InternalErrorAsync(context, exchange);
                return false;
        }
    }

    private static async Task<bool> AuthorizerMissingAsync(HttpContext context, ApiExchange exchange)
    {
        exchange.AuthorizerError = "The route's authorizer is not in this deployment.";
        await InternalErrorAsync(context, exchange);
        return false;
    }

    private async Task<bool> AuthorizeIamAsync(HttpContext context, ApiExchange exchange)
    {
        var request = context.Request;
        if (request.Headers.Authorization.Count == 0 && !request.Query.ContainsKey("X-Amz-Signature"))
        {
            await GatewayErrorAsync(context, exchange, StatusCodes.Status403Forbidden, "Missing Authentication Token", "MISSING_AUTHENTICATION_TOKEN");
            return false;
        }
        CallerIdentity caller;
        if (_keys.Required)
        {
            request.EnableBuffering(MaxBodyBytes);
            var body = await ReadBodyAsync(context);
            request.Body.Position = 0;
            var failure = SigV4.Verify(request, body is { } b ? b.Span : [], _keys.Find, _options.Region, _time.GetUtcNow(), out var key);
            if (failure is not null)
            {
                exchange.AuthorizerError = failure.Message;
                await GatewayErrorAsync(context, exchange, StatusCodes.Status403Forbidden, failure.Message, "INVALID_SIGNATURE");
                return false;
            }
            caller = new CallerIdentity(key!.AccountId, key.AccessKeyId);
        }
        else
        {
            // No access keys: any signature is accepted on loopback, as for the API itself; the caller is the account.
            caller = new CallerIdentity(_options.AccountId, "");
        }
        if (caller.AccountId != _options.AccountId)
        {
            var message = $"User: {caller.PrincipalArn} is not authorized to perform: execute-api:Invoke on resource: {exchange.MethodArn()}";
            await GatewayErrorAsync(context, exchange, StatusCodes.Status403Forbidden, message, "ACCESS_DENIED");
            return false;
        }
        exchange.IamCaller = caller;
        return true;
    }

    private async Task<bool> AuthorizeJwtAsync(HttpContext context, ApiExchange exchange, LiveRoute route, LiveAuthorizer authorizer)
    {
        var token = IdentityValues(context, exchange, authorizer) is [var value] ? value : null;
        if (token is not null && token.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            token = token["Bearer ".Length..].Trim();
        }
        if (string.IsNullOrEmpty(token))
        {
            exchange.AuthorizerError = "The request has no token in the authorizer's identity source.";
            await UnauthorizedAsync(context, exchange, "invalid_token", "missing token");
            return false;
        }
        var started = Stopwatch.GetTimestamp();
        var result = await _jwt.ValidateAsync(token, authorizer.JwtIssuer!, authorizer.JwtAudience, context.RequestAborted);
        exchange.AuthorizerLatencyMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        if (!result.Valid)
        {
            exchange.AuthorizerError = result.Error;
            await UnauthorizedAsync(context, exchange, "invalid_token", result.Error!);
            return false;
        }
        if (route.Scopes is { Count: > 0 } required && !result.Scopes!.Any(required.Contains))
        {
            exchange.AuthorizerError = "The token has none of the route's authorization scopes.";
            context.Response.Headers.WWWAuthenticate = $"Bearer scope=\"{string.Join(' ', required)}\" error=\"insufficient_scope\" error_description=\"JWT has insufficient scopes\"";
            await GatewayErrorAsync(context, exchange, StatusCodes.Status403Forbidden, "Forbidden", "ACCESS_DENIED");
            return false;
        }
        exchange.JwtClaims = result.Claims;
        exchange.JwtScopes = result.Scopes;
        return true;
    }

    private static async Task UnauthorizedAsync(HttpContext context, ApiExchange exchange, string error, string description)
    {
        if (exchange.Api.IsHttp)
        {
            var safe = description.Replace('"', '\'');
            context.Response.Headers.WWWAuthenticate = $"Bearer scope=\"\" error=\"{error}\" error_description=\"{safe}\"";
        }
        await GatewayErrorAsync(context, exchange, StatusCodes.Status401Unauthorized, "Unauthorized", "UNAUTHORIZED");
    }

    /// <summary>A Lambda authorizer (REQUEST; a REST API's TOKEN): its cached decision for these identity values, or a fresh one.</summary>
    private async Task<bool> AuthorizeLambdaAsync(HttpContext context, ApiExchange exchange, LiveAuthorizer authorizer)
    {
        var identity = IdentityValues(context, exchange, authorizer);
        var token = authorizer.Type == "TOKEN" ? identity.FirstOrDefault() : null;
        if (authorizer.IdentitySources.Count > 0 && (identity.Count < authorizer.IdentitySources.Count || identity.Any(string.IsNullOrEmpty)))
        {
            exchange.AuthorizerError = "The request lacks a value of the authorizer's identity sources.";
            await UnauthorizedAsync(context, exchange, "invalid_token", "missing identity");
            return false;
        }
        if (token is not null && authorizer.IdentityValidationExpression is { Length: > 0 } expression
            && !Regex.IsMatch(token, expression, RegexOptions.CultureInvariant, TimeSpan.FromMilliseconds(100)))
        {
            exchange.AuthorizerError = "The token does not match the authorizer's identityValidationExpression.";
            await UnauthorizedAsync(context, exchange, "invalid_token", "token does not match");
            return false;
        }
        var cacheKey = authorizer.TtlSeconds > 0 && identity.Count > 0 ? string.Join('\u001f', identity) : null;
        var now = _time.GetUtcNow();
        AuthorizerDecision? decision = null;
        if (cacheKey is not null && authorizer.Cache.TryGetValue(cacheKey, out var cached) && cached.Expires > now)
        {
            decision = cached.Decision;
        }
        if (decision is null)
        {
            var payload = authorizer.Type == "TOKEN" ? ProxyEvents.BuildToken(exchange, token!)
                : authorizer.PayloadFormatVersion == "2.0" ? ProxyEvents.BuildV2Authorizer(context, exchange, _options.AccountId, identity)
                : ProxyEvents.BuildV1Authorizer(context, exchange, _options.AccountId, identity);
            var call = await CallFunctionAsync(authorizer.FunctionUri!, exchange.Stage!.Variables, authorizer.SourceArn, authorizer.Credentials, payload,
                AuthorizerTimeoutMs, context.Request.Headers);
            exchange.AuthorizerLatencyMs = call.LatencyMs;
            if (call.Kind == CallKind.FunctionError && authorizer.Type == "TOKEN" && IsUnauthorizedError(call.Body))
            {
                // A TOKEN authorizer that fails with "Unauthorized" asks for 401, as on AWS.
                exchange.AuthorizerError = "Unauthorized";
                await UnauthorizedAsync(context, exchange, "invalid_token", "Unauthorized");
                return false;
            }
            if (call.Kind == CallKind.Throttled)
            {
                exchange.AuthorizerError = "The authorizer's function was throttled.";
                await GatewayErrorAsync(context, exchange, StatusCodes.Status429TooManyRequests, "Too Many Requests", "THROTTLED");
                return false;
            }
            if (call.Kind != CallKind.Ok)
            {
                exchange.AuthorizerError = call.Error;
                Log.AuthorizerFailed(_logger, exchange.Api.ApiId, authorizer.Id, call.Error ?? call.Kind.ToString());
                await AuthorizerErrorAsync(context, exchange);
                return false;
            }
            decision = AuthorizerDecision.Parse(call.Body, authorizer.SimpleResponses, out var reason);
            if (decision is null)
            {
                exchange.AuthorizerError = reason;
                Log.AuthorizerFailed(_logger, exchange.Api.ApiId, authorizer.Id, reason!);
                await AuthorizerErrorAsync(context, exchange);
                return false;
            }
            if (cacheKey is not null)
            {
                // Callers choose the identities (each token a key): expired decisions go once the cache is full, and a
                // cache full of live ones takes no more until some expire, so it never outgrows its bound. A full cache
                // is walked at most once a second, not for each request it cannot take.
                var cache = authorizer.Cache;
                if (cache.Count >= LiveAuthorizer.MaxCachedDecisions && authorizer.TakeSweep(now))
                {
                    foreach (var (key, entry) in cache)
                    {
                        if (entry.Expires <= now)
                        {
                            cache.TryRemove(key, out _);
                        }
                    }
                }
                if (cache.Count < LiveAuthorizer.MaxCachedDecisions)
                {
                    cache[cacheKey] = new CachedAuthorization(decision, now.AddSeconds(authorizer.TtlSeconds));
                }
            }
        }
        exchange.Authorization = decision;
        var methodArn = exchange.MethodArn();
        if (!decision.Allows(methodArn))
        {
            var message = !exchange.Api.IsHttp && decision.ExplicitlyDenies(methodArn)
                ? "User is not authorized to access this resource with an explicit deny"
                : exchange.Api.IsHttp ? "Forbidden" : "User is not authorized to access this resource";
            await GatewayErrorAsync(context, exchange, StatusCodes.Status403Forbidden, message, "ACCESS_DENIED");
            return false;
        }
        return true;
    }

    private static bool IsUnauthorizedError(ReadOnlyMemory<byte> body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            return document.RootElement.ValueKind == JsonValueKind.Object && document.RootElement.TryGetProperty("errorMessage", out var message)
                && message.ValueKind == JsonValueKind.String && message.GetString() == "Unauthorized";
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>A Lambda authorizer failed or answered nonsense: 500 (HTTP APIs' message; REST's AuthorizerConfigurationException).</summary>
    private static Task AuthorizerErrorAsync(HttpContext context, ApiExchange exchange) => exchange.Api.IsHttp
        ? GatewayErrorAsync(context, exchange, StatusCodes.Status500InternalServerError, "Internal Server Error", "AUTHORIZER_FAILURE")
        : GatewayErrorAsync(context, exchange, StatusCodes.Status500InternalServerError, null, "AUTHORIZER_CONFIGURATION_ERROR");

    /// <summary>
    /// The values of the authorizer's identity sources, in order; a missing one is empty. HTTP APIs name them
    /// <c>$request.header.X</c>, <c>$request.querystring.x</c>, <c>$context.x</c>, <c>$stageVariables.x</c>; REST APIs
    /// <c>method.request.header.X</c>, <c>method.request.querystring.x</c>, <c>stageVariables.x</c>, <c>context.x</c>.
    /// </summary>
    private List<string> IdentityValues(HttpContext context, ApiExchange exchange, LiveAuthorizer authorizer)
    {
        var request = context.Request;
        var values = new List<string>(authorizer.IdentitySources.Count);
        foreach (var source in authorizer.IdentitySources)
        {
            var name = source.StartsWith('$') ? source[1..] : source;
            if (name.StartsWith("method.", StringComparison.Ordinal))
            {
                name = name["method.".Length..];
            }
            string? value = null;
            if (name.StartsWith("request.header.", StringComparison.OrdinalIgnoreCase))
            {
                value = request.Headers[name["request.header.".Length..]].ToString();
            }
            else if (name.StartsWith("request.querystring.", StringComparison.OrdinalIgnoreCase))
            {
                value = request.Query[name["request.querystring.".Length..]].ToString();
            }
            else if (name.StartsWith("stageVariables.", StringComparison.Ordinal))
            {
                value = exchange.Stage!.Variables.GetValueOrDefault(name["stageVariables.".Length..]);
            }
            else if (name.StartsWith("context.", StringComparison.Ordinal))
            {
                var variable = exchange.Variable(name["context.".Length..], _options.AccountId);
                value = variable is "-" ? null : variable;
            }
            values.Add(value ?? "");
        }
        // A REST TOKEN authorizer's source is one header; HTTP/REST REQUEST authorizers use every value.
        return values;
    }

    /// <summary>A REST API method with <c>apiKeyRequired</c>: an enabled key, in a usage plan of this stage, within its throttle and quota.</summary>
    private async Task<bool> CheckApiKeyAsync(HttpContext context, ApiExchange exchange)
    {
        var stage = exchange.Stage!;
        var value = stage.ApiKeySource == "AUTHORIZER" ? exchange.Authorization?.UsageIdentifierKey : context.Request.Headers["x-api-key"].ToString();
        ApiKey? key = null;
        var check = string.IsNullOrEmpty(value) ? UsageCheck.Forbidden : _usage.Check(value, exchange.Api.ApiId, stage.Name, out key);
        switch (check)
        {
            case UsageCheck.Allowed:
                exchange.UsedApiKey = key;
                return true;
            case UsageCheck.Throttled:
                await GatewayErrorAsync(context, exchange, StatusCodes.Status429TooManyRequests, "Too Many Requests", "THROTTLED");
                return false;
            case UsageCheck.QuotaExceeded:
                await GatewayErrorAsync(context, exchange, StatusCodes.Status429TooManyRequests, "Limit Exceeded", "QUOTA_EXCEEDED");
                return false;
            default:
                await GatewayErrorAsync(context, exchange, StatusCodes.Status403Forbidden, "Forbidden", "INVALID_API_KEY");
                return false;
        }
    }

    // ---- Integrations --------------------------------------------------------------------------------------------

    private async Task InvokeFunctionAsync(HttpContext context, ApiExchange exchange, LiveIntegration integration, ReadOnlyMemory<byte> body)
    {
        var http = exchange.Api.IsHttp;
        var v2 = http && integration.PayloadFormatVersion == "2.0";
        var payload = v2 ? ProxyEvents.BuildV2(context, exchange, body, _options.AccountId)
            : ProxyEvents.BuildV1(context, exchange, body, _options.AccountId, binaryAsBase64: http || IsBinary(exchange.Stage!, context.Request.ContentType));
        if (payload.Length > InvokeApi.MaxSyncPayloadBytes)
        {
            // Lambda's limit on a synchronous event (a body near 6 MB grows past it as base64 and JSON).
            exchange.IntegrationError = $"The event is {payload.Length} bytes; Lambda takes at most {InvokeApi.MaxSyncPayloadBytes}.";
            await GatewayErrorAsync(context, exchange, StatusCodes.Status413PayloadTooLarge, "Request Entity Too Large", "REQUEST_TOO_LARGE");
            return;
        }
        var call = await CallFunctionAsync(integration.Uri!, exchange.Stage!.Variables, exchange.Route!.SourceArn, integration.Credentials, payload,
            integration.TimeoutMs, context.Request.Headers);
        exchange.IntegrationLatencyMs = call.LatencyMs;
        exchange.IntegrationRequestId = call.RequestId;
        exchange.IntegrationError = call.Error;
        switch (call.Kind)
        {
            case CallKind.Ok:
                break;
            case CallKind.TimedOut:
                exchange.IntegrationStatus = 504;
                if (http)
                {
                    await GatewayErrorAsync(context, exchange, StatusCodes.Status503ServiceUnavailable, "Service Unavailable", "INTEGRATION_TIMEOUT");
                }
                else
                {
                    await GatewayErrorAsync(context, exchange, StatusCodes.Status504GatewayTimeout, "Endpoint request timed out", "INTEGRATION_TIMEOUT");
                }
                return;
            case CallKind.Throttled:
                exchange.IntegrationFunctionStatus = 429;
                await GatewayErrorAsync(context, exchange, StatusCodes.Status429TooManyRequests, "Too Many Requests", "THROTTLED");
                return;
            case CallKind.FunctionError:
                exchange.IntegrationFunctionStatus = 200;
                await FunctionFailedAsync(context, exchange);
                return;
            default:
                await InternalErrorAsync(context, exchange);
                return;
        }
        exchange.IntegrationFunctionStatus = 200;
        var response = v2 ? HttpProxyPayload.ParseV2Result(call.Body) : HttpProxyPayload.ParseV1Result(call.Body);
        if (response is null)
        {
            exchange.IntegrationError = "Malformed Lambda proxy response";
            await FunctionFailedAsync(context, exchange);
            return;
        }
        exchange.IntegrationStatus = response.StatusCode;
        await WriteProxyResponseAsync(context, exchange, response, decodeBase64: http || IsBinary(exchange.Stage!, context.Request.Headers.Accept.ToString())
            || IsBinary(exchange.Stage!, response.Headers.LastOrDefault(h => string.Equals(h.Key, "Content-Type", StringComparison.OrdinalIgnoreCase)).Value));
    }

    /// <summary>A function error or malformed result: HTTP APIs answer 500, REST APIs 502 (as on AWS).</summary>
    private static Task FunctionFailedAsync(HttpContext context, ApiExchange exchange) => exchange.Api.IsHttp
        ? GatewayErrorAsync(context, exchange, StatusCodes.Status500InternalServerError, "Internal Server Error", "INTEGRATION_FAILURE")
        : GatewayErrorAsync(context, exchange, StatusCodes.Status502BadGateway, "Internal server error", "INTEGRATION_FAILURE");

    /// <summary>A configuration error (no function, no permission, unsupported integration): 500 on both kinds.</summary>
    private static Task InternalErrorAsync(HttpContext context, ApiExchange exchange) =>
        GatewayErrorAsync(context, exchange, StatusCodes.Status500InternalServerError, exchange.Api.IsHttp ? "Internal Server Error" : "Internal server error",
            "API_CONFIGURATION_ERROR");

    private static async Task WriteProxyResponseAsync(HttpContext context, ApiExchange exchange, ProxyResponse response, bool decodeBase64)
    {
        if (exchange.Stage!.Cors is { } cors)
        {
            // CORS settings replace whatever the integration said about CORS.
            response.Headers.RemoveAll(static h => h.Key.StartsWith("Access-Control-", StringComparison.OrdinalIgnoreCase));
            HttpProxyPayload.AddCorsHeaders(context, cors);
        }
        await HttpProxyPayload.WriteAsync(context, response, decodeBase64);
        exchange.Status = response.StatusCode;
        exchange.ResponseLength = context.Response.ContentLength ?? 0;
    }

    private static bool IsBinary(LiveStage stage, string? mediaTypes)
    {
        if (stage.BinaryMediaTypes is not { Count: > 0 } binary || string.IsNullOrEmpty(mediaTypes))
        {
            return false;
        }
        foreach (var part in mediaTypes.Split(','))
        {
            var mediaType = part.Split(';', 2)[0].Trim();
            foreach (var pattern in binary)
            {
                // API Gateway writes "image/png" or "*/*" (JSON-Pointer-escaped as "image~1png" in patches; stored unescaped).
                var wanted = pattern.Replace("~1", "/", StringComparison.Ordinal);
                if (wanted == "*/*" || string.Equals(wanted, mediaType, StringComparison.OrdinalIgnoreCase)
                    || wanted.EndsWith("/*", StringComparison.Ordinal) && mediaType.StartsWith(wanted[..^1], StringComparison.OrdinalIgnoreCase))
                {
                    return true;
                }
            }
        }
        return false;
    }

    /// <summary>An HTTP_PROXY integration: the request passes to the URL (path variables put in), the answer comes back as it is.</summary>
    private async Task ProxyHttpAsync(HttpContext context, ApiExchange exchange, LiveIntegration integration, ReadOnlyMemory<byte> body)
    {
        var request = context.Request;
        var url = integration.Uri!;
        foreach (var (name, value) in exchange.PathParameters ?? [])
        {
            url = url.Replace("{" + name + "}", value, StringComparison.Ordinal).Replace("{" + name + "+}", value, StringComparison.Ordinal);
        }
        if (exchange.Route!.ResourcePath is null)
        {
            url = url.TrimEnd('/') + exchange.RawStagePath; // the $default route passes the whole path on
        }
        if (exchange.RawQuery.Length > 0)
        {
            url += (url.Contains('?', StringComparison.Ordinal) ? "&" : "?") + exchange.RawQuery;
        }
        var method = integration.HttpMethod is null or "ANY" ? request.Method : integration.HttpMethod;
        using var outgoing = new HttpRequestMessage(new HttpMethod(method), url);
        if (!body.IsEmpty)
        {
            outgoing.Content = new ReadOnlyMemoryContent(body);
        }
        foreach (var (name, values) in request.Headers)
        {
            if (!HopByHop.Contains(name) && !outgoing.Headers.TryAddWithoutValidation(name, values.ToArray()))
            {
                outgoing.Content?.Headers.TryAddWithoutValidation(name, values.ToArray());
            }
        }
        outgoing.Headers.TryAddWithoutValidation("X-Forwarded-For", exchange.SourceIp);
        var started = Stopwatch.GetTimestamp();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        timeout.CancelAfter(TimeSpan.FromMilliseconds(integration.TimeoutMs));
        HttpResponseMessage answer;
        byte[] responseBody;
        try
        {
            answer = await _http.SendAsync(outgoing, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            responseBody = await answer.Content.ReadAsByteArrayAsync(timeout.Token);
        }
        catch (Exception e) when (e is OperationCanceledException && !context.RequestAborted.IsCancellationRequested)
        {
            exchange.IntegrationLatencyMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            exchange.IntegrationError = $"The endpoint did not answer within {integration.TimeoutMs} ms.";
            exchange.IntegrationStatus = 504;
            await (exchange.Api.IsHttp
                ? GatewayErrorAsync(context, exchange, StatusCodes.Status503ServiceUnavailable, "Service Unavailable", "INTEGRATION_TIMEOUT")
                : GatewayErrorAsync(context, exchange, StatusCodes.Status504GatewayTimeout, "Endpoint request timed out", "INTEGRATION_TIMEOUT"));
            return;
        }
        catch (HttpRequestException e)
        {
            exchange.IntegrationLatencyMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            exchange.IntegrationError = $"The endpoint could not be reached: {e.Message}";
            Log.IntegrationFailed(_logger, exchange.Api.ApiId, exchange.ToString(), exchange.IntegrationError);
            await InternalErrorAsync(context, exchange);
            return;
        }
        using (answer)
        {
            exchange.IntegrationLatencyMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            exchange.IntegrationStatus = (int)answer.StatusCode;
            var headers = new List<KeyValuePair<string, string>>();
            foreach (var (name, values) in answer.Headers.Concat(answer.Content.Headers))
            {
                if (!HopByHop.Contains(name))
                {
                    // What Kestrel could not send (control or non-ASCII characters) is dropped rather than failing the answer.
                    headers.AddRange(values.Where(v => HttpProxyPayload.IsValidHeader(name, v)).Select(v => new KeyValuePair<string, string>(name, v)));
                }
            }
            await WriteProxyResponseAsync(context, exchange, new ProxyResponse((int)answer.StatusCode, headers, [], responseBody, IsBase64: false), decodeBase64: false);
        }
    }

    /// <summary>
    /// A REST API's MOCK integration (what SAM's CORS OPTIONS methods use): the default integration response's status,
    /// its <c>responseParameters</c> literals as headers (<c>'value'</c>), its <c>application/json</c> template as the
    /// body (taken literally: Lamina has no VTL).
    /// </summary>
    private static async Task MockAsync(HttpContext context, ApiExchange exchange, LiveRoute route)
    {
        var mock = route.Mock;
        var response = context.Response;
        response.StatusCode = mock?.StatusCode ?? StatusCodes.Status200OK;
        foreach (var (name, value) in mock?.Headers ?? [])
        {
            response.Headers[name] = value;
        }
        var body = Encoding.UTF8.GetBytes(mock?.Body ?? "");
        response.ContentType ??= "application/json";
        response.ContentLength = body.Length;
        await response.Body.WriteAsync(body, context.RequestAborted);
        exchange.Status = response.StatusCode;
        exchange.ResponseLength = body.Length;
    }

    // ---- Functions -----------------------------------------------------------------------------------------------

    private enum CallKind
    {
        Ok,
        FunctionError,
        TimedOut,
        Throttled,
        NotFound,
        NotPermitted,
    }

    private readonly record struct FunctionCall(CallKind Kind, ReadOnlyMemory<byte> Body, string? RequestId, double LatencyMs, string? Error);

    /// <summary>
    /// Invokes the function <paramref name="uri"/> names, synchronously, within every concurrency limit, if its resource
    /// policy lets API Gateway invoke it as <paramref name="sourceArn"/> (or <paramref name="credentials"/> are given).
    /// Past <paramref name="timeoutMs"/> the call is abandoned (the invocation runs on, as on AWS).
    /// </summary>
    private async Task<FunctionCall> CallFunctionAsync(string uri, IReadOnlyDictionary<string, string> stageVariables, string sourceArn, string? credentials,
        ReadOnlyMemory<byte> payload, int timeoutMs, IHeaderDictionary headers)
    {
        if (IntegrationTarget.Resolve(uri, stageVariables) is not { } target)
        {
            return new FunctionCall(CallKind.NotFound, default, null, 0, $"The URI {uri} names no function (with this stage's variables).");
        }
        var key = _options.FunctionKey(target.Account, target.Name);
        if (!_functions.TryGetEntry(key, out var entry) || entry.ResolvePrimary(target.Qualifier) is null)
        {
            return new FunctionCall(CallKind.NotFound, default, null, 0,
                $"Function not found: {_options.FunctionArn(key)}{(target.Qualifier is null ? "" : ":" + target.Qualifier)}");
        }
        if (credentials is null && !PermissionsApi.Allows(entry, target.Qualifier, "lambda:InvokeFunction",
            new PolicyCaller(null, Service: "apigateway.amazonaws.com", SourceArn: sourceArn, SourceAccount: _options.AccountId)))
        {
            return new FunctionCall(CallKind.NotPermitted, default, null, 0,
                "The IAM role configured on the integration or API Gateway doesn't have permissions to call the integration. Check the permissions and try again.");
        }
        if (entry.Resolve(target.Qualifier, Random.Shared) is not { } config)
        {
            return new FunctionCall(CallKind.NotFound, default, null, 0, $"Function not found: {_options.FunctionArn(key)}");
        }
        if (!_limiter.TryAcquire(config.Name, entry.ReservedConcurrency, out var lease, out var throttleReason))
        {
            _metrics.RecordThrottle(config, throttleReason!);
            return new FunctionCall(CallKind.Throttled, default, null, 0, "Rate Exceeded.");
        }
        var requestId = Guid.NewGuid().ToString();
        var invocation = new Invocation
        {
            RequestId = requestId,
            Payload = payload,
            InvokedFunctionArn = target.Qualifier is null ? _options.FunctionArn(key) : $"{_options.FunctionArn(key)}:{target.Qualifier}",
            TraceId = Tracing.TraceHeader(headers["X-Amzn-Trace-Id"], headers["traceparent"], _time),
        };
        var started = Stopwatch.GetTimestamp();
        var invoke = _invoker.InvokeAsync(config, invocation, wantTail: false, lease!);
        InvokeOutcome outcome;
        try
        {
            outcome = await invoke.WaitAsync(TimeSpan.FromMilliseconds(timeoutMs), _time);
        }
        catch (TimeoutException)
        {
            _ = invoke.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
            return new FunctionCall(CallKind.TimedOut, default, requestId, Stopwatch.GetElapsedTime(started).TotalMilliseconds,
                $"The function did not answer within the integration timeout ({timeoutMs} ms).");
        }
        var latency = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        if (outcome.ThrottleReason is not null)
        {
            return new FunctionCall(CallKind.Throttled, default, requestId, latency, "Rate Exceeded.");
        }
        if (outcome.Result is not { Outcome: InvocationOutcome.Success } result)
        {
            return new FunctionCall(CallKind.FunctionError, outcome.Result?.Body ?? default, requestId, latency,
                $"The function failed: {outcome.Result?.ErrorType ?? outcome.PlatformFailure ?? "error"}");
        }
        return new FunctionCall(CallKind.Ok, result.Body, requestId, latency, null);
    }

    // ---- Answers, logs, metrics ----------------------------------------------------------------------------------

    private static async Task<ReadOnlyMemory<byte>?> ReadBodyAsync(HttpContext context)
    {
        var request = context.Request;
        if (request.ContentLength > MaxBodyBytes)
        {
            return null;
        }
        if (request.ContentLength == 0 || (request.ContentLength is null && !request.Headers.ContainsKey("Transfer-Encoding")))
        {
            return ReadOnlyMemory<byte>.Empty;
        }
        if (request.ContentLength is { } length)
        {
            // The usual case: one buffer of the announced size (a short body ends the request, as Kestrel reports).
            var exact = new byte[length];
            await request.Body.ReadExactlyAsync(exact, context.RequestAborted);
            return exact;
        }
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, context.RequestAborted)) > 0)
        {
            if (buffer.Length + read > MaxBodyBytes)
            {
                return null;
            }
            buffer.Write(chunk, 0, read);
        }
        return buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
    }

    /// <summary>One of API Gateway's own answers (a gateway response): <c>{"message": …}</c>, recorded for the access log.</summary>
    private static async Task GatewayErrorAsync(HttpContext context, ApiExchange exchange, int status, string? message, string responseType)
    {
        exchange.Status = status;
        exchange.ErrorMessage = message;
        exchange.ErrorResponseType = responseType;
        var length = await WriteMessageAsync(context, status, message, exchange.Api.IsHttp ? null : ErrorType(status, responseType));
        exchange.ResponseLength = length;
    }

    /// <summary>REST APIs name the gateway response in <c>x-amzn-ErrorType</c>.</summary>
    private static string ErrorType(int status, string responseType) => responseType switch
    {
        "MISSING_AUTHENTICATION_TOKEN" => "MissingAuthenticationTokenException",
        "UNAUTHORIZED" => "UnauthorizedException",
        "ACCESS_DENIED" or "INVALID_API_KEY" or "INVALID_SIGNATURE" or "FORBIDDEN" => "ForbiddenException",
        "THROTTLED" or "QUOTA_EXCEEDED" => "TooManyRequestsException",
        "AUTHORIZER_CONFIGURATION_ERROR" => "AuthorizerConfigurationException",
        _ => status >= 500 ? "InternalServerErrorException" : "BadRequestException",
    };

    private static async Task<long> WriteMessageAsync(HttpContext context, int status, string? message, string? errorType)
    {
        var response = context.Response;
        response.StatusCode = status;
        response.ContentType = "application/json";
        if (errorType is not null)
        {
            response.Headers["x-amzn-ErrorType"] = errorType;
        }
        var body = message is null ? "{\"message\":null}"u8.ToArray() : JsonSerializer.SerializeToUtf8Bytes(new GatewayMessage(message), ApiGatewayJsonContext.Default.GatewayMessage);
        response.ContentLength = body.Length;
        await response.Body.WriteAsync(body, CancellationToken.None);
        return body.Length;
    }

    /// <summary>The request's access log line (if its stage has access logs) and its metrics.</summary>
    private void Finish(HttpContext context, ApiExchange exchange)
    {
        if (exchange.Status == 0)
        {
            exchange.Status = context.Response.StatusCode;
        }
        var elapsed = Stopwatch.GetElapsedTime(exchange.StartTimestamp).TotalMilliseconds;
        exchange.ResponseLatencyMs = elapsed;
        if (exchange.Stage?.AccessLog is { } accessLog)
        {
            _logs.Write(accessLog.Group, $"{exchange.Api.ApiId}/{exchange.StageName}", exchange.FormatAccessLog(accessLog.Format, _options.AccountId));
        }
        _metrics.RecordApiRequest(exchange.Api.ApiId, exchange.Stage?.Name ?? "-", exchange.Route?.RouteKey ?? "-", exchange.Status, elapsed,
            exchange.IntegrationLatencyMs);
    }

    public void Dispose() => _http.Dispose();

    private static partial class Log
    {
        [LoggerMessage(EventIds.ApiGatewayIntegrationFailed, LogLevel.Debug, "API {ApiId}: {Request}: {Reason}")]
        public static partial void IntegrationFailed(ILogger logger, string apiId, string request, string reason);

        [LoggerMessage(EventIds.ApiGatewayAuthorizerFailed, LogLevel.Debug, "API {ApiId}: authorizer {AuthorizerId} failed: {Reason}")]
        public static partial void AuthorizerFailed(ILogger logger, string apiId, string authorizerId, string reason);
    }
}

/// <summary>API Gateway's own answer body: <c>{"message": "…"}</c>.</summary>
internal sealed record GatewayMessage(string Message);
