using System.Buffers;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Xml.Linq;
using Microsoft.AspNetCore.WebUtilities;

namespace Lamina.Server.S3;

/// <summary>Object operations: put (plain and aws-chunked), get and head (ranges, conditions), copy, delete, listings, tagging.</summary>
internal static partial class S3Api
{
    /// <summary>S3's limit for one PUT (and one part): 5 GiB.</summary>
    public const long MaxSinglePut = 5L * 1024 * 1024 * 1024;

    /// <summary>User metadata (<c>x-amz-meta-*</c> names and values) is limited to 2 KB, as S3.</summary>
    private const int MaxUserMetadata = 2 * 1024;

    private const int CopyBuffer = 256 * 1024;

    // Stored with the object and sent back on GET and HEAD.
    private static readonly string[] StoredHeaders =
        ["Content-Type", "Content-Encoding", "Cache-Control", "Content-Disposition", "Content-Language", "Expires", "x-amz-website-redirect-location", "x-amz-storage-class"];

    /// <summary>An upload body on disk, flushed, with what was computed over it.</summary>
    private sealed record Received(string TempFile, long Size, byte[] Md5, string? ChecksumAlgorithm, string? Checksum);

    /// <summary>The request body, decoded from aws-chunked when it is so encoded (the SDKs' streaming uploads).</summary>
    private static Stream Body(S3Call call, out AwsChunkedStream? chunked)
    {
        var sha = call.Header("x-amz-content-sha256") ?? "";
        var encoding = call.Header("Content-Encoding") ?? "";
        chunked = null;
        if (sha.StartsWith("STREAMING-", StringComparison.Ordinal) || encoding.Contains("aws-chunked", StringComparison.OrdinalIgnoreCase))
        {
            var signed = sha.StartsWith("STREAMING-AWS4-HMAC-SHA256-", StringComparison.Ordinal);
            chunked = new AwsChunkedStream(call.Request.Body, signed ? call.Signing : null);
            return chunked;
        }
        return call.Request.Body;
    }

    private static Task<XElement> ReadDocumentAsync(S3Call call) => S3Xml.ReadAsync(call.Request, Body(call, out _));

