"""Log streams and the CloudWatch Logs API (issue #7), read back with boto3, AWS CLI v1 and AWS CLI v2 (`aws logs
tail`, which only v2 has): one stream per environment, Lambda's START / END / REPORT lines, the function's output,
retention, filter patterns, and a flood that leaves the server healthy. Subscription filters (issue #23): the API and
its errors, and the matching events of a function's invocations and of PutLogEvents delivered to a subscribed
function as CloudWatch Logs sends them (gzip'd, base64 `awslogs.data`), set up with boto3 and AWS CLI v1."""
from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
from pathlib import Path

import botocore.exceptions

import lamina_harness as h

MODULE = __name__

# Prints a plain line and a JSON line per call; fails when asked.
LOGGER_PY = '''
import json

def handler(event, context):
    print("hello from", event.get("n"))
    print(json.dumps({"level": event.get("level", "INFO"), "n": event.get("n")}))
    if event.get("fail"):
        raise ValueError("bad input " + str(event.get("n")))
    return event.get("n")
'''

FLOOD_PY = '''
import sys

def handler(event, context):
    line = "x" * 1023 + "\\n"
    for _ in range(20 * 1024):   # 20 MB, over the 16 MB an invocation may log
        sys.stdout.write(line)
    sys.stdout.flush()
    return "flooded"
'''

# Receives CloudWatch Logs deliveries and logs each, decoded, on one line.
SINK_PY = '''
import base64, gzip, json

def handler(event, context):
    data = json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))
    print("DELIVERY " + json.dumps(data))
'''


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


