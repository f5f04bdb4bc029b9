using System.Collections.Concurrent;

namespace Lamina.Server.Sandbox;

/// <summary>
/// The one thread every sandbox's processes are started from; it lives as long as the server.
/// <para>
/// bwrap's <c>--die-with-parent</c> is <c>PR_SET_PDEATHSIG</c>, and the kernel sends that signal when the
/// <em>thread</em> that forked the process ends, not when its process does. Started from a thread-pool thread, a
/// sandbox was killed (SIGKILL) when the pool retired that thread, 20 s after it fell idle: after a burst of cold
/// starts, warm environments ended at random, and an invocation running in one failed. A thread that never ends keeps
/// the signal for what it is for, the server's own death.
/// </para>
/// One thread also starts one process at a time, which the inheritable pipe ends need: only the child they are made
/// for may inherit them.
/// </summary>
internal static class SpawnThread
{
    // A dedicated thread that blocks by design: a BlockingCollection, not a channel.
    private static readonly BlockingCollection<Action> Jobs = [];

    static SpawnThread()
    {
        new Thread(Run, maxStackSize: 256 * 1024) { IsBackground = true, Name = "lamina spawn" }.Start();
    }

    /// <summary>Runs <paramref name="start"/> (which starts a process) on the spawn thread.</summary>
    public static Task<T> RunAsync<T>(Func<T> start)
    {
        var done = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        Jobs.Add(() => // unbounded and never completed: cannot fail
        {
            try
            {
                done.TrySetResult(start());
            }
            catch (Exception e)
            {
                done.TrySetException(e);
            }
        });
        return done.Task;
    }

    private static void Run()
    {
        foreach (var job in Jobs.GetConsumingEnumerable())
        {
            job();
        }
    }
}
