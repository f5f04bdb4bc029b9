"""Keep-alive and eviction (issue #5): idle environments are reaped after --idle-timeout; the node's memory budget
(--memory-budget) evicts idle environments least recently used first and throttles when nothing can be evicted; each
cold start records its reason and phases (GET /lamina/v1/environments)."""
from __future__ import annotations

import json
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

import lamina_harness as h
from test_concurrency import _invoke_outcome, _sent

MODULE = __name__

WHO_PY = '''
import os, time, uuid
PROCESS = uuid.uuid4().hex

def handler(event, context):
    if event.get("crash"):
        os._exit(3)
    time.sleep(float(event.get("sleep", 0)))
    return {"process": PROCESS}
'''


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


class _Base(h.LaminaTestCase):

    def _fn(self, memory: int = 128, **kwargs) -> str:
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": WHO_PY}), name=name, MemorySize=memory, Timeout=30, **kwargs)
        return name

    def _environments(self, name: str | None = None) -> list[dict]:
        resp = self.server.raw("GET", "/lamina/v1/environments")
        self.assertEqual(resp.status, 200, repr(resp))
        return [e for e in resp.json["Environments"] if name is None or e["FunctionName"] == name]

    def _live(self, name: str) -> list[dict]:
        return [e for e in self._environments(name) if e["State"] != "stopping"]

    def _wait_live(self, name: str, count: int, timeout: float = 20) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            live = self._live(name)
            if len(live) == count:
                return live
            if time.monotonic() > deadline:
                self.fail(f"{len(live)} live environments of {name}, expected {count}: {self._environments(name)}")
            time.sleep(0.1)


class ColdStartReasonTests(_Base):

    def test_reasons_first_scale_out_update_and_failure_with_phases(self):
        name = self._fn()
        self.invoke_ok(name, {})
        [first] = self._live(name)
        self.assertEqual(first["ColdStartReason"], "first_invoke")
        self.assertEqual(first["InitializationType"], "on-demand")
        self.assertGreater(first["SandboxMs"], 0)
        self.assertGreater(first["InitMs"], 0)
        # Lamina's Python runtime reports the handler's part of Init (importing app.py).
        self.assertIsNotNone(first["HandlerInitMs"], first)
        self.assertLessEqual(first["HandlerInitMs"], first["InitMs"])

        # Two at once: the warm one serves one, the other scales out.
        with ThreadPoolExecutor(2) as pool:
            calls = [_sent(pool, self.server.url, name, {"sleep": 1.5}) for _ in range(2)]
            self.assertEqual([c.result(60)["status"] for c in calls], [200, 200])
        reasons = sorted(e["ColdStartReason"] for e in self._live(name))
        self.assertEqual(reasons, ["first_invoke", "scale_out"])

        # A configuration change retires them; the next cold start says why.
        self.lam.update_function_configuration(FunctionName=name, Description="changed")
        self.wait_updated(name)
        self.invoke_ok(name, {})
        self.assertEqual([e["ColdStartReason"] for e in self._wait_live(name, 1)], ["after_update"])

        # A crash resets the environment; the next one starts after a failure.
        resp, _, _ = self.invoke(name, {"crash": True})
        self.assertEqual(resp.get("FunctionError"), "Unhandled")
        self._wait_live(name, 0)
        self.invoke_ok(name, {})
        self.assertEqual([e["ColdStartReason"] for e in self._wait_live(name, 1)], ["after_failure"])


    def test_an_invocation_whose_init_is_under_way_when_its_function_changes_runs_then_its_environment_stops(self):
        name = self.fn_name()
        code = "import os, time\ntime.sleep(3)\ndef handler(event, context):\n    return {'tag': os.environ['CODE_TAG']}\n"
        self.create_function(h.make_zip({"app.py": code}), name=name, Timeout=30, Environment={"Variables": {"CODE_TAG": "old"}})
        with ThreadPoolExecutor(1) as pool:
            call = _sent(pool, self.server.url, name, {})
            deadline = time.monotonic() + 20
            while not any(e["State"] == "initializing" for e in self._environments(name)):
                self.assertLess(time.monotonic(), deadline, "no environment started")
                time.sleep(0.02)
            self.lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"CODE_TAG": "new"}})
            result = call.result(60)
        # It runs the configuration it was sent to (the old build failed it: Runtime.ExitError, exit status -1).
        self.assertEqual((result["status"], result["function_error"], result["payload"]), (200, None, {"tag": "old"}))
        self._wait_live(name, 0)  # its environment stops once it has answered
        self.wait_updated(name)
        self.assertEqual(self.invoke_ok(name, {})[1], {"tag": "new"})
        self.assertEqual([e["ColdStartReason"] for e in self._wait_live(name, 1)], ["after_update"])

    def test_an_environment_that_dies_while_idle_is_stopped_and_its_memory_freed(self):
        # The handler, after answering, tells the Runtime API its runtime exited (what Lamina's Init script reports
        # for environments with extensions): the idle environment is dead and must not linger, running and counted.
        code = ("import http.client, os, threading, time\n"
                "def report():\n"
                "    time.sleep(0.3)\n"
                "    c = http.client.HTTPConnection(os.environ['AWS_LAMBDA_RUNTIME_API'])\n"
                "    c.request('POST', '/2020-01-01/lamina/runtime-exited?status=0', body=b'')\n"
                "    c.getresponse().read()\n"
                "def handler(event, context):\n"
                "    if event.get('die'):\n"
                "        threading.Thread(target=report).start()\n"
                "    return 'ok'\n")
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": code}), name=name, MemorySize=256)
        before = self.server.raw("GET", "/lamina/v1/environments").json["MemoryInUseMB"]
        self.invoke_ok(name, {"die": True})
        self._wait_live(name, 0)
        deadline = time.monotonic() + 20
        while self.server.raw("GET", "/lamina/v1/environments").json["MemoryInUseMB"] > before:
            self.assertLess(time.monotonic(), deadline, "the dead environment's memory was never given back")
            time.sleep(0.1)
        self.invoke_ok(name, {})
        self.assertEqual([e["ColdStartReason"] for e in self._wait_live(name, 1)], ["after_failure"])

    def test_node_runtime_reports_its_handler_init(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"index.mjs": "await new Promise(r => setTimeout(r, 120));\n"
                                                      "export const handler = async () => 'ok';\n"}),
                             name=name, runtime="nodejs20.x", handler="index.handler")
        self.invoke_ok(name, {})
        [environment] = self._live(name)
        # The module's top-level await is the handler's Init: at least its 120 ms, and part of the whole Init.
        self.assertGreaterEqual(environment["HandlerInitMs"], 120, environment)
        self.assertLessEqual(environment["HandlerInitMs"], environment["InitMs"], environment)


