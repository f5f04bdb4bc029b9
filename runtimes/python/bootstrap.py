"""Lamina managed runtime for Python (python3.11 .. python3.13).

Launched by the server as:  /usr/bin/python3 -u /var/runtime/python/bootstrap.py
with cwd /var/task.  Talks to the Lambda Runtime API 2018-06-01 at
http://$AWS_LAMBDA_RUNTIME_API and behaves like AWS's Python runtime
(aws-lambda-python-runtime-interface-client), standard library only.

Environment read: AWS_LAMBDA_RUNTIME_API (required), _HANDLER (required),
LAMBDA_TASK_ROOT (default: cwd), AWS_LAMBDA_FUNCTION_NAME,
AWS_LAMBDA_FUNCTION_VERSION, AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
AWS_LAMBDA_LOG_GROUP_NAME, AWS_LAMBDA_LOG_STREAM_NAME (context fields),
AWS_LAMBDA_LOG_FORMAT, AWS_LAMBDA_LOG_LEVEL (logging), AWS_EXECUTION_ENV.

Notes on choices:
* HTTP: a small HTTP/1.1 client over one kept-alive socket instead of
  http.client -- importing http.client pulls in email.* and ssl and costs
  ~30 ms of cold start.  Handles Content-Length and chunked responses,
  reconnects (and retries once) if the kept-alive connection was dropped.
  An invocation's response (or error) and the next GET /next go out in one
  write (HTTP/1.1 pipelining): one system call and one wake-up fewer on each
  side per invocation; Lamina sends the 202 with the next event.
* Event: the /next body is always parsed as JSON (Content-Type is not
  consulted).  An EMPTY body is treated as {} (Lamina choice; AWS never hands
  the runtime an empty body).  Invalid JSON fails the invocation with
  Runtime.UnmarshalError, as on AWS.
* Result: json.dumps (Decimal supported: integral -> int, else float);
  bytes results are posted raw with Content-Type application/unknown (AWS).
  A result that cannot be serialised fails the invocation with
  Runtime.MarshalError "Unable to marshal response: ..." (AWS).
* context.memory_limit_in_mb is the string from the environment, exactly as
  AWS's Python runtime provides it.
* sys.exit() inside a handler: the invocation is failed with
  Runtime.ExitError, then the process exits with that status.
* Logging: the root logger gets AWS's handler/format; level only changes when
  AWS_LAMBDA_LOG_LEVEL is set (otherwise Python's default, WARNING).
  Every log record and every runtime-detected error is ONE stdout line;
  line breaks inside it are written as "\\r" (AWS's error printer does this,
  with indentation as U+00A0).  print() output is written raw.
"""

import json
import logging
import os
import socket
import sys
import time

_env = os.environ

# The script's folder (sys.path[0]) must not shadow user modules and must not
# leak into the user's import path: replace it with the task root.
_TASK_ROOT = _env.get("LAMBDA_TASK_ROOT") or os.getcwd()
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path[0] = _TASK_ROOT
else:
    sys.path.insert(0, _TASK_ROOT)

if not getattr(sys.stdout, "write_through", False):  # -u not given: line-buffer
    try:
        sys.stdout.reconfigure(line_buffering=True)
        sys.stderr.reconfigure(line_buffering=True)
    except Exception:
        pass

ERROR_LOG_LINE_TERMINATE = "\r"
ERROR_LOG_IDENT = "\u00a0"  # NO-BREAK SPACE

MARSHAL_ERROR = "Runtime.MarshalError"
UNMARSHAL_ERROR = "Runtime.UnmarshalError"
USER_CODE_SYNTAX_ERROR = "Runtime.UserCodeSyntaxError"
HANDLER_NOT_FOUND = "Runtime.HandlerNotFound"
IMPORT_MODULE_ERROR = "Runtime.ImportModuleError"
BUILT_IN_MODULE_CONFLICT = "Runtime.BuiltInModuleConflict"
MALFORMED_HANDLER_NAME = "Runtime.MalformedHandlerName"
LAMBDA_CONTEXT_UNMARSHAL_ERROR = "Runtime.LambdaContextUnmarshalError"
EXIT_ERROR = "Runtime.ExitError"