    /// <summary>
    /// Streams the body to a temporary file in the store (never whole in memory), computing its MD5 (the ETag), the
    /// declared SHA-256 and the additional checksum the client sent or asked for, and checks each against what the client
    /// declared: Content-Length or x-amz-decoded-content-length, Content-MD5, x-amz-content-sha256, x-amz-checksum-* (as
    /// a header or an aws-chunked trailer). The file is fsync'd before this returns. Any mismatch deletes it and throws.
    /// </summary>
    private static async Task<Received> ReceiveAsync(S3Call call, long maxSize)
    {
        var body = Body(call, out var chunked);
        long? expected;
        if (chunked is not null)
        {
            expected = long.TryParse(call.Header("x-amz-decoded-content-length"), NumberStyles.None, CultureInfo.InvariantCulture, out var decoded) ? decoded : null;
            if (expected is null)
            {
                throw new S3Exception(411, "MissingContentLength", "You must provide the Content-Length HTTP header (x-amz-decoded-content-length for aws-chunked bodies).");
            }
        }
        else
        {
            expected = call.Request.ContentLength;
        }
        if (expected > maxSize)
        {
            throw EntityTooLarge(expected.Value, maxSize);
        }

        string? algorithm = null, declaredChecksum = null, trailer = null;
        foreach (var (name, value) in call.Request.Headers)
        {
            if (S3Checksums.FromHeaderName(name) is { } named)
            {
                if (algorithm is not null)
                {
                    throw S3Exception.InvalidRequest("Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.");
                }
                algorithm = named;
                declaredChecksum = value.ToString();
            }
        }
        if (call.Header("x-amz-trailer") is { Length: > 0 } trailerName)
        {
            algorithm = S3Checksums.FromHeaderName(trailerName.Trim()) ?? throw S3Exception.InvalidRequest($"The value specified in the x-amz-trailer header is not supported: {trailerName}");
            trailer = trailerName.Trim().ToLowerInvariant();
        }
        if (algorithm is null && call.Header("x-amz-sdk-checksum-algorithm") is { Length: > 0 } sdk && S3Checksums.IsKnown(sdk.ToUpperInvariant()))
        {
            algorithm = sdk.ToUpperInvariant();
        }
        var declaredSha = call.Header("x-amz-content-sha256") is { Length: 64 } hex && !hex.StartsWith("STREAMING", StringComparison.Ordinal) ? hex : null;

        var temp = call.Store.NewTempFile();
        var buffer = ArrayPool<byte>.Shared.Rent(CopyBuffer);
        try
        {
            using var md5 = IncrementalHash.CreateHash(HashAlgorithmName.MD5);
            using var sha = declaredSha is null ? null : IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var checksum = algorithm is null ? null : S3Checksums.Create(algorithm);
            long total = 0;
            await using (var file = new FileStream(temp, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, BufferSize = 0, Options = FileOptions.Asynchronous }))
            {
                int read;
                while ((read = await body.ReadAsync(buffer.AsMemory(0, CopyBuffer), call.Aborted)) > 0)
                {
                    total += read;
                    if (total > maxSize)
                    {
                        throw EntityTooLarge(total, maxSize);
                    }
                    if (expected is { } limit && total > limit)
                    {
                        throw new S3Exception(400, "IncompleteBody", "The request body is longer than its declared length.");
                    }
                    var data = buffer.AsSpan(0, read);
                    md5.AppendData(data);
                    sha?.AppendData(data);
                    checksum?.Append(data);
                    await file.WriteAsync(buffer.AsMemory(0, read), call.Aborted);
                }
                await file.FlushAsync(call.Aborted);
                await DiskSync.FlushAsync(file.SafeFileHandle);
            }
            if (expected is { } length && total != length)
            {
                throw new S3Exception(400, "IncompleteBody", "You did not provide the number of bytes specified by the Content-Length HTTP header.");
            }
            var digest = md5.GetHashAndReset();
            if (call.Header("Content-MD5") is { Length: > 0 } contentMd5 && contentMd5 != Convert.ToBase64String(digest))
            {
                throw new S3Exception(400, "BadDigest", "The Content-MD5 you specified did not match what we received.");
            }
            if (sha is not null && !string.Equals(Convert.ToHexStringLower(sha.GetHashAndReset()), declaredSha, StringComparison.OrdinalIgnoreCase))
            {
                throw new S3Exception(400, "XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.");
            }
            if (trailer is not null)
            {
                declaredChecksum = chunked?.Trailers.GetValueOrDefault(trailer)
                    ?? throw S3Exception.InvalidRequest($"The {trailer} trailer announced in x-amz-trailer was not sent.");
            }
            var computed = checksum?.Finish();
            if (declaredChecksum is not null && declaredChecksum != computed)
            {
                throw new S3Exception(400, "BadDigest", $"The {algorithm} you specified did not match the calculated checksum.");
            }
            return new Received(temp, total, digest, algorithm, computed);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static S3Exception EntityTooLarge(long size, long max) =>
        new(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size", ("ProposedSize", Number(size)), ("MaxSizeAllowed", Number(max)));

    /// <summary>The representation headers and user metadata an upload stores, with S3's 2 KB limit on the metadata.</summary>
    private static Dictionary<string, string> StoredHeadersOf(HttpRequest request)
    {
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var name in StoredHeaders)
        {
            if (request.Headers.TryGetValue(name, out var value) && value.ToString() is { Length: > 0 } text)
            {
                headers[name] = text;
            }
        }
        if (headers.TryGetValue("Content-Encoding", out var encoding))
        {
            // aws-chunked describes the transfer, not the object.
            var kept = string.Join(',', encoding.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                .Where(e => !e.Equals("aws-chunked", StringComparison.OrdinalIgnoreCase)));
            if (kept.Length == 0)
            {
                headers.Remove("Content-Encoding");
            }
            else
            {
                headers["Content-Encoding"] = kept;
            }
        }
        if (headers.TryGetValue("x-amz-storage-class", out var storage) && storage == "STANDARD")
        {
            headers.Remove("x-amz-storage-class");
        }
        var metadataBytes = 0;
        foreach (var (name, value) in request.Headers)
        {
            if (name.StartsWith("x-amz-meta-", StringComparison.OrdinalIgnoreCase))
            {
                var key = name.ToLowerInvariant();
                headers[key] = value.ToString();
                metadataBytes += Encoding.UTF8.GetByteCount(key) - "x-amz-meta-".Length + Encoding.UTF8.GetByteCount(value.ToString());
            }
        }
        if (metadataBytes > MaxUserMetadata)
        {
            throw new S3Exception(400, "MetadataTooLarge", "Your metadata headers exceed the maximum allowed metadata size",
                ("Size", Number(metadataBytes)), ("MaxSizeAllowed", Number(MaxUserMetadata)));
        }
        return headers;
    }

    /// <summary>Tags from <c>x-amz-tagging</c> (URL query form: <c>k1=v1&amp;k2=v2</c>), at most 10.</summary>
    private static Dictionary<string, string> TagsFromHeader(string? header)
    {
        var tags = new Dictionary<string, string>(StringComparer.Ordinal);
        if (string.IsNullOrEmpty(header))
        {
            return tags;
        }
        foreach (var (key, value) in QueryHelpers.ParseQuery(header))
        {
            if (key.Length is 0 or > 128 || value.ToString().Length > 256)
            {
                throw new S3Exception(400, "InvalidTag", "The TagKey you have provided is invalid");
            }
            tags[key] = value.ToString();
        }
        if (tags.Count > 10)
        {
            throw new S3Exception(400, "BadRequest", "Object tags cannot be greater than 10");
        }
        return tags;
    }

    private static string Quoted(byte[] md5) => "\"" + Convert.ToHexStringLower(md5) + "\"";

    private static void WriteChecksumHeaders(HttpResponse response, string? algorithm, string? checksum, string? type)
    {
        if (algorithm is not null && checksum is not null)
        {
            response.Headers[S3Checksums.HeaderName(algorithm)] = checksum;
            response.Headers["x-amz-checksum-type"] = type ?? "FULL_OBJECT";
        }
    }

    private static void WriteVersionHeader(HttpResponse response, string versionId)
    {
        if (versionId != "null")
        {
            response.Headers["x-amz-version-id"] = versionId;
        }
    }

    // ---- put -------------------------------------------------------------------------------------

    private static async Task PutObjectAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        var headers = StoredHeadersOf(call.Request);
        var tags = TagsFromHeader(call.Header("x-amz-tagging"));
        var condition = WriteCondition(call);
        if (condition is not null && condition(await call.Store.GetAsync(bucket.Name, call.Key, null)) is { } failed)
        {
            throw failed;
        }
        var received = await ReceiveAsync(call, MaxSinglePut);
        string blob;
        try
        {
            blob = await call.Store.AdoptAsync(received.TempFile);
        }
        catch
        {
            File.Delete(received.TempFile);
            throw;
        }
        var etag = Quoted(received.Md5);
        var stored = await call.Store.PutAsync(bucket, new NewObject(call.Key, blob, received.Size, etag, headers, tags,
            received.ChecksumAlgorithm, received.Checksum, received.ChecksumAlgorithm is null ? null : "FULL_OBJECT", null), "ObjectCreated:Put", call.Origin, condition: condition);
        call.Response.Headers.ETag = etag;
        WriteVersionHeader(call.Response, stored.VersionId);
        WriteChecksumHeaders(call.Response, received.ChecksumAlgorithm, received.Checksum, "FULL_OBJECT");
        call.Response.StatusCode = 200;
    }

