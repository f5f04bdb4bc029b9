namespace Lamina.Server.Lambda;

/// <summary>
/// An alias of a function, immutable: a named pointer to <c>$LATEST</c> or a published version, optionally sending a
/// share of invocations to a second published version (Lambda's <c>RoutingConfig.AdditionalVersionWeights</c>,
/// which holds at most one entry).
/// </summary>
internal sealed record AliasConfig
{
    public required string Name { get; init; }

    /// <summary><c>$LATEST</c> or a published version number.</summary>
    public required string FunctionVersion { get; init; }

    public string Description { get; init; } = "";

    /// <summary>The second version of weighted routing; null when the alias routes to one version.</summary>
    public string? AdditionalVersion { get; init; }

    /// <summary>Share of invocations, 0.0–1.0, that run <see cref="AdditionalVersion"/>.</summary>
    public double AdditionalWeight { get; init; }

    /// <summary>Changes on every update; UpdateAlias's optimistic-concurrency token.</summary>
    public required string RevisionId { get; init; }

    /// <summary>
    /// The version one invocation runs: <see cref="AdditionalVersion"/> with probability
    /// <see cref="AdditionalWeight"/>, else <see cref="FunctionVersion"/>. Each invocation chooses on its own, as
    /// Lambda does (no stickiness); <paramref name="random"/> is <see cref="Random.Shared"/> outside tests.
    /// </summary>
    public string ChooseVersion(Random random) =>
        AdditionalVersion is not null && random.NextDouble() < AdditionalWeight ? AdditionalVersion : FunctionVersion;

    /// <summary>True if an invocation of this alias can run <paramref name="version"/>.</summary>
    public bool References(string version) => FunctionVersion == version || AdditionalVersion == version;
}
