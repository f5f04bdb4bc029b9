using System.Text;
using System.Text.Json.Nodes;
using System.Xml.Linq;

namespace Lamina.Server.CloudFormation;

/// <summary>
/// AWS::S3::Bucket over Lamina's S3 API: the bucket, then its versioning, notifications (to functions, queues and
/// topics), CORS rules and tags. Settings S3 on Lamina does not apply (encryption, lifecycle, public access blocks,
/// ownership controls, websites) are accepted and recorded.
/// </summary>
internal sealed class S3BucketProvider : ResourceProvider
{
    private static readonly XNamespace S3 = "http://s3.amazonaws.com/doc/2006-03-01/";

    public override string Type => "AWS::S3::Bucket";

    public override string? NameProperty => "BucketName";

    public override IReadOnlySet<string> CreateOnlyProperties { get; } = Set("BucketName", "ObjectLockEnabled");

    public override IReadOnlySet<string> AttributeNames { get; } = Set("Arn", "DomainName", "RegionalDomainName", "DualStackDomainName", "WebsiteURL");

    public override string? PlannedPhysicalId(ProvisionRequest request) => request.String("BucketName") is null ? request.GeneratedName(63, lowercase: true) : null;

    public override async Task<ProvisionResult> CreateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        var name = request.String("BucketName") ?? request.GeneratedName(63, lowercase: true);
        await request.Client.S3Async(HttpMethod.Put, "/" + name, null, cancellationToken);
        try
        {
            await ConfigureAsync(request, name, previous: null, cancellationToken);
        }
        catch (ServiceException)
        {
            // Nothing half made: an empty bucket that could not be configured goes with the failure.
            await IgnoreNotFoundAsync(() => request.Client.S3Async(HttpMethod.Delete, "/" + name, null, CancellationToken.None));
            throw;
        }
        return new ProvisionResult(name, Attributes(request, name));
    }

    public override async Task<ProvisionResult> UpdateAsync(ProvisionRequest request, CancellationToken cancellationToken)
    {
        await ConfigureAsync(request, request.PhysicalId!, request.PreviousProperties ?? [], cancellationToken);
        return new ProvisionResult(request.PhysicalId!, Attributes(request, request.PhysicalId!));
    }

    public override Task DeleteAsync(ProvisionRequest request, CancellationToken cancellationToken) =>
        IgnoreNotFoundAsync(() => request.Client.S3Async(HttpMethod.Delete, "/" + request.PhysicalId, null, cancellationToken));

    private static JsonObject Attributes(ProvisionRequest request, string name) => new()
    {
        ["Arn"] = "arn:aws:s3:::" + name,
        ["DomainName"] = name + ".s3.amazonaws.com",
        ["RegionalDomainName"] = $"{name}.s3.{request.Region}.amazonaws.com",
        ["DualStackDomainName"] = $"{name}.s3.dualstack.{request.Region}.amazonaws.com",
        ["WebsiteURL"] = $"http://{name}.s3-website-{request.Region}.amazonaws.com",
    };

    private static async Task ConfigureAsync(ProvisionRequest request, string name, JsonObject? previous, CancellationToken cancellationToken)
    {
        var p = request.Properties;
        bool Changed(string property) => previous is null ? p[property] is not null : !JsonNode.DeepEquals(p[property], previous[property]);
        if (Changed("VersioningConfiguration"))
        {
            var status = (p["VersioningConfiguration"] as JsonObject)?["Status"] is { } s ? Intrinsics.Stringify(s) : "Suspended";
            await PutAsync(request, name, "versioning", new XElement(S3 + "VersioningConfiguration", new XElement(S3 + "Status", status)), cancellationToken);
        }
        if (Changed("NotificationConfiguration"))
        {
            await PutAsync(request, name, "notification", Notifications(p["NotificationConfiguration"] as JsonObject), cancellationToken);
        }
        if (Changed("CorsConfiguration"))
        {
            if (p["CorsConfiguration"] is JsonObject cors)
            {
                await PutAsync(request, name, "cors", Cors(cors), cancellationToken);
            }
            else
            {
                await request.Client.S3Async(HttpMethod.Delete, $"/{name}?cors", null, cancellationToken);
            }
        }
        if (Changed("Tags"))
        {
            if (p["Tags"] is JsonArray { Count: > 0 } tags)
            {
                await PutAsync(request, name, "tagging", new XElement(S3 + "Tagging", new XElement(S3 + "TagSet",
                    tags.OfType<JsonObject>().Select(t => new XElement(S3 + "Tag", new XElement(S3 + "Key", Intrinsics.Stringify(t["Key"])),
                        new XElement(S3 + "Value", Intrinsics.Stringify(t["Value"])))))), cancellationToken);
            }
            else
            {
                await request.Client.S3Async(HttpMethod.Delete, $"/{name}?tagging", null, cancellationToken);
            }
        }
    }

    private static Task<byte[]> PutAsync(ProvisionRequest request, string bucket, string subresource, XElement body, CancellationToken cancellationToken)
    {
        var bytes = Encoding.UTF8.GetBytes(body.ToString(SaveOptions.DisableFormatting));
#pragma warning disable CA5351 // S3 asks for Content-MD5 on these requests: an integrity check, not security
        var md5 = Convert.ToBase64String(System.Security.Cryptography.MD5.HashData(bytes));
#pragma warning restore CA5351
        return request.Client.S3Async(HttpMethod.Put, $"/{bucket}?{subresource}", bytes, cancellationToken,
            new Dictionary<string, string> { ["Content-MD5"] = md5 });
    }

    /// <summary>The template's NotificationConfiguration as S3's XML (an absent one clears every notification).</summary>
    private static XElement Notifications(JsonObject? configuration)
    {
        var root = new XElement(S3 + "NotificationConfiguration");
        if (configuration is null)
        {
            return root;
        }
        void Add(string list, string element, string targetProperty, string targetElement)
        {
            if (configuration[list] is not JsonArray items)
            {
                return;
            }
            foreach (var item in items.OfType<JsonObject>())
            {
                var entry = new XElement(S3 + element);
                entry.Add(new XElement(S3 + targetElement, Intrinsics.Stringify(item[targetProperty])));
                entry.Add(new XElement(S3 + "Event", Intrinsics.Stringify(item["Event"])));
                if (item["Filter"] is JsonObject filter && filter["S3Key"] is JsonObject key && key["Rules"] is JsonArray rules)
                {
                    entry.Add(new XElement(S3 + "Filter", new XElement(S3 + "S3Key", rules.OfType<JsonObject>().Select(rule =>
                        new XElement(S3 + "FilterRule", new XElement(S3 + "Name", Intrinsics.Stringify(rule["Name"])), new XElement(S3 + "Value", Intrinsics.Stringify(rule["Value"])))))));
                }
                root.Add(entry);
            }
        }
        Add("TopicConfigurations", "TopicConfiguration", "Topic", "Topic");
        Add("QueueConfigurations", "QueueConfiguration", "Queue", "Queue");
        Add("LambdaConfigurations", "CloudFunctionConfiguration", "Function", "CloudFunction");
        return root;
    }

    private static XElement Cors(JsonObject cors)
    {
        var root = new XElement(S3 + "CORSConfiguration");
        foreach (var rule in (cors["CorsRules"] as JsonArray ?? []).OfType<JsonObject>())
        {
            var element = new XElement(S3 + "CORSRule");
            if (rule["Id"] is { } id)
            {
                element.Add(new XElement(S3 + "ID", Intrinsics.Stringify(id)));
            }
            foreach (var (property, name) in new[] { ("AllowedOrigins", "AllowedOrigin"), ("AllowedMethods", "AllowedMethod"), ("AllowedHeaders", "AllowedHeader"), ("ExposedHeaders", "ExposeHeader") })
            {
                foreach (var value in (rule[property] as JsonArray ?? []))
                {
                    element.Add(new XElement(S3 + name, Intrinsics.Stringify(value)));
                }
            }
            if (rule["MaxAge"] is { } maxAge)
            {
                element.Add(new XElement(S3 + "MaxAgeSeconds", Intrinsics.Stringify(maxAge)));
            }
            root.Add(element);
        }
        return root;
    }
}
