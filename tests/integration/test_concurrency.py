"""Concurrency (issue #5) through boto3 and the AWS CLI: Put/Get/DeleteFunctionConcurrency, GetAccountSettings,
throttling (429 TooManyRequestsException with Reason and Retry-After) by reserved concurrency and by the account
limit (a second server started with --account-concurrency 2), and scale-out of one function to many environments."""
from __future__ import annotations

import json
import threading
import time
import unittest
from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore.exceptions
from botocore.config import Config

import lamina_harness as h
from test_metrics import Exposition

MODULE = __name__
ACCOUNT_LIMIT = 1000  # the module server runs with the default

SLOW_PY = '''
import time

def handler(event, context):
    time.sleep(float(event.get("sleep", 0)))
    return {"ok": True}
'''

# One process per environment: the pid and a per-process id tell environments apart.
WHO_PY = '''
import os, time, uuid
PROCESS = uuid.uuid4().hex

def handler(event, context):
    time.sleep(float(event.get("sleep", 0)))
    return {"process": PROCESS, "pid": os.getpid()}
'''


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


def _client(url: str):
    """A client of its own per thread (boto3 clients are not meant to be shared across threads here), no retries."""
    return boto3.client(
        "lambda", endpoint_url=url, region_name=h.REGION,
        aws_access_key_id=h.ACCESS_KEY, aws_secret_access_key=h.SECRET_KEY,
        config=Config(retries={"max_attempts": 0}, read_timeout=120, connect_timeout=10))


def _invoke_outcome(url: str, name: str, event: dict) -> dict:
    """Invokes once; returns {"status", "payload"} or {"status", "code", "reason", "retry_after", "message"}."""
    try:
        resp = _client(url).invoke(FunctionName=name, Payload=json.dumps(event).encode())
        return {"status": resp["StatusCode"], "payload": json.loads(resp["Payload"].read() or b"null"),
                "function_error": resp.get("FunctionError")}
    except botocore.exceptions.ClientError as e:
        meta = e.response.get("ResponseMetadata", {})
        headers = {k.lower(): v for k, v in meta.get("HTTPHeaders", {}).items()}
        return {"status": meta.get("HTTPStatusCode"), "code": e.response.get("Error", {}).get("Code"),
                "reason": e.response.get("Reason"), "retry_after": headers.get("retry-after"),
                "message": e.response.get("Error", {}).get("Message"), "type": e.response.get("Type")}


def _sent(pool: ThreadPoolExecutor, url: str, name: str, event: dict):
    """Sends an invocation before returning (its bytes are with the server), then awaits the answer on `pool`:
    what is sent after this call reaches the server after it, so no sleep is needed to order two calls."""
    import http.client
    import urllib.parse
    conn = http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=120)
    conn.request("POST", f"/2015-03-31/functions/{name}/invocations", body=json.dumps(event).encode())

    def answer() -> dict:
        try:
            r = conn.getresponse()
            body = json.loads(r.read() or b"null")
            if r.status == 429:
                return {"status": 429, "code": r.getheader("x-amzn-ErrorType"), "reason": body.get("Reason"),
                        "retry_after": r.getheader("Retry-After"), "message": body.get("message"), "type": body.get("Type")}
            return {"status": r.status, "payload": body, "function_error": r.getheader("X-Amz-Function-Error")}
        finally:
            conn.close()
    return pool.submit(answer)


def _running(url: str, name: str) -> int:
    """How many environments of `name` are running an invocation or starting for one (Lamina's operator view)."""
    import urllib.request
    with urllib.request.urlopen(f"{url}/lamina/v1/environments", timeout=10) as resp:
        environments = json.loads(resp.read())["Environments"]
    return sum(1 for e in environments if e["FunctionName"] == name and e["State"] in ("busy", "initializing"))


