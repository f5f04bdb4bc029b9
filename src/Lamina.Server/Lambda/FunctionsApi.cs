using System.Buffers;
using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Lamina.Server.Diagnostics;
using Lamina.Server.Hosting;
using Lamina.Server.Protocols;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Lambda;

/// <summary>
/// The function control plane (LAMBDA.md §1.1): CreateFunction, GetFunction, GetFunctionConfiguration,
/// ListFunctions, UpdateFunctionCode, UpdateFunctionConfiguration, DeleteFunction, and the download route behind
/// GetFunction's <c>Code.Location</c>. Reads take qualifiers (a version or an alias); versions and aliases have their
/// own operations in <see cref="VersionsApi"/>. Every input is hostile: bodies are read with a cap, JSON errors are 400
/// InvalidRequestContentException, and nothing a client sends produces a 500.
/// </summary>
internal static partial class FunctionsApi
{
    private const string Functions = "/2015-03-31/functions";

    // Responses are JSON, never HTML: write '+' in "+0000" and quotes in descriptions as themselves, as AWS does.
    internal static readonly LaminaJsonContext Relaxed = new(new JsonSerializerOptions(LaminaJsonContext.Default.Options)
    {
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });

    /// <summary>Lambda's request limit for CreateFunction/UpdateFunctionCode: a 50 MB zip, base64, in JSON.</summary>
    public const long MaxCodeRequestBytes = 70_167_211;

    /// <summary>UpdateFunctionConfiguration bodies are small (4 KB of environment at most); 1 MiB is ample.</summary>
    public const long MaxConfigurationRequestBytes = 1_048_576;

    public static IEndpointRouteBuilder MapFunctionsApi(this IEndpointRouteBuilder endpoints)
    {
        // Older botocore models (AWS CLI v2.9) send "/2015-03-31/functions/" for ListFunctions. ASP.NET Core's
        // matcher already accepts one trailing slash on every template, and mapping both forms would make each
        // request ambiguous, so each route is mapped once and answers both.
        endpoints.MapPost(Functions, CreateFunction);
        endpoints.MapGet(Functions, ListFunctions);
        endpoints.MapGet(Functions + "/{name}", GetFunction);
        endpoints.MapDelete(Functions + "/{name}", DeleteFunction);
        endpoints.MapGet(Functions + "/{name}/configuration", GetFunctionConfiguration);
        endpoints.MapPut(Functions + "/{name}/configuration", UpdateFunctionConfiguration);
        endpoints.MapPut(Functions + "/{name}/code", UpdateFunctionCode);
        endpoints.MapGet("/lamina/code/{file}", DownloadCode);
        return endpoints;
    }

