"""Starts the Release server for a benchmark: `with running_server() as port: ...` (free port, temp data dir)."""
import contextlib, os, re, shutil, signal, subprocess, tempfile, zipfile, io

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def running_server(dll=None, env=None, data=None, args=()):
    # data: a data directory to serve (kept afterwards); by default a temp one, removed afterwards.
    keep, data = data is not None, data or tempfile.mkdtemp(prefix="lamina-bench-")
    # LAMINA_BENCH_DLL (or dll): run that build of the server instead (A/B runs against a saved copy of artifacts/bin/...).
    dll = dll or os.environ.get("LAMINA_BENCH_DLL")
    command = ["dotnet", dll] if dll else [os.path.join(ROOT, "lamina")]
    server = subprocess.Popen([*command, "serve", "--port", "0", "--data", data, *args], env=dict(os.environ, **(env or {})),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = None
        for line in server.stdout:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        if port is None:
            raise RuntimeError("the server did not start")
        yield port
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        if not keep:
            shutil.rmtree(data, ignore_errors=True)


def cpu_seconds(port):
    """A clock of the CPU (user + system) the server listening on `port` has used: call it before and after."""
    pid = int(subprocess.check_output(["bash", "-c", f"ss -ltnp | grep ':{port} ' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2"]))
    ticks_per_second = os.sysconf("SC_CLK_TCK")

    def clock():
        with open(f"/proc/{pid}/stat") as f:
            return sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:13]) / ticks_per_second
    return clock


def zip_of(files, executables=("bootstrap",)):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o755 if name in executables else 0o644) << 16
            z.writestr(info, text)
    return buf.getvalue()


def percentile(samples, q):
    samples = sorted(samples)
    return samples[min(len(samples) - 1, int(len(samples) * q))]
