using System.Collections.Immutable;
using Lamina.Server.Lambda;

namespace Lamina.Tests.Lambda;

/// <summary>Qualifier resolution and weighted routing on the immutable function snapshot (the invoke path's lookups).</summary>
public sealed class FunctionEntryTests
{
    private static FunctionConfig Config(string version) => new()
    {
        Name = "fn", Version = version, Runtime = "python3.12", Role = "arn:aws:iam::000000000000:role/r", Handler = "app.handler",
        CodeSha256 = Convert.ToBase64String(new byte[32]), CodeSize = 1, LastModified = default, RevisionId = "r-" + version,
    };

    private static AliasConfig Alias(string name, string version, string? additional = null, double weight = 0) => new()
    {
        Name = name, FunctionVersion = version, AdditionalVersion = additional, AdditionalWeight = weight, RevisionId = "a",
    };

    private static FunctionEntry CreateSut(params AliasConfig[] aliases) => new()
    {
        LatestConfig = Config("$LATEST"),
        Versions = ImmutableSortedDictionary<int, PublishedVersion>.Empty
            .Add(1, new PublishedVersion(Config("1"), "r-$LATEST"))
            .Add(2, new PublishedVersion(Config("2"), "r-$LATEST")),
        Aliases = FunctionEntry.NoAliases.AddRange(aliases.Select(a => KeyValuePair.Create(a.Name, a))),
        LastVersion = 3,
    };

    [Fact]
    public void Resolve_EachQualifierForm_ReturnsTheSameLongLivedInstance()
    {
        var entry = CreateSut(Alias("live", "2"), Alias("dev", "$LATEST"));

        Assert.Same(entry.LatestConfig, entry.Resolve(null, Random.Shared));
        Assert.Same(entry.LatestConfig, entry.Resolve("$LATEST", Random.Shared));
        Assert.Same(entry.Versions[1].Config, entry.Resolve("1", Random.Shared));
        Assert.Same(entry.Versions[2].Config, entry.Resolve("live", Random.Shared));
        Assert.Same(entry.LatestConfig, entry.Resolve("dev", Random.Shared));
    }

    [Theory]
    [InlineData("3")]        // deleted (LastVersion is 3, version 3 is gone)
    [InlineData("01")]       // not how Lambda writes version 1
    [InlineData("0")]
    [InlineData("9999999999")]
    [InlineData("nope")]     // no such alias
    [InlineData("$LATEST.PUBLISHED")]
    public void Resolve_UnknownQualifier_Null(string qualifier)
    {
        var entry = CreateSut(Alias("live", "2"));

        Assert.Null(entry.Resolve(qualifier, Random.Shared));
        Assert.Null(entry.ResolvePrimary(qualifier));
    }

    [Fact]
    public void ResolvePrimary_WeightedAlias_AlwaysThePrimaryVersion()
    {
        var entry = CreateSut(Alias("live", "1", "2", 0.99));

        for (var i = 0; i < 100; i++)
        {
            Assert.Same(entry.Versions[1].Config, entry.ResolvePrimary("live"));
        }
    }

    [Theory]
    [InlineData(0.3)]
    [InlineData(0.05)]
    [InlineData(0.5)]
    public void ChooseVersion_Weight_SplitsInvocationsByWeight(double weight)
    {
        var alias = Alias("live", "1", "2", weight);
        var random = new Random(12345); // seeded: the test is deterministic
        const int Invocations = 100_000;

        var additional = Enumerable.Range(0, Invocations).Count(_ => alias.ChooseVersion(random) == "2");

        // Binomial standard deviation at n=100000 is at most 0.0016; 0.01 is > 6 sigma.
        Assert.InRange((double)additional / Invocations, weight - 0.01, weight + 0.01);
    }

    [Fact]
    public void ChooseVersion_WeightZeroOrOne_NeverOrAlways()
    {
        var random = new Random(7);

        Assert.All(Enumerable.Range(0, 1000), _ => Assert.Equal("1", Alias("a", "1", "2", 0.0).ChooseVersion(random)));
        Assert.All(Enumerable.Range(0, 1000), _ => Assert.Equal("2", Alias("a", "1", "2", 1.0).ChooseVersion(random)));
        Assert.All(Enumerable.Range(0, 1000), _ => Assert.Equal("1", Alias("a", "1").ChooseVersion(random)));
    }

    [Fact]
    public void Resolve_WeightedAlias_ReturnsBothVersionsInstances()
    {
        var entry = CreateSut(Alias("live", "1", "2", 0.5));
        var random = new Random(1);

        var seen = Enumerable.Range(0, 200).Select(_ => entry.Resolve("live", random)).Distinct().ToList();

        Assert.Equal(2, seen.Count);
        Assert.Contains(entry.Versions[1].Config, seen);
        Assert.Contains(entry.Versions[2].Config, seen);
    }

    [Fact]
    public void AliasesReferencing_PrimaryOrAdditional_Listed()
    {
        var entry = CreateSut(Alias("a", "1"), Alias("b", "2", "1", 0.1), Alias("c", "2"));

        Assert.Equal(["a", "b"], entry.AliasesReferencing("1"));
        Assert.Equal(["b", "c"], entry.AliasesReferencing("2"));
        Assert.Empty(entry.AliasesReferencing("$LATEST"));
    }

    [Theory]
    [InlineData("1", true, 1)]
    [InlineData("42", true, 42)]
    [InlineData("999999999", true, 999999999)]
    [InlineData("1000000000", false, 0)]
    [InlineData("007", false, 0)]
    [InlineData("-1", false, 0)]
    [InlineData("", false, 0)]
    [InlineData("1a", false, 0)]
    public void TryParseVersion_LambdaForm(string text, bool valid, int number)
    {
        Assert.Equal(valid, FunctionEntry.TryParseVersion(text, out var parsed));
        Assert.Equal(number, valid ? parsed : 0);
    }
}
