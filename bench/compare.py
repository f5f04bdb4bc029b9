#!/usr/bin/env python3
"""Lamina's benchmark scenarios in one run (bench/run.sh installs wrk and serverless-offline, then calls this).

    python3 bench/compare.py [warm|cold|burst|memory|async|all]

warm    Warm invoke latency and throughput with wrk at 1 and 16 connections (p50, p99, requests/s), for Lamina's
        Node.js, Python, provided and .NET echo functions, the same Node.js handler on serverless-offline
        (serverless@3 + serverless-offline@13, its Invoke endpoint), and three floors: a bare Node.js HTTP echo server,
        a bare Kestrel echo (bench/KestrelFloor, built on first use, on Lamina's I/O settings), and the same Kestrel
        relaying each body to one of 16 byte-echo processes and back (bench/relay_echo.py): a warm invoke's two
        exchanges, caller ↔ server ↔ runtime, with nothing else. Beside each cell, CPU per request (µs, from
        /proc/PID/stat utime+stime over the wrk run divided by its requests): the server's own process ("srv"), and
        its descendants ("rt": the sandboxes' runtimes and bwrap); for serverless-offline and the floors the whole
        process tree counts as the server. "alloc B": bytes the server allocated per request (its
        dotnet_gc_heap_total_allocated counter on /metrics, read before and after the run).
        LAMINA_BENCH_TARGETS=python-echo,node-echo measures only those Lamina functions (quick A/B runs);
        LAMINA_BENCH_WARMUP (seconds, default 20) is the warm-up at 16 connections before each Lamina function.
cold    Cold start per runtime, by phase (bench/cold_start_phases.py), beside the runtimes' bare process start.
burst   N parallel first invocations of one function (N = 10, 40, 100).
memory  The platform's memory per idle environment: PSS of its bwrap and pasta processes (smaps_rollup), and the
        server's own growth per environment.
async   Durable Event accepts per second (each committed and fsync'd before its 202), 16 connections.
"""
import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lamina_server import ROOT, percentile, running_server, zip_of  # noqa: E402

SECONDS = int(os.environ.get("LAMINA_BENCH_SECONDS", "10"))
# Warm-up before each Lamina function's cells, at 16 connections: the server's tiered JIT, and each of the 16 runtimes'
# own JIT (V8 tiers up per process: with a 3 s warm-up Node's CPU per invoke at 16 connections was twice its steady state).
# The server's JIT thread still spent 10 µs per invoke between 8 and 16 s of load, 1–3 µs after 16 s (bench/threads.py's
# thread names, 8 s windows): 20 s, so that a cell measures the warm path rather than its compilation.
WARMUP_SECONDS = int(os.environ.get("LAMINA_BENCH_WARMUP", "20"))
NODE_ECHO = "exports.handler = async (event) => event;\n"
FUNCTIONS = {
    "node-echo": ("nodejs20.x", "index.handler", {"index.js": NODE_ECHO}, b'{"x":1}'),
    "python-echo": ("python3.12", "app.handler", {"app.py": "def handler(e, c):\n    return e\n"}, b'{"x":1}'),
    "provided-echo": ("provided.al2023", "none", {"bootstrap": (
        "#!/usr/bin/python3\n"
        "import http.client, os\n"
        "c = http.client.HTTPConnection(os.environ['AWS_LAMBDA_RUNTIME_API'])\n"
        "while True:\n"
        "    c.request('GET', '/2018-06-01/runtime/invocation/next'); r = c.getresponse(); body = r.read()\n"
        "    rid = r.getheader('Lambda-Runtime-Aws-Request-Id')\n"
        "    c.request('POST', f'/2018-06-01/runtime/invocation/{rid}/response', body=body); c.getresponse().read()\n")},
        b'{"x":1}'),
}


# ---- tools -----------------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def wrk(url: str, connections: int, body: bytes, headers: dict | None = None, seconds: int = SECONDS) -> dict:
    """Runs wrk (POST, keep-alive) and returns requests/s, p50 and p99 in ms, and non-2xx responses."""
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body.decode())}", 'wrk.headers["Content-Type"] = "application/json"']
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in (headers or {}).items()]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(lines) + "\n")
    try:
        out = subprocess.run(["wrk", f"-t{min(connections, 2)}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script.name, url],
                             capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)

    def latency(q: str) -> float:
        m = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": latency("50"), "p99": latency("99"),
            "errors": int(non2xx.group(1)) if non2xx else 0, "requests": int(re.search(r"(\d+) requests in", out).group(1))}


