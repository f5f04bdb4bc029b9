using System.Globalization;
using System.Text.RegularExpressions;
using Lamina.Server.Hosting;
using Lamina.Server.Invoke;
using Lamina.Server.Protocols;
using Lamina.Server.RuntimeApi;
using Lamina.Server.Security;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;

namespace Lamina.Server.S3;

/// <summary>One S3 request as the handlers see it: who sent it, which bucket and key it names, and the services it uses.</summary>
internal sealed class S3Call
{
    public required HttpContext Context { get; init; }
    public required ObjectStore Store { get; init; }
    public required S3Notifications Notifications { get; init; }
    public required LaminaOptions Options { get; init; }
    public required string RequestId { get; init; }
    public required string Account { get; init; }
    public string? BucketName { get; init; }

    /// <summary>The object key, decoded; empty for a bucket- or service-level request.</summary>
    public string Key { get; init; } = "";

    /// <summary>What the chunk signatures of a signed aws-chunked body chain from (null when nothing is verified).</summary>
    public ChunkSigning? Signing { get; init; }

    public HttpRequest Request => Context.Request;
    public HttpResponse Response => Context.Response;
    public IQueryCollection Query => Context.Request.Query;
    public CancellationToken Aborted => Context.RequestAborted;

    public bool Has(string subresource) => Context.Request.Query.ContainsKey(subresource);

    public string? QueryValue(string name) => Context.Request.Query.TryGetValue(name, out var value) ? value.ToString() : null;

    /// <summary>The <c>versionId</c> the request names: <c>null</c> (S3's id of an unversioned object) or one of Lamina's ids; S3 refuses any other.</summary>
    public string? VersionId => QueryValue("versionId") is not { } id ? null
        : id == "null" || ObjectStore.IsVersionId(id) ? id
        : throw S3Exception.InvalidArgument("Invalid version id specified", "versionId", id);

    public string? Header(string name) => Context.Request.Headers.TryGetValue(name, out var value) ? value.ToString() : null;

    /// <summary>The bucket the request names, when it exists and belongs to the caller's account.</summary>
    public Bucket RequireBucket()
    {
        if (BucketName is null || !Store.TryGetBucket(BucketName, out var bucket))
        {
            throw S3Exception.NoSuchBucket(BucketName ?? "");
        }
        if (bucket.Account != Account)
        {
            throw S3Exception.AccessDenied();
        }
        return bucket;
    }

    public EventOrigin Origin => new($"AWS:{Account}",
        Context.Connection.RemoteIpAddress?.ToString() ?? "127.0.0.1", RequestId);
}

/// <summary>
/// Lamina's S3-compatible object storage on the API's port (issue #20). A request is S3's when its SigV4 credential scope
/// (Authorization header or presigned query) names the service <c>s3</c>, when its host is <c>BUCKET.s3.localhost</c> /
/// <c>BUCKET.s3.REGION.localhost</c> / <c>s3.localhost</c>, or — unsigned, e.g. a browser's CORS preflight — when its first
/// path segment is an existing bucket and no other API claims the path. It runs before the Lambda APIs' SigV4 check:
/// S3 bodies stream to disk (never buffered whole), and S3 verifies its own signatures and answers in XML.
/// </summary>
internal static partial class S3Api
{
    [GeneratedRegex(@"^(?:(?<bucket>.+)\.)?s3(?:\.(?<region>[a-z0-9-]+))?\.localhost\.?$", RegexOptions.CultureInvariant | RegexOptions.IgnoreCase)]
    private static partial Regex S3Host();

    [GeneratedRegex(@"^(?<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\.localhost\.?$", RegexOptions.CultureInvariant)]
    private static partial Regex BucketLocalhost();

    public static IApplicationBuilder UseS3(this IApplicationBuilder app)
    {
        // Every public request passes here (an Invoke too): the store is resolved once, and TryMatch tries the cheap
        // tests first and allocates nothing for a request that is not S3's (issue #19).
        var store = app.ApplicationServices.GetRequiredService<ObjectStore>();
        return app.Use(next => context => TryMatch(context, store, out var virtualBucket) ? HandleAsync(context, store, virtualBucket) : next(context));
    }

