"""Hostile function behaviour (RELIABILITY.md §4.2): what the caller sees, and that the platform recovers.

Each test makes a function misbehave (loops, fork bombs, memory and /tmp exhaustion, writes outside /tmp,
snooping on other functions, network probes, output floods, Runtime API misuse, crashes, daemons), asserts the
answer AWS Lambda gives, and then checks that the same function answers its next invoke. Processes a test leaves
behind carry a unique marker in their argv, so the host's /proc tells whether teardown really killed them.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import unittest
import urllib.parse
import uuid
from pathlib import Path
from typing import Any, Callable

import botocore.exceptions
import requests

import lamina_harness as h
from hostile_functions import (EXIT_BOOTSTRAP, HANG_BOOTSTRAP, RAPI_BOOTSTRAP, bootstrap_zip,
                               hostile_py_zip)

MODULE = __name__
MB = 1024 * 1024
PIDS_LIMIT = 1024  # Lambda's per-environment process/thread limit


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


# ---- host-side observation ---------------------------------------------------------------------

def marker_processes(marker: str) -> list[str]:
    """Live (non-zombie) processes on this machine whose argv mentions ``marker``."""
    needle = marker.encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            if needle not in cmdline:
                continue
            stat = Path(f"/proc/{entry}/stat").read_text()
            if stat[stat.rindex(")") + 2:].split()[0] == "Z":
                continue
        except (OSError, ValueError):
            continue
        text = cmdline.replace(b"\0", b" ").decode("utf-8", "replace")[:160]
        found.append(f"pid {entry}: {text}")
    return found


def rss_kb(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def host_ipv4_addresses() -> list[str]:
    """This machine's own non-loopback IPv4 addresses (from /proc/net/fib_trie's local host routes)."""
    addresses: set[str] = set()
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        return []
    for i, line in enumerate(lines):
        if "/32 host LOCAL" in line and i > 0:
            ip = lines[i - 1].split()[-1]
            if not ip.startswith("127."):
                addresses.add(ip)
    return sorted(addresses)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_supports_function_network() -> bool:
    """Whether this server has the outbound-network setting (its usage names --function-network)."""
    if os.environ.get("LAMINA_SERVER_CMD", "").strip():
        return True  # unknown server command: assume it does, so a missing network fails rather than skips
    p = subprocess.run([str(h.REPO_ROOT / "lamina"), "help"], cwd=h.REPO_ROOT, capture_output=True,
                       timeout=300, stdin=subprocess.DEVNULL)
    return b"--function-network" in p.stdout + p.stderr


class TestNetns:
    """A network namespace made by the test, joined to the host by a veth pair, with a TCP listener inside.

    It stands for "the outside world" in outbound-network tests, without sending anything off this machine."""

    def __init__(self, case: unittest.TestCase):
        tag = uuid.uuid4().hex[:6]
        self.ns = f"lamina-it-{tag}"
        host_if, peer_if = f"lit{tag}h", f"lit{tag}p"
        octet = int(tag[:2], 16)
        self.host_address, self.address = f"10.254.{octet}.1", f"10.254.{octet}.2"
        self.port = 18000 + int(tag[2:4], 16)
        self._listener: subprocess.Popen | None = None

        def ip(*args: str) -> None:
            p = subprocess.run(["ip", *args], capture_output=True, timeout=20)
            if p.returncode != 0:
                raise AssertionError(f"ip {' '.join(args)}: {p.stderr.decode(errors='replace')}")

        ip("netns", "add", self.ns)
        case.addCleanup(lambda: subprocess.run(["ip", "netns", "del", self.ns], capture_output=True))
        ip("link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        case.addCleanup(lambda: subprocess.run(["ip", "link", "del", host_if], capture_output=True))
        ip("link", "set", peer_if, "netns", self.ns)
        ip("addr", "add", f"{self.host_address}/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("netns", "exec", self.ns, "ip", "addr", "add", f"{self.address}/30", "dev", peer_if)
        ip("netns", "exec", self.ns, "ip", "link", "set", peer_if, "up")
        ip("netns", "exec", self.ns, "ip", "link", "set", "lo", "up")
        code = ("import socket\n"
                "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                f"s.bind(('{self.address}', {self.port})); s.listen(16)\n"
                "while True:\n    c, _ = s.accept(); c.close()\n")
        self._listener = subprocess.Popen(["ip", "netns", "exec", self.ns, "/usr/bin/python3", "-c", code],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL)
        case.addCleanup(self._stop)
        deadline = time.monotonic() + 10
        while True:  # the listener is up when the host reaches it over the veth pair
            with socket.socket() as s:
                s.settimeout(1)
                if s.connect_ex((self.address, self.port)) == 0:
                    break
            if time.monotonic() > deadline or self._listener.poll() is not None:
                raise AssertionError(f"the test namespace's listener on {self.address}:{self.port} never came up")
            time.sleep(0.05)

    def _stop(self):
        if self._listener is not None and self._listener.poll() is None:
            self._listener.kill()
            self._listener.wait(10)


def root_only_host_file() -> str | None:
    """A host file only root may read, among the paths sandboxes see read-only (/usr, /etc/ssl, ...)."""
    for top in ("/etc/ssl/private", "/etc/ssl", "/usr/share/polkit-1", "/etc/ca-certificates"):
        for dirpath, _, filenames in os.walk(top):
            for fn in filenames:
                path = os.path.join(dirpath, fn)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if st.st_uid == 0 and not st.st_mode & 0o004 and st.st_mode & 0o400:
                    return path
    return None


class ProcessSampler:
    """Counts marker processes in the background (while a blocking invoke runs) and keeps the maximum."""

    def __init__(self, marker: str):
        self.marker = marker
        self.max_seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.max_seen = max(self.max_seen, len(marker_processes(self.marker)))
            self._stop.wait(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


# ---- base ------------------------------------------------------------------------------------------

class _HostileBase(h.LaminaTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._bystander = None

    @classmethod
    def tearDownClass(cls):
        srv = h.server_for(MODULE)
        if cls._bystander and srv is not None:
            try:
                srv.client().delete_function(FunctionName=cls._bystander)
            except Exception:  # noqa: BLE001 - best effort
                pass
        super().tearDownClass()

    def marker(self) -> str:
        return f"lmk{uuid.uuid4().hex[:12]}"

    def bystander(self) -> str:
        """Another function, to show the platform still serves others."""
        cls = type(self)
        if cls._bystander is None:
            name = self.fn_name("bystander")
            self.create_function(hostile_py_zip(), name=name, cleanup=False)
            cls._bystander = name
        return cls._bystander

    def invoke_hostile(self, name: str, event: Any, **kwargs) -> tuple[dict, Any, float]:
        """Invokes; a platform error (HTTP 4xx/5xx, dropped connection) fails the test with its details."""
        t0 = time.monotonic()
        try:
            resp, body, out = self.invoke(name, event, **kwargs)
        except botocore.exceptions.ClientError as e:
            self.fail(f"the platform failed the invoke instead of reporting a function error: "
                      f"HTTP {e.response['ResponseMetadata'].get('HTTPStatusCode')} {e.response.get('Error')} "
                      f"after {time.monotonic() - t0:.1f} s")
        except (botocore.exceptions.HTTPClientError, botocore.exceptions.ReadTimeoutError) as e:
            self.fail(f"the invoke connection failed after {time.monotonic() - t0:.1f} s: {e!r}")
        self.assertEqual(resp["StatusCode"], 200, body[:2000])
        return resp, out, time.monotonic() - t0

    def assertFunctionError(self, resp: dict, out: Any, error_types: str | tuple[str, ...]) -> dict:
        error_types = (error_types,) if isinstance(error_types, str) else error_types
        self.assertEqual(resp.get("FunctionError"), "Unhandled",
                         f"expected X-Amz-Function-Error: Unhandled, got {resp.get('FunctionError')!r}: {out!r}")
        self.assertIsInstance(out, dict, f"error payload is not a JSON object: {out!r}")
        self.assertIn(out.get("errorType"), error_types, out)
        self.assertIsInstance(out.get("errorMessage"), str, out)
        return out

    def assertHealthy(self):
        r = requests.get(f"{self.server.url}/health", timeout=10)
        self.assertEqual(r.status_code, 200, f"GET /health: {r.status_code} {r.text[:300]}")
        _, out = self.invoke_ok(self.bystander(), {"op": "echo"})
        self.assertEqual(out["op"], "echo")

    def wait_until(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """Polls an asynchronous effect until it shows, or fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                self.fail(f"{what}: not within {timeout:.0f} s")
            time.sleep(0.05)

    def assertNoMarkerProcesses(self, marker: str, timeout: float, when: str):
        deadline = time.monotonic() + timeout
        left = marker_processes(marker)
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = marker_processes(marker)
        if left:
            self.fail(f"{len(left)} process(es) with marker {marker} still alive {timeout:.0f} s after {when}:\n  "
                      + "\n  ".join(left[:10]))

    def tail(self, resp: dict) -> str:
        return h.decode_log_result(resp)


