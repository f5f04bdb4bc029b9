using System.Diagnostics;
using System.Diagnostics.Metrics;
using Lamina.Server.Invoke;
using Lamina.Server.Lambda;

namespace Lamina.Server.Diagnostics;

/// <summary>
/// Lamina's metrics (issue #7): the <c>Lamina.Server</c> <see cref="System.Diagnostics.Metrics.Meter"/>, its
/// instruments and one method per thing the invoke path reports, with labels <c>function</c> and <c>version</c>.
/// <see cref="Exporter"/> aggregates them for <c>GET /metrics</c> from the moment the server starts; any other
/// listener (dotnet-counters, OpenTelemetry) sees the same instruments.
/// </summary>
/// <remarks>
/// Called on the warm path: each method is one or a few instrument calls, each a lock-free lookup of its label set
/// and an Interlocked add in <see cref="PrometheusExporter"/>, with no allocation (tags are strings the configuration
/// already holds). Gauges that cost something to read (environments, the async queue) are read at scrape time
/// (<see cref="NodeMetrics"/>), never on the invoke path.
/// </remarks>
internal sealed class LaminaMetrics : IDisposable
{
    public const string MeterName = "Lamina.Server";

    /// <summary>The <c>reason</c> of a throttle because the node's memory budget had no room for a cold start.</summary>
    public const string MemoryBudgetThrottle = "memory_budget";

    private const string ApiLabel = "api";
    private const string StageLabel = "stage";
    private const string RouteLabel = "route";