    internal static async Task<IResult> CreateFunction(
        HttpContext context, FunctionRegistry registry, CodeStore codeStore, LayerRegistry layers, IOptions<LaminaOptions> options, ILoggerFactory loggers)
    {
        var cancellationToken = context.RequestAborted;
        var (request, parseError) = await ReadJsonAsync(context.Request, MaxCodeRequestBytes, "CreateFunction", LaminaJsonContext.Default.CreateFunctionRequest, cancellationToken);
        if (parseError is not null)
        {
            return parseError;
        }
        if (FunctionValidation.ValidateCreate(request, options.Value, Protocols.CallerIdentity.AccountOf(context, options.Value), out var draft, out var tags) is { } invalid)
        {
            return invalid;
        }
        // Cheap answer before extracting anything; the registry checks again under its lock.
        if (registry.TryGet(draft!.Name, out _))
        {
            return AlreadyExists(draft.FunctionName);
        }
        if (request.Layers is not null)
        {
            if (FunctionValidation.ResolveLayers(request.Layers, layers, options.Value, out var resolved) is { } layersError)
            {
                return layersError;
            }
            draft = draft with { Layers = resolved };
        }

        var zip = request.Code!.ZipFile;
        if (zip is null)
        {
            var (fromS3, s3Error) = await CodeFromS3.ReadAsync(context, Protocols.CallerIdentity.AccountOf(context, options.Value),
                request.Code.S3Bucket!, request.Code.S3Key!, request.Code.S3ObjectVersion, cancellationToken);
            if (s3Error is not null)
            {
                return s3Error;
            }
            zip = fromS3!;
        }
        if (zip.Length > CodeStore.MaxZippedBytes)
        {
            return TooLarge("CreateFunction");
        }
        var stored = await codeStore.StoreAsync(zip, cancellationToken);
        if (stored.Error is not null)
        {
            Log.PackageRefused(Logger(loggers), draft.Name, stored.Error.Message);
            return stored.Error;
        }

        if (FunctionValidation.ValidateUnzippedTotal(stored.Code!.HashHex, draft.Layers, codeStore) is { } tooLarge)
        {
            return tooLarge;
        }
        if (await PrepareLayersAsync(draft.Layers, codeStore, cancellationToken) is { } layersUnusable)
        {
            return layersUnusable;
        }

        var write = await registry.CreateAsync(draft with { CodeSha256 = stored.Code.Sha256, CodeSize = stored.Code.Size }, tags, cancellationToken);
        if (write.Status == FunctionWriteStatus.AlreadyExists)
        {
            return AlreadyExists(draft.FunctionName);
        }
        var config = write.Config!;
        Log.Created(Logger(loggers), config.Name, config.Runtime, config.CodeSha256);
        if (request.Publish == true)
        {
            // Lambda answers with version 1's configuration (and the unqualified ARN).
            var published = await registry.PublishAsync(config.Name, config.RevisionId, null, null, cancellationToken);
            if (published.Status == FunctionWriteStatus.Succeeded)
            {
                VersionsApi.LogPublished(loggers, published.Config!);
                config = published.Config!;
            }
        }
        return Json(config.ToDto(options.Value.FunctionArn(config.Name)), Relaxed.FunctionConfigurationDto, StatusCodes.Status201Created);
    }

    internal static async Task<IResult> GetFunction(
        HttpContext context, string name, FunctionRegistry registry, CodeStore codeStore, IOptions<LaminaOptions> options)
    {
        if (ResolveQualified(context, name, registry, options.Value, out var config, out var arn) is { } error)
        {
            return error;
        }
        var request = context.Request;
        var baseUrl = $"{request.Scheme}://{(request.Host.HasValue ? request.Host.Value : "127.0.0.1")}{request.PathBase}";
        var tags = await registry.GetTagsAsync(config!.Name, context.RequestAborted);
        var response = new GetFunctionResponse
        {
            Configuration = config.ToDto(arn!),
            Code = new FunctionCodeLocationDto { RepositoryType = "S3", Location = codeStore.CreateDownloadUrl(baseUrl, config.CodeHashHex) },
            Tags = tags.Count == 0 ? null : tags,
            Concurrency = registry.TryGetEntry(config.Name, out var entry) && entry.ReservedConcurrency is { } reserved
                ? new ConcurrencyDto { ReservedConcurrentExecutions = reserved }
                : null,
        };
        return Json(response, Relaxed.GetFunctionResponse);
    }

    internal static IResult GetFunctionConfiguration(HttpContext context, string name, FunctionRegistry registry, IOptions<LaminaOptions> options)
    {
        if (ResolveQualified(context, name, registry, options.Value, out var config, out var arn) is { } error)
        {
            return error;
        }
        return Json(config!.ToDto(arn!), Relaxed.FunctionConfigurationDto);
    }

