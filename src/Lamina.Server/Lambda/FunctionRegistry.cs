using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;

using Lamina.Server.Storage;
using Npgsql;

namespace Lamina.Server.Lambda;

/// <summary>How a registry write ended.</summary>
internal enum FunctionWriteStatus
{
    Succeeded,
    NotFound,
    AlreadyExists,
    RevisionMismatch,

    /// <summary>The change function refused the update (its own error explains why).</summary>
    Refused,

    /// <summary>PublishVersion's CodeSha256 precondition does not hold.</summary>
    CodeMismatch,

    /// <summary>The function exists, the version or alias named does not.</summary>
    QualifierNotFound,

    /// <summary>A version cannot be deleted while aliases route to it.</summary>
    InUse,
}

/// <summary>The outcome of a registry write: the status and, on success, the configuration now current.</summary>
internal readonly record struct FunctionWrite(FunctionWriteStatus Status, FunctionConfig? Config)
{
    public static FunctionWrite Of(FunctionWriteStatus status) => new(status, null);
}

/// <summary>The outcome of an alias write: the status and, on success, the alias now current.</summary>
internal readonly record struct AliasWrite(FunctionWriteStatus Status, AliasConfig? Alias)
{
    public static AliasWrite Of(FunctionWriteStatus status) => new(status, null);
}

/// <summary>
/// The live set of functions with their versions and aliases, in memory so that the invoke path never touches the
/// store. Each function is one immutable <see cref="FunctionEntry"/>; writes go to the database first and swap
/// the entry only after the commit, so a failed write leaves the old state everywhere. Writes are serialised by one
/// lock: control-plane writes are rare, and one lock makes the RevisionId preconditions, the name uniqueness
/// checks and the version counters trivially race-free.
/// </summary>
internal sealed class FunctionRegistry : IDisposable
{
    private readonly ConcurrentDictionary<string, FunctionEntry> _functions = new(StringComparer.Ordinal);

    // Function URL ids → the function that owns them, for the request path; kept in step with the entries' Urls.
    private readonly ConcurrentDictionary<string, string> _urlIds = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly LambdaStore? _store;
    private readonly TimeProvider _timeProvider;

    public FunctionRegistry(LambdaStore store, TimeProvider timeProvider)
    {
        _store = store;
        _timeProvider = timeProvider;
    }

    /// <summary>A registry without persistence, for tests of other capabilities that only need <see cref="Replace"/>.</summary>
    internal FunctionRegistry()
    {
        _timeProvider = TimeProvider.System;
    }

    /// <summary>
    /// Raised after a configuration stopped being current (<c>$LATEST</c> updated, a version or the function
    /// deleted), once the change is committed. Environments started for it must not take new invocations and are
    /// shut down. Handlers must not throw.
    /// </summary>
    public event Action<FunctionConfig>? Retired;

    /// <summary>The function's <c>$LATEST</c> configuration.</summary>
    public bool TryGet(string name, [NotNullWhen(true)] out FunctionConfig? config)
    {
        config = _functions.TryGetValue(name, out var entry) ? entry.LatestConfig : null;
        return config is not null;
    }

    /// <summary>The function with its versions and aliases, as one consistent snapshot.</summary>
    public bool TryGetEntry(string name, [NotNullWhen(true)] out FunctionEntry? entry) => _functions.TryGetValue(name, out entry);

    public int Count => _functions.Count;

    private int _reservedConcurrencyTotal;

    /// <summary>Σ reserved concurrency over all functions (the account's unreserved pool is the limit minus this).</summary>
    public int ReservedConcurrencyTotal => Volatile.Read(ref _reservedConcurrencyTotal);

    /// <summary>Raised after a function was deleted, with its name. Handlers must not throw.</summary>
    public event Action<string>? Deleted;

    /// <summary>A snapshot of every function's <c>$LATEST</c>, ordered by name (ordinal), for listing.</summary>
    public List<FunctionConfig> List() => ListEntries().ConvertAll(static e => e.LatestConfig);

    /// <summary>A snapshot of every function, ordered by name (ordinal).</summary>
    public List<FunctionEntry> ListEntries()
    {
        var all = _functions.Values.ToList();
        all.Sort(static (a, b) => string.CompareOrdinal(a.Name, b.Name));
        return all;
    }

