using System.Globalization;
using Lamina.Server.Diagnostics;
using Lamina.Server.Hosting;
using Lamina.Server.Invoke;
using Lamina.Server.Protocols;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Lambda;

/// <summary>
/// Put/Get/Delete/ListProvisionedConcurrencyConfigs (LAMBDA.md §1, §4): per published version or alias, never
/// <c>$LATEST</c>. The registry stores the request; <see cref="EnvironmentPool"/> initialises the environments and
/// reports their progress (Status IN_PROGRESS → READY, or FAILED with a reason).
/// </summary>
internal static partial class ProvisionedConcurrencyApi
{
    public static IEndpointRouteBuilder MapProvisionedConcurrencyApi(this IEndpointRouteBuilder endpoints)
    {
        // One route for Get and List: the model tells List apart by ?List=ALL.
        endpoints.MapPut("/2019-09-30/functions/{name}/provisioned-concurrency", PutAsync);
        endpoints.MapGet("/2019-09-30/functions/{name}/provisioned-concurrency", GetOrListAsync);
        endpoints.MapDelete("/2019-09-30/functions/{name}/provisioned-concurrency", DeleteAsync);
        return endpoints;
    }

    private static async Task<IResult> PutAsync(HttpContext context, string name, FunctionRegistry registry, EnvironmentPool pool,
        IOptions<LaminaOptions> options, ILoggerFactory loggers)
    {
        var limits = options.Value;
        var (functionName, qualifier, invalid) = Parse(context, name, limits);
        if (invalid is not null)
        {
            return invalid;
        }
        var (request, parseError) = await FunctionsApi.ReadJsonAsync(context.Request, FunctionsApi.MaxConfigurationRequestBytes,
            "PutProvisionedConcurrencyConfig", LaminaJsonContext.Default.PutProvisionedConcurrencyRequest, context.RequestAborted);
        if (parseError is not null)
        {
            return parseError;
        }
        if (request.ProvisionedConcurrentExecutions is not { } requested)
        {
            return FunctionValidation.NotNull("provisionedConcurrentExecutions");
        }
        if (requested < 1)
        {
            return AwsError.Validation(string.Create(CultureInfo.InvariantCulture,
                $"1 validation error detected: Value '{requested}' at 'provisionedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 1"));
        }

        var (status, error) = await registry.SetProvisionedConcurrencyAsync(functionName, qualifier, requested,
            entry => CheckPut(entry, qualifier, requested, registry, limits), context.RequestAborted);
        if (status == FunctionWriteStatus.NotFound)
        {
            return AwsError.FunctionNotFound(limits.FunctionArn(functionName));
        }
        if (error is not null)
        {
            return error;
        }
        Log.Changed(loggers.CreateLogger(typeof(ProvisionedConcurrencyApi).FullName!), functionName, qualifier, requested.ToString(CultureInfo.InvariantCulture));
        registry.TryGetEntry(functionName, out var updated);
        var held = await pool.ClusterProvisionedAsync(functionName, context.RequestAborted);
        return FunctionsApi.Json(ToDto(updated!.ProvisionedConcurrency[qualifier], functionName, pool, held, functionArn: null),
            LaminaJsonContext.Default.ProvisionedConcurrencyConfigDto, StatusCodes.Status202Accepted);
    }

