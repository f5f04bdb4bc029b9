using System.Text.Json;
using Lamina.Server.Hosting;
using Lamina.Server.Invoke;
using Lamina.Server.RuntimeApi;
using Lamina.Server.Security;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Protocols;

/// <summary>
/// Who signed a request: the key's account and id. Set by <see cref="SigV4Middleware"/> on every verified request; absent
/// when nothing is checked (no keys, loopback), where the caller is the server's own account.
/// </summary>
internal sealed record CallerIdentity(string AccountId, string AccessKeyId)
{
    public static CallerIdentity? Of(HttpContext context) => context.Features.Get<CallerIdentity>();

    /// <summary>The account a request acts for: its key's, or the server's own when nothing is checked.</summary>
    public static string AccountOf(HttpContext context, LaminaOptions options) => Of(context)?.AccountId ?? options.AccountId;

    /// <summary>The IAM-style principal Lambda names in its AccessDenied messages.</summary>
    public string PrincipalArn => $"arn:aws:iam::{AccountId}:root";
}

/// <summary>
/// Once any access key exists, every request (the Lambda and Logs APIs, the operator API, /metrics) must be SigV4-signed
/// by an active key; a refused request is answered 403 before anything else runs, so it has no side effect. Without
/// keys nothing is checked (and the server only listens on loopback). <c>/health</c> stays open for probes, and
/// <c>/metrics</c> with <c>--public-metrics</c>.
/// Requests a function makes through its environment's socket (<c>AWS_ENDPOINT_URL</c>) are always checked, keys or
/// not: they must be signed with the environment's own credentials (or an access key), and reach the Lambda and Logs
/// APIs only. Keys of other accounts are tenants: they reach their own functions and logs (see IsTenantApi).
/// </summary>
internal static class SigV4Middleware
{
    /// <summary>Bodies up to this size are verified in memory; larger uploads (code zips) spill to a temporary file.</summary>
    private const int InMemoryBody = 8 * 1024 * 1024;

    public static IApplicationBuilder UseSigV4(this IApplicationBuilder app) => app.Use(static async (context, next) =>
    {
        var keys = context.RequestServices.GetRequiredService<AccessKeys>();
        var environment = RuntimeApiTransport.EnvironmentOf(context) as ExecutionEnvironment;
        var path = context.Request.Path;
        var options = context.RequestServices.GetRequiredService<IOptions<LaminaOptions>>().Value;
        // Code download links (GetFunction's Code.Location) carry Lamina's own signature and expiry, like S3's presigned URLs.
        if (environment is null && (!keys.Required || path == "/health" || (options.PublicMetrics && path == "/metrics") || path.StartsWithSegments("/lamina/code")))
        {
            await next(context);
            return;
        }
        SigV4Failure? failure;
        if (environment is not null && (path.StartsWithSegments("/lamina") || path.StartsWithSegments("/metrics") || path == "/health"))
        {
            failure = new SigV4Failure("AccessDeniedException", "Functions may call the Lambda and CloudWatch Logs APIs only, not Lamina's operator API.");
        }
        else
        {
            var request = context.Request;
            request.EnableBuffering(InMemoryBody);
            using var body = new MemoryStream();
            await request.Body.CopyToAsync(body, context.RequestAborted);
            request.Body.Position = 0;

            var now = context.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow();
            failure = SigV4.Verify(request, body.GetBuffer().AsSpan(0, (int)body.Length), KeyFinder(environment, keys), options.Region, now, out var key);
            if (failure is null && key!.AccountId != options.AccountId && !IsTenantApi(request))
            {
                failure = new SigV4Failure("AccessDeniedException",
                    $"User: arn:aws:iam::{key.AccountId}:root is not authorized to perform this operation: layers, event rules, API Gateway's APIs and Lamina's operator API belong to the server's account ({options.AccountId}).");
            }
            if (failure is null)
            {
                context.Features.Set(new CallerIdentity(key!.AccountId, key.AccessKeyId));
                await next(context);
                return;
            }
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

    /// <summary>The keys a request may be signed with: the access keys, and from inside a sandbox its environment's session credentials.</summary>
    public static Func<string, AccessKey?> KeyFinder(ExecutionEnvironment? environment, AccessKeys keys)
    {
        var session = environment?.Credentials;
        return id => session is not null && id == session.AccessKeyId ? session.AsKey(environment!.AccountId) : keys.Find(id);
    }

    /// <summary>
    /// What every account has of its own (accounts are tenants): the Lambda API's function operations — each answers
    /// with the caller's account's functions only, and Invoke crosses accounts where a resource policy allows — and
    /// the CloudWatch Logs API over its functions' logs. Layers, event rules, the operator API and metrics belong to
    /// the server's account.
    /// </summary>
    private static bool IsTenantApi(HttpRequest request)
    {
        var path = request.Path.Value ?? "";
        if (path == "/" && HttpMethods.IsPost(request.Method))
        {
            var target = request.Headers["X-Amz-Target"].ToString();
            // DynamoDB tables and streams are per account (issue #21).
            return target.StartsWith(Logs.LogsApi.TargetPrefix, StringComparison.Ordinal) || target.StartsWith("DynamoDB", StringComparison.Ordinal);
        }
        return path.StartsWith("/2015-03-31/", StringComparison.Ordinal) || path.StartsWith("/2014-11-13/", StringComparison.Ordinal)
            || path.StartsWith("/2016-08-19/", StringComparison.Ordinal) || path.StartsWith("/2017-03-31/", StringComparison.Ordinal)
            || path.StartsWith("/2017-10-31/", StringComparison.Ordinal) || path.StartsWith("/2019-09-25/", StringComparison.Ordinal)
            || path.StartsWith("/2019-09-30/", StringComparison.Ordinal) || path.StartsWith("/2021-10-31/", StringComparison.Ordinal);
    }
}