    /// <summary>Loads every function from the store. Called once at startup, before the server answers.</summary>
    public int Load()
    {
        var store = RequireStore();
        foreach (var entry in store.LoadFunctionEntries())
        {
            _functions[entry.Name] = entry;
            foreach (var url in entry.Urls.Values)
            {
                _urlIds[url.UrlId] = entry.Name;
            }
        }
        RecomputeReservedTotal();
        return _functions.Count;
    }

    /// <summary>
    /// Creates a function. <see cref="FunctionConfig.RevisionId"/> and <see cref="FunctionConfig.LastModified"/>
    /// of <paramref name="draft"/> are replaced: the registry stamps every change.
    /// </summary>
    public async Task<FunctionWrite> CreateAsync(FunctionConfig draft, IReadOnlyDictionary<string, string> tags, CancellationToken cancellationToken)
    {
        var store = RequireStore();
        await EnterWriteAsync(draft.Name, cancellationToken);
        try
        {
            if (_functions.ContainsKey(draft.Name))
            {
                return FunctionWrite.Of(FunctionWriteStatus.AlreadyExists);
            }
            var config = Stamp(draft with { Version = FunctionEntry.Latest });
            if (!await store.InsertFunctionAsync(config, tags, CancellationToken.None))
            {
                return FunctionWrite.Of(FunctionWriteStatus.AlreadyExists);
            }
            _functions[config.Name] = new FunctionEntry { LatestConfig = config };
            return new FunctionWrite(FunctionWriteStatus.Succeeded, config);
        }
        finally
        {
            await ExitWriteAsync(draft.Name);
        }
    }

    /// <summary>
    /// Applies <paramref name="change"/> to the <c>$LATEST</c> configuration of <paramref name="name"/> if its
    /// RevisionId is <paramref name="expectedRevisionId"/> (any, when null), commits it and makes it current; then
    /// raises <see cref="Retired"/> with the previous one. <paramref name="change"/> runs under the write lock, sees
    /// the current configuration and returns the next one, or null to refuse (nothing is written).
    /// </summary>
    public async Task<FunctionWrite> UpdateAsync(string name, string? expectedRevisionId, Func<FunctionConfig, FunctionConfig?> change, CancellationToken cancellationToken)
    {
        var store = RequireStore();
        FunctionConfig previous;
        FunctionConfig current;
        await EnterWriteAsync(name, cancellationToken);
        try
        {
            if (!_functions.TryGetValue(name, out var entry))
            {
                return FunctionWrite.Of(FunctionWriteStatus.NotFound);
            }
            previous = entry.LatestConfig;
            if (expectedRevisionId is not null && expectedRevisionId != previous.RevisionId)
            {
                return FunctionWrite.Of(FunctionWriteStatus.RevisionMismatch);
            }
            var next = change(previous);
            if (next is null)
            {
                return FunctionWrite.Of(FunctionWriteStatus.Refused);
            }
            current = Stamp(next with { Name = previous.Name, Version = FunctionEntry.Latest });
            // Past this point the write is not cancelled: a half-observed commit would be worse than a late answer.
            if (!await store.UpdateFunctionAsync(current, previous.RevisionId, CancellationToken.None))
            {
                // Only this registry writes the table, under this lock; a mismatch means another process did.
                return FunctionWrite.Of(FunctionWriteStatus.RevisionMismatch);
            }
            _functions[name] = entry with { LatestConfig = current };
        }
        finally
        {
            await ExitWriteAsync(name);
        }
        Retired?.Invoke(previous);
        return new FunctionWrite(FunctionWriteStatus.Succeeded, current);
    }

