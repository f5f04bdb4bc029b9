using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Diagnostics.CodeAnalysis;

namespace Lamina.Server.Lambda;

/// <summary>One layer: its version counter and its remaining versions (immutable snapshot, swapped whole).</summary>
internal sealed record LayerEntry(string Name, long LastVersion, ImmutableSortedDictionary<long, LayerVersion> Versions);

/// <summary>
/// The published layer versions, in memory with the database behind them (same write discipline as
/// <see cref="FunctionRegistry"/>: commit first, then swap; one write lock). Only the control plane reads it:
/// functions copy what they need of a layer version into their configuration (<see cref="FunctionLayer"/>), so
/// deleting a layer version never breaks a function that uses it.
/// </summary>
internal sealed class LayerRegistry : IDisposable
{
    private readonly ConcurrentDictionary<string, LayerEntry> _layers = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly LambdaStore _store;
    private readonly TimeProvider _timeProvider;

    public LayerRegistry(LambdaStore store, TimeProvider timeProvider)
    {
        _store = store;
        _timeProvider = timeProvider;
    }

    public int Load()
    {
        foreach (var (name, lastVersion, versions) in _store.LoadLayers())
        {
            _layers[name] = new LayerEntry(name, lastVersion, versions.ToImmutableSortedDictionary(static v => v.Version, static v => v));
        }
        return _layers.Count;
    }

    public bool TryGet(string name, long version, [NotNullWhen(true)] out LayerVersion? layerVersion)
    {
        layerVersion = null;
        return _layers.TryGetValue(name, out var layer) && layer.Versions.TryGetValue(version, out layerVersion);
    }

    public bool TryGetLayer(string name, [NotNullWhen(true)] out LayerEntry? layer) => _layers.TryGetValue(name, out layer);

    /// <summary>Every layer, ordered by name (ordinal), including layers whose versions were all deleted.</summary>
    public List<LayerEntry> List()
    {
        var all = _layers.Values.ToList();
        all.Sort(static (a, b) => string.CompareOrdinal(a.Name, b.Name));
        return all;
    }

    /// <summary>
    /// Publishes the next version of <paramref name="draft"/>'s layer (1 for a new name). The registry stamps
    /// <see cref="LayerVersion.Version"/> and <see cref="LayerVersion.CreatedDate"/>.
    /// </summary>
    public async Task<LayerVersion> PublishAsync(LayerVersion draft, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            _layers.TryGetValue(draft.LayerName, out var layer);
            var version = draft with
            {
                Version = (layer?.LastVersion ?? 0) + 1,
                CreatedDate = _timeProvider.GetUtcNow(),
            };
            // Past this point the write is not cancelled: a half-observed commit would be worse than a late answer.
            await _store.InsertLayerVersionAsync(version, CancellationToken.None);
            _layers[version.LayerName] = new LayerEntry(
                version.LayerName,
                version.Version,
                (layer?.Versions ?? ImmutableSortedDictionary<long, LayerVersion>.Empty).Add(version.Version, version));
            return version;
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Deletes a layer version; true if it existed. Its zip stays in the code store (functions may use it).</summary>
    public async Task<bool> DeleteAsync(string name, long version, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            if (!_layers.TryGetValue(name, out var layer) || !layer.Versions.ContainsKey(version))
            {
                return false;
            }
            await _store.DeleteLayerVersionAsync(name, version, CancellationToken.None);
            _layers[name] = layer with { Versions = layer.Versions.Remove(version) };
            return true;
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public void Dispose() => _writeLock.Dispose();
}
