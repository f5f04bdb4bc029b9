using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.IO.Pipes;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace Lamina.Server.Sandbox;

/// <summary>
/// Starts bubblewrap sandboxes (DESIGN §3). Each one gets new user, PID, mount, IPC, UTS, cgroup and network
/// namespaces, its own cgroup, a read-only view of the system, the code and the runtimes, a private size-limited
/// <c>/tmp</c>, and exactly one network endpoint: its own Runtime API, a socket Lamina creates inside the sandbox's
/// network namespace before the runtime starts. The sandbox has nothing else to talk to.
/// </summary>
/// <remarks>
/// Nothing in the sandbox names a host path under the data directory: bwrap reads its arguments from a pipe
/// (<c>--args</c>; <c>/proc/1/cmdline</c> is bwrap's own), the <c>/etc</c> files Lamina writes are copied into the
/// sandbox's root (<c>--file</c>), and the code, layers and runtimes are overlay views (<see cref="OverlayView"/>)
/// rather than bind mounts, whose host paths <c>/proc/self/mountinfo</c> would show.
/// </remarks>
internal sealed class SandboxLauncher : IDisposable
{
    /// <summary>Where runtimes find the Runtime API inside the sandbox, as on Lambda.</summary>
    public const int RuntimeApiPort = 9001;

    public const string BwrapPath = "/usr/bin/bwrap";

    public const string PastaPath = "/usr/bin/pasta";

    public const string SetprivPath = "/usr/bin/setpriv";

    private const string ShellPath = "/bin/sh";

    // $1..: cgroup.procs files to join, then "--", then the command to exec.
    private const string JoinCgroupThenExec = """for f; do [ "$f" = -- ] && break; echo $$ > "$f" || exit 125; shift; done; shift; exec "$@" """;

    /// <summary>The function's user inside the sandbox (Lambda's sbx_user1051) and the host uid it maps to.</summary>
    public const int SandboxUid = 993;
    public const int SandboxGid = 990;

    /// <summary>Unprivileged host ids for every sandbox's user: no host account, owns no host file.</summary>
    public const int HostUid = 100993;
    public const int HostGid = 100990;

    /// <summary>The resolver address inside sandboxes with outbound network; pasta forwards it to the host's resolver.</summary>
    public const string SandboxResolver = "169.254.0.53";

    /// <summary>Lambda's per-environment file descriptor limit.</summary>
    public const int FileDescriptorLimit = 1024;

    private static readonly byte[]? Seccomp = SeccompFilter.IsSupported ? SeccompFilter.Build() : null;