    /// <summary>
    /// Publishes <c>$LATEST</c> as the next version (PublishVersion). Preconditions: <c>$LATEST</c>'s RevisionId is
    /// <paramref name="expectedRevisionId"/> and its CodeSha256 is <paramref name="expectedCodeSha256"/> (each
    /// unchecked when null). If <c>$LATEST</c> has not changed since the newest published version was taken from
    /// it, that version is returned and nothing is published, as Lambda does. On
    /// <see cref="FunctionWriteStatus.CodeMismatch"/> the result carries <c>$LATEST</c> (for the message).
    /// </summary>
    public async Task<FunctionWrite> PublishAsync(string name, string? expectedRevisionId, string? expectedCodeSha256, string? description, CancellationToken cancellationToken)
    {
        var store = RequireStore();
        await EnterWriteAsync(name, cancellationToken);
        try
        {
            if (!_functions.TryGetValue(name, out var entry))
            {
                return FunctionWrite.Of(FunctionWriteStatus.NotFound);
            }
            var latest = entry.LatestConfig;
            if (expectedRevisionId is not null && expectedRevisionId != latest.RevisionId)
            {
                return FunctionWrite.Of(FunctionWriteStatus.RevisionMismatch);
            }
            if (expectedCodeSha256 is not null && expectedCodeSha256 != latest.CodeSha256)
            {
                return new FunctionWrite(FunctionWriteStatus.CodeMismatch, latest);
            }
            if (!entry.Versions.IsEmpty && entry.Versions.Values.Last() is { } newest && newest.SourceRevisionId == latest.RevisionId)
            {
                return new FunctionWrite(FunctionWriteStatus.Succeeded, newest.Config);
            }

            var number = entry.LastVersion + 1;
            var config = Stamp(latest with
            {
                Version = number.ToString(CultureInfo.InvariantCulture),
                Description = description ?? latest.Description,
            });
            var published = new PublishedVersion(config, latest.RevisionId);
            await store.InsertVersionAsync(published, CancellationToken.None);
            _functions[name] = entry with { Versions = entry.Versions.Add(number, published), LastVersion = number };
            return new FunctionWrite(FunctionWriteStatus.Succeeded, config);
        }
        finally
        {
            await ExitWriteAsync(name);
        }
    }

    /// <summary>
    /// Deletes one published version; raises <see cref="Retired"/> with it. Refused with
    /// <see cref="FunctionWriteStatus.InUse"/> while aliases route to it (their names are returned).
    /// </summary>
    public async Task<(FunctionWriteStatus Status, List<string> ReferencingAliases)> DeleteVersionAsync(string name, int version, CancellationToken cancellationToken)
    {
        var store = RequireStore();
        FunctionConfig deleted;
        await EnterWriteAsync(name, cancellationToken);
        try
        {
            if (!_functions.TryGetValue(name, out var entry))
            {
                return (FunctionWriteStatus.NotFound, []);
            }
            if (!entry.TryGetVersion(version, out var config))
            {
                return (FunctionWriteStatus.QualifierNotFound, []);
            }
            var aliases = entry.AliasesReferencing(config.Version);
            if (aliases.Count > 0)
            {
                return (FunctionWriteStatus.InUse, aliases);
            }
            await store.DeleteVersionAsync(name, version, CancellationToken.None);
            _functions[name] = entry with
            {
                Versions = entry.Versions.Remove(version),
                ProvisionedConcurrency = entry.ProvisionedConcurrency.Remove(config.Version),
                EventInvokeConfigs = entry.EventInvokeConfigs.Remove(config.Version),
                Policies = entry.Policies.Remove(config.Version),
            };
            deleted = config;
        }
        finally
        {
            await ExitWriteAsync(name);
        }
        Retired?.Invoke(deleted);
        return (FunctionWriteStatus.Succeeded, []);
    }

    /// <summary>Deletes a function with all its versions and aliases; raises <see cref="Retired"/> for each configuration.</summary>
    public async Task<FunctionWriteStatus> DeleteAsync(string name, CancellationToken cancellationToken)
    {
        var store = RequireStore();
        FunctionEntry? previous;
        await EnterWriteAsync(name, cancellationToken);
        try
        {
            if (!_functions.TryGetValue(name, out previous))
            {
                return FunctionWriteStatus.NotFound;
            }
            await store.DeleteFunctionAsync(name, CancellationToken.None);
            _functions.TryRemove(name, out _);
            foreach (var url in previous.Urls.Values)
            {
                _urlIds.TryRemove(url.UrlId, out _);
            }
            RecomputeReservedTotal(); // deleting a function frees its reservation
        }
        finally
        {
            await ExitWriteAsync(name);
        }
        Deleted?.Invoke(name);
        foreach (var config in previous.AllConfigs)
        {
            Retired?.Invoke(config);
        }
        return FunctionWriteStatus.Succeeded;
    }

