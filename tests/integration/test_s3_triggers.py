"""S3 with functions (issue #20): bucket notifications that invoke functions (S3's event record, gated by the function's
policy) and reach Lamina's SQS queues and SNS topics; deployment packages and layers read from S3; the AWS SDKs the
runtimes include (boto3, the AWS SDK for JavaScript v3) calling S3 with no configuration; and the issue's scenario
driven by AWS CLI v2: an upload to bucket A triggers a function that reads it with boto3 and writes a processed copy
to bucket B."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import unittest
import urllib.parse
import uuid
from pathlib import Path

import boto3
import botocore.exceptions
from botocore.config import Config

import lamina_harness as h

MODULE = __name__

SINK_PY = '''
import json

def handler(event, context):
    print("EVENT", json.dumps(event, separators=(",", ":")), flush=True)
    return {"ok": True}
'''

# Reads the uploaded object with boto3 (no endpoint, no credentials given: the runtime's environment has them) and
# writes an upper-cased copy to the bucket named by DEST_BUCKET.
PROCESS_PY = '''
import os, urllib.parse
import boto3

s3 = boto3.client("s3")

def handler(event, context):
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        s3.put_object(Bucket=os.environ["DEST_BUCKET"], Key="processed/" + key, Body=body.upper(),
                      Metadata={"source": f"{bucket}/{key}"})
    return {"processed": len(event["Records"])}
'''

SDK_PY = '''
import boto3

def handler(event, context):
    s3 = boto3.client("s3")
    s3.put_object(Bucket=event["bucket"], Key="from-python", Body=b"written by boto3")
    return {"version": boto3.__version__, "file": boto3.__file__,
            "body": s3.get_object(Bucket=event["bucket"], Key="from-python")["Body"].read().decode()}
'''

SDK_ESM = '''
import { S3Client, PutObjectCommand, GetObjectCommand } from "@aws-sdk/client-s3";
const s3 = new S3Client({ forcePathStyle: true });
export const handler = async (event) => {
  await s3.send(new PutObjectCommand({ Bucket: event.bucket, Key: "from-esm", Body: "written by the JS SDK (esm)" }));
  const got = await s3.send(new GetObjectCommand({ Bucket: event.bucket, Key: "from-esm" }));
  return { body: await got.Body.transformToString() };
};
'''

SDK_CJS = '''
const { S3Client, PutObjectCommand, GetObjectCommand } = require("@aws-sdk/client-s3");
const s3 = new S3Client({ forcePathStyle: true });
exports.handler = async (event) => {
  await s3.send(new PutObjectCommand({ Bucket: event.bucket, Key: "from-cjs", Body: "written by the JS SDK (cjs)" }));
  const got = await s3.send(new GetObjectCommand({ Bucket: event.bucket, Key: "from-cjs" }));
  return { body: await got.Body.transformToString() };
};
'''


def setUpModule():
    os.environ["Logging__LogLevel__Lamina.Function"] = "Debug"
    try:
        h.start_module_server(MODULE, ["--async-retry-delay", "1"])
    finally:
        del os.environ["Logging__LogLevel__Lamina.Function"]


def tearDownModule():
    h.stop_module_server(MODULE)


class S3FunctionTestCase(h.LaminaTestCase):
    @property
    def s3(self):
        if not hasattr(self, "_s3"):
            self._s3 = boto3.client("s3", endpoint_url=self.server.url, region_name=h.REGION, aws_access_key_id=h.ACCESS_KEY,
                                    aws_secret_access_key=h.SECRET_KEY, config=Config(retries={"max_attempts": 0}))
        return self._s3

    @property
    def sqs(self):
        if not hasattr(self, "_sqs"):
            self._sqs = h.boto3_client(self.server.url, "sqs")
        return self._sqs

    @property
    def sns(self):
        if not hasattr(self, "_sns"):
            self._sns = h.boto3_client(self.server.url, "sns")
        return self._sns

    def bucket(self, suffix: str = "") -> str:
        name = f"t-{uuid.uuid4().hex[:12]}{('-' + suffix) if suffix else ''}"
        self.s3.create_bucket(Bucket=name)
        self.addCleanup(self._drop_bucket, name)
        return name

    def _drop_bucket(self, name: str) -> None:
        try:
            for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=name):
                for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                    self.s3.delete_object(Bucket=name, Key=v["Key"], VersionId=v["VersionId"])
            self.s3.delete_bucket(Bucket=name)
        except botocore.exceptions.ClientError:
            pass

    def queue(self, suffix: str = "q") -> tuple[str, str]:
        url = self.sqs.create_queue(QueueName=self.fn_name(suffix)[:70])["QueueUrl"]
        self.addCleanup(self.sqs.delete_queue, QueueUrl=url)
        return url, self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def receive_until(self, url: str, done, timeout: float = 30) -> list[dict]:
        """Messages' bodies (JSON) until done(bodies) holds."""
        bodies: list[dict] = []
        deadline = time.monotonic() + timeout
        while not done(bodies):
            self.assertLess(time.monotonic(), deadline, f"the queue has only {bodies}")
            for message in self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
                bodies.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return bodies

    def events(self, mark: int, function: str, count: int, timeout: float = 60) -> list[dict]:
        pattern = r"\[" + re.escape(function) + r"\] EVENT (\{.*\})"
        deadline = time.monotonic() + timeout
        while True:
            found = [json.loads(m.group(1)) for m in re.finditer(pattern, self.server.output_since(mark, limit=100000))]
            if len(found) >= count:
                return found
            self.assertLess(time.monotonic(), deadline, f"{len(found)} of {count} events reached {function}")
            time.sleep(0.1)

    def allow_s3(self, function: str, bucket: str) -> None:
        self.lam.add_permission(FunctionName=function, StatementId=f"s3-{bucket}", Action="lambda:InvokeFunction",
                                Principal="s3.amazonaws.com", SourceArn=f"arn:aws:s3:::{bucket}", SourceAccount=h.ACCOUNT)

    def assertS3Error(self, fn, status: int, code: str) -> dict:
        with self.assertRaises(botocore.exceptions.ClientError) as caught:
            fn()
        error = caught.exception.response
        self.assertEqual((error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]), (status, code), error)
        return error


