#!/usr/bin/env python3
"""Cold start by phase, .NET included: Init Duration (REPORT) and the sandbox phase (GET /lamina/v1/environments).

Builds the .NET hello world the integration tests use (tests/integration/dotnet), starts the server through the test
harness on a free port with a temp data dir, and for each row creates N functions and invokes each once.

    python3 bench/cold_start_phases.py [N]
"""
import base64
import json
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))
import lamina_harness as h  # noqa: E402
import test_dotnet as dotnet  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 9
PYTHON = h.make_zip({"app.py": "def handler(e, c):\n    return e\n"})
NODE = h.make_zip({"index.js": "exports.handler = async (e) => e;\n"})
# A provided.al2023 bootstrap: a shell script, the cheapest process there is, answering one invocation per loop.
PROVIDED = h.make_zip({"bootstrap": (
    "#!/bin/sh\n"
    "api=$AWS_LAMBDA_RUNTIME_API\n"
    "while true; do\n"
    "  headers=$(mktemp)\n"
    "  body=$(curl -sS -D \"$headers\" \"http://$api/2018-06-01/runtime/invocation/next\")\n"
    "  id=$(grep -i '^Lambda-Runtime-Aws-Request-Id:' \"$headers\" | tr -d '[:space:]' | cut -d: -f2)\n"
    "  curl -sS -o /dev/null -d \"$body\" \"http://$api/2018-06-01/runtime/invocation/$id/response\"\n"
    "done\n")}, ["bootstrap"])


def main():
    zips = dotnet._build_functions()
    server = h.LaminaServer("bench-cold-phases").start()
    try:
        lam = server.client()
        print(f"cold start by phase, {N} functions per row (each invoked once); milliseconds")
        print(f"{'runtime':<16}{'network':<9}{'Init p50':>10}{'Init p99':>10}{'Init min':>10}{'sandbox p50':>13}{'handler init p50':>18}")
        rows = [("dotnet10", zips["hello10"], dotnet.HELLO + "Handler", b'"x"'),
                ("dotnet8", zips["hello8"], dotnet.HELLO + "Handler", b'"x"'),
                ("python3.12", PYTHON, "app.handler", b"{}"),
                ("nodejs20.x", NODE, "index.handler", b"{}"),
                ("provided.al2023", PROVIDED, "none", b"{}")]
        for runtime, code, handler, payload in rows:
            for network in ("on", "none"):
                inits, sandboxes, handlers = [], [], []
                for i in range(N):
                    name = f"cold-{runtime.replace('.', '-')}-{network}-{i}"
                    variables = {"LAMINA_NETWORK": "none"} if network == "none" else {}
                    lam.create_function(FunctionName=name, Runtime=runtime, Role=h.ROLE, Handler=handler,
                                        Code={"ZipFile": code}, Environment={"Variables": variables})
                    resp = lam.invoke(FunctionName=name, Payload=payload, LogType="Tail")
                    log = base64.b64decode(resp["LogResult"]).decode()
                    inits.append(float(re.search(r"Init Duration: ([\d.]+) ms", log).group(1)))
                    [environment] = [e for e in server.raw("GET", "/lamina/v1/environments").json["Environments"]
                                     if e["FunctionName"] == name]
                    sandboxes.append(environment["SandboxMs"])
                    handlers.append(environment.get("HandlerInitMs") or 0)
                    lam.delete_function(FunctionName=name)
                p99 = sorted(inits)[min(len(inits) - 1, int(len(inits) * 0.99))]
                print(f"{runtime:<16}{network:<9}{statistics.median(inits):>10.1f}{p99:>10.1f}{min(inits):>10.1f}"
                      f"{statistics.median(sandboxes):>13.1f}{statistics.median(handlers):>18.1f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