class FaultException(Exception):
    def __init__(self, exception_type, msg, trace=None):
        self.msg = msg
        self.exception_type = exception_type
        self.trace = trace


# ---------------------------------------------------------------------------
# Runtime API client


class _Dropped(Exception):
    """The kept-alive connection was closed by the server."""


class RuntimeClient:
    """Minimal HTTP/1.1 keep-alive client for the Runtime API."""

    def __init__(self, address):
        if not address:
            raise ValueError("AWS_LAMBDA_RUNTIME_API is not set")
        host, sep, port = address.rpartition(":")
        if not sep:
            host, port = address, "80"
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if host.isascii():
            host = host.encode("ascii")  # bytes: no idna codec import in getaddrinfo
        self._addr = (host, int(port))
        self._host_header = address
        self._sock = None
        self._rfile = None
        # True when a GET /next went out behind the last POST and its response is the next one to read.
        self._next_sent = False

    def _connect(self):
        sock = socket.create_connection(self._addr)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._rfile = sock.makefile("rb")

    def close(self):
        try:
            if self._rfile is not None:
                self._rfile.close()
            if self._sock is not None:
                self._sock.close()
        except OSError:
            pass
        self._sock = self._rfile = None
        self._next_sent = False

    def request(self, method, path, body=None, headers=None, then_next=False):
        head = "%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path, self._host_header)
        if headers:
            for k, v in headers:
                head += "%s: %s\r\n" % (k, v)
        if body is not None:
            head += "Content-Length: %d\r\n" % len(body)
        head = (head + "\r\n").encode("latin-1")
        if body and len(body) <= 65536:
            head += body
            body = None
        following = _NEXT_REQUEST % self._host_header.encode("latin-1") if then_next else b""
        if not body:
            head += following
        for attempt in (0, 1):
            reused = self._sock is not None
            if not reused:
                self._connect()
            try:
                self._sock.sendall(head)
                if body:
                    self._sock.sendall(body + following)
                self._next_sent = then_next
                return self._read_response()
            except (OSError, _Dropped):
                self.close()
                if not reused or attempt:
                    raise

    def _read_response(self):
        rfile = self._rfile
        line = rfile.readline(65537)
        if not line:
            raise _Dropped()
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
            raise OSError("malformed status line from Runtime API: %r" % line[:100])
        status = int(parts[1])
        headers = {}
        while True:
            h = rfile.readline(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            k, _, v = h.partition(b":")
            headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                size_line = rfile.readline(65537)
                if not size_line:
                    raise _Dropped()
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                data = rfile.read(size)
                if len(data) < size:
                    raise _Dropped()
                chunks.append(data)
                rfile.readline(65537)
            body = b"".join(chunks)
        elif "content-length" in headers:
            n = int(headers["content-length"])
            body = rfile.read(n) if n else b""
            if len(body) < n:
                raise _Dropped()
        elif status in (204, 304) or 100 <= status < 200:
            body = b""
        else:
            body = rfile.read()
            headers["connection"] = "close"
        if headers.get("connection", "").lower() == "close" or parts[0] == b"HTTP/1.0":
            self.close()
        return status, headers, body

    # -- Runtime API calls --------------------------------------------------

    def next_invocation(self, headers=None):
        if self._next_sent:
            # Sent behind the last response (headers only matter on the first /next, never pipelined).
            self._next_sent = False
            try:
                return self._read_response()
            except (OSError, _Dropped):
                self.close()  # asked again below, on a new connection
        failures = 0
        while True:
            try:
                return self.request("GET", "/2018-06-01/runtime/invocation/next", headers=headers)
            except (OSError, _Dropped) as e:
                failures += 1
                if failures > 5:
                    raise
                _diag("GET /runtime/invocation/next failed (%s); retrying" % (e,))
                time.sleep(0.02 * failures)

    def post_response(self, invoke_id, body, content_type="application/json", then_next=False):
        return self.request(
            "POST",
            "/2018-06-01/runtime/invocation/%s/response" % _quote(invoke_id),
            body,
            (("Content-Type", content_type),),
            then_next,
        )

    def post_error(self, invoke_id, error_result, then_next=False):
        return self.request(
            "POST",
            "/2018-06-01/runtime/invocation/%s/error" % _quote(invoke_id),
            _to_json(error_result).encode("utf-8", "replace"),
            (
                ("Content-Type", "application/json"),
                ("Lambda-Runtime-Function-Error-Type", _header_safe(error_result["errorType"])),
            ),
            then_next,
        )

    def post_init_error(self, error_result):
        return self.request(
            "POST",
            "/2018-06-01/runtime/init/error",
            _to_json(error_result).encode("utf-8", "replace"),
            (
                ("Content-Type", "application/json"),
                ("Lambda-Runtime-Function-Error-Type", _header_safe(error_result["errorType"])),
            ),
        )


_NEXT_REQUEST = b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: %s\r\n\r\n"

_SAFE_ID = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def _quote(s):
    if all(c in _SAFE_ID for c in s):
        return s
    from urllib.parse import quote

    return quote(s, safe="")


def _header_safe(v):
    v = str(v)
    if v.isascii() and v.isprintable():
        return v
    return "".join(c if " " <= c <= "~" else "?" for c in v)


def _diag(msg):
    try:
        sys.stderr.write("Lamina runtime: %s\n" % msg)
        sys.stderr.flush()
    except Exception:
        pass


# ---------------------------------------------------------------------------
# JSON


def _json_default(obj):
    import decimal

    if isinstance(obj, decimal.Decimal):
        if obj.is_nan():
            return float("nan")
        if obj == obj.to_integral_value():
            return int(obj)
        return float(obj)
    raise TypeError("Object of type %s is not JSON serializable" % obj.__class__.__name__)


# AWS's python3.12 runtime encodes with ensure_ascii=False; the others escape.
_encoder = json.JSONEncoder(
    default=_json_default,
    ensure_ascii=_env.get("AWS_EXECUTION_ENV") != "AWS_Lambda_python3.12",
)
_to_json = _encoder.encode


def _marshal_response(response):
    if isinstance(response, bytes):
        return response, "application/unknown"
    try:
        return _to_json(response).encode("utf-8"), "application/json"
    except Exception as e:
        raise FaultException(MARSHAL_ERROR, "Unable to marshal response: {}".format(str(e)), None)


def _unmarshal_request(body):
    if not body:
        return {}
    try:
        return json.loads(body)
    except Exception as e:
        raise FaultException(UNMARSHAL_ERROR, "Unable to unmarshal input: {}".format(str(e)), None)


# ---------------------------------------------------------------------------
# Context


class CognitoIdentity(object):
    __slots__ = ["cognito_identity_id", "cognito_identity_pool_id"]

    def __repr__(self):
        return (
            f"{self.__class__.__name__}(["
            f"cognito_identity_id={self.cognito_identity_id},"
            f"cognito_identity_pool_id={self.cognito_identity_pool_id}"
            "])"
        )


class Client(object):
    __slots__ = [
        "installation_id",
        "app_title",
        "app_version_name",
        "app_version_code",
        "app_package_name",
    ]

    def __repr__(self):
        return (
            f"{self.__class__.__name__}(["
            f"installation_id={self.installation_id},"
            f"app_title={self.app_title},"
            f"app_version_name={self.app_version_name},"
            f"app_version_code={self.app_version_code},"
            f"app_package_name={self.app_package_name}"
            "])"
        )


class ClientContext(object):
    __slots__ = ["custom", "env", "client"]

    def __repr__(self):
        return (
            f"{self.__class__.__name__}(["
            f"custom={self.custom},"
            f"env={self.env},"
            f"client={self.client}"
            "])"
        )


def _make_obj(cls, d):
    if d is None:
        return None
    obj = cls()
    get = d.get if isinstance(d, dict) else (lambda k, default=None: default)
    for field in cls.__slots__:
        setattr(obj, field, get(field, None))
    return obj


_FUNCTION_NAME = _env.get("AWS_LAMBDA_FUNCTION_NAME")
_FUNCTION_VERSION = _env.get("AWS_LAMBDA_FUNCTION_VERSION")
_MEMORY_SIZE = _env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
_LOG_GROUP = _env.get("AWS_LAMBDA_LOG_GROUP_NAME")
_LOG_STREAM = _env.get("AWS_LAMBDA_LOG_STREAM_NAME")


class LambdaContext(object):
    def __init__(
        self,
        invoke_id,
        client_context,
        cognito_identity,
        epoch_deadline_time_in_ms,
        invoked_function_arn=None,
        tenant_id=None,
    ):
        self.aws_request_id = invoke_id
        self.log_group_name = _LOG_GROUP
        self.log_stream_name = _LOG_STREAM
        self.function_name = _FUNCTION_NAME
        self.memory_limit_in_mb = _MEMORY_SIZE
        self.function_version = _FUNCTION_VERSION
        self.invoked_function_arn = invoked_function_arn
        self.tenant_id = tenant_id

        self.client_context = _make_obj(ClientContext, client_context)
        if self.client_context is not None:
            self.client_context.client = _make_obj(Client, self.client_context.client)

        identity = CognitoIdentity()
        identity.cognito_identity_id = None
        identity.cognito_identity_pool_id = None
        if isinstance(cognito_identity, dict):
            identity.cognito_identity_id = cognito_identity.get("cognitoIdentityId")
            identity.cognito_identity_pool_id = cognito_identity.get("cognitoIdentityPoolId")
        self.identity = identity

        self._epoch_deadline_time_in_ms = epoch_deadline_time_in_ms

    def get_remaining_time_in_millis(self):
        delta_ms = self._epoch_deadline_time_in_ms - int(time.time() * 1000)
        return delta_ms if delta_ms > 0 else 0

    def log(self, msg):
        sys.stdout.write(str(msg))

    def __repr__(self):
        return (
            f"{self.__class__.__name__}(["
            f"aws_request_id={self.aws_request_id},"
            f"log_group_name={self.log_group_name},"
            f"log_stream_name={self.log_stream_name},"
            f"function_name={self.function_name},"
            f"memory_limit_in_mb={self.memory_limit_in_mb},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},"
            f"client_context={self.client_context},"
            f"identity={self.identity},"
            f"tenant_id={self.tenant_id}"
            "])"
        )


def _parse_json_header(value, name):
    try:
        try:
            value = value.encode("latin-1").decode("utf-8")
        except UnicodeError:
            pass
        return json.loads(value)
    except Exception as e:
        raise FaultException(
            LAMBDA_CONTEXT_UNMARSHAL_ERROR, "Unable to parse {} JSON: {}".format(name, str(e)), None
        )


# ---------------------------------------------------------------------------
# Logging

_GLOBAL_AWS_REQUEST_ID = None
_GLOBAL_TENANT_ID = None

_LOG_FORMAT_JSON = (_env.get("AWS_LAMBDA_LOG_FORMAT") or "").upper() == "JSON"


def _log_level_from_env():
    level = (_env.get("AWS_LAMBDA_LOG_LEVEL") or "").upper()
    return "DEBUG" if level == "TRACE" else level


class LambdaLoggerHandler(logging.Handler):
    """Writes each log record as ONE stdout line.

    AWS frames every record as one log event.  Lamina collects stdout line by
    line, so line breaks inside a record (multi-line messages, tracebacks of
    logger.exception) are written as "\\r" -- the same convention AWS's Node.js
    runtime and its Python error printer use on stdout.
    """

    def emit(self, record):
        try:
            msg = self.format(record)
            if msg.endswith("\n"):
                msg = msg[:-1]
            if "\n" in msg:
                msg = msg.replace("\n", "\r")
            sys.stdout.write(msg + "\n")
        except Exception:
            self.handleError(record)


class LambdaLoggerFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = _GLOBAL_AWS_REQUEST_ID or ""
        record.tenant_id = _GLOBAL_TENANT_ID
        return True


_JSON_RESERVED_FIELDS = {
    "name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module",
    "exc_info", "exc_text", "stack_info", "lineno", "funcName", "created", "msecs",
    "relativeCreated", "thread", "threadName", "processName", "process",
    "aws_request_id", "tenant_id", "_frame_type", "taskName",
}


class JsonFormatter(logging.Formatter):
    """AWS_LAMBDA_LOG_FORMAT=JSON record shape, as AWS's runtime emits it."""

    def formatTime(self, record, datefmt=None):
        t = time.gmtime(record.created)
        return time.strftime("%Y-%m-%dT%H:%M:%S", t) + ".%03dZ" % int(record.msecs)

    def format(self, record):
        import traceback

        record.levelno = min(50, max(0, record.levelno)) // 10 * 10
        record.levelname = logging.getLevelName(record.levelno)
        exc = record.exc_info
        result = {
            "timestamp": self.formatTime(record),
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "stackTrace": traceback.format_tb(exc[2]) if exc else None,
            "errorType": exc[0].__name__ if exc else None,
            "errorMessage": str(exc[1]) if exc else None,
            "requestId": getattr(record, "aws_request_id", None),
            "location": "%s:%s:%s" % (record.pathname, record.funcName, record.lineno) if exc else None,
        }
        if getattr(record, "tenant_id", None) is not None:
            result["tenantId"] = record.tenant_id
        for key, value in record.__dict__.items():
            if key not in _JSON_RESERVED_FIELDS and key not in result:
                result[key] = value
        result = {k: v for k, v in result.items() if v is not None}
        return json.dumps(result, ensure_ascii=False, default=str) + "\n"


def _setup_logging():
    logging.Formatter.converter = time.gmtime
    logger = logging.getLogger()
    handler = LambdaLoggerHandler()
    if _LOG_FORMAT_JSON:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
                "%Y-%m-%dT%H:%M:%S",
            )
        )
    level = _log_level_from_env()
    if level in logging._nameToLevel:
        logger.setLevel(level)
    handler.addFilter(LambdaLoggerFilter())
    logger.addHandler(handler)


