#!/usr/bin/env python3
"""One warm environment kept busy for minutes: does anything grow with the invocations it serves?

    python3 bench/soak.py [python-echo|node-echo] [windows] [seconds]      (LAMINA_BENCH_DLL: another build)

Starts the Release server (or LAMINA_BENCH_DLL), makes the function (bench/compare.py's FUNCTIONS), then runs wrk at one
connection (one environment) for `windows` windows of `seconds` each (default 6 x 20 s), and prints for each: the
invocations served so far, req/s, the server's and the sandbox's CPU per invoke (µs), the runtime process's resident
memory and the server's. A runtime that keeps something per invocation shows it here as memory that climbs window
after window (and, for glibc's setenv, CPU that climbs with it: each new value is looked up among all the old ones).
"""
import http.client
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402
from lamina_server import running_server  # noqa: E402


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def runtime_pid(server_pid: int) -> int:
    """The sandbox's largest process: the runtime (bwrap and the sandbox's init are a few MB)."""
    return max((pid for pid in compare.tree_cpu_us(server_pid) if pid != 0), key=rss_kb)


def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else "python-echo"
    windows = int(sys.argv[2]) if len(sys.argv) > 2 else 6
    seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    runtime, handler, files, body = compare.FUNCTIONS[target]
    with running_server() as port:
        server = compare.listener_pid(port)
        compare.create(http.client.HTTPConnection("127.0.0.1", port), target, runtime, handler, files)
        url = f"http://127.0.0.1:{port}/2015-03-31/functions/{target}/invocations"
        compare.wrk(url, 1, body, seconds=5)  # the environment starts; the JITs warm up
        served = 0
        print(f"{target}, one connection, {windows} x {seconds} s")
        print(f"{'invocations':>12} {'req/s':>7} {'srv µs':>7} {'rt µs':>6} {'runtime RSS':>12} {'server RSS':>11}")
        for _ in range(windows):
            before = compare.tree_cpu_us(server)
            result = compare.wrk(url, 1, body, seconds=seconds)
            after = compare.tree_cpu_us(server)
            served += result["requests"]
            sandbox = sum(us - before.get(pid, 0.0) for pid, us in after.items() if pid != 0)
            print(f"{served:12,d} {result['requests'] / seconds:7.0f} {(after[0] - before[0]) / result['requests']:7.1f} "
                  f"{sandbox / result['requests']:6.1f} {rss_kb(runtime_pid(server)) / 1024:9.1f} MB "
                  f"{rss_kb(server) / 1024:8.1f} MB", flush=True)


if __name__ == "__main__":
    main()
