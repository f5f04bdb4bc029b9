using Lamina.Server.Diagnostics;
using Lamina.Server.Hosting;
using Lamina.Server.Storage;
using Microsoft.Extensions.Options;

namespace Lamina.Server.Lambda;

/// <summary>
/// Deletes the code and layer packages nothing uses any more: the code a function's update replaced, a deleted
/// function's or layer version's (unless a configuration still uses that layer), merged layer trees of layer lists no
/// configuration has. Before it, every deploy left its package (zip and extracted tree) on disk for good.
/// </summary>
/// <remarks>
/// A round reads what the registries reference — every configuration's code and layers, every layer version's code —
/// and hands it to <see cref="CodeStore.Collect"/>, which deletes what has been unreferenced for
/// <c>--unused-code-retention</c> (an hour by default). Rounds run every quarter of that, at most every ten minutes.
/// On a cluster the nodes share the directory: one node collects, the holder of the <see cref="Lease"/>.
/// </remarks>
internal sealed partial class CodeCollector(CodeStore code, FunctionRegistry functions, LayerRegistry layers, ClusterNode cluster,
    IOptions<LaminaOptions> options, TimeProvider time, ILogger<CodeCollector> logger) : BackgroundService
{
    public const string Lease = "code-collection";

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var retention = options.Value.UnusedCodeRetention;
        var period = TimeSpan.FromTicks(Math.Clamp(retention.Ticks / 4, TimeSpan.TicksPerSecond, TimeSpan.FromMinutes(10).Ticks));
        cluster.RequestLease(Lease);
        var unreferencedSince = new Dictionary<string, DateTime>(StringComparer.Ordinal);
        using var timer = new PeriodicTimer(period, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                if (!cluster.Holds(Lease))
                {
                    unreferencedSince.Clear(); // another node collects; if this one takes over, it watches afresh
                    continue;
                }
                try
                {
                    var removed = code.Collect(ReferencedCode(out var merges), merges, unreferencedSince, retention);
                    if (removed > 0)
                    {
                        Log.Deleted(logger, removed, code.Root);
                    }
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    Log.Failed(logger, e); // the next round tries again
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>The code hashes the registries reference, and the merged trees of the configurations' layer lists.</summary>
    private HashSet<string> ReferencedCode(out HashSet<string> merges)
    {
        var referenced = new HashSet<string>(StringComparer.Ordinal);
        merges = new HashSet<string>(StringComparer.Ordinal);
        foreach (var config in functions.ListEntries().SelectMany(static e => e.AllConfigs))
        {
            referenced.Add(config.CodeHashHex);
            foreach (var layer in config.Layers)
            {
                referenced.Add(layer.CodeHashHex);
            }
            if (config.Layers.Count > 1)
            {
                merges.Add(CodeStore.MergeKey(config.Layers));
            }
        }
        foreach (var version in layers.List().SelectMany(static l => l.Versions.Values))
        {
            referenced.Add(version.CodeHashHex);
        }
        return referenced;
    }

    private static partial class Log
    {
        [LoggerMessage(EventIds.UnusedCodeDeleted, LogLevel.Information, "Deleted {Count} code packages and layer trees nothing uses any more from {Path}")]
        public static partial void Deleted(ILogger logger, int count, string path);

        [LoggerMessage(EventIds.UnusedCodeCollectionFailed, LogLevel.Warning, "Could not delete unused code; the next round tries again")]
        public static partial void Failed(ILogger logger, Exception error);
    }
}
