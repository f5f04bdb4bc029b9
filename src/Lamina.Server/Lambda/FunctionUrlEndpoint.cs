using System.Buffers;
using System.Text.Json;
using System.Text.RegularExpressions;
using Lamina.Server.Diagnostics;
using Lamina.Server.Hosting;
using Lamina.Server.Invoke;
using Lamina.Server.Protocols;
using Lamina.Server.RuntimeApi;
using Lamina.Server.Security;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Lambda;

/// <summary>
/// Serves function URLs (LAMBDA.md §9.3) on the API's listener: a request to
/// <c>&lt;url-id&gt;.lambda-url.&lt;region&gt;.localhost</c>, or to <c>/lambda-url/&lt;url-id&gt;/…</c> for clients that cannot
/// use the host name, becomes a payload 2.0 event, is invoked synchronously within every concurrency limit, and the
/// result maps back to an HTTP response. AuthType <c>NONE</c> needs a resource policy that lets anyone invoke the URL
/// (as on Lambda); <c>AWS_IAM</c> needs a SigV4 signature (service <c>lambda</c>) of the function's account, or of
/// another account the policy allows. CORS settings answer preflight requests without invoking the function.
/// </summary>
internal static partial class FunctionUrlEndpoint
{
    private const string PathPrefix = "/lambda-url/";

    [GeneratedRegex(@"^(?<id>[a-z0-9]{32})\.lambda-url\.[a-z0-9-]+\.localhost\.?(?::\d+)?\z", RegexOptions.CultureInvariant | RegexOptions.IgnoreCase)]
    private static partial Regex HostPattern();

    /// <summary>Takes the requests addressed to a function URL before authentication (a URL has its own) and routing.</summary>
    public static IApplicationBuilder UseFunctionUrls(this IApplicationBuilder app) => app.Use(static (context, next) =>
        TryMatch(context.Request, out var urlId, out var prefixLength) ? HandleAsync(context, urlId, prefixLength) : next(context));

    private static bool TryMatch(HttpRequest request, out string urlId, out int prefixLength)
    {
        prefixLength = 0;
        urlId = "";
        // Most requests are API calls: a substring test keeps the regex off their path.
        var hostValue = request.Host.Value ?? "";
        if (hostValue.Contains(".lambda-url.", StringComparison.OrdinalIgnoreCase) && HostPattern().Match(hostValue) is { Success: true } host)
        {
            urlId = host.Groups["id"].Value.ToLowerInvariant();
            return true;
        }
        var path = request.Path.Value ?? "";
        if (path.StartsWith(PathPrefix, StringComparison.Ordinal) && path.Length >= PathPrefix.Length + 32)
        {
            var id = path.Substring(PathPrefix.Length, 32);
            if (path.Length == PathPrefix.Length + 32 || path[PathPrefix.Length + 32] == '/')
            {
                urlId = id;
                prefixLength = PathPrefix.Length + 32;
                return true;
            }
        }
        return false;
    }