    /// <summary>
    /// Creates an alias. <paramref name="build"/> runs under the write lock with the function's current entry and
    /// returns the alias (its RevisionId is stamped here), or null to refuse.
    /// </summary>
    public async Task<AliasWrite> CreateAliasAsync(string name, string aliasName, Func<FunctionEntry, AliasConfig?> build, CancellationToken cancellationToken)
    {
        var store = RequireStore();
        await EnterWriteAsync(name, cancellationToken);
        try
        {
            if (!_functions.TryGetValue(name, out var entry))
            {
                return AliasWrite.Of(FunctionWriteStatus.NotFound);
            }
            if (entry.Aliases.ContainsKey(aliasName))
            {
                return AliasWrite.Of(FunctionWriteStatus.AlreadyExists);
            }
            if (build(entry) is not { } draft)
            {
                return AliasWrite.Of(FunctionWriteStatus.Refused);
            }
            var alias = draft with { Name = aliasName, RevisionId = Guid.NewGuid().ToString() };
            await store.UpsertAliasAsync(name, alias, CancellationToken.None);
            _functions[name] = entry with { Aliases = entry.Aliases.SetItem(aliasName, alias) };
            return new AliasWrite(FunctionWriteStatus.Succeeded, alias);
        }
        finally
        {
            await ExitWriteAsync(name);
        }
    }

    /// <summary>
    /// Updates an alias if its RevisionId is <paramref name="expectedRevisionId"/> (any, when null).
    /// <paramref name="change"/> runs under the write lock and returns the next alias, or null to refuse. The
    /// RevisionId changes on every update, as Lambda's does.
    /// </summary>
    public async Task<AliasWrite> UpdateAliasAsync(string name, string aliasName, string? expectedRevisionId,
        Func<FunctionEntry, AliasConfig, AliasConfig?> change, CancellationToken cancellationToken)
    {
        var store = RequireStore();
        await EnterWriteAsync(name, cancellationToken);
        try
        {
            if (!_functions.TryGetValue(name, out var entry))
            {
                return AliasWrite.Of(FunctionWriteStatus.NotFound);
            }
            if (!entry.Aliases.TryGetValue(aliasName, out var current))
            {
                return AliasWrite.Of(FunctionWriteStatus.QualifierNotFound);
            }
            if (expectedRevisionId is not null && expectedRevisionId != current.RevisionId)
            {
                return AliasWrite.Of(FunctionWriteStatus.RevisionMismatch);
            }
            if (change(entry, current) is not { } next)
            {
                return AliasWrite.Of(FunctionWriteStatus.Refused);
            }
            var alias = next with { Name = aliasName, RevisionId = Guid.NewGuid().ToString() };
            await store.UpsertAliasAsync(name, alias, CancellationToken.None);
            _functions[name] = entry with { Aliases = entry.Aliases.SetItem(aliasName, alias) };
            return new AliasWrite(FunctionWriteStatus.Succeeded, alias);
        }
        finally
        {
            await ExitWriteAsync(name);
        }
    }

    /// <summary>Deletes an alias (the versions it pointed to stay).</summary>
    public async Task<FunctionWriteStatus> DeleteAliasAsync(string name, string aliasName, CancellationToken cancellationToken)
    {
        var store = RequireStore();
        await EnterWriteAsync(name, cancellationToken);
        try
        {
            if (!_functions.TryGetValue(name, out var entry))
            {
                return FunctionWriteStatus.NotFound;
            }
            if (!entry.Aliases.ContainsKey(aliasName))
            {
                return FunctionWriteStatus.QualifierNotFound;
            }
            await store.DeleteAliasAsync(name, aliasName, CancellationToken.None);
            _functions[name] = entry with
            {
                Aliases = entry.Aliases.Remove(aliasName),
                ProvisionedConcurrency = entry.ProvisionedConcurrency.Remove(aliasName),
                EventInvokeConfigs = entry.EventInvokeConfigs.Remove(aliasName),
                Policies = entry.Policies.Remove(aliasName),
                Urls = entry.Urls.Remove(aliasName),
            };
            if (entry.Urls.TryGetValue(aliasName, out var aliasUrl))
            {
                _urlIds.TryRemove(aliasUrl.UrlId, out _);
            }
            return FunctionWriteStatus.Succeeded;
        }
        finally
        {
            await ExitWriteAsync(name);
        }
    }

    /// <summary>
    /// Sets (or, with null, removes) the function's reserved concurrency. <paramref name="allow"/> runs under the
    /// write lock with Σ reserved of the other functions and returns false to refuse (nothing is written).
    /// </summary>
    public async Task<FunctionWriteStatus> SetReservedConcurrencyAsync(string name, int? reserved, Func<int, bool> allow, CancellationToken cancellationToken)
    {
        var store = RequireStore();
        await EnterWriteAsync(name, cancellationToken);
        try
        {
            if (!_functions.TryGetValue(name, out var entry))
            {
                return FunctionWriteStatus.NotFound;
            }
            if (!allow(ReservedConcurrencyTotal - (entry.ReservedConcurrency ?? 0)))
            {
                return FunctionWriteStatus.Refused;
            }
            if (!await store.SetReservedConcurrencyAsync(name, reserved, CancellationToken.None))
            {
                return FunctionWriteStatus.NotFound;
            }
            _functions[name] = entry with { ReservedConcurrency = reserved };
            RecomputeReservedTotal();
        }
        finally
        {
            await ExitWriteAsync(name);
        }
        return FunctionWriteStatus.Succeeded;
    }

