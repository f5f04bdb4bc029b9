using System.Collections.Frozen;
using System.Security.Cryptography;

namespace Lamina.Server.WebConsole;

/// <summary>
/// Serves the web console's static files (issue #26) at <c>/console</c>: HTML, CSS and JavaScript embedded in the
/// server's assembly (<c>Console/assets/</c>), nothing fetched from elsewhere. The files are the only thing this adds
/// to the server: the console calls the public APIs (Lambda, CloudWatch Logs, S3, …) and the operator API, signed with
/// SigV4 in the browser, exactly as the AWS CLI would. Unsigned GET and HEAD only, so a signed request for a bucket
/// named <c>console</c> still reaches S3, and no method here changes anything.
/// </summary>
internal static class ConsoleAssets
{
    public const string PathPrefix = "/console";

    private const string ResourcePrefix = "console/";

    // Same-origin scripts, styles and requests only: the console loads nothing from elsewhere and cannot be framed.
    // img-src allows data: and blob: for the charts' downloads; connect-src 'self' covers every API it calls.
    private const string ContentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; " +
        "form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

    private static readonly Lazy<FrozenDictionary<string, Asset>> Assets = new(Load);

    private sealed record Asset(byte[] Content, string ContentType, string ETag);

    /// <summary>The console's files in their served paths (<c>/console/app.js</c>; <c>/console/</c> is the page).</summary>
    internal static IReadOnlyCollection<string> Paths => Assets.Value.Keys;

    public static IApplicationBuilder UseConsole(this IApplicationBuilder app) => app.Use(static (context, next) =>
    {
        var request = context.Request;
        return IsConsoleRequest(request) ? ServeAsync(context) : next(context);
    });

    private static bool IsConsoleRequest(HttpRequest request) =>
        request.Path.StartsWithSegments(PathPrefix)
        && (HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method))
        && request.Headers.Authorization.Count == 0
        && !request.Query.ContainsKey("X-Amz-Credential")
        // BUCKET.localhost, <id>.execute-api.localhost and the like are other services' virtual hosts.
        && !request.Host.Host.EndsWith(".localhost", StringComparison.OrdinalIgnoreCase);

    private static Task ServeAsync(HttpContext context)
    {
        var path = context.Request.Path.Value!;
        var response = context.Response;
        var key = path is PathPrefix ? PathPrefix + "/" : path;
        if (!Assets.Value.TryGetValue(key, out var asset))
        {
            response.StatusCode = StatusCodes.Status404NotFound;
            response.ContentType = "text/plain; charset=utf-8";
            return response.WriteAsync($"No console file {path}; the console is at {PathPrefix}/\n", context.RequestAborted);
        }
        var headers = response.Headers;
        headers.ContentSecurityPolicy = ContentSecurityPolicy;
        headers.XContentTypeOptions = "nosniff";
        headers.XFrameOptions = "DENY";
        headers["Referrer-Policy"] = "no-referrer";
        // Revalidated on every load (a 304 when unchanged), so a new server version is never mixed with old files.
        headers.CacheControl = "no-cache";
        headers.ETag = asset.ETag;
        if (context.Request.Headers.IfNoneMatch.ToString() == asset.ETag)
        {
            response.StatusCode = StatusCodes.Status304NotModified;
            return Task.CompletedTask;
        }
        response.ContentType = asset.ContentType;
        response.ContentLength = asset.Content.Length;
        return HttpMethods.IsHead(context.Request.Method) ? Task.CompletedTask : response.Body.WriteAsync(asset.Content, context.RequestAborted).AsTask();
    }

    private static FrozenDictionary<string, Asset> Load()
    {
        var assembly = typeof(ConsoleAssets).Assembly;
        var assets = new Dictionary<string, Asset>(StringComparer.Ordinal);
        foreach (var name in assembly.GetManifestResourceNames())
        {
            if (!name.StartsWith(ResourcePrefix, StringComparison.Ordinal))
            {
                continue;
            }
            using var stream = assembly.GetManifestResourceStream(name)!;
            using var buffer = new MemoryStream();
            stream.CopyTo(buffer);
            var content = buffer.ToArray();
            var relative = name[ResourcePrefix.Length..].Replace('\\', '/');
            var served = relative == "index.html" ? PathPrefix + "/" : PathPrefix + "/" + relative;
            var etag = "\"" + Convert.ToHexStringLower(SHA256.HashData(content).AsSpan(0, 12)) + "\"";
            assets[served] = new Asset(content, ContentTypeOf(relative), etag);
        }
        return assets.ToFrozenDictionary(StringComparer.Ordinal);
    }

    private static string ContentTypeOf(string path) => Path.GetExtension(path) switch
    {
        ".html" => "text/html; charset=utf-8",
        ".js" => "text/javascript; charset=utf-8",
        ".css" => "text/css; charset=utf-8",
        ".svg" => "image/svg+xml",
        ".png" => "image/png",
        ".ico" => "image/x-icon",
        _ => "application/octet-stream",
    };
}