class LogsTests(h.LaminaTestCase):

    def setUp(self):
        self.logs = h.boto3_client(self.server.url, "logs")

    def _fn(self, code: str = LOGGER_PY, **kwargs) -> str:
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": code}), name=name, **kwargs)
        return name

    def _stream(self, group: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                streams = self.logs.describe_log_streams(logGroupName=group, orderBy="LastEventTime", descending=True)["logStreams"]
                if streams:
                    return streams[0]["logStreamName"]
            except self.logs.exceptions.ResourceNotFoundException:
                pass
            self.assertLess(time.monotonic(), deadline, f"no stream in {group}")
            time.sleep(0.05)

    def _messages(self, group: str, stream: str, until: str, count: int, timeout: float = 20) -> list[str]:
        """Reads the whole stream from its head (paginating) until `until` appears `count` times (lines are written
        off the invoke path, so the last REPORT can trail the response), bounded."""
        deadline = time.monotonic() + timeout
        while True:
            messages = []
            token = None
            while True:
                kwargs = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
                if token:
                    kwargs["nextToken"] = token
                page = self.logs.get_log_events(**kwargs)
                messages += [e["message"] for e in page["events"]]
                if page["nextForwardToken"] == token:
                    break
                token = page["nextForwardToken"]
            if sum(m.startswith(until) for m in messages) >= count:
                return messages
            self.assertLess(time.monotonic(), deadline, f"{until!r} not {count} times in {stream}: {messages[-20:]}")
            time.sleep(0.05)

    def test_stream_of_eleven_invocations_one_failing(self):
        name = self._fn()
        for n in range(11):
            resp, _, _ = self.invoke(name, {"n": n, "fail": n == 7})
            self.assertEqual(resp.get("FunctionError") is not None, n == 7)
        group = f"/aws/lambda/{name}"
        stream = self._stream(group)
        self.assertRegex(stream, r"^\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}$")
        messages = self._messages(group, stream, "REPORT RequestId:", 11)

        self.assertEqual(sum(m.startswith("START RequestId:") for m in messages), 11)
        self.assertEqual(sum(m.startswith("END RequestId:") for m in messages), 11)
        reports = [m for m in messages if m.startswith("REPORT RequestId:")]
        self.assertEqual(len(reports), 11)
        self.assertEqual(sum("Init Duration" in m for m in reports), 1)
        self.assertIn("Init Duration", reports[0])
        for n in range(11):
            self.assertIn(f"hello from {n}", messages)
        # The error is one event with its traceback (lines joined by \r, as AWS's runtimes write multi-line records).
        errors = [m for m in messages if "ValueError" in m and "bad input 7" in m]
        self.assertEqual(len(errors), 1, messages)
        self.assertIn("\rTraceback (most recent call last):", errors[0])
        self.assertTrue(messages[0].startswith("INIT_START Runtime Version: python:3.12"), messages[:3])
        # Lambda's tab-separated REPORT layout, trailing tab.
        self.assertRegex(reports[1], r"^REPORT RequestId: \S+\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\t"
                                     r"Memory Size: 128 MB\tMax Memory Used: \d+ MB\t$")

        groups = self.logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
        self.assertEqual([g["logGroupName"] for g in groups], [group])
        self.assertEqual(groups[0]["arn"], f"arn:aws:logs:{h.REGION}:000000000000:log-group:{group}:*")
        self.assertGreater(groups[0]["storedBytes"], 0)

        # Backwards from the end (no startFromHead): the newest events, oldest of them first.
        tail = self.logs.get_log_events(logGroupName=group, logStreamName=stream, limit=3)
        self.assertTrue(tail["events"][-1]["message"].startswith("REPORT"), tail["events"])
        self.assertEqual(len(tail["events"]), 3)

    def test_report_max_memory_used_follows_the_environments_peak(self):
        code = ("def handler(event, context):\n"
                "    if event.get('mb'):\n"
                "        block = bytearray(event['mb'] * 1024 * 1024)\n"
                "        for i in range(0, len(block), 4096):\n"
                "            block[i] = 1\n"
                "    return 'ok'\n")
        name = self._fn(code, MemorySize=256)

        def max_used(event: dict) -> int:
            resp, _ = self.invoke_ok(name, event, LogType="Tail")
            return int(re.search(r"Max Memory Used: (\d+) MB", h.decode_log_result(resp)).group(1))

        small = max_used({})
        again = max_used({})
        big = max_used({"mb": 100})
        self.assertGreater(small, 0)
        self.assertLess(again, small + 20)
        self.assertGreaterEqual(big, small + 90)  # the peak of the environment, read afresh each invocation

    def test_filter_patterns(self):
        name = self._fn()
        self.invoke_ok(name, {"n": 1, "level": "INFO"})
        self.invoke(name, {"n": 2, "level": "ERROR", "fail": True})
        self.invoke_ok(name, {"n": 3, "level": "WARN"})
        group = f"/aws/lambda/{name}"
        self._messages(group, self._stream(group), "REPORT", 3)

        def matching(pattern: str) -> list[str]:
            return [e["message"] for e in self.logs.filter_log_events(logGroupName=group, filterPattern=pattern)["events"]]

        self.assertEqual(len(matching("REPORT")), 3)
        self.assertEqual(matching('"hello from 2"'), ["hello from 2"])
        self.assertEqual(sorted(matching('{ $.level = "ERROR" }')), ['{"level": "ERROR", "n": 2}'])
        self.assertEqual(len(matching('{ $.n >= 2 }')), 2)
        self.assertEqual(len(matching("?ERROR ?WARN")), len(matching("ERROR")) + len(matching("WARN")))
        self.assertNotIn("REPORT", " ".join(matching("RequestId -REPORT")))
        self.assertTrue(all(m.startswith(("START", "END")) for m in matching("RequestId -REPORT")))
        err = self._logs_error(lambda: self.logs.filter_log_events(logGroupName=group, filterPattern='{ $.level = '))
        self.assertEqual(err.response["Error"]["Code"], "InvalidParameterException")

    def test_groups_retention_and_errors(self):
        group = "/lamina/test/" + self.fn_name()
        self.logs.create_log_group(logGroupName=group)
        err = self._logs_error(lambda: self.logs.create_log_group(logGroupName=group))
        self.assertEqual(err.response["Error"]["Code"], "ResourceAlreadyExistsException")
        self.logs.put_retention_policy(logGroupName=group, retentionInDays=7)
        [described] = self.logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
        self.assertEqual(described["retentionInDays"], 7)
        err = self._logs_error(lambda: self.logs.put_retention_policy(logGroupName=group, retentionInDays=8))
        self.assertEqual(err.response["Error"]["Code"], "InvalidParameterException")
        self.logs.delete_retention_policy(logGroupName=group)
        self.assertNotIn("retentionInDays", self.logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0])
        self.logs.delete_log_group(logGroupName=group)
        for call in (lambda: self.logs.delete_log_group(logGroupName=group),
                     lambda: self.logs.describe_log_streams(logGroupName=group),
                     lambda: self.logs.get_log_events(logGroupName=group, logStreamName="s"),
                     lambda: self.logs.filter_log_events(logGroupName=group)):
            self.assertEqual(self._logs_error(call).response["Error"]["Code"], "ResourceNotFoundException")
        raw = self.server.raw("POST", "/", {}, headers={"X-Amz-Target": "Logs_20140328.NoSuchThing",
                                                        "Content-Type": "application/x-amz-json-1.1"})
        self.assertEqual(raw.status, 400)
        self.assertEqual(raw.json["__type"], "UnknownOperationException")

    def test_describe_log_streams_pages_by_name_and_by_last_event_time(self):
        group = "/lamina/test/" + self.fn_name()
        self.logs.create_log_group(logGroupName=group)
        now = int(time.time() * 1000)
        names = [f"s-{i:02d}" for i in range(7)]
        for i, name in enumerate(names):
            self.logs.create_log_stream(logGroupName=group, logStreamName=name)
            # The newest events in the middle streams: by time the order is not the names' order.
            self.logs.put_log_events(logGroupName=group, logStreamName=name,
                                     logEvents=[{"timestamp": now - abs(3 - i) * 1000 - i, "message": name}])
        self.logs.create_log_stream(logGroupName=group, logStreamName="t-quiet")  # no event: its creation time counts
        paginator = self.logs.get_paginator("describe_log_streams")

        def read(**kwargs) -> list[str]:
            return [s["logStreamName"] for page in paginator.paginate(
                logGroupName=group, PaginationConfig={"PageSize": 2}, **kwargs) for s in page["logStreams"]]

        self.assertEqual(read(), names + ["t-quiet"])
        self.assertEqual(read(descending=True), ["t-quiet"] + names[::-1])
        self.assertEqual(read(logStreamNamePrefix="s-"), names)
        by_time = sorted(names, key=lambda n: now - abs(3 - int(n[2:])) * 1000 - int(n[2:]))
        self.assertEqual(read(orderBy="LastEventTime"), by_time + ["t-quiet"])
        self.assertEqual(read(orderBy="LastEventTime", descending=True), ["t-quiet"] + by_time[::-1])

        # A page goes on from where the last one ended: a stream made between two pages shifts nothing.
        first = self.logs.describe_log_streams(logGroupName=group, limit=2)
        self.assertEqual([s["logStreamName"] for s in first["logStreams"]], names[:2])
        self.logs.create_log_stream(logGroupName=group, logStreamName="a-new")
        second = self.logs.describe_log_streams(logGroupName=group, limit=2, nextToken=first["nextToken"])
        self.assertEqual([s["logStreamName"] for s in second["logStreams"]], names[2:4])
        # A token of another ordering or direction is refused, as CloudWatch Logs does.
        err = self._logs_error(lambda: self.logs.describe_log_streams(
            logGroupName=group, orderBy="LastEventTime", nextToken=first["nextToken"]))
        self.assertEqual(err.response["Error"]["Code"], "InvalidParameterException")
        err = self._logs_error(lambda: self.logs.describe_log_streams(logGroupName=group, descending=True, nextToken=first["nextToken"]))
        self.assertEqual(err.response["Error"]["Code"], "InvalidParameterException")

    def test_get_log_events_pages_a_stream_stored_in_many_batches_between_another_streams(self):
        # Each round is stored in a batch of its own (a read waits for what was put before it): 70 rounds leave each
        # stream in 70 chunks, interleaved, more than one read of chunks takes. Paged both ways, a stream reads whole,
        # in order, nothing twice, nothing of the other stream.
        group = "/lamina/test/" + self.fn_name()
        self.logs.create_log_group(logGroupName=group)
        for stream in ("a", "b"):
            self.logs.create_log_stream(logGroupName=group, logStreamName=stream)
        base = int(time.time() * 1000) - 600_000
        expected = []
        for i in range(70):
            events = [{"timestamp": base + i * 1000 + k, "message": f"a {i} {k}"} for k in range(2)]
            self.logs.put_log_events(logGroupName=group, logStreamName="a", logEvents=events)
            expected += events
            self.logs.put_log_events(logGroupName=group, logStreamName="b",
                                     logEvents=[{"timestamp": base + i * 1000 + k, "message": f"b {i} {k}"} for k in range(3)])
            self.logs.get_log_events(logGroupName=group, logStreamName="b", limit=1)

        def pages(**kwargs):
            token, seen = None, []
            while True:
                page = self.logs.get_log_events(logGroupName=group, logStreamName="a", limit=9, **kwargs,
                                                **({"nextToken": token} if token else {}))
                key = "nextForwardToken" if kwargs.get("startFromHead") else "nextBackwardToken"
                seen.append([e["message"] for e in page["events"]])
                if page[key] == token or not page["events"]:
                    return seen
                token = page[key]

        messages = [e["message"] for e in expected]
        forward = pages(startFromHead=True)
        self.assertEqual([m for page in forward for m in page], messages)
        self.assertEqual(len(forward[0]), 9)
        backward = pages()
        self.assertEqual([m for page in reversed(backward) for m in page], messages)
        self.assertEqual(backward[0], messages[-9:])
        whole = self.logs.get_log_events(logGroupName=group, logStreamName="a", startFromHead=True)["events"]
        self.assertEqual([e["message"] for e in whole], messages)
        window = self.logs.get_log_events(logGroupName=group, logStreamName="a", startFromHead=True,
                                          startTime=base + 30_000, endTime=base + 40_000)["events"]
        self.assertEqual([e["message"] for e in window], [f"a {i} {k}" for i in range(30, 40) for k in range(2)])
        self.assertEqual(len(self.logs.get_log_events(logGroupName=group, logStreamName="b", startFromHead=True)["events"]), 210)
        # FilterLogEvents over both streams, a window paged 7 at a time: in time order (a before b at equal times: the
        # order they were stored), each event once, none outside the window (the window and the token seek the index).
        filtered, token = [], None
        while True:
            page = self.logs.filter_log_events(logGroupName=group, startTime=base + 30_001, endTime=base + 40_000, limit=7,
                                               **({"nextToken": token} if token else {}))
            filtered += [e["message"] for e in page["events"]]
            self.assertLessEqual(len(page["events"]), 7)
            if "nextToken" not in page:
                break
            token = page["nextToken"]
        in_window = [(base + i * 1000 + k, f"{s} {i} {k}") for i in range(30, 41) for s, n in (("a", 2), ("b", 3)) for k in range(n)
                     if base + 30_001 <= base + i * 1000 + k <= base + 40_000]
        self.assertEqual(filtered, [m for _, m in sorted(in_window, key=lambda e: e[0])])

    def test_cli_v1_get_and_filter(self):
        name = self._fn()
        self.invoke_ok(name, {"n": 42})
        group = f"/aws/lambda/{name}"
        stream = self._stream(group)
        self._messages(group, stream, "REPORT", 1)
        r = self.server.aws_cli("logs", "get-log-events", "--log-group-name", group, "--log-stream-name", stream, "--start-from-head")
        self.assertEqual(r.rc, 0, r)
        self.assertIn("hello from 42", [e["message"] for e in r.json["events"]])
        r = self.server.aws_cli("logs", "filter-log-events", "--log-group-name", group, "--filter-pattern", '"hello from"')
        self.assertEqual(r.rc, 0, r)
        self.assertEqual([e["message"] for e in r.json["events"]], ["hello from 42"])
        r = self.server.aws_cli("logs", "describe-log-streams", "--log-group-name", group)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual([s["logStreamName"] for s in r.json["logStreams"]], [stream])

    def test_cli_v2_tail_and_follow(self):
        name = self._fn()
        self.invoke_ok(name, {"n": 1})
        group = f"/aws/lambda/{name}"
        self._messages(group, self._stream(group), "REPORT", 1)
        r = self.server.aws_cli("logs", "tail", group, cli="/usr/bin/aws")
        self.assertEqual(r.rc, 0, r)
        self.assertIn("hello from 1", r.stdout)

        # --follow keeps polling (every 5 s): an invocation made after it started shows up.
        command = self.server.aws_cli_command("logs", "tail", group, "--follow", "--format", "short", cli="/usr/bin/aws")
        follow = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.server.aws_cli_env())
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in follow.stdout], daemon=True).start()
        try:
            self._read_until(lines, "hello from 1", 30)
            self.invoke_ok(name, {"n": 2})
            self._read_until(lines, "hello from 2", 30)
        finally:
            follow.kill()
            follow.wait(10)

    def _read_until(self, lines: "queue.Queue[str]", text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            seen.append(line)
            if text in line:
                return
        self.fail(f"{text!r} not shown by `aws logs tail --follow` within {timeout} s: {seen[-10:]}")

    def test_json_log_format_with_levels(self):
        code = ("import logging, json\nlogger = logging.getLogger()\n"
                "def handler(event, context):\n"
                "    print('plain line, INFO by Lambda rule')\n"
                "    print(json.dumps({'level': 'ERROR', 'msg': 'printed error'}))\n"
                "    logger.info('logged info')\n"
                "    logger.error('logged error')\n"
                "    return 'ok'\n")
        name = self._fn(code, LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN", "SystemLogLevel": "INFO"})
        self.invoke_ok(name, {})
        group = f"/aws/lambda/{name}"
        stream = self._stream(group)
        deadline = time.monotonic() + 20
        while True:
            messages = [e["message"] for e in self.logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]]
            if any('"platform.report"' in m for m in messages):
                break
            self.assertLess(time.monotonic(), deadline, messages)
            time.sleep(0.05)
        records = [json.loads(m) for m in messages]
        types = [r.get("type") for r in records]
        self.assertEqual([t for t in types if t and t.startswith("platform.")], ["platform.initStart", "platform.start", "platform.report"])
        report = records[types.index("platform.report")]["record"]
        self.assertEqual(report["status"], "success")
        self.assertIn("initDurationMs", report["metrics"])
        texts = " ".join(messages)
        self.assertNotIn("plain line", texts)
        self.assertNotIn("logged info", texts)
        self.assertIn("printed error", texts)
        logged = [r for r in records if r.get("message") == "logged error"]
        self.assertEqual(len(logged), 1, messages)
        self.assertEqual(logged[0]["level"], "ERROR")
        # JSON patterns select the structured lines.
        matched = self.logs.filter_log_events(logGroupName=group, filterPattern='{ $.type = "platform.report" }')["events"]
        self.assertEqual(len(matched), 1)

    def test_lamina_logs_command(self):
        name = self._fn()
        self.invoke_ok(name, {"n": 5})
        self.invoke(name, {"n": 6, "level": "ERROR", "fail": True})
        group = f"/aws/lambda/{name}"
        self._messages(group, self._stream(group), "REPORT", 2)
        lamina = [str(h.REPO_ROOT / "lamina"), "logs", name, "--endpoint", self.server.url]
        out = subprocess.run(lamina, capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("hello from 5", out.stdout)
        self.assertEqual(out.stdout.count("REPORT RequestId:"), 2)
        filtered = subprocess.run(lamina + ["--filter", '{ $.level = "ERROR" }'], capture_output=True, text=True, timeout=120)
        self.assertEqual([line.split(" ", 2)[2] for line in filtered.stdout.splitlines()], ['{"level": "ERROR", "n": 6}'])
        missing = subprocess.run([str(h.REPO_ROOT / "lamina"), "logs", self.fn_name("none"), "--endpoint", self.server.url],
                                 capture_output=True, text=True, timeout=120)
        self.assertEqual(missing.returncode, 1)
        self.assertIn("ResourceNotFoundException", missing.stderr)

    def test_flood_is_truncated_and_the_server_stays_healthy(self):
        name = self._fn(FLOOD_PY, Timeout=60, MemorySize=256)
        _, out = self.invoke_ok(name, {})
        self.assertEqual(out, "flooded")
        self.assertEqual(self.server.raw("GET", "/health").status, 200)
        group = f"/aws/lambda/{name}"
        stream = self._stream(group)
        matched = self.logs.filter_log_events(logGroupName=group, filterPattern='"log output truncated"')["events"]
        deadline = time.monotonic() + 30
        while not matched:
            self.assertLess(time.monotonic(), deadline, "no truncation marker in the stream")
            time.sleep(0.2)
            matched = self.logs.filter_log_events(logGroupName=group, filterPattern='"log output truncated"')["events"]
        self.assertEqual(matched[0]["logStreamName"], stream)
        # The next invocation works and is logged.
        self.invoke_ok(name, {})
        self.assertEqual(self.server.raw("GET", "/health").status, 200)

    # ---- subscription filters (issue #23) -------------------------------------------------------------------------

    def _sink(self, group: str | None = None, principal: str = "logs.amazonaws.com") -> tuple[str, str]:
        """A function that logs what CloudWatch Logs delivers, allowed to be invoked by it for `group` (if given)."""
        name = self._fn(SINK_PY)
        arn = self.lam.get_function_configuration(FunctionName=name)["FunctionArn"]
        if group is not None:
            self._allow(name, group, principal)
        return name, arn

    def _allow(self, function: str, group: str, principal: str = "logs.amazonaws.com") -> None:
        self.lam.add_permission(FunctionName=function, StatementId=f"logs-{abs(hash(group)) % 10**8}", Action="lambda:InvokeFunction",
                                Principal=principal, SourceArn=f"arn:aws:logs:us-east-1:000000000000:log-group:{group}:*")

    def _deliveries(self, sink: str, until, timeout: float = 60) -> list[dict]:
        """The decoded DATA_MESSAGEs the sink has logged, polled until `until(deliveries)` holds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                events = self.logs.filter_log_events(logGroupName=f"/aws/lambda/{sink}", filterPattern='"DELIVERY"')["events"]
            except self.logs.exceptions.ResourceNotFoundException:
                events = []
            deliveries = [json.loads(e["message"].split("DELIVERY ", 1)[1]) for e in events]
            if until(deliveries):
                return deliveries
            self.assertLess(time.monotonic(), deadline, f"deliveries to {sink} so far: {deliveries}")
            time.sleep(0.1)

    def test_subscription_filters_api_and_errors(self):
        group = "/lamina/subscribed/" + self.fn_name()
        self.logs.create_log_group(logGroupName=group)
        sink, sink_arn = self._sink()

        # Without a permission for CloudWatch Logs, as AWS answers.
        err = self._logs_error(lambda: self.logs.put_subscription_filter(logGroupName=group, filterName="a", filterPattern="", destinationArn=sink_arn))
        self.assertEqual(err.response["Error"]["Code"], "InvalidParameterException")
        self.assertEqual(err.response["Error"]["Message"],
                         "Could not execute the lambda function. Make sure you have given CloudWatch Logs permission to execute your function.")
        # A permission for another group is not one for this group.
        self._allow(sink, group + "-other")
        err = self._logs_error(lambda: self.logs.put_subscription_filter(logGroupName=group, filterName="a", filterPattern="", destinationArn=sink_arn))
        self.assertIn("permission", err.response["Error"]["Message"])
        # The regional principal form (logs.<region>.amazonaws.com) is accepted as on AWS.
        self._allow(sink, group, principal="logs.us-east-1.amazonaws.com")
        self.logs.put_subscription_filter(logGroupName=group, filterName="a", filterPattern="ERROR", destinationArn=sink_arn)
        [described] = self.logs.describe_subscription_filters(logGroupName=group)["subscriptionFilters"]
        self.assertEqual({k: described[k] for k in ("filterName", "logGroupName", "filterPattern", "destinationArn", "distribution")},
                         {"filterName": "a", "logGroupName": group, "filterPattern": "ERROR", "destinationArn": sink_arn, "distribution": "ByLogStream"})
        self.assertIsInstance(described["creationTime"], int)
        # The same name updates the filter; a second name is a second filter; a third is past the limit of two.
        self.logs.put_subscription_filter(logGroupName=group, filterName="a", filterPattern="WARN", destinationArn=sink_arn, distribution="Random")
        self.logs.put_subscription_filter(logGroupName=group, filterName="b", filterPattern="", destinationArn=sink_arn)
        filters = self.logs.describe_subscription_filters(logGroupName=group)["subscriptionFilters"]
        self.assertEqual([(f["filterName"], f["filterPattern"], f["distribution"]) for f in filters], [("a", "WARN", "Random"), ("b", "", "ByLogStream")])
        err = self._logs_error(lambda: self.logs.put_subscription_filter(logGroupName=group, filterName="c", filterPattern="", destinationArn=sink_arn))
        self.assertEqual(err.response["Error"]["Code"], "LimitExceededException")
        page = self.logs.describe_subscription_filters(logGroupName=group, limit=1)
        self.assertEqual([f["filterName"] for f in page["subscriptionFilters"]], ["a"])
        self.assertEqual([f["filterName"] for f in self.logs.describe_subscription_filters(logGroupName=group, limit=1, nextToken=page["nextToken"])["subscriptionFilters"]], ["b"])
        self.assertEqual([f["filterName"] for f in self.logs.describe_subscription_filters(logGroupName=group, filterNamePrefix="b")["subscriptionFilters"]], ["b"])

        # Bad input.
        for kwargs, code, text in [
            ({"filterPattern": '{ $.level = '}, "InvalidParameterException", "Invalid subscription filter pattern"),
            ({"destinationArn": "arn:aws:kinesis:us-east-1:000000000000:stream/logs"}, "InvalidParameterException", "Lambda functions only"),
            ({"destinationArn": "arn:aws:firehose:us-east-1:000000000000:deliverystream/logs"}, "InvalidParameterException", "Lambda functions only"),
            ({"destinationArn": sink_arn.replace(sink, sink + "-missing")}, "InvalidParameterException", "Could not execute the lambda function"),
            ({"destinationArn": "not-an-arn"}, "InvalidParameterException", "not an ARN"),
            ({"logGroupName": group + "-missing"}, "ResourceNotFoundException", "log group does not exist"),
            ({"distribution": "Sideways"}, "InvalidParameterException", "distribution"),
            ({"filterName": "a:b"}, "InvalidParameterException", "filterName"),
        ]:
            with self.subTest(kwargs=kwargs):
                call = {"logGroupName": group, "filterName": "a", "filterPattern": "", "destinationArn": sink_arn, **kwargs}
                err = self._logs_error(lambda: self.logs.put_subscription_filter(**call))
                self.assertEqual(err.response["Error"]["Code"], code)
                self.assertIn(text, err.response["Error"]["Message"])
        self.assertEqual(self._logs_error(lambda: self.logs.describe_subscription_filters(logGroupName=group + "-missing")).response["Error"]["Code"],
                         "ResourceNotFoundException")

        # A function never receives its own log lines: subscribing it to its own group is refused, and so is a loop
        # through another function (A receives B's lines, so B may not receive A's).
        own = f"/aws/lambda/{sink}"
        self.logs.create_log_group(logGroupName=own)
        self._allow(sink, own)
        err = self._logs_error(lambda: self.logs.put_subscription_filter(logGroupName=own, filterName="self", filterPattern="", destinationArn=sink_arn))
        self.assertIn("its own log events", err.response["Error"]["Message"])
        other, other_arn = self._sink(own)
        self.logs.put_subscription_filter(logGroupName=own, filterName="to-other", filterPattern="DELIVERY", destinationArn=other_arn)
        other_group = f"/aws/lambda/{other}"
        self.logs.create_log_group(logGroupName=other_group)
        self._allow(sink, other_group)
        err = self._logs_error(lambda: self.logs.put_subscription_filter(logGroupName=other_group, filterName="back", filterPattern="", destinationArn=sink_arn))
        self.assertIn("its own log events", err.response["Error"]["Message"])

        # Delete: the filter, then a missing one; a deleted group takes its filters with it.
        self.logs.delete_subscription_filter(logGroupName=group, filterName="b")
        self.assertEqual([f["filterName"] for f in self.logs.describe_subscription_filters(logGroupName=group)["subscriptionFilters"]], ["a"])
        err = self._logs_error(lambda: self.logs.delete_subscription_filter(logGroupName=group, filterName="b"))
        self.assertEqual((err.response["Error"]["Code"], err.response["Error"]["Message"]),
                         ("ResourceNotFoundException", "The specified subscription filter does not exist."))
        self.logs.delete_log_group(logGroupName=group)
        self.logs.create_log_group(logGroupName=group)
        self.assertEqual(self.logs.describe_subscription_filters(logGroupName=group)["subscriptionFilters"], [])

    def test_function_logs_reach_a_subscribed_function(self):
        source = self._fn()
        group = f"/aws/lambda/{source}"
        # As on AWS, the group must exist before a filter is put on it (here: created ahead of the first invocation).
        self.logs.create_log_group(logGroupName=group)
        sink, sink_arn = self._sink(group)
        self.logs.put_subscription_filter(logGroupName=group, filterName="greetings", filterPattern='"hello from"', destinationArn=sink_arn)
        for n in (1, 2, 3):
            self.invoke_ok(source, {"n": n})

        deliveries = self._deliveries(sink, lambda d: sum(len(m["logEvents"]) for m in d) >= 3)
        stream = self._stream(group)
        for message in deliveries:
            self.assertEqual({k: message[k] for k in ("messageType", "owner", "logGroup", "logStream", "subscriptionFilters")},
                             {"messageType": "DATA_MESSAGE", "owner": "000000000000", "logGroup": group, "logStream": stream, "subscriptionFilters": ["greetings"]})
        received = sorted((e for m in deliveries for e in m["logEvents"]), key=lambda e: e["id"])
        # Only the matching lines (not the JSON lines, START, END or REPORT), each once, with the ids and timestamps
        # FilterLogEvents gives the same events.
        self.assertEqual([e["message"] for e in received], ["hello from 1", "hello from 2", "hello from 3"])
        stored = self.logs.filter_log_events(logGroupName=group, filterPattern='"hello from"')["events"]
        self.assertEqual([(e["id"], e["timestamp"]) for e in received], [(e["eventId"], e["timestamp"]) for e in stored])

    def test_put_log_events_reach_a_subscribed_function_set_up_with_cli_v1(self):
        group = "/lamina/app/" + self.fn_name()
        self.logs.create_log_group(logGroupName=group)
        self.logs.create_log_stream(logGroupName=group, logStreamName="worker-1")
        err = self._logs_error(lambda: self.logs.create_log_stream(logGroupName=group, logStreamName="worker-1"))
        self.assertEqual(err.response["Error"]["Code"], "ResourceAlreadyExistsException")
        sink, sink_arn = self._sink(group)
        r = self.server.aws_cli("logs", "put-subscription-filter", "--log-group-name", group, "--filter-name", "errors",
                                "--filter-pattern", '{ $.level = "ERROR" }', "--destination-arn", sink_arn)
        self.assertEqual(r.rc, 0, r)
        r = self.server.aws_cli("logs", "describe-subscription-filters", "--log-group-name", group)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual([(f["filterName"], f["destinationArn"]) for f in r.json["subscriptionFilters"]], [("errors", sink_arn)])

        now = int(time.time() * 1000)
        lines = [{"level": "INFO", "n": 1}, {"level": "ERROR", "n": 2}, {"level": "INFO", "n": 3}, {"level": "ERROR", "n": 4}]
        answer = self.logs.put_log_events(logGroupName=group, logStreamName="worker-1",
                                          logEvents=[{"timestamp": now + i, "message": json.dumps(line)} for i, line in enumerate(lines)])
        self.assertNotIn("rejectedLogEventsInfo", answer)
        [delivery] = self._deliveries(sink, lambda d: len(d) >= 1)
        self.assertEqual((delivery["logGroup"], delivery["logStream"], delivery["subscriptionFilters"]), (group, "worker-1", ["errors"]))
        self.assertEqual([(e["timestamp"], json.loads(e["message"])["n"]) for e in delivery["logEvents"]], [(now + 1, 2), (now + 3, 4)])
        # The events are stored too, with their own timestamps.
        stored = self.logs.get_log_events(logGroupName=group, logStreamName="worker-1", startFromHead=True)["events"]
        self.assertEqual([e["timestamp"] for e in stored], [now, now + 1, now + 2, now + 3])

        # PutLogEvents' own rules: chronological order, an existing stream, events too old or too new reported and skipped.
        err = self._logs_error(lambda: self.logs.put_log_events(logGroupName=group, logStreamName="worker-1",
                                                               logEvents=[{"timestamp": now, "message": "b"}, {"timestamp": now - 1, "message": "a"}]))
        self.assertIn("chronological order", err.response["Error"]["Message"])
        err = self._logs_error(lambda: self.logs.put_log_events(logGroupName=group, logStreamName="nope", logEvents=[{"timestamp": now, "message": "a"}]))
        self.assertEqual((err.response["Error"]["Code"], err.response["Error"]["Message"]), ("ResourceNotFoundException", "The specified log stream does not exist."))
        answer = self.logs.put_log_events(logGroupName=group, logStreamName="worker-1", logEvents=[
            {"timestamp": now - 15 * 86_400_000, "message": "ancient"}, {"timestamp": now + 10, "message": "fresh"},
            {"timestamp": now + 3 * 3_600_000, "message": "future"}])
        self.assertEqual(answer["rejectedLogEventsInfo"], {"tooOldLogEventEndIndex": 1, "tooNewLogEventStartIndex": 2})
        stored = self.logs.get_log_events(logGroupName=group, logStreamName="worker-1", startFromHead=True)["events"]
        self.assertEqual(stored[-1]["message"], "fresh")
        self.assertNotIn("ancient", [e["message"] for e in stored])

        r = self.server.aws_cli("logs", "delete-subscription-filter", "--log-group-name", group, "--filter-name", "errors")
        self.assertEqual(r.rc, 0, r)
        r = self.server.aws_cli("logs", "describe-subscription-filters", "--log-group-name", group)
        self.assertEqual(r.json["subscriptionFilters"], [])
        r = self.server.aws_cli("logs", "delete-subscription-filter", "--log-group-name", group, "--filter-name", "errors")
        self.assertNotEqual(r.rc, 0)
        self.assertIn("ResourceNotFoundException", r.stderr)

    def _logs_error(self, call) -> botocore.exceptions.ClientError:
        try:
            call()
        except botocore.exceptions.ClientError as e:
            self.assertEqual(e.response["ResponseMetadata"]["HTTPStatusCode"], 400, e.response)
            return e
        self.fail("expected an error")


class SubscriptionDurabilityTests(unittest.TestCase):

    def test_filters_survive_a_restart_and_deliver_after_it(self):
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            self.skipTest("needs a server of its own")
        data_dir = Path(tempfile.mkdtemp(prefix="lamina-it-subscriptions-"))
        self.addCleanup(shutil.rmtree, data_dir, True)
        group = "/lamina/kept"
        first = h.LaminaServer("subscriptions-1", data_dir=data_dir).start()
        try:
            lam, logs = h.boto3_client(first.url, "lambda"), h.boto3_client(first.url, "logs")
            arn = lam.create_function(FunctionName="sink", Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                                      Code={"ZipFile": h.make_zip({"app.py": SINK_PY})})["FunctionArn"]
            lam.add_permission(FunctionName="sink", StatementId="logs", Action="lambda:InvokeFunction", Principal="logs.amazonaws.com",
                               SourceArn=f"arn:aws:logs:us-east-1:000000000000:log-group:{group}:*")
            logs.create_log_group(logGroupName=group)
            logs.create_log_stream(logGroupName=group, logStreamName="s")
            logs.put_subscription_filter(logGroupName=group, filterName="kept", filterPattern="kept", destinationArn=arn)
            before = logs.describe_subscription_filters(logGroupName=group)["subscriptionFilters"]
        finally:
            first.stop()
        second = h.LaminaServer("subscriptions-2", data_dir=data_dir).start()
        try:
            logs = h.boto3_client(second.url, "logs")
            self.assertEqual(logs.describe_subscription_filters(logGroupName=group)["subscriptionFilters"], before)
            logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=[{"timestamp": int(time.time() * 1000), "message": "kept after restart"}])

            def delivered() -> bool:
                try:
                    return bool(logs.filter_log_events(logGroupName="/aws/lambda/sink", filterPattern='"kept after restart"')["events"])
                except logs.exceptions.ResourceNotFoundException:
                    return False  # the sink has not run yet
            deadline = time.monotonic() + 60
            while not delivered():
                self.assertLess(time.monotonic(), deadline, "the event did not reach the subscribed function after the restart")
                time.sleep(0.1)
        finally:
            second.stop()


if __name__ == "__main__":
    unittest.main()
