"""Hostile API input beyond test_api_errors.py (RELIABILITY.md §4.1): the rows and variants it does not cover.

Each test asserts what a user sees (status, `x-amzn-ErrorType`, message) and that nothing was half-written: a refused
create leaves no function and nothing new in the code store, a refused update keeps the old code and configuration,
a refused invoke starts no environment and queues nothing.

  * names: homoglyphs, zero-width and full-width characters, control characters, path tricks in the URL;
  * ARNs and qualifiers: malformed ARNs on every function operation, unknown and malformed qualifiers;
  * sizes: sync Invoke over 6 MB and async over 1 MB refused before anything starts (exact boundaries accepted),
    legacy InvokeAsync over 256 KB, a code zip over 50 MB;
  * malformed JSON (huge numbers, duplicate keys, lone surrogates, invalid UTF-8, 10k-deep nesting, ...) on every
    JSON route of the control plane, and the Content-Type a JSON route gets;
  * zips: symlinks and special files, `C:\\` and backslash names, duplicate and directory/file clashes,
    overlapping entries (a non-recursive zip bomb), 20,001 entries, setuid bits;
  * unicode: NFC and NFD strings stay distinct and byte-exact, case-only name differences are distinct functions,
    emoji and RTL overrides round-trip through environment, payload, result and logs;
  * a stale RevisionId on UpdateFunctionConfiguration / UpdateFunctionCode / PublishVersion / UpdateAlias;
  * use after delete, including a re-created function that must not inherit the old one's state;
  * slow clients: bodies that never end and trickling bodies and headers are cut off, and the server stays healthy.
    They run in background threads from setUpModule, so their timeouts overlap the rest of the module.

The product bugs these tests found are fixed; the tests stay as their regression tests.
"""
from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import socket
import stat
import struct
import subprocess
import threading
import time
import unicodedata
import unittest
import urllib.parse
import uuid
import warnings
import zipfile
import zlib

import requests

import lamina_harness as h
from lamina_functions import py_probe_zip

MODULE = __name__
FUNCTIONS = "/2015-03-31/functions"
IPVE = "InvalidParameterValueException"
IRCE = "InvalidRequestContentException"
VALIDATION = {"InvalidParameterValueException", "ValidationException"}
NOT_FOUND = "ResourceNotFoundException"
SIX_MB = 6 * 1024 * 1024
ONE_MB = 1024 * 1024
STACK_TRACE_RE = re.compile(r"^\s+at [A-Za-z_][\w.`<>\[\],]*\(|\bat (?:Lamina|System|Microsoft)\.[\w.`<>]+\(", re.M)

# Bounds for the slow-client scenarios (Kestrel: MinRequestBodyDataRate 240 B/s after a 5 s grace period,
# RequestHeadersTimeout 30 s).
BODY_CUTOFF_S = 20.0
HEADER_CUTOFF_S = 45.0


# ------------------------------------------------------------------------------------------------
# Slow clients, started with the module so their waits overlap the other tests
# ------------------------------------------------------------------------------------------------

class _SlowClient:
    """One raw-socket scenario in a thread: what came back and after how long the server ended it."""

    def __init__(self, label: str, host: str, port: int, head: bytes, trickle: bytes = b"",
                 interval: float = 0.5, give_up: float = 60.0):
        self.label, self.host, self.port = label, host, port
        self.head, self.trickle, self.interval, self.give_up = head, trickle, interval, give_up
        self.response = b""
        self.closed_after: float | None = None  # seconds until the server closed or reset the connection
        self.error: str | None = None
        self.sock: socket.socket | None = None
        self.thread = threading.Thread(target=self._run, name=f"slow-{label}", daemon=True)

    def start(self) -> "_SlowClient":
        self.thread.start()
        return self

    def _run(self) -> None:
        t0 = time.monotonic()
        try:
            with socket.create_connection((self.host, self.port), timeout=self.give_up) as s:
                self.sock = s
                s.sendall(self.head)
                if self.trickle:
                    s.setblocking(False)
                    for byte in self.trickle:  # one byte per interval, reading whatever comes back
                        if time.monotonic() - t0 > self.give_up:
                            break
                        try:
                            s.send(bytes([byte]))
                        except (BrokenPipeError, ConnectionResetError, BlockingIOError):
                            break
                        if self._drain(s):
                            self.closed_after = time.monotonic() - t0
                            return
                        time.sleep(self.interval)
                    s.setblocking(True)
                s.settimeout(max(0.1, self.give_up - (time.monotonic() - t0)))
                while True:
                    try:
                        chunk = s.recv(65536)
                    except (ConnectionResetError, BrokenPipeError):
                        chunk = b""
                    if not chunk:
                        self.closed_after = time.monotonic() - t0
                        return
                    self.response += chunk
        except (socket.timeout, TimeoutError):
            self.error = f"the server kept the connection open for {self.give_up:.0f} s"
        except OSError as e:
            self.error = repr(e)

    def abort(self) -> None:
        """Closes the connection from this side (so a filtered run does not leave it to delay the server's stop)."""
        if self.thread.is_alive() and self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _drain(self, s: socket.socket) -> bool:
        """Reads what is available without blocking; True once the server has closed the connection."""
        while True:
            try:
                chunk = s.recv(65536)
            except BlockingIOError:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True
            self.response += chunk

    @property
    def status(self) -> int | None:
        m = re.match(rb"HTTP/1\.1 (\d{3})", self.response)
        return int(m.group(1)) if m else None

    def headers(self) -> dict[str, str]:
        head = self.response.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
        return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head)}


_SLOW: dict[str, _SlowClient] = {}
_SLOW_FUNCTION: dict[str, str] = {}


