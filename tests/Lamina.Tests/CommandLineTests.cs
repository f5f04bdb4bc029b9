using Lamina.Server.Hosting;

namespace Lamina.Tests;

public sealed class CommandLineTests
{
    [Fact]
    public void TryParse_Serve_ReadsPortHostAndData()
    {
        Assert.True(CommandLine.TryParse(["serve", "--port", "0", "--host=0.0.0.0", "--data", "/tmp/x"], out var command, out var options, out _));
        Assert.Equal("serve", command);
        Assert.Equal(0, options!.Port);
        Assert.Equal("0.0.0.0", options.Host);
        Assert.Equal("/tmp/x", options.DataDirectory);
    }

    [Fact]
    public void TryParse_Defaults_AreLambdaLocalConventions()
    {
        Assert.True(CommandLine.TryParse(["serve"], out _, out var options, out _));
        Assert.Equal(9000, options!.Port);
        Assert.Equal("127.0.0.1", options.Host);
        Assert.Equal("us-east-1", options.Region);
        Assert.Equal("000000000000", options.AccountId);
        Assert.EndsWith(".lamina", options.DataDirectory, StringComparison.Ordinal);
    }

    [Fact]
    public void TryParse_AccountConcurrency_DefaultsToLambdasAndReadsTheOption()
    {
        Assert.True(CommandLine.TryParse(["serve"], out _, out var defaults, out _));
        Assert.Equal(1000, defaults!.AccountConcurrency);
        Assert.Equal(100, defaults.MinimumUnreservedConcurrency);
        Assert.True(CommandLine.TryParse(["serve", "--account-concurrency", "5"], out _, out var options, out _));
        Assert.Equal(5, options!.AccountConcurrency);
        Assert.Equal(5, options.MinimumUnreservedConcurrency);
        Assert.False(CommandLine.TryParse(["serve", "--account-concurrency", "0"], out _, out _, out var error));
        Assert.Contains("--account-concurrency", error, StringComparison.Ordinal);
    }

    [Fact]
    public void TryParse_MemoryBudgetAndIdleTimeout_DefaultToMachineMemoryAndTenMinutes()
    {
        Assert.True(CommandLine.TryParse(["serve"], out _, out var defaults, out _));
        Assert.Equal(LaminaOptions.PhysicalMemoryMb(), defaults!.MemoryBudgetMb);
        Assert.True(defaults.MemoryBudgetMb > 128);
        Assert.Equal(TimeSpan.FromMinutes(10), defaults.IdleEnvironmentLifetime);
        Assert.True(CommandLine.TryParse(["serve", "--memory-budget", "2048", "--idle-timeout=30"], out _, out var options, out _));
        Assert.Equal(2048, options!.MemoryBudgetMb);
        Assert.Equal(TimeSpan.FromSeconds(30), options.IdleEnvironmentLifetime);
    }

    [Fact]
    public void TryParse_AsyncRetryDelay_DefaultsToAMinuteAndTakesFractions()
    {
        Assert.True(CommandLine.TryParse(["serve"], out _, out var defaults, out _));
        Assert.Equal(TimeSpan.FromSeconds(60), defaults!.AsyncRetryDelay);
        Assert.True(CommandLine.TryParse(["serve", "--async-retry-delay", "0.5"], out _, out var options, out _));
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
    [InlineData("frobnicate")]
    public void TryParse_BadArguments_NameTheProblem(params string[] args)
    {
        Assert.False(CommandLine.TryParse(args, out _, out _, out var error));
        Assert.StartsWith("lamina: ", error, StringComparison.Ordinal);
    }
}
