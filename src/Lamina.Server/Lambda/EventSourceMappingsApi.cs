using System.Buffers;
using System.Text.Json;
using Lamina.Server.Hosting;
using Lamina.Server.Protocols;
using Lamina.Server.Sqs;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Lambda;

/// <summary>
/// Create/Get/Update/Delete/ListEventSourceMappings (LAMBDA.md §1) for Lamina's SQS queues; the mappings and their
/// pollers live in <see cref="EventSourceMappings"/>. Create, Update and Delete answer 202 with the state the mapping
/// moves to (Creating, Updating/Enabling/Disabling, Deleting), as Lambda does; a Get after them shows where it is.
/// </summary>
internal static class EventSourceMappingsApi
{
    private const string Base = "/2015-03-31/event-source-mappings";

    private static readonly string[] StreamOnlySettings =
        ["StartingPosition", "ParallelizationFactor", "BisectBatchOnFunctionError", "MaximumRetryAttempts", "MaximumRecordAgeInSeconds", "TumblingWindowInSeconds"];

    public static IEndpointRouteBuilder MapEventSourceMappingsApi(this IEndpointRouteBuilder endpoints)
    {
        // Each template also matches its trailing-slash form (older clients add one), so each is mapped once.
        endpoints.MapPost(Base, CreateAsync);
        endpoints.MapGet(Base, List);
        endpoints.MapGet(Base + "/{uuid}", Get);
        endpoints.MapPut(Base + "/{uuid}", UpdateAsync);
        endpoints.MapDelete(Base + "/{uuid}", DeleteAsync);
        return endpoints;
    }

    private static async Task<IResult> CreateAsync(HttpContext context, EventSourceMappings mappings, QueueStore queues, DynamoDb.DynamoStore dynamo,
        FunctionRegistry registry, IOptions<LaminaOptions> options, TimeProvider time)
    {
        var limits = options.Value;
        var (request, error) = await ReadAsync(context);
        if (error is not null)
        {
            return error;
        }
        var source = String(request, "EventSourceArn");
        if (source is null)
        {
            return FunctionValidation.NotNull("eventSourceArn");
        }
        var parts = source.Split(':');
        var account = Protocols.CallerIdentity.AccountOf(context, limits);
        // A stream ARN's label is a timestamp with colons of its own: told apart by its prefix, not by splitting.
        var isStream = source.StartsWith("arn:aws:dynamodb:", StringComparison.Ordinal);
        var stream = isStream ? dynamo.FindStream(account, source) : null;
        if (isStream && stream is null)
        {
            return AwsError.InvalidParameter($"Stream not found: {source}");
        }
        if (stream is null && (parts.Length != 6 || parts[2] != "sqs" || parts[3] != limits.Region || parts[4] != limits.AccountId || !queues.TryGet(parts[5], out _)))
        {
            return AwsError.InvalidParameter($"Lamina reads from its own SQS queues and DynamoDB streams only; {source} is neither (create the queue or enable the table's stream first).");
        }
        if (String(request, "FunctionName") is not { } functionName)
        {
            return FunctionValidation.NotNull("functionName");
        }
        if (!FunctionReference.TryParse(functionName, null, limits, Protocols.CallerIdentity.AccountOf(context, limits), out var reference, out var nameError))
        {
            return nameError!;
        }
        await registry.EnsureCurrentAsync(reference.Name, entry => entry.ResolvePrimary(reference.Qualifier) is not null); // made on another node a moment ago
        if (!registry.TryGetEntry(reference.Name, out var entry) || entry.ResolvePrimary(reference.Qualifier) is null)
        {
            return AwsError.FunctionNotFound(limits.FunctionArn(reference.Name));
        }
        if (mappings.All.Any(m => m.EventSourceArn == source && m.Function == reference.Name && m.Qualifier == reference.Qualifier))
        {
            return AwsError.Conflict($"An event source mapping with {(stream is null ? "SQS" : "DynamoDB")} arn (\" {source} \") and function (\" {functionName} \") already exists. Please update or delete the existing mapping with UUID {mappings.All.First(m => m.EventSourceArn == source).Uuid}");
        }
        var draft = new EventSourceMapping
        {
            Uuid = Guid.NewGuid().ToString(),
            QueueName = stream is null ? parts[5] : "",
            EventSourceArn = source,
            Function = reference.Name,
            Qualifier = reference.Qualifier,
            LastModified = time.GetUtcNow(),
            StreamId = stream?.Id,
            BatchSize = stream is null ? 10 : 100,
        };
        if (stream is not null)
        {
            var position = String(request, "StartingPosition");
            if (position is null)
            {
                return AwsError.InvalidParameter("1 validation error detected: Value null at 'startingPosition' failed to satisfy constraint: StartingPosition is required for DynamoDB stream event sources");
            }
            if (position is not ("TRIM_HORIZON" or "LATEST"))
            {
                return AwsError.InvalidParameter($"Unsupported starting position for DynamoDB streams: {position} (TRIM_HORIZON or LATEST)");
            }
            draft = draft with { StartingPosition = position };
        }
        var (mapping, invalid) = Apply(draft, request);
        if (invalid is not null)
        {
            return invalid;
        }
        if (mapping!.IsStream)
        {
            await mappings.InitializeStreamAsync(mapping);
        }
        await mappings.SaveAsync(mapping!);
        return Respond(mapping!, mappings, limits, mapping!.Enabled ? "Creating" : "Creating", StatusCodes.Status202Accepted);
    }

