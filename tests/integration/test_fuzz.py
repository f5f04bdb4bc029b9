"""Seeded HTTP API fuzzing (RELIABILITY.md §3.6): thousands of malformed requests against every route.

The routes come from botocore's Lambda service model (every REST operation, served or not), the CloudWatch Logs
JSON protocol (`POST /` with `X-Amz-Target: Logs_20140328.*`) and Lamina's own routes (`/lamina/...`, `/metrics`,
`/health`). Each request starts from a plausible request built from the operation's input shape and is then
mutated: path parameters (long, unicode, %-encodings, `..`, ARNs), query strings, headers, methods, content
types, and bodies (garbage, wrong JSON types for a field, huge strings and numbers, deep nesting, truncation,
empty). A quarter of the function references name a real function (re-created when the fuzz deletes it), so the
requests get past the 404s into validation.

What must hold (as Schemathesis' `not_a_server_error` and RESTler's 500 checker):
  * no 5xx and no hang, ever;
  * every 4xx of an AWS route is AWS-shaped: `x-amzn-ErrorType` and a JSON body with `__type`/`Type` or
    `message`/`Message`, without a stack trace;
  * `/health` answers 200 at the end, and the server's output has no unhandled-exception stack trace.

Knobs: LAMINA_FUZZ_SEED (default 20260131; printed, so a failure can be replayed) and LAMINA_FUZZ_COUNT
(default 5000 requests).
"""
from __future__ import annotations

import base64
import collections
import http.client
import json
import os
import random
import re
import socket
import string
import sys
import time
import unittest
import urllib.parse

import botocore.loaders

import lamina_harness as h

MODULE = __name__
DEFAULT_SEED = 20260131
SEED = int(os.environ.get("LAMINA_FUZZ_SEED", "").strip() or DEFAULT_SEED)
COUNT = int(os.environ.get("LAMINA_FUZZ_COUNT", "").strip() or 5000)
REQUEST_TIMEOUT = 15.0

# Lamina's own routes (found anywhere under src/Lamina.Server, e.g. Async/AsyncEventsApi.cs, Hosting/LaminaHost.cs): (method, template, AWS-shaped errors?)
LAMINA_ROUTES = [
    ("GET", "/health", False),
    ("GET", "/metrics", False),
    ("GET", "/lamina/v1/environments", True),
    ("GET", "/lamina/v1/async-events", True),
    ("GET", "/lamina/v1/async-events/{id}", True),
    ("POST", "/lamina/v1/async-events/redrive", True),
    ("DELETE", "/lamina/v1/async-events", True),
    ("GET", "/lamina/code/{file}", True),
    ("GET", "/lamina/v1/metrics/functions", True),
    ("GET", "/lamina/v1/metrics/functions/{name}", True),
    ("GET", "/lamina/v1/cluster", True),
    ("GET", "/console/{file}", False),  # the web console's static files (Console/ConsoleAssets.cs, a middleware)
]

# The Runtime and Extensions APIs are served to sandboxes only, never on the public listener: any 2xx there fails.
RUNTIME_ROUTES = [
    ("GET", "/2018-06-01/ping"),
    ("GET", "/2018-06-01/runtime/invocation/next"),
    ("POST", "/2018-06-01/runtime/invocation/{id}/response"),
    ("POST", "/2018-06-01/runtime/invocation/{id}/error"),
    ("POST", "/2018-06-01/runtime/init/error"),
    ("POST", "/2020-01-01/extension/register"),
    ("GET", "/2020-01-01/extension/event/next"),
    ("PUT", "/2020-08-15/logs"),
]

# A stack trace in a body or in the server's output: .NET frames ("   at Lamina.X.Y(...)") or an exception dump.
STACK_TRACE_RE = re.compile(r"^\s+at [A-Za-z_][\w.`<>\[\],]*\(|\bat (?:Lamina|System|Microsoft)\.[\w.`<>]+\(", re.M)
UNHANDLED_RE = re.compile(r"Unhandled (?:error|exception)|\bfail: ", re.I)


# Log signatures of product bugs the fuzz found and that are not fixed yet: a 5xx whose server log matches one is
# counted and printed, not failed on; each gets an exact reproduction in KnownFindingsTests. Empty: all are fixed.
KNOWN_BUGS: dict[str, re.Pattern] = {}


def _known_log_bug(line: str) -> str | None:
    for name, pattern in KNOWN_BUGS.items():
        if pattern.search(line):
            return name
    return None


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


# ------------------------------------------------------------------------------------------------
# Service models
# ------------------------------------------------------------------------------------------------

def _load_models():
    loader = botocore.loaders.Loader()
    return loader.load_service_model("lambda", "service-2"), loader.load_service_model("logs", "service-2")


class Route:
    def __init__(self, method: str, template: str, op: str, shape_name: str | None, shape: dict | None, aws: bool,
                 kind: str, fixed_query: dict | None = None):
        self.method, self.template, self.op, self.aws, self.kind = method, template, op, aws, kind
        self.shape_name, self.shape = shape_name, shape
        self.fixed_query = fixed_query or {}

    def __repr__(self) -> str:
        return f"{self.method} {self.template} ({self.op})"


