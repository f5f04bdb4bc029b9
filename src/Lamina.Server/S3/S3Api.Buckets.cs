using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace Lamina.Server.S3;

/// <summary>Bucket operations: create, head, delete, list, location, versioning, tagging, CORS, notifications.</summary>
internal static partial class S3Api
{
    [GeneratedRegex(@"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", RegexOptions.CultureInvariant)]
    private static partial Regex BucketName();

    /// <summary>S3's naming rules for general purpose buckets; the reason, or null when the name is valid.</summary>
    public static string? InvalidBucketName(string name)
    {
        if (!BucketName().IsMatch(name))
        {
            return "Bucket names must be 3 to 63 characters of lower-case letters, digits, dots and hyphens, and begin and end with a letter or digit.";
        }
        if (name.Contains("..", StringComparison.Ordinal) || name.Contains(".-", StringComparison.Ordinal) || name.Contains("-.", StringComparison.Ordinal))
        {
            return "Bucket names must not contain two adjacent periods, or a period next to a hyphen.";
        }
        if (IPAddress.TryParse(name, out var address) && address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork)
        {
            return "Bucket names must not be formatted as an IP address.";
        }
        if (name.StartsWith("xn--", StringComparison.Ordinal) || name.StartsWith("sthree-", StringComparison.Ordinal)
            || name.EndsWith("-s3alias", StringComparison.Ordinal) || name.EndsWith("--ol-s3", StringComparison.Ordinal))
        {
            return "Bucket names must not begin with xn-- or sthree-, or end with -s3alias or --ol-s3.";
        }
        return null;
    }

    private static XElement Owner(string account) => S3Xml.Element("Owner", S3Xml.Element("ID", account), S3Xml.Element("DisplayName", account));

    private static Task ListBucketsAsync(S3Call call)
    {
        var prefix = call.QueryValue("prefix") ?? "";
        var buckets = call.Store.Buckets.Where(b => b.Account == call.Account && b.Name.StartsWith(prefix, StringComparison.Ordinal))
            .OrderBy(b => b.Name, StringComparer.Ordinal);
        return S3Xml.WriteAsync(call.Context, S3Xml.Element("ListAllMyBucketsResult",
            Owner(call.Account),
            S3Xml.Element("Buckets", buckets.Select(b => S3Xml.Element("Bucket",
                S3Xml.Element("Name", b.Name), S3Xml.Element("CreationDate", S3Xml.Time(b.CreatedMs)), S3Xml.Element("BucketRegion", b.Region)))),
            prefix.Length > 0 ? S3Xml.Element("Prefix", prefix) : null));
    }

    private static async Task CreateBucketAsync(S3Call call)
    {
        var name = call.BucketName!;
        if (InvalidBucketName(name) is { } reason)
        {
            throw new S3Exception(400, "InvalidBucketName", $"The specified bucket is not valid. {reason}", ("BucketName", name));
        }
        var region = call.Options.Region;
        if (call.Request.ContentLength is > 0 || call.Request.Headers.TransferEncoding.Count > 0)
        {
            var configuration = await ReadDocumentAsync(call);
            if (configuration.ChildValue("LocationConstraint") is { Length: > 0 } constraint)
            {
                if (constraint == "us-east-1")
                {
                    throw new S3Exception(400, "InvalidLocationConstraint", "The specified location-constraint is not valid", ("LocationConstraint", constraint));
                }
                region = constraint;
            }
        }
        var (bucket, created) = await call.Store.CreateBucketAsync(name, call.Account, region);
        if (!created)
        {
            throw bucket.Account == call.Account
                ? new S3Exception(409, "BucketAlreadyOwnedByYou", "Your previous request to create the named bucket succeeded and you already own it.", ("BucketName", name))
                : new S3Exception(409, "BucketAlreadyExists", "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.", ("BucketName", name));
        }
        call.Response.Headers.Location = "/" + name;
        call.Response.StatusCode = 200;
    }