    private static async Task HandleAsync(HttpContext context, string urlId, int prefixLength)
    {
        var services = context.RequestServices;
        var registry = services.GetRequiredService<FunctionRegistry>();
        var options = services.GetRequiredService<IOptions<LaminaOptions>>().Value;
        var request = context.Request;
        if (!registry.TryGetUrl(urlId, out var entry, out var url))
        {
            await MessageAsync(context, StatusCodes.Status404NotFound, "Not Found");
            return;
        }
        if (url.Cors is { } cors && HttpProxyPayload.IsPreflight(request))
        {
            HttpProxyPayload.Preflight(context, Rules(cors));
            return;
        }

        var body = await RuntimeApiEndpoints.ReadBodyAsync(context, InvokeApi.MaxSyncPayloadBytes);
        if (body is null)
        {
            await MessageAsync(context, StatusCodes.Status413PayloadTooLarge, "Request must be smaller than 6291456 bytes for the InvokeFunction operation");
            return;
        }
        var qualifier = url.Qualifier == FunctionEntry.Latest ? null : url.Qualifier;
        var (allowed, caller) = Authorize(context, entry, qualifier, url, body.Value.Span, options);
        if (!allowed)
        {
            await MessageAsync(context, StatusCodes.Status403Forbidden, "Forbidden");
            return;
        }
        if (entry.Resolve(qualifier, Random.Shared) is not { } config)
        {
            await MessageAsync(context, StatusCodes.Status404NotFound, "Not Found");
            return;
        }

        var metrics = services.GetRequiredService<LaminaMetrics>();
        if (!services.GetRequiredService<ConcurrencyLimiter>().TryAcquire(config.Name, entry.ReservedConcurrency, out var lease, out var throttleReason))
        {
            metrics.RecordThrottle(config, throttleReason!);
            await MessageAsync(context, StatusCodes.Status429TooManyRequests, "Rate Exceeded.");
            return;
        }
        var time = services.GetRequiredService<TimeProvider>();
        var requestId = RequestIds.Of(context);
        var invocation = new Invocation
        {
            RequestId = requestId,
            Payload = BuildEvent(context, prefixLength, urlId, body.Value, caller, requestId, time.GetUtcNow()),
            InvokedFunctionArn = qualifier is null ? options.FunctionArn(entry.Name) : $"{options.FunctionArn(entry.Name)}:{qualifier}",
            TraceId = Tracing.TraceHeader(request.Headers["X-Amzn-Trace-Id"], request.Headers["traceparent"], time),
            Stream = url.InvokeMode == "RESPONSE_STREAM" ? new ResponseStream() : null,
        };
        var invoker = services.GetRequiredService<Invoker>();
        if (url.InvokeMode == "RESPONSE_STREAM")
        {
            await StreamAsync(context, invoker, config, invocation, lease!, url);
            return;
        }
        var outcome = await invoker.InvokeAsync(config, invocation, wantTail: false, lease!);
        await WriteBufferedAsync(context, outcome, url);
    }

    private static async Task WriteBufferedAsync(HttpContext context, InvokeOutcome outcome, FunctionUrlConfig url)
    {
        if (outcome.ThrottleReason is not null)
        {
            await MessageAsync(context, StatusCodes.Status429TooManyRequests, "Rate Exceeded.");
            return;
        }
        if (outcome.Result is not { Outcome: InvocationOutcome.Success } result)
        {
            // A function error, timeout or crash: Lambda answers 502 and keeps the details in the function's log.
            await MessageAsync(context, StatusCodes.Status502BadGateway, "Internal Server Error");
            return;
        }
        if (HttpProxyPayload.ParseV2Result(result.Body) is not { } response)
        {
            await MessageAsync(context, StatusCodes.Status502BadGateway, "Internal Server Error");
            return;
        }
        if (url.Cors is { } responseCors)
        {
            HttpProxyPayload.AddCorsHeaders(context, Rules(responseCors));
        }
        await HttpProxyPayload.WriteAsync(context, response, decodeBase64: true);
    }

    /// <summary>
    /// <c>InvokeMode: RESPONSE_STREAM</c>: the runtime's streamed response goes to the client as it arrives (chunked).
    /// With the content type <c>application/vnd.awslambda.http-integration-response</c> (Node's
    /// <c>awslambda.HttpResponseStream.from</c>) the stream opens with a JSON prelude, <c>{statusCode, headers,
    /// cookies}</c>, ended by 8 NUL bytes; otherwise it is a 200 of the runtime's content type. A function that answers
    /// buffered is mapped as in <c>BUFFERED</c> mode. A failure before the first byte is a 502; after it, the
    /// connection is cut, so the client sees an incomplete response rather than a complete-looking one.
    /// </summary>
    private static async Task StreamAsync(HttpContext context, Invoker invoker, FunctionConfig config, Invocation invocation, ConcurrencyLease lease, FunctionUrlConfig url)
    {
        await IoThreads.LeaveIoThreadAsync();
        var stream = invocation.Stream!;
        stream.Watch(invocation);
        var running = invoker.InvokeAsync(config, invocation, wantTail: false, lease);
        await Task.WhenAny(running, stream.Started);
        if (!stream.Started.IsCompleted)
        {
            await WriteBufferedAsync(context, await running, url);
            return;
        }
        var state = new StreamedUrlResponse(context, await stream.Started, url.Cors is { } cors ? Rules(cors) : null);
        await stream.ForwardAsync(invocation, state, static (state, chunk) => state.WriteAsync(chunk), context.RequestAborted);
        var outcome = await running;
        if (context.RequestAborted.IsCancellationRequested)
        {
            return;
        }
        if (outcome.Result is not { Outcome: InvocationOutcome.Success } || !state.Complete)
        {
            if (!context.Response.HasStarted)
            {
                context.Response.Headers.Clear();
                await MessageAsync(context, StatusCodes.Status502BadGateway, "Internal Server Error");
                return;
            }
            context.Abort();
            return;
        }
        await state.FinishAsync();
    }

