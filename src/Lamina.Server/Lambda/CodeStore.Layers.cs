using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Lamina.Server.Sandbox;

namespace Lamina.Server.Lambda;

/// <summary>
/// Layers in the code store (issue #4). A layer version's zip is stored and extracted like function code, once per
/// content hash. A function's <c>/opt</c> is its layers merged in order, later layers winning: one layer is mounted
/// as its extracted tree directly; several are merged once per distinct ordered list into
/// <c>&lt;DataDirectory&gt;/opt/&lt;key&gt;/</c> from hard links to the extracted files (same file system, so no
/// bytes are copied), built in <c>opt/tmp-&lt;guid&gt;</c> and renamed into place like extracted code. Trees are
/// read-only in every sandbox and shared by all environments and functions that use the same list.
/// </summary>
/// <remarks>
/// Trees are built when a configuration is created or updated (<see cref="EnsureLayersAsync"/>), off the invoke path;
/// <see cref="GetOptDirectory"/> at a cold start only looks the path up. A layer's code stays while a configuration
/// uses it, so a deleted layer version keeps working for its users; merged trees no configuration uses any more go
/// with unused code (<see cref="Collect"/>).
/// </remarks>
internal sealed partial class CodeStore
{
    private readonly ConcurrentDictionary<string, string> _mergedTrees = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long> _unzippedSizes = new(StringComparer.Ordinal);

    /// <summary><c>&lt;DataDirectory&gt;/opt</c>: merged layer trees.</summary>
    public string OptRoot => Path.Combine(Path.GetDirectoryName(Root)!, "opt");

    /// <summary>Creates the merged-tree root and removes what an interrupted merge left (<c>tmp-*</c>). Returns how many.</summary>
    public int InitializeOpt()
    {
        Directory.CreateDirectory(OptRoot);
        var removed = 0;
        foreach (var directory in new DirectoryInfo(OptRoot).EnumerateDirectories("tmp-*").Where(IsLeftover))
        {
            directory.Delete(recursive: true);
            removed++;
        }
        return removed;
    }

    /// <summary>
    /// The directory mounted at <c>/opt</c> for <paramref name="config"/>, or null when it has no layers. Normally a
    /// lookup (the tree was built when the configuration was written); builds it if a restart or a hand-cleaned
    /// directory lost it. Throws <see cref="SandboxException"/> when a layer's files are gone.
    /// </summary>
    public string? GetOptDirectory(FunctionConfig config)
    {
        var layers = config.Layers;
        if (layers.Count == 0)
        {
            return null;
        }
        if (layers.Count == 1)
        {
            return Path.Combine(Root, layers[0].CodeHashHex);
        }
        var key = MergeKey(layers);
        if (_mergedTrees.TryGetValue(key, out var path))
        {
            return path;
        }
        if (TryMerge(layers, key, out path, out var error))
        {
            return path;
        }
        throw new SandboxException($"The layers of {config.Name} (version {config.Version}) cannot be mounted at /opt: {error}");
    }

    /// <summary>
    /// Makes sure every layer's tree is extracted and, for several layers, their merged tree exists. Returns an
    /// error message when a layer's zip is missing from the store, else null.
    /// </summary>
    public async Task<string?> EnsureLayersAsync(IReadOnlyList<FunctionLayer> layers, CancellationToken cancellationToken)
    {
        foreach (var layer in layers)
        {
            if (!await EnsureExtractedAsync(layer.CodeHashHex, cancellationToken))
            {
                return $"the code of layer {layer.Arn} ({layer.CodeHashHex}) is missing from {Root}";
            }
        }
        if (layers.Count < 2)
        {
            return null;
        }
        return TryMerge(layers, MergeKey(layers), out _, out var error) ? null : error;
    }

    /// <summary>
    /// Bytes of the extracted tree of <paramref name="hashHex"/> (what counts against Lambda's 250 MB unzipped
    /// limit for code and layers together); 0 when the tree is missing. Measured once per hash.
    /// </summary>
    public long GetUnzippedSize(string hashHex)
    {
        if (_unzippedSizes.TryGetValue(hashHex, out var size))
        {
            return size;
        }
        var directory = new DirectoryInfo(Path.Combine(Root, hashHex));
        if (!IsHashHex(hashHex) || !directory.Exists)
        {
            return 0;
        }
        size = directory.EnumerateFiles("*", SearchOption.AllDirectories).Sum(static f => f.Length);
        _unzippedSizes[hashHex] = size;
        return size;
    }

