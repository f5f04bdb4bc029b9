"""The Runtime API on the wire (issue #19): one runtime connection carries the warm invoke's requests in every form a
client may send them — plain, pipelined (the response and the next /next in one write), split into small writes,
large bodies both ways, errors, a wrong request id, a reconnect — and a chunked response, which hands the connection to
Kestrel for the rest of its life, where the same requests keep working. The bootstrap is a raw-socket Python client,
so the test controls every byte; it reports what it saw in each response it posts."""
from __future__ import annotations

import base64
import json
import unittest

import lamina_harness as h

MODULE = __name__

BOOTSTRAP = r'''#!/usr/bin/python3
import json, os, socket

host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
HOST = ("Host: %s\r\n" % os.environ["AWS_LAMBDA_RUNTIME_API"]).encode()
NEXT = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n" + HOST + b"\r\n"


class Conn:
    def __init__(self):
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("closed")
        self.buf += data

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def take(self, n):
        while len(self.buf) < n:
            self.fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self):
        status = int(self.line().split()[1])
        headers = {}
        while True:
            line = self.line()
            if not line:
                break
            k, _, v = line.partition(b":")
            headers[k.strip().lower().decode()] = v.strip().decode()
        if "chunked" in headers.get("transfer-encoding", ""):
            body = b""
            while True:
                size = int(self.line().split(b";")[0], 16)
                if size == 0:
                    while self.line():
                        pass
                    break
                body += self.take(size)
                self.take(2)
        else:
            body = self.take(int(headers.get("content-length", "0")))
        return status, headers, body

    def post(self, path, body, extra=b"", chunked=False):
        head = b"POST " + path.encode() + b" HTTP/1.1\r\n" + HOST + b"Content-Type: application/json\r\n" + extra
        if chunked:
            half = len(body) // 2
            parts = [body[:half], body[half:]]
            data = head + b"Transfer-Encoding: chunked\r\n\r\n"
            for p in parts:
                data += b"%x\r\n" % len(p) + p + b"\r\n"
            return data + b"0\r\n\r\n"
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


conn = Conn()
pipelined = False
seen = []  # statuses and error types the runtime got back, reported with the next response
while True:
    if not pipelined:
        conn.sock.sendall(NEXT)
    pipelined = False
    status, headers, body = conn.response()
    if status != 200:
        raise SystemExit("next answered %d" % status)
    rid = headers["lambda-runtime-aws-request-id"]
    event = json.loads(body)
    mode = event.get("mode")
    result = {"mode": mode, "event_bytes": len(body), "seen": seen, "client_context": headers.get("lambda-runtime-client-context")}
    seen = []
    path = "/2018-06-01/runtime/invocation/%s/response" % rid
    if mode == "big":
        payload = b'{"big":"' + b"x" * (5 * 1024 * 1024) + b'"}'
    else:
        payload = json.dumps(result).encode()

    if mode == "error":
        data = conn.post("/2018-06-01/runtime/invocation/%s/error" % rid, b'{"errorType":"Boom","errorMessage":"as asked"}',
                         b"Lambda-Runtime-Function-Error-Type: Boom\r\n")
    elif mode == "wrong-id":
        conn.sock.sendall(conn.post("/2018-06-01/runtime/invocation/not-%s/response" % rid, b"{}"))
        st, _, b = conn.response()
        result["seen"].append([st, json.loads(b)["errorType"]])
        data = conn.post(path, json.dumps(result).encode())
    elif mode == "chunked":
        data = conn.post(path, payload, chunked=True)
    else:
        data = conn.post(path, payload)

    if mode == "reconnect":
        conn.sock.close()
        conn = Conn()
    if mode == "pipelined":
        conn.sock.sendall(data + NEXT)
        pipelined = True
    elif mode == "split":
        for i in range(0, len(data), 7):
            conn.sock.sendall(data[i:i + 7])
    else:
        conn.sock.sendall(data)
    st, _, b = conn.response()
    seen.append([st, json.loads(b).get("status") if st == 202 else json.loads(b).get("errorType")])
'''


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


class RuntimeApiWireTests(h.LaminaTestCase):

    def test_one_connection_every_form_then_kestrel(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"bootstrap": BOOTSTRAP}, executables=["bootstrap"]), runtime="provided.al2023",
                             handler="none", name=name, MemorySize=256, Timeout=30)

        def call(mode: str, **extra) -> dict:
            _, out = self.invoke_ok(name, {"mode": mode, **extra})
            self.assertEqual(out["mode"], mode, out)
            return out

        call("plain")
        out = call("pipelined")
        self.assertEqual(out["seen"], [[202, "OK"]])
        # The pipelined response's 202 came with this event.
        out = call("split")
        self.assertEqual(out["seen"], [[202, "OK"]])
        out = call("plain", padding="y" * (1024 * 1024))  # a 1 MB event: sent apart from its head
        self.assertGreater(out["event_bytes"], 1024 * 1024)
        resp, body, _ = self.invoke(name, {"mode": "big"})
        self.assertEqual(resp["StatusCode"], 200)
        self.assertNotIn("FunctionError", resp)
        self.assertEqual(len(body), 5 * 1024 * 1024 + 10)
        resp, body, parsed = self.invoke(name, {"mode": "error"})
        self.assertEqual(resp.get("FunctionError"), "Unhandled")
        self.assertEqual(parsed, {"errorType": "Boom", "errorMessage": "as asked"})
        out = call("wrong-id")
        self.assertEqual(out["seen"], [[202, "OK"], [400, "InvalidRequestID"]])
        context = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
        _, out = self.invoke_ok(name, {"mode": "pipelined"}, ClientContext=context)
        self.assertEqual(json.loads(out["client_context"]), {"custom": {"k": "v"}})
        call("reconnect")  # the response goes on a new connection
        out = call("chunked")  # the connection moves to Kestrel
        out = call("pipelined")
        self.assertEqual(out["seen"], [[202, "OK"]])
        out = call("split")
        self.assertEqual(out["seen"], [[202, "OK"]])
        resp, body, parsed = self.invoke(name, {"mode": "error"})
        self.assertEqual(parsed, {"errorType": "Boom", "errorMessage": "as asked"})
        out = call("wrong-id")
        self.assertEqual(out["seen"], [[202, "OK"], [400, "InvalidRequestID"]])
        call("plain")

        # All of it in one environment, warm.
        environments = [e for e in self.server.raw("GET", "/lamina/v1/environments").json["Environments"] if e["FunctionName"] == name]
        self.assertEqual(len(environments), 1, environments)


if __name__ == "__main__":
    unittest.main()
