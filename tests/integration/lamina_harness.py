"""Shared harness for Lamina's end-to-end integration tests.

Starts one real ``lamina serve`` process per test module (port 0, temp data dir), hands out
boto3 clients, signed raw-HTTP helpers and an AWS CLI runner, builds deployment zips in memory
and attaches the server's output to every failing test.

Environment knobs (all optional):
  LAMINA_SERVER_CMD      shell-words command that replaces ``./lamina serve --host 127.0.0.1``;
                         the harness always appends ``--port 0 --data <dir>``. Run from the repo root.
  LAMINA_TEST_ENDPOINT   use an already running server at this URL instead of starting one
                         (checks that need the server's data dir or its exit are then skipped).
  LAMINA_START_TIMEOUT   seconds to wait for the "listening" line (default 120: the first run may build).
  LAMINA_STOP_TIMEOUT    seconds the server gets to exit after SIGTERM (default 10).
  LAMINA_SLOW_TESTS      set to 0 to skip tests marked slow (zip bomb, timeouts, 6 MB payloads).
  LAMINA_AWS_CLI         AWS CLI executable (default ``aws`` on PATH, CLI v1 here).
  LAMINA_KEEP_DATA       set to 1 to keep the temp data dirs for inspection.
  LAMINA_ECHO_SERVER     set to 1 to copy the server's output live to stderr.
"""
from __future__ import annotations

import atexit
import base64
import collections
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import boto3
import botocore
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.exceptions
import requests
from botocore.config import Config

REPO_ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCOUNT = "000000000000"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/lambda-role"
ACCESS_KEY = "test"
SECRET_KEY = "test"
DEFAULT_SERVER_CMD = "./lamina serve --host 127.0.0.1"
LISTENING_RE = re.compile(r"lamina: listening on (http://\S+)")
LAST_MODIFIED_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")
MAX_LOG_LINES = 20000
FAILURE_LOG_LINES = 150


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    return float(value) if value else default


START_TIMEOUT = _env_float("LAMINA_START_TIMEOUT", 120.0)
STOP_TIMEOUT = _env_float("LAMINA_STOP_TIMEOUT", 10.0)
SLOW_TESTS = os.environ.get("LAMINA_SLOW_TESTS", "1").strip().lower() not in ("0", "false", "no", "off")


def slow(test: Callable) -> Callable:
    """Marks a test as slow; LAMINA_SLOW_TESTS=0 skips it. Everything runs by default."""
    return unittest.skipUnless(SLOW_TESTS, "slow test; LAMINA_SLOW_TESTS=0")(test)


def function_arn(name: str, qualifier: str | None = None) -> str:
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


# --------------------------------------------------------------------------------------------
# Zips
# --------------------------------------------------------------------------------------------

def make_zip(files: Mapping[str, str | bytes], executables: Iterable[str] = ()) -> bytes:
    """Builds a deployment package in memory. ``executables`` get mode 0755 (e.g. ``bootstrap``)."""
    executables = set(executables)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.create_system = 3  # Unix, so extractors honour the mode bits below
            mode = 0o755 if name in executables else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = content.encode("utf-8") if isinstance(content, str) else content
            zf.writestr(info, data)
    return buf.getvalue()


