"""SNS-compatible topics (issue #11) with boto3 (SNS's Query protocol) and the AWS CLI v1: topic lifecycle, a topic
delivering to a function (Lambda's SNS event, through the asynchronous queue, gated by the function's policy) and to a
queue (SNS's envelope, or raw), filter policies, PublishBatch, and a topic as an asynchronous OnFailure destination."""
from __future__ import annotations

import json
import os
import re
import time

import botocore.exceptions

import lamina_harness as h

MODULE = __name__

SINK_PY = '''
import json

def handler(event, context):
    print("EVENT", json.dumps(event, separators=(",", ":")), flush=True)
    if isinstance(event, dict) and event.get("fail"):
        raise RuntimeError("failing on purpose")
'''


def setUpModule():
    os.environ["Logging__LogLevel__Lamina.Function"] = "Debug"
    try:
        h.start_module_server(MODULE, ["--async-retry-delay", "1"])
    finally:
        del os.environ["Logging__LogLevel__Lamina.Function"]


def tearDownModule():
    h.stop_module_server(MODULE)


class SnsTests(h.LaminaTestCase):

    @property
    def sns(self):
        if not hasattr(self, "_sns"):
            self._sns = h.boto3_client(self.server.url, "sns")
        return self._sns

    @property
    def sqs(self):
        if not hasattr(self, "_sqs"):
            self._sqs = h.boto3_client(self.server.url, "sqs")
        return self._sqs

    def _topic(self, suffix: str = "") -> str:
        arn = self.sns.create_topic(Name=self.fn_name(suffix)[:70])["TopicArn"]
        self.addCleanup(self.sns.delete_topic, TopicArn=arn)
        return arn

    def _queue(self, suffix: str) -> tuple[str, str]:
        url = self.sqs.create_queue(QueueName=self.fn_name(suffix)[:70])["QueueUrl"]
        self.addCleanup(self.sqs.delete_queue, QueueUrl=url)
        return url, self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def _receive_all(self, url: str, count: int, timeout: float = 30) -> list[dict]:
        got: list[dict] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            self.assertLess(time.monotonic(), deadline, f"{len(got)} of {count} messages reached the queue")
            for message in self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
                got.append(message)
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return got

    def _events(self, mark: int, function: str, count: int, timeout: float = 30) -> list[dict]:
        pattern = r"\[" + re.escape(function) + r"\] EVENT (\{.*\})"
        deadline = time.monotonic() + timeout
        while True:
            found = [json.loads(m.group(1)) for m in re.finditer(pattern, self.server.output_since(mark, limit=100000))]
            if len(found) >= count:
                return found
            self.assertLess(time.monotonic(), deadline, f"{len(found)} of {count} events reached {function}")
            time.sleep(0.1)

    def test_topic_lifecycle(self):
        arn = self._topic()
        name = arn.rsplit(":", 1)[1]
        self.assertEqual(arn, f"arn:aws:sns:us-east-1:000000000000:{name}")
        self.assertEqual(self.sns.create_topic(Name=name)["TopicArn"], arn)  # idempotent
        self.assertIn(arn, [t["TopicArn"] for t in self.sns.list_topics()["Topics"]])
        attributes = self.sns.get_topic_attributes(TopicArn=arn)["Attributes"]
        self.assertEqual((attributes["TopicArn"], attributes["SubscriptionsConfirmed"]), (arn, "0"))
        with self.assertRaises(botocore.exceptions.ClientError) as missing:
            self.sns.publish(TopicArn=arn + "-missing", Message="x")
        self.assertEqual(missing.exception.response["Error"]["Code"], "NotFound")

    def test_topic_to_function_with_lambdas_sns_event(self):
        topic = self._topic()
        function = self.fn_name("fn")
        self.create_function(h.make_zip({"app.py": SINK_PY}), name=function)
        self.lam.add_permission(FunctionName=function, StatementId="sns", Action="lambda:InvokeFunction",
                                Principal="sns.amazonaws.com", SourceArn=topic)
        subscription = self.sns.subscribe(TopicArn=topic, Protocol="lambda", Endpoint=h.function_arn(function))["SubscriptionArn"]
        self.assertTrue(subscription.startswith(topic + ":"))
        mark = self.server.mark()
        published = self.sns.publish(TopicArn=topic, Message="hello function", Subject="greeting",
                                     MessageAttributes={"color": {"DataType": "String", "StringValue": "red"}})
        record = self._events(mark, function, 1)[0]["Records"][0]
        self.assertEqual((record["EventSource"], record["EventVersion"], record["EventSubscriptionArn"]), ("aws:sns", "1.0", subscription))
        sns = record["Sns"]
        self.assertEqual((sns["Type"], sns["MessageId"], sns["TopicArn"], sns["Subject"], sns["Message"]),
                         ("Notification", published["MessageId"], topic, "greeting", "hello function"))
        self.assertEqual(sns["MessageAttributes"], {"color": {"Type": "String", "Value": "red"}})
        listed = self.sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
        self.assertEqual([(s["Protocol"], s["Endpoint"]) for s in listed], [("lambda", h.function_arn(function))])

    def test_topic_to_queue_with_filter_policy_raw_delivery_and_batches(self):
        topic = self._topic()
        url, queue_arn = self._queue("all")
        red_url, red_arn = self._queue("red")
        self.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        self.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=red_arn,
                           Attributes={"FilterPolicy": json.dumps({"color": ["red"]}), "RawMessageDelivery": "true"})
        self.sns.publish(TopicArn=topic, Message="a red one", MessageAttributes={"color": {"DataType": "String", "StringValue": "red"}})
        self.sns.publish(TopicArn=topic, Message="a blue one", MessageAttributes={"color": {"DataType": "String", "StringValue": "blue"}})
        batch = self.sns.publish_batch(TopicArn=topic, PublishBatchRequestEntries=[{"Id": "1", "Message": "batch one"}, {"Id": "2", "Message": "batch two"}])
        self.assertEqual(sorted(e["Id"] for e in batch["Successful"]), ["1", "2"])
        everything = [json.loads(m["Body"]) for m in self._receive_all(url, 4)]
        self.assertEqual(sorted(e["Message"] for e in everything), ["a blue one", "a red one", "batch one", "batch two"])
        self.assertEqual({e["Type"] for e in everything}, {"Notification"})
        self.assertEqual({e["TopicArn"] for e in everything}, {topic})
        red = self._receive_all(red_url, 1)
        self.assertEqual([m["Body"] for m in red], ["a red one"])  # raw, and only what the policy matched
        self.assertNotIn("Messages", self.sqs.receive_message(QueueUrl=red_url, WaitTimeSeconds=1))

    def test_topic_as_an_async_on_failure_destination(self):
        topic = self._topic()
        url, queue_arn = self._queue("failures")
        self.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
        function = self.fn_name("failing")
        self.create_function(h.make_zip({"app.py": SINK_PY}), name=function)
        self.lam.put_function_event_invoke_config(FunctionName=function, MaximumRetryAttempts=0,
                                                  DestinationConfig={"OnFailure": {"Destination": topic}})
        self.lam.invoke(FunctionName=function, InvocationType="Event", Payload=json.dumps({"fail": True}).encode())
        record = json.loads(self._receive_all(url, 1)[0]["Body"])
        self.assertEqual(record["requestContext"]["condition"], "RetriesExhausted")
        self.assertEqual(record["requestPayload"], {"fail": True})

    def test_aws_cli_publish(self):
        topic = self._topic()
        url, queue_arn = self._queue("cli")
        self.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
        published = self.server.aws_cli("sns", "publish", "--topic-arn", topic, "--message", "from the cli")
        self.assertEqual(published.rc, 0, published)
        self.assertIn("MessageId", published.json)
        self.assertEqual([m["Body"] for m in self._receive_all(url, 1)], ["from the cli"])