    internal static IResult ListFunctions(HttpContext context, FunctionRegistry registry, IOptions<LaminaOptions> options)
    {
        var query = context.Request.Query;
        if (PageSize(context, PageLimit, out var pageSize) is { } pageError)
        {
            return pageError;
        }
        var allVersions = false;
        if (query.TryGetValue("FunctionVersion", out var functionVersion))
        {
            if (functionVersion.ToString() != "ALL")
            {
                return AwsError.InvalidParameter(
                    $"1 validation error detected: Value '{functionVersion}' at 'functionVersion' failed to satisfy constraint: Member must satisfy enum value set: [ALL]");
            }
            allVersions = true;
        }

        // Without FunctionVersion=ALL: each function's $LATEST, unqualified ARN; the marker is the name of the first
        // function of the next page. With it: $LATEST then each published version of every function, qualified
        // ARNs; the marker is "name:version" of the first entry of the next page. Names are unique and sorted
        // ordinally, versions ascend after $LATEST, so a marker stays valid while functions come and go.
        // Only the caller's account's functions (accounts are tenants); their keys share a prefix, so the list stays
        // in name order, and markers carry the names callers know.
        var account = Protocols.CallerIdentity.AccountOf(context, options.Value);
        var entries = new List<(FunctionConfig Config, string Marker)>();
        foreach (var entry in registry.ListEntries())
        {
            if ((entry.LatestConfig.ForeignAccount ?? options.Value.AccountId) != account)
            {
                continue;
            }
            if (!allVersions)
            {
                entries.Add((entry.LatestConfig, entry.LatestConfig.FunctionName));
                continue;
            }
            foreach (var config in entry.AllConfigs)
            {
                entries.Add((config, $"{config.FunctionName}:{config.Version}"));
            }
        }
        var start = 0;
        if (query.TryGetValue("Marker", out var markerText) && markerText.ToString() is { Length: > 0 } marker)
        {
            while (start < entries.Count && CompareListMarkers(entries[start].Marker, marker) < 0)
            {
                start++;
            }
        }
        var end = Math.Min(entries.Count, start + pageSize);
        var response = new ListFunctionsResponse
        {
            NextMarker = end < entries.Count ? entries[end].Marker : null,
        };
        for (var i = start; i < end; i++)
        {
            var config = entries[i].Config;
            var arn = options.Value.FunctionArn(config.Name);
            response.Functions.Add(config.ToDto(allVersions ? $"{arn}:{config.Version}" : arn));
        }
        return Json(response, Relaxed.ListFunctionsResponse);
    }

    /// <summary>Orders ListFunctions markers: by name (ordinal), then <c>$LATEST</c> before versions 1, 2, ….</summary>
    private static int CompareListMarkers(string a, string b)
    {
        var (nameA, orderA) = SplitMarker(a);
        var (nameB, orderB) = SplitMarker(b);
        var byName = string.CompareOrdinal(nameA, nameB);
        return byName != 0 ? byName : orderA.CompareTo(orderB);

        static (string Name, long Order) SplitMarker(string marker)
        {
            var colon = marker.LastIndexOf(':');
            if (colon < 0)
            {
                return (marker, -1);
            }
            var qualifier = marker[(colon + 1)..];
            return (marker[..colon], qualifier == FunctionEntry.Latest ? 0 : FunctionEntry.TryParseVersion(qualifier, out var n) ? n : long.MaxValue);
        }
    }

