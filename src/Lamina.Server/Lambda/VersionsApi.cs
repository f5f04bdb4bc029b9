using System.Globalization;
using Lamina.Server.Diagnostics;
using Lamina.Server.Hosting;
using Lamina.Server.Protocols;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Lambda;

/// <summary>
/// Versions and aliases (LAMBDA.md §1.1, §1.3; issue #4): PublishVersion, ListVersionsByFunction, CreateAlias,
/// GetAlias, UpdateAlias, DeleteAlias, ListAliases. DeleteFunction with a version qualifier is in
/// <see cref="FunctionsApi"/>; Invoke with a qualifier in <see cref="InvokeApi"/>.
/// </summary>
internal static partial class VersionsApi
{
    private const string Functions = "/2015-03-31/functions";

    public static IEndpointRouteBuilder MapVersionsApi(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapPost(Functions + "/{name}/versions", PublishVersion);
        endpoints.MapGet(Functions + "/{name}/versions", ListVersionsByFunction);
        endpoints.MapPost(Functions + "/{name}/aliases", CreateAlias);
        endpoints.MapGet(Functions + "/{name}/aliases", ListAliases);
        endpoints.MapGet(Functions + "/{name}/aliases/{alias}", GetAlias);
        endpoints.MapPut(Functions + "/{name}/aliases/{alias}", UpdateAlias);
        endpoints.MapDelete(Functions + "/{name}/aliases/{alias}", DeleteAlias);
        return endpoints;
    }

    internal static async Task<IResult> PublishVersion(HttpContext context, string name, FunctionRegistry registry, IOptions<LaminaOptions> options, ILoggerFactory loggers)
    {
        var cancellationToken = context.RequestAborted;
        if (FunctionReference.ParseFunctionName(name, options.Value, Protocols.CallerIdentity.AccountOf(context, options.Value), out var functionName) is { } nameError)
        {
            return nameError;
        }
        var (request, parseError) = await FunctionsApi.ReadJsonAsync(context.Request, FunctionsApi.MaxConfigurationRequestBytes, "PublishVersion", LaminaJsonContext.Default.PublishVersionRequest, cancellationToken);
        if (parseError is not null)
        {
            return parseError;
        }
        if (request.Description is { Length: > FunctionValidation.MaxDescriptionLength })
        {
            return FunctionValidation.MaxLength(request.Description, "description", FunctionValidation.MaxDescriptionLength);
        }
        if (request.PublishTo is not null)
        {
            return request.PublishTo == "LATEST_PUBLISHED"
                ? AwsError.InvalidParameter("PublishTo is not supported by Lamina (it belongs to capacity providers); remove it from the request.")
                : FunctionValidation.Enum(request.PublishTo, "publishTo", "LATEST_PUBLISHED");
        }

        var expectedSha = string.IsNullOrEmpty(request.CodeSha256) ? null : request.CodeSha256;
        var expectedRevision = string.IsNullOrEmpty(request.RevisionId) ? null : request.RevisionId;
        var write = await registry.PublishAsync(functionName!, expectedRevision, expectedSha, request.Description, cancellationToken);
        switch (write.Status)
        {
            case FunctionWriteStatus.Succeeded:
                var version = write.Config!;
                LogPublished(loggers, version);
                return FunctionsApi.Json(version.ToDto(QualifiedArn(options.Value, version)), FunctionsApi.Relaxed.FunctionConfigurationDto, StatusCodes.Status201Created);
            case FunctionWriteStatus.RevisionMismatch:
                return FunctionsApi.RevisionMismatch();
            case FunctionWriteStatus.CodeMismatch:
                return AwsError.InvalidParameter(
                    $"CodeSHA256 ({expectedSha}) is different from current CodeSHA256 in $LATEST ({write.Config!.CodeSha256}). Please try again with the CodeSHA256 in $LATEST.");
            default:
                return AwsError.FunctionNotFound(options.Value.FunctionArn(functionName!));
        }
    }

