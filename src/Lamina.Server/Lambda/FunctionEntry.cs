using System.Collections.Immutable;
using System.Diagnostics.CodeAnalysis;

namespace Lamina.Server.Lambda;

/// <summary>
/// Everything the registry knows about one function, as one immutable snapshot: <c>$LATEST</c>, the published
/// versions and the aliases. A write builds the next snapshot and swaps it in whole, so a reader (the invoke path)
/// always sees a consistent function without taking a lock.
/// </summary>
internal sealed record FunctionEntry
{
    public const string Latest = "$LATEST";

    public static readonly ImmutableSortedDictionary<string, AliasConfig> NoAliases =
        ImmutableSortedDictionary.Create<string, AliasConfig>(StringComparer.Ordinal);

    /// <summary>The mutable, unpublished version.</summary>
    public required FunctionConfig LatestConfig { get; init; }

    /// <summary>Published versions by number. Each is one instance for its whole life (environments are keyed by it).</summary>
    public ImmutableSortedDictionary<int, PublishedVersion> Versions { get; init; } = ImmutableSortedDictionary<int, PublishedVersion>.Empty;

    public ImmutableSortedDictionary<string, AliasConfig> Aliases { get; init; } = NoAliases;

    /// <summary>The highest version number ever published; numbers are never reused, even after a delete.</summary>
    public int LastVersion { get; init; }

    /// <summary>
    /// Reserved concurrency (PutFunctionConcurrency), shared by <c>$LATEST</c>, every version and alias; null when
    /// the function draws from the account's unreserved pool.
    /// </summary>
    public int? ReservedConcurrency { get; init; }

    /// <summary>Provisioned concurrency by qualifier (a version number or an alias name).</summary>
    public ImmutableSortedDictionary<string, ProvisionedConcurrencyConfig> ProvisionedConcurrency { get; init; } = NoProvisionedConcurrency;

    public static readonly ImmutableSortedDictionary<string, ProvisionedConcurrencyConfig> NoProvisionedConcurrency =
        ImmutableSortedDictionary.Create<string, ProvisionedConcurrencyConfig>(StringComparer.Ordinal);

    /// <summary>
    /// Asynchronous invocation settings (PutFunctionEventInvokeConfig) by qualifier: <c>$LATEST</c> (also what an
    /// unqualified request names), a version number or an alias name. Each applies to invocations made through
    /// exactly that qualifier; an alias does not inherit its version's.
    /// </summary>
    public ImmutableSortedDictionary<string, EventInvokeConfig> EventInvokeConfigs { get; init; } = NoEventInvokeConfigs;

    public static readonly ImmutableSortedDictionary<string, EventInvokeConfig> NoEventInvokeConfigs =
        ImmutableSortedDictionary.Create<string, EventInvokeConfig>(StringComparer.Ordinal);

    /// <summary>Resource-based policies (AddPermission) by qualifier: <c>$LATEST</c>, a version number or an alias name.</summary>
    public ImmutableSortedDictionary<string, ResourcePolicy> Policies { get; init; } = NoPolicies;

    public static readonly ImmutableSortedDictionary<string, ResourcePolicy> NoPolicies =
        ImmutableSortedDictionary.Create<string, ResourcePolicy>(StringComparer.Ordinal);

    /// <summary>Function URLs by qualifier: <c>$LATEST</c> or an alias name.</summary>
    public ImmutableSortedDictionary<string, FunctionUrlConfig> Urls { get; init; } = NoUrls;

    public static readonly ImmutableSortedDictionary<string, FunctionUrlConfig> NoUrls =
        ImmutableSortedDictionary.Create<string, FunctionUrlConfig>(StringComparer.Ordinal);

    public string Name => LatestConfig.Name;

    /// <summary>Every configuration environments may run: <c>$LATEST</c> and each published version.</summary>
    public IEnumerable<FunctionConfig> AllConfigs => Versions.Values.Select(static v => v.Config).Prepend(LatestConfig);

    /// <summary>
    /// The configuration an invocation of <paramref name="qualifier"/> runs: <c>$LATEST</c> when null, a published
    /// version, or an alias's version — chosen per call by the alias's weights with <paramref name="random"/>.
    /// Null when the qualifier names nothing.
    /// </summary>
    public FunctionConfig? Resolve(string? qualifier, Random random)
    {
        if (qualifier is null)
        {
            return LatestConfig;
        }
        // Alias names are never numbers nor $LATEST, so the order of the two lookups does not matter.
        return Aliases.TryGetValue(qualifier, out var alias) ? ResolveVersion(alias.ChooseVersion(random)) : ResolveVersion(qualifier);
    }

    /// <summary>
    /// Like <see cref="Resolve"/>, without routing: an alias stands for its primary version (what GetFunction and
    /// GetFunctionConfiguration report for an alias).
    /// </summary>
    public FunctionConfig? ResolvePrimary(string? qualifier)
    {
        if (qualifier is null)
        {
            return LatestConfig;
        }
        return Aliases.TryGetValue(qualifier, out var alias) ? ResolveVersion(alias.FunctionVersion) : ResolveVersion(qualifier);
    }

    /// <summary><c>$LATEST</c> or a published version by its number; null if there is no such version.</summary>
    public FunctionConfig? ResolveVersion(string version)
    {
        if (version == Latest)
        {
            return LatestConfig;
        }
        return TryParseVersion(version, out var number) && Versions.TryGetValue(number, out var published) ? published.Config : null;
    }

    /// <summary>The aliases that route to <paramref name="version"/> (as primary or additional version), by name.</summary>
    public List<string> AliasesReferencing(string version) =>
        Aliases.Values.Where(a => a.References(version)).Select(static a => a.Name).ToList();

    /// <summary>
    /// A version number as Lambda writes it: decimal digits, no sign, no leading zero, within <see cref="int"/>.
    /// "01" is not version 1 (it names nothing).
    /// </summary>
    public static bool TryParseVersion(string? value, out int number)
    {
        number = 0;
        if (string.IsNullOrEmpty(value) || value.Length > 9 || value[0] == '0')
        {
            return false;
        }
        foreach (var c in value)
        {
            if (!char.IsAsciiDigit(c))
            {
                return false;
            }
            number = (number * 10) + (c - '0');
        }
        return true;
    }

    public bool TryGetVersion(int number, [NotNullWhen(true)] out FunctionConfig? config)
    {
        config = Versions.TryGetValue(number, out var version) ? version.Config : null;
        return config is not null;
    }
}

/// <summary>A published version and the <c>$LATEST</c> revision it was taken from (to tell whether anything changed since).</summary>
internal sealed record PublishedVersion(FunctionConfig Config, string SourceRevisionId);

/// <summary>
/// PutProvisionedConcurrencyConfig for one version or alias: <paramref name="Requested"/> environments kept initialised
/// ahead of traffic (for an alias, of the version it points to).
/// </summary>
internal sealed record ProvisionedConcurrencyConfig(string Qualifier, int Requested, DateTimeOffset LastModified);

/// <summary>
/// PutFunctionEventInvokeConfig for one qualifier: how many times a failed asynchronous invocation is retried (0–2),
/// how long an event may wait (60–21600 s), and where records of successes and failures go. Null settings are unset
/// (Lambda's defaults apply: 2 retries, 6 hours, no destination).
/// </summary>
internal sealed record EventInvokeConfig(string Qualifier, int? MaximumRetryAttempts, int? MaximumEventAgeInSeconds,
    string? OnSuccessDestination, string? OnFailureDestination, DateTimeOffset LastModified);