    private static IResult Get(string uuid, EventSourceMappings mappings, IOptions<LaminaOptions> options) =>
        mappings.TryGet(uuid, out var mapping) ? Respond(mapping, mappings, options.Value, null, StatusCodes.Status200OK) : NotFound(uuid);

    private static async Task<IResult> UpdateAsync(HttpContext context, string uuid, EventSourceMappings mappings, IOptions<LaminaOptions> options, TimeProvider time)
    {
        if (!mappings.TryGet(uuid, out var current))
        {
            return NotFound(uuid);
        }
        var (request, error) = await ReadAsync(context);
        if (error is not null)
        {
            return error;
        }
        AwsError? invalid = null;
        var wasEnabled = current.Enabled;
        // Applied to the mapping as stored (another node may have changed it since this node's copy).
        var mapping = await mappings.UpdateAsync(uuid, latest =>
        {
            wasEnabled = latest.Enabled;
            (var changed, invalid) = Apply(latest with { LastModified = time.GetUtcNow() }, request);
            return changed;
        });
        if (invalid is not null)
        {
            return invalid;
        }
        if (mapping is null)
        {
            return NotFound(uuid);
        }
        var state = mapping.Enabled == wasEnabled ? "Updating" : mapping.Enabled ? "Enabling" : "Disabling";
        return Respond(mapping, mappings, options.Value, state, StatusCodes.Status202Accepted);
    }

    private static async Task<IResult> DeleteAsync(string uuid, EventSourceMappings mappings, IOptions<LaminaOptions> options)
    {
        if (!mappings.TryGet(uuid, out var mapping))
        {
            return NotFound(uuid);
        }
        await mappings.DeleteAsync(uuid);
        return Respond(mapping, mappings, options.Value, "Deleting", StatusCodes.Status202Accepted);
    }