    /// <summary>
    /// Sets (or, with null, removes) the provisioned concurrency of <paramref name="qualifier"/>. <paramref name="check"/>
    /// runs under the write lock with the function's current entry and returns the error to refuse with (nothing is
    /// written), or null. Raises <see cref="ProvisionedConcurrencyChanged"/> once committed.
    /// </summary>
    public async Task<(FunctionWriteStatus Status, TError? Error)> SetProvisionedConcurrencyAsync<TError>(string name, string qualifier, int? requested,
        Func<FunctionEntry, TError?> check, CancellationToken cancellationToken) where TError : class
    {
        var store = RequireStore();
        await EnterWriteAsync(name, cancellationToken);
        try
        {
            if (!_functions.TryGetValue(name, out var entry))
            {
                return (FunctionWriteStatus.NotFound, null);
            }
            if (check(entry) is { } error)
            {
                return (FunctionWriteStatus.Refused, error);
            }
            var config = requested is { } count ? new ProvisionedConcurrencyConfig(qualifier, count, _timeProvider.GetUtcNow()) : null;
            await store.SetProvisionedConcurrencyAsync(name, qualifier, config, CancellationToken.None);
            _functions[name] = entry with
            {
                ProvisionedConcurrency = config is null ? entry.ProvisionedConcurrency.Remove(qualifier) : entry.ProvisionedConcurrency.SetItem(qualifier, config),
            };
        }
        finally
        {
            await ExitWriteAsync(name);
        }
        ProvisionedConcurrencyChanged?.Invoke();
        return (FunctionWriteStatus.Succeeded, null);
    }

    /// <summary>Raised after provisioned concurrency was set or removed (the pool reconciles at once rather than at its next sweep).</summary>
    public event Action? ProvisionedConcurrencyChanged;

    /// <summary>
    /// Sets or removes the asynchronous invocation settings of <paramref name="qualifier"/> (<c>$LATEST</c>, a version
    /// or an alias). <paramref name="build"/> runs under the write lock with the function's current entry and returns
    /// the next settings (stamped here with the qualifier and the time), null to remove them, or an error to refuse
    /// with (nothing is written). The result carries the settings now current (null after a removal).
    /// </summary>
    public async Task<(FunctionWriteStatus Status, EventInvokeConfig? Config, TError? Error)> SetEventInvokeConfigAsync<TError>(string name, string qualifier,
        Func<FunctionEntry, (EventInvokeConfig? Config, TError? Error)> build, CancellationToken cancellationToken) where TError : class
    {
        var store = RequireStore();
        await EnterWriteAsync(name, cancellationToken);
        try
        {
            if (!_functions.TryGetValue(name, out var entry))
            {
                return (FunctionWriteStatus.NotFound, null, null);
            }
            var (draft, error) = build(entry);
            if (error is not null)
            {
                return (FunctionWriteStatus.Refused, null, error);
            }
            var config = draft is null ? null : draft with { Qualifier = qualifier, LastModified = _timeProvider.GetUtcNow() };
            await store.SetEventInvokeConfigAsync(name, qualifier, config, CancellationToken.None);
            _functions[name] = entry with
            {
                EventInvokeConfigs = config is null ? entry.EventInvokeConfigs.Remove(qualifier) : entry.EventInvokeConfigs.SetItem(qualifier, config),
            };
            return (FunctionWriteStatus.Succeeded, config, null);
        }
        finally
        {
            await ExitWriteAsync(name);
        }
    }

