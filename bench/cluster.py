#!/usr/bin/env python3
"""Several nodes on one machine (issue #25): warm invoke throughput through nginx with 1, 2 and 3 nodes on PostgreSQL,
beside one node on SQLite without nginx; and durable async accepts per second on SQLite vs PostgreSQL.

    ./bench/run.sh cluster          (or: python3 bench/cluster.py [warm|async])

PostgreSQL 15 (Debian's) is started in a temp dir with fsync on, nginx in front of the nodes, as
tests/integration/test_cluster.py runs them (the same classes). Every node runs on this one machine: more nodes do not
add cores, so what the figures show is the cost of the balancer and of the cluster's machinery, not a speed-up.
"""
import json
import os
import shutil
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "integration"))
from compare import SECONDS, create, wrk  # noqa: E402
import lamina_harness as h  # noqa: E402
from test_cluster import Nginx, Postgres, _postgres_bin  # noqa: E402

WARMUP = int(os.environ.get("LAMINA_BENCH_WARMUP", "10"))
ECHO = ("python3.12", "app.handler", {"app.py": "def handler(e, c):\n    return e\n"})


def control(url: str):
    import http.client
    parts = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port)


def warm_row(label: str, url: str) -> None:
    invoke = f"{url}/2015-03-31/functions/echo/invocations"
    # Warm-up at the most connections measured: each needs an environment of its own, and none may start in a cell.
    wrk(invoke, 32, b'{"x":1}', seconds=WARMUP)
    cells = []
    for connections in (1, 16, 32):
        r = wrk(invoke, connections, b'{"x":1}')
        cells.append(f"{r['p50']:7.3f} {r['p99']:7.2f} {r['rps']:7.0f}" + (f" ({r['errors']} non-2xx)" if r["errors"] else ""))
    print(f"{label:<34}" + " | ".join(cells), flush=True)


def accepts(label: str, url: str) -> None:
    r = wrk(f"{url}/2015-03-31/functions/sink/invocations", 16, b'{"x":1}', headers={"X-Amz-Invocation-Type": "Event"})
    print(f"{label:<34}{r['rps']:9.0f}/s   p50 {r['p50']:6.2f} ms   p99 {r['p99']:7.2f} ms"
          + (f"   ({r['errors']} non-2xx)" if r["errors"] else ""), flush=True)


def setup_functions(url: str) -> None:
    conn = control(url)
    create(conn, "echo", *ECHO)
    create(conn, "sink", *ECHO)
    # Reserved concurrency 0: accepted events wait in the queue, so running them does not compete with accepting.
    conn.request("PUT", "/2017-10-31/functions/sink/concurrency", body=json.dumps({"ReservedConcurrentExecutions": 0}))
    conn.getresponse().read()


def main() -> None:
    scenario = sys.argv[1] if len(sys.argv) > 1 else "all"
    bin_dir = _postgres_bin()
    if bin_dir is None or shutil.which("nginx") is None:
        sys.exit("bench/cluster.py needs Debian's postgresql and nginx: apt-get install postgresql nginx-light")
    root = Path(tempfile.mkdtemp(prefix="lamina-bench-cluster-"))
    os.chmod(root, 0o755)
    (root / "shared").mkdir()
    pg = Postgres(root, bin_dir)
    nodes: list[h.LaminaServer] = []
    balancers: list[Nginx] = []
    single = h.LaminaServer("bench-sqlite", data_dir=root / "single")
    try:
        print(f"# cluster benchmarks, {os.cpu_count()} cores, wrk {SECONDS} s per cell after {WARMUP} s of warm-up; "
              "a Python echo; every node on this machine")
        single.start()
        setup_functions(single.url)
        pg.start()
        for i in range(3):
            nodes.append(h.LaminaServer(f"bench-node-{i + 1}", data_dir=root / f"node{i + 1}", extra_args=[
                "--database", pg.url(), "--shared-dir", str(root / "shared"), "--node-id", f"node{i + 1}"]).start())
        setup_functions(nodes[0].url)
        for count in (1, 2, 3):
            (root / f"lb{count}").mkdir()
            balancer = Nginx(root / f"lb{count}", [urllib.parse.urlsplit(n.url).netloc for n in nodes[:count]])
            balancer.start()
            balancers.append(balancer)

        if scenario in ("all", "warm"):
            print("\n## warm invoke (POST {\"x\":1}, keep-alive)")
            print(f"{'':<34}{'1 connection':^23} | {'16 connections':^23} | {'32 connections':^23}")
            print(f"{'target':<34}" + " | ".join(f"{'p50 ms':>7} {'p99 ms':>7} {'req/s':>7}" for _ in range(3)))
            warm_row("1 node, SQLite, direct", single.url)
            warm_row("1 node, PostgreSQL, direct", nodes[0].url)
            for count, balancer in enumerate(balancers, 1):
                warm_row(f"{count} node{'s' if count > 1 else ''}, PostgreSQL, nginx", balancer.url)
        if scenario not in ("all", "async"):
            return
        print("\n## durable async accepts (16 connections; each event committed before its 202)")
        accepts("1 node, SQLite", single.url)
        accepts("1 node, PostgreSQL", nodes[0].url)
        accepts("3 nodes, PostgreSQL, nginx", balancers[2].url)
    finally:
        for server in (single, *nodes):
            if server.proc is not None and server.proc.poll() is None:
                server.stop()
        for balancer in balancers:
            balancer.stop()
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