    /// <summary>Lambda's rules for a request, checked under the registry's write lock. Null when it may be written.</summary>
    private static AwsError? CheckPut(FunctionEntry entry, string qualifier, int requested, FunctionRegistry registry, LaminaOptions limits)
    {
        if (CheckQualifier(entry, qualifier, limits) is { } invalid)
        {
            return invalid;
        }
        if (entry.Aliases.TryGetValue(qualifier, out var alias) && alias.AdditionalVersion is not null)
        {
            return AwsError.InvalidParameter("Alias with weights can not be used with Provisioned Concurrency");
        }
        // A version gets its provisioned concurrency either directly or through one alias, not both.
        var version = entry.ResolvePrimary(qualifier)!.Version;
        foreach (var other in entry.ProvisionedConcurrency.Keys)
        {
            if (other != qualifier && entry.ResolvePrimary(other)?.Version == version)
            {
                return AwsError.Conflict($"Version {version} of function {limits.FunctionArn(entry.Name)} already has provisioned concurrency configured through {other}.");
            }
        }

        // Provisioned environments run within the function's reservation, or else within the unreserved pool, which
        // must keep its minimum for everyone else.
        var others = entry.ProvisionedConcurrency.Values.Where(p => p.Qualifier != qualifier).Sum(static p => p.Requested);
        if (entry.ReservedConcurrency is { } reserved)
        {
            if (others + requested > reserved)
            {
                return AwsError.InvalidParameter("Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function");
            }
            return null;
        }
        var unreserved = limits.AccountConcurrency - registry.ReservedConcurrencyTotal;
        var provisionedUnreserved = registry.ListEntries()
            .Where(e => e.ReservedConcurrency is null && e.Name != entry.Name)
            .Sum(static e => e.ProvisionedConcurrency.Values.Sum(static p => p.Requested));
        var available = unreserved - limits.MinimumUnreservedConcurrency - provisionedUnreserved - others;
        if (requested > available)
        {
            return AwsError.InvalidParameter(string.Create(CultureInfo.InvariantCulture,
                $"Specified ConcurrentExecutions for function is greater than account's unreserved concurrency [{Math.Max(0, available)}]."));
        }
        return null;
    }

    private static AwsError? CheckQualifier(FunctionEntry entry, string qualifier, LaminaOptions limits)
    {
        if (qualifier == FunctionEntry.Latest)
        {
            return AwsError.InvalidParameter("Provisioned Concurrency Configs cannot be applied to unpublished function versions.");
        }
        return entry.ResolvePrimary(qualifier) is null ? AwsError.FunctionNotFound($"{limits.FunctionArn(entry.Name)}:{qualifier}") : null;
    }

    private static async Task<IResult> GetOrListAsync(HttpContext context, string name, FunctionRegistry registry, EnvironmentPool pool, IOptions<LaminaOptions> options)
    {
        var limits = options.Value;
        if (FunctionsApi.QueryValue(context, "List") is "ALL")
        {
            return await ListAsync(context, name, registry, pool, limits);
        }
        var (functionName, qualifier, invalid) = Parse(context, name, limits);
        if (invalid is not null)
        {
            return invalid;
        }
        if (!registry.TryGetEntry(functionName, out var entry))
        {
            return AwsError.FunctionNotFound(limits.FunctionArn(functionName));
        }
        if (CheckQualifier(entry, qualifier, limits) is { } badQualifier)
        {
            return badQualifier;
        }
        if (!entry.ProvisionedConcurrency.TryGetValue(qualifier, out var provisioned))
        {
            return new AwsError(404, "ProvisionedConcurrencyConfigNotFoundException", "No Provisioned Concurrency Config found for this function");
        }
        var held = await pool.ClusterProvisionedAsync(functionName, context.RequestAborted);
        return FunctionsApi.Json(ToDto(provisioned, functionName, pool, held, functionArn: null), LaminaJsonContext.Default.ProvisionedConcurrencyConfigDto);
    }

    private static async Task<IResult> ListAsync(HttpContext context, string name, FunctionRegistry registry, EnvironmentPool pool, LaminaOptions limits)
    {
        if (FunctionReference.ParseFunctionName(name, limits, Protocols.CallerIdentity.AccountOf(context, limits), out var functionName) is { } invalid)
        {
            return invalid;
        }
        if (FunctionsApi.PageSize(context, FunctionsApi.PageLimit, out var pageSize, modelMax: 50) is { } badPage)
        {
            return badPage;
        }
        if (!registry.TryGetEntry(functionName!, out var entry))
        {
            return AwsError.FunctionNotFound(limits.FunctionArn(functionName!));
        }
        // Ordered by qualifier; the marker is the qualifier the next page starts with.
        var all = entry.ProvisionedConcurrency.Values.ToList();
        var start = 0;
        if (FunctionsApi.QueryValue(context, "Marker") is { Length: > 0 } marker)
        {
            while (start < all.Count && string.CompareOrdinal(all[start].Qualifier, marker) < 0)
            {
                start++;
            }
        }
        var end = Math.Min(all.Count, start + pageSize);
        var response = new ListProvisionedConcurrencyConfigsResponse { NextMarker = end < all.Count ? all[end].Qualifier : null };
        var held = await pool.ClusterProvisionedAsync(entry.Name, context.RequestAborted);
        for (var i = start; i < end; i++)
        {
            response.ProvisionedConcurrencyConfigs.Add(ToDto(all[i], entry.Name, pool, held, $"{limits.FunctionArn(entry.Name)}:{all[i].Qualifier}"));
        }
        return FunctionsApi.Json(response, LaminaJsonContext.Default.ListProvisionedConcurrencyConfigsResponse);
    }

