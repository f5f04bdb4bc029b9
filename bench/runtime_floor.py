#!/usr/bin/env python3
"""The runtimes' own CPU per invoke, outside any sandbox, against the least their language can spend.

    python3 bench/runtime_floor.py [rounds] [invokes]          (default 4 rounds of 60,000 invocations each)
    LAMINA_BENCH_NODE_OTHER=DIR python3 bench/runtime_floor.py  (also a copy of runtimes/nodejs from another build)

A fake Runtime API (this script, one kept-alive connection) hands each bootstrap an echo event as soon as it asks for
the next one, and reads its answer: Lamina's Python and Node.js bootstraps (launched as the server launches them, with
an echo handler), and the floor of each language's side of that exchange, a few lines that parse the event's head
and write the body back with the next request (Node.js: a `net.Socket` and its event loop; Python: a blocking socket).
Rounds alternate the targets, since this machine's speed moves by ±20% from minute to minute. The figures are the
runtime process's CPU time (user + system, /proc) over the last three quarters of each run, per invocation.
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NODE_FLOOR = r"""
import net from 'node:net';
const [host, port] = process.env.AWS_LAMBDA_RUNTIME_API.split(':');
const socket = net.connect({ host, port: +port, noDelay: true });
const next = 'GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n';
socket.write(next);
let pending = Buffer.alloc(0);
socket.on('data', (data) => {
  pending = pending.length ? Buffer.concat([pending, data]) : data;
  for (;;) {
    const end = pending.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = pending.toString('latin1', 0, end);
    const length = +(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
    if (pending.length < end + 4 + length) return;
    const body = pending.toString('utf8', end + 4, end + 4 + length);
    pending = pending.subarray(end + 4 + length);
    if (head.startsWith('HTTP/1.1 202')) continue;
    const id = /request-id: ([^\r]+)/i.exec(head)[1];
    socket.write(`POST /2018-06-01/runtime/invocation/${id}/response HTTP/1.1\r\nHost: x\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}${next}`);
  }
});
socket.on('close', () => process.exit(0));
"""

PYTHON_FLOOR = r"""
import os, re, socket
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
s = socket.create_connection((host, int(port)))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
NEXT = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n"
s.sendall(NEXT)
pending = b""
while True:
    end = pending.find(b"\r\n\r\n")
    if end >= 0:
        head = pending[:end].decode("latin-1")
        m = re.search(r"content-length: (\d+)", head, re.I)
        length = int(m.group(1)) if m else 0
        if len(pending) >= end + 4 + length:
            body = pending[end + 4:end + 4 + length]
            pending = pending[end + 4 + length:]
            if head.startswith("HTTP/1.1 202"):
                continue
            rid = re.search(r"request-id: ([^\r]+)", head, re.I).group(1)
            s.sendall(f"POST /2018-06-01/runtime/invocation/{rid}/response HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body + NEXT)
            continue
    data = s.recv(65536)
    if not data:
        break
    pending += data
"""

ACCEPTED = b'HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{"status":"OK"}\n'
BODY = b'{"x":1}'


def event(i: int) -> bytes:
    # The headers Lamina's Runtime API sends with an event.
    head = ("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Lambda-Runtime-Aws-Request-Id: 00000000-0000-0000-0000-{i:012d}\r\n"
            f"Lambda-Runtime-Deadline-Ms: {int(time.time() * 1000) + 30000}\r\n"
            "Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:000000000000:function:f\r\n"
            "Lambda-Runtime-Trace-Id: Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n")
    return head.encode() + BODY


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def run(command: list[str], task: str, invokes: int) -> tuple[float, float]:
    """(µs of the runtime's CPU per invoke, invokes/s) for one bootstrap serving `invokes` echo events."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{listener.getsockname()[1]}", _HANDLER="index.handler",
               LAMBDA_TASK_ROOT=task, AWS_LAMBDA_FUNCTION_NAME="f", AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
               AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128", AWS_LAMBDA_LOG_GROUP_NAME="/aws/lambda/f",
               AWS_LAMBDA_LOG_STREAM_NAME="s")
    process = subprocess.Popen(command, env=env, cwd=task, stderr=subprocess.DEVNULL)
    try:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffered = b""

        def request() -> str:
            nonlocal buffered
            while True:
                end = buffered.find(b"\r\n\r\n")
                if end >= 0:
                    head = buffered[:end].decode("latin-1")
                    length = next((int(line.split(":", 1)[1]) for line in head.split("\r\n")[1:]
                                   if line.lower().startswith("content-length:")), 0)
                    if len(buffered) >= end + 4 + length:
                        buffered = buffered[end + 4 + length:]
                        return head.split(" ", 2)[1]
                data = conn.recv(65536)
                if not data:
                    raise RuntimeError(f"{command} closed the connection")
                buffered += data

        assert request().endswith("/next")
        conn.sendall(event(0))
        warm = invokes // 4
        for i in range(1, invokes + 1):
            if i == warm:
                ticks, started = cpu_ticks(process.pid), time.monotonic()
            path = request()
            assert path.endswith("/response"), path
            conn.sendall(ACCEPTED)
            assert request().endswith("/next")
            conn.sendall(event(i))
        measured = invokes - warm
        used = (cpu_ticks(process.pid) - ticks) / os.sysconf("SC_CLK_TCK")
        rate = measured / (time.monotonic() - started)
        conn.close()
        return used / measured * 1e6, rate
    finally:
        listener.close()
        process.kill()
        process.wait()


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    invokes = int(sys.argv[2]) if len(sys.argv) > 2 else 60_000
    node = ["/usr/bin/node", "--expose-gc", "--max-http-header-size", "81920", "--max-semi-space-size=6",
            "--max-old-space-size=116"]  # what RuntimeCatalog gives a 128 MB function
    with tempfile.TemporaryDirectory() as task:
        with open(f"{task}/index.mjs", "w") as f:
            f.write("export const handler = async (event) => event;\n")
        with open(f"{task}/index.py", "w") as f:
            f.write("def handler(event, context):\n    return event\n")
        with open(f"{task}/floor.mjs", "w") as f:
            f.write(NODE_FLOOR)
        with open(f"{task}/floor.py", "w") as f:
            f.write(PYTHON_FLOOR)
        targets = {
            "floor: python socket": ["/usr/bin/python3", "-u", f"{task}/floor.py"],
            "lamina python bootstrap": ["/usr/bin/python3", "-u", f"{ROOT}/runtimes/python/bootstrap.py"],
            "floor: node net.Socket": node + [f"{task}/floor.mjs"],
            "lamina node bootstrap": node + [f"{ROOT}/runtimes/nodejs/index.mjs"],
        }
        if other := os.environ.get("LAMINA_BENCH_NODE_OTHER"):
            targets["node bootstrap from " + other] = node + [f"{other}/index.mjs"]
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
        for round_ in range(rounds):
            for name, command in targets.items():
                cpu, rate = run(command, task, invokes)
                figures[name].append((cpu, rate))
                print(f"round {round_ + 1}  {name:40} {cpu:6.1f} µs/invoke  {rate:8,.0f}/s", flush=True)
        print(f"\n{'target':40} {'µs/invoke min':>14} {'median':>8} {'invokes/s median':>17}")
        for name, runs in figures.items():
            cpus = [cpu for cpu, _ in runs]
            print(f"{name:40} {min(cpus):14.1f} {statistics.median(cpus):8.1f} {statistics.median(r for _, r in runs):17,.0f}")


if __name__ == "__main__":
    main()