    private static bool TryMatch(HttpContext context, ObjectStore store, out string? virtualBucket)
    {
        virtualBucket = null;
        var request = context.Request;
        // HostString.Host cuts the port off (a new string): only for hosts that can be S3's at all.
        var rawHost = request.Host.Value ?? "";
        var host = rawHost.Contains("localhost", StringComparison.OrdinalIgnoreCase) ? request.Host.Host : "";
        if (host.Contains("s3", StringComparison.OrdinalIgnoreCase) && host.EndsWith("localhost", StringComparison.OrdinalIgnoreCase) && S3Host().Match(host) is { Success: true } match)
        {
            virtualBucket = match.Groups["bucket"].Success ? match.Groups["bucket"].Value : null;
            return true;
        }
        var authorization = request.Headers.Authorization.ToString();
        // The query collection is parsed (and allocated) only when there is a query string.
        var hasQuery = request.QueryString.HasValue;
        var signedForS3 = authorization.Contains("/s3/aws4_request", StringComparison.Ordinal)
            || (hasQuery && request.Query.TryGetValue("X-Amz-Credential", out var credential) && credential.ToString().EndsWith("/s3/aws4_request", StringComparison.Ordinal));
        // Signature Version 2 (only S3 takes it): "Authorization: AWS id:signature", or presigned with AWSAccessKeyId.
        var signedV2 = authorization.StartsWith("AWS ", StringComparison.Ordinal)
            || (hasQuery && request.Query.ContainsKey("AWSAccessKeyId") && request.Query.ContainsKey("Signature"));
        if (signedForS3 || signedV2)
        {
            // Virtual-hosted style against an endpoint named localhost: BUCKET.localhost.
            if (host.EndsWith(".localhost", StringComparison.OrdinalIgnoreCase) && BucketLocalhost().Match(host) is { Success: true } bucketHost)
            {
                virtualBucket = bucketHost.Groups["bucket"].Value;
            }
            return true;
        }
        if (authorization.Length > 0 || (hasQuery && request.Query.ContainsKey("X-Amz-Credential")))
        {
            return false;
        }
        // Unsigned: only a path whose first segment is an existing bucket, and that no other API serves.
        var path = request.Path.Value ?? "";
        if (path.Length < 4 || path.StartsWith("/20", StringComparison.Ordinal) || path.StartsWith("/lamina", StringComparison.Ordinal)
            || path.StartsWith("/lambda-url/", StringComparison.Ordinal) || path is "/health" or "/metrics")
        {
            return false;
        }
        var end = path.IndexOf('/', 1);
        var first = end < 0 ? path[1..] : path[1..end];
        return store.TryGetBucket(first, out _);
    }

    private static async Task HandleAsync(HttpContext context, ObjectStore store, string? virtualBucket)
    {
        var requestId = Convert.ToHexString(Guid.NewGuid().ToByteArray().AsSpan(0, 8));
        var response = context.Response;
        response.Headers.Remove("x-amzn-RequestId");
        response.Headers["x-amz-request-id"] = requestId;
        response.Headers["x-amz-id-2"] = S3Xml.HostId(requestId);
        string? bucketName = virtualBucket;
        var key = "";
        var operation = "Unknown";
        try
        {
            var rawPath = RawPath(context);
            if (virtualBucket is null)
            {
                var trimmed = rawPath.TrimStart('/');
                var slash = trimmed.IndexOf('/', StringComparison.Ordinal);
                bucketName = trimmed.Length == 0 ? null : Uri.UnescapeDataString(slash < 0 ? trimmed : trimmed[..slash]);
                key = slash < 0 ? "" : Uri.UnescapeDataString(trimmed[(slash + 1)..]);
            }
            else
            {
                key = Uri.UnescapeDataString(rawPath.Length > 0 ? rawPath[1..] : "");
            }
            if (key.Length > 1024 || System.Text.Encoding.UTF8.GetByteCount(key) > 1024)
            {
                throw new S3Exception(400, "KeyTooLongError", "Your key is too long");
            }
            var options = context.RequestServices.GetRequiredService<IOptions<LaminaOptions>>().Value;
            var (account, signing) = Authenticate(context, options, virtualBucket is null ? rawPath : "/" + virtualBucket + rawPath);
            var call = new S3Call
            {
                Context = context,
                Store = store,
                Notifications = context.RequestServices.GetRequiredService<S3Notifications>(),
                Options = options,
                RequestId = requestId,
                Account = account,
                BucketName = bucketName,
                Key = key,
                Signing = signing,
            };
            await store.RefreshIfUnknownAsync(bucketName);
            if (bucketName is not null && context.Request.Headers.Origin.Count > 0 && store.TryGetBucket(bucketName, out var corsBucket) && corsBucket.Cors.Count > 0
                && !HttpMethods.IsOptions(context.Request.Method))
            {
                // CORS on the actual request: the rule that allows this origin and method adds its headers.
                CorsRule.Find(corsBucket.Cors, context.Request.Headers.Origin.ToString(), context.Request.Method, [])
                    ?.Apply(response, context.Request.Headers.Origin.ToString(), preflight: false, null);
            }
            (operation, var handler) = Route(call);
            await handler(call);
        }
        catch (S3Exception error) when (!response.HasStarted)
        {
            await WriteErrorAsync(context, error, requestId, bucketName, key);
        }
        catch (BadHttpRequestException bad) when (!response.HasStarted)
        {
            await WriteErrorAsync(context, new S3Exception(400, "IncompleteBody", bad.Message), requestId, bucketName, key);
        }
        catch (Exception e) when (!response.HasStarted && Storage.Sql.IsUnavailable(e))
        {
            // The database is down, unreachable or too slow: S3's answer for a service that cannot take the request
            // now, which SDKs retry.
            var logger = context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("Lamina.Server.S3");
            Log.DatabaseUnavailable(logger, context.Request.Method, context.Request.Path, e.Message);
            await WriteErrorAsync(context, new S3Exception(503, "ServiceUnavailable", "Service is unable to handle request."), requestId, bucketName, key);
        }
        catch (Exception e) when (!response.HasStarted && e is not OperationCanceledException)
        {
            var logger = context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("Lamina.Server.S3");
            Log.RequestFailed(logger, context.Request.Method, context.Request.Path, e);
            await WriteErrorAsync(context, new S3Exception(500, "InternalError", "We encountered an internal error. Please try again."), requestId, bucketName, key);
        }
        finally
        {
            context.RequestServices.GetRequiredService<Diagnostics.LaminaMetrics>().S3Request(operation, response.StatusCode,
                context.Request.ContentLength ?? 0, response.ContentLength ?? 0);
        }
    }