def _start_slow_clients(srv: h.LaminaServer) -> None:
    parsed = urllib.parse.urlsplit(srv.url)
    host, port = parsed.hostname, parsed.port
    # A real function, so a stalled Invoke could start it if the server did not wait for the whole body.
    name = f"hostile-stall-{uuid.uuid4().hex[:8]}"
    h.boto3_client(srv.url, "lambda").create_function(
        FunctionName=name, Runtime="python3.12", Role=h.ROLE, Handler="app.handler", Code={"ZipFile": py_probe_zip()})
    _SLOW_FUNCTION["invoke"] = name
    _SLOW_FUNCTION["create"] = f"hostile-stall-create-{uuid.uuid4().hex[:8]}"
    create_body = json.dumps({"FunctionName": _SLOW_FUNCTION["create"], "Runtime": "python3.12", "Role": h.ROLE,
                              "Handler": "app.handler",
                              "Code": {"ZipFile": base64.b64encode(py_probe_zip()).decode()}}).encode()
    scenarios = [
        # Chunked CreateFunction whose last chunk never comes (the body is complete JSON but never ends).
        _SlowClient("chunked create never ends", host, port,
                    b"POST /2015-03-31/functions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(create_body) + create_body + b"\r\n"),
        # Chunked Invoke of a real function: one chunk, then silence.
        _SlowClient("chunked invoke never ends", host, port,
                    f"POST /2015-03-31/functions/{name}/invocations HTTP/1.1\r\nHost: x\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n".encode()),
        # Content-Length promises more than ever arrives.
        _SlowClient("content-length body stalls", host, port,
                    f"PUT /2015-03-31/functions/{name}/configuration HTTP/1.1\r\nHost: x\r\n"
                    "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"Description\": \"".encode()),
        # A body trickling in at 2 bytes/s (Kestrel's floor is 240 B/s).
        _SlowClient("trickling body", host, port,
                    f"PUT /2015-03-31/functions/{name}/configuration HTTP/1.1\r\nHost: x\r\n"
                    "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n".encode(),
                    trickle=b'{"Description": "' + b"a" * 200),
        # Headers trickling in at 2 bytes/s, never finished (slowloris).
        _SlowClient("trickling headers", host, port,
                    b"GET /2015-03-31/functions HTTP/1.1\r\nHost: x\r\n", trickle=b"X-Slow: " + b"a" * 400),
    ]
    for client in scenarios:
        _SLOW[client.label] = client.start()


def setUpModule():
    srv = h.start_module_server(MODULE)
    _start_slow_clients(srv)


def tearDownModule():
    try:
        for client in _SLOW.values():
            client.abort()
            client.thread.join(timeout=2)
        time.sleep(0.2)  # the server sees the closes
    finally:
        h.stop_module_server(MODULE)


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _zip_entries(entries) -> bytes:
    """h.make_zip_raw_entries without zipfile's warning about the duplicate names some tests want."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
        return h.make_zip_raw_entries(entries)


def _overlapping_zip(copies: int, megabytes: int) -> bytes:
    """Fifield-style non-recursive bomb: one deflated entry of zeros that `copies` central-directory records all
    point at (under different names), plus a real app.py. Small on the wire, huge when extracted."""
    raw = bytes(megabytes * ONE_MB)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = comp.compress(raw) + comp.flush()
    crc = zlib.crc32(raw)
    app = b"def handler(event, context):\n    return 1\n"
    out = io.BytesIO()
    first = b"z0"
    out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(deflated), len(raw), len(first), 0))
    out.write(first + deflated)
    app_offset = out.tell()
    out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, zlib.crc32(app), len(app), len(app), 6, 0))
    out.write(b"app.py" + app)
    records = [(b"z%d" % i, 0, 8, crc, len(deflated), len(raw)) for i in range(copies)]
    records.append((b"app.py", app_offset, 0, zlib.crc32(app), len(app), len(app)))
    central = io.BytesIO()
    for entry_name, offset, method, entry_crc, csize, usize in records:
        central.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x031E, 20, 0, method, 0, 0, entry_crc, csize,
                                  usize, len(entry_name), 0, 0, 0, 0, 0o100644 << 16, offset) + entry_name)
    central_bytes = central.getvalue()
    central_offset = out.tell()
    out.write(central_bytes)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(records), len(records), len(central_bytes),
                          central_offset, 0))
    return out.getvalue()


class _HostileBase(h.LaminaTestCase):

    def create_body(self, name: str, zip_bytes: bytes | None = None, **overrides) -> dict:
        body = {"FunctionName": name, "Runtime": "python3.12", "Role": h.ROLE, "Handler": "app.handler",
                "Code": {"ZipFile": _b64(zip_bytes if zip_bytes is not None else py_probe_zip())}}
        body.update(overrides)
        return body

    def raw_create(self, body, **kw) -> h.RawResponse:
        r = self.server.raw("POST", FUNCTIONS, body=body, **kw)
        if r.status == 201 and isinstance(body, dict):
            self.addCleanup(self._delete_quietly, body["FunctionName"])
        return r

    def path(self, ident: str, suffix: str = "") -> str:
        return f"{FUNCTIONS}/{h.quote_path_segment(ident)}{suffix}"

    def assertNotFound(self, name: str) -> None:
        self.assertAwsError(lambda: self.lam.get_function(FunctionName=name), 404, NOT_FOUND)

    def assertRefused(self, r: h.RawResponse, status, codes=None) -> None:
        """An AWS-shaped refusal, or Kestrel's own empty 400 for a request target it will not route at all (a %00
        in the path is refused before any Lamina code runs)."""
        if r.status == 400 and not r.body and r.error_type is None and r.headers.get("Connection", "") == "close":
            return
        self.assertRawError(r, status, codes)
        self.assertNoTrace(r)

    def assertNoTrace(self, r: h.RawResponse) -> None:
        self.assertIsNone(STACK_TRACE_RE.search(r.text), f"stack trace in the response body: {r!r}")

    def snapshot(self, name: str) -> dict:
        """What must not change when a request is refused: $LATEST's configuration, versions, aliases, tags."""
        cfg = self.lam.get_function_configuration(FunctionName=name)
        cfg.pop("ResponseMetadata", None)
        versions = [v["Version"] for v in self.lam.list_versions_by_function(FunctionName=name)["Versions"]]
        aliases = {a["Name"]: (a["FunctionVersion"], a["RevisionId"])
                   for a in self.lam.list_aliases(FunctionName=name)["Aliases"]}
        tags = self.lam.list_tags(Resource=h.function_arn(name)).get("Tags", {})
        return {"config": cfg, "versions": versions, "aliases": aliases, "tags": tags}

    def environments_of(self, name: str) -> list[dict]:
        r = requests.get(f"{self.server.url}/lamina/v1/environments", timeout=10)
        self.assertEqual(r.status_code, 200, r.text[:300])
        return [e for e in r.json()["Environments"] if e["FunctionName"] == name]

    def async_counts(self, name: str) -> tuple[int, int]:
        r = requests.get(f"{self.server.url}/lamina/v1/async-events", params={"function": name}, timeout=10)
        self.assertEqual(r.status_code, 200, r.text[:300])
        return r.json()["Queued"], r.json()["Failed"]

    def log_streams_of(self, name: str) -> list[str]:
        logs = h.boto3_client(self.server.url, "logs")
        try:
            return [s["logStreamName"] for s in
                    logs.describe_log_streams(logGroupName=f"/aws/lambda/{name}")["logStreams"]]
        except logs.exceptions.ResourceNotFoundException:
            return []

    def code_store_entries(self) -> set[str] | None:
        if self.server.data_dir is None:
            return None
        code = self.server.data_dir / "code"
        return set(os.listdir(code)) if code.exists() else set()


# ------------------------------------------------------------------------------------------------
# Names
# ------------------------------------------------------------------------------------------------

