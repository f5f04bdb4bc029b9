"""A fake Lambda Runtime API (2018-06-01) for testing Lamina's runtime bootstraps.

Standard library only.  Serves queued events to GET /runtime/invocation/next
(blocking like the real long poll while the queue is empty), and records every
request it receives -- including which TCP connection carried it -- so tests can
assert on what a bootstrap posted back.

    api = FakeRuntimeAPI([Event(b'{"a":1}'), Event(b'{}', request_id="r2")])
    api.start()
    ... run a bootstrap with AWS_LAMBDA_RUNTIME_API=api.address ...
    api.wait_for(lambda a: len(a.posts()) == 2, timeout=5)
    api.stop()
"""

import itertools
import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Event:
    def __init__(
        self,
        body=b"{}",
        request_id=None,
        deadline_ms=3000,
        arn="arn:aws:lambda:us-east-1:123456789012:function:test-fn",
        trace_id="Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
        client_context=None,
        cognito_identity=None,
        extra_headers=None,
        close_after=False,
        shutting_down=False,
    ):
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.request_id = request_id or str(uuid.uuid4())
        self.deadline_ms = deadline_ms
        self.arn = arn
        self.trace_id = trace_id
        self.client_context = client_context
        self.cognito_identity = cognito_identity
        self.extra_headers = extra_headers or {}
        # Close the TCP connection right after serving this event (without a
        # "Connection: close" header), like a server dropping an idle
        # keep-alive connection: the runtime must reconnect to post the result.
        self.close_after = close_after
        # Answer this /next as Lamina does when it ends the environment: 500, "The execution environment is shutting down".
        self.shutting_down = shutting_down
        self.deadline = None  # absolute epoch ms, set when served


class Record:
    """One request received by the fake API."""

    def __init__(self, method, path, headers, body, conn, trailers=None, chunked=False):
        self.method = method
        self.path = path
        self.headers = headers  # dict, lower-case keys
        self.body = body
        self.conn = conn  # connection number (one per TCP connection)
        self.trailers = trailers or {}
        self.chunked = chunked
        self.time = time.time()

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%s %s conn=%s %r>" % (self.method, self.path, self.conn, self.body[:200])


_conn_ids = itertools.count(1)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeRuntimeAPI/1.0"

    def setup(self):
        super().setup()
        self.conn_id = next(_conn_ids)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):  # keep test output quiet
        pass

    def _headers_dict(self):
        return {k.lower(): v for k, v in self.headers.items()}

    def _read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            chunks, trailers = [], {}
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        line = self.rfile.readline()
                        if line in (b"\r\n", b"\n", b""):
                            break
                        k, _, v = line.decode("latin-1").partition(":")
                        trailers[k.strip().lower()] = v.strip()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks), trailers, True
        n = int(self.headers.get("Content-Length") or 0)
        return (self.rfile.read(n) if n else b""), {}, False

    def _send(self, status, body=b"", headers=None):
        # One write for status line, headers and body.
        self.send_response_only(status)
        self.send_header("Date", self.date_time_string())
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self._headers_buffer.append(b"\r\n")
        self.wfile.write(b"".join(self._headers_buffer) + body)
        self._headers_buffer = []

    def do_GET(self):
        api = self.server.api
        api._record(Record("GET", self.path, self._headers_dict(), b"", self.conn_id))
        if self.path != "/2018-06-01/runtime/invocation/next":
            self._send(404, b'{"errorType":"NotFound","errorMessage":"not found"}')
            return
        ev = api._take_event()
        if ev is None:  # server stopping
            self.close_connection = True
            return
        if ev.shutting_down:
            self._send(500, b'{"errorType":"InternalServerError","errorMessage":"The execution environment is shutting down"}')
            return
        ev.deadline = int(time.time() * 1000) + ev.deadline_ms
        headers = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": ev.request_id,
            "Lambda-Runtime-Deadline-Ms": str(ev.deadline),
            "Lambda-Runtime-Invoked-Function-Arn": ev.arn,
        }
        if ev.trace_id:
            headers["Lambda-Runtime-Trace-Id"] = ev.trace_id
        if ev.client_context is not None:
            headers["Lambda-Runtime-Client-Context"] = ev.client_context
        if ev.cognito_identity is not None:
            headers["Lambda-Runtime-Cognito-Identity"] = ev.cognito_identity
        headers.update(ev.extra_headers)
        self._send(200, ev.body, headers)
        if ev.close_after:
            self.wfile.flush()
            self.close_connection = True

    def do_POST(self):
        api = self.server.api
        body, trailers, chunked = self._read_body()
        api._record(
            Record("POST", self.path, self._headers_dict(), body, self.conn_id, trailers, chunked)
        )
        self._send(202, b'{"status":"OK"}', {"Content-Type": "application/json"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # the bootstrap under test is killed mid-request at the end of each test


class FakeRuntimeAPI:
    def __init__(self, events=()):
        self._events = list(events)
        self._records = []
        self._cond = threading.Condition()
        self._stopping = False
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.api = self
        self._thread = None

    @property
    def address(self):
        host, port = self._server.server_address[:2]
        return "%s:%d" % (host, port)

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def stop(self):
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def add_event(self, ev):
        with self._cond:
            self._events.append(ev)
            self._cond.notify_all()

    # -- internals used by the handler ---------------------------------------

    def _take_event(self):
        with self._cond:
            while not self._events and not self._stopping:
                self._cond.wait(0.5)
            if self._stopping:
                return None
            return self._events.pop(0)

    def _record(self, rec):
        with self._cond:
            self._records.append(rec)
            self._cond.notify_all()

    # -- inspection ----------------------------------------------------------

    def records(self):
        with self._cond:
            return list(self._records)

    def posts(self):
        return [r for r in self.records() if r.method == "POST"]

    def gets(self):
        return [r for r in self.records() if r.method == "GET"]

    def wait_for(self, predicate, timeout=5.0, proc=None):
        """Wait until predicate(self) is true; stop early if proc has exited."""
        deadline = time.time() + timeout
        with self._cond:
            while True:
                if predicate(self):
                    return True
                if proc is not None and proc.poll() is not None:
                    # give in-flight requests a moment to be recorded
                    self._cond.wait(0.05)
                    return predicate(self)
                remaining = deadline - time.time()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