def build_routes(lambda_model: dict, logs_model: dict) -> list[Route]:
    routes = []
    shapes = lambda_model["shapes"]
    for op, spec in sorted(lambda_model["operations"].items()):
        uri = spec["http"]["requestUri"]
        path, _, query = uri.partition("?")
        fixed = dict(urllib.parse.parse_qsl(query, keep_blank_values=True)) if query else {}
        shape_name = spec["input"]["shape"] if "input" in spec else None
        routes.append(Route(spec["http"]["method"], path, op, shape_name, shapes.get(shape_name), True, "rest", fixed))
    for op, spec in sorted(logs_model["operations"].items()):
        shape_name = spec["input"]["shape"] if "input" in spec else None
        routes.append(Route("POST", "/", op, shape_name, logs_model["shapes"].get(shape_name), True, "logs"))
    for method, template, aws in LAMINA_ROUTES:
        routes.append(Route(method, template, template, None, None, aws, "lamina"))
    for method, template in RUNTIME_ROUTES:
        routes.append(Route(method, template, "runtime " + template, None, None, True, "runtime"))
    return routes


# ------------------------------------------------------------------------------------------------
# Value generators
# ------------------------------------------------------------------------------------------------

WEIRD_STRINGS = [
    "", " ", "..", ".", "../..", "/", "//", "\\", "a/b", "a\\b", "$LATEST", "$latest", "LATEST", "ALL",
    "\x00", "a\x00b", "\n", "abc\n", "\r\n", "\t", "\u202eevil", "\u0430dmin", "\ufeff", "\ud7ff",
    "\U0001F600", "e\u0301", "\u00e9", "ＡＢＣ", "İ", "ß", "%", "%00", "%2F", "%2e%2e", "%ZZ", "%C0%AF",
    "'", "\"", "`", "{", "}", "[]", "{}", "null", "true", "-1", "0", "1", "01", "1e9", "NaN", "9" * 30,
    "<script>", "${jndi:ldap://x}", "{{7*7}}", "' OR 1=1 --", "; rm -rf /", "$(id)", "*", "?", "#", "&", "=",
    "arn:aws:lambda:us-east-1:000000000000:function:", "arn:aws:lambda:us-east-1:000000000000:function:x:",
    "arn:aws:lambda:::function:x", "arn:aws:lambda:us-east-1:000000000000:layer:x:1",
    "arn:aws:lambda:zz-top-9:000000000000:function:x", "arn:aws:lambda:us-east-1:12345:function:x",
    "arn:aws:iam::000000000000:role/x", "arn:" + "a" * 300, "000000000000:function:x:1:2",
    "x:y:z", "x::", ":x", "function:x",
]

CONTENT_TYPES = [
    None, "application/json", "application/json; charset=utf-8", "application/x-amz-json-1.1",
    "application/x-amz-json-1.0", "text/plain", "application/octet-stream", "application/xml",
    "application/x-www-form-urlencoded", "multipart/form-data; boundary=xyz", "image/png", "*/*", "garbage",
    "application/json; charset=latin1", "",
]

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "FOO", "PROPFIND"]


