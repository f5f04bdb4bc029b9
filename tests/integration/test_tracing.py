"""Traces (issue #7): a server started with --otlp-endpoint sends one span per invocation with children for the cold
start's phases and the handler, over OTLP/HTTP (protobuf) to a collector this test runs on loopback; the caller's trace
context (X-Amzn-Trace-Id or W3C traceparent) is continued and handed to the runtime, for async invocations too."""
from __future__ import annotations

import http.server
import threading
import time
import unittest

import lamina_harness as h

TRACE_PY = '''
import os

def handler(event, context):
    return {"trace": os.environ.get("_X_AMZN_TRACE_ID")}
'''


# ---- a minimal protobuf reader: enough of OTLP's ExportTraceServiceRequest to see spans ------------------------------
def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _fields(data: bytes) -> dict[int, list]:
    """Field number -> values (ints for varints and fixed, bytes for length-delimited)."""
    fields: dict[int, list] = {}
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 1:
            value, i = int.from_bytes(data[i:i + 8], "little"), i + 8
        elif wire == 2:
            length, i = _varint(data, i)
            value, i = data[i:i + length], i + length
        elif wire == 5:
            value, i = int.from_bytes(data[i:i + 4], "little"), i + 4
        else:
            raise ValueError(f"wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def _spans(body: bytes) -> list[dict]:
    spans = []
    for resource_spans in _fields(body).get(1, []):           # ExportTraceServiceRequest.resource_spans
        for scope_spans in _fields(resource_spans).get(2, []):  # ResourceSpans.scope_spans
            for span in _fields(scope_spans).get(2, []):        # ScopeSpans.spans
                f = _fields(span)
                attributes = {}
                for kv in f.get(9, []):
                    kvf = _fields(kv)
                    value = _fields(kvf[2][0]) if 2 in kvf else {}
                    attributes[kvf[1][0].decode()] = (value.get(1) or [b""])[0] if 1 in value else (value.get(2) or value.get(3) or [None])[0]
                spans.append({
                    "trace_id": f[1][0].hex(), "span_id": f[2][0].hex(),
                    "parent": f[4][0].hex() if 4 in f and f[4][0] else None,
                    "name": f[5][0].decode(), "start": f.get(7, [0])[0], "end": f.get(8, [0])[0],
                    "attributes": attributes,
                })
    return spans


class _Collector(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/v1/traces":
            with _Collector.lock:
                _Collector.received.extend(_spans(body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class TracingTests(h.OwnServerTestCase):

    _collector: http.server.ThreadingHTTPServer | None = None

    @classmethod
    def server_args(cls) -> list[str]:
        return ["--otlp-endpoint", f"http://127.0.0.1:{cls._collector.server_address[1]}"]

    @classmethod
    def setUpClass(cls):
        cls._collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
        threading.Thread(target=cls._collector.serve_forever, daemon=True).start()
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls._collector.shutdown()

    def _spans_of(self, trace_id: str, names: set[str], timeout: float = 20) -> list[dict]:
        """Waits (bounded: spans are exported in batches, about every second) until the trace has `names`."""
        deadline = time.monotonic() + timeout
        while True:
            with _Collector.lock:
                spans = [s for s in _Collector.received if s["trace_id"] == trace_id]
            if names <= {s["name"] for s in spans}:
                return spans
            self.assertLess(time.monotonic(), deadline, f"spans of {trace_id}: {[s['name'] for s in spans]}, expected {names}")
            time.sleep(0.1)

    def _invoke(self, name: str, headers: dict) -> dict:
        resp = self.server.raw("POST", f"/2015-03-31/functions/{name}/invocations", b"{}", headers=headers)
        self.assertEqual(resp.status, 200, repr(resp))
        return resp.json

    def test_cold_invocation_continues_the_callers_xray_trace_with_phase_spans(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": TRACE_PY}), name=name)
        trace, caller_span = "5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8"
        out = self._invoke(name, {"X-Amzn-Trace-Id": f"Root=1-5759e988-bd862e3fe1be46a994272793;Parent={caller_span};Sampled=1"})

        spans = self._spans_of(trace, {"lamina.invoke", "lamina.sandbox", "lamina.runtime_init", "lamina.handler_init", "lamina.handler"})
        [invoke] = [s for s in spans if s["name"] == "lamina.invoke"]
        self.assertEqual(invoke["parent"], caller_span)
        self.assertEqual(invoke["attributes"]["faas.name"], name.encode())
        for child in ("lamina.sandbox", "lamina.runtime_init", "lamina.handler_init", "lamina.handler"):
            [span] = [s for s in spans if s["name"] == child]
            self.assertEqual(span["parent"], invoke["span_id"], child)
            self.assertGreaterEqual(span["start"], invoke["start"], child)
        phases = {s["name"]: s for s in spans}
        self.assertLessEqual(phases["lamina.sandbox"]["end"], phases["lamina.runtime_init"]["start"] + 1)
        self.assertLessEqual(phases["lamina.runtime_init"]["end"], phases["lamina.handler_init"]["start"] + 1)
        # The runtime got the same trace, with Lamina's invoke span as its parent.
        self.assertEqual(out["trace"], f"Root=1-5759e988-bd862e3fe1be46a994272793;Parent={invoke['span_id']};Sampled=1")

        # Warm: no phase spans, a handler span.
        trace2 = "6759e988bd862e3fe1be46a994272793"
        self._invoke(name, {"X-Amzn-Trace-Id": "Root=1-6759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"})
        warm = self._spans_of(trace2, {"lamina.invoke", "lamina.handler"})
        self.assertNotIn("lamina.sandbox", {s["name"] for s in warm})

    def test_w3c_traceparent_is_continued(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": TRACE_PY}), name=name)
        trace = "0af7651916cd43dd8448eb211c80319c"
        out = self._invoke(name, {"traceparent": f"00-{trace}-b7ad6b7169203331-01"})
        self.assertTrue(out["trace"].startswith("Root=1-0af76519-16cd43dd8448eb211c80319c;Parent="), out)
        [invoke] = [s for s in self._spans_of(trace, {"lamina.invoke"}) if s["name"] == "lamina.invoke"]
        self.assertEqual(invoke["parent"], "b7ad6b7169203331")

    def test_async_invocation_stays_in_the_callers_trace(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": TRACE_PY}), name=name)
        resp = self.server.raw("POST", f"/2015-03-31/functions/{name}/invocations", b"{}",
                               headers={"X-Amz-Invocation-Type": "Event",
                                        "X-Amzn-Trace-Id": "Root=1-7759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"})
        self.assertEqual(resp.status, 202)
        [invoke] = [s for s in self._spans_of("7759e988bd862e3fe1be46a994272793", {"lamina.invoke"}) if s["name"] == "lamina.invoke"]
        self.assertEqual(invoke["parent"], "53995c3f42cd8ad8")
        self.assertEqual(invoke["attributes"]["faas.name"], name.encode())


if __name__ == "__main__":
    unittest.main()
