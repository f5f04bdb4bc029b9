"""A cluster node whose PostgreSQL goes away, stops answering or comes back (RELIABILITY.md, "PostgreSQL down, slow or
reset mid-transaction"). The node reaches PostgreSQL 15 (Debian's, in a temp dir) through a TCP proxy of the test's
(postgres_support.FaultProxy, what Toxiproxy would do): `down()` resets every connection and refuses new ones, `hold()`
keeps them open but forwards nothing, `up()` forwards again.

What a user must see: warm invokes go on (their path touches no database); every request that needs the database is
answered at once (down) or within seconds (held) with a retryable 500 `ServiceException` saying the database is
unavailable, and S3 with a 503, never a stack trace nor a half-written change; an asynchronous invoke is refused rather
than accepted with a 202 the node cannot keep; the log lines written meanwhile are kept and stored once the database is
back; the node recovers by itself; events accepted before a reset all run."""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import unittest
from pathlib import Path

import botocore.exceptions

import lamina_harness as h
import postgres_support as ps

MODULE = __name__
_pg: ps.Postgres | None = None
_proxy: ps.FaultProxy | None = None
_root: Path | None = None
_skip_reason: str | None = None


def setUpModule() -> None:
    global _pg, _proxy, _root, _skip_reason
    if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
        _skip_reason = "starts a server of its own"
        return
    bin_dir = ps.postgres_bin()
    if bin_dir is None:
        _skip_reason = "needs Debian's postgresql (test.sh installs it)"
        return
    _root = Path(tempfile.mkdtemp(prefix="lamina-it-pgfaults-"))
    (_root / "shared").mkdir()
    _pg = ps.Postgres(_root, bin_dir)
    _pg.start()
    _proxy = ps.FaultProxy(_pg.port)
    try:
        h.start_module_server(MODULE, ["--database", _pg.url(port=_proxy.port), "--shared-dir", str(_root / "shared"),
                                       "--node-id", "faults", "--async-retry-delay", "1"])
    except BaseException:
        tearDownModule()
        raise


def tearDownModule() -> None:
    h.stop_module_server(MODULE)
    if _proxy is not None:
        _proxy.close()
    if _pg is not None:
        _pg.stop()
    if _root is not None:
        shutil.rmtree(_root, ignore_errors=True)