    /// <summary>The HTTP side of a streamed URL response: the prelude (if any) first, then the body as it comes.</summary>
    private sealed class StreamedUrlResponse(HttpContext context, string contentType, CorsRules? cors)
    {
        private const int MaxPreludeBytes = 64 * 1024;
        private readonly bool _hasPrelude = contentType.Equals("application/vnd.awslambda.http-integration-response", StringComparison.OrdinalIgnoreCase);
        private ArrayBufferWriter<byte>? _prelude;
        private bool _started;
        private bool _malformed;

        /// <summary>False when the prelude never ended or was malformed (the client gets a 502, or a cut connection).</summary>
        public bool Complete => !_malformed && (_started || !_hasPrelude);

        public async ValueTask WriteAsync(ReadOnlySequence<byte> chunk)
        {
            if (_malformed)
            {
                return;
            }
            if (!_started)
            {
                if (!_hasPrelude)
                {
                    Start(null);
                }
                else
                {
                    // The prelude may arrive split over chunks: collect until the 8 NUL bytes.
                    _prelude ??= new ArrayBufferWriter<byte>(512);
                    foreach (var segment in chunk)
                    {
                        _prelude.Write(segment.Span);
                    }
                    var end = _prelude.WrittenSpan.IndexOf("\0\0\0\0\0\0\0\0"u8);
                    if (end < 0)
                    {
                        _malformed = _prelude.WrittenCount > MaxPreludeBytes;
                        return;
                    }
                    if (HttpProxyPayload.ParseStreamingPrelude(_prelude.WrittenSpan[..end]) is not { } prelude)
                    {
                        _malformed = true;
                        return;
                    }
                    Start(prelude);
                    var rest = _prelude.WrittenMemory[(end + 8)..];
                    if (!rest.IsEmpty)
                    {
                        await context.Response.Body.WriteAsync(rest, CancellationToken.None);
                    }
                    await context.Response.Body.FlushAsync(CancellationToken.None);
                    return;
                }
            }
            foreach (var segment in chunk)
            {
                await context.Response.Body.WriteAsync(segment, CancellationToken.None);
            }
            await context.Response.Body.FlushAsync(CancellationToken.None);
        }

        /// <summary>The stream ended well: a response with no bytes at all still gets its status and headers.</summary>
        public async Task FinishAsync()
        {
            if (!_started)
            {
                Start(null);
            }
            await context.Response.CompleteAsync();
        }

        private void Start(ProxyResponse? prelude)
        {
            _started = true;
            var response = context.Response;
            response.StatusCode = prelude?.StatusCode ?? StatusCodes.Status200OK;
            if (prelude is not null)
            {
                foreach (var group in prelude.Headers.GroupBy(static h => h.Key, StringComparer.OrdinalIgnoreCase))
                {
                    response.Headers[group.Key] = group.Select(static h => h.Value).ToArray();
                }
                if (prelude.Cookies.Count > 0)
                {
                    response.Headers.Append("Set-Cookie", prelude.Cookies.ToArray());
                }
            }
            else
            {
                response.ContentType = contentType;
            }
            if (cors is not null)
            {
                HttpProxyPayload.AddCorsHeaders(context, cors);
            }
        }
    }

