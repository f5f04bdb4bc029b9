"""EventBridge-compatible rules (issue #10) with boto3's `events` client and the AWS CLI: buses, rules, targets,
PutEvents delivering matching entries (and only those) to a function through the asynchronous queue, AWS's pattern
language through TestEventPattern, Input / InputPath / InputTransformer, the resource policy a rule needs, a
cron(* * * * ? *) schedule firing within a minute, and rules surviving a restart."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import unittest
from pathlib import Path

import botocore.exceptions
import requests

import lamina_harness as h

MODULE = __name__

# Prints every event it gets on one line.
SINK_PY = '''
import json

def handler(event, context):
    print("EVENT", json.dumps(event, separators=(",", ":")), flush=True)
'''


def setUpModule():
    os.environ["Logging__LogLevel__Lamina.Function"] = "Debug"
    try:
        h.start_module_server(MODULE)
    finally:
        del os.environ["Logging__LogLevel__Lamina.Function"]


def tearDownModule():
    h.stop_module_server(MODULE)


class EventRulesTests(h.LaminaTestCase):

    @property
    def events(self):
        if not hasattr(self, "_events"):
            self._events = h.boto3_client(self.server.url, "events")
        return self._events

    def _sink(self, rule_arn: str | None = None) -> tuple[str, str]:
        """A function printing its events; with `rule_arn`, the permission that lets the rule invoke it."""
        name = self.fn_name("sink")
        self.create_function(h.make_zip({"app.py": SINK_PY}), name=name)
        if rule_arn:
            self.lam.add_permission(FunctionName=name, StatementId="events", Action="lambda:InvokeFunction",
                                    Principal="events.amazonaws.com", SourceArn=rule_arn)
        return name, h.function_arn(name)

    def _rule(self, suffix: str, **kwargs) -> tuple[str, str]:
        name = self.fn_name(suffix)[:64]
        arn = self.events.put_rule(Name=name, **kwargs)["RuleArn"]
        self.addCleanup(self._delete_rule, name, kwargs.get("EventBusName"))
        return name, arn

    def _delete_rule(self, name: str, bus: str | None) -> None:
        try:
            self.events.delete_rule(Name=name, Force=True, **({"EventBusName": bus} if bus else {}))
        except botocore.exceptions.ClientError:
            pass

    def _received(self, mark: int, function: str) -> list[dict]:
        pattern = r"\[" + re.escape(function) + r"\] EVENT (\{.*\})"
        return [json.loads(m.group(1)) for m in re.finditer(pattern, self.server.output_since(mark, limit=100000))]

    def _wait_received(self, mark: int, function: str, count: int, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            got = self._received(mark, function)
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                self.fail(f"{len(got)} of {count} events reached {function} within {timeout} s:\n{self.server.output_since(mark)}")
            time.sleep(0.1)

    def _wait_queue_empty(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            metrics = requests.get(f"{self.server.url}/metrics", timeout=30).text
            depth = re.search(r"^lamina_async_queue_depth (\d+)", metrics, re.M)
            if depth and depth.group(1) == "0":
                return
            if time.monotonic() > deadline:
                self.fail(f"the asynchronous queue did not drain within {timeout} s")
            time.sleep(0.1)

    def test_pattern_rule_delivers_matching_entries_and_only_those(self):
        rule, rule_arn = self._rule("orders", EventPattern=json.dumps({
            "source": ["shop.orders"], "detail-type": ["OrderPlaced"],
            "detail": {"total": [{"numeric": [">", 100]}], "country": [{"anything-but": "XX"}]}}))
        sink, sink_arn = self._sink(rule_arn)
        self.events.put_targets(Rule=rule, Targets=[{"Id": "sink", "Arn": sink_arn}])
        mark = self.server.mark()
        entries = [
            {"Source": "shop.orders", "DetailType": "OrderPlaced", "Detail": json.dumps({"id": "m1", "total": 150, "country": "DE"})},
            {"Source": "shop.orders", "DetailType": "OrderPlaced", "Detail": json.dumps({"id": "x1", "total": 50, "country": "DE"})},
            {"Source": "shop.orders", "DetailType": "OrderPlaced", "Detail": json.dumps({"id": "x2", "total": 500, "country": "XX"})},
            {"Source": "shop.other", "DetailType": "OrderPlaced", "Detail": json.dumps({"id": "x3", "total": 500, "country": "DE"})},
            {"Source": "shop.orders", "DetailType": "OrderPlaced", "Detail": json.dumps({"id": "m2", "total": 101, "country": "FR"}),
             "Resources": ["arn:aws:s3:::bucket"]},
        ]
        put = self.events.put_events(Entries=entries)
        self.assertEqual(put["FailedEntryCount"], 0, put)
        self.assertEqual(len(put["Entries"]), 5)
        received = self._wait_received(mark, sink, 2)
        self._wait_queue_empty()
        received = self._received(mark, sink)
        self.assertEqual(sorted(e["detail"]["id"] for e in received), ["m1", "m2"])
        event = next(e for e in received if e["detail"]["id"] == "m2")
        self.assertEqual((event["source"], event["detail-type"], event["version"], event["account"], event["region"]),
                         ("shop.orders", "OrderPlaced", "0", "000000000000", "us-east-1"))
        self.assertEqual(event["resources"], ["arn:aws:s3:::bucket"])
        self.assertIn(event["id"], [e["EventId"] for e in put["Entries"]])
        self.assertRegex(event["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

    def test_target_input_forms(self):
        rule, rule_arn = self._rule("inputs", EventPattern=json.dumps({"source": ["inputs.test"]}))
        constant, constant_arn = self._sink(rule_arn)
        path, path_arn = self._sink(rule_arn)
        transformed, transformed_arn = self._sink(rule_arn)
        put = self.events.put_targets(Rule=rule, Targets=[
            {"Id": "constant", "Arn": constant_arn, "Input": json.dumps({"fixed": True})},
            {"Id": "path", "Arn": path_arn, "InputPath": "$.detail.order"},
            {"Id": "transformed", "Arn": transformed_arn, "InputTransformer": {
                "InputPathsMap": {"id": "$.detail.order.id", "count": "$.detail.order.count"},
                "InputTemplate": '{"message": "order <id> has <count> items", "count": <count>, "rule": "<aws.events.rule-name>"}'}},
        ])
        self.assertEqual(put["FailedEntryCount"], 0, put)
        listed = self.events.list_targets_by_rule(Rule=rule)["Targets"]
        self.assertEqual([t["Id"] for t in listed], ["constant", "path", "transformed"])
        mark = self.server.mark()
        self.events.put_events(Entries=[{"Source": "inputs.test", "DetailType": "t",
                                         "Detail": json.dumps({"order": {"id": "o-7", "count": 3}})}])
        self.assertEqual(self._wait_received(mark, constant, 1)[0], {"fixed": True})
        self.assertEqual(self._wait_received(mark, path, 1)[0], {"id": "o-7", "count": 3})
        self.assertEqual(self._wait_received(mark, transformed, 1)[0],
                         {"message": "order o-7 has 3 items", "count": 3, "rule": rule})

    def test_a_rule_needs_the_functions_permission(self):
        rule, rule_arn = self._rule("perm", EventPattern=json.dumps({"source": ["perm.test"]}))
        sink, sink_arn = self._sink()  # no permission yet
        self.events.put_targets(Rule=rule, Targets=[{"Id": "sink", "Arn": sink_arn}])
        mark = self.server.mark()
        self.events.put_events(Entries=[{"Source": "perm.test", "DetailType": "t", "Detail": '{"n": 1}'}])
        # The server's log reaches the harness through a pipe a thread reads: poll for the line, bounded by a deadline.
        deadline = time.monotonic() + 15
        while "may not invoke" not in self.server.output_since(mark, limit=100000):
            self.assertLess(time.monotonic(), deadline, f"no 'may not invoke' in the server log:\n{self.server.output_since(mark)}")
            time.sleep(0.05)
        self._wait_queue_empty()
        self.assertEqual(self._received(mark, sink), [])
        self.lam.add_permission(FunctionName=sink, StatementId="events", Action="lambda:InvokeFunction",
                                Principal="events.amazonaws.com", SourceArn=rule_arn)
        self.events.put_events(Entries=[{"Source": "perm.test", "DetailType": "t", "Detail": '{"n": 2}'}])
        self.assertEqual([e["detail"]["n"] for e in self._wait_received(mark, sink, 1)], [2])

    def test_disabled_rules_and_named_buses(self):
        self.events.create_event_bus(Name="orders-bus")
        self.addCleanup(self.events.delete_event_bus, Name="orders-bus")
        rule, rule_arn = self._rule("onbus", EventBusName="orders-bus", EventPattern=json.dumps({"source": ["bus.test"]}))
        self.assertEqual(rule_arn, f"arn:aws:events:us-east-1:000000000000:rule/orders-bus/{rule}")
        sink, sink_arn = self._sink(rule_arn)
        self.events.put_targets(Rule=rule, EventBusName="orders-bus", Targets=[{"Id": "sink", "Arn": sink_arn}])
        mark = self.server.mark()
        # On the default bus, nothing matches; on the named bus it does; disabled, nothing.
        self.events.put_events(Entries=[{"Source": "bus.test", "DetailType": "t", "Detail": '{"n": 1}'}])
        self.events.put_events(Entries=[{"Source": "bus.test", "DetailType": "t", "Detail": '{"n": 2}', "EventBusName": "orders-bus"}])
        self.events.disable_rule(Name=rule, EventBusName="orders-bus")
        self.assertEqual(self.events.describe_rule(Name=rule, EventBusName="orders-bus")["State"], "DISABLED")
        self.events.put_events(Entries=[{"Source": "bus.test", "DetailType": "t", "Detail": '{"n": 3}', "EventBusName": "orders-bus"}])
        self._wait_received(mark, sink, 1)
        self._wait_queue_empty()
        self.assertEqual([e["detail"]["n"] for e in self._received(mark, sink)], [2])
        buses = [b["Name"] for b in self.events.list_event_buses()["EventBuses"]]
        self.assertIn("default", buses)
        self.assertIn("orders-bus", buses)

    def test_pattern_language(self):
        event = {"version": "0", "id": "1", "detail-type": "Order", "source": "com.shop", "account": "000000000000",
                 "time": "2026-01-01T00:00:00Z", "region": "us-east-1", "resources": ["arn:aws:ec2:us-east-1:000000000000:instance/i-1"],
                 "detail": {"state": "running", "price": 42.5, "tags": ["a", "b"], "ip": "10.0.1.7", "empty": None,
                            "nested": {"kind": "Express"}, "file": "report.PDF"}}

        def matches(pattern: dict) -> bool:
            return self.events.test_event_pattern(EventPattern=json.dumps(pattern), Event=json.dumps(event))["Result"]

        cases = [
            ({"source": ["com.shop"]}, True),
            ({"source": ["com.other"]}, False),
            ({"source": [{"prefix": "com."}]}, True),
            ({"detail": {"file": [{"suffix": ".PDF"}]}}, True),
            ({"detail": {"file": [{"suffix": {"equals-ignore-case": ".pdf"}}]}}, True),
            ({"detail": {"state": [{"equals-ignore-case": "RUNNING"}]}}, True),
            ({"detail": {"state": [{"anything-but": "running"}]}}, False),
            ({"detail": {"state": [{"anything-but": ["stopped", "pending"]}]}}, True),
            ({"detail": {"state": [{"anything-but": {"prefix": "run"}}]}}, False),
            ({"detail": {"price": [{"numeric": [">", 40, "<=", 42.5]}]}}, True),
            ({"detail": {"price": [{"numeric": ["<", 40]}]}}, False),
            ({"detail": {"price": [42.5]}}, True),
            ({"detail": {"missing": [{"exists": False}]}}, True),
            ({"detail": {"state": [{"exists": True}]}}, True),
            ({"detail": {"state": [{"exists": False}]}}, False),
            ({"detail": {"empty": [None]}}, True),
            ({"detail": {"tags": ["b"]}}, True),
            ({"detail": {"tags": ["c"]}}, False),
            ({"detail": {"nested": {"kind": ["Express"]}}}, True),
            ({"detail": {"ip": [{"cidr": "10.0.0.0/16"}]}}, True),
            ({"detail": {"ip": [{"cidr": "10.1.0.0/16"}]}}, False),
            ({"detail": {"file": [{"wildcard": "report.*"}]}}, True),
            ({"source": ["com.shop"], "$or": [{"detail": {"state": ["stopped"]}}, {"detail": {"price": [{"numeric": [">", 10]}]}}]}, True),
            ({"$or": [{"source": ["x"]}, {"detail-type": ["y"]}]}, False),
            ({"source": ["com.shop"], "detail": {"state": ["stopped"]}}, False),
        ]
        for pattern, expected in cases:
            with self.subTest(pattern=pattern):
                self.assertEqual(matches(pattern), expected)
        with self.assertRaises(botocore.exceptions.ClientError) as bad:
            self.events.test_event_pattern(EventPattern=json.dumps({"source": "not-an-array"}), Event=json.dumps(event))
        self.assertEqual(bad.exception.response["Error"]["Code"], "InvalidEventPatternException")

    def test_api_errors_and_the_cli(self):
        def code(call) -> str:
            with self.assertRaises(botocore.exceptions.ClientError) as caught:
                call()
            return caught.exception.response["Error"]["Code"]

        self.assertEqual(code(lambda: self.events.describe_rule(Name="no-such-rule")), "ResourceNotFoundException")
        self.assertEqual(code(lambda: self.events.put_rule(Name="bad", EventPattern="{not json")), "InvalidEventPatternException")
        self.assertEqual(code(lambda: self.events.put_rule(Name="bad", ScheduleExpression="rate(1 minutes)")), "ValidationException")
        self.assertEqual(code(lambda: self.events.put_rule(Name="bad", ScheduleExpression="cron(* * * * * *)")), "ValidationException")
        self.assertEqual(code(lambda: self.events.put_rule(Name="bad")), "ValidationException")
        self.assertEqual(code(lambda: self.events.put_rule(Name="bad", EventBusName="nope", EventPattern='{"source":["x"]}')),
                         "ResourceNotFoundException")
        rule, _ = self._rule("errs", EventPattern='{"source":["x"]}')
        _, sink_arn = self._sink()
        self.events.put_targets(Rule=rule, Targets=[{"Id": "t", "Arn": sink_arn}])
        self.assertEqual(code(lambda: self.events.delete_rule(Name=rule)), "ValidationException")
        refused = self.events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": "arn:aws:sqs:us-east-1:000000000000:queue"}])
        self.assertEqual(refused["FailedEntryCount"], 1)
        failed = self.events.put_events(Entries=[{"Source": "x", "DetailType": "t", "Detail": "not json"}])
        self.assertEqual((failed["FailedEntryCount"], failed["Entries"][0]["ErrorCode"]), (1, "MalformedDetail"))
        self.events.remove_targets(Rule=rule, Ids=["t"])
        self.events.delete_rule(Name=rule)
        self.assertEqual(code(lambda: self.events.describe_rule(Name=rule)), "ResourceNotFoundException")

        cli_rule = self.fn_name("cli")[:64]
        self.addCleanup(self._delete_rule, cli_rule, None)
        put = self.server.aws_cli("events", "put-rule", "--name", cli_rule, "--schedule-expression", "rate(5 minutes)")
        self.assertEqual(put.rc, 0, put)
        self.assertEqual(put.json["RuleArn"], f"arn:aws:events:us-east-1:000000000000:rule/{cli_rule}")
        listed = self.server.aws_cli("events", "list-rules", "--name-prefix", cli_rule)
        self.assertEqual(listed.rc, 0, listed)
        self.assertEqual([r["ScheduleExpression"] for r in listed.json["Rules"]], ["rate(5 minutes)"])

    @h.slow
    def test_cron_every_minute_fires_within_a_minute(self):
        rule, rule_arn = self._rule("cron", ScheduleExpression="cron(* * * * ? *)")
        sink, sink_arn = self._sink(rule_arn)
        self.events.put_targets(Rule=rule, Targets=[{"Id": "sink", "Arn": sink_arn}])
        mark = self.server.mark()
        started = time.time()
        event = self._wait_received(mark, sink, 1, timeout=90)[0]
        self.assertLess(time.time() - started, 75)
        self.assertEqual((event["source"], event["detail-type"], event["detail"]), ("aws.events", "Scheduled Event", {}))
        self.assertEqual(event["resources"], [rule_arn])
        self.assertRegex(event["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:00Z$")


class EventRulesDurabilityTests(unittest.TestCase):

    def test_buses_rules_and_targets_survive_a_restart(self):
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            self.skipTest("needs a server of its own")
        data_dir = Path(tempfile.mkdtemp(prefix="lamina-it-rules-"))
        self.addCleanup(shutil.rmtree, data_dir, True)
        target = "arn:aws:lambda:us-east-1:000000000000:function:any"
        first = h.LaminaServer("rules-1", data_dir=data_dir).start()
        try:
            events = h.boto3_client(first.url, "events")
            events.create_event_bus(Name="kept-bus")
            events.put_rule(Name="kept", EventPattern='{"source":["a"]}', Description="d", EventBusName="kept-bus")
            events.put_rule(Name="ticking", ScheduleExpression="rate(1 hour)", State="DISABLED")
            events.put_targets(Rule="kept", EventBusName="kept-bus", Targets=[{"Id": "t1", "Arn": target, "InputPath": "$.detail"}])
            before = (events.describe_rule(Name="kept", EventBusName="kept-bus"), events.describe_rule(Name="ticking"))
        finally:
            first.stop()
        second = h.LaminaServer("rules-2", data_dir=data_dir).start()
        try:
            events = h.boto3_client(second.url, "events")
            after = (events.describe_rule(Name="kept", EventBusName="kept-bus"), events.describe_rule(Name="ticking"))
            for b, a in zip(before, after):
                b.pop("ResponseMetadata")
                a.pop("ResponseMetadata")
            self.assertEqual(after, before)
            self.assertEqual(events.list_targets_by_rule(Rule="kept", EventBusName="kept-bus")["Targets"],
                             [{"Id": "t1", "Arn": target, "InputPath": "$.detail"}])
        finally:
            second.stop()