    /// <summary>
    /// Conditional writes (S3 since 2024): <c>If-None-Match: *</c> refuses to overwrite, <c>If-Match</c> requires the
    /// current ETag. Checked before the upload (no bytes sent for nothing) and again in the write's own transaction,
    /// so two writers racing on one key cannot both win.
    /// </summary>
    private static Func<S3Object?, S3Exception?>? WriteCondition(S3Call call)
    {
        var ifNoneMatch = call.Header("If-None-Match");
        var ifMatch = call.Header("If-Match");
        if (ifNoneMatch is null && ifMatch is null)
        {
            return null;
        }
        var key = call.Key;
        return current =>
        {
            var exists = current is { DeleteMarker: false };
            if (ifNoneMatch == "*" && exists)
            {
                return new S3Exception(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold", ("Condition", "If-None-Match"));
            }
            if (ifMatch is not null && !exists)
            {
                return S3Exception.NoSuchKey(key);
            }
            if (ifMatch is not null && !EtagMatches(ifMatch, current!.ETag))
            {
                return new S3Exception(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold", ("Condition", "If-Match"));
            }
            return null;
        };
    }

    private static bool EtagMatches(string condition, string etag) =>
        condition.Split(',', StringSplitOptions.TrimEntries).Any(c => c == "*" || c.Trim('"') == etag.Trim('"'));

    // ---- get / head ------------------------------------------------------------------------------

    private static async Task GetObjectAsync(S3Call call, bool head)
    {
        var bucket = call.RequireBucket();
        var versionId = call.VersionId;
        var response = call.Response;
        for (var attempt = 0; ; attempt++)
        {
            var o = await call.Store.GetAsync(bucket.Name, call.Key, versionId);
            if (o is null)
            {
                throw versionId is null ? S3Exception.NoSuchKey(call.Key)
                    : new S3Exception(404, "NoSuchVersion", "The specified version does not exist.", ("Key", call.Key), ("VersionId", versionId));
            }
            if (o.DeleteMarker)
            {
                response.Headers["x-amz-delete-marker"] = "true";
                WriteVersionHeader(response, o.VersionId);
                throw versionId is null ? S3Exception.NoSuchKey(call.Key) : MethodNotAllowed(call.Request.Method);
            }
            if (Conditions(call, o) is { } status)
            {
                response.Headers.ETag = o.ETag;
                response.Headers.LastModified = S3Xml.HttpDate(o.ModifiedMs);
                if (status == 304)
                {
                    response.StatusCode = 304;
                    return;
                }
                throw new S3Exception(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold",
                    ("Condition", call.Header("If-Match") is not null ? "If-Match" : "If-Unmodified-Since"));
            }
            var (offset, count, partial) = call.QueryValue("partNumber") is { } partNumber ? Part(call, o, partNumber) : Range(call, o.Size);
            FileStream? file = null;
            if (!head && count > 0)
            {
                try
                {
                    file = new FileStream(call.Store.BlobPath(o.Blob!), new FileStreamOptions { Mode = FileMode.Open, Access = FileAccess.Read, Share = FileShare.ReadWrite | FileShare.Delete, BufferSize = 0, Options = FileOptions.Asynchronous | FileOptions.SequentialScan });
                }
                catch (FileNotFoundException) when (attempt < 3)
                {
                    // Replaced by a concurrent PUT between the lookup and the open: read the new version.
                    continue;
                }
            }
            await using (file)
            {
                WriteObjectHeaders(call, o);
                response.ContentLength = count;
                if (partial)
                {
                    response.StatusCode = 206;
                    response.Headers.ContentRange = $"bytes {offset}-{offset + count - 1}/{o.Size}";
                }
                else
                {
                    response.StatusCode = 200;
                    if (call.Header("x-amz-checksum-mode") is { } mode && mode.Equals("ENABLED", StringComparison.OrdinalIgnoreCase))
                    {
                        WriteChecksumHeaders(response, o.ChecksumAlgorithm, o.Checksum, o.ChecksumType);
                    }
                }
                if (file is not null)
                {
                    await CopyRangeAsync(file, offset, count, response.Body, call.Aborted);
                }
            }
            return;
        }
    }

    private static void WriteObjectHeaders(S3Call call, S3Object o)
    {
        var response = call.Response;
        response.Headers.ETag = o.ETag;
        response.Headers.LastModified = S3Xml.HttpDate(o.ModifiedMs);
        response.Headers.AcceptRanges = "bytes";
        response.ContentType = o.Headers.GetValueOrDefault("Content-Type", "binary/octet-stream");
        foreach (var (name, value) in o.Headers)
        {
            if (name != "Content-Type")
            {
                response.Headers[name] = value;
            }
        }
        WriteVersionHeader(response, o.VersionId);
        if (o.Tags.Count > 0)
        {
            response.Headers["x-amz-tagging-count"] = Number(o.Tags.Count);
        }
        if (o.PartCount > 0 && call.QueryValue("partNumber") is not null)
        {
            response.Headers["x-amz-mp-parts-count"] = Number(o.PartCount);
        }
        // GetObject's response-* parameters override what is stored (presigned download links use them).
        foreach (var (parameter, header) in new[] { ("response-content-type", "Content-Type"), ("response-content-language", "Content-Language"),
                     ("response-expires", "Expires"), ("response-cache-control", "Cache-Control"), ("response-content-disposition", "Content-Disposition"),
                     ("response-content-encoding", "Content-Encoding") })
        {
            if (call.QueryValue(parameter) is { } value)
            {
                response.Headers[header] = value;
            }
        }
    }

    /// <summary>The conditional headers' verdict (RFC 7232 as S3 applies it): null to serve, 304, or 412.</summary>
    private static int? Conditions(S3Call call, S3Object o)
    {
        var modified = DateTimeOffset.FromUnixTimeMilliseconds(o.ModifiedMs / 1000 * 1000);
        var ifMatch = call.Header("If-Match");
        var ifNoneMatch = call.Header("If-None-Match");
        if (ifMatch is not null)
        {
            if (!EtagMatches(ifMatch, o.ETag))
            {
                return 412;
            }
        }
        else if (HttpDate(call.Header("If-Unmodified-Since")) is { } unmodifiedSince && modified > unmodifiedSince)
        {
            return 412;
        }
        if (ifNoneMatch is not null)
        {
            if (EtagMatches(ifNoneMatch, o.ETag))
            {
                return 304;
            }
        }
        else if (HttpDate(call.Header("If-Modified-Since")) is { } modifiedSince && modified <= modifiedSince)
        {
            return 304;
        }
        return null;
    }

    private static DateTimeOffset? HttpDate(string? value) =>
        value is not null && DateTimeOffset.TryParse(value, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var date) ? date : null;

    /// <summary>
    /// <c>?partNumber=N</c>: the bytes part N of a multipart upload made (an object written whole is one part), as the
    /// SDKs' part-wise downloads ask for them.
    /// </summary>
    private static (long Offset, long Count, bool Partial) Part(S3Call call, S3Object o, string text)
    {
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var part) || part is < 1 or > 10_000)
        {
            throw S3Exception.InvalidArgument("Part number must be an integer between 1 and 10000, inclusive", "partNumber", text);
        }
        if (call.Header("Range") is not null)
        {
            throw S3Exception.InvalidRequest("Cannot specify both Range header and partNumber query parameter");
        }
        IReadOnlyList<long> sizes = o.PartSizes ?? [o.Size];
        if (part > sizes.Count)
        {
            throw new S3Exception(416, "InvalidPartNumber", "The requested partnumber is not satisfiable",
                ("PartNumberRequested", Number(part)), ("ActualPartCount", Number(sizes.Count)));
        }
        var offset = sizes.Take(part - 1).Sum();
        return (offset, sizes[part - 1], o.PartSizes is not null);
    }

