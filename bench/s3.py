#!/usr/bin/env python3
"""S3 throughput, side by side in one run (bench/run.sh s3 installs wrk and the peer first):

    python3 bench/s3.py

Lamina's S3 against s3rver (npm, a Node.js S3 server that keeps objects as files) and a floor: the same objects written
as files by this script (write, fsync, rename: what Lamina does for each object before its 200, without HTTP).
PUT and GET of 4 KiB and 1 MiB objects with wrk (16 connections, unsigned requests on loopback, each PUT a new key),
then a 1 GiB multipart upload with boto3's transfer manager (8 MiB parts, 10 in flight) while the server's resident
memory is sampled. LAMINA_BENCH_SECONDS (default 10) per wrk run; LAMINA_BENCH_S3_GIB (default 1) for the big upload.
"""
import concurrent.futures
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lamina_server import running_server  # noqa: E402

SECONDS = int(os.environ.get("LAMINA_BENCH_SECONDS", "10"))
BIG_GIB = float(os.environ.get("LAMINA_BENCH_S3_GIB", "1"))
S3RVER = os.path.join(os.environ.get("LAMINA_BENCH_CACHE", os.path.expanduser("~/.cache/lamina-bench")), "s3rver", "node_modules", ".bin", "s3rver")
KiB, MiB = 1024, 1024 * 1024

PUT_LUA = """
local counter = 0
local body = string.rep("x", %d)
request = function()
  counter = counter + 1
  return wrk.format("PUT", "/%s/put-" .. os.time() .. "-" .. math.random(1e9) .. "-" .. counter, {["Content-Type"] = "application/octet-stream"}, body)
end
"""

GET_LUA = """
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/%s/get-" .. (counter %% 64))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wrk(url: str, script: str, connections: int = 16) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(["wrk", "-t", "2", "-c", str(connections), "-d", f"{SECONDS}s", "--latency", "-s", f.name, url],
                             capture_output=True, text=True, timeout=SECONDS + 60).stdout
    finally:
        os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {q: _ms(re.search(rf"^\s+{q}%\s+(\S+)", out, re.M).group(1)) for q in ("50", "99")}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": lat["50"], "p99": lat["99"], "errors": int(errors.group(1)) if errors else 0}


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def client(url: str, key: str = "test", secret: str = "test"):
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 0}, max_pool_connections=16))


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        except (FileNotFoundError, StopIteration):
            pass
    return total


def tree(pid: int) -> list[int]:
    pids, frontier = [pid], [pid]
    while frontier:
        children = []
        for p in frontier:
            try:
                with open(f"/proc/{p}/task/{p}/children") as f:
                    children += [int(c) for c in f.read().split()]
            except FileNotFoundError:
                pass
        pids += children
        frontier = children
    return pids


def measure(name: str, url: str, bucket: str, s3, pids: list[int], big_file: str) -> dict:
    results = {}
    for size, label in ((4 * KiB, "4 KiB"), (MiB, "1 MiB")):
        for i in range(64):
            s3.put_object(Bucket=bucket, Key=f"get-{i}", Body=b"y" * size)
        results[f"PUT {label}"] = wrk(url, PUT_LUA % (size, bucket))
        results[f"GET {label}"] = wrk(url, GET_LUA % bucket)
        for r in (results[f"PUT {label}"], results[f"GET {label}"]):
            r["MB/s"] = r["rps"] * size / MiB
    # The big upload, with the server's resident memory sampled every 100 ms.
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(rss_kib(pids))
            time.sleep(0.1)
    before = rss_kib(pids)
    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.monotonic()
    s3.upload_file(big_file, bucket, "big.bin", Config=TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=10))
    elapsed = time.monotonic() - start
    stop.set()
    sampler.join()
    results["multipart"] = {"MB/s": os.path.getsize(big_file) / MiB / elapsed, "seconds": elapsed,
                            "rss_before_mib": before / 1024, "rss_peak_mib": max(samples) / 1024, "rss_after_mib": samples[-1] / 1024}
    print(f"  {name}: done", file=sys.stderr)
    return results


def floor(directory: str) -> dict:
    """Write+fsync+rename per object, 16 threads, no HTTP: the disk's own pace for the same objects."""
    results = {}
    for size, label in ((4 * KiB, "4 KiB"), (MiB, "1 MiB")):
        body, count, lock = b"z" * size, [0], threading.Lock()
        deadline = time.monotonic() + SECONDS

        def worker(n: int):
            i = 0
            while time.monotonic() < deadline:
                tmp, final = os.path.join(directory, f"t{n}-{i}.tmp"), os.path.join(directory, f"o{n}-{i}")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.write(fd, body)
                os.fsync(fd)
                os.close(fd)
                os.rename(tmp, final)
                i += 1
            with lock:
                count[0] += i
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(worker, range(16)))
        rps = count[0] / SECONDS
        results[f"PUT {label}"] = {"rps": rps, "MB/s": rps * size / MiB}
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
    return results


