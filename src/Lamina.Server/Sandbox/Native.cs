using System.Runtime.InteropServices;

namespace Lamina.Server.Sandbox;

/// <summary>The few libc calls .NET does not expose: pipes without close-on-exec, namespace entry, FIONREAD.</summary>
internal static partial class Native
{
    public const int O_RDONLY = 0;
    public const int O_CLOEXEC = 0x80000;
    public const int F_GETFD = 1;
    public const int F_SETFD = 2;
    public const int FD_CLOEXEC = 1;
    public const int CLONE_NEWNET = 0x40000000;
    public const int FIONREAD = 0x541B;
    public const int SIGKILL = 9;
    public const int SIGTERM = 15;
    public const int ESRCH = 3;

    [LibraryImport("libc", SetLastError = true)]
    public static partial int pipe2(Span<int> fds, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int close(int fd);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int socket(int domain, int type, int protocol);

    public const int AF_NETLINK = 16;
    public const int SOCK_RAW = 3;
    public const int SOCK_CLOEXEC = 0x80000;
    public const int NETLINK_ROUTE = 0;

    [LibraryImport("libc", SetLastError = true)]
    public static partial int fcntl(int fd, int cmd, int arg);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int setns(int fd, int nstype);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int open(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    public static unsafe partial nint read(int fd, byte* buffer, nint count);

    [LibraryImport("libc", SetLastError = true)]
    public static unsafe partial nint write(int fd, byte* buffer, nint count);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int ioctl(int fd, nint request, out int value);

    [LibraryImport("libc", SetLastError = true)]
    public static partial int kill(int pid, int signal);

    public const int RLIMIT_NOFILE = 7;
    public const nint SIOCGIFFLAGS = 0x8913;
    public const short IFF_UP = 0x1;

    /// <summary>struct ifreq, as far as SIOCGIFFLAGS uses it (name, then flags; padded to the kernel's 40 bytes).</summary>
    [StructLayout(LayoutKind.Explicit, Size = 40)]
    public unsafe struct IfReqFlags
    {
        [FieldOffset(0)]
        public fixed byte Name[16];

        [FieldOffset(16)]
        public short Flags;
    }

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    public static partial int ioctl_ifreq(int fd, nint request, ref IfReqFlags value);

    [StructLayout(LayoutKind.Sequential)]
    public struct RLimit
    {
        public ulong Current;
        public ulong Max;
    }

    [LibraryImport("libc", SetLastError = true)]
    public static partial int prlimit(int pid, int resource, in RLimit newLimit, nint oldLimit);

    public static string LastError() => Marshal.GetLastPInvokeErrorMessage();
}

internal static partial class Native
{
    public const short POLLIN = 0x001;
    public const short POLLERR = 0x008;
    public const short POLLHUP = 0x010;
    public const short POLLNVAL = 0x020;
    public const int O_NONBLOCK = 0x800;
    public const int F_SETFL = 4;
    public const int F_GETFL = 3;
    public const int EAGAIN = 11;
    public const int EINTR = 4;

    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    public struct PollFd
    {
        public int Fd;
        public short Events;
        public short Revents;
    }

    [LibraryImport("libc", SetLastError = true)]
    public static unsafe partial int poll(PollFd* fds, nuint count, int timeoutMs);
}