    /// <summary>A single <c>Range: bytes=…</c> (first-last, first-, -suffix); a range past the end is InvalidRange (416).</summary>
    private static (long Offset, long Count, bool Partial) Range(S3Call call, long size)
    {
        var header = call.Header("Range");
        if (header is null || !header.StartsWith("bytes=", StringComparison.OrdinalIgnoreCase) || header.Contains(',', StringComparison.Ordinal))
        {
            return (0, size, false);
        }
        var spec = header[6..].Trim();
        var dash = spec.IndexOf('-', StringComparison.Ordinal);
        if (dash < 0)
        {
            return (0, size, false);
        }
        var firstText = spec[..dash].Trim();
        var lastText = spec[(dash + 1)..].Trim();
        long first, last;
        if (firstText.Length == 0)
        {
            if (!long.TryParse(lastText, NumberStyles.None, CultureInfo.InvariantCulture, out var suffix))
            {
                return (0, size, false);
            }
            if (suffix == 0 || size == 0)
            {
                throw InvalidRange(size);
            }
            first = Math.Max(0, size - suffix);
            last = size - 1;
        }
        else
        {
            if (!long.TryParse(firstText, NumberStyles.None, CultureInfo.InvariantCulture, out first))
            {
                return (0, size, false);
            }
            if (lastText.Length == 0)
            {
                last = size - 1;
            }
            else if (!long.TryParse(lastText, NumberStyles.None, CultureInfo.InvariantCulture, out last) || last < first)
            {
                return (0, size, false);
            }
            if (first >= size)
            {
                throw InvalidRange(size);
            }
            last = Math.Min(last, size - 1);
        }
        return (first, last - first + 1, true);

        S3Exception InvalidRange(long length)
        {
            call.Response.Headers.ContentRange = $"bytes */{length}";
            return new S3Exception(416, "InvalidRange", "The requested range is not satisfiable", ("RangeRequested", header), ("ActualObjectSize", Number(length)));
        }
    }