def _first_throttle(url: str, name: str, busy: list, timeout: float = 20) -> dict:
    """Invokes until one call is throttled while the `busy` invocations run (they hold the units), and returns
    that outcome — or the last one, if the busy calls ended or the deadline passed first. It first waits until the
    busy calls have environments (so they were admitted: a probe sent earlier could take their unit). Polling with
    a deadline: admission is not observable otherwise."""
    deadline = time.monotonic() + timeout
    while _running(url, name) < len(busy) and time.monotonic() < deadline and not all(f.done() for f in busy):
        time.sleep(0.02)
    outcome = {}
    while time.monotonic() < deadline and not all(f.done() for f in busy):
        outcome = _invoke_outcome(url, name, {})
        if outcome["status"] == 429:
            return outcome
    return outcome



class ReservedConcurrencyTests(h.LaminaTestCase):

    def _fn(self, code: str = SLOW_PY, **kwargs) -> str:
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": code}), name=name, **kwargs)
        return name

    def test_put_get_delete_and_get_function(self):
        name = self._fn()
        self.assertNotIn("ReservedConcurrentExecutions", self.lam.get_function_concurrency(FunctionName=name))
        self.assertNotIn("Concurrency", self.lam.get_function(FunctionName=name))

        put = self.lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
        self.assertEqual(put["ReservedConcurrentExecutions"], 5)
        self.assertEqual(self.lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"], 5)
        self.assertEqual(self.lam.get_function(FunctionName=name)["Concurrency"], {"ReservedConcurrentExecutions": 5})
        # Versions and aliases share the function's reservation.
        self.lam.publish_version(FunctionName=name)
        self.assertEqual(self.lam.get_function(FunctionName=name, Qualifier="1")["Concurrency"],
                         {"ReservedConcurrentExecutions": 5})
        # A full ARN names the same function.
        self.assertEqual(self.lam.get_function_concurrency(FunctionName=h.function_arn(name))["ReservedConcurrentExecutions"], 5)

        resp = self.lam.delete_function_concurrency(FunctionName=name)
        self.assertEqual(resp["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertNotIn("ReservedConcurrentExecutions", self.lam.get_function_concurrency(FunctionName=name))
        self.assertNotIn("Concurrency", self.lam.get_function(FunctionName=name))

    def test_account_settings_reflect_reservations_and_deleting_frees_them(self):
        name = self._fn()
        before = self.lam.get_account_settings()
        limit = before["AccountLimit"]
        self.assertEqual(limit["ConcurrentExecutions"], ACCOUNT_LIMIT)
        self.assertEqual(limit["TotalCodeSize"], 80530636800)
        self.assertEqual(limit["CodeSizeUnzipped"], 262144000)
        self.assertEqual(limit["CodeSizeZipped"], 52428800)
        self.assertGreaterEqual(before["AccountUsage"]["FunctionCount"], 1)
        self.assertGreater(before["AccountUsage"]["TotalCodeSize"], 0)
        unreserved = limit["UnreservedConcurrentExecutions"]

        self.lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=50)
        self.assertEqual(self.lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"], unreserved - 50)
        self.lam.delete_function(FunctionName=name)
        self.assertEqual(self.lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"], unreserved)

    def test_account_settings_trailing_slash_and_usage_counts_versions(self):
        name = self._fn()
        before = self.server.raw("GET", "/2016-08-19/account-settings/")
        self.assertEqual(before.status, 200, repr(before))
        code_size = self.lam.get_function_configuration(FunctionName=name)["CodeSize"]
        self.lam.publish_version(FunctionName=name)
        after = self.server.raw("GET", "/2016-08-19/account-settings").json
        self.assertEqual(after["AccountUsage"]["TotalCodeSize"], before.json["AccountUsage"]["TotalCodeSize"] + code_size)
        self.assertEqual(after["AccountUsage"]["FunctionCount"], before.json["AccountUsage"]["FunctionCount"])

    def test_put_refuses_to_leave_less_than_100_unreserved(self):
        name = self._fn()
        unreserved = self.lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
        err = self.assertAwsError(
            lambda: self.lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=unreserved - 99),
            400, "InvalidParameterValueException")
        self.assertEqual(err.response["Error"]["Message"],
                         "Specified ReservedConcurrentExecutions for function decreases account's "
                         "UnreservedConcurrentExecution below its minimum value of [100].")
        self.assertNotIn("ReservedConcurrentExecutions", self.lam.get_function_concurrency(FunctionName=name))
        # Exactly the minimum left is fine.
        self.lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=unreserved - 100)
        self.lam.delete_function_concurrency(FunctionName=name)

    def test_errors_missing_function_and_invalid_values(self):
        missing = self.fn_name("missing")
        self.assertAwsError(lambda: self.lam.put_function_concurrency(FunctionName=missing, ReservedConcurrentExecutions=1),
                            404, "ResourceNotFoundException")
        self.assertAwsError(lambda: self.lam.get_function_concurrency(FunctionName=missing), 404, "ResourceNotFoundException")
        self.assertAwsError(lambda: self.lam.delete_function_concurrency(FunctionName=missing), 404, "ResourceNotFoundException")
        name = self._fn()
        path = f"/2017-10-31/functions/{name}/concurrency"
        self.assertRawError(self.server.raw("PUT", path, {"ReservedConcurrentExecutions": -1}), 400, "ValidationException")
        self.assertRawError(self.server.raw("PUT", path, {}), 400, "InvalidParameterValueException")
        self.assertRawError(self.server.raw("PUT", path, "{not json"), 400, "InvalidRequestContentException")

    def test_zero_throttles_sync_invokes_but_not_dry_run_or_events(self):
        name = self._fn()
        self.lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
        outcome = _invoke_outcome(self.server.url, name, {})
        self.assertEqual(outcome["status"], 429, outcome)
        self.assertEqual(outcome["code"], "TooManyRequestsException", outcome)
        self.assertEqual(outcome["reason"], "ReservedFunctionConcurrentInvocationLimitExceeded", outcome)
        self.assertEqual(outcome["retry_after"], "1", outcome)
        self.assertEqual(outcome["message"], "Rate Exceeded.", outcome)
        self.assertEqual(outcome["type"], "User", outcome)

        self.assertEqual(self.lam.invoke(FunctionName=name, InvocationType="DryRun")["StatusCode"], 204)
        self.assertEqual(self.lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")["StatusCode"], 202)

        self.lam.delete_function_concurrency(FunctionName=name)
        self.invoke_ok(name, {})

    def test_reserved_one_slow_function_two_concurrent_invokes_one_throttled(self):
        name = self._fn(Timeout=30)
        self.lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
        self.invoke_ok(name, {})  # warm, so the slow call below starts at once

        with ThreadPoolExecutor(1) as pool:
            slow = _sent(pool, self.server.url, name, {"sleep": 3})
            throttled = _first_throttle(self.server.url, name, [slow])
            results = [slow.result(60), throttled]

        self.assertEqual(results[0]["status"], 200, results)
        self.assertEqual(results[0]["payload"], {"ok": True}, results)
        throttled = results[1]
        self.assertEqual(throttled["status"], 429, results)
        self.assertEqual(throttled["code"], "TooManyRequestsException", results)
        self.assertEqual(throttled["reason"], "ReservedFunctionConcurrentInvocationLimitExceeded", results)
        self.assertEqual(throttled["retry_after"], "1", results)

        # Once the slow invocation has finished, its unit is free again.
        deadline = time.monotonic() + 10
        while True:
            outcome = _invoke_outcome(self.server.url, name, {})
            if outcome["status"] == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(outcome["status"], 200, outcome)

    def test_throttled_event_waits_and_runs_later(self):
        name = self._fn(Timeout=30)
        self.lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
        self.invoke_ok(name, {})
        with ThreadPoolExecutor(1) as pool:
            slow = _sent(pool, self.server.url, name, {"sleep": 2})
            self.assertEqual(_first_throttle(self.server.url, name, [slow])["status"], 429)
            # The function is at its reservation: the event is still accepted (202), not throttled…
            resp = self.lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"sleep": 3}).encode())
            self.assertEqual(resp["StatusCode"], 202)
            self.assertEqual(slow.result(60)["status"], 200)
        # …and runs once the unit is free: while it sleeps, it holds the reservation, so a synchronous call is throttled.
        seen = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and 429 not in seen:
            seen.append(_invoke_outcome(self.server.url, name, {})["status"])
            time.sleep(0.2)
        self.assertIn(429, seen, "the waiting event never took the function's one unit")

    def test_a_backlog_of_events_drains_at_its_reserved_concurrency(self):
        # 40 events of a function reserved at 2, a quarter of a second each: 5 s at two at a time. Each event throttled
        # at the reservation goes back to wait for the next free slot; backed off (1 s doubling up to 5 minutes, as a
        # throttle over the account's limit is), the backlog took minutes.
        code = ("import time\n"
                "def handler(event, context):\n"
                "    start = time.time()\n"
                "    time.sleep(0.25)\n"
                "    print('RAN', event['id'], start, time.time())\n")
        name = self._fn(code, Timeout=30)
        self.lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
        count = 40
        for i in range(count):
            self.assertEqual(self.lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"id": i}).encode())["StatusCode"], 202)
        deadline = time.monotonic() + 60
        while self.server.raw("GET", f"/lamina/v1/async-events?function={name}&limit=1").json["Queued"] > 0:
            self.assertLess(time.monotonic(), deadline, "the backlog did not drain within 60 s")
            time.sleep(0.2)
        logs = h.boto3_client(self.server.url, "logs")
        runs = [m.split() for page in logs.get_paginator("filter_log_events").paginate(logGroupName=f"/aws/lambda/{name}", filterPattern='"RAN"')
                for m in (e["message"] for e in page["events"])]
        self.assertEqual(sorted(int(r[1]) for r in runs), list(range(count)))
        spans = [(float(r[2]), float(r[3])) for r in runs]
        overlap = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
        self.assertLessEqual(overlap, 2, "more than the reservation ran at once")

    def test_cli_put_get_delete_and_account_settings(self):
        name = self._fn()
        r = self.server.aws_cli("lambda", "put-function-concurrency", "--function-name", name,
                                "--reserved-concurrent-executions", "3")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.json, {"ReservedConcurrentExecutions": 3})
        r = self.server.aws_cli("lambda", "get-function-concurrency", "--function-name", name)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.json, {"ReservedConcurrentExecutions": 3})
        r = self.server.aws_cli("lambda", "get-account-settings")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.json["AccountLimit"]["ConcurrentExecutions"], ACCOUNT_LIMIT)
        self.assertLessEqual(r.json["AccountLimit"]["UnreservedConcurrentExecutions"], ACCOUNT_LIMIT - 3)
        r = self.server.aws_cli("lambda", "delete-function-concurrency", "--function-name", name)
        self.assertEqual(r.rc, 0, r)
        r = self.server.aws_cli("lambda", "get-function-concurrency", "--function-name", name)
        self.assertEqual(r.rc, 0, r)
        self.assertNotIn("ReservedConcurrentExecutions", r.json or {})


