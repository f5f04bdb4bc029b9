#!/usr/bin/env python3
"""How long a backlog of asynchronous events takes to drain through a function's reserved concurrency, on one node.

    python3 bench/reserved_drain.py [events] [reserved] [seconds each]      # default 300 5 0.1: 6 s at best
    LAMINA_SERVER_CMD="dotnet BUILD/Lamina.Server.dll serve --host 127.0.0.1" python3 bench/reserved_drain.py   # another build

Sends the events (`Event` invokes, boto3, one connection), then waits until none is queued, and prints both times
next to the least the reservation allows (events × seconds ÷ reserved).
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
import lamina_harness as h  # noqa: E402

count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
reserved = int(sys.argv[2]) if len(sys.argv) > 2 else 5
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 0.1
server = h.LaminaServer("reserved-drain").start()
try:
    lam = h.boto3_client(server.url, "lambda")
    code = f"import time\ndef handler(event, context):\n    time.sleep({seconds})\n    return 1\n"
    lam.create_function(FunctionName="d", Runtime="python3.12", Role=h.ROLE, Handler="app.handler", Code={"ZipFile": h.make_zip({"app.py": code})})
    lam.put_function_concurrency(FunctionName="d", ReservedConcurrentExecutions=reserved)
    t0 = time.monotonic()
    for _ in range(count):
        lam.invoke(FunctionName="d", InvocationType="Event", Payload=b"{}")
    sent = time.monotonic() - t0
    while server.raw("GET", "/lamina/v1/async-events?function=d&limit=1").json["Queued"] > 0:
        time.sleep(0.2)
    print(f"{count} events, reserved {reserved}, {seconds} s each: sent in {sent:.1f} s, all run after {time.monotonic() - t0:.1f} s "
          f"(at best {count * seconds / reserved:.1f} s)")
finally:
    server.stop()