class NotificationTests(S3FunctionTestCase):
    def test_function_destination_needs_the_functions_permission(self):
        bucket = self.bucket()
        function = self.fn_name("sink")
        arn = self.create_function(h.make_zip({"app.py": SINK_PY}), name=function)["FunctionArn"]
        config = {"LambdaFunctionConfigurations": [{"Id": "on-upload", "LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"],
                                                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "in/"}]}}}]}
        error = self.assertS3Error(lambda: self.s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config),
                                   400, "InvalidArgument")
        self.assertIn("Unable to validate the following destination configurations", error["Error"]["Message"])
        self.assertEqual(self.s3.get_bucket_notification_configuration(Bucket=bucket).get("LambdaFunctionConfigurations", []), [])
        # A permission for another bucket is not enough.
        self.allow_s3(function, "some-other-bucket")
        self.assertS3Error(lambda: self.s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config),
                           400, "InvalidArgument")
        self.allow_s3(function, bucket)
        self.s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
        stored = self.s3.get_bucket_notification_configuration(Bucket=bucket)["LambdaFunctionConfigurations"]
        # S3 answers the filter rules' names capitalised, whatever case they were given in.
        expected = json.loads(json.dumps(config["LambdaFunctionConfigurations"]).replace('"prefix"', '"Prefix"'))
        self.assertEqual(stored, expected)
        # An empty document removes every destination.
        self.s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
        self.assertNotIn("LambdaFunctionConfigurations", self.s3.get_bucket_notification_configuration(Bucket=bucket))

    def test_upload_and_delete_invoke_the_function_with_s3s_event(self):
        bucket = self.bucket()
        function = self.fn_name("sink")
        arn = self.create_function(h.make_zip({"app.py": SINK_PY}), name=function)["FunctionArn"]
        self.allow_s3(function, bucket)
        self.s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"LambdaFunctionConfigurations": [
            {"Id": "created", "LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"]},
            {"Id": "removed", "LambdaFunctionArn": arn, "Events": ["s3:ObjectRemoved:Delete"]}]})
        key = "in dir/My file+1 (copy)=é.txt"
        mark = self.server.mark()
        put = self.s3.put_object(Bucket=bucket, Key=key, Body=b"hello s3 event")
        record = self.events(mark, function, 1)[0]["Records"][0]
        self.assertEqual((record["eventVersion"], record["eventSource"], record["awsRegion"], record["eventName"]),
                         ("2.1", "aws:s3", "us-east-1", "ObjectCreated:Put"))
        self.assertRegex(record["eventTime"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        s3 = record["s3"]
        self.assertEqual((s3["s3SchemaVersion"], s3["configurationId"]), ("1.0", "created"))
        self.assertEqual((s3["bucket"]["name"], s3["bucket"]["arn"]), (bucket, f"arn:aws:s3:::{bucket}"))
        self.assertEqual(s3["object"]["key"], "in+dir/My+file%2B1+%28copy%29%3D%C3%A9.txt")
        self.assertEqual(urllib.parse.unquote_plus(s3["object"]["key"]), key)
        self.assertEqual((s3["object"]["size"], s3["object"]["eTag"]), (14, put["ETag"].strip('"')))
        self.assertRegex(s3["object"]["sequencer"], r"^[0-9A-F]{16,}$")
        self.assertIn("x-amz-request-id", record["responseElements"])
        self.assertIn("sourceIPAddress", record["requestParameters"])
        mark = self.server.mark()
        self.s3.delete_object(Bucket=bucket, Key=key)
        removed = self.events(mark, function, 1)[0]["Records"][0]
        self.assertEqual((removed["eventName"], removed["s3"]["configurationId"]), ("ObjectRemoved:Delete", "removed"))
        self.assertNotIn("size", removed["s3"]["object"])
        self.assertGreater(int(removed["s3"]["object"]["sequencer"], 16), int(s3["object"]["sequencer"], 16))

    def test_queue_gets_test_event_then_filtered_events_in_order(self):
        bucket = self.bucket()
        url, queue_arn = self.queue()
        self.s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [
            {"Id": "csv", "QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
             "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "in/"}, {"Name": "suffix", "Value": ".csv"}]}}}]})
        test_event = self.receive_until(url, lambda b: len(b) >= 1)[0]
        self.assertEqual((test_event["Service"], test_event["Event"], test_event["Bucket"]), ("Amazon S3", "s3:TestEvent", bucket))
        for key in ("in/a.csv", "in/b.txt", "out/c.csv", "in/sub/d.csv"):
            self.s3.put_object(Bucket=bucket, Key=key, Body=b"1,2\n")
        self.s3.copy_object(Bucket=bucket, Key="in/copy.csv", CopySource=f"{bucket}/in/a.csv")
        upload = self.s3.create_multipart_upload(Bucket=bucket, Key="in/multi.csv")["UploadId"]
        part = self.s3.upload_part(Bucket=bucket, Key="in/multi.csv", UploadId=upload, PartNumber=1, Body=b"x")["ETag"]
        self.s3.complete_multipart_upload(Bucket=bucket, Key="in/multi.csv", UploadId=upload,
                                          MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part}]})
        self.s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "in/a.csv"}, {"Key": "out/c.csv"}]})
        self.s3.put_object(Bucket=bucket, Key="in/zz-last.csv", Body=b"")
        bodies = self.receive_until(url, lambda b: any(r["s3"]["object"]["key"] == "in/zz-last.csv" for m in b for r in m.get("Records", [])))
        seen = [(r["eventName"], r["s3"]["object"]["key"]) for m in bodies for r in m["Records"]]
        self.assertEqual(seen, [("ObjectCreated:Put", "in/a.csv"), ("ObjectCreated:Put", "in/sub/d.csv"),
                                ("ObjectCreated:Copy", "in/copy.csv"), ("ObjectCreated:CompleteMultipartUpload", "in/multi.csv"),
                                ("ObjectRemoved:Delete", "in/a.csv"), ("ObjectCreated:Put", "in/zz-last.csv")])

    def test_versioned_delete_creates_marker_event(self):
        bucket = self.bucket()
        self.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        url, queue_arn = self.queue()
        self.s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [
            {"QueueArn": queue_arn, "Events": ["s3:ObjectRemoved:*"]}]})
        self.receive_until(url, lambda b: len(b) >= 1)  # the test event
        version = self.s3.put_object(Bucket=bucket, Key="k", Body=b"v")["VersionId"]
        marker = self.s3.delete_object(Bucket=bucket, Key="k")["VersionId"]
        self.s3.delete_object(Bucket=bucket, Key="k", VersionId=version)
        records = [r for m in self.receive_until(url, lambda b: len(b) >= 2) for r in m["Records"]]
        self.assertEqual([(r["eventName"], r["s3"]["object"].get("versionId")) for r in records],
                         [("ObjectRemoved:DeleteMarkerCreated", marker), ("ObjectRemoved:Delete", version)])

    def test_topic_destination_publishes_the_event(self):
        bucket = self.bucket()
        topic = self.sns.create_topic(Name=self.fn_name("topic")[:70])["TopicArn"]
        self.addCleanup(self.sns.delete_topic, TopicArn=topic)
        url, queue_arn = self.queue()
        self.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        self.s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"TopicConfigurations": [
            {"TopicArn": topic, "Events": ["s3:ObjectCreated:Put"]}]})
        self.s3.put_object(Bucket=bucket, Key="note.txt", Body=b"n")
        envelopes = self.receive_until(url, lambda b: any("Records" in json.loads(e["Message"]) for e in b))
        self.assertEqual(envelopes[0]["Subject"], "Amazon S3 Notification")
        self.assertEqual(json.loads(envelopes[0]["Message"])["Event"], "s3:TestEvent")
        record = json.loads(envelopes[-1]["Message"])["Records"][0]
        self.assertEqual((record["eventName"], record["s3"]["object"]["key"]), ("ObjectCreated:Put", "note.txt"))

    def test_eventbridge_notifications_reach_rules(self):
        """EventBridgeConfiguration: every event of the bucket goes to the default bus as S3 sends it there (source
        aws.s3, detail-type Object Created / Object Deleted, the key as is), and rules pick what they want."""
        bucket = self.bucket()
        function = self.fn_name("sink")
        arn = self.create_function(h.make_zip({"app.py": SINK_PY}), name=function)["FunctionArn"]
        events = h.boto3_client(self.server.url, "events")
        rule = self.fn_name("rule")[:60]
        rule_arn = events.put_rule(Name=rule, EventPattern=json.dumps({
            "source": ["aws.s3"], "detail-type": ["Object Created", "Object Deleted"],
            "detail": {"bucket": {"name": [bucket]}, "object": {"key": [{"prefix": "in/"}]}}}))["RuleArn"]
        self.addCleanup(events.delete_rule, Name=rule, Force=True)
        events.put_targets(Rule=rule, Targets=[{"Id": "fn", "Arn": arn}])
        self.lam.add_permission(FunctionName=function, StatementId="events", Action="lambda:InvokeFunction",
                                Principal="events.amazonaws.com", SourceArn=rule_arn)
        self.s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
        self.assertEqual(self.s3.get_bucket_notification_configuration(Bucket=bucket).get("EventBridgeConfiguration"), {})
        mark = self.server.mark()
        self.s3.put_object(Bucket=bucket, Key="out/skipped.txt", Body=b"no")
        put = self.s3.put_object(Bucket=bucket, Key="in/a file.txt", Body=b"hello")
        self.s3.delete_object(Bucket=bucket, Key="in/a file.txt")
        # Two asynchronous invocations: they may run in either order.
        received = sorted(self.events(mark, function, 2), key=lambda e: e["detail-type"])
        self.assertEqual([(e["source"], e["detail-type"]) for e in received], [("aws.s3", "Object Created"), ("aws.s3", "Object Deleted")])
        created, deleted = received[0]["detail"], received[1]["detail"]
        self.assertEqual((created["bucket"]["name"], created["object"]["key"], created["object"]["size"], created["object"]["etag"], created["reason"]),
                         (bucket, "in/a file.txt", 5, put["ETag"].strip('"'), "PutObject"))
        self.assertEqual((deleted["reason"], deleted["deletion-type"]), ("DeleteObject", "Permanently Deleted"))
        self.assertEqual(received[0]["resources"], [f"arn:aws:s3:::{bucket}"])

    def test_invalid_destinations_refused(self):
        bucket = self.bucket()
        missing_queue = f"arn:aws:sqs:us-east-1:{h.ACCOUNT}:no-such-queue"
        self.assertS3Error(lambda: self.s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": missing_queue, "Events": ["s3:ObjectCreated:*"]}]}), 400, "InvalidArgument")
        _, queue_arn = self.queue()
        self.assertS3Error(lambda: self.s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectTeleported:*"]}]}), 400, "InvalidArgument")
        self.assertS3Error(lambda: self.s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
            "LambdaFunctionConfigurations": [{"LambdaFunctionArn": h.function_arn("no-such-function"), "Events": ["s3:ObjectCreated:*"]}]}),
            400, "InvalidArgument")

    def test_permission_removed_later_stops_invocations(self):
        """Delivery checks the policy again: a function whose permission was removed is not invoked (the event is dropped
        and logged, as S3 does when Lambda refuses it)."""
        bucket = self.bucket()
        function = self.fn_name("sink")
        arn = self.create_function(h.make_zip({"app.py": SINK_PY}), name=function)["FunctionArn"]
        self.allow_s3(function, bucket)
        url, queue_arn = self.queue()
        self.s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
            "LambdaFunctionConfigurations": [{"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"], "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "fn/"}]}}}],
            "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]})
        self.receive_until(url, lambda b: len(b) >= 1)
        self.lam.remove_permission(FunctionName=function, StatementId=f"s3-{bucket}")
        mark = self.server.mark()
        self.s3.put_object(Bucket=bucket, Key="fn/blocked", Body=b"")
        # The queue's copy of the same event shows the outbox moved past it.
        self.receive_until(url, lambda b: any(r["s3"]["object"]["key"] == "fn/blocked" for m in b for r in m.get("Records", [])))
        deadline = time.monotonic() + 10
        while "not permitted" not in self.server.output_since(mark, limit=100000).lower() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertNotIn(f"[{function}] EVENT", self.server.output_since(mark, limit=100000))


class CodeFromS3Tests(S3FunctionTestCase):
    def test_create_update_and_layer_from_s3(self):
        bucket = self.bucket()
        self.s3.put_object(Bucket=bucket, Key="v1.zip", Body=h.make_zip({"app.py": "def handler(e, c):\n    return 'v1'\n"}))
        self.s3.put_object(Bucket=bucket, Key="v2.zip", Body=h.make_zip({"app.py": "import helper\ndef handler(e, c):\n    return 'v2 ' + helper.NAME\n"}))
        self.s3.put_object(Bucket=bucket, Key="layer.zip", Body=h.make_zip({"python/helper.py": "NAME = 'from layer'\n"}))
        name = self.fn_name()
        created = self.lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role=h.ROLE,
                                           Code={"S3Bucket": bucket, "S3Key": "v1.zip"})
        self.addCleanup(self._delete_quietly, name)
        self.wait_active(name)
        self.assertEqual(created["CodeSize"], self.s3.head_object(Bucket=bucket, Key="v1.zip")["ContentLength"])
        self.assertEqual(self.invoke_ok(name)[1], "v1")
        layer = self.lam.publish_layer_version(LayerName=self.fn_name("layer")[:60], Content={"S3Bucket": bucket, "S3Key": "layer.zip"},
                                               CompatibleRuntimes=["python3.12"])
        self.lam.update_function_code(FunctionName=name, S3Bucket=bucket, S3Key="v2.zip")
        self.lam.get_waiter("function_updated_v2").wait(FunctionName=name)
        self.lam.update_function_configuration(FunctionName=name, Layers=[layer["LayerVersionArn"]])
        self.lam.get_waiter("function_updated_v2").wait(FunctionName=name)
        self.assertEqual(self.invoke_ok(name)[1], "v2 from layer")

    def test_object_version_is_honoured(self):
        bucket = self.bucket()
        self.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        old = self.s3.put_object(Bucket=bucket, Key="code.zip", Body=h.make_zip({"app.py": "def handler(e, c):\n    return 'old'\n"}))["VersionId"]
        self.s3.put_object(Bucket=bucket, Key="code.zip", Body=h.make_zip({"app.py": "def handler(e, c):\n    return 'new'\n"}))
        name = self.fn_name()
        self.lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role=h.ROLE,
                                 Code={"S3Bucket": bucket, "S3Key": "code.zip", "S3ObjectVersion": old})
        self.addCleanup(self._delete_quietly, name)
        self.wait_active(name)
        self.assertEqual(self.invoke_ok(name)[1], "old")

    def test_missing_or_mixed_sources_refused_and_nothing_created(self):
        bucket = self.bucket()
        name = self.fn_name()
        cases = [
            ({"S3Bucket": bucket, "S3Key": "missing.zip"}, "S3 Error Code: NoSuchKey"),
            ({"S3Bucket": "no-such-bucket-" + uuid.uuid4().hex[:6], "S3Key": "x.zip"}, "S3 Error Code: NoSuchBucket"),
            ({"S3Bucket": bucket}, "S3Key"),
            ({"S3Bucket": bucket, "S3Key": "x.zip", "ZipFile": h.make_zip({"app.py": ""})}, "only one source"),
        ]
        self.s3.put_object(Bucket=bucket, Key="not-a-zip", Body=b"plain text")
        cases.append(({"S3Bucket": bucket, "S3Key": "not-a-zip"}, "Could not unzip uploaded file"))
        for code, message in cases:
            with self.subTest(code={k: v for k, v in code.items() if k != "ZipFile"}):
                with self.assertRaises(botocore.exceptions.ClientError) as caught:
                    self.lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler", Role=h.ROLE, Code=code)
                error = caught.exception.response
                self.assertEqual(error["Error"]["Code"], "InvalidParameterValueException", error)
                self.assertIn(message, error["Error"]["Message"])
                self.assertFunctionAbsent(name)


