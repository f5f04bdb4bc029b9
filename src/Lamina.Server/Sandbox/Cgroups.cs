using System.Globalization;

namespace Lamina.Server.Sandbox;

/// <summary>
/// Creates one cgroup per environment under a <c>lamina</c> parent: memory limit = MemorySize (OOM detected from the
/// group's counters), a pids limit (fork bombs contained), CPU weight proportional to memory as Lambda does.
/// Supports cgroup v1 (these machines: one hierarchy per controller) and v2 (unified).
/// </summary>
internal sealed class Cgroups
{
    /// <summary>Lambda's per-environment process/thread limit.</summary>
    public const int PidsLimit = 1024;

    private const string Root = "/sys/fs/cgroup";

    // Lambda gives one full vCPU at 1,769 MB; weights scale from there.
    private const double MemoryPerVcpu = 1769;

    private static readonly string[] V1Controllers = ["memory", "pids", "cpu"];

    // Each server holds an exclusive lock here for its life, named as its parent group (/run is a tmpfs, emptied at boot
    // as the cgroups are): a server starting removes the groups of any whose lock is free, a server killed with a data
    // directory never used again. A server of an earlier build holds none and is left alone.
    private const string AliveDirectory = "/run/lamina/cgroups";

    private readonly string _instance;
    private readonly string _parent;
    private FileStream? _alive;

    /// <param name="instance">
    /// Names this server's parent group (<c>lamina/&lt;instance&gt;</c>), derived from its data directory: several
    /// servers on one machine never touch each other's live groups, and a restarted server finds its own leftovers.
    /// </param>
    public Cgroups(string instance) : this(instance, owner: true)
    {
    }

    private Cgroups(string instance, bool owner)
    {
        _instance = instance;
        _parent = Path.Combine("lamina", instance);
        IsV2 = File.Exists(Path.Combine(Root, "cgroup.controllers"));
        if (!owner)
        {
            return; // another (killed) server's, to be removed
        }
        _alive = HoldAlive(instance); // before its groups exist: a server removing a killed one's waits for nothing of ours
        if (IsV2)
        {
            Directory.CreateDirectory(Path.Combine(Root, _parent));
            // Children of a v2 group only get controllers enabled in each ancestor's subtree_control.
            TryWrite(Path.Combine(Root, "cgroup.subtree_control"), "+memory +pids +cpu");
            TryWrite(Path.Combine(Root, "lamina", "cgroup.subtree_control"), "+memory +pids +cpu");
            TryWrite(Path.Combine(Root, _parent, "cgroup.subtree_control"), "+memory +pids +cpu");
        }
        else
        {
            foreach (var controller in V1Controllers)
            {
                Directory.CreateDirectory(Path.Combine(Root, controller, _parent));
            }
        }
    }

