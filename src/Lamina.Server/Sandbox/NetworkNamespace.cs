using System.Buffers.Binary;

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

    /// <summary>
    /// Makes 169.254.0.0/16 unreachable from the sandbox (a <c>prohibit</c> route, which the function, without
    /// CAP_NET_ADMIN, cannot remove). pasta would otherwise carry connections there from the host, and on a cloud
    /// machine that is the instance metadata service, which hands out the machine's own credentials.
    /// </summary>
    public static unsafe void ProhibitLinkLocal(int pid) => Run(pid, static () =>
    {
        // A netlink socket opened in the namespace talks to its routing tables (.NET's Socket knows no AF_NETLINK).
        var netlink = Native.socket(Native.AF_NETLINK, Native.SOCK_RAW | Native.SOCK_CLOEXEC, Native.NETLINK_ROUTE);
        if (netlink < 0)
        {
            throw new SandboxException($"cannot block link-local addresses in the sandbox: {Native.LastError()}");
        }
        try
        {
            Span<byte> message = stackalloc byte[36];
            message.Clear();
            BinaryPrimitives.WriteUInt32LittleEndian(message, 36);                          // nlmsghdr.nlmsg_len
            BinaryPrimitives.WriteUInt16LittleEndian(message[4..], 24);                     // RTM_NEWROUTE
            BinaryPrimitives.WriteUInt16LittleEndian(message[6..], 0x1 | 0x4 | 0x200 | 0x400); // REQUEST | ACK | EXCL | CREATE
            BinaryPrimitives.WriteUInt32LittleEndian(message[8..], 1);                      // sequence number
            message[16] = 2;    // rtmsg.rtm_family = AF_INET
            message[17] = 16;   // rtm_dst_len: /16
            message[20] = 254;  // rtm_table = RT_TABLE_MAIN
            message[21] = 4;    // rtm_protocol = RTPROT_STATIC
            message[22] = 0;    // rtm_scope = RT_SCOPE_UNIVERSE
            message[23] = 8;    // rtm_type = RTN_PROHIBIT
            BinaryPrimitives.WriteUInt16LittleEndian(message[28..], 8);                     // rtattr.rta_len
            BinaryPrimitives.WriteUInt16LittleEndian(message[30..], 1);                     // RTA_DST
            message[32] = 169;
            message[33] = 254;
            Span<byte> answer = stackalloc byte[256];
            nint received;
            fixed (byte* request = message)
            fixed (byte* reply = answer)
            {
                if (Native.write(netlink, request, message.Length) != message.Length)
                {
                    throw new SandboxException($"cannot block link-local addresses in the sandbox: {Native.LastError()}");
                }
                received = Native.read(netlink, reply, answer.Length);
            }
            // The acknowledgement is an NLMSG_ERROR (type 2) whose error is 0 on success, else a negative errno.
            if (received < 20 || BinaryPrimitives.ReadUInt16LittleEndian(answer[4..]) != 2)
            {
                throw new SandboxException("cannot block link-local addresses in the sandbox: unexpected netlink answer");
            }
            var error = BinaryPrimitives.ReadInt32LittleEndian(answer[16..]);
            if (error != 0)
            {
                throw new SandboxException($"cannot block link-local addresses in the sandbox: errno {-error}");
            }
            return true;
        }
        finally
        {
            Native.close(netlink);
        }
    });
}
