using System.Text.RegularExpressions;
using Lamina.Server.Hosting;
using Lamina.Server.Protocols;
using Microsoft.Extensions.Options;

namespace Lamina.Server.ApiGateway;

/// <summary>
/// The HTTP API control plane (apigatewayv2, REST-JSON under <c>/v2/apis</c>): APIs (with quick create), routes,
/// integrations, authorizers, stages and deployments, CORS and tags, as botocore's model shapes them. Stages with
/// AutoDeploy follow every change (<see cref="ApiRegistry.EditHttpAsync"/>). WebSocket APIs, models, route and integration
/// responses, domain names and VPC links are not served.
/// </summary>
internal static partial class HttpApisApi
{
    [GeneratedRegex(@"^(\$default|[A-Z]+ /\S*)\z", RegexOptions.CultureInvariant)]
    private static partial Regex RouteKeyPattern();

    [GeneratedRegex(@"^[a-zA-Z0-9_$-]{1,128}\z", RegexOptions.CultureInvariant)]
    private static partial Regex StageNamePattern();

    [GeneratedRegex(@"^[a-zA-Z0-9_]{1,64}\z", RegexOptions.CultureInvariant)]
    private static partial Regex StageVariableNamePattern();

    [GeneratedRegex(@"^\$(request\.header\.[^\s,]+|request\.querystring\.[^\s,]+|context\.[a-zA-Z.]+|stageVariables\.[a-zA-Z0-9_]+)\z", RegexOptions.CultureInvariant)]
    private static partial Regex IdentitySourcePattern();

    public static IEndpointRouteBuilder MapHttpApisApi(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapPost("/v2/apis", CreateApiAsync);
        endpoints.MapGet("/v2/apis", GetApis);
        endpoints.MapPut("/v2/apis", ImportApiAsync);
        endpoints.MapGet("/v2/apis/{apiId}", GetApi);
        endpoints.MapMethods("/v2/apis/{apiId}", ["PATCH"], UpdateApiAsync);
        endpoints.MapPut("/v2/apis/{apiId}", ReimportApiAsync);
        endpoints.MapDelete("/v2/apis/{apiId}", DeleteApiAsync);
        endpoints.MapDelete("/v2/apis/{apiId}/cors", DeleteCorsAsync);

        endpoints.MapPost("/v2/apis/{apiId}/routes", CreateRouteAsync);
        endpoints.MapGet("/v2/apis/{apiId}/routes", GetRoutes);
        endpoints.MapGet("/v2/apis/{apiId}/routes/{routeId}", GetRoute);
        endpoints.MapMethods("/v2/apis/{apiId}/routes/{routeId}", ["PATCH"], UpdateRouteAsync);
        endpoints.MapDelete("/v2/apis/{apiId}/routes/{routeId}", DeleteRouteAsync);

        endpoints.MapPost("/v2/apis/{apiId}/integrations", CreateIntegrationAsync);
        endpoints.MapGet("/v2/apis/{apiId}/integrations", GetIntegrations);
        endpoints.MapGet("/v2/apis/{apiId}/integrations/{integrationId}", GetIntegration);
        endpoints.MapMethods("/v2/apis/{apiId}/integrations/{integrationId}", ["PATCH"], UpdateIntegrationAsync);
        endpoints.MapDelete("/v2/apis/{apiId}/integrations/{integrationId}", DeleteIntegrationAsync);

        endpoints.MapPost("/v2/apis/{apiId}/authorizers", CreateAuthorizerAsync);
        endpoints.MapGet("/v2/apis/{apiId}/authorizers", GetAuthorizers);
        endpoints.MapGet("/v2/apis/{apiId}/authorizers/{authorizerId}", GetAuthorizer);
        endpoints.MapMethods("/v2/apis/{apiId}/authorizers/{authorizerId}", ["PATCH"], UpdateAuthorizerAsync);
        endpoints.MapDelete("/v2/apis/{apiId}/authorizers/{authorizerId}", DeleteAuthorizerAsync);

        endpoints.MapPost("/v2/apis/{apiId}/stages", CreateStageAsync);
        endpoints.MapGet("/v2/apis/{apiId}/stages", GetStages);
        endpoints.MapGet("/v2/apis/{apiId}/stages/{stageName}", GetStage);
        endpoints.MapMethods("/v2/apis/{apiId}/stages/{stageName}", ["PATCH"], UpdateStageAsync);
        endpoints.MapDelete("/v2/apis/{apiId}/stages/{stageName}", DeleteStageAsync);
        endpoints.MapDelete("/v2/apis/{apiId}/stages/{stageName}/accesslogsettings", DeleteAccessLogSettingsAsync);
        endpoints.MapDelete("/v2/apis/{apiId}/stages/{stageName}/cache/authorizers", ResetAuthorizersCache);

        endpoints.MapPost("/v2/apis/{apiId}/deployments", CreateDeploymentAsync);
        endpoints.MapGet("/v2/apis/{apiId}/deployments", GetDeployments);
        endpoints.MapGet("/v2/apis/{apiId}/deployments/{deploymentId}", GetDeployment);
        endpoints.MapMethods("/v2/apis/{apiId}/deployments/{deploymentId}", ["PATCH"], UpdateDeploymentAsync);
        endpoints.MapDelete("/v2/apis/{apiId}/deployments/{deploymentId}", DeleteDeploymentAsync);

        endpoints.MapGet("/v2/tags/{**resourceArn}", GetTags);
        endpoints.MapPost("/v2/tags/{**resourceArn}", TagResourceAsync);
        endpoints.MapDelete("/v2/tags/{**resourceArn}", UntagResourceAsync);
        return endpoints;
    }

    // ---- APIs --------------------------------------------------------------------------------------------------------