    private static async Task<IResult> DeleteAsync(HttpContext context, string name, FunctionRegistry registry, IOptions<LaminaOptions> options, ILoggerFactory loggers)
    {
        var limits = options.Value;
        var (functionName, qualifier, invalid) = Parse(context, name, limits);
        if (invalid is not null)
        {
            return invalid;
        }
        var (status, error) = await registry.SetProvisionedConcurrencyAsync(functionName, qualifier, null,
            entry => CheckQualifier(entry, qualifier, limits), context.RequestAborted);
        if (status == FunctionWriteStatus.NotFound)
        {
            return AwsError.FunctionNotFound(limits.FunctionArn(functionName));
        }
        if (error is not null)
        {
            return error;
        }
        Log.Changed(loggers.CreateLogger(typeof(ProvisionedConcurrencyApi).FullName!), functionName, qualifier, "none");
        return TypedResults.NoContent();
    }

    /// <summary>The function name and its required qualifier (from <c>?Qualifier</c> or the ARN).</summary>
    private static (string Name, string Qualifier, AwsError? Error) Parse(HttpContext context, string name, LaminaOptions limits)
    {
        if (!FunctionReference.TryParse(name, FunctionsApi.QueryValue(context, "Qualifier"), limits, Protocols.CallerIdentity.AccountOf(context, limits), out var reference, out var error))
        {
            return ("", "", error);
        }
        if (reference.Qualifier is null)
        {
            return ("", "", AwsError.InvalidParameter("The qualifier is required: a published version or an alias."));
        }
        return (reference.Name, reference.Qualifier, null);
    }

    // held: in a cluster, what the live nodes hold (EnvironmentPool.ClusterProvisionedAsync); null on a single machine.
    private static ProvisionedConcurrencyConfigDto ToDto(ProvisionedConcurrencyConfig provisioned, string function, EnvironmentPool pool,
        Dictionary<(string Qualifier, long ModifiedMs), (int Allocated, string? Failure)>? held, string? functionArn)
    {
        var status = held is null
            ? pool.GetProvisionedStatus(function, provisioned.Qualifier) ?? new ProvisionedStatus(provisioned.Requested, 0, "IN_PROGRESS", null)
            : held.TryGetValue((provisioned.Qualifier, provisioned.LastModified.ToUnixTimeMilliseconds()), out var sum)
                ? new ProvisionedStatus(provisioned.Requested, Math.Min(sum.Allocated, provisioned.Requested),
                    sum.Failure is not null ? "FAILED" : sum.Allocated >= provisioned.Requested ? "READY" : "IN_PROGRESS", sum.Failure)
                : new ProvisionedStatus(provisioned.Requested, 0, "IN_PROGRESS", null); // no node has published this request yet
        return new ProvisionedConcurrencyConfigDto
        {
            FunctionArn = functionArn,
            RequestedProvisionedConcurrentExecutions = provisioned.Requested,
            AllocatedProvisionedConcurrentExecutions = status.Allocated,
            AvailableProvisionedConcurrentExecutions = status.Allocated,
            Status = status.Requested == provisioned.Requested ? status.Status : "IN_PROGRESS",
            StatusReason = status.StatusReason,
            // Lambda writes this one without milliseconds: 2019-12-31T20:28:49+0000.
            LastModified = provisioned.LastModified.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'+0000'", CultureInfo.InvariantCulture),
        };
    }

    private static partial class Log
    {
        [LoggerMessage(EventIds.ProvisionedConcurrencyChanged, LogLevel.Information, "Provisioned concurrency of {Name}:{Qualifier}: {Requested}")]
        public static partial void Changed(ILogger logger, string name, string qualifier, string requested);
    }
}