    internal static async Task<IResult> UpdateFunctionCode(
        HttpContext context, string name, FunctionRegistry registry, CodeStore codeStore, IOptions<LaminaOptions> options, ILoggerFactory loggers)
    {
        var cancellationToken = context.RequestAborted;
        if (ResolveLatest(context, name, registry, options.Value, out var current, out var arn) is { } notFound)
        {
            return notFound;
        }
        var (request, parseError) = await ReadJsonAsync(context.Request, MaxCodeRequestBytes, "UpdateFunctionCode", LaminaJsonContext.Default.UpdateFunctionCodeRequest, cancellationToken);
        if (parseError is not null)
        {
            return parseError;
        }
        if (FunctionValidation.ValidateCodeUpdate(request) is { } invalid)
        {
            return invalid;
        }
        var zip = request.ZipFile;
        if (zip is null)
        {
            var (fromS3, s3Error) = await CodeFromS3.ReadAsync(context, Protocols.CallerIdentity.AccountOf(context, options.Value),
                request.S3Bucket!, request.S3Key!, request.S3ObjectVersion, cancellationToken);
            if (s3Error is not null)
            {
                return s3Error;
            }
            zip = fromS3!;
        }
        if (zip.Length > CodeStore.MaxZippedBytes)
        {
            return TooLarge("UpdateFunctionCode");
        }
        var architecture = request.Architectures?[0];

        if (request.DryRun == true)
        {
            if (request.RevisionId is not null && request.RevisionId != current!.RevisionId)
            {
                return RevisionMismatch();
            }
            var validated = await codeStore.ValidateAsync(zip, cancellationToken);
            if (validated.Error is not null)
            {
                return validated.Error;
            }
            // The dry run keeps no tree to measure; the real update checks the size with the layers.
            var preview = current! with
            {
                CodeSha256 = validated.Code!.Sha256,
                CodeSize = validated.Code.Size,
                Architecture = architecture ?? current.Architecture,
            };
            return Json(preview.ToDto(arn!), Relaxed.FunctionConfigurationDto);
        }

        var stored = await codeStore.StoreAsync(zip, cancellationToken);
        if (stored.Error is not null)
        {
            Log.PackageRefused(Logger(loggers), current!.Name, stored.Error.Message);
            return stored.Error;
        }
        var code = stored.Code!;
        AwsError? refused = null;
        var write = await registry.UpdateAsync(current!.Name, request.RevisionId, c =>
        {
            refused = FunctionValidation.ValidateUnzippedTotal(code.HashHex, c.Layers, codeStore);
            return refused is null ? c with { CodeSha256 = code.Sha256, CodeSize = code.Size, Architecture = architecture ?? c.Architecture } : null;
        }, cancellationToken);
        if (refused is not null)
        {
            return refused;
        }
        if (request.Publish == true && write.Status == FunctionWriteStatus.Succeeded)
        {
            // Lambda answers with the new version's configuration and its qualified ARN.
            Log.Updated(Logger(loggers), current.Name, "code", write.Config!.RevisionId);
            var published = await registry.PublishAsync(current.Name, write.Config.RevisionId, null, null, cancellationToken);
            if (published.Status == FunctionWriteStatus.Succeeded)
            {
                VersionsApi.LogPublished(loggers, published.Config!);
                var version = published.Config!;
                return Json(version.ToDto($"{options.Value.FunctionArn(version.Name)}:{version.Version}"), Relaxed.FunctionConfigurationDto);
            }
            return Json(write.Config.ToDto(arn!), Relaxed.FunctionConfigurationDto);
        }
        return Updated(write, current.Name, arn!, options.Value, loggers, "code");
    }

    internal static async Task<IResult> UpdateFunctionConfiguration(
        HttpContext context, string name, FunctionRegistry registry, CodeStore codeStore, LayerRegistry layers, IOptions<LaminaOptions> options, ILoggerFactory loggers)
    {
        var cancellationToken = context.RequestAborted;
        if (ResolveLatest(context, name, registry, options.Value, out var current, out var arn) is { } notFound)
        {
            return notFound;
        }
        var (request, parseError) = await ReadJsonAsync(context.Request, MaxConfigurationRequestBytes, "UpdateFunctionConfiguration", LaminaJsonContext.Default.UpdateFunctionConfigurationRequest, cancellationToken);
        if (parseError is not null)
        {
            return parseError;
        }

        // Layers: resolved (and their /opt tree built) before the write, so a cold start of the new configuration
        // only looks its tree up.
        List<FunctionLayer>? newLayers = null;
        if (request.Layers is not null)
        {
            if (FunctionValidation.ResolveLayers(request.Layers, layers, options.Value, out newLayers) is { } layersError)
            {
                return layersError;
            }
            if (await PrepareLayersAsync(newLayers, codeStore, cancellationToken) is { } layersUnusable)
            {
                return layersUnusable;
            }
        }

        // Validated against the configuration current under the registry's lock (some rules depend on it).
        AwsError? refused = null;
        var write = await registry.UpdateAsync(current!.Name, request.RevisionId, c =>
        {
            var next = c;
            refused = FunctionValidation.ApplyUpdate(ref next, request);
            if (refused is null && newLayers is not null)
            {
                next = next with { Layers = newLayers };
                refused = FunctionValidation.ValidateUnzippedTotal(next.CodeHashHex, newLayers, codeStore);
            }
            return refused is null ? next : null;
        }, cancellationToken);
        if (refused is not null)
        {
            return refused;
        }
        return Updated(write, current.Name, arn!, options.Value, loggers, "configuration");
    }