    /// <summary>
    /// Changes the resource-based policy of <paramref name="qualifier"/>. <paramref name="change"/> runs under the
    /// write lock with the function's current entry and returns the next statements (none removes the policy) or an
    /// error to refuse with (nothing is written). The policy gets a new RevisionId; the result carries it.
    /// </summary>
    public async Task<(FunctionWriteStatus Status, ResourcePolicy? Policy, TError? Error)> SetPolicyAsync<TError>(string name, string qualifier,
        Func<FunctionEntry, (ImmutableArray<PolicyStatement> Statements, TError? Error)> change, CancellationToken cancellationToken) where TError : class
    {
        var store = RequireStore();
        await EnterWriteAsync(name, cancellationToken);
        try
        {
            if (!_functions.TryGetValue(name, out var entry))
            {
                return (FunctionWriteStatus.NotFound, null, null);
            }
            var (statements, error) = change(entry);
            if (error is not null)
            {
                return (FunctionWriteStatus.Refused, null, error);
            }
            var policy = statements.IsDefaultOrEmpty ? null : new ResourcePolicy(qualifier, Guid.NewGuid().ToString(), statements);
            await store.SetPolicyAsync(name, qualifier, policy, CancellationToken.None);
            _functions[name] = entry with
            {
                Policies = policy is null ? entry.Policies.Remove(qualifier) : entry.Policies.SetItem(qualifier, policy),
            };
            return (FunctionWriteStatus.Succeeded, policy, null);
        }
        finally
        {
            await ExitWriteAsync(name);
        }
    }

    /// <summary>
    /// Sets or removes the function URL of <paramref name="qualifier"/>. <paramref name="build"/> runs under the write
    /// lock with the function's current entry and returns the next configuration (null removes it) or an error to
    /// refuse with (nothing is written).
    /// </summary>
    public async Task<(FunctionWriteStatus Status, FunctionUrlConfig? Url, TError? Error)> SetUrlAsync<TError>(string name, string qualifier,
        Func<FunctionEntry, (FunctionUrlConfig? Url, TError? Error)> build, CancellationToken cancellationToken) where TError : class
    {
        var store = RequireStore();
        await EnterWriteAsync(name, cancellationToken);
        try
        {
            if (!_functions.TryGetValue(name, out var entry))
            {
                return (FunctionWriteStatus.NotFound, null, null);
            }
            var (url, error) = build(entry);
            if (error is not null)
            {
                return (FunctionWriteStatus.Refused, null, error);
            }
            await store.SetUrlAsync(name, qualifier, url, CancellationToken.None);
            if (entry.Urls.TryGetValue(qualifier, out var previous))
            {
                _urlIds.TryRemove(previous.UrlId, out _);
            }
            if (url is not null)
            {
                _urlIds[url.UrlId] = name;
            }
            _functions[name] = entry with { Urls = url is null ? entry.Urls.Remove(qualifier) : entry.Urls.SetItem(qualifier, url) };
            return (FunctionWriteStatus.Succeeded, url, null);
        }
        finally
        {
            await ExitWriteAsync(name);
        }
    }

    /// <summary>The function and URL configuration a function URL id names (lock-free; the request path).</summary>
    public bool TryGetUrl(string urlId, [NotNullWhen(true)] out FunctionEntry? entry, [NotNullWhen(true)] out FunctionUrlConfig? url)
    {
        url = null;
        entry = null;
        if (!_urlIds.TryGetValue(urlId, out var name) || !_functions.TryGetValue(name, out entry))
        {
            return false;
        }
        foreach (var candidate in entry.Urls.Values)
        {
            if (candidate.UrlId == urlId)
            {
                url = candidate;
                return true;
            }
        }
        return false;
    }

    /// <summary>Called under the write lock (or at load) after a reservation or the set of functions changed.</summary>
    private void RecomputeReservedTotal() =>
        Volatile.Write(ref _reservedConcurrencyTotal, _functions.Values.Sum(static e => e.ReservedConcurrency ?? 0));

    /// <summary>The function's tags, read from the database (control plane only).</summary>
    public Task<Dictionary<string, string>> GetTagsAsync(string name, CancellationToken cancellationToken) =>
        _store?.LoadTagsAsync(name, cancellationToken) ?? Task.FromResult(new Dictionary<string, string>(StringComparer.Ordinal));

    /// <summary>
    /// Adds or replaces tags (TagResource). <see cref="FunctionWriteStatus.Refused"/> when the function would then
    /// have more than <paramref name="maxTags"/> tags; nothing is written.
    /// </summary>
    public async Task<FunctionWriteStatus> TagAsync(string name, IReadOnlyDictionary<string, string> tags, int maxTags, CancellationToken cancellationToken)
    {
        var store = RequireStore();
        await EnterWriteAsync(name, cancellationToken);
        try
        {
            if (!_functions.ContainsKey(name))
            {
                return FunctionWriteStatus.NotFound;
            }
            var current = await store.LoadTagsAsync(name, CancellationToken.None);
            if (current.Keys.Union(tags.Keys, StringComparer.Ordinal).Count() > maxTags)
            {
                return FunctionWriteStatus.Refused;
            }
            await store.UpsertTagsAsync(name, tags, CancellationToken.None);
            return FunctionWriteStatus.Succeeded;
        }
        finally
        {
            await ExitWriteAsync(name);
        }
    }