class PostgresFaultTests(h.LaminaTestCase):
    def setUp(self) -> None:
        if _skip_reason:
            self.skipTest(_skip_reason)
        assert _proxy is not None
        _proxy.up()
        self.addCleanup(_proxy.up)  # a failed test never leaves the next one without its database
        self._wait_for_the_database()

    # ---- helpers ----------------------------------------------------------------------------------------------------
    def _wait_for_the_database(self, timeout: float = 30) -> float:
        """Waits until a control-plane read that needs PostgreSQL succeeds; the seconds it took."""
        started = time.monotonic()
        while True:
            try:
                self.lam.list_event_source_mappings()  # read from PostgreSQL on every call
                self.lam.get_account_settings()
                return time.monotonic() - started
            except botocore.exceptions.ClientError as e:
                self.assertEqual(e.response["ResponseMetadata"]["HTTPStatusCode"], 500, e.response)
                self.assertLess(time.monotonic() - started, timeout, "the node did not recover once its database was back")
                time.sleep(0.1)

    def _once_reconnected(self, call):
        """`call`'s answer once the database is back. A pooled connection the outage broke fails its first use (503
        ServiceUnavailable, which the SDKs retry, as this does; at most once per such connection)."""
        for _ in range(20):
            try:
                return call()
            except botocore.exceptions.ClientError as e:
                if e.response["ResponseMetadata"]["HTTPStatusCode"] != 503:
                    raise
        return call()

    def _printed(self, function: str, prefix: str) -> list[str]:
        """What `function` printed on lines starting with `prefix` (the rest of each), as stored in its log group."""
        logs = h.boto3_client(self.server.url, "logs")
        try:
            pages = list(logs.get_paginator("filter_log_events").paginate(logGroupName=f"/aws/lambda/{function}"))
        except logs.exceptions.ResourceNotFoundException:
            return []
        return [line[len(prefix):].strip() for page in pages for event in page["events"]
                for line in event["message"].splitlines() if line.startswith(prefix)]

    def _wait_printed(self, function: str, prefix: str, expected: set[str], timeout: float = 60) -> list[str]:
        deadline = time.monotonic() + timeout
        while not expected <= set(printed := self._printed(function, prefix)):
            self.assertLess(time.monotonic(), deadline, f"{function} printed {sorted(set(printed))}, expected {sorted(expected)}")
            time.sleep(0.25)
        return printed

    def assertUnavailable(self, call, within: float) -> None:
        """`call` fails with Lamina's answer for a database it cannot use, within `within` seconds."""
        started = time.monotonic()
        with self.assertRaises(botocore.exceptions.ClientError) as caught:
            call()
        elapsed = time.monotonic() - started
        error = caught.exception.response
        self.assertEqual(error["ResponseMetadata"]["HTTPStatusCode"], 500, error)
        self.assertEqual(error["Error"]["Code"], "ServiceException", error)
        self.assertIn("database is unavailable", error["Error"]["Message"])
        self.assertLess(elapsed, within, f"answered after {elapsed:.1f} s")

    def assertNoStackTraces(self, mark: int) -> None:
        output = self.server.output_since(mark, limit=100_000)
        self.assertNotIn("Unhandled error", output)
        self.assertNotIn("   at ", output)

    # ---- tests ------------------------------------------------------------------------------------------------------
    def test_a_database_gone_is_answered_at_once_warm_invokes_go_on_and_their_logs_are_kept(self):
        assert _proxy is not None
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": "def handler(event, context):\n    print('ran', event['n'])\n    return event\n"}), name=name)
        self.invoke_ok(name, {"n": 0})
        cold = self.fn_name("cold")
        self.create_function(h.make_zip({"app.py": "def handler(event, context):\n    print('ran', event['n'])\n    return event\n"}), name=cold)
        dynamodb = h.boto3_client(self.server.url, "dynamodb")
        table = f"faults-{name[-6:]}"
        dynamodb.create_table(TableName=table, KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        self.addCleanup(lambda: self._once_reconnected(lambda: dynamodb.delete_table(TableName=table)))
        mark = self.server.mark()
        _proxy.down()

        for n in (1, 2, 3):
            _, answer = self.invoke_ok(name, {"n": n})
            self.assertEqual(answer, {"n": n})
        # A cold start needs no database either: the function is in the node's memory, its code on disk.
        self.assertEqual(self.invoke_ok(cold, {"n": 1})[1], {"n": 1})
        other = self.fn_name("other")
        self.assertUnavailable(lambda: self.lam.create_function(FunctionName=other, Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                                                               Code={"ZipFile": h.make_zip({"app.py": "def handler(e, c):\n    return 1\n"})}), within=3)
        self.assertUnavailable(lambda: self.lam.get_function(FunctionName=name), within=3)
        self.assertUnavailable(lambda: self.lam.update_function_configuration(FunctionName=name, Description="changed"), within=3)
        # Refused, not accepted with a 202 the node could not keep.
        self.assertUnavailable(lambda: self.lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"n": 99}'), within=3)
        # An invoke of a function this node does not know is not answered 404 (it may exist): the database is asked.
        self.assertUnavailable(lambda: self.lam.invoke(FunctionName=other, Payload=b"{}"), within=3)
        # The other services answer in their own protocols (S3's XML, SQS's and DynamoDB's JSON, SNS's Query XML),
        # which the SDKs parse into AWS's common ServiceUnavailable and retry.
        for call in (lambda: h.boto3_client(self.server.url, "s3").create_bucket(Bucket=f"faults-{name[-6:]}"),
                     lambda: h.boto3_client(self.server.url, "sqs").create_queue(QueueName=f"faults-{name[-6:]}"),
                     lambda: h.boto3_client(self.server.url, "sns").create_topic(Name=f"faults-{name[-6:]}"),
                     lambda: dynamodb.put_item(TableName=table, Item={"k": {"S": "written"}}),
                     lambda: dynamodb.get_item(TableName=table, Key={"k": {"S": "written"}})):
            with self.assertRaises(botocore.exceptions.ClientError) as caught:
                call()
            self.assertEqual(caught.exception.response["ResponseMetadata"]["HTTPStatusCode"], 503, caught.exception.response)
            self.assertEqual(caught.exception.response["Error"]["Code"], "ServiceUnavailable", caught.exception.response)
        self.assertEqual(self.server.raw("GET", "/health").status, 200)

        _proxy.up()
        self._wait_for_the_database()
        self.assertNoStackTraces(mark)
        # Nothing half-written: the refused writes did not happen.
        self.assertNotIn(other, self.list_function_names())
        self.assertNotEqual(self.lam.get_function_configuration(FunctionName=name).get("Description"), "changed")
        self.assertEqual(self.server.raw("GET", f"/lamina/v1/async-events?function={name}&limit=1").json["Queued"], 0)
        self.assertNotIn("Item", self._once_reconnected(lambda: dynamodb.get_item(TableName=table, Key={"k": {"S": "written"}})))
        # Every line printed while the database was away is in the log group, once.
        printed = self._wait_printed(name, "ran ", {"0", "1", "2", "3"})
        self.assertEqual(sorted(printed), ["0", "1", "2", "3"])
        self.assertEqual(self._wait_printed(cold, "ran ", {"1"}), ["1"])
        # And the node works again: writes, asynchronous invokes.
        self.lam.update_function_configuration(FunctionName=name, Description="after")
        self.wait_updated(name)
        self.assertEqual(self.lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"n": 4}')["StatusCode"], 202)
        self._wait_printed(name, "ran ", {"4"})

    def test_b_a_database_that_stopped_answering_is_answered_within_seconds(self):
        assert _proxy is not None
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": "def handler(event, context):\n    print('ran', event['n'])\n    return event\n"}), name=name)
        self.invoke_ok(name, {"n": 0})
        mark = self.server.mark()
        _proxy.hold()

        started = time.monotonic()
        _, answer = self.invoke_ok(name, {"n": 1})
        self.assertEqual(answer, {"n": 1})
        self.assertLess(time.monotonic() - started, 2, "a warm invoke waited for the database")
        # Npgsql's own defaults held a request 45 s per statement (15 s to connect, 30 s per command); Lamina's are
        # 5 and 10. A write waits for a connection; an async accept for its statement.
        self.assertUnavailable(lambda: self.lam.update_function_configuration(FunctionName=name, Description="held"), within=25)
        self.assertUnavailable(lambda: self.lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"n": 99}'), within=25)
        _, answer = self.invoke_ok(name, {"n": 2})

        _proxy.up()
        self._wait_for_the_database()
        self.assertNoStackTraces(mark)
        self.assertNotEqual(self.lam.get_function_configuration(FunctionName=name).get("Description"), "held")
        printed = self._wait_printed(name, "ran ", {"0", "1", "2"})
        self.assertEqual(sorted(printed), ["0", "1", "2"])

    def test_c_events_accepted_before_a_reset_all_run_once_the_database_is_back(self):
        assert _proxy is not None
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": "import time\ndef handler(event, context):\n    time.sleep(0.2)\n    print('ran', event['n'])\n"}), name=name)
        count = 40
        for n in range(count):
            self.assertEqual(self.lam.invoke(FunctionName=name, InvocationType="Event", Payload=f'{{"n": {n}}}'.encode())["StatusCode"], 202)
        # Down while events run and settle: outcomes that cannot be stored, events that cannot be claimed. The
        # outage lasts until the node has met it (the async store's failure in its log), then the database is back.
        self._wait_printed(name, "ran ", {"0"}, timeout=30)
        mark = self.server.mark()
        _proxy.down()
        deadline = time.monotonic() + 30
        while "Lamina.Server.Async" not in self.server.output_since(mark, limit=100_000):
            self.assertLess(time.monotonic(), deadline, "the node did not meet the outage")
            time.sleep(0.05)
        _proxy.up()

        printed = self._wait_printed(name, "ran ", {str(n) for n in range(count)}, timeout=120)
        deadline = time.monotonic() + 60
        while self.server.raw("GET", f"/lamina/v1/async-events?function={name}&limit=1").json["Queued"] != 0:
            self.assertLess(time.monotonic(), deadline, self.server.raw("GET", f"/lamina/v1/async-events?function={name}").json)
            time.sleep(0.25)
        duplicates = len(printed) - count
        print(f"\n{count} events through a reset of the database: each ran, {duplicates} ran twice (at least once)")

    def test_d_a_nul_in_a_functions_output_loses_no_line(self):
        quiet = self.fn_name("quiet")
        nul = self.fn_name("nul")
        self.create_function(h.make_zip({"app.py": "def handler(event, context):\n    print('line', event['n'])\n"}), name=quiet)
        self.create_function(h.make_zip({"app.py": "def handler(event, context):\n    print('line before')\n    print('line nul\\x00here')\n    print('line after')\n"}), name=nul)
        mark = self.server.mark()
        # In one batch of the log writer: the other function's lines were refused with the NUL's.
        threads = [threading.Thread(target=self.invoke_ok, args=(quiet, {"n": n})) for n in range(3)]
        for t in threads:
            t.start()
        self.invoke_ok(nul, {})
        for t in threads:
            t.join()
        self.assertEqual(sorted(self._wait_printed(quiet, "line ", {"0", "1", "2"})), ["0", "1", "2"])
        self.assertEqual(self._wait_printed(nul, "line ", {"before", "nul\ufffdhere", "after"}), ["before", "nul\ufffdhere", "after"])
        self.assertNotIn("could not write", self.server.output_since(mark))


if __name__ == "__main__":
    unittest.main()