    private static async Task<IResult> CreateApiAsync(HttpContext context, ApiRegistry registry, IOptions<LaminaOptions> options)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.HttpApi);
        if (error is not null)
        {
            return error;
        }
        if (request!.Name is not { Length: > 0 and <= 128 })
        {
            return ApiErrors.BadRequest("Invalid API name specified: a name of 1 to 128 characters is required.");
        }
        if (request.ProtocolType == "WEBSOCKET")
        {
            return ApiErrors.BadRequest("Lamina serves HTTP APIs only: protocolType WEBSOCKET is not supported.");
        }
        if (request.ProtocolType != "HTTP")
        {
            return ApiErrors.BadRequest("Invalid protocolType specified: it must be HTTP (or WEBSOCKET, which Lamina does not serve).");
        }
        if (request.CorsConfiguration is { } cors && ValidateCors(cors) is { } corsError)
        {
            return corsError;
        }
        var apiId = ApiRegistry.NewId();
        var now = registry.Now();
        var api = new StoredHttpApi
        {
            Api = request with
            {
                ApiId = apiId,
                ApiEndpoint = null,
                ApiKeySelectionExpression = request.ApiKeySelectionExpression ?? "$request.header.x-api-key",
                RouteSelectionExpression = request.RouteSelectionExpression ?? "$request.method $request.path",
                CreatedDate = now,
                DisableExecuteApiEndpoint = request.DisableExecuteApiEndpoint ?? false,
                IpAddressType = request.IpAddressType ?? "ipv4",
                Tags = request.Tags ?? [],
                CredentialsArn = null,
                RouteKey = null,
                Target = null,
            },
        };
        if (request.Target is { } target)
        {
            // Quick create: an integration, a route (the given route key or $default) and an AutoDeploy $default stage.
            if (QuickIntegration(target, request.CredentialsArn) is not { } integration)
            {
                return ApiErrors.BadRequest("Invalid target specified: a Lambda function ARN or an http(s) URL is required.");
            }
            var routeKey = request.RouteKey ?? "$default";
            if (ValidateRouteKey(routeKey) is { } keyError)
            {
                return keyError;
            }
            api = api with
            {
                Integrations = [integration],
                Routes = [new HttpRoute
                {
                    ApiGatewayManaged = true, ApiKeyRequired = false, AuthorizationType = "NONE", RouteId = ApiRegistry.NewId(7),
                    RouteKey = routeKey, Target = $"integrations/{integration.IntegrationId}",
                }],
                Stages = [new HttpStage
                {
                    ApiGatewayManaged = true, AutoDeploy = true, CreatedDate = now, LastUpdatedDate = now, StageName = "$default",
                    DefaultRouteSettings = new HttpRouteSettings { DetailedMetricsEnabled = false }, RouteSettings = [], StageVariables = [], Tags = [],
                }],
            };
        }
        else if (request.RouteKey is not null || request.CredentialsArn is not null)
        {
            return ApiErrors.BadRequest("routeKey and credentialsArn are part of quick create: give a target too.");
        }
        var (created, editError) = await registry.EditHttpAsync(apiId, static edit => (edit.Api, (AwsError?)null), api);
        return editError ?? ApiJson.Created(WithEndpoint(context, options.Value, created!.Api), ApiGatewayJsonContext.Default.HttpApi);
    }

    private static Task<IResult> ImportApiAsync(HttpContext context, ApiRegistry registry, IOptions<LaminaOptions> options) =>
        ImportAsync(context, registry, options.Value, apiId: null);

    private static Task<IResult> ReimportApiAsync(HttpContext context, string apiId, ApiRegistry registry, IOptions<LaminaOptions> options) =>
        ImportAsync(context, registry, options.Value, apiId);

    /// <summary>ImportApi and ReimportApi: <c>{"body": "&lt;OpenAPI 3 definition&gt;"}</c>, <c>basepath</c> and <c>failOnWarnings</c> in the query.</summary>
    private static async Task<IResult> ImportAsync(HttpContext context, ApiRegistry registry, LaminaOptions options, string? apiId)
    {
        var (body, readError) = await ApiJson.ReadBodyAsync(context);
        if (readError is not null)
        {
            return readError;
        }
        var (request, error) = ApiJson.Parse(body!, ApiGatewayJsonContext.Default.HttpImportRequest);
        if (error is not null)
        {
            return error;
        }
        if (request!.Body is not { Length: > 0 } definition)
        {
            return ApiErrors.BadRequest("body is required: the OpenAPI 3 definition (JSON or YAML), as a string.");
        }
        if (OpenApiImport.ParseDefinition(System.Text.Encoding.UTF8.GetBytes(definition), out var parseError) is not { } document)
        {
            return ApiErrors.BadRequest(parseError!);
        }
        using (document)
        {
            var failOnWarnings = string.Equals(ApiJson.Query(context, "failOnWarnings"), "true", StringComparison.OrdinalIgnoreCase);
            var (api, importError) = await HttpOpenApiImport.ImportAsync(registry, document.RootElement, apiId, ApiJson.Query(context, "basepath"), failOnWarnings,
                options.AccountId);
            return importError ?? ApiJson.Created(WithEndpoint(context, options, api!.Api), ApiGatewayJsonContext.Default.HttpApi);
        }
    }

    /// <summary>Quick create's integration: AWS_PROXY (payload 2.0) for a function ARN, HTTP_PROXY for a URL.</summary>
    private static HttpIntegration? QuickIntegration(string target, string? credentials)
    {
        var id = ApiRegistry.NewId(7);
        if (IntegrationTarget.Parse(target) is not null)
        {
            return new HttpIntegration
            {
                ApiGatewayManaged = true, ConnectionType = "INTERNET", CredentialsArn = credentials, IntegrationId = id, IntegrationMethod = "POST",
                IntegrationType = "AWS_PROXY", IntegrationUri = target, PayloadFormatVersion = "2.0", TimeoutInMillis = LiveIntegration.HttpApiDefaultTimeoutMs,
            };
        }
        if (Uri.TryCreate(target, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https")
        {
            return new HttpIntegration
            {
                ApiGatewayManaged = true, ConnectionType = "INTERNET", IntegrationId = id, IntegrationMethod = "ANY", IntegrationType = "HTTP_PROXY",
                IntegrationUri = target, PayloadFormatVersion = "1.0", TimeoutInMillis = LiveIntegration.HttpApiDefaultTimeoutMs,
            };
        }
        return null;
    }

    private static IResult GetApis(HttpContext context, ApiRegistry registry, IOptions<LaminaOptions> options)
    {
        var apis = registry.HttpApis.OrderBy(static a => a.Api.CreatedDate).ThenBy(static a => a.Api.ApiId, StringComparer.Ordinal)
            .Select(a => WithEndpoint(context, options.Value, a.Api)).ToList();
        var (page, next) = ApiJson.Page(apis, ApiJson.Query(context, "nextToken"), ApiJson.Query(context, "maxResults"));
        return ApiJson.Ok(new HttpPage<HttpApi>(page, next), ApiGatewayJsonContext.Default.HttpPageHttpApi);
    }

    private static IResult GetApi(HttpContext context, string apiId, ApiRegistry registry, IOptions<LaminaOptions> options) =>
        registry.TryGetHttp(apiId, out var api)
            ? ApiJson.Ok(WithEndpoint(context, options.Value, api.Api), ApiGatewayJsonContext.Default.HttpApi)
            : ApiErrors.ApiNotFound(options.Value.AccountId, apiId);

    private static async Task<IResult> UpdateApiAsync(HttpContext context, string apiId, ApiRegistry registry, IOptions<LaminaOptions> options)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.HttpApi);
        if (error is not null)
        {
            return error;
        }
        if (request!.Name is { Length: 0 or > 128 })
        {
            return ApiErrors.BadRequest("Invalid API name specified: a name of 1 to 128 characters is required.");
        }
        if (request.CorsConfiguration is { } cors && ValidateCors(cors) is { } corsError)
        {
            return corsError;
        }
        var (updated, editError) = await registry.EditHttpAsync(apiId, edit =>
        {
            var api = edit.Api.Api;
            var next = api with
            {
                Name = request.Name ?? api.Name,
                Description = request.Description ?? api.Description,
                Version = request.Version ?? api.Version,
                CorsConfiguration = request.CorsConfiguration ?? api.CorsConfiguration,
                DisableExecuteApiEndpoint = request.DisableExecuteApiEndpoint ?? api.DisableExecuteApiEndpoint,
                DisableSchemaValidation = request.DisableSchemaValidation ?? api.DisableSchemaValidation,
                RouteSelectionExpression = request.RouteSelectionExpression ?? api.RouteSelectionExpression,
                ApiKeySelectionExpression = request.ApiKeySelectionExpression ?? api.ApiKeySelectionExpression,
                IpAddressType = request.IpAddressType ?? api.IpAddressType,
            };
            edit.Api = edit.Api with { Api = next };
            return (next, (AwsError?)null);
        });
        return editError ?? ApiJson.Ok(WithEndpoint(context, options.Value, updated!), ApiGatewayJsonContext.Default.HttpApi);
    }

    private static async Task<IResult> DeleteApiAsync(string apiId, ApiRegistry registry, IOptions<LaminaOptions> options) =>
        await registry.DeleteApiAsync(apiId, http: true) ? Results.NoContent() : ApiErrors.ApiNotFound(options.Value.AccountId, apiId);

    private static async Task<IResult> DeleteCorsAsync(string apiId, ApiRegistry registry)
    {
        var (_, error) = await registry.EditHttpAsync(apiId, static edit =>
        {
            edit.Api = edit.Api with { Api = edit.Api.Api with { CorsConfiguration = null } };
            return (true, (AwsError?)null);
        });
        return error ?? Results.NoContent();
    }

    private static AwsError? ValidateCors(ApiCors cors)
    {
        if (cors.MaxAge is < -1 or > 86400)
        {
            return ApiErrors.BadRequest("Invalid maxAge specified: it must be between -1 and 86400 seconds.");
        }
        if (cors.AllowCredentials == true && cors.AllowOrigins?.Contains("*") == true)
        {
            return ApiErrors.BadRequest("allowCredentials is not supported for allowOrigins '*' (wildcard): list the origins.");
        }
        return null;
    }

    private static HttpApi WithEndpoint(HttpContext context, LaminaOptions options, HttpApi api) =>
        api with { ApiEndpoint = ApiArns.Endpoint(context, options, api.ApiId!) };

    // ---- Routes ------------------------------------------------------------------------------------------------------

    private static async Task<IResult> CreateRouteAsync(HttpContext context, string apiId, ApiRegistry registry)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.HttpRoute);
        if (error is not null)
        {
            return error;
        }
        if (request!.RouteKey is not { } routeKey)
        {
            return ApiErrors.BadRequest("routeKey is required.");
        }
        if (ValidateRouteKey(routeKey) is { } keyError)
        {
            return keyError;
        }
        var route = request with
        {
            RouteId = ApiRegistry.NewId(7),
            ApiGatewayManaged = null,
            ApiKeyRequired = request.ApiKeyRequired ?? false,
            AuthorizationType = request.AuthorizationType ?? "NONE",
        };
        var (created, editError) = await registry.EditHttpAsync(apiId, edit =>
        {
            if (edit.Api.Routes.Any(r => r.RouteKey == routeKey))
            {
                return (null, ApiErrors.Conflict($"Unable to create route {routeKey}. A route with the same key already exists."));
            }
            if (ValidateRoute(edit.Api, route) is { } invalid)
            {
                return (null, invalid);
            }
            edit.Api = edit.Api with { Routes = edit.Api.Routes.Add(route) };
            return (route, (AwsError?)null);
        });
        return editError ?? ApiJson.Created(created!, ApiGatewayJsonContext.Default.HttpRoute);
    }

    private static IResult GetRoutes(HttpContext context, string apiId, ApiRegistry registry, IOptions<LaminaOptions> options) =>
        List(context, apiId, registry, options.Value, static api => api.Routes, ApiGatewayJsonContext.Default.HttpPageHttpRoute);

    private static IResult GetRoute(string apiId, string routeId, ApiRegistry registry, IOptions<LaminaOptions> options) =>
        Find(apiId, registry, options.Value, api => api.Routes.FirstOrDefault(r => r.RouteId == routeId), "Route", ApiGatewayJsonContext.Default.HttpRoute);

    private static async Task<IResult> UpdateRouteAsync(HttpContext context, string apiId, string routeId, ApiRegistry registry)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.HttpRoute);
        if (error is not null)
        {
            return error;
        }
        if (request!.RouteKey is { } key && ValidateRouteKey(key) is { } keyError)
        {
            return keyError;
        }
        var (updated, editError) = await registry.EditHttpAsync(apiId, edit =>
        {
            if (edit.Api.Routes.FirstOrDefault(r => r.RouteId == routeId) is not { } route)
            {
                return (null, ApiErrors.NotFound($"Invalid Route identifier specified {routeId}"));
            }
            var next = route with
            {
                RouteKey = request.RouteKey ?? route.RouteKey,
                Target = request.Target ?? route.Target,
                AuthorizationType = request.AuthorizationType ?? route.AuthorizationType,
                AuthorizerId = request.AuthorizerId ?? (request.AuthorizationType is "NONE" or "AWS_IAM" ? null : route.AuthorizerId),
                AuthorizationScopes = request.AuthorizationScopes ?? route.AuthorizationScopes,
                ApiKeyRequired = request.ApiKeyRequired ?? route.ApiKeyRequired,
                OperationName = request.OperationName ?? route.OperationName,
                RequestParameters = request.RequestParameters ?? route.RequestParameters,
                RequestModels = request.RequestModels ?? route.RequestModels,
            };
            if (next.RouteKey != route.RouteKey && edit.Api.Routes.Any(r => r.RouteKey == next.RouteKey))
            {
                return (null, ApiErrors.Conflict($"Unable to update route {next.RouteKey}. A route with the same key already exists."));
            }
            if (ValidateRoute(edit.Api, next) is { } invalid)
            {
                return (null, invalid);
            }
            edit.Api = edit.Api with { Routes = edit.Api.Routes.Replace(route, next) };
            return (next, (AwsError?)null);
        });
        return editError ?? ApiJson.Ok(updated!, ApiGatewayJsonContext.Default.HttpRoute);
    }

    private static async Task<IResult> DeleteRouteAsync(string apiId, string routeId, ApiRegistry registry)
    {
        var (_, error) = await registry.EditHttpAsync(apiId, edit =>
        {
            if (edit.Api.Routes.FirstOrDefault(r => r.RouteId == routeId) is not { } route)
            {
                return (false, ApiErrors.NotFound($"Invalid Route identifier specified {routeId}"));
            }
            edit.Api = edit.Api with { Routes = edit.Api.Routes.Remove(route) };
            return (true, (AwsError?)null);
        });
        return error ?? Results.NoContent();
    }

    private static AwsError? ValidateRouteKey(string routeKey)
    {
        if (!RouteKeyPattern().IsMatch(routeKey))
        {
            return ApiErrors.BadRequest($"Invalid route key specified: '{routeKey}'. Use $default or '<METHOD> /<path>', e.g. 'GET /items/{{id}}'.");
        }
        if (routeKey == "$default")
        {
            return null;
        }
        var (method, path) = LiveApi.SplitRouteKey(routeKey);
        if (!RouteTemplates.Methods.Contains(method))
        {
            return ApiErrors.BadRequest($"Invalid route key specified: '{routeKey}': the method must be one of {string.Join(", ", RouteTemplates.Methods.Order())}.");
        }
        return RouteTemplates.Validate(path!) is { } reason ? ApiErrors.BadRequest($"Invalid route key specified: '{routeKey}': {reason}.") : null;
    }

    private static AwsError? ValidateRoute(StoredHttpApi api, HttpRoute route)
    {
        if (route.Target is { } target && (!target.StartsWith("integrations/", StringComparison.Ordinal)
            || !api.Integrations.Any(i => i.IntegrationId == target["integrations/".Length..])))
        {
            return ApiErrors.BadRequest($"Invalid target specified: '{target}'. A target is 'integrations/<integrationId>' of an integration of this API.");
        }
        switch (route.AuthorizationType)
        {
            case "NONE" or "AWS_IAM":
                return route.AuthorizerId is null ? null : ApiErrors.BadRequest($"An authorizer is not used with authorizationType {route.AuthorizationType}.");
            case "JWT" or "CUSTOM":
                var wanted = route.AuthorizationType == "JWT" ? "JWT" : "REQUEST";
                if (route.AuthorizerId is not { } id || api.Authorizers.FirstOrDefault(a => a.AuthorizerId == id) is not { } authorizer)
                {
                    return ApiErrors.BadRequest($"authorizationType {route.AuthorizationType} needs the authorizerId of an authorizer of this API.");
                }
                if (authorizer.AuthorizerType != wanted)
                {
                    return ApiErrors.BadRequest($"authorizationType {route.AuthorizationType} needs a {wanted} authorizer; {id} is {authorizer.AuthorizerType}.");
                }
                return route.AuthorizationScopes is { Count: > 0 } && wanted != "JWT"
                    ? ApiErrors.BadRequest("authorizationScopes are supported only for JWT authorizers.")
                    : null;
            default:
                return ApiErrors.BadRequest($"Invalid authorizationType specified: {route.AuthorizationType}. Use NONE, AWS_IAM, CUSTOM or JWT.");
        }
    }

    // ---- Integrations ------------------------------------------------------------------------------------------------

    private static async Task<IResult> CreateIntegrationAsync(HttpContext context, string apiId, ApiRegistry registry)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.HttpIntegration);
        if (error is not null)
        {
            return error;
        }
        var integration = request! with
        {
            IntegrationId = ApiRegistry.NewId(7),
            ApiGatewayManaged = null,
            ConnectionType = request.ConnectionType ?? "INTERNET",
            IntegrationMethod = request.IntegrationMethod ?? (request.IntegrationType == "AWS_PROXY" ? "POST" : null),
            TimeoutInMillis = request.TimeoutInMillis ?? LiveIntegration.HttpApiDefaultTimeoutMs,
            PayloadFormatVersion = request.PayloadFormatVersion ?? (request.IntegrationType == "HTTP_PROXY" ? "1.0" : null),
        };
        if (ValidateIntegration(integration) is { } invalid)
        {
            return invalid;
        }
        var (created, editError) = await registry.EditHttpAsync(apiId, edit =>
        {
            edit.Api = edit.Api with { Integrations = edit.Api.Integrations.Add(integration) };
            return (integration, (AwsError?)null);
        });
        return editError ?? ApiJson.Created(created!, ApiGatewayJsonContext.Default.HttpIntegration);
    }

    private static IResult GetIntegrations(HttpContext context, string apiId, ApiRegistry registry, IOptions<LaminaOptions> options) =>
        List(context, apiId, registry, options.Value, static api => api.Integrations, ApiGatewayJsonContext.Default.HttpPageHttpIntegration);

    private static IResult GetIntegration(string apiId, string integrationId, ApiRegistry registry, IOptions<LaminaOptions> options) =>
        Find(apiId, registry, options.Value, api => api.Integrations.FirstOrDefault(i => i.IntegrationId == integrationId), "Integration",
            ApiGatewayJsonContext.Default.HttpIntegration);

    private static async Task<IResult> UpdateIntegrationAsync(HttpContext context, string apiId, string integrationId, ApiRegistry registry)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.HttpIntegration);
        if (error is not null)
        {
            return error;
        }
        var (updated, editError) = await registry.EditHttpAsync(apiId, edit =>
        {
            if (edit.Api.Integrations.FirstOrDefault(i => i.IntegrationId == integrationId) is not { } integration)
            {
                return (null, ApiErrors.NotFound($"Invalid Integration identifier specified {integrationId}"));
            }
            var next = integration with
            {
                IntegrationType = request!.IntegrationType ?? integration.IntegrationType,
                IntegrationUri = request.IntegrationUri ?? integration.IntegrationUri,
                IntegrationMethod = request.IntegrationMethod ?? integration.IntegrationMethod,
                PayloadFormatVersion = request.PayloadFormatVersion ?? integration.PayloadFormatVersion,
                TimeoutInMillis = request.TimeoutInMillis ?? integration.TimeoutInMillis,
                CredentialsArn = request.CredentialsArn ?? integration.CredentialsArn,
                Description = request.Description ?? integration.Description,
                RequestParameters = request.RequestParameters ?? integration.RequestParameters,
                ResponseParameters = request.ResponseParameters ?? integration.ResponseParameters,
                ConnectionType = request.ConnectionType ?? integration.ConnectionType,
                TlsConfig = request.TlsConfig ?? integration.TlsConfig,
            };
            if (ValidateIntegration(next) is { } invalid)
            {
                return (null, invalid);
            }
            edit.Api = edit.Api with { Integrations = edit.Api.Integrations.Replace(integration, next) };
            return (next, (AwsError?)null);
        });
        return editError ?? ApiJson.Ok(updated!, ApiGatewayJsonContext.Default.HttpIntegration);
    }

    private static async Task<IResult> DeleteIntegrationAsync(string apiId, string integrationId, ApiRegistry registry)
    {
        var (_, error) = await registry.EditHttpAsync(apiId, edit =>
        {
            if (edit.Api.Integrations.FirstOrDefault(i => i.IntegrationId == integrationId) is not { } integration)
            {
                return (false, ApiErrors.NotFound($"Invalid Integration identifier specified {integrationId}"));
            }
            if (edit.Api.Routes.FirstOrDefault(r => r.Target == $"integrations/{integrationId}") is { } route)
            {
                return (false, ApiErrors.Conflict($"Cannot delete integration {integrationId}: the route {route.RouteKey} ({route.RouteId}) targets it."));
            }
            edit.Api = edit.Api with { Integrations = edit.Api.Integrations.Remove(integration) };
            return (true, (AwsError?)null);
        });
        return error ?? Results.NoContent();
    }

    private static AwsError? ValidateIntegration(HttpIntegration integration)
    {
        if (integration.TimeoutInMillis is < 50 or > LiveIntegration.HttpApiDefaultTimeoutMs)
        {
            return ApiErrors.BadRequest("Invalid timeoutInMillis specified: it must be between 50 and 30000 milliseconds.");
        }
        switch (integration.IntegrationType)
        {
            case "AWS_PROXY":
                if (integration.IntegrationSubtype is not null)
                {
                    return ApiErrors.BadRequest($"Lamina does not serve AWS service integrations (integrationSubtype {integration.IntegrationSubtype}); integrate a Lambda function.");
                }
                if (integration.IntegrationUri is not { } uri || IntegrationTarget.Parse(uri) is null && !uri.Contains("${stageVariables.", StringComparison.Ordinal))
                {
                    return ApiErrors.BadRequest("Invalid integrationUri specified: an AWS_PROXY integration needs a Lambda function ARN (or its invocation URI).");
                }
                return integration.PayloadFormatVersion is "1.0" or "2.0"
                    ? null
                    : ApiErrors.BadRequest("Invalid payloadFormatVersion specified: a Lambda proxy integration needs 1.0 or 2.0.");
            case "HTTP_PROXY":
                if (!Uri.TryCreate(integration.IntegrationUri, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
                {
                    return ApiErrors.BadRequest("Invalid integrationUri specified: an HTTP_PROXY integration needs an http(s) URL.");
                }
                if (integration.IntegrationMethod is not { } method || !RouteTemplates.Methods.Contains(method))
                {
                    return ApiErrors.BadRequest("Invalid integrationMethod specified: an HTTP_PROXY integration needs one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, ANY.");
                }
                return integration.PayloadFormatVersion is "1.0" ? null : ApiErrors.BadRequest("An HTTP_PROXY integration uses payloadFormatVersion 1.0.");
            case null:
                return ApiErrors.BadRequest("integrationType is required.");
            default:
                return ApiErrors.BadRequest($"Invalid integrationType specified: {integration.IntegrationType}. HTTP APIs support AWS_PROXY and HTTP_PROXY.");
        }
    }

    // ---- Authorizers -------------------------------------------------------------------------------------------------

    private static async Task<IResult> CreateAuthorizerAsync(HttpContext context, string apiId, ApiRegistry registry)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.HttpAuthorizer);
        if (error is not null)
        {
            return error;
        }
        var authorizer = request! with
        {
            AuthorizerId = ApiRegistry.NewId(6),
            AuthorizerResultTtlInSeconds = request.AuthorizerType == "REQUEST" ? request.AuthorizerResultTtlInSeconds ?? 0 : request.AuthorizerResultTtlInSeconds,
        };
        if (ValidateAuthorizer(authorizer) is { } invalid)
        {
            return invalid;
        }
        var (created, editError) = await registry.EditHttpAsync(apiId, edit =>
        {
            edit.Api = edit.Api with { Authorizers = edit.Api.Authorizers.Add(authorizer) };
            return (authorizer, (AwsError?)null);
        });
        return editError ?? ApiJson.Created(created!, ApiGatewayJsonContext.Default.HttpAuthorizer);
    }

    private static IResult GetAuthorizers(HttpContext context, string apiId, ApiRegistry registry, IOptions<LaminaOptions> options) =>
        List(context, apiId, registry, options.Value, static api => api.Authorizers, ApiGatewayJsonContext.Default.HttpPageHttpAuthorizer);

    private static IResult GetAuthorizer(string apiId, string authorizerId, ApiRegistry registry, IOptions<LaminaOptions> options) =>
        Find(apiId, registry, options.Value, api => api.Authorizers.FirstOrDefault(a => a.AuthorizerId == authorizerId), "Authorizer",
            ApiGatewayJsonContext.Default.HttpAuthorizer);

    private static async Task<IResult> UpdateAuthorizerAsync(HttpContext context, string apiId, string authorizerId, ApiRegistry registry)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.HttpAuthorizer);
        if (error is not null)
        {
            return error;
        }
        var (updated, editError) = await registry.EditHttpAsync(apiId, edit =>
        {
            if (edit.Api.Authorizers.FirstOrDefault(a => a.AuthorizerId == authorizerId) is not { } authorizer)
            {
                return (null, ApiErrors.NotFound($"Invalid Authorizer identifier specified {authorizerId}"));
            }
            var next = authorizer with
            {
                Name = request!.Name ?? authorizer.Name,
                AuthorizerType = request.AuthorizerType ?? authorizer.AuthorizerType,
                AuthorizerUri = request.AuthorizerUri ?? authorizer.AuthorizerUri,
                AuthorizerCredentialsArn = request.AuthorizerCredentialsArn ?? authorizer.AuthorizerCredentialsArn,
                AuthorizerPayloadFormatVersion = request.AuthorizerPayloadFormatVersion ?? authorizer.AuthorizerPayloadFormatVersion,
                AuthorizerResultTtlInSeconds = request.AuthorizerResultTtlInSeconds ?? authorizer.AuthorizerResultTtlInSeconds,
                EnableSimpleResponses = request.EnableSimpleResponses ?? authorizer.EnableSimpleResponses,
                IdentitySource = request.IdentitySource ?? authorizer.IdentitySource,
                IdentityValidationExpression = request.IdentityValidationExpression ?? authorizer.IdentityValidationExpression,
                JwtConfiguration = request.JwtConfiguration ?? authorizer.JwtConfiguration,
            };
            if (ValidateAuthorizer(next) is { } invalid)
            {
                return (null, invalid);
            }
            edit.Api = edit.Api with { Authorizers = edit.Api.Authorizers.Replace(authorizer, next) };
            return (next, (AwsError?)null);
        });
        return editError ?? ApiJson.Ok(updated!, ApiGatewayJsonContext.Default.HttpAuthorizer);
    }

    private static async Task<IResult> DeleteAuthorizerAsync(string apiId, string authorizerId, ApiRegistry registry)
    {
        var (_, error) = await registry.EditHttpAsync(apiId, edit =>
        {
            if (edit.Api.Authorizers.FirstOrDefault(a => a.AuthorizerId == authorizerId) is not { } authorizer)
            {
                return (false, ApiErrors.NotFound($"Invalid Authorizer identifier specified {authorizerId}"));
            }
            if (edit.Api.Routes.FirstOrDefault(r => r.AuthorizerId == authorizerId) is { } route)
            {
                return (false, ApiErrors.Conflict($"Cannot delete authorizer {authorizerId}: the route {route.RouteKey} ({route.RouteId}) uses it."));
            }
            edit.Api = edit.Api with { Authorizers = edit.Api.Authorizers.Remove(authorizer) };
            return (true, (AwsError?)null);
        });
        return error ?? Results.NoContent();
    }

    private static AwsError? ValidateAuthorizer(HttpAuthorizer authorizer)
    {
        if (authorizer.Name is not { Length: > 0 and <= 128 })
        {
            return ApiErrors.BadRequest("name is required (1 to 128 characters).");
        }
        if (authorizer.AuthorizerResultTtlInSeconds is < 0 or > 3600)
        {
            return ApiErrors.BadRequest("Invalid authorizerResultTtlInSeconds specified: it must be between 0 and 3600.");
        }
        var sources = authorizer.IdentitySource ?? [];
        if (sources.FirstOrDefault(s => !IdentitySourcePattern().IsMatch(s)) is { } badSource)
        {
            return ApiErrors.BadRequest($"Invalid identity source specified: '{badSource}'. Use $request.header.<name>, $request.querystring.<name>, $context.<variable> or $stageVariables.<name>.");
        }
        switch (authorizer.AuthorizerType)
        {
            case "JWT":
                if (authorizer.JwtConfiguration?.Issuer is not { } issuer || !Uri.TryCreate(issuer, UriKind.Absolute, out var issuerUri) || issuerUri.Scheme is not ("http" or "https"))
                {
                    return ApiErrors.BadRequest("A JWT authorizer needs jwtConfiguration.issuer: the issuer's URL (its JWKS is found through /.well-known/openid-configuration).");
                }
                return sources.Count != 1 || !sources[0].StartsWith("$request.", StringComparison.Ordinal)
                    ? ApiErrors.BadRequest("A JWT authorizer takes exactly one identity source, a header or query string ($request.header.Authorization).")
                    : null;
            case "REQUEST":
                if (authorizer.AuthorizerUri is not { } uri || IntegrationTarget.Parse(uri) is null && !uri.Contains("${stageVariables.", StringComparison.Ordinal))
                {
                    return ApiErrors.BadRequest("A REQUEST authorizer needs authorizerUri: a Lambda function ARN or its invocation URI.");
                }
                if (authorizer.AuthorizerPayloadFormatVersion is not ("1.0" or "2.0"))
                {
                    return ApiErrors.BadRequest("A REQUEST authorizer needs authorizerPayloadFormatVersion 1.0 or 2.0.");
                }
                if (authorizer.EnableSimpleResponses == true && authorizer.AuthorizerPayloadFormatVersion != "2.0")
                {
                    return ApiErrors.BadRequest("enableSimpleResponses needs authorizerPayloadFormatVersion 2.0.");
                }
                return authorizer.AuthorizerResultTtlInSeconds > 0 && sources.Count == 0
                    ? ApiErrors.BadRequest("Caching (authorizerResultTtlInSeconds > 0) needs at least one identity source: they are the cache key.")
                    : null;
            default:
                return ApiErrors.BadRequest("Invalid authorizerType specified: HTTP APIs support REQUEST and JWT.");
        }
    }

    // ---- Stages ------------------------------------------------------------------------------------------------------

    private static async Task<IResult> CreateStageAsync(HttpContext context, string apiId, ApiRegistry registry)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.HttpStage);
        if (error is not null)
        {
            return error;
        }
        if (request!.StageName is not { } name || !StageNamePattern().IsMatch(name) || name.StartsWith('$') && name != "$default")
        {
            return ApiErrors.BadRequest("Invalid stage name specified: use 1 to 128 letters, digits, '-' and '_', or $default.");
        }
        if (ValidateStage(request) is { } invalid)
        {
            return invalid;
        }
        var (created, editError) = await registry.EditHttpAsync(apiId, edit =>
        {
            if (edit.Api.Stages.Any(s => s.StageName == name))
            {
                return (null, ApiErrors.Conflict($"Stage {name} already exists"));
            }
            if (request.DeploymentId is { } deployment && !edit.Api.Deployments.Any(d => d.DeploymentId == deployment))
            {
                return (null, ApiErrors.NotFound($"Invalid Deployment identifier specified {deployment}"));
            }
            var now = edit.Now;
            var stage = request with
            {
                ApiGatewayManaged = null,
                AutoDeploy = request.AutoDeploy ?? false,
                CreatedDate = now,
                LastUpdatedDate = now,
                DefaultRouteSettings = request.DefaultRouteSettings ?? new HttpRouteSettings { DetailedMetricsEnabled = false },
                RouteSettings = request.RouteSettings ?? [],
                StageVariables = request.StageVariables ?? [],
                Tags = request.Tags ?? [],
            };
            edit.Api = edit.Api with { Stages = edit.Api.Stages.Add(stage) };
            return (stage.StageName, (AwsError?)null);
        });
        // Answer the stage as stored: AutoDeploy may have given it a deployment.
        return editError ?? ApiJson.Created(StageOf(registry, apiId, created!)!, ApiGatewayJsonContext.Default.HttpStage);
    }

    private static HttpStage? StageOf(ApiRegistry registry, string apiId, string name) =>
        registry.TryGetHttp(apiId, out var api) ? api.Stages.FirstOrDefault(s => s.StageName == name) : null;

    private static IResult GetStages(HttpContext context, string apiId, ApiRegistry registry, IOptions<LaminaOptions> options) =>
        List(context, apiId, registry, options.Value, static api => api.Stages, ApiGatewayJsonContext.Default.HttpPageHttpStage);

    private static IResult GetStage(string apiId, string stageName, ApiRegistry registry, IOptions<LaminaOptions> options) =>
        Find(apiId, registry, options.Value, api => api.Stages.FirstOrDefault(s => s.StageName == stageName), "Stage", ApiGatewayJsonContext.Default.HttpStage);

    private static async Task<IResult> UpdateStageAsync(HttpContext context, string apiId, string stageName, ApiRegistry registry)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.HttpStage);
        if (error is not null)
        {
            return error;
        }
        if (ValidateStage(request!) is { } invalid)
        {
            return invalid;
        }
        var (updated, editError) = await registry.EditHttpAsync(apiId, edit =>
        {
            if (edit.Api.Stages.FirstOrDefault(s => s.StageName == stageName) is not { } stage)
            {
                return (null, ApiErrors.NotFound($"Invalid stage identifier specified {stageName}"));
            }
            if (request!.DeploymentId is { } deployment && !edit.Api.Deployments.Any(d => d.DeploymentId == deployment))
            {
                return (null, ApiErrors.NotFound($"Invalid Deployment identifier specified {deployment}"));
            }
            var variables = stage.StageVariables;
            if (request.StageVariables is { } changes)
            {
                // An empty value removes the variable, as UpdateStage does.
                variables = new Dictionary<string, string>(variables ?? [], StringComparer.Ordinal);
                foreach (var (key, value) in changes)
                {
                    if (value.Length == 0)
                    {
                        variables.Remove(key);
                    }
                    else
                    {
                        variables[key] = value;
                    }
                }
            }
            var next = stage with
            {
                AccessLogSettings = request.AccessLogSettings ?? stage.AccessLogSettings,
                AutoDeploy = request.AutoDeploy ?? stage.AutoDeploy,
                DefaultRouteSettings = request.DefaultRouteSettings ?? stage.DefaultRouteSettings,
                DeploymentId = request.DeploymentId ?? stage.DeploymentId,
                Description = request.Description ?? stage.Description,
                RouteSettings = request.RouteSettings ?? stage.RouteSettings,
                StageVariables = variables,
                LastUpdatedDate = edit.Now,
            };
            edit.Api = edit.Api with { Stages = edit.Api.Stages.Replace(stage, next) };
            return (stageName, (AwsError?)null);
        });
        return editError ?? ApiJson.Ok(StageOf(registry, apiId, updated!)!, ApiGatewayJsonContext.Default.HttpStage);
    }

    private static async Task<IResult> DeleteStageAsync(string apiId, string stageName, ApiRegistry registry)
    {
        var (_, error) = await registry.EditHttpAsync(apiId, edit =>
        {
            if (edit.Api.Stages.FirstOrDefault(s => s.StageName == stageName) is not { } stage)
            {
                return (false, ApiErrors.NotFound($"Invalid stage identifier specified {stageName}"));
            }
            edit.Api = edit.Api with { Stages = edit.Api.Stages.Remove(stage) };
            return (true, (AwsError?)null);
        });
        return error ?? Results.NoContent();
    }

    private static async Task<IResult> DeleteAccessLogSettingsAsync(string apiId, string stageName, ApiRegistry registry)
    {
        var (_, error) = await registry.EditHttpAsync(apiId, edit =>
        {
            if (edit.Api.Stages.FirstOrDefault(s => s.StageName == stageName) is not { } stage)
            {
                return (false, ApiErrors.NotFound($"Invalid stage identifier specified {stageName}"));
            }
            edit.Api = edit.Api with { Stages = edit.Api.Stages.Replace(stage, stage with { AccessLogSettings = null }) };
            return (true, (AwsError?)null);
        });
        return error ?? Results.NoContent();
    }

    private static IResult ResetAuthorizersCache(string apiId, string stageName, ApiRegistry registry, IOptions<LaminaOptions> options)
    {
        if (!registry.TryGetHttp(apiId, out _))
        {
            return ApiErrors.ApiNotFound(options.Value.AccountId, apiId);
        }
        if (!registry.TryGetLive(apiId, out var live) || !live.Stages.TryGetValue(stageName, out var stage))
        {
            return ApiErrors.NotFound($"Invalid stage identifier specified {stageName}");
        }
        stage.ClearAuthorizerCaches();
        return Results.NoContent();
    }

    private static AwsError? ValidateStage(HttpStage stage)
    {
        if (stage.StageVariables?.Keys.FirstOrDefault(k => !StageVariableNamePattern().IsMatch(k)) is { } badName)
        {
            return ApiErrors.BadRequest($"Invalid stage variable name specified: '{badName}'. Use letters, digits and '_' (at most 64).");
        }
        if (stage.AccessLogSettings is { } logs)
        {
            if (logs.DestinationArn is not { } arn || LiveAccessLog.Of(arn, "x") is null)
            {
                return ApiErrors.BadRequest("Invalid accessLogSettings.destinationArn: give a log group's ARN, arn:aws:logs:<region>:<account>:log-group:<name>.");
            }
            if (logs.Format is not { Length: > 0 } format || !format.Contains("$context.requestId", StringComparison.Ordinal))
            {
                return ApiErrors.BadRequest("Invalid accessLogSettings.format: it must contain $context.requestId.");
            }
        }
        return null;
    }

    // ---- Deployments -------------------------------------------------------------------------------------------------

    private static async Task<IResult> CreateDeploymentAsync(HttpContext context, string apiId, ApiRegistry registry)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.HttpDeployment);
        if (error is not null)
        {
            return error;
        }
        var (created, editError) = await registry.EditHttpAsync(apiId, edit =>
        {
            HttpStage? stage = null;
            if (request!.StageName is { } stageName)
            {
                stage = edit.Api.Stages.FirstOrDefault(s => s.StageName == stageName);
                if (stage is null)
                {
                    return (null, ApiErrors.NotFound($"Invalid stage identifier specified {stageName}"));
                }
                if (stage.AutoDeploy == true)
                {
                    return (null, ApiErrors.BadRequest($"Stage {stageName} has AutoDeploy: its deployments are made by every change, not by CreateDeployment."));
                }
            }
            if (edit.Api.Routes.Count == 0)
            {
                return (null, ApiErrors.BadRequest("Unable to deploy API because no routes exist in this API"));
            }
            var deployment = edit.Deploy(request.Description, auto: false);
            if (stage is not null)
            {
                var next = stage with
                {
                    DeploymentId = deployment.DeploymentId,
                    LastDeploymentStatusMessage = $"Successfully deployed stage with deployment ID '{deployment.DeploymentId}'",
                    LastUpdatedDate = edit.Now,
                };
                edit.Api = edit.Api with { Stages = edit.Api.Stages.Replace(stage, next) };
            }
            return (deployment, (AwsError?)null);
        });
        return editError ?? ApiJson.Created(created!, ApiGatewayJsonContext.Default.HttpDeployment);
    }

    private static IResult GetDeployments(HttpContext context, string apiId, ApiRegistry registry, IOptions<LaminaOptions> options) =>
        List(context, apiId, registry, options.Value, static api => api.Deployments, ApiGatewayJsonContext.Default.HttpPageHttpDeployment);

    private static IResult GetDeployment(string apiId, string deploymentId, ApiRegistry registry, IOptions<LaminaOptions> options) =>
        Find(apiId, registry, options.Value, api => api.Deployments.FirstOrDefault(d => d.DeploymentId == deploymentId), "Deployment",
            ApiGatewayJsonContext.Default.HttpDeployment);

    private static async Task<IResult> UpdateDeploymentAsync(HttpContext context, string apiId, string deploymentId, ApiRegistry registry)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.HttpDeployment);
        if (error is not null)
        {
            return error;
        }
        var (updated, editError) = await registry.EditHttpAsync(apiId, edit =>
        {
            if (edit.Api.Deployments.FirstOrDefault(d => d.DeploymentId == deploymentId) is not { } deployment)
            {
                return (null, ApiErrors.NotFound($"Invalid Deployment identifier specified {deploymentId}"));
            }
            var next = deployment with { Description = request!.Description ?? deployment.Description };
            edit.Api = edit.Api with { Deployments = edit.Api.Deployments.Replace(deployment, next) };
            return (next, (AwsError?)null);
        });
        return editError ?? ApiJson.Ok(updated!, ApiGatewayJsonContext.Default.HttpDeployment);
    }

    private static async Task<IResult> DeleteDeploymentAsync(string apiId, string deploymentId, ApiRegistry registry)
    {
        var (_, error) = await registry.EditHttpAsync(apiId, edit =>
        {
            if (edit.Api.Deployments.FirstOrDefault(d => d.DeploymentId == deploymentId) is not { } deployment)
            {
                return (false, ApiErrors.NotFound($"Invalid Deployment identifier specified {deploymentId}"));
            }
            if (edit.Api.Stages.FirstOrDefault(s => s.DeploymentId == deploymentId) is { } stage)
            {
                return (false, ApiErrors.BadRequest($"Active stages pointing to this deployment must be moved or deleted: stage {stage.StageName} serves it."));
            }
            edit.RemoveDeployment(deployment);
            return (true, (AwsError?)null);
        });
        return error ?? Results.NoContent();
    }

    // ---- Tags --------------------------------------------------------------------------------------------------------

    private static IResult GetTags(string resourceArn, ApiRegistry registry, IOptions<LaminaOptions> options) =>
        TaggedApi(resourceArn, registry) is { } api
            ? ApiJson.Ok(new HttpTags { Tags = api.Api.Tags ?? [] }, ApiGatewayJsonContext.Default.HttpTags)
            : ApiErrors.NotFound($"Invalid resource ARN specified {Uri.UnescapeDataString(resourceArn)}: tags are kept for APIs (arn:aws:apigateway:{options.Value.Region}::/apis/<id>).");

    private static async Task<IResult> TagResourceAsync(HttpContext context, string resourceArn, ApiRegistry registry, IOptions<LaminaOptions> options)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.HttpTags);
        if (error is not null)
        {
            return error;
        }
        if (TaggedApi(resourceArn, registry) is not { } api)
        {
            return ApiErrors.NotFound($"Invalid resource ARN specified {Uri.UnescapeDataString(resourceArn)}");
        }
        var (_, editError) = await registry.EditHttpAsync(api.Api.ApiId!, edit =>
        {
            var tags = new Dictionary<string, string>(edit.Api.Api.Tags ?? [], StringComparer.Ordinal);
            foreach (var (key, value) in request!.Tags ?? [])
            {
                tags[key] = value;
            }
            edit.Api = edit.Api with { Api = edit.Api.Api with { Tags = tags } };
            return (true, (AwsError?)null);
        });
        return editError ?? Results.StatusCode(StatusCodes.Status201Created);
    }

    private static async Task<IResult> UntagResourceAsync(HttpContext context, string resourceArn, ApiRegistry registry)
    {
        if (TaggedApi(resourceArn, registry) is not { } api)
        {
            return ApiErrors.NotFound($"Invalid resource ARN specified {Uri.UnescapeDataString(resourceArn)}");
        }
        var keys = context.Request.Query["tagKeys"].Select(static k => k!).ToHashSet(StringComparer.Ordinal);
        var (_, editError) = await registry.EditHttpAsync(api.Api.ApiId!, edit =>
        {
            var tags = (edit.Api.Api.Tags ?? []).Where(t => !keys.Contains(t.Key)).ToDictionary(StringComparer.Ordinal);
            edit.Api = edit.Api with { Api = edit.Api.Api with { Tags = tags } };
            return (true, (AwsError?)null);
        });
        return editError ?? Results.NoContent();
    }

    private static StoredHttpApi? TaggedApi(string resourceArn, ApiRegistry registry)
    {
        var arn = Uri.UnescapeDataString(resourceArn);
        var marker = arn.IndexOf("::/apis/", StringComparison.Ordinal);
        return arn.StartsWith("arn:aws:apigateway:", StringComparison.Ordinal) && marker > 0 && registry.TryGetHttp(arn[(marker + "::/apis/".Length)..], out var api)
            ? api
            : null;
    }

    // ---- Shared ------------------------------------------------------------------------------------------------------

    private static IResult List<T>(HttpContext context, string apiId, ApiRegistry registry, LaminaOptions options, Func<StoredHttpApi, IEnumerable<T>> select,
        System.Text.Json.Serialization.Metadata.JsonTypeInfo<HttpPage<T>> typeInfo)
    {
        if (!registry.TryGetHttp(apiId, out var api))
        {
            return ApiErrors.ApiNotFound(options.AccountId, apiId);
        }
        var (page, next) = ApiJson.Page(select(api).ToList(), ApiJson.Query(context, "nextToken"), ApiJson.Query(context, "maxResults"));
        return ApiJson.Ok(new HttpPage<T>(page, next), typeInfo);
    }

    private static IResult Find<T>(string apiId, ApiRegistry registry, LaminaOptions options, Func<StoredHttpApi, T?> select, string kind,
        System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> typeInfo) where T : class
    {
        if (!registry.TryGetHttp(apiId, out var api))
        {
            return ApiErrors.ApiNotFound(options.AccountId, apiId);
        }
        return select(api) is { } found ? ApiJson.Ok(found, typeInfo) : ApiErrors.NotFound($"Invalid {kind} identifier specified");
    }

}
