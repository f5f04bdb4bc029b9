using System.Diagnostics.Metrics;
using Lamina.Server.Diagnostics;

namespace Lamina.Tests.Diagnostics;

/// <summary>The text exposition format 0.0.4 written from a meter's instruments (issue #7).</summary>
public sealed class PrometheusExporterTests : IDisposable
{
    // A meter of each test's own: the exporter listens to that instance only, whatever its name.
    private readonly Meter _meter = new("Lamina.Tests.Exporter");

    public void Dispose() => _meter.Dispose();

    private PrometheusExporter CreateSut(int maxFunctionLabelSets = PrometheusExporter.DefaultMaxFunctionLabelSets) => new(_meter, maxFunctionLabelSets);

    private static KeyValuePair<string, object?> Tag(string key, string value) => new(key, value);

    private static string[] Lines(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    [Fact]
    public void Counter_IsWrittenWithHelpTypeAndTotalSuffix()
    {
        using var sut = CreateSut();
        var counter = _meter.CreateCounter<long>("lamina.invocations", "{invocation}", "Invocations that ran");

        counter.Add(2, Tag("function", "f"), Tag("version", "$LATEST"));
        counter.Add(3, Tag("function", "f"), Tag("version", "$LATEST"));
        counter.Add(1, Tag("function", "g"), Tag("version", "1"));

        Assert.Equal(
        [
            "# HELP lamina_invocations_total Invocations that ran",
            "# TYPE lamina_invocations_total counter",
            "lamina_invocations_total{function=\"f\",version=\"$LATEST\"} 5",
            "lamina_invocations_total{function=\"g\",version=\"1\"} 1",
        ], Lines(sut.Scrape()));
    }

    [Fact]
    public void Counter_NameAlreadyEndingInTotalOrUnit_IsNotSuffixedTwice()
    {
        using var sut = CreateSut();
        _meter.CreateCounter<double>("lamina.billed_duration_seconds_total", "s").Add(0.5);
        _meter.CreateCounter<double>("lamina.gb_seconds", "{GB-s}").Add(0.25);

        var text = sut.Scrape();

        Assert.Contains("lamina_billed_duration_seconds_total 0.5\n", text);
        Assert.Contains("lamina_gb_seconds_total 0.25\n", text);
    }

    [Fact]
    public void LabelValues_AreEscaped()
    {
        using var sut = CreateSut();
        var counter = _meter.CreateCounter<long>("escaped");

        counter.Add(1, Tag("path", "a\\b\"c\nd"));

        Assert.Contains("escaped_total{path=\"a\\\\b\\\"c\\nd\"} 1\n", sut.Scrape());
    }

    [Fact]
    public void Help_BackslashAndNewline_AreEscaped()
    {
        using var sut = CreateSut();
        _meter.CreateCounter<long>("helped", unit: null, description: "one\\two\nthree \"quoted\"");

        Assert.Contains("# HELP helped_total one\\\\two\\nthree \"quoted\"\n", sut.Scrape());
    }

    [Fact]
    public void NamesAndLabelNames_InvalidCharacters_AreReplaced()
    {
        using var sut = CreateSut();
        _meter.CreateCounter<long>("9lamina.some-thing/x").Add(1, Tag("a.b-c", "v"));

        Assert.Contains("_9lamina_some_thing_x_total{a_b_c=\"v\"} 1\n", sut.Scrape());
    }

    [Fact]
    public void Histogram_BucketsAreCumulative_WithSumAndCount()
    {
        using var sut = CreateSut();
        var histogram = _meter.CreateHistogram("lamina.duration", "s", "Duration", tags: null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.1, 1, 2.5] });

        foreach (var value in new[] { 0.05, 0.1, 0.5, 2, 7.35 })
        {
            histogram.Record(value, Tag("function", "f"));
        }

