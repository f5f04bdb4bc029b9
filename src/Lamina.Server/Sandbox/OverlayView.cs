using System.Runtime.InteropServices;
using System.Text;

namespace Lamina.Server.Sandbox;

/// <summary>
/// Read-only views of host directories that do not name them, for <c>/var/task</c>, <c>/opt</c> and
/// <c>/var/runtime</c>. A bind mount shows where it came from in the sandbox's <c>/proc/self/mountinfo</c> (its root
/// field is the path within the source filesystem: <c>&lt;data&gt;/code/&lt;sha256&gt;</c>), so a function would learn
/// where the server keeps its data. An overlay is a filesystem of its own: its root is <c>/</c>, and its layers are
/// named by the server's <c>/proc/self/fd</c> links, resolved when the overlay is made.
/// </summary>
/// <remarks>
/// A view is made detached (<c>fsopen</c>/<c>fsmount</c>, no path anywhere) and attached only inside the sandbox's
/// mount namespace, on an empty host directory, while bwrap still waits for its user namespace; bwrap's
/// <c>--ro-bind</c> of that directory then picks it up. The host's mount table never holds it, and it goes away with
/// the sandbox: nothing to clean up after a crash.
/// </remarks>
internal static partial class OverlayView
{
    // Same numbers on x86-64 and arm64 (the new mount API is in the shared syscall table).
    private const nint SYS_move_mount = 429;
    private const nint SYS_fsopen = 430;
    private const nint SYS_fsconfig = 431;
    private const nint SYS_fsmount = 432;
    private const int FSOPEN_CLOEXEC = 1;
    private const int FSCONFIG_SET_STRING = 1;
    private const int FSCONFIG_CMD_CREATE = 6;
    private const int FSMOUNT_CLOEXEC = 1;
    private const int MOUNT_ATTR_RDONLY = 0x1;
    private const int MOUNT_ATTR_NOSUID = 0x2;
    private const int MOUNT_ATTR_NODEV = 0x4;
    private const int MOVE_MOUNT_F_EMPTY_PATH = 0x4;
    private const int AT_FDCWD = -100;
    private const int O_PATH = 0x200000;
    private const int CLONE_FS = 0x200;
    private const int CLONE_NEWNS = 0x20000;
    private const nint MS_REC = 0x4000;
    private const nint MS_SLAVE = 0x80000;

    /// <summary>Why views cannot be made on this machine (kernel without the new mount API or overlayfs), or null.</summary>
    public static string? CheckSupported()
    {
        var context = FsOpen();
        if (context < 0)
        {
            return $"cannot make overlay mounts ({Native.LastError()}): Lamina needs them (as root, on Linux 5.2 or later) to show function code to sandboxes without naming host paths";
        }
        Native.close(context);
        return null;
    }

    /// <summary>
    /// Makes a detached read-only overlay showing <paramref name="directory"/> and returns its mount fd
    /// (close-on-exec; closing it unmounts the view unless it was attached).
    /// </summary>
    /// <param name="directory">The host directory to show.</param>
    /// <param name="emptyDirectory">
    /// An fd (<c>O_PATH</c>) of an empty directory: an overlay without an upper layer needs two lower ones.
    /// </param>
    public static int Create(string directory, int emptyDirectory)
    {
        var context = FsOpen();
        if (context < 0)
        {
            throw new SandboxException($"cannot make an overlay for the sandbox: {Native.LastError()}");
        }
        var lower = -1;
        try
        {
            lower = Native.open(directory, O_PATH | Native.O_CLOEXEC);
            if (lower < 0)
            {
                throw new SandboxException($"cannot open {directory} for the sandbox: {Native.LastError()}");
            }
            // The option string is what the sandbox's mountinfo shows: fd links, never the directories' paths.
            var layers = FormattableString.Invariant($"/proc/self/fd/{lower}:/proc/self/fd/{emptyDirectory}");
            if (FsConfig(context, FSCONFIG_SET_STRING, "lowerdir", layers) != 0 || FsConfig(context, FSCONFIG_CMD_CREATE, null, null) != 0)
            {
                var error = Native.LastError();
                throw new SandboxException($"cannot make an overlay of {directory} for the sandbox: {error}{KernelMessage(context)}");
            }
            var view = (int)syscall(SYS_fsmount, context, FSMOUNT_CLOEXEC, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0, 0);
            if (view < 0)
            {
                throw new SandboxException($"cannot mount the overlay of {directory}: {Native.LastError()}");
            }
            return view;
        }
        finally
        {
            if (lower >= 0)
            {
                Native.close(lower);
            }
            Native.close(context);
        }
    }