CLOCK_TICK_US = 1_000_000 / os.sysconf("SC_CLK_TCK")


def tree_cpu_us(root: int) -> dict[int, float]:
    """CPU time (utime + stime, µs) of process `root` (key 0) and of each of its live descendants (by pid)."""
    ppid, cpu = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        ppid[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) * CLOCK_TICK_US
    children: dict[int, list[int]] = {}
    for pid, parent in ppid.items():
        children.setdefault(parent, []).append(pid)
    tree, stack = {0: cpu.get(root, 0.0)}, list(children.get(root, []))
    while stack:
        pid = stack.pop()
        tree[pid] = cpu.get(pid, 0.0)
        stack.extend(children.get(pid, []))
    return tree


def allocated_bytes(metrics_url: str | None) -> float | None:
    """The server's dotnet_gc_heap_total_allocated counter (bytes), or None without one (an older build, not Lamina)."""
    if not metrics_url:
        return None
    try:
        with urllib.request.urlopen(metrics_url, timeout=10) as r:
            m = re.search(r"^dotnet_gc_heap_total_allocated\S* (\S+)$", r.read().decode(), re.M)
        return float(m.group(1)) if m else None
    except OSError:
        return None


def wrk_cpu(url: str, connections: int, body: bytes, pid: int | None, metrics_url: str | None = None) -> dict:
    """wrk, plus the CPU per request of `pid` ("server_us") and of its descendants ("sandbox_us"); a descendant that
    ended during the run (an environment evicted) is left out, one that started counts from its start. With
    `metrics_url`, the server's allocation per request ("alloc")."""
    before = tree_cpu_us(pid) if pid else {}
    allocated = allocated_bytes(metrics_url)
    result = wrk(url, connections, body)
    if pid:
        after = tree_cpu_us(pid)
        result["server_us"] = (after[0] - before[0]) / result["requests"]
        result["sandbox_us"] = sum(us - before.get(p, 0.0) for p, us in after.items() if p != 0) / result["requests"]
    allocated_after = allocated_bytes(metrics_url)
    if allocated is not None and allocated_after is not None:
        # The two scrapes' own allocation (a few KB) is spread over thousands of requests.
        result["alloc"] = (allocated_after - allocated) / result["requests"]
    return result


def listener_pid(port: int) -> int:
    out = subprocess.run(["sh", "-c", f"ss -ltnpH 'sport = :{port}' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2"],
                         capture_output=True, text=True).stdout.strip()
    return int(out or 0)


