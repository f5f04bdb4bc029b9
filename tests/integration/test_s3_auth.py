"""S3 (issue #20) with access keys configured: every request's signature is checked (SigV4 headers, SigV4 and SigV2
presigned URLs, SigV2 headers, signed aws-chunked bodies), errors are S3's (SignatureDoesNotMatch, InvalidAccessKeyId,
AccessDenied), and accounts are tenants as with the Lambda API: bucket names are global, each account sees and uses
only its own buckets, and a function's credentials act for its own account."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import uuid
from pathlib import Path

import boto3
import botocore.exceptions
import requests
from botocore.config import Config

import lamina_harness as h

LAMINA = str(h.REPO_ROOT / "lamina")
OTHER_ACCOUNT = "111122223333"


def keys(*args: str) -> dict:
    done = subprocess.run([LAMINA, "keys", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


class S3AuthTests(unittest.TestCase):
    _server: h.LaminaServer | None = None
    _root: Path | None = None

    @classmethod
    def setUpClass(cls):
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            raise unittest.SkipTest("needs a server of its own")
        cls._root = Path(tempfile.mkdtemp(prefix="lamina-it-s3auth-"))
        data = str(cls._root / "data")
        cls._key = keys("create", "--data", data)
        cls._other = keys("create", "--data", data, "--account", OTHER_ACCOUNT)
        cls._server = h.LaminaServer("s3auth", data_dir=cls._root / "data").start()

    @classmethod
    def tearDownClass(cls):
        if cls._server is not None:
            cls._server.stop()
        if cls._root is not None:
            shutil.rmtree(cls._root, ignore_errors=True)

    def s3(self, key: dict | None = None, secret: str | None = None, **config):
        key = key or self._key
        return boto3.client("s3", endpoint_url=self._server.url, region_name=h.REGION, aws_access_key_id=key["AccessKeyId"],
                            aws_secret_access_key=secret or key["SecretAccessKey"],
                            config=Config(retries={"max_attempts": 0}, **config))

    def bucket(self, key: dict | None = None) -> str:
        name = f"auth-{uuid.uuid4().hex[:12]}"
        client = self.s3(key)
        client.create_bucket(Bucket=name)

        def drop():
            for o in client.list_objects_v2(Bucket=name).get("Contents", []):
                client.delete_object(Bucket=name, Key=o["Key"])
            client.delete_bucket(Bucket=name)
        self.addCleanup(drop)
        return name

    def assertS3Error(self, fn, status: int, code: str) -> dict:
        with self.assertRaises(botocore.exceptions.ClientError) as caught:
            fn()
        error = caught.exception.response
        self.assertEqual((error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]), (status, code), error)
        return error

    def test_signed_requests_work_and_wrong_secrets_or_keys_do_not(self):
        name = self.bucket()
        self.s3().put_object(Bucket=name, Key="k", Body=b"signed")
        self.assertEqual(self.s3().get_object(Bucket=name, Key="k")["Body"].read(), b"signed")
        self.assertS3Error(lambda: self.s3(secret="x" * 40).get_object(Bucket=name, Key="k"), 403, "SignatureDoesNotMatch")
        self.assertS3Error(lambda: self.s3({"AccessKeyId": "AKIANOTAKEY000000000", "SecretAccessKey": "x"}).list_buckets(),
                           403, "InvalidAccessKeyId")
        # An unsigned request is refused (AccessDenied), and nothing is written.
        resp = requests.put(f"{self._server.url}/{name}/anon", data=b"x")
        self.assertEqual(resp.status_code, 403)
        self.assertNotIn("anon", [o["Key"] for o in self.s3().list_objects_v2(Bucket=name).get("Contents", [])])

    def test_streaming_uploads_are_verified(self):
        """botocore's aws-chunked uploads with a CRC32 trailer (STREAMING-UNSIGNED-PAYLOAD-TRAILER: the trailer is
        covered by the header signature's declared payload form), with the keys checked."""
        name = self.bucket()
        self.s3().put_object(Bucket=name, Key="crc", Body=b"x" * 100_000, ChecksumAlgorithm="CRC32")
        self.assertEqual(self.s3().head_object(Bucket=name, Key="crc")["ContentLength"], 100_000)
        self.assertS3Error(lambda: self.s3(secret="y" * 40).put_object(Bucket=name, Key="crc2", Body=b"x", ChecksumAlgorithm="CRC32"),
                           403, "SignatureDoesNotMatch")

    def test_presigned_urls_v2_and_v4_are_checked(self):
        name = self.bucket()
        self.s3().put_object(Bucket=name, Key="k", Body=b"presigned")
        for version, client in (("v2", self.s3()), ("v4", self.s3(signature_version="s3v4"))):
            with self.subTest(version=version):
                url = client.generate_presigned_url("get_object", Params={"Bucket": name, "Key": "k"}, ExpiresIn=60)
                self.assertEqual(requests.get(url).content, b"presigned")
                field = "Signature=" if version == "v2" else "X-Amz-Signature="
                start = url.index(field) + len(field)
                # Another digit, not another case: a V4 signature is hex, and its case carries no meaning.
                other_digit = ("A" if url[start] != "A" else "B") if version == "v2" else ("0" if url[start] != "0" else "1")
                tampered = url[:start] + other_digit + url[start + 1:]
                resp = requests.get(tampered)
                self.assertEqual(resp.status_code, 403, resp.text)
                self.assertIn("<Code>SignatureDoesNotMatch</Code>", resp.text)
                # Another key's URL for this bucket is refused as well (the bucket is not theirs).
                other = (self.s3(self._other) if version == "v2" else self.s3(self._other, signature_version="s3v4"))
                denied = requests.get(other.generate_presigned_url("get_object", Params={"Bucket": name, "Key": "k"}))
                self.assertEqual(denied.status_code, 403)

    def test_signature_v2_header_auth(self):
        name = self.bucket()
        client = self.s3(signature_version="s3")  # Authorization: AWS id:signature
        client.put_object(Bucket=name, Key="v2", Body=b"hmac-sha1", Metadata={"a": "b"})
        self.assertEqual(client.get_object(Bucket=name, Key="v2")["Body"].read(), b"hmac-sha1")
        self.assertEqual(client.list_objects(Bucket=name)["Contents"][0]["Key"], "v2")
        self.assertS3Error(lambda: self.s3(secret="z" * 40, signature_version="s3").get_object(Bucket=name, Key="v2"),
                           403, "SignatureDoesNotMatch")

    def test_accounts_are_tenants(self):
        mine = self.bucket()
        other = self.s3(self._other)
        self.assertNotIn(mine, [b["Name"] for b in other.list_buckets()["Buckets"]])
        # Bucket names are global: taken by another account is BucketAlreadyExists, not "owned by you".
        self.assertS3Error(lambda: other.create_bucket(Bucket=mine), 409, "BucketAlreadyExists")
        self.assertS3Error(lambda: other.put_object(Bucket=mine, Key="k", Body=b"x"), 403, "AccessDenied")
        self.assertS3Error(lambda: other.list_objects_v2(Bucket=mine), 403, "AccessDenied")
        self.assertS3Error(lambda: other.delete_bucket(Bucket=mine), 403, "AccessDenied")
        theirs = self.bucket(self._other)
        self.assertIn(theirs, [b["Name"] for b in other.list_buckets()["Buckets"]])
        self.assertNotIn(theirs, [b["Name"] for b in self.s3().list_buckets()["Buckets"]])
        self.assertS3Error(lambda: self.s3().copy_object(Bucket=mine, Key="stolen", CopySource=f"{theirs}/anything"), 403, "AccessDenied")

    def test_function_credentials_act_for_the_functions_account(self):
        name = self.bucket()
        lam = boto3.client("lambda", endpoint_url=self._server.url, region_name=h.REGION, aws_access_key_id=self._key["AccessKeyId"],
                           aws_secret_access_key=self._key["SecretAccessKey"], config=Config(retries={"max_attempts": 0}))
        code = h.make_zip({"app.py": "import boto3\ns3 = boto3.client('s3')\n"
                                     "def handler(event, context):\n"
                                     "    s3.put_object(Bucket=event['bucket'], Key='by-function', Body=b'ok')\n"
                                     "    return [b['Name'] for b in s3.list_buckets()['Buckets']]\n"})
        function = f"s3auth-{uuid.uuid4().hex[:8]}"
        lam.create_function(FunctionName=function, Runtime="python3.12", Handler="app.handler", Role=h.ROLE, Timeout=30,
                            Code={"ZipFile": code})
        self.addCleanup(lam.delete_function, FunctionName=function)
        deadline = time.monotonic() + 60
        while lam.get_function_configuration(FunctionName=function)["State"] != "Active":
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.1)
        result = lam.invoke(FunctionName=function, Payload=json.dumps({"bucket": name}))
        payload = json.loads(result["Payload"].read())
        self.assertNotIn("FunctionError", result, payload)
        self.assertIn(name, payload)
        self.assertEqual(self.s3().get_object(Bucket=name, Key="by-function")["Body"].read(), b"ok")


if __name__ == "__main__":
    unittest.main()