    internal static async Task<IResult> DeleteFunction(
        HttpContext context, string name, FunctionRegistry registry, IOptions<LaminaOptions> options, ILoggerFactory loggers)
    {
        if (!FunctionReference.TryParse(name, QueryValue(context, "Qualifier"), options.Value, Protocols.CallerIdentity.AccountOf(context, options.Value), out var reference, out var nameError))
        {
            return nameError!;
        }
        var arn = options.Value.FunctionArn(reference.Name);
        var qualifier = reference.Qualifier;
        if (qualifier == FunctionEntry.Latest)
        {
            return AwsError.InvalidParameter("$LATEST version cannot be deleted without deleting the function.");
        }
        if (!registry.TryGetEntry(reference.Name, out _))
        {
            return AwsError.FunctionNotFound(qualifier is null ? arn : $"{arn}:{qualifier}");
        }
        if (qualifier is null)
        {
            // The whole function: $LATEST, every version and every alias.
            if (await registry.DeleteAsync(reference.Name, context.RequestAborted) == FunctionWriteStatus.NotFound)
            {
                return AwsError.FunctionNotFound(arn);
            }
            Log.Deleted(Logger(loggers), reference.Name);
            return TypedResults.NoContent();
        }
        if (!FunctionEntry.TryParseVersion(qualifier, out var version))
        {
            return qualifier.All(char.IsAsciiDigit)
                ? AwsError.FunctionNotFound($"{arn}:{qualifier}")
                : AwsError.InvalidParameter("Deletion of aliases is not supported.");
        }
        var (status, aliases) = await registry.DeleteVersionAsync(reference.Name, version, context.RequestAborted);
        switch (status)
        {
            case FunctionWriteStatus.Succeeded:
                VersionsApi.LogVersionDeleted(loggers, reference.Name, qualifier);
                return TypedResults.NoContent();
            case FunctionWriteStatus.InUse:
                return AwsError.Conflict($"Unable to delete version because the following aliases reference it: [{string.Join(", ", aliases)}]");
            case FunctionWriteStatus.QualifierNotFound:
                return AwsError.FunctionNotFound($"{arn}:{qualifier}");
            default:
                return AwsError.FunctionNotFound(arn);
        }
    }

    internal static IResult DownloadCode(HttpContext context, string file, CodeStore codeStore)
    {
        var hash = file.EndsWith(".zip", StringComparison.Ordinal) ? file[..^4] : "";
        if (!codeStore.IsValidDownload(hash, QueryValue(context, "expires"), QueryValue(context, "signature")))
        {
            return new AwsError(StatusCodes.Status403Forbidden, "AccessDeniedException",
                "The code download link is invalid or has expired; call GetFunction for a new one.");
        }
        var path = codeStore.TryGetZipPath(hash);
        return path is null
            ? AwsError.NotFound("The resource you requested does not exist.")
            : TypedResults.PhysicalFile(path, "application/zip", fileDownloadName: null);
    }

