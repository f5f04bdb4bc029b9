"""Metrics (issue #7): GET /metrics in Prometheus' text exposition format 0.0.4 — invocations, errors, throttles,
durations, cold starts by reason, billed duration and GB-seconds per function and version; environments by state and
the async queue, read at scrape time."""
from __future__ import annotations

import json
import math
import re
import time
import unittest

import botocore.exceptions

import lamina_harness as h

MODULE = __name__

APP_PY = '''
def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"ok": True}
'''

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


class Exposition:
    """A tiny parser of the text format: samples by (name, labels), and each family's TYPE and HELP."""

    def __init__(self, text: str):
        self.samples: dict[tuple[str, frozenset], float] = {}
        self.types: dict[str, str] = {}
        self.helps: dict[str, str] = {}
        for line in text.split("\n"):
            if not line:
                continue
            if line.startswith("# TYPE "):
                name, kind = line[len("# TYPE "):].split(" ", 1)
                self.types[name] = kind
                continue
            if line.startswith("# HELP "):
                name, _, help_text = line[len("# HELP "):].partition(" ")
                self.helps[name] = help_text
                continue
            if line.startswith("#"):
                continue
            match = _SAMPLE.match(line)
            if match is None:
                raise AssertionError(f"not a sample line: {line!r}")
            name, labels_text, value = match.groups()
            labels = {}
            rest = labels_text or ""
            while rest:
                label = _LABEL.match(rest)
                if label is None:
                    raise AssertionError(f"bad labels in {line!r}")
                labels[label.group(1)] = re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group(0)], label.group(2))
                rest = rest[label.end():]
            key = (name, frozenset(labels.items()))
            if key in self.samples:
                raise AssertionError(f"duplicate sample {line!r}")
            self.samples[key] = float(value)

    def get(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def matching(self, name: str, **labels: str) -> dict[frozenset, float]:
        """Samples of `name` whose labels include `labels`."""
        want = set(labels.items())
        return {key[1]: value for key, value in self.samples.items() if key[0] == name and want <= set(key[1])}


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


class MetricsTests(h.LaminaTestCase):

    def _fn(self) -> str:
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": APP_PY}), name=name, MemorySize=256, Timeout=10)
        return name

    def _scrape(self) -> Exposition:
        # Unsigned, as Prometheus scrapes: the endpoint follows the API's access rule (loopback), nothing more yet.
        resp = self.server.raw("GET", "/metrics", sign=False)
        self.assertEqual(resp.status, 200, repr(resp))
        self.assertEqual(resp.headers["Content-Type"], "text/plain; version=0.0.4; charset=utf-8")
        return Exposition(resp.text)

    def test_counters_of_a_function_match_its_invocations(self):
        name = self._fn()
        invocations = 6
        for i in range(invocations):
            resp, _, _ = self.invoke(name, {"fail": i == 3})
            self.assertEqual(resp["StatusCode"], 200)
            self.assertEqual(resp.get("FunctionError"), "Unhandled" if i == 3 else None)

        m = self._scrape()
        fn = {"function": name, "version": "$LATEST"}
        self.assertEqual(m.get("lamina_invocations_total", **fn), invocations)
        self.assertEqual(m.get("lamina_errors_total", **fn), 1)
        # The handler's error keeps its environment: one cold start, the first.
        self.assertEqual(m.matching("lamina_cold_starts_total", **fn),
                         {frozenset({**fn, "reason": "first_invoke"}.items()): 1})
        self.assertEqual(m.get("lamina_init_duration_seconds_count", **fn), 1)
        self.assertGreater(m.get("lamina_init_duration_seconds_sum", **fn), 0)
        self.assertEqual(m.matching("lamina_throttles_total", **fn), {})
        self.assertEqual(m.get("lamina_concurrent_executions", **fn), 0)

        # Duration: a histogram of every invocation, buckets cumulative up to +Inf = count.
        self.assertEqual(m.get("lamina_duration_seconds_count", **fn), invocations)
        buckets = sorted((float(dict(labels)["le"]), value)
                         for labels, value in m.matching("lamina_duration_seconds_bucket", **fn).items())
        self.assertEqual(buckets[-1], (math.inf, invocations))
        self.assertEqual([v for _, v in buckets], sorted(v for _, v in buckets), buckets)
        duration = m.get("lamina_duration_seconds_sum", **fn)
        self.assertGreater(duration, 0)

        # Billed as the REPORT line (each duration rounded up to the ms), GB-seconds at 256 MB.
        billed = m.get("lamina_billed_duration_seconds_total", **fn)
        self.assertGreaterEqual(billed, duration - 1e-9)
        self.assertLessEqual(billed, duration + invocations * 0.001 + 1e-9)
        self.assertAlmostEqual(m.get("lamina_gb_seconds_total", **fn), billed * 256 / 1024, places=9)

        # Every family has its type; counters end in _total.
        for family, kind in m.types.items():
            self.assertIn(kind, ("counter", "gauge", "histogram"), family)
            if kind == "counter":
                self.assertTrue(family.endswith("_total"), family)
            self.assertIn(family, m.helps, family)
        for sample_name, _ in m.samples:
            family = re.sub(r"_(bucket|sum|count)$", "", sample_name) if sample_name not in m.types else sample_name
            self.assertIn(family, m.types, sample_name)

    def test_a_new_version_is_a_label_of_its_own(self):
        name = self._fn()
        version = self.lam.publish_version(FunctionName=name)["Version"]
        self.invoke_ok(name, {}, Qualifier=version)
        self.invoke_ok(name, {})
        m = self._scrape()
        self.assertEqual(m.get("lamina_invocations_total", function=name, version=version), 1)
        self.assertEqual(m.get("lamina_invocations_total", function=name, version="$LATEST"), 1)

    def test_deleted_versions_and_functions_leave_the_metrics(self):
        # Functions made and deleted (CloudFormation's generated names, test suites) kept their series for the server's
        # life, and past 2,000 function/version pairs every new function was counted as "_other".
        name = self._fn()
        version = self.lam.publish_version(FunctionName=name)["Version"]
        self.invoke_ok(name, {}, Qualifier=version)
        self.invoke_ok(name, {})
        self.lam.delete_function(FunctionName=name, Qualifier=version)
        m = self._scrape()
        self.assertEqual(m.matching("lamina_invocations_total", function=name, version=version), {})
        self.assertEqual(m.get("lamina_invocations_total", function=name, version="$LATEST"), 1)

        self.lam.delete_function(FunctionName=name)
        self.assertEqual([key for key in self._scrape().samples if ("function", name) in key[1]], [])
        # The same name made again counts from zero.
        self.create_function(h.make_zip({"app.py": APP_PY}), name=name, MemorySize=256, Timeout=10)
        self.invoke_ok(name, {})
        self.assertEqual(self._scrape().get("lamina_invocations_total", function=name, version="$LATEST"), 1)

    def test_provisioned_environment_is_a_cold_start_of_its_own(self):
        name = self._fn()
        self.lam.publish_version(FunctionName=name)
        self.lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1)
        deadline = time.monotonic() + 60
        while self.lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")["Status"] != "READY":
            self.assertLess(time.monotonic(), deadline, "provisioned concurrency not READY")
            time.sleep(0.1)
        self.invoke_ok(name, {}, Qualifier="1")

        m = self._scrape()
        fn = {"function": name, "version": "1"}
        # Initialised ahead of traffic: the invocation found it warm.
        self.assertEqual(m.matching("lamina_cold_starts_total", **fn),
                         {frozenset({**fn, "reason": "provisioned"}.items()): 1})
        self.assertEqual(m.get("lamina_init_duration_seconds_count", **fn), 1)
        self.assertEqual(m.get("lamina_invocations_total", **fn), 1)

    def test_throttle_is_counted_not_invoked(self):
        name = self._fn()
        self.lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
        with self.assertRaises(botocore.exceptions.ClientError) as caught:
            self.invoke(name, {})
        self.assertEqual(caught.exception.response["Error"]["Code"], "TooManyRequestsException")

        m = self._scrape()
        fn = {"function": name, "version": "$LATEST"}
        self.assertEqual(m.matching("lamina_throttles_total", **fn),
                         {frozenset({**fn, "reason": "reserved_concurrency"}.items()): 1})
        self.assertIsNone(m.get("lamina_invocations_total", **fn))

    def test_environments_gauge_shows_the_idle_environment(self):
        name = self._fn()
        self.invoke_ok(name, {})
        m = self._scrape()
        states = {dict(labels)["state"]: value for labels, value in m.matching("lamina_environments").items()}
        self.assertEqual(set(states), {"initializing", "idle", "busy", "stopping"})
        self.assertGreaterEqual(states["idle"], 1)
        self.assertEqual(m.types["lamina_environments"], "gauge")

    def test_async_queue_depth_and_age_of_a_waiting_event(self):
        self.assertEqual(self._scrape().types.get("lamina_async_queue_depth"), "gauge")
        # Reserved concurrency 0: the event is accepted and waits in the queue (throttled, backing off).
        name = self._fn()
        self.lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
        resp = self.lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({}).encode())
        self.assertEqual(resp["StatusCode"], 202)
        deadline = time.monotonic() + 10
        while True:
            m = self._scrape()
            throttled = m.get("lamina_throttles_total", function=name, version="$LATEST", reason="reserved_concurrency")
            age = m.get("lamina_async_oldest_event_age_seconds")
            if (throttled and age) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertGreaterEqual(throttled or 0, 1, "the dispatcher's throttle was not counted")
        self.assertGreaterEqual(m.get("lamina_async_queue_depth"), 1)
        self.assertGreater(age, 0)
        self.assertEqual(m.types["lamina_async_oldest_event_age_seconds"], "gauge")


if __name__ == "__main__":
    unittest.main()
