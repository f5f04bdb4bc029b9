#!/usr/bin/env python3
"""A burst of asynchronous events for a function with no warm environment, on one node: how long it takes to drain,
how many environments it starts, and how a warm function on the same node answers meanwhile.

    python3 bench/async_burst.py [events] [seconds each]      # default 300 0.02
    LAMINA_SERVER_CMD="dotnet BUILD/Lamina.Server.dll serve --host 127.0.0.1" python3 bench/async_burst.py   # another build

Sends the events over 8 connections, then invokes a warm echo function synchronously, one call at a time, until
none of the events is queued; prints the drain time, the environments the burst started, the echo's p50 / p99 / max
during the drain (a node busy starting processes answers everything late), and how long a third function's first
invoke, sent once the events are in, took (it waits for room to start behind the burst's starts: one Init when
functions take turns, all of the burst's starts when they queue in one line).
"""
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
import lamina_harness as h  # noqa: E402

count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 0.02
server = h.LaminaServer("async-burst", ["--function-network", "off"]).start()
try:
    lam = h.boto3_client(server.url, "lambda")
    burst = f"import time\ndef handler(event, context):\n    time.sleep({seconds})\n    return 1\n"
    lam.create_function(FunctionName="burst", Runtime="python3.12", Role=h.ROLE, Handler="app.handler", Code={"ZipFile": h.make_zip({"app.py": burst})})
    lam.create_function(FunctionName="echo", Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                        Code={"ZipFile": h.make_zip({"app.py": "def handler(event, context):\n    return event\n"})})
    lam.create_function(FunctionName="other", Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                        Code={"ZipFile": h.make_zip({"app.py": "def handler(event, context):\n    return event\n"})})
    netloc = urllib.parse.urlsplit(server.url).netloc
    echo = http.client.HTTPConnection(netloc)

    def invoke_echo() -> float:
        t = time.perf_counter()
        echo.request("POST", "/2015-03-31/functions/echo/invocations", body=b'{"x":1}')
        r = echo.getresponse()
        r.read()
        assert r.status == 200, r.status
        return time.perf_counter() - t

    for _ in range(20):
        invoke_echo()

    def send(part: int) -> None:
        conn = http.client.HTTPConnection(netloc)
        for n in range(part, count, 8):
            conn.request("POST", "/2015-03-31/functions/burst/invocations", body=json.dumps({"n": n}), headers={"X-Amz-Invocation-Type": "Event"})
            r = conn.getresponse()
            r.read()
            assert r.status == 202, r.status

    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(8)))
    sent = time.monotonic() - t0
    t = time.perf_counter()
    other = http.client.HTTPConnection(netloc)
    other.request("POST", "/2015-03-31/functions/other/invocations", body=b'{"x":1}')
    assert other.getresponse().status == 200
    other_ms = (time.perf_counter() - t) * 1000
    latencies = []
    peak = 0
    while True:
        latencies.append(invoke_echo())
        if len(latencies) % 20 == 0:
            environments = [e for e in server.raw("GET", "/lamina/v1/environments").json["Environments"] if e["FunctionName"] == "burst"]
            peak = max(peak, len(environments))
            if server.raw("GET", "/lamina/v1/async-events?function=burst&limit=1").json["Queued"] == 0:
                break
    drained = time.monotonic() - t0
    latencies.sort()
    ms = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    print(f"{count} events of {seconds} s: sent in {sent:.1f} s, drained after {drained:.1f} s; up to {peak} environments of the "
          f"function at once; a warm echo meanwhile ({len(latencies)} calls): p50 {ms(0.5):.1f} ms, p99 {ms(0.99):.1f} ms, max {latencies[-1] * 1000:.0f} ms; another function's first invoke {other_ms:.0f} ms")
finally:
    server.stop()
