using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using Lamina.Server.Storage;

namespace Lamina.Server.Functions;

/// <summary>How a registry write ended.</summary>
internal enum FunctionWriteStatus
{
    Succeeded,
    NotFound,
    AlreadyExists,
    RevisionMismatch,

    /// <summary>The change function refused the update (its own error explains why).</summary>
    Refused,
}

/// <summary>The outcome of a registry write: the status and, on success, the configuration now current.</summary>
internal readonly record struct FunctionWrite(FunctionWriteStatus Status, FunctionConfig? Config)
{
    public static FunctionWrite Of(FunctionWriteStatus status) => new(status, null);
}

/// <summary>
/// The live set of functions, in memory so that the invoke path never touches the database. Writes go to the
/// database first (one transaction) and swap the in-memory record only after the commit, so a failed write
/// leaves the old state everywhere. Writes are serialised by one lock: control-plane writes are rare, and one
/// lock makes the RevisionId precondition and the name uniqueness checks trivially race-free.
/// </summary>
internal sealed class FunctionRegistry : IDisposable
{
    private readonly ConcurrentDictionary<string, FunctionConfig> _functions = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly Database? _database;
    private readonly TimeProvider _timeProvider;

    public FunctionRegistry(Database database, TimeProvider timeProvider)
    {
        _database = database;
        _timeProvider = timeProvider;
    }

    /// <summary>A registry without persistence, for tests of other capabilities that only need <see cref="Replace"/>.</summary>
    internal FunctionRegistry()
    {
        _timeProvider = TimeProvider.System;
    }

    /// <summary>
    /// Raised after a configuration stopped being current (updated or deleted), once the change is committed.
    /// Environments started for it must not take new invocations and are shut down. Handlers must not throw.
    /// </summary>
    public event Action<FunctionConfig>? Retired;

    public bool TryGet(string name, [NotNullWhen(true)] out FunctionConfig? config) => _functions.TryGetValue(name, out config);

    public int Count => _functions.Count;

    /// <summary>A snapshot of every function, ordered by name (ordinal), for listing.</summary>
    public List<FunctionConfig> List()
    {
        var all = _functions.Values.ToList();
        all.Sort(static (a, b) => string.CompareOrdinal(a.Name, b.Name));
        return all;
    }

    /// <summary>Loads every function from the database. Called once at startup, before the server answers.</summary>
    public int Load()
    {
        var database = _database ?? throw new InvalidOperationException("This registry has no database.");
        foreach (var config in database.LoadFunctions())
        {
            _functions[config.Name] = config;
        }
        return _functions.Count;
    }

    /// <summary>
    /// Creates a function. <see cref="FunctionConfig.RevisionId"/> and <see cref="FunctionConfig.LastModified"/>
    /// of <paramref name="draft"/> are replaced: the registry stamps every change.
    /// </summary>
    public async Task<FunctionWrite> CreateAsync(FunctionConfig draft, IReadOnlyDictionary<string, string> tags, CancellationToken cancellationToken)
    {
        var database = _database ?? throw new InvalidOperationException("This registry has no database.");
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            if (_functions.ContainsKey(draft.Name))
            {
                return FunctionWrite.Of(FunctionWriteStatus.AlreadyExists);
            }
            var config = Stamp(draft);
            if (!await database.InsertFunctionAsync(config, tags, CancellationToken.None))
            {
                return FunctionWrite.Of(FunctionWriteStatus.AlreadyExists);
            }
            _functions[config.Name] = config;
            return new FunctionWrite(FunctionWriteStatus.Succeeded, config);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>
    /// Applies <paramref name="change"/> to the current configuration of <paramref name="name"/> if its RevisionId
    /// is <paramref name="expectedRevisionId"/> (any, when null), commits it and makes it current; then raises
    /// <see cref="Retired"/> with the previous one. <paramref name="change"/> runs under the write lock, sees the
    /// current configuration and returns the next one, or null to refuse (nothing is written).
    /// </summary>
    public async Task<FunctionWrite> UpdateAsync(string name, string? expectedRevisionId, Func<FunctionConfig, FunctionConfig?> change, CancellationToken cancellationToken)
    {
        var database = _database ?? throw new InvalidOperationException("This registry has no database.");
        FunctionConfig previous;
        FunctionConfig current;
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            if (!_functions.TryGetValue(name, out var found))
            {
                return FunctionWrite.Of(FunctionWriteStatus.NotFound);
            }
            previous = found;
            if (expectedRevisionId is not null && expectedRevisionId != previous.RevisionId)
            {
                return FunctionWrite.Of(FunctionWriteStatus.RevisionMismatch);
            }
            var next = change(previous);
            if (next is null)
            {
                return FunctionWrite.Of(FunctionWriteStatus.Refused);
            }
            current = Stamp(next with { Name = previous.Name, Version = previous.Version });
            // Past this point the write is not cancelled: a half-observed commit would be worse than a late answer.
            if (!await database.UpdateFunctionAsync(current, previous.RevisionId, CancellationToken.None))
            {
                // Only this registry writes the table, under this lock; a mismatch means another process did.
                return FunctionWrite.Of(FunctionWriteStatus.RevisionMismatch);
            }
            _functions[name] = current;
        }
        finally
        {
            _writeLock.Release();
        }
        Retired?.Invoke(previous);
        return new FunctionWrite(FunctionWriteStatus.Succeeded, current);
    }

    /// <summary>Deletes a function (all of it); raises <see cref="Retired"/> with its last configuration.</summary>
    public async Task<FunctionWriteStatus> DeleteAsync(string name, CancellationToken cancellationToken)
    {
        var database = _database ?? throw new InvalidOperationException("This registry has no database.");
        FunctionConfig? previous;
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            if (!_functions.TryGetValue(name, out previous))
            {
                return FunctionWriteStatus.NotFound;
            }
            await database.DeleteFunctionAsync(name, CancellationToken.None);
            _functions.TryRemove(name, out _);
        }
        finally
        {
            _writeLock.Release();
        }
        Retired?.Invoke(previous);
        return FunctionWriteStatus.Succeeded;
    }

    /// <summary>The function's tags, read from the database (control plane only).</summary>
    public Task<Dictionary<string, string>> GetTagsAsync(string name, CancellationToken cancellationToken) =>
        _database?.LoadTagsAsync(name, cancellationToken) ?? Task.FromResult(new Dictionary<string, string>(StringComparer.Ordinal));

    /// <summary>Swaps the in-memory record only, without the database: for tests of other capabilities.</summary>
    internal void Replace(FunctionConfig? previous, FunctionConfig? current)
    {
        if (current is not null)
        {
            _functions[current.Name] = current;
        }
        else if (previous is not null)
        {
            _functions.TryRemove(previous.Name, out _);
        }
        if (previous is not null)
        {
            Retired?.Invoke(previous);
        }
    }

    public void Dispose() => _writeLock.Dispose();

    private FunctionConfig Stamp(FunctionConfig config) => config with
    {
        RevisionId = Guid.NewGuid().ToString(),
        LastModified = _timeProvider.GetUtcNow(),
    };
}