class Fuzzer:
    def __init__(self, rng: random.Random, lambda_model: dict, logs_model: dict, targets: dict):
        self.rng = rng
        self.lambda_shapes = lambda_model["shapes"]
        self.logs_shapes = logs_model["shapes"]
        self.targets = targets  # function, version, alias, layer, log_group, zip_b64

    # ---- primitive values ----------------------------------------------------------------------
    def weird(self) -> str:
        r = self.rng.random()
        if r < 0.55:
            return self.rng.choice(WEIRD_STRINGS)
        if r < 0.7:
            return "".join(self.rng.choice(string.printable) for _ in range(self.rng.randint(1, 40)))
        if r < 0.8:
            return "".join(chr(self.rng.randint(0x80, 0x2FFF)) for _ in range(self.rng.randint(1, 20)))
        if r < 0.9:
            return self.rng.choice("aZ9-_") * self.rng.choice([63, 64, 65, 128, 129, 140, 141, 256, 1025, 5000])
        return "\ud800" if self.rng.random() < 0.5 else "x\udfffy"  # lone surrogates (JSON-escaped on the wire)

    def huge_string(self) -> str:
        return self.rng.choice("ax€\U0001F600") * self.rng.choice([4097, 20_000, 70_000, 300_000])

    def wrong_type(self, kind: str):
        choices = [None, True, False, 0, -1, 2 ** 31, 2 ** 63, -(2 ** 63) - 1, 10 ** 40, 1.5, -0.0, 1e308,
                   "", "x", "123", [], [1, "a", None], {}, {"a": {"b": {}}}]
        if kind == "string":
            choices = [c for c in choices if not isinstance(c, str)]
        elif kind in ("integer", "long", "double"):
            choices = [c for c in choices if isinstance(c, (str, list, dict, bool)) or c is None] + \
                      [10 ** 40, -(10 ** 30), 1.5, 1e308]
        elif kind == "boolean":
            choices = [c for c in choices if not isinstance(c, bool)]
        elif kind in ("structure", "map"):
            choices = [c for c in choices if not isinstance(c, dict)]
        elif kind == "list":
            choices = [c for c in choices if not isinstance(c, list)]
        return self.rng.choice(choices)

    def nested(self, depth: int):
        value: object = 1
        for _ in range(depth):
            value = [value] if self.rng.random() < 0.5 else {"a": value}
        return value

    # ---- shape-driven values ------------------------------------------------------------------
    def value(self, shapes: dict, shape_name: str, depth: int = 0, member: str = ""):
        shape = shapes[shape_name]
        kind = shape["type"]
        r = self.rng.random()
        if r < 0.08:
            return self.wrong_type(kind)
        if r < 0.1 and kind == "string":
            return self.huge_string()
        if depth > 4:
            return None
        if kind == "structure":
            out = {}
            for name, m in shape.get("members", {}).items():
                if "location" in m:
                    continue
                if name in shape.get("required", []) or self.rng.random() < 0.35:
                    out[name] = self.value(shapes, m["shape"], depth + 1, name)
            if self.rng.random() < 0.1:
                out[self.weird() or "x"] = self.weird()
            return out
        if kind == "list":
            n = self.rng.choice([0, 1, 1, 2, 3, 6, 60])
            return [self.value(shapes, shape["member"]["shape"], depth + 1, member) for _ in range(n)]
        if kind == "map":
            n = self.rng.choice([0, 1, 2, 5, 60])
            return {self.string_for(shapes, shape["key"]["shape"], member):
                    self.value(shapes, shape["value"]["shape"], depth + 1, member) for _ in range(n)}
        if kind == "string":
            return self.string_for(shapes, shape_name, member)
        if kind in ("integer", "long"):
            lo, hi = shape.get("min"), shape.get("max")
            pool = [0, 1, -1, 3, 128, 900, 901, 10240, 10241, 2 ** 31 - 1, 2 ** 31, 2 ** 53 + 1]
            if lo is not None:
                pool += [lo, lo - 1]
            if hi is not None:
                pool += [hi, hi + 1]
            return self.rng.choice(pool)
        if kind == "double":
            return self.rng.choice([0.0, 0.5, 1.0, -0.1, 1.0000001, 1e-300, 1e300])
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "timestamp":
            return self.rng.choice([0, 1700000000, -1, "2024-01-01T00:00:00Z", "yesterday", 1e20])
        if kind == "blob":
            r2 = self.rng.random()
            if r2 < 0.4:
                return self.targets["zip_b64"]
            if r2 < 0.6:
                return base64.b64encode(self.rng.randbytes(self.rng.randint(0, 300))).decode()
            if r2 < 0.7:
                return "!!!not base64!!!"
            return base64.b64encode(self.rng.choice([b"PK\x03\x04", b"PK\x05\x06" + bytes(18), b""])).decode()
        return None

    def string_for(self, shapes: dict, shape_name: str, member: str = "") -> str:
        shape = shapes.get(shape_name, {})
        if shape.get("enum") and self.rng.random() < 0.6:
            return self.rng.choice(shape["enum"])
        lowered = (member + shape_name).lower()
        t = self.targets
        if self.rng.random() < 0.5:
            if "role" in lowered:
                return h.ROLE
            if "runtime" in lowered:
                return self.rng.choice(["python3.12", "nodejs20.x", "provided.al2023", "java21"])
            if "handler" in lowered:
                return "app.handler"
            if "functionname" in lowered or lowered.endswith("functionarn") or "namespacedfunction" in lowered:
                return self.rng.choice([t["function"], h.function_arn(t["function"]), f"{t['function']}:{t['alias']}"])
            if "version" in lowered and "layer" not in lowered:
                return self.rng.choice(["$LATEST", t["version"], "99"])
            if "layer" in lowered:
                return t["layer_arn"]
            if "revisionid" in lowered:
                return self.rng.choice(["00000000-0000-0000-0000-000000000000", "stale"])
            if "loggroup" in lowered:
                return t["log_group"]
            if "arn" in lowered or "resource" in lowered:
                return self.rng.choice([h.function_arn(t["function"]), "arn:aws:sqs:us-east-1:000000000000:q"])
        if self.rng.random() < 0.6:
            return self.weird()
        lo, hi = shape.get("min", 1), min(shape.get("max", 20), 64)
        length = self.rng.randint(max(lo, 1), max(hi, 1))
        return "".join(self.rng.choice(string.ascii_letters + string.digits + "-_") for _ in range(length))

    # ---- request pieces -----------------------------------------------------------------------
    def path_param(self, name: str) -> str:
        """A raw, already-encoded path segment."""
        t = self.targets
        r = self.rng.random()
        lname = name.lower()
        if r < 0.3:
            if "function" in lname:
                raw = self.rng.choice([t["function"], h.function_arn(t["function"]), f"{t['function']}:{t['alias']}",
                                       f"{t['function']}:{t['version']}", f"{h.ACCOUNT}:function:{t['function']}"])
            elif "layer" in lname:
                raw = t["layer"]
            elif "version" in lname:
                raw = self.rng.choice([t["layer_version"], "0", "-1", "99999999999999999999"])
            elif lname in ("name", "alias"):
                raw = self.rng.choice([t["alias"], "$LATEST", "1"])
            elif "resource" in lname:
                raw = self.rng.choice([h.function_arn(t["function"]), h.function_arn(t["function"], t["alias"])])
            else:
                raw = "x"
            return _quote(raw)
        if r < 0.45:
            return self.rng.choice(["..", ".", "%2e%2e", "%2E", "..%2F..%2Fetc%2Fpasswd", "%2F", "a%2Fb", "%5C",
                                    "%00", "a%00b", "%ZZ", "%", "%C0%AF", "%ED%A0%80", "%FF%FE", "%E2%80%AE",
                                    "%F0%9F%98%80", "%20", "+", "a;b", "a,b", "~", "%252F", "%25", "a%0Ab",
                                    "abc%0A", "%0D%0AX-Injected:%201"])
        if r < 0.55:
            return self.rng.choice("aZ") * self.rng.choice([65, 141, 256, 1000, 4000, 7000])
        if r < 0.65:
            return ""
        return _quote(self.weird())

    def query(self, route: Route) -> list[tuple[str, str]]:
        pairs = list(route.fixed_query.items()) if self.rng.random() < 0.8 else []
        if route.shape is not None:
            for name, m in route.shape.get("members", {}).items():
                if m.get("location") == "querystring" and self.rng.random() < 0.5:
                    shapes = self.lambda_shapes
                    value = self.value(shapes, m["shape"], 1, name)
                    pairs.append((m["locationName"], value if isinstance(value, str) else json.dumps(value)))
        r = self.rng.random()
        if r < 0.15:
            pairs.append((self.weird(), self.weird()))
        elif r < 0.2:
            bad = self.rng.choice(["0", "-1", "x", "10001", "99999999999999999999", "1.5", ""])
            pairs += [("MaxItems", bad)] * self.rng.randint(1, 3)
        elif r < 0.25:
            pairs.append(("Marker", self.rng.choice(["\x00", "zzz", "a" * 5000, "x:1", ":", "%"])))
        elif r < 0.28:
            pairs.append(("Qualifier", self.weird()))
        return pairs

    def encode_query(self, pairs: list[tuple[str, str]]) -> str:
        if not pairs:
            return ""
        if self.rng.random() < 0.05:
            return "?" + self.rng.choice(["&&&", "=", "a=%ZZ", "a=%", "%00=%00", "a", "a=b=c", "?", "&a"])
        return "?" + "&".join(_quote(str(k)) + "=" + _quote(str(v)) for k, v in pairs)

    def body(self, route: Route) -> bytes | None:
        """The body: JSON from the input shape, then maybe mutated."""
        if route.kind in ("lamina", "runtime"):
            base: object = {"id": self.weird(), "function": self.targets["function"]} if self.rng.random() < 0.5 else {}
            shapes = None
        else:
            shapes = self.lambda_shapes if route.kind == "rest" else self.logs_shapes
            base = self.value(shapes, route.shape_name, 0) if route.shape is not None else {}
            if not isinstance(base, dict):
                base = {}
        # Invoke's body is the payload itself.
        if route.op in ("Invoke", "InvokeAsync", "InvokeWithResponseStream"):
            base = self.rng.choice([{"op": "echo", "k": self.weird()}, {}, [], "str", 1, None,
                                    {"op": "noop", "pad": "x" * self.rng.choice([10, 1000, 100_000])}])
        r = self.rng.random()
        if r < 0.45:
            return json.dumps(base).encode()
        if r < 0.5:
            return None
        if r < 0.55:
            return b""
        if r < 0.62:  # garbage bytes
            return bytes(self.rng.getrandbits(8) for _ in range(self.rng.choice([1, 7, 100, 3000])))
        if r < 0.68:  # truncated
            text = json.dumps(base).encode()
            return text[: self.rng.randint(0, max(len(text) - 1, 0))]
        if r < 0.73:  # deep nesting
            depth = self.rng.choice([65, 200, 1000, 10_000])
            if self.rng.random() < 0.5:
                return b'{"x":' + b"[" * depth + b"]" * depth + b"}"
            return json.dumps({"Environment": self.nested(min(depth, 300)), "Description": self.nested(50)}).encode()
        if r < 0.78:  # non-object top level
            return self.rng.choice([b"[]", b"null", b"1", b'"x"', b"true", b"[{}]", b"-0", b"1e999"])
        if r < 0.83:  # every field the wrong type
            if isinstance(base, dict) and base:
                return json.dumps({k: self.wrong_type(_kind_of(shapes, route, k)) for k in base}).encode()
            return json.dumps({"FunctionName": 1, "Code": [], "Timeout": "x"}).encode()
        if r < 0.87:  # bytes that are almost JSON
            return self.rng.choice([
                b'{"a":"\xff\xfe"}', b'{"a":"\\ud800"}', b'{"a":"\\udc00\\ud800"}', b'\xef\xbb\xbf{}',
                b'{"a":1,"a":2}', b'{"Timeout": ' + b"9" * self.rng.choice([400, 100_000]) + b"}",
                b'{"Timeout": 1e400}', b'{"Timeout": -0}', b'{"Timeout": 0x10}', b'{"a": NaN}', b"{'a': 1}",
                b'{"a":1,}', b'{"a" 1}', b"{" * 5000, b'{"\\u0000": "\\u0000"}', '{"a":"\u2028"}'.encode(),
                b'{"Code":{"ZipFile":"' + b"A" * self.rng.choice([3, 5, 4097]) + b'"}}',
            ])
        if r < 0.9:  # huge string in every string field
            if isinstance(base, dict) and base:
                return json.dumps({k: self.huge_string() for k in base}).encode()
            return json.dumps({"Description": self.huge_string()}).encode()
        # extra, unknown and null members
        if isinstance(base, dict):
            base = dict(base)
            for k in list(base)[: self.rng.randint(0, 3)]:
                base[k] = None
            base[self.weird() or "k"] = self.weird()
        return json.dumps(base, ensure_ascii=self.rng.random() < 0.5).encode("utf-8", "surrogatepass")

    def headers(self, route: Route, has_body: bool) -> dict[str, str]:
        hdrs: dict[str, str] = {}
        if route.kind == "logs":
            if self.rng.random() < 0.85:
                hdrs["X-Amz-Target"] = f"Logs_20140328.{route.op}"
            else:
                hdrs["X-Amz-Target"] = self.rng.choice([
                    "", "Logs_20140328.", "Logs_20140328.Nope", "AWSEvents.PutEvents", "Logs_20140328." + "A" * 3000,
                    "logs_20140328.GetLogEvents", "Logs_20140328.GetLogEvents\u00e9"])
            ct = "application/x-amz-json-1.1" if self.rng.random() < 0.7 else self.rng.choice(CONTENT_TYPES)
        else:
            ct = "application/json" if self.rng.random() < 0.6 else self.rng.choice(CONTENT_TYPES)
        if ct is not None and (has_body or self.rng.random() < 0.2):
            hdrs["Content-Type"] = ct
        if route.shape is not None and route.kind == "rest":
            for name, m in route.shape.get("members", {}).items():
                if m.get("location") == "header" and self.rng.random() < 0.6:
                    hdrs[m["locationName"]] = self.header_value(m["locationName"])
        if self.rng.random() < 0.05:
            hdrs[self.rng.choice(["X-Amz-Invocation-Type", "X-Amz-Log-Type", "X-Amz-Client-Context",
                                  "X-Amzn-Trace-Id", "traceparent", "Accept", "Accept-Encoding",
                                  "X-Amz-Date", "Authorization", "Expect"])] = self.header_value("junk")
        return hdrs

    def header_value(self, name: str) -> str:
        lname = name.lower()
        if "invocation-type" in lname and self.rng.random() < 0.5:
            # DryRun mostly: fuzzed payloads should not pile up real invocations.
            return self.rng.choice(["DryRun", "DryRun", "Event", "RequestResponse", "dryrun", "Nope"])
        if "log-type" in lname and self.rng.random() < 0.5:
            return self.rng.choice(["Tail", "None", "tail", "X"])
        if "client-context" in lname and self.rng.random() < 0.5:
            return self.rng.choice([base64.b64encode(b'{"custom":{"a":1}}').decode(), "!!", "e30",
                                    base64.b64encode(b"[1]").decode(), base64.b64encode(b"x" * 4000).decode()])
        value = self.weird()
        # What an HTTP client can put in a header: printable latin-1, no CR/LF.
        return "".join(c if 32 <= ord(c) < 127 else "%" for c in value)[:8000] or "x"


