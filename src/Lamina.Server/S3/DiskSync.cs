using System.Runtime.InteropServices;
using System.Collections.Concurrent;
using Microsoft.Win32.SafeHandles;

namespace Lamina.Server.S3;

/// <summary>
/// fsync on threads of its own. An object is on disk before its 200: its bytes are flushed and, after the rename into
/// the store, its directory entry. Each fsync blocks its thread for milliseconds; on the thread pool, sixteen
/// concurrent PUTs blocked its few workers and every request waited (measured: 4 KiB PUTs at ~350/s against ~4,500/s
/// for the same writes from sixteen plain threads). Here they wait on these threads while the pool serves requests.
/// </summary>
internal static partial class DiskSync
{
    // About as many fsyncs in flight as a device merges well; more only queue in the kernel.
    private const int Threads = 16;

    // Dedicated threads that block by design: a BlockingCollection, not a channel.
    private static readonly BlockingCollection<(Action Sync, TaskCompletionSource Done)> Jobs = [];

    static DiskSync()
    {
        for (var i = 0; i < Threads; i++)
        {
            new Thread(Run, maxStackSize: 256 * 1024) { IsBackground = true, Name = "lamina fsync" }.Start();
        }
    }

    /// <summary>Flushes <paramref name="file"/>'s data and metadata to the device.</summary>
    public static Task FlushAsync(SafeFileHandle file) => Enqueue(() => RandomAccess.FlushToDisk(file));

    /// <summary>Makes a rename or a new name in <paramref name="directory"/> durable.</summary>
    public static Task SyncDirectoryAsync(string directory) => OperatingSystem.IsLinux() ? Enqueue(() => SyncDirectory(directory)) : Task.CompletedTask;

    private static Task Enqueue(Action sync)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Jobs.Add((sync, done)); // unbounded and never completed: cannot fail
        return done.Task;
    }

    private static void Run()
    {
        foreach (var job in Jobs.GetConsumingEnumerable())
        {
            try
            {
                job.Sync();
                job.Done.TrySetResult();
            }
            catch (Exception e)
            {
                job.Done.TrySetException(e);
            }
        }
    }

    private static void SyncDirectory(string directory)
    {
        var fd = Open(directory, 0x80000 /* O_RDONLY | O_CLOEXEC */);
        if (fd < 0)
        {
            throw new IOException($"open({directory}) for fsync failed: errno {Marshal.GetLastPInvokeError()}");
        }
        try
        {
            if (Fsync(fd) != 0)
            {
                throw new IOException($"fsync({directory}) failed: errno {Marshal.GetLastPInvokeError()}");
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
