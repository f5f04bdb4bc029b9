using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Diagnostics.CodeAnalysis;
using Lamina.Server.Storage;
using Npgsql;

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
        await EnterWriteAsync(cancellationToken);
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
            await ExitWriteAsync(draft.LayerName);
        }
    }

    /// <summary>Deletes a layer version; true if it existed. Its zip stays in the code store (functions may use it).</summary>
    public async Task<bool> DeleteAsync(string name, long version, CancellationToken cancellationToken)
    {
        await EnterWriteAsync(cancellationToken);
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
            await ExitWriteAsync(name);
        }
    }

    public void Dispose() => _writeLock.Dispose();

    // Several nodes (issue #25): as FunctionRegistry, a write takes the cluster's lock, rereads the layers first and
    // announces itself; the other nodes reread the layers when they hear of it.
    private ClusterNode? _cluster;
    private NpgsqlTransaction? _clusterLock;

    internal void AttachCluster(ClusterNode cluster)
    {
        if (!cluster.Enabled)
        {
            return;
        }
        _cluster = cluster;
        cluster.Follow(ClusterNode.LayersChannel, _ => ReloadAsync());
    }

    private Task ReloadAsync() => ClusterLock.RereadAsync(_writeLock, () => Load());

    private async Task EnterWriteAsync(CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken);
        if (_cluster is null)
        {
            return;
        }
        try
        {
            _clusterLock = await ClusterLock.AcquireAsync(_store.Database, ClusterLock.Layers);
            await Task.Run(Load, CancellationToken.None); // see FunctionRegistry.EnterWriteAsync
        }
        catch
        {
            if (_clusterLock is { } held)
            {
                _clusterLock = null;
                await held.Connection!.DisposeAsync();
            }
            _writeLock.Release();
            throw;
        }
    }

    private async Task ExitWriteAsync(string name)
    {
        try
        {
            if (_clusterLock is { } held)
            {
                _clusterLock = null;
                await ClusterLock.ReleaseAsync(held, ClusterNode.LayersChannel, _cluster!.Payload(name));
            }
        }
        finally
        {
            _writeLock.Release();
        }
        await ClusterLock.LeaveIoThread();
    }
}