def _quote(value: str) -> str:
    """Percent-encodes every byte but unreserved ones; lone surrogates go out as their (invalid) UTF-8 bytes."""
    return urllib.parse.quote(value, safe="", encoding="utf-8", errors="surrogatepass")


def _kind_of(shapes: dict | None, route: Route, member: str) -> str:
    if shapes is None or route.shape is None:
        return "string"
    m = route.shape.get("members", {}).get(member)
    return shapes[m["shape"]]["type"] if m else "string"


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------

class _Conn:
    """One persistent HTTP/1.1 connection that reconnects after the server closes it."""

    def __init__(self, url: str):
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname, parsed.port
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, target: str, body: bytes | None, headers: dict[str, str]):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT)
            try:
                try:
                    self.conn.request(method, target, body=body, headers=headers)
                except (BrokenPipeError, ConnectionResetError):
                    # The server answered (e.g. 400/414/431 for a request line or header it refuses) and closed
                    # while the body was still going out: its answer is in the socket buffer.
                    pass
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close" or resp.will_close:
                    self.close()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                self.close()
                if attempt == 1:
                    return None, {}, repr(e).encode()
            except (socket.timeout, TimeoutError) as e:
                self.close()
                return -1, {}, repr(e).encode()
        return None, {}, b""

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _http(text: str, extra: bytes = b"") -> bytes:
    """Request bytes from text where "|" stands for CRLF (Connection: close added unless the text says otherwise)."""
    head, _, rest = text.partition("||")
    if "Connection:" not in head and "HTTP/1.0" not in head:
        head += "|Connection: close"
    return (head + "||" + rest).replace("|", "\r\n").encode("utf-8") + extra


