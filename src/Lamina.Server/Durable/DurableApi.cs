using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Lamina.Server.Hosting;
using Lamina.Server.Lambda;
using Lamina.Server.Protocols;
using Lamina.Server.RuntimeApi;
using Lamina.Server.Storage;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Durable;

/// <summary>
/// The durable execution APIs (Lambda 2025-12-01, botocore lambda/2015-03-31): the function's own
/// (CheckpointDurableExecution, GetDurableExecutionState), the management ones (GetDurableExecution,
/// ListDurableExecutionsByFunction, GetDurableExecutionHistory, StopDurableExecution) and callbacks
/// (SendDurableExecutionCallbackSuccess/Failure/Heartbeat); durable invocations start in <see cref="InvokeAsync"/>.
/// </summary>
internal static partial class DurableApi
{
    private const string ExecutionsPrefix = "/2025-12-01/durable-executions/";
    private const int DefaultMaxItems = 1000;

    [GeneratedRegex(@"^arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:function:[a-zA-Z0-9_-]+:(\$LATEST|[0-9]+)/durable-execution/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+\z", RegexOptions.CultureInvariant)]
    private static partial Regex ArnPattern();

    public static IServiceCollection AddDurable(this IServiceCollection services)
    {
        services.AddSingleton<DurableStore>();
        services.AddSingleton<DurableEngine>();
        services.AddHostedService(static s => s.GetRequiredService<DurableEngine>());
        return services;
    }

    public static IEndpointRouteBuilder MapDurableApi(this IEndpointRouteBuilder endpoints)
    {
        // The ARN is one URI label whose slashes the SDKs escape (%2F), which routing keeps escaped: a catch-all.
        endpoints.MapGet(ExecutionsPrefix + "{**rest}", ExecutionGetAsync);
        endpoints.MapPost(ExecutionsPrefix + "{**rest}", ExecutionPostAsync);
        endpoints.MapPost("/2025-12-01/durable-execution-callbacks/{callbackId}/{action}", CallbackAsync);
        endpoints.MapGet("/2025-12-01/functions/{functionName}/durable-executions", ListAsync);
        return endpoints;
    }

    // ---- Invoke of a durable function ----------------------------------------------------------------------------

    /// <summary>
    /// Invoke of a durable function: starts the execution (or finds it by <c>X-Amz-Durable-Execution-Name</c>, the
    /// idempotency key). <c>Event</c> answers 202 at once; <c>RequestResponse</c> waits for the execution's end and
    /// answers its result (or its error, as a function error). Both carry <c>X-Amz-Durable-Execution-Arn</c>.
    /// </summary>
    public static async Task InvokeAsync(HttpContext context, DurableEngine engine, FunctionConfig config, ReadOnlyMemory<byte> payload, string invocationType)
    {
        var name = context.Request.Headers["X-Amz-Durable-Execution-Name"].ToString();
        if (engine.Start(config, payload, name.Length > 0 ? name : null, out var execution) is { } error)
        {
            context.Response.Headers.Remove("X-Amz-Executed-Version");
            await error.ExecuteAsync(context);
            return;
        }
        var response = context.Response;
        response.Headers["X-Amz-Durable-Execution-Arn"] = execution!.Arn;
        if (invocationType == "Event")
        {
            response.StatusCode = StatusCodes.Status202Accepted;
            return;
        }
        try
        {
            await execution.Done.Task.WaitAsync(context.RequestAborted);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return; // the caller left; the execution goes on
        }
        catch (OperationCanceledException)
        {
            // On a cluster, this node lost the durable lease: the execution goes on on its new holder, where the
            // caller's retry (the same X-Amz-Durable-Execution-Name) finds it.
            response.Headers.Remove("X-Amz-Durable-Execution-Arn");
            response.Headers.Remove("X-Amz-Executed-Version");
            await new AwsError(503, "ServiceException", "The durable execution moved to another node; retry the request.").ExecuteAsync(context);
            return;
        }
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "application/json";
        byte[] body;
        lock (execution.Lock)
        {
            if (execution.Status == "SUCCEEDED")
            {
                body = Encoding.UTF8.GetBytes(string.IsNullOrEmpty(execution.Result) ? "null" : execution.Result);
            }
            else
            {
                response.Headers["X-Amz-Function-Error"] = "Unhandled";
                body = RuntimeApiEndpoints.ErrorBody((string?)execution.Error?["ErrorType"] ?? execution.Status, (string?)execution.Error?["ErrorMessage"] ?? execution.Status);
            }
        }
        response.ContentLength = body.Length;
        await response.Body.WriteAsync(body, CancellationToken.None);
    }

