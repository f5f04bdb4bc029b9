using System.Globalization;
using System.Text.RegularExpressions;
using Lamina.Server.Hosting;
using Lamina.Server.Protocols;
using Microsoft.Extensions.Options;

namespace Lamina.Server.ApiGateway;

/// <summary>
/// The REST API control plane (apigateway 2015-07-09, REST-JSON under <c>/restapis</c>): APIs (created, imported from
/// OpenAPI, put over), resources and methods, integrations with their responses, authorizers, deployments and stages,
/// tags; updates are API Gateway's JSON-patch operations. API keys and usage plans are in <see cref="ApiKeysApi"/>.
/// Models, request validators, gateway responses, documentation, domain names, VPC links, SDKs and exports are not served.
/// </summary>
internal static partial class RestApisApi
{
    [GeneratedRegex(@"^[a-zA-Z0-9_-]{1,128}\z", RegexOptions.CultureInvariant)]
    private static partial Regex StageNamePattern();

    [GeneratedRegex(@"^[a-zA-Z0-9_]{1,64}\z", RegexOptions.CultureInvariant)]
    private static partial Regex VariableNamePattern();

    [GeneratedRegex(@"^(\{[a-zA-Z0-9._-]+\+?\}|[a-zA-Z0-9._:@~!$&'()*,;=-]+)\z", RegexOptions.CultureInvariant)]
    private static partial Regex PathPartPattern();

    private const string Api = "/restapis/{restApiId}";
    private const string Resource = Api + "/resources/{resourceId}";
    private const string Method = Resource + "/methods/{httpMethod}";

    public static IEndpointRouteBuilder MapRestApisApi(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapPost("/restapis", CreateOrImportAsync);
        endpoints.MapGet("/restapis", GetRestApis);
        endpoints.MapGet(Api, GetRestApi);
        endpoints.MapPut(Api, PutRestApiAsync);
        endpoints.MapMethods(Api, ["PATCH"], UpdateRestApiAsync);
        endpoints.MapDelete(Api, DeleteRestApiAsync);

        endpoints.MapGet(Api + "/resources", GetResources);
        endpoints.MapGet(Resource, GetResource);
        endpoints.MapPost(Resource, CreateResourceAsync);
        endpoints.MapMethods(Resource, ["PATCH"], UpdateResourceAsync);
        endpoints.MapDelete(Resource, DeleteResourceAsync);

        endpoints.MapPut(Method, PutMethodAsync);
        endpoints.MapGet(Method, GetMethod);
        endpoints.MapMethods(Method, ["PATCH"], UpdateMethodAsync);
        endpoints.MapDelete(Method, DeleteMethodAsync);
        endpoints.MapPut(Method + "/responses/{statusCode}", PutMethodResponseAsync);
        endpoints.MapGet(Method + "/responses/{statusCode}", GetMethodResponse);
        endpoints.MapDelete(Method + "/responses/{statusCode}", DeleteMethodResponseAsync);

        endpoints.MapPut(Method + "/integration", PutIntegrationAsync);
        endpoints.MapGet(Method + "/integration", GetIntegration);
        endpoints.MapMethods(Method + "/integration", ["PATCH"], UpdateIntegrationAsync);
        endpoints.MapDelete(Method + "/integration", DeleteIntegrationAsync);
        endpoints.MapPut(Method + "/integration/responses/{statusCode}", PutIntegrationResponseAsync);
        endpoints.MapGet(Method + "/integration/responses/{statusCode}", GetIntegrationResponse);
        endpoints.MapDelete(Method + "/integration/responses/{statusCode}", DeleteIntegrationResponseAsync);

        endpoints.MapPost(Api + "/authorizers", CreateAuthorizerAsync);
        endpoints.MapGet(Api + "/authorizers", GetAuthorizers);
        endpoints.MapGet(Api + "/authorizers/{authorizerId}", GetAuthorizer);
        endpoints.MapMethods(Api + "/authorizers/{authorizerId}", ["PATCH"], UpdateAuthorizerAsync);
        endpoints.MapDelete(Api + "/authorizers/{authorizerId}", DeleteAuthorizerAsync);

        endpoints.MapPost(Api + "/deployments", CreateDeploymentAsync);
        endpoints.MapGet(Api + "/deployments", GetDeployments);
        endpoints.MapGet(Api + "/deployments/{deploymentId}", GetDeployment);
        endpoints.MapMethods(Api + "/deployments/{deploymentId}", ["PATCH"], UpdateDeploymentAsync);
        endpoints.MapDelete(Api + "/deployments/{deploymentId}", DeleteDeploymentAsync);

        endpoints.MapPost(Api + "/stages", CreateStageAsync);
        endpoints.MapGet(Api + "/stages", GetStages);
        endpoints.MapGet(Api + "/stages/{stageName}", GetStage);
        endpoints.MapMethods(Api + "/stages/{stageName}", ["PATCH"], UpdateStageAsync);
        endpoints.MapDelete(Api + "/stages/{stageName}", DeleteStageAsync);
        endpoints.MapDelete(Api + "/stages/{stageName}/cache/authorizers", FlushAuthorizersCache);

        endpoints.MapGet("/tags/{**resourceArn}", GetTags);
        endpoints.MapPut("/tags/{**resourceArn}", TagResourceAsync);
        endpoints.MapDelete("/tags/{**resourceArn}", UntagResourceAsync);
        endpoints.MapApiKeysApi();
        return endpoints;
    }

    // ---- REST APIs ---------------------------------------------------------------------------------------------------

