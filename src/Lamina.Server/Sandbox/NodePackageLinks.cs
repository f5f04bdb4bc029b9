using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;

namespace Lamina.Server.Sandbox;

/// <summary>
/// What ES modules find at <c>/var/node_modules</c> in a Node.js sandbox: one symbolic link per package of the
/// Node.js search path — the layers' <c>/opt/nodejs/nodeXX/node_modules</c> and <c>/opt/nodejs/node_modules</c>,
/// then the runtime's own AWS SDK in <c>/var/runtime/node_modules</c>, the first folder that has a package winning.
/// </summary>
/// <remarks>
/// CommonJS <c>require</c> searches <c>NODE_PATH</c>, but ES modules' <c>import 'pkg'</c> only looks in the
/// <c>node_modules</c> folders above the importing file, so a handler in <c>/var/task</c> finds its own packages,
/// then <c>/var/node_modules</c>, then nothing. Lambda's Node.js runtimes let ES modules import packages from layers
/// and the included SDK; these links give the same result with nothing running at start (resolution hooks would
/// cost a loader thread, ~50-100 ms per cold start). Links are per package, not a merge of the folders' files, so two
/// versions of one package are never mixed; Node follows a link to the package's real path, from which its own
/// dependencies resolve. The folders are derived data, kept under <c>&lt;data&gt;/run/node-packages</c>, made again
/// after a restart, and only read in the sandbox.
/// </remarks>
internal sealed class NodePackageLinks
{
    private readonly string _root;
    private readonly ConcurrentDictionary<string, string?> _made = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    public NodePackageLinks(string runDirectory)
    {
        _root = Path.Combine(runDirectory, "node-packages");
        if (Directory.Exists(_root))
        {
            Directory.Delete(_root, recursive: true);
        }
        Directory.CreateDirectory(_root);
    }

    /// <summary>
    /// The folder of links for Node.js <paramref name="major"/> with the layers in <paramref name="optDirectory"/>
    /// (null: none) and Lamina's runtimes in <paramref name="runtimesDirectory"/>; null when no folder has a package.
    /// </summary>
    public string? For(string major, string? optDirectory, string runtimesDirectory)
    {
        var key = $"{major}\n{optDirectory}\n{runtimesDirectory}";
        if (_made.TryGetValue(key, out var made))
        {
            return made;
        }
        lock (_lock)
        {
            if (!_made.TryGetValue(key, out made))
            {
                made = Make(key, SearchPath(major, optDirectory, runtimesDirectory));
                _made[key] = made;
            }
            return made;
        }
    }

    /// <summary>The folders in Lambda's NODE_PATH order that can hold packages: (host path, path in the sandbox).</summary>
    internal static IEnumerable<(string Host, string Sandbox)> SearchPath(string major, string? optDirectory, string runtimesDirectory)
    {
        if (optDirectory is not null)
        {
            yield return (Path.Combine(optDirectory, "nodejs", $"node{major}", "node_modules"), $"/opt/nodejs/node{major}/node_modules");
            yield return (Path.Combine(optDirectory, "nodejs", "node_modules"), "/opt/nodejs/node_modules");
        }
        yield return (Path.Combine(runtimesDirectory, "node_modules"), "/var/runtime/node_modules");
    }

    private string? Make(string key, IEnumerable<(string Host, string Sandbox)> searchPath)
    {
        var final = Path.Combine(_root, Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)))[..32]);
        var work = final + ".tmp";
        if (Directory.Exists(work))
        {
            Directory.Delete(work, recursive: true);
        }
        Directory.CreateDirectory(work);
        var linked = 0;
        foreach (var (host, sandbox) in searchPath)
        {
            if (!Directory.Exists(host))
            {
                continue;
            }
            foreach (var package in Directory.EnumerateDirectories(host))
            {
                var name = Path.GetFileName(package);
                if (name.StartsWith('.'))
                {
                    continue; // .bin, .cache: not packages
                }
                if (!name.StartsWith('@'))
                {
                    linked += Link(work, name, $"{sandbox}/{name}");
                    continue;
                }
                // A scope: @scope/name, each package of it linked on its own.
                foreach (var scoped in Directory.EnumerateDirectories(package))
                {
                    var scopedName = Path.GetFileName(scoped);
                    Directory.CreateDirectory(Path.Combine(work, name));
                    linked += Link(work, $"{name}/{scopedName}", $"{sandbox}/{name}/{scopedName}");
                }
            }
        }
        if (linked == 0)
        {
            Directory.Delete(work, recursive: true);
            return null;
        }
        if (Directory.Exists(final))
        {
            Directory.Delete(final, recursive: true);
        }
        Directory.Move(work, final);
        return final;
    }

    // An earlier folder of the search path already has the package: it wins, as with NODE_PATH.
    private static int Link(string folder, string name, string target)
    {
        var link = Path.Combine(folder, name);
        if (new FileInfo(link).LinkTarget is not null) // the link's target is a path in the sandbox: never there on the host
        {
            return 0;
        }
        File.CreateSymbolicLink(link, target);
        return 1;
    }
}
