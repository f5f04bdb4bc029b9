"""Sandbox smoke tests (isolation basics only; full hardening is covered later)."""
from __future__ import annotations

import os
import unittest
import urllib.parse
import uuid

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