    internal static IResult ListVersionsByFunction(HttpContext context, string name, FunctionRegistry registry, IOptions<LaminaOptions> options)
    {
        if (FunctionReference.ParseFunctionName(name, options.Value, Protocols.CallerIdentity.AccountOf(context, options.Value), out var functionName) is { } nameError)
        {
            return nameError;
        }
        if (FunctionsApi.PageSize(context, FunctionsApi.PageLimit, out var pageSize) is { } pageError)
        {
            return pageError;
        }
        if (!registry.TryGetEntry(functionName!, out var entry))
        {
            return AwsError.FunctionNotFound(options.Value.FunctionArn(functionName!));
        }

        // $LATEST first, then 1, 2, …; the marker is the version of the first entry of the next page.
        var all = entry.AllConfigs.ToList();
        var start = 0;
        if (FunctionsApi.QueryValue(context, "Marker") is { Length: > 0 } marker)
        {
            if (marker != FunctionEntry.Latest && !FunctionEntry.TryParseVersion(marker, out _))
            {
                return AwsError.InvalidParameter($"Invalid Marker: {marker}. Use the NextMarker of the previous page.");
            }
            var from = VersionOrder(marker);
            while (start < all.Count && VersionOrder(all[start].Version) < from)
            {
                start++;
            }
        }
        var end = Math.Min(all.Count, start + pageSize);
        var response = new ListVersionsByFunctionResponse { NextMarker = end < all.Count ? all[end].Version : null };
        for (var i = start; i < end; i++)
        {
            response.Versions.Add(all[i].ToDto(QualifiedArn(options.Value, all[i])));
        }
        return FunctionsApi.Json(response, FunctionsApi.Relaxed.ListVersionsByFunctionResponse);
    }

    internal static async Task<IResult> CreateAlias(HttpContext context, string name, FunctionRegistry registry, IOptions<LaminaOptions> options, ILoggerFactory loggers)
    {
        var cancellationToken = context.RequestAborted;
        if (FunctionReference.ParseFunctionName(name, options.Value, Protocols.CallerIdentity.AccountOf(context, options.Value), out var functionName) is { } nameError)
        {
            return nameError;
        }
        var (request, parseError) = await FunctionsApi.ReadJsonAsync(context.Request, FunctionsApi.MaxConfigurationRequestBytes, "CreateAlias", LaminaJsonContext.Default.CreateAliasRequest, cancellationToken);
        if (parseError is not null)
        {
            return parseError;
        }
        var invalid = FunctionValidation.ValidateAliasName(request.Name)
            ?? FunctionValidation.ValidateVersionValue(request.FunctionVersion)
            ?? ValidateDescription(request.Description);
        if (invalid is not null)
        {
            return invalid;
        }

        var aliasName = request.Name!;
        AwsError? refused = null;
        var write = await registry.CreateAliasAsync(functionName!, aliasName, entry =>
        {
            string? additional = null;
            var weight = 0.0;
            refused = FunctionValidation.ValidateVersionExists(entry, request.FunctionVersion!, options.Value)
                ?? FunctionValidation.ValidateRouting(entry, request.FunctionVersion!, request.RoutingConfig?.AdditionalVersionWeights, options.Value, out additional, out weight);
            return refused is not null ? null : new AliasConfig
            {
                Name = aliasName,
                FunctionVersion = request.FunctionVersion!,
                Description = request.Description ?? "",
                AdditionalVersion = additional,
                AdditionalWeight = weight,
                RevisionId = "", // stamped by the registry
            };
        }, cancellationToken);
        return AliasWritten(write, refused, functionName!, aliasName, options.Value, loggers, StatusCodes.Status201Created);
    }

    internal static IResult GetAlias(HttpContext context, string name, string alias, FunctionRegistry registry, IOptions<LaminaOptions> options)
    {
        if ((FunctionReference.ParseFunctionName(name, options.Value, Protocols.CallerIdentity.AccountOf(context, options.Value), out var functionName) ?? FunctionValidation.ValidateAliasName(alias)) is { } invalid)
        {
            return invalid;
        }
        if (!registry.TryGetEntry(functionName!, out var entry))
        {
            return AwsError.FunctionNotFound(options.Value.FunctionArn(functionName!));
        }
        return entry.Aliases.TryGetValue(alias, out var found)
            ? FunctionsApi.Json(ToDto(found, functionName!, options.Value), FunctionsApi.Relaxed.AliasConfigurationDto)
            : AliasNotFound(functionName!, alias, options.Value);
    }

