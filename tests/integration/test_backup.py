"""`./lamina backup DEST --data DIR` while the server runs and writes (RELIABILITY.md, "Backup while running": VACUUM INTO,
never a file copy of a live database): a server started on the backup has the functions (a custom runtime's bootstrap
still executable), an async event still queued, the logs, the DynamoDB items and S3 objects of the moment, and every
object the backup lists can be read."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
from pathlib import Path

import lamina_harness as h
from lamina_functions import bash_bootstrap_zip

LAMINA = str(h.REPO_ROOT / "lamina")


def _backup(data: Path, destination: Path) -> subprocess.CompletedProcess:
    return subprocess.run([LAMINA, "backup", str(destination), "--data", str(data)], capture_output=True, text=True, timeout=600)


class BackupTests(h.LaminaTestCase):

    def setUp(self):
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            self.skipTest("needs servers of its own")
        self.root = Path(tempfile.mkdtemp(prefix="lamina-it-backup-"))
        self.addCleanup(shutil.rmtree, self.root, True)

    @property
    def server(self) -> h.LaminaServer:  # the test's own servers, for the harness's failure output
        return self._server

    def test_a_backup_taken_while_the_server_writes_starts_a_server_with_that_moment(self):
        data = self.root / "data"
        self._server = first = h.LaminaServer("backup-1", data_dir=data).start()
        self.addCleanup(lambda: first.proc is not None and first.proc.poll() is None and first.stop())  # stopped below unless a step failed
        lam = first.client()
        lam.create_function(FunctionName="shell", Runtime="provided.al2023", Role=h.ROLE, Handler="unused",
                            Code={"ZipFile": bash_bootstrap_zip()})
        self.wait_on(lam, "shell")
        lam.create_function(FunctionName="printer", Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                            Code={"ZipFile": h.make_zip({"app.py": "def handler(event, context):\n    print('printed', event['n'])\n    return event\n"})})
        self.wait_on(lam, "printer")
        self.assertEqual(lam.invoke(FunctionName="printer", Payload=b'{"n": 1}')["StatusCode"], 200)
        # An event that waits in the queue (no concurrency) when the backup is taken.
        lam.put_function_concurrency(FunctionName="printer", ReservedConcurrentExecutions=0)
        self.assertEqual(lam.invoke(FunctionName="printer", InvocationType="Event", Payload=b'{"n": 2}')["StatusCode"], 202)
        s3 = h.boto3_client(first.url, "s3")
        s3.create_bucket(Bucket="kept")
        s3.put_object(Bucket="kept", Key="before", Body=b"written before the backup")
        dynamodb = h.boto3_client(first.url, "dynamodb")
        dynamodb.create_table(TableName="kept", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        dynamodb.put_item(TableName="kept", Item={"k": {"S": "before"}})
        logs = h.boto3_client(first.url, "logs")
        deadline = time.monotonic() + 30
        while not any("printed 1" in e["message"] for e in logs.filter_log_events(logGroupName="/aws/lambda/printer")["events"]):
            self.assertLess(time.monotonic(), deadline, "the log line was not stored")
            time.sleep(0.1)

        # Writers that keep going while the backup is taken: objects put and deleted, items put.
        stop = threading.Event()
        written: list[int] = []

        def write() -> None:
            s3w, dynamodbw = h.boto3_client(first.url, "s3"), h.boto3_client(first.url, "dynamodb")
            n = 0
            while not stop.is_set():
                s3w.put_object(Bucket="kept", Key=f"during/{n}", Body=f"body {n}".encode())
                if n % 3 == 0:
                    s3w.delete_object(Bucket="kept", Key=f"during/{n}")
                dynamodbw.put_item(TableName="kept", Item={"k": {"S": f"during-{n}"}})
                written.append(n)
                n += 1

        writer = threading.Thread(target=write)
        writer.start()
        try:
            while len(written) < 20:
                time.sleep(0.05)
            backup = self.root / "backup"
            done = _backup(data, backup)
        finally:
            stop.set()
            writer.join()
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("lamina serve --data", done.stdout)
        self.assertFalse((backup / "run").exists(), "the sandboxes' runtime files are the running server's")
        first.stop()

        self._server = second = h.LaminaServer("backup-2", data_dir=backup).start()
        self.addCleanup(second.stop)
        lam = second.client()
        self.assertEqual(json.loads(lam.invoke(FunctionName="shell", Payload=b'{"from": "the backup"}')["Payload"].read())["echo"], {"from": "the backup"})
        s3 = h.boto3_client(second.url, "s3")
        self.assertEqual(s3.get_object(Bucket="kept", Key="before")["Body"].read(), b"written before the backup")
        # Every object the backup lists is readable: its body was in place before the database named it.
        listed = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="kept", Prefix="during/") for o in page.get("Contents", [])]
        for key in listed:
            self.assertEqual(s3.get_object(Bucket="kept", Key=key)["Body"].read(), f"body {key.split('/')[1]}".encode())
        dynamodb = h.boto3_client(second.url, "dynamodb")
        self.assertEqual(dynamodb.get_item(TableName="kept", Key={"k": {"S": "before"}})["Item"]["k"]["S"], "before")
        self.assertGreaterEqual(dynamodb.scan(TableName="kept", Select="COUNT")["Count"], 21)
        logs = h.boto3_client(second.url, "logs")
        self.assertTrue(any("printed 1" in e["message"] for e in logs.filter_log_events(logGroupName="/aws/lambda/printer")["events"]))
        # The queued event runs once its function may run again.
        lam.delete_function_concurrency(FunctionName="printer")
        deadline = time.monotonic() + 60
        while not any("printed 2" in e["message"] for e in logs.filter_log_events(logGroupName="/aws/lambda/printer")["events"]):
            self.assertLess(time.monotonic(), deadline, "the queued event did not run from the backup")
            time.sleep(0.2)

    def test_a_backup_goes_to_a_new_directory_from_a_data_directory(self):
        self._server = None
        not_data = self.root / "not-data"
        not_data.mkdir()
        done = _backup(not_data, self.root / "b1")
        self.assertEqual(done.returncode, 1)
        self.assertIn("is not a Lamina data directory", done.stderr)
        self.assertFalse((self.root / "b1").exists())

        data = self.root / "data"
        self._server = h.LaminaServer("backup-3", data_dir=data).start()
        self.addCleanup(self._server.stop)
        taken = self.root / "taken"
        (taken / "something").mkdir(parents=True)
        done = _backup(data, taken)
        self.assertEqual(done.returncode, 1)
        self.assertIn("exists and is not empty", done.stderr)
        self.assertEqual([p.name for p in taken.iterdir()], ["something"])
        done = _backup(data, data / "inside")
        self.assertEqual(done.returncode, 1)
        self.assertIn("inside the data directory", done.stderr)

    @staticmethod
    def wait_on(lam, name: str) -> None:
        deadline = time.monotonic() + 60
        while lam.get_function_configuration(FunctionName=name)["State"] != "Active":
            assert time.monotonic() < deadline, f"{name} did not become Active"
            time.sleep(0.05)


if __name__ == "__main__":
    unittest.main()