class ScaleOutTests(h.LaminaTestCase):

    def test_forty_concurrent_cold_invocations_start_environments_in_parallel(self):
        self._scale_out(network=True)

    def test_forty_concurrent_cold_invocations_without_outbound_network(self):
        self._scale_out(network=False)

    def _scale_out(self, network: bool):
        name = self.fn_name()
        env = {} if network else {"Environment": {"Variables": {"LAMINA_NETWORK": "none"}}}
        self.create_function(h.make_zip({"app.py": WHO_PY}), name=name, Timeout=60, **env)
        count = 40
        barrier = threading.Barrier(count)

        def one(_):
            client = _client(self.server.url)
            barrier.wait(30)
            t0 = time.monotonic()
            resp = client.invoke(FunctionName=name, Payload=json.dumps({"sleep": 1}).encode())
            return json.loads(resp["Payload"].read()), resp.get("FunctionError"), time.monotonic() - t0

        t0 = time.monotonic()
        with ThreadPoolExecutor(count) as pool:
            results = list(pool.map(one, range(count)))
        elapsed = time.monotonic() - t0

        self.assertEqual([r for r in results if r[1]], [], "function errors")
        processes = {r[0]["process"] for r in results}
        # Each call sleeps 1 s: served one after another they would take 40 s and one environment.
        self.assertGreaterEqual(len(processes), 10, f"{len(processes)} environments served {count} concurrent calls")
        self.assertLess(elapsed, 60, f"{count} concurrent cold invocations took {elapsed:.1f} s")