    internal static async Task<IResult> UpdateAlias(HttpContext context, string name, string alias, FunctionRegistry registry, IOptions<LaminaOptions> options, ILoggerFactory loggers)
    {
        var cancellationToken = context.RequestAborted;
        if ((FunctionReference.ParseFunctionName(name, options.Value, Protocols.CallerIdentity.AccountOf(context, options.Value), out var functionName) ?? FunctionValidation.ValidateAliasName(alias)) is { } nameError)
        {
            return nameError;
        }
        var (request, parseError) = await FunctionsApi.ReadJsonAsync(context.Request, FunctionsApi.MaxConfigurationRequestBytes, "UpdateAlias", LaminaJsonContext.Default.UpdateAliasRequest, cancellationToken);
        if (parseError is not null)
        {
            return parseError;
        }
        var invalid = (request.FunctionVersion is null ? null : FunctionValidation.ValidateVersionValue(request.FunctionVersion))
            ?? ValidateDescription(request.Description);
        if (invalid is not null)
        {
            return invalid;
        }

        AwsError? refused = null;
        var expectedRevision = string.IsNullOrEmpty(request.RevisionId) ? null : request.RevisionId;
        var write = await registry.UpdateAliasAsync(functionName!, alias, expectedRevision, (entry, current) =>
        {
            // Members absent from the request keep their value; RoutingConfig, when given, replaces the routing
            // (an empty map removes it). The routing is checked against the new primary version either way.
            var primary = request.FunctionVersion ?? current.FunctionVersion;
            var weights = request.RoutingConfig is not null
                ? request.RoutingConfig.AdditionalVersionWeights
                : current.AdditionalVersion is null ? null : new Dictionary<string, double> { [current.AdditionalVersion] = current.AdditionalWeight };
            string? additional = null;
            var weight = 0.0;
            refused = FunctionValidation.ValidateVersionExists(entry, primary, options.Value)
                ?? FunctionValidation.ValidateRouting(entry, primary, weights, options.Value, out additional, out weight);
            return refused is not null ? null : current with
            {
                FunctionVersion = primary,
                Description = request.Description ?? current.Description,
                AdditionalVersion = additional,
                AdditionalWeight = weight,
            };
        }, cancellationToken);
        return AliasWritten(write, refused, functionName!, alias, options.Value, loggers, StatusCodes.Status200OK);
    }

    internal static async Task<IResult> DeleteAlias(HttpContext context, string name, string alias, FunctionRegistry registry, IOptions<LaminaOptions> options, ILoggerFactory loggers)
    {
        if ((FunctionReference.ParseFunctionName(name, options.Value, Protocols.CallerIdentity.AccountOf(context, options.Value), out var functionName) ?? FunctionValidation.ValidateAliasName(alias)) is { } invalid)
        {
            return invalid;
        }
        switch (await registry.DeleteAliasAsync(functionName!, alias, context.RequestAborted))
        {
            case FunctionWriteStatus.Succeeded:
                Log.AliasChanged(Logger(loggers), functionName!, alias, "deleted");
                return TypedResults.NoContent();
            case FunctionWriteStatus.QualifierNotFound:
                return AliasNotFound(functionName!, alias, options.Value);
            default:
                return AwsError.FunctionNotFound(options.Value.FunctionArn(functionName!));
        }
    }

    internal static IResult ListAliases(HttpContext context, string name, FunctionRegistry registry, IOptions<LaminaOptions> options)
    {
        if (FunctionReference.ParseFunctionName(name, options.Value, Protocols.CallerIdentity.AccountOf(context, options.Value), out var functionName) is { } nameError)
        {
            return nameError;
        }
        if (FunctionsApi.PageSize(context, FunctionsApi.PageLimit, out var pageSize) is { } pageError)
        {
            return pageError;
        }
        var version = FunctionsApi.QueryValue(context, "FunctionVersion");
        if (version is not null && FunctionValidation.ValidateVersionValue(version) is { } versionError)
        {
            return versionError;
        }
        if (!registry.TryGetEntry(functionName!, out var entry))
        {
            return AwsError.FunctionNotFound(options.Value.FunctionArn(functionName!));
        }

        // Sorted by name (ordinal); the marker is the name of the first alias of the next page.
        var aliases = entry.Aliases.Values.Where(a => version is null || a.FunctionVersion == version).ToList();
        var start = 0;
        if (FunctionsApi.QueryValue(context, "Marker") is { Length: > 0 } marker)
        {
            while (start < aliases.Count && string.CompareOrdinal(aliases[start].Name, marker) < 0)
            {
                start++;
            }
        }
        var end = Math.Min(aliases.Count, start + pageSize);
        var response = new ListAliasesResponse { NextMarker = end < aliases.Count ? aliases[end].Name : null };
        for (var i = start; i < end; i++)
        {
            response.Aliases.Add(ToDto(aliases[i], functionName!, options.Value));
        }
        return FunctionsApi.Json(response, FunctionsApi.Relaxed.ListAliasesResponse);
    }

