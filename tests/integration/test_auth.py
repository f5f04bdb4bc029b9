"""Authentication (issue #9, first part): access keys made with `./lamina keys`, SigV4 verified on every request once
one exists (header and presigned forms, payload hash, clock skew, scope), AWS-shaped 403s with no side effect,
revocation without a restart, and the loopback-only default without credentials."""
from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import uuid
from pathlib import Path
from unittest import mock

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.exceptions
import requests
from botocore.config import Config

import lamina_harness as h
from lamina_functions import py_probe_zip, sdk_caller_zip

LAMINA = str(h.REPO_ROOT / "lamina")


def keys(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([LAMINA, "keys", *args], capture_output=True, text=True, timeout=120)


def wait_refused(test: unittest.TestCase, lam) -> None:
    """Waits until `lam`'s key is refused (a revocation takes effect within a second or so)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            lam.list_functions()
        except botocore.exceptions.ClientError as e:
            test.assertEqual(e.response["Error"]["Code"], "UnrecognizedClientException")
            return
        test.assertLess(time.monotonic(), deadline, "the revoked key still works")
        time.sleep(0.1)


class AuthTests(unittest.TestCase):

    _server: h.LaminaServer | None = None
    _root: Path | None = None
    _key: dict = {}

    @classmethod
    def setUpClass(cls):
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            raise unittest.SkipTest("needs a server of its own")
        cls._root = Path(tempfile.mkdtemp(prefix="lamina-it-auth-"))
        created = keys("create", "--data", str(cls._root / "data"))
        assert created.returncode == 0, created.stderr
        cls._key = json.loads(created.stdout)
        cls._server = h.LaminaServer("auth", data_dir=cls._root / "data").start()

    @classmethod
    def tearDownClass(cls):
        if cls._server is not None:
            cls._server.stop()
        if cls._root is not None:
            shutil.rmtree(cls._root, ignore_errors=True)

    def client(self, service: str = "lambda", key: str | None = None, secret: str | None = None):
        return boto3.client(service, endpoint_url=self._server.url, region_name=h.REGION,
                            aws_access_key_id=key or self._key["AccessKeyId"],
                            aws_secret_access_key=secret or self._key["SecretAccessKey"],
                            config=Config(retries={"max_attempts": 0}))

    def assertRefused(self, call, code: str) -> None:
        with self.assertRaises(botocore.exceptions.ClientError) as caught:
            call()
        error = caught.exception.response
        self.assertEqual(error["ResponseMetadata"]["HTTPStatusCode"], 403, error)
        self.assertEqual(error["Error"]["Code"], code, error)

    def test_key_is_printed_once_and_listed_without_its_secret(self):
        self.assertRegex(self._key["AccessKeyId"], r"^LKIA[A-Z2-7]{16}$")
        self.assertEqual(len(self._key["SecretAccessKey"]), 40)
        self.assertEqual(self._key["AccountId"], "000000000000")
        listed = keys("list", "--data", str(self._root / "data"))
        self.assertEqual(listed.returncode, 0, listed.stderr)
        self.assertIn(self._key["AccessKeyId"], listed.stdout)
        self.assertNotIn(self._key["SecretAccessKey"], listed.stdout)
        self.assertNotIn(self._key["SecretAccessKey"], self._server.output_since(0, 100000))

    def test_signed_requests_work_with_boto3_and_both_clis(self):
        lam = self.client()
        name = f"auth-{int(time.time() * 1000)}"
        lam.create_function(FunctionName=name, Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                            Code={"ZipFile": h.make_zip({"app.py": "def handler(e, c):\n    return e\n"})})
        self.assertEqual(json.loads(lam.invoke(FunctionName=name, Payload=b'{"a":1}')["Payload"].read()), {"a": 1})
        self.assertIn("logGroups", self.client("logs").describe_log_groups())
        env = dict(self._server.aws_cli_env(), AWS_ACCESS_KEY_ID=self._key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=self._key["SecretAccessKey"])
        for cli in ("aws", "/usr/bin/aws"):
            out = subprocess.run(self._server.aws_cli_command("lambda", "get-function", "--function-name", name, cli=cli),
                                 env=env, capture_output=True, text=True, timeout=120)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertEqual(json.loads(out.stdout)["Configuration"]["FunctionName"], name)
        # The presigned (query-string) form.
        url = lam.generate_presigned_url("list_functions", ExpiresIn=60)
        self.assertIn("X-Amz-Signature=", url)
        self.assertEqual(requests.get(url, timeout=30).status_code, 200)

    def test_refusals_are_aws_shaped_403s_without_side_effects(self):
        name = f"auth-refused-{int(time.time() * 1000)}"
        code = {"ZipFile": h.make_zip({"app.py": "def handler(e, c):\n    return e\n"})}
        wrong_secret = self.client(secret="x" * 40)
        self.assertRefused(lambda: wrong_secret.create_function(FunctionName=name, Runtime="python3.12", Role=h.ROLE,
                                                                Handler="app.handler", Code=code), "InvalidSignatureException")
        self.assertRefused(lambda: self.client(key="LKIAUNKNOWNUNKNOWN22").list_functions(), "UnrecognizedClientException")
        self.assertNotIn(name, [f["FunctionName"] for f in self.client().list_functions()["Functions"]])

        unsigned = requests.get(f"{self._server.url}/2015-03-31/functions/", timeout=30)
        self.assertEqual(unsigned.status_code, 403)
        self.assertEqual(unsigned.headers["x-amzn-ErrorType"], "MissingAuthenticationTokenException")
        self.assertEqual(requests.get(f"{self._server.url}/health", timeout=30).status_code, 200)
        self.assertEqual(requests.get(f"{self._server.url}/metrics", timeout=30).status_code, 403)

        # A body changed after signing, a signature 20 minutes old, another region's scope.
        credentials = botocore.credentials.Credentials(self._key["AccessKeyId"], self._key["SecretAccessKey"])
        signed = botocore.awsrequest.AWSRequest(method="POST", url=f"{self._server.url}/2015-03-31/functions/{name}/invocations",
                                                data=b'{"a":1}')
        botocore.auth.SigV4Auth(credentials, "lambda", h.REGION).add_auth(signed)
        tampered = requests.post(signed.url, data=b'{"a":2}', headers=dict(signed.headers), timeout=30)
        self.assertEqual((tampered.status_code, tampered.headers["x-amzn-ErrorType"]), (403, "InvalidSignatureException"))

        old = botocore.awsrequest.AWSRequest(method="GET", url=f"{self._server.url}/2015-03-31/functions/")
        twenty_minutes_ago = botocore.auth.get_current_datetime() - datetime.timedelta(minutes=20)
        with mock.patch.object(botocore.auth, "get_current_datetime", return_value=twenty_minutes_ago):
            botocore.auth.SigV4Auth(credentials, "lambda", h.REGION).add_auth(old)
        expired = requests.get(old.url, headers=dict(old.headers), timeout=30)
        self.assertEqual((expired.status_code, expired.headers["x-amzn-ErrorType"]), (403, "InvalidSignatureException"))
        self.assertIn("Signature expired", expired.json()["message"])

        elsewhere = botocore.awsrequest.AWSRequest(method="GET", url=f"{self._server.url}/2015-03-31/functions/")
        botocore.auth.SigV4Auth(credentials, "lambda", "eu-west-1").add_auth(elsewhere)
        wrong_region = requests.get(elsewhere.url, headers=dict(elsewhere.headers), timeout=30)
        self.assertEqual((wrong_region.status_code, wrong_region.headers["x-amzn-ErrorType"]), (403, "InvalidSignatureException"))

    def test_lamina_commands_sign_with_the_environments_key(self):
        base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        signed = dict(base, AWS_ACCESS_KEY_ID=self._key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=self._key["SecretAccessKey"])
        events = [LAMINA, "events", "list", "--endpoint", self._server.url]
        ok = subprocess.run(events, env=signed, capture_output=True, text=True, timeout=120)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        self.assertIn("Events", json.loads(ok.stdout))
        refused = subprocess.run(events, env=base, capture_output=True, text=True, timeout=120)
        self.assertEqual(refused.returncode, 1)
        self.assertIn("MissingAuthenticationTokenException", refused.stderr)
        logs = subprocess.run([LAMINA, "logs", "no-such-function", "--endpoint", self._server.url], env=signed,
                              capture_output=True, text=True, timeout=120)
        self.assertIn("ResourceNotFoundException", logs.stderr)  # signed: it got as far as the Logs API

    def test_revocation_takes_effect_without_a_restart(self):
        created = keys("create", "--data", str(self._root / "data"))
        key = json.loads(created.stdout)
        lam = self.client(key=key["AccessKeyId"], secret=key["SecretAccessKey"])
        deadline = time.monotonic() + 10
        while True:  # the server notices new keys within a second
            try:
                lam.list_functions()
                break
            except botocore.exceptions.ClientError:
                self.assertLess(time.monotonic(), deadline, "the new key was never accepted")
                time.sleep(0.1)
        revoked = keys("revoke", key["AccessKeyId"], "--data", str(self._root / "data"))
        self.assertEqual(revoked.returncode, 0, revoked.stderr)
        wait_refused(self, lam)
        self.client().list_functions()  # the other key still works
        self.assertEqual(keys("revoke", key["AccessKeyId"], "--data", str(self._root / "data")).returncode, 1)

    def test_code_download_links_work_without_a_signature(self):
        owner = self.client()
        name = "download-" + uuid.uuid4().hex[:6]
        code = py_probe_zip()
        owner.create_function(FunctionName=name, Runtime="python3.12", Role=h.ROLE, Handler="app.handler", Code={"ZipFile": code})
        self.addCleanup(owner.delete_function, FunctionName=name)
        location = owner.get_function(FunctionName=name)["Code"]["Location"]
        download = requests.get(location, timeout=30)
        self.assertEqual(download.status_code, 200, download.text[:300])
        self.assertEqual(download.content, code)
        tampered = requests.get(location.replace("signature=", "signature=0"), timeout=30)
        self.assertEqual(tampered.status_code, 403)

    def _new_key(self, account: str) -> dict:
        """A new key of `account`, once the server knows it (it looks for new keys every second)."""
        created = keys("create", "--data", str(self._root / "data"), "--account", account)
        self.assertEqual(created.returncode, 0, created.stderr)
        key = json.loads(created.stdout)
        lam = self.client(key=key["AccessKeyId"], secret=key["SecretAccessKey"])
        deadline = time.monotonic() + 10
        while True:
            try:
                lam.list_functions()
                return key
            except botocore.exceptions.ClientError as e:
                if e.response["Error"]["Code"] != "UnrecognizedClientException":
                    return key
                self.assertLess(time.monotonic(), deadline, "the new key was never accepted")
                time.sleep(0.1)

    def test_another_account_invokes_only_what_a_resource_policy_allows(self):
        owner = self.client()
        name = "cross-account-" + uuid.uuid4().hex[:6]
        owner.create_function(FunctionName=name, Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                              Code={"ZipFile": py_probe_zip()})
        self.addCleanup(owner.delete_function, FunctionName=name)
        owner.publish_version(FunctionName=name)
        owner.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        guest_key = self._new_key("111111111111")
        guest = self.client(key=guest_key["AccessKeyId"], secret=guest_key["SecretAccessKey"])
        stranger_key = self._new_key("222222222222")
        stranger = self.client(key=stranger_key["AccessKeyId"], secret=stranger_key["SecretAccessKey"])
        arn = h.function_arn(name)

        # Nothing but invocations crosses accounts, and those only with a statement for the caller: another account's
        # function is not there for anything else.
        self.assertNotIn(name, [f["FunctionName"] for f in guest.list_functions()["Functions"]])
        for call in (lambda: guest.get_function(FunctionName=arn),
                     lambda: guest.add_permission(FunctionName=arn, StatementId="self", Action="lambda:*", Principal="111111111111"),
                     lambda: guest.delete_function(FunctionName=arn)):
            with self.assertRaises(botocore.exceptions.ClientError) as caught:
                call()
            self.assertEqual(caught.exception.response["Error"]["Code"], "ResourceNotFoundException")
        self.assertRefused(lambda: guest.invoke(FunctionName=arn, Payload=b"{}"), "AccessDeniedException")
        self.assertRefused(lambda: guest.invoke(FunctionName=arn + "-missing", Payload=b"{}"), "AccessDeniedException")

        owner.add_permission(FunctionName=name, StatementId="guest", Action="lambda:InvokeFunction", Principal="111111111111")
        result = guest.invoke(FunctionName=arn, Payload=b'{"op": "echo", "from": "guest"}')
        self.assertEqual(json.loads(result["Payload"].read())["event"]["from"], "guest")
        queued = guest.invoke(FunctionName=arn, InvocationType="Event", Payload=b"{}")
        self.assertEqual(queued["StatusCode"], 202)
        # A permission is per qualifier: the alias has none; another account has none either.
        self.assertRefused(lambda: guest.invoke(FunctionName=arn + ":live", Payload=b"{}"), "AccessDeniedException")
        self.assertRefused(lambda: stranger.invoke(FunctionName=arn, Payload=b"{}"), "AccessDeniedException")
        owner.add_permission(FunctionName=name, StatementId="guest-live", Action="lambda:InvokeFunction",
                             Principal="arn:aws:iam::111111111111:role/caller", Qualifier="live")
        self.assertEqual(guest.invoke(FunctionName=arn + ":live", Payload=b"{}")["StatusCode"], 200)

        owner.remove_permission(FunctionName=name, StatementId="guest")
        self.assertRefused(lambda: guest.invoke(FunctionName=arn, Payload=b"{}"), "AccessDeniedException")

    def test_accounts_are_tenants(self):
        owner = self.client()
        guest_key = self._new_key("333333333333")
        guest = self.client(key=guest_key["AccessKeyId"], secret=guest_key["SecretAccessKey"])
        guest_logs = self.client("logs", key=guest_key["AccessKeyId"], secret=guest_key["SecretAccessKey"])
        name = "tenant-" + uuid.uuid4().hex[:6]
        # The same name in two accounts: two functions, each with its own code.
        owner.create_function(FunctionName=name, Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                              Code={"ZipFile": h.make_zip({"app.py": "def handler(e, c):\n    return 'owner'\n"})})
        self.addCleanup(owner.delete_function, FunctionName=name)
        created = guest.create_function(FunctionName=name, Runtime="python3.12", Role="arn:aws:iam::333333333333:role/r",
                                        Handler="app.handler", Code={"ZipFile": py_probe_zip()})
        self.assertEqual(created["FunctionArn"], f"arn:aws:lambda:us-east-1:333333333333:function:{name}")
        self.assertEqual(created["FunctionName"], name)

        self.assertEqual(json.loads(owner.invoke(FunctionName=name)["Payload"].read()), "owner")
        guest_out = json.loads(guest.invoke(FunctionName=name, Payload=b'{"op": "env"}')["Payload"].read())
        self.assertEqual(guest_out["env"]["AWS_LAMBDA_FUNCTION_NAME"], name)
        self.assertEqual(guest_out["env"]["AWS_LAMBDA_LOG_GROUP_NAME"], f"/aws/lambda/{name}")
        self.assertIn(name, [f["FunctionName"] for f in guest.list_functions()["Functions"]])
        self.assertEqual([f["FunctionArn"] for f in guest.list_functions()["Functions"]],
                         [f"arn:aws:lambda:us-east-1:333333333333:function:{name}"])
        self.assertEqual(guest.get_account_settings()["AccountUsage"]["FunctionCount"], 1)
        owner_arns = [f["FunctionArn"] for f in owner.list_functions()["Functions"]]
        self.assertNotIn(f"arn:aws:lambda:us-east-1:333333333333:function:{name}", owner_arns)

        # Each account reads its own functions' logs only.
        deadline = time.monotonic() + 30
        while True:
            groups = [g["logGroupName"] for g in guest_logs.describe_log_groups()["logGroups"]]
            if f"/aws/lambda/{name}" in groups:
                break
            self.assertLess(time.monotonic(), deadline, groups)
            time.sleep(0.2)
        self.assertEqual(groups, [f"/aws/lambda/{name}"])
        owner_groups = [g["logGroupName"] for g in self.client("logs").describe_log_groups()["logGroups"]]
        self.assertTrue(all(":" not in g for g in owner_groups), owner_groups)

        # Layers, event rules and the operator API stay the server's account's.
        self.assertRefused(lambda: guest.list_layers(), "AccessDeniedException")
        self.assertRefused(lambda: self.client("events", key=guest_key["AccessKeyId"], secret=guest_key["SecretAccessKey"]).list_rules(),
                           "AccessDeniedException")
        guest.delete_function(FunctionName=name)
        self.assertEqual(json.loads(owner.invoke(FunctionName=name)["Payload"].read()), "owner")

    def test_dynamodb_tables_and_streams_are_per_account(self):
        owner = self.client("dynamodb")
        guest_key = self._new_key("444444444444")
        guest = self.client("dynamodb", key=guest_key["AccessKeyId"], secret=guest_key["SecretAccessKey"])
        name = "tenant-table-" + uuid.uuid4().hex[:6]
        spec = dict(KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}], AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                    BillingMode="PAY_PER_REQUEST", StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})
        mine = owner.create_table(TableName=name, **spec)["TableDescription"]
        self.addCleanup(owner.delete_table, TableName=name)
        theirs = guest.create_table(TableName=name, **spec)["TableDescription"]
        self.assertEqual(theirs["TableArn"], f"arn:aws:dynamodb:us-east-1:444444444444:table/{name}")
        owner.put_item(TableName=name, Item={"pk": {"S": "owner"}})
        guest.put_item(TableName=name, Item={"pk": {"S": "guest"}})
        self.assertEqual([i["pk"]["S"] for i in owner.scan(TableName=name)["Items"]], ["owner"])
        self.assertEqual([i["pk"]["S"] for i in guest.scan(TableName=name)["Items"]], ["guest"])
        self.assertEqual(guest.list_tables()["TableNames"], [name])
        guest_streams = self.client("dynamodbstreams", key=guest_key["AccessKeyId"], secret=guest_key["SecretAccessKey"])
        self.assertEqual([s["StreamArn"] for s in guest_streams.list_streams()["Streams"]], [theirs["LatestStreamArn"]])
        with self.assertRaises(botocore.exceptions.ClientError) as caught:
            guest_streams.describe_stream(StreamArn=mine["LatestStreamArn"])
        self.assertEqual(caught.exception.response["Error"]["Code"], "ResourceNotFoundException")
        guest.delete_table(TableName=name)
        self.assertEqual(owner.get_item(TableName=name, Key={"pk": {"S": "owner"}})["Item"], {"pk": {"S": "owner"}})

    def test_function_credentials_work_with_keys_and_nowhere_else(self):
        owner = self.client()
        target = "cred-target-" + uuid.uuid4().hex[:6]
        caller = "cred-caller-" + uuid.uuid4().hex[:6]
        owner.create_function(FunctionName=target, Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                              Code={"ZipFile": py_probe_zip()})
        self.addCleanup(owner.delete_function, FunctionName=target)
        owner.create_function(FunctionName=caller, Runtime="nodejs20.x", Role=h.ROLE, Handler="index.handler",
                              Code={"ZipFile": sdk_caller_zip()}, Timeout=30)
        self.addCleanup(owner.delete_function, FunctionName=caller)
        out = json.loads(owner.invoke(FunctionName=caller, Payload=json.dumps({"invoke": target, "reveal": True}))["Payload"].read())
        self.assertNotIn("sdkError", out, out)
        self.assertEqual(out["invoked"]["event"], {"via": "sdk"})
        # Outside their environment the credentials are nothing.
        credentials = out["credentials"]
        leaked = boto3.client("lambda", endpoint_url=self._server.url, region_name=h.REGION,
                              aws_access_key_id=credentials["id"], aws_secret_access_key=credentials["secret"],
                              aws_session_token=credentials["token"], config=Config(retries={"max_attempts": 0}))
        self.assertRefused(lambda: leaked.list_functions(), "UnrecognizedClientException")

    def test_function_urls_with_keys(self):
        owner = self.client()
        name = "url-" + uuid.uuid4().hex[:6]
        owner.create_function(FunctionName=name, Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                              Code={"ZipFile": py_probe_zip()})
        self.addCleanup(owner.delete_function, FunctionName=name)
        owner.publish_version(FunctionName=name)
        owner.create_alias(FunctionName=name, Name="public", FunctionVersion="1")
        iam_url = owner.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")["FunctionUrl"]
        public_url = owner.create_function_url_config(FunctionName=name, Qualifier="public", AuthType="NONE")["FunctionUrl"]
        owner.add_permission(FunctionName=name, Qualifier="public", StatementId="anyone", Action="lambda:InvokeFunctionUrl",
                             Principal="*", FunctionUrlAuthType="NONE")

        def path_form(function_url: str) -> str:
            return f"{self._server.url}/lambda-url/{function_url.split('//')[1].split('.')[0]}/"

        # AuthType NONE needs no signature even though keys exist.
        self.assertEqual(requests.get(path_form(public_url), timeout=60).status_code, 200)
        # AWS_IAM: the account's key yes; unsigned, a wrong secret, another account without a statement no.
        self.assertEqual(h.signed_request("GET", path_form(iam_url), b"", self._key["AccessKeyId"], self._key["SecretAccessKey"]).status_code, 200)
        self.assertEqual(requests.get(path_form(iam_url), timeout=60).status_code, 403)
        self.assertEqual(h.signed_request("GET", path_form(iam_url), b"", self._key["AccessKeyId"], "x" * 40).status_code, 403)
        guest = self._new_key("111111111111")
        self.assertEqual(h.signed_request("GET", path_form(iam_url), b"", guest["AccessKeyId"], guest["SecretAccessKey"]).status_code, 403)
        owner.add_permission(FunctionName=name, StatementId="guest-url", Action="lambda:InvokeFunctionUrl",
                             Principal="111111111111", FunctionUrlAuthType="AWS_IAM")
        allowed = h.signed_request("GET", path_form(iam_url), b"", guest["AccessKeyId"], guest["SecretAccessKey"])
        self.assertEqual(allowed.status_code, 200, allowed.text)


class PublicMetricsTests(unittest.TestCase):

    def test_public_metrics_opens_metrics_and_nothing_else(self):
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            self.skipTest("needs a server of its own")
        root = Path(tempfile.mkdtemp(prefix="lamina-it-metrics-"))
        self.addCleanup(shutil.rmtree, root, True)
        self.assertEqual(keys("create", "--data", str(root / "data")).returncode, 0)
        server = h.LaminaServer("public-metrics", ["--public-metrics"], data_dir=root / "data").start()
        try:
            metrics = requests.get(f"{server.url}/metrics", timeout=30)
            self.assertEqual(metrics.status_code, 200, metrics.text[:500])
            self.assertIn("# TYPE", metrics.text)
            refused = requests.get(f"{server.url}/2015-03-31/functions/", timeout=30)
            self.assertEqual((refused.status_code, refused.headers.get("x-amzn-ErrorType")), (403, "MissingAuthenticationTokenException"))
            operator = requests.get(f"{server.url}/lamina/v1/environments", timeout=30)
            self.assertEqual(operator.status_code, 403)
        finally:
            server.stop()


class LoopbackDefaultTests(unittest.TestCase):

    def test_without_credentials_only_loopback(self):
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            self.skipTest("needs a server of its own")
        data = tempfile.mkdtemp(prefix="lamina-it-noauth-")
        try:
            out = subprocess.run([LAMINA, "serve", "--host", "0.0.0.0", "--port", "0", "--data", data],
                                 capture_output=True, text=True, timeout=120)
            self.assertEqual(out.returncode, 2, out.stdout + out.stderr)
            self.assertIn("refusing to listen on 0.0.0.0 without credentials", out.stderr)
        finally:
            shutil.rmtree(data, ignore_errors=True)

    def test_revoking_the_last_key_of_a_server_beyond_loopback_locks_it(self):
        # Without any key a server listens on loopback only; one that listens beyond it with a key must not fall back to
        # accepting anything when that key is revoked.
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            self.skipTest("needs a server of its own")
        root = Path(tempfile.mkdtemp(prefix="lamina-it-lastkey-"))
        server = None
        try:
            created = keys("create", "--data", str(root / "data"))
            self.assertEqual(created.returncode, 0, created.stderr)
            key = json.loads(created.stdout)
            server = h.LaminaServer("auth-last-key", data_dir=root / "data", extra_args=["--host", "0.0.0.0"]).start()
            signed = boto3.client("lambda", endpoint_url=server.url, region_name=h.REGION, aws_access_key_id=key["AccessKeyId"],
                                  aws_secret_access_key=key["SecretAccessKey"], config=Config(retries={"max_attempts": 0}))
            signed.list_functions()
            self.assertEqual(keys("revoke", key["AccessKeyId"], "--data", str(root / "data")).returncode, 0)
            wait_refused(self, signed)
            self.assertEqual(requests.get(f"{server.url}/2015-03-31/functions/", timeout=30).status_code, 403)
            with self.assertRaises(botocore.exceptions.ClientError) as refused:
                h.boto3_client(server.url, "lambda").list_functions()  # any signature, as loopback without keys takes
            self.assertEqual(refused.exception.response["Error"]["Code"], "UnrecognizedClientException")
        finally:
            if server is not None:
                server.stop()
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
