using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Lamina.Server.Diagnostics;
using Lamina.Server.Hosting;
using Lamina.Server.Invoke;
using Lamina.Server.Protocols;
using Lamina.Server.RuntimeApi;
using Lamina.Server.Security;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Lambda;

/// <summary>
/// Serves function URLs (LAMBDA.md §9.3) on the API's listener: a request to
/// <c>&lt;url-id&gt;.lambda-url.&lt;region&gt;.localhost</c>, or to <c>/lambda-url/&lt;url-id&gt;/…</c> for clients that cannot
/// use the host name, becomes a payload 2.0 event, is invoked synchronously within every concurrency limit, and the
/// result maps back to an HTTP response. AuthType <c>NONE</c> needs a resource policy that lets anyone invoke the URL
/// (as on Lambda); <c>AWS_IAM</c> needs a SigV4 signature (service <c>lambda</c>) of the function's account, or of
/// another account the policy allows. CORS settings answer preflight requests without invoking the function.
/// </summary>
internal static partial class FunctionUrlEndpoint
{
    private const string PathPrefix = "/lambda-url/";

    [GeneratedRegex(@"^(?<id>[a-z0-9]{32})\.lambda-url\.[a-z0-9-]+\.localhost\.?(?::\d+)?\z", RegexOptions.CultureInvariant | RegexOptions.IgnoreCase)]
    private static partial Regex HostPattern();

    private static readonly HashSet<string> TextTypes = new(StringComparer.OrdinalIgnoreCase)
    {
        "application/json", "application/xml", "application/javascript", "application/x-www-form-urlencoded", "application/graphql",
    };

    /// <summary>Takes the requests addressed to a function URL before authentication (a URL has its own) and routing.</summary>
    public static IApplicationBuilder UseFunctionUrls(this IApplicationBuilder app) => app.Use(static (context, next) =>
        TryMatch(context.Request, out var urlId, out var prefixLength) ? HandleAsync(context, urlId, prefixLength) : next(context));

    private static bool TryMatch(HttpRequest request, out string urlId, out int prefixLength)
    {
        prefixLength = 0;
        urlId = "";
        // Most requests are API calls: a substring test keeps the regex off their path.
        var hostValue = request.Host.Value ?? "";
        if (hostValue.Contains(".lambda-url.", StringComparison.OrdinalIgnoreCase) && HostPattern().Match(hostValue) is { Success: true } host)
        {
            urlId = host.Groups["id"].Value.ToLowerInvariant();
            return true;
        }
        var path = request.Path.Value ?? "";
        if (path.StartsWith(PathPrefix, StringComparison.Ordinal) && path.Length >= PathPrefix.Length + 32)
        {
            var id = path.Substring(PathPrefix.Length, 32);
            if (path.Length == PathPrefix.Length + 32 || path[PathPrefix.Length + 32] == '/')
            {
                urlId = id;
                prefixLength = PathPrefix.Length + 32;
                return true;
            }
        }
        return false;
    }