def make_zip_raw_entries(entries: Iterable[tuple[str, bytes, int]]) -> bytes:
    """Zip with arbitrary entry names and unix modes (for zip-slip / symlink entries)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo("x", date_time=(2024, 1, 1, 0, 0, 0))
            info.filename = name  # bypass ZipInfo's sanitising of the name
            info.orig_filename = name
            info.create_system = 3
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


_JS_SDK_FILES: dict[str, bytes] = {}


def js_sdk_modules() -> Path:
    """The node_modules directory holding @aws-sdk/client-lambda (``prepare_js_sdk.sh``, npm, once per machine), for
    clients that run on the host. A failed install fails the test, never skips it."""
    done = subprocess.run([str(REPO_ROOT / "tests/integration/prepare_js_sdk.sh")], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise AssertionError(f"prepare_js_sdk.sh failed ({done.returncode}): {done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def js_sdk_zip(index_mjs: str) -> bytes:
    """A Node.js package (handler ``index.handler``) holding ``index.mjs`` and the AWS SDK for JavaScript v3's Lambda
    client, installed once per machine by ``prepare_js_sdk.sh`` (npm). A failed install fails the test, never skips it."""
    if not _JS_SDK_FILES:
        modules = js_sdk_modules()
        for path in sorted(modules.rglob("*")):
            if path.is_file():
                _JS_SDK_FILES["node_modules/" + path.relative_to(modules).as_posix()] = path.read_bytes()
    return make_zip({**_JS_SDK_FILES, "index.mjs": index_mjs})


_ZIP_BOMB_CACHE: dict[int, bytes] = {}


def make_zip_bomb(unzipped_mb: int = 260) -> bytes:
    """One highly compressible file of ``unzipped_mb`` MiB of zeros, streamed (no big buffer)."""
    if unzipped_mb not in _ZIP_BOMB_CACHE:
        buf = io.BytesIO()
        chunk = bytes(1024 * 1024)
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            with zf.open("zeros.bin", "w", force_zip64=True) as f:
                for _ in range(unzipped_mb):
                    f.write(chunk)
            zf.writestr("app.py", "def handler(event, context):\n    return 1\n")
        _ZIP_BOMB_CACHE[unzipped_mb] = buf.getvalue()
    return _ZIP_BOMB_CACHE[unzipped_mb]


# --------------------------------------------------------------------------------------------
# Raw (signed) HTTP
# --------------------------------------------------------------------------------------------

class RawResponse:
    def __init__(self, resp: requests.Response):
        self.status = resp.status_code
        self.headers = resp.headers  # case-insensitive
        self.body = resp.content
        self.text = resp.content.decode("utf-8", "replace")
        try:
            self.json: Any = json.loads(self.body) if self.body else None
        except ValueError:
            self.json = None

    @property
    def error_type(self) -> str | None:
        value = self.headers.get("x-amzn-ErrorType")
        if value is None:
            return None
        # botocore strips anything after ':' (e.g. ':http://internal.amazon.com/...')
        return value.split(":", 1)[0].strip()

    @property
    def request_id(self) -> str | None:
        return self.headers.get("x-amzn-RequestId")

    def __repr__(self) -> str:
        body = self.text if len(self.text) < 600 else self.text[:600] + "..."
        return f"<HTTP {self.status} type={self.headers.get('x-amzn-ErrorType')!r} body={body!r}>"


def quote_path_segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


# --------------------------------------------------------------------------------------------
# The server process
# --------------------------------------------------------------------------------------------

class ServerStartError(RuntimeError):
    pass


class ServerStopError(RuntimeError):
    pass


_EARLIER_START_TIMED_OUT: str | None = None


class LaminaServer:
    """One ``lamina serve`` child process with its own temp data dir."""

    def __init__(self, label: str, extra_args: Iterable[str] = (), data_dir: Path | None = None,
                 on_line: Callable[[str], None] | None = None, env: Mapping[str, str] | None = None):
        self.label = label
        self.extra_args = list(extra_args)  # server options after ``serve``, e.g. ["--account-concurrency", "2"]
        self.env = dict(env or {})  # variables added to the server's environment (e.g. a .NET runtime setting)
        # A data dir of the caller's (a restart on the same state); it is left in place when the server stops.
        self._given_data_dir = data_dir
        # Sees every stdout line (beyond the bounded buffer), e.g. to count what a long test's functions printed.
        self._on_line = on_line
        self.url: str | None = None
        self.proc: subprocess.Popen | None = None
        self.root_dir: Path | None = None  # temp root; the data dir is root_dir/"data"
        self.data_dir: Path | None = None
        self.external = False
        self._lines: collections.deque[tuple[int, str]] = collections.deque(maxlen=MAX_LOG_LINES)
        self._line_no = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._threads: list[threading.Thread] = []
        self._echo = os.environ.get("LAMINA_ECHO_SERVER", "") == "1"
        self._client = None

    # ---- output capture ---------------------------------------------------------------------
    def _record(self, stream: str, line: str) -> None:
        with self._lock:
            self._line_no += 1
            self._lines.append((self._line_no, f"[{stream}] {line}"))
        if self._echo:
            sys.stderr.write(f"[{self.label} {stream}] {line}\n")
        if self._on_line is not None and stream == "stdout":
            self._on_line(line)
        if stream == "stdout" and not self._ready.is_set():
            m = LISTENING_RE.search(line)
            if m:
                self.url = m.group(1).rstrip("/")
                self._ready.set()

    def _pump(self, stream_name: str, pipe) -> None:
        try:
            for raw in iter(pipe.readline, b""):
                self._record(stream_name, raw.decode("utf-8", "replace").rstrip("\r\n"))
        except (OSError, ValueError):
            pass
        finally:
            try:
                pipe.close()
            except OSError:
                pass

    def mark(self) -> int:
        with self._lock:
            return self._line_no

    def output_since(self, mark: int = 0, limit: int = FAILURE_LOG_LINES) -> str:
        with self._lock:
            lines = [text for no, text in self._lines if no > mark]
        if len(lines) > limit:
            lines = [f"... ({len(lines) - limit} earlier lines omitted)"] + lines[-limit:]
        return "\n".join(lines) if lines else "(no output)"

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> "LaminaServer":
        global _EARLIER_START_TIMED_OUT
        endpoint = os.environ.get("LAMINA_TEST_ENDPOINT", "").strip()
        if endpoint:
            self.external = True
            self.url = endpoint.rstrip("/")
            self._check_health(deadline=time.monotonic() + 10)
            return self
        if _EARLIER_START_TIMED_OUT:
            raise ServerStartError(
                "server did not start: not retried because an earlier start in this run timed out:\n"
                + _EARLIER_START_TIMED_OUT)

        base = os.environ.get("LAMINA_SERVER_CMD", "").strip() or DEFAULT_SERVER_CMD
        argv = shlex.split(base)
        if "--host" in self.extra_args and "--host" in argv:
            # A server of the caller's on another address (one option of that name is allowed).
            at = argv.index("--host")
            del argv[at:at + 2]
        if not os.environ.get("LAMINA_SERVER_CMD", "").strip():
            exe = REPO_ROOT / "lamina"
            if not exe.exists():
                raise ServerStartError(
                    f"server did not start: {exe} does not exist (build the server, or set "
                    "LAMINA_SERVER_CMD to a command that runs `lamina serve --host 127.0.0.1`)")
        if self._given_data_dir is not None:
            self.root_dir = None
            self.data_dir = self._given_data_dir
            self.data_dir.mkdir(parents=True, exist_ok=True)
        else:
            self.root_dir = Path(tempfile.mkdtemp(prefix=f"lamina-it-{self.label}-"))
            self.data_dir = self.root_dir / "data"
            self.data_dir.mkdir()
        argv += [*self.extra_args, "--port", "0", "--data", str(self.data_dir)]
        self._record("harness", f"starting: {shlex.join(argv)} (cwd {REPO_ROOT})")
        try:
            self.proc = subprocess.Popen(
                argv, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, start_new_session=True, env={**os.environ, **self.env})
        except OSError as e:
            raise ServerStartError(f"server did not start: cannot execute {argv[0]!r}: {e}") from e
        _LIVE_SERVERS.add(self)
        for name, pipe in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            t = threading.Thread(target=self._pump, args=(name, pipe), daemon=True,
                                 name=f"lamina-{self.label}-{name}")
            t.start()
            self._threads.append(t)

        deadline = time.monotonic() + START_TIMEOUT
        while not self._ready.wait(0.1):
            rc = self.proc.poll()
            if rc is not None:
                for t in self._threads:
                    t.join(2)
                self._cleanup_after_exit()
                raise ServerStartError(
                    f"server did not start: process exited with status {rc} before printing "
                    f"'lamina: listening on http://...'. Captured output:\n{self.output_since(0, 400)}")
            if time.monotonic() > deadline:
                msg = (f"server did not start: no 'lamina: listening on http://...' line on stdout "
                       f"within {START_TIMEOUT:.0f} s (LAMINA_START_TIMEOUT). Captured output:\n"
                       f"{self.output_since(0, 400)}")
                _EARLIER_START_TIMED_OUT = msg[:2000]
                self._kill_group()
                self._cleanup_after_exit()
                raise ServerStartError(msg)
        try:
            self._check_health(deadline=time.monotonic() + 15)
        except ServerStartError:
            self._kill_group()
            self._cleanup_after_exit()
            raise
        return self

    def _check_health(self, deadline: float) -> None:
        last = None
        while True:
            try:
                r = requests.get(f"{self.url}/health", timeout=5)
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}: {r.text[:300]!r}"
            except requests.RequestException as e:
                last = repr(e)
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"server did not start: GET {self.url}/health never answered 200 (last: {last}). "
                    f"Captured output:\n{self.output_since(0, 400)}")
            time.sleep(0.1)

    def kill(self) -> None:
        """kill -9 of the server process alone, as a crash would (its sandboxes die with it); no cleanup."""
        if self.proc is None or self.external:
            return
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._kill_group()  # what a crashed server leaves in its session (pasta daemons) goes too
        for t in self._threads:
            t.join(5)
        _LIVE_SERVERS.discard(self)

    def _group_members(self) -> list[str]:
        """Processes still in the server's process group (its own session)."""
        if self.proc is None:
            return []
        pgid = self.proc.pid
        members = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()
                if int(fields[2]) == pgid:  # field 5 of stat: pgrp
                    cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                        "utf-8", "replace").strip()
                    if fields[0] != "Z":
                        members.append(f"pid {entry}: {cmd or stat.split()[1]}")
            except (OSError, ValueError):
                continue
        return members

    def _kill_group(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def _cleanup_after_exit(self) -> None:
        _LIVE_SERVERS.discard(self)
        if self.root_dir and os.environ.get("LAMINA_KEEP_DATA", "") != "1":
            shutil.rmtree(self.root_dir, ignore_errors=True)

    def stop(self) -> None:
        """SIGTERM, bounded wait, then SIGKILL. Raises ServerStopError if shutdown was not clean."""
        if self.external or self.proc is None:
            return
        problems = []
        timed_out = False
        if self.proc.poll() is not None:
            problems.append(f"server had already exited with status {self.proc.returncode} "
                            "before the end of the module")
        else:
            self.proc.send_signal(signal.SIGTERM)
            t0 = time.monotonic()
            try:
                rc = self.proc.wait(STOP_TIMEOUT)
                took = time.monotonic() - t0
                self._record("harness", f"server exited with status {rc} {took:.2f} s after SIGTERM")
                if rc < 0:
                    problems.append(f"server was killed by signal {signal.Signals(-rc).name} "
                                    "instead of handling SIGTERM and exiting with status 0")
                elif rc != 0:
                    problems.append(f"server exited with status {rc} after SIGTERM (expected 0)")
            except subprocess.TimeoutExpired:
                timed_out = True
                problems.append(f"server did not exit within {STOP_TIMEOUT:.0f} s of SIGTERM "
                                "(LAMINA_STOP_TIMEOUT); killed it")
        leftovers = [] if timed_out else self._group_members()
        if leftovers:
            problems.append("processes of the server's process group still alive after it exited:\n  "
                            + "\n  ".join(leftovers))
        self._kill_group()
        for t in self._threads:
            t.join(5)
        self._cleanup_after_exit()
        if problems:
            raise ServerStopError("unclean shutdown: " + "; ".join(problems)
                                  + f"\nLast server output:\n{self.output_since(0, 80)}")

    # ---- clients ----------------------------------------------------------------------------
    def client(self):
        if self._client is None:
            self._client = boto3.client(
                "lambda", endpoint_url=self.url, region_name=REGION,
                aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                config=Config(retries={"max_attempts": 0}, read_timeout=60, connect_timeout=10,
                              tcp_keepalive=True))
        return self._client

    def raw(self, method: str, path: str, body: bytes | str | dict | list | None = None,
            headers: Mapping[str, str] | None = None, query: Mapping[str, str] | None = None,
            sign: bool = True, timeout: float = 60) -> RawResponse:
        """Sends one HTTP request, SigV4-signed like botocore does, bypassing client-side validation.

        ``path`` must already be percent-encoded (use quote_path_segment for names)."""
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
        hdrs = dict(headers or {})
        if isinstance(body, (dict, list)):
            data: bytes | None = json.dumps(body).encode("utf-8")
            hdrs.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            data = body.encode("utf-8")
        else:
            data = body
        if sign:
            req = botocore.awsrequest.AWSRequest(method=method, url=url, data=data or b"", headers=hdrs)
            botocore.auth.SigV4Auth(botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY),
                                    "lambda", REGION).add_auth(req)
            hdrs = dict(req.headers.items())
        resp = requests.request(method, url, data=data, headers=hdrs, timeout=timeout)
        return RawResponse(resp)

    def aws_cli_command(self, *args: str, cli: str | None = None) -> list[str]:
        """``aws --endpoint-url URL --region us-east-1 --output json <args>`` (run it with aws_cli_env())."""
        exe = cli or os.environ.get("LAMINA_AWS_CLI", "aws")
        return [exe, "--endpoint-url", self.url, "--region", REGION, "--output", "json", *args]

    def aws_cli_env(self) -> dict[str, str]:
        """The environment the CLI runs in: the test credentials and region, no user configuration."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("AWS_") or k in ("AWS_CA_BUNDLE",)}
        cfg_dir = _aws_config_dir()
        env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                   AWS_MAX_ATTEMPTS="1", AWS_RETRY_MODE="standard", AWS_PAGER="",
                   AWS_DEFAULT_REGION=REGION,
                   AWS_CONFIG_FILE=str(cfg_dir / "config"),
                   AWS_SHARED_CREDENTIALS_FILE=str(cfg_dir / "credentials"))
        return env

    def aws_cli(self, *args: str, timeout: float = 120, cli: str | None = None) -> "CliResult":
        """Runs ``aws --endpoint-url URL --region us-east-1 --output json <args>``."""
        cmd = self.aws_cli_command(*args, cli=cli)
        t0 = time.monotonic()
        p = subprocess.run(cmd, env=self.aws_cli_env(), stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout)
        return CliResult(cmd, p.returncode, p.stdout.decode("utf-8", "replace"),
                         p.stderr.decode("utf-8", "replace"), time.monotonic() - t0)


def boto3_client(url: str, service: str):
    """A boto3 client of `service` against a Lamina server: test credentials, no retries."""
    return boto3.client(
        service, endpoint_url=url, region_name=REGION,
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"max_attempts": 0}, read_timeout=60, connect_timeout=10))


_AWS_CONFIG_DIR: Path | None = None


def signed_request(method: str, url: str, body: bytes, key: str, secret: str) -> requests.Response:
    """A request signed as AWS_IAM function URLs want it: SigV4, service lambda."""
    request = botocore.awsrequest.AWSRequest(method=method, url=url, data=body, headers={"Content-Type": "application/json"})
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(key, secret), "lambda", REGION).add_auth(request)
    prepared = request.prepare()
    return requests.request(method, prepared.url, data=body, headers=dict(prepared.headers), timeout=60)


def _aws_config_dir() -> Path:
    """An empty AWS config home for the CLI, so ~/.aws on the machine cannot change the tests."""
    global _AWS_CONFIG_DIR
    if _AWS_CONFIG_DIR is None:
        _AWS_CONFIG_DIR = Path(tempfile.mkdtemp(prefix="lamina-it-awscfg-"))
        atexit.register(shutil.rmtree, _AWS_CONFIG_DIR, True)
    return _AWS_CONFIG_DIR


class CliResult:
    def __init__(self, cmd: list[str], rc: int, stdout: str, stderr: str, elapsed: float):
        self.cmd, self.rc, self.stdout, self.stderr, self.elapsed = cmd, rc, stdout, stderr, elapsed

    @property
    def json(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else None

    def __repr__(self) -> str:
        return (f"<aws exit {self.rc} after {self.elapsed:.1f}s: {shlex.join(self.cmd[5:])}\n"
                f"stdout: {self.stdout[-1500:]}\nstderr: {self.stderr[-1500:]}>")


_LIVE_SERVERS: set[LaminaServer] = set()


@atexit.register
def _kill_leftover_servers() -> None:
    for srv in list(_LIVE_SERVERS):
        srv._kill_group()
        srv._cleanup_after_exit()


# --------------------------------------------------------------------------------------------
# Per-module server registry (setUpModule / tearDownModule)
# --------------------------------------------------------------------------------------------

_SERVERS: dict[str, LaminaServer] = {}


def start_module_server(module_name: str, extra_args: Iterable[str] = ()) -> LaminaServer:
    """Starts the module's server; ``extra_args`` are server options (appended after LAMINA_SERVER_CMD)."""
    label = module_name.rsplit(".", 1)[-1].replace("test_", "")
    srv = LaminaServer(label, extra_args)
    srv.start()
    _SERVERS[module_name] = srv
    return srv