F = "/2015-03-31/functions"
RAW_FRAMINGS = [
    # (label, request bytes): HTTP framing a client library would never send. {fn} is the real function.
    ("bad chunk size", _http(f"PUT {F}/{{fn}}/configuration HTTP/1.1|Host: x|Transfer-Encoding: chunked||zz|abc|0||")),
    ("chunk longer than said", _http(f"POST {F}/{{fn}}/invocations HTTP/1.1|Host: x|Transfer-Encoding: chunked||"
                                     "2|abcdef|0||")),
    ("CL and TE", _http(f"POST {F} HTTP/1.1|Host: x|Content-Length: 4|Transfer-Encoding: chunked||0||")),
    ("two CLs", _http(f"POST {F} HTTP/1.1|Host: x|Content-Length: 2|Content-Length: 3||{{}}")),
    ("negative CL", _http(f"POST {F} HTTP/1.1|Host: x|Content-Length: -1||")),
    ("huge CL, no body", _http(f"PUT {F}/{{fn}}/code HTTP/1.1|Host: x|Content-Length: 99999999999999||")),
    ("CL over the code limit", _http(f"PUT {F}/{{fn}}/code HTTP/1.1|Host: x|Content-Length: 80000000||{{")),
    ("HTTP/9.9", _http(f"GET {F} HTTP/9.9|Host: x||")),
    ("h2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    ("no Host", _http(f"GET {F} HTTP/1.1||")),
    ("HTTP/1.0", _http(f"GET {F} HTTP/1.0||")),
    ("space in path", _http(f"GET {F}/a b HTTP/1.1|Host: x||")),
    ("raw NUL in path", _http(f"GET {F}/a\x00b HTTP/1.1|Host: x||")),
    ("raw UTF-8 in path", _http(f"GET {F}/é😀 HTTP/1.1|Host: x||")),
    ("raw invalid UTF-8 in path", f"GET {F}/".encode() + b"\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    ("absolute-form target", _http(f"GET http://evil.example{F} HTTP/1.1|Host: x||")),
    ("asterisk target", _http("OPTIONS * HTTP/1.1|Host: x||")),
    ("header without colon", _http(f"GET {F} HTTP/1.1|Host: x|NoColonHere||")),
    ("obs-fold header", _http(f"GET {F} HTTP/1.1|Host: x|X-A: a| b||")),
    ("40 KB header", _http(f"GET {F} HTTP/1.1|Host: x|X-Big: {'a' * 40000}||")),
    ("150 headers", _http(f"GET {F} HTTP/1.1|Host: x|" + "|".join(f"X-H{i}: v" for i in range(150)) + "||")),
    ("10 KB request line", _http(f"GET {F}/{'a' * 10000} HTTP/1.1|Host: x||")),
    ("bare LF", f"GET {F} HTTP/1.1\nHost: x\nConnection: close\n\n".encode()),
    ("pipelined garbage", _http("GET /health HTTP/1.1|Host: x|Connection: keep-alive||GARBAGE||")),
    ("upgrade h2c", _http(f"GET {F} HTTP/1.1|Host: x|Connection: Upgrade, HTTP2-Settings|Upgrade: h2c|"
                          "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA||")),
    ("TLS hello", bytes.fromhex("16030100a5010000a10303") + bytes(range(32))),
    ("expect 100-continue", _http(f"PUT {F}/{{fn}}/configuration HTTP/1.1|Host: x|Expect: 100-continue|"
                                  "Content-Length: 2||{}")),
]


# HTTP-level answers that are correct even though they are 5xx: 505 HTTP Version Not Supported.
RAW_ALLOWED_5XX = {"HTTP/9.9": {505}, "h2 preface": {505}}


def raw_exchange(host: str, port: int, data: bytes, timeout: float = REQUEST_TIMEOUT) -> tuple[int | None, bytes]:
    """Sends bytes on a fresh connection and reads the first final response (status, raw bytes).

    Status None: the server closed the connection without answering; -1: no answer within the timeout."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass
        out = b""
        deadline = time.monotonic() + timeout
        while True:
            status, complete = _parse_first_response(out)
            if complete:
                return status, out
            if time.monotonic() > deadline:
                return -1, out
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            except (socket.timeout, TimeoutError):
                return -1, out
            if not chunk:
                return _parse_first_response(out)[0], out
            out += chunk


def _parse_first_response(out: bytes) -> tuple[int | None, bool]:
    """(status, complete) of the first non-1xx response in out."""
    while True:
        head_end = out.find(b"\r\n\r\n")
        m = re.match(rb"HTTP/\d\.\d (\d{3})", out)
        if head_end < 0 or not m:
            return (int(m.group(1)) if m else None), False
        status = int(m.group(1))
        if 100 <= status < 200:
            out = out[head_end + 4:]
            continue
        head, rest = out[:head_end].lower(), out[head_end + 4:]
        length = re.search(rb"\r\ncontent-length: *(\d+)", head)
        if length:
            return status, len(rest) >= int(length.group(1))
        if b"transfer-encoding: chunked" in head:
            return status, b"0\r\n\r\n" in rest
        return status, False  # delimited by the close


class FuzzTests(h.LaminaTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.lambda_model, cls.logs_model = _load_models()
        cls.routes = build_routes(cls.lambda_model, cls.logs_model)

    def _ensure_target(self, targets: dict) -> None:
        """(Re)creates the real function, its version, alias and the layer the fuzz aims at."""
        lam = self.lam
        name = targets["function"]
        try:
            lam.get_function_configuration(FunctionName=name)
            return
        except lam.exceptions.ResourceNotFoundException:
            pass
        lam.create_function(FunctionName=name, Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                            Code={"ZipFile": targets["zip"]}, Timeout=3, MemorySize=128)
        self.wait_active(name)
        targets["version"] = lam.publish_version(FunctionName=name)["Version"]
        lam.create_alias(FunctionName=name, Name=targets["alias"], FunctionVersion=targets["version"])

    def _known_bug_behind(self, mark: int) -> str | None:
        """The known bug whose signature the server logged for the request sent after `mark` (None: unknown)."""
        deadline = time.monotonic() + 1.0
        while True:
            for line in self.server.output_since(mark, limit=200).splitlines():
                if (bug := _known_log_bug(line)) is not None:
                    return bug
            if time.monotonic() > deadline:
                return None
            time.sleep(0.05)

    def test_fuzz_every_route(self):
        rng = random.Random(SEED)
        print(f"\n[fuzz] LAMINA_FUZZ_SEED={SEED} LAMINA_FUZZ_COUNT={COUNT} routes={len(self.routes)}",
              file=sys.stderr, flush=True)
        zip_bytes = h.make_zip({"app.py": "def handler(event, context):\n    return {'ok': True}\n"})
        tag = f"{SEED % 100000:05d}"
        targets = {
            "function": f"fuzz-target-{tag}", "alias": "live", "version": "1", "zip": zip_bytes,
            "zip_b64": base64.b64encode(zip_bytes).decode(), "log_group": f"/aws/lambda/fuzz-target-{tag}",
            "layer": f"fuzz-layer-{tag}",
        }
        layer = self.lam.publish_layer_version(LayerName=targets["layer"], Content={"ZipFile": zip_bytes},
                                               CompatibleRuntimes=["python3.12"])
        targets["layer_arn"], targets["layer_version"] = layer["LayerVersionArn"], str(layer["Version"])
        self._ensure_target(targets)
        self.addCleanup(self._delete_quietly, targets["function"])
        self.lam.invoke(FunctionName=targets["function"], Payload=b"{}")  # a log group and stream to read

        fuzz = Fuzzer(rng, self.lambda_model, self.logs_model, targets)
        conn = _Conn(self.server.url)
        host, port = conn.host, conn.port
        mark = self.server.mark()

        statuses: collections.Counter = collections.Counter()
        per_route: collections.Counter = collections.Counter()
        server_errors, hangs, unshaped, traces, transport, leaks = [], [], [], [], [], []
        known: collections.Counter = collections.Counter()
        t0 = time.monotonic()
        for i in range(COUNT):
            if i % 400 == 0 and i:
                self._ensure_target(targets)
            if rng.random() < 0.02:
                label, template = rng.choice(RAW_FRAMINGS)
                data = template.replace(b"{fn}", targets["function"].encode())
                status, out = raw_exchange(host, port, data)
                statuses[status] += 1
                per_route["raw:" + label] += 1
                desc = f"raw {label}: {data[:200]!r}"
                if status == -1:
                    hangs.append(desc)
                elif status is not None and status >= 500 and status not in RAW_ALLOWED_5XX.get(label, ()):
                    server_errors.append(f"{status} <- {desc} -> {out[:300]!r}")
                if STACK_TRACE_RE.search(out.decode("utf-8", "replace")):
                    traces.append(f"{desc} -> {out[:500]!r}")
                continue

            route = rng.choice(self.routes)
            method = route.method if rng.random() < 0.85 else rng.choice(METHODS)
            path = re.sub(r"\{(\w+)\}", lambda m: fuzz.path_param(m.group(1)), route.template)
            if rng.random() < 0.03:
                path = rng.choice([path + "/", path + "//", path + "/..", "/" + path.lstrip("/").upper(),
                                   path.replace("/functions", "/functions/%2e%2e"), path + "%00", path + "/extra"])
            target = path + fuzz.encode_query(fuzz.query(route))
            body = fuzz.body(route) if method not in ("GET", "HEAD") or rng.random() < 0.1 else None
            headers = fuzz.headers(route, body is not None)
            request_mark = self.server.mark()
            status, resp_headers, data = conn.request(method, target, body, headers)
            statuses[status] += 1
            per_route[route.op] += 1
            body_desc = (body[:160] + (b"...(%d bytes)" % len(body)) if body and len(body) > 160 else body)
            desc = f"{method} {target[:300]} headers={headers} body={body_desc!r}"
            if status == -1:
                hangs.append(desc)
                continue
            if status is None:
                transport.append(f"{desc} -> {data[:200]!r}")
                continue
            text = data.decode("utf-8", "replace")
            if status >= 500:
                if (bug := self._known_bug_behind(request_mark)) is not None:
                    known[bug] += 1
                else:
                    server_errors.append(f"{status} <- {desc} -> {text[:300]!r}")
            if STACK_TRACE_RE.search(text):
                traces.append(f"{status} <- {desc} -> {text[:500]!r}")
            if route.kind == "runtime" and 200 <= status < 300:
                leaks.append(f"{status} <- {desc} -> {text[:200]!r}")
            if 400 <= status < 500 and route.aws and method != "HEAD":
                problem = _aws_shape_problem(resp_headers, data)
                if problem and not _is_http_level_rejection(status, resp_headers, data):
                    unshaped.append(f"{status} {problem} <- {desc} -> {text[:200]!r}")
        conn.close()
        elapsed = time.monotonic() - t0

        health = h.requests.get(f"{self.server.url}/health", timeout=10)
        output = self.server.output_since(mark, limit=h.MAX_LOG_LINES)
        logged_traces = []
        for line in output.splitlines():
            if STACK_TRACE_RE.search(line) or UNHANDLED_RE.search(line):
                if (bug := _known_log_bug(line)) is not None:
                    known[bug + " (log lines)"] += 1
                else:
                    logged_traces.append(line)

        hist = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))
        print(f"[fuzz] {COUNT} requests in {elapsed:.1f} s ({COUNT / elapsed:.0f}/s) over {len(per_route)} routes; "
              f"status histogram: {{{hist}}}", file=sys.stderr, flush=True)
        if known:
            print(f"[fuzz] hits of known product bugs (not failures here; see KnownFindingsTests): {dict(known)}",
                  file=sys.stderr, flush=True)
        print(f"[fuzz] replay with LAMINA_FUZZ_SEED={SEED}", file=sys.stderr, flush=True)

        problems = []
        missed = sorted({r.op for r in self.routes} - set(per_route))
        if missed:
            problems.append(f"{len(missed)} routes got no request at all (raise LAMINA_FUZZ_COUNT): {missed[:10]}")
        for label, items in (("5xx responses", server_errors), ("requests that hung (no answer in "
                             f"{REQUEST_TIMEOUT:.0f} s)", hangs), ("stack traces in response bodies", traces),
                             ("4xx answers that are not AWS-shaped", unshaped),
                             ("connections dropped without an answer", transport),
                             ("Runtime/Extensions API answers on the public listener", leaks),
                             ("stack traces / unhandled errors in the server output", logged_traces)):
            if items:
                problems.append(f"{len(items)} {label}; first ones:\n  " + "\n  ".join(i[:900] for i in items[:5]))
        if health.status_code != 200:
            problems.append(f"/health answered {health.status_code} after the run: {health.text[:300]!r}")
        self.assertFalse(problems, f"fuzz seed {SEED} (LAMINA_FUZZ_SEED={SEED} to replay):\n" + "\n".join(problems))


class RouteListTests(unittest.TestCase):

    def test_every_lamina_route_in_the_source_is_fuzzed(self):
        """LAMINA_ROUTES must list every route the server maps outside the Lambda and Logs APIs."""
        api = h.REPO_ROOT / "src" / "Lamina.Server"
        if not api.is_dir():
            self.skipTest("no server source next to the tests")
        mapped = set()
        for path in api.rglob("*.cs"):
            for method, template in re.findall(r'Map(Get|Post|Put|Delete)\(\s*"(/[^"]*)"', path.read_text()):
                if template.startswith(("/lamina", "/health", "/metrics")):
                    mapped.add((method.upper(), template))
        listed = {(method, template) for method, template, _ in LAMINA_ROUTES}
        self.assertTrue(mapped, "found no Map* calls; has the source layout changed?")
        self.assertEqual(mapped - listed, set(), "routes the fuzz does not know about: add them to LAMINA_ROUTES")


class KnownFindingsTests(h.LaminaTestCase):
    """Exact reproductions of the product bugs the fuzz found (all fixed now; they stay as regression tests)."""

    def _logs(self, body: bytes) -> h.RawResponse:
        return self.server.raw("POST", "/", body=body, headers={
            "X-Amz-Target": "Logs_20140328.DescribeLogStreams", "Content-Type": "application/x-amz-json-1.1"})

    def test_logs_lone_surrogate_in_a_string_is_400(self):
        r = self._logs(b'{"logGroupName": "\\ud800"}')
        self.assertRawError(r, 400)

    def test_event_source_mapping_lone_surrogate_is_400(self):
        r = self.server.raw("POST", "/2015-03-31/event-source-mappings", headers={"Content-Type": "application/json"},
                            body=b'{"EventSourceArn": "\\ud800", "FunctionName": "f", "Tags": {"\\udc00": "v"}}')
        self.assertRawError(r, 400)

    def test_logs_invalid_utf8_in_a_string_is_400(self):
        r = self._logs(b'{"logGroupName": "\xed\xa0\x80"}')
        self.assertRawError(r, 400)

    def test_async_event_with_a_lone_surrogate_does_not_break_the_event_listing(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": "def handler(e, c):\n    return 1\n"}), name=name)
        self.lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
        r = self.server.raw("POST", f"/2015-03-31/functions/{name}/invocations", body=b'{"k": "\\ud800"}',
                            headers={"X-Amz-Invocation-Type": "Event"})
        self.assertIn(r.status, (202, 400), repr(r))
        listing = self.server.raw("GET", "/lamina/v1/async-events", query={"function": name})
        self.assertEqual(listing.status, 200, repr(listing))
        self.assertEqual(listing.json["Queued"], 1 if r.status == 202 else 0, repr(listing))

    def test_a_malformed_chunked_body_is_not_logged_as_an_unhandled_exception(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": "def handler(e, c):\n    return 1\n"}), name=name)
        mark = self.server.mark()
        parsed = urllib.parse.urlsplit(self.server.url)
        status, out = raw_exchange(parsed.hostname, parsed.port, _http(
            f"PUT /2015-03-31/functions/{name}/configuration HTTP/1.1|Host: x|Transfer-Encoding: chunked||zz|abc|0||"))
        self.assertEqual(status, 400, out[:300])
        time.sleep(0.3)
        logged = [line for line in self.server.output_since(mark).splitlines()
                  if STACK_TRACE_RE.search(line) or UNHANDLED_RE.search(line)]
        self.assertEqual(logged, [], "a client error was logged as an unhandled exception")


def _aws_shape_problem(headers: dict[str, str], data: bytes) -> str | None:
    if not headers.get("x-amzn-errortype"):
        return "no x-amzn-ErrorType header"
    try:
        doc = json.loads(data)
    except ValueError:
        return "body is not JSON"
    if not isinstance(doc, dict) or not ({"__type", "Type", "message", "Message"} & set(doc)):
        return "JSON body has no __type/Type/message/Message"
    return None


def _is_http_level_rejection(status: int, headers: dict[str, str], data: bytes) -> bool:
    """Kestrel's own answer to a request it could not parse as HTTP (before any Lamina code runs): an empty
    400/414/431 with Connection: close. Counted as a transport-level refusal, not an API answer."""
    return status in (400, 414, 431) and not data and headers.get("connection", "").lower() == "close"


if __name__ == "__main__":
    unittest.main()
