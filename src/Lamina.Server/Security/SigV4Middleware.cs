using System.Text.Json;
using Lamina.Server.Hosting;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Security;

/// <summary>
/// Once any access key exists, every request (the Lambda and Logs APIs, the operator API, /metrics) must be SigV4-signed
/// by an active key; a refused request is answered 403 before anything else runs, so it has no side effect. Without
/// keys nothing is checked (and the server only listens on loopback). <c>/health</c> stays open for probes.
/// </summary>
internal static class SigV4Middleware
{
    /// <summary>Bodies up to this size are verified in memory; larger uploads (code zips) spill to a temporary file.</summary>
    private const int InMemoryBody = 8 * 1024 * 1024;

    public static IApplicationBuilder UseSigV4(this IApplicationBuilder app) => app.Use(static async (context, next) =>
    {
        var keys = context.RequestServices.GetRequiredService<AccessKeys>();
        if (!keys.Required || context.Request.Path == "/health")
        {
            await next(context);
            return;
        }
        var request = context.Request;
        request.EnableBuffering(InMemoryBody);
        using var body = new MemoryStream();
        await request.Body.CopyToAsync(body, context.RequestAborted);
        request.Body.Position = 0;

        var options = context.RequestServices.GetRequiredService<IOptions<LaminaOptions>>().Value;
        var now = context.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow();
        var failure = SigV4.Verify(request, body.GetBuffer().AsSpan(0, (int)body.Length), keys, options.Region, now, out var key);
        if (failure is null && key!.AccountId != options.AccountId)
        {
            // Accounts are tenants; until the registry is per account, a key of another account reaches nothing.
            failure = new SigV4Failure("AccessDeniedException", $"The key belongs to account {key.AccountId}, which this server does not serve.");
        }
        if (failure is null)
        {
            await next(context);
            return;
        }
        var response = context.Response;
        response.StatusCode = StatusCodes.Status403Forbidden;
        response.Headers["x-amzn-ErrorType"] = failure.Code;
        response.ContentType = "application/json";
        // Both protocols' shapes: REST-JSON reads the header and "message", awsJson reads "__type".
        await using var writer = new Utf8JsonWriter(response.Body);
        writer.WriteStartObject();
        writer.WriteString("__type", failure.Code);
        writer.WriteString("Type", "User");
        writer.WriteString("message", failure.Message);
        writer.WriteEndObject();
    });
}