def stop_module_server(module_name: str) -> None:
    srv = _SERVERS.pop(module_name, None)
    if srv is not None:
        srv.stop()


def server_for(module_name: str) -> LaminaServer | None:
    return _SERVERS.get(module_name)


# --------------------------------------------------------------------------------------------
# Base test case
# --------------------------------------------------------------------------------------------

_NAME_SAFE = re.compile(r"[^a-zA-Z0-9-_]+")


class LaminaTestCase(unittest.TestCase):
    """Base class: server access, unique names, AWS error assertions, server log on failure."""

    maxDiff = 4000

    @property
    def server(self) -> LaminaServer:
        srv = server_for(type(self).__module__)
        if srv is None:
            self.fail(f"no Lamina server for module {type(self).__module__} (setUpModule did not run?)")
        return srv

    @property
    def lam(self):
        return self.server.client()

    def run(self, result=None):
        if result is None:
            return super().run(result)
        srv = getattr(type(self), "_own_server", None) or server_for(type(self).__module__)
        mark = srv.mark() if srv else 0
        n_fail, n_err = len(result.failures), len(result.errors)
        out = super().run(result)
        if srv is not None and (len(result.failures) > n_fail or len(result.errors) > n_err):
            log = srv.output_since(mark)
            if srv.proc is not None and srv.proc.poll() is not None:
                log += f"\n!!! the server process has exited (status {srv.proc.returncode})"
            note = f"\n---- server output during this test ({srv.url}) ----\n{log}\n---- end ----\n"
            for lst, start in ((result.failures, n_fail), (result.errors, n_err)):
                for i in range(start, len(lst)):
                    test, tb = lst[i]
                    lst[i] = (test, tb + note)
        return out

    # ---- names ------------------------------------------------------------------------------
    def fn_name(self, suffix: str = "") -> str:
        """A function name unique to this test (and call), ≤ 64 chars, valid for Lambda."""
        base = f"{type(self).__name__}-{self._testMethodName}".replace("test_", "")
        base = _NAME_SAFE.sub("-", base)
        tag = uuid.uuid4().hex[:6]
        suffix = _NAME_SAFE.sub("-", suffix)
        room = 64 - len(tag) - 1 - (len(suffix) + 1 if suffix else 0)
        parts = [base[:room]] + ([suffix] if suffix else []) + [tag]
        return "-".join(parts)

    # ---- function helpers -------------------------------------------------------------------
    def create_function(self, zip_bytes: bytes, runtime: str = "python3.12",
                        handler: str = "app.handler", name: str | None = None,
                        wait: bool = True, cleanup: bool = True, **kwargs) -> dict:
        name = name or self.fn_name()
        resp = self.lam.create_function(FunctionName=name, Runtime=runtime, Role=ROLE,
                                        Handler=handler, Code={"ZipFile": zip_bytes}, **kwargs)
        if cleanup:
            self.addCleanup(self._delete_quietly, name)
        if wait:
            self.wait_active(name)
        return resp

    def _delete_quietly(self, name: str) -> None:
        try:
            self.lam.delete_function(FunctionName=name)
        except Exception:  # noqa: BLE001 - best-effort cleanup; delete has its own tests
            pass

    def wait_active(self, name: str, timeout: float = 60) -> dict:
        """Polls GetFunctionConfiguration until State=Active and LastUpdateStatus is not InProgress."""
        deadline = time.monotonic() + timeout
        while True:
            cfg = self.lam.get_function_configuration(FunctionName=name)
            if cfg.get("State", "Active") == "Active" and cfg.get("LastUpdateStatus") != "InProgress":
                return cfg
            if cfg.get("State") == "Failed" or cfg.get("LastUpdateStatus") == "Failed":
                self.fail(f"function {name} failed to become active: {cfg}")
            if time.monotonic() > deadline:
                self.fail(f"function {name} not Active/Successful within {timeout} s: {cfg}")
            time.sleep(0.05)

    wait_updated = wait_active

    def invoke(self, name: str, event: Any = None, **kwargs) -> tuple[dict, bytes, Any]:
        """Invokes and returns (response, payload bytes, payload parsed as JSON or None)."""
        if event is not None and "Payload" not in kwargs:
            kwargs["Payload"] = json.dumps(event).encode("utf-8")
        resp = self.lam.invoke(FunctionName=name, **kwargs)
        body = resp["Payload"].read() if "Payload" in resp else b""
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        return resp, body, parsed

    def invoke_ok(self, name: str, event: Any = None, **kwargs) -> tuple[dict, Any]:
        resp, body, parsed = self.invoke(name, event, **kwargs)
        self.assertEqual(resp["StatusCode"], 200, body[:2000])
        self.assertNotIn("FunctionError", resp,
                         f"unexpected function error: {body[:2000]!r}")
        return resp, parsed

    # ---- assertions -------------------------------------------------------------------------
    def assertAwsError(self, fn: Callable[[], Any], status: int, codes: str | Iterable[str],
                       message_contains: str | None = None) -> botocore.exceptions.ClientError:
        """Calls fn (a boto3 call) and asserts it fails with the given HTTP status and error code."""
        codes = {codes} if isinstance(codes, str) else set(codes)
        try:
            result = fn()
        except botocore.exceptions.ClientError as e:
            err = e.response.get("Error", {})
            meta = e.response.get("ResponseMetadata", {})
            headers = {k.lower(): v for k, v in meta.get("HTTPHeaders", {}).items()}
            detail = f"error={err} status={meta.get('HTTPStatusCode')} headers={headers}"
            self.assertEqual(meta.get("HTTPStatusCode"), status, detail)
            self.assertIn(err.get("Code"), codes, detail)
            self.assertTrue(headers.get("x-amzn-requestid"), f"missing x-amzn-RequestId: {detail}")
            self.assertTrue(headers.get("x-amzn-errortype"), f"missing x-amzn-ErrorType: {detail}")
            if message_contains is not None:
                self.assertIn(message_contains, err.get("Message", ""), detail)
            return e
        self.fail(f"expected {sorted(codes)} (HTTP {status}), but the call succeeded: {result!r}"[:3000])

    def assertRawError(self, resp: RawResponse, status: int | Iterable[int],
                       codes: str | Iterable[str] | None = None) -> None:
        """An AWS-shaped error: expected status, x-amzn-ErrorType and x-amzn-RequestId headers."""
        statuses = {status} if isinstance(status, int) else set(status)
        self.assertNotEqual(resp.status, 500, f"server error: {resp!r}")
        self.assertIn(resp.status, statuses, repr(resp))
        self.assertTrue(resp.request_id, f"missing x-amzn-RequestId header: {resp!r}")
        self.assertTrue(resp.error_type, f"missing x-amzn-ErrorType header: {resp!r}")
        if codes is not None:
            codes = {codes} if isinstance(codes, str) else set(codes)
            self.assertIn(resp.error_type, codes, repr(resp))

    def small_file_system(self, label: str, size_mb: int = 64) -> Path:
        """A tmpfs of `size_mb` MB for this test alone (a disk that fills), unmounted and removed after it; the test is
        skipped where mounting is not possible (not root)."""
        if os.geteuid() != 0:
            self.skipTest("mounting a small tmpfs needs root")
        mount = Path(tempfile.mkdtemp(prefix=f"lamina-it-{label}-"))
        self.addCleanup(shutil.rmtree, mount, True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mount)], check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", str(mount)])
        return mount

    def assertFunctionAbsent(self, name: str) -> None:
        """Nothing was created: the name is not listed (works for names that can't be a path)."""
        self.assertNotIn(name, self.list_function_names())

    def list_function_names(self) -> list[str]:
        names, marker = [], None
        for _ in range(1000):
            kw = {"Marker": marker} if marker else {}
            page = self.lam.list_functions(**kw)
            names += [f["FunctionName"] for f in page.get("Functions", [])]
            marker = page.get("NextMarker")
            if not marker:
                return names
        self.fail("ListFunctions pagination did not terminate")