# Init takes INIT_SLEEP seconds; each answer says which environment served it and when that environment's Init ran.
TIMED_INIT_PY = '''
import os, time, uuid
PROCESS = uuid.uuid4().hex
INIT_START = time.time()
time.sleep(float(os.environ["INIT_SLEEP"]))
INIT_END = time.time()

def handler(event, context):
    time.sleep(float(event.get("sleep", 0)))
    return {"process": PROCESS, "init": [INIT_START, INIT_END]}
'''


class ColdStartRoomTests(h.OwnServerTestCase):
    """A server of its own with --max-cold-starts 2: no more than two environments start at once on the node."""

    SERVER_ARGS = ["--max-cold-starts", "2"]

    def _invoke_at_once(self, name: str, count: int, sleep: float) -> list[dict]:
        barrier = threading.Barrier(count)

        def one(_):
            client = _client(self.server.url)
            barrier.wait(30)
            resp = client.invoke(FunctionName=name, Payload=json.dumps({"sleep": sleep}).encode())
            self.assertNotIn("FunctionError", resp)
            return json.loads(resp["Payload"].read())

        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(one, range(count)))

    def test_no_more_environments_start_at_once_than_the_room_allows(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": TIMED_INIT_PY}), name=name, Timeout=60,
                             Environment={"Variables": {"INIT_SLEEP": "0.5", "LAMINA_NETWORK": "none"}})
        # Six at once, each busy longer than the starts take: each gets an environment of its own (three at least, or
        # the bound says nothing), two starting at a time.
        results = self._invoke_at_once(name, 6, sleep=3)
        inits = {r["process"]: r["init"] for r in results}
        self.assertGreaterEqual(len(inits), 3, f"{len(inits)} environments served six long calls")
        edges = sorted([(start, 1) for start, _ in inits.values()] + [(end, -1) for _, end in inits.values()],
                       key=lambda edge: (edge[0], edge[1]))
        at_once = most = 0
        for _, step in edges:
            at_once += step
            most = max(most, at_once)
        self.assertLessEqual(most, 2, f"{most} environments were in Init at once: {sorted(inits.values())}")

    def test_an_invocation_waiting_for_room_takes_an_environment_that_goes_idle(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": TIMED_INIT_PY}), name=name, Timeout=60,
                             Environment={"Variables": {"INIT_SLEEP": "1", "LAMINA_NETWORK": "none"}})
        # Eight short calls at once: two start environments, two more start when those are ready, and the other four
        # are served by the first two as they finish (a start takes a second, a call a twentieth of one).
        results = self._invoke_at_once(name, 8, sleep=0.05)
        processes = {r["process"] for r in results}
        self.assertLessEqual(len(processes), 5, f"{len(processes)} environments served 8 short calls")

    def test_another_functions_first_invoke_waits_for_one_init_not_for_a_burst(self):
        burst, other = self.fn_name(), self.fn_name()
        for name, init_sleep in ((burst, "2"), (other, "0")):
            self.create_function(h.make_zip({"app.py": TIMED_INIT_PY}), name=name, Timeout=60,
                                 Environment={"Variables": {"INIT_SLEEP": init_sleep, "LAMINA_NETWORK": "none"}})
        with ThreadPoolExecutor(7) as pool:
            # Six long calls of one function: two start (the room), four wait for room (their Inits come two by two,
            # and no environment of theirs goes idle before the last has started).
            calls = [_sent(pool, self.server.url, burst, {"sleep": 4}) for _ in range(6)]
            deadline = time.monotonic() + 30
            while Exposition(self.server.raw("GET", "/metrics").text).get("lamina_cold_starts_waiting") != 4:
                self.assertLess(time.monotonic(), deadline, "four of the burst never waited for room")
                time.sleep(0.02)
            # Another function's first invoke: its turn comes with the next room freed, before the burst's last Inits.
            first = _sent(pool, self.server.url, other, {}).result(60)
            results = [c.result(60) for c in calls]
        self.assertEqual([(r["status"], r["function_error"]) for r in results + [first]], [(200, None)] * 7, results + [first])
        burst_inits = sorted(r["payload"]["init"][0] for r in results)
        self.assertLess(first["payload"]["init"][0], burst_inits[-1],
                        f"the other function started at {first['payload']['init'][0]}, after the burst's Inits {burst_inits}")
        self.assertEqual(Exposition(self.server.raw("GET", "/metrics").text).get("lamina_cold_starts_waiting"), 0)

    def test_invocations_waiting_for_room_through_an_update_run_the_configuration_they_were_sent_to(self):
        name = self.fn_name()
        code = TIMED_INIT_PY.replace('"init": [INIT_START, INIT_END]', '"version": os.environ["CODE_TAG"]')
        self.create_function(h.make_zip({"app.py": code}), name=name, Timeout=60,
                             Environment={"Variables": {"INIT_SLEEP": "3", "CODE_TAG": "old", "LAMINA_NETWORK": "none"}})
        with ThreadPoolExecutor(4) as pool:
            calls = [_sent(pool, self.server.url, name, {"sleep": 2}) for _ in range(4)]
            # All four admitted (the configuration resolved), two starting (the room) and two waiting for room, when
            # the function changes.
            deadline = time.monotonic() + 30
            while not (Exposition(self.server.raw("GET", "/metrics").text).get(
                    "lamina_concurrent_executions", function=name, version="$LATEST") == 4 and _running(self.server.url, name) == 2):
                self.assertLess(time.monotonic(), deadline, "the four calls were never all admitted")
                time.sleep(0.02)
            self.lam.update_function_configuration(
                FunctionName=name, Environment={"Variables": {"INIT_SLEEP": "0", "CODE_TAG": "new", "LAMINA_NETWORK": "none"}})
            results = [c.result(60) for c in calls]
        self.assertEqual([(r["status"], r["function_error"], (r["payload"] or {}).get("version")) for r in results],
                         [(200, None, "old")] * 4, results)
        # Every environment of the old configuration stops once it has answered (none stays idle, unusable, holding memory).
        deadline = time.monotonic() + 20
        while live := [e for e in self.server.raw("GET", "/lamina/v1/environments").json["Environments"]
                       if e["FunctionName"] == name and e["State"] != "stopping"]:
            self.assertLess(time.monotonic(), deadline, f"environments of the old configuration left: {live}")
            time.sleep(0.05)
        self.assertEqual(json.loads(self.lam.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())["version"], "new")


