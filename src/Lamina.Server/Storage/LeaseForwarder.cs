using System.Net;
using Microsoft.AspNetCore.Http.Features;

namespace Lamina.Server.Storage;

/// <summary>
/// On a cluster (issue #25), hands a request for a singleton's work to the node that holds its lease, at the address
/// it advertises in <c>cluster_nodes</c>: durable executions (<see cref="Durable.DurableEngine.Lease"/>) and stack
/// operations (<see cref="CloudFormation.StackEngine.Lease"/>). The request goes as it came (method, path and query as
/// sent, every header, Host included so that a SigV4 signature still verifies there, the body) and the holder's answer
/// comes back as it answered.
/// </summary>
/// <remarks>
/// While no node holds the lease (a dead holder's lease lapses within about 10 s) the request waits for one, up to
/// <see cref="FailoverWait"/>, then is answered 503 by the caller's <c>unavailable</c>, which the SDKs retry. A holder
/// that refuses the connection is treated the same way (nothing of the request reached it); any other failure after
/// sending is answered 503 too, since the holder may have acted on the request. A forwarded request is never
/// forwarded again: the node it reached has lost the lease meanwhile, and the caller's retry finds the new holder.
/// </remarks>
internal sealed class LeaseForwarder(ClusterNode cluster) : IDisposable
{
    private const string ForwardedHeader = "X-Lamina-Forwarded-By";
    private static readonly TimeSpan FailoverWait = TimeSpan.FromSeconds(15);
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(250);

    // Headers of one connection, not of the request (RFC 9110 §7.6.1), and those HttpClient sets itself.
    private static readonly HashSet<string> HopByHop = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Transfer-Encoding", "Upgrade", "Expect",
    };

    private readonly HttpClient _http = new(new SocketsHttpHandler
    {
        UseProxy = false,
        AllowAutoRedirect = false,
        UseCookies = false,
        AutomaticDecompression = DecompressionMethods.None,
        ConnectTimeout = TimeSpan.FromSeconds(3),
        PooledConnectionLifetime = TimeSpan.FromMinutes(1), // a new holder behind the same name is reached afresh
    })
    { Timeout = Timeout.InfiniteTimeSpan }; // a synchronous durable Invoke waits for the execution's end

    public void Dispose() => _http.Dispose();

    /// <summary>
    /// Whether the request was answered by another node: false on a single machine or when this node does the work
    /// (<paramref name="serving"/>: it holds <paramref name="lease"/> and is ready; the caller handles the request).
    /// <paramref name="unavailable"/> answers 503 in the service's shape. <paramref name="body"/> is the body when the
    /// caller has read it already. Call off Kestrel's I/O threads.
    /// </summary>
    public async Task<bool> ForwardedAsync(HttpContext context, string lease, Func<bool> serving, Func<HttpContext, Task> unavailable,
        ReadOnlyMemory<byte>? body = null)
    {
        if (!cluster.Enabled || serving())
        {
            return false;
        }
        var aborted = context.RequestAborted;
        if (context.Request.Headers.ContainsKey(ForwardedHeader))
        {
            await Unavailable(context, unavailable);
            return true;
        }
        if (body is null)
        {
            using var buffer = new MemoryStream();
            await context.Request.Body.CopyToAsync(buffer, aborted);
            body = buffer.ToArray();
        }
        var waiting = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            if (serving())
            {
                // This node took the lease over meanwhile: it answers, from the body already read.
                context.Request.Body = new MemoryStream(body.Value.ToArray(), writable: false);
                return false;
            }
            if (cluster.HolderUrl(lease) is { } holder)
            {
                try
                {
                    await ForwardAsync(context, holder, body.Value, aborted);
                    return true;
                }
                catch (HttpRequestException e) when (e.HttpRequestError == HttpRequestError.ConnectionError && !context.Response.HasStarted)
                {
                    // The holder is gone (killed, its lease not yet lapsed): nothing reached it; wait for the next one.
                }
                catch (HttpRequestException) when (!context.Response.HasStarted)
                {
                    await Unavailable(context, unavailable);
                    return true;
                }
            }
            if (waiting.Elapsed >= FailoverWait)
            {
                await Unavailable(context, unavailable);
                return true;
            }
            await Task.Delay(Poll, aborted);
        }
    }

    private static Task Unavailable(HttpContext context, Func<HttpContext, Task> unavailable)
    {
        context.Response.Headers.Clear();
        return unavailable(context);
    }

    private async Task ForwardAsync(HttpContext context, string holder, ReadOnlyMemory<byte> body, CancellationToken aborted)
    {
        var request = context.Request;
        // The target as the client sent it: escaped slashes (%2F, in a durable ARN) stay escaped, as the signature has them.
        var target = context.Features.Get<IHttpRequestFeature>()?.RawTarget is { Length: > 0 } raw ? raw : request.Path.Value + request.QueryString.Value;
        using var message = new HttpRequestMessage(new HttpMethod(request.Method), holder + target)
        {
            Version = HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        var content = new ReadOnlyMemoryContent(body);
        foreach (var (name, values) in request.Headers)
        {
            if (HopByHop.Contains(name) || name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }
            if (name.StartsWith("Content-", StringComparison.OrdinalIgnoreCase))
            {
                content.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values);
            }
            else
            {
                message.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values);
            }
        }
        message.Headers.Host = request.Host.Value; // the client's Host: part of what it signed
        message.Headers.TryAddWithoutValidation(ForwardedHeader, cluster.NodeId);
        if (body.Length > 0 || request.ContentLength is not null || HttpMethods.IsPost(request.Method) || HttpMethods.IsPut(request.Method))
        {
            message.Content = content;
        }
        else
        {
            content.Dispose();
        }

        using var answer = await _http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, aborted);
        var response = context.Response;
        response.Headers.Clear(); // what this node set already (Invoke's X-Amz-Executed-Version): the holder's answer says it
        response.StatusCode = (int)answer.StatusCode;
        foreach (var (name, values) in answer.Headers.Concat(answer.Content.Headers))
        {
            if (!HopByHop.Contains(name))
            {
                response.Headers[name] = values.ToArray();
            }
        }
        await using var stream = await answer.Content.ReadAsStreamAsync(aborted);
        await stream.CopyToAsync(response.Body, aborted);
    }
}
