using Lamina.Server.Invoke;

namespace Lamina.Tests.DotNetRuntime;

public sealed class RuntimeCatalogDotNetTests : IDisposable
{
    private readonly string _code = Directory.CreateTempSubdirectory("lamina-dotnet-").FullName;

    public void Dispose() => Directory.Delete(_code, recursive: true);

    [Theory]
    [InlineData("dotnet8")]
    [InlineData("dotnet10")]
    public void DotNetRuntimes_AreSupportedAndManaged(string runtime)
    {
        Assert.True(RuntimeCatalog.IsSupported(runtime));
        Assert.False(RuntimeCatalog.IsCustom(runtime));
    }

    [Fact]
    public void TryGetCommand_WithFunctionRuntimeConfig_RunsTheBootstrapWithIt()
    {
        File.WriteAllText(Path.Combine(_code, "HelloWorld.runtimeconfig.json"), "{}");

        Assert.True(RuntimeCatalog.TryGetCommand("dotnet8", 512, _code, null, out var command, out _));

        Assert.Equal(["/usr/bin/dotnet", "exec", "--runtimeconfig", "/var/task/HelloWorld.runtimeconfig.json", "--roll-forward", "LatestMajor", "/var/runtime/dotnet/Lamina.Runtime.Bootstrap.dll"], command);
    }

    [Fact]
    public void TryGetCommand_WithoutOrWithSeveralRuntimeConfigs_RunsTheBootstrapWithItsOwn()
    {
        Assert.True(RuntimeCatalog.TryGetCommand("dotnet10", 512, _code, null, out var command, out _));
        Assert.Equal(["/usr/bin/dotnet", "/var/runtime/dotnet/Lamina.Runtime.Bootstrap.dll"], command);

        File.WriteAllText(Path.Combine(_code, "A.runtimeconfig.json"), "{}");
        File.WriteAllText(Path.Combine(_code, "B.runtimeconfig.json"), "{}");
        Assert.True(RuntimeCatalog.TryGetCommand("dotnet10", 512, _code, null, out command, out _));
        Assert.Equal(["/usr/bin/dotnet", "/var/runtime/dotnet/Lamina.Runtime.Bootstrap.dll"], command);
    }

    [Fact]
    public void DefaultVariables_DotNet_NeedNoHome()
    {
        var variables = RuntimeCatalog.DefaultVariables("dotnet10").ToDictionary();

        Assert.Equal("/tmp", variables["DOTNET_BUNDLE_EXTRACT_BASE_DIR"]);
        Assert.Equal("1", variables["DOTNET_CLI_TELEMETRY_OPTOUT"]);
    }
}
