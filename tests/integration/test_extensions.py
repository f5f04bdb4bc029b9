"""External extensions (Extensions API 2020-01-01) and the Telemetry API, shipped in a layer under /opt/extensions."""
from __future__ import annotations

import os
import re
import time
import unittest

import lamina_harness as h

MODULE = __name__

# A bash extension: registers, then logs every event it gets. It finishes each INVOKE 300 ms after it arrives,
# so the invoke phase outlasts the runtime's response.
PROBE_EXTENSION = r'''#!/bin/bash
set -u
api="http://${AWS_LAMBDA_RUNTIME_API}/2020-01-01/extension"
headers=$(mktemp)
registration=$(curl -sS -D "$headers" -X POST "$api/register" -H "Lambda-Extension-Name: probe-ext" \
  -d '{"events":["INVOKE","SHUTDOWN"]}')
id=$(grep -i '^Lambda-Extension-Identifier:' "$headers" | tr -d '[:space:]' | cut -d: -f2)
echo "probe-ext registered $registration handler-var=${_HANDLER:-unset}"
while true; do
  event=$(curl -sS -H "Lambda-Extension-Identifier: $id" "$api/event/next")
  if [[ $event =~ \"eventType\":\"([A-Z]+)\" ]]; then type=${BASH_REMATCH[1]}; else type=NONE; fi
  if [[ $event =~ \"requestId\":\"([^\"]+)\" ]]; then detail=${BASH_REMATCH[1]}; fi
  if [[ $event =~ \"shutdownReason\":\"([a-z]+)\" ]]; then detail=${BASH_REMATCH[1]}; fi
  echo "probe-ext $type ${detail:-}"
  if [ "$type" = SHUTDOWN ] || [ "$type" = NONE ]; then exit 0; fi
  sleep 0.3
done
'''

# A Python extension that subscribes to telemetry and logs each record it receives.
TELEMETRY_EXTENSION = r'''#!/usr/bin/python3
import http.client, http.server, json, os, threading
api = os.environ["AWS_LAMBDA_RUNTIME_API"]

class Listener(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        records = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        for r in records:
            record = r["record"]
            detail = record.get("requestId", "") if isinstance(record, dict) else (record.split() or [""])[-1]
            print("telemetry", r["type"], detail, flush=True)
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", 4243), Listener)
threading.Thread(target=server.serve_forever, daemon=True).start()
c = http.client.HTTPConnection(api)
c.request("POST", "/2020-01-01/extension/register", body=json.dumps({"events": ["INVOKE"]}),
          headers={"Lambda-Extension-Name": "telemetry-ext"})
r = c.getresponse(); r.read()
ext_id = r.getheader("Lambda-Extension-Identifier")
c.request("PUT", "/2022-07-01/telemetry", headers={"Lambda-Extension-Identifier": ext_id, "Content-Type": "application/json"},
          body=json.dumps({"schemaVersion": "2022-12-13", "types": ["platform", "function"],
                           "buffering": {"maxItems": 1000, "maxBytes": 262144, "timeoutMs": 25},
                           "destination": {"protocol": "HTTP", "URI": "http://sandbox.localdomain:4243/telemetry"}}))
r = c.getresponse(); print("telemetry-ext subscribed", r.status, r.read().decode(), flush=True)
while True:
    c.request("GET", "/2020-01-01/extension/event/next", headers={"Lambda-Extension-Identifier": ext_id})
    r = c.getresponse(); r.read()
    if r.status != 200:
        break
'''

HANDLER = '''
print("runtime init", flush=True)
def handler(event, context):
    print("handler ran", context.aws_request_id, flush=True)
    return {"ok": True}
'''


def setUpModule():
    # Function output (extensions included) goes to the server log at Debug: how a test sees SHUTDOWN handling.
    os.environ["Logging__LogLevel__Lamina.Function"] = "Debug"
    try:
        h.start_module_server(MODULE)
    finally:
        del os.environ["Logging__LogLevel__Lamina.Function"]


def tearDownModule():
    h.stop_module_server(MODULE)


