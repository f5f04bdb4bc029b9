using System.Globalization;
using Lamina.Server.Diagnostics;
using Lamina.Server.Hosting;
using Lamina.Server.Protocols;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Lambda;

/// <summary>
/// Reserved concurrency (Put/Get/DeleteFunctionConcurrency) and GetAccountSettings (LAMBDA.md §1, §11). A reservation
/// belongs to the function: <c>$LATEST</c>, its versions and aliases share it, and a qualifier in the name is ignored.
/// Admission itself is <see cref="Invoke.ConcurrencyLimiter"/>'s.
/// </summary>
internal static partial class ConcurrencyApi
{
    /// <summary>Lambda's storage quota for all deployment packages and layers (75 GB).</summary>
    public const long TotalCodeSizeLimit = 80_530_636_800;

    /// <summary>Largest package plus layers once extracted (250 MB).</summary>
    public const long CodeSizeUnzippedLimit = 262_144_000;

    /// <summary>Largest zip uploaded directly (50 MB).</summary>
    public const long CodeSizeZippedLimit = 52_428_800;

    public static IEndpointRouteBuilder MapConcurrencyApi(this IEndpointRouteBuilder endpoints)
    {
        // Each template also matches its trailing-slash form (ASP.NET Core's matcher), so each is mapped once.
        endpoints.MapPut("/2017-10-31/functions/{name}/concurrency", PutFunctionConcurrency);
        endpoints.MapGet("/2019-09-30/functions/{name}/concurrency", GetFunctionConcurrency);
        endpoints.MapDelete("/2017-10-31/functions/{name}/concurrency", DeleteFunctionConcurrency);
        endpoints.MapGet("/2016-08-19/account-settings", GetAccountSettings);
        return endpoints;
    }

    internal static async Task<IResult> PutFunctionConcurrency(HttpContext context, string name, FunctionRegistry registry, IOptions<LaminaOptions> options, ILoggerFactory loggers)
    {
        var cancellationToken = context.RequestAborted;
        if (FunctionReference.ParseFunctionName(name, options.Value, Protocols.CallerIdentity.AccountOf(context, options.Value), out var functionName) is { } invalid)
        {
            return invalid;
        }
        var (request, parseError) = await FunctionsApi.ReadJsonAsync(context.Request, FunctionsApi.MaxConfigurationRequestBytes, "PutFunctionConcurrency", LaminaJsonContext.Default.ConcurrencyDto, cancellationToken);
        if (parseError is not null)
        {
            return parseError;
        }
        if (request.ReservedConcurrentExecutions is not { } reserved)
        {
            return FunctionValidation.NotNull("reservedConcurrentExecutions");
        }
        if (reserved < 0)
        {
            return AwsError.Validation(string.Create(CultureInfo.InvariantCulture,
                $"1 validation error detected: Value '{reserved}' at 'reservedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 0"));
        }
        var limits = options.Value;
        var status = await registry.SetReservedConcurrencyAsync(functionName!, reserved,
            reservedByOthers => limits.AccountConcurrency - reservedByOthers - reserved >= limits.MinimumUnreservedConcurrency, cancellationToken);
        switch (status)
        {
            case FunctionWriteStatus.Succeeded:
                Log.Changed(loggers.CreateLogger(typeof(ConcurrencyApi).FullName!), functionName!, reserved.ToString(CultureInfo.InvariantCulture));
                return FunctionsApi.Json(new ConcurrencyDto { ReservedConcurrentExecutions = reserved }, LaminaJsonContext.Default.ConcurrencyDto);
            case FunctionWriteStatus.Refused:
                return AwsError.InvalidParameter(string.Create(CultureInfo.InvariantCulture,
                    $"Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{limits.MinimumUnreservedConcurrency}]."));
            default:
                return AwsError.FunctionNotFound(limits.FunctionArn(functionName!));
        }
    }

    internal static IResult GetFunctionConcurrency(HttpContext context, string name, FunctionRegistry registry, IOptions<LaminaOptions> options)
    {
        if (FunctionReference.ParseFunctionName(name, options.Value, Protocols.CallerIdentity.AccountOf(context, options.Value), out var functionName) is { } invalid)
        {
            return invalid;
        }
        if (!registry.TryGetEntry(functionName!, out var entry))
        {
            return AwsError.FunctionNotFound(options.Value.FunctionArn(functionName!));
        }
        // Without a reservation Lambda answers an empty object.
        return FunctionsApi.Json(new ConcurrencyDto { ReservedConcurrentExecutions = entry.ReservedConcurrency }, LaminaJsonContext.Default.ConcurrencyDto);
    }

    internal static async Task<IResult> DeleteFunctionConcurrency(HttpContext context, string name, FunctionRegistry registry, IOptions<LaminaOptions> options, ILoggerFactory loggers)
    {
        if (FunctionReference.ParseFunctionName(name, options.Value, Protocols.CallerIdentity.AccountOf(context, options.Value), out var functionName) is { } invalid)
        {
            return invalid;
        }
        var status = await registry.SetReservedConcurrencyAsync(functionName!, null, static _ => true, context.RequestAborted);
        if (status != FunctionWriteStatus.Succeeded)
        {
            return AwsError.FunctionNotFound(options.Value.FunctionArn(functionName!));
        }
        Log.Changed(loggers.CreateLogger(typeof(ConcurrencyApi).FullName!), functionName!, "none");
        return TypedResults.NoContent();
    }

    internal static IResult GetAccountSettings(HttpContext context, FunctionRegistry registry, IOptions<LaminaOptions> options)
    {
        // The caller's account's functions; the concurrency limit is the server's, shared by every account.
        var account = Protocols.CallerIdentity.AccountOf(context, options.Value);
        var entries = registry.ListEntries().FindAll(e => (e.LatestConfig.ForeignAccount ?? options.Value.AccountId) == account);
        var response = new GetAccountSettingsResponse
        {
            AccountLimit = new AccountLimitDto
            {
                TotalCodeSize = TotalCodeSizeLimit,
                CodeSizeUnzipped = CodeSizeUnzippedLimit,
                CodeSizeZipped = CodeSizeZippedLimit,
                ConcurrentExecutions = options.Value.AccountConcurrency,
                UnreservedConcurrentExecutions = options.Value.AccountConcurrency - registry.ReservedConcurrencyTotal,
            },
            AccountUsage = new AccountUsageDto
            {
                // Every stored version counts, as on Lambda ($LATEST and each published version).
                TotalCodeSize = entries.Sum(static e => e.AllConfigs.Sum(static c => c.CodeSize)),
                FunctionCount = entries.Count,
            },
        };
        return FunctionsApi.Json(response, LaminaJsonContext.Default.GetAccountSettingsResponse);
    }

    private static partial class Log
    {
        [LoggerMessage(EventIds.ReservedConcurrencyChanged, LogLevel.Information, "Reserved concurrency of function {Name}: {Reserved}")]
        public static partial void Changed(ILogger logger, string name, string reserved);
    }
}
