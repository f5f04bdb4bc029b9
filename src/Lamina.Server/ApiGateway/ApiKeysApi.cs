using System.Globalization;
using System.Security.Cryptography;
using Lamina.Server.Protocols;

namespace Lamina.Server.ApiGateway;

/// <summary>
/// API keys and usage plans of REST APIs (apigateway: <c>/apikeys</c>, <c>/usageplans</c>): keys, plans with their API
/// stages, throttle and quota, the keys in a plan, and usage. Enforced by the data plane for methods with
/// <c>apiKeyRequired</c> (<see cref="UsagePlans"/>).
/// </summary>
internal static class ApiKeysApi
{
    private const string KeyAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

    public static IEndpointRouteBuilder MapApiKeysApi(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapPost("/apikeys", CreateApiKeyAsync);
        endpoints.MapGet("/apikeys", GetApiKeys);
        endpoints.MapGet("/apikeys/{apiKey}", GetApiKey);
        endpoints.MapMethods("/apikeys/{apiKey}", ["PATCH"], UpdateApiKeyAsync);
        endpoints.MapDelete("/apikeys/{apiKey}", DeleteApiKeyAsync);

        endpoints.MapPost("/usageplans", CreateUsagePlanAsync);
        endpoints.MapGet("/usageplans", GetUsagePlans);
        endpoints.MapGet("/usageplans/{usagePlanId}", GetUsagePlan);
        endpoints.MapMethods("/usageplans/{usagePlanId}", ["PATCH"], UpdateUsagePlanAsync);
        endpoints.MapDelete("/usageplans/{usagePlanId}", DeleteUsagePlanAsync);
        endpoints.MapPost("/usageplans/{usagePlanId}/keys", CreateUsagePlanKeyAsync);
        endpoints.MapGet("/usageplans/{usagePlanId}/keys", GetUsagePlanKeys);
        endpoints.MapGet("/usageplans/{usagePlanId}/keys/{keyId}", GetUsagePlanKey);
        endpoints.MapDelete("/usageplans/{usagePlanId}/keys/{keyId}", DeleteUsagePlanKeyAsync);
        endpoints.MapGet("/usageplans/{usagePlanId}/usage", GetUsage);
        endpoints.MapMethods("/usageplans/{usagePlanId}/keys/{keyId}/usage", ["PATCH"], UpdateUsageAsync);
        return endpoints;
    }

    // ---- API keys ----------------------------------------------------------------------------------------------------