def _replace_line_indentation(line, indent_char, new_indent_char):
    n = len(line) - len(line.lstrip(indent_char))
    return (new_indent_char * n) + line[n:]


def log_error(error_result):
    """Print a runtime-detected error the way AWS's runtime does."""
    if _LOG_FORMAT_JSON:
        record = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
            "level": "ERROR",
        }
        record.update(error_result)
        sys.stdout.write(_to_json(record) + "\n")
        return
    description = "[ERROR]"
    etype = error_result.get("errorType")
    if etype:
        description += " " + etype
    emsg = error_result.get("errorMessage")
    if emsg:
        if etype:
            description += ":"
        description += " " + emsg
    lines = [description]
    stack_trace = error_result.get("stackTrace")
    if stack_trace is not None:
        lines.append("Traceback (most recent call last):")
        for element in stack_trace:
            if element == "":
                lines.append("")
            else:
                for trace_line in element.splitlines():
                    lines.append(_replace_line_indentation(trace_line, " ", ERROR_LOG_IDENT))
    sys.stdout.write(ERROR_LOG_LINE_TERMINATE.join(lines) + "\n")


# ---------------------------------------------------------------------------
# Errors


def make_error(error_message, error_type, stack_trace, invoke_id=None):
    return {
        "errorMessage": error_message if error_message else "",
        "errorType": error_type if error_type else "",
        "requestId": invoke_id if invoke_id is not None else "",
        "stackTrace": stack_trace if stack_trace else [],
    }


