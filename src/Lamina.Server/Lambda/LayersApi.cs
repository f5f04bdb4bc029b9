using System.Globalization;
using Lamina.Server.Diagnostics;
using Lamina.Server.Hosting;
using Lamina.Server.Protocols;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Lambda;

/// <summary>
/// Layers (LAMBDA.md §1.1, §1.3; issue #4): PublishLayerVersion, GetLayerVersion, GetLayerVersionByArn, ListLayers,
/// ListLayerVersions, DeleteLayerVersion. Layer zips go through the code store's checks like function code.
/// </summary>
internal static partial class LayersApi
{
    private const string Layers = "/2018-10-31/layers";

    /// <summary>Lambda caps layer list pages at 50 (MaxItems 1–50 in the model).</summary>
    public const int PageLimit = 50;

    public static IEndpointRouteBuilder MapLayersApi(this IEndpointRouteBuilder endpoints)
    {
        // GET /layers is ListLayers, or GetLayerVersionByArn when ?find=LayerVersion: one route, two operations.
        endpoints.MapGet(Layers, ListLayersOrGetByArn);
        endpoints.MapPost(Layers + "/{layerName}/versions", PublishLayerVersion);
        endpoints.MapGet(Layers + "/{layerName}/versions", ListLayerVersions);
        endpoints.MapGet(Layers + "/{layerName}/versions/{versionNumber}", GetLayerVersion);
        endpoints.MapDelete(Layers + "/{layerName}/versions/{versionNumber}", DeleteLayerVersion);
        return endpoints;
    }

    internal static async Task<IResult> PublishLayerVersion(
        HttpContext context, string layerName, LayerRegistry layers, CodeStore codeStore, IOptions<LaminaOptions> options, ILoggerFactory loggers)
    {
        var cancellationToken = context.RequestAborted;
        if (FunctionValidation.ParseLayerName(layerName, options.Value, out var name) is { } nameError)
        {
            return nameError;
        }
        if (name is null)
        {
            return AwsError.InvalidParameter($"Layers can only be published in this account ({options.Value.AccountId}) and region ({options.Value.Region}): {layerName}");
        }
        var (request, parseError) = await FunctionsApi.ReadJsonAsync(context.Request, FunctionsApi.MaxCodeRequestBytes, "PublishLayerVersion", LaminaJsonContext.Default.PublishLayerVersionRequest, cancellationToken);
        if (parseError is not null)
        {
            return parseError;
        }
        if (FunctionValidation.ValidateLayerPublish(request) is { } invalid)
        {
            return invalid;
        }
        var zip = request.Content!.ZipFile;
        if (zip is null)
        {
            var (fromS3, s3Error) = await CodeFromS3.ReadAsync(context, options.Value.AccountId,
                request.Content.S3Bucket!, request.Content.S3Key!, request.Content.S3ObjectVersion, cancellationToken);
            if (s3Error is not null)
            {
                return s3Error;
            }
            zip = fromS3!;
        }
        if (zip.Length > CodeStore.MaxZippedBytes)
        {
            return FunctionsApi.TooLarge("PublishLayerVersion");
        }
        var stored = await codeStore.StoreAsync(zip, cancellationToken);
        if (stored.Error is not null)
        {
            return stored.Error;
        }

        var version = await layers.PublishAsync(new LayerVersion
        {
            LayerName = name,
            Version = 0,
            Description = request.Description ?? "",
            LicenseInfo = request.LicenseInfo,
            CompatibleRuntimes = request.CompatibleRuntimes,
            CompatibleArchitectures = request.CompatibleArchitectures,
            CodeSha256 = stored.Code!.Sha256,
            CodeSize = stored.Code.Size,
            CreatedDate = default,
        }, cancellationToken);
        Log.Published(Logger(loggers), name, version.Version, version.CodeSha256);
        return FunctionsApi.Json(ToResponse(version, context, codeStore, options.Value), FunctionsApi.Relaxed.LayerVersionResponse, StatusCodes.Status201Created);
    }