class RuntimeSdkTests(S3FunctionTestCase):
    def test_python_runtime_includes_boto3_that_finds_lamina(self):
        bucket = self.bucket()
        name = self.create_function(h.make_zip({"app.py": SDK_PY}), Timeout=30)["FunctionName"]
        result = self.invoke_ok(name, {"bucket": bucket})[1]
        self.assertEqual(result["body"], "written by boto3")
        self.assertTrue(result["file"].startswith("/var/runtime/"), result)
        major, minor = (int(x) for x in result["version"].split(".")[:2])
        self.assertGreaterEqual((major, minor), (1, 28))  # honours AWS_ENDPOINT_URL
        self.assertEqual(self.s3.get_object(Bucket=bucket, Key="from-python")["Body"].read(), b"written by boto3")

    def test_python_runtime_boto3_resource_uses_tables_with_no_configuration(self):
        table = f"t-{uuid.uuid4().hex[:10]}"
        ddb = h.boto3_client(self.server.url, "dynamodb")
        ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}])
        self.addCleanup(ddb.delete_table, TableName=table)
        code = ("import boto3\nfrom boto3.dynamodb.conditions import Key\n"
                "def handler(event, context):\n"
                "    t = boto3.resource('dynamodb').Table(event['table'])\n"
                "    t.put_item(Item={'id': 'a', 'n': 41})\n"
                "    t.update_item(Key={'id': 'a'}, UpdateExpression='SET n = n + :one', ExpressionAttributeValues={':one': 1})\n"
                "    return int(t.query(KeyConditionExpression=Key('id').eq('a'))['Items'][0]['n'])\n")
        name = self.create_function(h.make_zip({"app.py": code}), Timeout=30)["FunctionName"]
        self.assertEqual(self.invoke_ok(name, {"table": table})[1], 42)

    def test_function_and_layer_packages_come_before_the_runtimes(self):
        own = "import sys\n__version__ = 'bundled'\n"
        from_task = self.create_function(h.make_zip({"app.py": "import boto3\ndef handler(e, c):\n    return boto3.__version__\n",
                                                     "boto3/__init__.py": own}))["FunctionName"]
        self.assertEqual(self.invoke_ok(from_task)[1], "bundled")
        layer = self.lam.publish_layer_version(LayerName=self.fn_name("layer")[:60],
                                               Content={"ZipFile": h.make_zip({"python/boto3/__init__.py": "__version__ = 'layer'\n"})})
        from_layer = self.create_function(h.make_zip({"app.py": "import boto3\ndef handler(e, c):\n    return boto3.__version__\n"}),
                                          Layers=[layer["LayerVersionArn"]])["FunctionName"]
        self.assertEqual(self.invoke_ok(from_layer)[1], "layer")

    def test_node_runtime_includes_the_js_sdk_for_es_modules_and_commonjs(self):
        bucket = self.bucket()
        for filename, source, expected in (("index.mjs", SDK_ESM, "written by the JS SDK (esm)"), ("index.js", SDK_CJS, "written by the JS SDK (cjs)")):
            with self.subTest(filename=filename):
                name = self.create_function(h.make_zip({filename: source}), runtime="nodejs20.x", handler="index.handler", Timeout=30)["FunctionName"]
                self.assertEqual(self.invoke_ok(name, {"bucket": bucket})[1], {"body": expected})

    def test_es_modules_import_packages_from_layers_first(self):
        layer = self.lam.publish_layer_version(LayerName=self.fn_name("layer")[:60], Content={"ZipFile": h.make_zip({
            "nodejs/node_modules/greeting/package.json": json.dumps({"name": "greeting", "type": "module", "exports": "./index.js"}),
            "nodejs/node_modules/greeting/index.js": "export const greet = (n) => `hello ${n} from a layer`;\n",
            # A layer's own copy of an SDK package wins over the runtime's, as with NODE_PATH.
            "nodejs/node_modules/@aws-sdk/client-s3/package.json": json.dumps({"name": "@aws-sdk/client-s3", "type": "module", "exports": "./index.js"}),
            "nodejs/node_modules/@aws-sdk/client-s3/index.js": "export const S3Client = 'layer copy';\n",
        })})
        source = ("import { greet } from 'greeting';\nimport { S3Client } from '@aws-sdk/client-s3';\n"
                  "import { DynamoDBClient } from '@aws-sdk/client-dynamodb';\n"
                  "export const handler = async () => ({ greeting: greet('esm'), s3: S3Client, dynamodb: typeof DynamoDBClient });\n")
        name = self.create_function(h.make_zip({"index.mjs": source}), runtime="nodejs20.x", handler="index.handler",
                                    Layers=[layer["LayerVersionArn"]])["FunctionName"]
        self.assertEqual(self.invoke_ok(name)[1], {"greeting": "hello esm from a layer", "s3": "layer copy", "dynamodb": "function"})