    private static async Task<IResult> CreateOrImportAsync(HttpContext context, ApiRegistry registry, IOptions<LaminaOptions> options)
    {
        if (ApiJson.Query(context, "mode") == "import")
        {
            return await ImportAsync(context, registry, options.Value, apiId: null, OpenApiImport.Mode.Create);
        }
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.RestApi);
        if (error is not null)
        {
            return error;
        }
        if (request!.Name is not { Length: > 0 })
        {
            return ApiErrors.BadRequest("Invalid REST API name specified: a name is required.");
        }
        if (request.CloneFrom is not null)
        {
            return ApiErrors.BadRequest("cloneFrom is not served by Lamina: export the API's definition and import it instead.");
        }
        if (request.ApiKeySource is not (null or "HEADER" or "AUTHORIZER"))
        {
            return ApiErrors.BadRequest("Invalid apiKeySource specified: use HEADER or AUTHORIZER.");
        }
        var apiId = ApiRegistry.NewId();
        var rootId = ApiRegistry.NewId();
        var api = new StoredRestApi
        {
            Api = request with
            {
                Id = apiId,
                CreatedDate = registry.Now(),
                ApiKeySource = request.ApiKeySource ?? "HEADER",
                EndpointConfiguration = request.EndpointConfiguration ?? new EndpointConfiguration { Types = ["EDGE"] },
                DisableExecuteApiEndpoint = request.DisableExecuteApiEndpoint ?? false,
                RootResourceId = rootId,
                Tags = request.Tags ?? [],
                ApiStatus = "AVAILABLE",
            },
            Resources = [new RestResource { Id = rootId, Path = "/" }],
        };
        var (created, editError) = await registry.EditRestAsync(apiId, static edit => (edit.Api, (AwsError?)null), api);
        return editError ?? ApiJson.Created(created!.Api, ApiGatewayJsonContext.Default.RestApi);
    }

    private static async Task<IResult> PutRestApiAsync(HttpContext context, string restApiId, ApiRegistry registry, IOptions<LaminaOptions> options)
    {
        var mode = ApiJson.Query(context, "mode") switch
        {
            null or "merge" => OpenApiImport.Mode.Merge,
            "overwrite" => OpenApiImport.Mode.Overwrite,
            var other => (OpenApiImport.Mode?)null,
        };
        return mode is { } known
            ? await ImportAsync(context, registry, options.Value, restApiId, known)
            : ApiErrors.BadRequest("Invalid mode specified: use merge or overwrite.");
    }

    /// <summary>ImportRestApi and PutRestApi: the body is the definition (JSON or YAML); <c>failonwarnings</c> and <c>basepath</c> come in the query.</summary>
    private static async Task<IResult> ImportAsync(HttpContext context, ApiRegistry registry, LaminaOptions options, string? apiId, OpenApiImport.Mode mode)
    {
        var (body, error) = await ApiJson.ReadBodyAsync(context);
        if (error is not null)
        {
            return error;
        }
        if (OpenApiImport.ParseDefinition(body, out var parseError) is not { } document)
        {
            return ApiErrors.BadRequest(parseError!);
        }
        using (document)
        {
            var failOnWarnings = string.Equals(ApiJson.Query(context, "failonwarnings"), "true", StringComparison.OrdinalIgnoreCase);
            var (api, importError) = await OpenApiImport.ImportAsync(registry, document.RootElement, apiId, mode, ApiJson.Query(context, "basepath"), failOnWarnings,
                options.AccountId);
            if (importError is not null)
            {
                return importError;
            }
            return apiId is null ? ApiJson.Created(api!.Api, ApiGatewayJsonContext.Default.RestApi) : ApiJson.Ok(api!.Api, ApiGatewayJsonContext.Default.RestApi);
        }
    }

    private static IResult GetRestApis(HttpContext context, ApiRegistry registry)
    {
        var apis = registry.RestApis.OrderBy(static a => a.Api.CreatedDate).ThenBy(static a => a.Api.Id, StringComparer.Ordinal).Select(static a => a.Api).ToList();
        return Page(context, apis, ApiGatewayJsonContext.Default.RestPageRestApi);
    }

    private static IResult GetRestApi(string restApiId, ApiRegistry registry, IOptions<LaminaOptions> options) =>
        registry.TryGetRest(restApiId, out var api) ? ApiJson.Ok(api.Api, ApiGatewayJsonContext.Default.RestApi) : ApiErrors.ApiNotFound(options.Value.AccountId, restApiId);

    private static async Task<IResult> UpdateRestApiAsync(HttpContext context, string restApiId, ApiRegistry registry) =>
        await PatchAsync(context, registry, restApiId, static (edit, operations) =>
        {
            var api = edit.Api.Api;
            foreach (var operation in operations)
            {
                var (path, value) = (operation.Path!, operation.Value);
                switch (operation.Op, path)
                {
                    case ("replace", "/name") when value is { Length: > 0 }:
                        api = api with { Name = value };
                        break;
                    case ("replace", "/description"):
                        api = api with { Description = value };
                        break;
                    case ("replace", "/version"):
                        api = api with { Version = value };
                        break;
                    case ("replace", "/apiKeySource") when value is "HEADER" or "AUTHORIZER":
                        api = api with { ApiKeySource = value };
                        break;
                    case ("replace", "/disableExecuteApiEndpoint"):
                        api = api with { DisableExecuteApiEndpoint = Bool(value) };
                        break;
                    case ("replace", "/minimumCompressionSize"):
                        api = api with { MinimumCompressionSize = value is { Length: > 0 } ? int.Parse(value, CultureInfo.InvariantCulture) : null };
                        break;
                    case ("replace", "/policy"):
                        api = api with { Policy = value };
                        break;
                    case ("add", _) when path.StartsWith("/binaryMediaTypes/", StringComparison.Ordinal):
                        api = api with { BinaryMediaTypes = [.. (api.BinaryMediaTypes ?? []).Append(Unescape(path["/binaryMediaTypes/".Length..])).Distinct()] };
                        break;
                    case ("remove", _) when path.StartsWith("/binaryMediaTypes/", StringComparison.Ordinal):
                        api = api with { BinaryMediaTypes = [.. (api.BinaryMediaTypes ?? []).Where(t => t != Unescape(path["/binaryMediaTypes/".Length..]))] };
                        break;
                    default:
                        return (null, InvalidPatch(operation, "/name, /description, /version, /apiKeySource, /disableExecuteApiEndpoint, /minimumCompressionSize, /policy, /binaryMediaTypes/<type>"));
                }
            }
            edit.Api = edit.Api with { Api = api };
            return (api, null);
        }, ApiGatewayJsonContext.Default.RestApi);

    private static async Task<IResult> DeleteRestApiAsync(string restApiId, ApiRegistry registry, IOptions<LaminaOptions> options) =>
        await registry.DeleteApiAsync(restApiId, http: false) ? Results.StatusCode(StatusCodes.Status202Accepted) : ApiErrors.ApiNotFound(options.Value.AccountId, restApiId);

    // ---- Resources ---------------------------------------------------------------------------------------------------

    private static IResult GetResources(HttpContext context, string restApiId, ApiRegistry registry, IOptions<LaminaOptions> options)
    {
        if (!registry.TryGetRest(restApiId, out var api))
        {
            return ApiErrors.ApiNotFound(options.Value.AccountId, restApiId);
        }
        var embed = context.Request.Query["embed"].Any(static e => e is not null && e.Split(',').Contains("methods"));
        var resources = api.Resources.OrderBy(static r => r.Path, StringComparer.Ordinal).Select(r => Shown(r, embed)).ToList();
        return Page(context, resources, ApiGatewayJsonContext.Default.RestPageRestResource, defaultLimit: 25);
    }

    private static IResult GetResource(HttpContext context, string restApiId, string resourceId, ApiRegistry registry, IOptions<LaminaOptions> options)
    {
        if (!registry.TryGetRest(restApiId, out var api))
        {
            return ApiErrors.ApiNotFound(options.Value.AccountId, restApiId);
        }
        var embed = context.Request.Query["embed"].Any(static e => e is not null && e.Split(',').Contains("methods"));
        return api.Resources.FirstOrDefault(r => r.Id == resourceId) is { } resource
            ? ApiJson.Ok(Shown(resource, embed), ApiGatewayJsonContext.Default.RestResource)
            : ResourceNotFound();
    }

    /// <summary>A resource as GetResources shows it: its methods in full with <c>embed=methods</c>, else only their names.</summary>
    private static RestResource Shown(RestResource resource, bool embed) => embed || resource.ResourceMethods is null
        ? resource
        : resource with { ResourceMethods = resource.ResourceMethods.ToDictionary(static m => m.Key, static _ => new RestMethod(), StringComparer.Ordinal) };

    private static async Task<IResult> CreateResourceAsync(HttpContext context, string restApiId, string resourceId, ApiRegistry registry)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.RestResource);
        if (error is not null)
        {
            return error;
        }
        if (request!.PathPart is not { } pathPart || !PathPartPattern().IsMatch(pathPart))
        {
            return ApiErrors.BadRequest("Resource's path part only allow a-zA-Z0-9._- and curly braces at the beginning and the end and an optional plus sign before the closing brace.");
        }
        var (created, editError) = await registry.EditRestAsync(restApiId, edit =>
        {
            if (edit.Api.Resources.FirstOrDefault(r => r.Id == resourceId) is not { } parent)
            {
                return (null, ResourceNotFound());
            }
            if (ValidateChild(edit.Api, parent, pathPart, except: null) is { } invalid)
            {
                return (null, invalid);
            }
            var resource = new RestResource { Id = ApiRegistry.NewId(6), ParentId = parent.Id, PathPart = pathPart, Path = ChildPath(parent.Path!, pathPart) };
            edit.Api = edit.Api with { Resources = edit.Api.Resources.Add(resource) };
            return (resource, (AwsError?)null);
        });
        return editError ?? ApiJson.Created(created!, ApiGatewayJsonContext.Default.RestResource);
    }

    private static string ChildPath(string parentPath, string pathPart) => parentPath == "/" ? "/" + pathPart : $"{parentPath}/{pathPart}";

    private static AwsError? ValidateChild(StoredRestApi api, RestResource parent, string pathPart, string? except)
    {
        if (parent.PathPart?.EndsWith("+}", StringComparison.Ordinal) == true)
        {
            return ApiErrors.BadRequest($"Cannot create a child of a resource with a greedy path variable: {parent.Path}");
        }
        var siblings = api.Resources.Where(r => r.ParentId == parent.Id && r.Id != except).ToList();
        if (siblings.Any(s => s.PathPart == pathPart))
        {
            return ApiErrors.Conflict($"Another resource with the same parent already has this name: {pathPart}");
        }
        if (pathPart.StartsWith('{') && siblings.FirstOrDefault(s => s.PathPart!.StartsWith('{')) is { } variable)
        {
            return ApiErrors.BadRequest($"A sibling ({variable.PathPart}) of this resource already has a variable path part -- only one is allowed");
        }
        return null;
    }

    private static async Task<IResult> UpdateResourceAsync(HttpContext context, string restApiId, string resourceId, ApiRegistry registry) =>
        await PatchAsync(context, registry, restApiId, (edit, operations) =>
        {
            if (edit.Api.Resources.FirstOrDefault(r => r.Id == resourceId) is not { } resource || resource.ParentId is null)
            {
                return (null, ResourceNotFound());
            }
            var next = resource;
            foreach (var operation in operations)
            {
                switch (operation.Op, operation.Path)
                {
                    case ("replace", "/pathPart") when operation.Value is { } part && PathPartPattern().IsMatch(part):
                        next = next with { PathPart = part };
                        break;
                    case ("replace", "/parentId") when operation.Value is { } parentId && edit.Api.Resources.Any(r => r.Id == parentId):
                        next = next with { ParentId = parentId };
                        break;
                    default:
                        return (null, InvalidPatch(operation, "/pathPart, /parentId"));
                }
            }
            var parent = edit.Api.Resources.First(r => r.Id == next.ParentId);
            if (ValidateChild(edit.Api, parent, next.PathPart!, except: resource.Id) is { } invalid)
            {
                return (null, invalid);
            }
            // The resource's path changes, and so do its descendants'.
            var resources = edit.Api.Resources.Replace(resource, next);
            resources = Repath(resources);
            edit.Api = edit.Api with { Resources = resources };
            return (resources.First(r => r.Id == resourceId), null);
        }, ApiGatewayJsonContext.Default.RestResource);

    private static System.Collections.Immutable.ImmutableList<RestResource> Repath(System.Collections.Immutable.ImmutableList<RestResource> resources)
    {
        var byId = resources.ToDictionary(static r => r.Id!, StringComparer.Ordinal);
        string PathOf(RestResource r) => r.ParentId is null ? "/" : ChildPath(PathOf(byId[r.ParentId]), r.PathPart!);
        return [.. resources.Select(r => r with { Path = PathOf(r) })];
    }

    private static async Task<IResult> DeleteResourceAsync(string restApiId, string resourceId, ApiRegistry registry)
    {
        var (_, error) = await registry.EditRestAsync(restApiId, edit =>
        {
            if (edit.Api.Resources.FirstOrDefault(r => r.Id == resourceId) is not { } resource)
            {
                return (false, ResourceNotFound());
            }
            if (resource.ParentId is null)
            {
                return (false, ApiErrors.BadRequest("Cannot delete the root resource of an API."));
            }
            // The resource goes with everything under it.
            var doomed = new HashSet<string>(StringComparer.Ordinal) { resource.Id! };
            bool added;
            do
            {
                added = false;
                foreach (var r in edit.Api.Resources)
                {
                    if (r.ParentId is { } parent && doomed.Contains(parent) && doomed.Add(r.Id!))
                    {
                        added = true;
                    }
                }
            }
            while (added);
            edit.Api = edit.Api with { Resources = edit.Api.Resources.RemoveAll(r => doomed.Contains(r.Id!)) };
            return (true, (AwsError?)null);
        });
        return error ?? Results.StatusCode(StatusCodes.Status202Accepted);
    }

    // ---- Methods -----------------------------------------------------------------------------------------------------

    private static async Task<IResult> PutMethodAsync(HttpContext context, string restApiId, string resourceId, string httpMethod, ApiRegistry registry)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.RestMethod);
        if (error is not null)
        {
            return error;
        }
        if (!RouteTemplates.Methods.Contains(httpMethod))
        {
            return ApiErrors.BadRequest($"Invalid HttpMethod specified: {httpMethod}. Valid options are GET, PUT, POST, DELETE, PATCH, OPTIONS, HEAD, ANY.");
        }
        var method = request! with
        {
            HttpMethod = httpMethod,
            ApiKeyRequired = request.ApiKeyRequired ?? false,
            MethodIntegration = null,
            MethodResponses = null,
        };
        var (created, editError) = await registry.EditRestAsync(restApiId, edit =>
        {
            if (edit.Api.Resources.FirstOrDefault(r => r.Id == resourceId) is not { } resource)
            {
                return (null, ResourceNotFound());
            }
            if (resource.ResourceMethods?.ContainsKey(httpMethod) == true)
            {
                return (null, ApiErrors.Conflict("Method already exists for this resource"));
            }
            if (ValidateMethod(edit.Api, method) is { } invalid)
            {
                return (null, invalid);
            }
            SetMethod(edit, resource, httpMethod, method);
            return (method, (AwsError?)null);
        });
        return editError ?? ApiJson.Created(created!, ApiGatewayJsonContext.Default.RestMethod);
    }

    private static AwsError? ValidateMethod(StoredRestApi api, RestMethod method)
    {
        switch (method.AuthorizationType)
        {
            case "NONE" or "AWS_IAM":
                return null;
            case "CUSTOM":
                return method.AuthorizerId is { } id && api.Authorizers.Any(a => a.Id == id)
                    ? null
                    : ApiErrors.BadRequest("Invalid authorizer ID specified. Setting the authorization type to CUSTOM requires a valid authorizer.");
            case "COGNITO_USER_POOLS":
                return ApiErrors.BadRequest("authorizationType COGNITO_USER_POOLS is not served by Lamina (it has no Cognito): use a Lambda authorizer (CUSTOM).");
            case null:
                return ApiErrors.BadRequest("authorizationType is required: NONE, AWS_IAM or CUSTOM.");
            default:
                return ApiErrors.BadRequest($"Invalid authorizationType specified: {method.AuthorizationType}. Use NONE, AWS_IAM or CUSTOM.");
        }
    }

    private static void SetMethod(RestApiEdit edit, RestResource resource, string httpMethod, RestMethod? method)
    {
        var current = edit.Api.Resources.First(r => r.Id == resource.Id);
        var methods = new Dictionary<string, RestMethod>(current.ResourceMethods ?? [], StringComparer.Ordinal);
        if (method is null)
        {
            methods.Remove(httpMethod);
        }
        else
        {
            methods[httpMethod] = method;
        }
        edit.Api = edit.Api with { Resources = edit.Api.Resources.Replace(current, current with { ResourceMethods = methods.Count > 0 ? methods : null }) };
    }

    private static (RestResource? Resource, RestMethod? Method, AwsError? Error) FindMethod(StoredRestApi api, string resourceId, string httpMethod)
    {
        if (api.Resources.FirstOrDefault(r => r.Id == resourceId) is not { } resource)
        {
            return (null, null, ResourceNotFound());
        }
        return resource.ResourceMethods?.GetValueOrDefault(httpMethod) is { } method
            ? (resource, method, null)
            : (resource, null, ApiErrors.NotFound("Invalid Method identifier specified"));
    }

    private static IResult GetMethod(string restApiId, string resourceId, string httpMethod, ApiRegistry registry, IOptions<LaminaOptions> options)
    {
        if (!registry.TryGetRest(restApiId, out var api))
        {
            return ApiErrors.ApiNotFound(options.Value.AccountId, restApiId);
        }
        var (_, method, error) = FindMethod(api, resourceId, httpMethod);
        return error ?? ApiJson.Ok(method!, ApiGatewayJsonContext.Default.RestMethod);
    }

    private static async Task<IResult> UpdateMethodAsync(HttpContext context, string restApiId, string resourceId, string httpMethod, ApiRegistry registry) =>
        await PatchAsync(context, registry, restApiId, (edit, operations) =>
        {
            var (resource, method, error) = FindMethod(edit.Api, resourceId, httpMethod);
            if (error is not null)
            {
                return (null, error);
            }
            var next = method!;
            foreach (var operation in operations)
            {
                var (path, value) = (operation.Path!, operation.Value);
                switch (operation.Op, path)
                {
                    case ("replace", "/authorizationType"):
                        next = next with { AuthorizationType = value, AuthorizerId = value == "CUSTOM" ? next.AuthorizerId : null };
                        break;
                    case ("replace", "/authorizerId"):
                        next = next with { AuthorizerId = value };
                        break;
                    case ("replace", "/apiKeyRequired"):
                        next = next with { ApiKeyRequired = Bool(value) };
                        break;
                    case ("replace", "/operationName"):
                        next = next with { OperationName = value };
                        break;
                    case ("add" or "replace", _) when path.StartsWith("/requestParameters/", StringComparison.Ordinal):
                        next = next with { RequestParameters = With(next.RequestParameters, Unescape(path["/requestParameters/".Length..]), Bool(value)) };
                        break;
                    case ("remove", _) when path.StartsWith("/requestParameters/", StringComparison.Ordinal):
                        next = next with { RequestParameters = Without(next.RequestParameters, Unescape(path["/requestParameters/".Length..])) };
                        break;
                    case ("add", _) when path.StartsWith("/authorizationScopes", StringComparison.Ordinal):
                        next = next with { AuthorizationScopes = [.. (next.AuthorizationScopes ?? []).Append(value ?? "")] };
                        break;
                    case ("remove", _) when path.StartsWith("/authorizationScopes", StringComparison.Ordinal):
                        next = next with { AuthorizationScopes = [.. (next.AuthorizationScopes ?? []).Where(s => s != value)] };
                        break;
                    default:
                        return (null, InvalidPatch(operation, "/authorizationType, /authorizerId, /apiKeyRequired, /operationName, /requestParameters/<name>, /authorizationScopes"));
                }
            }
            if (ValidateMethod(edit.Api, next) is { } invalid)
            {
                return (null, invalid);
            }
            SetMethod(edit, resource!, httpMethod, next);
            return (next, null);
        }, ApiGatewayJsonContext.Default.RestMethod);

    private static async Task<IResult> DeleteMethodAsync(string restApiId, string resourceId, string httpMethod, ApiRegistry registry)
    {
        var (_, error) = await registry.EditRestAsync(restApiId, edit =>
        {
            var (resource, _, error) = FindMethod(edit.Api, resourceId, httpMethod);
            if (error is not null)
            {
                return (false, error);
            }
            SetMethod(edit, resource!, httpMethod, null);
            return (true, (AwsError?)null);
        });
        return error ?? Results.NoContent();
    }

    private static async Task<IResult> PutMethodResponseAsync(HttpContext context, string restApiId, string resourceId, string httpMethod, string statusCode,
        ApiRegistry registry)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.MethodResponse);
        if (error is not null)
        {
            return error;
        }
        var response = request! with { StatusCode = statusCode };
        var (created, editError) = await registry.EditRestAsync(restApiId, edit =>
        {
            var (resource, method, error) = FindMethod(edit.Api, resourceId, httpMethod);
            if (error is not null)
            {
                return (null, error);
            }
            var responses = new Dictionary<string, MethodResponse>(method!.MethodResponses ?? [], StringComparer.Ordinal) { [statusCode] = response };
            SetMethod(edit, resource!, httpMethod, method with { MethodResponses = responses });
            return (response, (AwsError?)null);
        });
        return editError ?? ApiJson.Created(created!, ApiGatewayJsonContext.Default.MethodResponse);
    }

    private static IResult GetMethodResponse(string restApiId, string resourceId, string httpMethod, string statusCode, ApiRegistry registry,
        IOptions<LaminaOptions> options)
    {
        if (!registry.TryGetRest(restApiId, out var api))
        {
            return ApiErrors.ApiNotFound(options.Value.AccountId, restApiId);
        }
        var (_, method, error) = FindMethod(api, resourceId, httpMethod);
        return error ?? (method!.MethodResponses?.GetValueOrDefault(statusCode) is { } response
            ? ApiJson.Ok(response, ApiGatewayJsonContext.Default.MethodResponse)
            : ApiErrors.NotFound("Invalid Response status code specified"));
    }

    private static async Task<IResult> DeleteMethodResponseAsync(string restApiId, string resourceId, string httpMethod, string statusCode, ApiRegistry registry)
    {
        var (_, error) = await registry.EditRestAsync(restApiId, edit =>
        {
            var (resource, method, error) = FindMethod(edit.Api, resourceId, httpMethod);
            if (error is not null)
            {
                return (false, error);
            }
            if (method!.MethodResponses?.ContainsKey(statusCode) != true)
            {
                return (false, ApiErrors.NotFound("Invalid Response status code specified"));
            }
            SetMethod(edit, resource!, httpMethod, method with { MethodResponses = Without(method.MethodResponses, statusCode) });
            return (true, (AwsError?)null);
        });
        return error ?? Results.NoContent();
    }

    // ---- Integrations ------------------------------------------------------------------------------------------------

    private static async Task<IResult> PutIntegrationAsync(HttpContext context, string restApiId, string resourceId, string httpMethod, ApiRegistry registry)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.RestIntegration);
        if (error is not null)
        {
            return error;
        }
        var integration = request! with
        {
            Type = request.Type?.ToUpperInvariant(),
            HttpMethod = request.HttpMethod?.ToUpperInvariant(),
            ConnectionType = request.ConnectionType ?? "INTERNET",
            PassthroughBehavior = request.PassthroughBehavior ?? "WHEN_NO_MATCH",
            TimeoutInMillis = request.TimeoutInMillis ?? LiveIntegration.RestApiDefaultTimeoutMs,
            CacheNamespace = request.CacheNamespace ?? resourceId,
            CacheKeyParameters = request.CacheKeyParameters ?? [],
            IntegrationResponses = null,
        };
        if (ValidateIntegration(integration) is { } invalid)
        {
            return invalid;
        }
        var (created, editError) = await registry.EditRestAsync(restApiId, edit =>
        {
            var (resource, method, error) = FindMethod(edit.Api, resourceId, httpMethod);
            if (error is not null)
            {
                return (null, error);
            }
            SetMethod(edit, resource!, httpMethod, method! with { MethodIntegration = integration });
            return (integration, (AwsError?)null);
        });
        return editError ?? ApiJson.Created(created!, ApiGatewayJsonContext.Default.RestIntegration);
    }

    private static AwsError? ValidateIntegration(RestIntegration integration)
    {
        if (integration.TimeoutInMillis is < 50 or > LiveIntegration.RestApiDefaultTimeoutMs)
        {
            return ApiErrors.BadRequest("Timeout should be between 50 ms and 29000 ms");
        }
        switch (integration.Type)
        {
            case "AWS_PROXY" or "AWS":
                if (integration.Uri is not { } uri || IntegrationTarget.Parse(uri) is null && !uri.Contains("${stageVariables.", StringComparison.Ordinal))
                {
                    return ApiErrors.BadRequest("Invalid ARN specified in the request: Lamina integrates Lambda functions (arn:aws:apigateway:REGION:lambda:path/2015-03-31/functions/FUNCTION_ARN/invocations).");
                }
                return integration.HttpMethod is null ? ApiErrors.BadRequest("Enumeration value for HttpMethod must be non-empty") : null;
            case "HTTP_PROXY" or "HTTP":
                if (!Uri.TryCreate(integration.Uri, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
                {
                    return ApiErrors.BadRequest("Invalid HTTP endpoint specified for URI");
                }
                return integration.HttpMethod is null ? ApiErrors.BadRequest("Enumeration value for HttpMethod must be non-empty") : null;
            case "MOCK":
                return null;
            case null:
                return ApiErrors.BadRequest("type is required: AWS_PROXY, HTTP_PROXY, MOCK, AWS or HTTP.");
            default:
                return ApiErrors.BadRequest($"Invalid integration type specified: {integration.Type}.");
        }
    }

    private static IResult GetIntegration(string restApiId, string resourceId, string httpMethod, ApiRegistry registry, IOptions<LaminaOptions> options)
    {
        if (!registry.TryGetRest(restApiId, out var api))
        {
            return ApiErrors.ApiNotFound(options.Value.AccountId, restApiId);
        }
        var (_, method, error) = FindMethod(api, resourceId, httpMethod);
        return error ?? (method!.MethodIntegration is { } integration
            ? ApiJson.Ok(integration, ApiGatewayJsonContext.Default.RestIntegration)
            : ApiErrors.NotFound("No integration defined for method"));
    }

    private static async Task<IResult> UpdateIntegrationAsync(HttpContext context, string restApiId, string resourceId, string httpMethod, ApiRegistry registry) =>
        await PatchAsync(context, registry, restApiId, (edit, operations) =>
        {
            var (resource, method, error) = FindMethod(edit.Api, resourceId, httpMethod);
            if (error is not null)
            {
                return (null, error);
            }
            if (method!.MethodIntegration is not { } integration)
            {
                return (null, ApiErrors.NotFound("No integration defined for method"));
            }
            var next = integration;
            foreach (var operation in operations)
            {
                var (path, value) = (operation.Path!, operation.Value);
                switch (operation.Op, path)
                {
                    case ("replace", "/uri"):
                        next = next with { Uri = value };
                        break;
                    case ("replace", "/httpMethod"):
                        next = next with { HttpMethod = value?.ToUpperInvariant() };
                        break;
                    case ("replace", "/type"):
                        next = next with { Type = value?.ToUpperInvariant() };
                        break;
                    case ("replace", "/timeoutInMillis") when int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var timeout):
                        next = next with { TimeoutInMillis = timeout };
                        break;
                    case ("replace", "/credentials"):
                        next = next with { Credentials = value };
                        break;
                    case ("replace", "/passthroughBehavior"):
                        next = next with { PassthroughBehavior = value };
                        break;
                    case ("replace", "/contentHandling"):
                        next = next with { ContentHandling = value };
                        break;
                    case ("add" or "replace", _) when path.StartsWith("/requestParameters/", StringComparison.Ordinal):
                        next = next with { RequestParameters = With(next.RequestParameters, Unescape(path["/requestParameters/".Length..]), value ?? "") };
                        break;
                    case ("remove", _) when path.StartsWith("/requestParameters/", StringComparison.Ordinal):
                        next = next with { RequestParameters = Without(next.RequestParameters, Unescape(path["/requestParameters/".Length..])) };
                        break;
                    case ("add" or "replace", _) when path.StartsWith("/requestTemplates/", StringComparison.Ordinal):
                        next = next with { RequestTemplates = With(next.RequestTemplates, Unescape(path["/requestTemplates/".Length..]), value ?? "") };
                        break;
                    case ("remove", _) when path.StartsWith("/requestTemplates/", StringComparison.Ordinal):
                        next = next with { RequestTemplates = Without(next.RequestTemplates, Unescape(path["/requestTemplates/".Length..])) };
                        break;
                    default:
                        return (null, InvalidPatch(operation, "/uri, /httpMethod, /type, /timeoutInMillis, /credentials, /passthroughBehavior, /contentHandling, /requestParameters/<name>, /requestTemplates/<type>"));
                }
            }
            if (ValidateIntegration(next) is { } invalid)
            {
                return (null, invalid);
            }
            SetMethod(edit, resource!, httpMethod, method with { MethodIntegration = next });
            return (next, null);
        }, ApiGatewayJsonContext.Default.RestIntegration);

    private static async Task<IResult> DeleteIntegrationAsync(string restApiId, string resourceId, string httpMethod, ApiRegistry registry)
    {
        var (_, error) = await registry.EditRestAsync(restApiId, edit =>
        {
            var (resource, method, error) = FindMethod(edit.Api, resourceId, httpMethod);
            if (error is not null)
            {
                return (false, error);
            }
            if (method!.MethodIntegration is null)
            {
                return (false, ApiErrors.NotFound("No integration defined for method"));
            }
            SetMethod(edit, resource!, httpMethod, method with { MethodIntegration = null });
            return (true, (AwsError?)null);
        });
        return error ?? Results.NoContent();
    }

    private static async Task<IResult> PutIntegrationResponseAsync(HttpContext context, string restApiId, string resourceId, string httpMethod, string statusCode,
        ApiRegistry registry)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.IntegrationResponse);
        if (error is not null)
        {
            return error;
        }
        var response = request! with { StatusCode = statusCode };
        var (created, editError) = await registry.EditRestAsync(restApiId, edit =>
        {
            var (resource, method, error) = FindMethod(edit.Api, resourceId, httpMethod);
            if (error is not null)
            {
                return (null, error);
            }
            if (method!.MethodIntegration is not { } integration)
            {
                return (null, ApiErrors.NotFound("No integration defined for method"));
            }
            var responses = new Dictionary<string, IntegrationResponse>(integration.IntegrationResponses ?? [], StringComparer.Ordinal) { [statusCode] = response };
            SetMethod(edit, resource!, httpMethod, method with { MethodIntegration = integration with { IntegrationResponses = responses } });
            return (response, (AwsError?)null);
        });
        return editError ?? ApiJson.Created(created!, ApiGatewayJsonContext.Default.IntegrationResponse);
    }

    private static IResult GetIntegrationResponse(string restApiId, string resourceId, string httpMethod, string statusCode, ApiRegistry registry,
        IOptions<LaminaOptions> options)
    {
        if (!registry.TryGetRest(restApiId, out var api))
        {
            return ApiErrors.ApiNotFound(options.Value.AccountId, restApiId);
        }
        var (_, method, error) = FindMethod(api, resourceId, httpMethod);
        return error ?? (method!.MethodIntegration?.IntegrationResponses?.GetValueOrDefault(statusCode) is { } response
            ? ApiJson.Ok(response, ApiGatewayJsonContext.Default.IntegrationResponse)
            : ApiErrors.NotFound("Invalid Response status code specified"));
    }

    private static async Task<IResult> DeleteIntegrationResponseAsync(string restApiId, string resourceId, string httpMethod, string statusCode, ApiRegistry registry)
    {
        var (_, error) = await registry.EditRestAsync(restApiId, edit =>
        {
            var (resource, method, error) = FindMethod(edit.Api, resourceId, httpMethod);
            if (error is not null)
            {
                return (false, error);
            }
            if (method!.MethodIntegration is not { IntegrationResponses: { } responses } integration || !responses.ContainsKey(statusCode))
            {
                return (false, ApiErrors.NotFound("Invalid Response status code specified"));
            }
            SetMethod(edit, resource!, httpMethod, method with { MethodIntegration = integration with { IntegrationResponses = Without(responses, statusCode) } });
            return (true, (AwsError?)null);
        });
        return error ?? Results.NoContent();
    }

    // ---- Authorizers -------------------------------------------------------------------------------------------------

    private static async Task<IResult> CreateAuthorizerAsync(HttpContext context, string restApiId, ApiRegistry registry)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.RestAuthorizer);
        if (error is not null)
        {
            return error;
        }
        var authorizer = request! with
        {
            Id = ApiRegistry.NewId(6),
            AuthType = request.AuthType ?? "custom",
            AuthorizerResultTtlInSeconds = request.AuthorizerResultTtlInSeconds ?? 300,
        };
        if (ValidateAuthorizer(authorizer) is { } invalid)
        {
            return invalid;
        }
        var (created, editError) = await registry.EditRestAsync(restApiId, edit =>
        {
            edit.Api = edit.Api with { Authorizers = edit.Api.Authorizers.Add(authorizer) };
            return (authorizer, (AwsError?)null);
        });
        return editError ?? ApiJson.Created(created!, ApiGatewayJsonContext.Default.RestAuthorizer);
    }

    private static AwsError? ValidateAuthorizer(RestAuthorizer authorizer)
    {
        if (authorizer.Name is not { Length: > 0 })
        {
            return ApiErrors.BadRequest("name is required.");
        }
        if (authorizer.Type == "COGNITO_USER_POOLS")
        {
            return ApiErrors.BadRequest("COGNITO_USER_POOLS authorizers are not served by Lamina (it has no Cognito): use a TOKEN or REQUEST Lambda authorizer.");
        }
        if (authorizer.Type is not ("TOKEN" or "REQUEST"))
        {
            return ApiErrors.BadRequest("Invalid authorizer type specified: use TOKEN or REQUEST.");
        }
        if (authorizer.AuthorizerUri is not { } uri || IntegrationTarget.Parse(uri) is null && !uri.Contains("${stageVariables.", StringComparison.Ordinal))
        {
            return ApiErrors.BadRequest("Invalid Authorizer URI specified: name a Lambda function (arn:aws:apigateway:REGION:lambda:path/2015-03-31/functions/FUNCTION_ARN/invocations).");
        }
        if (authorizer.AuthorizerResultTtlInSeconds is < 0 or > 3600)
        {
            return ApiErrors.BadRequest("Invalid authorizerResultTtlInSeconds specified: it must be between 0 and 3600.");
        }
        if (authorizer.Type == "TOKEN" && (authorizer.IdentitySource is not { } source || !source.StartsWith("method.request.header.", StringComparison.Ordinal)))
        {
            return ApiErrors.BadRequest("A TOKEN authorizer's identitySource must be a header: method.request.header.<name>.");
        }
        if (authorizer.Type == "REQUEST" && authorizer.AuthorizerResultTtlInSeconds > 0 && string.IsNullOrEmpty(authorizer.IdentitySource))
        {
            return ApiErrors.BadRequest("Caching (authorizerResultTtlInSeconds > 0) needs an identitySource: it is the cache key.");
        }
        return null;
    }

    private static IResult GetAuthorizers(HttpContext context, string restApiId, ApiRegistry registry, IOptions<LaminaOptions> options) =>
        registry.TryGetRest(restApiId, out var api)
            ? Page(context, [.. api.Authorizers], ApiGatewayJsonContext.Default.RestPageRestAuthorizer)
            : ApiErrors.ApiNotFound(options.Value.AccountId, restApiId);

    private static IResult GetAuthorizer(string restApiId, string authorizerId, ApiRegistry registry, IOptions<LaminaOptions> options)
    {
        if (!registry.TryGetRest(restApiId, out var api))
        {
            return ApiErrors.ApiNotFound(options.Value.AccountId, restApiId);
        }
        return api.Authorizers.FirstOrDefault(a => a.Id == authorizerId) is { } authorizer
            ? ApiJson.Ok(authorizer, ApiGatewayJsonContext.Default.RestAuthorizer)
            : ApiErrors.NotFound("Invalid Authorizer identifier specified");
    }

    private static async Task<IResult> UpdateAuthorizerAsync(HttpContext context, string restApiId, string authorizerId, ApiRegistry registry) =>
        await PatchAsync(context, registry, restApiId, (edit, operations) =>
        {
            if (edit.Api.Authorizers.FirstOrDefault(a => a.Id == authorizerId) is not { } authorizer)
            {
                return (null, ApiErrors.NotFound("Invalid Authorizer identifier specified"));
            }
            var next = authorizer;
            foreach (var operation in operations)
            {
                var value = operation.Value;
                switch (operation.Op, operation.Path)
                {
                    case ("replace", "/name"):
                        next = next with { Name = value };
                        break;
                    case ("replace", "/type"):
                        next = next with { Type = value };
                        break;
                    case ("replace", "/authorizerUri"):
                        next = next with { AuthorizerUri = value };
                        break;
                    case ("replace", "/authorizerCredentials"):
                        next = next with { AuthorizerCredentials = value };
                        break;
                    case ("replace", "/identitySource"):
                        next = next with { IdentitySource = value };
                        break;
                    case ("replace", "/identityValidationExpression"):
                        next = next with { IdentityValidationExpression = value };
                        break;
                    case ("replace", "/authorizerResultTtlInSeconds") when int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var ttl):
                        next = next with { AuthorizerResultTtlInSeconds = ttl };
                        break;
                    default:
                        return (null, InvalidPatch(operation, "/name, /type, /authorizerUri, /authorizerCredentials, /identitySource, /identityValidationExpression, /authorizerResultTtlInSeconds"));
                }
            }
            if (ValidateAuthorizer(next) is { } invalid)
            {
                return (null, invalid);
            }
            edit.Api = edit.Api with { Authorizers = edit.Api.Authorizers.Replace(authorizer, next) };
            return (next, null);
        }, ApiGatewayJsonContext.Default.RestAuthorizer);

    private static async Task<IResult> DeleteAuthorizerAsync(string restApiId, string authorizerId, ApiRegistry registry)
    {
        var (_, error) = await registry.EditRestAsync(restApiId, edit =>
        {
            if (edit.Api.Authorizers.FirstOrDefault(a => a.Id == authorizerId) is not { } authorizer)
            {
                return (false, ApiErrors.NotFound("Invalid Authorizer identifier specified"));
            }
            if (edit.Api.Resources.Any(r => r.ResourceMethods?.Values.Any(m => m.AuthorizerId == authorizerId) == true))
            {
                return (false, ApiErrors.Conflict("Cannot delete authorizer: methods use it. Change their authorization first."));
            }
            edit.Api = edit.Api with { Authorizers = edit.Api.Authorizers.Remove(authorizer) };
            return (true, (AwsError?)null);
        });
        return error ?? Results.StatusCode(StatusCodes.Status202Accepted);
    }

    // ---- Deployments and stages --------------------------------------------------------------------------------------

    private static async Task<IResult> CreateDeploymentAsync(HttpContext context, string restApiId, ApiRegistry registry)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.RestDeployment);
        if (error is not null)
        {
            return error;
        }
        if (request!.StageName is { } name && !StageNamePattern().IsMatch(name))
        {
            return ApiErrors.BadRequest("Stage name only allows a-zA-Z0-9_- (at most 128 characters).");
        }
        if (request.Variables?.Keys.FirstOrDefault(k => !VariableNamePattern().IsMatch(k)) is { } badName)
        {
            return ApiErrors.BadRequest($"Invalid stage variable name specified: '{badName}'. Use letters, digits and '_'.");
        }
        var (created, editError) = await registry.EditRestAsync(restApiId, edit =>
        {
            if (!edit.Api.Resources.Any(r => r.ResourceMethods is { Count: > 0 }))
            {
                return (null, ApiErrors.BadRequest("The REST API doesn't contain any methods"));
            }
            if (edit.Api.Resources.SelectMany(r => r.ResourceMethods?.Select(m => (r, m)) ?? []).FirstOrDefault(x => x.m.Value.MethodIntegration is null) is { r: not null } missing)
            {
                return (null, ApiErrors.BadRequest($"No integration defined for method {missing.m.Key} {missing.r.Path}"));
            }
            var deployment = edit.Deploy(request.Description);
            if (request.StageName is { } stageName)
            {
                var now = edit.Now;
                var existing = edit.Api.Stages.FirstOrDefault(s => s.StageName == stageName);
                var stage = existing is null
                    ? new RestStage
                    {
                        StageName = stageName, DeploymentId = deployment.Id, Description = request.StageDescription, Variables = request.Variables,
                        TracingEnabled = request.TracingEnabled ?? false, CacheClusterEnabled = false, CacheClusterStatus = "NOT_AVAILABLE", MethodSettings = [],
                        CreatedDate = now, LastUpdatedDate = now,
                    }
                    : existing with { DeploymentId = deployment.Id, Variables = request.Variables ?? existing.Variables, LastUpdatedDate = now };
                edit.Api = edit.Api with { Stages = existing is null ? edit.Api.Stages.Add(stage) : edit.Api.Stages.Replace(existing, stage) };
            }
            return (deployment, (AwsError?)null);
        });
        return editError ?? ApiJson.Created(created!, ApiGatewayJsonContext.Default.RestDeployment);
    }

    private static IResult GetDeployments(HttpContext context, string restApiId, ApiRegistry registry, IOptions<LaminaOptions> options) =>
        registry.TryGetRest(restApiId, out var api)
            ? Page(context, [.. api.Deployments], ApiGatewayJsonContext.Default.RestPageRestDeployment)
            : ApiErrors.ApiNotFound(options.Value.AccountId, restApiId);

    private static IResult GetDeployment(string restApiId, string deploymentId, ApiRegistry registry, IOptions<LaminaOptions> options)
    {
        if (!registry.TryGetRest(restApiId, out var api))
        {
            return ApiErrors.ApiNotFound(options.Value.AccountId, restApiId);
        }
        return api.Deployments.FirstOrDefault(d => d.Id == deploymentId) is { } deployment
            ? ApiJson.Ok(deployment, ApiGatewayJsonContext.Default.RestDeployment)
            : ApiErrors.NotFound("Invalid Deployment identifier specified");
    }

    private static async Task<IResult> UpdateDeploymentAsync(HttpContext context, string restApiId, string deploymentId, ApiRegistry registry) =>
        await PatchAsync(context, registry, restApiId, (edit, operations) =>
        {
            if (edit.Api.Deployments.FirstOrDefault(d => d.Id == deploymentId) is not { } deployment)
            {
                return (null, ApiErrors.NotFound("Invalid Deployment identifier specified"));
            }
            var next = deployment;
            foreach (var operation in operations)
            {
                if (operation is not { Op: "replace", Path: "/description" })
                {
                    return (null, InvalidPatch(operation, "/description"));
                }
                next = next with { Description = operation.Value };
            }
            edit.Api = edit.Api with { Deployments = edit.Api.Deployments.Replace(deployment, next) };
            return (next, null);
        }, ApiGatewayJsonContext.Default.RestDeployment);

    private static async Task<IResult> DeleteDeploymentAsync(string restApiId, string deploymentId, ApiRegistry registry)
    {
        var (_, error) = await registry.EditRestAsync(restApiId, edit =>
        {
            if (edit.Api.Deployments.FirstOrDefault(d => d.Id == deploymentId) is not { } deployment)
            {
                return (false, ApiErrors.NotFound("Invalid Deployment identifier specified"));
            }
            if (edit.Api.Stages.FirstOrDefault(s => s.DeploymentId == deploymentId) is { } stage)
            {
                return (false, ApiErrors.BadRequest($"Active stages pointing to this deployment must be moved or deleted: {stage.StageName}"));
            }
            edit.RemoveDeployment(deployment);
            return (true, (AwsError?)null);
        });
        return error ?? Results.StatusCode(StatusCodes.Status202Accepted);
    }

    private static async Task<IResult> CreateStageAsync(HttpContext context, string restApiId, ApiRegistry registry)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.RestStage);
        if (error is not null)
        {
            return error;
        }
        if (request!.StageName is not { } name || !StageNamePattern().IsMatch(name))
        {
            return ApiErrors.BadRequest("Stage name only allows a-zA-Z0-9_- (at most 128 characters).");
        }
        if (request.DeploymentId is null)
        {
            return ApiErrors.BadRequest("deploymentId is required.");
        }
        if (request.Variables?.Keys.FirstOrDefault(k => !VariableNamePattern().IsMatch(k)) is { } badName)
        {
            return ApiErrors.BadRequest($"Invalid stage variable name specified: '{badName}'. Use letters, digits and '_'.");
        }
        var (created, editError) = await registry.EditRestAsync(restApiId, edit =>
        {
            if (edit.Api.Stages.Any(s => s.StageName == name))
            {
                return (null, ApiErrors.Conflict("Stage already exists"));
            }
            if (!edit.Api.Deployments.Any(d => d.Id == request.DeploymentId))
            {
                return (null, ApiErrors.BadRequest("Invalid deployment identifier specified"));
            }
            var now = edit.Now;
            var stage = request with
            {
                CacheClusterEnabled = request.CacheClusterEnabled ?? false,
                CacheClusterStatus = "NOT_AVAILABLE",
                TracingEnabled = request.TracingEnabled ?? false,
                MethodSettings = request.MethodSettings ?? [],
                Tags = request.Tags,
                CreatedDate = now,
                LastUpdatedDate = now,
            };
            edit.Api = edit.Api with { Stages = edit.Api.Stages.Add(stage) };
            return (stage, (AwsError?)null);
        });
        return editError ?? ApiJson.Created(created!, ApiGatewayJsonContext.Default.RestStage);
    }

    private static IResult GetStages(HttpContext context, string restApiId, ApiRegistry registry, IOptions<LaminaOptions> options)
    {
        if (!registry.TryGetRest(restApiId, out var api))
        {
            return ApiErrors.ApiNotFound(options.Value.AccountId, restApiId);
        }
        var deployment = ApiJson.Query(context, "deploymentId");
        var stages = api.Stages.Where(s => deployment is null || s.DeploymentId == deployment).ToList();
        return ApiJson.Ok(new RestPage<RestStage>(stages, null), ApiGatewayJsonContext.Default.RestPageRestStage);
    }

    private static IResult GetStage(string restApiId, string stageName, ApiRegistry registry, IOptions<LaminaOptions> options)
    {
        if (!registry.TryGetRest(restApiId, out var api))
        {
            return ApiErrors.ApiNotFound(options.Value.AccountId, restApiId);
        }
        return api.Stages.FirstOrDefault(s => s.StageName == stageName) is { } stage
            ? ApiJson.Ok(stage, ApiGatewayJsonContext.Default.RestStage)
            : ApiErrors.NotFound("Invalid Stage identifier specified");
    }

    private static async Task<IResult> UpdateStageAsync(HttpContext context, string restApiId, string stageName, ApiRegistry registry) =>
        await PatchAsync(context, registry, restApiId, (edit, operations) =>
        {
            if (edit.Api.Stages.FirstOrDefault(s => s.StageName == stageName) is not { } stage)
            {
                return (null, ApiErrors.NotFound("Invalid Stage identifier specified"));
            }
            var next = stage;
            foreach (var operation in operations)
            {
                var (path, value) = (operation.Path!, operation.Value);
                switch (operation.Op, path)
                {
                    case ("replace", "/deploymentId") when value is not null && edit.Api.Deployments.Any(d => d.Id == value):
                        next = next with { DeploymentId = value };
                        break;
                    case ("replace", "/description"):
                        next = next with { Description = value };
                        break;
                    case ("replace", "/tracingEnabled"):
                        next = next with { TracingEnabled = Bool(value) };
                        break;
                    case ("add" or "replace", _) when path.StartsWith("/variables/", StringComparison.Ordinal)
                        && VariableNamePattern().IsMatch(Unescape(path["/variables/".Length..])):
                        next = next with { Variables = With(next.Variables, Unescape(path["/variables/".Length..]), value ?? "") };
                        break;
                    case ("remove", _) when path.StartsWith("/variables/", StringComparison.Ordinal):
                        next = next with { Variables = Without(next.Variables, Unescape(path["/variables/".Length..])) };
                        break;
                    case ("replace", "/accessLogSettings/destinationArn"):
                        if (value is null || LiveAccessLog.Of(value, "x") is null)
                        {
                            return (null, ApiErrors.BadRequest("Invalid ARN specified: give a log group's ARN, arn:aws:logs:<region>:<account>:log-group:<name>."));
                        }
                        next = next with { AccessLogSettings = (next.AccessLogSettings ?? new RestAccessLogSettings()) with { DestinationArn = value } };
                        break;
                    case ("replace", "/accessLogSettings/format"):
                        next = next with { AccessLogSettings = (next.AccessLogSettings ?? new RestAccessLogSettings()) with { Format = value } };
                        break;
                    case ("remove", "/accessLogSettings"):
                        next = next with { AccessLogSettings = null };
                        break;
                    case ("replace", _) when MethodSettingPath().Match(path) is { Success: true } setting:
                        next = next with { MethodSettings = ApplyMethodSetting(next.MethodSettings, setting, value) };
                        break;
                    default:
                        return (null, InvalidPatch(operation, "/deploymentId, /description, /tracingEnabled, /variables/<name>, /accessLogSettings/destinationArn, /accessLogSettings/format, /*/*/throttling/rateLimit, /*/*/throttling/burstLimit, /*/*/metrics/enabled, /*/*/logging/loglevel"));
                }
            }
            next = next with { LastUpdatedDate = edit.Now };
            edit.Api = edit.Api with { Stages = edit.Api.Stages.Replace(stage, next) };
            return (next, null);
        }, ApiGatewayJsonContext.Default.RestStage);

    [GeneratedRegex(@"^/(?<resource>.+)/(?<method>[^/]+)/(?<setting>throttling/rateLimit|throttling/burstLimit|metrics/enabled|logging/loglevel|logging/dataTrace|caching/enabled)\z",
        RegexOptions.CultureInvariant)]
    private static partial Regex MethodSettingPath();

    /// <summary><c>/{resource path}/{method}/{setting}</c>: the settings of <c>resource/method</c> (<c>*/*</c> for the whole stage).</summary>
    private static Dictionary<string, MethodSetting> ApplyMethodSetting(Dictionary<string, MethodSetting>? settings, Match path, string? value)
    {
        var key = $"{Unescape(path.Groups["resource"].Value)}/{path.Groups["method"].Value}";
        var all = new Dictionary<string, MethodSetting>(settings ?? [], StringComparer.Ordinal);
        var setting = all.GetValueOrDefault(key) ?? new MethodSetting { MetricsEnabled = false, LoggingLevel = "OFF", DataTraceEnabled = false, CachingEnabled = false };
        all[key] = path.Groups["setting"].Value switch
        {
            "throttling/rateLimit" => setting with { ThrottlingRateLimit = double.Parse(value ?? "0", CultureInfo.InvariantCulture) },
            "throttling/burstLimit" => setting with { ThrottlingBurstLimit = int.Parse(value ?? "0", CultureInfo.InvariantCulture) },
            "metrics/enabled" => setting with { MetricsEnabled = Bool(value) },
            "logging/loglevel" => setting with { LoggingLevel = value },
            "logging/dataTrace" => setting with { DataTraceEnabled = Bool(value) },
            _ => setting with { CachingEnabled = Bool(value) },
        };
        return all;
    }

    private static async Task<IResult> DeleteStageAsync(string restApiId, string stageName, ApiRegistry registry)
    {
        var (_, error) = await registry.EditRestAsync(restApiId, edit =>
        {
            if (edit.Api.Stages.FirstOrDefault(s => s.StageName == stageName) is not { } stage)
            {
                return (false, ApiErrors.NotFound("Invalid Stage identifier specified"));
            }
            edit.Api = edit.Api with { Stages = edit.Api.Stages.Remove(stage) };
            return (true, (AwsError?)null);
        });
        return error ?? Results.StatusCode(StatusCodes.Status202Accepted);
    }

    private static IResult FlushAuthorizersCache(string restApiId, string stageName, ApiRegistry registry, IOptions<LaminaOptions> options)
    {
        if (!registry.TryGetRest(restApiId, out _))
        {
            return ApiErrors.ApiNotFound(options.Value.AccountId, restApiId);
        }
        if (!registry.TryGetLive(restApiId, out var live) || !live.Stages.TryGetValue(stageName, out var stage))
        {
            return ApiErrors.NotFound("Invalid Stage identifier specified");
        }
        stage.ClearAuthorizerCaches();
        return Results.StatusCode(StatusCodes.Status202Accepted);
    }

    // ---- Tags --------------------------------------------------------------------------------------------------------

    private static IResult GetTags(string resourceArn, ApiRegistry registry) =>
        TaggedApi(resourceArn, registry) is { } api
            ? ApiJson.Ok(new HttpTags { Tags = api.Api.Tags ?? [] }, ApiGatewayJsonContext.Default.HttpTags)
            : ApiErrors.NotFound($"Invalid resource ARN specified {Uri.UnescapeDataString(resourceArn)}: tags are kept for REST APIs (arn:aws:apigateway:REGION::/restapis/ID).");

    private static async Task<IResult> TagResourceAsync(HttpContext context, string resourceArn, ApiRegistry registry)
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
        var (_, editError) = await registry.EditRestAsync(api.Api.Id!, edit =>
        {
            var tags = new Dictionary<string, string>(edit.Api.Api.Tags ?? [], StringComparer.Ordinal);
            foreach (var (key, value) in request!.Tags ?? [])
            {
                tags[key] = value;
            }
            edit.Api = edit.Api with { Api = edit.Api.Api with { Tags = tags } };
            return (true, (AwsError?)null);
        });
        return editError ?? Results.NoContent();
    }

    private static async Task<IResult> UntagResourceAsync(HttpContext context, string resourceArn, ApiRegistry registry)
    {
        if (TaggedApi(resourceArn, registry) is not { } api)
        {
            return ApiErrors.NotFound($"Invalid resource ARN specified {Uri.UnescapeDataString(resourceArn)}");
        }
        var keys = context.Request.Query["tagKeys"].Select(static k => k!).ToHashSet(StringComparer.Ordinal);
        var (_, editError) = await registry.EditRestAsync(api.Api.Id!, edit =>
        {
            var tags = (edit.Api.Api.Tags ?? []).Where(t => !keys.Contains(t.Key)).ToDictionary(StringComparer.Ordinal);
            edit.Api = edit.Api with { Api = edit.Api.Api with { Tags = tags } };
            return (true, (AwsError?)null);
        });
        return editError ?? Results.NoContent();
    }

    private static StoredRestApi? TaggedApi(string resourceArn, ApiRegistry registry)
    {
        var arn = Uri.UnescapeDataString(resourceArn);
        var marker = arn.IndexOf("::/restapis/", StringComparison.Ordinal);
        return arn.StartsWith("arn:aws:apigateway:", StringComparison.Ordinal) && marker > 0
            && registry.TryGetRest(arn[(marker + "::/restapis/".Length)..].Split('/')[0], out var api)
            ? api
            : null;
    }

    // ---- Shared ------------------------------------------------------------------------------------------------------

    /// <summary>
    /// An Update* call: reads <c>patchOperations</c>, applies them with <paramref name="apply"/> under the registry's
    /// lock (all or nothing), answers the result.
    /// </summary>
    internal static async Task<IResult> PatchAsync<T>(HttpContext context, ApiRegistry registry, string restApiId,
        Func<RestApiEdit, List<PatchOperation>, (T? Result, AwsError? Error)> apply, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> typeInfo) where T : class
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.PatchRequest);
        if (error is not null)
        {
            return error;
        }
        var operations = request!.PatchOperations ?? [];
        if (operations.FirstOrDefault(static o => o.Op is not ("add" or "remove" or "replace" or "move" or "copy" or "test") || o.Path is not { Length: > 0 }) is { } bad)
        {
            return ApiErrors.BadRequest($"Invalid patch operation specified: op '{bad.Op}' on path '{bad.Path}'. Use add, remove or replace with a path.");
        }
        try
        {
            var (result, editError) = await registry.EditRestAsync(restApiId, edit => apply(edit, operations));
            return editError ?? ApiJson.Ok(result!, typeInfo);
        }
        catch (FormatException)
        {
            return ApiErrors.BadRequest("Invalid patch value: a number was expected.");
        }
        catch (OverflowException)
        {
            return ApiErrors.BadRequest("Invalid patch value: the number is out of range.");
        }
    }

    internal static AwsError InvalidPatch(PatchOperation operation, string supported) =>
        ApiErrors.BadRequest($"Invalid patch path '{operation.Path}' specified for op '{operation.Op}'. Lamina supports: {supported}.");

    /// <summary>A JSON-pointer segment: <c>~1</c> is <c>/</c>, <c>~0</c> is <c>~</c>.</summary>
    internal static string Unescape(string segment) => segment.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);

    internal static bool Bool(string? value) => string.Equals(value, "true", StringComparison.OrdinalIgnoreCase);

    private static Dictionary<string, TValue> With<TValue>(Dictionary<string, TValue>? map, string key, TValue value) =>
        new(map ?? [], StringComparer.Ordinal) { [key] = value };

    private static Dictionary<string, TValue>? Without<TValue>(Dictionary<string, TValue>? map, string key)
    {
        if (map is null)
        {
            return null;
        }
        var copy = new Dictionary<string, TValue>(map, StringComparer.Ordinal);
        copy.Remove(key);
        return copy.Count > 0 ? copy : null;
    }

    internal static IResult Page<T>(HttpContext context, IReadOnlyList<T> items, System.Text.Json.Serialization.Metadata.JsonTypeInfo<RestPage<T>> typeInfo, int defaultLimit = 25)
    {
        var (page, next) = ApiJson.Page(items, ApiJson.Query(context, "position"), ApiJson.Query(context, "limit"), defaultLimit);
        return ApiJson.Ok(new RestPage<T>(page, next), typeInfo);
    }

    private static AwsError ResourceNotFound() => ApiErrors.NotFound("Invalid Resource identifier specified");
}