    /// <summary>Whether the caller may invoke this URL, and the IAM caller (AWS_IAM only) for the event's authorizer.</summary>
    private static (bool Allowed, CallerIdentity? Caller) Authorize(HttpContext context, FunctionEntry entry, string? qualifier, FunctionUrlConfig url,
        ReadOnlySpan<byte> body, LaminaOptions options)
    {
        if (url.AuthType == "NONE")
        {
            // Anyone, if a statement allows everyone (Principal "*") to invoke this URL (AddPermission with
            // FunctionUrlAuthType NONE, as Lambda requires).
            return (PermissionsApi.Allows(entry, qualifier, "lambda:InvokeFunctionUrl", new PolicyCaller(null, FunctionUrlAuthType: "NONE", ViaFunctionUrl: true)), null);
        }
        var request = context.Request;
        if (request.Headers.Authorization.Count == 0 && !request.Query.ContainsKey("X-Amz-Signature"))
        {
            return (false, null); // AWS_IAM: an unsigned request is refused even without access keys
        }
        var keys = context.RequestServices.GetRequiredService<AccessKeys>();
        var environment = RuntimeApiTransport.EnvironmentOf(context) as ExecutionEnvironment;
        CallerIdentity caller;
        if (keys.Required || environment is not null)
        {
            var session = environment?.Credentials;
            var failure = SigV4.Verify(request, body, id => session is not null && id == session.AccessKeyId ? session.AsKey(environment!.AccountId) : keys.Find(id),
                options.Region, context.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow(), out var key);
            if (failure is not null)
            {
                return (false, null);
            }
            caller = new CallerIdentity(key!.AccountId, key.AccessKeyId);
        }
        else
        {
            // No keys: any signature is accepted on loopback, as for the API; the caller is the account itself.
            caller = new CallerIdentity(entry.LatestConfig.ForeignAccount ?? options.AccountId, "");
        }
        var allowed = caller.AccountId == (entry.LatestConfig.ForeignAccount ?? options.AccountId)
            || PermissionsApi.Allows(entry, qualifier, "lambda:InvokeFunctionUrl", new PolicyCaller(caller.AccountId, FunctionUrlAuthType: "AWS_IAM", ViaFunctionUrl: true));
        return (allowed, caller);
    }

    /// <summary>The payload 2.0 event of this request (LAMBDA.md §9.3): route and stage <c>$default</c>, the URL id as API id.</summary>
    private static ReadOnlyMemory<byte> BuildEvent(HttpContext context, int prefixLength, string urlId, ReadOnlyMemory<byte> body, CallerIdentity? caller,
        string requestId, DateTimeOffset now)
    {
        var (rawPath, rawQuery) = HttpProxyPayload.RawTarget(context, prefixLength);
        return HttpProxyPayload.BuildV2Event(context, body, new V2EventParts("$default", rawPath, rawQuery, "$default", urlId, urlId,
            caller?.AccountId ?? "anonymous", requestId, now)
        {
            WriteAuthorizer = caller is null ? null : json => HttpProxyPayload.WriteIamAuthorizer(json, caller),
        });
    }

    /// <summary>The URL's CORS settings in the shared form.</summary>
    private static CorsRules Rules(CorsDto cors) =>
        new(cors.AllowCredentials, cors.AllowHeaders, cors.AllowMethods, cors.AllowOrigins, cors.ExposeHeaders, cors.MaxAge);

    /// <summary>Lambda's own answers on a URL: <c>{"Message": …}</c>.</summary>
    private static async Task MessageAsync(HttpContext context, int status, string message)
    {
        var response = context.Response;
        response.StatusCode = status;
        response.ContentType = "application/json";
        if (status == StatusCodes.Status502BadGateway || status == StatusCodes.Status429TooManyRequests)
        {
            response.Headers["x-amzn-ErrorType"] = status == 502 ? "Function.Error" : "TooManyRequestsException";
        }
        await using var writer = new Utf8JsonWriter(response.Body);
        writer.WriteStartObject();
        writer.WriteString("Message", message);
        writer.WriteEndObject();
    }
}
