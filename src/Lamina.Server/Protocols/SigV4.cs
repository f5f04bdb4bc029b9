using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Lamina.Server.Security;
using Microsoft.AspNetCore.Http.Features;

namespace Lamina.Server.Protocols;

/// <summary>
/// AWS Signature Version 4, verified on the server (LAMBDA.md §10): the Authorization header form and the presigned
/// query-string form, the payload hash (<c>x-amz-content-sha256</c>, <c>UNSIGNED-PAYLOAD</c> for presigned requests),
/// the double-encoded canonical path of non-S3 services, a 15-minute clock skew, and the credential scope's region and
/// service. Comparisons are constant-time; nothing about the secret is ever echoed.
/// </summary>
internal static class SigV4
{
    public const string Algorithm = "AWS4-HMAC-SHA256";

    /// <summary>Largest difference between the request's time and the server's.</summary>
    public static readonly TimeSpan MaxSkew = TimeSpan.FromMinutes(15);

    /// <summary>Services whose scope Lamina accepts: the APIs it serves (and its own operator API).</summary>
    private static readonly HashSet<string> Services = new(StringComparer.Ordinal) { "lambda", "logs", "events", "sqs", "sns", "lamina", "apigateway", "execute-api", "dynamodb", "cloudformation", "codedeploy" };

    private const string EmptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// <summary>
    /// Verifies <paramref name="request"/>, whose body is <paramref name="body"/>. Returns null when it is signed by a
    /// key <paramref name="find"/> knows (<paramref name="key"/>), else the AWS error to answer with.
    /// </summary>
    public static SigV4Failure? Verify(HttpRequest request, ReadOnlySpan<byte> body, Func<string, AccessKey?> find, string region, DateTimeOffset now, out AccessKey? key) =>
        Verify(request, body, s3: false, find, region, now, out key, out _);

    /// <summary>
    /// Verifies an S3 request (service <c>s3</c>): the canonical path is the path as sent (S3's is not encoded twice), and
    /// the payload hash is the one <c>x-amz-content-sha256</c> declares — a hex SHA-256, <c>UNSIGNED-PAYLOAD</c> or a
    /// <c>STREAMING-*</c> form — which the caller checks against the body as it streams. <paramref name="signing"/> is what
    /// a signed aws-chunked body's chunk signatures chain from.
    /// </summary>
    public static SigV4Failure? VerifyS3(HttpRequest request, Func<string, AccessKey?> find, string region, DateTimeOffset now, out AccessKey? key, out S3.ChunkSigning? signing) =>
        Verify(request, [], s3: true, find, region, now, out key, out signing);

