"""DynamoDB streams into functions (issue #21): a table's inserts, updates and deletes, made with boto3 and with the
AWS CLI, reach a function through an event source mapping in commit order, in Lambda's DynamoDB event shape; the
mapping's checkpoint survives a restart (nothing skipped, nothing processed twice); a failing batch blocks its shard
until retries run out, then its batch info goes to the on-failure queue; ReportBatchItemFailures, BisectBatchOnFunctionError,
FilterCriteria and ParallelizationFactor; the Streams API itself (ListStreams, DescribeStream, GetShardIterator,
GetRecords) with boto3 and `aws dynamodbstreams`; and a function that reads and writes a table with boto3 and no
configuration."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import botocore.exceptions

import lamina_harness as h

MODULE = __name__

_JS_FILES: dict[str, bytes] = {}


def js_dynamodb_zip(index_mjs: str) -> bytes:
    """A Node.js package holding index.mjs and the JS SDK's DynamoDB packages (prepare_js_dynamodb.sh, once per machine)."""
    if not _JS_FILES:
        import subprocess
        done = subprocess.run([str(h.REPO_ROOT / "tests/integration/prepare_js_dynamodb.sh")], capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise AssertionError(f"prepare_js_dynamodb.sh failed ({done.returncode}): {done.stderr[-3000:]}")
        modules = Path(done.stdout.strip().splitlines()[-1])
        for path in sorted(modules.rglob("*")):
            if path.is_file() and not path.name.endswith((".d.ts", ".map")) and "/dist-types/" not in path.as_posix():
                _JS_FILES["node_modules/" + path.relative_to(modules).as_posix()] = path.read_bytes()
    return h.make_zip({**_JS_FILES, "index.mjs": index_mjs})

# Prints one line per record: the event's name, the item's id, its sequence number and the new image's "n".
PRINTER_PY = '''
import json
def handler(event, context):
    for r in event["Records"]:
        d = r["dynamodb"]
        new = d.get("NewImage", {})
        print("REC", r["eventName"], d["Keys"]["id"]["S"], d["SequenceNumber"], new.get("n", {}).get("N", "-"),
              r["eventSource"], r["eventSourceARN"].split("/stream/")[0].split("/")[-1], d["StreamViewType"],
              "old" if "OldImage" in d else "noold", flush=True)
    return {}
'''

# Fails every batch holding an item whose id starts with "poison"; prints what it saw.
FAILING_PY = '''
def handler(event, context):
    ids = [r["dynamodb"]["Keys"]["id"]["S"] for r in event["Records"]]
    print("BATCH", ",".join(ids), flush=True)
    if any(i.startswith("poison") for i in ids):
        raise RuntimeError("poison record")
    return {}
'''

# Reports the first record whose id starts with "bad" as failed, the first time it sees it (a file in /tmp remembers).
PARTIAL_PY = '''
import os
def handler(event, context):
    ids = [(r["dynamodb"]["Keys"]["id"]["S"], r["dynamodb"]["SequenceNumber"]) for r in event["Records"]]
    print("BATCH", ",".join(i for i, _ in ids), flush=True)
    for i, seq in ids:
        if i.startswith("bad") and not os.path.exists("/tmp/seen-" + i):
            open("/tmp/seen-" + i, "w").close()
            return {"batchItemFailures": [{"itemIdentifier": seq}]}
    return {"batchItemFailures": []}
'''

# Tumbling windows: counts the records of its window in the state it hands back; prints each invocation.
WINDOW_PY = '''
import json
def handler(event, context):
    state = event.get("state") or {}
    count = state.get("count", 0) + len(event["Records"])
    print("WIN", event["window"]["start"], count, len(event["Records"]), event["isFinalInvokeForWindow"], event["shardId"][:8], flush=True)
    return {"state": {"count": count}, "batchItemFailures": []}
'''

# Copies every inserted item into another table with the JS SDK's DocumentClient: no endpoint, region or
# credentials in the code (the environment's AWS_ENDPOINT_URL and session credentials are all it needs).
COPIER_MJS = '''
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient, PutCommand, GetCommand } from "@aws-sdk/lib-dynamodb";
import { unmarshall } from "@aws-sdk/util-dynamodb";
const documents = DynamoDBDocumentClient.from(new DynamoDBClient({}));
export const handler = async (event) => {
  for (const r of event.Records) {
    if (r.eventName !== "INSERT") continue;
    const item = unmarshall(r.dynamodb.NewImage);
    await documents.send(new PutCommand({ TableName: process.env.SINK, Item: { ...item, copied: true },
      ConditionExpression: "attribute_not_exists(id)" }));
    const back = await documents.send(new GetCommand({ TableName: process.env.SINK, Key: { id: item.id }, ConsistentRead: true }));
    console.log("COPIED", JSON.stringify(back.Item));
  }
  return {};
};
'''


def setUpModule():
    os.environ["Logging__LogLevel__Lamina.Function"] = "Debug"
    try:
        h.start_module_server(MODULE)
    finally:
        del os.environ["Logging__LogLevel__Lamina.Function"]


def tearDownModule():
    h.stop_module_server(MODULE)


class StreamMappingTests(h.LaminaTestCase):

    def ddb(self, server=None):
        return h.boto3_client((server or self.server).url, "dynamodb")

    def streams(self, server=None):
        return h.boto3_client((server or self.server).url, "dynamodbstreams")

    def table(self, view="NEW_AND_OLD_IMAGES", server=None, name=None) -> tuple[str, str]:
        name = name or self.fn_name("t")[:60]
        d = self.ddb(server).create_table(
            TableName=name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": view})["TableDescription"]
        return name, d["LatestStreamArn"]

    def function(self, code: str, **kwargs) -> str:
        name = self.fn_name("fn")
        self.create_function(h.make_zip({"app.py": code}), name=name, Timeout=10, **kwargs)
        return name

    def mapping(self, stream_arn: str, function: str, lam=None, **kwargs) -> str:
        lam = lam or self.lam
        kwargs.setdefault("StartingPosition", "TRIM_HORIZON")
        uuid = lam.create_event_source_mapping(EventSourceArn=stream_arn, FunctionName=function, **kwargs)["UUID"]
        self.addCleanup(self._unmap, lam, uuid)
        return uuid

    @staticmethod
    def _unmap(lam, uuid):
        try:
            lam.delete_event_source_mapping(UUID=uuid)
        except botocore.exceptions.ClientError:
            pass

    def lines(self, function: str, tag: str, server=None, mark: int = 0) -> list[list[str]]:
        out = (server or self.server).output_since(mark, limit=500000)
        return [m.group(1).split(" ") for m in re.finditer(r"\[" + re.escape(function) + r"\] " + tag + r" (.*)", out)]

    def wait_lines(self, function: str, tag: str, count: int, timeout: float = 60, server=None, mark: int = 0) -> list[list[str]]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.lines(function, tag, server, mark)
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.1)

    # ---- the "done when": inserts, updates, deletes in order, from boto3 and the CLI ----

    def test_changes_from_boto3_and_cli_reach_the_function_in_order(self):
        table, stream = self.table()
        fn = self.function(PRINTER_PY)
        uuid = self.mapping(stream, fn, BatchSize=5)
        got = self.lam.get_event_source_mapping(UUID=uuid)
        self.assertEqual(got["EventSourceArn"], stream)
        self.assertEqual(got["StartingPosition"], "TRIM_HORIZON")
        self.assertEqual(got["BatchSize"], 5)
        ddb = self.ddb()
        expected = []
        for i in range(12):
            key = f"k{i % 4}"
            if i < 4:
                ddb.put_item(TableName=table, Item={"id": {"S": key}, "n": {"N": str(i)}})
                expected.append(("INSERT", key, str(i)))
            elif i < 8:
                ddb.update_item(TableName=table, Key={"id": {"S": key}}, UpdateExpression="SET n = n + :d",
                                ExpressionAttributeValues={":d": {"N": "100"}})
                expected.append(("MODIFY", key, str(i - 4 + 100)))
            else:
                ddb.delete_item(TableName=table, Key={"id": {"S": key}})
                expected.append(("REMOVE", key, "-"))
        # The same through AWS CLI v1 (and v2 where installed).
        cli_result = self.server.aws_cli("dynamodb", "put-item", "--table-name", table, "--item", '{"id":{"S":"cli"},"n":{"N":"7"}}')
        self.assertEqual(cli_result.rc, 0, cli_result)
        expected.append(("INSERT", "cli", "7"))
        cli_result = self.server.aws_cli("dynamodb", "update-item", "--table-name", table, "--key", '{"id":{"S":"cli"}}',
                                         "--update-expression", "SET n = :v", "--expression-attribute-values", '{":v":{"N":"8"}}')
        self.assertEqual(cli_result.rc, 0, cli_result)
        expected.append(("MODIFY", "cli", "8"))
        cli_result = self.server.aws_cli("dynamodb", "delete-item", "--table-name", table, "--key", '{"id":{"S":"cli"}}')
        self.assertEqual(cli_result.rc, 0, cli_result)
        expected.append(("REMOVE", "cli", "-"))
        if Path("/usr/bin/aws").exists():
            v2 = self.server.aws_cli("dynamodb", "put-item", "--table-name", table, "--item", '{"id":{"S":"v2"},"n":{"N":"9"}}', cli="/usr/bin/aws")
            self.assertEqual(v2.rc, 0, v2)
            expected.append(("INSERT", "v2", "9"))
        records = self.wait_lines(fn, "REC", len(expected))
        self.assertEqual([(r[0], r[1], r[3]) for r in records], expected)
        sequences = [int(r[2]) for r in records]
        self.assertEqual(sequences, sorted(sequences), "sequence numbers in commit order")
        self.assertEqual(len(set(sequences)), len(sequences))
        self.assertTrue(all(r[4] == "aws:dynamodb" and r[5] == table and r[6] == "NEW_AND_OLD_IMAGES" for r in records))
        self.assertEqual([r[7] for r in records[:4]], ["noold"] * 4, "inserts have no old image")
        self.assertEqual([r[7] for r in records[4:8]], ["old"] * 4, "updates carry the old image")
        time.sleep(0)  # nothing more arrives: each change exactly once
        self.assertEqual(len(self.lines(fn, "REC")), len(expected))

    def test_latest_starts_after_existing_records(self):
        table, stream = self.table(view="KEYS_ONLY")
        ddb = self.ddb()
        ddb.put_item(TableName=table, Item={"id": {"S": "before"}})
        fn = self.function(PRINTER_PY)
        self.mapping(stream, fn, StartingPosition="LATEST")
        ddb.put_item(TableName=table, Item={"id": {"S": "after"}, "n": {"N": "1"}})
        records = self.wait_lines(fn, "REC", 1)
        self.assertEqual([(r[0], r[1], r[3], r[6]) for r in records], [("INSERT", "after", "-", "KEYS_ONLY")])

    def test_checkpoint_survives_restart(self):
        data_dir = Path(tempfile.mkdtemp(prefix="lamina-it-ddbstream-"))
        self.addCleanup(shutil.rmtree, data_dir, True)
        env_key = "Logging__LogLevel__Lamina.Function"
        os.environ[env_key] = "Debug"
        try:
            first = h.LaminaServer("ddb-1", data_dir=data_dir).start()
        finally:
            del os.environ[env_key]
        try:
            lam = first.client()
            table, stream = self.table(server=first)
            fn = self.fn_name("fn")
            lam.create_function(FunctionName=fn, Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                                Code={"ZipFile": h.make_zip({"app.py": PRINTER_PY})}, Timeout=10)
            lam.create_event_source_mapping(EventSourceArn=stream, FunctionName=fn, StartingPosition="TRIM_HORIZON", BatchSize=3)
            ddb = self.ddb(first)
            for i in range(6):
                ddb.put_item(TableName=table, Item={"id": {"S": f"a{i}"}, "n": {"N": str(i)}})
            self.assertEqual(len(self.wait_lines(fn, "REC", 6, server=first)), 6)
        finally:
            first.stop()
        os.environ[env_key] = "Debug"
        try:
            second = h.LaminaServer("ddb-2", data_dir=data_dir).start()
        finally:
            del os.environ[env_key]
        try:
            ddb = self.ddb(second)
            for i in range(6, 9):
                ddb.put_item(TableName=table, Item={"id": {"S": f"a{i}"}, "n": {"N": str(i)}})
            records = self.wait_lines(fn, "REC", 3, server=second)
            time.sleep(1.5)  # give a wrongly rewound checkpoint the time to show itself
            records = self.lines(fn, "REC", server=second)
            self.assertEqual([r[1] for r in records], ["a6", "a7", "a8"], "after a clean stop: nothing again, nothing skipped")
        finally:
            second.stop()

    def test_nothing_is_skipped_across_kill_9(self):
        data_dir = Path(tempfile.mkdtemp(prefix="lamina-it-ddbstream-kill-"))
        self.addCleanup(shutil.rmtree, data_dir, True)
        env_key = "Logging__LogLevel__Lamina.Function"
        servers = []
        for label in ("ddb-kill-1", "ddb-kill-2"):
            os.environ[env_key] = "Debug"
            try:
                servers.append(h.LaminaServer(label, data_dir=data_dir))
            finally:
                del os.environ[env_key]
        os.environ[env_key] = "Debug"
        try:
            first = servers[0].start()
        finally:
            del os.environ[env_key]
        try:
            lam = first.client()
            table, stream = self.table(server=first)
            fn = self.fn_name("fn")
            lam.create_function(FunctionName=fn, Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                                Code={"ZipFile": h.make_zip({"app.py": PRINTER_PY.replace("    return {}", "    import time; time.sleep(0.1)\n    return {}")})}, Timeout=10)
            lam.create_event_source_mapping(EventSourceArn=stream, FunctionName=fn, StartingPosition="TRIM_HORIZON", BatchSize=2)
            ddb = self.ddb(first)
            for i in range(40):
                ddb.put_item(TableName=table, Item={"id": {"S": f"k{i}"}, "n": {"N": str(i)}})
            self.wait_lines(fn, "REC", 5, server=first)
        finally:
            first.kill()  # in the middle of the stream
        seen_before = {r[1] for r in self.lines(fn, "REC", server=first)}
        self.assertLess(len(seen_before), 40, "the kill landed in the middle of the stream")
        os.environ[env_key] = "Debug"
        try:
            second = servers[1].start()
        finally:
            del os.environ[env_key]
        try:
            deadline = time.monotonic() + 60
            while True:
                seen_after = {r[1] for r in self.lines(fn, "REC", server=second)}
                if seen_before | seen_after >= {f"k{i}" for i in range(40)} or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            self.assertEqual(seen_before | seen_after, {f"k{i}" for i in range(40)}, "at least once: every record reached the function")
        finally:
            second.stop()

    # ---- failures ----

    def test_failing_batch_blocks_until_retries_run_out_then_goes_to_the_on_failure_queue(self):
        table, stream = self.table()
        fn = self.function(FAILING_PY)
        sqs = h.boto3_client(self.server.url, "sqs")
        queue_url = sqs.create_queue(QueueName=self.fn_name("dlq")[:70])["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.mapping(stream, fn, BatchSize=1, MaximumRetryAttempts=2,
                     DestinationConfig={"OnFailure": {"Destination": queue_arn}})
        ddb = self.ddb()
        for key in ("ok1", "poison", "ok2"):
            ddb.put_item(TableName=table, Item={"id": {"S": key}})
        batches = self.wait_lines(fn, "BATCH", 5)
        # One try and two retries of the poison record, and ok2 only after them: the shard was blocked.
        self.assertEqual([b[0] for b in batches[:5]], ["ok1", "poison", "poison", "poison", "ok2"])
        deadline = time.monotonic() + 20
        messages = []
        while not messages and time.monotonic() < deadline:
            messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", [])
        self.assertEqual(len(messages), 1)
        body = json.loads(messages[0]["Body"])
        self.assertEqual(body["requestContext"]["condition"], "RetryAttemptsExhausted")
        self.assertEqual(body["requestContext"]["approximateInvokeCount"], 3)
        info = body["DDBStreamBatchInfo"]
        self.assertEqual(info["batchSize"], 1)
        self.assertEqual(info["streamArn"], stream)
        self.assertEqual(info["startSequenceNumber"], info["endSequenceNumber"])

    def test_bisect_isolates_the_poison_record(self):
        table, stream = self.table()
        fn = self.function(FAILING_PY)
        ddb = self.ddb()
        ddb.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": {"id": {"S": k}}}} for k in ("a", "b", "poison", "c")]})
        self.mapping(stream, fn, BatchSize=4, BisectBatchOnFunctionError=True, MaximumRetryAttempts=0)
        batches = self.wait_lines(fn, "BATCH", 5)
        succeeded = [b[0] for b in batches if "poison" not in b[0]]
        self.assertIn("poison", [b[0] for b in batches], "the poison record ran alone at last")
        self.assertEqual(sorted(",".join(succeeded).split(",")), ["a", "b", "c"])

    def test_report_batch_item_failures_retries_from_the_failed_record(self):
        table, stream = self.table()
        fn = self.function(PARTIAL_PY)
        ddb = self.ddb()
        ddb.transact_write_items(TransactItems=[{"Put": {"TableName": table, "Item": {"id": {"S": k}}}} for k in ("x1", "bad", "x2")])
        self.mapping(stream, fn, BatchSize=10, FunctionResponseTypes=["ReportBatchItemFailures"])
        batches = self.wait_lines(fn, "BATCH", 2)
        self.assertEqual(batches[0][0], "x1,bad,x2")
        self.assertEqual(batches[1][0], "bad,x2", "the retry starts at the failed record; x1 is not sent again")

    def test_filter_criteria_and_parallelization(self):
        table, stream = self.table()
        fn = self.function(PRINTER_PY)
        uuid = self.mapping(stream, fn, ParallelizationFactor=3, FilterCriteria={"Filters": [
            {"Pattern": json.dumps({"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": ["keep"]}}}})}]})
        self.assertEqual(self.lam.get_event_source_mapping(UUID=uuid)["ParallelizationFactor"], 3)
        ddb = self.ddb()
        for i in range(10):
            ddb.put_item(TableName=table, Item={"id": {"S": f"p{i}"}, "n": {"N": str(i)}, "kind": {"S": "keep" if i > 5 else "drop"}})
        ddb.update_item(TableName=table, Key={"id": {"S": "p9"}}, UpdateExpression="SET n = :v", ExpressionAttributeValues={":v": {"N": "50"}})
        records = self.wait_lines(fn, "REC", 4)
        time.sleep(1)
        records = self.lines(fn, "REC")
        self.assertEqual(sorted(r[1] for r in records), ["p6", "p7", "p8", "p9"])
        self.assertTrue(all(r[0] == "INSERT" for r in records))

    def test_tumbling_window_carries_state_and_ends_with_a_final_invoke(self):
        table, stream = self.table()
        fn = self.function(WINDOW_PY)
        self.mapping(stream, fn, BatchSize=1, TumblingWindowInSeconds=2)
        ddb = self.ddb()
        for i in range(4):
            ddb.put_item(TableName=table, Item={"id": {"S": f"w{i}"}})
        deadline = time.monotonic() + 30
        while True:
            lines = self.lines(fn, "WIN")
            records = sum(int(l[2]) for l in lines)
            finals = [l for l in lines if l[3] == "True"]
            if records >= 4 and finals and sum(int(f[1]) for f in finals) >= 4 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(records, 4, lines)
        self.assertEqual(lines[0][4], "shardId-")
        by_window = {}
        for start, count, size, final, _ in lines:
            by_window.setdefault(start, []).append((int(count), int(size), final == "True"))
        for start, calls in by_window.items():
            # Within a window the state accumulates; the window ends with one record-less final invoke holding the total.
            self.assertEqual([c for c, s, f in calls if not f], list(range(1, len([1 for c, s, f in calls if not f]) + 1)), (start, calls))
            self.assertEqual(calls[-1][1:], (0, True), (start, calls))
            self.assertEqual(calls[-1][0], sum(s for c, s, f in calls), (start, calls))

    def test_mapping_validation(self):
        table, stream = self.table()
        fn = self.function(PRINTER_PY)
        self.assertAwsError(lambda: self.lam.create_event_source_mapping(EventSourceArn=stream, FunctionName=fn), 400,
                            "InvalidParameterValueException", "StartingPosition")
        self.assertAwsError(lambda: self.lam.create_event_source_mapping(EventSourceArn=stream, FunctionName=fn, StartingPosition="TRIM_HORIZON",
                                                                         ParallelizationFactor=11), 400, "ValidationException")
        self.assertAwsError(lambda: self.lam.create_event_source_mapping(EventSourceArn=stream + "x", FunctionName=fn, StartingPosition="LATEST"),
                            400, "InvalidParameterValueException")
        uuid = self.mapping(stream, fn, MaximumRecordAgeInSeconds=60, BatchSize=1000, TumblingWindowInSeconds=30)
        got = self.lam.update_event_source_mapping(UUID=uuid, MaximumRetryAttempts=5, BisectBatchOnFunctionError=True)
        self.assertEqual((got["MaximumRetryAttempts"], got["BisectBatchOnFunctionError"], got["BatchSize"], got["TumblingWindowInSeconds"]),
                         (5, True, 1000, 30))

    # ---- the Streams API ----

    def test_streams_api_with_boto3_and_cli(self):
        table, stream = self.table(view="NEW_IMAGE")
        ddb = self.ddb()
        ddb.put_item(TableName=table, Item={"id": {"S": "s1"}, "v": {"S": "one"}})
        ddb.put_item(TableName=table, Item={"id": {"S": "s1"}, "v": {"S": "two"}})
        ddb.put_item(TableName=table, Item={"id": {"S": "s1"}, "v": {"S": "two"}})  # no change: no record
        ddb.delete_item(TableName=table, Key={"id": {"S": "s1"}})
        streams = self.streams()
        listed = streams.list_streams(TableName=table)["Streams"]
        self.assertEqual([(s["StreamArn"], s["TableName"]) for s in listed], [(stream, table)])
        description = streams.describe_stream(StreamArn=stream)["StreamDescription"]
        self.assertEqual((description["StreamStatus"], description["StreamViewType"], description["TableName"]), ("ENABLED", "NEW_IMAGE", table))
        self.assertEqual(description["KeySchema"], [{"AttributeName": "id", "KeyType": "HASH"}])
        shard = description["Shards"][0]["ShardId"]
        iterator = streams.get_shard_iterator(StreamArn=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        page = streams.get_records(ShardIterator=iterator, Limit=2)
        records = page["Records"]
        page = streams.get_records(ShardIterator=page["NextShardIterator"])
        records += page["Records"]
        self.assertEqual([r["eventName"] for r in records], ["INSERT", "MODIFY", "REMOVE"])
        self.assertEqual([r["dynamodb"].get("NewImage", {}).get("v") for r in records], [{"S": "one"}, {"S": "two"}, None])
        self.assertTrue(all("OldImage" not in r["dynamodb"] for r in records))
        self.assertIsInstance(records[0]["dynamodb"]["ApproximateCreationDateTime"].year, int)
        after = streams.get_shard_iterator(StreamArn=stream, ShardId=shard, ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                                           SequenceNumber=records[0]["dynamodb"]["SequenceNumber"])["ShardIterator"]
        self.assertEqual([r["eventName"] for r in streams.get_records(ShardIterator=after)["Records"]], ["MODIFY", "REMOVE"])
        latest = streams.get_shard_iterator(StreamArn=stream, ShardId=shard, ShardIteratorType="LATEST")["ShardIterator"]
        self.assertEqual(streams.get_records(ShardIterator=latest)["Records"], [])
        # The CLI's view of the same.
        cli = self.server.aws_cli("dynamodbstreams", "describe-stream", "--stream-arn", stream)
        self.assertEqual(cli.rc, 0, cli)
        self.assertEqual(cli.json["StreamDescription"]["StreamArn"], stream)
        cli = self.server.aws_cli("dynamodbstreams", "get-shard-iterator", "--stream-arn", stream, "--shard-id", shard, "--shard-iterator-type", "TRIM_HORIZON")
        self.assertEqual(cli.rc, 0, cli)
        cli = self.server.aws_cli("dynamodbstreams", "get-records", "--shard-iterator", cli.json["ShardIterator"])
        self.assertEqual(cli.rc, 0, cli)
        self.assertEqual([r["eventName"] for r in cli.json["Records"]], ["INSERT", "MODIFY", "REMOVE"])
        # Errors in DynamoDB's shape.
        self.assertAwsError(lambda: streams.describe_stream(StreamArn=stream.replace(table, table + "-none")), 400, "ResourceNotFoundException")
        self.assertAwsError(lambda: streams.get_records(ShardIterator="garbage"), 400, "ValidationException")

    def test_disabling_the_stream_closes_its_shard_and_a_new_one_gets_a_new_arn(self):
        table, stream = self.table()
        ddb = self.ddb()
        ddb.put_item(TableName=table, Item={"id": {"S": "x"}})
        ddb.update_table(TableName=table, StreamSpecification={"StreamEnabled": False})
        description = self.streams().describe_stream(StreamArn=stream)["StreamDescription"]
        self.assertEqual(description["StreamStatus"], "DISABLED")
        self.assertIn("EndingSequenceNumber", description["Shards"][0]["SequenceNumberRange"])
        ddb.put_item(TableName=table, Item={"id": {"S": "y"}})
        time.sleep(0.01)
        again = ddb.update_table(TableName=table, StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})["TableDescription"]
        self.assertNotEqual(again["LatestStreamArn"], stream)
        self.assertAwsError(lambda: ddb.update_table(TableName=table, StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}),
                            400, "ValidationException", "already has an enabled stream")

    # ---- downstream: a function using boto3 against a table ----

    def test_function_writes_a_table_with_the_js_sdk(self):
        table, stream = self.table()
        sink, _ = self.table(name=self.fn_name("sink")[:60])
        fn = self.fn_name("copier")
        self.create_function(js_dynamodb_zip(COPIER_MJS), name=fn, runtime="nodejs20.x", handler="index.handler", Timeout=20,
                             Environment={"Variables": {"SINK": sink}})
        self.mapping(stream, fn)
        ddb = self.ddb()
        ddb.put_item(TableName=table, Item={"id": {"S": "copy-me"}, "n": {"N": "3.25"}})
        deadline = time.monotonic() + 60
        item = None
        while item is None and time.monotonic() < deadline:
            item = ddb.get_item(TableName=sink, Key={"id": {"S": "copy-me"}}).get("Item")
            time.sleep(0.1)
        self.assertEqual(item, {"id": {"S": "copy-me"}, "n": {"N": "3.25"}, "copied": {"BOOL": True}})
