using System.Diagnostics.Metrics;
using Lamina.Server.Async;
using Lamina.Server.Invoke;

namespace Lamina.Server.Diagnostics;

/// <summary>
/// Gauges of the node that are read when scraped, never kept up to date on the invoke path: environments by state
/// (a snapshot of the pool), cold starts waiting for room, and the async queue (one query on a connection of its own, made by
/// <see cref="RefreshAsync"/> before each scrape; other listeners see the value of the last scrape).
/// </summary>
internal sealed class NodeMetrics
{
    private static readonly string[] States = ["initializing", "idle", "busy", "stopping"];

    private readonly EnvironmentPool _pool;
    private readonly AsyncEventStore _store;
    private readonly TimeProvider _time;
    private AsyncQueueReading? _queue;

    public NodeMetrics(LaminaMetrics metrics, EnvironmentPool pool, AsyncEventStore store, TimeProvider time)
    {
        _pool = pool;
        _store = store;
        _time = time;
        metrics.Meter.CreateObservableGauge("lamina.environments", ObserveEnvironments, "{environment}",
            "Live execution environments by state: initializing, idle, busy, stopping");
        metrics.Meter.CreateObservableGauge("lamina.cold_starts.waiting", () => _pool.ColdStartsWaiting, "{start}",
            "Cold starts (invocations and provisioned environments) waiting for room under --max-cold-starts");
        metrics.Meter.CreateObservableGauge("lamina.async.queue_depth", ObserveQueueDepth, "{event}",
            "Async events queued or running (failed ones excluded)");
        metrics.Meter.CreateObservableGauge("lamina.async.oldest_event_age", ObserveOldestEventAge, "s",
            "Age of the oldest async event queued or running (0 when there is none)");
        // The server's own allocation (bench/compare.py divides it by the requests of a run: bytes per invoke, issue #19).
        metrics.Meter.CreateObservableCounter("dotnet.gc.heap.total_allocated", static () => GC.GetTotalAllocatedBytes(), "By",
            "Bytes allocated on the managed heap since the server started");
    }

    /// <summary>Reads the async queue for the scrape that follows; when the store cannot answer, its gauges are left out.</summary>
    public async Task RefreshAsync()
    {
        try
        {
            var (depth, oldestCreatedMs) = await _store.QueueStatsAsync();
            var ageMs = oldestCreatedMs is { } created ? Math.Max(0, _time.GetUtcNow().ToUnixTimeMilliseconds() - created) : 0;
            Volatile.Write(ref _queue, new AsyncQueueReading(depth, ageMs / 1000.0));
        }
        catch (Exception e) when (e is System.Data.Common.DbException or ObjectDisposedException)
        {
            Volatile.Write(ref _queue, null); // closed (stopping) or failing: no reading rather than a stale one
        }
    }

    private IEnumerable<Measurement<long>> ObserveEnvironments()
    {
        var counts = new long[States.Length];
        foreach (var environment in _pool.Snapshot())
        {
            var state = Array.IndexOf(States, environment.State);
            if (state >= 0)
            {
                counts[state]++;
            }
        }
        var measurements = new Measurement<long>[States.Length];
        for (var i = 0; i < States.Length; i++)
        {
            measurements[i] = new Measurement<long>(counts[i], new KeyValuePair<string, object?>("state", States[i]));
        }
        return measurements;
    }

    private IEnumerable<Measurement<long>> ObserveQueueDepth() =>
        Volatile.Read(ref _queue) is { } queue ? [new Measurement<long>(queue.Depth)] : [];

    private IEnumerable<Measurement<double>> ObserveOldestEventAge() =>
        Volatile.Read(ref _queue) is { } queue ? [new Measurement<double>(queue.OldestAgeSeconds)] : [];

    private sealed record AsyncQueueReading(long Depth, double OldestAgeSeconds);
}