def _user_frames(tb):
    """Traceback frames with the runtime's own leading frames removed (AWS)."""
    import traceback

    tuples = [(f.filename, f.lineno, f.name, f.line) for f in traceback.extract_tb(tb)]
    for i in range(len(tuples)):
        if "/bootstrap.py" not in tuples[i][0]:
            return tuples[i:]
    return tuples


def _safe_str(value):
    try:
        return str(value)
    except Exception:
        try:
            return repr(value)
        except Exception:
            return "<exception str() failed>"


def build_fault_result(exc_info, invoke_id=None):
    import traceback

    etype, value, tb = exc_info
    try:
        stack = traceback.format_list(_user_frames(tb))
    except Exception:
        stack = []
    return make_error(_safe_str(value), etype.__name__, stack, invoke_id)


# ---------------------------------------------------------------------------
# Handler loading


def _get_handler(handler):
    import importlib

    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise FaultException(MALFORMED_HANDLER_NAME, "Bad handler '{}': {}".format(handler, str(e)))

    try:
        if modname.split(".")[0] in sys.builtin_module_names:
            raise FaultException(
                BUILT_IN_MODULE_CONFLICT,
                "Cannot use built-in module {} as a handler module".format(modname),
            )
        m = importlib.import_module(modname.replace("/", "."))
    except ImportError as e:
        raise FaultException(
            IMPORT_MODULE_ERROR, "Unable to import module '{}': {}".format(modname, str(e))
        )
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise FaultException(
            USER_CODE_SYNTAX_ERROR, "Syntax error in module '{}': {}".format(modname, str(e)), trace
        )

    try:
        return getattr(m, fname)
    except AttributeError:
        raise FaultException(
            HANDLER_NOT_FOUND, "Handler '{}' missing on module '{}'".format(fname, modname), None
        )


