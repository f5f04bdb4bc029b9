using System.Buffers;
using System.Globalization;
using System.Security.Cryptography;

namespace Lamina.Server.S3;

/// <summary>
/// Multipart uploads: each part streams to its own file; CompleteMultipartUpload concatenates them into the object's file
/// (streaming, computing the full-object checksum when asked) and commits it with S3's multipart ETag
/// (MD5 of the parts' MD5s, <c>-N</c>) in the same transaction that removes the upload.
/// </summary>
internal static partial class S3Api
{
    /// <summary>Every part but the last must be at least 5 MiB, as S3.</summary>
    private const long MinPartSize = 5L * 1024 * 1024;

    private const int MaxParts = 10_000;

    private static async Task<MultipartUpload> RequireUploadAsync(S3Call call)
    {
        var uploadId = call.QueryValue("uploadId") ?? "";
        return await call.Store.GetUploadAsync(call.BucketName!, call.Key, uploadId) ?? throw S3Exception.NoSuchUpload(uploadId);
    }

    private static async Task CreateUploadAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        var algorithm = call.Header("x-amz-checksum-algorithm")?.ToUpperInvariant();
        if (algorithm is not null && !S3Checksums.IsKnown(algorithm))
        {
            throw S3Exception.InvalidRequest($"Checksum algorithm {algorithm} is not supported.");
        }
        var type = call.Header("x-amz-checksum-type")?.ToUpperInvariant();
        if (type is not null and not ("FULL_OBJECT" or "COMPOSITE"))
        {
            throw S3Exception.InvalidRequest("Value for x-amz-checksum-type header is invalid.");
        }
        if (algorithm is not null)
        {
            // S3's defaults and pairings: CRC64NVME is full-object only, the SHAs composite only, the CRC32s either.
            type ??= algorithm == "CRC64NVME" ? "FULL_OBJECT" : "COMPOSITE";
            if ((algorithm == "CRC64NVME" && type == "COMPOSITE") || (algorithm.StartsWith("SHA", StringComparison.Ordinal) && type == "FULL_OBJECT"))
            {
                throw S3Exception.InvalidRequest($"The {type} checksum type cannot be used with the {algorithm.ToLowerInvariant()} checksum algorithm.");
            }
        }
        var upload = await call.Store.CreateUploadAsync(bucket.Name, call.Key, StoredHeadersOf(call.Request), TagsFromHeader(call.Header("x-amz-tagging")), algorithm, type);
        if (algorithm is not null)
        {
            call.Response.Headers["x-amz-checksum-algorithm"] = algorithm;
            call.Response.Headers["x-amz-checksum-type"] = type;
        }
        await S3Xml.WriteAsync(call.Context, S3Xml.Element("InitiateMultipartUploadResult",
            S3Xml.Element("Bucket", bucket.Name), S3Xml.Element("Key", call.Key), S3Xml.Element("UploadId", upload.UploadId)));
    }

    private static int PartNumber(S3Call call)
    {
        var text = call.QueryValue("partNumber");
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var number) || number is < 1 or > MaxParts)
        {
            throw S3Exception.InvalidArgument("Part number must be an integer between 1 and 10000, inclusive", "partNumber", text);
        }
        return number;
    }

    private static async Task UploadPartAsync(S3Call call)
    {
        call.RequireBucket();
        var number = PartNumber(call);
        var upload = await RequireUploadAsync(call);
        var received = await ReceiveAsync(call, MaxSinglePut);
        if (upload.ChecksumAlgorithm is not null && received.ChecksumAlgorithm is not null && received.ChecksumAlgorithm != upload.ChecksumAlgorithm)
        {
            File.Delete(received.TempFile);
            throw S3Exception.InvalidRequest($"Checksum Type mismatch occurred, expected checksum Type: {upload.ChecksumAlgorithm.ToLowerInvariant()}, actual checksum Type: {received.ChecksumAlgorithm.ToLowerInvariant()}");
        }
        var checksum = received.Checksum;
        if (upload.ChecksumAlgorithm is not null && received.ChecksumAlgorithm is null)
        {
            // The client sent none: compute the upload's algorithm over what was stored, so the object's checksum can be made.
            checksum = await ChecksumOfFileAsync(received.TempFile, upload.ChecksumAlgorithm, call.Aborted);
        }
        await StorePartAsync(call, upload, number, received, checksum);
        call.Response.Headers.ETag = Quoted(received.Md5);
        WriteChecksumHeaders(call.Response, upload.ChecksumAlgorithm is null ? received.ChecksumAlgorithm : upload.ChecksumAlgorithm, checksum, null);
        call.Response.Headers.Remove("x-amz-checksum-type");
        call.Response.StatusCode = 200;
    }

    private static async Task StorePartAsync(S3Call call, MultipartUpload upload, int number, Received received, string? checksum)
    {
        var blob = await call.Store.AdoptAsync(received.TempFile);
        if (!await call.Store.PutPartAsync(upload.UploadId, new UploadPart(number, received.Size, Quoted(received.Md5), call.Store.Now, blob, checksum)))
        {
            throw S3Exception.NoSuchUpload(upload.UploadId);
        }
    }

    private static async Task<string> ChecksumOfFileAsync(string path, string algorithm, CancellationToken cancellationToken)
    {
        var hasher = S3Checksums.Create(algorithm);
        var buffer = ArrayPool<byte>.Shared.Rent(CopyBuffer);
        try
        {
            await using var file = new FileStream(path, new FileStreamOptions { Mode = FileMode.Open, Access = FileAccess.Read, BufferSize = 0, Options = FileOptions.Asynchronous | FileOptions.SequentialScan });
            int read;
            while ((read = await file.ReadAsync(buffer.AsMemory(0, CopyBuffer), cancellationToken)) > 0)
            {
                hasher.Append(buffer.AsSpan(0, read));
            }
            return hasher.Finish();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static async Task UploadPartCopyAsync(S3Call call)
    {
        call.RequireBucket();
        var number = PartNumber(call);
        var upload = await RequireUploadAsync(call);
        var source = await CopySourceAsync(call);
        long offset = 0, count = source.Size;
        if (call.Header("x-amz-copy-source-range") is { } range)
        {
            var spec = range.StartsWith("bytes=", StringComparison.Ordinal) ? range[6..] : "";
            var dash = spec.IndexOf('-', StringComparison.Ordinal);
            if (dash <= 0 || !long.TryParse(spec[..dash], NumberStyles.None, CultureInfo.InvariantCulture, out var first)
                || !long.TryParse(spec[(dash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var last) || last < first || last >= source.Size)
            {
                throw S3Exception.InvalidArgument("The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy",
                    "x-amz-copy-source-range", range);
            }
            offset = first;
            count = last - first + 1;
        }
        if (count > MaxSinglePut)
        {
            throw S3Exception.InvalidRequest($"The specified copy source is larger than the maximum allowable size for a copy source: {MaxSinglePut}");
        }
        var received = await CopyBytesAsync(call, source, offset, count, upload.ChecksumAlgorithm);
        await StorePartAsync(call, upload, number, received, received.Checksum);
        if (source.VersionId != "null")
        {
            call.Response.Headers["x-amz-copy-source-version-id"] = source.VersionId;
        }
        await S3Xml.WriteAsync(call.Context, S3Xml.Element("CopyPartResult",
            S3Xml.Element("ETag", Quoted(received.Md5)), S3Xml.Element("LastModified", S3Xml.Time(call.Store.Now)),
            upload.ChecksumAlgorithm is null ? null : S3Xml.Element("Checksum" + upload.ChecksumAlgorithm, received.Checksum)));
    }

    private static async Task CompleteUploadAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        var upload = await RequireUploadAsync(call);
        var document = await ReadDocumentAsync(call);
        var requested = document.Children("Part").Select(p => (
            Number: int.TryParse(p.ChildValue("PartNumber"), NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : -1,
            ETag: p.ChildValue("ETag")?.Trim('"'),
            Checksum: upload.ChecksumAlgorithm is null ? null : p.ChildValue("Checksum" + upload.ChecksumAlgorithm))).ToList();
        if (requested.Count == 0)
        {
            throw S3Exception.MalformedXml();
        }
        var stored = (await call.Store.ListPartsAsync(upload.UploadId)).ToDictionary(p => p.PartNumber);
        var parts = new List<UploadPart>(requested.Count);
        var previous = 0;
        foreach (var (number, etag, checksum) in requested)
        {
            if (number <= previous)
            {
                throw new S3Exception(400, "InvalidPartOrder", "The list of parts was not in ascending order. The parts list must be specified in order by part number.");
            }
            previous = number;
            if (!stored.TryGetValue(number, out var part) || etag is null || part.ETag.Trim('"') != etag || (checksum is not null && checksum != part.Checksum))
            {
                throw new S3Exception(400, "InvalidPart", "One or more of the specified parts could not be found.  The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.",
                    ("UploadId", upload.UploadId), ("PartNumber", Number(number)), ("ETag", etag ?? ""));
            }
            parts.Add(part);
        }
        for (var i = 0; i < parts.Count - 1; i++)
        {
            if (parts[i].Size < MinPartSize)
            {
                throw new S3Exception(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed object size.",
                    ("ProposedSize", Number(parts[i].Size)), ("MinSizeAllowed", Number(MinPartSize)), ("PartNumber", Number(parts[i].PartNumber)), ("ETag", parts[i].ETag));
            }
        }

        // One file of all the parts, in order; the full-object checksum computed on the way when that is the type.
        var temp = call.Store.NewTempFile();
        var full = upload is { ChecksumAlgorithm: { } fullAlgorithm, ChecksumType: "FULL_OBJECT" } ? S3Checksums.Create(fullAlgorithm) : null;
        var buffer = ArrayPool<byte>.Shared.Rent(CopyBuffer);
        long size = 0;
        try
        {
            await using (var output = new FileStream(temp, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, BufferSize = 0, Options = FileOptions.Asynchronous, PreallocationSize = parts.Sum(p => p.Size) }))
            {
                foreach (var part in parts)
                {
                    await using var input = new FileStream(call.Store.BlobPath(part.Blob), new FileStreamOptions { Mode = FileMode.Open, Access = FileAccess.Read, BufferSize = 0, Options = FileOptions.Asynchronous | FileOptions.SequentialScan });
                    int read;
                    while ((read = await input.ReadAsync(buffer.AsMemory(0, CopyBuffer), call.Aborted)) > 0)
                    {
                        full?.Append(buffer.AsSpan(0, read));
                        await output.WriteAsync(buffer.AsMemory(0, read), call.Aborted);
                        size += read;
                    }
                }
                await output.FlushAsync(call.Aborted);
                await DiskSync.FlushAsync(output.SafeFileHandle);
            }
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

        // S3's multipart ETag: the MD5 of the parts' binary MD5s, and the part count (wire format, not security).
#pragma warning disable CA5351
        var objectETag = "\"" + Convert.ToHexStringLower(MD5.HashData(parts.SelectMany(p => Convert.FromHexString(p.ETag.Trim('"'))).ToArray())) + "-" + Number(parts.Count) + "\"";
#pragma warning restore CA5351
        string? objectChecksum = null;
        if (upload.ChecksumAlgorithm is { } algorithm)
        {
            objectChecksum = full is not null
                ? full.Finish()
                : S3Checksums.Of(algorithm, parts.SelectMany(p => p.Checksum is null ? [] : Convert.FromBase64String(p.Checksum)).ToArray()) + "-" + Number(parts.Count);
        }
        var blob = await call.Store.AdoptAsync(temp);
        var o = await call.Store.PutAsync(bucket, new NewObject(upload.Key, blob, size, objectETag, upload.Headers, upload.Tags, upload.ChecksumAlgorithm, objectChecksum,
            upload.ChecksumType, parts.Select(p => p.Size).ToArray()), "ObjectCreated:CompleteMultipartUpload", call.Origin, completedUpload: upload.UploadId);
        WriteVersionHeader(call.Response, o.VersionId);
        var location = $"{call.Request.Scheme}://{call.Request.Host}/{bucket.Name}/{Uri.EscapeDataString(upload.Key).Replace("%2F", "/", StringComparison.Ordinal)}";
        await S3Xml.WriteAsync(call.Context, S3Xml.Element("CompleteMultipartUploadResult",
            S3Xml.Element("Location", location), S3Xml.Element("Bucket", bucket.Name), S3Xml.Element("Key", upload.Key), S3Xml.Element("ETag", objectETag),
            upload.ChecksumAlgorithm is null ? null : S3Xml.Element("Checksum" + upload.ChecksumAlgorithm, objectChecksum),
            upload.ChecksumType is null ? null : S3Xml.Element("ChecksumType", upload.ChecksumType)));
    }

    private static async Task AbortUploadAsync(S3Call call)
    {
        call.RequireBucket();
        var upload = await RequireUploadAsync(call);
        await call.Store.AbortUploadAsync(upload.UploadId);
        call.Response.StatusCode = 204;
    }

    private static async Task ListPartsAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        var upload = await RequireUploadAsync(call);
        var maxParts = MaxKeys(call, "max-parts");
        var marker = int.TryParse(call.QueryValue("part-number-marker"), NumberStyles.None, CultureInfo.InvariantCulture, out var m) ? m : 0;
        var parts = (await call.Store.ListPartsAsync(upload.UploadId)).Where(p => p.PartNumber > marker).ToList();
        var truncated = parts.Count > maxParts;
        var page = parts.Take(maxParts).ToList();
        await S3Xml.WriteAsync(call.Context, S3Xml.Element("ListPartsResult",
            S3Xml.Element("Bucket", bucket.Name), S3Xml.Element("Key", upload.Key), S3Xml.Element("UploadId", upload.UploadId),
            S3Xml.Element("PartNumberMarker", Number(marker)),
            S3Xml.Element("NextPartNumberMarker", Number(page.Count > 0 ? page[^1].PartNumber : marker)),
            S3Xml.Element("MaxParts", Number(maxParts)), S3Xml.Element("IsTruncated", Bool(truncated)),
            page.Select(p => S3Xml.Element("Part", S3Xml.Element("PartNumber", Number(p.PartNumber)), S3Xml.Element("LastModified", S3Xml.Time(p.ModifiedMs)),
                S3Xml.Element("ETag", p.ETag), S3Xml.Element("Size", Number(p.Size)),
                upload.ChecksumAlgorithm is null || p.Checksum is null ? null : S3Xml.Element("Checksum" + upload.ChecksumAlgorithm, p.Checksum))),
            S3Xml.Element("Initiator", S3Xml.Element("ID", call.Account), S3Xml.Element("DisplayName", call.Account)),
            Owner(bucket.Account), S3Xml.Element("StorageClass", "STANDARD"),
            upload.ChecksumAlgorithm is null ? null : S3Xml.Element("ChecksumAlgorithm", upload.ChecksumAlgorithm),
            upload.ChecksumType is null ? null : S3Xml.Element("ChecksumType", upload.ChecksumType)));
    }

    private static async Task ListUploadsAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        var prefix = call.QueryValue("prefix") ?? "";
        var maxUploads = MaxKeys(call, "max-uploads");
        var keyMarker = call.QueryValue("key-marker") ?? "";
        var uploadMarker = call.QueryValue("upload-id-marker") ?? "";
        var uploads = await call.Store.ListUploadsAsync(bucket.Name, prefix, keyMarker, uploadMarker, maxUploads + 1);
        var truncated = maxUploads > 0 && uploads.Count > maxUploads; // max-uploads=0: an empty page, with no marker to go on from
        var page = uploads.Take(maxUploads).ToList();
        await S3Xml.WriteAsync(call.Context, S3Xml.Element("ListMultipartUploadsResult",
            S3Xml.Element("Bucket", bucket.Name), S3Xml.Element("KeyMarker", keyMarker), S3Xml.Element("UploadIdMarker", uploadMarker),
            truncated ? S3Xml.Element("NextKeyMarker", page[^1].Key) : null,
            truncated ? S3Xml.Element("NextUploadIdMarker", page[^1].UploadId) : null,
            S3Xml.Element("Prefix", prefix),
            S3Xml.Element("MaxUploads", Number(maxUploads)), S3Xml.Element("IsTruncated", Bool(truncated)),
            page.Select(u => S3Xml.Element("Upload", S3Xml.Element("Key", u.Key), S3Xml.Element("UploadId", u.UploadId),
                S3Xml.Element("Initiator", S3Xml.Element("ID", call.Account), S3Xml.Element("DisplayName", call.Account)),
                Owner(bucket.Account), S3Xml.Element("StorageClass", "STANDARD"), S3Xml.Element("Initiated", S3Xml.Time(u.InitiatedMs)),
                u.ChecksumAlgorithm is null ? null : S3Xml.Element("ChecksumAlgorithm", u.ChecksumAlgorithm)))));
    }
}