    /// <summary>
    /// Resolves <c>{name}</c> (+ <c>?Qualifier</c>) to a configuration for reading: <c>$LATEST</c>, a published
    /// version, or an alias's primary version (no weighted routing here). The ARN is the one the caller named:
    /// unqualified, or qualified with <c>$LATEST</c>, the version or the alias, as Lambda answers.
    /// </summary>
    private static AwsError? ResolveQualified(HttpContext context, string name, FunctionRegistry registry, LaminaOptions options, out FunctionConfig? config, out string? arn)
    {
        config = null;
        arn = null;
        if (!FunctionReference.TryParse(name, QueryValue(context, "Qualifier"), options, Protocols.CallerIdentity.AccountOf(context, options), out var reference, out var error))
        {
            return error;
        }
        var unqualified = options.FunctionArn(reference.Name);
        var qualified = reference.Qualifier is null ? unqualified : $"{unqualified}:{reference.Qualifier}";
        if (!registry.TryGetEntry(reference.Name, out var entry) || entry.ResolvePrimary(reference.Qualifier) is not { } found)
        {
            return AwsError.FunctionNotFound(qualified);
        }
        config = found;
        arn = qualified;
        return null;
    }

    /// <summary>
    /// Resolves <c>{name}</c> (+ <c>?Qualifier</c>) to the <c>$LATEST</c> configuration, for the operations that
    /// change it. The ARN is unqualified unless the caller named <c>$LATEST</c>, as Lambda answers. Versions are
    /// immutable and aliases are changed by UpdateAlias: other qualifiers answer 404.
    /// </summary>
    private static AwsError? ResolveLatest(HttpContext context, string name, FunctionRegistry registry, LaminaOptions options, out FunctionConfig? config, out string? arn)
    {
        config = null;
        arn = null;
        if (!FunctionReference.TryParse(name, QueryValue(context, "Qualifier"), options, Protocols.CallerIdentity.AccountOf(context, options), out var reference, out var error))
        {
            return error;
        }
        var unqualified = options.FunctionArn(reference.Name);
        var qualified = reference.Qualifier is null ? unqualified : $"{unqualified}:{reference.Qualifier}";
        if (!registry.TryGet(reference.Name, out config) || (reference.Qualifier is not null && reference.Qualifier != "$LATEST"))
        {
            config = null;
            return AwsError.FunctionNotFound(qualified);
        }
        arn = qualified;
        return null;
    }

    private static IResult Updated(FunctionWrite write, string name, string arn, LaminaOptions options, ILoggerFactory loggers, string what)
    {
        switch (write.Status)
        {
            case FunctionWriteStatus.Succeeded:
                Log.Updated(Logger(loggers), name, what, write.Config!.RevisionId);
                return Json(write.Config.ToDto(arn), Relaxed.FunctionConfigurationDto);
            case FunctionWriteStatus.RevisionMismatch:
                return RevisionMismatch();
            default:
                // Deleted between the lookup and the write.
                return AwsError.FunctionNotFound(options.FunctionArn(name));
        }
    }

