namespace Lamina.Server.Sandbox;

/// <summary>
/// Runs a short piece of synchronous socket code inside a sandbox's network namespace: the calling thread enters
/// the namespace (setns), runs it, and returns to the host's. Sockets keep the namespace they were created in, so
/// this is how Lamina listens inside a sandbox (its Runtime API) and connects into one (Telemetry API
/// destinations) without any process or hop of its own.
/// </summary>
internal static class NetworkNamespace
{
    private static readonly int HostNamespace = Native.open("/proc/self/ns/net", Native.O_RDONLY | Native.O_CLOEXEC);

    public static T Run<T>(int pid, Func<T> action)
    {
        var target = Native.open($"/proc/{pid}/ns/net", Native.O_RDONLY | Native.O_CLOEXEC);
        if (target < 0)
        {
            throw new SandboxException($"cannot open the sandbox's network namespace: {Native.LastError()}");
        }
        try
        {
            if (Native.setns(target, Native.CLONE_NEWNET) != 0)
            {
                throw new SandboxException($"cannot enter the sandbox's network namespace: {Native.LastError()}");
            }
            try
            {
                return action();
            }
            finally
            {
                if (Native.setns(HostNamespace, Native.CLONE_NEWNET) != 0)
                {
                    // A thread-pool thread left in a sandbox's namespace would be a hole; stop rather than continue.
                    Environment.FailFast($"lamina: could not return to the host network namespace: {Native.LastError()}");
                }
            }
        }
        finally
        {
            Native.close(target);
        }
    }
}