class IdleTimeoutTests(h.OwnServerTestCase, _Base):
    """A server of its own with --idle-timeout 1."""

    SERVER_ARGS = ["--idle-timeout", "1"]

    def test_idle_environment_is_reaped_and_the_next_start_says_after_eviction(self):
        name = self._fn()
        _, first = self.invoke_ok(name, {})
        self._wait_live(name, 0)  # reaped by the heartbeat once idle for a second
        _, second = self.invoke_ok(name, {})
        self.assertNotEqual(first["process"], second["process"])
        [environment] = self._live(name)
        self.assertEqual(environment["ColdStartReason"], "after_eviction")

    def test_busy_environment_is_not_reaped(self):
        name = self._fn()
        _, first = self.invoke_ok(name, {})
        # A call longer than the one-second keep-alive: the environment is busy, not idle, so no sweep stops it.
        _, again = self.invoke_ok(name, {"sleep": 2.5})
        self.assertEqual(first["process"], again["process"])


class MemoryBudgetTests(h.OwnServerTestCase, _Base):
    """A server of its own whose environments may hold 384 MB in all (three 128 MB functions)."""

    SERVER_ARGS = ["--memory-budget", "384"]

    def setUp(self):
        # Each test starts with the budget free (the previous test's functions are deleted, their environments stopping).
        deadline = time.monotonic() + 20
        while self.server.raw("GET", "/lamina/v1/environments").json["MemoryInUseMB"] != 0:
            self.assertLess(time.monotonic(), deadline, "the previous test's environments did not stop")
            time.sleep(0.1)

    def test_budget_evicts_the_least_recently_used_idle_environment(self):
        a, b, c, d = (self._fn() for _ in range(4))
        for name in (a, b, c):
            self.invoke_ok(name, {})
        self.invoke_ok(b, {})  # now a is the least recently used
        budget = self.server.raw("GET", "/lamina/v1/environments").json
        self.assertEqual((budget["MemoryBudgetMB"], budget["MemoryInUseMB"]), (384, 384))

        self.invoke_ok(d, {})  # needs 128 MB: a goes
        self.assertEqual([len(self._live(n)) for n in (a, b, c, d)], [0, 1, 1, 1])
        self.invoke_ok(a, {})  # c is now the least recently used
        self.assertEqual([len(self._live(n)) for n in (a, b, c, d)], [1, 1, 0, 1])
        self.assertEqual(self._live(a)[0]["ColdStartReason"], "after_eviction")

    def test_throttles_when_busy_environments_hold_the_budget(self):
        big, small = self._fn(memory=384), self._fn()
        with ThreadPoolExecutor(1) as pool:
            busy = _sent(pool, self.server.url, big, {"sleep": 4})
            deadline = time.monotonic() + 20
            while not [e for e in self._environments(big) if e["State"] == "busy"]:
                self.assertLess(time.monotonic(), deadline, "the slow call never ran")
                time.sleep(0.05)
            outcome = _invoke_outcome(self.server.url, small, {})
            self.assertEqual(busy.result(60)["status"], 200)
        self.assertEqual(outcome["status"], 429, outcome)
        self.assertEqual(outcome["code"], "TooManyRequestsException", outcome)
        self.assertEqual(outcome["reason"], "ConcurrentInvocationLimitExceeded", outcome)
        self.assertEqual(outcome["retry_after"], "1", outcome)
        # Once the big one is idle it can be evicted: the small function runs.
        self.invoke_ok(small, {})
        self.assertEqual(len(self._live(big)), 0)

    def test_event_waits_for_room_instead_of_being_dropped(self):
        big, small = self._fn(memory=384), self._fn()
        with ThreadPoolExecutor(1) as pool:
            busy = _sent(pool, self.server.url, big, {"sleep": 3})
            deadline = time.monotonic() + 20
            while not [e for e in self._environments(big) if e["State"] == "busy"]:
                self.assertLess(time.monotonic(), deadline, "the slow call never ran")
                time.sleep(0.05)
            resp = self.lam.invoke(FunctionName=small, InvocationType="Event", Payload=json.dumps({}).encode())
            self.assertEqual(resp["StatusCode"], 202)
            self.assertEqual(busy.result(60)["status"], 200)
        # The event runs once the budget has room: an environment of `small` appears.
        self._wait_live(small, 1)


if __name__ == "__main__":
    unittest.main()