class FunctionNameTests(_HostileBase):

    def test_lookalike_and_control_character_names_are_refused_and_create_nothing(self):
        tag = uuid.uuid4().hex[:6]
        ascii_twin = f"lamina-a-{tag}"
        bad = {
            "cyrillic a (homoglyph)": f"lamina-\u0430-{tag}",
            "greek omicron (homoglyph)": f"lamina-\u03bf-{tag}",
            "full-width letters": f"\uff4c\uff41\uff4d-{tag}",
            "zero-width space": f"lamina-a\u200b-{tag}",
            "zero-width joiner": f"lamina-a\u200d-{tag}",
            "byte order mark": f"\ufefflamina-a-{tag}",
            "RTL override mid-name": f"lamina-\u202ea-{tag}",
            "combining accent (NFD)": f"lamina-a\u0301-{tag}",
            "tab": f"lamina-a\t{tag}",
            "carriage return": f"lamina-a\r{tag}",
            "CRLF header injection": f"lamina-a\r\nX-Evil: 1",
            "NUL at the end": f"{ascii_twin}\x00",
            "DEL": f"lamina-a\x7f{tag}",
            "percent-encoded slash": f"lamina%2Fa-{tag}",
            "dot segment": f"./{ascii_twin}",
            "backslash": f"lamina\\a-{tag}",
            "colon only": ":",
            "qualifier only": ":$LATEST",
        }
        before = self.code_store_entries()
        for label, name in bad.items():
            with self.subTest(kind=label):
                r = self.raw_create(self.create_body(name))
                self.assertRawError(r, 400, VALIDATION)
                self.assertNoTrace(r)
        names = self.list_function_names()
        for label, name in bad.items():
            self.assertNotIn(name, names, label)
        self.assertNotIn(ascii_twin, names, "a look-alike name must not be folded into its ASCII twin")
        self.assertNotFound(ascii_twin)
        if before is not None:
            self.assertEqual(self.code_store_entries(), before, "a refused create left files in the code store")

    def test_path_tricks_in_the_url_never_reach_another_function(self):
        name = self.fn_name()
        zip_bytes = py_probe_zip("kept")
        self.create_function(zip_bytes, name=name)
        before = self.snapshot(name)
        q = urllib.parse.quote(name, safe="")
        idents = [f"{q}%2F..", f"..%2F{q}", f"{q}%2F", f"{q}%2F.", f".%2F{q}", f"{q}%00", f"{q}%20", f"%20{q}",
                  f"{q}%09", f"{q}%0D", f"{q}.", f"{q}%2e%2e", f"{q}%3B", f"{q};x", f"{q}%23", f"{q.upper()}",
                  f"{q}%E2%80%8B", f"{q}%C0%AF", f"%2e%2e%2F%2e%2e%2F{q}"]
        for ident in idents:
            for method, suffix, body in (("GET", "", None), ("GET", "/configuration", None),
                                         ("PUT", "/configuration", {"Description": "hijacked"}),
                                         ("POST", "/invocations", {}), ("DELETE", "", None)):
                with self.subTest(ident=ident, method=method, suffix=suffix):
                    r = self.server.raw(method, f"{FUNCTIONS}/{ident}{suffix}", body=body)
                    self.assertRefused(r, (400, 404))
        self.assertEqual(self.snapshot(name), before, "a request on a look-alike path changed the function")
        self.assertEqual(self.environments_of(name), [], "a request on a look-alike path ran the function")

    def test_create_name_with_trailing_newline_is_refused(self):
        name = self.fn_name()
        self.addCleanup(self._delete_quietly, name)
        r = self.raw_create(self.create_body(name + "\n"))
        self.assertRawError(r, 400, VALIDATION)
        self.assertNotFound(name)

    def test_path_name_with_trailing_newline_does_not_resolve_to_the_function(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        r = self.server.raw("DELETE", self.path(name + "\n"))
        self.assertRawError(r, (400, 404))
        self.lam.get_function(FunctionName=name)  # still there

    def test_environment_key_with_trailing_newline_is_refused(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, Environment={"Variables": {"KEEP": "me"}})
        r = self.server.raw("PUT", self.path(name, "/configuration"),
                            body={"Environment": {"Variables": {"KEY\n": "v"}}})
        self.assertRawError(r, 400, VALIDATION)
        self.assertEqual(self.lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"],
                         {"KEEP": "me"})

    def test_alias_name_with_trailing_newline_is_refused(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        r = self.server.raw("POST", self.path(name, "/aliases"), body={"Name": "live\n", "FunctionVersion": "$LATEST"})
        self.assertRawError(r, 400, VALIDATION)
        self.assertEqual(self.lam.list_aliases(FunctionName=name)["Aliases"], [])

    def test_handler_and_role_with_trailing_newline_are_refused(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        for field, value in (("Handler", "app.handler\n"), ("Role", h.ROLE + "\n")):
            r = self.server.raw("PUT", self.path(name, "/configuration"), body={field: value})
            self.assertRawError(r, 400, VALIDATION)
        cfg = self.lam.get_function_configuration(FunctionName=name)
        self.assertEqual((cfg["Handler"], cfg["Role"]), ("app.handler", h.ROLE))


# ------------------------------------------------------------------------------------------------
# ARNs and qualifiers
# ------------------------------------------------------------------------------------------------

class ArnAndQualifierTests(_HostileBase):

    def test_malformed_arns_are_4xx_on_every_operation_and_change_nothing(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        before = self.snapshot(name)
        arn = h.function_arn(name)
        malformed = [
            f"{arn}:1:2", f"{arn}:", f"{arn}::", f"{arn}:$latest", f"{arn}:" + "q" * 200,
            arn.replace(":lambda:", ":s3:"), arn.replace(":lambda:", "::"), arn.replace("000000000000", "00000000000"),
            arn.replace("000000000000", "0000000000000"), arn.replace("arn:", "ARN:"),
            arn.replace(":function:", ":layer:"),
            arn.replace(":function:", "::"), "arn:aws:lambda", "arn:", ":" + name, f"{name}::1", f"{name}:1:",
            f"{h.ACCOUNT}:function:{name}:$LATEST:x", "arn:aws:lambda:us-east-1:000000000000:function:" + "f" * 130,
            arn.replace(name, name + "/x"), arn + "\x00",
        ]
        operations = {
            "GetFunction": ("GET", "", None),
            "GetFunctionConfiguration": ("GET", "/configuration", None),
            "UpdateFunctionConfiguration": ("PUT", "/configuration", {"Description": "via a bad ARN"}),
            "UpdateFunctionCode": ("PUT", "/code", {"ZipFile": _b64(py_probe_zip("evil"))}),
            "Invoke": ("POST", "/invocations", {}),
            "PublishVersion": ("POST", "/versions", {}),
            "CreateAlias": ("POST", "/aliases", {"Name": "bad", "FunctionVersion": "$LATEST"}),
            "DeleteFunction": ("DELETE", "", None),
        }
        for ident in malformed:
            for op, (method, suffix, body) in operations.items():
                with self.subTest(ident=ident, op=op):
                    r = self.server.raw(method, self.path(ident, suffix), body=body)
                    self.assertRefused(r, (400, 403, 404))
        self.assertEqual(self.snapshot(name), before, "a request with a malformed ARN changed the function")

    def test_other_account_and_region_arns_do_not_reach_the_function(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        before = self.snapshot(name)
        for ident in (f"arn:aws:lambda:us-east-1:111111111111:function:{name}",
                      f"arn:aws:lambda:eu-west-1:000000000000:function:{name}",
                      f"111111111111:function:{name}"):
            with self.subTest(ident=ident):
                for method, suffix, body in (("GET", "", None), ("POST", "/invocations", {}),
                                             ("PUT", "/configuration", {"Description": "x"}), ("DELETE", "", None)):
                    r = self.server.raw(method, self.path(ident, suffix), body=body)
                    self.assertRawError(r, (400, 403, 404))
        self.assertEqual(self.snapshot(name), before)
        self.assertEqual(self.environments_of(name), [])

    def test_arn_of_another_partition_does_not_reach_the_function(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        r = self.server.raw("GET", self.path(f"arn:aws-cn:lambda:us-east-1:000000000000:function:{name}",
                                             "/configuration"))
        self.assertRawError(r, (400, 403, 404))

    def test_unknown_and_malformed_qualifiers(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        self.lam.publish_version(FunctionName=name)
        self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        before = self.snapshot(name)
        unknown = ["2", "999999", "no-such-alias", "LIVE", "Live"]
        for q in unknown:
            for method, suffix, body in (("GET", "", None), ("GET", "/configuration", None),
                                         ("POST", "/invocations", {})):
                with self.subTest(qualifier=q, method=method, suffix=suffix):
                    r = self.server.raw(method, self.path(name, suffix), body=body, query={"Qualifier": q})
                    self.assertRawError(r, 404, NOT_FOUND)
                    self.assertIn(h.function_arn(name, q), r.json.get("Message", ""), repr(r))
            with self.subTest(qualifier=q, op="DeleteFunction"):
                # A version that does not exist is 404; an alias name is refused ("Deletion of aliases is not
                # supported.") whether or not the alias exists.
                r = self.server.raw("DELETE", self.path(name), query={"Qualifier": q})
                self.assertRawError(r, 404 if q.isdigit() else (400, 404), (NOT_FOUND, IPVE))
            if not q.isdigit():  # an all-digit alias name is a validation error, not a lookup
                with self.subTest(qualifier=q, op="GetAlias"):
                    self.assertRawError(self.server.raw("GET", self.path(name, f"/aliases/{q}")), 404, NOT_FOUND)
        malformed = ["$latest", "$LATEST ", "1.0", "-1", "a/b", "a" * 200, "\u0430", "%", "live\x00"]
        for q in malformed:
            with self.subTest(qualifier=q, op="Invoke"):
                r = self.server.raw("POST", self.path(name, "/invocations"), body={}, query={"Qualifier": q})
                self.assertRawError(r, (400, 404))
            with self.subTest(qualifier=q, op="GetFunction"):
                self.assertRawError(self.server.raw("GET", self.path(name), query={"Qualifier": q}), (400, 404))
        self.assertEqual(self.snapshot(name), before)
        self.assertEqual(self.environments_of(name), [], "no qualifier above names something that can run")


# ------------------------------------------------------------------------------------------------
# Request sizes
# ------------------------------------------------------------------------------------------------

class RequestSizeTests(_HostileBase):

    @h.slow
    def test_sync_invoke_over_6mb_is_413_and_starts_nothing_then_exactly_6mb_runs(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, MemorySize=512, Timeout=30)
        too_big = json.dumps({"op": "noop", "pad": "a" * SIX_MB}).encode()
        r = self.server.raw("POST", self.path(name, "/invocations"), body=too_big)
        self.assertRawError(r, 413, "RequestTooLargeException")
        self.assertIn(f"Request must be smaller than {SIX_MB} bytes for the InvokeFunction operation",
                      r.json.get("message", r.json.get("Message", "")), repr(r))
        self.assertEqual(self.environments_of(name), [], "the refused invocation started an environment")
        self.assertEqual(self.log_streams_of(name), [], "the refused invocation wrote logs")
        exact = json.dumps({"op": "noop", "pad": ""}).encode()
        exact = json.dumps({"op": "noop", "pad": "a" * (SIX_MB - len(exact))}).encode()
        self.assertEqual(len(exact), SIX_MB)
        resp, out = self.invoke_ok(name, Payload=exact)
        self.assertEqual(out, {"ok": True, "event_keys": ["op", "pad"]})

    def test_sync_invoke_announcing_7mb_is_413_without_waiting_for_the_body(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        parsed = urllib.parse.urlsplit(self.server.url)
        with socket.create_connection((parsed.hostname, parsed.port), timeout=5) as s:
            s.sendall(f"POST {self.path(name, '/invocations')} HTTP/1.1\r\nHost: x\r\n"
                      f"Content-Length: {7 * ONE_MB}\r\n\r\n{{".encode())
            t0 = time.monotonic()
            head = s.recv(4096)
            took = time.monotonic() - t0
        self.assertTrue(head.startswith(b"HTTP/1.1 413"), head[:300])
        self.assertIn(b"x-amzn-ErrorType: RequestTooLargeException", head)
        self.assertLess(took, 3.0, "the 413 should not wait for a body that is refused anyway")
        self.assertEqual(self.environments_of(name), [])

    def test_async_invoke_over_1mb_is_413_and_queues_nothing_then_exactly_1mb_is_accepted(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        too_big = json.dumps({"op": "noop", "pad": "a" * ONE_MB}).encode()
        r = self.server.raw("POST", self.path(name, "/invocations"), body=too_big,
                            headers={"X-Amz-Invocation-Type": "Event"})
        self.assertRawError(r, 413, "RequestTooLargeException")
        self.assertEqual(self.async_counts(name), (0, 0), "the refused event was queued")
        self.assertEqual(self.environments_of(name), [], "the refused event ran")
        exact = json.dumps({"op": "noop", "pad": ""}).encode()
        exact = json.dumps({"op": "noop", "pad": "a" * (ONE_MB - len(exact))}).encode()
        self.assertEqual(len(exact), ONE_MB)
        r = self.server.raw("POST", self.path(name, "/invocations"), body=exact,
                            headers={"X-Amz-Invocation-Type": "Event"})
        self.assertEqual(r.status, 202, repr(r))

    def test_legacy_invoke_async_over_256kb_is_413_and_queues_nothing(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        r = self.server.raw("POST", f"/2014-11-13/functions/{name}/invoke-async",
                            body=json.dumps({"pad": "a" * (256 * 1024)}))
        self.assertRawError(r, 413, "RequestTooLargeException")
        self.assertEqual(self.async_counts(name), (0, 0))

    @h.slow
    def test_code_zip_over_50mb_is_413_with_a_size_message_and_creates_nothing(self):
        name = self.fn_name()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # random bytes: stored, deflate gains nothing
            zf.writestr("app.py", "def handler(e, c):\n    return 1\n")
            zf.writestr("blob.bin", os.urandom(50 * ONE_MB + 4096))
        big = buf.getvalue()
        self.assertGreater(len(big), 52_428_800)
        before = self.code_store_entries()
        r = self.raw_create(self.create_body(name, big))
        self.assertRawError(r, (400, 413), ("RequestTooLargeException", IPVE))
        message = r.json.get("message") or r.json.get("Message") or ""
        self.assertRegex(message, r"smaller than \d+ bytes|size|too large", repr(r))
        self.assertNotFound(name)
        if before is not None:
            self.assertEqual(self.code_store_entries(), before, "the refused zip left files in the code store")
        # The same zip through UpdateFunctionCode keeps the old code.
        small = py_probe_zip("small")
        self.create_function(small, name=name)
        r = self.server.raw("PUT", self.path(name, "/code"), body={"ZipFile": _b64(big)})
        self.assertRawError(r, (400, 413), ("RequestTooLargeException", IPVE))
        self.assertEqual(self.lam.get_function_configuration(FunctionName=name)["CodeSha256"], h.b64_sha256(small))

    def test_logs_json_protocol_body_is_capped(self):
        parsed = urllib.parse.urlsplit(self.server.url)
        with socket.create_connection((parsed.hostname, parsed.port), timeout=5) as s:
            s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: Logs_20140328.DescribeLogStreams\r\n"
                      b"Content-Type: application/x-amz-json-1.1\r\nContent-Length: 104857600\r\n\r\n"
                      b'{"logGroupName": "' + b"a" * 1024)
            s.settimeout(3)
            try:
                head = s.recv(4096)
            except (socket.timeout, TimeoutError):
                head = b""
        self.assertTrue(head.startswith(b"HTTP/1.1 413"),
                        f"no 413 within 3 s for a 100 MB Logs request: {head[:300]!r}")


# ------------------------------------------------------------------------------------------------
# Malformed JSON and content types
# ------------------------------------------------------------------------------------------------

# Bodies that are not JSON at all, whatever the route.
SYNTAX_ERRORS = {
    "truncated": b'{"Description": "x", "Timeout": ',
    "invalid UTF-8 outside strings": b'{"Description"\xff: "x"}',
    "10k levels of nesting": b'{"Description":' + b"[" * 10000 + b"]" * 10000 + b"}",
    "10k nested objects": b'{"Environment":' + b'{"a":' * 10000 + b"1" + b"}" * 10000 + b"}",
    "byte order mark": b'\xef\xbb\xbf{"Timeout": 5}',
    "UTF-16": '{"Timeout": 5}'.encode("utf-16"),
    "trailing garbage": b'{"Timeout": 5} {}',
    "comment": b'{"Timeout": 5 /* x */}',
    "trailing comma": b'{"Timeout": 5,}',
    "single quotes": b"{'Timeout': 5}",
    "unquoted key": b"{Timeout: 5}",
    "top-level array": b"[1, 2]",
    "top-level string": b'"x"',
    "top-level number": b"5",
    "top-level null": b"null",
}
# Values that are malformed for a string member ...
BAD_STRINGS = {
    "invalid UTF-8": b'"\xff\xfe\xfd"',
    "overlong UTF-8 slash": b'"\xc0\xaf"',
    "CESU-8 surrogate bytes": b'"\xed\xa0\x80"',
    "lone high surrogate": b'"\\ud800"',
    "lone low surrogate": b'"\\udc00"',
    "reversed surrogate pair": b'"\\udc00\\ud800"',
    "bad escape": b'"\\x41"',
    "raw control character": b'"a\x01b"',
    "object for a string": b"{}",
}
# ... and for an integer member.
BAD_INTEGERS = {
    "500 KB number literal": b"9" * 500_000,
    "number overflowing int": b"99999999999999999999",
    "1e400": b"1e400",
    "fractional": b"3.5",
    "exponent": b"1e1",
    "hex": b"0x10",
    "leading zero": b"010",
    "NaN": b"NaN",
    "Infinity": b"Infinity",
    "string for an int": b'"5"',
    "array for an int": b"[5]",
}


def _malformed_bodies(string_member: str | None, int_member: str | None) -> dict[str, bytes]:
    """Every malformed body for a route whose JSON has these members (a dotted path nests: Tags.k)."""
    def wrap(member: str, value: bytes) -> bytes:
        parts = member.split(".")
        head = b"".join(b'{"%s": ' % p.encode() for p in parts)
        return head + value + b"}" * len(parts)

    bodies = dict(SYNTAX_ERRORS)
    if string_member:
        bodies.update({f"{string_member}: {k}": wrap(string_member, v) for k, v in BAD_STRINGS.items()})
        top = string_member.split(".")[0]
        inner = wrap(string_member, b'"a"')[len(b'{"%s": ' % top.encode()):-1]
        bodies[f"duplicate {top}"] = b'{"%s": %s, "%s": %s}' % (top.encode(), inner, top.encode(), inner)
    if int_member:
        bodies.update({f"{int_member}: {k}": wrap(int_member, v) for k, v in BAD_INTEGERS.items()})
        bodies[f"duplicate {int_member}"] = b'{"%s": 1, "%s": 2}' % (int_member.encode(), int_member.encode())
    return bodies


class MalformedJsonTests(_HostileBase):

    def test_malformed_json_on_every_control_plane_route_is_400_and_changes_nothing(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, Timeout=11, Environment={"Variables": {"KEEP": "me"}})
        self.lam.publish_version(FunctionName=name)
        self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        self.lam.tag_resource(Resource=h.function_arn(name), Tags={"keep": "me"})
        before = self.snapshot(name)
        routes = {  # operation: (method, path, a string member, an integer member)
            "CreateFunction": ("POST", FUNCTIONS, "Description", "Timeout"),
            "UpdateFunctionConfiguration": ("PUT", self.path(name, "/configuration"), "Description", "Timeout"),
            "UpdateFunctionCode": ("PUT", self.path(name, "/code"), "ZipFile", None),
            "PublishVersion": ("POST", self.path(name, "/versions"), "Description", None),
            "CreateAlias": ("POST", self.path(name, "/aliases"), "Name", None),
            "UpdateAlias": ("PUT", self.path(name, "/aliases/live"), "FunctionVersion", None),
            "TagResource": ("POST", f"/2017-03-31/tags/{h.quote_path_segment(h.function_arn(name))}", "Tags.k", None),
            "PutFunctionConcurrency": ("PUT", f"/2017-10-31/functions/{name}/concurrency", None,
                                       "ReservedConcurrentExecutions"),
            "PutFunctionEventInvokeConfig": ("PUT", f"/2019-09-25/functions/{name}/event-invoke-config", None,
                                             "MaximumRetryAttempts"),
            "PutProvisionedConcurrencyConfig": ("PUT", f"/2019-09-30/functions/{name}/provisioned-concurrency", None,
                                                "ProvisionedConcurrentExecutions"),
            "PublishLayerVersion": ("POST", f"/2018-10-31/layers/{name}/versions", "Description", None),
        }
        for op, (method, path, string_member, int_member) in routes.items():
            for label, body in _malformed_bodies(string_member, int_member).items():
                with self.subTest(op=op, kind=label):
                    query = {"Qualifier": "live"} if op == "PutProvisionedConcurrencyConfig" else None
                    r = self.server.raw(method, path, body=body, headers={"Content-Type": "application/json"},
                                        query=query)
                    self.assertRawError(r, 400, (IRCE, "InvalidParameterValueException", "ValidationException"))
                    self.assertNoTrace(r)
        self.assertEqual(self.snapshot(name), before, "a malformed request changed the function")
        self.assertNotIn(name, [layer["LayerName"] for layer in self.lam.list_layers()["Layers"]],
                         "a malformed PublishLayerVersion published a layer")

    def test_parse_errors_name_the_problem_as_lambda_does(self):
        name = self.fn_name()
        bodies = _malformed_bodies("Description", "Timeout")
        for label in ("truncated", "Description: invalid UTF-8", "Description: lone high surrogate",
                      "10k levels of nesting", "Timeout: 500 KB number literal", "duplicate Timeout"):
            with self.subTest(kind=label):
                r = self.server.raw("POST", FUNCTIONS, body=bodies[label],
                                    headers={"Content-Type": "application/json"})
                self.assertRawError(r, 400, IRCE)
                message = r.json.get("message") or r.json.get("Message") or ""
                self.assertIn("Could not parse request body into json", message, repr(r))
                self.assertLess(len(r.body), 4096, "the error must not echo a huge body back")
        self.assertNotFound(name)

    def test_huge_number_literal_in_create_is_400_and_over_the_cap_is_413(self):
        name = self.fn_name()
        body = json.dumps(self.create_body(name)).encode()[:-1] + b', "MemorySize": ' + b"1" * (5 * ONE_MB) + b"}"
        r = self.raw_create(body, headers={"Content-Type": "application/json"})
        self.assertRawError(r, 400, (IRCE, IPVE, "ValidationException"))
        self.assertNotFound(name)
        self.create_function(py_probe_zip(), name=name, Timeout=11)
        r = self.server.raw("PUT", self.path(name, "/configuration"), body=b'{"Timeout": ' + b"9" * (2 * ONE_MB) + b"}",
                            headers={"Content-Type": "application/json"})
        self.assertRawError(r, 413, "RequestTooLargeException")
        self.assertEqual(self.lam.get_function_configuration(FunctionName=name)["Timeout"], 11)

    def test_wrong_content_type_is_415_or_ignored_never_5xx(self):
        # RELIABILITY.md §1.7 lists 415 UnsupportedMediaTypeException for a wrong content type. Botocore sends
        # Invoke payloads with no Content-Type at all and AWS runs them, and Lamina reads every control-plane body
        # as JSON whatever its Content-Type says. Either answer is accepted here; what is not: a 5xx, a non-AWS
        # error, or a half-written function.
        observed = {}
        for ct in ("text/plain", "application/xml", "application/x-www-form-urlencoded",
                   "multipart/form-data; boundary=xyz", "image/png", "application/json; charset=latin1", ""):
            with self.subTest(content_type=ct):
                name, other = self.fn_name("a"), self.fn_name("b")
                r = self.raw_create(self.create_body(name), headers={"Content-Type": ct})
                observed[ct] = r.status
                if r.status == 415:
                    self.assertRawError(r, 415, "UnsupportedMediaTypeException")
                    self.assertNotFound(name)
                else:
                    self.assertEqual(r.status, 201, f"neither 415 nor processed as JSON: {r!r}")
                    self.assertEqual(self.lam.get_function_configuration(FunctionName=name)["FunctionName"], name)
                garbage = self.server.raw("POST", FUNCTIONS, body=f"FunctionName={other}&Runtime=python3.12",
                                          headers={"Content-Type": ct})
                self.assertRawError(garbage, (400, 415), (IRCE, "UnsupportedMediaTypeException"))
                self.assertNotFound(other)
        print(f"\n[hostile] CreateFunction status by Content-Type (valid JSON body): {observed}")

    def test_invoke_content_type_does_not_matter_but_the_payload_must_be_json(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        for ct in (None, "text/plain", "application/octet-stream", "binary/octet-stream", "image/png"):
            with self.subTest(content_type=ct):
                headers = {"Content-Type": ct} if ct else {}
                ok = self.server.raw("POST", self.path(name, "/invocations"), body=b'{"ct": 1}', headers=headers)
                self.assertEqual(ok.status, 200, repr(ok))
                self.assertEqual(ok.json["event"], {"ct": 1})
                bad = self.server.raw("POST", self.path(name, "/invocations"), body=b"ct=1", headers=headers)
                self.assertRawError(bad, (400, 415), (IRCE, "UnsupportedMediaTypeException"))

    def test_errors_from_malformed_http_framing_carry_a_request_id(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        parsed = urllib.parse.urlsplit(self.server.url)
        with socket.create_connection((parsed.hostname, parsed.port), timeout=10) as s:
            s.sendall(f"PUT {self.path(name, '/configuration')} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      "Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".encode())
            out = b""
            while chunk := s.recv(65536):
                out += chunk
        self.assertTrue(out.startswith(b"HTTP/1.1 400"), out[:300])
        self.assertIn(b"x-amzn-ErrorType: InvalidRequestContentException", out)
        self.assertIn(b"x-amzn-RequestId:", out)


# ------------------------------------------------------------------------------------------------
# Zips
# ------------------------------------------------------------------------------------------------

APP = ("app.py", b"def handler(event, context):\n    return 1\n", 0o100644)


class ArchiveTests(_HostileBase):

    def _refused(self, label: str, data: bytes, message: str | None = None) -> None:
        name = self.fn_name(label.replace(" ", "")[:20])
        r = self.raw_create(self.create_body(name, data))
        self.assertRawError(r, 400, IPVE)
        self.assertNoTrace(r)
        if message is not None:
            self.assertIn(message, r.json.get("message", r.json.get("Message", "")), repr(r))
        self.assertNotFound(name)

    def test_links_special_files_and_unsafe_names_are_refused_whole(self):
        marker = f"lamina-hostile-{uuid.uuid4().hex[:8]}"
        variants = {
            "symlink to absolute path": [APP, ("leak", b"/etc/hostname", 0o120777)],
            "symlink out of the tree": [APP, ("leak", b"../../../../../etc/hostname", 0o120777)],
            "symlink inside the tree": [APP, ("alias.py", b"app.py", 0o120777)],
            "symlink dir then file through it": [APP, ("d", b"/tmp", 0o120777), (f"d/{marker}", b"evil", 0o100644)],
            "hardlink-like: symlink, then a file of that name": [APP, ("x", b"/etc/passwd", 0o120777),
                                                                 ("x", b"y", 0o100644)],
            "fifo": [APP, ("fifo", b"", 0o010644)],
            "character device": [APP, ("dev", b"", 0o020644)],
            "block device": [APP, ("blk", b"", 0o060644)],
            "socket": [APP, ("sock", b"", 0o140644)],
            "drive letter": [APP, (f"C:\\{marker}", b"evil", 0o100644)],
            "drive-relative": [APP, (f"C:{marker}", b"evil", 0o100644)],
            "backslash dotdot": [APP, (f"..\\{marker}", b"evil", 0o100644)],
            "deep backslash dotdot": [APP, (f"a\\..\\..\\..\\{marker}", b"evil", 0o100644)],
            "UNC path": [APP, (f"\\\\server\\share\\{marker}", b"evil", 0o100644)],
            "mixed separators": [APP, (f"a/..\\../{marker}", b"evil", 0o100644)],
            "NUL in name": [APP, (f"ok.txt\x00/../../{marker}", b"evil", 0o100644)],
            "empty name": [APP, ("", b"evil", 0o100644)],
        }
        before = self.code_store_entries()
        for label, entries in variants.items():
            with self.subTest(variant=label):
                self._refused(label, _zip_entries(entries))
        for place in ("/tmp", str(h.REPO_ROOT), "/", "/etc"):
            self.assertFalse(os.path.exists(os.path.join(place, marker)), f"an entry escaped to {place}")
        if before is not None:
            self.assertEqual(self.code_store_entries(), before, "a refused zip left files in the code store")

    def test_duplicate_and_clashing_entries_are_refused(self):
        for label, entries in {
            "duplicate file": [APP, ("app.py", b"def handler(e, c):\n    return 2\n", 0o100644)],
            "directory then file of that name": [APP, ("d/", b"", 0o040755), ("d", b"x", 0o100644)],
            "file then directory of that name": [APP, ("d", b"x", 0o100644), ("d/x.txt", b"x", 0o100644)],
        }.items():
            with self.subTest(variant=label):
                self._refused(label, _zip_entries(entries))

    def test_overlapping_entries_bomb_is_refused_with_the_unzipped_limit(self):
        bomb = _overlapping_zip(copies=30, megabytes=10)  # 300 MB when extracted, ~10 KB on the wire
        self.assertLess(len(bomb), 64 * 1024)
        self._refused("overlap", bomb, "Unzipped size must be smaller than 262144000 bytes")

    def test_more_entries_than_the_cap_are_refused(self):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr("app.py", APP[1])
            for i in range(20_001):
                zf.writestr(f"f{i}", b"")
        self._refused("manyentries", buf.getvalue(), "entries")

    def test_setuid_and_world_writable_bits_are_not_kept(self):
        if self.server.data_dir is None:
            self.skipTest("needs the server's data dir")
        name = self.fn_name()
        data = _zip_entries([APP, ("suid.sh", b"#!/bin/sh\nid\n", 0o106777), ("ww.txt", b"x", 0o100666)])
        self.create_function(data, name=name)
        digest = base64.b64decode(self.lam.get_function_configuration(FunctionName=name)["CodeSha256"]).hex()
        tree = self.server.data_dir / "code" / digest
        self.assertTrue(tree.is_dir(), f"no extracted tree at {tree}")
        for entry in tree.rglob("*"):
            mode = entry.lstat().st_mode
            self.assertFalse(mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX), f"{entry}: {oct(mode)}")
            self.assertFalse(mode & stat.S_IWOTH, f"{entry} is world-writable: {oct(mode)}")

    def test_update_code_with_hostile_zip_keeps_the_old_code(self):
        name = self.fn_name()
        good = py_probe_zip("good")
        self.create_function(good, name=name)
        before = self.snapshot(name)
        for label, data in (("symlink", _zip_entries([APP, ("leak", b"/etc/shadow", 0o120777)])),
                            ("drive letter", _zip_entries([APP, ("C:\\x", b"x", 0o100644)])),
                            ("overlap bomb", _overlapping_zip(copies=30, megabytes=10))):
            with self.subTest(variant=label):
                r = self.server.raw("PUT", self.path(name, "/code"), body={"ZipFile": _b64(data)})
                self.assertRawError(r, 400, IPVE)
        self.assertEqual(self.snapshot(name), before)
        _, out = self.invoke_ok(name, {})
        self.assertEqual(out["version"], "good")


# ------------------------------------------------------------------------------------------------
# Unicode
# ------------------------------------------------------------------------------------------------

class UnicodeTests(_HostileBase):

    def test_case_only_differences_are_distinct_functions(self):
        base = f"CaseFn-{uuid.uuid4().hex[:6]}"
        forms = [base, base.lower(), base.upper()]
        for form in forms:
            self.create_function(py_probe_zip(form), name=form)
        for form in forms:
            with self.subTest(name=form):
                cfg = self.lam.get_function_configuration(FunctionName=form)
                self.assertEqual(cfg["FunctionName"], form)
                self.assertEqual(cfg["CodeSha256"], h.b64_sha256(py_probe_zip(form)))
                _, out = self.invoke_ok(form, {})
                self.assertEqual(out["version"], form)
        self.assertNotFound(base.swapcase())
        self.lam.delete_function(FunctionName=forms[1])
        self.assertEqual(self.lam.get_function_configuration(FunctionName=forms[0])["FunctionName"], forms[0],
                         "deleting one case form deleted another")

    def test_nfc_and_nfd_names_are_refused_and_fold_into_nothing(self):
        tag = uuid.uuid4().hex[:6]
        nfc = f"caf\u00e9-{tag}"
        nfd = unicodedata.normalize("NFD", nfc)
        self.assertNotEqual(nfc, nfd)
        for form in (nfc, nfd):
            with self.subTest(form=ascii(form)):
                self.assertRawError(self.raw_create(self.create_body(form)), 400, VALIDATION)
        for twin in (f"cafe-{tag}", f"caf-{tag}", f"cafe\u0301-{tag}".encode("ascii", "ignore").decode()):
            self.assertNotFound(twin)

    def test_nfc_and_nfd_strings_stay_distinct_and_byte_exact(self):
        name = self.fn_name()
        nfc = "caf\u00e9 \u00c5ngstr\u00f6m"
        nfd = unicodedata.normalize("NFD", nfc)
        env = {"NFC": nfc, "NFD": nfd, "EMOJI": "\U0001F600\U0001F468\u200d\U0001F469\u200d\U0001F467",
               "RTL": "abc\u202edef\u202c", "ASTRAL": "\U00010348\U0001D11E", "ZWJ": "a\u200db"}
        self.create_function(py_probe_zip(), name=name, Description=nfd, Environment={"Variables": env})
        cfg = self.lam.get_function_configuration(FunctionName=name)
        self.assertEqual(cfg["Description"], nfd)
        self.assertEqual(cfg["Environment"]["Variables"], env)
        arn = h.function_arn(name)
        self.lam.tag_resource(Resource=arn, Tags={nfc: "nfc", nfd: "nfd"})
        tags = self.lam.list_tags(Resource=arn)["Tags"]
        self.assertEqual((tags.get(nfc), tags.get(nfd)), ("nfc", "nfd"), f"NFC/NFD tag keys merged: {tags!r}")
        _, out = self.invoke_ok(name, {"op": "env"})
        for key, value in env.items():
            self.assertEqual(out["env"].get(key), value, f"env {key} changed on its way into the function")

    def test_emoji_payload_result_and_logs_round_trip(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        op = "emoji-\U0001F600-\u202eRTL-\u00e9-e\u0301-\U0001F468\u200d\U0001F469"
        event = {"op": op, "s": "\U0001F4A9 \u0000 \ufeff \uffff \u2028\u2029", "k\U0001F600": ["\u00e9", "e\u0301"]}
        resp, out = self.invoke_ok(name, event, LogType="Tail")
        self.assertEqual(out["event"], event)
        log = h.decode_log_result(resp)
        self.assertIn(f"probe-log-line op={op} ", log, "the log line lost or changed the unicode")


# ------------------------------------------------------------------------------------------------
# Stale RevisionId
# ------------------------------------------------------------------------------------------------

class StaleRevisionTests(_HostileBase):

    def test_stale_revision_id_is_412_everywhere_and_changes_nothing(self):
        name = self.fn_name()
        v1 = py_probe_zip("v1")
        self.create_function(v1, name=name, Timeout=7)
        stale = self.lam.get_function_configuration(FunctionName=name)["RevisionId"]
        self.lam.update_function_configuration(FunctionName=name, Description="moved on")
        self.wait_updated(name)
        self.lam.publish_version(FunctionName=name)
        alias = self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        self.lam.update_alias(FunctionName=name, Name="live", Description="moved on")
        before = self.snapshot(name)
        calls = {
            "UpdateFunctionConfiguration": lambda: self.lam.update_function_configuration(
                FunctionName=name, Timeout=9, RevisionId=stale),
            "UpdateFunctionCode": lambda: self.lam.update_function_code(
                FunctionName=name, ZipFile=py_probe_zip("v2"), RevisionId=stale),
            "UpdateFunctionCode+Publish": lambda: self.lam.update_function_code(
                FunctionName=name, ZipFile=py_probe_zip("v3"), RevisionId=stale, Publish=True),
            "PublishVersion": lambda: self.lam.publish_version(FunctionName=name, RevisionId=stale),
            "UpdateAlias": lambda: self.lam.update_alias(
                FunctionName=name, Name="live", FunctionVersion="$LATEST", RevisionId=alias["RevisionId"]),
            "UpdateAlias with the function's revision": lambda: self.lam.update_alias(
                FunctionName=name, Name="live", Description="x", RevisionId=before["config"]["RevisionId"]),
        }
        for op, call in calls.items():
            with self.subTest(op=op):
                e = self.assertAwsError(call, 412, "PreconditionFailedException")
                self.assertRegex(e.response["Error"]["Message"], r"Revision ?Id")
        self.assertEqual(self.snapshot(name), before, "a stale-RevisionId request changed something")
        _, out = self.invoke_ok(name, {})
        self.assertEqual(out["version"], "v1")

    def test_code_and_configuration_updated_at_once_without_revision_ids_both_land(self):
        """RELIABILITY.md's concurrent-update row: an UpdateFunctionCode and an UpdateFunctionConfiguration sent together,
        neither with a RevisionId, each apply to what the other left: the result has both, never one undone."""
        from concurrent.futures import ThreadPoolExecutor
        name = self.fn_name()
        self.create_function(py_probe_zip("code-0"), name=name, Environment={"Variables": {"TAG": "env-0"}})
        codes = {i: py_probe_zip(f"code-{i}") for i in range(1, 9)}
        with ThreadPoolExecutor(2) as pool:
            for i in range(1, 9):
                with self.subTest(round=i):
                    code = pool.submit(lambda: self.lam.update_function_code(FunctionName=name, ZipFile=codes[i]))
                    config = pool.submit(lambda: self.lam.update_function_configuration(
                        FunctionName=name, Environment={"Variables": {"TAG": f"env-{i}"}}))
                    code.result(60)
                    config.result(60)
                    self.wait_updated(name)
                    now = self.lam.get_function_configuration(FunctionName=name)
                    self.assertEqual(now["CodeSha256"], h.b64_sha256(codes[i]))
                    self.assertEqual(now["Environment"]["Variables"], {"TAG": f"env-{i}"})
                    _, out = self.invoke_ok(name, {"op": "env"})
                    self.assertEqual(out["env"]["TAG"], f"env-{i}")
                    _, out = self.invoke_ok(name, {})
                    self.assertEqual(out["version"], f"code-{i}")

    def test_malformed_revision_ids_are_refused_and_change_nothing(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        before = self.snapshot(name)
        for rev in ("", " ", "x" * 5000, "\u0430", "null", "00000000-0000-0000-0000-000000000000"):
            with self.subTest(rev=rev[:20]):
                r = self.server.raw("PUT", self.path(name, "/configuration"), body={"Timeout": 9, "RevisionId": rev})
                self.assertRawError(r, (400, 412), ("PreconditionFailedException", IPVE, "ValidationException"))
        self.assertEqual(self.snapshot(name), before)


# ------------------------------------------------------------------------------------------------
# Use after delete
# ------------------------------------------------------------------------------------------------

class UseAfterDeleteTests(_HostileBase):

    def test_every_operation_after_delete_is_404_and_runs_nothing(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, cleanup=False)
        self.lam.publish_version(FunctionName=name)
        self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        self.invoke_ok(name, {})
        self.lam.delete_function(FunctionName=name)
        deadline = time.monotonic() + 10
        while self.environments_of(name) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.environments_of(name), [], "the deleted function's environments still run")
        arn = h.function_arn(name)
        calls = {
            "Invoke": lambda: self.lam.invoke(FunctionName=name, Payload=b"{}"),
            "Invoke Event": lambda: self.lam.invoke(FunctionName=name, Payload=b"{}", InvocationType="Event"),
            "Invoke DryRun": lambda: self.lam.invoke(FunctionName=name, Payload=b"{}", InvocationType="DryRun"),
            "Invoke version": lambda: self.lam.invoke(FunctionName=f"{name}:1", Payload=b"{}"),
            "Invoke alias": lambda: self.lam.invoke(FunctionName=f"{arn}:live", Payload=b"{}"),
            "GetFunction": lambda: self.lam.get_function(FunctionName=name),
            "GetFunction version": lambda: self.lam.get_function(FunctionName=name, Qualifier="1"),
            "GetAlias": lambda: self.lam.get_alias(FunctionName=name, Name="live"),
            "UpdateFunctionCode": lambda: self.lam.update_function_code(FunctionName=name, ZipFile=py_probe_zip()),
            "UpdateFunctionConfiguration": lambda: self.lam.update_function_configuration(FunctionName=name, Timeout=9),
            "PublishVersion": lambda: self.lam.publish_version(FunctionName=name),
            "CreateAlias": lambda: self.lam.create_alias(FunctionName=name, Name="again", FunctionVersion="$LATEST"),
            "UpdateAlias": lambda: self.lam.update_alias(FunctionName=name, Name="live", Description="x"),
            "ListVersionsByFunction": lambda: self.lam.list_versions_by_function(FunctionName=name),
            "ListAliases": lambda: self.lam.list_aliases(FunctionName=name),
            "TagResource": lambda: self.lam.tag_resource(Resource=arn, Tags={"a": "b"}),
            "ListTags": lambda: self.lam.list_tags(Resource=arn),
            "PutFunctionConcurrency": lambda: self.lam.put_function_concurrency(
                FunctionName=name, ReservedConcurrentExecutions=1),
            "PutFunctionEventInvokeConfig": lambda: self.lam.put_function_event_invoke_config(
                FunctionName=name, MaximumRetryAttempts=0),
            "DeleteFunction": lambda: self.lam.delete_function(FunctionName=name),
        }
        for op, call in calls.items():
            with self.subTest(op=op):
                self.assertAwsError(call, 404, NOT_FOUND)
        self.assertEqual(self.async_counts(name), (0, 0), "an event for the deleted function was queued")
        self.assertEqual(self.environments_of(name), [], "something ran the deleted function")
        self.assertNotIn(name, self.list_function_names())

    def test_a_recreated_function_inherits_nothing_from_the_deleted_one(self):
        name = self.fn_name()
        self.create_function(py_probe_zip("old"), name=name, cleanup=False,
                             Environment={"Variables": {"OLD": "1"}}, Description="old")
        self.lam.publish_version(FunctionName=name)
        self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        self.lam.tag_resource(Resource=h.function_arn(name), Tags={"old": "1"})
        self.lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
        self.lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
        self.lam.delete_function(FunctionName=name)
        self.create_function(py_probe_zip("new"), name=name)
        fn = self.lam.get_function(FunctionName=name)
        self.assertNotIn("Concurrency", fn, "reserved concurrency survived the delete")
        self.assertFalse(fn.get("Tags"), "tags survived the delete")
        self.assertNotIn("Environment", fn["Configuration"])
        self.assertEqual(fn["Configuration"]["Description"], "")
        self.assertEqual([v["Version"] for v in self.lam.list_versions_by_function(FunctionName=name)["Versions"]],
                         ["$LATEST"], "old versions survived the delete")
        self.assertEqual(self.lam.list_aliases(FunctionName=name)["Aliases"], [])
        self.assertAwsError(lambda: self.lam.get_function_event_invoke_config(FunctionName=name), 404, NOT_FOUND)
        self.assertAwsError(lambda: self.lam.invoke(FunctionName=f"{name}:live", Payload=b"{}"), 404, NOT_FOUND)
        self.assertAwsError(lambda: self.lam.invoke(FunctionName=f"{name}:1", Payload=b"{}"), 404, NOT_FOUND)
        _, out = self.invoke_ok(name, {})
        self.assertEqual(out["version"], "new")


# ------------------------------------------------------------------------------------------------
# Shutdown with a stalled client (a server of its own, since it is stopped)
# ------------------------------------------------------------------------------------------------

class ShutdownTests(h.LaminaTestCase):

    def test_sigterm_is_not_held_up_by_a_client_that_never_finishes_its_request(self):
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            raise unittest.SkipTest("stops its own server")
        srv = h.LaminaServer("hostile-shutdown").start()
        try:
            parsed = urllib.parse.urlsplit(srv.url)
            with socket.create_connection((parsed.hostname, parsed.port), timeout=10) as s:
                s.sendall(b"POST /2015-03-31/functions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"2\r\n{}\r\n")
                time.sleep(0.3)
                srv.proc.send_signal(signal.SIGTERM)
                t0 = time.monotonic()
                try:
                    rc = srv.proc.wait(4)
                except subprocess.TimeoutExpired:
                    rc = None
                took = time.monotonic() - t0
            self.assertEqual(rc, 0, f"the server had not exited {took:.1f} s after SIGTERM")
        finally:
            srv._kill_group()
            srv._cleanup_after_exit()


class DiskFullTests(h.LaminaTestCase):
    """RELIABILITY.md's disk-full row for code: a package the data directory has no room for is the server's failure,
    never the user's zip, leaves nothing behind, and goes in once there is room."""

    def test_code_on_a_full_disk_is_refused_as_the_servers_error_and_goes_in_once_space_is_freed(self):
        import shutil
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            raise unittest.SkipTest("runs its own server on a small file system")
        mount = self.small_file_system("code-full")
        srv = h.LaminaServer("hostile-code-full", data_dir=mount / "data").start()
        try:
            lam = h.boto3_client(srv.url, "lambda")
            # 12 MB that do not compress: the zip and its tree need 24 MB, and 8 are left.
            code = h.make_zip({"app.py": "def handler(event, context):\n    return {'ok': True}\n", "blob.bin": os.urandom(12 * 1024 * 1024)})
            filler = mount / "filler"
            with open(filler, "wb") as f:
                f.write(b"\0" * max(0, shutil.disk_usage(mount).free - 8 * 1024 * 1024))
            create = lambda: lam.create_function(FunctionName="full", Runtime="python3.12", Role=h.ROLE,  # noqa: E731
                                                 Handler="app.handler", Code={"ZipFile": code})
            err = self.assertAwsError(create, 500, "ServiceException")
            self.assertIn("no space left", err.response["Error"]["Message"].lower())
            self.assertNotIn("unzip", err.response["Error"]["Message"].lower())
            # Nothing half-written: no function, nothing of the package in the code store.
            self.assertAwsError(lambda: lam.get_function(FunctionName="full"), 404, "ResourceNotFoundException")
            self.assertEqual([p.name for p in (mount / "data" / "code").iterdir() if p.name.startswith("tmp-")], [])
            self.assertEqual(srv.raw("GET", "/health").status, 200)

            filler.unlink()
            create()
            lam.get_waiter("function_active_v2").wait(FunctionName="full")
            self.assertEqual(json.loads(lam.invoke(FunctionName="full", Payload=b"{}")["Payload"].read()), {"ok": True})
        finally:
            srv.stop()


# ------------------------------------------------------------------------------------------------
# Slow clients (started in setUpModule; this class sorts last so their timeouts have mostly run out)
# ------------------------------------------------------------------------------------------------

class WireStallTests(_HostileBase):

    def _finished(self, label: str, bound: float) -> _SlowClient:
        client = _SLOW[label]
        client.thread.join(timeout=max(0.0, bound + 5))
        self.assertFalse(client.thread.is_alive(), f"{label}: connection still open after {bound:.0f} s")
        self.assertIsNone(client.error, f"{label}: {client.error}")
        self.assertIsNotNone(client.closed_after, label)
        self.assertLessEqual(client.closed_after, bound, f"{label}: cut off only after {client.closed_after:.1f} s")
        if client.response:
            self.assertIn(client.status, (400, 408, 413, 431), f"{label}: {client.response[:400]!r}")
        return client

    def test_bodies_that_never_end_or_trickle_are_cut_off(self):
        for label in ("chunked create never ends", "chunked invoke never ends", "content-length body stalls",
                      "trickling body"):
            with self.subTest(scenario=label):
                client = self._finished(label, BODY_CUTOFF_S)
                if client.response:
                    self.assertEqual(client.status, 408, client.response[:400])
                    self.assertEqual(client.headers().get("x-amzn-errortype"), IRCE, client.response[:400])
                    self.assertIsNone(STACK_TRACE_RE.search(client.response.decode("utf-8", "replace")))
        # Nothing of what those requests carried happened.
        self.assertNotFound(_SLOW_FUNCTION["create"])
        self.assertEqual(self.environments_of(_SLOW_FUNCTION["invoke"]), [], "a stalled Invoke started the function")
        self.assertEqual(self.lam.get_function_configuration(FunctionName=_SLOW_FUNCTION["invoke"])["Description"], "")

    def test_trickling_headers_are_cut_off(self):
        self._finished("trickling headers", HEADER_CUTOFF_S)

    def test_server_is_healthy_after_the_slow_clients(self):
        for label in _SLOW:
            _SLOW[label].thread.join(timeout=HEADER_CUTOFF_S + 5)
        r = requests.get(f"{self.server.url}/health", timeout=5)
        self.assertEqual((r.status_code, r.text), (200, "ok"))
        self.assertIn(_SLOW_FUNCTION["invoke"], self.list_function_names())
        self._delete_quietly(_SLOW_FUNCTION["invoke"])


if __name__ == "__main__":
    unittest.main()