# ---- timeouts ----------------------------------------------------------------------------------------

class TimeoutTests(_HostileBase):

    @h.slow
    def test_infinite_loop_is_killed_at_timeout_then_next_invoke_is_cold(self):
        name = self.fn_name()
        self.create_function(hostile_py_zip(), name=name, Timeout=2)
        _, warm = self.invoke_ok(name, {"op": "echo"})  # the cold start is not part of the measured call
        self.assertEqual(warm["count"], 1)
        marker = self.marker()
        resp, out, elapsed = self.invoke_hostile(name, {"op": "spin", "marker": marker})
        rid = resp["ResponseMetadata"]["RequestId"]
        self.assertGreaterEqual(elapsed, 1.9, f"answered {elapsed:.2f} s into a 2 s timeout: {out}")
        self.assertLess(elapsed, 4.0, f"a 2 s timeout was answered after {elapsed:.2f} s")
        self.assertFunctionError(resp, out, "Sandbox.Timedout")
        self.assertIn("Task timed out after 2.00 seconds", out["errorMessage"])
        self.assertIn(rid, out["errorMessage"], "Lambda's message names the request: RequestId: <id> Error: ...")
        # the whole process tree is torn down, including the daemon the handler left before looping
        self.assertNoMarkerProcesses(marker, 10, "the timeout")
        _, after = self.invoke_ok(name, {"op": "echo"})
        self.assertEqual(after["count"], 1, "after a timeout the environment must be reset (cold start)")

    def test_sleep_just_under_timeout_succeeds(self):
        name = self.fn_name()
        self.create_function(hostile_py_zip(), name=name, Timeout=2)
        self.invoke_ok(name, {"op": "echo"})
        _, out = self.invoke_ok(name, {"op": "sleep", "seconds": 1.5})
        self.assertEqual(out["slept"], 1.5)
        _, out = self.invoke_ok(name, {"op": "echo"})
        self.assertEqual(out["count"], 3, "a successful slow invoke keeps the environment warm")


