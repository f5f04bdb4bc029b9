using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Running;
using Lamina.Server.Diagnostics;
using Lamina.Server.Lambda;
using Prometheus;

BenchmarkSwitcher.FromAssembly(typeof(MetricsBenchmarks).Assembly).Run(args);

/// <summary>
/// What the warm path pays for its metrics per invocation (admitted, ran, given back: the calls Invoker makes), with
/// Lamina's own exporter listening to its Meter, and with prometheus-net's metrics recorded instead (the same series:
/// invocations, duration histogram, billed duration, GB-seconds, concurrent executions, labelled by function and
/// version). Issue #18 asks for prometheus-net if it keeps this cost.
/// </summary>
[MemoryDiagnoser]
public class MetricsBenchmarks
{
    private static readonly FunctionConfig Config = new()
    {
        Name = "echo",
        Runtime = "python3.12",
        Role = "arn:aws:iam::000000000000:role/r",
        Handler = "app.handler",
        CodeSha256 = "x",
        CodeSize = 1,
        LastModified = DateTimeOffset.UnixEpoch,
        RevisionId = "r",
    };

    private LaminaMetrics _lamina = null!;
    private LaminaMetrics _withHistory = null!;
    private Lamina.Server.WebConsole.MetricsHistory _history = null!;
    private Counter _invocations = null!;
    private Prometheus.Histogram _duration = null!;
    private Counter _billed = null!;
    private Counter _gbSeconds = null!;
    private Gauge _concurrent = null!;
    private (Counter.Child Invocations, Prometheus.Histogram.Child Duration, Counter.Child Billed, Counter.Child GbSeconds, Gauge.Child Concurrent) _children;

    [GlobalSetup]
    public void Setup()
    {
        _lamina = new LaminaMetrics();
        // The server as it runs since issue #26: the exporter and the console's per-minute history, both listening.
        _withHistory = new LaminaMetrics();
        _history = new Lamina.Server.WebConsole.MetricsHistory(_withHistory, TimeProvider.System,
            Microsoft.Extensions.Logging.Abstractions.NullLogger<Lamina.Server.WebConsole.MetricsHistory>.Instance);
        var factory = Prometheus.Metrics.WithCustomRegistry(Prometheus.Metrics.NewCustomRegistry());
        string[] labels = ["function", "version"];
        _invocations = factory.CreateCounter("lamina_invocations_total", "Invocations", labels);
        _duration = factory.CreateHistogram("lamina_duration_seconds", "Duration", new HistogramConfiguration
        {
            LabelNames = labels,
            Buckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900],
        });
        _billed = factory.CreateCounter("lamina_billed_duration_seconds_total", "Billed", labels);
        _gbSeconds = factory.CreateCounter("lamina_gb_seconds_total", "GB-s", labels);
        _concurrent = factory.CreateGauge("lamina_concurrent_executions", "Running", labels);
        _children = (_invocations.WithLabels(Config.Name, Config.Version), _duration.WithLabels(Config.Name, Config.Version),
            _billed.WithLabels(Config.Name, Config.Version), _gbSeconds.WithLabels(Config.Name, Config.Version), _concurrent.WithLabels(Config.Name, Config.Version));
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _lamina.Dispose();
        _history.Dispose();
        _withHistory.Dispose();
    }

    [Benchmark(Baseline = true, Description = "Lamina's exporter (Meter + MeterListener)")]
    public void LaminaExporter()
    {
        _lamina.InvocationStarted(Config);
        _lamina.RecordInvocation(Config, 1.2, isError: false);
        _lamina.InvocationEnded(Config);
    }

    [Benchmark(Description = "Lamina's exporter and the console's metrics history (two MeterListeners)")]
    public void LaminaExporterAndHistory()
    {
        _withHistory.InvocationStarted(Config);
        _withHistory.RecordInvocation(Config, 1.2, isError: false);
        _withHistory.InvocationEnded(Config);
    }

    [Benchmark(Description = "prometheus-net 8.2.1, the same series")]
    public void PrometheusNet()
    {
        _concurrent.WithLabels(Config.Name, Config.Version).Inc();
        _invocations.WithLabels(Config.Name, Config.Version).Inc();
        _duration.WithLabels(Config.Name, Config.Version).Observe(0.0012);
        _billed.WithLabels(Config.Name, Config.Version).Inc(0.002);
        _gbSeconds.WithLabels(Config.Name, Config.Version).Inc(0.002 * 128 / 1024);
        _concurrent.WithLabels(Config.Name, Config.Version).Dec();
    }

    [Benchmark(Description = "prometheus-net 8.2.1, children cached per function version")]
    public void PrometheusNetCachedChildren()
    {
        _children.Concurrent.Inc();
        _children.Invocations.Inc();
        _children.Duration.Observe(0.0012);
        _children.Billed.Inc(0.002);
        _children.GbSeconds.Inc(0.002 * 128 / 1024);
        _children.Concurrent.Dec();
    }
}