    private static async Task<IResult> CreateApiKeyAsync(HttpContext context, ApiRegistry registry)
    {
        if (ApiJson.Query(context, "mode") == "import")
        {
            return ApiErrors.BadRequest("ImportApiKeys is not served by Lamina: create the keys with CreateApiKey.");
        }
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.ApiKey);
        if (error is not null)
        {
            return error;
        }
        if (request!.Value is { } given && given.Length < 20)
        {
            return ApiErrors.BadRequest("API Key value should be at least 20 characters");
        }
        if (request.StageKeys is { Count: > 0 })
        {
            return ApiErrors.BadRequest("stageKeys are not served by Lamina: add the key to a usage plan of the API's stage.");
        }
        var now = registry.Now();
        var key = request with
        {
            Id = ApiRegistry.NewId(),
            Value = request.Value ?? RandomNumberGenerator.GetString(KeyAlphabet, 40),
            Name = request.Name ?? "",
            Enabled = request.Enabled ?? false,
            CreatedDate = now,
            LastUpdatedDate = now,
            StageKeys = [],
            Tags = request.Tags ?? [],
            GenerateDistinctId = null,
        };
        var (created, putError) = await registry.ChangeKeyAsync(key.Id!, _ => registry.ApiKeys.Any(k => k.Value == key.Value)
            ? (null, ApiErrors.Conflict("API Key already exists with this value"))
            : (key, null));
        return putError ?? ApiJson.Created(created!, ApiGatewayJsonContext.Default.ApiKey);
    }

    private static IResult GetApiKeys(HttpContext context, ApiRegistry registry)
    {
        var includeValues = RestApisApi.Bool(ApiJson.Query(context, "includeValues"));
        var name = ApiJson.Query(context, "name");
        var customer = ApiJson.Query(context, "customerId");
        var keys = registry.ApiKeys
            .Where(k => (name is null || k.Name?.StartsWith(name, StringComparison.Ordinal) == true) && (customer is null || k.CustomerId == customer))
            .OrderBy(static k => k.CreatedDate).ThenBy(static k => k.Id, StringComparer.Ordinal)
            .Select(k => includeValues ? k : k with { Value = null })
            .ToList();
        return RestApisApi.Page(context, keys, ApiGatewayJsonContext.Default.RestPageApiKey);
    }

    private static IResult GetApiKey(HttpContext context, string apiKey, ApiRegistry registry) =>
        registry.TryGetKey(apiKey, out var key)
            ? ApiJson.Ok(RestApisApi.Bool(ApiJson.Query(context, "includeValue")) ? key : key with { Value = null }, ApiGatewayJsonContext.Default.ApiKey)
            : KeyNotFound();

    private static async Task<IResult> UpdateApiKeyAsync(HttpContext context, string apiKey, ApiRegistry registry)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.PatchRequest);
        if (error is not null)
        {
            return error;
        }
        var (updated, changeError) = await registry.ChangeKeyAsync(apiKey, key =>
        {
            if (key is null)
            {
                return (null, KeyNotFound());
            }
            foreach (var operation in request!.PatchOperations ?? [])
            {
                switch (operation.Op, operation.Path)
                {
                    case ("replace", "/name"):
                        key = key with { Name = operation.Value };
                        break;
                    case ("replace", "/description"):
                        key = key with { Description = operation.Value };
                        break;
                    case ("replace", "/enabled"):
                        key = key with { Enabled = RestApisApi.Bool(operation.Value) };
                        break;
                    case ("replace", "/customerId"):
                        key = key with { CustomerId = operation.Value };
                        break;
                    default:
                        return (null, RestApisApi.InvalidPatch(operation, "/name, /description, /enabled, /customerId"));
                }
            }
            return (key with { LastUpdatedDate = registry.Now() }, null);
        });
        return changeError ?? ApiJson.Ok(updated! with { Value = null }, ApiGatewayJsonContext.Default.ApiKey);
    }

    private static async Task<IResult> DeleteApiKeyAsync(string apiKey, ApiRegistry registry) =>
        await registry.DeleteKeyAsync(apiKey) ? Results.StatusCode(StatusCodes.Status202Accepted) : KeyNotFound();

    // ---- Usage plans -------------------------------------------------------------------------------------------------

    private static async Task<IResult> CreateUsagePlanAsync(HttpContext context, ApiRegistry registry)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.UsagePlan);
        if (error is not null)
        {
            return error;
        }
        if (request!.Name is not { Length: > 0 })
        {
            return ApiErrors.BadRequest("name is required.");
        }
        if (Validate(request, registry) is { } invalid)
        {
            return invalid;
        }
        var plan = request with { Id = ApiRegistry.NewId(6), ApiStages = request.ApiStages ?? [], Tags = request.Tags ?? [], KeyIds = [] };
        var (created, putError) = await registry.ChangePlanAsync(plan.Id!, _ => (plan, null));
        return putError ?? ApiJson.Created(Shown(created!), ApiGatewayJsonContext.Default.UsagePlan);
    }

    private static AwsError? Validate(UsagePlan plan, ApiRegistry registry)
    {
        foreach (var stage in plan.ApiStages ?? [])
        {
            if (stage.ApiId is null || !registry.TryGetRest(stage.ApiId, out var api))
            {
                return ApiErrors.NotFound($"Invalid API identifier specified {stage.ApiId}");
            }
            if (!api.Stages.Any(s => s.StageName == stage.Stage))
            {
                return ApiErrors.NotFound($"Invalid stage identifier specified {stage.Stage}");
            }
        }
        if (plan.Throttle is { RateLimit: < 0 } or { BurstLimit: < 0 })
        {
            return ApiErrors.BadRequest("The throttle's rateLimit and burstLimit must not be negative.");
        }
        if (plan.Quota is { } quota && (quota.Limit is null or < 0 || quota.Period is not ("DAY" or "WEEK" or "MONTH")))
        {
            return ApiErrors.BadRequest("A quota needs a limit (not negative) and a period: DAY, WEEK or MONTH.");
        }
        return null;
    }

    /// <summary>A plan as the API answers it (the keys in it are listed by GetUsagePlanKeys, not here).</summary>
    private static UsagePlan Shown(UsagePlan plan) => plan with { KeyIds = null };

    private static IResult GetUsagePlans(HttpContext context, ApiRegistry registry)
    {
        var keyId = ApiJson.Query(context, "keyId");
        var plans = registry.UsagePlans.Where(p => keyId is null || p.KeyIds?.Contains(keyId) == true)
            .OrderBy(static p => p.Name, StringComparer.Ordinal).ThenBy(static p => p.Id, StringComparer.Ordinal).Select(Shown).ToList();
        return RestApisApi.Page(context, plans, ApiGatewayJsonContext.Default.RestPageUsagePlan);
    }

    private static IResult GetUsagePlan(string usagePlanId, ApiRegistry registry) =>
        registry.TryGetPlan(usagePlanId, out var plan) ? ApiJson.Ok(Shown(plan), ApiGatewayJsonContext.Default.UsagePlan) : PlanNotFound(usagePlanId);

    private static async Task<IResult> UpdateUsagePlanAsync(HttpContext context, string usagePlanId, ApiRegistry registry)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.PatchRequest);
        if (error is not null)
        {
            return error;
        }
        var (updated, changeError) = await registry.ChangePlanAsync(usagePlanId, plan =>
        {
            if (plan is null)
            {
                return (null, PlanNotFound(usagePlanId));
            }
            foreach (var operation in request!.PatchOperations ?? [])
            {
                var value = operation.Value;
                try
                {
                    switch (operation.Op, operation.Path)
                    {
                        case ("replace", "/name") when value is { Length: > 0 }:
                            plan = plan with { Name = value };
                            break;
                        case ("replace", "/description"):
                            plan = plan with { Description = value };
                            break;
                        case ("add", "/apiStages") when value?.Split(':') is [var apiId, var stage]:
                            plan = plan with { ApiStages = [.. (plan.ApiStages ?? []).Where(s => s.ApiId != apiId || s.Stage != stage), new ApiStage { ApiId = apiId, Stage = stage }] };
                            break;
                        case ("remove", "/apiStages") when value?.Split(':') is [var apiId, var stage]:
                            plan = plan with { ApiStages = [.. (plan.ApiStages ?? []).Where(s => s.ApiId != apiId || s.Stage != stage)] };
                            break;
                        case ("replace", "/throttle/rateLimit"):
                            plan = plan with { Throttle = (plan.Throttle ?? new ThrottleSettings()) with { RateLimit = double.Parse(value ?? "", CultureInfo.InvariantCulture) } };
                            break;
                        case ("replace", "/throttle/burstLimit"):
                            plan = plan with { Throttle = (plan.Throttle ?? new ThrottleSettings()) with { BurstLimit = int.Parse(value ?? "", CultureInfo.InvariantCulture) } };
                            break;
                        case ("remove", "/throttle"):
                            plan = plan with { Throttle = null };
                            break;
                        case ("replace", "/quota/limit"):
                            plan = plan with { Quota = (plan.Quota ?? new QuotaSettings { Period = "DAY" }) with { Limit = int.Parse(value ?? "", CultureInfo.InvariantCulture) } };
                            break;
                        case ("replace", "/quota/period"):
                            plan = plan with { Quota = (plan.Quota ?? new QuotaSettings { Limit = 0 }) with { Period = value } };
                            break;
                        case ("replace", "/quota/offset"):
                            plan = plan with { Quota = (plan.Quota ?? new QuotaSettings()) with { Offset = int.Parse(value ?? "", CultureInfo.InvariantCulture) } };
                            break;
                        case ("remove", "/quota"):
                            plan = plan with { Quota = null };
                            break;
                        default:
                            return (null, RestApisApi.InvalidPatch(operation,
                                "/name, /description, /apiStages (value apiId:stage), /throttle/rateLimit, /throttle/burstLimit, /quota/limit, /quota/period, /quota/offset"));
                    }
                }
                catch (Exception e) when (e is FormatException or OverflowException)
                {
                    return (null, ApiErrors.BadRequest($"Invalid value '{value}' for {operation.Path}: a number is expected."));
                }
            }
            return Validate(plan, registry) is { } invalid ? (null, invalid) : (plan, null);
        });
        return changeError ?? ApiJson.Ok(Shown(updated!), ApiGatewayJsonContext.Default.UsagePlan);
    }

    private static async Task<IResult> DeleteUsagePlanAsync(string usagePlanId, ApiRegistry registry) =>
        await registry.DeletePlanAsync(usagePlanId) ? Results.StatusCode(StatusCodes.Status202Accepted) : PlanNotFound(usagePlanId);

    private static async Task<IResult> CreateUsagePlanKeyAsync(HttpContext context, string usagePlanId, ApiRegistry registry)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.UsagePlanKey);
        if (error is not null)
        {
            return error;
        }
        if (request!.KeyType != "API_KEY")
        {
            return ApiErrors.BadRequest("keyType must be API_KEY.");
        }
        if (request.KeyId is not { } keyId || !registry.TryGetKey(keyId, out var key))
        {
            return ApiErrors.NotFound($"Invalid API Key identifier specified {request.KeyId}");
        }
        var (_, changeError) = await registry.ChangePlanAsync(usagePlanId, plan =>
        {
            if (plan is null)
            {
                return (null, PlanNotFound(usagePlanId));
            }
            if (plan.KeyIds?.Contains(keyId) == true)
            {
                return (null, ApiErrors.Conflict($"API Key {keyId} is already in usage plan {usagePlanId}"));
            }
            return (plan with { KeyIds = [.. plan.KeyIds ?? [], keyId] }, null);
        });
        return changeError ?? ApiJson.Created(PlanKey(key), ApiGatewayJsonContext.Default.UsagePlanKey);
    }

    private static UsagePlanKey PlanKey(ApiKey key) => new() { Id = key.Id, Type = "API_KEY", Value = key.Value, Name = key.Name };

    private static IResult GetUsagePlanKeys(HttpContext context, string usagePlanId, ApiRegistry registry)
    {
        if (!registry.TryGetPlan(usagePlanId, out var plan))
        {
            return PlanNotFound(usagePlanId);
        }
        var name = ApiJson.Query(context, "nameQuery");
        var keys = (plan.KeyIds ?? []).Select(id => registry.TryGetKey(id, out var key) ? PlanKey(key) : null).OfType<UsagePlanKey>()
            .Where(k => name is null || k.Name?.StartsWith(name, StringComparison.Ordinal) == true).ToList();
        return RestApisApi.Page(context, keys, ApiGatewayJsonContext.Default.RestPageUsagePlanKey);
    }

    private static IResult GetUsagePlanKey(string usagePlanId, string keyId, ApiRegistry registry)
    {
        if (!registry.TryGetPlan(usagePlanId, out var plan))
        {
            return PlanNotFound(usagePlanId);
        }
        return plan.KeyIds?.Contains(keyId) == true && registry.TryGetKey(keyId, out var key)
            ? ApiJson.Ok(PlanKey(key), ApiGatewayJsonContext.Default.UsagePlanKey)
            : ApiErrors.NotFound($"Invalid Usage Plan Key identifier specified {keyId}");
    }

    private static async Task<IResult> DeleteUsagePlanKeyAsync(string usagePlanId, string keyId, ApiRegistry registry)
    {
        var (_, changeError) = await registry.ChangePlanAsync(usagePlanId, plan =>
        {
            if (plan is null)
            {
                return (null, PlanNotFound(usagePlanId));
            }
            return plan.KeyIds?.Contains(keyId) == true
                ? (plan with { KeyIds = [.. plan.KeyIds.Where(k => k != keyId)] }, null)
                : (null, ApiErrors.NotFound($"Invalid Usage Plan Key identifier specified {keyId}"));
        });
        return changeError ?? Results.StatusCode(StatusCodes.Status202Accepted);
    }

    private static IResult GetUsage(HttpContext context, string usagePlanId, ApiRegistry registry, UsagePlans usage, TimeProvider time)
    {
        if (!registry.TryGetPlan(usagePlanId, out var plan))
        {
            return PlanNotFound(usagePlanId);
        }
        if (!DateOnly.TryParseExact(ApiJson.Query(context, "startDate"), "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var start)
            || !DateOnly.TryParseExact(ApiJson.Query(context, "endDate"), "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var end))
        {
            return ApiErrors.BadRequest("startDate and endDate are required, as yyyy-MM-dd.");
        }
        if (end < start || end.DayNumber - start.DayNumber > 90)
        {
            return ApiErrors.BadRequest("The usage period must start before it ends and span at most 90 days.");
        }
        return ApiJson.Ok(usage.Report(plan, ApiJson.Query(context, "keyId"), start, end), ApiGatewayJsonContext.Default.UsageReport);
    }

    private static async Task<IResult> UpdateUsageAsync(HttpContext context, string usagePlanId, string keyId, ApiRegistry registry, UsagePlans usage)
    {
        var (request, error) = await ApiJson.ReadAsync(context, ApiGatewayJsonContext.Default.PatchRequest);
        if (error is not null)
        {
            return error;
        }
        if (!registry.TryGetPlan(usagePlanId, out var plan) || plan.KeyIds?.Contains(keyId) != true)
        {
            return PlanNotFound(usagePlanId);
        }
        foreach (var operation in request!.PatchOperations ?? [])
        {
            if (operation is not { Op: "replace", Path: "/remaining" } || !long.TryParse(operation.Value, NumberStyles.None, CultureInfo.InvariantCulture, out var remaining))
            {
                return RestApisApi.InvalidPatch(operation, "/remaining (replace, a number)");
            }
            usage.SetRemaining(plan, keyId, remaining);
        }
        var today = DateOnly.FromDateTime(registry.Now().UtcDateTime);
        return ApiJson.Ok(usage.Report(plan, keyId, today, today), ApiGatewayJsonContext.Default.UsageReport);
    }

    private static AwsError KeyNotFound() => ApiErrors.NotFound("Invalid API Key identifier specified");

    private static AwsError PlanNotFound(string id) => ApiErrors.NotFound($"Invalid Usage Plan ID specified {id}");
}