    internal static IResult GetLayerVersion(
        HttpContext context, string layerName, string versionNumber, LayerRegistry layers, CodeStore codeStore, IOptions<LaminaOptions> options)
    {
        if (ParseVersion(layerName, versionNumber, options.Value, out var name, out var version) is { } invalid)
        {
            return invalid;
        }
        return name is not null && layers.TryGet(name, version, out var found)
            ? FunctionsApi.Json(ToResponse(found, context, codeStore, options.Value), FunctionsApi.Relaxed.LayerVersionResponse)
            : NotFound();
    }

    internal static IResult ListLayersOrGetByArn(HttpContext context, LayerRegistry layers, CodeStore codeStore, IOptions<LaminaOptions> options)
    {
        if (FunctionsApi.QueryValue(context, "find") == "LayerVersion")
        {
            if (FunctionValidation.ParseLayerVersionArn(FunctionsApi.QueryValue(context, "Arn"), options.Value, out var name, out var version) is { } invalid)
            {
                return invalid;
            }
            return name is not null && layers.TryGet(name, version, out var found)
                ? FunctionsApi.Json(ToResponse(found, context, codeStore, options.Value), FunctionsApi.Relaxed.LayerVersionResponse)
                : NotFound();
        }

        if (Filters(context, out var runtime, out var architecture, out var pageSize) is { } filterError)
        {
            return filterError;
        }
        // Each layer with its newest version that matches the filters; layers without one are left out. Sorted by
        // name (ordinal); the marker is the name of the first layer of the next page.
        var matching = new List<(LayerEntry Layer, LayerVersion Latest)>();
        foreach (var layer in layers.List())
        {
            var latest = layer.Versions.Values.LastOrDefault(v => v.Matches(runtime, architecture));
            if (latest is not null)
            {
                matching.Add((layer, latest));
            }
        }
        var start = 0;
        if (FunctionsApi.QueryValue(context, "Marker") is { Length: > 0 } marker)
        {
            while (start < matching.Count && string.CompareOrdinal(matching[start].Layer.Name, marker) < 0)
            {
                start++;
            }
        }
        var end = Math.Min(matching.Count, start + pageSize);
        var response = new ListLayersResponse { NextMarker = end < matching.Count ? matching[end].Layer.Name : null };
        for (var i = start; i < end; i++)
        {
            var (layer, latest) = matching[i];
            response.Layers.Add(new LayersListItemDto
            {
                LayerName = layer.Name,
                LayerArn = options.Value.LayerArn(layer.Name),
                LatestMatchingVersion = ToListItem(latest, options.Value),
            });
        }
        return FunctionsApi.Json(response, FunctionsApi.Relaxed.ListLayersResponse);
    }

    internal static IResult ListLayerVersions(HttpContext context, string layerName, LayerRegistry layers, IOptions<LaminaOptions> options)
    {
        if (FunctionValidation.ParseLayerName(layerName, options.Value, out var name) is { } nameError)
        {
            return nameError;
        }
        if (Filters(context, out var runtime, out var architecture, out var pageSize) is { } filterError)
        {
            return filterError;
        }
        // Newest first; the marker is the version number of the first entry of the next page. An unknown layer
        // has no versions.
        var versions = name is not null && layers.TryGetLayer(name, out var layer)
            ? layer.Versions.Values.Reverse().Where(v => v.Matches(runtime, architecture)).ToList()
            : [];
        var start = 0;
        if (FunctionsApi.QueryValue(context, "Marker") is { Length: > 0 } marker)
        {
            if (!long.TryParse(marker, NumberStyles.None, CultureInfo.InvariantCulture, out var from))
            {
                return AwsError.InvalidParameter($"Invalid Marker: {marker}. Use the NextMarker of the previous page.");
            }
            while (start < versions.Count && versions[start].Version > from)
            {
                start++;
            }
        }
        var end = Math.Min(versions.Count, start + pageSize);
        var response = new ListLayerVersionsResponse
        {
            NextMarker = end < versions.Count ? versions[end].Version.ToString(CultureInfo.InvariantCulture) : null,
        };
        for (var i = start; i < end; i++)
        {
            response.LayerVersions.Add(ToListItem(versions[i], options.Value));
        }
        return FunctionsApi.Json(response, FunctionsApi.Relaxed.ListLayerVersionsResponse);
    }

