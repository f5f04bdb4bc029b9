#!/usr/bin/env python3
"""Two builds of the server side by side, interleaved: which one spends less CPU per warm invoke.

    python3 bench/ab.py A/Lamina.Server.dll B/Lamina.Server.dll [python-echo,node-echo] [rounds]
    python3 bench/ab.py A/Lamina.Server.dll NAME=VALUE,NAME2=VALUE2@A/Lamina.Server.dll ...   (B: A with environment variables)

Both servers run at once, each with the functions warm; wrk runs alternate between them (LAMINA_BENCH_SECONDS per
cell, default 3), at 1 and 16 connections, `rounds` times (default 6). On a machine shared with other work, a single
run moves by ±30%; interleaving exposes both builds to the same interference, and the minimum and median over the
rounds are what to compare (interference only ever adds CPU). Copy artifacts/bin/Lamina.Server/release aside to keep
a build: its lambda-runtimes/ (the bootstraps) go with it.
"""
import http.client
import os
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402
from lamina_server import running_server  # noqa: E402


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    builds = sys.argv[1:3]
    targets = (sys.argv[3] if len(sys.argv) > 3 else "python-echo,node-echo").split(",")
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 6
    seconds = int(os.environ.get("LAMINA_BENCH_SECONDS", "3"))
    def split(build: str) -> tuple[str, dict]:
        if "@" not in build:
            return build, {}
        variables, dll = build.split("@", 1)
        return dll, dict(v.split("=", 1) for v in variables.split(","))

    with running_server(*split(builds[0])) as port_a, running_server(*split(builds[1])) as port_b:
        servers = []
        for label, port in (("A", port_a), ("B", port_b)):
            conn = http.client.HTTPConnection("127.0.0.1", port)
            for name in targets:
                runtime, handler, files, body = compare.FUNCTIONS[name]
                compare.create(conn, name, runtime, handler, files)
                with ThreadPoolExecutor(16) as pool:
                    list(pool.map(lambda _: compare.invoke(port, name, body), range(32)))
                compare.wrk(f"http://127.0.0.1:{port}/2015-03-31/functions/{name}/invocations", 16, body, seconds=compare.WARMUP_SECONDS)
            servers.append((label, port, compare.listener_pid(port)))
        results = {}
        for r in range(rounds):
            for name in targets:
                body = compare.FUNCTIONS[name][3]
                for connections in (1, 16):
                    for label, port, pid in (servers if r % 2 == 0 else servers[::-1]):
                        before = compare.tree_cpu_us(pid)
                        result = compare.wrk(f"http://127.0.0.1:{port}/2015-03-31/functions/{name}/invocations", connections, body, seconds=seconds)
                        after = compare.tree_cpu_us(pid)
                        server = (after[0] - before[0]) / result["requests"]
                        runtime = sum(us - before.get(p, 0.0) for p, us in after.items() if p != 0) / result["requests"]
                        results.setdefault((name, connections, label), []).append((server, runtime, result["p50"], result["rps"]))
            print(f"round {r + 1}/{rounds} done (load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    print(f"A = {builds[0]}\nB = {builds[1]}\n{rounds} rounds, {seconds} s per cell; min / median over the rounds")
    print(f"{'target':<14}{'conns':>6}{'build':>6}{'srv µs min':>12}{'srv µs med':>12}{'rt µs min':>11}{'rt µs med':>11}{'p50 ms med':>12}{'req/s med':>11}")
    for name in targets:
        for connections in (1, 16):
            for label, _, _ in servers:
                rows = results[(name, connections, label)]
                server, runtime, p50, rps = zip(*rows)
                print(f"{name:<14}{connections:>6}{label:>6}{min(server):>12.0f}{statistics.median(server):>12.0f}{min(runtime):>11.0f}"
                      f"{statistics.median(runtime):>11.0f}{statistics.median(p50):>12.3f}{statistics.median(rps):>11.0f}")


if __name__ == "__main__":
    main()
