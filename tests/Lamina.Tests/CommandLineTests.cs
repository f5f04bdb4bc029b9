using Lamina.Server.Hosting;

namespace Lamina.Tests;

public sealed class CommandLineTests
{
    // The options serve would run with, or the first problem with the command line, as users get it.
    private static (LaminaOptions? Options, string? Error) ParseServe(string[] args)
    {
        LaminaOptions? parsed = null;
        var result = CommandLine.Build((options, _) =>
        {
            parsed = options;
            return Task.FromResult(0);
        }).Parse(args);
        if (result.Errors.Count > 0)
        {
            return (null, $"lamina: {result.Errors[0].Message}");
        }
        Assert.Equal(0, result.Invoke());
        return (parsed, parsed is null ? "lamina: serve did not run" : null);
    }

    [Fact]
    public void ParseServe_Serve_ReadsPortHostAndData()
    {
        var (options, error) = ParseServe(["serve", "--port", "0", "--host=0.0.0.0", "--data", "/tmp/x"]);
        Assert.Null(error);
        Assert.Equal(0, options!.Port);
        Assert.Equal("0.0.0.0", options.Host);
        Assert.Equal("/tmp/x", options.DataDirectory);
    }

    [Fact]
    public void ParseServe_Defaults_AreLambdaLocalConventions()
    {
        var (options, _) = ParseServe(["serve"]);
        Assert.NotNull(options);
        Assert.Equal(9000, options!.Port);
        Assert.Equal("127.0.0.1", options.Host);
        Assert.Equal("us-east-1", options.Region);
        Assert.Equal("000000000000", options.AccountId);
        Assert.EndsWith(".lamina", options.DataDirectory, StringComparison.Ordinal);
    }

    [Fact]
    public void ParseServe_AccountConcurrency_DefaultsToLambdasAndReadsTheOption()
    {
        var (defaults, _) = ParseServe(["serve"]);
        Assert.NotNull(defaults);
        Assert.Equal(1000, defaults!.AccountConcurrency);
        Assert.Equal(100, defaults.MinimumUnreservedConcurrency);
        var (options, _) = ParseServe(["serve", "--account-concurrency", "5"]);
        Assert.NotNull(options);
        Assert.Equal(5, options!.AccountConcurrency);
        Assert.Equal(5, options.MinimumUnreservedConcurrency);
        var (_, error) = ParseServe(["serve", "--account-concurrency", "0"]);
        Assert.NotNull(error);
        Assert.Contains("--account-concurrency", error, StringComparison.Ordinal);
    }

    [Fact]
    public void ParseServe_MemoryBudgetAndIdleTimeout_DefaultToMachineMemoryAndTenMinutes()
    {
        var (defaults, _) = ParseServe(["serve"]);
        Assert.NotNull(defaults);
        Assert.Equal(LaminaOptions.PhysicalMemoryMb(), defaults!.MemoryBudgetMb);
        Assert.True(defaults.MemoryBudgetMb > 128);
        Assert.Equal(TimeSpan.FromMinutes(10), defaults.IdleEnvironmentLifetime);
        var (options, _) = ParseServe(["serve", "--memory-budget", "2048", "--idle-timeout=30"]);
        Assert.NotNull(options);
        Assert.Equal(2048, options!.MemoryBudgetMb);
        Assert.Equal(TimeSpan.FromSeconds(30), options.IdleEnvironmentLifetime);
    }

    [Fact]
    public void ParseServe_AsyncRetryDelay_DefaultsToAMinuteAndTakesFractions()
    {
        var (defaults, _) = ParseServe(["serve"]);
        Assert.NotNull(defaults);
        Assert.Equal(TimeSpan.FromSeconds(60), defaults!.AsyncRetryDelay);
        var (options, _) = ParseServe(["serve", "--async-retry-delay", "0.5"]);
        Assert.NotNull(options);
        Assert.Equal(TimeSpan.FromMilliseconds(500), options!.AsyncRetryDelay);
    }

    [Theory]
    [InlineData("serve", "--async-retry-delay", "-1")]
    [InlineData("serve", "--async-retry-delay", "soon")]
    [InlineData("serve", "--memory-budget", "64")]
    [InlineData("serve", "--idle-timeout", "0")]
    [InlineData("serve", "--idle-timeout", "-5")]
    [InlineData("serve", "--port", "70000")]
    [InlineData("serve", "--port", "abc")]
    [InlineData("serve", "--bogus")]
    [InlineData("serve", "--data")]
    [InlineData("serve", "--function-network", "maybe")]
    [InlineData("serve", "--otlp-endpoint", "ftp://x")]
    [InlineData("serve", "--log-max-mb", "0")]
    [InlineData("frobnicate")]
    public void ParseServe_BadArguments_NameTheProblem(params string[] args)
    {
        var (options, error) = ParseServe(args);
        Assert.Null(options);
        Assert.StartsWith("lamina: ", error, StringComparison.Ordinal);
    }

    [Fact]
    public void ParseServe_BadValue_SaysWhatItMustBe()
    {
        var (_, error) = ParseServe(["serve", "--port", "70000"]);
        Assert.Equal("lamina: --port must be a number from 0 to 65535, not '70000'", error);
    }

    [Fact]
    public void ParseServe_EveryOption_Read()
    {
        var (options, error) = ParseServe(["serve", "--function-network", "off", "--log-max-mb", "7", "--otlp-endpoint", "http://127.0.0.1:4318", "--public-metrics"]);
        Assert.Null(error);
        Assert.False(options!.FunctionNetwork);
        Assert.Equal(7, options.LogMaxMb);
        Assert.Equal("http://127.0.0.1:4318", options.OtlpEndpoint);
        Assert.True(options.PublicMetrics);
    }

    [Theory]
    [InlineData("events", "show")]
    [InlineData("events", "list", "--state", "x")]
    [InlineData("events", "list", "--limit", "0")]
    [InlineData("keys")]
    [InlineData("keys", "create", "--account", "12")]
    [InlineData("keys", "revoke")]
    [InlineData("logs")]
    [InlineData("logs", "fn", "--since", "-3")]
    [InlineData("backup")]
    [InlineData("backup", "/tmp/a", "/tmp/b")]
    public void Parse_OperatorCommandMisused_IsAnError(params string[] args)
    {
        Assert.NotEmpty(CommandLine.Build(static (_, _) => Task.FromResult(0)).Parse(args).Errors);
    }

    [Theory]
    [InlineData("events", "redrive", "--all")]
    [InlineData("events", "purge", "--function", "fn")]
    [InlineData("events", "show", "id-1", "--endpoint", "http://127.0.0.1:1")]
    [InlineData("keys", "list", "--data", "/tmp/x")]
    [InlineData("keys", "create", "--account", "123456789012")]
    [InlineData("logs", "fn", "-f", "--since", "0.5", "--filter", "ERROR")]
    [InlineData("backup", "/tmp/backup", "--data", "/tmp/x")]
    [InlineData("--version")]
    public void Parse_OperatorCommandUsedRightly_HasNoErrors(params string[] args)
    {
        Assert.Empty(CommandLine.Build(static (_, _) => Task.FromResult(0)).Parse(args).Errors);
    }
}
