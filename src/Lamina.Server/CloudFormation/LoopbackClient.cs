using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Xml.Linq;
using Lamina.Server.Hosting;
using Lamina.Server.Protocols;
using Lamina.Server.Security;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Options;

namespace Lamina.Server.CloudFormation;

/// <summary>
/// A service refused what a resource provider asked: its HTTP status, error code and message, exactly as it answered
/// a client. Stack events carry the message as CloudFormation's handlers do ("Resource handler returned message: …").
/// </summary>
internal sealed class ServiceException(string service, int status, string code, string message) : Exception(message)
{
    public string Service { get; } = service;

    public int Status { get; } = status;

    public string Code { get; } = code;

    public bool NotFound => Status == 404 || Code is "ResourceNotFoundException" or "NoSuchBucket" or "NotFound" or "AWS.SimpleQueueService.NonExistentQueue"
        or "QueueDoesNotExist" or "NoSuchKey" or "NotFoundException";

    /// <summary>CloudFormation's handler error code for this failure (what its events name after the message).</summary>
    public string HandlerErrorCode => Status switch
    {
        404 => "NotFound",
        409 when Code.Contains("Exist", StringComparison.Ordinal) => "AlreadyExists",
        409 => "ResourceConflict",
        429 => "Throttling",
        403 => "AccessDenied",
        >= 500 => "ServiceInternalError",
        _ when Code.Contains("AlreadyExist", StringComparison.Ordinal) || Code is "BucketAlreadyOwnedByYou" or "BucketAlreadyExists" => "AlreadyExists",
        _ when NotFound => "NotFound",
        _ => "InvalidRequest",
    };
}

