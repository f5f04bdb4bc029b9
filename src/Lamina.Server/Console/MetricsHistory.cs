using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Lamina.Server.Diagnostics;

// Namespace WebConsole, folder Console/: a namespace Lamina.Server.Console would shadow System.Console in every
// Lamina.Server.* file that writes to the terminal.
namespace Lamina.Server.WebConsole;

/// <summary>
/// The recent history of each function's metrics, one sample per minute (issue #26): what the console's charts draw
/// and its function list's "last hour" columns show. A second listener on the <c>Lamina.Server</c> meter, beside the
/// Prometheus exporter, so the invoke path reports nothing new; read through <see cref="MetricsHistoryApi"/>.
/// </summary>
/// <remarks>
/// In memory only: a restart starts an empty history, as a Prometheus scrape's counters start again from zero. For a
/// long or durable history, scrape <c>/metrics</c>. Recording is one dictionary lookup by function name, one lock of
/// that function's history (uncontended unless the function runs concurrently) and a few adds; nothing is allocated
/// once the function's current minute exists.
/// </remarks>
internal sealed partial class MetricsHistory : IDisposable
{
    /// <summary>Minutes kept per function: three hours, enough for the console's 1 h and 3 h views.</summary>
    public const int MinutesKept = 180;

    /// <summary>
    /// Functions tracked at once (a function is forgotten once it has had no sample for <see cref="MinutesKept"/>):
    /// well past a node's active functions, and at most ~8 MB of samples when every minute of each has run.
    /// </summary>
    public const int MaxFunctions = 1000;

    // Duration buckets: powers of 2^(1/4) milliseconds (each 19% wider than the last) from 1/16 ms up to Lambda's
    // 900 s limit; a percentile is reported as its bucket's geometric middle, so within ±10% of the true value.
    private const double FirstBoundMs = 0.0625;
    private const double BucketsPerDoubling = 4;
    internal const int DurationBuckets = 97; // the last bucket ends at 2^24 / 16 ms ≈ 1,049 s

    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly MeterListener _listener;
    private int _fullReported;
    private readonly ConcurrentDictionary<string, FunctionHistory> _functions = new(StringComparer.Ordinal);

    public MetricsHistory(LaminaMetrics metrics, TimeProvider time, ILogger<MetricsHistory> logger)
    {
        _time = time;
        _logger = logger;
        var meter = metrics.Meter;
        _listener = new MeterListener
        {
            InstrumentPublished = (instrument, listener) =>
            {
                if (ReferenceEquals(instrument.Meter, meter) && KindOf(instrument.Name) is { } kind)
                {
                    listener.EnableMeasurementEvents(instrument, kind);
                }
            },
        };
        _listener.SetMeasurementEventCallback<long>((_, value, tags, state) => Record((Kind)state!, value, tags));
        _listener.SetMeasurementEventCallback<double>((_, value, tags, state) => Record((Kind)state!, value, tags));
        _listener.Start();
    }

    private enum Kind
    {
        Invocations,
        Errors,
        Throttles,
        ColdStarts,
        Duration,
        Concurrency,
    }

    private static Kind? KindOf(string instrument) => instrument switch
    {
        "lamina.invocations" => Kind.Invocations,
        "lamina.errors" => Kind.Errors,
        "lamina.throttles" => Kind.Throttles,
        "lamina.cold_starts" => Kind.ColdStarts,
        "lamina.duration" => Kind.Duration,
        "lamina.concurrent_executions" => Kind.Concurrency,
        _ => null,
    };

    public void Dispose() => _listener.Dispose();

    private void Record(Kind kind, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        string? function = null;
        foreach (var tag in tags)
        {
            if (tag.Key == PrometheusExporter.FunctionLabel)
            {
                function = tag.Value as string;
                break;
            }
        }
        if (function is null)
        {
            return;
        }
        var minute = CurrentMinute();
        if (!_functions.TryGetValue(function, out var history))
        {
            if (_functions.Count >= MaxFunctions)
            {
                Forget(minute);
                if (_functions.Count >= MaxFunctions)
                {
                    // Past the cap /metrics still counts it; said once, not on every invocation.
                    if (Interlocked.Exchange(ref _fullReported, 1) == 0)
                    {
                        Log.Full(_logger, MaxFunctions, function);
                    }
                    return;
                }
            }
            history = _functions.GetOrAdd(function, static _ => new FunctionHistory());
        }
        history.Record(kind, value, minute);
    }