# ---------------------------------------------------------------------------
# Main loop


def _report(client, what, fn, *args):
    try:
        status, _, body = fn(*args)
        if status >= 300:
            _diag("%s returned %d: %s" % (what, status, body[:1000].decode("utf-8", "replace")))
    except Exception as e:
        _diag("%s failed: %s" % (what, e))


def handle_event_request(client, request_handler, invoke_id, headers, body):
    error_result = None
    try:
        client_context = headers.get("lambda-runtime-client-context")
        if client_context:
            client_context = _parse_json_header(client_context, "Client Context")
        else:
            client_context = None
        cognito_identity = headers.get("lambda-runtime-cognito-identity")
        if cognito_identity:
            cognito_identity = _parse_json_header(cognito_identity, "Cognito Identity")
        else:
            cognito_identity = None
        try:
            deadline = int(headers.get("lambda-runtime-deadline-ms") or 0)
        except ValueError:
            deadline = 0
        context = LambdaContext(
            invoke_id,
            client_context,
            cognito_identity,
            deadline,
            headers.get("lambda-runtime-invoked-function-arn"),
            headers.get("lambda-runtime-aws-tenant-id"),
        )
        event = _unmarshal_request(body)
        response = request_handler(event, context)
        result, content_type = _marshal_response(response)
    except FaultException as e:
        error_result = make_error(e.msg, e.exception_type, e.trace, invoke_id)
    except SystemExit as e:
        code = e.code
        if code is None:
            status = 0
        elif isinstance(code, int):
            status = code
        else:
            status = 1
        error_result = make_error(
            "RequestId: %s Error: Runtime exited with error: exit status %d" % (invoke_id, status),
            EXIT_ERROR,
            None,
            invoke_id,
        )
        _report(client, "POST error", client.post_error, invoke_id, error_result)
        raise
    except Exception:
        error_result = build_fault_result(sys.exc_info(), invoke_id)

    # The next GET /next goes out in the same write (the main loop reads its answer next).
    if error_result is not None:
        log_error(error_result)
        _report(client, "POST error", client.post_error, invoke_id, error_result, True)
    else:
        _report(client, "POST response", client.post_response, invoke_id, result, content_type, True)


