using System.Diagnostics.CodeAnalysis;

namespace Lamina.Server.Invoke;

/// <summary>
/// The runtimes Lamina runs and how each starts inside the sandbox. Managed runtimes are Lamina's own bootstraps
/// under <c>/var/runtime</c> on the machine's interpreters; <c>provided.*</c> runs the function's own
/// <c>bootstrap</c>.
/// </summary>
internal static class RuntimeCatalog
{
    // Debian's interpreter, not a pyenv shim: the shim costs ~70 ms per start (DESIGN §7).
    private const string Python = "/usr/bin/python3";
    private const string Node = "/usr/bin/node";

    public static readonly IReadOnlyList<string> Supported =
    [
        "nodejs18.x", "nodejs20.x", "nodejs22.x",
        "python3.11", "python3.12", "python3.13",
        "provided.al2", "provided.al2023",
    ];

    public static bool IsSupported(string runtime) => Supported.Contains(runtime, StringComparer.Ordinal);

    public static bool IsCustom(string runtime) => runtime.StartsWith("provided", StringComparison.Ordinal);

    /// <summary>The command that starts the runtime, or an error body when it cannot start (missing bootstrap).</summary>
    public static bool TryGetCommand(string runtime, string codeDirectory, string? optDirectory, [NotNullWhen(true)] out string[]? command, [NotNullWhen(false)] out string? error)
    {
        error = null;
        if (runtime.StartsWith("nodejs", StringComparison.Ordinal))
        {
            command = [Node, "/var/runtime/nodejs/index.mjs"];
            return true;
        }
        if (runtime.StartsWith("python", StringComparison.Ordinal))
        {
            command = [Python, "-u", "/var/runtime/python/bootstrap.py"];
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
            var major = runtime["nodejs".Length..runtime.IndexOf('.', StringComparison.Ordinal)];
            yield return new("NODE_PATH", $"/opt/nodejs/node{major}/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:/var/runtime:/var/task");
        }
        if (runtime.StartsWith("python", StringComparison.Ordinal))
        {
            var version = runtime["python".Length..];
            yield return new("PYTHONPATH", $"/var/runtime:/opt/python/lib/python{version}/site-packages:/opt/python");
        }
    }
}