    private long CurrentMinute() => _time.GetUtcNow().ToUnixTimeSeconds() / 60;

    // Functions with no sample in the window (deleted, or idle for three hours) are dropped.
    private void Forget(long minute)
    {
        foreach (var (name, history) in _functions)
        {
            if (history.LastMinute <= minute - MinutesKept)
            {
                _functions.TryRemove(new KeyValuePair<string, FunctionHistory>(name, history));
            }
        }
    }

    /// <summary>Totals over the last <paramref name="minutes"/> minutes (the current one included) of every function with a sample.</summary>
    public List<FunctionTotals> Totals(int minutes)
    {
        var now = CurrentMinute();
        Forget(now);
        var totals = new List<FunctionTotals>(_functions.Count);
        foreach (var (name, history) in _functions)
        {
            var sum = new FunctionTotals { FunctionName = name };
            history.Sum(now - minutes + 1, now, sum);
            totals.Add(sum);
        }
        totals.Sort(static (a, b) => string.CompareOrdinal(a.FunctionName, b.FunctionName));
        return totals;
    }

    /// <summary>One sample per minute of the last <paramref name="minutes"/> (oldest first; minutes without invocations are zeros).</summary>
    public (List<MetricsSample> Samples, long Concurrent) Series(string function, int minutes)
    {
        var now = CurrentMinute();
        var samples = new List<MetricsSample>(minutes);
        _functions.TryGetValue(function, out var history);
        for (var minute = now - minutes + 1; minute <= now; minute++)
        {
            var sample = new MetricsSample
            {
                Minute = minute,
                Timestamp = DateTimeOffset.FromUnixTimeSeconds(minute * 60).ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture),
            };
            history?.Fill(minute, sample);
            samples.Add(sample);
        }
        return (samples, history?.Concurrent ?? 0);
    }

    /// <summary>The bucket a duration falls in (exposed for tests).</summary>
    internal static int BucketOf(double ms) =>
        ms <= FirstBoundMs ? 0 : Math.Min(DurationBuckets - 1, (int)Math.Ceiling(Math.Log2(ms / FirstBoundMs) * BucketsPerDoubling));

    /// <summary>The value reported for a bucket: the geometric middle of its bounds (its upper bound for the first).</summary>
    internal static double ValueOf(int bucket) =>
        bucket == 0 ? FirstBoundMs : FirstBoundMs * Math.Pow(2, (bucket - 0.5) / BucketsPerDoubling);

    /// <summary>One function's ring of minutes; every member is read and written under its own lock.</summary>
    private sealed class FunctionHistory
    {
        private readonly Lock _lock = new();
        private readonly Minute?[] _ring = new Minute?[MinutesKept];
        private long _concurrent;

        public long LastMinute { get; private set; }

        public long Concurrent
        {
            get
            {
                lock (_lock)
                {
                    return _concurrent;
                }
            }
        }

        public void Record(Kind kind, double value, long minute)
        {
            lock (_lock)
            {
                var slot = Slot(minute);
                switch (kind)
                {
                    case Kind.Invocations:
                        slot.Invocations += (long)value;
                        break;
                    case Kind.Errors:
                        slot.Errors += (long)value;
                        break;
                    case Kind.Throttles:
                        slot.Throttles += (long)value;
                        break;
                    case Kind.ColdStarts:
                        slot.ColdStarts += (long)value;
                        break;
                    case Kind.Duration:
                        var ms = value * 1000; // the instrument is in seconds
                        slot.DurationCount++;
                        slot.DurationSumMs += ms;
                        slot.DurationMaxMs = Math.Max(slot.DurationMaxMs, ms);
                        (slot.Histogram ??= new long[DurationBuckets])[BucketOf(ms)]++;
                        break;
                    case Kind.Concurrency:
                        _concurrent = Math.Max(0, _concurrent + (long)value);
                        slot.ConcurrencyMax = Math.Max(slot.ConcurrencyMax, _concurrent);
                        break;
                }
            }
        }

        // The minute's slot, cleared when it last held a minute one ring ago. Under _lock.
        private Minute Slot(long minute)
        {
            var index = (int)(minute % MinutesKept);
            var slot = _ring[index] ??= new Minute();
            if (slot.Number != minute)
            {
                slot.Clear(minute);
                // Invocations running across the minute's start count in its concurrency.
                slot.ConcurrencyMax = _concurrent;
            }
            LastMinute = Math.Max(LastMinute, minute);
            return slot;
        }

        public void Sum(long from, long to, FunctionTotals totals)
        {
            lock (_lock)
            {
                foreach (var slot in _ring)
                {
                    if (slot is not null && slot.Number >= from && slot.Number <= to)
                    {
                        totals.Invocations += slot.Invocations;
                        totals.Errors += slot.Errors;
                        totals.Throttles += slot.Throttles;
                        totals.ColdStarts += slot.ColdStarts;
                    }
                }
                totals.ConcurrentExecutions = _concurrent;
            }
        }

        public void Fill(long minute, MetricsSample sample)
        {
            lock (_lock)
            {
                var slot = _ring[(int)(minute % MinutesKept)];
                if (slot is null || slot.Number != minute)
                {
                    return;
                }
                sample.Invocations = slot.Invocations;
                sample.Errors = slot.Errors;
                sample.Throttles = slot.Throttles;
                sample.ColdStarts = slot.ColdStarts;
                sample.ConcurrencyMax = slot.ConcurrencyMax;
                if (slot.DurationCount > 0)
                {
                    sample.DurationAverage = Math.Round(slot.DurationSumMs / slot.DurationCount, 3);
                    sample.DurationMax = Math.Round(slot.DurationMaxMs, 3);
                    sample.DurationP50 = Percentile(slot, 0.50);
                    sample.DurationP99 = Percentile(slot, 0.99);
                }
            }
        }

        // The bucket holding the nearest-rank percentile, never above the exact maximum.
        private static double Percentile(Minute slot, double p)
        {
            var rank = Math.Max(1, (long)Math.Ceiling(p * slot.DurationCount));
            long seen = 0;
            for (var i = 0; i < DurationBuckets; i++)
            {
                seen += slot.Histogram![i];
                if (seen >= rank)
                {
                    return Math.Round(Math.Min(ValueOf(i), slot.DurationMaxMs), 3);
                }
            }
            return Math.Round(slot.DurationMaxMs, 3);
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventIds.MetricsHistoryFull, LogLevel.Warning,
            "The console's metrics history holds {Max} functions, all active in the last 3 hours; {Function} and later ones are left out of its charts (GET /metrics still counts them)")]
        public static partial void Full(ILogger logger, int max, string function);
    }

    private sealed class Minute
    {
        public long Number = -1;
        public long Invocations;
        public long Errors;
        public long Throttles;
        public long ColdStarts;
        public long DurationCount;
        public double DurationSumMs;
        public double DurationMaxMs;
        public long ConcurrencyMax;
        public long[]? Histogram;

        public void Clear(long minute)
        {
            Number = minute;
            Invocations = Errors = Throttles = ColdStarts = DurationCount = ConcurrencyMax = 0;
            DurationSumMs = DurationMaxMs = 0;
            if (Histogram is not null)
            {
                Array.Clear(Histogram);
            }
        }
    }
}

internal sealed class FunctionTotals
{
    public string FunctionName { get; set; } = "";
    public long Invocations { get; set; }
    public long Errors { get; set; }
    public long Throttles { get; set; }
    public long ColdStarts { get; set; }

    /// <summary>Invocations of the function running now.</summary>
    public long ConcurrentExecutions { get; set; }
}

internal sealed class MetricsSample
{
    /// <summary>Start of the minute the sample covers (UTC, ISO 8601).</summary>
    public string Timestamp { get; set; } = "";

    [System.Text.Json.Serialization.JsonIgnore]
    public long Minute { get; set; }
    public long Invocations { get; set; }
    public long Errors { get; set; }
    public long Throttles { get; set; }
    public long ColdStarts { get; set; }
    public double? DurationP50 { get; set; }
    public double? DurationP99 { get; set; }
    public double? DurationAverage { get; set; }
    public double? DurationMax { get; set; }
    public long ConcurrencyMax { get; set; }
}
