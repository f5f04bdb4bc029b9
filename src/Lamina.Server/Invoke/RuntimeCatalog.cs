using System.Diagnostics.CodeAnalysis;

namespace Lamina.Server.Invoke;

/// <summary>
/// The runtimes Lamina runs and how each starts inside the sandbox. Managed runtimes are Lamina's own bootstraps
/// under <c>/var/runtime</c> on the machine's interpreters (dotnet8 and dotnet10 both on the machine's .NET, 10 or
/// later); <c>provided.*</c> runs the function's own <c>bootstrap</c>.
/// </summary>
internal static class RuntimeCatalog
{
    // Debian's interpreter, not a pyenv shim: the shim costs ~70 ms per start (DESIGN §7).
    private const string Python = "/usr/bin/python3";
    private const string Node = "/usr/bin/node";
    private const string DotNet = "/usr/bin/dotnet";

    // Lamina.Runtime.Bootstrap, published ReadyToRun into the server's runtimes/dotnet/ by Lamina.Server.csproj.
    private const string DotNetBootstrap = "/var/runtime/dotnet/Lamina.Runtime.Bootstrap.dll";

    public static readonly IReadOnlyList<string> Supported =
    [
        "nodejs18.x", "nodejs20.x", "nodejs22.x",
        "python3.11", "python3.12", "python3.13",
        "dotnet8", "dotnet10",
        "provided.al2", "provided.al2023",
    ];

    public static bool IsSupported(string runtime) => Supported.Contains(runtime, StringComparer.Ordinal);

    public static bool IsCustom(string runtime) => runtime.StartsWith("provided", StringComparison.Ordinal);

    /// <summary>The command that starts the runtime, or an error body when it cannot start (missing bootstrap).</summary>
    public static bool TryGetCommand(string runtime, int memorySizeMb, string codeDirectory, string? optDirectory, [NotNullWhen(true)] out string[]? command, [NotNullWhen(false)] out string? error)
    {
        error = null;
        if (runtime.StartsWith("nodejs", StringComparison.Ordinal))
        {
            // Lambda's Node.js bootstrap: V8's heap sized to the function's memory (a tenth for the young generation, in
            // two semi-spaces; the rest for the old one), so that V8 collects before the memory limit ends the process
            // (its own default, 2 GB and more, is past any small function's limit); global.gc(); 80 KB headers.
            var newSpace = memorySizeMb / 10;
            command =
            [
                Node, "--expose-gc", "--max-http-header-size", "81920",
                $"--max-semi-space-size={newSpace / 2}", $"--max-old-space-size={memorySizeMb - newSpace}",
                "/var/runtime/nodejs/index.mjs",
            ];
            return true;
        }
        if (runtime.StartsWith("python", StringComparison.Ordinal))
        {
            command = [Python, "-u", "/var/runtime/python/bootstrap.py"];
            return true;
        }
        if (IsDotNet(runtime))
        {
            // The function's runtimeconfig.json applies, as on AWS: its frameworks (ASP.NET Core), globalization, GC
            // and other settings; its framework version (8.0 for dotnet8) rolls forward to the machine's .NET. Without
            // one (a class library built without GenerateRuntimeConfigurationFiles) the bootstrap's own applies.
            command = FunctionRuntimeConfig(codeDirectory) is { } config
                ? [DotNet, "exec", "--runtimeconfig", "/var/task/" + config, "--roll-forward", "LatestMajor", DotNetBootstrap]
                : [DotNet, DotNetBootstrap];
            return true;
        }
        if (IsCustom(runtime))
        {
            // Lambda looks in the code first, then in the layers.
            if (IsExecutable(Path.Combine(codeDirectory, "bootstrap")))
            {
                command = ["/var/task/bootstrap"];
                return true;
            }
            if (optDirectory is not null && IsExecutable(Path.Combine(optDirectory, "bootstrap")))
            {
                command = ["/opt/bootstrap"];
                return true;
            }
            command = null;
            error = "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]";
            return false;
        }
        command = null;
        error = $"Runtime {runtime} is not supported";
        return false;
    }

    /// <summary>"20" for <c>nodejs20.x</c>; null for a runtime that is not Node.js.</summary>
    public static string? NodeMajorVersion(string runtime) =>
        runtime.StartsWith("nodejs", StringComparison.Ordinal) && runtime.IndexOf('.', StringComparison.Ordinal) is > 6 and var dot ? runtime[6..dot] : null;

    private static bool IsDotNet(string runtime) => runtime.StartsWith("dotnet", StringComparison.Ordinal);

    /// <summary>The one <c>*.runtimeconfig.json</c> at the root of the code, or null if there is none or several.</summary>
    internal static string? FunctionRuntimeConfig(string codeDirectory)
    {
        string? found = null;
        foreach (var path in Directory.EnumerateFiles(codeDirectory, "*.runtimeconfig.json"))
        {
            if (found is not null)
            {
                return null;
            }
            found = Path.GetFileName(path);
        }
        return found;
    }

    private static bool IsExecutable(string path) =>
        File.Exists(path) && (File.GetUnixFileMode(path) & (UnixFileMode.UserExecute | UnixFileMode.OtherExecute)) != 0;

    /// <summary>Search paths Lambda sets for the runtime (users may override them).</summary>
    public static IEnumerable<KeyValuePair<string, string>> DefaultVariables(string runtime)
    {
        yield return new("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin");
        yield return new("LANG", "en_US.UTF-8");
        yield return new("LD_LIBRARY_PATH", "/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib");
        if (runtime.StartsWith("nodejs", StringComparison.Ordinal))
        {
            var major = NodeMajorVersion(runtime);
            yield return new("NODE_PATH", $"/opt/nodejs/node{major}/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:/var/runtime:/var/task");
        }
        if (runtime.StartsWith("python", StringComparison.Ordinal))
        {
            var version = runtime["python".Length..];
            // Layers before the runtime's own boto3 (/var/runtime/python/site-packages), as on Lambda: a function or layer may bring its own.
            yield return new("PYTHONPATH", $"/opt/python/lib/python{version}/site-packages:/opt/python:/var/runtime:/var/runtime/python/site-packages");
        }
        if (IsDotNet(runtime))
        {
            // The sandbox has no HOME and only /tmp is writable: the host's and the SDK's first-run and cache paths
            // must not be needed (a single-file bundle would extract to $HOME/.net otherwise).
            yield return new("DOTNET_CLI_TELEMETRY_OPTOUT", "1");
            yield return new("DOTNET_NOLOGO", "1");
            yield return new("DOTNET_BUNDLE_EXTRACT_BASE_DIR", "/tmp");
            // Workstation GC: one heap and no per-core GC threads for an environment that serves one event at a time.
            yield return new("DOTNET_gcServer", "0");
        }
    }
}
