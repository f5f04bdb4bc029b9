#!/usr/bin/env python3
"""Housekeeping of a full logs.db: how long the log store is held up while the size cap is applied, and what it costs.

    python3 bench/log_housekeeping.py [events]        (default 4,000,000; LAMINA_BENCH_DLL: another build)

Makes a logs.db of `events` START/END/REPORT-sized events (16 streams of one group, chunks of 100; ~1 GB at the
default), then serves it with --log-max-mb at four fifths of the pages it uses (LAMINA_BENCH_LOG_MAX_MB: another), so that the first round of housekeeping
cuts it to a tenth below that (~30% of the events). For 100 s from the start it reads the newest 10 events of a stream
(GetLogEvents, boto3) in a loop and prints the longest and 99th-percentile read, the server's CPU, and when the file's
pages in use got to the target. A build whose first round comes a minute after start shows it within the window too.
"""
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time

import boto3
from botocore.config import Config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lamina_server import cpu_seconds, running_server  # noqa: E402

GROUP = "/aws/lambda/bench"
STREAM = "2026/12/06/[$LATEST]%032x"
MESSAGES = ["START RequestId: 1b2c3d4e-aaaa-bbbb-cccc-123456789012 Version: $LATEST",
            "END RequestId: 1b2c3d4e-aaaa-bbbb-cccc-123456789012",
            "REPORT RequestId: 1b2c3d4e-aaaa-bbbb-cccc-123456789012\tDuration: 0.12 ms\tBilled Duration: 1 ms\t"
            "Memory Size: 128 MB\tMax Memory Used: 30 MB"]


def used_bytes(path: str) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute("SELECT (page_count - freelist_count) * page_size FROM pragma_page_count(), "
                          "pragma_freelist_count(), pragma_page_size()").fetchone()[0]


def fill(path: str, events: int) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    start = int(time.time() * 1000) - events
    db.execute("INSERT OR IGNORE INTO log_groups (name, created_ms) VALUES (?, ?)", (GROUP, start))
    db.executemany("INSERT OR IGNORE INTO log_streams (group_name, name, created_ms, last_ingest_ms) VALUES (?, ?, ?, ?)",
                   [(GROUP, STREAM % k, start, start + events) for k in range(16)])
    batch = 160_000
    for first in range(0, events, batch):
        rows = range(first, min(events, first + batch))
        db.executemany("INSERT INTO log_events (id, group_name, stream_name, timestamp_ms, ingest_ms, message) VALUES (?, ?, ?, ?, ?, ?)",
                       ((i + 1, GROUP, STREAM % (i // 100 % 16), start + i, start + i, MESSAGES[i % 3]) for i in rows))
        db.executemany("INSERT INTO log_chunks (group_name, stream_name, first_id, last_id, last_event_ms) VALUES (?, ?, ?, ?, ?)",
                       ((GROUP, STREAM % (c // 100 % 16), c + 1, c + 100, start + c + 99) for c in range(first, rows.stop, 100)))
        db.commit()
    db.close()


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 4_000_000
    data = tempfile.mkdtemp(prefix="lamina-bench-trim-")
    try:
        with running_server(data=data):
            pass  # the schema
        path = os.path.join(data, "logs.db")
        fill(path, events)
        full = used_bytes(path)
        # LAMINA_BENCH_LOG_MAX_MB: another cap (a build whose cap counted the events' text, not the file's pages).
        cap_mb = int(os.environ.get("LAMINA_BENCH_LOG_MAX_MB", full * 4 // 5 // (1024 * 1024)))
        target = cap_mb * 1024 * 1024 * 9 // 10
        print(f"logs.db: {events:,} events, {full / 1e6:,.0f} MB in use; --log-max-mb {cap_mb} (target {target / 1e6:,.0f} MB)")
        reads, stop, reached = [], threading.Event(), []
        with running_server(data=data, args=["--log-max-mb", str(cap_mb)]) as port:
            started = time.monotonic()
            cpu_clock = cpu_seconds(port)
            cpu_before = cpu_clock()
            logs = boto3.client("logs", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                                aws_access_key_id="x", aws_secret_access_key="x", config=Config(retries={"max_attempts": 0}))

            def read() -> None:
                while not stop.is_set():
                    t = time.monotonic()
                    logs.get_log_events(logGroupName=GROUP, logStreamName=STREAM % 0, limit=10)
                    reads.append((t - started, time.monotonic() - t))

            reader = threading.Thread(target=read)
            reader.start()
            while time.monotonic() - started < 100:
                if not reached and used_bytes(path) <= target:
                    reached.append(time.monotonic() - started)
                time.sleep(0.5)
            stop.set()
            reader.join()
            cpu = cpu_clock() - cpu_before
        latencies = sorted(d for _, d in reads)
        worst_at, worst = max((r for r in reads if r[0] >= 1), key=lambda r: r[1])  # past the first second (JIT)
        print(f"GetLogEvents: {len(reads):,} reads in 100 s; p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
              f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms, longest {worst * 1000:.0f} ms (at {worst_at:.0f} s), "
              f"{sum(d > 0.1 for _, d in reads)} over 100 ms")
        print(f"server CPU in the 100 s, the reads' included: {cpu:.1f} s; pages in use at the target after: "
              f"{f'{reached[0]:.1f} s' if reached else 'not within 100 s'}; now {used_bytes(path) / 1e6:,.0f} MB")
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
