#!/usr/bin/env python3
"""An asynchronous backlog of a function over its reservation: how long Event invokes of another function wait for
their 202 meanwhile, and what the dispatcher costs.

    python3 bench/async_backlog.py [events]        (default 1,000,000; LAMINA_BENCH_DLL: another build)

Makes two Python functions, `hot` with reserved concurrency 0 (every event of it is throttled: the dispatcher leaves
its events queued for a second at a time, "paused") and `other`, then puts `events` due events of `hot` in async.db
and serves it. For 60 s it invokes `other` asynchronously in a loop (boto3, InvocationType=Event: the 202 comes once
the event is committed by the queue's one writer) and scrapes /metrics every 5 s, and prints the invokes' latency
(p50, p99, longest), the scrapes' longest, and the server's CPU.
"""
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

import boto3
from botocore.config import Config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lamina_server import cpu_seconds, percentile, running_server, zip_of  # noqa: E402

ARN = "arn:aws:lambda:us-east-1:000000000000:function:hot"
CODE = "def handler(event, context):\n    return event\n"


def client(port: int, service: str):
    return boto3.client(service, endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x", config=Config(retries={"max_attempts": 0}))


def fill(path: str, events: int) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    now = int(time.time() * 1000)
    batch = 100_000
    for first in range(0, events, batch):
        db.executemany(
            "INSERT INTO events (id, function_name, qualifier, invoked_arn, payload, trace_id, created_ms, state, attempts, due_ms)"
            " VALUES (?, 'hot', NULL, ?, ?, 'Root=1-00000000-000000000000000000000000', ?, 0, 0, ?)",
            ((str(uuid.uuid4()), ARN, b'{"n":%d}' % i, now - events + i, now - events + i) for i in range(first, min(events, first + batch))))
        db.commit()
    db.close()


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    data = tempfile.mkdtemp(prefix="lamina-bench-async-")
    try:
        with running_server(data=data) as port:
            lam = client(port, "lambda")
            for name in ("hot", "other"):
                lam.create_function(FunctionName=name, Runtime="python3.12", Role="arn:aws:iam::000000000000:role/bench",
                                    Handler="app.handler", Code={"ZipFile": zip_of({"app.py": CODE})})
            lam.put_function_concurrency(FunctionName="hot", ReservedConcurrentExecutions=0)
        fill(os.path.join(data, "async.db"), events)
        print(f"async.db: {events:,} due events of `hot` (reserved concurrency 0), {os.path.getsize(os.path.join(data, 'async.db')) / 1e6:,.0f} MB")
        invokes, scrapes, stop = [], [], threading.Event()
        with running_server(data=data) as port:
            cpu_clock = cpu_seconds(port)
            lam = client(port, "lambda")
            lam.invoke(FunctionName="other", InvocationType="Event", Payload=b"{}")  # warm the client and the route
            cpu_before, started = cpu_clock(), time.monotonic()

            def scrape() -> None:
                while not stop.wait(5):
                    t = time.monotonic()
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60).read()
                    scrapes.append(time.monotonic() - t)

            scraper = threading.Thread(target=scrape)
            scraper.start()
            slow = []
            while time.monotonic() - started < 60:
                t = time.monotonic()
                lam.invoke(FunctionName="other", InvocationType="Event", Payload=b'{"x":1}')
                invokes.append(time.monotonic() - t)
                if invokes[-1] > 0.1:
                    slow.append(f"{invokes[-1] * 1000:.0f} ms at {t - started:.1f} s")
            stop.set()
            scraper.join()
            cpu = cpu_clock() - cpu_before
        print(f"Event invokes of `other`: {len(invokes):,} in 60 s; p50 {percentile(invokes, 0.5) * 1000:.1f} ms, "
              f"p99 {percentile(invokes, 0.99) * 1000:.1f} ms, longest {max(invokes) * 1000:.0f} ms, "
              f"{sum(d > 0.1 for d in invokes)} over 100 ms")
        print(f"over 100 ms: {', '.join(slow) or 'none'}")
        print(f"/metrics scrapes: {len(scrapes)}, longest {max(scrapes) * 1000:.0f} ms; server CPU in the 60 s: {cpu:.1f} s")
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
