using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Features;

namespace Lamina.Server.Protocols;

/// <summary>
/// The HTTP request as a proxy payload event and the function's answer as an HTTP response: payload format 2.0, which
/// function URLs and API Gateway's HTTP APIs share (LAMBDA.md §9.3), and the pieces format 1.0 reuses. One place, so a
/// request looks the same to a function whichever way it came in.
/// </summary>
internal static class HttpProxyPayload
{
    private static readonly HashSet<string> TextTypes = new(StringComparer.OrdinalIgnoreCase)
    {
        "application/json", "application/xml", "application/javascript", "application/x-www-form-urlencoded", "application/graphql",
    };

    /// <summary>The request's path and query exactly as sent (percent-encoding kept), less the first <paramref name="prefixLength"/> characters of the path.</summary>
    public static (string RawPath, string RawQuery) RawTarget(HttpContext context, int prefixLength)
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
        return (rawPath, rawQuery);
    }

    /// <summary>The caller's address as the event reports it (<c>sourceIp</c>).</summary>
    public static string SourceIp(HttpContext context) => context.Connection.RemoteIpAddress?.ToString() ?? "127.0.0.1";

    /// <summary>The request time as API Gateway writes it (<c>12/Mar/2020:19:03:58 +0000</c>).</summary>
    public static string ClfTime(DateTimeOffset time) => time.UtcDateTime.ToString("dd/MMM/yyyy:HH:mm:ss +0000", CultureInfo.InvariantCulture);

    /// <summary>A payload 2.0 event's <c>requestContext.authorizer</c> for a SigV4-signed (AWS_IAM) caller.</summary>
    public static void WriteIamAuthorizer(Utf8JsonWriter json, CallerIdentity caller)
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

    /// <summary>
    /// Writes the payload 2.0 event of this request. <paramref name="request"/> carries what depends on where it came in
    /// (route, stage, API id, account, authorizer).
    /// </summary>
    public static ReadOnlyMemory<byte> BuildV2Event(HttpContext context, ReadOnlyMemory<byte> body, in V2EventParts request)
    {
        var http = context.Request;
        var buffer = new ArrayBufferWriter<byte>(1024 + body.Length * 2);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("version", "2.0");
            request.WriteLeading?.Invoke(json);
            json.WriteString("routeKey", request.RouteKey);
            json.WriteString("rawPath", request.RawPath);
            json.WriteString("rawQueryString", request.RawQuery);
            var cookies = http.Headers.Cookie.ToString();
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
            WriteJoinedHeaders(context, json, skipCookie: true);
            json.WriteEndObject();
            if (http.Query.Count > 0)
            {
                json.WriteStartObject("queryStringParameters");
                foreach (var (name, values) in http.Query)
                {
                    json.WriteString(name, string.Join(',', values.ToArray()));
                }
                json.WriteEndObject();
            }
            json.WriteStartObject("requestContext");
            json.WriteString("accountId", request.AccountId);
            json.WriteString("apiId", request.ApiId);
            request.WriteAuthorizer?.Invoke(json);
            json.WriteString("domainName", http.Host.Host);
            json.WriteString("domainPrefix", request.DomainPrefix);
            json.WriteStartObject("http");
            json.WriteString("method", http.Method);
            json.WriteString("path", request.RawPath);
            json.WriteString("protocol", http.Protocol);
            json.WriteString("sourceIp", SourceIp(context));
            json.WriteString("userAgent", http.Headers.UserAgent.ToString());
            json.WriteEndObject();
            json.WriteString("requestId", request.RequestId);
            json.WriteString("routeKey", request.RouteKey);
            json.WriteString("stage", request.Stage);
            json.WriteString("time", ClfTime(request.Time));
            json.WriteNumber("timeEpoch", request.Time.ToUnixTimeMilliseconds());
            json.WriteEndObject();
            if (!request.OmitBody)
            {
                WriteBody(json, http.ContentType, body, binaryAsBase64: true);
            }
            if (request.PathParameters is { Count: > 0 } pathParameters)
            {
                WriteMap(json, "pathParameters", pathParameters);
            }
            if (request.StageVariables is { Count: > 0 } stageVariables)
            {
                WriteMap(json, "stageVariables", stageVariables);
            }
            json.WriteEndObject();
        }
        return buffer.WrittenMemory;
    }

    /// <summary>
    /// Every header, lower-cased, repeated values joined by commas (payload 2.0's <c>headers</c>), plus the
    /// <c>x-forwarded-*</c> headers API Gateway and function URLs add.
    /// </summary>
    public static void WriteJoinedHeaders(HttpContext context, Utf8JsonWriter json, bool skipCookie)
    {
        var request = context.Request;
        foreach (var (name, values) in request.Headers)
        {
            if (!skipCookie || !string.Equals(name, "Cookie", StringComparison.OrdinalIgnoreCase))
            {
                json.WriteString(name.ToLowerInvariant(), string.Join(',', values.ToArray()));
            }
        }
        if (!request.Headers.ContainsKey("X-Forwarded-For"))
        {
            json.WriteString("x-forwarded-for", SourceIp(context));
        }
        if (!request.Headers.ContainsKey("X-Forwarded-Proto"))
        {
            json.WriteString("x-forwarded-proto", request.Scheme);
        }
        if (!request.Headers.ContainsKey("X-Forwarded-Port"))
        {
            json.WriteString("x-forwarded-port", context.Connection.LocalPort.ToString(CultureInfo.InvariantCulture));
        }
    }

    /// <summary>
    /// The body members: text as it is, anything else (or text that is not UTF-8) base64-encoded with
    /// <c>isBase64Encoded</c> true. With <paramref name="binaryAsBase64"/> false every body is written as text (a REST
    /// API without a matching binary media type), decoding invalid UTF-8 with replacement characters as API Gateway does.
    /// </summary>
    public static void WriteBody(Utf8JsonWriter json, string? contentType, ReadOnlyMemory<byte> body, bool binaryAsBase64)
    {
        if (body.IsEmpty)
        {
            json.WriteBoolean("isBase64Encoded", false);
            return;
        }
        var text = !binaryAsBase64 || (IsText(contentType) && IsUtf8(body.Span));
        json.WriteString("body", text ? Encoding.UTF8.GetString(body.Span) : Convert.ToBase64String(body.Span));
        json.WriteBoolean("isBase64Encoded", !text);
    }

    public static void WriteMap(Utf8JsonWriter json, string name, IEnumerable<KeyValuePair<string, string>> map)
    {
        json.WriteStartObject(name);
        foreach (var (key, value) in map)
        {
            json.WriteString(key, value);
        }
        json.WriteEndObject();
    }

    /// <summary>Whether a body of this content type is text (no content type counts as text, as on Lambda).</summary>
    public static bool IsText(string? contentType)
    {
        if (string.IsNullOrEmpty(contentType))
        {
            return true;
        }
        var mediaType = contentType.Split(';', 2)[0].Trim();
        return mediaType.StartsWith("text/", StringComparison.OrdinalIgnoreCase) || TextTypes.Contains(mediaType)
            || mediaType.EndsWith("+json", StringComparison.OrdinalIgnoreCase) || mediaType.EndsWith("+xml", StringComparison.OrdinalIgnoreCase);
    }

    public static bool IsUtf8(ReadOnlySpan<byte> bytes) => System.Text.Unicode.Utf8.IsValid(bytes);

    /// <summary>
    /// Reads a payload 2.0 result: an object with <c>statusCode</c> is a structured response (headers, cookies →
    /// Set-Cookie, body, isBase64Encoded); anything else is a 200 application/json whose body is the result (a JSON
    /// string's value, else the JSON itself). Null when a structured response is malformed.
    /// </summary>
    public static ProxyResponse? ParseV2Result(ReadOnlyMemory<byte> result)
    {
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
            if (root is { ValueKind: JsonValueKind.Object } structured && structured.TryGetProperty("statusCode", out _))
            {
                return ParseStructured(structured, multiValueHeaders: false);
            }
            var body = root is { ValueKind: JsonValueKind.String } text ? Encoding.UTF8.GetBytes(text.GetString()!) : result.ToArray();
            return new ProxyResponse(StatusCodes.Status200OK, [new("Content-Type", "application/json")], [], body, IsBase64: false);
        }
    }

    /// <summary>
    /// Reads a payload 1.0 result (REST APIs, HTTP APIs with format 1.0): it must be an object with an integer
    /// <c>statusCode</c>; <c>headers</c> and <c>multiValueHeaders</c> merge (the latter wins for a name in both). Null
    /// when malformed. The body stays base64 text when <c>isBase64Encoded</c> (the caller decides whether to decode).
    /// </summary>
    public static ProxyResponse? ParseV1Result(ReadOnlyMemory<byte> result)
    {
        try
        {
            using var document = JsonDocument.Parse(result);
            return document.RootElement is { ValueKind: JsonValueKind.Object } structured && structured.TryGetProperty("statusCode", out _)
                ? ParseStructured(structured, multiValueHeaders: true)
                : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>
    /// The prelude of a streamed function URL response (<c>application/vnd.awslambda.http-integration-response</c>):
    /// the JSON before the 8 NUL bytes, <c>{statusCode, headers, cookies}</c>, each optional (200 by default). Null
    /// when malformed.
    /// </summary>
    public static ProxyResponse? ParseStreamingPrelude(ReadOnlySpan<byte> prelude)
    {
        try
        {
            var reader = new Utf8JsonReader(prelude);
            using var document = JsonDocument.ParseValue(ref reader);
            return document.RootElement.ValueKind == JsonValueKind.Object ? ParseStructured(document.RootElement, multiValueHeaders: false, defaultStatus: true) : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static ProxyResponse? ParseStructured(JsonElement structured, bool multiValueHeaders, bool defaultStatus = false)
    {
        int status;
        if (!structured.TryGetProperty("statusCode", out var statusCode) && defaultStatus)
        {
            status = StatusCodes.Status200OK;
        }
        else if (statusCode.ValueKind == JsonValueKind.Number ? !statusCode.TryGetInt32(out status)
            : statusCode.ValueKind != JsonValueKind.String || !int.TryParse(statusCode.GetString(), NumberStyles.None, CultureInfo.InvariantCulture, out status))
        {
            return null;
        }
        if (status is < 100 or > 599)
        {
            return null;
        }
        var headers = new List<KeyValuePair<string, string>>();
        if (structured.TryGetProperty("headers", out var single) && single.ValueKind == JsonValueKind.Object)
        {
            foreach (var header in single.EnumerateObject())
            {
                headers.Add(new(header.Name, Scalar(header.Value)));
            }
        }
        else if (multiValueHeaders && single.ValueKind is not (JsonValueKind.Undefined or JsonValueKind.Null))
        {
            return null;
        }
        if (multiValueHeaders && structured.TryGetProperty("multiValueHeaders", out var multi) && multi.ValueKind == JsonValueKind.Object)
        {
            foreach (var header in multi.EnumerateObject())
            {
                if (header.Value.ValueKind != JsonValueKind.Array)
                {
                    return null;
                }
                headers.RemoveAll(h => string.Equals(h.Key, header.Name, StringComparison.OrdinalIgnoreCase));
                foreach (var value in header.Value.EnumerateArray())
                {
                    headers.Add(new(header.Name, Scalar(value)));
                }
            }
        }
        var cookies = new List<string>();
        if (structured.TryGetProperty("cookies", out var cookieList) && cookieList.ValueKind == JsonValueKind.Array)
        {
            cookies.AddRange(cookieList.EnumerateArray().Where(static c => c.ValueKind == JsonValueKind.String).Select(static c => c.GetString()!));
        }
        var base64 = structured.TryGetProperty("isBase64Encoded", out var flag) && flag.ValueKind == JsonValueKind.True;
        byte[] body = [];
        if (structured.TryGetProperty("body", out var bodyElement))
        {
            switch (bodyElement.ValueKind)
            {
                case JsonValueKind.String:
                    body = Encoding.UTF8.GetBytes(bodyElement.GetString()!);
                    break;
                case JsonValueKind.Null:
                    break;
                default:
                    if (multiValueHeaders)
                    {
                        return null; // format 1.0: the body must be a string ("Malformed Lambda proxy response")
                    }
                    break; // format 2.0: a body that is not a string is left out
            }
        }
        if (base64 && !IsBase64(body))
        {
            return null;
        }
        if (headers.Any(static h => !IsValidHeader(h.Key, h.Value)) || cookies.Any(static c => !IsValidHeader("Set-Cookie", c)))
        {
            return null;
        }
        return new ProxyResponse(status, headers, cookies, body, base64);
    }

    private static bool IsBase64(byte[] text) => System.Buffers.Text.Base64.IsValid(text);

    /// <summary>
    /// Whether a header the function returned can go on the wire: a token for a name, printable ASCII (and tabs) for a
    /// value. Kestrel refuses anything else when the response starts (CR/LF would split the response), so such a
    /// result is malformed rather than a crash halfway through answering.
    /// </summary>
    internal static bool IsValidHeader(string name, string value)
    {
        if (name.Length == 0)
        {
            return false;
        }
        foreach (var c in name)
        {
            if (c <= ' ' || c >= 0x7F || "\"(),/:;<=>?@[\\]{}".Contains(c))
            {
                return false;
            }
        }
        foreach (var c in value)
        {
            if ((c < ' ' && c != '\t') || c >= 0x7F)
            {
                return false;
            }
        }
        return true;
    }

    private static string Scalar(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => value.GetString()!,
        JsonValueKind.Null => "",
        _ => value.GetRawText(),
    };

    /// <summary>
    /// Writes <paramref name="response"/>. <paramref name="decodeBase64"/>: whether a base64 body is sent decoded (always
    /// for payload 2.0; for a REST API only when a binary media type matches).
    /// </summary>
    public static async Task WriteAsync(HttpContext context, ProxyResponse response, bool decodeBase64)
    {
        var http = context.Response;
        http.StatusCode = response.StatusCode;
        foreach (var group in response.Headers.GroupBy(static h => h.Key, StringComparer.OrdinalIgnoreCase))
        {
            http.Headers[group.Key] = group.Select(static h => h.Value).ToArray();
        }
        if (response.Cookies.Count > 0)
        {
            http.Headers.Append("Set-Cookie", response.Cookies.ToArray());
        }
        if (!http.Headers.ContainsKey("Content-Type"))
        {
            http.ContentType = "application/json";
        }
        var body = response.IsBase64 && decodeBase64 ? Convert.FromBase64String(Encoding.ASCII.GetString(response.Body)) : response.Body;
        http.ContentLength = body.Length;
        if (!HttpMethods.IsHead(context.Request.Method))
        {
            await http.Body.WriteAsync(body, CancellationToken.None);
        }
    }

    /// <summary>Answers a CORS preflight request from <paramref name="cors"/> (the function is not invoked).</summary>
    public static void Preflight(HttpContext context, CorsRules cors)
    {
        var response = context.Response;
        response.StatusCode = cors.PreflightStatus;
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
    public static void AddCorsHeaders(HttpContext context, CorsRules cors)
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

    /// <summary>Whether this is a CORS preflight: OPTIONS with an Origin and Access-Control-Request-Method.</summary>
    public static bool IsPreflight(HttpRequest request) =>
        HttpMethods.IsOptions(request.Method) && request.Headers.Origin.Count > 0 && request.Headers.AccessControlRequestMethod.Count > 0;

    private static string? AllowedOrigin(CorsRules cors, string origin)
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
}

/// <summary>What a payload 2.0 event takes from where the request came in.</summary>
internal readonly record struct V2EventParts(
    string RouteKey, string RawPath, string RawQuery, string Stage, string ApiId, string DomainPrefix, string AccountId, string RequestId, DateTimeOffset Time)
{
    public IReadOnlyDictionary<string, string>? PathParameters { get; init; }
    public IReadOnlyDictionary<string, string>? StageVariables { get; init; }

    /// <summary>Writes <c>requestContext.authorizer</c> (and anything beside it), if there is one.</summary>
    public Action<Utf8JsonWriter>? WriteAuthorizer { get; init; }

    /// <summary>Writes members right after <c>version</c> (a Lambda authorizer's <c>type</c>, <c>routeArn</c>, <c>identitySource</c>).</summary>
    public Action<Utf8JsonWriter>? WriteLeading { get; init; }

    /// <summary>Leaves the body out (a Lambda authorizer's event has none).</summary>
    public bool OmitBody { get; init; }
}

/// <summary>A function's proxy result, parsed: status, headers in order (a name may repeat), cookies, body bytes.</summary>
internal sealed record ProxyResponse(int StatusCode, List<KeyValuePair<string, string>> Headers, List<string> Cookies, byte[] Body, bool IsBase64);

/// <summary>
/// Cross-origin settings (a function URL's <c>Cors</c>, an HTTP API's <c>corsConfiguration</c>). A preflight answers
/// <see cref="PreflightStatus"/>: 200 for function URLs, 204 for HTTP APIs (as each does on AWS).
/// </summary>
internal sealed record CorsRules(bool? AllowCredentials, IReadOnlyList<string>? AllowHeaders, IReadOnlyList<string>? AllowMethods,
    IReadOnlyList<string>? AllowOrigins, IReadOnlyList<string>? ExposeHeaders, int? MaxAge, int PreflightStatus = StatusCodes.Status200OK);