    /// <summary>Removes tags by key (UntagResource); keys the function does not have are ignored.</summary>
    public async Task<FunctionWriteStatus> UntagAsync(string name, IReadOnlyCollection<string> keys, CancellationToken cancellationToken)
    {
        var store = RequireStore();
        await EnterWriteAsync(name, cancellationToken);
        try
        {
            if (!_functions.ContainsKey(name))
            {
                return FunctionWriteStatus.NotFound;
            }
            await store.DeleteTagsAsync(name, keys, CancellationToken.None);
            return FunctionWriteStatus.Succeeded;
        }
        finally
        {
            await ExitWriteAsync(name);
        }
    }

    /// <summary>Swaps the in-memory <c>$LATEST</c> only, without the database: for tests of other capabilities.</summary>
    internal void Replace(FunctionConfig? previous, FunctionConfig? current)
    {
        if (current is not null)
        {
            _functions.AddOrUpdate(current.Name,
                static (_, c) => new FunctionEntry { LatestConfig = c },
                static (_, entry, c) => entry with { LatestConfig = c }, current);
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

    // ---- Several nodes (issue #25). The registry is each node's cache of the shared store: a write takes the
    // cluster's lock besides the local one and first rereads the function (so its preconditions see the other nodes'
    // writes), and announces the change when it ends; the other nodes reread the function when they hear of it.

    private NpgsqlTransaction? _clusterLock;
    private List<Action>? _pendingEvents;
    private ClusterNode? _cluster;

    /// <summary>
    /// On a cluster node, rereads the function from the store unless what this node has of it passes
    /// <paramref name="current"/> (it exists, with the version or alias asked for, and the permission needed): another node
    /// may have written it a moment ago, before this one heard. Call before acting on a refusal that would drop an event
    /// or refuse a request; a single machine (or an entry that passes) costs nothing. A database that cannot answer
    /// throws (<see cref="RereadAsync"/>): the event waits for it as it would for the queue's write, never dropped on
    /// what this node had.
    /// </summary>
    public Task EnsureCurrentAsync(string name, Func<FunctionEntry, bool> current) =>
        _cluster is null || (_functions.TryGetValue(name, out var entry) && current(entry)) ? Task.CompletedTask : RereadAsync(name);

    /// <summary>Whether this registry is a cluster node's cache of the shared store (other nodes write it too).</summary>
    public bool Clustered => _cluster is not null;

    /// <summary>Follows the other nodes' changes (a cluster node only; a no-op on a single machine).</summary>
    internal void AttachCluster(ClusterNode cluster)
    {
        if (!cluster.Enabled)
        {
            return;
        }
        _cluster = cluster;
        cluster.Follow(ClusterNode.FunctionsChannel, ReloadAsync);
    }

    /// <summary>
    /// Rereads one function (or, with null, all) from the store and makes it current, as another node left it: what
    /// the cluster's notices do. A failure leaves this node serving what it had (the listener reconnects and reloads
    /// everything).
    /// </summary>
    internal async Task ReloadAsync(string? name)
    {
        try
        {
            await RereadAsync(name);
        }
        catch (Exception e) when (e is Npgsql.NpgsqlException or InvalidOperationException)
        {
            _ = e;
        }
    }

    /// <summary>
    /// Rereads one function (or, with null, all) for a request that must see what another node wrote a moment ago
    /// (FreshReads, an Invoke that did not find its function): a database that cannot answer fails the request (a
    /// retryable 500), never answers it from what may be stale, nor a 404 for a function that may exist.
    /// </summary>
    internal async Task RereadAsync(string? name)
    {
        await Hosting.IoThreads.LeaveIoThreadAsync(); // the reread blocks: never on a socket's I/O thread
        await _writeLock.WaitAsync(CancellationToken.None);
        try
        {
            ApplyStored(name);
        }
        finally
        {
            await ExitLocalAsync();
        }
    }

    private async Task EnterWriteAsync(string name, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken);
        if (_cluster is null)
        {
            return;
        }
        try
        {
            _clusterLock = await ClusterLock.AcquireAsync(RequireStore().Database, ClusterLock.Functions);
            // Npgsql's awaits may resume on a socket's I/O thread (inline completions, Hosting/IoThreads.cs), where a
            // blocking statement would wait for the very thread it blocks: the reread runs on the thread pool.
            await Task.Run(() => ApplyStored(name), CancellationToken.None);
        }
        catch
        {
            if (_clusterLock is { } held)
            {
                _clusterLock = null;
                await held.Connection!.DisposeAsync();
            }
            await ExitLocalAsync();
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
                await ClusterLock.ReleaseAsync(held, ClusterNode.FunctionsChannel, _cluster!.Payload(name));
            }
        }
        finally
        {
            await ClusterLock.LeaveIoThread(); // the events and what follows the write run on the pool
            await ExitLocalAsync();
        }
    }