    /// <summary>
    /// Reads the whole body, refusing more than <paramref name="limit"/> bytes with Lambda's 413, whether the
    /// client announced the length or not. Kestrel's own limit is lifted for this request so ours is the one
    /// that answers.
    /// </summary>
    internal static async Task<(ArraySegment<byte> Body, AwsError? Error)> ReadBodyAsync(HttpRequest request, long limit, string operation, CancellationToken cancellationToken)
    {
        if (request.ContentLength > limit)
        {
            return (default, TooLarge(operation, limit));
        }
        var sizeFeature = request.HttpContext.Features.Get<IHttpMaxRequestBodySizeFeature>();
        if (sizeFeature is { IsReadOnly: false })
        {
            sizeFeature.MaxRequestBodySize = limit + 1;
        }

        // Pre-size from Content-Length, but not blindly: a client announcing 70 MB and sending nothing must not
        // cost 70 MB. Beyond 8 MiB the buffer grows as bytes actually arrive.
        using var body = new MemoryStream((int)Math.Min(request.ContentLength ?? 16 * 1024, Math.Min(limit, 8 * 1024 * 1024)));
        var buffer = ArrayPool<byte>.Shared.Rent(81920);
        try
        {
            int read;
            while ((read = await request.Body.ReadAsync(buffer.AsMemory(), cancellationToken)) > 0)
            {
                if (body.Length + read > limit)
                {
                    return (default, TooLarge(operation, limit));
                }
                body.Write(buffer, 0, read);
            }
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return (default, TooLarge(operation, limit));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return (new ArraySegment<byte>(body.GetBuffer(), 0, (int)body.Length), null);
    }

    /// <summary>
    /// Reads a request body (capped, as <see cref="ReadBodyAsync"/>) and deserialises it (as <see cref="Parse"/>).
    /// On error the value is null and must not be used.
    /// </summary>
    internal static async Task<(T Value, AwsError? Error)> ReadJsonAsync<T>(HttpRequest request, long limit, string operation, JsonTypeInfo<T> typeInfo, CancellationToken cancellationToken)
        where T : class, new()
    {
        var (body, readError) = await ReadBodyAsync(request, limit, operation, cancellationToken);
        if (readError is not null)
        {
            return (null!, readError);
        }
        var parseError = Parse(body, typeInfo, out var value);
        return (value, parseError);
    }

    /// <summary>Deserialises a JSON object; unknown members are ignored, anything else malformed is a 400.</summary>
    internal static AwsError? Parse<T>(ArraySegment<byte> body, JsonTypeInfo<T> typeInfo, out T value) where T : class, new()
    {
        value = null!;
        if (body.Count == 0)
        {
            value = new T(); // no body: no members
            return null;
        }
        T? parsed;
        try
        {
            parsed = JsonSerializer.Deserialize(body.AsSpan(), typeInfo);
        }
        catch (JsonException e)
        {
            // The reader's syntax messages are useful as they are; the binder's name .NET types, which mean
            // nothing to a caller.
            var reason = e.Message.Contains("Lamina.", StringComparison.Ordinal) || e.Message.Contains("System.", StringComparison.Ordinal)
                ? $"Unexpected or duplicate value at {e.Path} (line {e.LineNumber + 1}, byte {e.BytePositionInLine + 1})"
                : e.Message;
            return AwsError.InvalidRequestContent($"Could not parse request body into json: {reason}");
        }
        if (parsed is null)
        {
            return AwsError.InvalidRequestContent("Could not parse request body into json: the body must be a JSON object, not null.");
        }
        value = parsed;
        return null;
    }

    /// <summary>Lambda's page cap for function and version lists, whatever MaxItems says.</summary>
    internal const int PageLimit = 50;

    /// <summary>
    /// The page size from <c>?MaxItems</c> (1–10000 in the model), capped at <paramref name="limit"/> as Lambda
    /// caps its pages; <paramref name="limit"/> when absent.
    /// </summary>
    internal static AwsError? PageSize(HttpContext context, int limit, out int pageSize, int modelMax = 10000)
    {
        pageSize = limit;
        if (!context.Request.Query.TryGetValue("MaxItems", out var maxItemsText))
        {
            return null;
        }
        if (!int.TryParse(maxItemsText.ToString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var maxItems) || maxItems < 1 || maxItems > modelMax)
        {
            return AwsError.InvalidParameter(
                $"1 validation error detected: Value '{maxItemsText}' at 'maxItems' failed to satisfy constraint: Member must have value between 1 and {modelMax}");
        }
        pageSize = Math.Min(maxItems, limit);
        return null;
    }

    /// <summary>Extracts the layers' trees and builds their merged <c>/opt</c>; a 500 if a stored layer zip has gone missing.</summary>
    internal static async Task<AwsError?> PrepareLayersAsync(IReadOnlyList<FunctionLayer> layers, CodeStore codeStore, CancellationToken cancellationToken)
    {
        if (layers.Count == 0)
        {
            return null;
        }
        var error = await codeStore.EnsureLayersAsync(layers, cancellationToken);
        return error is null ? null : AwsError.Service($"The layers cannot be prepared: {error}. Publish the layer again and use the new version.");
    }

    /// <summary>
    /// A List call of per-qualifier settings (ListFunctionEventInvokeConfigs, ListFunctionUrlConfigs): parses the
    /// function name and <c>MaxItems</c>, finds the function (else <paramref name="functionMissing"/>'s answer), and
    /// returns one page of <paramref name="select"/>'s settings in qualifier order; the marker is the qualifier the
    /// next page starts with.
    /// </summary>
    internal static (FunctionEntry? Entry, List<T> Page, string? NextMarker, IResult? Error) ListPerQualifier<T>(HttpContext context, string name,
        FunctionRegistry registry, LaminaOptions limits, Func<FunctionEntry, System.Collections.Immutable.ImmutableSortedDictionary<string, T>> select,
        Func<string, IResult> functionMissing)
    {
        if (FunctionReference.ParseFunctionName(name, limits, CallerIdentity.AccountOf(context, limits), out var functionName) is { } invalid)
        {
            return (null, [], null, invalid);
        }
        if (PageSize(context, PageLimit, out var pageSize, modelMax: PageLimit) is { } badPage)
        {
            return (null, [], null, badPage);
        }
        if (!registry.TryGetEntry(functionName!, out var entry))
        {
            return (null, [], null, functionMissing(functionName!));
        }
        var all = select(entry).ToList();
        var start = 0;
        if (QueryValue(context, "Marker") is { Length: > 0 } marker)
        {
            while (start < all.Count && string.CompareOrdinal(all[start].Key, marker) < 0)
            {
                start++;
            }
        }
        var end = Math.Min(all.Count, start + pageSize);
        return (entry, all.GetRange(start, end - start).ConvertAll(static p => p.Value), end < all.Count ? all[end].Key : null, null);
    }

    internal static string? QueryValue(HttpContext context, string key) =>
        context.Request.Query.TryGetValue(key, out var values) && values.Count > 0 ? values[0] : null;

    private static AwsError AlreadyExists(string name) => AwsError.Conflict($"Function already exist: {name}");

    internal static AwsError RevisionMismatch() => AwsError.PreconditionFailed(
        "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id");

    internal static AwsError TooLarge(string operation, long limit = MaxCodeRequestBytes) =>
        AwsError.RequestTooLarge($"Request must be smaller than {limit} bytes for the {operation} operation");

    internal static JsonHttpResult<T> Json<T>(T value, JsonTypeInfo<T> typeInfo, int statusCode = StatusCodes.Status200OK) =>
        TypedResults.Json(value, typeInfo, contentType: "application/json", statusCode: statusCode);

    private static ILogger Logger(ILoggerFactory loggers) => loggers.CreateLogger(typeof(FunctionsApi).FullName!);

    private static partial class Log
    {
        [LoggerMessage(EventIds.FunctionCreated, LogLevel.Information, "Created function {Name} ({Runtime}, code {CodeSha256})")]
        public static partial void Created(ILogger logger, string name, string runtime, string codeSha256);

        [LoggerMessage(EventIds.FunctionUpdated, LogLevel.Information, "Updated {What} of function {Name}, revision {RevisionId}")]
        public static partial void Updated(ILogger logger, string name, string what, string revisionId);

        [LoggerMessage(EventIds.FunctionDeleted, LogLevel.Information, "Deleted function {Name}")]
        public static partial void Deleted(ILogger logger, string name);

        [LoggerMessage(EventIds.PackageRefused, LogLevel.Debug, "Refused the deployment package of {Name}: {Reason}")]
        public static partial void PackageRefused(ILogger logger, string name, string reason);
    }
}