    internal static void LogPublished(ILoggerFactory loggers, FunctionConfig version) =>
        Log.Published(Logger(loggers), version.Name, version.Version, version.CodeSha256);

    internal static void LogVersionDeleted(ILoggerFactory loggers, string name, string version) =>
        Log.VersionDeleted(Logger(loggers), name, version);

    internal static AliasConfigurationDto ToDto(AliasConfig alias, string functionName, LaminaOptions options) => new()
    {
        AliasArn = $"{options.FunctionArn(functionName)}:{alias.Name}",
        Name = alias.Name,
        FunctionVersion = alias.FunctionVersion,
        Description = alias.Description,
        RoutingConfig = alias.AdditionalVersion is null
            ? null
            : new AliasRoutingConfigurationDto { AdditionalVersionWeights = new() { [alias.AdditionalVersion] = alias.AdditionalWeight } },
        RevisionId = alias.RevisionId,
    };

    private static IResult AliasWritten(AliasWrite write, AwsError? refused, string functionName, string aliasName, LaminaOptions options, ILoggerFactory loggers, int successStatus)
    {
        switch (write.Status)
        {
            case FunctionWriteStatus.Succeeded:
                Log.AliasChanged(Logger(loggers), functionName, aliasName, $"now routes to {write.Alias!.FunctionVersion}"
                    + (write.Alias.AdditionalVersion is null ? "" : string.Create(CultureInfo.InvariantCulture, $" and {write.Alias.AdditionalWeight:P1} to {write.Alias.AdditionalVersion}")));
                return FunctionsApi.Json(ToDto(write.Alias, functionName, options), FunctionsApi.Relaxed.AliasConfigurationDto, successStatus);
            case FunctionWriteStatus.Refused:
                return refused!;
            case FunctionWriteStatus.AlreadyExists:
                return AwsError.Conflict($"Alias already exists: {options.FunctionArn(functionName)}:{aliasName}");
            case FunctionWriteStatus.RevisionMismatch:
                return FunctionsApi.RevisionMismatch();
            case FunctionWriteStatus.QualifierNotFound:
                return AliasNotFound(functionName, aliasName, options);
            default:
                return AwsError.FunctionNotFound(options.FunctionArn(functionName));
        }
    }

    private static AwsError? ValidateDescription(string? description) =>
        description is { Length: > FunctionValidation.MaxDescriptionLength }
            ? FunctionValidation.MaxLength(description, "description", FunctionValidation.MaxDescriptionLength)
            : null;

    private static AwsError AliasNotFound(string functionName, string alias, LaminaOptions options) =>
        AwsError.NotFound($"Cannot find alias arn: {options.FunctionArn(functionName)}:{alias}");

    private static string QualifiedArn(LaminaOptions options, FunctionConfig config) => $"{options.FunctionArn(config.Name)}:{config.Version}";

    /// <summary><c>$LATEST</c> sorts first (0), then versions by number.</summary>
    private static long VersionOrder(string version) =>
        version == FunctionEntry.Latest ? 0 : FunctionEntry.TryParseVersion(version, out var number) ? number : long.MaxValue;

    private static ILogger Logger(ILoggerFactory loggers) => loggers.CreateLogger(typeof(VersionsApi).FullName!);

    private static partial class Log
    {
        [LoggerMessage(EventIds.VersionPublished, LogLevel.Information, "Published version {Version} of function {Name} (code {CodeSha256})")]
        public static partial void Published(ILogger logger, string name, string version, string codeSha256);

        [LoggerMessage(EventIds.VersionDeleted, LogLevel.Information, "Deleted version {Version} of function {Name}")]
        public static partial void VersionDeleted(ILogger logger, string name, string version);

        [LoggerMessage(EventIds.AliasChanged, LogLevel.Information, "Alias {Alias} of function {Name} {Change}")]
        public static partial void AliasChanged(ILogger logger, string name, string alias, string change);
    }
}