    // ---- /durable-executions/{arn}[/action] -----------------------------------------------------------------------

    private static (string? Arn, string Action) ParseTarget(HttpContext context)
    {
        var rest = (context.Request.Path.Value ?? "")[ExecutionsPrefix.Length..];
        var action = "";
        var slash = rest.LastIndexOf('/');
        if (slash > 0 && rest[(slash + 1)..] is "checkpoint" or "state" or "history" or "stop")
        {
            var candidate = Uri.UnescapeDataString(rest[..slash]);
            if (ArnPattern().IsMatch(candidate))
            {
                return (candidate, rest[(slash + 1)..]);
            }
        }
        var arn = Uri.UnescapeDataString(rest);
        return (ArnPattern().IsMatch(arn) ? arn : null, action);
    }

    private static AwsError InvalidArn(HttpContext context) =>
        AwsError.InvalidParameter($"1 validation error detected: Value '{Uri.UnescapeDataString((context.Request.Path.Value ?? "")[ExecutionsPrefix.Length..])}' at 'durableExecutionArn' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:([a-zA-Z0-9-]+):lambda:([a-zA-Z0-9-]+):(\\d{{12}}):function:([a-zA-Z0-9_-]+):(\\$LATEST(?:\\.PUBLISHED)?|[0-9]+)/durable-execution/([a-zA-Z0-9_-]+)/([a-zA-Z0-9_-]+)");

    /// <summary>The execution, if it exists and belongs to the caller's account.</summary>
    private static DurableExecution? Find(HttpContext context, DurableEngine engine, string arn, LaminaOptions options)
    {
        if (!engine.TryGet(arn, out var execution))
        {
            return null;
        }
        var account = CallerIdentity.AccountOf(context, options);
        return options.SplitFunctionKey(execution.FunctionKey).Account == account ? execution : null;
    }

    private static async Task ExecutionGetAsync(HttpContext context, DurableEngine engine, LeaseForwarder forwarder, IOptions<LaminaOptions> options)
    {
        if (await engine.ForwardedAsync(forwarder, context))
        {
            return;
        }
        var (arn, action) = ParseTarget(context);
        if (arn is null || action is not ("" or "state" or "history"))
        {
            await InvalidArn(context).ExecuteAsync(context);
            return;
        }
        var execution = Find(context, engine, arn, options.Value);
        if (execution is null)
        {
            await (action == "state" ? AwsError.InvalidParameter("Invalid Checkpoint Token: no such durable execution.") : AwsError.NotFound($"Durable execution not found: {arn}")).ExecuteAsync(context);
            return;
        }
        var query = context.Request.Query;
        if (!TryPaging(query, out var marker, out var maxItems, out var pagingError))
        {
            await pagingError!.ExecuteAsync(context);
            return;
        }
        // An ended execution's history comes from the store (off the lock: it is not changing any more).
        var history = action is "" or "state" ? null : engine.History(execution);
        JsonObject answer;
        lock (execution.Lock)
        {
            switch (action)
            {
                case "":
                    answer = Describe(execution, full: true);
                    break;
                case "state":
                    if (query["CheckpointToken"].ToString() is not { Length: > 0 } token || token != execution.Token)
                    {
                        answer = null!;
                        break;
                    }
                    answer = Page(execution.Operations, marker, maxItems, "Operations", static o => o.DeepClone());
                    break;
                default:
                    var include = query["IncludeExecutionData"].ToString().Equals("true", StringComparison.OrdinalIgnoreCase);
                    IEnumerable<JsonObject> events = history!;
                    if (query["ReverseOrder"].ToString().Equals("true", StringComparison.OrdinalIgnoreCase))
                    {
                        events = events.Reverse();
                    }
                    answer = Page([.. events], marker, maxItems, "Events", e => include ? e.DeepClone() : WithoutData(e));
                    break;
            }
        }
        if (answer is null)
        {
            await AwsError.InvalidParameter("Invalid Checkpoint Token: the token does not belong to the execution's current invocation.").ExecuteAsync(context);
            return;
        }
        await WriteAsync(context, answer);
    }

