using System.Diagnostics;
using System.Net.Sockets;

namespace Lamina.Server.Sandbox;

/// <summary>A running sandbox: the bwrap process tree, its cgroup, its Runtime API socket and its output.</summary>
internal sealed class Sandbox
{
    private readonly Process _process;
    private readonly OutputStream _stdout;
    private readonly OutputStream _stderr;
    private readonly int _namespacePid;
    private readonly Lock _destroyLock = new();
    private Task? _destroy;

    internal Sandbox(string id, Process process, int namespacePid, Cgroup cgroup, Socket listener, OutputStream stdout, OutputStream stderr)
    {
        _namespacePid = namespacePid;
        Id = id;
        _process = process;
        Cgroup = cgroup;
        Listener = listener;
        _stdout = stdout;
        _stderr = stderr;
        // The runtime's stdin is empty, as on Lambda.
        process.StandardInput.Close();
        Exited = WaitForExitAsync();
    }

    public string Id { get; }

    public Cgroup Cgroup { get; }

    /// <summary>The Runtime API socket, listening inside the sandbox's network namespace.</summary>
    public Socket Listener { get; }

    /// <summary>Completes with the exit status when the sandbox's process tree has exited and its output is read.</summary>
    public Task<SandboxExitInfo> Exited { get; }

    /// <summary>Opens a TCP connection to <c>127.0.0.1:port</c> inside the sandbox (Telemetry API destinations).</summary>
    public Socket ConnectToLoopback(int port) => NetworkNamespace.Run(_namespacePid, () =>
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            // Loopback inside the namespace: the connect completes (or is refused) at once.
            socket.Connect(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, port));
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    });

    /// <summary>Delivers all output written so far (see <see cref="OutputReader"/>).</summary>
    public void DrainOutput(bool flushPartialLines)
    {
        OutputStream.DrainBoth(_stdout, _stderr, flushPartialLines);
    }

    /// <summary>Kills every process of the sandbox at once.</summary>
    public void Kill()
    {
        Cgroup.Signal(Native.SIGKILL);
        try
        {
            _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // Already exited.
        }
    }

    /// <summary>
    /// Kills the runtime only, leaving the extensions (and Lamina's Init script, their parent) running for their
    /// SHUTDOWN event: the children of the Init script that are not extensions.
    /// </summary>
    public void KillRuntime()
    {
        var processes = new List<(int Pid, int Parent, string Command)>();
        foreach (var pid in Cgroup.Processes())
        {
            try
            {
                var stat = File.ReadAllText($"/proc/{pid}/stat");
                // "pid (comm) state ppid …": comm may hold spaces and parentheses, so parse after the last ')'.
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                processes.Add((pid, int.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture), File.ReadAllText($"/proc/{pid}/cmdline")));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
            {
                // Exited while we looked.
            }
        }
        // bwrap's own argv names the script too; the script's process is the one bash runs it in.
        var init = processes.Find(p => p.Command.StartsWith("/bin/bash\0" + InitScript + "\0", StringComparison.Ordinal));
        if (init.Pid == 0)
        {
            Kill();
            return;
        }
        foreach (var (pid, parent, command) in processes)
        {
            if (parent == init.Pid && !command.Contains("/opt/extensions/", StringComparison.Ordinal))
            {
                _ = Native.kill(pid, Native.SIGKILL);
            }
        }
    }

    /// <summary>Lamina's Init script for environments with external extensions (mounted under /var/runtime).</summary>
    public const string InitScript = "/var/runtime/lamina/init-extensions.sh";

    /// <summary>
    /// Two-phase stop: SIGTERM to the runtime, then SIGKILL for everything after <paramref name="grace"/>,
    /// then cleanup. Never throws.
    /// </summary>
    public async Task StopAsync(TimeSpan grace, CancellationToken cancellationToken)
    {
        if (!Exited.IsCompleted)
        {
            Cgroup.Signal(Native.SIGTERM);
            try
            {
                await Exited.WaitAsync(grace, cancellationToken);
            }
            catch (Exception e) when (e is TimeoutException or OperationCanceledException)
            {
            }
        }
        await DestroyAsync();
        try
        {
            await Exited.WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None);
        }
        catch (TimeoutException)
        {
        }
    }

    /// <summary>
    /// Waits (bounded) until no process whose command line mentions <paramref name="commandPart"/> is left in the
    /// sandbox (an interpreted extension's argv[0] is its interpreter) — used to let extensions finish their
    /// SHUTDOWN before the runtime is stopped.
    /// </summary>
    public async Task WaitForProcessesToExitAsync(string commandPart, TimeSpan limit)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        while (!Exited.IsCompleted && System.Diagnostics.Stopwatch.GetElapsedTime(started) < limit)
        {
            var found = false;
            foreach (var pid in Cgroup.Processes())
            {
                try
                {
                    var cmdline = File.ReadAllText($"/proc/{pid}/cmdline");
                    if (cmdline.Contains(commandPart, StringComparison.Ordinal))
                    {
                        found = true;
                        break;
                    }
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    // Exited while we looked.
                }
            }
            if (!found)
            {
                return;
            }
            await Task.Delay(TimeSpan.FromMilliseconds(10));
        }
    }

    /// <summary>
    /// Kills what is left and removes the cgroup and the socket. Idempotent: every caller gets the one destruction's
    /// task (the group goes only once the kernel has reaped its processes), so that a stop awaiting it after the
    /// runtime's exit already started it still waits for the group to go (the server's own group is removed after).
    /// </summary>
    public Task DestroyAsync()
    {
        lock (_destroyLock)
        {
            return _destroy ??= DestroyOnceAsync();
        }
    }

    private Task DestroyOnceAsync()
    {
        Kill();
        Listener.Dispose();
        return Cgroup.DestroyAsync();
    }

    private async Task<SandboxExitInfo> WaitForExitAsync()
    {
        await _process.WaitForExitAsync();
        // bwrap exits when the sandbox's init does; its output pipes close once the last process in it is gone.
        await Task.WhenAll(_stdout.Completion, _stderr.Completion).WaitAsync(TimeSpan.FromSeconds(5)).ContinueWith(static _ => { }, TaskScheduler.Default);
        var code = _process.ExitCode;
        var oomKilled = Cgroup.OomKills() > 0;
        _process.Dispose();
        return new SandboxExitInfo(code, oomKilled);
    }
}

/// <summary>How a sandbox ended. bwrap reports a signal death of the runtime as 128 + signal.</summary>
internal readonly record struct SandboxExitInfo(int ExitCode, bool OutOfMemory)
{
    public string Describe() => ExitCode > 128 && ExitCode < 160
        ? $"signal: {SignalName(ExitCode - 128)}"
        : $"exit status {ExitCode}";

    private static string SignalName(int signal) => signal switch
    {
        6 => "aborted",
        9 => "killed",
        11 => "segmentation fault",
        15 => "terminated",
        _ => signal.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };
}