    // The sandbox's own /etc files (no host secrets): its user, loopback names, the resolver pasta forwards.
    private static readonly byte[] Passwd = Encoding.ASCII.GetBytes("root:x:0:0:root:/root:/usr/sbin/nologin\nsbx_user1051:x:993:990::/tmp:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
    private static readonly byte[] Group = Encoding.ASCII.GetBytes("root:x:0:\nsbx_user1051:x:990:\nnogroup:x:65534:\n");
    // sandbox.localdomain is the environment itself, as on Lambda (Telemetry API destinations use it).
    private static readonly byte[] Hosts = Encoding.ASCII.GetBytes("127.0.0.1\tlocalhost sandbox.localdomain\n::1\tlocalhost\n");
    private static readonly byte[] ResolvConf = Encoding.ASCII.GetBytes($"nameserver {SandboxResolver}\n");
    private static readonly byte[] ResolvConfNone = Encoding.ASCII.GetBytes("# this function has no outbound network\n");

    private readonly Cgroups _cgroups;
    private readonly OutputReader _output = new();
    private readonly string _runDirectory;
    // Where each sandbox's views are attached, in its own mount namespace only (on the host they stay empty).
    private readonly string _taskMount;
    private readonly string _optMount;
    private readonly string _runtimeMount;
    private readonly string _nodeModulesMount;
    private readonly NodePackageLinks _nodePackages;
    // An empty directory (fd): the second lower layer every view needs.
    private readonly int _emptyDirectory;

    public SandboxLauncher(Cgroups cgroups, string dataDirectory)
    {
        _cgroups = cgroups;
        _runDirectory = Path.Combine(dataDirectory, "run");
        var mounts = Path.Combine(_runDirectory, "mounts");
        _taskMount = Path.Combine(mounts, "task");
        _optMount = Path.Combine(mounts, "opt");
        _runtimeMount = Path.Combine(mounts, "runtime");
        _nodeModulesMount = Path.Combine(mounts, "node_modules");
        foreach (var dir in new[] { _taskMount, _optMount, _runtimeMount, _nodeModulesMount })
        {
            Directory.CreateDirectory(dir);
        }
        // Whatever this directory held would show in every sandbox's /var/task: start it empty.
        var empty = Path.Combine(mounts, "empty");
        if (Directory.Exists(empty))
        {
            Directory.Delete(empty, recursive: true);
        }
        Directory.CreateDirectory(empty);
        _emptyDirectory = Native.open(empty, Native.O_RDONLY | Native.O_CLOEXEC);
        if (_emptyDirectory < 0)
        {
            throw new IOException($"cannot open {empty}: {Native.LastError()}");
        }
        _nodePackages = new NodePackageLinks(_runDirectory);
        // Earlier versions bind-mounted the sandboxes' /etc files from here; they are copied in now.
        var oldEtc = Path.Combine(dataDirectory, "sandbox-etc");
        if (Directory.Exists(oldEtc))
        {
            Directory.Delete(oldEtc, recursive: true);
        }
    }

    /// <summary>Why sandboxes cannot be made on this machine, or null if they can.</summary>
    public static string? CheckPrerequisites()
    {
        if (!File.Exists(BwrapPath))
        {
            return $"bubblewrap is not installed ({BwrapPath} missing): install it with 'apt-get install bubblewrap'. Lamina never runs function code outside a sandbox.";
        }
        if (!Directory.Exists("/sys/fs/cgroup/memory") && !File.Exists("/sys/fs/cgroup/cgroup.controllers"))
        {
            return "no usable cgroup hierarchy at /sys/fs/cgroup (need cgroup v1 memory/pids/cpu or cgroup v2)";
        }
        return OverlayView.CheckSupported();
    }

    /// <summary>Starts a sandbox. The runtime is running and can reach its Runtime API when this returns.</summary>
    /// <param name="spec">What the sandbox is made of.</param>
    /// <param name="onOutputLine">Each line the runtime writes (stdout and stderr).</param>
    /// <param name="onExtensionLine">
    /// Each line external extensions write, on a pipe of their own (null: no extensions; they would share the
    /// runtime's output). Telemetry tells the two apart, as Lambda does.
    /// </param>
    public async Task<Sandbox> LaunchAsync(SandboxSpec spec, Action<string> onOutputLine, Action<string>? onExtensionLine = null)
    {
        var cgroup = _cgroups.Create(spec.Id, spec.MemoryMb);
        Socket? listener = null;
        Process? process = null;
        var info = new[] { -1, -1 };
        var block = new[] { -1, -1 };
        var extensionOutput = new[] { -1, -1 };
        // Read ends of what bwrap reads whole at its start (its arguments, the /etc files, the seccomp program).
        var data = new List<int>();
        // Detached overlay views and where they are attached in the sandbox's mount namespace.
        var views = new List<(int Mount, string Target)>();
        try
        {
            if (onExtensionLine is not null && Native.pipe2(extensionOutput, Native.O_CLOEXEC) != 0)
            {
                throw new SandboxException($"pipe2 failed: {Native.LastError()}");
            }
            if (Native.pipe2(info, Native.O_CLOEXEC) != 0 || Native.pipe2(block, Native.O_CLOEXEC) != 0)
            {
                throw new SandboxException($"pipe2 failed: {Native.LastError()}");
            }
            views.Add((OverlayView.Create(spec.CodeDirectory, _emptyDirectory), _taskMount));
            views.Add((OverlayView.Create(spec.RuntimesDirectory, _emptyDirectory), _runtimeMount));
            if (spec.OptDirectory is not null)
            {
                views.Add((OverlayView.Create(spec.OptDirectory, _emptyDirectory), _optMount));
            }
            var nodePackages = NodePackagesOf(spec);
            if (nodePackages is not null)
            {
                views.Add((OverlayView.Create(nodePackages, _emptyDirectory), _nodeModulesMount));
            }
            var seccompFd = Seccomp is null ? -1 : DataPipe(Seccomp, "the seccomp filter", data);
            var etcFiles = new[]
            {
                (DataPipe(Passwd, "/etc/passwd", data), "/etc/passwd"),
                (DataPipe(Group, "/etc/group", data), "/etc/group"),
                (DataPipe(Hosts, "/etc/hosts", data), "/etc/hosts"),
                (DataPipe(spec.OutboundNetwork ? ResolvConf : ResolvConfNone, "/etc/resolv.conf", data), "/etc/resolv.conf"),
            };
            var environment = new Dictionary<string, string>(spec.Environment);
            if (extensionOutput[1] >= 0)
            {
                // The init script sends the extensions' output here (and closes it before the runtime starts).
                environment["LAMINA_EXTENSION_LOG_FD"] = extensionOutput[1].ToString(CultureInfo.InvariantCulture);
            }
            var arguments = BuildArguments(spec, environment, infoFd: info[1], blockFd: block[0], usernsBlockFd: block[0], seccompFd, etcFiles);
            var argumentsFd = DataPipe(Encoding.UTF8.GetBytes(string.Join('\0', arguments) + '\0'), "bwrap's arguments", data);
            var startInfo = BuildStartInfo(spec, argumentsFd, cgroup);
            process = await SpawnThread.RunAsync(() =>
            {
                // Only bwrap inherits these ends: they lose close-on-exec just for this spawn (one at a time there).
                var inherited = data.Append(info[1]).Append(block[0]).Append(extensionOutput[1]).Where(fd => fd >= 0).ToArray();
                foreach (var fd in inherited)
                {
                    Native.fcntl(fd, Native.F_SETFD, 0);
                }
                try
                {
                    return Process.Start(startInfo) ?? throw new SandboxException("bwrap did not start");
                }
                finally
                {
                    foreach (var fd in inherited)
                    {
                        Native.close(fd);
                    }
                    data.Clear();
                    info[1] = block[0] = extensionOutput[1] = -1;
                }
            });

            var stdout = _output.Add(HandleOf(process.StandardOutput.BaseStream), onOutputLine);
            var stderr = _output.Add(HandleOf(process.StandardError.BaseStream), onOutputLine);
            if (extensionOutput[0] >= 0)
            {
                _output.Add(new Microsoft.Win32.SafeHandles.SafeFileHandle(extensionOutput[0], ownsHandle: true), onExtensionLine!);
                extensionOutput[0] = -1;
            }

            // bwrap reports the sandbox's first process once the namespaces exist, then waits on the block pipe.
            var childPid = ReadChildPid(info[0]);
            if (childPid <= 0)
            {
                await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(5));
                throw new SandboxException($"bwrap failed to create the sandbox (exit {(process.HasExited ? process.ExitCode : -1)}); see the server log for its message");
            }

            // The sandbox's user namespace maps its root to the host's, only for bwrap's own setup (mounts), and
            // the function's uid to an unprivileged host uid; the runtime drops to the latter before it starts.
            await File.WriteAllTextAsync($"/proc/{childPid}/uid_map", $"0 0 1\n{SandboxUid} {HostUid} 1\n");
            await File.WriteAllTextAsync($"/proc/{childPid}/gid_map", $"0 0 1\n{SandboxGid} {HostGid} 1\n");
            // bwrap's child waits for the user namespace before it touches any mount: its mount namespace is still
            // the host's copy, where the views go on the directories bwrap binds.
            OverlayView.AttachInNamespace(childPid, views);
            // bwrap reads one byte of this pipe in its outer process, then one in the sandbox (the block fd), which
            // closes it: one pipe for both leaves no pipe end behind in the sandbox.
            Release(block[1]);

            // bwrap and the sandbox are in the environment's cgroup already: BuildStartInfo's wrapper put bwrap there.
            // Lambda's 1,024 file descriptors; inherited by everything the sandbox starts.
            var nofile = new Native.RLimit { Current = FileDescriptorLimit, Max = FileDescriptorLimit };
            if (Native.prlimit(childPid, Native.RLIMIT_NOFILE, nofile, 0) != 0)
            {
                throw new SandboxException($"cannot limit the sandbox's file descriptors: {Native.LastError()}");
            }
            listener = ListenInNamespace(childPid);
            if (spec.OutboundNetwork)
            {
                // bwrap brings the namespace's loopback up itself; pasta configures it too, and whichever comes
                // second fails on the address the other added. Let bwrap finish first.
                await WaitForLoopbackAsync(childPid);
                await ConnectNetworkAsync(spec.Id, childPid, cgroup);
                NetworkNamespace.ProhibitLinkLocal(childPid);
            }
            Release(block[1]);
            Native.close(block[1]);
            block[1] = -1;
            return new Sandbox(spec.Id, process, childPid, cgroup, listener, stdout, stderr);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or SocketException or Win32Exception or SandboxException or TimeoutException)
        {
            listener?.Dispose();
            if (process is not null)
            {
                try
                {
                    process.Kill(entireProcessTree: true);
                }
                catch (InvalidOperationException)
                {
                }
            }
            _ = cgroup.DestroyAsync();
            throw e as SandboxException ?? new SandboxException($"could not start the sandbox: {e.Message}", e);
        }
        finally
        {
            // A view's fd is only a handle once attached (closing it unmounts only a view that never was).
            foreach (var fd in info.Concat(block).Concat(extensionOutput).Concat(data).Concat(views.Select(view => view.Mount)))
            {
                if (fd >= 0)
                {
                    Native.close(fd);
                }
            }
        }
    }

