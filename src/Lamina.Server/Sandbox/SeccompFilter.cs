using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Lamina.Server.Sandbox;

/// <summary>
/// The seccomp program every sandbox runs under (RELIABILITY.md §2.3): a deny list of the calls that reach the
/// kernel's riskiest surfaces or could undo the sandbox — mounts, namespaces (unshare, setns, clone with namespace
/// flags), kernel modules, kexec, keyrings, bpf, perf, ptrace and cross-process memory, io_uring, userfaultfd,
/// handle-based opens, clock and host settings, TIOCSTI. Denied calls fail with EPERM (clone3 with ENOSYS so libc
/// falls back to clone, whose flags can be checked); other architectures' ABIs (x32, i386) are killed outright.
/// bubblewrap installs it just before it runs the runtime (<c>--seccomp FD</c>). x86-64 only for now.
/// </summary>
internal static class SeccompFilter
{
    private const uint AuditArchX8664 = 0xC000003E;
    private const uint X32SyscallBit = 0x40000000;
    private const int EPERM = 1;
    private const int ENOSYS = 38;

    // Classic BPF opcodes.
    private const ushort LoadWordAbsolute = 0x20; // BPF_LD | BPF_W | BPF_ABS
    private const ushort JumpIfEqual = 0x15;      // BPF_JMP | BPF_JEQ | BPF_K
    private const ushort JumpIfGreaterOrEqual = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    private const ushort JumpIfAnyBitSet = 0x45;  // BPF_JMP | BPF_JSET | BPF_K
    private const ushort Return = 0x06;           // BPF_RET | BPF_K

    private const uint RetAllow = 0x7FFF0000;
    private const uint RetErrno = 0x00050000;
    private const uint RetKillProcess = 0x80000000;

    // struct seccomp_data: int nr; u32 arch; u64 instruction_pointer; u64 args[6] (low word first on x86-64).
    private const uint OffsetNr = 0;
    private const uint OffsetArch = 4;
    private static uint OffsetArgLow(int index) => (uint)(16 + 8 * index);

    private const uint SyscallIoctl = 16;
    private const uint SyscallClone = 56;
    private const uint SyscallClone3 = 435;
    private const uint SyscallPersonality = 135;
    private const uint Tiocsti = 0x5412;
    private const uint Tioclinux = 0x541C;

    // CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET
    private const uint CloneNamespaceFlags = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000;

    /// <summary>x86-64 numbers of the calls refused outright.</summary>
    internal static readonly (string Name, uint Number)[] Denied =
    [
        ("ptrace", 101), ("syslog", 103), ("uselib", 134), ("ustat", 136), ("sysfs", 139),
        ("vhangup", 153), ("pivot_root", 155), ("_sysctl", 156), ("adjtimex", 159), ("chroot", 161), ("acct", 163),
        ("settimeofday", 164), ("mount", 165), ("umount2", 166), ("swapon", 167), ("swapoff", 168), ("reboot", 169),
        ("sethostname", 170), ("setdomainname", 171), ("iopl", 172), ("ioperm", 173), ("create_module", 174),
        ("init_module", 175), ("delete_module", 176), ("get_kernel_syms", 177), ("query_module", 178),
        ("quotactl", 179), ("nfsservctl", 180), ("lookup_dcookie", 212), ("clock_settime", 227),
        ("kexec_load", 246), ("add_key", 248), ("request_key", 249), ("keyctl", 250), ("unshare", 272),
        ("perf_event_open", 298), ("name_to_handle_at", 303), ("open_by_handle_at", 304), ("clock_adjtime", 305),
        ("setns", 308), ("process_vm_readv", 310), ("process_vm_writev", 311), ("kcmp", 312), ("finit_module", 313),
        ("kexec_file_load", 320), ("bpf", 321), ("userfaultfd", 323), ("io_uring_setup", 425),
        ("io_uring_enter", 426), ("io_uring_register", 427), ("open_tree", 428), ("move_mount", 429),
        ("fsopen", 430), ("fsconfig", 431), ("fsmount", 432), ("fspick", 433), ("mount_setattr", 442),
    ];

    public static bool IsSupported => RuntimeInformation.ProcessArchitecture == Architecture.X64;

