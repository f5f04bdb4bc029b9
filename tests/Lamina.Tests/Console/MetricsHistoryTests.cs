using Lamina.Server.Diagnostics;
using Lamina.Server.Invoke;
using Lamina.Server.Lambda;
using Lamina.Server.WebConsole;
using Microsoft.Extensions.Time.Testing;

namespace Lamina.Tests.Console;

/// <summary>The per-minute history the console's charts read (issue #26), fed by the same instruments as /metrics.</summary>
public sealed class MetricsHistoryTests
{
    private static readonly DateTimeOffset Start = new(2026, 12, 1, 10, 0, 30, TimeSpan.Zero);

    private static FunctionConfig Config(string name = "f", string version = "$LATEST") => new()
    {
        Name = name,
        Version = version,
        MemorySize = 128,
        Runtime = "python3.12",
        Role = "arn:aws:iam::000000000000:role/r",
        Handler = "app.handler",
        CodeSha256 = Convert.ToBase64String(new byte[32]),
        CodeSize = 1,
        LastModified = Start,
        RevisionId = "r",
    };

    private static (LaminaMetrics Metrics, MetricsHistory Sut, FakeTimeProvider Time) CreateSut()
    {
        var time = new FakeTimeProvider(Start);
        var metrics = new LaminaMetrics();
        return (metrics, new MetricsHistory(metrics, time, Microsoft.Extensions.Logging.Abstractions.NullLogger<MetricsHistory>.Instance), time);
    }

    [Fact]
    public void Series_CountsEachMinuteApart_AndFillsQuietMinutesWithZeros()
    {
        var (metrics, sut, time) = CreateSut();
        using var _ = metrics;
        using var __ = sut;
        var config = Config();

        metrics.RecordInvocation(config, 10, isError: false);
        metrics.RecordInvocation(config, 20, isError: true);
        metrics.RecordColdStart(config, ColdStartReason.FirstInvoke, 50);
        time.Advance(TimeSpan.FromMinutes(2));
        metrics.RecordInvocation(config, 30, isError: false);
        metrics.RecordThrottle(config, ConcurrencyLimiter.ReservedLimitReason);

        var (samples, concurrent) = sut.Series("f", 3);

        Assert.Equal(3, samples.Count);
        Assert.Equal("2026-12-01T10:00:00Z", samples[0].Timestamp);
        Assert.Equal("2026-12-01T10:02:00Z", samples[2].Timestamp);
        Assert.Equal((2, 1, 1, 0), (samples[0].Invocations, samples[0].Errors, samples[0].ColdStarts, samples[0].Throttles));
        Assert.Equal((0, null), (samples[1].Invocations, samples[1].DurationP50));
        Assert.Equal((1, 0, 1), (samples[2].Invocations, samples[2].Errors, samples[2].Throttles));
        Assert.Equal(15, samples[0].DurationAverage);
        Assert.Equal(20, samples[0].DurationMax);
        Assert.Equal(0, concurrent);
        Assert.Equal((0L, null), (sut.Series("unknown", 3).Samples[2].Invocations, sut.Series("unknown", 3).Samples[2].DurationP99));
    }

    [Fact]
    public void Series_PercentilesAreWithinTheBucketsError_AndNeverAboveTheMaximum()
    {
        var (metrics, sut, _) = CreateSut();
        using var _m = metrics;
        using var _s = sut;
        var config = Config();
        for (var i = 1; i <= 100; i++)
        {
            metrics.RecordInvocation(config, i, isError: false); // 1 … 100 ms
        }

        var sample = sut.Series("f", 1).Samples[0];

        Assert.InRange(sample.DurationP50!.Value, 50 / 1.1, 50 * 1.1);
        Assert.InRange(sample.DurationP99!.Value, 99 / 1.1, 100);
        Assert.Equal(100, sample.DurationMax);
    }

    [Fact]
    public void Concurrency_IsTheMinutesPeak_AndCarriesIntoTheNextMinute()
    {
        var (metrics, sut, time) = CreateSut();
        using var _m = metrics;
        using var _s = sut;
        var config = Config();

        metrics.InvocationStarted(config);
        metrics.InvocationStarted(config);
        metrics.InvocationStarted(Config(version: "1")); // versions of one function add up
        metrics.InvocationEnded(config);
        time.Advance(TimeSpan.FromMinutes(1));
        metrics.InvocationEnded(config);

        var (samples, concurrent) = sut.Series("f", 2);

        Assert.Equal(3, samples[0].ConcurrencyMax);
        Assert.Equal(2, samples[1].ConcurrencyMax); // still running when the minute began
        Assert.Equal(1, concurrent);
    }

    [Fact]
    public void Totals_CoverTheWindowOnly_AndForgetFunctionsIdleForTheWholeRing()
    {
        var (metrics, sut, time) = CreateSut();
        using var _m = metrics;
        using var _s = sut;

        metrics.RecordInvocation(Config("old"), 1, isError: true);
        time.Advance(TimeSpan.FromMinutes(61));
        metrics.RecordInvocation(Config("new"), 1, isError: false);

        var lastHour = sut.Totals(60);
        Assert.Equal(["new", "old"], lastHour.Select(t => t.FunctionName));
        Assert.Equal(0, lastHour.Single(t => t.FunctionName == "old").Invocations);
        Assert.Equal(1, sut.Totals(62).Single(t => t.FunctionName == "old").Errors);

        time.Advance(TimeSpan.FromMinutes(MetricsHistory.MinutesKept));
        Assert.Empty(sut.Totals(60));
    }

    [Fact]
    public void Ring_ReusesASlotOnlyForItsOwnMinute()
    {
        var (metrics, sut, time) = CreateSut();
        using var _m = metrics;
        using var _s = sut;

        metrics.RecordInvocation(Config(), 1, isError: false);
        time.Advance(TimeSpan.FromMinutes(MetricsHistory.MinutesKept)); // the same slot, one ring later
        metrics.RecordInvocation(Config(), 1, isError: false);

        var samples = sut.Series("f", MetricsHistory.MinutesKept).Samples;
        Assert.Equal(1, samples.Sum(s => s.Invocations));
        Assert.Equal(1, samples[^1].Invocations);
    }

    [Theory]
    [InlineData(0.01)]
    [InlineData(0.5)]
    [InlineData(3)]
    [InlineData(250)]
    [InlineData(899_000)]
    public void BucketOf_ReportsAValueWithinTenPercent(double ms)
    {
        var reported = MetricsHistory.ValueOf(MetricsHistory.BucketOf(ms));

        if (ms <= 0.0625)
        {
            Assert.Equal(0.0625, reported);
        }
        else
        {
            Assert.InRange(reported / ms, 1 / 1.1, 1.1);
        }
    }
}
