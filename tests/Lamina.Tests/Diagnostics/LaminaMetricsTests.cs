using Lamina.Server.Diagnostics;
using Lamina.Server.Invoke;
using Lamina.Server.Lambda;

namespace Lamina.Tests.Diagnostics;

/// <summary>What the invoke path reports, as <c>GET /metrics</c> shows it (issue #7).</summary>
public sealed class LaminaMetricsTests
{
    private static FunctionConfig Config(string name = "f", string version = "$LATEST", int memorySize = 512) => new()
    {
        Name = name,
        Version = version,
        MemorySize = memorySize,
        Runtime = "python3.12",
        Role = "arn:aws:iam::000000000000:role/r",
        Handler = "app.handler",
        CodeSha256 = Convert.ToBase64String(new byte[32]),
        CodeSize = 1,
        LastModified = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero),
        RevisionId = "r",
    };

    private static string[] Lines(LaminaMetrics metrics) => metrics.Exporter.Scrape().Split('\n', StringSplitOptions.RemoveEmptyEntries);

    [Fact]
    public void RecordInvocation_CountsBillsAndTimes()
    {
        using var sut = new LaminaMetrics();
        var config = Config();

        sut.RecordInvocation(config, durationMs: 10.2, isError: false);
        sut.RecordInvocation(config, durationMs: 1499.5, isError: true);
        sut.RecordInvocation(config, durationMs: null, isError: true); // never reached an environment

        var lines = Lines(sut);
        const string labels = "{function=\"f\",version=\"$LATEST\"}";
        Assert.Contains("lamina_invocations_total" + labels + " 3", lines);
        Assert.Contains("lamina_errors_total" + labels + " 2", lines);
        Assert.Contains("lamina_duration_seconds_count" + labels + " 2", lines);
        Assert.Contains("lamina_duration_seconds_bucket{function=\"f\",version=\"$LATEST\",le=\"0.025\"} 1", lines);
        Assert.Contains("lamina_duration_seconds_bucket{function=\"f\",version=\"$LATEST\",le=\"2.5\"} 2", lines);
        // Billed as the REPORT line: 11 ms + 1500 ms; GB-seconds: 1.511 s × 512 MB / 1024.
        var billed = Value(lines, "lamina_billed_duration_seconds_total" + labels);
        var gbSeconds = Value(lines, "lamina_gb_seconds_total" + labels);
        Assert.Equal(1.511, billed, 9);
        Assert.Equal(0.7555, gbSeconds, 9);
    }

    [Fact]
    public void RecordApiRequest_CountsByStatusClass_AndTimesPerRoute()
    {
        using var sut = new LaminaMetrics();

        sut.RecordApiRequest("abc", "$default", "GET /items/{id}", 200, latencyMs: 3, integrationLatencyMs: 2);
        sut.RecordApiRequest("abc", "$default", "GET /items/{id}", 201, latencyMs: 4, integrationLatencyMs: 3);
        sut.RecordApiRequest("abc", "$default", "GET /items/{id}", 502, latencyMs: 5, integrationLatencyMs: 4);
        sut.RecordApiRequest("abc", "$default", "-", 404, latencyMs: 0.2, integrationLatencyMs: null);

        var lines = Lines(sut);
        const string route = "api=\"abc\",stage=\"$default\",route=\"GET /items/{id}\"";
        Assert.Contains("lamina_api_requests_total{" + route + ",status=\"2xx\"} 2", lines);
        Assert.Contains("lamina_api_requests_total{" + route + ",status=\"5xx\"} 1", lines);
        Assert.Contains("lamina_api_requests_total{api=\"abc\",stage=\"$default\",route=\"-\",status=\"4xx\"} 1", lines);
        Assert.Contains("lamina_api_latency_seconds_count{" + route + "} 3", lines);
        Assert.Contains("lamina_api_integration_latency_seconds_count{" + route + "} 3", lines);
        Assert.DoesNotContain(lines, l => l.StartsWith("lamina_api_integration_latency_seconds_count{api=\"abc\",stage=\"$default\",route=\"-\"", StringComparison.Ordinal));
    }

    [Fact]
    public void RecordColdStart_CountsByReason_AndTimesInit()
    {
        using var sut = new LaminaMetrics();
        var config = Config(version: "3");

        sut.RecordColdStart(config, ColdStartReason.FirstInvoke, initDurationMs: 150);
        sut.RecordColdStart(config, ColdStartReason.ScaleOut, initDurationMs: 90);
        sut.RecordColdStart(config, ColdStartReason.ScaleOut, initDurationMs: null);

        var lines = Lines(sut);
        Assert.Contains("lamina_cold_starts_total{function=\"f\",version=\"3\",reason=\"first_invoke\"} 1", lines);
        Assert.Contains("lamina_cold_starts_total{function=\"f\",version=\"3\",reason=\"scale_out\"} 2", lines);
        Assert.Contains("lamina_init_duration_seconds_count{function=\"f\",version=\"3\"} 2", lines);
        Assert.Contains("lamina_init_duration_seconds_bucket{function=\"f\",version=\"3\",le=\"0.1\"} 1", lines);
    }

    [Fact]
    public void RecordThrottle_NamesTheReason()
    {
        using var sut = new LaminaMetrics();
        var config = Config();

        sut.RecordThrottle(config, ConcurrencyLimiter.ReservedLimitReason);
        sut.RecordThrottle(config, ConcurrencyLimiter.AccountLimitReason);
        sut.RecordThrottle(config, LaminaMetrics.MemoryBudgetThrottle);
        sut.RecordThrottle(config, LaminaMetrics.MemoryBudgetThrottle);

        var lines = Lines(sut);
        Assert.Contains("lamina_throttles_total{function=\"f\",version=\"$LATEST\",reason=\"reserved_concurrency\"} 1", lines);
        Assert.Contains("lamina_throttles_total{function=\"f\",version=\"$LATEST\",reason=\"account_concurrency\"} 1", lines);
        Assert.Contains("lamina_throttles_total{function=\"f\",version=\"$LATEST\",reason=\"memory_budget\"} 2", lines);
    }

    [Fact]
    public void InvocationStartedAndEnded_TrackConcurrentExecutions()
    {
        using var sut = new LaminaMetrics();
        var config = Config();

        sut.InvocationStarted(config);
        sut.InvocationStarted(config);
        sut.InvocationEnded(config);

        Assert.Contains("lamina_concurrent_executions{function=\"f\",version=\"$LATEST\"} 1", Lines(sut));
    }

    [Fact]
    public void Scrape_ListsEveryMetricWithItsType_BeforeAnythingHappened()
    {
        using var sut = new LaminaMetrics();

        var types = Lines(sut).Where(l => l.StartsWith("# TYPE ", StringComparison.Ordinal)).ToArray();

        Assert.Equal(
        [
            "# TYPE lamina_invocations_total counter",
            "# TYPE lamina_errors_total counter",
            "# TYPE lamina_throttles_total counter",
            "# TYPE lamina_cold_starts_total counter",
            "# TYPE lamina_duration_seconds histogram",
            "# TYPE lamina_init_duration_seconds histogram",
            "# TYPE lamina_billed_duration_seconds_total counter",
            "# TYPE lamina_gb_seconds_total counter",
            "# TYPE lamina_concurrent_executions gauge",
            "# TYPE lamina_s3_requests_total counter",
            "# TYPE lamina_s3_bytes_total counter",
            "# TYPE lamina_api_requests_total counter",
            "# TYPE lamina_api_latency_seconds histogram",
            "# TYPE lamina_api_integration_latency_seconds histogram",
        ], types);
    }

    private static double Value(string[] lines, string series)
    {
        var line = Assert.Single(lines, l => l.StartsWith(series + " ", StringComparison.Ordinal));
        return double.Parse(line[(series.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }
}