class _TraceVariable:
    """_X_AMZN_TRACE_ID, set to each invocation's trace header as AWS's runtime does (the X-Ray SDK and botocore read
    it; a child process inherits it), without a setenv for each one. glibc's setenv keeps every value it was ever given
    for good (a caller of getenv may still hold the old one): a new trace header per invocation grew a warm environment
    by ~140 bytes an invocation, 6 MB per 44,000, until its memory limit ended it. Once own() has run, the C
    environment's entry is a buffer of this class's, handed to putenv (which keeps the caller's string rather than a
    copy) and rewritten in place, and os.environ's mapping is updated without setenv. Before that (the first
    invocation, or where ctypes cannot load) os.environ is set as usual."""

    _KEY = b"_X_AMZN_TRACE_ID"

    def __init__(self):
        self.owned = False
        self._ctypes = None
        self._putenv = None
        self._buffer = None
        self._buffers = []  # every buffer putenv was given (the environment may still point at one): a few at most

    def own(self):
        self.owned = True
        try:
            import ctypes

            putenv = ctypes.CDLL(None).putenv
            putenv.argtypes = (ctypes.c_char_p,)
            putenv.restype = ctypes.c_int
        except Exception:
            return  # os.environ as before
        self._ctypes = ctypes
        self._putenv = putenv
        value = _env._data.get(self._KEY)
        if value is not None:
            self.set(_env.decodevalue(value))

    def set(self, value):
        if self._putenv is None:
            if value:
                _env["_X_AMZN_TRACE_ID"] = value
            elif "_X_AMZN_TRACE_ID" in _env:
                del _env["_X_AMZN_TRACE_ID"]
            return
        if not value:
            if self._KEY in _env._data:
                del _env["_X_AMZN_TRACE_ID"]  # unsetenv: takes the entry out, keeps no copy
            return
        encoded = _env.encodevalue(value)
        entry = self._KEY + b"=" + encoded
        if self._buffer is None or len(entry) >= len(self._buffer):
            size = max(len(entry) + 1, 2 * len(self._buffer) if self._buffer is not None else 256)
            self._buffer = self._ctypes.create_string_buffer(size)
            self._buffers.append(self._buffer)
        self._ctypes.memmove(self._buffer, entry, len(entry) + 1)
        # Each time (a scan of the environment and a pointer store): user code may have set the variable since.
        self._putenv(self._buffer)
        _env._data[self._KEY] = encoded