    // Invocations run from a millisecond to Lambda's 900 s limit.
    private static readonly double[] DurationBuckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900];

    // A cold start's Init takes tens of milliseconds (a small script) to seconds, bounded by 10 s or the timeout on retry.
    private static readonly double[] InitBuckets = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900];

    private readonly Counter<long> _invocations;
    private readonly Counter<long> _errors;
    private readonly Counter<long> _throttles;
    private readonly Counter<long> _coldStarts;
    private readonly Histogram<double> _duration;
    private readonly Histogram<double> _initDuration;
    private readonly Counter<double> _billedDuration;
    private readonly Counter<double> _gbSeconds;
    private readonly UpDownCounter<long> _concurrentExecutions;
    private readonly Counter<long> _s3Requests;
    private readonly Counter<long> _s3Bytes;
    private readonly Counter<long> _apiRequests;
    private readonly Histogram<double> _apiLatency;
    private readonly Histogram<double> _apiIntegrationLatency;

    // API Gateway answers from a fraction of a millisecond (its own errors) to the 30 s integration timeout.
    private static readonly double[] ApiLatencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

    public LaminaMetrics(int maxFunctionLabelSets = PrometheusExporter.DefaultMaxFunctionLabelSets)
    {
        Meter = new Meter(MeterName);
        _invocations = Meter.CreateCounter<long>("lamina.invocations", "{invocation}",
            "Invocations that ran (function errors included, throttles not), as Lambda's Invocations metric");
        _errors = Meter.CreateCounter<long>("lamina.errors", "{invocation}",
            "Invocations that ended in a function error: the handler's error, a timeout, a crash, a failed Init");
        _throttles = Meter.CreateCounter<long>("lamina.throttles", "{invocation}",
            "Invocations refused for lack of concurrency (reserved_concurrency, account_concurrency) or memory (memory_budget)");
        _coldStarts = Meter.CreateCounter<long>("lamina.cold_starts", "{environment}",
            "Environments started, by reason: first_invoke, scale_out, after_eviction, after_update, after_failure, provisioned");
        _duration = Meter.CreateHistogram("lamina.duration", "s",
            "Invocation duration, as the REPORT line's Duration", tags: null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = DurationBuckets });
        _initDuration = Meter.CreateHistogram("lamina.init_duration", "s",
            "Init duration of cold starts (sandbox and Init, as the REPORT line's Init Duration)", tags: null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = InitBuckets });
        _billedDuration = Meter.CreateCounter<double>("lamina.billed_duration", "s",
            "Billed duration as Lambda bills it: each invocation's duration rounded up to the millisecond");
        _gbSeconds = Meter.CreateCounter<double>("lamina.gb_seconds", "{GB-s}",
            "Compute as Lambda bills it: billed duration times MemorySize / 1024");
        _concurrentExecutions = Meter.CreateUpDownCounter<long>("lamina.concurrent_executions", "{invocation}",
            "Invocations running now (admitted, until their environment is given back)");
        _s3Requests = Meter.CreateCounter<long>("lamina.s3.requests", "{request}",
            "S3 requests by operation (S3's names: PutObject, GetObject, …) and status class (2xx, 3xx, 4xx, 5xx)");
        _s3Bytes = Meter.CreateCounter<long>("lamina.s3.bytes", "By",
            "Bytes S3 requests carried, by direction: in (request bodies as sent) and out (response bodies of known length)");
        _apiRequests = Meter.CreateCounter<long>("lamina.api.requests", "{request}",
            "Requests to API Gateway APIs by API, stage, route and status class (2xx, 4xx, 5xx), as API Gateway's Count, 4XXError and 5XXError");
        _apiLatency = Meter.CreateHistogram("lamina.api.latency", "s",
            "Time from a request to an API until its answer, as API Gateway's Latency", tags: null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = ApiLatencyBuckets });
        _apiIntegrationLatency = Meter.CreateHistogram("lamina.api.integration_latency", "s",
            "Time the integration (function or HTTP endpoint) took, as API Gateway's IntegrationLatency", tags: null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = ApiLatencyBuckets });
        Exporter = new PrometheusExporter(Meter, maxFunctionLabelSets);
    }

    /// <summary>
    /// A request to an API Gateway API was answered with <paramref name="status"/>. Labels are the API's id, stage name
    /// and route key (strings its compiled tables hold, so recording allocates nothing).
    /// </summary>
    public void RecordApiRequest(string api, string stage, string route, int status, double latencyMs, double? integrationLatencyMs)
    {
        var apiTag = new KeyValuePair<string, object?>(ApiLabel, api);
        var stageTag = new KeyValuePair<string, object?>(StageLabel, stage);
        var routeTag = new KeyValuePair<string, object?>(RouteLabel, route);
        var statusClass = status >= 500 ? "5xx" : status >= 400 ? "4xx" : status >= 300 ? "3xx" : "2xx";
        // TagList: four tags without an array (the params overload would allocate one per request).
        _apiRequests.Add(1, new TagList { apiTag, stageTag, routeTag, new KeyValuePair<string, object?>("status", statusClass) });
        _apiLatency.Record(latencyMs / 1000, apiTag, stageTag, routeTag);
        if (integrationLatencyMs is { } integration)
        {
            _apiIntegrationLatency.Record(integration / 1000, apiTag, stageTag, routeTag);
        }
    }

    public Meter Meter { get; }

    /// <summary>An S3 request ended (<paramref name="operation"/> is a literal: label values are compared by identity).</summary>
    public void S3Request(string operation, int status, long received, long sent)
    {
        var statusClass = status switch { < 300 => "2xx", < 400 => "3xx", < 500 => "4xx", _ => "5xx" };
        _s3Requests.Add(1, new KeyValuePair<string, object?>("operation", operation), new KeyValuePair<string, object?>("status", statusClass));
        if (received > 0)
        {
            _s3Bytes.Add(received, new KeyValuePair<string, object?>("direction", "in"));
        }
        if (sent > 0)
        {
            _s3Bytes.Add(sent, new KeyValuePair<string, object?>("direction", "out"));
        }
    }

    /// <summary>What <c>GET /metrics</c> writes.</summary>
    public PrometheusExporter Exporter { get; }

    /// <summary>An invocation was admitted (it runs until <see cref="InvocationEnded"/>).</summary>
    public void InvocationStarted(FunctionConfig config) => _concurrentExecutions.Add(1, Function(config), Version(config));

    public void InvocationEnded(FunctionConfig config) => _concurrentExecutions.Add(-1, Function(config), Version(config));

    /// <summary>
    /// An invocation ran: its REPORT's <paramref name="durationMs"/> (null when it never reached an environment), billed
    /// as Lambda does (rounded up to the millisecond, times MemorySize for GB-seconds).
    /// </summary>
    public void RecordInvocation(FunctionConfig config, double? durationMs, bool isError)
    {
        var function = Function(config);
        var version = Version(config);
        _invocations.Add(1, function, version);
        if (isError)
        {
            _errors.Add(1, function, version);
        }
        if (durationMs is { } ms)
        {
            var billedSeconds = Math.Ceiling(ms) / 1000;
            _duration.Record(ms / 1000, function, version);
            _billedDuration.Add(billedSeconds, function, version);
            _gbSeconds.Add(billedSeconds * config.MemorySize / 1024, function, version);
        }
    }

    /// <summary>An environment started for <paramref name="reason"/>; <paramref name="initDurationMs"/> when its Init ended.</summary>
    public void RecordColdStart(FunctionConfig config, ColdStartReason reason, double? initDurationMs)
    {
        _coldStarts.Add(1, Function(config), Version(config), new KeyValuePair<string, object?>("reason", ColdStart.Label(reason)));
        if (initDurationMs is { } ms)
        {
            _initDuration.Record(ms / 1000, Function(config), Version(config));
        }
    }

    /// <summary>
    /// An invocation was throttled: <paramref name="reason"/> is the limiter's (Lambda's reason,
    /// <see cref="ConcurrencyLimiter.ReservedLimitReason"/> or <see cref="ConcurrencyLimiter.AccountLimitReason"/>) or
    /// <see cref="MemoryBudgetThrottle"/>.
    /// </summary>
    public void RecordThrottle(FunctionConfig config, string reason)
    {
        var label = reason switch
        {
            ConcurrencyLimiter.ReservedLimitReason => "reserved_concurrency",
            ConcurrencyLimiter.AccountLimitReason => "account_concurrency",
            _ => reason,
        };
        _throttles.Add(1, Function(config), Version(config), new KeyValuePair<string, object?>("reason", label));
    }

    public void Dispose()
    {
        Exporter.Dispose();
        Meter.Dispose();
    }

    /// <summary>A function was deleted: its series go (and, past the cap, its place goes to another function).</summary>
    public void ForgetFunction(string function) => Exporter.Forget((PrometheusExporter.FunctionLabel, function));

    /// <summary>A configuration stopped being current: a published version's series go (<c>$LATEST</c>'s carry on).</summary>
    public void ForgetRetired(FunctionConfig config)
    {
        if (config.Version != FunctionEntry.Latest)
        {
            Exporter.Forget((PrometheusExporter.FunctionLabel, config.Name), (PrometheusExporter.VersionLabel, config.Version));
        }
    }

    /// <summary>An API Gateway API was deleted: its series go.</summary>
    public void ForgetApi(string api) => Exporter.Forget((ApiLabel, api));

    /// <summary>A stage (<paramref name="route"/> null) or one of its routes is no longer served: its series go.</summary>
    public void ForgetApiStageOrRoute(string api, string stage, string? route)
    {
        if (route is null)
        {
            Exporter.Forget((ApiLabel, api), (StageLabel, stage));
        }
        else
        {
            Exporter.Forget((ApiLabel, api), (StageLabel, stage), (RouteLabel, route));
        }
    }

    private static KeyValuePair<string, object?> Function(FunctionConfig config) => new(PrometheusExporter.FunctionLabel, config.Name);

    private static KeyValuePair<string, object?> Version(FunctionConfig config) => new(PrometheusExporter.VersionLabel, config.Version);
}
