"""Event source mappings from Lamina's SQS queues (issue #11) with boto3, messages sent over both SQS protocols:
batches through the function with reported partial failures (failed items come back, succeeded ones do not), a poison
message reaching the dead-letter queue through the queue's redrive policy, FilterCriteria, and the mapping's lifecycle
and errors."""
from __future__ import annotations

import collections
import json
import os
import re
import time

import botocore.exceptions
import requests

import lamina_harness as h

MODULE = __name__

# Prints each record it gets; raises on a poison message; reports "fail-once" items as failed on their first receive.
CONSUMER_PY = '''
def handler(event, context):
    failures = []
    for record in event["Records"]:
        body, count = record["body"], record["attributes"]["ApproximateReceiveCount"]
        print("PROCESSED", record["messageId"], count, body, flush=True)
        if body.startswith("poison"):
            raise RuntimeError("poison message")
        if body.startswith("fail-once") and count == "1":
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
'''


def setUpModule():
    os.environ["Logging__LogLevel__Lamina.Function"] = "Debug"
    try:
        h.start_module_server(MODULE)
    finally:
        del os.environ["Logging__LogLevel__Lamina.Function"]


def tearDownModule():
    h.stop_module_server(MODULE)


class EventSourceMappingTests(h.LaminaTestCase):

    @property
    def sqs(self):
        if not hasattr(self, "_sqs"):
            self._sqs = h.boto3_client(self.server.url, "sqs")
        return self._sqs

    def _queue(self, suffix: str, **attributes) -> tuple[str, str]:
        url = self.sqs.create_queue(QueueName=self.fn_name(suffix)[:70], Attributes={k: str(v) for k, v in attributes.items()})["QueueUrl"]
        self.addCleanup(self.sqs.delete_queue, QueueUrl=url)
        return url, self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def _consumer(self) -> str:
        name = self.fn_name("consumer")
        self.create_function(h.make_zip({"app.py": CONSUMER_PY}), name=name, Timeout=10)
        return name

    def _map(self, queue_arn: str, function: str, **kwargs) -> str:
        uuid = self.lam.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=function, **kwargs)["UUID"]
        self.addCleanup(self._unmap, uuid)
        return uuid

    def _unmap(self, uuid: str) -> None:
        try:
            self.lam.delete_event_source_mapping(UUID=uuid)
        except botocore.exceptions.ClientError:
            pass

    def _processed(self, mark: int, function: str) -> list[tuple[str, str, str]]:
        pattern = r"\[" + re.escape(function) + r"\] PROCESSED (\S+) (\d+) (.*)"
        return [(m.group(1), m.group(2), m.group(3)) for m in re.finditer(pattern, self.server.output_since(mark, limit=200000))]

    def _drained(self, url: str) -> bool:
        counts = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return counts["ApproximateNumberOfMessages"] == "0" and counts["ApproximateNumberOfMessagesNotVisible"] == "0"

    def _wait(self, condition, what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            self.assertLess(time.monotonic(), deadline, f"{what} within {timeout} s")
            time.sleep(0.2)

    def test_batches_with_reported_partial_failures(self):
        url, arn = self._queue("work", VisibilityTimeout=6)
        consumer = self._consumer()
        mark = self.server.mark()
        bodies = [f"fail-once {i}" if i % 10 == 0 else f"ok {i}" for i in range(100)]
        for start in range(0, 100, 10):
            if start % 20 == 0:
                # Half the batches over the JSON protocol (boto3) ...
                self.sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": bodies[i]} for i in range(start, start + 10)])
                continue
            # ... and half over the Query protocol, posted to the queue's URL as older SDKs do.
            form = {"Action": "SendMessageBatch", "Version": "2012-11-05"}
            for n, i in enumerate(range(start, start + 10), 1):
                form[f"SendMessageBatchRequestEntry.{n}.Id"] = str(i)
                form[f"SendMessageBatchRequestEntry.{n}.MessageBody"] = bodies[i]
            response = requests.post(url, data=form, timeout=30)
            self.assertEqual(response.status_code, 200, response.text)
            self.assertEqual(response.text.count("<SendMessageBatchResultEntry>"), 10, response.text)
        self._map(arn, consumer, BatchSize=10, FunctionResponseTypes=["ReportBatchItemFailures"])
        self._wait(lambda: len(self._processed(mark, consumer)) >= 110 and self._drained(url), "all 100 messages processed and deleted")
        seen = collections.Counter(body for _, _, body in self._processed(mark, consumer))
        self.assertEqual(set(seen), set(bodies))
        for body in bodies:
            # Reported failures come back once (and then succeed); the others are never delivered again.
            self.assertEqual(seen[body], 2 if body.startswith("fail-once") else 1, body)
        retried = [count for _, count, body in self._processed(mark, consumer) if body.startswith("fail-once")]
        self.assertEqual(collections.Counter(retried), {"1": 10, "2": 10})

    def test_poison_message_lands_in_the_dead_letter_queue(self):
        dlq_url, dlq_arn = self._queue("dlq")
        url, arn = self._queue("src", VisibilityTimeout=1, RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}))
        consumer = self._consumer()
        self._map(arn, consumer, BatchSize=1)
        sent = self.sqs.send_message(QueueUrl=url, MessageBody="poison pill")
        deadline = time.monotonic() + 90
        while True:
            messages = self.sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=2).get("Messages", [])
            if messages:
                break
            self.assertLess(time.monotonic(), deadline, "the poison message never reached the dead-letter queue")
        self.assertEqual((messages[0]["MessageId"], messages[0]["Body"]), (sent["MessageId"], "poison pill"))

    def test_filter_criteria_drop_what_does_not_match(self):
        url, arn = self._queue("filtered")
        consumer = self._consumer()
        mark = self.server.mark()
        self._map(arn, consumer, FilterCriteria={"Filters": [{"Pattern": json.dumps({"body": {"kind": ["keep"]}})}]})
        self.sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "drop", "n": 1}))
        self.sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "keep", "n": 2}))
        self.sqs.send_message(QueueUrl=url, MessageBody="not json")
        self._wait(lambda: self._processed(mark, consumer) and self._drained(url), "the matching message processed and the queue drained")
        self.assertEqual([json.loads(body)["n"] for _, _, body in self._processed(mark, consumer)], [2])

    def test_lifecycle_and_errors(self):
        _, arn = self._queue("cfg")
        consumer = self._consumer()
        created = self.lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=consumer, BatchSize=5, Enabled=False,
                                                       ScalingConfig={"MaximumConcurrency": 2})
        uuid = created["UUID"]
        self.addCleanup(self._unmap, uuid)
        self.assertEqual(created["ResponseMetadata"]["HTTPStatusCode"], 202)
        self.assertEqual((created["State"], created["BatchSize"], created["EventSourceArn"]), ("Creating", 5, arn))
        self.assertEqual(created["FunctionArn"], h.function_arn(consumer))
        self.assertEqual(self.lam.get_event_source_mapping(UUID=uuid)["State"], "Disabled")
        updated = self.lam.update_event_source_mapping(UUID=uuid, Enabled=True, BatchSize=8)
        self.assertEqual((updated["State"], updated["BatchSize"]), ("Enabling", 8))
        self.assertEqual(self.lam.get_event_source_mapping(UUID=uuid)["State"], "Enabled")
        listed = self.lam.list_event_source_mappings(FunctionName=consumer)["EventSourceMappings"]
        self.assertEqual([m["UUID"] for m in listed], [uuid])
        self.assertAwsError(lambda: self.lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=consumer), 409, "ResourceConflictException")
        self.assertAwsError(lambda: self.lam.create_event_source_mapping(EventSourceArn=arn + "-missing", FunctionName=consumer), 400,
                            "InvalidParameterValueException")
        self.assertAwsError(lambda: self.lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="no-such-function-for-esm"), 404,
                            "ResourceNotFoundException")
        self.assertAwsError(lambda: self.lam.update_event_source_mapping(UUID=uuid, BatchSize=50), 400, "InvalidParameterValueException")
        deleted = self.lam.delete_event_source_mapping(UUID=uuid)
        self.assertEqual(deleted["State"], "Deleting")
        self.assertAwsError(lambda: self.lam.get_event_source_mapping(UUID=uuid), 404, "ResourceNotFoundException")