    /// <summary>
    /// Attaches detached mounts inside the mount namespace of <paramref name="pid"/> (bwrap's child, still waiting for
    /// its user namespace: its mount namespace is an untouched copy of the host's). The namespace's mounts are made
    /// slaves first, as bwrap would do next, so that nothing attached there propagates back to the host.
    /// </summary>
    public static void AttachInNamespace(int pid, IReadOnlyList<(int Mount, string Target)> views)
    {
        if (views.Count == 0)
        {
            return;
        }
        // Entering a mount namespace changes the thread's root and working directory: a thread of its own, which
        // ends right after (setns needs the thread's filesystem context unshared from the rest of the process).
        SandboxException? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                Attach(pid, views);
            }
            catch (SandboxException e)
            {
                failure = e;
            }
        }, maxStackSize: 256 * 1024)
        {
            IsBackground = true,
            Name = "lamina mount",
        };
        thread.Start();
        thread.Join();
        if (failure is not null)
        {
            throw failure;
        }
    }

    private static void Attach(int pid, IReadOnlyList<(int Mount, string Target)> views)
    {
        if (unshare(CLONE_FS) != 0)
        {
            throw new SandboxException($"cannot unshare the mount thread's filesystem context: {Native.LastError()}");
        }
        var ns = Native.open($"/proc/{pid}/ns/mnt", Native.O_RDONLY | Native.O_CLOEXEC);
        if (ns < 0)
        {
            throw new SandboxException($"cannot open the sandbox's mount namespace: {Native.LastError()}");
        }
        try
        {
            if (Native.setns(ns, CLONE_NEWNS) != 0)
            {
                throw new SandboxException($"cannot enter the sandbox's mount namespace: {Native.LastError()}");
            }
        }
        finally
        {
            Native.close(ns);
        }
        if (mount(null, "/", null, MS_SLAVE | MS_REC, 0) != 0)
        {
            throw new SandboxException($"cannot make the sandbox's mounts slaves: {Native.LastError()}");
        }
        foreach (var (view, target) in views)
        {
            if (MoveMount(view, target) != 0)
            {
                throw new SandboxException($"cannot attach a view at {target} in the sandbox's mount namespace: {Native.LastError()}");
            }
        }
    }

    private static unsafe int FsOpen()
    {
        fixed (byte* type = "overlay\0"u8)
        {
            return (int)syscall(SYS_fsopen, (nint)type, FSOPEN_CLOEXEC, 0, 0, 0);
        }
    }

    private static unsafe int FsConfig(int context, int command, string? key, string? value)
    {
        var keyBytes = key is null ? null : Utf8Bytes(key);
        var valueBytes = value is null ? null : Utf8Bytes(value);
        fixed (byte* k = keyBytes)
        fixed (byte* v = valueBytes)
        {
            return (int)syscall(SYS_fsconfig, context, command, (nint)k, (nint)v, 0);
        }
    }

    private static unsafe int MoveMount(int view, string target)
    {
        var targetBytes = Utf8Bytes(target);
        fixed (byte* empty = "\0"u8)
        fixed (byte* t = targetBytes)
        {
            return (int)syscall(SYS_move_mount, view, (nint)empty, AT_FDCWD, (nint)t, MOVE_MOUNT_F_EMPTY_PATH);
        }
    }

    /// <summary>The kernel's own words on a failed fsconfig (read from the context: "e overlay: ...").</summary>
    private static unsafe string KernelMessage(int context)
    {
        var buffer = stackalloc byte[512];
        var read = Native.read(context, buffer, 512);
        return read > 0 ? $" ({Encoding.UTF8.GetString(buffer, (int)read).Trim()})" : "";
    }

    private static byte[] Utf8Bytes(string value)
    {
        var bytes = new byte[Encoding.UTF8.GetByteCount(value) + 1];
        Encoding.UTF8.GetBytes(value, bytes);
        return bytes;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint syscall(nint number, nint a1, nint a2, nint a3, nint a4, nint a5);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int unshare(int flags);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int mount(string? source, string target, string? type, nint flags, nint data);
}