    private static Task HeadBucketAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        call.Response.Headers["x-amz-bucket-region"] = bucket.Region;
        call.Response.StatusCode = 200;
        return Task.CompletedTask;
    }

    private static async Task DeleteBucketAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        if (!await call.Store.DeleteBucketAsync(bucket.Name))
        {
            throw new S3Exception(409, "BucketNotEmpty", "The bucket you tried to delete is not empty", ("BucketName", bucket.Name));
        }
        call.Response.StatusCode = 204;
    }

    private static Task GetLocationAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        // us-east-1 is the empty constraint, as S3 answers (the SDKs map it back).
        return S3Xml.WriteAsync(call.Context, S3Xml.Element("LocationConstraint", bucket.Region == "us-east-1" ? null : bucket.Region));
    }

    private static async Task PutVersioningAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        var document = await ReadDocumentAsync(call);
        var status = document.ChildValue("Status");
        if (status is not ("Enabled" or "Suspended"))
        {
            throw S3Exception.MalformedXml();
        }
        await call.Store.SetVersioningAsync(bucket.Name, status);
        call.Response.StatusCode = 200;
    }

    private static Task GetVersioningAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        return S3Xml.WriteAsync(call.Context, S3Xml.Element("VersioningConfiguration", S3Xml.Optional("Status", bucket.Versioning)));
    }

    /// <summary>A TagSet document's tags, with S3's limits (50 on a bucket, 10 on an object; key 128, value 256 characters).</summary>
    internal static Dictionary<string, string> ReadTags(XElement document, int max)
    {
        var tags = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var tag in document.Child("TagSet")?.Children("Tag") ?? [])
        {
            var key = tag.ChildValue("Key");
            var value = tag.ChildValue("Value") ?? "";
            if (string.IsNullOrEmpty(key) || key.Length > 128 || value.Length > 256)
            {
                throw new S3Exception(400, "InvalidTag", "The TagKey you have provided is invalid: a key has 1 to 128 characters, a value at most 256.");
            }
            if (!tags.TryAdd(key, value))
            {
                throw new S3Exception(400, "InvalidTag", "Cannot provide multiple Tags with the same key", ("TagKey", key));
            }
        }
        if (tags.Count > max)
        {
            throw new S3Exception(400, "BadRequest", $"Object tags cannot be greater than {max}");
        }
        return tags;
    }

    internal static XElement TagDocument(IReadOnlyDictionary<string, string> tags) => S3Xml.Element("Tagging",
        S3Xml.Element("TagSet", tags.Select(t => S3Xml.Element("Tag", S3Xml.Element("Key", t.Key), S3Xml.Element("Value", t.Value)))));

    private static async Task PutBucketTaggingAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        var tags = ReadTags(await ReadDocumentAsync(call), 50);
        await call.Store.SetTagsAsync(bucket.Name, tags);
        call.Response.StatusCode = 204;
    }

    private static Task GetBucketTaggingAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        if (bucket.Tags.Count == 0)
        {
            throw new S3Exception(404, "NoSuchTagSet", "The TagSet does not exist", ("BucketName", bucket.Name));
        }
        return S3Xml.WriteAsync(call.Context, TagDocument(bucket.Tags));
    }

    private static async Task DeleteBucketTaggingAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        await call.Store.SetTagsAsync(bucket.Name, new Dictionary<string, string>());
        call.Response.StatusCode = 204;
    }

    private static async Task PutCorsAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        var rules = CorsRule.Parse(await ReadDocumentAsync(call), validate: true);
        await call.Store.SetCorsAsync(bucket.Name, CorsRule.Render(rules).ToString(SaveOptions.DisableFormatting));
        call.Response.StatusCode = 200;
    }

    private static Task GetCorsAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        if (bucket.CorsXml is null)
        {
            throw new S3Exception(404, "NoSuchCORSConfiguration", "The CORS configuration does not exist", ("BucketName", bucket.Name));
        }
        return S3Xml.WriteAsync(call.Context, CorsRule.Render(bucket.Cors));
    }

    private static async Task DeleteCorsAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        await call.Store.SetCorsAsync(bucket.Name, null);
        call.Response.StatusCode = 204;
    }

    private static async Task PutNotificationAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        var targets = S3Notifications.Parse(await ReadDocumentAsync(call), validate: true);
        var skipValidation = call.Header("x-amz-skip-destination-validation") == "true";
        if (!skipValidation && call.Notifications.Unvalidated(bucket, targets) is { Count: > 0 } failed)
        {
            throw new S3Exception(400, "InvalidArgument", "Unable to validate the following destination configurations",
                failed.Select(arn => ("ArgumentName", arn)).Concat(failed.Select(arn => ("ArgumentValue", "Not authorized to invoke function [" + arn + "]"))).ToArray());
        }
        if (targets.GroupBy(t => t.Id).Any(g => g.Count() > 1))
        {
            throw S3Exception.InvalidArgument("Configuration ids must be unique within a notification configuration.");
        }
        await call.Store.SetNotificationAsync(bucket.Name, targets.Count == 0 ? null : S3Notifications.Render(targets).ToString(SaveOptions.DisableFormatting));
        if (!skipValidation)
        {
            await call.Notifications.SendTestEventsAsync(bucket, targets, call.RequestId);
        }
        call.Response.StatusCode = 200;
    }

    private static Task GetNotificationAsync(S3Call call)
    {
        var bucket = call.RequireBucket();
        return S3Xml.WriteAsync(call.Context, S3Notifications.Render(bucket.Notifications));
    }

    private static Task GetAclAsync(S3Call call)
    {
        call.RequireBucket();
        return S3Xml.WriteAsync(call.Context, S3Xml.Element("AccessControlPolicy", Owner(call.Account),
            S3Xml.Element("AccessControlList", S3Xml.Element("Grant",
                new XElement(XName.Get("Grantee", S3Xml.Namespace), new XAttribute(XNamespace.Xmlns + "xsi", "http://www.w3.org/2001/XMLSchema-instance"),
                    new XAttribute(XName.Get("type", "http://www.w3.org/2001/XMLSchema-instance"), "CanonicalUser"),
                    S3Xml.Element("ID", call.Account), S3Xml.Element("DisplayName", call.Account)),
                S3Xml.Element("Permission", "FULL_CONTROL")))));
    }

    // ACLs are accepted and not enforced: every bucket is its owner's alone (S3's default, BucketOwnerEnforced).
    private static async Task AcceptAclAsync(S3Call call)
    {
        call.RequireBucket();
        if (call.Key.Length > 0 && await call.Store.GetAsync(call.BucketName!, call.Key, call.VersionId) is null)
        {
            throw S3Exception.NoSuchKey(call.Key);
        }
        await call.Request.Body.CopyToAsync(Stream.Null, call.Aborted);
        call.Response.StatusCode = 200;
    }

    private static string Bool(bool value) => value ? "true" : "false";

    private static string Number(long value) => value.ToString(CultureInfo.InvariantCulture);
}
