"""S3 (issue #20) with the command-line tools and SDKs users script against: AWS CLI v1 (pip) and v2 (Debian) high-level
`aws s3` commands (mb, cp, ls, sync, rm, rb, presign, mv) and `aws s3api`, a 100 MiB `aws s3 cp` round trip with the
server's memory bounded, and the AWS SDK for JavaScript v3 (@aws-sdk/client-s3, lib-storage, s3-request-presigner:
CRC32 checksums on streamed uploads, multipart, presigned URLs)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import unittest
import uuid
from pathlib import Path

import requests

import lamina_harness as h

MODULE = __name__
MiB = 1024 * 1024
CLIS = {"v1": os.environ.get("LAMINA_AWS_CLI", "aws"), "v2": "/usr/bin/aws"}
NODE_MODULES = h.REPO_ROOT / "artifacts/bin/Lamina.Server/release/lambda-runtimes/node_modules"


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


class CliTests(h.LaminaTestCase):
    def setUp(self):
        self.work = Path(tempfile.mkdtemp(prefix="lamina-s3cli-"))
        self.addCleanup(shutil.rmtree, self.work, True)

    def aws(self, cli: str, *args: str, ok: bool = True, timeout: float = 300) -> h.CliResult:
        result = self.server.aws_cli(*args, cli=CLIS[cli], timeout=timeout)
        if ok:
            self.assertEqual(result.rc, 0, result)
        return result

    def clis(self) -> list[str]:
        if not Path(CLIS["v2"]).exists():
            self.fail("AWS CLI v2 (/usr/bin/aws, Debian package awscli) is required; ./test.sh installs it")
        return list(CLIS)

    def test_mb_cp_ls_sync_mv_rm_rb(self):
        for cli in self.clis():
            with self.subTest(cli=cli):
                bucket = f"cli-{cli}-{uuid.uuid4().hex[:8]}"
                self.assertIn(f"make_bucket: {bucket}", self.aws(cli, "s3", "mb", f"s3://{bucket}").stdout)
                self.assertIn("BucketAlreadyOwnedByYou", self.aws(cli, "s3", "mb", f"s3://{bucket}", ok=False).stderr)
                tree = self.work / cli
                for rel, text in {"a.txt": "alpha", "sub/b.txt": "beta", "sub/deep/c.json": "{}", "with space.txt": "s"}.items():
                    (tree / rel).parent.mkdir(parents=True, exist_ok=True)
                    (tree / rel).write_text(text)
                self.aws(cli, "s3", "sync", str(tree), f"s3://{bucket}/site", "--only-show-errors")
                listed = self.aws(cli, "s3", "ls", f"s3://{bucket}/site/", "--recursive").stdout
                for rel in ("site/a.txt", "site/sub/b.txt", "site/sub/deep/c.json", "site/with space.txt"):
                    self.assertIn(rel, listed)
                top = self.aws(cli, "s3", "ls", f"s3://{bucket}/site/").stdout
                self.assertIn("PRE sub/", top)
                self.assertIn(bucket, self.aws(cli, "s3", "ls").stdout)
                # sync again: nothing to copy; after a local delete, --delete removes the remote copy.
                self.assertEqual(self.aws(cli, "s3", "sync", str(tree), f"s3://{bucket}/site").stdout.strip(), "")
                (tree / "a.txt").unlink()
                self.assertIn("delete: s3://", self.aws(cli, "s3", "sync", str(tree), f"s3://{bucket}/site", "--delete").stdout)
                self.assertNotIn("site/a.txt", self.aws(cli, "s3", "ls", f"s3://{bucket}/site/", "--recursive").stdout)
                down = self.work / f"{cli}-down"
                self.aws(cli, "s3", "sync", f"s3://{bucket}/site", str(down), "--only-show-errors")
                self.assertEqual((down / "sub/deep/c.json").read_text(), "{}")
                self.aws(cli, "s3", "mv", f"s3://{bucket}/site/sub/b.txt", f"s3://{bucket}/moved/b.txt", "--only-show-errors")
                self.aws(cli, "s3", "cp", f"s3://{bucket}/moved/b.txt", str(self.work / f"{cli}-b.txt"), "--only-show-errors")
                self.assertEqual((self.work / f"{cli}-b.txt").read_text(), "beta")
                rb = self.aws(cli, "s3", "rb", f"s3://{bucket}", ok=False)
                self.assertNotEqual(rb.rc, 0)
                self.assertIn("BucketNotEmpty", rb.stderr)
                self.aws(cli, "s3", "rm", f"s3://{bucket}", "--recursive", "--only-show-errors")
                self.aws(cli, "s3", "rb", f"s3://{bucket}")
                self.assertNotIn(bucket, self.aws(cli, "s3", "ls").stdout)

    def test_presign_and_s3api(self):
        for cli in self.clis():
            with self.subTest(cli=cli):
                bucket = f"api-{cli}-{uuid.uuid4().hex[:8]}"
                self.aws(cli, "s3api", "create-bucket", "--bucket", bucket)
                (self.work / "body.bin").write_bytes(b"\x00\x01binary\xff" * 100)
                put = self.aws(cli, "s3api", "put-object", "--bucket", bucket, "--key", "obj", "--body", str(self.work / "body.bin"),
                               "--content-type", "application/x-lamina", "--metadata", "purpose=test").json
                self.assertEqual(put["ETag"], '"' + hashlib.md5((self.work / "body.bin").read_bytes()).hexdigest() + '"')
                head = self.aws(cli, "s3api", "head-object", "--bucket", bucket, "--key", "obj").json
                self.assertEqual((head["ContentType"], head["Metadata"], head["ContentLength"]), ("application/x-lamina", {"purpose": "test"}, 900))
                self.aws(cli, "s3api", "get-object", "--bucket", bucket, "--key", "obj", "--range", "bytes=0-8", str(self.work / "part"))
                self.assertEqual((self.work / "part").read_bytes(), b"\x00\x01binary\xff")
                url = self.aws(cli, "s3", "presign", f"s3://{bucket}/obj", "--expires-in", "120").stdout.strip()
                self.assertEqual(requests.get(url, timeout=30).content, (self.work / "body.bin").read_bytes())
                missing = self.aws(cli, "s3api", "get-object", "--bucket", bucket, "--key", "nope", str(self.work / "x"), ok=False)
                self.assertIn("NoSuchKey", missing.stderr)
                self.aws(cli, "s3api", "put-bucket-versioning", "--bucket", bucket, "--versioning-configuration", "Status=Enabled")
                self.aws(cli, "s3api", "put-object", "--bucket", bucket, "--key", "obj", "--body", str(self.work / "part"))
                versions = self.aws(cli, "s3api", "list-object-versions", "--bucket", bucket).json["Versions"]
                self.assertEqual(len(versions), 2)
                for version in versions:
                    self.aws(cli, "s3api", "delete-object", "--bucket", bucket, "--key", "obj", "--version-id", version["VersionId"])
                self.aws(cli, "s3api", "delete-bucket", "--bucket", bucket)

    @h.slow
    def test_100_mib_round_trip_with_bounded_server_memory(self):
        """`aws s3 cp` of 100 MiB (multipart, 8 MiB parts, 10 in flight) up and down, byte-identical; the server streams to
        disk, so its peak resident memory grows by far less than the file (VmHWM, reset before the upload)."""
        source = self.work / "big.bin"
        chunk = os.urandom(MiB)
        with source.open("wb") as f:
            for i in range(100):
                f.write(hashlib.sha256(bytes([i])).digest() + chunk[32:])
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        pid = self.server.proc.pid
        # The launcher execs the server: this pid is the dotnet process.
        for cli in self.clis():
            with self.subTest(cli=cli):
                bucket = f"big-{cli}-{uuid.uuid4().hex[:8]}"
                self.aws(cli, "s3", "mb", f"s3://{bucket}")
                Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current resident size
                before = _vm_kib(pid, "VmRSS")
                self.aws(cli, "s3", "cp", str(source), f"s3://{bucket}/big.bin", "--only-show-errors")
                peak = _vm_kib(pid, "VmHWM")
                self.assertLess(peak - before, 60 * 1024, f"the server's peak RSS grew by {(peak - before) // 1024} MiB for a 100 MiB upload")
                head = self.aws(cli, "s3api", "head-object", "--bucket", bucket, "--key", "big.bin").json
                self.assertEqual(head["ContentLength"], 100 * MiB)
                self.assertRegex(head["ETag"], r'^"[0-9a-f]{32}-\d+"$')
                down = self.work / f"down-{cli}.bin"
                self.aws(cli, "s3", "cp", f"s3://{bucket}/big.bin", str(down), "--only-show-errors")
                self.assertEqual(hashlib.sha256(down.read_bytes()).hexdigest(), digest)
                down.unlink()
                self.aws(cli, "s3", "rb", f"s3://{bucket}", "--force")


class CrashTests(h.LaminaTestCase):
    def test_kill_9_during_uploads_loses_no_acknowledged_object_or_event(self):
        """Sixteen writers PUT objects (and, every tenth, a multipart upload) while a queue is notified of each; kill -9
        mid-stream. After a restart every acknowledged object is there byte for byte, its notification reaches the
        queue, an object whose PUT was cut off is either absent or whole, and no file is left that no object names."""
        import concurrent.futures
        import random
        import threading
        import time
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            self.skipTest("needs servers of its own")
        data_dir = Path(tempfile.mkdtemp(prefix="lamina-it-s3-crash-")) / "data"
        self.addCleanup(shutil.rmtree, data_dir.parent, True)
        first = h.LaminaServer("s3-crash-1", data_dir=data_dir).start()
        acknowledged: dict[str, str] = {}
        lock, stop = threading.Lock(), threading.Event()
        try:
            s3 = h.boto3_client(first.url, "s3")
            sqs = h.boto3_client(first.url, "sqs")
            s3.create_bucket(Bucket="crash")
            queue_url = sqs.create_queue(QueueName="crash-events")["QueueUrl"]
            queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            s3.put_bucket_notification_configuration(Bucket="crash", NotificationConfiguration={
                "QueueConfigurations": [{"QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}]})

            def writer(n: int) -> None:
                client = h.boto3_client(first.url, "s3")
                rng = random.Random(n)
                i = 0
                while not stop.is_set():
                    body = rng.randbytes(rng.choice([100, 5000, 70_000, 300_000]))
                    key = f"w{n}/{i}-{hashlib.sha256(body).hexdigest()}"
                    try:
                        if i % 10 == 9:
                            big = body * 20 + rng.randbytes(5 * MiB)
                            key = f"w{n}/{i}-{hashlib.sha256(big).hexdigest()}"
                            upload = client.create_multipart_upload(Bucket="crash", Key=key)["UploadId"]
                            e1 = client.upload_part(Bucket="crash", Key=key, UploadId=upload, PartNumber=1, Body=big[:5 * MiB])["ETag"]
                            e2 = client.upload_part(Bucket="crash", Key=key, UploadId=upload, PartNumber=2, Body=big[5 * MiB:])["ETag"]
                            client.complete_multipart_upload(Bucket="crash", Key=key, UploadId=upload, MultipartUpload={
                                "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
                        else:
                            client.put_object(Bucket="crash", Key=key, Body=body)
                    except Exception:  # noqa: BLE001 - the server was killed under this request: not acknowledged
                        return
                    with lock:
                        acknowledged[key] = key.rsplit("-", 1)[1]
                    i += 1
            with concurrent.futures.ThreadPoolExecutor(16) as pool:
                futures = [pool.submit(writer, n) for n in range(16)]
                deadline = time.monotonic() + 120
                while len(acknowledged) < 300:
                    self.assertLess(time.monotonic(), deadline, f"only {len(acknowledged)} uploads in 120 s")
                    time.sleep(0.05)
                first.kill()
                stop.set()
                for f in futures:
                    f.result()
        except BaseException:
            first.stop()
            raise

        second = h.LaminaServer("s3-crash-2", data_dir=data_dir).start()
        try:
            s3 = h.boto3_client(second.url, "s3")
            stored = {o["Key"]: o["Size"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="crash") for o in page.get("Contents", [])}
            self.assertEqual(sorted(k for k in acknowledged if k not in stored), [], "acknowledged objects lost")
            for key in stored:  # acknowledged or not: whole, never a torn object
                body = s3.get_object(Bucket="crash", Key=key)["Body"].read()
                self.assertEqual(hashlib.sha256(body).hexdigest(), key.rsplit("-", 1)[1], f"{key} is not the body that was sent")
            # Files: one per object, and one per part of the multipart uploads the kill cut short (S3 keeps those until
            # they are completed or aborted); nothing else.
            parts = sum(len(s3.list_parts(Bucket="crash", Key=u["Key"], UploadId=u["UploadId"]).get("Parts", []))
                        for u in s3.list_multipart_uploads(Bucket="crash").get("Uploads", []))
            files = [p for p in (data_dir / "s3" / "objects").rglob("*") if p.is_file()]
            self.assertEqual(len(files), len(stored) + parts, "files no object or part names were left behind")
            self.assertEqual(list((data_dir / "s3" / "tmp").iterdir()), [])
            # Every stored object's notification reaches the queue (at least once), across the kill.
            sqs = h.boto3_client(second.url, "sqs")
            queue_url = sqs.get_queue_url(QueueName="crash-events")["QueueUrl"]
            notified: set[str] = set()
            deadline = time.monotonic() + 120
            while not set(stored) <= notified:
                self.assertLess(time.monotonic(), deadline, f"{len(set(stored) - notified)} objects were never notified")
                for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
                    for record in json.loads(message["Body"]).get("Records", []):
                        notified.add(record["s3"]["object"]["key"])
                    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        finally:
            second.stop()


class DiskFullTests(h.LaminaTestCase):
    def test_disk_full_refuses_uploads_cleanly_and_recovers(self):
        """RELIABILITY.md's disk-full row for S3: an upload the disk cannot hold is S3's 500 InternalError, leaves no
        file and no row, every acknowledged object stays whole, and uploads succeed again once space is freed."""
        mount = self.small_file_system("s3-full")
        server = h.LaminaServer("s3-full", data_dir=mount / "data").start()
        try:
            s3 = h.boto3_client(server.url, "s3")
            s3.create_bucket(Bucket="full")
            filler = mount / "filler"
            with open(filler, "wb") as f:
                f.write(b"\0" * max(0, shutil.disk_usage(mount).free - 4 * MiB))
            acknowledged, refused = {}, None
            for i in range(40):
                body = os.urandom(300_000)
                try:
                    s3.put_object(Bucket="full", Key=f"k{i}", Body=body)
                    acknowledged[f"k{i}"] = body
                except Exception as e:  # noqa: BLE001 - the refusal is what this test is after
                    refused = e
                    break
            self.assertIsNotNone(refused, "the disk never filled")
            self.assertEqual((refused.response["ResponseMetadata"]["HTTPStatusCode"], refused.response["Error"]["Code"]), (500, "InternalError"))
            self.assertEqual(server.raw("GET", "/health").status, 200)
            self.assertEqual(list((mount / "data" / "s3" / "tmp").iterdir()), [], "a refused upload left its bytes behind")
            filler.unlink()
            s3.put_object(Bucket="full", Key="after", Body=b"fits again")
            stored = {o["Key"] for o in s3.list_objects_v2(Bucket="full")["Contents"]}
            self.assertEqual(stored, set(acknowledged) | {"after"})
            for key, body in acknowledged.items():
                self.assertEqual(s3.get_object(Bucket="full", Key=key)["Body"].read(), body)
        finally:
            server.stop()


JS_CLIENT = r"""
import { S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand, ListObjectsV2Command, HeadObjectCommand,
         DeleteObjectsCommand, DeleteBucketCommand, CopyObjectCommand } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { Readable } from "node:stream";