    /// <summary>Waits (bounded) until the sandbox's loopback is up, i.e. bwrap has configured it.</summary>
    private static async Task WaitForLoopbackAsync(int childPid)
    {
        var started = Stopwatch.GetTimestamp();
        while (!NetworkNamespace.Run(childPid, IsLoopbackUp))
        {
            if (Stopwatch.GetElapsedTime(started) > TimeSpan.FromSeconds(5))
            {
                throw new SandboxException("the sandbox's loopback did not come up");
            }
            await Task.Delay(TimeSpan.FromMilliseconds(1));
        }
    }

    private static unsafe bool IsLoopbackUp()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        var request = default(Native.IfReqFlags);
        request.Name[0] = (byte)'l';
        request.Name[1] = (byte)'o';
        return Native.ioctl_ifreq((int)socket.Handle, Native.SIOCGIFFLAGS, ref request) == 0 && (request.Flags & Native.IFF_UP) != 0;
    }

    /// <summary>
    /// Gives the sandbox's network namespace outbound connectivity through pasta (a user-mode network stack, one
    /// process per sandbox, placed in the sandbox's cgroup so it dies with it). <c>--no-map-gw</c>: the sandbox can
    /// never reach the host's loopback services (the control plane among them). Costs ~80 ms of cold start.
    /// </summary>
    private async Task ConnectNetworkAsync(string id, int childPid, Cgroup cgroup)
    {
        if (!File.Exists(PastaPath))
        {
            throw new SandboxException($"outbound network needs pasta ({PastaPath}): install it with 'apt-get install passt', or turn the function's network off (LAMINA_NETWORK=none)");
        }
        var pidFile = Path.Combine(_runDirectory, id + ".pasta.pid");
        // .NET starts children with SIGPIPE ignored, and Debian 12's pasta refuses to run when it finds it ignored
        // ("Couldn't install signal handlers"); env restores the default disposition.
        var startInfo = new ProcessStartInfo("/usr/bin/env")
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var arg in new[]
        {
            "--default-signal=PIPE", PastaPath, "--config-net", "--quiet", "--runas", "0",
            // Root on the host may enter the namespace directly (bwrap nests a second user namespace for --uid,
            // which pasta could not use: --userns is deliberately not given).
            "--netns", $"/proc/{childPid}/ns/net",
            // Outbound only: no gateway mapped to the host's loopback, no port forwarding in either direction
            // (pasta's default would forward the namespace's loopback ports to the host's — the control plane).
            "--no-map-gw", "-t", "none", "-u", "none", "-T", "none", "-U", "none",
            // IPv4 only, as Lambda's own outbound network outside a dual-stack VPC; it spares ~8 ms of setup.
            "--ipv4-only",
            "--dns-forward", SandboxResolver, "--pid", pidFile,
        })
        {
            startInfo.ArgumentList.Add(arg);
        }
        startInfo.Environment.Clear();
        // On the spawn thread too: while bwrap is being started there, no other child may inherit its pipe ends.
        using (var pasta = await SpawnThread.RunAsync(() => Process.Start(startInfo) ?? throw new SandboxException("pasta did not start")))
        {
            // pasta returns once the namespace's network is configured, leaving its daemon behind.
            var stderr = pasta.StandardError.ReadToEndAsync();
            await pasta.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            if (pasta.ExitCode != 0)
            {
                throw new SandboxException($"pasta could not connect the sandbox's network (exit {pasta.ExitCode}): {(await stderr).Trim()}");
            }
        }
        var daemon = int.Parse((await File.ReadAllTextAsync(pidFile)).Trim(), CultureInfo.InvariantCulture);
        File.Delete(pidFile);
        cgroup.AddProcess(daemon);
    }

    public void Dispose()
    {
        _output.Dispose();
        Native.close(_emptyDirectory);
    }

    /// <summary>
    /// bwrap's command line: only <c>--args</c> and the command, which the sandbox sees as <c>/proc/1/cmdline</c>
    /// (its PID 1 is bwrap); everything naming host paths is in the arguments pipe.
    /// </summary>
    private static ProcessStartInfo BuildStartInfo(SandboxSpec spec, int argumentsFd, Cgroup cgroup)
    {
        var startInfo = new ProcessStartInfo(ShellPath)
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = "/",
        };
        var a = startInfo.ArgumentList;
        // bwrap must be in the environment's cgroup before it makes the sandbox's cgroup namespace, whose root is the
        // cgroup bwrap is in at that moment: then /proc/self/cgroup inside shows "/" and nothing of the host's layout.
        // A shell joins the cgroup and execs bwrap (same process); it runs with an empty environment, and bwrap
        // sets the function's (--setenv in its arguments), so no variable of the function's reaches a host shell.
        Add(a, "-c", JoinCgroupThenExec, "lamina-sandbox");
        foreach (var procs in cgroup.ProcsFiles)
        {
            a.Add(procs);
        }
        Add(a, "--", BwrapPath, "--args", argumentsFd.ToString(CultureInfo.InvariantCulture), "--");
        // The function runs as sbx_user1051 (993) — an unprivileged uid on the host — with no capabilities left.
        foreach (var arg in new[] { SetprivPath, $"--reuid={SandboxUid}", $"--regid={SandboxGid}", "--clear-groups", "--inh-caps=-all", "--" })
        {
            a.Add(arg);
        }
        foreach (var arg in spec.Command)
        {
            a.Add(arg);
        }

        // Nothing of the server's environment leaks in: bwrap gives the runtime exactly the spec's variables.
        startInfo.Environment.Clear();
        return startInfo;
    }

    /// <summary>bwrap's options (read from the <c>--args</c> pipe).</summary>
    private string? NodePackagesOf(SandboxSpec spec) =>
        spec.NodeMajorVersion is null ? null : _nodePackages.For(spec.NodeMajorVersion, spec.OptDirectory, spec.RuntimesDirectory);

    private List<string> BuildArguments(SandboxSpec spec, Dictionary<string, string> environment, int infoFd, int blockFd, int usernsBlockFd, int seccompFd, (int Fd, string Path)[] etcFiles)
    {
        var a = new List<string>();
        a.Add("--clearenv");
        foreach (var (key, value) in environment)
        {
            Add(a, "--setenv", key, value);
        }
        // Namespaces: a new user, PID, mount, IPC, UTS, cgroup and network namespace; no capabilities; killed with
        // the server; no controlling terminal (TIOCSTI).
        // Only CAP_SETUID/SETGID survive bwrap, for setpriv to drop to the function's user (which clears them).
        foreach (var arg in new[] { "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID" })
        {
            a.Add(arg);
        }
        // An unprivileged identity inside the sandbox, as Lambda's sbx_user1051.
        Add(a, "--hostname", "localhost");
        // The system, read-only; /etc only the parts programs need (no host secrets).
        Add(a, "--ro-bind", "/usr", "/usr");
        Add(a, "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/sbin", "/sbin");
        if (Directory.Exists("/usr/lib64"))
        {
            Add(a, "--symlink", "usr/lib64", "/lib64");
        }
        // Directories bwrap would otherwise create 0700 (unreadable once the function drops to its own user).
        foreach (var dir in new[] { "/etc", "/var", "/etc/ssl" })
        {
            Add(a, "--perms", "0755", "--dir", dir);
        }
        // /etc/ssl/certs, not /etc/ssl: its private/ holds host keys.
        foreach (var etc in new[] { "/etc/ssl/certs", "/etc/ca-certificates", "/etc/alternatives", "/etc/ld.so.cache", "/etc/localtime", "/etc/nsswitch.conf", "/etc/mime.types" })
        {
            if (Path.Exists(etc))
            {
                Add(a, "--ro-bind", etc, etc);
            }
        }
        // Lamina's own files, copied into the sandbox's root (read-only with it below).
        foreach (var (fd, path) in etcFiles)
        {
            Add(a, "--perms", "0644", "--file", fd.ToString(CultureInfo.InvariantCulture), path);
        }
        // /proc/sys read-only: kernel settings (core_pattern…) are the host's even from inside the namespaces.
        Add(a, "--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys", "--dev", "/dev");
        Add(a, "--size", ((long)spec.TmpSizeMb * 1024 * 1024).ToString(CultureInfo.InvariantCulture), "--perms", "1777", "--tmpfs", "/tmp");
        // The views LaunchAsync attaches on these directories (overlays of the code, the runtimes and the layers).
        Add(a, "--ro-bind", _taskMount, "/var/task");
        Add(a, "--ro-bind", _runtimeMount, "/var/runtime");
        if (spec.OptDirectory is not null)
        {
            Add(a, "--ro-bind", _optMount, "/opt");
        }
        if (NodePackagesOf(spec) is not null)
        {
            Add(a, "--ro-bind", _nodeModulesMount, "/var/node_modules");
        }
        else
        {
            Add(a, "--perms", "0755", "--dir", "/opt");
        }
        Add(a, "--remount-ro", "/");
        Add(a, "--chdir", "/var/task");
        Add(a, "--info-fd", infoFd.ToString(CultureInfo.InvariantCulture), "--block-fd", blockFd.ToString(CultureInfo.InvariantCulture),
            "--userns-block-fd", usernsBlockFd.ToString(CultureInfo.InvariantCulture));
        if (seccompFd >= 0)
        {
            Add(a, "--seccomp", seccompFd.ToString(CultureInfo.InvariantCulture));
        }
        return a;
    }

    /// <summary>
    /// A pipe holding <paramref name="content"/>, its write end closed: bwrap reads it to the end. Returns the read
    /// end (close-on-exec, listed in <paramref name="fds"/>).
    /// </summary>
    private static int DataPipe(byte[] content, string what, List<int> fds)
    {
        var pipe = new[] { -1, -1 };
        if (Native.pipe2(pipe, Native.O_CLOEXEC) != 0)
        {
            throw new SandboxException($"pipe2 failed: {Native.LastError()}");
        }
        fds.Add(pipe[0]);
        try
        {
            // Everything here is small (a pipe holds 64 KiB); a write that would not fit fails instead of blocking.
            Native.fcntl(pipe[1], Native.F_SETFL, Native.O_NONBLOCK);
            WriteAll(pipe[1], content, what);
        }
        finally
        {
            Native.close(pipe[1]);
        }
        return pipe[0];
    }

    private static void Add(ICollection<string> list, params string[] args)
    {
        foreach (var arg in args)
        {
            list.Add(arg);
        }
    }

    private static SafeHandle HandleOf(Stream stream) => stream switch
    {
        PipeStream pipe => pipe.SafePipeHandle,
        FileStream file => file.SafeFileHandle,
        _ => throw new SandboxException($"unexpected output stream type {stream.GetType()}"),
    };

    /// <summary>Reads bwrap's <c>--info-fd</c> JSON up to the closing brace and returns <c>child-pid</c>.</summary>
    private static unsafe int ReadChildPid(int fd)
    {
        var buffer = new byte[4096];
        var length = 0;
        while (length < buffer.Length)
        {
            nint read;
            fixed (byte* b = buffer)
            {
                read = Native.read(fd, b + length, buffer.Length - length);
            }
            if (read <= 0)
            {
                return -1;
            }
            length += (int)read;
            if (buffer.AsSpan(0, length).IndexOf((byte)'}') >= 0)
            {
                break;
            }
        }
        try
        {
            using var doc = JsonDocument.Parse(buffer.AsMemory(0, length));
            return doc.RootElement.GetProperty("child-pid").GetInt32();
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            return -1;
        }
    }

    /// <summary>
    /// Creates the listening socket inside the sandbox's network namespace. The socket stays in the sandbox's
    /// namespace, so only that sandbox can connect to it, and a connection on it identifies the environment.
    /// </summary>
    private static Socket ListenInNamespace(int childPid) => NetworkNamespace.Run(childPid, static () =>
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        // Any address of the namespace: it has its own loopback (which bwrap may still be bringing up) and, with
        // outbound network, pasta's interface — which forwards nothing inbound.
        socket.Bind(new IPEndPoint(IPAddress.Any, RuntimeApiPort));
        socket.Listen(16);
        return socket;
    });

    private static unsafe void WriteAll(int fd, byte[] data, string what)
    {
        fixed (byte* p = data)
        {
            var written = 0;
            while (written < data.Length)
            {
                var n = Native.write(fd, p + written, data.Length - written);
                if (n <= 0)
                {
                    throw new SandboxException($"cannot pass {what} to bwrap: {Native.LastError()}");
                }
                written += (int)n;
            }
        }
    }

    private static unsafe void Release(int blockWriteFd)
    {
        byte go = 1;
        if (Native.write(blockWriteFd, &go, 1) != 1)
        {
            throw new SandboxException($"cannot release the sandbox: {Native.LastError()}");
        }
    }
}

internal sealed class SandboxException : Exception
{
    public SandboxException(string message, Exception? inner = null) : base(message, inner)
    {
    }
}