    private static async Task HandleAsync(HttpContext context, string urlId, int prefixLength)
    {
        var services = context.RequestServices;
        var registry = services.GetRequiredService<FunctionRegistry>();
        var options = services.GetRequiredService<IOptions<LaminaOptions>>().Value;
        var request = context.Request;
        if (!registry.TryGetUrl(urlId, out var entry, out var url))
        {
            await MessageAsync(context, StatusCodes.Status404NotFound, "Not Found");
            return;
        }
        if (url.Cors is { } cors && HttpMethods.IsOptions(request.Method) && request.Headers.Origin.Count > 0
            && request.Headers.AccessControlRequestMethod.Count > 0)
        {
            Preflight(context, cors);
            return;
        }

        var body = await RuntimeApiEndpoints.ReadBodyAsync(context, InvokeApi.MaxSyncPayloadBytes);
        if (body is null)
        {
            await MessageAsync(context, StatusCodes.Status413PayloadTooLarge, "Request must be smaller than 6291456 bytes for the InvokeFunction operation");
            return;
        }
        var qualifier = url.Qualifier == FunctionEntry.Latest ? null : url.Qualifier;
        var (allowed, caller) = Authorize(context, entry, qualifier, url, body.Value.Span, options);
        if (!allowed)
        {
            await MessageAsync(context, StatusCodes.Status403Forbidden, "Forbidden");
            return;
        }
        if (entry.Resolve(qualifier, Random.Shared) is not { } config)
        {
            await MessageAsync(context, StatusCodes.Status404NotFound, "Not Found");
            return;
        }

        var metrics = services.GetRequiredService<LaminaMetrics>();
        if (!services.GetRequiredService<ConcurrencyLimiter>().TryAcquire(config.Name, entry.ReservedConcurrency, out var lease, out var throttleReason))
        {
            metrics.RecordThrottle(config, throttleReason!);
            await MessageAsync(context, StatusCodes.Status429TooManyRequests, "Rate Exceeded.");
            return;
        }
        var time = services.GetRequiredService<TimeProvider>();
        var requestId = RequestIds.Of(context);
        var invocation = new Invocation
        {
            RequestId = requestId,
            Payload = BuildEvent(context, prefixLength, urlId, body.Value, caller, options, requestId, time.GetUtcNow()),
            InvokedFunctionArn = qualifier is null ? options.FunctionArn(entry.Name) : $"{options.FunctionArn(entry.Name)}:{qualifier}",
            TraceId = Tracing.TraceHeader(request.Headers["X-Amzn-Trace-Id"], request.Headers["traceparent"], time),
        };
        var outcome = await services.GetRequiredService<Invoker>().InvokeAsync(config, invocation, wantTail: false, lease!);
        if (outcome.ThrottleReason is not null)
        {
            await MessageAsync(context, StatusCodes.Status429TooManyRequests, "Rate Exceeded.");
            return;
        }
        if (outcome.Result is not { Outcome: InvocationOutcome.Success } result)
        {
            // A function error, timeout or crash: Lambda answers 502 and keeps the details in the function's log.
            await MessageAsync(context, StatusCodes.Status502BadGateway, "Internal Server Error");
            return;
        }
        if (url.Cors is { } responseCors)
        {
            AddCorsHeaders(context, responseCors);
        }
        await WriteResultAsync(context, result.Body);
    }

    /// <summary>Whether the caller may invoke this URL, and the IAM caller (AWS_IAM only) for the event's authorizer.</summary>
    private static (bool Allowed, CallerIdentity? Caller) Authorize(HttpContext context, FunctionEntry entry, string? qualifier, FunctionUrlConfig url,
        ReadOnlySpan<byte> body, LaminaOptions options)
    {
        if (url.AuthType == "NONE")
        {
            // Anyone, if a statement allows everyone (Principal "*") to invoke this URL (AddPermission with
            // FunctionUrlAuthType NONE, as Lambda requires).
            return (PermissionsApi.Allows(entry, qualifier, "lambda:InvokeFunctionUrl", new PolicyCaller(null, FunctionUrlAuthType: "NONE", ViaFunctionUrl: true)), null);
        }
        var request = context.Request;
        if (request.Headers.Authorization.Count == 0 && !request.Query.ContainsKey("X-Amz-Signature"))
        {
            return (false, null); // AWS_IAM: an unsigned request is refused even without access keys
        }
        var keys = context.RequestServices.GetRequiredService<AccessKeys>();
        var environment = RuntimeApiTransport.EnvironmentOf(context) as ExecutionEnvironment;
        CallerIdentity caller;
        if (keys.Required || environment is not null)
        {
            var session = environment?.Credentials;
            var failure = SigV4.Verify(request, body, id => session is not null && id == session.AccessKeyId ? session.AsKey(environment!.AccountId) : keys.Find(id),
                options.Region, context.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow(), out var key);
            if (failure is not null)
            {
                return (false, null);
            }
            caller = new CallerIdentity(key!.AccountId, key.AccessKeyId);
        }
        else
        {
            // No keys: any signature is accepted on loopback, as for the API; the caller is the account itself.
            caller = new CallerIdentity(entry.LatestConfig.ForeignAccount ?? options.AccountId, "");
        }
        var allowed = caller.AccountId == (entry.LatestConfig.ForeignAccount ?? options.AccountId)
            || PermissionsApi.Allows(entry, qualifier, "lambda:InvokeFunctionUrl", new PolicyCaller(caller.AccountId, FunctionUrlAuthType: "AWS_IAM", ViaFunctionUrl: true));
        return (allowed, caller);
    }

