"""Function source for test_escape.py: a python3.12 handler (``handler.handler``) that probes the sandbox from the
inside for the escape classes of RELIABILITY.md §2.3 and returns JSON reports. Nothing here changes the host: every
call is made with arguments that would fail harmlessly (EFAULT, EBADF, EINVAL) were it allowed, calls that could
change the calling process (unshare, clone, personality, ptrace) run in a throw-away child, and network probes are
TCP connects that are closed at once, aimed only at targets the test names (loopback, this machine's own addresses,
the link-local metadata address).

Syscall numbers are x86-64's (the seccomp filter is x86-64 only; test_escape.py skips elsewhere).
"""
from __future__ import annotations

from lamina_harness import make_zip

ESCAPE_PY = r'''
import ctypes
import errno
import json
import os
import select
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
import urllib.request

COUNT = 0
KEEP = []  # objects kept alive between invocations (E10's abstract socket)

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
WRONG = 1  # a pointer that can never be valid: an allowed call fails with EFAULT

# x86-64 syscall numbers
NR = {
    "ioctl": 16, "clone": 56, "ptrace": 101, "syslog": 103, "personality": 135, "pivot_root": 155,
    "chroot": 161, "acct": 163, "settimeofday": 164, "mount": 165, "umount2": 166, "swapon": 167, "reboot": 169,
    "sethostname": 170, "iopl": 172, "init_module": 175, "delete_module": 176, "kexec_load": 246,
    "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298,
    "name_to_handle_at": 303, "open_by_handle_at": 304, "setns": 308, "process_vm_readv": 310,
    "process_vm_writev": 311, "kcmp": 312, "finit_module": 313, "kexec_file_load": 320, "bpf": 321,
    "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "clone3": 435, "mount_setattr": 442,
    # NUMA memory-policy calls flatpak also blocks (reported, not required by RELIABILITY.md)
    "mbind": 237, "set_mempolicy": 238, "get_mempolicy": 239, "migrate_pages": 256, "move_pages": 279,
}
TIOCSTI, TIOCLINUX = 0x5412, 0x541C
CLONE_NEWTIME, CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x80, 0x20000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x10000000, 0x20000000, 0x40000000
NAMESPACES = {"user": CLONE_NEWUSER, "mnt": CLONE_NEWNS, "pid": CLONE_NEWPID, "net": CLONE_NEWNET,
              "ipc": CLONE_NEWIPC, "uts": CLONE_NEWUTS, "cgroup": CLONE_NEWCGROUP, "time": CLONE_NEWTIME}
SIGCHLD = 17


def errname(n):
    return errno.errorcode.get(n, str(n)) if n else "OK"


def sysc(name, *args):
    """Raw syscall: {"ret": return value, "errno": number, "err": name} (err "OK" when it succeeded)."""
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(NR[name]), *[ctypes.c_long(a) for a in args])
    e = ctypes.get_errno() if ret == -1 else 0
    return {"ret": ret, "errno": e, "err": errname(e)}


def oserr(e):
    return {"ok": False, "errno": e.errno, "err": errname(e.errno), "error": str(e)}


def in_child(fn, timeout=5):
    """Runs fn() in a forked child (whatever it changes dies with the child) and returns its JSON result."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            try:
                out = fn()
            except BaseException as e:  # noqa: BLE001 - reported
                out = {"exception": repr(e)}
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([r], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    os.waitpid(pid, 0)
    try:
        return json.loads(data)
    except ValueError:
        return {"exception": "child gave no result: %r" % data[:200]}


def read_text(path, limit=65536):
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError as e:
        return "error: " + errname(e.errno)


def status_fields(path="/proc/self/status"):
    fields = {}
    for line in read_text(path).splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields[k] = v.strip()
    return fields


# ---- E1: terminal injection ------------------------------------------------------------------------------

def probe_tty():
    out = {}
    for fd in (0, 1, 2, -1):
        for name, cmd in (("TIOCSTI", TIOCSTI), ("TIOCLINUX", TIOCLINUX), ("TIOCSTI|1<<32", TIOCSTI | (1 << 32))):
            # WRONG as the argument: were the call allowed on a real tty, it would fail with EFAULT, never inject
            r = sysc("ioctl", fd, cmd, WRONG)
            try:
                target = os.readlink("/proc/self/fd/%d" % fd) if fd >= 0 else None
            except OSError:
                target = None
            out["fd%d %s" % (fd, name)] = dict(r, target=target)
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
        try:
            out["/dev/tty"] = {"opened": True, "TIOCSTI": sysc("ioctl", fd, TIOCSTI, WRONG)}
        finally:
            os.close(fd)
    except OSError as e:
        out["/dev/tty"] = dict(oserr(e), opened=False)
    stat_fields = read_text("/proc/self/stat").rsplit(")", 1)[-1].split()
    out["tty_nr"] = int(stat_fields[4]) if len(stat_fields) > 4 else None
    out["sid"] = os.getsid(0)
    out["pid"] = os.getpid()
    return out


# ---- E2: nested user namespaces, cgroupfs --------------------------------------------------------------

def _clone_child(flags):
    def go():
        r = sysc("clone", flags | SIGCHLD, 0, 0, 0, 0)
        if r["ret"] == 0:
            os._exit(0)  # the (unexpected) new child
        if r["ret"] > 0:
            os.waitpid(r["ret"], 0)
        return r
    return in_child(go)


def _clone3_child(flags):
    def go():
        args = ctypes.create_string_buffer(struct.pack("<11Q", flags, 0, 0, 0, SIGCHLD, 0, 0, 0, 0, 0, 0), 88)
        r = sysc("clone3", ctypes.addressof(args), 88)
        if r["ret"] == 0:
            os._exit(0)
        if r["ret"] > 0:
            os.waitpid(r["ret"], 0)
        return r
    return in_child(go)


def _run(argv, timeout=10):
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        return {"rc": p.returncode, "out": (p.stdout + p.stderr).decode("utf-8", "replace")[-400:]}
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"rc": None, "out": repr(e)}


def probe_userns_cgroup():
    out = {"unshare(CLONE_NEWUSER)": in_child(lambda: sysc("unshare", CLONE_NEWUSER)),
           "clone(CLONE_NEWUSER)": _clone_child(CLONE_NEWUSER),
           "clone3(CLONE_NEWUSER)": _clone3_child(CLONE_NEWUSER)}
    os.makedirs("/tmp/e2-cg", exist_ok=True)
    src, target, fstype, opts = (ctypes.create_string_buffer(s) for s in (b"cgroup", b"/tmp/e2-cg", b"cgroup", b"memory"))
    out["mount(cgroup)"] = in_child(lambda: sysc("mount", ctypes.addressof(src), ctypes.addressof(target),
                                                  ctypes.addressof(fstype), 0, ctypes.addressof(opts)))
    out["unshare -Urm (util-linux)"] = _run(["/usr/bin/unshare", "-Urm", "/bin/true"])
    out["bwrap --unshare-user"] = _run(["/usr/bin/bwrap", "--unshare-user", "--ro-bind", "/", "/", "/bin/true"])
    cg = {"/sys": os.path.exists("/sys"), "/sys/fs/cgroup": os.path.exists("/sys/fs/cgroup")}
    if cg["/sys/fs/cgroup"]:
        st = os.statvfs("/sys/fs/cgroup")
        cg["read_only"] = bool(st.f_flag & os.ST_RDONLY)
        cg["writable_access"] = os.access("/sys/fs/cgroup", os.W_OK)
    agents = {}
    for base in ("/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/cpu",
                 "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/rdma", "/sys/fs/cgroup/devices"):
        path = os.path.join(base, "release_agent")
        if os.path.exists(path):
            try:
                os.close(os.open(path, os.O_WRONLY))  # opened, never written
                agents[path] = {"ok": True}
            except OSError as e:
                agents[path] = oserr(e)
    cg["release_agents"] = agents
    cg["cgroup_mounts"] = [l for l in read_text("/proc/self/mountinfo").splitlines() if " cgroup" in l]
    out["cgroupfs"] = cg
    return out


# ---- E3: leaked descriptors, /proc/<pid>/exe ---------------------------------------------------------------

def _socket_index():
    """socket inode -> description, from this network namespace's tables."""
    index = {}
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        lines = read_text("/proc/net/" + proto).splitlines()[1:]
        for line in lines:
            f = line.split()
            if len(f) < 10:
                continue
            def addr(a):
                host, port = a.split(":")
                if len(host) == 8:
                    ip = socket.inet_ntoa(bytes.fromhex(host)[::-1])
                else:
                    ip = host
                return "%s:%d" % (ip, int(port, 16))
            index[f[9]] = {"proto": proto, "local": addr(f[1]), "remote": addr(f[2]), "state": f[3]}
    for line in read_text("/proc/net/unix").splitlines()[1:]:
        f = line.split()
        if len(f) >= 7:
            index[f[6]] = {"proto": "unix", "path": f[7] if len(f) > 7 else ""}
    return index


def probe_fds():
    entries = sorted(int(x) for x in os.listdir("/proc/self/fd"))  # the listing's own fd is closed again
    socks = _socket_index()
    fds = {}
    for fd in entries:
        try:
            target = os.readlink("/proc/self/fd/%d" % fd)
        except OSError as e:
            target = "error: " + errname(e.errno)
        info = {"target": target}
        if target.startswith("socket:["):
            info["socket"] = socks.get(target[8:-1], "unknown (another namespace?)")
        try:
            flags = int(dict(l.split(":\t", 1) for l in read_text("/proc/self/fdinfo/%d" % fd).splitlines()
                             if ":\t" in l).get("flags", "0"), 8)
            info["cloexec"] = bool(flags & 0o2000000)
            info["access"] = {0: "read", 1: "write", 2: "read-write"}.get(flags & 3)
        except ValueError:
            pass
        fds[str(fd)] = info
    # every fd number: a directory fd (CVE-2024-21626) would give fchdir/openat access to what it names
    dirs, escapes = {}, {}
    cwd = os.getcwd()
    for fd in range(1024):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            d = {}
            try:
                os.fchdir(fd)
                d["cwd"] = os.getcwd()
                d["entries"] = sorted(os.listdir("."))[:20]
            except OSError as e:
                d["fchdir"] = oserr(e)
            finally:
                os.chdir(cwd)
            dirs[str(fd)] = d
        try:
            nfd = os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            try:
                escapes[str(fd)] = {"openat_dotdot": "opened", "entries": sorted(os.listdir(nfd))[:20]}
            finally:
                os.close(nfd)
        except OSError as e:
            if e.errno != errno.ENOTDIR:
                escapes[str(fd)] = oserr(e)
    exes = {}
    for pid in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int):
        path = "/proc/%s/exe" % pid
        e = {"comm": read_text("/proc/%s/comm" % pid).strip()}
        try:
            e["target"] = os.readlink(path)
        except OSError as x:
            e["target"] = "error: " + errname(x.errno)
        try:
            os.close(os.open(path, os.O_WRONLY))  # opened, never written
            e["open_wronly"] = "OK"
        except OSError as x:
            e["open_wronly"] = errname(x.errno)
        try:
            sv = os.statvfs(path)
            e["fs_read_only"] = bool(sv.f_flag & os.ST_RDONLY)
            st = os.stat(path)
            e["owner"] = st.st_uid
            e["mode"] = oct(st.st_mode & 0o7777)
        except OSError as x:
            e["stat"] = errname(x.errno)
        e["access_w"] = os.access(path, os.W_OK)
        exes[pid] = e
    return {"fds": fds, "dir_fds": dirs, "openat_dotdot": escapes, "exe": exes, "cwd": cwd,
            "runtime_api": os.environ.get("AWS_LAMBDA_RUNTIME_API")}


# ---- E4/E5: try-syscall ---------------------------------------------------------------------------------

def probe_syscalls():
    s = {}
    # E4: io_uring
    s["io_uring_setup"] = sysc("io_uring_setup", 1, WRONG)        # allowed: EFAULT
    s["io_uring_enter"] = sysc("io_uring_enter", -1, 0, 0, 0, 0, 0)  # allowed: EBADF
    s["io_uring_register"] = sysc("io_uring_register", -1, 0, 0, 0)  # allowed: EBADF
    # E5: keyrings
    s["keyctl"] = sysc("keyctl", 0x7FFF, 0, 0, 0, 0)               # allowed: EOPNOTSUPP
    s["add_key"] = sysc("add_key", WRONG, WRONG, 0, 0, -3)          # allowed: EFAULT
    s["request_key"] = sysc("request_key", WRONG, WRONG, 0, 0)      # allowed: EFAULT
    # bpf, perf, userfaultfd
    s["bpf"] = sysc("bpf", 0, WRONG, 72)                            # allowed: EFAULT (or EPERM by sysctl)
    s["perf_event_open"] = sysc("perf_event_open", WRONG, 0, -1, -1, 0)  # allowed: EFAULT
    s["userfaultfd"] = sysc("userfaultfd", -1)                      # allowed: EINVAL (or EPERM by sysctl)
    # ptrace
    s["ptrace(PEEKUSER, 0)"] = sysc("ptrace", 3, 0, 0, 0)           # allowed: ESRCH
    s["ptrace(ATTACH, 1)"] = sysc("ptrace", 16, 1, 0, 0)            # allowed: EPERM (other uid) — not telling
    sib = os.fork()
    if sib == 0:
        time.sleep(10)
        os._exit(0)
    try:
        r = sysc("ptrace", 16, sib, 0, 0)                           # allowed: 0 (same uid, own child)
        if r["ret"] == 0:
            os.waitpid(sib, 0)
            sysc("ptrace", 17, sib, 0, 0)                           # PTRACE_DETACH
        s["ptrace(ATTACH, sibling)"] = r
        s["process_vm_readv(sibling)"] = sysc("process_vm_readv", sib, WRONG, 1, WRONG, 1, 0)  # allowed: EFAULT
        s["process_vm_writev(sibling)"] = sysc("process_vm_writev", sib, WRONG, 1, WRONG, 1, 0)
    finally:
        os.kill(sib, signal.SIGKILL)
        os.waitpid(sib, 0)
    s["ptrace(TRACEME)"] = in_child(lambda: sysc("ptrace", 0, 0, 0, 0))  # allowed: 0
    s["kcmp"] = sysc("kcmp", os.getpid(), os.getpid(), 99, 0, 0)    # allowed: EINVAL
    # kexec, modules
    s["kexec_load"] = sysc("kexec_load", 0, 0, 0, 0)
    s["kexec_file_load"] = sysc("kexec_file_load", -1, -1, 0, WRONG, 0)
    s["init_module"] = sysc("init_module", WRONG, 0, WRONG)
    s["finit_module"] = sysc("finit_module", -1, WRONG, 0)
    s["delete_module"] = sysc("delete_module", WRONG, 0)
    # mounts and roots
    s["mount"] = sysc("mount", WRONG, WRONG, WRONG, 0, WRONG)       # allowed: EFAULT
    s["umount2"] = sysc("umount2", WRONG, 0)                         # allowed: EFAULT
    s["pivot_root"] = sysc("pivot_root", WRONG, WRONG)
    s["chroot"] = sysc("chroot", WRONG)                              # allowed: EFAULT
    s["open_tree"] = sysc("open_tree", -1, WRONG, 0)                 # allowed: EFAULT
    s["move_mount"] = sysc("move_mount", -1, WRONG, -1, WRONG, 0)
    s["fsopen"] = sysc("fsopen", WRONG, 0)
    s["fsconfig"] = sysc("fsconfig", -1, 0, 0, 0, 0)                 # allowed: EBADF
    s["fsmount"] = sysc("fsmount", -1, 0, 0)
    s["fspick"] = sysc("fspick", -1, WRONG, 0)
    s["mount_setattr"] = sysc("mount_setattr", -1, WRONG, 0, WRONG, 0)
    s["name_to_handle_at"] = sysc("name_to_handle_at", -100, WRONG, WRONG, WRONG, 0)  # allowed: EFAULT
    s["open_by_handle_at"] = sysc("open_by_handle_at", -1, WRONG, 0)
    # namespaces
    s["setns"] = sysc("setns", -1, 0)                                # allowed: EBADF
    for ns, flag in NAMESPACES.items():
        s["unshare(%s)" % ns] = in_child(lambda flag=flag: sysc("unshare", flag))
        if ns != "time":  # CLONE_NEWTIME only exists for unshare/clone3 (in clone it is the exit signal)
            s["clone(%s)" % ns] = _clone_child(flag)
    s["clone3"] = _clone3_child(0)                                   # any clone3: ENOSYS (libc falls back)
    # personality with flags that weaken the process (ASLR off, executable data, page zero)
    for name, flag in (("ADDR_NO_RANDOMIZE", 0x0040000), ("READ_IMPLIES_EXEC", 0x0400000),
                       ("MMAP_PAGE_ZERO", 0x0100000), ("ADDR_COMPAT_LAYOUT", 0x0200000)):
        s["personality(%s)" % name] = in_child(lambda flag=flag: sysc("personality", flag))
    s["personality(query)"] = sysc("personality", 0xFFFFFFFF)        # must stay allowed (libc, python use it)
    # host settings
    s["syslog"] = sysc("syslog", 99, 0, 0)
    s["reboot"] = sysc("reboot", 0, 0, 0, 0)
    s["swapon"] = sysc("swapon", WRONG, 0)
    s["sethostname"] = sysc("sethostname", WRONG, 1)
    s["settimeofday"] = sysc("settimeofday", WRONG, 0)
    s["acct"] = sysc("acct", WRONG)
    s["iopl"] = sysc("iopl", 4)
    # NUMA memory-policy calls (flatpak blocks them; informational)
    info = {"mbind": sysc("mbind", 0, 0, 99, 0, 0, 0), "set_mempolicy": sysc("set_mempolicy", 99, 0, 0),
            "get_mempolicy": sysc("get_mempolicy", 0, WRONG, 1 << 20, 0, 0),
            "migrate_pages": sysc("migrate_pages", -1, 0, 0, 0),
            "move_pages": sysc("move_pages", 0, 1, WRONG, 0, WRONG, 0)}
    tmp = ctypes.create_string_buffer(b"/tmp")
    info["chroot(/tmp)"] = in_child(lambda: sysc("chroot", ctypes.addressof(tmp)))  # the kernel's own check
    return {"syscalls": s, "info": info, "uname": os.uname().machine}


# ---- E9 / E14: /proc -----------------------------------------------------------------------------------

def probe_proc():
    procs = {}
    for pid in sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int):
        p = {"cmdline": read_text("/proc/%s/cmdline" % pid).replace("\0", " ").strip()[:300]}
        st = status_fields("/proc/%s/status" % pid)
        p["uid"] = st.get("Uid")
        p["ppid"] = st.get("PPid")
        for what in ("environ", "cwd", "root", "mem"):
            path = "/proc/%s/%s" % (pid, what)
            try:
                if what in ("cwd", "root"):
                    p[what] = "readable: " + os.readlink(path)
                    os.listdir(path)
                    p[what] += " (listable)"
                else:
                    with open(path, "rb") as f:
                        if what == "mem":
                            p[what] = "opened"
                        else:
                            f.read(1)
                            p[what] = "readable"
            except OSError as e:
                p[what] = errname(e.errno)
        procs[pid] = p
    st = status_fields()
    keys = ("Uid", "Gid", "Groups", "NoNewPrivs", "Seccomp", "Seccomp_filters", "CapInh", "CapPrm", "CapEff",
            "CapBnd", "CapAmb", "NSpid")
    return {"pids": procs, "self_pid": os.getpid(), "status": {k: st.get(k) for k in keys},
            "cgroup": read_text("/proc/self/cgroup"), "pid_ns": os.readlink("/proc/self/ns/pid"),
            "uid_map": read_text("/proc/self/uid_map"),
            "pid1_status": {k: v for k, v in status_fields("/proc/1/status").items() if k in keys or k == "Name"},
            "dumpable": libc.prctl(3, 0, 0, 0, 0)}


def probe_other_pids(pids, secret):
    """E9: another sandbox's processes, named by their host pids: not reachable here (another pid namespace)."""
    out = {}
    for pid in pids:
        r = {}
        for what in ("environ", "cmdline"):
            try:
                with open("/proc/%d/%s" % (pid, what), "rb") as f:
                    data = f.read()
                r[what] = "readable" + (" (HAS THE SECRET)" if secret.encode() in data else "")
            except OSError as e:
                r[what] = errname(e.errno)
        for what in ("root", "cwd"):
            try:
                r[what] = os.readlink("/proc/%d/%s" % (pid, what))
            except OSError as e:
                r[what] = errname(e.errno)
        out[str(pid)] = r
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open("/proc/%s/environ" % pid, "rb") as f:
                if secret.encode() in f.read():
                    found.append(pid)
        except OSError:
            pass
    return {"by_host_pid": out, "secret_in_environ_of": found}


# ---- E6: connect scan ----------------------------------------------------------------------------------

def local_addresses():
    addrs, lines = set(), read_text("/proc/net/fib_trie").splitlines()
    for i, line in enumerate(lines):
        if "/32 host LOCAL" in line and i > 0:
            addrs.add(lines[i - 1].split()[-1])
    return sorted(addrs)


def scan(targets, timeout):
    """Non-blocking connects to all targets at once: "open", an errno name, or "timeout"."""
    results, pending = {}, {}
    poller = select.poll()
    for host, port in targets:
        key = "%s:%d" % (host if ":" not in host else "[%s]" % host, port)
        if key in results or key in [v[1] for v in pending.values()]:
            continue
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            s = socket.socket(fam, socket.SOCK_STREAM)
        except OSError as e:
            results[key] = errname(e.errno)
            continue
        s.setblocking(False)
        rc = s.connect_ex((host, port))
        if rc == 0:
            results[key] = "open"
            s.close()
        elif rc in (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK):
            pending[s.fileno()] = (s, key)
            poller.register(s.fileno(), select.POLLOUT | select.POLLERR | select.POLLHUP)
        else:
            results[key] = errname(rc)
            s.close()
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for fd, _ in poller.poll(max(1, int((deadline - time.monotonic()) * 1000))):
            s, key = pending.pop(fd)
            poller.unregister(fd)
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            results[key] = "open" if err == 0 else errname(err)
            s.close()
    for s, key in pending.values():
        results[key] = "timeout"
        s.close()
    return results


# ---- E10: shared state -----------------------------------------------------------------------------------

IPC_CREAT, IPC_RMID = 0o1000, 0


def plant(marker, key):
    out = {}
    for d in ("/tmp", "/dev/shm"):
        try:
            with open("%s/e10-%s" % (d, marker), "w") as f:
                f.write(marker)
            out[d] = {"ok": True}
        except OSError as e:
            out[d] = oserr(e)
    libc.shmget.restype = ctypes.c_int
    ctypes.set_errno(0)
    shmid = libc.shmget(ctypes.c_int(key), ctypes.c_size_t(4096), ctypes.c_int(IPC_CREAT | 0o666))
    out["shm"] = {"shmid": shmid, "err": errname(ctypes.get_errno() if shmid == -1 else 0)}
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind("\0lamina-e10-" + marker)
        s.listen(4)
        KEEP.append(s)
        out["abstract"] = {"ok": True}
    except OSError as e:
        out["abstract"] = oserr(e)
    return out


def look(marker, key):
    out = {}
    for d in ("/tmp", "/dev/shm"):
        try:
            out[d] = {"entries": sorted(os.listdir(d)), "has_marker": os.path.exists("%s/e10-%s" % (d, marker))}
        except OSError as e:
            out[d] = oserr(e)
    libc.shmget.restype = ctypes.c_int
    ctypes.set_errno(0)
    shmid = libc.shmget(ctypes.c_int(key), ctypes.c_size_t(0), ctypes.c_int(0))
    out["shm"] = {"shmid": shmid, "err": errname(ctypes.get_errno() if shmid == -1 else 0)}
    sysvipc = read_text("/proc/sysvipc/shm").splitlines()[1:]
    out["sysvipc_keys"] = [int(l.split()[0]) for l in sysvipc if l.split()]
    try:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.settimeout(2)
        c.connect("\0lamina-e10-" + marker)
        c.close()
        out["abstract"] = {"connected": True}
    except OSError as e:
        out["abstract"] = dict(oserr(e), connected=False)
    out["abstract_listed"] = ("@lamina-e10-" + marker) in read_text("/proc/net/unix")
    return out


# ---- E11: daemons ------------------------------------------------------------------------------------------

def spawn_daemon(argv0):
    """Double fork + setsid; the daemon ignores SIGTERM/SIGHUP/SIGINT (inherited across exec), sleeps."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                fd = os.open("/dev/null", os.O_RDWR)
                for target in (0, 1, 2):
                    os.dup2(fd, target)
                for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                    signal.signal(sig, signal.SIG_IGN)
                os.execv("/usr/bin/sleep", [argv0, "1000"])
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


# ---- E7: Runtime API ---------------------------------------------------------------------------------------

def rapi_post(rid, kind, body):
    api = os.environ["AWS_LAMBDA_RUNTIME_API"]
    url = "http://%s/2018-06-01/runtime/invocation/%s/%s" % (api, rid, kind)
    headers = {"Content-Type": "application/json"}
    if kind == "error":
        headers["Lambda-Runtime-Function-Error-Type"] = "Hijack"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return {"status": r.status, "body": r.read(500).decode("utf-8", "replace")}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": e.read(500).decode("utf-8", "replace")}
    except OSError as e:
        return {"status": None, "error": repr(e)}


# ---- handler ---------------------------------------------------------------------------------------------

def handler(event, context):
    global COUNT
    COUNT += 1
    op = event.get("op", "echo")
    if op == "echo":
        return {"op": op, "count": COUNT, "pid": os.getpid()}
    if op == "inside":
        # the in-process probes (this is the runtime's own process: its fds, its status), then the syscall probes
        # in a child interpreter (anything that would succeed changes only that child)
        report = {"tty": probe_tty(), "fds": probe_fds(), "proc": probe_proc()}
        p = subprocess.run([sys.executable, __file__, "syscalls"], capture_output=True, timeout=30)
        try:
            report.update(json.loads(p.stdout))
        except ValueError:
            report["syscalls_error"] = (p.stdout + p.stderr).decode("utf-8", "replace")[-2000:]
        report["userns"] = probe_userns_cgroup()
        report["child_status"] = json.loads(subprocess.run(
            [sys.executable, "-c", "import json; print(json.dumps({l.split(':')[0]: l.split(':', 1)[1].strip() "
             "for l in open('/proc/self/status') if ':' in l}))"], capture_output=True, timeout=10).stdout)
        return report
    if op == "scan":
        return {"results": scan([tuple(t) for t in event["targets"]], float(event.get("timeout", 2))),
                "local_addresses": local_addresses(),
                "interfaces": sorted(n for _, n in socket.if_nameindex()),
                "runtime_api": os.environ.get("AWS_LAMBDA_RUNTIME_API")}
    if op == "plant":
        return plant(event["marker"], int(event["key"]))
    if op == "look":
        return look(event["marker"], int(event["key"]))
    if op == "other_pids":
        return probe_other_pids(event["pids"], event["secret"])
    if op == "hold":
        print("E7-HOLD %s" % context.aws_request_id, flush=True)
        time.sleep(float(event["seconds"]))
        return {"from": "holder", "request_id": context.aws_request_id}
    if op == "hijack":
        rid = event["rid"]
        return {"response": rapi_post(rid, "response", {"from": "hijacker"}),
                "error": rapi_post(rid, "error", {"errorType": "Hijack", "errorMessage": "hijacked"}),
                "own_request_id": context.aws_request_id}
    if op == "daemons":
        spawn_daemon("lamina-e11-" + event["marker"])
        spawn_daemon("kworker-e11")  # no marker: found on the host by its pid namespace only
        return {"op": op, "spawned": 2, "pid_ns": os.readlink("/proc/self/ns/pid")}
    if op == "sleep":
        time.sleep(float(event["seconds"]))
        return {"slept": event["seconds"]}
    raise ValueError("unknown op %r" % op)


if __name__ == "__main__" and sys.argv[1:] == ["syscalls"]:
    print(json.dumps(probe_syscalls()))
'''


def escape_zip() -> bytes:
    return make_zip({"handler.py": ESCAPE_PY})