    private static IResult List(HttpContext context, EventSourceMappings mappings, FunctionRegistry registry, IOptions<LaminaOptions> options)
    {
        var limits = options.Value;
        var all = mappings.All.OrderBy(static m => m.Uuid, StringComparer.Ordinal).ToList();
        if (FunctionsApi.QueryValue(context, "EventSourceArn") is { Length: > 0 } source)
        {
            all = all.FindAll(m => m.EventSourceArn == source);
        }
        if (FunctionsApi.QueryValue(context, "FunctionName") is { Length: > 0 } functionName)
        {
            if (!FunctionReference.TryParse(functionName, null, limits, Protocols.CallerIdentity.AccountOf(context, limits), out var reference, out var nameError))
            {
                return nameError!;
            }
            all = all.FindAll(m => m.Function == reference.Name && (reference.Qualifier is null || m.Qualifier == reference.Qualifier));
        }
        if (FunctionsApi.PageSize(context, 100, out var pageSize, modelMax: 10000) is { } badPage)
        {
            return badPage;
        }
        var start = FunctionsApi.QueryValue(context, "Marker") is { Length: > 0 } marker ? all.FindIndex(m => string.CompareOrdinal(m.Uuid, marker) >= 0) : 0;
        start = start < 0 ? all.Count : start;
        var page = all.Skip(start).Take(pageSize).ToList();
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteStartArray("EventSourceMappings");
            foreach (var mapping in page)
            {
                Write(w, mapping, mappings, limits, null);
            }
            w.WriteEndArray();
            if (start + pageSize < all.Count)
            {
                w.WriteString("NextMarker", all[start + pageSize].Uuid);
            }
            w.WriteEndObject();
        }
        return Results.Bytes(buffer.WrittenMemory.ToArray(), "application/json");
    }

    /// <summary>The settings a Create or Update request gives, checked as Lambda does for SQS sources.</summary>
    private static (EventSourceMapping? Mapping, AwsError? Error) Apply(EventSourceMapping mapping, JsonElement request)
    {
        var next = mapping;
        if (request.TryGetProperty("Enabled", out var enabled) && enabled.ValueKind is JsonValueKind.True or JsonValueKind.False)
        {
            next = next with { Enabled = enabled.GetBoolean() };
        }
        if (Int(request, "BatchSize") is { } batch)
        {
            next = next with { BatchSize = batch };
        }
        if (Int(request, "MaximumBatchingWindowInSeconds") is { } window)
        {
            next = next with { MaximumBatchingWindowInSeconds = window };
        }
        if (next.BatchSize is < 1 or > 10_000)
        {
            return (null, AwsError.Validation($"1 validation error detected: Value '{next.BatchSize}' at 'batchSize' failed to satisfy constraint: Member must have value between 1 and 10000"));
        }
        if (next.MaximumBatchingWindowInSeconds is < 0 or > 300)
        {
            return (null, AwsError.Validation($"1 validation error detected: Value '{next.MaximumBatchingWindowInSeconds}' at 'maximumBatchingWindowInSeconds' failed to satisfy constraint: Member must have value less than or equal to 300"));
        }
        if (!next.IsStream && next.BatchSize > 10 && next.MaximumBatchingWindowInSeconds < 1)
        {
            return (null, AwsError.InvalidParameter("Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10"));
        }
        if (request.TryGetProperty("FunctionResponseTypes", out var types) && types.ValueKind == JsonValueKind.Array)
        {
            var values = types.EnumerateArray().Select(static t => t.GetString()).ToList();
            if (values.Any(static v => v != "ReportBatchItemFailures"))
            {
                return (null, AwsError.Validation("1 validation error detected: Value at 'functionResponseTypes' failed to satisfy constraint: Member must satisfy enum value set: [ReportBatchItemFailures]"));
            }
            next = next with { ReportBatchItemFailures = values.Count > 0 };
        }
        if (request.TryGetProperty("FilterCriteria", out var filter) && filter.ValueKind == JsonValueKind.Object)
        {
            var text = filter.GetRawText();
            var patterns = EventSourceMappings.ParseFilters(text, out var reason);
            if (patterns is null)
            {
                return (null, AwsError.InvalidParameter($"Invalid filter pattern definition. {reason}"));
            }
            next = next with { FilterCriteriaJson = patterns.Count == 0 ? null : text, Filters = patterns };
        }
        if (next.IsStream)
        {
            var (stream, streamError) = ApplyStreamSettings(next, request);
            if (streamError is not null)
            {
                return (null, streamError);
            }
            next = stream!;
        }
        else if (StreamOnlySettings.FirstOrDefault(m => request.TryGetProperty(m, out var v) && v.ValueKind != JsonValueKind.Null) is { } streamOnly)
        {
            return (null, AwsError.InvalidParameter($"Unsupported {streamOnly} parameter for Amazon SQS event sources: it applies to stream event sources only."));
        }
        if (request.TryGetProperty("ScalingConfig", out var scaling) && scaling.ValueKind == JsonValueKind.Object)
        {
            var max = Int(scaling, "MaximumConcurrency");
            if (max is < 2 or > 1000)
            {
                return (null, AwsError.Validation($"1 validation error detected: Value '{max}' at 'scalingConfig.maximumConcurrency' failed to satisfy constraint: Member must have value between 2 and 1000"));
            }
            next = next with { MaximumConcurrency = max };
        }
        return (next, null);
    }

    /// <summary>The stream-only settings (Lambda's ranges), for a DynamoDB stream mapping.</summary>
    private static (EventSourceMapping? Mapping, AwsError? Error) ApplyStreamSettings(EventSourceMapping mapping, JsonElement request)
    {
        var next = mapping;
        if (Int(request, "ParallelizationFactor") is { } parallel)
        {
            if (parallel is < 1 or > 10)
            {
                return (null, AwsError.Validation($"1 validation error detected: Value '{parallel}' at 'parallelizationFactor' failed to satisfy constraint: Member must have value between 1 and 10"));
            }
            next = next with { ParallelizationFactor = parallel };
        }
        if (request.TryGetProperty("BisectBatchOnFunctionError", out var bisect) && bisect.ValueKind is JsonValueKind.True or JsonValueKind.False)
        {
            next = next with { BisectBatchOnFunctionError = bisect.GetBoolean() };
        }
        if (Int(request, "MaximumRetryAttempts") is { } retries)
        {
            if (retries is < -1 or > 10_000)
            {
                return (null, AwsError.Validation($"1 validation error detected: Value '{retries}' at 'maximumRetryAttempts' failed to satisfy constraint: Member must have value between -1 and 10000"));
            }
            next = next with { MaximumRetryAttempts = retries };
        }
        if (Int(request, "MaximumRecordAgeInSeconds") is { } age)
        {
            if (age != -1 && age is < 60 or > 604_800)
            {
                return (null, AwsError.Validation($"1 validation error detected: Value '{age}' at 'maximumRecordAgeInSeconds' failed to satisfy constraint: Member must have value between -1 and 604800 (and at least 60 unless -1)"));
            }
            next = next with { MaximumRecordAgeInSeconds = age };
        }
        if (Int(request, "TumblingWindowInSeconds") is { } window)
        {
            if (window is < 0 or > 900)
            {
                return (null, AwsError.Validation($"1 validation error detected: Value '{window}' at 'tumblingWindowInSeconds' failed to satisfy constraint: Member must have value between 0 and 900"));
            }
            next = next with { TumblingWindowInSeconds = window };
        }
        if (request.TryGetProperty("DestinationConfig", out var destinations) && destinations.ValueKind == JsonValueKind.Object)
        {
            var destination = destinations.TryGetProperty("OnFailure", out var onFailure) && onFailure.ValueKind == JsonValueKind.Object
                ? String(onFailure, "Destination") : null;
            if (destination is not null && !destination.StartsWith("arn:aws:sqs:", StringComparison.Ordinal) && !destination.StartsWith("arn:aws:sns:", StringComparison.Ordinal))
            {
                return (null, AwsError.InvalidParameter($"The provided destination config DestinationConfig(onSuccess=null, onFailure=OnFailure(destination={destination})) is invalid: Lamina sends a stream's discarded batches to SQS queues and SNS topics."));
            }
            next = next with { OnFailureDestination = string.IsNullOrEmpty(destination) ? null : destination };
        }
        if (request.TryGetProperty("StartingPosition", out var position) && position.ValueKind == JsonValueKind.String && position.GetString() != next.StartingPosition)
        {
            return (null, AwsError.InvalidParameter("StartingPosition cannot be changed on an existing event source mapping."));
        }
        return (next, null);
    }

    private static IResult Respond(EventSourceMapping mapping, EventSourceMappings mappings, LaminaOptions limits, string? state, int status)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer))
        {
            Write(w, mapping, mappings, limits, state);
        }
        return Results.Text(System.Text.Encoding.UTF8.GetString(buffer.WrittenSpan), "application/json", System.Text.Encoding.UTF8, status);
    }

    private static void Write(Utf8JsonWriter w, EventSourceMapping mapping, EventSourceMappings mappings, LaminaOptions limits, string? state)
    {
        w.WriteStartObject();
        w.WriteString("UUID", mapping.Uuid);
        w.WriteNumber("BatchSize", mapping.BatchSize);
        w.WriteNumber("MaximumBatchingWindowInSeconds", mapping.MaximumBatchingWindowInSeconds);
        w.WriteString("EventSourceArn", mapping.EventSourceArn);
        w.WriteString("FunctionArn", mapping.Qualifier is null ? limits.FunctionArn(mapping.Function) : $"{limits.FunctionArn(mapping.Function)}:{mapping.Qualifier}");
        w.WriteNumber("LastModified", mapping.LastModified.ToUnixTimeMilliseconds() / 1000m);
        w.WriteString("LastProcessingResult", mapping.LastProcessingResult);
        w.WriteString("State", state ?? (mapping.Enabled ? "Enabled" : "Disabled"));
        w.WriteString("StateTransitionReason", "USER_INITIATED");
        w.WriteStartArray("FunctionResponseTypes");
        if (mapping.ReportBatchItemFailures)
        {
            w.WriteStringValue("ReportBatchItemFailures");
        }
        w.WriteEndArray();
        if (mapping.FilterCriteriaJson is { } filter)
        {
            w.WritePropertyName("FilterCriteria");
            w.WriteRawValue(filter);
        }
        if (mapping.MaximumConcurrency is { } max)
        {
            w.WriteStartObject("ScalingConfig");
            w.WriteNumber("MaximumConcurrency", max);
            w.WriteEndObject();
        }
        if (mapping.IsStream)
        {
            w.WriteString("StartingPosition", mapping.StartingPosition);
            w.WriteNumber("ParallelizationFactor", mapping.ParallelizationFactor);
            w.WriteBoolean("BisectBatchOnFunctionError", mapping.BisectBatchOnFunctionError);
            w.WriteNumber("MaximumRetryAttempts", mapping.MaximumRetryAttempts);
            w.WriteNumber("MaximumRecordAgeInSeconds", mapping.MaximumRecordAgeInSeconds);
            w.WriteNumber("TumblingWindowInSeconds", mapping.TumblingWindowInSeconds);
            w.WriteStartObject("DestinationConfig");
            w.WriteStartObject("OnFailure");
            if (mapping.OnFailureDestination is { } destination)
            {
                w.WriteString("Destination", destination);
            }
            w.WriteEndObject();
            w.WriteEndObject();
        }
        w.WriteString("EventSourceMappingArn", mappings.Arn(mapping.Uuid));
        w.WriteEndObject();
    }

    private static async Task<(JsonElement Request, AwsError? Error)> ReadAsync(HttpContext context)
    {
        var (body, readError) = await FunctionsApi.ReadBodyAsync(context.Request, FunctionsApi.MaxConfigurationRequestBytes, "EventSourceMapping", context.RequestAborted);
        if (readError is not null)
        {
            return (default, readError);
        }
        try
        {
            using var document = JsonDocument.Parse(body.Count == 0 ? "{}"u8.ToArray() : body.AsMemory());
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                return (default, AwsError.InvalidRequestContent("Could not parse request body into json: the body must be a JSON object."));
            }
            // Valid JSON may still escape text that is not Unicode (a lone surrogate); reading such a member later throws.
            return IsUnicode(document.RootElement)
                ? (document.RootElement.Clone(), null)
                : (default, AwsError.InvalidRequestContent("Could not parse request body into json: a string is not valid Unicode text (a lone surrogate escape)."));
        }
        catch (JsonException e)
        {
            return (default, AwsError.InvalidRequestContent($"Could not parse request body into json: {e.Message}"));
        }
    }

    private static bool IsUnicode(JsonElement element)
    {
        try
        {
            switch (element.ValueKind)
            {
                case JsonValueKind.String:
                    _ = element.GetString();
                    return true;
                case JsonValueKind.Object:
                    foreach (var property in element.EnumerateObject())
                    {
                        if (!IsUnicode(property.Value))
                        {
                            return false;
                        }
                        _ = property.Name;
                    }
                    return true;
                case JsonValueKind.Array:
                    foreach (var item in element.EnumerateArray())
                    {
                        if (!IsUnicode(item))
                        {
                            return false;
                        }
                    }
                    return true;
                default:
                    return true;
            }
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    private static string? String(JsonElement request, string member) =>
        request.TryGetProperty(member, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static int? Int(JsonElement request, string member) =>
        request.TryGetProperty(member, out var value) && value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var n) ? n : null;

    private static AwsError NotFound(string uuid) => AwsError.NotFound($"The resource you requested does not exist. (Service: Lambda, Status Code: 404, Request ID: {uuid})");
}