import { createHash } from "node:crypto";

const s3 = new S3Client({ endpoint: process.env.ENDPOINT, region: "us-east-1", forcePathStyle: true,
                          credentials: { accessKeyId: "test", secretAccessKey: "test" } });
const Bucket = process.env.BUCKET;
const out = {};
await s3.send(new CreateBucketCommand({ Bucket }));
// A string body: the SDK computes CRC32 itself (its default) and sends it as a header.
const put = await s3.send(new PutObjectCommand({ Bucket, Key: "text.txt", Body: "hello from the JS SDK", ContentType: "text/plain" }));
out.putChecksum = put.ChecksumCRC32;
// A stream of unknown length: aws-chunked with a trailing checksum.
const streamed = await s3.send(new PutObjectCommand({ Bucket, Key: "stream.bin", Body: Readable.from([Buffer.alloc(70000, 7), Buffer.alloc(12345, 9)]),
                                                      ContentLength: 82345, ChecksumAlgorithm: "SHA256" }));
out.streamChecksum = streamed.ChecksumSHA256;
out.streamExpected = createHash("sha256").update(Buffer.concat([Buffer.alloc(70000, 7), Buffer.alloc(12345, 9)])).digest("base64");
const got = await s3.send(new GetObjectCommand({ Bucket, Key: "text.txt", ChecksumMode: "ENABLED" }));
out.text = await got.Body.transformToString();
out.contentType = got.ContentType;
// lib-storage: a 12 MiB multipart upload of 5 MiB parts.
const big = Buffer.alloc(12 * 1024 * 1024);
for (let i = 0; i < big.length; i += 4096) big[i] = i % 251;
await new Upload({ client: s3, params: { Bucket, Key: "multi.bin", Body: big }, partSize: 5 * 1024 * 1024, queueSize: 3 }).done();
const head = await s3.send(new HeadObjectCommand({ Bucket, Key: "multi.bin" }));
out.multiSize = head.ContentLength;
out.multiETag = head.ETag;
const multi = await s3.send(new GetObjectCommand({ Bucket, Key: "multi.bin" }));
out.multiSame = Buffer.compare(Buffer.from(await multi.Body.transformToByteArray()), big) === 0;
await s3.send(new CopyObjectCommand({ Bucket, Key: "copy.txt", CopySource: `${Bucket}/text.txt` }));
const listed = await s3.send(new ListObjectsV2Command({ Bucket }));
out.keys = listed.Contents.map((o) => o.Key);
const url = await getSignedUrl(s3, new GetObjectCommand({ Bucket, Key: "text.txt" }), { expiresIn: 60 });
out.presigned = await (await fetch(url)).text();
try { await s3.send(new GetObjectCommand({ Bucket, Key: "missing" })); } catch (e) { out.missing = e.name; }
await s3.send(new DeleteObjectsCommand({ Bucket, Delete: { Objects: out.keys.map((Key) => ({ Key })) } }));
await s3.send(new DeleteBucketCommand({ Bucket }));
console.log(JSON.stringify(out));
"""


class JsSdkTests(h.LaminaTestCase):
    def test_client_s3_lib_storage_and_presigner(self):
        self.assertTrue((NODE_MODULES / "@aws-sdk/client-s3").is_dir(),
                        f"the launcher installs the AWS SDK for JavaScript v3 into {NODE_MODULES}")
        work = Path(tempfile.mkdtemp(prefix="lamina-s3js-"))
        self.addCleanup(shutil.rmtree, work, True)
        # ES modules resolve packages from node_modules folders above the script, so the script sits beside a link.
        (work / "node_modules").symlink_to(NODE_MODULES)
        (work / "client.mjs").write_text(JS_CLIENT)
        bucket = f"js-{uuid.uuid4().hex[:10]}"
        done = subprocess.run(["node", str(work / "client.mjs")], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "ENDPOINT": self.server.url, "BUCKET": bucket, "AWS_MAX_ATTEMPTS": "1"})
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        out = json.loads(done.stdout.strip().splitlines()[-1])
        self.assertEqual(out["text"], "hello from the JS SDK")
        self.assertEqual(out["contentType"], "text/plain")
        self.assertTrue(out["putChecksum"])
        self.assertEqual(out["streamChecksum"], out["streamExpected"])
        self.assertEqual(out["multiSize"], 12 * MiB)
        self.assertTrue(out["multiETag"].endswith('-3"'), out["multiETag"])
        self.assertTrue(out["multiSame"])
        self.assertEqual(sorted(out["keys"]), ["copy.txt", "multi.bin", "stream.bin", "text.txt"])
        self.assertEqual(out["presigned"], "hello from the JS SDK")
        self.assertEqual(out["missing"], "NoSuchKey")


def _vm_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


if __name__ == "__main__":
    unittest.main()