def main() -> None:
    if not os.path.exists(S3RVER):
        sys.exit(f"s3rver is missing ({S3RVER}); bench/run.sh s3 installs it")
    work = tempfile.mkdtemp(prefix="lamina-bench-s3-")
    big = os.path.join(work, "big.bin")
    with open(big, "wb") as f:
        chunk = os.urandom(MiB)
        for _ in range(int(BIG_GIB * 1024)):
            f.write(chunk)
    table = {}
    try:
        with running_server() as port:
            url = f"http://127.0.0.1:{port}"
            s3 = client(url)
            s3.create_bucket(Bucket="bench")
            listener = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True).stdout
            pid = int(re.search(r"pid=(\d+)", listener).group(1))
            table["Lamina"] = measure("Lamina", url, "bench", s3, [pid], big)
        peer_dir = os.path.join(work, "s3rver")
        os.makedirs(peer_dir)
        port = free_port()
        peer = subprocess.Popen([S3RVER, "-d", peer_dir, "-a", "127.0.0.1", "-p", str(port), "--silent", "--configure-bucket", "bench"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            table["s3rver"] = measure("s3rver", url, "bench", client(url, "S3RVER", "S3RVER"), tree(peer.pid), big)
        finally:
            os.killpg(peer.pid, signal.SIGTERM)
            peer.wait(timeout=30)
        floor_dir = os.path.join(work, "floor")
        os.makedirs(floor_dir)
        table["floor (write+fsync+rename)"] = floor(floor_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nS3 throughput, 16 connections, {SECONDS} s per cell (req/s | MB/s | p50 ms | p99 ms)\n")
    print("| target | PUT 4 KiB | GET 4 KiB | PUT 1 MiB | GET 1 MiB |")
    print("|---|---:|---:|---:|---:|")
    for target, r in table.items():
        cells = []
        for op in ("PUT 4 KiB", "GET 4 KiB", "PUT 1 MiB", "GET 1 MiB"):
            c = r.get(op)
            if c is None:
                cells.append("–")
            elif "p50" in c:
                cells.append(f"{c['rps']:,.0f} | {c['MB/s']:,.0f} MB/s | {c['p50']:.2f} | {c['p99']:.2f}" + (f" ({c['errors']} errors)" if c["errors"] else ""))
            else:
                cells.append(f"{c['rps']:,.0f} | {c['MB/s']:,.0f} MB/s")
        print(f"| {target} | " + " | ".join(cells) + " |")
    print(f"\n{BIG_GIB:g} GiB multipart upload (boto3, 8 MiB parts, 10 in flight), server resident memory sampled every 100 ms\n")
    print("| target | MB/s | seconds | RSS before MiB | RSS peak MiB | RSS after MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for target, r in table.items():
        m = r.get("multipart")
        if m:
            print(f"| {target} | {m['MB/s']:.0f} | {m['seconds']:.1f} | {m['rss_before_mib']:.0f} | {m['rss_peak_mib']:.0f} | {m['rss_after_mib']:.0f} |")


if __name__ == "__main__":
    main()