_TRACE_VARIABLE = _TraceVariable()


def main():
    global _GLOBAL_AWS_REQUEST_ID, _GLOBAL_TENANT_ID

    try:
        client = RuntimeClient(_env.get("AWS_LAMBDA_RUNTIME_API"))
    except ValueError as e:
        _diag(str(e))
        sys.exit(1)

    _setup_logging()

    handler_init_started = time.monotonic()
    try:
        request_handler = _get_handler(_env.get("_HANDLER") or "")
    except FaultException as e:
        error_result = make_error(e.msg, e.exception_type, e.trace)
    except Exception:
        error_result = build_fault_result(sys.exc_info())
    else:
        error_result = None
    if error_result is not None:
        log_error(error_result)
        _report(client, "POST init error", client.post_init_error, error_result)
        sys.exit(1)

    # The first /next tells Lamina how long the handler's own Init took (its cold-start phases).
    next_headers = [("Lamina-Handler-Init-Ms", "%.3f" % ((time.monotonic() - handler_init_started) * 1000))]
    while True:
        try:
            status, headers, body = client.next_invocation(next_headers)
            next_headers = None
        except Exception as e:
            _diag("GET /runtime/invocation/next failed: %s; exiting" % (e,))
            sys.exit(1)
        if status == 500 and b"is shutting down" in body:
            # Lamina ends the environment (function deleted or updated, idle, server stopping): nothing to report in
            # the function's log, where Lambda's frozen environments write nothing either.
            sys.exit(0)
        if status != 200:
            _diag(
                "GET /runtime/invocation/next returned %d: %s; exiting"
                % (status, body[:1000].decode("utf-8", "replace"))
            )
            sys.exit(1)
        invoke_id = headers.get("lambda-runtime-aws-request-id")
        if not invoke_id:
            _diag("invocation without Lambda-Runtime-Aws-Request-Id; exiting")
            sys.exit(1)

        _GLOBAL_AWS_REQUEST_ID = invoke_id
        _GLOBAL_TENANT_ID = headers.get("lambda-runtime-aws-tenant-id")
        _TRACE_VARIABLE.set(headers.get("lambda-runtime-trace-id"))

        handle_event_request(client, request_handler, invoke_id, headers, body)
        if not _TRACE_VARIABLE.owned:
            # After the first invocation was reported (its GET /next already sent), not on the cold start's path.
            _TRACE_VARIABLE.own()


if __name__ == "__main__":
    main()