        Assert.Equal(
        [
            "# HELP lamina_duration_seconds Duration",
            "# TYPE lamina_duration_seconds histogram",
            "lamina_duration_seconds_bucket{function=\"f\",le=\"0.1\"} 2", // le is inclusive: 0.1 counts here
            "lamina_duration_seconds_bucket{function=\"f\",le=\"1\"} 3",
            "lamina_duration_seconds_bucket{function=\"f\",le=\"2.5\"} 4",
            "lamina_duration_seconds_bucket{function=\"f\",le=\"+Inf\"} 5",
            "lamina_duration_seconds_sum{function=\"f\"} 10",
            "lamina_duration_seconds_count{function=\"f\"} 5",
        ], Lines(sut.Scrape()));
    }

    [Fact]
    public void Histogram_WithoutAdviceOrLabels_UsesDefaultBuckets()
    {
        using var sut = CreateSut();
        _meter.CreateHistogram<double>("plain").Record(0.003);

        var lines = Lines(sut.Scrape());

        Assert.Contains("plain_bucket{le=\"0.005\"} 1", lines);
        Assert.Contains("plain_bucket{le=\"10\"} 1", lines);
        Assert.Contains("plain_bucket{le=\"+Inf\"} 1", lines);
        Assert.Contains("plain_sum 0.003", lines);
        Assert.Contains("plain_count 1", lines);
    }

    [Fact]
    public void UpDownCounter_IsAGaugeOfTheNetValue()
    {
        using var sut = CreateSut();
        var running = _meter.CreateUpDownCounter<long>("lamina.concurrent_executions");

        running.Add(1, Tag("function", "f"));
        running.Add(1, Tag("function", "f"));
        running.Add(-1, Tag("function", "f"));

        var lines = Lines(sut.Scrape());
        Assert.Contains("# TYPE lamina_concurrent_executions gauge", lines);
        Assert.Contains("lamina_concurrent_executions{function=\"f\"} 1", lines);
    }

    [Fact]
    public void ObservableGauge_IsReadAtEachScrape_AndStaleLabelSetsDisappear()
    {
        using var sut = CreateSut();
        var states = new List<Measurement<long>> { new(2, Tag("state", "idle")), new(1, Tag("state", "busy")) };
        _meter.CreateObservableGauge("lamina.environments", () => states.ToArray());

        var first = Lines(sut.Scrape());
        states = [new(3, Tag("state", "idle"))];
        var second = Lines(sut.Scrape());

        Assert.Contains("lamina_environments{state=\"busy\"} 1", first);
        Assert.Contains("lamina_environments{state=\"idle\"} 2", first);
        Assert.Contains("lamina_environments{state=\"idle\"} 3", second);
        Assert.DoesNotContain(second, line => line.Contains("busy", StringComparison.Ordinal));
    }

    [Fact]
    public void Gauge_SpecialValues_AreWrittenAsPrometheusSpellsThem()
    {
        using var sut = CreateSut();
        var values = new[] { double.PositiveInfinity, double.NegativeInfinity, double.NaN, 1e-7, 12345678.5 };
        var i = 0;
        _meter.CreateObservableGauge("special", () => values.Select(v => new Measurement<double>(v, Tag("i", (i++ % values.Length).ToString(System.Globalization.CultureInfo.InvariantCulture)))).ToArray());

        var lines = Lines(sut.Scrape());

        Assert.Contains("special{i=\"0\"} +Inf", lines);
        Assert.Contains("special{i=\"1\"} -Inf", lines);
        Assert.Contains("special{i=\"2\"} NaN", lines);
        Assert.Contains("special{i=\"3\"} 1E-07", lines);
        Assert.Contains("special{i=\"4\"} 12345678.5", lines);
    }

    [Fact]
    public void FunctionLabelSets_PastTheCap_AreFoldedIntoOther()
    {
        using var sut = CreateSut(maxFunctionLabelSets: 2);
        var counter = _meter.CreateCounter<long>("calls");
        var coldStarts = _meter.CreateCounter<long>("starts");

        counter.Add(1, Tag("function", "a"), Tag("version", "1"));
        counter.Add(1, Tag("function", "b"), Tag("version", "1"));
        counter.Add(1, Tag("function", "c"), Tag("version", "1"));
        counter.Add(1, Tag("function", "d"), Tag("version", "7"));
        counter.Add(1, Tag("function", "c"), Tag("version", "1"));
        counter.Add(1, Tag("function", "a"), Tag("version", "1"));
        coldStarts.Add(1, Tag("function", "b"), Tag("version", "1"), Tag("reason", "first_invoke"));
        coldStarts.Add(1, Tag("function", "e"), Tag("version", "1"), Tag("reason", "scale_out"));

        var lines = Lines(sut.Scrape());

        Assert.Contains("calls_total{function=\"a\",version=\"1\"} 2", lines);
        Assert.Contains("calls_total{function=\"b\",version=\"1\"} 1", lines);
        Assert.Contains("calls_total{function=\"_other\",version=\"_other\"} 3", lines);
        Assert.DoesNotContain(lines, line => line.Contains("\"c\"", StringComparison.Ordinal) || line.Contains("\"d\"", StringComparison.Ordinal));
        // The cap counts function/version pairs across metrics: "b" is known, "e" is not; other labels are kept.
        Assert.Contains("starts_total{function=\"b\",version=\"1\",reason=\"first_invoke\"} 1", lines);
        Assert.Contains("starts_total{function=\"_other\",version=\"_other\",reason=\"scale_out\"} 1", lines);
    }

    [Fact]
    public void Forget_RemovesTheSeriesOfWhatWasDeleted_AndMakesRoomUnderTheCap()
    {
        using var sut = CreateSut(maxFunctionLabelSets: 3);
        var counter = _meter.CreateCounter<long>("calls");
        var latency = _meter.CreateHistogram<double>("latency");
        string a = "a", b = "b", c = "c", latest = "$LATEST", one = "1";

        counter.Add(1, Tag("function", a), Tag("version", latest));
        counter.Add(1, Tag("function", a), Tag("version", one));
        latency.Record(0.5, Tag("function", a), Tag("version", one));
        counter.Add(1, Tag("function", b), Tag("version", latest));
        counter.Add(1, Tag("function", c), Tag("version", latest)); // past the cap (three pairs): _other

        sut.Forget(("function", a), ("version", one)); // version 1 of a deleted
        var lines = Lines(sut.Scrape());
        Assert.Contains("calls_total{function=\"a\",version=\"$LATEST\"} 1", lines);
        Assert.DoesNotContain(lines, line => line.Contains("version=\"1\"", StringComparison.Ordinal));

        sut.Forget(("function", a)); // a deleted: room under the cap for c, measured since under its own name
        counter.Add(1, Tag("function", c), Tag("version", latest));
        lines = Lines(sut.Scrape());
        Assert.DoesNotContain(lines, line => line.Contains("function=\"a\"", StringComparison.Ordinal));
        Assert.Contains("calls_total{function=\"b\",version=\"$LATEST\"} 1", lines);
        Assert.Contains("calls_total{function=\"c\",version=\"$LATEST\"} 1", lines);
        Assert.Contains("calls_total{function=\"_other\",version=\"_other\"} 1", lines);

        // The same string instances measured again (a function made anew with the name) do not revive the removed
        // series through the instance cache: a new one starts from zero.
        counter.Add(5, Tag("function", a), Tag("version", latest));
        Assert.Contains("calls_total{function=\"a\",version=\"$LATEST\"} 5", Lines(sut.Scrape()));
    }

    [Fact]
    public void Forget_KeepsAnUpDownCounterNotAtZero_UntilItIsBackAtZero()
    {
        using var sut = CreateSut();
        var running = _meter.CreateUpDownCounter<long>("running");
        string a = "a", b = "b", latest = "$LATEST";

        running.Add(1, Tag("function", a), Tag("version", latest)); // still running when a is deleted
        running.Add(1, Tag("function", b), Tag("version", latest));
        running.Add(-1, Tag("function", b), Tag("version", latest));
        sut.Forget(("function", a));
        sut.Forget(("function", b));
        running.Add(-1, Tag("function", a), Tag("version", latest));

        Assert.Equal(["# TYPE running gauge", "running{function=\"a\",version=\"$LATEST\"} 0"], Lines(sut.Scrape()));
    }

    [Fact]
    public void Forget_OtherLabels_LeavesTheRestAlone()
    {
        using var sut = CreateSut();
        var requests = _meter.CreateCounter<long>("requests");
        string api1 = "api1", api2 = "api2", stage = "$default", status = "2xx";

        requests.Add(1, Tag("api", api1), Tag("stage", stage), Tag("status", status));
        requests.Add(2, Tag("api", api2), Tag("stage", stage), Tag("status", status));
        sut.Forget(("api", api1));
        requests.Add(3, Tag("api", api2), Tag("stage", stage), Tag("status", status));

        Assert.Equal(["# TYPE requests_total counter", "requests_total{api=\"api2\",stage=\"$default\",status=\"2xx\"} 5"], Lines(sut.Scrape()));
    }

    [Fact]
    public void SameValues_InOtherStringInstances_AreOneSeries()
    {
        using var sut = CreateSut();
        var counter = _meter.CreateCounter<long>("calls");

        // Past the instance cache's bound too (it starts afresh): every measurement still lands in the one series.
        for (var i = 0; i < 20_000; i++)
        {
            counter.Add(1, Tag("function", new string('f', 1)), Tag("version", "1"));
        }
        counter.Add(1, new KeyValuePair<string, object?>("function", "f"), new KeyValuePair<string, object?>("version", 1));

        Assert.Equal(["# TYPE calls_total counter", "calls_total{function=\"f\",version=\"1\"} 20001"], Lines(sut.Scrape()));
    }

    [Fact]
    public void OtherMeters_AreIgnored_EvenWithTheSameName()
    {
        using var sut = CreateSut();
        using var other = new Meter(_meter.Name);
        other.CreateCounter<long>("foreign").Add(1);
        _meter.CreateCounter<long>("own").Add(1);

        var text = sut.Scrape();

        Assert.Contains("own_total 1\n", text);
        Assert.DoesNotContain("foreign", text, StringComparison.Ordinal);
    }

    [Fact]
    public void EmptyFamily_HasHelpAndTypeOnly()
    {
        using var sut = CreateSut();
        _meter.CreateCounter<long>("lamina.throttles", unit: null, description: "Throttles");

        Assert.Equal(["# HELP lamina_throttles_total Throttles", "# TYPE lamina_throttles_total counter"], Lines(sut.Scrape()));
    }

    [Fact]
    public async Task Counter_ConcurrentAdds_AreAllCounted()
    {
        using var sut = CreateSut();
        var counter = _meter.CreateCounter<long>("busy");
        var sum = _meter.CreateCounter<double>("busy_sum");
        var histogram = _meter.CreateHistogram("busy_hist", unit: null, description: null, tags: null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = [1] });

        await Task.WhenAll(Enumerable.Range(0, 4).Select(t => Task.Run(() =>
        {
            for (var i = 0; i < 10_000; i++)
            {
                counter.Add(1, Tag("function", "f"), Tag("version", "1"));
                sum.Add(0.5, Tag("function", "f"), Tag("version", "1"));
                histogram.Record(i % 2 == 0 ? 0.5 : 2, Tag("function", "f"));
            }
        })));

        var lines = Lines(sut.Scrape());
        Assert.Contains("busy_total{function=\"f\",version=\"1\"} 40000", lines);
        Assert.Contains("busy_sum_total{function=\"f\",version=\"1\"} 20000", lines);
        Assert.Contains("busy_hist_bucket{function=\"f\",le=\"1\"} 20000", lines);
        Assert.Contains("busy_hist_count{function=\"f\"} 40000", lines);
        Assert.Contains("busy_hist_sum{function=\"f\"} 50000", lines);
    }
}