    private static async Task CopyRangeAsync(Stream source, long offset, long count, Stream destination, CancellationToken cancellationToken)
    {
        source.Seek(offset, SeekOrigin.Begin);
        var buffer = ArrayPool<byte>.Shared.Rent(CopyBuffer);
        try
        {
            while (count > 0)
            {
                var read = await source.ReadAsync(buffer.AsMemory(0, (int)Math.Min(CopyBuffer, count)), cancellationToken);
                if (read == 0)
                {
                    throw new IOException("The object file is shorter than its recorded size.");
                }
                await destination.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
                count -= read;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    // ---- delete ----------------------------------------------------------------------------------

    private static async Task DeleteObjectAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        var outcome = await call.Store.DeleteAsync(bucket, call.Key, call.VersionId, call.Origin);
        if (outcome.DeleteMarker)
        {
            call.Response.Headers["x-amz-delete-marker"] = "true";
        }
        if (outcome.VersionId is { } version)
        {
            WriteVersionHeader(call.Response, version);
        }
        call.Response.StatusCode = 204;
    }

    private static async Task DeleteObjectsAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        var document = await ReadDocumentAsync(call);
        var quiet = document.ChildValue("Quiet") is { } q && q.Equals("true", StringComparison.OrdinalIgnoreCase);
        var objects = document.Children("Object").ToList();
        if (objects.Count is 0 or > 1000)
        {
            throw S3Exception.MalformedXml();
        }
        var results = new List<XElement>();
        foreach (var entry in objects)
        {
            var key = entry.ChildValue("Key") ?? "";
            var versionId = entry.ChildValue("VersionId");
            if (key.Length == 0)
            {
                results.Add(S3Xml.Element("Error", S3Xml.Element("Key", key), S3Xml.Element("Code", "InvalidArgument"), S3Xml.Element("Message", "The key is empty.")));
                continue;
            }
            var outcome = await call.Store.DeleteAsync(bucket, key, versionId, call.Origin);
            if (!quiet)
            {
                results.Add(S3Xml.Element("Deleted", S3Xml.Element("Key", key),
                    versionId is null ? null : S3Xml.Element("VersionId", versionId),
                    outcome.DeleteMarker ? S3Xml.Element("DeleteMarker", "true") : null,
                    outcome.DeleteMarker && versionId is null && outcome.VersionId is { } marker && marker != "null" ? S3Xml.Element("DeleteMarkerVersionId", marker) : null));
            }
        }
        await S3Xml.WriteAsync(call.Context, S3Xml.Element("DeleteResult", results));
    }

    // ---- copy ------------------------------------------------------------------------------------

    /// <summary>The object <c>x-amz-copy-source</c> names (<c>/bucket/key?versionId=…</c>, URL-encoded), in a bucket of the caller's.</summary>
    private static async Task<S3Object> CopySourceAsync(S3Call call)
    {
        var raw = call.Header("x-amz-copy-source")!;
        string? versionId = null;
        var question = raw.IndexOf('?', StringComparison.Ordinal);
        if (question >= 0)
        {
            var query = QueryHelpers.ParseQuery(raw[question..]);
            versionId = query.TryGetValue("versionId", out var v) ? v.ToString() : null;
            raw = raw[..question];
        }
        var path = Uri.UnescapeDataString(raw).TrimStart('/');
        var slash = path.IndexOf('/', StringComparison.Ordinal);
        if (slash <= 0 || slash == path.Length - 1)
        {
            throw S3Exception.InvalidArgument("Invalid copy source object key", "x-amz-copy-source", call.Header("x-amz-copy-source"));
        }
        var sourceBucket = path[..slash];
        var sourceKey = path[(slash + 1)..];
        await call.Store.RefreshIfUnknownAsync(sourceBucket);
        if (!call.Store.TryGetBucket(sourceBucket, out var bucket))
        {
            throw S3Exception.NoSuchBucket(sourceBucket);
        }
        if (bucket.Account != call.Account)
        {
            throw S3Exception.AccessDenied();
        }
        var source = await call.Store.GetAsync(sourceBucket, sourceKey, versionId);
        if (source is null || source.DeleteMarker)
        {
            throw versionId is null ? S3Exception.NoSuchKey(sourceKey) : new S3Exception(404, "NoSuchVersion", "The specified version does not exist.", ("Key", sourceKey), ("VersionId", versionId));
        }
        var modified = DateTimeOffset.FromUnixTimeMilliseconds(source.ModifiedMs / 1000 * 1000);
        if ((call.Header("x-amz-copy-source-if-match") is { } match && !EtagMatches(match, source.ETag))
            || (call.Header("x-amz-copy-source-if-none-match") is { } noneMatch && EtagMatches(noneMatch, source.ETag))
            || (HttpDate(call.Header("x-amz-copy-source-if-unmodified-since")) is { } unmodified && modified > unmodified)
            || (HttpDate(call.Header("x-amz-copy-source-if-modified-since")) is { } since && modified <= since))
        {
            throw new S3Exception(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold");
        }
        return source;
    }

    /// <summary>Copies a byte range of a stored object into a new flushed temporary file, hashing as it goes.</summary>
    private static async Task<Received> CopyBytesAsync(S3Call call, S3Object source, long offset, long count, string? algorithm)
    {
        var temp = call.Store.NewTempFile();
        var buffer = ArrayPool<byte>.Shared.Rent(CopyBuffer);
        try
        {
            using var md5 = IncrementalHash.CreateHash(HashAlgorithmName.MD5);
            var checksum = algorithm is null ? null : S3Checksums.Create(algorithm);
            await using (var input = new FileStream(call.Store.BlobPath(source.Blob!), new FileStreamOptions { Mode = FileMode.Open, Access = FileAccess.Read, Share = FileShare.ReadWrite | FileShare.Delete, BufferSize = 0, Options = FileOptions.Asynchronous | FileOptions.SequentialScan }))
            await using (var output = new FileStream(temp, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, BufferSize = 0, Options = FileOptions.Asynchronous }))
            {
                input.Seek(offset, SeekOrigin.Begin);
                var left = count;
                while (left > 0)
                {
                    var read = await input.ReadAsync(buffer.AsMemory(0, (int)Math.Min(CopyBuffer, left)), call.Aborted);
                    if (read == 0)
                    {
                        throw new IOException("The source object file is shorter than its recorded size.");
                    }
                    md5.AppendData(buffer.AsSpan(0, read));
                    checksum?.Append(buffer.AsSpan(0, read));
                    await output.WriteAsync(buffer.AsMemory(0, read), call.Aborted);
                    left -= read;
                }
                await output.FlushAsync(call.Aborted);
                await DiskSync.FlushAsync(output.SafeFileHandle);
            }
            return new Received(temp, count, md5.GetHashAndReset(), algorithm, checksum?.Finish());
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static async Task CopyObjectAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        var source = await CopySourceAsync(call);
        if (source.Size > MaxSinglePut)
        {
            throw S3Exception.InvalidRequest($"The specified copy source is larger than the maximum allowable size for a copy source: {MaxSinglePut}");
        }
        var replaceMetadata = call.Header("x-amz-metadata-directive") is { } directive && directive.Equals("REPLACE", StringComparison.OrdinalIgnoreCase);
        var replaceTags = call.Header("x-amz-tagging-directive") is { } tagging && tagging.Equals("REPLACE", StringComparison.OrdinalIgnoreCase);
        var algorithm = call.Header("x-amz-checksum-algorithm")?.ToUpperInvariant() ?? source.ChecksumAlgorithm;
        if (algorithm is not null && !S3Checksums.IsKnown(algorithm))
        {
            throw S3Exception.InvalidRequest($"Checksum algorithm {algorithm} is not supported.");
        }
        if (source.Bucket == bucket.Name && source.Key == call.Key && call.VersionId is null && !replaceMetadata
            && call.Header("x-amz-storage-class") is null && call.Header("x-amz-website-redirect-location") is null && call.Header("x-amz-checksum-algorithm") is null)
        {
            throw S3Exception.InvalidRequest("This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.");
        }
        var headers = replaceMetadata ? StoredHeadersOf(call.Request) : new Dictionary<string, string>(source.Headers, StringComparer.OrdinalIgnoreCase);
        var tags = replaceTags ? TagsFromHeader(call.Header("x-amz-tagging")) : new Dictionary<string, string>(source.Tags);
        var received = await CopyBytesAsync(call, source, 0, source.Size, algorithm);
        var blob = await call.Store.AdoptAsync(received.TempFile);
        var etag = Quoted(received.Md5);
        var stored = await call.Store.PutAsync(bucket, new NewObject(call.Key, blob, received.Size, etag, headers, tags, algorithm, received.Checksum,
            algorithm is null ? null : "FULL_OBJECT", null), "ObjectCreated:Copy", call.Origin);
        WriteVersionHeader(call.Response, stored.VersionId);
        if (source.VersionId != "null")
        {
            call.Response.Headers["x-amz-copy-source-version-id"] = source.VersionId;
        }
        await S3Xml.WriteAsync(call.Context, S3Xml.Element("CopyObjectResult",
            S3Xml.Element("ETag", etag), S3Xml.Element("LastModified", S3Xml.Time(stored.ModifiedMs)),
            algorithm is null ? null : S3Xml.Element("Checksum" + algorithm, received.Checksum),
            algorithm is null ? null : S3Xml.Element("ChecksumType", "FULL_OBJECT")));
    }

    // ---- listings --------------------------------------------------------------------------------

    private static int MaxKeys(S3Call call, string parameter = "max-keys")
    {
        var text = call.QueryValue(parameter);
        if (text is null)
        {
            return 1000;
        }
        if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var max) || max < 0)
        {
            throw S3Exception.InvalidArgument($"Provided {parameter} not an integer or within integer range", parameter, text);
        }
        return Math.Min(max, 1000);
    }