def create(conn: http.client.HTTPConnection, name: str, runtime: str, handler: str, files: dict | None = None,
           code: bytes | None = None, **extra) -> None:
    body = {"FunctionName": name, "Runtime": runtime, "Handler": handler, "Role": "arn:aws:iam::000000000000:role/bench",
            "Code": {"ZipFile": base64.b64encode(code or zip_of(files)).decode()}, **extra}
    conn.request("POST", "/2015-03-31/functions", body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    text = r.read()
    assert r.status == 201, (r.status, text)


def invoke(port: int, name: str, body: bytes = b"{}", headers: dict | None = None) -> tuple[int, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    t = time.perf_counter()
    conn.request("POST", f"/2015-03-31/functions/{name}/invocations", body=body, headers=headers or {})
    r = conn.getresponse()
    r.read()
    conn.close()
    return r.status, (time.perf_counter() - t) * 1000


def dotnet_hello() -> bytes | None:
    """The integration tests' .NET hello world (built once, cached), or None when it cannot be built here."""
    try:
        sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
        import test_dotnet  # noqa: PLC0415
        return test_dotnet._build_functions()["hello10"]
    except Exception as e:  # noqa: BLE001 - the bench goes on without .NET
        print(f"  (.NET function not built: {e})")
        return None


# ---- warm --------------------------------------------------------------------------------------------------------------
def floor_server() -> tuple[subprocess.Popen, int]:
    port = free_port()
    code = ("require('http').createServer((q, s) => { const c = []; q.on('data', d => c.push(d)); "
            "q.on('end', () => { const b = Buffer.concat(c); s.writeHead(200, {'Content-Type': 'application/json', "
            "'Content-Length': b.length}); s.end(b); }); }).listen(%d, '127.0.0.1');" % port)
    process = subprocess.Popen(["node", "-e", code])
    wait_port(port)
    return process, port


def kestrel_floor(relay_processes: int = 0) -> tuple[subprocess.Popen, int] | None:
    """bench/KestrelFloor (a bare Kestrel echo), built in Release on first use; with relay_processes, each request's body
    goes to one of that many byte-echo processes (bench/relay_echo.py, children of the floor's process: its tree's CPU)
    and back — the two exchanges of a warm invoke and nothing else."""
    dll = os.path.join(ROOT, "artifacts", "bin", "KestrelFloor", "release", "KestrelFloor.dll")
    build = subprocess.run(["dotnet", "build", os.path.join(ROOT, "bench", "KestrelFloor"), "-c", "Release", "-nologo", "-v", "quiet",
                            "-clp:ErrorsOnly"], capture_output=True, text=True)
    if build.returncode != 0 or not os.path.exists(dll):
        print(f"  (bench/KestrelFloor did not build: {build.stdout[-500:]}{build.stderr[-500:]})")
        return None
    port = free_port()
    relay = []
    if relay_processes:
        echo = free_port()  # the first of relay_processes consecutive ports; another process may hold one: checked below
        relay = ["--relay", str(echo), "--processes", str(relay_processes)]
        echoes = " ".join(f"{sys.executable} {os.path.join(ROOT, 'bench', 'relay_echo.py')} {echo + i} &" for i in range(relay_processes))
        # The echo processes are the floor process's children (a shell's), so that its tree's CPU includes them.
        command = ["bash", "-c", f"{echoes} exec dotnet {dll} --urls http://127.0.0.1:{port} {' '.join(relay)}"]
    else:
        command = ["dotnet", dll, "--urls", f"http://127.0.0.1:{port}"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_port(port)
    for i in range(relay_processes):
        wait_port(echo + i)
    return process, port


def serverless_offline() -> tuple[subprocess.Popen, int] | None:
    install = os.environ.get("LAMINA_BENCH_SERVERLESS", os.path.expanduser("~/.cache/lamina-bench/serverless"))
    binary = os.path.join(install, "node_modules", ".bin", "serverless")
    if not os.path.exists(binary):
        print(f"  (serverless-offline is not installed in {install}: run bench/run.sh)")
        return None
    service = tempfile.mkdtemp(prefix="lamina-bench-sls-")
    lambda_port, http_port = free_port(), free_port()
    with open(os.path.join(service, "handler.js"), "w") as f:
        f.write(NODE_ECHO)
    with open(os.path.join(service, "serverless.yml"), "w") as f:
        f.write("service: bench\nframeworkVersion: '3'\nprovider:\n  name: aws\n  runtime: nodejs20.x\n  stage: dev\n"
                "  region: us-east-1\nfunctions:\n  echo:\n    handler: handler.handler\nplugins:\n  - serverless-offline\n")
    os.symlink(os.path.join(install, "node_modules"), os.path.join(service, "node_modules"))
    env = dict(os.environ, SLS_TELEMETRY_DISABLED="1", SLS_NOTIFICATIONS_MODE="off", SLS_DEPRECATION_DISABLE="*",
               AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    process = subprocess.Popen([binary, "offline", "start", "--lambdaPort", str(lambda_port), "--httpPort", str(http_port),
                                "--websocketPort", str(free_port()), "--albPort", str(free_port())],
                               cwd=service, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_port(lambda_port, 120)
    return process, lambda_port


def warm() -> None:
    print(f"\n## warm invoke ({SECONDS} s per cell; wrk, keep-alive, POST {{\"x\":1}})")
    print("CPU µs per request: srv = the server process (for serverless-offline and the floors: its whole process tree),"
          " rt = the server's descendants (the runtimes, bwrap); alloc B = the server's managed allocation per request")
    columns = [("p50 ms", 8, ".3f", "p50"), ("p99 ms", 8, ".2f", "p99"), ("req/s", 8, ".0f", "rps"),
               ("srv µs", 8, ".0f", "server_us"), ("rt µs", 7, ".0f", "sandbox_us"), ("alloc B", 9, ".0f", "alloc")]
    width = sum(w for _, w, _, _ in columns)
    print(f"{'':<30}{'1 connection':^{width}}|{'16 connections':^{width}}")
    print(f"{'target':<30}" + "".join(f"{name:>{width}}" for name, width, _, _ in columns) + "|"
          + "".join(f"{name:>{width}}" for name, width, _, _ in columns))
    rows = {}
    only = [t for t in os.environ.get("LAMINA_BENCH_TARGETS", "").split(",") if t]

    def measure(label: str, url: str, body: bytes = b'{"x":1}', pid: int | None = None, tree: bool = False,
                metrics_url: str | None = None) -> None:
        one = wrk_cpu(url, 1, body, pid, metrics_url)
        many = wrk_cpu(url, 16, body, pid, metrics_url)
        rows[label] = (one, many)
        errors = one["errors"] + many["errors"]
        if tree and pid:
            for r in (one, many):
                r["server_us"], r["sandbox_us"] = r["server_us"] + r["sandbox_us"], float("nan")

        def cells(r: dict) -> str:
            return "".join(f"{r.get(key, float('nan')):>{width}{fmt}}" for _, width, fmt, key in columns)

        print(f"{label:<30}{cells(one)}|{cells(many)}" + (f"  ({errors} non-2xx)" if errors else ""), flush=True)

    if not only:
        floor, floor_port = floor_server()
        try:
            measure("floor: bare node http echo", f"http://127.0.0.1:{floor_port}/", pid=floor.pid, tree=True)
        finally:
            floor.terminate()
        for label, relay_processes in (("floor: bare Kestrel echo", 0), ("floor: Kestrel relay, 16 echo", 16)):
            kestrel = kestrel_floor(relay_processes)
            if kestrel is not None:
                process, port = kestrel
                try:
                    measure(label, f"http://127.0.0.1:{port}/", pid=process.pid)
                finally:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(30)
    offline = serverless_offline() if not only else None
    if offline is not None:
        process, port = offline
        try:
            url = f"http://127.0.0.1:{port}/2015-03-31/functions/bench-dev-echo/invocations"
            invoke(port, "bench-dev-echo")  # first call loads the handler
            measure("serverless-offline (node)", url, pid=process.pid, tree=True)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
    dotnet = dotnet_hello() if not only else None
    with running_server() as port:
        server_pid = listener_pid(port)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        for name, (runtime, handler, files, _) in FUNCTIONS.items():
            create(conn, name, runtime, handler, files)
        if dotnet is not None:
            create(conn, "dotnet-echo", "dotnet10", "HelloWorld::HelloWorld.Function::Handler", code=dotnet)
        targets = [(name, body) for name, (_, _, _, body) in FUNCTIONS.items()] + ([("dotnet-echo", b'"x"')] if dotnet else [])
        for name, body in targets:
            if only and name not in only:
                continue
            for _ in range(20):
                invoke(port, name, body)  # warm, and as many environments as wrk uses connections
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda _: invoke(port, name, body), range(16)))
            # Steady state: the server's tiered JIT has compiled the path (it recompiles for seconds after the first calls).
            wrk(f"http://127.0.0.1:{port}/2015-03-31/functions/{name}/invocations", 16, body, seconds=WARMUP_SECONDS)
            measure(f"lamina {name}", f"http://127.0.0.1:{port}/2015-03-31/functions/{name}/invocations", body, pid=server_pid,
                    metrics_url=f"http://127.0.0.1:{port}/metrics")
    offline_row = rows.get("serverless-offline (node)")
    for floor_label in ("floor: bare node http echo", "floor: bare Kestrel echo"):
        if floor_label in rows and "lamina node-echo" in rows:
            print(f"lamina node-echo p50 / {floor_label} p50: {rows['lamina node-echo'][0]['p50'] / rows[floor_label][0]['p50']:.2f}x")
    if offline_row is not None:
        for name in ("node-echo", "python-echo"):
            if f"lamina {name}" in rows:
                row = rows[f"lamina {name}"]
                print(f"lamina {name}: p50 {offline_row[0]['p50'] / row[0]['p50']:.2f}x faster than serverless-offline's; "
                      f"req/s at 16 connections {row[1]['rps'] / offline_row[1]['rps']:.2f}x serverless-offline's")


# ---- cold, burst, memory, async -------------------------------------------------------------------------------------------
def cold() -> None:
    print("\n## cold start")
    bare = {"python3 -c pass": ["/usr/bin/python3", "-c", "pass"], "node -e 0": ["/usr/bin/node", "-e", "0"]}
    for label, command in bare.items():
        samples = []
        for _ in range(15):
            t = time.perf_counter()
            subprocess.run(command, check=True)
            samples.append((time.perf_counter() - t) * 1000)
        print(f"bare {label:<18} p50 {statistics.median(samples):7.1f} ms   p99 {percentile(samples, 0.99):7.1f} ms")
    subprocess.run([sys.executable, os.path.join(ROOT, "bench", "cold_start_phases.py"), os.environ.get("LAMINA_BENCH_COLD_N", "15")], check=True)


def burst() -> None:
    print("\n## burst: N parallel first invocations of one function (python3.12, sleeps 0.2 s)")
    print(f"{'N':>5}{'all done s':>12}{'p50 ms':>10}{'max ms':>10}{'errors':>8}")
    with running_server() as port:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        for n in (10, 40, 100):
            name = f"burst-{n}"
            create(conn, name, "python3.12", "app.handler", {"app.py": "import time\ndef handler(e, c):\n    time.sleep(0.2)\n    return e\n"},
                   Environment={"Variables": {"LAMINA_NETWORK": "none"}})
            barrier = threading.Barrier(n)

            def one(_):
                barrier.wait()
                return invoke(port, name)

            t = time.perf_counter()
            with ThreadPoolExecutor(n) as pool:
                results = list(pool.map(one, range(n)))
            total = time.perf_counter() - t
            latencies = [ms for _, ms in results]
            errors = sum(1 for status, _ in results if status != 200)
            print(f"{n:>5}{total:>12.2f}{statistics.median(latencies):>10.0f}{max(latencies):>10.0f}{errors:>8}", flush=True)


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return int(re.search(r"^Pss:\s+(\d+) kB", f.read(), re.M).group(1))
    except (OSError, AttributeError):
        return 0


def memory() -> None:
    count = 10
    print(f"\n## memory per idle environment ({count} idle python3.12 environments, network on)")
    with running_server() as port:
        server_pid = listener_pid(port)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        for i in range(count):
            create(conn, f"idle-{i}", "python3.12", "app.handler", {"app.py": "def handler(e, c):\n    return e\n"})
        invoke(port, "idle-0")  # the server's own first-use costs (JIT, pools) do not count per environment
        before = pss_kb(server_pid)
        for i in range(1, count):
            invoke(port, f"idle-{i}")
        after = pss_kb(server_pid)
        platform = []
        for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                continue
            if exe in ("/usr/bin/bwrap", "/usr/bin/pasta", "/usr/bin/passt", "/usr/bin/passt.avx2", "/usr/bin/pasta.avx2"):
                platform.append((exe, pss_kb(pid)))
        bwrap = sum(kb for exe, kb in platform if "bwrap" in exe)
        pasta = sum(kb for exe, kb in platform if "bwrap" not in exe)
        print(f"bwrap (2 per environment) PSS per environment:  {bwrap / count / 1024:7.2f} MiB")
        print(f"pasta (1 per environment) PSS per environment:  {pasta / count / 1024:7.2f} MiB")
        print(f"server growth per environment:                  {(after - before) / (count - 1) / 1024:7.2f} MiB  (PSS, {count - 1} environments)")


def async_accepts() -> None:
    print("\n## durable async accepts (16 connections; each event committed with fsync before its 202)")
    with running_server() as port:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        create(conn, "async-sink", "python3.12", "app.handler", {"app.py": "def handler(e, c):\n    return e\n"})
        # Reserved concurrency 0: accepted events wait in the queue, so running them does not compete with accepting.
        conn.request("PUT", "/2017-10-31/functions/async-sink/concurrency", body=json.dumps({"ReservedConcurrentExecutions": 0}))
        conn.getresponse().read()
        result = wrk(f"http://127.0.0.1:{port}/2015-03-31/functions/async-sink/invocations", 16, b'{"x":1}',
                     headers={"X-Amz-Invocation-Type": "Event"})
        print(f"accepted events/s: {result['rps']:.0f}   p50 {result['p50']:.2f} ms   p99 {result['p99']:.2f} ms"
              + (f"   ({result['errors']} non-2xx)" if result["errors"] else ""))


def main() -> None:
    scenario = sys.argv[1] if len(sys.argv) > 1 else "all"
    scenarios = {"warm": warm, "cold": cold, "burst": burst, "memory": memory, "async": async_accepts}
    if scenario != "all" and scenario not in scenarios:
        sys.exit(f"usage: {sys.argv[0]} [{'|'.join(scenarios)}|all]")
    print(f"# Lamina benchmarks, {time.strftime('%Y-%m-%d %H:%M')} UTC, {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') // 2**30} GiB")
    for name, run in scenarios.items():
        if scenario in ("all", name):
            run()


if __name__ == "__main__":
    main()