    /// <summary>The name of the merged tree of an ordered layer list: SHA-256 of the layers' code hashes in order.</summary>
    internal static string MergeKey(IReadOnlyList<FunctionLayer> layers)
    {
        var text = string.Join('\n', layers.Select(static l => l.CodeHashHex));
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.ASCII.GetBytes(text)));
    }

    private bool TryMerge(IReadOnlyList<FunctionLayer> layers, string key, out string path, out string? error)
    {
        path = Path.Combine(OptRoot, key);
        error = null;
        if (Directory.Exists(path))
        {
            _mergedTrees[key] = path;
            return true;
        }
        foreach (var layer in layers)
        {
            if (!Directory.Exists(Path.Combine(Root, layer.CodeHashHex)))
            {
                error = $"the extracted tree of layer {layer.Arn} ({layer.CodeHashHex}) is missing from {Root}";
                return false;
            }
        }

        Directory.CreateDirectory(OptRoot);
        var temp = Path.Combine(OptRoot, "tmp-" + Guid.NewGuid().ToString("N"));
        try
        {
            Directory.CreateDirectory(temp);
            File.SetUnixFileMode(temp, DirectoryMode);
            foreach (var layer in layers)
            {
                MergeInto(Path.Combine(Root, layer.CodeHashHex), temp);
            }
            // Durable before the final name, so the name always means a complete tree (as in extraction).
            SyncFileSystem(OptRoot);
            try
            {
                Directory.Move(temp, path);
            }
            catch (IOException) when (Directory.Exists(path))
            {
                // A concurrent merge of the same list won the rename; its tree is identical.
            }
            SyncFileSystem(OptRoot);
            _mergedTrees[key] = path;
            return true;
        }
        finally
        {
            if (Directory.Exists(temp))
            {
                Directory.Delete(temp, recursive: true);
            }
        }
    }

    /// <summary>
    /// Lays <paramref name="source"/> over <paramref name="target"/>: what the later layer has replaces what the
    /// earlier ones put at the same path (a file replaces a file or a whole directory, a directory replaces a file
    /// and merges with a directory), as extracting the layers into <c>/opt</c> one after the other would.
    /// </summary>
    internal static void MergeInto(string source, string target)
    {
        foreach (var entry in new DirectoryInfo(source).EnumerateFileSystemInfos())
        {
            var destination = Path.Combine(target, entry.Name);
            if (entry is DirectoryInfo directory)
            {
                if (File.Exists(destination))
                {
                    File.Delete(destination);
                }
                if (!Directory.Exists(destination))
                {
                    Directory.CreateDirectory(destination);
                    File.SetUnixFileMode(destination, DirectoryMode);
                }
                MergeInto(directory.FullName, destination);
                continue;
            }
            if (Directory.Exists(destination))
            {
                Directory.Delete(destination, recursive: true);
            }
            else if (File.Exists(destination))
            {
                File.Delete(destination);
            }
            if (Link(entry.FullName, destination) != 0)
            {
                // Another file system (EXDEV) or too many links (EMLINK): a copy is the same to the sandbox.
                File.Copy(entry.FullName, destination);
                File.SetUnixFileMode(destination, File.GetUnixFileMode(entry.FullName));
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "link", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Link(string existing, string created);

    /// <summary>
    /// Deletes the code (zip and tree) and merged layer trees not in <paramref name="referencedCode"/> and
    /// <paramref name="referencedMerges"/> once they have been unreferenced for <paramref name="retention"/>: seen so
    /// by this collector for that long (<paramref name="unreferencedSince"/>, kept between calls) and, for code, stored
    /// or reused no more recently (the zip's mtime: a package is stored before the configuration that uses it is
    /// written). Environments of a configuration just replaced may still run from its tree for up to a function's
    /// timeout, so the retention is longer than that. Returns how many entries went.
    /// </summary>
    public int Collect(IReadOnlySet<string> referencedCode, IReadOnlySet<string> referencedMerges, Dictionary<string, DateTime> unreferencedSince,
        TimeSpan retention)
    {
        var now = _timeProvider.GetUtcNow().UtcDateTime;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var removed = 0;
        foreach (var entry in new DirectoryInfo(Root).EnumerateFileSystemInfos())
        {
            var hash = entry is FileInfo && entry.Name.EndsWith(".zip", StringComparison.Ordinal) ? entry.Name[..^4] : entry.Name;
            if (!IsHashHex(hash) || referencedCode.Contains(hash) || !seen.Add("code/" + hash) || !DueForCollection("code/" + hash))
            {
                continue;
            }
            var zip = Path.Combine(Root, hash + ".zip");
            lock (_collectLock)
            {
                if (File.Exists(zip) && now - File.GetLastWriteTimeUtc(zip) < retention)
                {
                    continue; // stored or reused since: a configuration may be about to use it
                }
                DeleteTree(Path.Combine(Root, hash));
                File.Delete(zip);
                _unzippedSizes.TryRemove(hash, out _);
            }
            unreferencedSince.Remove("code/" + hash);
            removed++;
        }
        if (Directory.Exists(OptRoot))
        {
            foreach (var directory in new DirectoryInfo(OptRoot).EnumerateDirectories())
            {
                var key = directory.Name;
                if (!IsHashHex(key) || referencedMerges.Contains(key) || !seen.Add("opt/" + key) || !DueForCollection("opt/" + key))
                {
                    continue;
                }
                _mergedTrees.TryRemove(key, out _);
                DeleteTree(directory.FullName);
                unreferencedSince.Remove("opt/" + key);
                removed++;
            }
        }
        // What is referenced again, or gone otherwise, starts afresh if it is ever unreferenced.
        foreach (var name in unreferencedSince.Keys.Where(name => !seen.Contains(name)).ToList())
        {
            unreferencedSince.Remove(name);
        }
        return removed;

        bool DueForCollection(string name)
        {
            if (!unreferencedSince.TryGetValue(name, out var since))
            {
                unreferencedSince[name] = since = now;
            }
            return now - since >= retention;
        }

        static void DeleteTree(string path)
        {
            if (Directory.Exists(path))
            {
                Directory.Delete(path, recursive: true);
            }
        }
    }
}
