"""Durable functions (issue #24, Lambda API 2025-12-01) with AWS's own durable execution SDK for JavaScript
(npm @aws/durable-execution-sdk-js, unchanged) in a nodejs22.x function: two steps, a 5-second wait and a callback
completed by the AWS CLI; then the same with a kill -9 of the server during the wait, completed through the AWS SDK
for JavaScript v3 after the restart. Each step's side effect (a log line) happens once. Plus the APIs' shapes and
errors with boto3: DurableConfig, GetDurableExecution, ListDurableExecutionsByFunction, GetDurableExecutionHistory,
StopDurableExecution, callbacks."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
import uuid
from pathlib import Path

import botocore.exceptions

import lamina_harness as h

MODULE = __name__

WORKFLOW = r"""
import { withDurableExecution } from '@aws/durable-execution-sdk-js';

export const handler = withDurableExecution(async (event, context) => {
  const first = await context.step('first', async () => {
    console.log(`SIDE-EFFECT first ${event.tag}`);
    return { n: event.n + 1 };
  });
  const second = await context.step('second', async () => {
    console.log(`SIDE-EFFECT second ${event.tag}`);
    return first.n * 10;
  });
  await context.wait('pause', { seconds: event.waitSeconds ?? 5 });
  const approval = await context.waitForCallback('approval', async (callbackId) => {
    console.log(`CALLBACK ${event.tag} ${callbackId}`);
  }, { timeout: { seconds: event.callbackTimeout ?? 300 } });
  return { first, second, approval: JSON.parse(approval) };
});
"""

# context.invoke (chained invokes): a plain function's result, a throwing function's error caught, and optionally a
# durable function (child.mjs) started as an execution of its own.
CHAIN_WORKFLOW = r"""
import { withDurableExecution } from '@aws/durable-execution-sdk-js';

export const handler = withDurableExecution(async (event, context) => {
  const base = await context.step('base', async () => {
    console.log(`BASE-RAN ${event.tag}`);
    return event.n * 2;
  });
  const plain = await context.invoke('plain', event.plain, { tag: event.tag, n: base, sleep: event.sleep ?? 0 });
  let failure = 'no error';
  if (event.thrower) {
    try {
      await context.invoke('thrower', event.thrower, { tag: event.tag });
    } catch (e) {
      failure = { name: e.name, message: e.message };
    }
  }
  const child = event.child
    ? await context.invoke('child', event.child, { n: plain.n, ...(event.childWait ? { waitSeconds: event.childWait } : {}) })
    : null;
  return { base, plain, failure, child };
});
"""

CHILD_WORKFLOW = r"""
import { withDurableExecution } from '@aws/durable-execution-sdk-js';

export const handler = withDurableExecution(async (event, context) => {
  const tripled = await context.step('triple', async () => event.n * 3);
  if (event.waitSeconds) {
    await context.wait('pause', { seconds: event.waitSeconds });
  }
  return { tripled };
});
"""

# The plain targets (python3.12): each prints a line per run, so the test can count the runs.
PLAIN_TARGET = """
import time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    print(f"TARGET-RAN {event['tag']}")
    return {"n": event["n"] + 1}
"""

THROWING_TARGET = """
def handler(event, context):
    print(f"THROWER-RAN {event['tag']}")
    raise ValueError(f"boom {event['tag']}")