    internal static async Task<IResult> DeleteLayerVersion(
        HttpContext context, string layerName, string versionNumber, LayerRegistry layers, IOptions<LaminaOptions> options, ILoggerFactory loggers)
    {
        if (ParseVersion(layerName, versionNumber, options.Value, out var name, out var version) is { } invalid)
        {
            return invalid;
        }
        // Idempotent, as Lambda's: deleting what is not there succeeds. Functions that use the version keep its
        // files (their configurations carry its hash).
        if (name is not null && await layers.DeleteAsync(name, version, context.RequestAborted))
        {
            Log.Deleted(Logger(loggers), name, version);
        }
        return TypedResults.NoContent();
    }

    private static AwsError? ParseVersion(string layerName, string versionNumber, LaminaOptions options, out string? name, out long version)
    {
        version = 0;
        if (FunctionValidation.ParseLayerName(layerName, options, out name) is { } nameError)
        {
            return nameError;
        }
        if (!long.TryParse(versionNumber, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out version))
        {
            return AwsError.Validation($"1 validation error detected: Value '{versionNumber}' at 'versionNumber' failed to satisfy constraint: Member must be a number");
        }
        return version < 1 ? AwsError.InvalidParameter("Layer Version Cannot be less than 1") : null;
    }

    private static AwsError? Filters(HttpContext context, out string? runtime, out string? architecture, out int pageSize)
    {
        runtime = FunctionsApi.QueryValue(context, "CompatibleRuntime");
        architecture = FunctionsApi.QueryValue(context, "CompatibleArchitecture");
        pageSize = PageLimit;
        return FunctionValidation.ValidateLayerFilters(runtime, architecture)
            ?? FunctionsApi.PageSize(context, PageLimit, out pageSize, modelMax: PageLimit);
    }

    private static LayerVersionResponse ToResponse(LayerVersion version, HttpContext context, CodeStore codeStore, LaminaOptions options)
    {
        var request = context.Request;
        var baseUrl = $"{request.Scheme}://{(request.Host.HasValue ? request.Host.Value : "127.0.0.1")}{request.PathBase}";
        var hashHex = version.CodeHashHex;
        return new LayerVersionResponse
        {
            Content = new LayerVersionContentOutputDto
            {
                Location = codeStore.CreateDownloadUrl(baseUrl, hashHex),
                CodeSha256 = version.CodeSha256,
                CodeSize = version.CodeSize,
            },
            LayerArn = options.LayerArn(version.LayerName),
            LayerVersionArn = options.LayerVersionArn(version.LayerName, version.Version),
            Description = version.Description,
            CreatedDate = FunctionConfigurationMapping.FormatTimestamp(version.CreatedDate),
            Version = version.Version,
            CompatibleRuntimes = version.CompatibleRuntimes?.ToList(),
            LicenseInfo = version.LicenseInfo,
            CompatibleArchitectures = version.CompatibleArchitectures?.ToList(),
        };
    }

    private static LayerVersionsListItemDto ToListItem(LayerVersion version, LaminaOptions options) => new()
    {
        LayerVersionArn = options.LayerVersionArn(version.LayerName, version.Version),
        Version = version.Version,
        Description = version.Description,
        CreatedDate = FunctionConfigurationMapping.FormatTimestamp(version.CreatedDate),
        CompatibleRuntimes = version.CompatibleRuntimes?.ToList(),
        LicenseInfo = version.LicenseInfo,
        CompatibleArchitectures = version.CompatibleArchitectures?.ToList(),
    };

    private static AwsError NotFound() => AwsError.NotFound("The resource you requested does not exist.");

    private static ILogger Logger(ILoggerFactory loggers) => loggers.CreateLogger(typeof(LayersApi).FullName!);

    private static partial class Log
    {
        [LoggerMessage(EventIds.LayerVersionPublished, LogLevel.Information, "Published version {Version} of layer {Name} (code {CodeSha256})")]
        public static partial void Published(ILogger logger, string name, long version, string codeSha256);

        [LoggerMessage(EventIds.LayerVersionDeleted, LogLevel.Information, "Deleted version {Version} of layer {Name}")]
        public static partial void Deleted(ILogger logger, string name, long version);
    }
}
