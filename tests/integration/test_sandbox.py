"""Sandbox smoke tests (isolation basics only; full hardening is covered later)."""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import unittest
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor

import lamina_harness as h
from lamina_functions import py_probe_zip

MODULE = __name__


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


class SandboxTests(h.LaminaTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._shared_name = None

    def probe(self) -> str:
        """One probe function shared by the tests of this class (created on first use)."""
        cls = type(self)
        if cls._shared_name is None:
            name = self.fn_name("probe")
            self.create_function(py_probe_zip(), name=name, cleanup=False)
            cls._shared_name = name
        return cls._shared_name

    def test_cannot_write_var_task(self):
        path = f"/var/task/lamina-it-evil-{uuid.uuid4().hex[:8]}.txt"
        self.addCleanup(lambda: os.path.exists(path) and os.remove(path))
        _, out = self.invoke_ok(self.probe(), {"op": "write", "path": path})
        self.assertFalse(out["ok"], f"/var/task is writable: {out}")
        self.assertIn(out["errname"], ("EROFS", "EACCES"), out)
        _, out = self.invoke_ok(self.probe(), {"op": "write", "path": "/var/task/app.py",
                                                "mode": "a", "data": ""})
        self.assertFalse(out["ok"], f"the function's own code is writable: {out}")

    def test_cannot_write_outside_tmp(self):
        marker = f"lamina-it-evil-{uuid.uuid4().hex[:8]}.txt"
        for d in ("/", "/etc", "/var/runtime", "/opt"):
            path = os.path.join(d, marker)
            # if the sandbox is missing, the write lands on this machine: remove it afterwards
            self.addCleanup(lambda p=path: os.path.exists(p) and os.remove(p))
            with self.subTest(path=path):
                _, out = self.invoke_ok(self.probe(), {"op": "write", "path": path})
                self.assertFalse(out["ok"], f"{path} is writable: {out}")
                self.assertIn(out["errname"], ("EROFS", "EACCES", "ENOENT", "EPERM"), out)

    def test_can_write_tmp(self):
        path = f"/tmp/lamina-it-ok-{uuid.uuid4().hex[:8]}.txt"
        self.addCleanup(lambda: os.path.exists(path) and os.remove(path))
        _, out = self.invoke_ok(self.probe(), {"op": "write", "path": path, "data": "hello"})
        self.assertEqual(out, {"ok": True, "read_back": "hello"})

    def offline_probe(self) -> str:
        """A probe with its outbound network turned off (LAMINA_NETWORK=none)."""
        cls = type(self)
        if getattr(cls, "_offline_name", None) is None:
            name = self.fn_name("offline")
            self.create_function(py_probe_zip(), name=name, cleanup=False,
                                 Environment={"Variables": {"LAMINA_NETWORK": "none"}})
            cls._offline_name = name
        return cls._offline_name

    def test_network_off_leaves_only_loopback(self):
        _, out = self.invoke_ok(self.offline_probe(), {"op": "interfaces"})
        self.assertEqual(out["interfaces"], ["lo"], out)

    def test_network_on_by_default_gives_an_outbound_interface(self):
        _, out = self.invoke_ok(self.probe(), {"op": "interfaces"})
        self.assertIn("lo", out["interfaces"], out)
        self.assertTrue([i for i in out["interfaces"] if i != "lo"], f"no outbound interface: {out}")
        _, out = self.invoke_ok(self.probe(), {"op": "cat", "path": "/proc/net/route"})
        self.assertTrue(any(line.split()[1:2] == ["00000000"] for line in out["data"].splitlines()[1:]),
                        f"no default route: {out}")

    def test_cannot_connect_to_the_control_plane_port(self):
        # With outbound network on (the default) and off: the host's loopback is never reachable.
        parsed = urllib.parse.urlsplit(self.server.url)
        for probe in (self.probe(), self.offline_probe()):
            for host in ("127.0.0.1", "localhost"):
                with self.subTest(probe=probe, host=host):
                    _, out = self.invoke_ok(probe, {"op": "connect", "host": host, "port": parsed.port})
                    self.assertFalse(out["connected"],
                                     f"the sandbox reached the server's port {parsed.port} on {host}")

    def test_cannot_see_the_server_data_dir(self):
        if self.server.data_dir is None:
            self.skipTest("external server: data dir unknown")
        _, out = self.invoke_ok(self.probe(), {"op": "listdir", "path": str(self.server.data_dir)})
        self.assertFalse(out["ok"], f"the sandbox can list the server's data dir: {out}")

    def test_task_root_contains_only_the_package(self):
        _, out = self.invoke_ok(self.probe(), {"op": "listdir", "path": "/var/task"})
        self.assertEqual(out, {"ok": True, "entries": ["app.py"]})


if __name__ == "__main__":
    unittest.main()


class ServerGroupsTests(unittest.TestCase):
    """The server's cgroups (lamina/<instance> under each controller) go with it when it stops."""

    def test_a_stopped_server_leaves_no_cgroup(self):
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            self.skipTest("needs a server of its own")
        server = h.LaminaServer("sandbox-groups").start()
        self.addCleanup(lambda: server.proc.poll() is None and server.stop())  # when the test ended before its stop
        instance = hashlib.sha256(os.path.abspath(server.data_dir).encode()).hexdigest()[:16]
        unified = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
        groups = [f"/sys/fs/cgroup/lamina/{instance}"] if unified else [
            f"/sys/fs/cgroup/{controller}/lamina/{instance}" for controller in ("memory", "pids", "cpu")]
        lam = server.client()
        # Several environments: each stop raced its runtime's exit, and one lost race was enough (half the runs failed).
        functions = {}
        for i in range(3):
            functions[f"py{i}"] = ("python3.12", "app.handler", {"app.py": "def handler(e, c):\n    return e\n"})
            functions[f"node{i}"] = ("nodejs20.x", "index.handler", {"index.js": "exports.handler = async (e) => e;\n"})
        for name, (runtime, handler, files) in functions.items():
            lam.create_function(FunctionName=name, Runtime=runtime, Role=h.ROLE, Handler=handler,
                                Code={"ZipFile": h.make_zip(files)})
        for name in functions:
            lam.get_waiter("function_active_v2").wait(FunctionName=name)
            self.assertEqual(lam.invoke(FunctionName=name, Payload=b"{}")["StatusCode"], 200)
        # Each environment has its group under the server's while it runs.
        for group in groups:
            self.assertEqual(len([d for d in os.listdir(group) if os.path.isdir(os.path.join(group, d))]), len(functions), group)
        server.stop()
        # Before, a stop could wait for an environment's group only while another caller was still removing it: the
        # server's own group, removed next, was busy and stayed (one per data directory, for good).
        self.assertEqual([g for g in groups if os.path.exists(g)], [])


    def test_a_server_starting_removes_the_groups_of_a_killed_one_and_not_of_a_running_one(self):
        # A server killed with a data directory never used again left its groups (its environments' and its own) for
        # good; the next server started on the machine, whatever its data directory, removes them. A running server's
        # groups stay, and it goes on invoking.
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            self.skipTest("needs a server of its own")

        def groups_of(server: h.LaminaServer) -> list[str]:
            instance = hashlib.sha256(os.path.abspath(server.data_dir).encode()).hexdigest()[:16]
            if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
                return [f"/sys/fs/cgroup/lamina/{instance}"]
            return [f"/sys/fs/cgroup/{controller}/lamina/{instance}" for controller in ("memory", "pids", "cpu")]

        def with_warm_environment(server: h.LaminaServer) -> None:
            lam = server.client()
            lam.create_function(FunctionName="f", Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                                Code={"ZipFile": h.make_zip({"app.py": "def handler(e, c):\n    return e\n"})})
            lam.get_waiter("function_active_v2").wait(FunctionName="f")
            self.assertEqual(lam.invoke(FunctionName="f", Payload=b"{}")["StatusCode"], 200)

        running = h.LaminaServer("sandbox-groups-running").start()
        self.addCleanup(lambda: running.proc.poll() is None and running.stop())
        with_warm_environment(running)
        killed = h.LaminaServer("sandbox-groups-killed").start()
        self.addCleanup(lambda: killed.proc.poll() is None and killed.stop())
        with_warm_environment(killed)
        killed.kill()
        self.assertEqual([g for g in groups_of(killed) if os.path.exists(g)], groups_of(killed), "a killed server leaves its groups")

        third = h.LaminaServer("sandbox-groups-third").start()
        self.addCleanup(lambda: third.proc.poll() is None and third.stop())
        self.assertEqual([g for g in groups_of(killed) if os.path.exists(g)], [])
        self.assertEqual([g for g in groups_of(running) if os.path.exists(g)], groups_of(running))
        self.assertEqual(running.client().invoke(FunctionName="f", Payload=b"{}")["StatusCode"], 200)
        with_warm_environment(third)


class SpawnThreadTests(unittest.TestCase):
    """An environment lives until Lamina ends it, whichever of the server's threads started its processes."""

    # One process per environment: a per-process id tells environments apart.
    WHO_PY = "import time, uuid\nPROCESS = uuid.uuid4().hex\n\ndef handler(event, context):\n" \
             "    time.sleep(event['sleep'])\n    return PROCESS\n"

    def test_environments_outlive_the_threads_that_started_them(self):
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            self.skipTest("needs a server of its own")
        # bwrap's --die-with-parent fires when the *thread* that forked it ends. The thread pool retires a thread idle
        # for ThreadTimeoutMs (20 s by default); at 50 ms the threads that ran the cold starts end within the test.
        # --max-cold-starts 16: all sixteen start at once (with the default room, 8 here, a call waiting for room could be
        # handed an environment whose first call had ended, and sixteen calls had fewer environments).
        server = h.LaminaServer("spawn-thread", ["--max-cold-starts", "16"], env={"DOTNET_ThreadPool_ThreadTimeoutMs": "50"}).start()
        self.addCleanup(server.stop)
        lam = server.client()
        lam.create_function(FunctionName="who", Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                            Code={"ZipFile": h.make_zip({"app.py": self.WHO_PY})})
        lam.get_waiter("function_active_v2").wait(FunctionName="who")
        pid = server.proc.pid

        def pool_threads() -> set[str]:
            found = set()
            for tid in os.listdir(f"/proc/{pid}/task"):
                try:
                    with open(f"/proc/{pid}/task/{tid}/comm") as f:
                        if f.read().startswith(".NET TP Worker"):
                            found.add(tid)
                except OSError:
                    pass  # the thread ended
            return found

        # One client per thread, made up front (making boto3 clients is not thread-safe); the sixteen requests leave
        # together, so each finds every environment busy (a cold start each, then each environment once).
        clients = [h.boto3_client(server.url, "lambda") for _ in range(16)]

        def invoke_all(seconds: float) -> list:
            together = threading.Barrier(16)

            def invoke(client):
                together.wait()
                resp = client.invoke(FunctionName="who", Payload=json.dumps({"sleep": seconds}).encode())
                return resp.get("FunctionError"), json.loads(resp["Payload"].read())
            with ThreadPoolExecutor(16) as invokers:
                calls = [invokers.submit(invoke, client) for client in clients]
                while not all(f.done() for f in calls):
                    seen.update(pool_threads())  # every pool thread seen while they run
                    time.sleep(0.01)
                return [f.result() for f in calls]

        # Sixteen cold starts at once, on whatever pool threads run them.
        seen = pool_threads()
        first = invoke_all(1.0)
        self.assertEqual([error for error, _ in first], [None] * 16, first)
        processes = {process for _, process in first}
        self.assertEqual(len(processes), 16, first)

        # Every one of those threads ends (the pool retires them once idle; bounded).
        deadline = time.monotonic() + 60
        while seen & pool_threads() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(seen & pool_threads(), set(), "the server's pool threads did not end within 60 s")

        # The same sixteen environments, all alive: no Init, no failure (they were SIGKILLed with their starting thread).
        second = invoke_all(1.0)
        self.assertEqual([error for error, _ in second], [None] * 16, second)
        self.assertEqual({process for _, process in second}, processes)
