"""SQS-compatible queues (issue #11, first part) over the JSON protocol with boto3 and the AWS CLI v1: queue
lifecycle and attributes, send / receive / delete with message attributes and SQS's MD5s, visibility timeouts and
ApproximateReceiveCount, long polling, batches, redrive to a dead-letter queue, FIFO order and deduplication, errors
with SQS's codes, and messages surviving a kill -9."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import struct
import tempfile
import threading
import time
import unittest
import uuid
from pathlib import Path

import botocore.exceptions
import requests

import lamina_harness as h

MODULE = __name__


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


def attributes_md5(attributes: dict) -> str:
    """SQS's MD5 of message attributes, written from its documented encoding (not from Lamina's code)."""
    out = b""
    for name in sorted(attributes):
        value = attributes[name]
        data_type = value["DataType"]
        out += struct.pack(">I", len(name.encode())) + name.encode()
        out += struct.pack(">I", len(data_type.encode())) + data_type.encode()
        if "BinaryValue" in value:
            raw = value["BinaryValue"]
            out += b"\x02" + struct.pack(">I", len(raw)) + raw
        else:
            raw = value["StringValue"].encode()
            out += b"\x01" + struct.pack(">I", len(raw)) + raw
    return hashlib.md5(out).hexdigest()


class SqsTests(h.LaminaTestCase):

    @property
    def sqs(self):
        if not hasattr(self, "_sqs"):
            self._sqs = h.boto3_client(self.server.url, "sqs")
        return self._sqs

    def _queue(self, suffix: str = "", **attributes) -> str:
        name = self.fn_name(suffix)[:70]
        if attributes.get("FifoQueue") == "true":
            name += ".fifo"
        url = self.sqs.create_queue(QueueName=name, Attributes={k: str(v) for k, v in attributes.items()})["QueueUrl"]
        self.addCleanup(self._delete_queue, url)
        return url

    def _delete_queue(self, url: str) -> None:
        try:
            self.sqs.delete_queue(QueueUrl=url)
        except botocore.exceptions.ClientError:
            pass

    def _code(self, call) -> str:
        with self.assertRaises(botocore.exceptions.ClientError) as caught:
            call()
        return caught.exception.response["Error"]["Code"]

    def test_queue_lifecycle_and_attributes(self):
        url = self._queue(VisibilityTimeout=45)
        name = url.rsplit("/", 1)[1]
        self.assertEqual(url, f"{self.server.url}/000000000000/{name}")
        self.assertEqual(self.sqs.get_queue_url(QueueName=name)["QueueUrl"], url)
        self.assertIn(url, self.sqs.list_queues(QueueNamePrefix=name[:20])["QueueUrls"])
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        self.assertEqual(attributes["QueueArn"], f"arn:aws:sqs:us-east-1:000000000000:{name}")
        self.assertEqual((attributes["VisibilityTimeout"], attributes["MessageRetentionPeriod"], attributes["DelaySeconds"]), ("45", "345600", "0"))
        self.assertEqual(attributes["ApproximateNumberOfMessages"], "0")
        # Creating again with the same attributes returns the queue; with different ones it is refused.
        self.assertEqual(self.sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "45"})["QueueUrl"], url)
        self.assertEqual(self._code(lambda: self.sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "46"})), "QueueAlreadyExists")
        self.sqs.set_queue_attributes(QueueUrl=url, Attributes={"DelaySeconds": "5"})
        self.assertEqual(self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["DelaySeconds"])["Attributes"], {"DelaySeconds": "5"})
        self.assertEqual(self._code(lambda: self.sqs.set_queue_attributes(QueueUrl=url, Attributes={"Nonsense": "1"})), "InvalidAttributeName")
        self.assertEqual(self._code(lambda: self.sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "50000"})), "InvalidAttributeValue")
        self.sqs.delete_queue(QueueUrl=url)
        self.assertEqual(self._code(lambda: self.sqs.get_queue_url(QueueName=name)), "AWS.SimpleQueueService.NonExistentQueue")
        self.assertEqual(self._code(lambda: self.sqs.send_message(QueueUrl=url, MessageBody="x")), "AWS.SimpleQueueService.NonExistentQueue")

    def test_send_receive_delete_with_attributes_and_md5s(self):
        url = self._queue()
        attributes = {"Text": {"DataType": "String", "StringValue": "héllo"}, "Count": {"DataType": "Number", "StringValue": "42"},
                      "Blob": {"DataType": "Binary", "BinaryValue": bytes([0, 1, 2, 255])}}
        sent = self.sqs.send_message(QueueUrl=url, MessageBody="hello", MessageAttributes=attributes)
        self.assertEqual(sent["MD5OfMessageBody"], hashlib.md5(b"hello").hexdigest())
        self.assertEqual(sent["MD5OfMessageAttributes"], attributes_md5(attributes))
        got = self.sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"], AttributeNames=["All"])["Messages"]
        self.assertEqual(len(got), 1)
        message = got[0]
        self.assertEqual((message["MessageId"], message["Body"], message["MD5OfBody"]), (sent["MessageId"], "hello", sent["MD5OfMessageBody"]))
        self.assertEqual(message["MessageAttributes"]["Blob"]["BinaryValue"], bytes([0, 1, 2, 255]))
        self.assertEqual(message["MessageAttributes"]["Count"], {"DataType": "Number", "StringValue": "42"})
        self.assertEqual(message["MD5OfMessageAttributes"], attributes_md5(attributes))
        self.assertEqual(message["Attributes"]["ApproximateReceiveCount"], "1")
        self.assertIn("SentTimestamp", message["Attributes"])
        # Hidden while in flight; gone once deleted.
        self.assertNotIn("Messages", self.sqs.receive_message(QueueUrl=url))
        self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        counts = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        self.assertEqual((counts["ApproximateNumberOfMessages"], counts["ApproximateNumberOfMessagesNotVisible"]), ("0", "0"))
        self.assertEqual(self._code(lambda: self.sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle")), "ReceiptHandleIsInvalid")

    def test_visibility_timeout_brings_a_message_back_with_its_receive_count(self):
        url = self._queue()
        self.sqs.send_message(QueueUrl=url, MessageBody="again")
        first = self.sqs.receive_message(QueueUrl=url, VisibilityTimeout=1, AttributeNames=["ApproximateReceiveCount"])["Messages"][0]
        self.assertNotIn("Messages", self.sqs.receive_message(QueueUrl=url))
        second = self.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5, AttributeNames=["ApproximateReceiveCount"])["Messages"][0]
        self.assertEqual(second["MessageId"], first["MessageId"])
        self.assertEqual(second["Attributes"]["ApproximateReceiveCount"], "2")
        self.assertNotEqual(second["ReceiptHandle"], first["ReceiptHandle"])
        # ChangeMessageVisibility to 0 makes it visible at once.
        self.sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=second["ReceiptHandle"], VisibilityTimeout=0)
        third = self.sqs.receive_message(QueueUrl=url)["Messages"][0]
        self.assertEqual(third["MessageId"], first["MessageId"])

    def test_long_poll_returns_as_soon_as_a_message_arrives(self):
        url = self._queue()
        result: dict = {}

        def poll():
            started = time.monotonic()
            result["response"] = h.boto3_client(self.server.url, "sqs").receive_message(QueueUrl=url, WaitTimeSeconds=15)
            result["took"] = time.monotonic() - started

        poller = threading.Thread(target=poll)
        poller.start()
        # The poll is waiting on the server; the message wakes it.
        deadline = time.monotonic() + 10
        while "response" not in result and time.monotonic() < deadline:
            self.sqs.send_message(QueueUrl=url, MessageBody="wake")
            poller.join(0.5)
        poller.join(20)
        self.assertEqual(result["response"]["Messages"][0]["Body"], "wake")
        self.assertLess(result["took"], 10)

    def test_batches(self):
        url = self._queue()
        sent = self.sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": f"m{i}", "MessageBody": f"body {i}"} for i in range(10)])
        self.assertEqual((len(sent["Successful"]), sent.get("Failed", [])), (10, []))
        received = []
        while len(received) < 10:
            page = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=2).get("Messages", [])
            self.assertTrue(page, "messages went missing")
            received += page
        self.assertEqual(sorted(m["Body"] for m in received), sorted(f"body {i}" for i in range(10)))
        deleted = self.sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received)])
        self.assertEqual(len(deleted["Successful"]), 10)
        self.assertEqual(self._code(lambda: self.sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "x"}, {"Id": "a", "MessageBody": "y"}])),
                         "AWS.SimpleQueueService.BatchEntryIdsNotDistinct")
        self.assertEqual(self._code(lambda: self.sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": f"m{i}", "MessageBody": "x"} for i in range(11)])),
                         "AWS.SimpleQueueService.TooManyEntriesInBatchRequest")
        self.assertEqual(self._code(lambda: self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=11)), "InvalidParameterValue")

    def test_poison_message_moves_to_the_dead_letter_queue(self):
        dlq = self._queue("dlq")
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = self._queue("src", VisibilityTimeout=0, RedrivePolicy=f'{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"2"}}')
        sent = self.sqs.send_message(QueueUrl=url, MessageBody="poison")
        for attempt in (1, 2):
            got = self.sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"])["Messages"][0]
            self.assertEqual(got["Attributes"]["ApproximateReceiveCount"], str(attempt))
        self.assertNotIn("Messages", self.sqs.receive_message(QueueUrl=url))
        dead = self.sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=2)["Messages"][0]
        self.assertEqual((dead["MessageId"], dead["Body"]), (sent["MessageId"], "poison"))

    def test_fifo_order_groups_and_deduplication(self):
        url = self._queue(FifoQueue="true")
        for i in range(3):
            self.sqs.send_message(QueueUrl=url, MessageBody=f"a{i}", MessageGroupId="A", MessageDeduplicationId=f"a{i}")
        duplicate = self.sqs.send_message(QueueUrl=url, MessageBody="a0 again", MessageGroupId="A", MessageDeduplicationId="a0")
        self.sqs.send_message(QueueUrl=url, MessageBody="b0", MessageGroupId="B", MessageDeduplicationId="b0")
        self.assertIn("SequenceNumber", duplicate)
        first = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, AttributeNames=["All"])["Messages"]
        self.assertEqual([m["Body"] for m in first], ["a0", "a1"])
        self.assertEqual(first[0]["Attributes"]["MessageGroupId"], "A")
        # Group A has messages in flight: only B comes next.
        second = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        self.assertEqual([m["Body"] for m in second], ["b0"])
        self.sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(first)])
        third = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
        self.assertEqual([m["Body"] for m in third], ["a2"])
        self.assertEqual(self._code(lambda: self.sqs.send_message(QueueUrl=url, MessageBody="x")), "MissingParameter")

    def test_purge_and_the_cli(self):
        url = self._queue()
        self.sqs.send_message(QueueUrl=url, MessageBody="x")
        self.sqs.purge_queue(QueueUrl=url)
        self.assertNotIn("Messages", self.sqs.receive_message(QueueUrl=url))
        sent = self.server.aws_cli("sqs", "send-message", "--queue-url", url, "--message-body", "from the cli")
        self.assertEqual(sent.rc, 0, sent)
        received = self.server.aws_cli("sqs", "receive-message", "--queue-url", url)
        self.assertEqual(received.rc, 0, received)
        self.assertEqual(received.json["Messages"][0]["Body"], "from the cli")


CLI_V2 = "/usr/bin/aws"


@unittest.skipUnless(shutil.which(CLI_V2), "Debian's AWS CLI v2 is not installed")
class SqsQueryProtocolTests(h.LaminaTestCase):
    """Debian's AWS CLI v2 (2.9) speaks SQS's Query protocol: form-encoded requests, XML answers."""

    def cli(self, *args: str, ok: bool = True) -> h.CliResult:
        result = self.server.aws_cli("sqs", *args, cli=CLI_V2)
        if ok:
            self.assertEqual(result.rc, 0, result)
        return result

    def test_queue_and_messages_over_the_query_protocol(self):
        name = self.fn_name()[:70]
        url = self.cli("create-queue", "--queue-name", name, "--attributes", "VisibilityTimeout=40").json["QueueUrl"]
        self.addCleanup(lambda: self.cli("delete-queue", "--queue-url", url, ok=False))
        self.assertEqual(url, f"{self.server.url}/000000000000/{name}")
        attributes = self.cli("get-queue-attributes", "--queue-url", url, "--attribute-names", "All").json["Attributes"]
        self.assertEqual(attributes["VisibilityTimeout"], "40")
        self.assertIn(url, self.cli("list-queues", "--queue-name-prefix", name).json["QueueUrls"])
        sent = self.cli("send-message", "--queue-url", url, "--message-body", "über <xml> & more",
                        "--message-attributes", '{"Kind": {"DataType": "String", "StringValue": "a&b"}}').json
        self.assertEqual(sent["MD5OfMessageBody"], hashlib.md5("über <xml> & more".encode()).hexdigest())
        self.assertEqual(sent["MD5OfMessageAttributes"], attributes_md5({"Kind": {"DataType": "String", "StringValue": "a&b"}}))
        batch = self.cli("send-message-batch", "--queue-url", url, "--entries",
                         '[{"Id": "one", "MessageBody": "1"}, {"Id": "two", "MessageBody": "2"}]').json
        self.assertEqual(sorted(e["Id"] for e in batch["Successful"]), ["one", "two"])
        received = []
        while len(received) < 3:
            page = self.cli("receive-message", "--queue-url", url, "--max-number-of-messages", "10", "--attribute-names", "All",
                            "--message-attribute-names", "All", "--wait-time-seconds", "1").json.get("Messages", [])
            self.assertTrue(page, "messages went missing")
            received += page
        first = next(m for m in received if m["Body"] == "über <xml> & more")
        self.assertEqual(first["MessageAttributes"]["Kind"]["StringValue"], "a&b")
        self.assertEqual(first["Attributes"]["ApproximateReceiveCount"], "1")
        entries = json.dumps([{"Id": f"e{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(received)])
        deleted = self.cli("delete-message-batch", "--queue-url", url, "--entries", entries).json
        self.assertEqual(len(deleted["Successful"]), 3)
        missing = self.cli("get-queue-url", "--queue-name", name + "-missing", ok=False)
        self.assertNotEqual(missing.rc, 0)
        self.assertIn("AWS.SimpleQueueService.NonExistentQueue", missing.stderr)

    def test_a_request_posted_to_the_queue_url(self):
        name = self.fn_name()[:70]
        url = h.boto3_client(self.server.url, "sqs").create_queue(QueueName=name)["QueueUrl"]
        self.addCleanup(lambda: h.boto3_client(self.server.url, "sqs").delete_queue(QueueUrl=url))
        response = requests.post(url, data={"Action": "SendMessage", "Version": "2012-11-05", "MessageBody": "posted"}, timeout=30)
        self.assertEqual(response.status_code, 200, response.text)
        self.assertIn("<SendMessageResponse", response.text)
        self.assertIn(f"<MD5OfMessageBody>{hashlib.md5(b'posted').hexdigest()}</MD5OfMessageBody>", response.text)
        error = requests.post(url, data={"Action": "ReceiveMessage", "MaxNumberOfMessages": "11"}, timeout=30)
        self.assertEqual(error.status_code, 400)
        self.assertIn("<Code>InvalidParameterValue</Code>", error.text)


class SqsDurabilityTests(unittest.TestCase):

    def test_sent_messages_survive_kill_9(self):
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            self.skipTest("needs a server of its own")
        data_dir = Path(tempfile.mkdtemp(prefix="lamina-it-sqs-"))
        self.addCleanup(shutil.rmtree, data_dir, True)
        first = h.LaminaServer("sqs-1", data_dir=data_dir).start()
        try:
            sqs = h.boto3_client(first.url, "sqs")
            url = sqs.create_queue(QueueName="durable")["QueueUrl"]
            bodies = {f"message {i} {uuid.uuid4().hex}" for i in range(50)}
            for body in bodies:
                sqs.send_message(QueueUrl=url, MessageBody=body)
        finally:
            first.kill()
        second = h.LaminaServer("sqs-2", data_dir=data_dir).start()
        try:
            sqs = h.boto3_client(second.url, "sqs")
            url = sqs.get_queue_url(QueueName="durable")["QueueUrl"]
            got = set()
            while True:
                page = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
                if not page:
                    break
                got |= {m["Body"] for m in page}
            self.assertEqual(got, bodies)
        finally:
            second.stop()