    private static async Task ListObjectsAsync(S3Call call, bool v2)
    {
        var bucket = call.RequireBucket();
        var prefix = call.QueryValue("prefix") ?? "";
        var delimiter = call.QueryValue("delimiter") is { Length: > 0 } d ? d : null;
        var maxKeys = MaxKeys(call);
        var urlEncoded = call.QueryValue("encoding-type") is { } encoding && encoding == "url";
        if (call.QueryValue("encoding-type") is { } requested && requested != "url")
        {
            throw S3Exception.InvalidArgument("Invalid Encoding Method specified in Request", "encoding-type", requested);
        }
        string? after;
        var token = call.QueryValue("continuation-token");
        var startAfter = call.QueryValue("start-after");
        if (v2)
        {
            after = token is not null ? DecodeToken(token) : startAfter;
        }
        else
        {
            after = call.QueryValue("marker") is { Length: > 0 } marker ? marker : null;
        }
        var page = maxKeys == 0 ? new ListPage([], [], false, null, null) : await call.Store.ListAsync(bucket.Name, prefix, delimiter, after, maxKeys);
        string Encode(string value) => urlEncoded ? Uri.EscapeDataString(value).Replace("%2F", "/", StringComparison.Ordinal) : value;
        var fetchOwner = !v2 || call.QueryValue("fetch-owner") == "true";
        var contents = page.Objects.Select(o => S3Xml.Element("Contents",
            S3Xml.Element("Key", Encode(o.Key)),
            S3Xml.Element("LastModified", S3Xml.Time(o.ModifiedMs)),
            S3Xml.Element("ETag", o.ETag),
            o.ChecksumAlgorithm is null ? null : S3Xml.Element("ChecksumAlgorithm", o.ChecksumAlgorithm),
            o.ChecksumType is null ? null : S3Xml.Element("ChecksumType", o.ChecksumType),
            S3Xml.Element("Size", Number(o.Size)),
            fetchOwner ? Owner(bucket.Account) : null,
            S3Xml.Element("StorageClass", o.Headers.GetValueOrDefault("x-amz-storage-class", "STANDARD"))));
        var prefixes = page.CommonPrefixes.Select(p => S3Xml.Element("CommonPrefixes", S3Xml.Element("Prefix", Encode(p))));
        XElement root;
        if (v2)
        {
            root = S3Xml.Element("ListBucketResult",
                S3Xml.Element("Name", bucket.Name),
                S3Xml.Element("Prefix", Encode(prefix)),
                delimiter is null ? null : S3Xml.Element("Delimiter", Encode(delimiter)),
                S3Xml.Element("MaxKeys", Number(maxKeys)),
                urlEncoded ? S3Xml.Element("EncodingType", "url") : null,
                S3Xml.Element("KeyCount", Number(page.Objects.Count + page.CommonPrefixes.Count)),
                S3Xml.Element("IsTruncated", Bool(page.Truncated)),
                token is null ? null : S3Xml.Element("ContinuationToken", token),
                page.Truncated && page.NextMarker is { } next ? S3Xml.Element("NextContinuationToken", EncodeToken(next)) : null,
                startAfter is null ? null : S3Xml.Element("StartAfter", Encode(startAfter)),
                contents, prefixes);
        }
        else
        {
            root = S3Xml.Element("ListBucketResult",
                S3Xml.Element("Name", bucket.Name),
                S3Xml.Element("Prefix", Encode(prefix)),
                S3Xml.Element("Marker", Encode(after ?? "")),
                page.Truncated && delimiter is not null && page.NextMarker is { } next ? S3Xml.Element("NextMarker", Encode(next)) : null,
                S3Xml.Element("MaxKeys", Number(maxKeys)),
                delimiter is null ? null : S3Xml.Element("Delimiter", Encode(delimiter)),
                urlEncoded ? S3Xml.Element("EncodingType", "url") : null,
                S3Xml.Element("IsTruncated", Bool(page.Truncated)),
                contents, prefixes);
        }
        await S3Xml.WriteAsync(call.Context, root);
    }