    private static async Task ExecutionPostAsync(HttpContext context, DurableEngine engine, LeaseForwarder forwarder, IOptions<LaminaOptions> options)
    {
        await IoThreads.LeaveIoThreadAsync();
        if (await engine.ForwardedAsync(forwarder, context))
        {
            return;
        }
        var (arn, action) = ParseTarget(context);
        if (arn is null || action is not ("checkpoint" or "stop"))
        {
            await InvalidArn(context).ExecuteAsync(context);
            return;
        }
        var body = await RuntimeApiEndpoints.ReadBodyAsync(context, 8 * 1024 * 1024);
        if (body is null)
        {
            await AwsError.RequestTooLarge("Request must be smaller than 8388608 bytes.").ExecuteAsync(context);
            return;
        }
        JsonObject? request;
        try
        {
            request = body.Value.IsEmpty ? null : JsonNode.Parse(body.Value.Span) as JsonObject;
        }
        catch (JsonException)
        {
            await AwsError.InvalidRequestContent("The request body is not valid JSON.").ExecuteAsync(context);
            return;
        }
        if (Find(context, engine, arn, options.Value) is null)
        {
            await (action == "checkpoint" ? AwsError.InvalidParameter("Invalid Checkpoint Token: no such durable execution.") : AwsError.NotFound($"Durable execution not found: {arn}")).ExecuteAsync(context);
            return;
        }
        if (action == "checkpoint")
        {
            if (request?["Updates"] is { } updates and not JsonArray)
            {
                await AwsError.InvalidRequestContent("Updates must be a list.").ExecuteAsync(context);
                return;
            }
            if (engine.Checkpoint(arn, (string?)request?["CheckpointToken"], request?["Updates"] as JsonArray, out var response) is { } error)
            {
                await error.ExecuteAsync(context);
                return;
            }
            await WriteAsync(context, response!);
            return;
        }
        if (engine.Stop(arn, request is { Count: > 0 } ? request : null, out var stoppedMs) is { } stopError)
        {
            await stopError.ExecuteAsync(context);
            return;
        }
        await WriteAsync(context, new JsonObject { ["StopTimestamp"] = DurableEngine.Timestamp(stoppedMs) });
    }

    // ---- callbacks ----------------------------------------------------------------------------------------------

    private static async Task CallbackAsync(HttpContext context, string callbackId, string action, DurableEngine engine, LeaseForwarder forwarder)
    {
        await IoThreads.LeaveIoThreadAsync();
        if (await engine.ForwardedAsync(forwarder, context))
        {
            return;
        }
        if (action is not ("succeed" or "fail" or "heartbeat"))
        {
            await AwsError.NotFound($"No route for POST {context.Request.Path}").ExecuteAsync(context);
            return;
        }
        var body = await RuntimeApiEndpoints.ReadBodyAsync(context, 256 * 1024);
        if (body is null)
        {
            await AwsError.RequestTooLarge("Request must be smaller than 262144 bytes.").ExecuteAsync(context);
            return;
        }
        string? result = null;
        JsonObject? error = null;
        if (action == "succeed")
        {
            result = Encoding.UTF8.GetString(body.Value.Span);
        }
        else if (action == "fail" && !body.Value.IsEmpty)
        {
            try
            {
                error = JsonNode.Parse(body.Value.Span) as JsonObject;
            }
            catch (JsonException)
            {
                await AwsError.InvalidRequestContent("The error is not valid JSON.").ExecuteAsync(context);
                return;
            }
        }
        if (engine.Callback(callbackId, action, result, error) is { } failure)
        {
            await failure.ExecuteAsync(context);
            return;
        }
        await WriteAsync(context, new JsonObject());
    }