    /// <summary>The program as bubblewrap reads it: an array of <c>struct sock_filter</c>.</summary>
    public static byte[] Build()
    {
        var program = new Program();
        // 1. Only the native x86-64 ABI.
        program.Load(OffsetArch);
        program.Jump(JumpIfEqual, AuditArchX8664, whenTrue: null, whenFalse: "kill");
        program.Load(OffsetNr);
        program.Jump(JumpIfGreaterOrEqual, X32SyscallBit, whenTrue: "kill", whenFalse: null);
        // 2. The deny list, then the calls whose arguments decide.
        foreach (var (_, number) in Denied)
        {
            program.Jump(JumpIfEqual, number, whenTrue: "eperm", whenFalse: null);
        }
        program.Jump(JumpIfEqual, SyscallClone3, whenTrue: "enosys", whenFalse: null);
        program.Jump(JumpIfEqual, SyscallIoctl, whenTrue: "ioctl", whenFalse: null);
        program.Jump(JumpIfEqual, SyscallClone, whenTrue: "clone", whenFalse: null);
        program.Jump(JumpIfEqual, SyscallPersonality, whenTrue: "personality", whenFalse: null);
        program.Ret(RetAllow);
        // 3. ioctl: no TIOCSTI / TIOCLINUX (pushing input into a terminal).
        program.Label("ioctl");
        program.Load(OffsetArgLow(1));
        program.Jump(JumpIfEqual, Tiocsti, whenTrue: "eperm", whenFalse: null);
        program.Jump(JumpIfEqual, Tioclinux, whenTrue: "eperm", whenFalse: null);
        program.Ret(RetAllow);
        // 4. clone: threads and processes yes, new namespaces no.
        program.Label("clone");
        program.Load(OffsetArgLow(0));
        program.Jump(JumpIfAnyBitSet, CloneNamespaceFlags, whenTrue: "eperm", whenFalse: null);
        program.Ret(RetAllow);
        // 5. personality: the query and the plain Linux personalities (Docker's list); not ADDR_NO_RANDOMIZE,
        // READ_IMPLIES_EXEC or MMAP_PAGE_ZERO, which weaken the process's own memory protections.
        program.Label("personality");
        program.Load(OffsetArgLow(0));
        foreach (var allowed in (uint[])[0x0, 0x8, 0x20000, 0x20008, 0xffffffff])
        {
            program.Jump(JumpIfEqual, allowed, whenTrue: "allow", whenFalse: null);
        }
        program.Ret(RetErrno | EPERM);
        program.Label("allow");
        program.Ret(RetAllow);
        program.Label("eperm");
        program.Ret(RetErrno | EPERM);
        program.Label("enosys");
        program.Ret(RetErrno | ENOSYS);
        program.Label("kill");
        program.Ret(RetKillProcess);
        return program.Assemble();
    }

    private sealed class Program
    {
        private readonly List<(ushort Code, string? True, string? False, uint K)> _instructions = [];
        private readonly Dictionary<string, int> _labels = new(StringComparer.Ordinal);

        public void Load(uint offset) => _instructions.Add((LoadWordAbsolute, null, null, offset));

        public void Jump(ushort code, uint k, string? whenTrue, string? whenFalse) => _instructions.Add((code, whenTrue, whenFalse, k));

        public void Ret(uint value) => _instructions.Add((Return, null, null, value));

        public void Label(string name) => _labels[name] = _instructions.Count;

        public byte[] Assemble()
        {
            var bytes = new byte[_instructions.Count * 8];
            for (var i = 0; i < _instructions.Count; i++)
            {
                var (code, whenTrue, whenFalse, k) = _instructions[i];
                var slot = bytes.AsSpan(i * 8, 8);
                BinaryPrimitives.WriteUInt16LittleEndian(slot, code);
                slot[2] = Offset(i, whenTrue);
                slot[3] = Offset(i, whenFalse);
                BinaryPrimitives.WriteUInt32LittleEndian(slot[4..], k);
            }
            return bytes;
        }

        // Jumps are relative to the next instruction and forward only, at most 255 ahead.
        private byte Offset(int from, string? label)
        {
            if (label is null)
            {
                return 0;
            }
            var distance = _labels[label] - from - 1;
            if (distance is < 0 or > 255)
            {
                throw new InvalidOperationException($"seccomp jump to {label} out of range ({distance})");
            }
            return (byte)distance;
        }
    }
}