class UploadTriggersProcessingWithCliV2Test(S3FunctionTestCase):
    """The issue's "done when": driven end to end by AWS CLI v2 (Debian's /usr/bin/aws)."""

    CLI = "/usr/bin/aws"

    def aws(self, *args: str) -> h.CliResult:
        result = self.server.aws_cli(*args, cli=self.CLI)
        self.assertEqual(result.rc, 0, result)
        return result

    def test_upload_to_a_is_processed_into_b(self):
        if not Path(self.CLI).exists():
            self.fail("AWS CLI v2 (/usr/bin/aws, Debian package awscli) is required; ./test.sh installs it")
        source, dest = f"a-{uuid.uuid4().hex[:10]}", f"b-{uuid.uuid4().hex[:10]}"
        self.aws("s3", "mb", f"s3://{source}")
        self.aws("s3", "mb", f"s3://{dest}")
        self.addCleanup(self._drop_bucket, source)
        self.addCleanup(self._drop_bucket, dest)
        work = Path(tempfile.mkdtemp(prefix="lamina-s3-cli-"))
        self.addCleanup(shutil.rmtree, work, True)
        (work / "fn.zip").write_bytes(h.make_zip({"app.py": PROCESS_PY}))
        function = self.fn_name("processor")
        created = self.aws("lambda", "create-function", "--function-name", function, "--runtime", "python3.12",
                           "--handler", "app.handler", "--role", h.ROLE, "--timeout", "30",
                           "--environment", json.dumps({"Variables": {"DEST_BUCKET": dest}}),
                           "--zip-file", f"fileb://{work / 'fn.zip'}").json
        self.addCleanup(self._delete_quietly, function)
        self.aws("lambda", "wait", "function-active-v2", "--function-name", function)
        self.aws("lambda", "add-permission", "--function-name", function, "--statement-id", "s3-invoke",
                 "--action", "lambda:InvokeFunction", "--principal", "s3.amazonaws.com",
                 "--source-arn", f"arn:aws:s3:::{source}", "--source-account", h.ACCOUNT)
        self.aws("s3api", "put-bucket-notification-configuration", "--bucket", source, "--notification-configuration",
                 json.dumps({"LambdaFunctionConfigurations": [{"LambdaFunctionArn": created["FunctionArn"], "Events": ["s3:ObjectCreated:*"]}]}))
        (work / "report 1.txt").write_text("quarterly numbers: up\n")
        self.aws("s3", "cp", str(work / "report 1.txt"), f"s3://{source}/incoming/report 1.txt")
        deadline = time.monotonic() + 90
        while True:
            listed = self.server.aws_cli("s3", "ls", f"s3://{dest}/processed/incoming/", cli=self.CLI)
            if "report 1.txt" in listed.stdout:
                break
            self.assertLess(time.monotonic(), deadline, f"no processed copy in {dest}: {listed}\n{self.server.output_since(0, 60)}")
            time.sleep(0.25)
        self.aws("s3", "cp", f"s3://{dest}/processed/incoming/report 1.txt", str(work / "out.txt"))
        self.assertEqual((work / "out.txt").read_text(), "QUARTERLY NUMBERS: UP\n")
        head = self.aws("s3api", "head-object", "--bucket", dest, "--key", "processed/incoming/report 1.txt").json
        self.assertEqual(head["Metadata"], {"source": f"{source}/incoming/report 1.txt"})


if __name__ == "__main__":
    unittest.main()
