using Lamina.Server.EventBridge;
using Lamina.Server.Hosting;
using Lamina.Server.Logs;
using Lamina.Server.Sns;
using Lamina.Server.Sqs;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Protocols;

/// <summary>
/// <c>POST /</c>: the AWS JSON protocols (awsJson1_0 / 1_1), whose operation is named by <c>X-Amz-Target</c> —
/// the CloudWatch Logs API, EventBridge and SQS; and the Query protocols of SQS, SNS and CloudFormation (form-encoded, told apart by their Version).
/// </summary>
internal static class JsonProtocolEndpoint
{
    /// <summary>Largest request body of these protocols (SQS messages are up to 1 MiB, JSON-escaped in a batch).</summary>
    public const int MaxRequestBytes = 2 * 1024 * 1024;

    public static IEndpointRouteBuilder MapJsonProtocols(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapPost("/", DispatchAsync);
        // SQS's Query protocol also posts to the queue's own URL.
        endpoints.MapPost("/{account:regex(^\\d{{12}}$)}/{queue}", static (HttpContext context, Sqs.QueueStore queues, IOptions<LaminaOptions> options) =>
            SqsQueryProtocol.Matches(context.Request) ? QueryAsync(context, queues, options.Value) : Results.NotFound().ExecuteAsync(context));
        return endpoints;
    }

    /// <summary>
    /// The request of a JSON-protocol call, when it is a JSON object; null otherwise (each service answers that in its
    /// own error shape).
    /// </summary>
    /// <summary>An awsJson 1.1 error (a client's, 400, unless told): <c>x-amzn-ErrorType</c> and <c>{"__type", "message"}</c>, as the SDKs parse it.</summary>
    internal static async Task WriteErrorAsync(HttpContext context, string code, string message, int status = StatusCodes.Status400BadRequest)
    {
        var response = context.Response;
        response.StatusCode = status;
        response.ContentType = "application/x-amz-json-1.1";
        response.Headers["x-amzn-ErrorType"] = code;
        await using var writer = new System.Text.Json.Utf8JsonWriter(response.Body);
        writer.WriteStartObject();
        writer.WriteString("__type", code);
        writer.WriteString("message", message);
        writer.WriteEndObject();
    }

    internal static async Task<System.Text.Json.JsonElement?> ReadObjectAsync(HttpContext context)
    {
        try
        {
            using var document = await System.Text.Json.JsonDocument.ParseAsync(context.Request.Body, default, context.RequestAborted);
            return document.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object ? document.RootElement.Clone() : null;
        }
        catch (System.Text.Json.JsonException)
        {
            return null;
        }
    }

    /// <summary>An SQS Query-protocol request: translated to the JSON protocol's shape, answered in XML.</summary>
    private static async Task QueryAsync(HttpContext context, Sqs.QueueStore queues, LaminaOptions options)
    {
        var translated = await SqsQueryProtocol.TranslateAsync(context);
        if (translated is not { } request)
        {
            await SqsQueryProtocol.WriteErrorAsync(context, "RequestEntityTooLarge", "The request is too large.", Hosting.RequestIds.Of(context));
            return;
        }
        context.Request.Body = new MemoryStream(request.Json, writable: false);
        await SqsApi.HandleAsync(context, request.Action, queues, options);
    }

    private static async Task DispatchAsync(HttpContext context, LogStore logs, LogSubscriptions subscriptions, EventBridge.EventRules rules, Sqs.QueueStore queues, Sns.TopicStore topics,
        CloudFormation.StackEngine stacks, Storage.LeaseForwarder forwarder, IOptions<LaminaOptions> options, TimeProvider time)
    {
        var target = context.Request.Headers["X-Amz-Target"].ToString();
        if (target.StartsWith("DynamoDB", StringComparison.Ordinal))
        {
            await DynamoDb.DynamoDbEndpoint.DispatchAsync(context, target);
            return;
        }
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
        var form = target.Length == 0 && SqsQueryProtocol.Matches(context.Request) ? SnsApi.ParseForm(body.Value.Span) : null;
        if (form is not null && SnsApi.Matches(form))
        {
            await SnsApi.HandleAsync(context, form, topics);
            return;
        }
        if (form is not null && CloudFormation.CloudFormationApi.Matches(form))
        {
            // On a cluster every CloudFormation request, reads too, is answered by the node that runs the operations.
            await Hosting.IoThreads.LeaveIoThreadAsync();
            if (await stacks.ForwardedAsync(forwarder, context, body.Value))
            {
                return;
            }
            await CloudFormation.CloudFormationApi.HandleAsync(context, form, stacks);
            return;
        }
        if (target.Length == 0 && SqsQueryProtocol.Matches(context.Request))
        {
            await QueryAsync(context, queues, options.Value);
            return;
        }
        if (target.StartsWith(LogsApi.TargetPrefix, StringComparison.Ordinal))
        {
            await LogsApi.HandleAsync(context, target[LogsApi.TargetPrefix.Length..], logs, subscriptions, options, time);
            return;
        }
        if (target.StartsWith(SqsApi.TargetPrefix, StringComparison.Ordinal))
        {
            await SqsApi.HandleAsync(context, target[SqsApi.TargetPrefix.Length..], queues, options.Value);
            return;
        }
        if (target.StartsWith(CloudFormation.CodeDeployApi.TargetPrefix, StringComparison.Ordinal))
        {
            await Hosting.IoThreads.LeaveIoThreadAsync();
            if (await stacks.ForwardedAsync(forwarder, context, body.Value)) // the traffic shift waiting for the verdict runs there
            {
                return;
            }
            await CloudFormation.CodeDeployApi.HandleAsync(context, target[CloudFormation.CodeDeployApi.TargetPrefix.Length..], stacks);
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