"""

# Runs on the host: completes a callback with the AWS SDK for JavaScript v3.
JS_CALLBACK = r"""
const { LambdaClient, SendDurableExecutionCallbackSuccessCommand } = require('@aws-sdk/client-lambda');
(async () => {
  const [endpoint, callbackId, result] = process.argv.slice(2);
  const client = new LambdaClient({ endpoint, region: 'us-east-1', credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' } });
  await client.send(new SendDurableExecutionCallbackSuccessCommand({ CallbackId: callbackId, Result: Buffer.from(result) }));
  console.log('sent');
})().catch((e) => { console.error(e.name, e.message); process.exit(1); });
"""

_ZIP: list[bytes] = []


def workflow_zip() -> bytes:
    if not _ZIP:
        done = subprocess.run([str(h.REPO_ROOT / "tests/integration/prepare_js_durable.sh")], capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise AssertionError(f"prepare_js_durable.sh failed ({done.returncode}): {done.stderr[-3000:]}")
        modules = Path(done.stdout.strip().splitlines()[-1])
        files = {"node_modules/" + p.relative_to(modules).as_posix(): p.read_bytes() for p in sorted(modules.rglob("*")) if p.is_file()}
        _ZIP.append(h.make_zip({**files, "index.mjs": WORKFLOW, "chain.mjs": CHAIN_WORKFLOW, "child.mjs": CHILD_WORKFLOW}))
    return _ZIP[0]


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


def poll(what, check, timeout: float = 60, interval: float = 0.2):
    """Calls `what` until `check(value)` holds (returns the value) or the deadline passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s; last value: {str(value)[:3000]}")
        time.sleep(interval)


class DurableMixin:
    """Helpers shared by the module's server and the kill -9 test's own servers; `lam` is a boto3 Lambda client."""

    def create_workflow(self, lam, name: str, handler: str = "index.handler", **durable) -> None:
        lam.create_function(FunctionName=name, Runtime="nodejs22.x", Role=h.ROLE, Handler=handler, Timeout=30, MemorySize=256,
                            Code={"ZipFile": workflow_zip()}, DurableConfig={"ExecutionTimeout": 300, "RetentionPeriodInDays": 1, **durable})

    def create_plain(self, lam, name: str, source: str) -> None:
        lam.create_function(FunctionName=name, Runtime="python3.12", Role=h.ROLE, Handler="app.handler", Timeout=30,
                            Code={"ZipFile": h.make_zip({"app.py": source})})

    def log_count(self, logs, name: str, marker: str, tag: str) -> int:
        """How many log events of function `name` contain `marker tag` (how many times it ran for this test)."""
        count = 0
        for page in logs.get_paginator("filter_log_events").paginate(logGroupName=f"/aws/lambda/{name}", filterPattern=f'"{marker}"'):
            count += sum(f"{marker} {tag}" in e["message"] for e in page["events"])
        return count

    def start(self, lam, name: str, execution: str, event: dict) -> str:
        resp = lam.invoke(FunctionName=name, InvocationType="Event", DurableExecutionName=execution, Payload=json.dumps(event).encode())
        self.assertEqual(resp["StatusCode"], 202)
        arn = resp["DurableExecutionArn"]
        self.assertRegex(arn, rf":function:{name}:\$LATEST/durable-execution/{execution}/[A-Za-z0-9_-]+$")
        return arn

    def history(self, lam, arn: str) -> list[dict]:
        return lam.get_durable_execution_history(DurableExecutionArn=arn, IncludeExecutionData=True)["Events"]

    def callback_id(self, lam, arn: str, timeout: float = 60) -> str:
        events = poll(lambda: self.history(lam, arn), lambda ev: any(e["EventType"] == "CallbackStarted" for e in ev), timeout)
        return next(e for e in events if e["EventType"] == "CallbackStarted")["CallbackStartedDetails"]["CallbackId"]

    def side_effects(self, logs, name: str, tag: str) -> dict[str, int]:
        messages = []
        for page in logs.get_paginator("filter_log_events").paginate(logGroupName=f"/aws/lambda/{name}", filterPattern=f'"SIDE-EFFECT"'):
            messages += [e["message"] for e in page["events"] if tag in e["message"]]
        return {step: sum(f"SIDE-EFFECT {step} {tag}" in m for m in messages) for step in ("first", "second")}


class DurableWorkflowTests(DurableMixin, h.LaminaTestCase):

    def test_two_steps_a_wait_and_a_callback_from_the_aws_cli(self):
        name = self.fn_name()
        self.create_workflow(self.lam, name)
        self.addCleanup(self._delete_quietly, name)
        config = self.lam.get_function_configuration(FunctionName=name)
        self.assertEqual(config["DurableConfig"], {"ExecutionTimeout": 300, "RetentionPeriodInDays": 1})
        tag = uuid.uuid4().hex[:8]
        arn = self.start(self.lam, name, f"order-{tag}", {"tag": tag, "n": 4})

        # Suspended in the wait: RUNNING, no environment busy, and the wait lasts its 5 seconds.
        callback_id = self.callback_id(self.lam, arn)
        execution = self.lam.get_durable_execution(DurableExecutionArn=arn)
        self.assertEqual((execution["Status"], execution["DurableExecutionName"], execution["Version"]), ("RUNNING", f"order-{tag}", "$LATEST"))
        self.assertEqual(json.loads(execution["InputPayload"]), {"tag": tag, "n": 4})
        events = self.history(self.lam, arn)
        kinds = [e["EventType"] for e in events]
        for expected in ("ExecutionStarted", "StepSucceeded", "WaitStarted", "WaitSucceeded", "CallbackStarted", "InvocationCompleted"):
            self.assertIn(expected, kinds)
        # The two steps, then waitForCallback's own child context and submitter step.
        self.assertEqual([e.get("Name") for e in events if e["EventType"] == "StepSucceeded"][:2], ["first", "second"], events)
        self.assertIn("ContextStarted", kinds)
        waited = [e for e in events if e["EventType"] in ("WaitStarted", "WaitSucceeded")]
        self.assertGreaterEqual((waited[1]["EventTimestamp"] - waited[0]["EventTimestamp"]).total_seconds(), 4.9)
        self.assertEqual([e["EventId"] for e in events], list(range(1, len(events) + 1)))

        sent = self.server.aws_cli("lambda", "send-durable-execution-callback-success", "--callback-id", callback_id, "--result", '{"approved": true}')
        self.assertEqual(sent.rc, 0, sent)
        done = poll(lambda: self.lam.get_durable_execution(DurableExecutionArn=arn), lambda e: e["Status"] != "RUNNING", 60)
        self.assertEqual(done["Status"], "SUCCEEDED", done)
        self.assertEqual(json.loads(done["Result"]), {"first": {"n": 5}, "second": 50, "approval": {"approved": True}})
        self.assertIn("EndTimestamp", done)

        # Replays did not run the steps again.
        logs = h.boto3_client(self.server.url, "logs")
        self.assertEqual(poll(lambda: self.side_effects(logs, name, tag), lambda c: c["second"] >= 1), {"first": 1, "second": 1})

        # Completed callbacks are refused; the same name is the same execution.
        self.assertAwsError(lambda: self.lam.send_durable_execution_callback_success(CallbackId=callback_id, Result=b"1"), 400,
                            "InvalidParameterValueException")
        again = self.lam.invoke(FunctionName=name, InvocationType="Event", DurableExecutionName=f"order-{tag}",
                                Payload=json.dumps({"tag": tag, "n": 4}).encode())
        self.assertEqual(again["DurableExecutionArn"], arn)
        self.assertAwsError(lambda: self.lam.invoke(FunctionName=name, InvocationType="Event", DurableExecutionName=f"order-{tag}",
                                                    Payload=b'{"other": 1}'), 409, "DurableExecutionAlreadyStartedException")
        listed = self.lam.list_durable_executions_by_function(FunctionName=name)["DurableExecutions"]
        self.assertEqual([(e["DurableExecutionArn"], e["Status"]) for e in listed], [(arn, "SUCCEEDED")])
        self.assertEqual(self.lam.list_durable_executions_by_function(FunctionName=name, Statuses=["RUNNING"])["DurableExecutions"], [])
        final = self.history(self.lam, arn)
        self.assertEqual(final[-1]["EventType"], "ExecutionSucceeded")
        self.assertNotIn("Payload", self.lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"][-1]["ExecutionSucceededDetails"]["Result"])

    def test_synchronous_invoke_waits_for_the_result(self):
        name = self.fn_name()
        self.create_workflow(self.lam, name)
        self.addCleanup(self._delete_quietly, name)
        tag = uuid.uuid4().hex[:8]
        answer: dict = {}

        def invoke():
            answer["response"] = self.lam.invoke(FunctionName=name, DurableExecutionName=f"sync-{tag}",
                                                 Payload=json.dumps({"tag": tag, "n": 7, "waitSeconds": 1}).encode())
            answer["payload"] = answer["response"]["Payload"].read()

        caller = threading.Thread(target=invoke, daemon=True)
        caller.start()
        listed = poll(lambda: self.lam.list_durable_executions_by_function(FunctionName=name, DurableExecutionName=f"sync-{tag}")["DurableExecutions"],
                      lambda found: len(found) == 1)
        arn = listed[0]["DurableExecutionArn"]
        callback_id = self.callback_id(self.lam, arn)
        self.assertTrue(caller.is_alive())  # still waiting for the execution's end
        self.lam.send_durable_execution_callback_heartbeat(CallbackId=callback_id)
        self.lam.send_durable_execution_callback_success(CallbackId=callback_id, Result=b'"yes"')
        caller.join(60)
        self.assertFalse(caller.is_alive())
        response = answer["response"]
        self.assertEqual((response["StatusCode"], response["DurableExecutionArn"], response["ExecutedVersion"]), (200, arn, "$LATEST"))
        self.assertNotIn("FunctionError", response)
        self.assertEqual(json.loads(answer["payload"]), {"first": {"n": 8}, "second": 80, "approval": "yes"})

    def test_failed_and_timed_out_callbacks_and_the_execution_timeout(self):
        name = self.fn_name()
        self.create_workflow(self.lam, name)
        self.addCleanup(self._delete_quietly, name)
        tag = uuid.uuid4().hex[:8]
        failed = self.start(self.lam, name, f"fail-{tag}", {"tag": tag, "n": 1, "waitSeconds": 1})
        timed_out = self.start(self.lam, name, f"late-{tag}", {"tag": tag, "n": 1, "waitSeconds": 1, "callbackTimeout": 1})
        callback_id = self.callback_id(self.lam, failed)
        self.lam.send_durable_execution_callback_failure(CallbackId=callback_id, Error={"ErrorType": "Rejected", "ErrorMessage": "no thanks"})
        done = poll(lambda: self.lam.get_durable_execution(DurableExecutionArn=failed), lambda e: e["Status"] != "RUNNING", 60)
        self.assertEqual(done["Status"], "FAILED", done)
        self.assertIn("no thanks", json.dumps(done["Error"]))
        self.assertIn("CallbackFailed", [e["EventType"] for e in self.history(self.lam, failed)])

        done = poll(lambda: self.lam.get_durable_execution(DurableExecutionArn=timed_out), lambda e: e["Status"] != "RUNNING", 60)
        self.assertEqual(done["Status"], "FAILED", done)
        self.assertIn("CallbackTimedOut", [e["EventType"] for e in self.history(self.lam, timed_out)])
        late = self.callback_id(self.lam, timed_out)
        self.assertAwsError(lambda: self.lam.send_durable_execution_callback_success(CallbackId=late, Result=b"1"), 400, "CallbackTimeoutException")

        short = self.fn_name("short")
        self.create_workflow(self.lam, short, ExecutionTimeout=2)
        self.addCleanup(self._delete_quietly, short)
        arn = self.start(self.lam, short, f"short-{tag}", {"tag": tag, "n": 1, "waitSeconds": 30})
        done = poll(lambda: self.lam.get_durable_execution(DurableExecutionArn=arn), lambda e: e["Status"] != "RUNNING", 60)
        self.assertEqual(done["Status"], "TIMED_OUT", done)
        self.assertEqual(self.history(self.lam, arn)[-1]["EventType"], "ExecutionTimedOut")
        self.assertGreaterEqual((done["EndTimestamp"] - done["StartTimestamp"]).total_seconds(), 1.9)

    def test_stop_and_errors(self):
        name = self.fn_name()
        self.create_workflow(self.lam, name)
        self.addCleanup(self._delete_quietly, name)
        tag = uuid.uuid4().hex[:8]
        arn = self.start(self.lam, name, f"stop-{tag}", {"tag": tag, "n": 1, "waitSeconds": 60})
        poll(lambda: self.history(self.lam, arn), lambda ev: any(e["EventType"] == "WaitStarted" for e in ev))
        stopped = self.lam.stop_durable_execution(DurableExecutionArn=arn, Error={"ErrorType": "Operator", "ErrorMessage": "enough"})
        self.assertIn("StopTimestamp", stopped)
        execution = self.lam.get_durable_execution(DurableExecutionArn=arn)
        self.assertEqual(execution["Status"], "STOPPED")
        self.assertEqual(execution["Error"], {"ErrorType": "Operator", "ErrorMessage": "enough"})
        self.assertEqual(self.history(self.lam, arn)[-1]["EventType"], "ExecutionStopped")
        self.assertAwsError(lambda: self.lam.stop_durable_execution(DurableExecutionArn=arn), 400, "InvalidParameterValueException")
        self.assertAwsError(lambda: self.lam.invoke_with_response_stream(FunctionName=name, Payload=b"{}"), 400, "InvalidParameterValueException")

        missing = arn.rsplit("/", 1)[0] + "/" + uuid.uuid4().hex
        self.assertAwsError(lambda: self.lam.get_durable_execution(DurableExecutionArn=missing), 404, "ResourceNotFoundException")
        self.assertAwsError(lambda: self.lam.get_durable_execution_history(DurableExecutionArn=missing), 404, "ResourceNotFoundException")
        self.assertAwsError(lambda: self.lam.checkpoint_durable_execution(DurableExecutionArn=arn, CheckpointToken="AAAA"), 400,
                            "InvalidParameterValueException", message_contains="Invalid Checkpoint Token")
        self.assertAwsError(lambda: self.lam.get_durable_execution_state(DurableExecutionArn=arn, CheckpointToken="AAAA"), 400,
                            "InvalidParameterValueException")
        self.assertAwsError(lambda: self.lam.send_durable_execution_callback_success(CallbackId="Tm9TdWNoQ2FsbGJhY2s=", Result=b"1"), 400,
                            "InvalidParameterValueException")
        self.assertAwsError(lambda: self.lam.list_durable_executions_by_function(FunctionName=self.fn_name("missing")), 404,
                            "ResourceNotFoundException")
        raw = self.server.raw("GET", "/2025-12-01/durable-executions/not-an-arn")
        self.assertRawError(raw, 400, "InvalidParameterValueException")
        self.assertAwsError(lambda: self.lam.create_function(FunctionName=self.fn_name("bad"), Runtime="nodejs22.x", Role=h.ROLE,
                                                             Handler="index.handler", Code={"ZipFile": h.make_zip({"index.mjs": ""})},
                                                             DurableConfig={"RetentionPeriodInDays": 91}), 400, "InvalidParameterValueException")

    def test_list_pages_on_from_where_the_last_page_ended(self):
        name = self.fn_name()
        self.create_workflow(self.lam, name)
        self.addCleanup(self._delete_quietly, name)
        tag = uuid.uuid4().hex[:8]
        event = {"tag": tag, "n": 1, "waitSeconds": 60}
        first = [self.start(self.lam, name, f"list-{tag}-{i}", event) for i in range(5)]

        # Newest first, two a page, and two more started after the first page: each page goes on from the last
        # execution listed (an offset into the list would repeat two), and the later ones come before it.
        page = self.lam.list_durable_executions_by_function(FunctionName=name, ReverseOrder=True, MaxItems=2)
        listed = [e["DurableExecutionArn"] for e in page["DurableExecutions"]]
        later = [self.start(self.lam, name, f"list-{tag}-later-{i}", event) for i in range(2)]
        while "NextMarker" in page:
            page = self.lam.list_durable_executions_by_function(FunctionName=name, ReverseOrder=True, MaxItems=2, Marker=page["NextMarker"])
            listed += [e["DurableExecutionArn"] for e in page["DurableExecutions"]]
        self.assertEqual(sorted(listed), sorted(first))
        self.assertEqual(len(listed), 5)

        # Ended ones are listed, filtered and described as running ones are (an ended execution is read from the store).
        for arn in first + later:
            self.lam.stop_durable_execution(DurableExecutionArn=arn)
        stopped = self.lam.list_durable_executions_by_function(FunctionName=name, Statuses=["STOPPED"], MaxItems=1000)["DurableExecutions"]
        self.assertEqual(sorted(e["DurableExecutionArn"] for e in stopped), sorted(first + later))
        self.assertEqual([e["DurableExecutionArn"] for e in stopped][-2:], later)  # oldest first: the later two last
        self.assertEqual(self.lam.list_durable_executions_by_function(FunctionName=name, Statuses=["RUNNING"])["DurableExecutions"], [])
        self.assertEqual([e["DurableExecutionArn"] for e in self.lam.list_durable_executions_by_function(
            FunctionName=name, DurableExecutionName=f"list-{tag}-3")["DurableExecutions"]], [first[3]])
        self.assertEqual(self.lam.get_durable_execution(DurableExecutionArn=later[0])["Status"], "STOPPED")
        self.assertAwsError(lambda: self.lam.list_durable_executions_by_function(FunctionName=name, Marker="not-a-marker"), 400,
                            "InvalidParameterValueException")

    def test_chained_invokes_of_a_plain_a_throwing_and_a_durable_function(self):
        caller, plain, thrower, child = (self.fn_name(s) for s in ("caller", "plain", "thrower", "child"))
        self.create_workflow(self.lam, caller, handler="chain.handler")
        self.create_workflow(self.lam, child, handler="child.handler")
        self.create_plain(self.lam, plain, PLAIN_TARGET)
        self.create_plain(self.lam, thrower, THROWING_TARGET)
        for name in (caller, child, plain, thrower):
            self.addCleanup(self._delete_quietly, name)
        tag = uuid.uuid4().hex[:8]
        arn = self.start(self.lam, caller, f"chain-{tag}", {"tag": tag, "n": 5, "plain": plain, "thrower": thrower, "child": f"{child}:$LATEST"})

        done = poll(lambda: self.lam.get_durable_execution(DurableExecutionArn=arn), lambda e: e["Status"] != "RUNNING", 90)
        self.assertEqual(done["Status"], "SUCCEEDED", done)
        self.assertEqual(json.loads(done["Result"]), {"base": 10, "plain": {"n": 11}, "failure": {"name": "InvokeError", "message": f"boom {tag}"},
                                                      "child": {"tripled": 33}})

        events = self.history(self.lam, arn)
        started = [e for e in events if e["EventType"] == "ChainedInvokeStarted"]
        self.assertEqual([(e["Name"], e["SubType"]) for e in started], [("plain", "ChainedInvoke"), ("thrower", "ChainedInvoke"), ("child", "ChainedInvoke")])
        details = started[0]["ChainedInvokeStartedDetails"]
        self.assertEqual((details["FunctionName"], details["ExecutedVersion"]), (plain, "$LATEST"))
        self.assertEqual(json.loads(details["Input"]["Payload"]), {"tag": tag, "n": 10, "sleep": 0})
        self.assertNotIn("DurableExecutionArn", details)
        succeeded = {e["Name"]: e["ChainedInvokeSucceededDetails"]["Result"]["Payload"] for e in events if e["EventType"] == "ChainedInvokeSucceeded"}
        self.assertEqual({k: json.loads(v) for k, v in succeeded.items()}, {"plain": {"n": 11}, "child": {"tripled": 33}})
        failed = [e for e in events if e["EventType"] == "ChainedInvokeFailed"]
        self.assertEqual([e["Name"] for e in failed], ["thrower"])
        error = failed[0]["ChainedInvokeFailedDetails"]["Error"]["Payload"]
        self.assertEqual((error["ErrorType"], error["ErrorMessage"]), ("ValueError", f"boom {tag}"))
        self.assertTrue(any("boom" in line for line in error["StackTrace"]), error)
        # Each chained invoke's events carry its operation id, and the history stays numbered from 1.
        self.assertEqual({e["Id"] for e in started} & {e["Id"] for e in failed}, {failed[0]["Id"]})
        self.assertEqual([e["EventId"] for e in events], list(range(1, len(events) + 1)))
        without_data = self.lam.get_durable_execution_history(DurableExecutionArn=arn)["Events"]
        self.assertNotIn("Payload", next(e for e in without_data if e["EventType"] == "ChainedInvokeStarted")["ChainedInvokeStartedDetails"]["Input"])

        # The durable target ran as an execution of its own, named after the caller's operation.
        child_arn = started[2]["ChainedInvokeStartedDetails"]["DurableExecutionArn"]
        self.assertRegex(child_arn, rf":function:{child}:\$LATEST/durable-execution/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+$")
        child_execution = self.lam.get_durable_execution(DurableExecutionArn=child_arn)
        self.assertEqual((child_execution["Status"], json.loads(child_execution["Result"])), ("SUCCEEDED", {"tripled": 33}))
        self.assertEqual(json.loads(child_execution["InputPayload"]), {"n": 11})

        # Each target ran exactly once, and the caller's step was not repeated by its replays.
        logs = h.boto3_client(self.server.url, "logs")
        self.assertEqual(poll(lambda: (self.log_count(logs, plain, "TARGET-RAN", tag), self.log_count(logs, thrower, "THROWER-RAN", tag),
                                       self.log_count(logs, caller, "BASE-RAN", tag)), lambda c: min(c) >= 1), (1, 1, 1))

    def test_chained_invoke_errors_reach_the_caller(self):
        caller, plain, child = (self.fn_name(s) for s in ("caller", "plain", "child"))
        self.create_workflow(self.lam, caller, handler="chain.handler")
        self.create_workflow(self.lam, child, handler="child.handler")
        self.create_plain(self.lam, plain, PLAIN_TARGET)
        for name in (caller, child, plain):
            self.addCleanup(self._delete_quietly, name)
        tag = uuid.uuid4().hex[:8]
        missing = self.fn_name("missing")
        # A missing function: context.invoke throws and, uncaught, fails the execution.
        lost = self.start(self.lam, caller, f"missing-{tag}", {"tag": tag, "n": 1, "plain": missing})
        # A durable function needs a qualifier (Lambda's rule for durable targets).
        unqualified = self.start(self.lam, caller, f"unqualified-{tag}", {"tag": tag, "n": 1, "plain": plain, "child": child})
        for arn, error_type, message in ((lost, "ResourceNotFoundException", f"Function not found: arn:aws:lambda:us-east-1:000000000000:function:{missing}"),
                                         (unqualified, "InvalidParameterValueException", "qualifier")):
            done = poll(lambda: self.lam.get_durable_execution(DurableExecutionArn=arn), lambda e: e["Status"] != "RUNNING", 90)
            self.assertEqual(done["Status"], "FAILED", done)
            self.assertIn(message, done["Error"]["ErrorMessage"])
            failed = [e for e in self.history(self.lam, arn) if e["EventType"] == "ChainedInvokeFailed"]
            self.assertEqual(len(failed), 1)
            self.assertEqual(failed[0]["ChainedInvokeFailedDetails"]["Error"]["Payload"]["ErrorType"], error_type)
        self.assertEqual(self.lam.list_durable_executions_by_function(FunctionName=child)["DurableExecutions"], [])


    def test_an_event_from_the_async_queue_starts_an_execution(self):
        # InvokeAsync (and every trigger that goes through the async queue: S3, SNS, EventBridge) starts an execution.
        name = self.fn_name()
        self.create_workflow(self.lam, name, handler="child.handler")
        self.addCleanup(self._delete_quietly, name)
        self.assertEqual(self.lam.invoke_async(FunctionName=name, InvokeArgs=json.dumps({"n": 4}).encode())["Status"], 202)
        listed = poll(lambda: self.lam.list_durable_executions_by_function(FunctionName=name)["DurableExecutions"], lambda found: len(found) == 1)
        done = poll(lambda: self.lam.get_durable_execution(DurableExecutionArn=listed[0]["DurableExecutionArn"]), lambda e: e["Status"] != "RUNNING", 60)
        self.assertEqual((done["Status"], json.loads(done["Result"])), ("SUCCEEDED", {"tripled": 12}), done)
        self.assertEqual(json.loads(done["InputPayload"]), {"n": 4})

    def test_a_plain_function_refuses_an_execution_name(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": "def handler(event, context):\n    return 1\n"}), name=name)
        self.assertNotIn("DurableConfig", self.lam.get_function_configuration(FunctionName=name))
        self.assertAwsError(lambda: self.lam.invoke(FunctionName=name, DurableExecutionName="x", Payload=b"{}"), 400,
                            "InvalidParameterValueException")


class DurableCrashTests(DurableMixin, unittest.TestCase):

    @h.slow
    def test_kill_9_during_chained_invokes_then_the_caller_resumes(self):
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            self.skipTest("needs a server of its own")
        data_dir = Path(tempfile.mkdtemp(prefix="lamina-it-durable-"))
        self.addCleanup(shutil.rmtree, data_dir, True)
        suffix = uuid.uuid4().hex[:6]
        caller, plain, child = f"chain-crash-{suffix}", f"chain-target-{suffix}", f"chain-child-{suffix}"
        tag = uuid.uuid4().hex[:8]
        first = h.LaminaServer("durable-chain-1", data_dir=data_dir).start()
        try:
            lam = h.boto3_client(first.url, "lambda")
            self.create_workflow(lam, caller, handler="chain.handler")
            self.create_workflow(lam, child, handler="child.handler")
            self.create_plain(lam, plain, PLAIN_TARGET)
            # The plain target takes 3 s: the server is killed while it runs (the caller suspended, the invoke pending).
            arn = self.start(lam, caller, f"crash-{tag}", {"tag": tag, "n": 3, "plain": plain, "sleep": 3, "child": f"{child}:$LATEST", "childWait": 3})
            events = poll(lambda: self.history(lam, arn), lambda ev: any(e["EventType"] == "ChainedInvokeStarted" for e in ev))
            self.assertNotIn("ChainedInvokeSucceeded", [e["EventType"] for e in events])
        finally:
            first.kill()
        second = h.LaminaServer("durable-chain-2", data_dir=data_dir).start()
        try:
            lam = h.boto3_client(second.url, "lambda")
            # The pending plain invoke is taken up again (at least once); the caller resumes and starts the durable
            # child, which waits 3 s: the server is killed again during that wait.
            events = poll(lambda: self.history(lam, arn), lambda ev: any(e["EventType"] == "ChainedInvokeStarted" and e["Name"] == "child" for e in ev), 90)
            child_arn = next(e for e in events if e.get("Name") == "child" and e["EventType"] == "ChainedInvokeStarted")["ChainedInvokeStartedDetails"]["DurableExecutionArn"]
            poll(lambda: self.history(lam, child_arn), lambda ev: any(e["EventType"] == "WaitStarted" for e in ev))
            self.assertEqual(lam.get_durable_execution(DurableExecutionArn=arn)["Status"], "RUNNING")
        finally:
            second.kill()
        third = h.LaminaServer("durable-chain-3", data_dir=data_dir).start()
        try:
            lam = h.boto3_client(third.url, "lambda")
            # The child resumes by itself; its end completes the caller's operation, and the caller finishes.
            execution = poll(lambda: lam.get_durable_execution(DurableExecutionArn=arn), lambda e: e["Status"] != "RUNNING", 90)
            self.assertEqual(execution["Status"], "SUCCEEDED", execution)
            self.assertEqual(json.loads(execution["Result"]), {"base": 6, "plain": {"n": 7}, "failure": "no error", "child": {"tripled": 21}})
            kinds = [e["EventType"] for e in self.history(lam, arn)]
            self.assertEqual((kinds.count("ChainedInvokeStarted"), kinds.count("ChainedInvokeSucceeded")), (2, 2))
            self.assertEqual([e["DurableExecutionArn"] for e in lam.list_durable_executions_by_function(FunctionName=child)["DurableExecutions"]], [child_arn])
            logs = h.boto3_client(third.url, "logs")
            self.assertGreaterEqual(poll(lambda: self.log_count(logs, plain, "TARGET-RAN", tag), lambda c: c >= 1), 1)
            self.assertEqual(poll(lambda: self.log_count(logs, caller, "BASE-RAN", tag), lambda c: c >= 1), 1)
        finally:
            third.stop()

    def test_an_ended_execution_after_a_restart(self):
        # Only an ended execution's callbacks are read back at a start (its other operations and its events stay in the
        # store): what it answers is the same before and after.
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            self.skipTest("needs a server of its own")
        data_dir = Path(tempfile.mkdtemp(prefix="lamina-it-durable-"))
        self.addCleanup(shutil.rmtree, data_dir, True)
        name = "durable-ended-" + uuid.uuid4().hex[:6]
        tag = uuid.uuid4().hex[:8]
        event = {"tag": tag, "n": 1, "waitSeconds": 1, "callbackTimeout": 1}

        def late_callback(lam, callback_id: str) -> tuple[str, str]:
            try:
                lam.send_durable_execution_callback_success(CallbackId=callback_id, Result=b"1")
            except botocore.exceptions.ClientError as e:
                return e.response["Error"]["Code"], e.response["Error"]["Message"]
            return "accepted", ""

        def described(lam, arn: str) -> dict:
            return {k: v for k, v in lam.get_durable_execution(DurableExecutionArn=arn).items() if k != "ResponseMetadata"}

        first = h.LaminaServer("durable-ended-1", data_dir=data_dir).start()
        try:
            lam = h.boto3_client(first.url, "lambda")
            self.create_workflow(lam, name)
            arn = self.start(lam, name, f"ended-{tag}", event)
            callback_id = self.callback_id(lam, arn)  # left to time out: the execution fails
            poll(lambda: lam.get_durable_execution(DurableExecutionArn=arn), lambda e: e["Status"] != "RUNNING", 60)
            before, history, late = described(lam, arn), self.history(lam, arn), late_callback(lam, callback_id)
            self.assertEqual(before["Status"], "FAILED", before)
            # Told it timed out (known from the callback's operation; an unknown callback is another error).
            self.assertEqual(late[0], "CallbackTimeoutException", late)
        finally:
            first.stop()
        second = h.LaminaServer("durable-ended-2", data_dir=data_dir).start()
        try:
            lam = h.boto3_client(second.url, "lambda")
            self.assertEqual(described(lam, arn), before)
            self.assertEqual(self.history(lam, arn), history)
            self.assertEqual(late_callback(lam, callback_id), late)
            self.assertEqual(self.start(lam, name, f"ended-{tag}", event), arn)  # the same name and input: the same execution
        finally:
            second.stop()

    @h.slow
    def test_kill_9_during_the_wait_then_the_js_sdk_completes_the_callback(self):
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            self.skipTest("needs a server of its own")
        data_dir = Path(tempfile.mkdtemp(prefix="lamina-it-durable-"))
        self.addCleanup(shutil.rmtree, data_dir, True)
        name = "durable-crash-" + uuid.uuid4().hex[:6]
        tag = uuid.uuid4().hex[:8]
        first = h.LaminaServer("durable-1", data_dir=data_dir).start()
        try:
            lam = h.boto3_client(first.url, "lambda")
            self.create_workflow(lam, name)
            arn = self.start(lam, name, f"crash-{tag}", {"tag": tag, "n": 2})
            poll(lambda: self.history(lam, arn), lambda ev: any(e["EventType"] == "WaitStarted" for e in ev))
        finally:
            first.kill()
        second = h.LaminaServer("durable-2", data_dir=data_dir).start()
        try:
            lam = h.boto3_client(second.url, "lambda")
            self.assertEqual(lam.get_durable_execution(DurableExecutionArn=arn)["Status"], "RUNNING")
            callback_id = self.callback_id(lam, arn)
            script = data_dir / "callback.cjs"
            script.write_text(JS_CALLBACK)
            done = subprocess.run(["node", str(script), second.url, callback_id, '{"approved": "after a crash"}'], capture_output=True, text=True,
                                  timeout=60, env={**os.environ, "NODE_PATH": str(h.js_sdk_modules())})
            self.assertEqual(done.returncode, 0, done.stderr)
            execution = poll(lambda: lam.get_durable_execution(DurableExecutionArn=arn), lambda e: e["Status"] != "RUNNING", 60)
            self.assertEqual(execution["Status"], "SUCCEEDED", execution)
            self.assertEqual(json.loads(execution["Result"]), {"first": {"n": 3}, "second": 30, "approval": {"approved": "after a crash"}})
            logs = h.boto3_client(second.url, "logs")
            self.assertEqual(poll(lambda: self.side_effects(logs, name, tag), lambda c: c["second"] >= 1), {"first": 1, "second": 1})
        finally:
            second.stop()
