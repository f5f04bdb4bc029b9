#!/usr/bin/env python3
"""The server's CPU per warm invoke split by thread: which part of the server spends it.

    python3 bench/threads.py [python-echo] [connections] [seconds]      (LAMINA_BENCH_DLL: another build)

Starts the Release server (or LAMINA_BENCH_DLL), makes the function (bench/compare.py's FUNCTIONS), warms it with wrk at
16 connections (LAMINA_BENCH_WARMUP seconds, default 20), then runs wrk at the given connections and prints, per
thread name (/proc/PID/task/*/comm), the CPU it used (utime + stime) divided by the requests served: ".NET Sockets"
are the I/O threads (the warm path itself, issue #19), ".NET TP Worker" the thread pool (the log writer, at rest),
".NET Tiered Com" the JIT. Sums over threads of one name.
"""
import collections
import http.client
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402
from lamina_server import running_server  # noqa: E402


def thread_cpu(pid: int) -> dict[int, tuple[str, int]]:
    """Each live thread's name and CPU ticks (utime + stime), by thread id."""
    threads = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{task}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        threads[int(task)] = (name, int(fields[11]) + int(fields[12]))
    return threads


def main() -> None:
    target = sys.argv[1] if len(sys.argv) > 1 else "python-echo"
    connections = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    runtime, handler, files, body = compare.FUNCTIONS[target]
    with running_server() as port:
        pid = int(subprocess.check_output(["bash", "-c", f"ss -ltnp | grep ':{port} ' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2"]))
        compare.create(http.client.HTTPConnection("127.0.0.1", port), target, runtime, handler, files)
        url = f"http://127.0.0.1:{port}/2015-03-31/functions/{target}/invocations"
        compare.wrk(url, 16, body, seconds=compare.WARMUP_SECONDS)
        before = thread_cpu(pid)
        result = compare.wrk(url, connections, body, seconds=seconds)
        after = thread_cpu(pid)
    requests = result["requests"]
    # A thread that ended during the run (an idle thread-pool worker, the JIT's when it has nothing left) is not counted.
    used = collections.Counter()
    for tid, (name, ticks) in after.items():
        used[name] += ticks - before.get(tid, (name, 0))[1]
    print(f"{target}, {connections} connections: {requests / seconds:.0f} req/s, {result['errors']} errors")
    for name, ticks in used.most_common():
        if ticks:
            print(f"  {name:18s} {ticks * compare.CLOCK_TICK_US / requests:7.1f} µs/invoke")
    print(f"  {'all threads':18s} {sum(used.values()) * compare.CLOCK_TICK_US / requests:7.1f} µs/invoke")


if __name__ == "__main__":
    main()