    /// <summary>The payload 2.0 event of this request (LAMBDA.md §9.3).</summary>
    private static ReadOnlyMemory<byte> BuildEvent(HttpContext context, int prefixLength, string urlId, ReadOnlyMemory<byte> body, CallerIdentity? caller,
        LaminaOptions options, string requestId, DateTimeOffset now)
    {
        var request = context.Request;
        var rawTarget = context.Features.Get<IHttpRequestFeature>()?.RawTarget is { Length: > 0 } target ? target : request.Path + request.QueryString;
        var question = rawTarget.IndexOf('?', StringComparison.Ordinal);
        var rawPath = question < 0 ? rawTarget : rawTarget[..question];
        var rawQuery = question < 0 ? "" : rawTarget[(question + 1)..];
        rawPath = rawPath.Length > prefixLength ? rawPath[prefixLength..] : "/";
        if (!rawPath.StartsWith('/'))
        {
            rawPath = "/" + rawPath;
        }

        var buffer = new ArrayBufferWriter<byte>(1024 + body.Length * 2);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("version", "2.0");
            json.WriteString("routeKey", "$default");
            json.WriteString("rawPath", rawPath);
            json.WriteString("rawQueryString", rawQuery);
            var cookies = request.Headers.Cookie.ToString();
            if (cookies.Length > 0)
            {
                json.WriteStartArray("cookies");
                foreach (var cookie in cookies.Split(';', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
                {
                    json.WriteStringValue(cookie);
                }
                json.WriteEndArray();
            }
            json.WriteStartObject("headers");
            foreach (var (name, values) in request.Headers)
            {
                if (!string.Equals(name, "Cookie", StringComparison.OrdinalIgnoreCase))
                {
                    json.WriteString(name.ToLowerInvariant(), string.Join(',', values.ToArray()));
                }
            }
            if (!request.Headers.ContainsKey("X-Forwarded-For"))
            {
                json.WriteString("x-forwarded-for", context.Connection.RemoteIpAddress?.ToString() ?? "127.0.0.1");
            }
            json.WriteString("x-forwarded-proto", request.Scheme);
            json.WriteString("x-forwarded-port", (context.Connection.LocalPort).ToString(CultureInfo.InvariantCulture));
            json.WriteEndObject();
            if (request.Query.Count > 0)
            {
                json.WriteStartObject("queryStringParameters");
                foreach (var (name, values) in request.Query)
                {
                    json.WriteString(name, string.Join(',', values.ToArray()));
                }
                json.WriteEndObject();
            }
            json.WriteStartObject("requestContext");
            json.WriteString("accountId", caller?.AccountId ?? "anonymous");
            json.WriteString("apiId", urlId);
            if (caller is not null)
            {
                json.WriteStartObject("authorizer");
                json.WriteStartObject("iam");
                json.WriteString("accessKey", caller.AccessKeyId);
                json.WriteString("accountId", caller.AccountId);
                json.WriteString("callerId", caller.AccessKeyId);
                json.WriteNull("cognitoIdentity");
                json.WriteNull("principalOrgId");
                json.WriteString("userArn", caller.PrincipalArn);
                json.WriteString("userId", caller.AccountId);
                json.WriteEndObject();
                json.WriteEndObject();
            }
            var domain = request.Host.Host;
            json.WriteString("domainName", domain);
            json.WriteString("domainPrefix", urlId);
            json.WriteStartObject("http");
            json.WriteString("method", request.Method);
            json.WriteString("path", rawPath);
            json.WriteString("protocol", request.Protocol);
            json.WriteString("sourceIp", context.Connection.RemoteIpAddress?.ToString() ?? "127.0.0.1");
            json.WriteString("userAgent", request.Headers.UserAgent.ToString());
            json.WriteEndObject();
            json.WriteString("requestId", requestId);
            json.WriteString("routeKey", "$default");
            json.WriteString("stage", "$default");
            json.WriteString("time", now.UtcDateTime.ToString("dd/MMM/yyyy:HH:mm:ss +0000", CultureInfo.InvariantCulture));
            json.WriteNumber("timeEpoch", now.ToUnixTimeMilliseconds());
            json.WriteEndObject();
            if (!body.IsEmpty)
            {
                var text = IsText(request.ContentType) && IsUtf8(body.Span);
                json.WriteString("body", text ? Encoding.UTF8.GetString(body.Span) : Convert.ToBase64String(body.Span));
                json.WriteBoolean("isBase64Encoded", !text);
            }
            else
            {
                json.WriteBoolean("isBase64Encoded", false);
            }
            json.WriteEndObject();
        }
        return buffer.WrittenMemory;
    }

    /// <summary>
    /// Maps the function's result to the response: an object with <c>statusCode</c> is a structured response
    /// (headers, cookies → Set-Cookie, body, isBase64Encoded); anything else is a 200 application/json whose body is
    /// the result (a JSON string's value, else the JSON itself).
    /// </summary>
    private static async Task WriteResultAsync(HttpContext context, ReadOnlyMemory<byte> result)
    {
        var response = context.Response;
        byte[] body;
        JsonDocument? document = null;
        try
        {
            document = JsonDocument.Parse(result);
        }
        catch (JsonException)
        {
        }
        using (document)
        {
            var root = document?.RootElement;
            if (root is { ValueKind: JsonValueKind.Object } structured && structured.TryGetProperty("statusCode", out var statusCode))
            {
                if (!statusCode.TryGetInt32(out var status) || status is < 100 or > 599)
                {
                    await MessageAsync(context, StatusCodes.Status502BadGateway, "Internal Server Error");
                    return;
                }
                response.StatusCode = status;
                if (structured.TryGetProperty("headers", out var headers) && headers.ValueKind == JsonValueKind.Object)
                {
                    foreach (var header in headers.EnumerateObject())
                    {
                        response.Headers[header.Name] = header.Value.ValueKind == JsonValueKind.String ? header.Value.GetString() : header.Value.GetRawText();
                    }
                }
                if (structured.TryGetProperty("cookies", out var cookies) && cookies.ValueKind == JsonValueKind.Array)
                {
                    var values = cookies.EnumerateArray().Where(static c => c.ValueKind == JsonValueKind.String).Select(static c => c.GetString()).ToArray();
                    response.Headers.Append("Set-Cookie", values);
                }
                if (!response.Headers.ContainsKey("Content-Type"))
                {
                    response.ContentType = "application/json";
                }
                body = [];
                if (structured.TryGetProperty("body", out var bodyElement) && bodyElement.ValueKind == JsonValueKind.String)
                {
                    var text = bodyElement.GetString()!;
                    var base64 = structured.TryGetProperty("isBase64Encoded", out var flag) && flag.ValueKind == JsonValueKind.True;
                    try
                    {
                        body = base64 ? Convert.FromBase64String(text) : Encoding.UTF8.GetBytes(text);
                    }
                    catch (FormatException)
                    {
                        await MessageAsync(context, StatusCodes.Status502BadGateway, "Internal Server Error");
                        return;
                    }
                }
            }
            else
            {
                response.StatusCode = StatusCodes.Status200OK;
                response.ContentType = "application/json";
                body = root is { ValueKind: JsonValueKind.String } text ? Encoding.UTF8.GetBytes(text.GetString()!) : result.ToArray();
            }
        }
        response.ContentLength = body.Length;
        await response.Body.WriteAsync(body, CancellationToken.None);
    }

    private static void Preflight(HttpContext context, CorsDto cors)
    {
        var response = context.Response;
        response.StatusCode = StatusCodes.Status200OK;
        if (AllowedOrigin(cors, context.Request.Headers.Origin.ToString()) is { } origin)
        {
            response.Headers.AccessControlAllowOrigin = origin;
            if (cors.AllowMethods is { Count: > 0 } methods)
            {
                response.Headers.AccessControlAllowMethods = string.Join(',', methods);
            }
            if (cors.AllowHeaders is { Count: > 0 } headers)
            {
                response.Headers.AccessControlAllowHeaders = string.Join(',', headers);
            }
            if (cors.MaxAge is { } maxAge)
            {
                response.Headers.AccessControlMaxAge = maxAge.ToString(CultureInfo.InvariantCulture);
            }
            if (cors.AllowCredentials == true)
            {
                response.Headers.AccessControlAllowCredentials = "true";
            }
            response.Headers.Vary = "Origin";
        }
        response.ContentLength = 0;
    }

    /// <summary>The CORS headers of an actual (not preflight) response; they replace any the function set.</summary>
    private static void AddCorsHeaders(HttpContext context, CorsDto cors)
    {
        var requestOrigin = context.Request.Headers.Origin.ToString();
        if (requestOrigin.Length == 0 || AllowedOrigin(cors, requestOrigin) is not { } origin)
        {
            return;
        }
        var headers = context.Response.Headers;
        headers.AccessControlAllowOrigin = origin;
        if (cors.ExposeHeaders is { Count: > 0 } expose)
        {
            headers.AccessControlExposeHeaders = string.Join(',', expose);
        }
        if (cors.AllowCredentials == true)
        {
            headers.AccessControlAllowCredentials = "true";
        }
        headers.Vary = "Origin";
    }

    private static string? AllowedOrigin(CorsDto cors, string origin)
    {
        if (cors.AllowOrigins is not { Count: > 0 } origins)
        {
            return null;
        }
        if (origins.Contains("*"))
        {
            return cors.AllowCredentials == true ? origin : "*";
        }
        return origins.Contains(origin, StringComparer.OrdinalIgnoreCase) ? origin : null;
    }

    private static bool IsText(string? contentType)
    {
        if (string.IsNullOrEmpty(contentType))
        {
            return true;
        }
        var mediaType = contentType.Split(';', 2)[0].Trim();
        return mediaType.StartsWith("text/", StringComparison.OrdinalIgnoreCase) || TextTypes.Contains(mediaType)
            || mediaType.EndsWith("+json", StringComparison.OrdinalIgnoreCase) || mediaType.EndsWith("+xml", StringComparison.OrdinalIgnoreCase);
    }

    private static bool IsUtf8(ReadOnlySpan<byte> bytes) => System.Text.Unicode.Utf8.IsValid(bytes);

    /// <summary>Lambda's own answers on a URL: <c>{"Message": …}</c>.</summary>
    private static async Task MessageAsync(HttpContext context, int status, string message)
    {
        var response = context.Response;
        response.StatusCode = status;
        response.ContentType = "application/json";
        if (status == StatusCodes.Status502BadGateway || status == StatusCodes.Status429TooManyRequests)
        {
            response.Headers["x-amzn-ErrorType"] = status == 502 ? "Function.Error" : "TooManyRequestsException";
        }
        await using var writer = new Utf8JsonWriter(response.Body);
        writer.WriteStartObject();
        writer.WriteString("Message", message);
        writer.WriteEndObject();
    }
}
