using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Lamina.Server.Security;

namespace Lamina.Server.S3;

/// <summary>
/// AWS Signature Version 2, which S3 still accepts and real clients still send: boto3 and the AWS CLI v1 presign S3 URLs
/// with it by default (<c>AWSAccessKeyId</c>, <c>Expires</c>, <c>Signature</c> in the query), and older clients sign
/// requests with <c>Authorization: AWS id:signature</c>. HMAC-SHA1 over S3's canonical string (botocore's
/// <c>HmacV1Auth</c> is the reference).
/// </summary>
internal static class S3SignatureV2
{
    // The query parameters that are part of the canonical resource; the rest of the query is not signed.
    private static readonly HashSet<string> Subresources = new(StringComparer.Ordinal)
    {
        "accelerate", "acl", "cors", "defaultObjectAcl", "location", "logging", "partNumber", "policy", "requestPayment", "torrent",
        "versioning", "versionId", "versions", "website", "uploads", "uploadId", "response-content-type", "response-content-language",
        "response-expires", "response-cache-control", "response-content-disposition", "response-content-encoding", "delete", "lifecycle",
        "tagging", "restore", "storageClass", "notification", "replication", "analytics", "metrics", "inventory", "select", "select-type",
        "object-lock",
    };

    /// <summary>Whether <paramref name="request"/> is signed (or presigned) with Signature Version 2.</summary>
    public static bool IsSignedV2(HttpRequest request) =>
        request.Headers.Authorization.ToString().StartsWith("AWS ", StringComparison.Ordinal)
        || (request.Query.ContainsKey("AWSAccessKeyId") && request.Query.ContainsKey("Signature"));

    /// <summary>
    /// A presigned URL's <c>Expires</c> (seconds since the epoch) must not have passed; it holds whether or not
    /// signatures are checked, as it is part of the URL.
    /// </summary>
    public static void CheckExpiry(HttpRequest request, DateTimeOffset now)
    {
        if (!request.Query.TryGetValue("Expires", out var value) || !request.Query.ContainsKey("Signature"))
        {
            return;
        }
        if (!long.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var expires))
        {
            throw new S3Exception(403, "AccessDenied", "Invalid date (should be seconds since epoch): " + value);
        }
        if (now.ToUnixTimeSeconds() > expires)
        {
            throw new S3Exception(403, "AccessDenied", "Request has expired", ("Expires", S3Xml.Time(DateTimeOffset.FromUnixTimeSeconds(expires))),
                ("ServerTime", S3Xml.Time(now)));
        }
    }

    /// <summary>
    /// The key that signed <paramref name="request"/>, whose canonical resource path (the bucket and the key as sent,
    /// <c>/bucket/key</c>, whatever the addressing style) is <paramref name="resourcePath"/>; throws S3's error otherwise.
    /// </summary>
    public static AccessKey Verify(HttpRequest request, string resourcePath, Func<string, AccessKey?> find)
    {
        string keyId, signature;
        var presigned = request.Query.ContainsKey("Signature");
        if (presigned)
        {
            keyId = request.Query["AWSAccessKeyId"].ToString();
            signature = request.Query["Signature"].ToString();
        }
        else
        {
            var credential = request.Headers.Authorization.ToString()["AWS ".Length..];
            var colon = credential.LastIndexOf(':');
            if (colon <= 0)
            {
                throw new S3Exception(400, "InvalidArgument", "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature",
                    ("ArgumentName", "Authorization"), ("ArgumentValue", request.Headers.Authorization.ToString()));
            }
            keyId = credential[..colon];
            signature = credential[(colon + 1)..];
        }
        var key = find(keyId) ?? throw new S3Exception(403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.",
            ("AWSAccessKeyId", keyId));
        // A bucket's own resource may be signed as "/bucket" or "/bucket/": botocore signs the second for path-style
        // requests whose URL is the first.
        string[] resources = resourcePath.Count(c => c == '/') == 1 && resourcePath.Length > 1 ? [resourcePath, resourcePath + "/"] : [resourcePath];
        string? stringToSign = null;
        foreach (var resource in resources)
        {
            stringToSign = StringToSign(request, resource, presigned);
            // HMAC-SHA1 is what Signature Version 2 is (the wire format, not a choice made here).
#pragma warning disable CA5350
            var expected = Convert.ToBase64String(HMACSHA1.HashData(Encoding.UTF8.GetBytes(key.SecretAccessKey), Encoding.UTF8.GetBytes(stringToSign)));
#pragma warning restore CA5350
            if (CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(expected), Encoding.ASCII.GetBytes(signature)))
            {
                return key;
            }
        }
        throw new S3Exception(403, "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
            ("AWSAccessKeyId", keyId), ("StringToSign", stringToSign!), ("SignatureProvided", signature));
    }

    /// <summary>
    /// Method, Content-MD5, Content-Type, Date (a presigned URL's Expires; empty when <c>x-amz-date</c> is sent), the
    /// <c>x-amz-*</c> headers (for a presigned URL, those carried in its query), and the canonical resource.
    /// </summary>
    internal static string StringToSign(HttpRequest request, string resourcePath, bool presigned)
    {
        var amz = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, values) in request.Headers)
        {
            if (name.StartsWith("x-amz-", StringComparison.OrdinalIgnoreCase))
            {
                amz[name.ToLowerInvariant()] = string.Join(',', values.Select(v => v?.Trim()));
            }
        }
        string contentMd5 = request.Headers["Content-MD5"].ToString(), contentType = request.Headers.ContentType.ToString(), date;
        if (presigned)
        {
            foreach (var (name, values) in request.Query)
            {
                var lower = name.ToLowerInvariant();
                if (lower.StartsWith("x-amz-", StringComparison.Ordinal))
                {
                    amz[lower] = values.ToString();
                }
                else if (lower == "content-md5")
                {
                    contentMd5 = values.ToString();
                }
                else if (lower == "content-type")
                {
                    contentType = values.ToString();
                }
            }
            date = request.Query["Expires"].ToString();
        }
        else
        {
            date = amz.ContainsKey("x-amz-date") ? "" : request.Headers.Date.ToString();
        }
        var text = new StringBuilder(256)
            .Append(request.Method.ToUpperInvariant()).Append('\n')
            .Append(contentMd5.Trim()).Append('\n')
            .Append(contentType.Trim()).Append('\n')
            .Append(date.Trim()).Append('\n');
        foreach (var (name, value) in amz)
        {
            text.Append(name).Append(':').Append(value).Append('\n');
        }
        text.Append(resourcePath);
        var subresources = request.Query.Where(p => Subresources.Contains(p.Key)).OrderBy(p => p.Key, StringComparer.Ordinal).ToList();
        for (var i = 0; i < subresources.Count; i++)
        {
            text.Append(i == 0 ? '?' : '&').Append(subresources[i].Key);
            if (subresources[i].Value.ToString() is { Length: > 0 } value)
            {
                text.Append('=').Append(value);
            }
        }
        return text.ToString();
    }
}