    private static string EncodeToken(string marker) => WebEncoders.Base64UrlEncode(Encoding.UTF8.GetBytes("lamina1:" + marker));

    private static string DecodeToken(string token)
    {
        try
        {
            var text = Encoding.UTF8.GetString(WebEncoders.Base64UrlDecode(token));
            if (text.StartsWith("lamina1:", StringComparison.Ordinal))
            {
                return text["lamina1:".Length..];
            }
        }
        catch (FormatException)
        {
        }
        throw S3Exception.InvalidArgument("The continuation token provided is incorrect", "continuation-token", token);
    }

    private static async Task ListVersionsAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        var prefix = call.QueryValue("prefix") ?? "";
        var delimiter = call.QueryValue("delimiter") is { Length: > 0 } d ? d : null;
        var maxKeys = MaxKeys(call);
        var keyMarker = call.QueryValue("key-marker") is { Length: > 0 } k ? k : null;
        var versionMarker = call.QueryValue("version-id-marker") is { Length: > 0 } v ? v : null;
        var urlEncoded = call.QueryValue("encoding-type") == "url";
        string Encode(string value) => urlEncoded ? Uri.EscapeDataString(value).Replace("%2F", "/", StringComparison.Ordinal) : value;
        var page = maxKeys == 0 ? new ListPage([], [], false, null, null) : await call.Store.ListVersionsAsync(bucket.Name, prefix, delimiter, keyMarker, versionMarker, maxKeys);
        await S3Xml.WriteAsync(call.Context, S3Xml.Element("ListVersionsResult",
            S3Xml.Element("Name", bucket.Name),
            S3Xml.Element("Prefix", Encode(prefix)),
            S3Xml.Element("KeyMarker", Encode(keyMarker ?? "")),
            S3Xml.Element("VersionIdMarker", versionMarker ?? ""),
            page.Truncated && page.NextMarker is { } nextKey ? S3Xml.Element("NextKeyMarker", Encode(nextKey)) : null,
            page.Truncated && page.NextVersionMarker is { } nextVersion ? S3Xml.Element("NextVersionIdMarker", nextVersion) : null,
            S3Xml.Element("MaxKeys", Number(maxKeys)),
            delimiter is null ? null : S3Xml.Element("Delimiter", Encode(delimiter)),
            urlEncoded ? S3Xml.Element("EncodingType", "url") : null,
            S3Xml.Element("IsTruncated", Bool(page.Truncated)),
            page.Objects.Select(o => o.DeleteMarker
                ? S3Xml.Element("DeleteMarker", S3Xml.Element("Key", Encode(o.Key)), S3Xml.Element("VersionId", o.VersionId),
                    S3Xml.Element("IsLatest", Bool(o.IsLatest)), S3Xml.Element("LastModified", S3Xml.Time(o.ModifiedMs)), Owner(bucket.Account))
                : S3Xml.Element("Version", S3Xml.Element("Key", Encode(o.Key)), S3Xml.Element("VersionId", o.VersionId),
                    S3Xml.Element("IsLatest", Bool(o.IsLatest)), S3Xml.Element("LastModified", S3Xml.Time(o.ModifiedMs)), S3Xml.Element("ETag", o.ETag),
                    S3Xml.Element("Size", Number(o.Size)), S3Xml.Element("StorageClass", "STANDARD"), Owner(bucket.Account))),
            page.CommonPrefixes.Select(p => S3Xml.Element("CommonPrefixes", S3Xml.Element("Prefix", Encode(p))))));
    }

    // ---- object tagging --------------------------------------------------------------------------

    private static async Task<S3Object> TaggedObjectAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        var versionId = call.VersionId;
        var o = await call.Store.GetAsync(bucket.Name, call.Key, versionId);
        if (o is null || o.DeleteMarker)
        {
            throw versionId is null ? S3Exception.NoSuchKey(call.Key) : new S3Exception(404, "NoSuchVersion", "The specified version does not exist.", ("Key", call.Key), ("VersionId", versionId));
        }
        WriteVersionHeader(call.Response, o.VersionId);
        return o;
    }

    private static async Task PutObjectTaggingAsync(S3Call call)
    {
        var o = await TaggedObjectAsync(call);
        var tags = ReadTags(await ReadDocumentAsync(call), 10);
        await call.Store.SetObjectTagsAsync(o, tags);
        call.Response.StatusCode = 200;
    }

    private static async Task GetObjectTaggingAsync(S3Call call)
    {
        var o = await TaggedObjectAsync(call);
        await S3Xml.WriteAsync(call.Context, TagDocument(o.Tags));
    }

    private static async Task DeleteObjectTaggingAsync(S3Call call)
    {
        var o = await TaggedObjectAsync(call);
        await call.Store.SetObjectTagsAsync(o, new Dictionary<string, string>());
        call.Response.StatusCode = 204;
    }
}