/// <summary>
/// How resource providers reach Lamina's services: over loopback HTTP to the server's own port, SigV4-signed with the
/// server's in-memory key (<see cref="AccessKeys.Internal"/>). Every validation rule, error message and side effect is
/// then the service's own, exactly what a client calling the same API would see; the providers are thin clients.
/// </summary>
internal sealed class LoopbackClient : IDisposable
{
    private readonly IServer _server;
    private readonly AccessKeys _keys;
    private readonly LaminaOptions _options;
    private readonly TimeProvider _time;
    private readonly HttpClient _http = new(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false, PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30) })
    {
        // Code uploads of large zips go through CreateFunction; nothing a provider asks takes longer.
        Timeout = TimeSpan.FromMinutes(5),
    };
    private Uri? _base;

    public LoopbackClient(IServer server, AccessKeys keys, IOptions<LaminaOptions> options, TimeProvider time)
    {
        _server = server;
        _keys = keys;
        _options = options.Value;
        _time = time;
    }

    public void Dispose() => _http.Dispose();

    /// <summary>The server's own address: its listening port on the loopback interface.</summary>
    public Uri BaseAddress => _base ??= FindBase();

    private Uri FindBase()
    {
        var addresses = _server.Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
        foreach (var address in addresses)
        {
            if (!address.StartsWith("http://", StringComparison.Ordinal) || address.Contains("lamina-runtime-api", StringComparison.Ordinal))
            {
                continue;
            }
            var uri = new Uri(address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal).Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal));
            var host = IPAddress.TryParse(uri.Host.Trim('[', ']'), out var ip) && (ip.Equals(IPAddress.Any) || ip.Equals(IPAddress.IPv6Any)) ? "127.0.0.1" : uri.Host;
            return new Uri($"http://{(host.Contains(':', StringComparison.Ordinal) && !host.StartsWith('[') ? $"[{host}]" : host)}:{uri.Port}/");
        }
        throw new InvalidOperationException("The server has no HTTP address to call its own APIs on");
    }

    /// <summary>A Lambda REST-JSON call (<c>/2015-03-31/…</c>); the answer's JSON, or null for an empty body.</summary>
    public Task<JsonNode?> LambdaAsync(HttpMethod method, string pathAndQuery, JsonNode? body, CancellationToken cancellationToken) =>
        RestJsonAsync("lambda", method, pathAndQuery, body, cancellationToken);

    /// <summary>A REST-JSON call (Lambda, API Gateway): errors by <c>x-amzn-ErrorType</c> and <c>message</c>.</summary>
    public async Task<JsonNode?> RestJsonAsync(string service, HttpMethod method, string pathAndQuery, JsonNode? body, CancellationToken cancellationToken)
    {
        var bytes = body is null ? [] : Encoding.UTF8.GetBytes(body.ToJsonString());
        var (status, headers, response) = await SendAsync(service, method, pathAndQuery, bytes, body is null ? null : "application/json", null, cancellationToken);
        if (status >= 300)
        {
            var json = TryParse(response);
            var code = headers.GetValueOrDefault("x-amzn-ErrorType")?.Split(':')[0] ?? (json as JsonObject)?["Type"]?.GetValue<string>() ?? "ServiceException";
            throw new ServiceException(service, status, code, Message(json, response));
        }
        return response.Length == 0 ? null : TryParse(response);
    }

    /// <summary>A synchronous Invoke: the status and the function's error type (<c>X-Amz-Function-Error</c>), if any.</summary>
    public async Task<(int Status, string? FunctionError)> InvokeAsync(string function, string? qualifier, JsonNode payload, CancellationToken cancellationToken)
    {
        var path = "/2015-03-31/functions/" + Uri.EscapeDataString(function) + "/invocations" + (qualifier is null ? "" : "?Qualifier=" + Uri.EscapeDataString(qualifier));
        var (status, headers, response) = await SendAsync("lambda", HttpMethod.Post, path, Encoding.UTF8.GetBytes(payload.ToJsonString()), "application/json", null, cancellationToken);
        if (status >= 300)
        {
            var json = TryParse(response);
            throw new ServiceException("lambda", status, headers.GetValueOrDefault("x-amzn-ErrorType")?.Split(':')[0] ?? "ServiceException", Message(json, response));
        }
        return (status, headers.GetValueOrDefault("X-Amz-Function-Error"));
    }

    /// <summary>An awsJson call (SQS, EventBridge, CloudWatch Logs, DynamoDB) by <c>X-Amz-Target</c>.</summary>
    public async Task<JsonObject> JsonAsync(string service, string target, string contentType, JsonObject body, CancellationToken cancellationToken)
    {
        var bytes = Encoding.UTF8.GetBytes(body.ToJsonString());
        var (status, headers, response) = await SendAsync(service, HttpMethod.Post, "/", bytes, contentType, new() { ["X-Amz-Target"] = target }, cancellationToken);
        var json = TryParse(response);
        if (status >= 300)
        {
            var type = json?["__type"]?.GetValue<string>() ?? headers.GetValueOrDefault("x-amzn-ErrorType") ?? "ServiceException";
            throw new ServiceException(service, status, type[(type.LastIndexOf('#') + 1)..], Message(json, response));
        }
        return json as JsonObject ?? [];
    }

    /// <summary>A Query-protocol call (SNS): the form, answered in XML.</summary>
    public async Task<XElement> QueryAsync(string service, Dictionary<string, string> form, CancellationToken cancellationToken)
    {
        var bytes = Encoding.UTF8.GetBytes(string.Join('&', form.Select(static p => Uri.EscapeDataString(p.Key) + "=" + Uri.EscapeDataString(p.Value))));
        var (status, _, response) = await SendAsync(service, HttpMethod.Post, "/", bytes, "application/x-www-form-urlencoded; charset=utf-8", null, cancellationToken);
        XElement root;
        try
        {
            root = XElement.Parse(Encoding.UTF8.GetString(response));
        }
        catch (System.Xml.XmlException)
        {
            throw new ServiceException(service, status, "ServiceException", Encoding.UTF8.GetString(response));
        }
        if (status >= 300)
        {
            var error = root.Descendants().FirstOrDefault(static e => e.Name.LocalName == "Error");
            throw new ServiceException(service, status, Child(error, "Code") ?? "ServiceException", Child(error, "Message") ?? "");
        }
        return root;
    }

    /// <summary>An S3 REST call, path style (<c>/bucket/key?query</c>): the status and body; errors as <see cref="ServiceException"/>.</summary>
    public async Task<byte[]> S3Async(HttpMethod method, string pathAndQuery, byte[]? body, CancellationToken cancellationToken, Dictionary<string, string>? headers = null)
    {
        var (status, _, response) = await SendAsync("s3", method, pathAndQuery, body ?? [], body is null ? null : "application/xml", headers, cancellationToken);
        if (status >= 300)
        {
            string? code = null, message = null;
            try
            {
                var error = XElement.Parse(Encoding.UTF8.GetString(response));
                code = Child(error, "Code");
                message = Child(error, "Message");
            }
            catch (System.Xml.XmlException)
            {
            }
            throw new ServiceException("s3", status, code ?? "ServiceException", message ?? $"S3 answered {status}");
        }
        return response;
    }

    private async Task<(int Status, Dictionary<string, string> Headers, byte[] Body)> SendAsync(string service, HttpMethod method, string pathAndQuery, byte[] body,
        string? contentType, Dictionary<string, string>? headers, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(method, new Uri(BaseAddress, pathAndQuery.TrimStart('/')));
        if (contentType is not null || body.Length > 0)
        {
            request.Content = new ByteArrayContent(body);
            request.Content.Headers.TryAddWithoutValidation("Content-Type", contentType ?? "application/octet-stream");
        }
        foreach (var (name, value) in headers ?? [])
        {
            if (!request.Headers.TryAddWithoutValidation(name, value))
            {
                request.Content?.Headers.TryAddWithoutValidation(name, value);
            }
        }
        SigV4.Sign(request, body, service, _options.Region, _keys.Internal, _time.GetUtcNow());
        using var response = await _http.SendAsync(request, cancellationToken);
        var bytes = await response.Content.ReadAsByteArrayAsync(cancellationToken);
        // The answer completed on a socket's I/O thread, and the stack operation goes on to write its store, which blocks
        // (on a cluster, on PostgreSQL's socket: whose completion that very I/O thread would have to run).
        await Hosting.IoThreads.LeaveIoThreadAsync();
        var responseHeaders = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (name, values) in response.Headers)
        {
            responseHeaders[name] = string.Join(',', values);
        }
        return ((int)response.StatusCode, responseHeaders, bytes);
    }

    private static JsonNode? TryParse(byte[] body)
    {
        try
        {
            return body.Length == 0 ? null : JsonNode.Parse(body);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static string Message(JsonNode? json, byte[] body) =>
        (json as JsonObject)?["message"]?.GetValue<string>() ?? (json as JsonObject)?["Message"]?.GetValue<string>() ?? Encoding.UTF8.GetString(body);

    private static string? Child(XElement? element, string name) => element?.Elements().FirstOrDefault(e => e.Name.LocalName == name)?.Value;
}