    // ---- ListDurableExecutionsByFunction --------------------------------------------------------------------------

    private static async Task ListAsync(HttpContext context, string functionName, DurableEngine engine, LeaseForwarder forwarder, FunctionRegistry registry,
        IOptions<LaminaOptions> options)
    {
        await IoThreads.LeaveIoThreadAsync();
        if (await engine.ForwardedAsync(forwarder, context))
        {
            return;
        }
        var query = context.Request.Query;
        var qualifier = query["Qualifier"].ToString();
        var account = CallerIdentity.AccountOf(context, options.Value);
        if (!FunctionReference.TryParse(functionName, qualifier.Length > 0 ? qualifier : null, options.Value, account, out var reference, out var error))
        {
            await error!.ExecuteAsync(context);
            return;
        }
        if (!registry.TryGetEntry(reference.Name, out _))
        {
            await AwsError.FunctionNotFound(options.Value.FunctionArn(reference.Name)).ExecuteAsync(context);
            return;
        }
        if (!TryMaxItems(query, out var maxItems, out var pagingError) || !TryListMarker(query["Marker"].ToString(), out var after, out pagingError))
        {
            await pagingError!.ExecuteAsync(context);
            return;
        }
        var statuses = query["Statuses"].OfType<string>().Where(static s => s.Length > 0).ToHashSet(StringComparer.Ordinal);
        if (statuses.FirstOrDefault(static s => s is not ("RUNNING" or "SUCCEEDED" or "FAILED" or "TIMED_OUT" or "STOPPED")) is { } badStatus)
        {
            await AwsError.InvalidParameter($"1 validation error detected: Value '{badStatus}' at 'statuses' failed to satisfy constraint: Member must satisfy enum value set: [RUNNING, SUCCEEDED, FAILED, TIMED_OUT, STOPPED]").ExecuteAsync(context);
            return;
        }
        if (!TryTime(query["StartedAfter"], out var startedAfter) || !TryTime(query["StartedBefore"], out var startedBefore))
        {
            await AwsError.InvalidParameter("StartedAfter and StartedBefore must be timestamps.").ExecuteAsync(context);
            return;
        }
        var name = query["DurableExecutionName"].ToString();
        var filter = new ExecutionFilter(reference.Qualifier, name.Length > 0 ? name : null, statuses, startedAfter, startedBefore);
        var newestFirst = query["ReverseOrder"].ToString().Equals("true", StringComparison.OrdinalIgnoreCase);
        // From the store, one more than the page: whether there is a next page. The marker is the last one listed
        // (its start and ARN), so executions started between two pages do not shift the next.
        var executions = engine.List(reference.Name, filter, newestFirst, after, maxItems + 1);
        var page = new JsonArray();
        foreach (var execution in executions.Take(maxItems))
        {
            lock (execution.Lock)
            {
                page.Add(Describe(execution, full: false));
            }
        }
        var answer = new JsonObject { ["DurableExecutions"] = page };
        if (executions.Count > maxItems)
        {
            var last = executions[maxItems - 1];
            answer["NextMarker"] = string.Create(CultureInfo.InvariantCulture, $"{last.StartMs}/{last.Arn}");
        }
        await WriteAsync(context, answer);
    }

    /// <summary>ListDurableExecutionsByFunction's marker: <c>&lt;start ms&gt;/&lt;ARN&gt;</c> of the last execution listed.</summary>
    private static bool TryListMarker(string marker, out (long StartMs, string Arn)? after, out AwsError? error)
    {
        after = null;
        error = null;
        if (marker.Length == 0)
        {
            return true;
        }
        var slash = marker.IndexOf('/');
        if (slash > 0 && long.TryParse(marker.AsSpan(0, slash), NumberStyles.None, CultureInfo.InvariantCulture, out var startMs) && slash < marker.Length - 1)
        {
            after = (startMs, marker[(slash + 1)..]);
            return true;
        }
        error = AwsError.InvalidParameter("Invalid Marker.");
        return false;
    }

