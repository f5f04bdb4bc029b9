using System.Globalization;
using System.Text.Json;
using Lamina.Server.Lambda;
using Lamina.Server.Protocols;

namespace Lamina.Server.Async;

/// <summary>
/// Lamina's own operator API over the async queue (no Lambda equivalent; <c>lamina events</c> speaks it): list and
/// inspect queued and failed events, redrive failed ones, purge them.
/// </summary>
internal static class AsyncEventsApi
{
    /// <summary>Largest page of a listing.</summary>
    public const int MaxLimit = 100_000;

    public static IEndpointRouteBuilder MapAsyncEventsApi(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/lamina/v1/async-events", ListAsync);
        endpoints.MapGet("/lamina/v1/async-events/{id}", GetAsync);
        endpoints.MapPost("/lamina/v1/async-events/redrive", RedriveAsync);
        endpoints.MapDelete("/lamina/v1/async-events", PurgeAsync);
        return endpoints;
    }

    private static async Task<IResult> ListAsync(HttpContext context, AsyncEventStore store)
    {
        AsyncEventState? state = FunctionsApi.QueryValue(context, "state") switch
        {
            null or "" => null,
            "queued" => AsyncEventState.Queued,
            "running" => AsyncEventState.Leased,
            "failed" => AsyncEventState.Failed,
            _ => (AsyncEventState)(-1),
        };
        if (state is (AsyncEventState)(-1))
        {
            return AwsError.InvalidParameter("state must be queued, running or failed");
        }
        var limit = 100;
        if (FunctionsApi.QueryValue(context, "limit") is { Length: > 0 } text
            && (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit is < 1 or > MaxLimit))
        {
            return AwsError.InvalidParameter($"limit must be a number from 1 to {MaxLimit}");
        }
        var function = FunctionsApi.QueryValue(context, "function");
        var events = await store.ListAsync(function, state, limit);
        var (queued, failed) = await store.CountAsync(function);
        var response = new AsyncEventsResponse { Queued = queued, Failed = failed };
        response.Events.AddRange(events.Select(ToDto));
        return FunctionsApi.Json(response, LaminaJsonContext.Default.AsyncEventsResponse);
    }

    private static async Task<IResult> GetAsync(string id, AsyncEventStore store) =>
        await store.GetAsync(id) is { } e
            ? FunctionsApi.Json(ToDto(e), LaminaJsonContext.Default.AsyncEventDto)
            : AwsError.NotFound($"No async event {id}");

    private static async Task<IResult> RedriveAsync(HttpContext context, AsyncEventStore store, AsyncDispatcher dispatcher, TimeProvider time)
    {
        var (id, function, error) = Selection(context);
        if (error is not null)
        {
            return error;
        }
        var count = await store.RedriveAsync(id, function, time.GetUtcNow().ToUnixTimeMilliseconds());
        dispatcher.Wake();
        return FunctionsApi.Json(new AsyncEventsChanged { Count = count }, LaminaJsonContext.Default.AsyncEventsChanged);
    }

    private static async Task<IResult> PurgeAsync(HttpContext context, AsyncEventStore store)
    {
        var (id, function, error) = Selection(context);
        if (error is not null)
        {
            return error;
        }
        var count = await store.PurgeAsync(id, function);
        return FunctionsApi.Json(new AsyncEventsChanged { Count = count }, LaminaJsonContext.Default.AsyncEventsChanged);
    }

    // Which failed events: ?id=, ?function=, or ?all=true (never all by accident).
    private static (string? Id, string? Function, AwsError? Error) Selection(HttpContext context)
    {
        var id = FunctionsApi.QueryValue(context, "id");
        var function = FunctionsApi.QueryValue(context, "function");
        if (string.IsNullOrEmpty(id) && string.IsNullOrEmpty(function) && FunctionsApi.QueryValue(context, "all") != "true")
        {
            return (null, null, AwsError.InvalidParameter("Name the failed events: ?id=, ?function= or ?all=true"));
        }
        return (string.IsNullOrEmpty(id) ? null : id, string.IsNullOrEmpty(function) ? null : function, null);
    }

    private static AsyncEventDto ToDto(AsyncEvent e)
    {
        JsonElement? payload = null;
        string? payloadBase64 = null;
        try
        {
            using var document = JsonDocument.Parse(e.Payload);
            // Valid JSON may still hold text that cannot be written back out (a lone surrogate escape): then base64.
            using var probe = new Utf8JsonWriter(System.IO.Stream.Null);
            document.RootElement.WriteTo(probe);
            payload = document.RootElement.Clone();
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or ArgumentException)
        {
            payloadBase64 = Convert.ToBase64String(e.Payload);
        }
        return new AsyncEventDto
        {
            Id = e.Id,
            FunctionName = e.FunctionName,
            Qualifier = e.Qualifier,
            State = e.State switch { AsyncEventState.Queued => "queued", AsyncEventState.Leased => "running", _ => "failed" },
            Attempts = e.Attempts,
            CreatedAt = FunctionConfigurationMapping.FormatTimestamp(DateTimeOffset.FromUnixTimeMilliseconds(e.CreatedMs)),
            DueAt = e.State == AsyncEventState.Queued ? FunctionConfigurationMapping.FormatTimestamp(DateTimeOffset.FromUnixTimeMilliseconds(e.DueMs)) : null,
            FailedAt = e.FailedMs is { } failed ? FunctionConfigurationMapping.FormatTimestamp(DateTimeOffset.FromUnixTimeMilliseconds(failed)) : null,
            Condition = e.Condition,
            LastError = e.LastError,
            Payload = payload,
            PayloadBase64 = payloadBase64,
        };
    }
}

internal sealed class AsyncEventsResponse
{
    /// <summary>Events waiting or running (of the function asked for, or all).</summary>
    public long Queued { get; set; }

    /// <summary>Failed events kept for operators (of the function asked for, or all).</summary>
    public long Failed { get; set; }

    public List<AsyncEventDto> Events { get; set; } = [];
}

internal sealed class AsyncEventDto
{
    public string Id { get; set; } = "";
    public string FunctionName { get; set; } = "";
    public string? Qualifier { get; set; }

    /// <summary><c>queued</c>, <c>running</c> or <c>failed</c>.</summary>
    public string State { get; set; } = "";

    /// <summary>Invocations so far that ended in a function error (for a failed event: all its invocations).</summary>
    public int Attempts { get; set; }

    public string CreatedAt { get; set; } = "";
    public string? DueAt { get; set; }
    public string? FailedAt { get; set; }

    /// <summary>Why it failed: <c>RetriesExhausted</c> or <c>EventAgeExceeded</c>.</summary>
    public string? Condition { get; set; }

    public string? LastError { get; set; }
    public JsonElement? Payload { get; set; }

    /// <summary>The payload as base64 when it cannot be shown as JSON (not JSON, or text JSON cannot re-encode).</summary>
    public string? PayloadBase64 { get; set; }
}

internal sealed class AsyncEventsChanged
{
    public int Count { get; set; }
}