    /// <summary>The instance name of the server using <paramref name="dataDirectory"/>.</summary>
    public static string InstanceFor(string dataDirectory) =>
        Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(Path.GetFullPath(dataDirectory))))[..16];

    public bool IsV2 { get; }

    /// <summary>Creates the group for one environment. Throws <see cref="IOException"/> or <see cref="UnauthorizedAccessException"/> when cgroups are unusable.</summary>
    public Cgroup Create(string id, int memoryMb)
    {
        var memoryBytes = (long)memoryMb * 1024 * 1024;
        var cpuFraction = Math.Max(memoryMb / MemoryPerVcpu, 0.01);
        if (IsV2)
        {
            var dir = Path.Combine(Root, _parent, id);
            Directory.CreateDirectory(dir);
            var group = new Cgroup(this, [dir]);
            Write(Path.Combine(dir, "memory.max"), memoryBytes.ToString(CultureInfo.InvariantCulture));
            TryWrite(Path.Combine(dir, "memory.swap.max"), "0");
            Write(Path.Combine(dir, "pids.max"), PidsLimit.ToString(CultureInfo.InvariantCulture));
            // cpu.weight 1..10000, default 100 = one "share".
            TryWrite(Path.Combine(dir, "cpu.weight"), Math.Clamp((int)(100 * cpuFraction), 1, 10000).ToString(CultureInfo.InvariantCulture));
            return group;
        }

        var memory = Path.Combine(Root, "memory", _parent, id);
        var pids = Path.Combine(Root, "pids", _parent, id);
        var cpu = Path.Combine(Root, "cpu", _parent, id);
        Directory.CreateDirectory(memory);
        Directory.CreateDirectory(pids);
        Directory.CreateDirectory(cpu);
        var v1 = new Cgroup(this, [memory, pids, cpu]);
        Write(Path.Combine(memory, "memory.limit_in_bytes"), memoryBytes.ToString(CultureInfo.InvariantCulture));
        // With swap accounting on, also cap memory+swap so the limit cannot be dodged by swapping.
        TryWrite(Path.Combine(memory, "memory.memsw.limit_in_bytes"), memoryBytes.ToString(CultureInfo.InvariantCulture));
        Write(Path.Combine(pids, "pids.max"), PidsLimit.ToString(CultureInfo.InvariantCulture));
        // cpu.shares default 1024 = one share; minimum 2.
        TryWrite(Path.Combine(cpu, "cpu.shares"), Math.Max(2, (int)(1024 * cpuFraction)).ToString(CultureInfo.InvariantCulture));
        return v1;
    }

    /// <summary>Removes this instance's groups left behind by a previous run that was killed (their processes died with it).</summary>
    public async Task RemoveLeftoversAsync()
    {
        foreach (var parent in ParentDirectories())
        {
            if (!Directory.Exists(parent))
            {
                continue;
            }
            foreach (var dir in Directory.GetDirectories(parent))
            {
                await new Cgroup(this, [dir]).DestroyAsync();
            }
        }
    }

    /// <summary>This instance's parent group: one directory on v2, one per controller on v1.</summary>
    private string[] ParentDirectories() => IsV2 ? [Path.Combine(Root, _parent)] : [.. V1Controllers.Select(c => Path.Combine(Root, c, _parent))];

    /// <summary>Removes this instance's (empty) parent groups at shutdown, and its lock once they are gone.</summary>
    public void RemoveInstance()
    {
        var removedAll = true;
        foreach (var parent in ParentDirectories())
        {
            try
            {
                if (Directory.Exists(parent))
                {
                    Directory.Delete(parent);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                removedAll = false; // still in use (a group could not be removed): the next start cleans up
            }
        }
        if (removedAll && _alive is not null)
        {
            TryDelete(_alive.Name);
            _alive.Dispose();
            _alive = null;
        }
    }

    /// <summary>
    /// Removes the groups of the servers that were killed (their processes died with them): every other instance
    /// whose lock no server holds. Its lock is held meanwhile, so a server starting on that data directory waits.
    /// </summary>
    public async Task RemoveDeadInstancesAsync()
    {
        var lamina = IsV2 ? Path.Combine(Root, "lamina") : Path.Combine(Root, V1Controllers[0], "lamina");
        string[] instances;
        try
        {
            instances = Directory.GetDirectories(lamina);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return;
        }
        foreach (var dir in instances)
        {
            var instance = Path.GetFileName(dir);
            var path = Path.Combine(AliveDirectory, instance + ".lock");
            if (instance == _instance || !File.Exists(path))
            {
                continue;
            }
            FileStream held;
            try
            {
                held = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue; // its server is running (or it is gone already)
            }
            using (held)
            {
                try
                {
                    var dead = new Cgroups(instance, owner: false);
                    await dead.RemoveLeftoversAsync();
                    dead.RemoveInstance();
                    TryDelete(path); // before the lock is let go: a server starting on it then makes a lock of its own
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    // Gone meanwhile, or not removable now: this server starts all the same, and the next start tries again.
                }
            }
        }
    }

    private static FileStream? HoldAlive(string instance)
    {
        try
        {
            Directory.CreateDirectory(AliveDirectory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        var path = Path.Combine(AliveDirectory, instance + ".lock");
        for (var attempt = 0; attempt < 500; attempt++)
        {
            try
            {
                // FileShare.None is an exclusive flock on Linux, let go by the kernel when the process dies.
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException)
            {
                // Held: another server is removing this data directory's groups of a killed run (milliseconds).
                Thread.Sleep(10);
            }
            catch (UnauthorizedAccessException)
            {
                return null;
            }
        }
        return null;
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    internal static void Write(string path, string value) => File.WriteAllText(path, value);

    internal static bool TryWrite(string path, string value)
    {
        try
        {
            File.WriteAllText(path, value);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}

/// <summary>One environment's cgroup (one directory per controller on v1, one on v2).</summary>
internal sealed class Cgroup
{
    private readonly Cgroups _owner;
    private readonly string[] _dirs;

    internal Cgroup(Cgroups owner, string[] dirs)
    {
        _owner = owner;
        _dirs = dirs;
    }

    private string MemoryDir => _dirs[0];

    /// <summary>The <c>cgroup.procs</c> file of each of the group's directories (a process joins by writing its pid).</summary>
    public IEnumerable<string> ProcsFiles => _dirs.Select(static dir => Path.Combine(dir, "cgroup.procs"));

    public void AddProcess(int pid)
    {
        var text = pid.ToString(CultureInfo.InvariantCulture);
        foreach (var dir in _dirs)
        {
            Cgroups.Write(Path.Combine(dir, "cgroup.procs"), text);
        }
    }

    private Microsoft.Win32.SafeHandles.SafeFileHandle? _peak;

    /// <summary>
    /// Peak memory of the environment in bytes (0 if unknown). Read on every invocation (REPORT's Max Memory Used), so
    /// the file stays open and each read is one pread at offset 0, which makes the kernel render the value afresh.
    /// </summary>
    public long MemoryPeakBytes()
    {
        try
        {
            _peak ??= File.OpenHandle(Path.Combine(MemoryDir, _owner.IsV2 ? "memory.peak" : "memory.max_usage_in_bytes"), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            Span<byte> buffer = stackalloc byte[32];
            var read = RandomAccess.Read(_peak, buffer, 0);
            return System.Buffers.Text.Utf8Parser.TryParse(buffer[..read], out long bytes, out _) ? bytes : 0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ObjectDisposedException)
        {
            return 0;
        }
    }

    /// <summary>How many times the kernel's OOM killer fired inside this group.</summary>
    public long OomKills()
    {
        var file = Path.Combine(MemoryDir, _owner.IsV2 ? "memory.events" : "memory.oom_control");
        try
        {
            foreach (var line in File.ReadLines(file))
            {
                if (line.StartsWith("oom_kill ", StringComparison.Ordinal))
                {
                    return long.Parse(line.AsSpan(9), CultureInfo.InvariantCulture);
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
        }
        return 0;
    }

    /// <summary>Process ids in the group.</summary>
    public List<int> Processes()
    {
        var pids = new List<int>();
        try
        {
            foreach (var line in File.ReadLines(Path.Combine(MemoryDir, "cgroup.procs")))
            {
                if (int.TryParse(line, NumberStyles.None, CultureInfo.InvariantCulture, out var pid))
                {
                    pids.Add(pid);
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return pids;
    }

    public void Signal(int signal)
    {
        foreach (var pid in Processes())
        {
            Native.kill(pid, signal);
        }
    }

    /// <summary>
    /// Kills everything left in the group and removes it. Safe to call more than once. A group can be removed only
    /// once the kernel has reaped its last process, so this retries briefly (bounded) after the kill.
    /// </summary>
    public async Task DestroyAsync()
    {
        Interlocked.Exchange(ref _peak, null)?.Dispose();
        if (_owner.IsV2)
        {
            Cgroups.TryWrite(Path.Combine(MemoryDir, "cgroup.kill"), "1");
        }
        for (var attempt = 0; attempt < 200; attempt++)
        {
            Signal(Native.SIGKILL);
            if (TryRemove())
            {
                return;
            }
            await Task.Delay(TimeSpan.FromMilliseconds(10));
        }
    }

    private bool TryRemove()
    {
        var removedAll = true;
        foreach (var dir in _dirs)
        {
            try
            {
                if (Directory.Exists(dir))
                {
                    Directory.Delete(dir);
                }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                removedAll = false;
            }
        }
        return removedAll;
    }

    private static long ReadLong(string path)
    {
        try
        {
            return long.Parse(File.ReadAllText(path).AsSpan().Trim(), CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return 0;
        }
    }
}