    private static async Task WriteErrorAsync(HttpContext context, S3Exception error, string requestId, string? bucket, string key)
    {
        var response = context.Response;
        response.Headers.Remove("ETag");
        response.Headers.ContentLength = null;
        var resource = bucket is null ? "/" : key.Length == 0 ? $"/{bucket}" : $"/{bucket}/{key}";
        // What was sent and not read must not be taken for the next request on this connection.
        if (error.Status >= 400 && context.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody == true && !HttpMethods.IsHead(context.Request.Method))
        {
            response.Headers.Connection = "close";
        }
        await S3Xml.WriteErrorAsync(context, error, requestId, resource);
    }

    /// <summary>
    /// The account the request acts for. With no access keys and from outside a sandbox anything is accepted (as the
    /// Lambda API); otherwise the signature must verify against a key or the environment's session credentials. A
    /// presigned URL's expiry holds either way: it is part of the URL, not of the credentials.
    /// </summary>
    private static (string Account, ChunkSigning? Signing) Authenticate(HttpContext context, LaminaOptions options, string resourcePath)
    {
        var request = context.Request;
        var now = context.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow();
        var v2 = S3SignatureV2.IsSignedV2(request);
        if (v2)
        {
            S3SignatureV2.CheckExpiry(request, now);
        }
        if (request.Query.TryGetValue("X-Amz-Date", out var dateValue) && request.Query.TryGetValue("X-Amz-Expires", out var expiresValue))
        {
            if (!int.TryParse(expiresValue, NumberStyles.None, CultureInfo.InvariantCulture, out var expires) || expires > 604_800)
            {
                throw new S3Exception(400, "AuthorizationQueryParametersError", "X-Amz-Expires must be a number of seconds less than 604800 (seven days).");
            }
            if (!DateTimeOffset.TryParseExact(dateValue.ToString(), "yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var signedAt))
            {
                throw new S3Exception(400, "AuthorizationQueryParametersError", "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"");
            }
            if (now > signedAt.AddSeconds(expires))
            {
                throw new S3Exception(403, "AccessDenied", "Request has expired", ("X-Amz-Expires", expires.ToString(CultureInfo.InvariantCulture)),
                    ("Expires", S3Xml.Time(signedAt.AddSeconds(expires))), ("ServerTime", S3Xml.Time(now)));
            }
        }
        var keys = context.RequestServices.GetRequiredService<AccessKeys>();
        var environment = RuntimeApiTransport.EnvironmentOf(context) as ExecutionEnvironment;
        if (environment is null && !keys.Required)
        {
            return (options.AccountId, null);
        }
        if (request.Headers.Authorization.Count == 0 && !request.Query.ContainsKey("X-Amz-Algorithm") && !v2)
        {
            throw S3Exception.AccessDenied();
        }
        if (v2)
        {
            return (S3SignatureV2.Verify(request, resourcePath.Length > 0 ? resourcePath : "/", SigV4Middleware.KeyFinder(environment, keys)).AccountId, null);
        }
        var failure = SigV4.VerifyS3(request, SigV4Middleware.KeyFinder(environment, keys), options.Region, now, out var key, out var signing);
        if (failure is not null)
        {
            throw failure.Code switch
            {
                "UnrecognizedClientException" => new S3Exception(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."),
                "ExpiredTokenException" => new S3Exception(400, "ExpiredToken", "The provided token has expired."),
                "IncompleteSignatureException" => new S3Exception(400, "AuthorizationHeaderMalformed", failure.Message),
                "InvalidRequest" => S3Exception.InvalidRequest(failure.Message),
                _ when failure.Message.StartsWith("Signature expired", StringComparison.Ordinal) => new S3Exception(403, "RequestTimeTooSkewed", failure.Message),
                _ when failure.Message.StartsWith("Credential should be scoped", StringComparison.Ordinal) => new S3Exception(400, "AuthorizationHeaderMalformed", failure.Message),
                _ => new S3Exception(403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method."),
            };
        }
        return (key!.AccountId, signing);
    }

    /// <summary>The operation a request names (S3's name for it, used in metrics) and its handler; throws for none.</summary>
    private static (string Operation, Func<S3Call, Task> Handler) Route(S3Call call)
    {
        var method = call.Request.Method;
        if (call.BucketName is null)
        {
            return HttpMethods.IsGet(method) ? ("ListBuckets", ListBucketsAsync) : throw MethodNotAllowed(method);
        }
        if (HttpMethods.IsOptions(method))
        {
            return ("PreflightCors", PreflightAsync);
        }
        if (call.Key.Length == 0)
        {
            return method switch
            {
                "PUT" when call.Has("versioning") => ("PutBucketVersioning", PutVersioningAsync),
                "PUT" when call.Has("tagging") => ("PutBucketTagging", PutBucketTaggingAsync),
                "PUT" when call.Has("cors") => ("PutBucketCors", PutCorsAsync),
                "PUT" when call.Has("notification") => ("PutBucketNotificationConfiguration", PutNotificationAsync),
                "PUT" when call.Has("acl") => ("PutBucketAcl", AcceptAclAsync),
                "PUT" when Unsupported(call) is { } name => throw NotImplemented(name),
                "PUT" => ("CreateBucket", CreateBucketAsync),
                "GET" when call.Has("location") => ("GetBucketLocation", GetLocationAsync),
                "GET" when call.Has("versioning") => ("GetBucketVersioning", GetVersioningAsync),
                "GET" when call.Has("tagging") => ("GetBucketTagging", GetBucketTaggingAsync),
                "GET" when call.Has("cors") => ("GetBucketCors", GetCorsAsync),
                "GET" when call.Has("notification") => ("GetBucketNotificationConfiguration", GetNotificationAsync),
                "GET" when call.Has("versions") => ("ListObjectVersions", ListVersionsAsync),
                "GET" when call.Has("uploads") => ("ListMultipartUploads", ListUploadsAsync),
                "GET" when call.Has("acl") => ("GetBucketAcl", GetAclAsync),
                "GET" when call.Has("policy") => throw new S3Exception(404, "NoSuchBucketPolicy", "The bucket policy does not exist", ("BucketName", call.BucketName)),
                "GET" when call.Has("encryption") => throw new S3Exception(404, "ServerSideEncryptionConfigurationNotFoundError",
                    "The server side encryption configuration was not found", ("BucketName", call.BucketName)),
                "GET" when Unsupported(call) is { } name => throw NotImplemented(name),
                "GET" when call.QueryValue("list-type") == "2" => ("ListObjectsV2", static c => ListObjectsAsync(c, v2: true)),
                "GET" => ("ListObjects", static c => ListObjectsAsync(c, v2: false)),
                "HEAD" => ("HeadBucket", HeadBucketAsync),
                "DELETE" when call.Has("tagging") => ("DeleteBucketTagging", DeleteBucketTaggingAsync),
                "DELETE" when call.Has("cors") => ("DeleteBucketCors", DeleteCorsAsync),
                "DELETE" when Unsupported(call) is { } name => throw NotImplemented(name),
                "DELETE" => ("DeleteBucket", DeleteBucketAsync),
                "POST" when call.Has("delete") => ("DeleteObjects", DeleteObjectsAsync),
                _ => throw MethodNotAllowed(method),
            };
        }
        return method switch
        {
            "PUT" when call.Has("uploadId") && call.Has("partNumber") => call.Header("x-amz-copy-source") is not null
                ? ("UploadPartCopy", UploadPartCopyAsync) : ("UploadPart", UploadPartAsync),
            "PUT" when call.Has("tagging") => ("PutObjectTagging", PutObjectTaggingAsync),
            "PUT" when call.Has("acl") => ("PutObjectAcl", AcceptAclAsync),
            "PUT" when call.Header("x-amz-copy-source") is not null => ("CopyObject", CopyObjectAsync),
            "PUT" => ("PutObject", PutObjectAsync),
            "GET" when call.Has("uploadId") => ("ListParts", ListPartsAsync),
            "GET" when call.Has("tagging") => ("GetObjectTagging", GetObjectTaggingAsync),
            "GET" when call.Has("acl") => ("GetObjectAcl", GetAclAsync),
            "GET" => ("GetObject", static c => GetObjectAsync(c, head: false)),
            "HEAD" => ("HeadObject", static c => GetObjectAsync(c, head: true)),
            "DELETE" when call.Has("uploadId") => ("AbortMultipartUpload", AbortUploadAsync),
            "DELETE" when call.Has("tagging") => ("DeleteObjectTagging", DeleteObjectTaggingAsync),
            "DELETE" => ("DeleteObject", DeleteObjectAsync),
            "POST" when call.Has("uploads") => ("CreateMultipartUpload", CreateUploadAsync),
            "POST" when call.Has("uploadId") => ("CompleteMultipartUpload", CompleteUploadAsync),
            _ => throw MethodNotAllowed(method),
        };
    }

    // Bucket subresources S3 has and Lamina does not serve yet: named in a NotImplemented error, never taken for another operation.
    private static readonly string[] UnsupportedSubresources =
    [
        "policy", "lifecycle", "website", "logging", "replication", "requestPayment", "accelerate", "object-lock", "ownershipControls",
        "publicAccessBlock", "inventory", "analytics", "metrics", "intelligent-tiering", "encryption", "policyStatus", "legal-hold", "retention",
        "torrent", "select", "restore", "attributes",
    ];

    private static string? Unsupported(S3Call call) => UnsupportedSubresources.FirstOrDefault(call.Has);

    private static S3Exception NotImplemented(string subresource) =>
        new(501, "NotImplemented", $"Lamina does not implement the ?{subresource} operations yet (see docs/COMPATIBILITY.md).");

    private static S3Exception MethodNotAllowed(string method) =>
        new(405, "MethodNotAllowed", "The specified method is not allowed against this resource.", ("Method", method), ("ResourceType", "OBJECT"));

    private static async Task PreflightAsync(S3Call call)
    {
        var origin = call.Request.Headers.Origin.ToString();
        var method = call.Header("Access-Control-Request-Method");
        if (origin.Length == 0 || string.IsNullOrEmpty(method))
        {
            throw new S3Exception(400, "BadRequest", "Insufficient information. Origin request header needed.");
        }
        if (!call.Store.TryGetBucket(call.BucketName!, out var bucket))
        {
            throw S3Exception.NoSuchBucket(call.BucketName!);
        }
        var requested = call.Header("Access-Control-Request-Headers");
        var headers = (requested ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (bucket.Cors.Count == 0 || CorsRule.Find(bucket.Cors, origin, method, headers) is not { } rule)
        {
            throw new S3Exception(403, "AccessForbidden", "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
                ("Method", method), ("ResourceType", "OBJECT"));
        }
        rule.Apply(call.Response, origin, preflight: true, requested);
        call.Response.StatusCode = 200;
        await Task.CompletedTask;
    }

    // The request target as it came on the wire: the decoded Path loses the difference between '/' and "%2F" in keys.
    private static string RawPath(HttpContext context)
    {
        var target = context.Features.Get<IHttpRequestFeature>()?.RawTarget is { Length: > 0 } raw ? raw : context.Request.Path + context.Request.QueryString;
        var question = target.IndexOf('?', StringComparison.Ordinal);
        var path = question < 0 ? target : target[..question];
        // An absolute-form target (a proxy's): keep only the path.
        if (path.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || path.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
        {
            var start = path.IndexOf('/', path.IndexOf("//", StringComparison.Ordinal) + 2);
            path = start < 0 ? "/" : path[start..];
        }
        return path;
    }

    private static partial class Log
    {
        [LoggerMessage(Diagnostics.EventIds.DatabaseUnavailable, LogLevel.Warning, "S3 {Method} {Path} failed: the database is unavailable: {Reason}")]
        public static partial void DatabaseUnavailable(ILogger logger, string method, string path, string reason);

        [LoggerMessage(Diagnostics.EventIds.S3RequestFailed, LogLevel.Error, "Unhandled error in S3 {Method} {Path}")]
        public static partial void RequestFailed(ILogger logger, string method, string path, Exception error);
    }
}