    private static SigV4Failure? Verify(HttpRequest request, ReadOnlySpan<byte> body, bool s3, Func<string, AccessKey?> find, string region, DateTimeOffset now,
        out AccessKey? key, out S3.ChunkSigning? signing)
    {
        key = null;
        signing = null;
        var query = RawQuery(request);
        var presigned = HasQueryKey(query, "X-Amz-Algorithm");
        string? algorithm, credential, signedHeaders, signature, date;
        if (presigned)
        {
            algorithm = QueryValue(query, "X-Amz-Algorithm");
            credential = QueryValue(query, "X-Amz-Credential");
            signedHeaders = QueryValue(query, "X-Amz-SignedHeaders");
            signature = QueryValue(query, "X-Amz-Signature");
            date = QueryValue(query, "X-Amz-Date");
        }
        else
        {
            var authorization = request.Headers.Authorization.ToString();
            if (authorization.Length == 0)
            {
                return new SigV4Failure("MissingAuthenticationTokenException", "Missing Authentication Token");
            }
            (algorithm, credential, signedHeaders, signature) = ParseAuthorization(authorization);
            date = request.Headers["X-Amz-Date"].ToString() is { Length: > 0 } amzDate ? amzDate : null;
        }
        if (algorithm != Algorithm || credential is null || signedHeaders is null || signature is null)
        {
            return new SigV4Failure("IncompleteSignatureException", $"Authorization must use {Algorithm} with Credential, SignedHeaders and Signature.");
        }

        // Credential = <id>/<yyyymmdd>/<region>/<service>/aws4_request
        var scope = credential.Split('/');
        if (scope.Length != 5 || scope[4] != "aws4_request")
        {
            return new SigV4Failure("IncompleteSignatureException", "The credential is malformed: expected <AccessKeyId>/<date>/<region>/<service>/aws4_request.");
        }
        key = find(scope[0]);
        if (key is null)
        {
            return new SigV4Failure("UnrecognizedClientException", "The security token included in the request is invalid.");
        }
        if (key.SessionToken is not null)
        {
            var token = presigned ? QueryValue(query, "X-Amz-Security-Token") : request.Headers["X-Amz-Security-Token"].ToString();
            if (string.IsNullOrEmpty(token) || !CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(token), Encoding.UTF8.GetBytes(key.SessionToken)))
            {
                return new SigV4Failure("UnrecognizedClientException", "The security token included in the request is invalid.");
            }
            if (now >= key.Expiration)
            {
                return new SigV4Failure("ExpiredTokenException", "The security token included in the request is expired");
            }
        }
        if (scope[2] != region)
        {
            return new SigV4Failure("InvalidSignatureException", $"Credential should be scoped to a valid region, not '{scope[2]}'.");
        }
        if (s3 ? scope[3] != "s3" : !Services.Contains(scope[3]))
        {
            return new SigV4Failure("InvalidSignatureException", $"Credential should be scoped to correct service: '{scope[3]}' is not served here.");
        }
        if (date is null || !DateTimeOffset.TryParseExact(date, "yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var signedAt)
            || date[..8] != scope[1])
        {
            return new SigV4Failure("IncompleteSignatureException", "X-Amz-Date is missing, malformed, or not the credential's date.");
        }
        if ((now - signedAt).Duration() > MaxSkew)
        {
            return new SigV4Failure("InvalidSignatureException",
                $"Signature expired: {date} is now earlier than {now.Subtract(MaxSkew).UtcDateTime:yyyyMMdd'T'HHmmss'Z'} ({now.UtcDateTime:yyyyMMdd'T'HHmmss'Z'} - 15 min.)");
        }
        if (presigned && QueryValue(query, "X-Amz-Expires") is { } expires
            && int.TryParse(expires, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) && now > signedAt.AddSeconds(seconds))
        {
            return new SigV4Failure("InvalidSignatureException", "Signature expired: the presigned request's X-Amz-Expires has passed.");
        }

        // The payload's hash: what the client declared (then it must be right), else computed here. A presigned
        // request may also have been signed over UNSIGNED-PAYLOAD (S3's convention; botocore hashes over plain HTTP).
        var declared = request.Headers["x-amz-content-sha256"].ToString();
        var bodyHash = s3 ? "" : body.IsEmpty ? EmptyPayloadHash : Convert.ToHexStringLower(SHA256.HashData(body));
        string[] payloadHashes;
        if (s3)
        {
            if (declared.Length == 0 && !presigned)
            {
                return new SigV4Failure("InvalidRequest", "Missing required header for this request: x-amz-content-sha256");
            }
            payloadHashes = [declared.Length > 0 ? declared : "UNSIGNED-PAYLOAD"];
        }
        else if (declared == "UNSIGNED-PAYLOAD")
        {
            payloadHashes = ["UNSIGNED-PAYLOAD"];
        }
        else if (declared.Length > 0)
        {
            if (!string.Equals(declared, bodyHash, StringComparison.OrdinalIgnoreCase))
            {
                return new SigV4Failure("InvalidSignatureException", "The provided x-amz-content-sha256 header does not match what was computed.");
            }
            payloadHashes = [declared.ToLowerInvariant()];
        }
        else
        {
            payloadHashes = presigned ? [bodyHash, "UNSIGNED-PAYLOAD"] : [bodyHash];
        }

        var canonical = new StringBuilder(512)
            .Append(request.Method.ToUpperInvariant()).Append('\n')
            .Append(s3 ? (RawPath(request) is { Length: > 0 } raw ? raw : "/") : CanonicalUri(RawPath(request))).Append('\n')
            .Append(CanonicalQuery(query, presigned)).Append('\n');
        foreach (var name in signedHeaders.Split(';'))
        {
            canonical.Append(name).Append(':').Append(CanonicalHeaderValue(request, name)).Append('\n');
        }
        canonical.Append('\n').Append(signedHeaders).Append('\n');
        var signingKey = Hmac(Hmac(Hmac(Hmac(Encoding.UTF8.GetBytes("AWS4" + key.SecretAccessKey), scope[1]), scope[2]), scope[3]), "aws4_request");
        var provided = Encoding.ASCII.GetBytes(signature.ToLowerInvariant());
        var matched = false;
        foreach (var payloadHash in payloadHashes)
        {
            var canonicalRequest = canonical + payloadHash;
            var stringToSign = $"{Algorithm}\n{date}\n{scope[1]}/{scope[2]}/{scope[3]}/aws4_request\n{Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(canonicalRequest)))}";
            matched |= CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(Convert.ToHexStringLower(Hmac(signingKey, stringToSign))), provided);
        }
        if (!matched)
        {
            return new SigV4Failure("InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.");
        }
        signing = new S3.ChunkSigning(signingKey, date, $"{scope[1]}/{scope[2]}/{scope[3]}/aws4_request", signature.ToLowerInvariant());
        return null;
    }

    /// <summary>
    /// Signs an outgoing request (Lamina's own <c>events</c>, <c>logs</c> and <c>deploy</c> commands) with the header form, when the
    /// environment has <c>AWS_ACCESS_KEY_ID</c> and <c>AWS_SECRET_ACCESS_KEY</c>; otherwise leaves it unsigned.
    /// </summary>
    public static void SignFromEnvironment(HttpRequestMessage request, byte[] body, string service, DateTimeOffset now)
    {
        var accessKey = Environment.GetEnvironmentVariable("AWS_ACCESS_KEY_ID");
        var secret = Environment.GetEnvironmentVariable("AWS_SECRET_ACCESS_KEY");
        if (string.IsNullOrEmpty(accessKey) || string.IsNullOrEmpty(secret))
        {
            return;
        }
        var region = Environment.GetEnvironmentVariable("AWS_REGION") is { Length: > 0 } r ? r
            : Environment.GetEnvironmentVariable("AWS_DEFAULT_REGION") is { Length: > 0 } d ? d : "us-east-1";
        Sign(request, body, service, region, new AccessKey(accessKey, secret, "")
        {
            SessionToken = Environment.GetEnvironmentVariable("AWS_SESSION_TOKEN") is { Length: > 0 } token ? token : null,
        }, now);
    }

    /// <summary>
    /// Signs an outgoing request with <paramref name="key"/> (header form, the payload's SHA-256 declared in
    /// <c>x-amz-content-sha256</c>). For <c>s3</c> the canonical path is the path as sent; other services encode it once more.
    /// </summary>
    public static void Sign(HttpRequestMessage request, ReadOnlySpan<byte> body, string service, string region, AccessKey key, DateTimeOffset now)
    {
        if (request.RequestUri is not { } uri)
        {
            return;
        }
        var date = now.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);
        var host = uri.IsDefaultPort ? uri.Host : $"{uri.Host}:{uri.Port}";
        var payloadHash = Convert.ToHexStringLower(SHA256.HashData(body));
        request.Headers.TryAddWithoutValidation("X-Amz-Date", date);
        request.Headers.TryAddWithoutValidation("x-amz-content-sha256", payloadHash);
        var signedHeaders = "host;x-amz-content-sha256;x-amz-date";
        var headers = $"host:{host}\nx-amz-content-sha256:{payloadHash}\nx-amz-date:{date}\n";
        if (key.SessionToken is { } token)
        {
            request.Headers.TryAddWithoutValidation("X-Amz-Security-Token", token);
            signedHeaders += ";x-amz-security-token";
            headers += $"x-amz-security-token:{token}\n";
        }
        var path = uri.AbsolutePath;
        var canonicalRequest = $"{request.Method.Method}\n{(service == "s3" ? (path.Length == 0 ? "/" : path) : CanonicalUri(path))}\n{CanonicalQuery(uri.Query.TrimStart('?'), presigned: false)}\n"
            + $"{headers}\n{signedHeaders}\n{payloadHash}";
        var scope = $"{date[..8]}/{region}/{service}/aws4_request";
        var stringToSign = $"{Algorithm}\n{date}\n{scope}\n{Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(canonicalRequest)))}";
        var signingKey = Hmac(Hmac(Hmac(Hmac(Encoding.UTF8.GetBytes("AWS4" + key.SecretAccessKey), date[..8]), region), service), "aws4_request");
        request.Headers.TryAddWithoutValidation("Authorization",
            $"{Algorithm} Credential={key.AccessKeyId}/{scope}, SignedHeaders={signedHeaders}, Signature={Convert.ToHexStringLower(Hmac(signingKey, stringToSign))}");
    }

    private static byte[] Hmac(byte[] key, string data) => HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(data));

    private static (string? Algorithm, string? Credential, string? SignedHeaders, string? Signature) ParseAuthorization(string header)
    {
        var space = header.IndexOf(' ', StringComparison.Ordinal);
        if (space < 0)
        {
            return (header, null, null, null);
        }
        string? credential = null, signedHeaders = null, signature = null;
        foreach (var part in header[(space + 1)..].Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = part.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                continue;
            }
            var value = part[(eq + 1)..];
            switch (part[..eq])
            {
                case "Credential": credential = value; break;
                case "SignedHeaders": signedHeaders = value; break;
                case "Signature": signature = value; break;
            }
        }
        return (header[..space], credential, signedHeaders, signature);
    }

    // The request target as it came on the wire (percent-encoding intact): the decoded Path would lose it.
    private static string RawTarget(HttpRequest request) =>
        request.HttpContext.Features.Get<IHttpRequestFeature>()?.RawTarget is { Length: > 0 } raw ? raw : request.Path + request.QueryString;

    private static string RawPath(HttpRequest request)
    {
        var target = RawTarget(request);
        var question = target.IndexOf('?', StringComparison.Ordinal);
        return question < 0 ? target : target[..question];
    }

    private static string RawQuery(HttpRequest request)
    {
        var target = RawTarget(request);
        var question = target.IndexOf('?', StringComparison.Ordinal);
        return question < 0 ? "" : target[(question + 1)..];
    }

    private static IEnumerable<(string Key, string Value)> QueryPairs(string query)
    {
        foreach (var pair in query.Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            var rawKey = eq < 0 ? pair : pair[..eq];
            var rawValue = eq < 0 ? "" : pair[(eq + 1)..];
            yield return (Uri.UnescapeDataString(rawKey.Replace('+', ' ')), Uri.UnescapeDataString(rawValue.Replace('+', ' ')));
        }
    }

    private static bool HasQueryKey(string query, string key) => QueryPairs(query).Any(p => p.Key == key);

    private static string? QueryValue(string query, string key) => QueryPairs(query).Where(p => p.Key == key).Select(p => p.Value).FirstOrDefault();

    /// <summary>Every byte but the unreserved ones, percent-encoded (upper-case hex), as SigV4 wants.</summary>
    private static string Encode(string value, bool keepSlash)
    {
        var builder = new StringBuilder(value.Length);
        foreach (var b in Encoding.UTF8.GetBytes(value))
        {
            var c = (char)b;
            if (char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or '~' || (keepSlash && c == '/'))
            {
                builder.Append(c);
            }
            else
            {
                builder.Append('%').Append(b.ToString("X2", CultureInfo.InvariantCulture));
            }
        }
        return builder.ToString();
    }

    // Non-S3 services encode the (already encoded) path once more.
    private static string CanonicalUri(string rawPath) => rawPath.Length == 0 ? "/" : Encode(rawPath, keepSlash: true);

    private static string CanonicalQuery(string query, bool presigned) => string.Join('&', QueryPairs(query)
        .Where(p => !(presigned && p.Key == "X-Amz-Signature"))
        .Select(p => (Key: Encode(p.Key, false), Value: Encode(p.Value, false)))
        .OrderBy(p => p.Key, StringComparer.Ordinal).ThenBy(p => p.Value, StringComparer.Ordinal)
        .Select(p => p.Key + "=" + p.Value));

    private static string CanonicalHeaderValue(HttpRequest request, string name)
    {
        var values = request.Headers[name];
        return string.Join(',', values.Select(static v => string.Join(' ', (v ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries))));
    }
}

/// <summary>Why a request's signature was refused: the AWS error code and message (all answered with 403).</summary>
internal sealed record SigV4Failure(string Code, string Message);
