using Lamina.Server.Hosting;
using Lamina.Server.Logs;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Api;

/// <summary>
/// <c>POST /</c>: the AWS JSON protocols (awsJson1_0 / 1_1), whose operation is named by <c>X-Amz-Target</c> —
/// the CloudWatch Logs API, EventBridge and SQS; topics later share this entry point.
/// </summary>
internal static class JsonProtocolEndpoint
{
    /// <summary>Largest request body of these protocols (SQS messages are up to 1 MiB, JSON-escaped in a batch).</summary>
    public const int MaxRequestBytes = 2 * 1024 * 1024;

    public static IEndpointRouteBuilder MapJsonProtocols(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapPost("/", DispatchAsync);
        return endpoints;
    }

    private static async Task DispatchAsync(HttpContext context, LogStore logs, Events.EventRules rules, Queues.QueueStore queues, IOptions<LaminaOptions> options, TimeProvider time)
    {
        var target = context.Request.Headers["X-Amz-Target"].ToString();
        // Every operation served here takes a small JSON document; the body is read (capped) before any parsing.
        var body = await RuntimeApi.RuntimeApiEndpoints.ReadBodyAsync(context, MaxRequestBytes);
        if (body is null)
        {
            context.Response.StatusCode = StatusCodes.Status413PayloadTooLarge;
            context.Response.ContentType = "application/x-amz-json-1.1";
            context.Response.Headers["x-amzn-ErrorType"] = "RequestEntityTooLargeException";
            await context.Response.WriteAsync(
                "{\"__type\":\"RequestEntityTooLargeException\",\"message\":\"Request must be smaller than 2097152 bytes.\"}");
            return;
        }
        context.Request.Body = new MemoryStream(body.Value.ToArray(), writable: false);
        if (target.StartsWith(LogsApi.TargetPrefix, StringComparison.Ordinal))
        {
            await LogsApi.HandleAsync(context, target[LogsApi.TargetPrefix.Length..], logs, options, time);
            return;
        }
        if (target.StartsWith(SqsApi.TargetPrefix, StringComparison.Ordinal))
        {
            await SqsApi.HandleAsync(context, target[SqsApi.TargetPrefix.Length..], queues, options.Value);
            return;
        }
        if (target.StartsWith(EventsApi.TargetPrefix, StringComparison.Ordinal))
        {
            await EventsApi.HandleAsync(context, target[EventsApi.TargetPrefix.Length..], rules, time);
            return;
        }
        context.Response.StatusCode = StatusCodes.Status400BadRequest;
        context.Response.ContentType = "application/x-amz-json-1.1";
        context.Response.Headers["x-amzn-ErrorType"] = "UnknownOperationException";
        await context.Response.WriteAsync(target.Length == 0
            ? """{"__type":"UnknownOperationException","message":"Missing X-Amz-Target: name the operation."}"""
            : $$"""{"__type":"UnknownOperationException","message":"Lamina does not serve the operation {{System.Text.Json.JsonEncodedText.Encode(target)}}."}""");
    }
}