# ---- processes, memory, disk -------------------------------------------------------------------------

class ResourceTests(_HostileBase):

    def test_fork_bomb_python_is_stopped_by_pids_limit(self):
        name = self.fn_name()
        self.create_function(hostile_py_zip(), name=name, MemorySize=512, Timeout=30)
        marker = self.marker()
        self.addCleanup(self._delete_quietly, name)
        resp, out, elapsed = self.invoke_hostile(name, {"op": "forkbomb", "marker": marker}, LogType="Tail")
        # fork fails with EAGAIN at pids.max; the handler lets the BlockingIOError escape: a function error
        self.assertFunctionError(resp, out, "BlockingIOError")
        self.assertIn("Resource temporarily unavailable", out["errorMessage"])
        log = self.tail(resp)
        self.assertRegex(log, r"forkbomb: forked \d+ processes, then fork failed: EAGAIN", log[-1500:])
        alive = len(marker_processes(marker))
        self.assertLessEqual(alive, PIDS_LIMIT, "more processes than the pids limit")
        self.assertGreater(alive, PIDS_LIMIT // 2, f"only {alive} sleepers alive: was the limit {PIDS_LIMIT}?")
        self.assertHealthy()
        _, after = self.invoke_ok(name, {"op": "echo"})  # the full environment still answers
        self.assertEqual(after["op"], "echo")
        self.lam.delete_function(FunctionName=name)
        self.assertNoMarkerProcesses(marker, 15, "DeleteFunction")

    @h.slow
    def test_fork_bomb_bash_bootstrap_is_contained(self):
        name = self.fn_name()
        self.create_function(bootstrap_zip(RAPI_BOOTSTRAP), name=name, runtime="provided.al2023",
                             handler="x", MemorySize=1024, Timeout=3)
        for round_ in (1, 2):
            with self.subTest(round=round_):
                # fresh functions, cold-started right after the bomb, while its environment is torn down
                others = [self.fn_name(f"other{i}") for i in range(4)]
                for other in others:
                    self.create_function(hostile_py_zip(), name=other)
                self.invoke_ok(name, {"action": "echo"})
                marker = self.marker()
                with ProcessSampler(marker) as sampler:
                    resp, out, elapsed = self.invoke_hostile(name, {"action": "bomb", "marker": marker})
                hurt = []
                for other in others:
                    try:
                        r, _, o = self.invoke(other, {"op": "echo"})
                        if r.get("FunctionError"):
                            hurt.append(f"{other}: function error {o}")
                    except botocore.exceptions.ClientError as e:
                        hurt.append(f"{other}: HTTP {e.response['ResponseMetadata'].get('HTTPStatusCode')} "
                                    f"{e.response.get('Error')}")
                # on Lambda the bomb burns the invocation's time: a timeout (or an OOM/exit if memory goes first)
                self.assertFunctionError(resp, out, ("Sandbox.Timedout", "Runtime.OutOfMemory", "Runtime.ExitError"))
                self.assertLess(elapsed, 3 + 3, f"answered after {elapsed:.1f} s with a 3 s timeout")
                self.assertLessEqual(sampler.max_seen, PIDS_LIMIT, "the bomb grew past the pids limit")
                self.assertFalse(hurt, "functions cold-started right after the fork bomb's invocation ended were "
                                       "hurt:\n  " + "\n  ".join(hurt))
                self.assertNoMarkerProcesses(marker, 10, "the bomb's invocation ended")
                self.assertHealthy()
                _, after = self.invoke_ok(name, {"action": "echo"})
                self.assertEqual(after["action"], "echo")

    def test_memory_hog_is_out_of_memory_then_recovers(self):
        name = self.fn_name()
        self.create_function(hostile_py_zip(), name=name, MemorySize=128, Timeout=15)
        resp, out, elapsed = self.invoke_hostile(name, {"op": "hog", "mb": 512}, LogType="Tail")
        self.assertFunctionError(resp, out, ("Runtime.OutOfMemory", "Runtime.ExitError"))
        if out["errorType"] == "Runtime.ExitError":
            self.assertIn("signal: killed", out["errorMessage"], out)
        self.assertLess(elapsed, 10, "an OOM kill should be answered promptly, not at the timeout")
        counts = [self.invoke_ok(name, {"op": "echo"})[1]["count"] for _ in range(4)]
        self.assertEqual(counts, [1, 2, 3, 4], "after an OOM kill: one cold start, then the same warm environment")
        self.assertHealthy()

    def _fill_tmp(self, memory_mb: int):
        name = self.fn_name(f"m{memory_mb}")
        self.create_function(hostile_py_zip(), name=name, MemorySize=memory_mb, Timeout=60,
                             EphemeralStorage={"Size": 512})
        marker = self.marker()
        watched = {p: shutil.disk_usage(p).free for p in {"/tmp", str(self.server.data_dir or "/tmp")}}
        resp, out, _ = self.invoke_hostile(name, {"op": "fill_tmp", "marker": marker})
        self.assertNotIn("FunctionError", resp,
                         f"filling a 512 MB /tmp with MemorySize={memory_mb} ended the invocation "
                         f"instead of ENOSPC: {out}")
        self.assertFalse(out["ok"], f"/tmp took {out.get('written', 0) // MB} MB without ENOSPC: {out}")
        self.assertEqual(out["errname"], "ENOSPC", out)
        self.assertGreaterEqual(out["written"], 500 * MB, f"/tmp smaller than EphemeralStorage 512 MB: {out}")
        self.assertLessEqual(out["written"], 512 * MB, f"/tmp larger than EphemeralStorage: {out}")
        for path, before in watched.items():
            after = shutil.disk_usage(path).free
            self.assertGreater(after, before - 100 * MB,
                               f"the host's {path} lost {(before - after) // MB} MB while the function filled /tmp")
        # another function's /tmp is its own, empty
        _, other = self.invoke_ok(self.bystander(), {"op": "listdir", "path": "/tmp"})
        self.assertEqual(other, {"ok": True, "entries": []}, "another function sees files in /tmp")
        # the filled environment still answers, and its /tmp persists as on Lambda
        _, after = self.invoke_ok(name, {"op": "listdir", "path": "/tmp"})
        self.assertIn(f"fill-{marker}", after.get("entries", []), after)

    def test_tmp_fill_is_enospc_with_ample_memory(self):
        self._fill_tmp(1024)

    def test_tmp_fill_with_128_mb_memory_is_bounded_by_memory(self):
        # Lamina's documented choice (RELIABILITY.md §4.2 allows "count it into memory"): /tmp is a tmpfs sized by
        # EphemeralStorage whose pages count against MemorySize. A 128 MB function filling its 512 MB /tmp is
        # stopped by its memory limit (Runtime.OutOfMemory) — never the host's disk — and the next invoke works.
        # Lambda itself keeps the two limits apart; docs/COMPATIBILITY.md says where Lamina differs.
        name = self.fn_name("m128")
        self.create_function(hostile_py_zip(), name=name, MemorySize=128, Timeout=60, EphemeralStorage={"Size": 512})
        watched = {p: shutil.disk_usage(p).free for p in {"/tmp", str(self.server.data_dir or "/tmp")}}
        resp, out, _ = self.invoke_hostile(name, {"op": "fill_tmp", "marker": self.marker()})
        if "FunctionError" in resp:
            self.assertEqual(out.get("errorType"), "Runtime.OutOfMemory", out)
        else:
            self.assertEqual(out.get("errname"), "ENOSPC", out)
        for path, before in watched.items():
            after = shutil.disk_usage(path).free
            self.assertGreater(after, before - 100 * MB,
                               f"the host's {path} lost {(before - after) // MB} MB while the function filled /tmp")
        _, after = self.invoke_ok(name, {"op": "echo"})
        self.assertEqual(after["op"], "echo")


# ---- filesystem, other functions, network --------------------------------------------------------------

class IsolationTests(_HostileBase):

    def test_writes_outside_tmp_fail(self):
        name = self.fn_name()
        self.create_function(hostile_py_zip(), name=name)
        leaf = f"lamina-it-evil-{uuid.uuid4().hex[:8]}"
        paths = [f"/var/task/{leaf}", "/var/task/app.py", f"/{leaf}", f"/etc/{leaf}", "/etc/passwd",
                 f"/opt/{leaf}", f"/var/runtime/{leaf}", f"/usr/{leaf}", f"/usr/bin/{leaf}"]
        for p in paths:
            if p.endswith(leaf):  # were the sandbox missing, these would land on this machine
                self.addCleanup(lambda p=p: os.path.exists(p) and os.remove(p))
        _, out = self.invoke_ok(name, {"op": "write", "paths": paths})
        for p in paths:
            with self.subTest(path=p):
                self.assertFalse(out[p]["ok"], f"{p} is writable from a function")
                self.assertIn(out[p]["errname"], ("EROFS", "EACCES", "EPERM"), out[p])
        _, out = self.invoke_ok(name, {"op": "write", "paths": [f"/tmp/{leaf}"]})
        self.assertTrue(out[f"/tmp/{leaf}"]["ok"], out)
        _, after = self.invoke_ok(name, {"op": "echo"})
        self.assertEqual(after["op"], "echo")

    def test_kernel_settings_are_not_writable(self):
        # Only opened for writing, never written: were the check missing, nothing changes on this machine.
        name = self.fn_name()
        self.create_function(hostile_py_zip(), name=name)
        host_global = ["/proc/sys/kernel/core_pattern", "/proc/sys/kernel/panic", "/proc/sys/vm/drop_caches",
                       "/proc/sys/vm/overcommit_memory", "/proc/sys/fs/file-max", "/proc/sys/kernel/modprobe"]
        _, out = self.invoke_ok(name, {"op": "open_for_write", "paths": host_global + ["/proc/sysrq-trigger"]})
        writable = [p for p in host_global if out[p]["ok"]]
        self.assertEqual(writable, [], "host-wide kernel settings can be opened for writing from a function "
                                       "(core_pattern alone runs a program as root on the host)")
        for p in host_global:
            with self.subTest(path=p):
                # a setting this kernel does not have (modprobe without module support) is simply absent
                allowed = ("EROFS", "EACCES", "EPERM") + (() if os.path.exists(p) else ("ENOENT",))
                self.assertIn(out[p]["errname"], allowed, out[p])
        with self.subTest(path="/proc/sysrq-trigger"):
            self.assertFalse(out["/proc/sysrq-trigger"]["ok"], out)
        _, after = self.invoke_ok(name, {"op": "echo"})
        self.assertEqual(after["op"], "echo")

    def test_sandbox_user_is_not_root_on_the_host(self):
        name = self.fn_name()
        self.create_function(hostile_py_zip(), name=name)
        _, out = self.invoke_ok(name, {"op": "read", "path": "/proc/self/uid_map"})
        self.assertTrue(out["ok"], out)
        uid_map = [tuple(int(x) for x in line.split()) for line in out["data"].splitlines() if line.strip()]
        _, status = self.invoke_ok(name, {"op": "read", "path": "/proc/self/status"})
        fields = {line.split(":")[0]: line.split(":", 1)[1].split() for line in status["data"].splitlines() if ":" in line}
        with self.subTest(check="uid_map"):
            # every uid of the function's process (real, effective, saved, fs) is an unprivileged uid on the host
            for uid in {int(u) for u in fields["Uid"]}:
                host = [outside + (uid - inside) for inside, outside, count in uid_map if inside <= uid < inside + count]
                self.assertTrue(host and host[0] != 0,
                                f"the function's uid {uid} is root on the host (uid_map: {out['data']!r})")
        with self.subTest(check="no capabilities, no new privileges"):
            self.assertEqual(int(fields["CapEff"][0], 16), 0, status["data"])
            self.assertEqual(int(fields["CapPrm"][0], 16), 0, status["data"])
            self.assertEqual(fields["NoNewPrivs"], ["1"], status["data"])
        with self.subTest(check="root-only host file"):
            secret = root_only_host_file()
            if secret is None:
                self.skipTest("no root-only file under the sandbox's read-only host paths on this machine")
            _, out = self.invoke_ok(name, {"op": "read", "path": secret})
            self.assertFalse(out["ok"], f"a function reads {secret}, which only root may read on the host")
            self.assertIn(out["errname"], ("EACCES", "ENOENT", "EPERM"), out)

    def _secret_function(self) -> tuple[str, str, str]:
        """Function A with env SECRET and a secret.txt, warm (its runtime is running)."""
        secret_env, secret_file = f"envsecret{uuid.uuid4().hex}", f"filesecret{uuid.uuid4().hex}"
        name = self.fn_name("a")
        self.create_function(hostile_py_zip({f"secret-{secret_file[-8:]}.txt": secret_file}), name=name,
                             Environment={"Variables": {"SECRET": secret_env}})
        self.invoke_ok(name, {"op": "echo"})
        return name, secret_env, secret_file

    def test_cannot_read_another_functions_code_or_environment(self):
        a, secret_env, secret_file = self._secret_function()
        filename = f"secret-{secret_file[-8:]}"
        b = self.fn_name("b")
        self.create_function(hostile_py_zip(), name=b)
        _, out = self.invoke_ok(b, {"op": "snoop", "secret": secret_env, "filename": filename})
        self.assertEqual(out["found_in_proc"], [], "function A's environment is readable from function B")
        self.assertFalse(out["own_env_has_secret"])
        self.assertEqual(out["files_named_like_secret"], [], "function A's code is visible to function B")
        pids = sorted(out["proc"], key=int)
        self.assertLessEqual(len(pids), 4, f"/proc shows more than the sandbox's own processes: "
                                           f"{json.dumps(out['proc'], indent=1)[:3000]}")
        for pid, info in out["proc"].items():
            for needle in ("Lamina.Server.dll", a):  # the server, or function A's runtime
                self.assertNotIn(needle, info.get("cmdline", "") + info.get("environ", ""),
                                 f"pid {pid} of another process tree is visible: {info}")
        # guess A's code by its host path (the test knows it; a function could guess it)
        if self.server.data_dir is not None:
            host_paths = [os.path.join(dp, fn) for dp, _, fns in os.walk(self.server.data_dir)
                          for fn in fns if fn.startswith(filename)]
            self.assertTrue(host_paths, "A's secret file not found in the server's data dir (layout changed?)")
            for path in host_paths[:3] + [str(self.server.data_dir)]:
                with self.subTest(host_path=path):
                    op = "listdir" if path == str(self.server.data_dir) else "read"
                    _, r = self.invoke_ok(b, {"op": op, "path": path})
                    self.assertFalse(r["ok"], f"function B reads {path} on the host: {r}")
        _, r = self.invoke_ok(a, {"op": "read", "path": f"/var/task/{filename}.txt"})
        self.assertEqual(r, {"ok": True, "data": secret_file}, "A reads its own file (positive control)")

    def test_host_data_dir_path_is_not_visible(self):
        # bwrap's argv is /proc/1/cmdline and a bind mount's root field in mountinfo is its host path: Lamina passes
        # bwrap's options through a pipe (--args) and shows the code as an overlay, whose root is "/".
        if self.server.data_dir is None:
            self.skipTest("external server: data dir unknown")
        name = self.fn_name()
        self.create_function(hostile_py_zip(), name=name)
        _, out = self.invoke_ok(name, {"op": "snoop", "secret": "-", "filename": "-nothing-"})
        data_dir = str(self.server.data_dir)
        # The temp dir's unique name also catches the path where it shows relative to a filesystem's root (a bind
        # mount's root field, when the data dir is on a filesystem of its own).
        needles = (data_dir, self.server.data_dir.parent.name)
        leaks = [f"/proc/{pid}/{key}: {info[key][:200]}" for pid, info in out["proc"].items()
                 for key in ("cmdline", "environ") if any(n in info.get(key, "") for n in needles)]
        leaks += [f"/proc/self/mountinfo: {line}" for line in out["mountinfo"].splitlines()
                  if any(n in line for n in needles)]
        self.assertFalse(leaks, f"the server's data dir {data_dir} is visible inside the sandbox:\n  "
                                + "\n  ".join(leaks))

    def test_network_off_only_loopback_no_server_no_metadata(self):
        # LAMINA_NETWORK=none: the function opts out of outbound network (servers without the setting have none)
        name = self.fn_name()
        self.create_function(hostile_py_zip(), name=name, Timeout=20,
                             Environment={"Variables": {"LAMINA_NETWORK": "none"}})
        server_port = urllib.parse.urlsplit(self.server.url).port
        # a listener of this test on every host address: the sandbox must not reach it on any of them
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", 0))
        listener.listen(8)
        self.addCleanup(listener.close)
        probe_port = listener.getsockname()[1]
        host_ips = host_ipv4_addresses()
        event = {"op": "net",
                 "local": [["127.0.0.1", server_port], ["localhost", server_port], ["127.0.0.1", probe_port]],
                 # probed only if the sandbox has nothing but lo (see the handler): never real traffic
                 "remote": [["169.254.169.254", 80]] + [[ip, probe_port] for ip in host_ips]
                           + [[ip, server_port] for ip in host_ips]}
        _, out = self.invoke_ok(name, event)
        self.assertEqual(out["interfaces"], ["lo"], f"a function with LAMINA_NETWORK=none has a network: {out}")
        for key, result in out.items():
            if isinstance(result, dict):
                with self.subTest(target=key):
                    self.assertNotIn("skipped", result, out)
                    self.assertFalse(result["connected"], f"the sandbox reached {key}: {out}")
        self.assertNotEqual(out["dns"], "resolved", "DNS resolves inside a sandbox without network")
        # no inbound path: a port the function listens on is not reachable from the host
        port = free_port()
        _, out = self.invoke_ok(name, {"op": "listen", "port": port})
        self.assertEqual(out, {"listening": port})
        with socket.socket() as s:
            s.settimeout(2)
            self.assertNotEqual(s.connect_ex(("127.0.0.1", port)), 0,
                                f"the host reached a port ({port}) a function listens on")
        _, after = self.invoke_ok(name, {"op": "echo"})
        self.assertEqual(after["count"], 3)

    def test_network_on_reaches_outside_but_not_the_host_loopback(self):
        # Outbound network is on by default (as on Lambda). The only target is a listener in a network namespace
        # this test makes itself (a veth pair): no traffic leaves this machine.
        if os.geteuid() != 0:
            self.skipTest("needs root to make a test network namespace")
        name = self.fn_name()
        self.create_function(hostile_py_zip(), name=name, Timeout=20)
        server_port = urllib.parse.urlsplit(self.server.url).port
        _, out = self.invoke_ok(name, {"op": "net", "local": [["127.0.0.1", server_port]]})
        if out["interfaces"] == ["lo"]:
            if not server_supports_function_network():
                self.skipTest("outbound network for functions cannot be enabled on this server yet "
                              "(no --function-network setting)")
            self.fail(f"outbound network is on by default, but the sandbox has only lo: {out}")
        self.assertFalse(out[f"127.0.0.1:{server_port}"]["connected"],
                         f"the sandbox reached the server's port on 127.0.0.1: {out}")
        peer = TestNetns(self)
        _, out = self.invoke_ok(name, {"op": "connect_outbound", "host": peer.address, "port": peer.port})
        self.assertTrue(out.get("connected"), f"no outbound connection to {peer.address}:{peer.port}: {out}")
        _, after = self.invoke_ok(name, {"op": "echo"})
        self.assertEqual(after["count"], 3, "the environment was replaced between invokes")

# ---- output --------------------------------------------------------------------------------------------

class OutputFloodTests(_HostileBase):

    def test_output_flood_is_bounded(self):
        if self.server.proc is None:
            self.skipTest("external server: its memory cannot be watched")
        pid = self.server.proc.pid
        name = self.fn_name()
        self.create_function(hostile_py_zip(), name=name, MemorySize=256, Timeout=30)
        self.invoke_ok(name, {"op": "echo"})
        before = rss_kb(pid)
        for newlines in (True, False):
            with self.subTest(newlines=newlines):
                resp, out, elapsed = self.invoke_hostile(name, {"op": "flood", "mb": 50, "newlines": newlines},
                                                         LogType="Tail")
                self.assertNotIn("FunctionError", resp, f"50 MB of output ended the invocation: {out}")
                self.assertGreaterEqual(out["bytes"], 50 * MB)
                self.assertLess(elapsed, 30)
                raw_tail = base64.b64decode(resp["LogResult"])
                self.assertLessEqual(len(raw_tail), 4096, "X-Amz-Log-Result is the last 4 KB")
                log = raw_tail.decode("utf-8", "replace")
                rid = resp["ResponseMetadata"]["RequestId"]
                # the handler's last line, unless the platform truncated the invocation's log (with a marker)
                self.assertTrue("flood done bytes=" in log or "truncated" in log, log[-600:])
                self.assertIn(f"END RequestId: {rid}", log)
                self.assertIn(f"REPORT RequestId: {rid}", log)
                now = rss_kb(pid)
                if os.environ.get("LAMINA_TEST_VERBOSE"):
                    print(f"\nserver memory before {before} kB, after 50 MB (newlines={newlines}) {now} kB, "
                          f"{elapsed:.2f} s", flush=True)
                grown_mb = (now["VmRSS"] - before["VmRSS"]) / 1024
                self.assertLess(grown_mb, 200, f"server RSS grew by {grown_mb:.0f} MB with 50 MB of function "
                                               f"output (before {before}, after {now} kB)")
        _, after = self.invoke_ok(name, {"op": "echo"})
        self.assertEqual(after["count"], 4)
        self.assertHealthy()


# ---- Runtime API misuse --------------------------------------------------------------------------------

class RuntimeApiMisuseTests(_HostileBase):

    def rapi_function(self, **kwargs) -> str:
        name = self.fn_name()
        kwargs.setdefault("Timeout", 10)
        self.create_function(bootstrap_zip(RAPI_BOOTSTRAP), name=name, runtime="provided.al2023",
                             handler="x", **kwargs)
        return name

    @h.slow
    def test_never_calls_next_is_cut_off_at_init(self):
        marker = self.marker()
        name = self.fn_name()
        self.create_function(bootstrap_zip(HANG_BOOTSTRAP), name=name, runtime="provided.al2023", handler="x",
                             Timeout=3, Environment={"Variables": {"MARKER": marker}})
        resp, out, elapsed = self.invoke_hostile(name, {"action": "echo"})
        # Lambda: Init is cut at 10 s, then retried once within the invocation under the function's timeout
        self.assertLess(elapsed, 10 + 3 + 2, f"a runtime that never calls /next held the caller {elapsed:.1f} s "
                                             "(Lambda: 10 s Init limit, one retry under the 3 s timeout)")
        self.assertFunctionError(resp, out, ("Sandbox.Timedout", "Runtime.InitError"))
        self.assertNoMarkerProcesses(marker, 10, "the init timeout")
        # the stuck environment holds nothing: fixed code runs at once
        self.lam.update_function_code(FunctionName=name, ZipFile=bootstrap_zip(RAPI_BOOTSTRAP))
        self.wait_updated(name)
        _, ok = self.invoke_ok(name, {"action": "echo"})
        self.assertEqual(ok["action"], "echo")

    def test_exits_before_next_is_exit_error(self):
        name = self.fn_name()
        self.create_function(bootstrap_zip(EXIT_BOOTSTRAP), name=name, runtime="provided.al2023", handler="x")
        for attempt in (1, 2):
            with self.subTest(attempt=attempt):
                resp, out, elapsed = self.invoke_hostile(name, {}, LogType="Tail")
                self.assertLess(elapsed, 5, "a runtime that exits at once must be answered at once")
                self.assertFunctionError(resp, out, "Runtime.ExitError")
                self.assertIn("exit status 1", out["errorMessage"])
                self.assertIn("bootstrap: exiting at once", self.tail(resp))
        self.lam.update_function_code(FunctionName=name, ZipFile=bootstrap_zip(RAPI_BOOTSTRAP))
        self.wait_updated(name)
        _, ok = self.invoke_ok(name, {"action": "echo"})
        self.assertEqual(ok["action"], "echo")

    def test_double_response_first_wins_second_is_400(self):
        name = self.rapi_function()
        _, out = self.invoke_ok(name, {"action": "double"})
        self.assertEqual(out["answer"], "first", out)
        _, echo = self.invoke_ok(name, {"action": "echo"})
        double = echo["state"].get("double")
        self.assertIsNotNone(double, f"the environment was reset after a double response: {echo}")
        self.assertEqual(double["first"]["status"], 202, double)
        self.assertEqual(double["first"]["body"], {"status": "OK"}, double)
        self.assertEqual(double["second"]["status"], 400, double)
        self.assertEqual(double["second"]["body"].get("errorType"), "InvalidRequestID", double)

    def test_response_for_another_request_id_is_400(self):
        name = self.rapi_function()
        for attempt in (1, 2):  # the second time also posts to the previous (finished) request id
            with self.subTest(attempt=attempt):
                resp, out = self.invoke_ok(name, {"action": "wrong_id"})
                self.assertEqual(out["answer"], "right", out)
                self.assertEqual(out["request_id"], resp["ResponseMetadata"]["RequestId"])
                keys = ["other_response", "other_error"] + (["stale_response"] if attempt == 2 else [])
                for key in keys:
                    self.assertEqual(out[key]["status"], 400, f"{key}: {out[key]}")
                    self.assertEqual((out[key]["body"] or {}).get("errorType"), "InvalidRequestID", out[key])
                # a second /next while an invocation is open: 403 InvalidStateTransition, or it blocks
                again = out["next_again"]
                if again["status"] is not None:
                    self.assertEqual(again["status"], 403, again)
                    self.assertEqual((again["body"] or {}).get("errorType"), "InvalidStateTransition", again)
                else:
                    self.assertIn("timed out", again["error"], again)
        _, echo = self.invoke_ok(name, {"action": "echo"})
        self.assertEqual(echo["action"], "echo")

    def test_response_before_next_is_403(self):
        name = self.rapi_function(Environment={"Variables": {"EARLY_RESPONSE": "1"}})
        _, out = self.invoke_ok(name, {"action": "echo"})
        for key in ("early_response", "early_error"):
            with self.subTest(post=key):
                self.assertEqual(out["state"][key]["status"], 403, out["state"][key])
                self.assertEqual((out["state"][key]["body"] or {}).get("errorType"), "InvalidStateTransition",
                                 out["state"][key])

    def test_oversized_response_is_function_error_and_runtime_sees_413(self):
        name = self.rapi_function(MemorySize=256, Timeout=20)
        resp, out, _ = self.invoke_hostile(name, {"action": "oversize", "size": 7 * MB})
        self.assertFunctionError(resp, out, "Function.ResponseSizeTooLarge")
        _, echo = self.invoke_ok(name, {"action": "echo"})
        oversize = echo["state"].get("oversize")
        self.assertIsNotNone(oversize, f"the environment was reset after the oversized response: {echo}")
        self.assertEqual(oversize["status"], 413, oversize)
        self.assertEqual((oversize["body"] or {}).get("errorType"), "RequestEntityTooLarge", oversize)

    def test_exit_mid_invoke_with_code_3(self):
        name = self.rapi_function()
        _, first = self.invoke_ok(name, {"action": "echo"})
        resp, out, elapsed = self.invoke_hostile(name, {"action": "exit", "code": 3})
        self.assertLess(elapsed, 5)
        self.assertFunctionError(resp, out, "Runtime.ExitError")
        self.assertIn("Runtime exited with error: exit status 3", out["errorMessage"])
        self.assertIn(resp["ResponseMetadata"]["RequestId"], out["errorMessage"])
        _, after = self.invoke_ok(name, {"action": "echo"})
        self.assertEqual(after["action"], "echo")

    def test_exit_mid_invoke_by_sigkill(self):
        name = self.rapi_function()
        self.invoke_ok(name, {"action": "echo"})
        resp, out, elapsed = self.invoke_hostile(name, {"action": "kill9"})
        self.assertLess(elapsed, 5)
        self.assertFunctionError(resp, out, "Runtime.ExitError")
        self.assertIn("Runtime exited with error: signal: killed", out["errorMessage"])
        _, after = self.invoke_ok(name, {"action": "echo"})
        self.assertEqual(after["action"], "echo")


# ---- daemons -------------------------------------------------------------------------------------------

class DaemonTests(_HostileBase):

    def test_daemon_is_killed_when_the_function_is_deleted(self):
        name = self.fn_name()
        self.create_function(hostile_py_zip(), name=name, cleanup=False)
        self.addCleanup(self._delete_quietly, name)
        marker = self.marker()
        _, out = self.invoke_ok(name, {"op": "daemon", "marker": marker})
        self.assertEqual(out, {"op": "daemon", "spawned": True})
        self.wait_until(lambda: marker_processes(marker), 5, "the daemon never showed up on the host")
        _, after = self.invoke_ok(name, {"op": "echo"})  # the environment still serves with its daemon
        self.assertEqual(after["count"], 2)
        self.lam.delete_function(FunctionName=name)
        self.assertNoMarkerProcesses(marker, 10, "DeleteFunction")

    def test_daemon_is_killed_when_the_server_stops(self):
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            self.skipTest("external server: this test starts and stops its own")
        srv = h.LaminaServer("hostile-stop")
        srv.start()
        self.addCleanup(lambda: srv.proc is not None and srv.proc.poll() is None and srv._kill_group())
        name = self.fn_name()
        lam = srv.client()
        lam.create_function(FunctionName=name, Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                            Code={"ZipFile": hostile_py_zip()})
        deadline = time.monotonic() + 30
        while lam.get_function_configuration(FunctionName=name).get("State", "Active") != "Active":
            self.assertLess(time.monotonic(), deadline, "function never became Active")
            time.sleep(0.05)
        marker = self.marker()
        resp = lam.invoke(FunctionName=name, Payload=json.dumps({"op": "daemon", "marker": marker}).encode())
        self.assertNotIn("FunctionError", resp, resp["Payload"].read())
        self.wait_until(lambda: marker_processes(marker), 5, "the daemon never showed up on the host")
        srv.stop()  # raises if the shutdown is not clean
        self.assertNoMarkerProcesses(marker, 10, "the server stopped")


class SecondServerTests(_HostileBase):
    """Lamina servers sharing a machine (one per test module, several developers): independent."""

    def test_a_second_server_leaves_this_servers_environments_alone(self):
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            self.skipTest("external server: this test starts its own second server")
        name = self.fn_name()
        self.create_function(hostile_py_zip(), name=name)
        _, warm = self.invoke_ok(name, {"op": "echo"})
        marker = self.marker()
        _, out = self.invoke_ok(name, {"op": "daemon", "marker": marker})
        self.wait_until(lambda: marker_processes(marker), 5, "the daemon never showed up on the host")
        other = h.LaminaServer("hostile-second")
        other.start()
        try:
            self.assertTrue(marker_processes(marker),
                            "starting a second server killed a process of this server's warm environment")
            _, again = self.invoke_ok(name, {"op": "echo"})
            self.assertEqual((again["count"], again["pid"]), (warm["count"] + 2, warm["pid"]),
                             "starting a second server reset this server's warm environment")
        finally:
            other.stop()
        _, again = self.invoke_ok(name, {"op": "echo"})
        self.assertEqual(again["pid"], warm["pid"], "stopping a second server reset this server's environment")


if __name__ == "__main__":
    unittest.main()