class AccountLimitTests(h.OwnServerTestCase):
    """A server of its own with --account-concurrency 2 (the module server keeps Lambda's 1000)."""

    SERVER_ARGS = ["--account-concurrency", "2"]

    def test_account_limit_throttles_synchronous_invokes_with_account_reason(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": SLOW_PY}), name=name, Timeout=30)
        settings = self.lam.get_account_settings()["AccountLimit"]
        self.assertEqual(settings["ConcurrentExecutions"], 2)
        self.assertEqual(settings["UnreservedConcurrentExecutions"], 2)

        with ThreadPoolExecutor(3) as pool:
            slow = [_sent(pool, self.server.url, name, {"sleep": 4}) for _ in range(2)]
            # Both slow calls hold their unit from admission on, cold start included.
            third = _first_throttle(self.server.url, name, slow)
            results = [f.result(60) for f in slow]

        self.assertEqual([r["status"] for r in results], [200, 200], results)
        self.assertEqual(third["status"], 429, third)
        self.assertEqual(third["reason"], "ConcurrentInvocationLimitExceeded", third)
        self.assertEqual(third["retry_after"], "1", third)
        self.assertEqual(third["message"], "Rate Exceeded.", third)
        self.assertEqual(self.lam.invoke(FunctionName=name, InvocationType="DryRun")["StatusCode"], 204)

    def test_no_reservation_possible_below_the_minimum(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": SLOW_PY}), name=name)
        err = self.assertAwsError(lambda: self.lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1),
                                  400, "InvalidParameterValueException")
        self.assertIn("minimum value of [2]", err.response["Error"]["Message"])


if __name__ == "__main__":
    unittest.main()