class ExtensionTests(h.LaminaTestCase):

    def publish_layer(self, files: dict, executables: list[str]) -> str:
        layer = self.fn_name("layer")
        resp = self.lam.publish_layer_version(LayerName=layer, Content={"ZipFile": h.make_zip(files, executables)})
        return resp["LayerVersionArn"]

    def wait_for_output(self, mark: int, pattern: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            output = self.server.output_since(mark, limit=100000)
            if re.search(pattern, output):
                return output
            time.sleep(0.05)  # polling the server's log for an asynchronous effect, bounded by the deadline
        self.fail(f"no {pattern!r} in the server log within {timeout} s:\n{self.server.output_since(mark)}")

    def test_external_extension_sees_every_invoke_and_shutdown(self):
        layer = self.publish_layer({"extensions/probe-ext": PROBE_EXTENSION}, ["extensions/probe-ext"])
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": HANDLER}), name=name, Layers=[layer], cleanup=False)
        mark = self.server.mark()

        first = self.lam.invoke(FunctionName=name, LogType="Tail")
        tail = h.decode_log_result(first)
        request_id = first["ResponseMetadata"]["RequestId"]
        self.assertNotIn("FunctionError", first, tail)
        # Init order: the extension registered before the runtime loaded the handler; it saw the function.
        self.assertLess(tail.index("probe-ext registered"), tail.index("runtime init"), tail)
        self.assertIn(f'"functionName":"{name}"', tail)
        self.assertIn("handler-var=unset", tail, "extensions must not see _HANDLER")
        self.assertIn(f"probe-ext INVOKE {request_id}", tail)
        # The extension held the invoke phase open 300 ms after the runtime answered: Duration covers it.
        duration = float(re.search(r"Duration: ([0-9.]+) ms", tail).group(1))
        self.assertGreaterEqual(duration, 300, tail)

        second = self.lam.invoke(FunctionName=name, LogType="Tail")
        self.assertIn(f"probe-ext INVOKE {second['ResponseMetadata']['RequestId']}", h.decode_log_result(second))

        # Deleting the function shuts its environment down: the extension gets SHUTDOWN (spindown).
        self.lam.delete_function(FunctionName=name)
        self.wait_for_output(mark, r"probe-ext SHUTDOWN spindown")

    def test_timeout_and_crash_reset_the_environment_with_shutdown_reason(self):
        layer = self.publish_layer({"extensions/probe-ext": PROBE_EXTENSION}, ["extensions/probe-ext"])
        name = self.fn_name()
        handler = ("import os, time\n"
                   "def handler(event, context):\n"
                   "    if event.get('crash'):\n        os._exit(7)\n"
                   "    time.sleep(float(event.get('sleep', 0)))\n    return {'ok': True}\n")
        self.create_function(h.make_zip({"app.py": handler}), name=name, Layers=[layer], Timeout=1)

        # A timeout kills the runtime; the extension still gets SHUTDOWN, with reason "timeout".
        mark = self.server.mark()
        resp, body, _ = self.invoke(name, {"sleep": 5})
        self.assertEqual(resp.get("FunctionError"), "Unhandled", body)
        self.assertIn(b"Task timed out after 1.00 seconds", body)
        self.wait_for_output(mark, r"probe-ext SHUTDOWN timeout")
        self.invoke_ok(name, {})

        # A crash of the runtime: reason "failure"; the caller gets the exit error, the next invocation works.
        mark = self.server.mark()
        resp, body, _ = self.invoke(name, {"crash": True})
        self.assertEqual(resp.get("FunctionError"), "Unhandled", body)
        self.assertIn(b"Runtime.ExitError", body)
        self.assertIn(b"exit status 7", body)
        self.wait_for_output(mark, r"probe-ext SHUTDOWN failure")
        self.invoke_ok(name, {})

    def test_telemetry_subscriber_receives_platform_and_function_records(self):
        layer = self.publish_layer({"extensions/telemetry-ext": TELEMETRY_EXTENSION}, ["extensions/telemetry-ext"])
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": HANDLER}), name=name, Layers=[layer])
        mark = self.server.mark()

        first = self.lam.invoke(FunctionName=name, LogType="Tail")
        self.assertIn("telemetry-ext subscribed 200 OK", h.decode_log_result(first))
        request_id = first["ResponseMetadata"]["RequestId"]
        self.wait_for_output(mark, rf"telemetry platform\.start {request_id}")
        self.wait_for_output(mark, rf"telemetry function {request_id}")
        self.wait_for_output(mark, rf"telemetry platform\.report {request_id}")
        # The subscriber's own output is an "extension" record, not a "function" one: it is not fed back to it
        # (if it were, each line it prints about the handler's line would come back as another such line).
        self.wait_for_output(mark, r"telemetry platform\.runtimeDone")
        output = self.server.output_since(mark, limit=100000)
        self.assertEqual(output.count(f"telemetry function {request_id}"), 1, output)

    def test_exec_wrapper_runs_before_a_managed_runtime(self):
        wrapper = "#!/bin/bash\nexport WRAPPED_BY=wrapper\nexec \"$@\"\n"
        layer = self.publish_layer({"wrapper.sh": wrapper}, ["wrapper.sh"])
        handler = "import os\ndef handler(event, context):\n    return {'wrapped': os.environ.get('WRAPPED_BY')}\n"
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": handler}), name=name, Layers=[layer],
                             Environment={"Variables": {"AWS_LAMBDA_EXEC_WRAPPER": "/opt/wrapper.sh"}})
        _, out = self.invoke_ok(name)
        self.assertEqual(out, {"wrapped": "wrapper"})


if __name__ == "__main__":
    unittest.main()