    // ---- shapes -------------------------------------------------------------------------------------------------

    private static JsonObject Describe(DurableExecution execution, bool full)
    {
        var answer = new JsonObject
        {
            ["DurableExecutionArn"] = execution.Arn,
            ["DurableExecutionName"] = execution.Name,
            ["FunctionArn"] = execution.FunctionArn,
        };
        if (full)
        {
            answer["InputPayload"] = execution.Input;
            answer["Result"] = execution.Result;
            answer["Error"] = execution.Error?.DeepClone();
        }
        answer["Status"] = execution.Status;
        answer["StartTimestamp"] = DurableEngine.Timestamp(execution.StartMs);
        answer["EndTimestamp"] = execution.EndMs is { } end ? DurableEngine.Timestamp(end) : null;
        if (full)
        {
            answer["Version"] = execution.Version;
        }
        return DurableEngine.StripNulls(answer);
    }

    /// <summary>A history event without its payloads (IncludeExecutionData false: Lambda's default).</summary>
    private static JsonObject WithoutData(JsonObject e)
    {
        var copy = e.DeepClone().AsObject();
        foreach (var (_, details) in copy)
        {
            if (details is JsonObject detailObject)
            {
                foreach (var (_, member) in detailObject)
                {
                    if (member is JsonObject inner && inner.ContainsKey("Payload"))
                    {
                        inner.Remove("Payload");
                    }
                }
            }
        }
        return copy;
    }

    private static JsonObject Page(List<JsonObject> items, int marker, int maxItems, string member, Func<JsonObject, JsonNode> map)
    {
        var page = new JsonArray();
        for (var i = marker; i < items.Count && page.Count < maxItems; i++)
        {
            page.Add(map(items[i]));
        }
        var answer = new JsonObject { [member] = page };
        if (marker + page.Count < items.Count)
        {
            answer["NextMarker"] = (marker + page.Count).ToString(CultureInfo.InvariantCulture);
        }
        return answer;
    }

    private static bool TryPaging(IQueryCollection query, out int marker, out int maxItems, out AwsError? error)
    {
        error = null;
        marker = 0;
        maxItems = DefaultMaxItems;
        var markerText = query["Marker"].ToString();
        if (markerText.Length > 0 && (!int.TryParse(markerText, NumberStyles.None, CultureInfo.InvariantCulture, out marker) || marker < 0))
        {
            error = AwsError.InvalidParameter("Invalid Marker.");
            return false;
        }
        return TryMaxItems(query, out maxItems, out error);
    }

    private static bool TryMaxItems(IQueryCollection query, out int maxItems, out AwsError? error)
    {
        error = null;
        maxItems = DefaultMaxItems;
        var maxText = query["MaxItems"].ToString();
        if (maxText.Length > 0)
        {
            if (!int.TryParse(maxText, NumberStyles.None, CultureInfo.InvariantCulture, out maxItems) || maxItems > 1000)
            {
                error = AwsError.InvalidParameter($"1 validation error detected: Value '{maxText}' at 'maxItems' failed to satisfy constraint: Member must have value less than or equal to 1000");
                return false;
            }
            if (maxItems == 0)
            {
                maxItems = DefaultMaxItems;
            }
        }
        return true;
    }

    private static bool TryTime(Microsoft.Extensions.Primitives.StringValues value, out long? ms)
    {
        ms = null;
        var text = value.ToString();
        if (text.Length == 0)
        {
            return true;
        }
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds))
        {
            ms = (long)(seconds * 1000);
            return true;
        }
        if (DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at))
        {
            ms = at.ToUnixTimeMilliseconds();
            return true;
        }
        return false;
    }

    private static async Task WriteAsync(HttpContext context, JsonObject answer)
    {
        var body = Encoding.UTF8.GetBytes(answer.ToJsonString());
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "application/json";
        context.Response.ContentLength = body.Length;
        await context.Response.Body.WriteAsync(body, CancellationToken.None);
    }
}