def decode_log_result(resp: dict) -> str:
    value = resp.get("LogResult")
    if value is None:
        raise AssertionError(f"no LogResult in response headers: {resp.get('ResponseMetadata')}")
    return base64.b64decode(value).decode("utf-8", "replace")


def report_line_re(request_id: str, memory_mb: int = 128, cold: bool | None = None) -> re.Pattern:
    """REPORT line as AWS writes it: TAB-separated, trailing TAB, Init Duration last on cold start."""
    init = {True: r"Init Duration: \d+\.\d{2} ms\t", False: "", None: r"(?:Init Duration: \d+\.\d{2} ms\t)?"}[cold]
    return re.compile(
        rf"^REPORT RequestId: {re.escape(request_id)}\tDuration: (?P<duration>\d+\.\d{{2}}) ms\t"
        rf"Billed Duration: (?P<billed>\d+) ms\tMemory Size: {memory_mb} MB\t"
        rf"Max Memory Used: (?P<maxmem>\d+) MB\t{init}$", re.M)

class CliTestCase(LaminaTestCase):
    """Base for tests that drive an AWS CLI (set CLI to its executable); skips when that CLI is not installed."""
    CLI: str | None = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls.CLI is None or shutil.which(cls.CLI) is None:
            raise unittest.SkipTest(f"AWS CLI {cls.CLI!r} not installed")
        cls.tmp = Path(tempfile.mkdtemp(prefix="lamina-it-cli-"))

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "tmp", None):
            shutil.rmtree(cls.tmp, ignore_errors=True)
        super().tearDownClass()

    def aws(self, *args: str, ok: bool = True) -> "CliResult":
        r = self.server.aws_cli(*args, cli=self.CLI)
        if ok:
            self.assertEqual(r.rc, 0, repr(r))
        return r


class OwnServerTestCase(LaminaTestCase):
    """A test class with a server of its own, started with `server_args()` (SERVER_ARGS by default) instead of the
    module's. Skipped against an external endpoint, which cannot be started with options."""

    SERVER_ARGS: list[str] = []
    _own_server: LaminaServer | None = None

    @classmethod
    def server_args(cls) -> list[str]:
        return list(cls.SERVER_ARGS)

    @classmethod
    def setUpClass(cls):
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            raise unittest.SkipTest(f"needs a server started with {' '.join(cls.server_args())}")
        cls._own_server = LaminaServer(cls.__name__, cls.server_args()).start()

    @classmethod
    def tearDownClass(cls):
        if cls._own_server is not None:
            cls._own_server.stop()

    @property
    def server(self) -> LaminaServer:
        return type(self)._own_server
