using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;

namespace Lamina.Server.Diagnostics;

/// <summary>
/// Aggregates the measurements of one <see cref="Meter"/> (through a <see cref="MeterListener"/>) and writes them in
/// Prometheus' text exposition format 0.0.4 (issue #7). No exporter package is available here, so this is a small one.
/// </summary>
/// <remarks>
/// <para>
/// Names follow OpenTelemetry's mapping to Prometheus: <c>.</c> and other invalid characters become <c>_</c>, the unit
/// becomes a suffix (<c>s</c> → <c>_seconds</c>; annotations such as <c>{event}</c> are dropped), counters end in
/// <c>_total</c>. Counters and up-down counters add up; gauges, observable instruments and histograms map as their
/// names say. Observable instruments are read at each scrape.
/// </para>
/// <para>
/// Recording a label set already seen is a dictionary lookup by its values' string instances (hashed by identity, not
/// by content) and an Interlocked add or two: no lock, no allocation. Tag values are expected to be strings (others
/// work, formatted on each measurement); a series is keyed by up to four of them, in the order given. A new label set
/// takes one lock, once. Label sets carrying a <c>function</c> label are capped at
/// <see cref="MaxFunctionLabelSets"/> distinct function/version pairs; the measurements of the others are counted
/// under <c>function="_other"</c> (and <c>version="_other"</c>), so a node with many functions cannot grow the
/// output without bound.
/// </para>
/// </remarks>
internal sealed class PrometheusExporter : IDisposable
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    /// <summary>The label value that stands for every function past the cap.</summary>
    public const string OtherLabelValue = "_other";

    public const string FunctionLabel = "function";
    public const string VersionLabel = "version";

    // Instance keys cached per family before the cache starts afresh (far more than a node's label sets).
    private const int MaxCachedInstances = 16_384;

    // Prometheus' client libraries' default buckets, for histograms that give no advice.
    private static readonly double[] DefaultBounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    private readonly Meter _meter;
    private readonly MeterListener _listener;
    private readonly Lock _lock = new(); // new families and series (slow path); not taken by recording
    private readonly Lock _collectLock = new(); // one collection at a time (observable instruments write their series)
    private readonly List<Family> _families = [];
    private readonly HashSet<(string Function, string Version)> _functionLabelSets = [];

    public PrometheusExporter(Meter meter, int maxFunctionLabelSets = DefaultMaxFunctionLabelSets)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxFunctionLabelSets);
        _meter = meter;
        MaxFunctionLabelSets = maxFunctionLabelSets;
        _listener = new MeterListener { InstrumentPublished = OnInstrumentPublished };
        _listener.SetMeasurementEventCallback<long>(static (_, value, tags, state) => ((Family)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<int>(static (_, value, tags, state) => ((Family)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<double>(static (_, value, tags, state) => ((Family)state!).Record(value, tags));
        _listener.Start();
    }

    /// <summary>Distinct function/version pairs kept apart (2,000: well past a node's functions, small for a scrape).</summary>
    public const int DefaultMaxFunctionLabelSets = 2000;

    public int MaxFunctionLabelSets { get; }

    /// <summary>Reads the observable instruments and writes every metric in the text exposition format.</summary>
    public string Scrape()
    {
        var text = new StringBuilder(8192);
        lock (_collectLock)
        {
            Family[] families;
            lock (_lock)
            {
                families = [.. _families];
            }
            foreach (var family in families)
            {
                if (family.Observable)
                {
                    family.ClearObservations(); // an observation that is not repeated is gone (a state with no environment, say)
                }
            }
            _listener.RecordObservableInstruments();
            foreach (var family in families)
            {
                family.WriteTo(text);
            }
        }
        return text.ToString();
    }

    public void Dispose() => _listener.Dispose();

    /// <summary>
    /// Drops every series whose labels include all of <paramref name="labels"/> (a deleted function's, a deleted
    /// version's, a deleted API's): what is gone leaves <c>/metrics</c> (Prometheus marks it stale), and a function
    /// forgotten makes room under <see cref="MaxFunctionLabelSets"/> for functions made since. Without it a node whose
    /// functions or APIs come and go (CloudFormation's generated names, test suites) kept every one of them for its
    /// whole life. A measurement still in flight for what was deleted may make its series again.
    /// </summary>
    public void Forget(params ReadOnlySpan<(string Label, string Value)> labels)
    {
        lock (_lock)
        {
            foreach (var family in _families)
            {
                if (!family.Observable) // observed afresh at each scrape
                {
                    family.Forget(labels);
                }
            }
            string? function = null, version = null;
            foreach (var (label, value) in labels)
            {
                function = label == FunctionLabel ? value : function;
                version = label == VersionLabel ? value : version;
            }
            if (function is not null)
            {
                _functionLabelSets.RemoveWhere(pair => pair.Function == function && (version is null || pair.Version == version));
            }
        }
    }

    private void OnInstrumentPublished(Instrument instrument, MeterListener listener)
    {
        if (!ReferenceEquals(instrument.Meter, _meter))
        {
            return;
        }
        var family = new Family(this, instrument);
        lock (_lock)
        {
            _families.Add(family);
        }
        listener.EnableMeasurementEvents(instrument, family);
    }

    /// <summary>Slow path: the first measurement of a label set.</summary>
    private Series AddSeries(Family family, SeriesKey key, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        lock (_lock)
        {
            if (family.ByKey.TryGetValue(key, out var existing))
            {
                return existing;
            }
            var count = Math.Min(tags.Length, SeriesKey.MaxLabels);
            var names = new string[count];
            var values = new string[count];
            int function = -1, version = -1;
            for (var i = 0; i < count; i++)
            {
                names[i] = LabelName(tags[i].Key);
                values[i] = SeriesKey.ValueOf(tags[i].Value);
                function = names[i] == FunctionLabel ? i : function;
                version = names[i] == VersionLabel ? i : version;
            }
            if (function >= 0 && !AdmitFunction(values[function], version >= 0 ? values[version] : ""))
            {
                values[function] = OtherLabelValue;
                if (version >= 0)
                {
                    values[version] = OtherLabelValue;
                }
                var otherKey = SeriesKey.Of(values);
                if (!family.ByKey.TryGetValue(otherKey, out var other))
                {
                    other = new Series(names, values, family.Bounds);
                    family.ByKey[otherKey] = other;
                }
                return other; // later measurements of this label set find it through the family's instance cache
            }
            var series = new Series(names, values, family.Bounds);
            family.ByKey[key] = series;
            return series;
        }
    }

    private bool AdmitFunction(string function, string version)
    {
        var pair = (function, version);
        if (_functionLabelSets.Contains(pair))
        {
            return true;
        }
        if (_functionLabelSets.Count >= MaxFunctionLabelSets)
        {
            return false;
        }
        _functionLabelSets.Add(pair);
        return true;
    }

    /// <summary>The metric's name in Prometheus: sanitised, the unit as a suffix, <c>_total</c> on counters.</summary>
    internal static string MetricName(string instrumentName, string? unit, string type)
    {
        var name = Sanitize(instrumentName, allowColon: true);
        if (type == "counter" && name.EndsWith("_total", StringComparison.Ordinal))
        {
            name = name[..^"_total".Length]; // the unit goes before it
        }
        if (UnitSuffix(unit) is { } suffix && !name.EndsWith("_" + suffix, StringComparison.Ordinal))
        {
            name += "_" + suffix;
        }
        return type == "counter" ? name + "_total" : name;
    }

    private static string? UnitSuffix(string? unit) => unit switch
    {
        null or "" or "1" => null,
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        _ when unit.StartsWith('{') => null, // an annotation ({event}): no unit
        _ => Sanitize(unit, allowColon: false),
    };

    private static string LabelName(string key) => Sanitize(key, allowColon: false);

    /// <summary>Metric names match <c>[a-zA-Z_:][a-zA-Z0-9_:]*</c>, label names the same without colons.</summary>
    private static string Sanitize(string name, bool allowColon)
    {
        if (name.Length == 0)
        {
            return "_";
        }
        var result = new StringBuilder(name.Length + 1);
        if (char.IsAsciiDigit(name[0]))
        {
            result.Append('_');
        }
        foreach (var c in name)
        {
            result.Append(char.IsAsciiLetterOrDigit(c) || c == '_' || (allowColon && c == ':') ? c : '_');
        }
        return result.ToString();
    }

    /// <summary>A label value: backslash, double quote and line feed escaped.</summary>
    internal static void AppendLabelValue(StringBuilder text, string value)
    {
        foreach (var c in value)
        {
            switch (c)
            {
                case '\\':
                    text.Append(@"\\");
                    break;
                case '"':
                    text.Append("\\\"");
                    break;
                case '\n':
                    text.Append(@"\n");
                    break;
                default:
                    text.Append(c);
                    break;
            }
        }
    }

    /// <summary>A HELP text: backslash and line feed escaped.</summary>
    private static void AppendHelp(StringBuilder text, string help)
    {
        foreach (var c in help)
        {
            switch (c)
            {
                case '\\':
                    text.Append(@"\\");
                    break;
                case '\n':
                    text.Append(@"\n");
                    break;
                default:
                    text.Append(c);
                    break;
            }
        }
    }

    internal static void AppendNumber(StringBuilder text, double value)
    {
        if (double.IsPositiveInfinity(value))
        {
            text.Append("+Inf");
        }
        else if (double.IsNegativeInfinity(value))
        {
            text.Append("-Inf");
        }
        else if (double.IsNaN(value))
        {
            text.Append("NaN");
        }
        else
        {
            text.Append(value.ToString("R", CultureInfo.InvariantCulture));
        }
    }

    private static void AddDouble(ref double target, double value)
    {
        var current = Volatile.Read(ref target);
        while (true)
        {
            var seen = Interlocked.CompareExchange(ref target, current + value, current);
            // Compared as bits: a NaN sum would never equal itself.
            if (BitConverter.DoubleToInt64Bits(seen) == BitConverter.DoubleToInt64Bits(current))
            {
                return;
            }
            current = seen;
        }
    }

    private enum Aggregation
    {
        /// <summary>Counters and up-down counters: measurements add up.</summary>
        Sum,

        /// <summary>Gauges and observable instruments: the last measurement stands.</summary>
        Last,

        Histogram,
    }

    /// <summary>One instrument: its name, help and type in Prometheus, and its series by label values.</summary>
    private sealed class Family
    {
        private readonly PrometheusExporter _owner;
        private readonly Aggregation _aggregation;

        public Family(PrometheusExporter owner, Instrument instrument)
        {
            _owner = owner;
            var definition = instrument.GetType().GetGenericTypeDefinition();
            Type = definition == typeof(Counter<>) || definition == typeof(ObservableCounter<>) ? "counter"
                : definition == typeof(Histogram<>) ? "histogram"
                : "gauge";
            Observable = instrument.IsObservable;
            _aggregation = Type == "histogram" ? Aggregation.Histogram
                : Observable || definition == typeof(Gauge<>) ? Aggregation.Last
                : Aggregation.Sum;
            Name = MetricName(instrument.Name, instrument.Unit, Type);
            Help = instrument.Description;
            if (_aggregation == Aggregation.Histogram)
            {
                Bounds = instrument switch
                {
                    Instrument<double> { Advice.HistogramBucketBoundaries: { Count: > 0 } bounds } => [.. bounds],
                    Instrument<long> { Advice.HistogramBucketBoundaries: { Count: > 0 } bounds } => [.. bounds.Select(static b => (double)b)],
                    Instrument<int> { Advice.HistogramBucketBoundaries: { Count: > 0 } bounds } => [.. bounds.Select(static b => (double)b)],
                    _ => DefaultBounds,
                };
            }
        }

        public string Name { get; }

        public string? Help { get; }

        /// <summary><c>counter</c>, <c>gauge</c> or <c>histogram</c>.</summary>
        public string Type { get; }

        public bool Observable { get; }

        /// <summary>Upper bounds of the histogram's buckets (ascending), +Inf implied.</summary>
        public double[]? Bounds { get; }

        /// <summary>The series by label values: what is written out.</summary>
        public ConcurrentDictionary<SeriesKey, Series> ByKey { get; } = new();

        // The series by the label values' string instances (the same on every call: a configuration's Name and
        // Version, literals), hashed by identity: recording does not hash the strings' contents. A cache, cleared when
        // it outgrows its bound (new instances for the same values come with configuration changes).
        private readonly ConcurrentDictionary<InstanceKey, Series> _byInstance = new();
        private int _cached;

        public void Record(long value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var series = Find(tags);
            switch (_aggregation)
            {
                case Aggregation.Sum:
                    Interlocked.Add(ref series.Long, value);
                    break;
                case Aggregation.Last:
                    Interlocked.Exchange(ref series.Long, value);
                    Volatile.Write(ref series.Double, 0);
                    break;
                default:
                    series.Observe(value, Bounds!);
                    break;
            }
        }

        public void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var series = Find(tags);
            switch (_aggregation)
            {
                case Aggregation.Sum:
                    AddDouble(ref series.Double, value);
                    break;
                case Aggregation.Last:
                    Volatile.Write(ref series.Double, value);
                    Interlocked.Exchange(ref series.Long, 0);
                    break;
                default:
                    if (!double.IsNaN(value))
                    {
                        series.Observe(value, Bounds!);
                    }
                    break;
            }
        }

        private Series Find(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            if (!InstanceKey.TryOf(tags, out var instance))
            {
                return FindByValues(tags); // a value that is not a string: formatted each time, nothing to cache
            }
            if (_byInstance.TryGetValue(instance, out var series) && !series.Forgotten)
            {
                return series;
            }
            series = FindByValues(tags);
            if (Interlocked.Increment(ref _cached) > MaxCachedInstances)
            {
                _byInstance.Clear();
                Volatile.Write(ref _cached, 1);
            }
            _byInstance[instance] = series;
            return series;
        }

        private Series FindByValues(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var key = SeriesKey.Of(tags);
            return ByKey.TryGetValue(key, out var series) ? series : _owner.AddSeries(this, key, tags);
        }

        /// <summary>Removes the series carrying all of <paramref name="labels"/> (under the exporter's lock).</summary>
        public void Forget(ReadOnlySpan<(string Label, string Value)> labels)
        {
            foreach (var (key, series) in ByKey)
            {
                // An up-down counter not at zero keeps its series: an invocation still running when its function was
                // deleted takes itself off it when it ends (removed, that would leave a series at -1).
                if (series.Carries(labels) && !(_aggregation == Aggregation.Sum && Type == "gauge" && Interlocked.Read(ref series.Long) != 0))
                {
                    series.Forgotten = true; // a cached instance key that still finds it looks again
                    ByKey.TryRemove(key, out _);
                }
            }
            // Label sets folded into _other find their own series again once there is room under the cap.
            _byInstance.Clear();
        }

        public void ClearObservations()
        {
            ByKey.Clear();
            _byInstance.Clear();
        }

        public void WriteTo(StringBuilder text)
        {
            if (!string.IsNullOrEmpty(Help))
            {
                text.Append("# HELP ").Append(Name).Append(' ');
                AppendHelp(text, Help);
                text.Append('\n');
            }
            text.Append("# TYPE ").Append(Name).Append(' ').Append(Type).Append('\n');

            var all = new List<Series>();
            all.AddRange(ByKey.Values);
            all.Sort(static (a, b) => a.CompareTo(b));
            foreach (var series in all)
            {
                if (_aggregation == Aggregation.Histogram)
                {
                    WriteHistogram(text, series);
                    continue;
                }
                text.Append(Name);
                series.AppendLabels(text, le: null);
                text.Append(' ');
                AppendNumber(text, Interlocked.Read(ref series.Long) + Volatile.Read(ref series.Double));
                text.Append('\n');
            }
        }

        private void WriteHistogram(StringBuilder text, Series series)
        {
            var bounds = Bounds!;
            long cumulative = 0;
            for (var i = 0; i <= bounds.Length; i++)
            {
                cumulative += Interlocked.Read(ref series.Buckets![i]);
                text.Append(Name).Append("_bucket");
                series.AppendLabels(text, le: i < bounds.Length ? bounds[i] : double.PositiveInfinity);
                text.Append(' ').Append(cumulative).Append('\n');
            }
            text.Append(Name).Append("_sum");
            series.AppendLabels(text, le: null);
            text.Append(' ');
            AppendNumber(text, Volatile.Read(ref series.Double));
            text.Append('\n');
            // The count is the +Inf bucket, so the two agree even while measurements arrive.
            text.Append(Name).Append("_count");
            series.AppendLabels(text, le: null);
            text.Append(' ').Append(cumulative).Append('\n');
        }
    }

    /// <summary>One label set's values: a sum (integer and floating parts), a last value, or histogram buckets.</summary>
    private sealed class Series(string[] names, string[] values, double[]? bounds)
    {
        public long Long;
        public double Double;

        /// <summary>Set once the series was removed (<see cref="PrometheusExporter.Forget"/>): measurements go to a new one.</summary>
        public volatile bool Forgotten;

        /// <summary>Counts per bucket (not cumulative), the last one past every bound.</summary>
        public readonly long[]? Buckets = bounds is null ? null : new long[bounds.Length + 1];

        public void Observe(double value, double[] bounds)
        {
            var i = 0;
            while (i < bounds.Length && value > bounds[i])
            {
                i++;
            }
            Interlocked.Increment(ref Buckets![i]);
            AddDouble(ref Double, value);
        }

        public void AppendLabels(StringBuilder text, double? le)
        {
            if (names.Length == 0 && le is null)
            {
                return;
            }
            text.Append('{');
            for (var i = 0; i < names.Length; i++)
            {
                text.Append(i == 0 ? "" : ",").Append(names[i]).Append("=\"");
                AppendLabelValue(text, values[i]);
                text.Append('"');
            }
            if (le is { } bound)
            {
                text.Append(names.Length == 0 ? "" : ",").Append("le=\"");
                AppendNumber(text, bound);
                text.Append('"');
            }
            text.Append('}');
        }

        /// <summary>Whether every one of <paramref name="labels"/> is among this series' labels with that value.</summary>
        public bool Carries(ReadOnlySpan<(string Label, string Value)> labels)
        {
            foreach (var (label, value) in labels)
            {
                var index = Array.IndexOf(names, label);
                if (index < 0 || values[index] != value)
                {
                    return false;
                }
            }
            return true;
        }

        public int CompareTo(Series other)
        {
            for (var i = 0; i < Math.Min(values.Length, other.Values.Length); i++)
            {
                var order = string.CompareOrdinal(values[i], other.Values[i]);
                if (order != 0)
                {
                    return order;
                }
            }
            return values.Length - other.Values.Length;
        }

        private string[] Values => values;
    }

    /// <summary>A label set's string instances in the order recorded, compared by reference and hashed by identity.</summary>
    private readonly struct InstanceKey(string? a, string? b, string? c, string? d) : IEquatable<InstanceKey>
    {
        private readonly string? _a = a, _b = b, _c = c, _d = d;

        /// <summary>False when a value is not a string (or there are more labels than a key holds).</summary>
        public static bool TryOf(ReadOnlySpan<KeyValuePair<string, object?>> tags, out InstanceKey key)
        {
            key = default;
            if (tags.Length > SeriesKey.MaxLabels)
            {
                return false;
            }
            Span<string?> values = [null, null, null, null];
            for (var i = 0; i < tags.Length; i++)
            {
                if (tags[i].Value is not string value)
                {
                    return false;
                }
                values[i] = value;
            }
            key = new InstanceKey(values[0], values[1], values[2], values[3]);
            return true;
        }

        public bool Equals(InstanceKey other) =>
            ReferenceEquals(_a, other._a) && ReferenceEquals(_b, other._b) && ReferenceEquals(_c, other._c) && ReferenceEquals(_d, other._d);

        public override bool Equals(object? obj) => obj is InstanceKey other && Equals(other);

        public override int GetHashCode() => HashCode.Combine(
            RuntimeHelpers.GetHashCode(_a), RuntimeHelpers.GetHashCode(_b), RuntimeHelpers.GetHashCode(_c), RuntimeHelpers.GetHashCode(_d));
    }

    /// <summary>A label set's values in the order recorded (up to four; Lamina's instruments use at most three).</summary>
    private readonly record struct SeriesKey(string? A, string? B, string? C, string? D)
    {
        public const int MaxLabels = 4;

        public static SeriesKey Of(ReadOnlySpan<KeyValuePair<string, object?>> tags) => tags.Length switch
        {
            0 => default,
            1 => new(ValueOf(tags[0].Value), null, null, null),
            2 => new(ValueOf(tags[0].Value), ValueOf(tags[1].Value), null, null),
            3 => new(ValueOf(tags[0].Value), ValueOf(tags[1].Value), ValueOf(tags[2].Value), null),
            _ => new(ValueOf(tags[0].Value), ValueOf(tags[1].Value), ValueOf(tags[2].Value), ValueOf(tags[3].Value)),
        };

        public static SeriesKey Of(string[] values) => new(
            values.Length > 0 ? values[0] : null,
            values.Length > 1 ? values[1] : null,
            values.Length > 2 ? values[2] : null,
            values.Length > 3 ? values[3] : null);

        /// <summary>Strings as they are (no allocation); anything else formatted invariantly.</summary>
        public static string ValueOf(object? value) => value as string ?? Convert.ToString(value, CultureInfo.InvariantCulture) ?? "";
    }
}
