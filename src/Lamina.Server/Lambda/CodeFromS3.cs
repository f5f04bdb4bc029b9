using Lamina.Server.Protocols;
using Lamina.Server.S3;

namespace Lamina.Server.Lambda;

/// <summary>
/// Deployment packages named by <c>S3Bucket</c> / <c>S3Key</c> / <c>S3ObjectVersion</c> (CreateFunction, UpdateFunctionCode,
/// PublishLayerVersion): read from Lamina's own object store, from a bucket of the function's account, with the errors
/// Lambda gives when its GetObject fails.
/// </summary>
internal static class CodeFromS3
{
    public static async Task<(byte[]? Zip, AwsError? Error)> ReadAsync(HttpContext context, string account, string bucketName, string key, string? version, CancellationToken cancellationToken)
    {
        var store = context.RequestServices.GetRequiredService<ObjectStore>();
        await store.RefreshIfUnknownAsync(bucketName);
        if (!store.TryGetBucket(bucketName, out var bucket))
        {
            return (null, GetObjectFailed("NoSuchBucket", "The specified bucket does not exist"));
        }
        if (bucket.Account != account)
        {
            return (null, GetObjectFailed("AccessDenied", "Access Denied"));
        }
        var o = await store.GetAsync(bucketName, key, version);
        if (o is null || o.DeleteMarker)
        {
            return version is null
                ? (null, GetObjectFailed("NoSuchKey", "The specified key does not exist."))
                : (null, GetObjectFailed("NoSuchVersion", "The specified version does not exist."));
        }
        if (o.Size > CodeStore.MaxZippedBytes)
        {
            return (null, AwsError.InvalidParameter($"Unzipped size must be smaller than {CodeStore.MaxUnzippedBytes} bytes; Lamina reads packages from S3 up to {CodeStore.MaxZippedBytes} bytes zipped ({o.Size} given)."));
        }
        try
        {
            return (await File.ReadAllBytesAsync(store.BlobPath(o.Blob!), cancellationToken), null);
        }
        catch (FileNotFoundException)
        {
            // Replaced or deleted between the lookup and the read.
            return (null, GetObjectFailed("NoSuchKey", "The specified key does not exist."));
        }
    }

    private static AwsError GetObjectFailed(string code, string message) =>
        AwsError.InvalidParameter($"Error occurred while GetObject. S3 Error Code: {code}. S3 Error Message: {message}");
}
