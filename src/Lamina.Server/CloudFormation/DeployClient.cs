using System.Net;
using System.Text;
using System.Xml.Linq;
using Lamina.Server.Protocols;

namespace Lamina.Server.CloudFormation;

/// <summary>
/// The <c>deploy</c> and <c>delete-stack</c> commands' client of a Lamina server: its CloudFormation API (Query
/// protocol, XML) and its S3 API (path style), signed with <c>AWS_ACCESS_KEY_ID</c> / <c>AWS_SECRET_ACCESS_KEY</c>
/// when set, like the AWS CLI.
/// </summary>
internal sealed class DeployClient(string endpoint) : IDisposable
{
    private readonly HttpClient _http = new(new SocketsHttpHandler { UseProxy = false }) { Timeout = TimeSpan.FromMinutes(10) };
    private readonly Uri _base = new(endpoint.TrimEnd('/') + "/");

    public void Dispose() => _http.Dispose();

    /// <summary>A CloudFormation action's result element; its error as a <see cref="CloudFormationException"/>.</summary>
    public async Task<XElement> CallAsync(string action, Dictionary<string, string> parameters, CancellationToken cancellationToken)
    {
        var form = new Dictionary<string, string>(parameters, StringComparer.Ordinal) { ["Action"] = action, ["Version"] = CloudFormationApi.Version };
        var body = Encoding.UTF8.GetBytes(string.Join('&', form.Select(static p => Uri.EscapeDataString(p.Key) + "=" + Uri.EscapeDataString(p.Value))));
        using var request = new HttpRequestMessage(HttpMethod.Post, _base) { Content = new ByteArrayContent(body) };
        request.Content.Headers.TryAddWithoutValidation("Content-Type", "application/x-www-form-urlencoded; charset=utf-8");
        Sign(request, body, "cloudformation");
        using var response = await _http.SendAsync(request, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        XElement root;
        try
        {
            root = XElement.Parse(text);
        }
        catch (System.Xml.XmlException)
        {
            throw new CloudFormationException("ServiceException", $"{(int)response.StatusCode}: {text}");
        }
        if (!response.IsSuccessStatusCode)
        {
            var error = root.Descendants().FirstOrDefault(static e => e.Name.LocalName == "Error");
            throw new CloudFormationException(Child(error, "Code") ?? "ServiceException", Child(error, "Message") ?? text, (int)response.StatusCode);
        }
        return root.Elements().FirstOrDefault(e => e.Name.LocalName == action + "Result") ?? root;
    }

    /// <summary>Creates the bucket unless it exists (and is the caller's).</summary>
    public async Task EnsureBucketAsync(string bucket, CancellationToken cancellationToken)
    {
        var (status, text) = await S3Async(HttpMethod.Head, "/" + bucket, null, cancellationToken);
        if (status == HttpStatusCode.OK)
        {
            return;
        }
        (status, text) = await S3Async(HttpMethod.Put, "/" + bucket, null, cancellationToken);
        if (status != HttpStatusCode.OK && !text.Contains("BucketAlreadyOwnedByYou", StringComparison.Ordinal))
        {
            throw new CloudFormationException("S3Error", $"could not create the deployment bucket {bucket}: {(int)status} {text}");
        }
    }

    /// <summary>Uploads an object unless one of that key exists already (keys are content hashes).</summary>
    public async Task UploadAsync(string bucket, string key, byte[] content, CancellationToken cancellationToken)
    {
        var (status, _) = await S3Async(HttpMethod.Head, $"/{bucket}/{key}", null, cancellationToken);
        if (status == HttpStatusCode.OK)
        {
            return;
        }
        var (putStatus, text) = await S3Async(HttpMethod.Put, $"/{bucket}/{key}", content, cancellationToken);
        if (putStatus != HttpStatusCode.OK)
        {
            throw new CloudFormationException("S3Error", $"could not upload s3://{bucket}/{key}: {(int)putStatus} {text}");
        }
    }

    private async Task<(HttpStatusCode Status, string Body)> S3Async(HttpMethod method, string path, byte[]? body, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(method, new Uri(_base, path.TrimStart('/')));
        if (body is not null)
        {
            request.Content = new ByteArrayContent(body);
        }
        Sign(request, body ?? [], "s3");
        using var response = await _http.SendAsync(request, cancellationToken);
        return (response.StatusCode, await response.Content.ReadAsStringAsync(cancellationToken));
    }

    /// <summary>
    /// Signs with the environment's key; without one, with a placeholder — a server without access keys accepts any
    /// signature, and its S3 tells S3 requests from others by their signature.
    /// </summary>
    private static void Sign(HttpRequestMessage request, byte[] body, string service)
    {
        var now = TimeProvider.System.GetUtcNow();
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable("AWS_ACCESS_KEY_ID")) || string.IsNullOrEmpty(Environment.GetEnvironmentVariable("AWS_SECRET_ACCESS_KEY")))
        {
            SigV4.Sign(request, body, service, Environment.GetEnvironmentVariable("AWS_REGION") ?? Environment.GetEnvironmentVariable("AWS_DEFAULT_REGION") ?? "us-east-1",
                new Security.AccessKey("LAMINA", "lamina", ""), now);
            return;
        }
        SigV4.SignFromEnvironment(request, body, service, now);
    }

    public static string? Child(XElement? element, string name) => element?.Elements().FirstOrDefault(e => e.Name.LocalName == name)?.Value;

    public static IEnumerable<XElement> Members(XElement? element, string list) =>
        element?.Elements().FirstOrDefault(e => e.Name.LocalName == list)?.Elements().Where(static e => e.Name.LocalName == "member") ?? [];
}