    private Task ExitLocalAsync()
    {
        var pending = _pendingEvents;
        _pendingEvents = null;
        _writeLock.Release();
        pending?.ForEach(static raise => raise());
        return Task.CompletedTask;
    }

    /// <summary>Under the write lock: makes the stored state of <paramref name="only"/> (or of every function) current.</summary>
    private void ApplyStored(string? only)
    {
        var stored = RequireStore().LoadFunctionEntries(only);
        if (only is not null)
        {
            Apply(only, stored.Count == 1 ? stored[0] : null);
            return;
        }
        var names = new HashSet<string>(_functions.Keys, StringComparer.Ordinal);
        foreach (var entry in stored)
        {
            names.Remove(entry.Name);
            Apply(entry.Name, entry);
        }
        foreach (var gone in names)
        {
            Apply(gone, null);
        }
    }

    private void Apply(string name, FunctionEntry? fresh)
    {
        _functions.TryGetValue(name, out var old);
        if (old is not null)
        {
            foreach (var url in old.Urls.Values)
            {
                _urlIds.TryRemove(url.UrlId, out _);
            }
        }
        var pending = _pendingEvents ??= [];
        if (fresh is null)
        {
            if (old is null)
            {
                return;
            }
            _functions.TryRemove(name, out _);
            RecomputeReservedTotal();
            pending.Add(() => Deleted?.Invoke(name));
            foreach (var config in old.AllConfigs)
            {
                pending.Add(() => Retired?.Invoke(config));
            }
            return;
        }
        if (old is not null)
        {
            fresh = KeepInstances(old, fresh);
        }
        _functions[name] = fresh;
        foreach (var url in fresh.Urls.Values)
        {
            _urlIds[url.UrlId] = name;
        }
        RecomputeReservedTotal();
        if (old is null)
        {
            return;
        }
        var current = fresh.AllConfigs.Select(static c => (c.Version, c.RevisionId)).ToHashSet();
        foreach (var config in old.AllConfigs)
        {
            if (!current.Contains((config.Version, config.RevisionId)))
            {
                pending.Add(() => Retired?.Invoke(config));
            }
        }
        if (!old.ProvisionedConcurrency.SequenceEqual(fresh.ProvisionedConcurrency))
        {
            pending.Add(() => ProvisionedConcurrencyChanged?.Invoke());
        }
    }

    /// <summary>
    /// <paramref name="fresh"/> (as read from the store) with <paramref name="old"/>'s instance of every configuration
    /// that did not change (same version, same RevisionId: every change of a configuration stamps a new one).
    /// Environments are keyed by the instance, so a reread that swapped in equal copies (a tag or a permission added
    /// on another node, the reread before a write) would strand the warm and provisioned environments of every one.
    /// </summary>
    private static FunctionEntry KeepInstances(FunctionEntry old, FunctionEntry fresh)
    {
        static bool Same(FunctionConfig a, FunctionConfig b) => a.Version == b.Version && a.RevisionId == b.RevisionId;
        var versions = fresh.Versions;
        foreach (var (number, version) in fresh.Versions)
        {
            if (old.Versions.TryGetValue(number, out var was) && Same(was.Config, version.Config))
            {
                versions = versions.SetItem(number, was);
            }
        }
        return fresh with
        {
            LatestConfig = Same(old.LatestConfig, fresh.LatestConfig) ? old.LatestConfig : fresh.LatestConfig,
            Versions = versions,
        };
    }

    private LambdaStore RequireStore() => _store ?? throw new InvalidOperationException("This registry has no store.");

    private FunctionConfig Stamp(FunctionConfig config) => config with
    {
        RevisionId = Guid.NewGuid().ToString(),
        LastModified = _timeProvider.GetUtcNow(),
    };
}
