using System.Collections.Immutable;
using Lamina.Server.Hosting;
using Lamina.Server.Lambda;
using Lamina.Server.Protocols;

namespace Lamina.Tests.Lambda;

/// <summary>Lambda's alias rules: names, target versions and weighted routing.</summary>
public sealed class AliasValidationTests
{
    private static readonly LaminaOptions Options = new();

    private static FunctionConfig Config(string version) => new()
    {
        Name = "fn", Version = version, Runtime = "python3.12", Role = "arn:aws:iam::000000000000:role/r", Handler = "app.handler",
        CodeSha256 = "", CodeSize = 1, LastModified = default, RevisionId = "r",
    };

    private static readonly FunctionEntry Entry = new()
    {
        LatestConfig = Config("$LATEST"),
        Versions = ImmutableSortedDictionary<int, PublishedVersion>.Empty
            .Add(1, new PublishedVersion(Config("1"), "r"))
            .Add(2, new PublishedVersion(Config("2"), "r")),
        LastVersion = 2,
    };

    private static AwsError? Routing(string primary, Dictionary<string, double>? weights) =>
        FunctionValidation.ValidateRouting(Entry, primary, weights, Options, out _, out _);

    [Theory]
    [InlineData("live")]
    [InlineData("v1-blue_green")]
    [InlineData("1a")]
    [InlineData("a1")]
    public void ValidateAliasName_Valid_Null(string name) => Assert.Null(FunctionValidation.ValidateAliasName(name));

    [Theory]
    [InlineData("123")]
    [InlineData("$LATEST")]
    [InlineData("has space")]
    [InlineData("")]
    [InlineData("a:b")]
    public void ValidateAliasName_Invalid_ValidationException(string name)
    {
        var error = FunctionValidation.ValidateAliasName(name);

        Assert.NotNull(error);
        Assert.Equal(400, error.StatusCode);
        Assert.Equal("ValidationException", error.Code);
    }

    [Fact]
    public void ValidateAliasName_TooLongOrNull_Refused()
    {
        Assert.Contains("less than or equal to 128", FunctionValidation.ValidateAliasName(new string('a', 129))!.Message, StringComparison.Ordinal);
        Assert.Contains("Value null at 'name'", FunctionValidation.ValidateAliasName(null)!.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("$LATEST", true)]
    [InlineData("1", true)]
    [InlineData("live", false)]
    [InlineData("$LATEST.PUBLISHED", false)]
    public void ValidateVersionValue_VersionsOnly(string version, bool valid) =>
        Assert.Equal(valid, FunctionValidation.ValidateVersionValue(version) is null);

    [Fact]
    public void ValidateVersionExists_MissingVersion_FunctionNotFoundWithQualifiedArn()
    {
        var error = FunctionValidation.ValidateVersionExists(Entry, "7", Options);

        Assert.Equal(404, error!.StatusCode);
        Assert.Equal("Function not found: arn:aws:lambda:us-east-1:000000000000:function:fn:7", error.Message);
        Assert.Null(FunctionValidation.ValidateVersionExists(Entry, "$LATEST", Options));
        Assert.Null(FunctionValidation.ValidateVersionExists(Entry, "2", Options));
    }

    [Fact]
    public void ValidateRouting_OneAdditionalPublishedVersion_Accepted()
    {
        Assert.Null(FunctionValidation.ValidateRouting(Entry, "1", new Dictionary<string, double> { ["2"] = 0.3 }, Options, out var additional, out var weight));
        Assert.Equal("2", additional);
        Assert.Equal(0.3, weight);
        Assert.Null(FunctionValidation.ValidateRouting(Entry, "1", new Dictionary<string, double> { ["2"] = 0.0 }, Options, out _, out _));
        Assert.Null(FunctionValidation.ValidateRouting(Entry, "1", new Dictionary<string, double> { ["2"] = 1.0 }, Options, out _, out _));
    }

    [Fact]
    public void ValidateRouting_NoneOrEmpty_NoRouting()
    {
        Assert.Null(FunctionValidation.ValidateRouting(Entry, "$LATEST", null, Options, out var additional, out _));
        Assert.Null(additional);
        Assert.Null(FunctionValidation.ValidateRouting(Entry, "$LATEST", new Dictionary<string, double>(), Options, out additional, out _));
        Assert.Null(additional);
    }

    [Fact]
    public void ValidateRouting_LambdasRules_RefusedWithLambdasMessages()
    {
        Assert.Equal("Number of items in AdditionalVersionWeights cannot be greater than 1",
            Routing("1", new() { ["2"] = 0.1, ["3"] = 0.1 })!.Message);
        Assert.Equal("Invalid function version 1. Function version 1 is already included in routing configuration.",
            Routing("1", new() { ["1"] = 0.5 })!.Message);
        Assert.Equal("$LATEST is not supported for an alias pointing to more than 1 version",
            Routing("$LATEST", new() { ["1"] = 0.5 })!.Message);
        Assert.Equal("Function not found: arn:aws:lambda:us-east-1:000000000000:function:fn:9",
            Routing("1", new() { ["9"] = 0.5 })!.Message);

        var weight = Routing("1", new() { ["2"] = 1.5 })!;
        Assert.Equal("ValidationException", weight.Code);
        Assert.Contains("Member must have value less than or equal to 1.0", weight.Message, StringComparison.Ordinal);
        Assert.Contains("greater than or equal to 0.0", Routing("1", new() { ["2"] = -0.1 })!.Message, StringComparison.Ordinal);
        Assert.Contains("regular expression pattern: [0-9]+", Routing("1", new() { ["$LATEST"] = 0.1 })!.Message, StringComparison.Ordinal);
    }
}
