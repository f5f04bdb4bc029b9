"""S3-compatible object storage (issue #20) through boto3: buckets, objects, listings, ranges and conditions, metadata,
checksums, versioning, tagging, CORS as a browser sees it, multipart uploads, presigned URLs and S3's XML errors.
One server for the module; every test works in buckets of its own."""
from __future__ import annotations

import base64
import hashlib
import time
import unittest
import uuid
import zlib
from xml.etree import ElementTree

import botocore.exceptions
import requests
from botocore.config import Config

import boto3
import lamina_harness as h

MODULE = __name__
MiB = 1024 * 1024


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


def s3_client(url: str, **config):
    return boto3.client("s3", endpoint_url=url, region_name=h.REGION, aws_access_key_id=h.ACCESS_KEY,
                        aws_secret_access_key=h.SECRET_KEY,
                        config=Config(retries={"max_attempts": 0}, read_timeout=120, connect_timeout=10, **config))


def md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


class S3TestCase(h.LaminaTestCase):
    @property
    def s3(self):
        if not hasattr(self, "_s3"):
            self._s3 = s3_client(self.server.url)
        return self._s3

    def bucket(self, suffix: str = "", **kwargs) -> str:
        """A new bucket unique to this test, emptied and deleted after it."""
        name = f"t-{uuid.uuid4().hex[:12]}{('-' + suffix) if suffix else ''}"
        self.s3.create_bucket(Bucket=name, **kwargs)
        self.addCleanup(self._drop_bucket, name)
        return name

    def _drop_bucket(self, name: str) -> None:
        try:
            for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=name):
                for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                    self.s3.delete_object(Bucket=name, Key=v["Key"], VersionId=v["VersionId"])
            for upload in self.s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
                self.s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
            self.s3.delete_bucket(Bucket=name)
        except botocore.exceptions.ClientError:
            pass

    def assertS3Error(self, fn, status: int, code: str):
        with self.assertRaises(botocore.exceptions.ClientError) as caught:
            fn()
        error = caught.exception.response
        self.assertEqual(error["ResponseMetadata"]["HTTPStatusCode"], status, error)
        self.assertEqual(error["Error"]["Code"], code, error)
        return error


class BucketTests(S3TestCase):
    def test_create_head_list_location_delete(self):
        name = self.bucket()
        self.assertEqual(self.s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"], 200)
        listed = self.s3.list_buckets()
        self.assertIn(name, [b["Name"] for b in listed["Buckets"]])
        self.assertEqual(listed["Owner"]["ID"] != "", True)
        # us-east-1 answers an empty LocationConstraint (None in boto3), as AWS does.
        self.assertIsNone(self.s3.get_bucket_location(Bucket=name)["LocationConstraint"])
        self.s3.delete_bucket(Bucket=name)
        self.assertS3Error(lambda: self.s3.head_bucket(Bucket=name), 404, "404")
        self.assertNotIn(name, [b["Name"] for b in self.s3.list_buckets()["Buckets"]])

    def test_create_twice_is_already_owned(self):
        name = self.bucket()
        self.assertS3Error(lambda: self.s3.create_bucket(Bucket=name), 409, "BucketAlreadyOwnedByYou")

    def test_invalid_names_refused(self):
        for bad in ("ab", "UPPER-case", "a" * 64, "under_score", "-leading", "trailing-", "192.168.0.1", "two..dots",
                    "xn--punycode", "name-s3alias"):
            with self.subTest(bad=bad):
                # botocore validates some names itself; send those raw (path-style PUT /name).
                resp = requests.put(f"{self.server.url}/{bad}", headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD",
                                                                          "Authorization": _anonymous_auth()})
                self.assertEqual(resp.status_code, 400, resp.text)
                self.assertEqual(_xml_code(resp), "InvalidBucketName", resp.text)

    def test_delete_non_empty_refused_and_nothing_lost(self):
        name = self.bucket()
        self.s3.put_object(Bucket=name, Key="keep", Body=b"x")
        self.assertS3Error(lambda: self.s3.delete_bucket(Bucket=name), 409, "BucketNotEmpty")
        self.assertEqual(self.s3.get_object(Bucket=name, Key="keep")["Body"].read(), b"x")

    def test_missing_bucket_errors_name_the_bucket(self):
        missing = f"missing-{uuid.uuid4().hex[:8]}"
        error = self.assertS3Error(lambda: self.s3.list_objects_v2(Bucket=missing), 404, "NoSuchBucket")
        self.assertEqual(error["Error"].get("BucketName"), missing)
        self.assertTrue(error["ResponseMetadata"]["HTTPHeaders"].get("x-amz-request-id"))
        self.assertS3Error(lambda: self.s3.put_object(Bucket=missing, Key="k", Body=b"1"), 404, "NoSuchBucket")
        self.assertS3Error(lambda: self.s3.delete_bucket(Bucket=missing), 404, "NoSuchBucket")

    def test_bucket_tagging(self):
        name = self.bucket()
        self.assertS3Error(lambda: self.s3.get_bucket_tagging(Bucket=name), 404, "NoSuchTagSet")
        self.s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": "team", "Value": "core"}, {"Key": "env", "Value": "dev"}]})
        tags = {t["Key"]: t["Value"] for t in self.s3.get_bucket_tagging(Bucket=name)["TagSet"]}
        self.assertEqual(tags, {"team": "core", "env": "dev"})
        self.s3.delete_bucket_tagging(Bucket=name)
        self.assertS3Error(lambda: self.s3.get_bucket_tagging(Bucket=name), 404, "NoSuchTagSet")

    def test_virtual_host_style_with_curl(self):
        name = self.bucket()
        self.s3.put_object(Bucket=name, Key="dir/file.txt", Body=b"virtual")
        port = self.server.url.rsplit(":", 1)[1]
        for host in (f"{name}.s3.localhost", f"{name}.s3.us-east-1.localhost"):
            with self.subTest(host=host):
                # curl resolves *.localhost to the loopback address itself.
                import subprocess
                out = subprocess.run(["curl", "-s", "-H", f"Authorization: {_anonymous_auth()}",
                                      f"http://{host}:{port}/dir/file.txt"], capture_output=True, timeout=30)
                self.assertEqual(out.stdout, b"virtual")


class ObjectTests(S3TestCase):
    def test_put_get_head_with_metadata_and_representation_headers(self):
        name = self.bucket()
        body = b"hello, lamina\n" * 100
        put = self.s3.put_object(Bucket=name, Key="a/b.txt", Body=body, ContentType="text/plain; charset=utf-8",
                                 ContentEncoding="identity", CacheControl="max-age=60", ContentDisposition="inline",
                                 Metadata={"owner": "me", "Mixed-Case": "Value"})
        self.assertEqual(put["ETag"], md5_etag(body))
        got = self.s3.get_object(Bucket=name, Key="a/b.txt")
        self.assertEqual(got["Body"].read(), body)
        self.assertEqual(got["ETag"], md5_etag(body))
        self.assertEqual(got["ContentType"], "text/plain; charset=utf-8")
        self.assertEqual(got["CacheControl"], "max-age=60")
        self.assertEqual(got["ContentEncoding"], "identity")
        self.assertEqual(got["ContentDisposition"], "inline")
        self.assertEqual(got["Metadata"], {"owner": "me", "mixed-case": "Value"})
        head = self.s3.head_object(Bucket=name, Key="a/b.txt")
        self.assertEqual(head["ContentLength"], len(body))
        self.assertEqual(head["Metadata"], {"owner": "me", "mixed-case": "Value"})
        self.assertEqual(head["AcceptRanges"], "bytes")

    def test_missing_key(self):
        name = self.bucket()
        error = self.assertS3Error(lambda: self.s3.get_object(Bucket=name, Key="nope"), 404, "NoSuchKey")
        self.assertEqual(error["Error"].get("Key"), "nope")
        self.assertS3Error(lambda: self.s3.head_object(Bucket=name, Key="nope"), 404, "404")
        # Deleting what is not there succeeds, as on S3.
        self.assertEqual(self.s3.delete_object(Bucket=name, Key="nope")["ResponseMetadata"]["HTTPStatusCode"], 204)

    def test_keys_with_special_characters_round_trip(self):
        name = self.bucket()
        keys = ["with space.txt", "plus+sign", "ünïcödé/日本語.txt", "a/../b", "percent%2Fencoded", "q?mark&amp=1",
                "trailing/", "tab\there", "~tilde*star'quote"]
        for key in keys:
            self.s3.put_object(Bucket=name, Key=key, Body=key.encode())
        listed = [o["Key"] for o in self.s3.list_objects_v2(Bucket=name)["Contents"]]
        self.assertEqual(listed, sorted(keys, key=lambda k: k.encode()))
        for key in keys:
            with self.subTest(key=key):
                self.assertEqual(self.s3.get_object(Bucket=name, Key=key)["Body"].read(), key.encode())

    def test_overwrite_replaces_whole_object(self):
        name = self.bucket()
        self.s3.put_object(Bucket=name, Key="k", Body=b"first version, long", Metadata={"v": "1"})
        self.s3.put_object(Bucket=name, Key="k", Body=b"second")
        got = self.s3.get_object(Bucket=name, Key="k")
        self.assertEqual(got["Body"].read(), b"second")
        self.assertEqual(got["Metadata"], {})

    def test_empty_object_and_zero_byte_range(self):
        name = self.bucket()
        self.s3.put_object(Bucket=name, Key="empty", Body=b"")
        got = self.s3.get_object(Bucket=name, Key="empty")
        self.assertEqual(got["Body"].read(), b"")
        self.assertEqual(got["ETag"], md5_etag(b""))

    def test_range_gets(self):
        name = self.bucket()
        body = bytes(range(256)) * 4
        self.s3.put_object(Bucket=name, Key="r", Body=body)
        cases = {"bytes=0-9": body[0:10], "bytes=1000-": body[1000:], "bytes=-5": body[-5:], "bytes=1020-5000": body[1020:]}
        for spec, expected in cases.items():
            with self.subTest(range=spec):
                got = self.s3.get_object(Bucket=name, Key="r", Range=spec)
                self.assertEqual(got["ResponseMetadata"]["HTTPStatusCode"], 206)
                self.assertEqual(got["Body"].read(), expected)
                start = len(body) - len(expected) if spec.startswith("bytes=-") else int(spec[6:].split("-")[0])
                self.assertEqual(got["ContentRange"], f"bytes {start}-{start + len(expected) - 1}/{len(body)}")
        self.assertS3Error(lambda: self.s3.get_object(Bucket=name, Key="r", Range="bytes=5000-6000"), 416, "InvalidRange")

    def test_conditional_requests(self):
        name = self.bucket()
        put = self.s3.put_object(Bucket=name, Key="c", Body=b"conditional")
        etag = put["ETag"]
        modified = self.s3.head_object(Bucket=name, Key="c")["LastModified"]
        self.assertEqual(self.s3.get_object(Bucket=name, Key="c", IfMatch=etag)["Body"].read(), b"conditional")
        self.assertS3Error(lambda: self.s3.get_object(Bucket=name, Key="c", IfMatch='"0000"'), 412, "PreconditionFailed")
        self.assertS3Error(lambda: self.s3.get_object(Bucket=name, Key="c", IfNoneMatch=etag), 304, "304")
        self.assertS3Error(lambda: self.s3.get_object(Bucket=name, Key="c", IfModifiedSince=modified), 304, "304")
        self.assertS3Error(lambda: self.s3.head_object(Bucket=name, Key="c", IfMatch='"0000"'), 412, "412")
        old = modified.replace(year=modified.year - 1)
        self.assertS3Error(lambda: self.s3.get_object(Bucket=name, Key="c", IfUnmodifiedSince=old), 412, "PreconditionFailed")
        self.assertEqual(self.s3.get_object(Bucket=name, Key="c", IfModifiedSince=old)["Body"].read(), b"conditional")
        # Conditional writes: If-None-Match: * creates only if absent.
        self.assertS3Error(lambda: self.s3.put_object(Bucket=name, Key="c", Body=b"again", IfNoneMatch="*"), 412, "PreconditionFailed")
        self.s3.put_object(Bucket=name, Key="fresh", Body=b"new", IfNoneMatch="*")
        self.assertEqual(self.s3.get_object(Bucket=name, Key="c")["Body"].read(), b"conditional")

    def test_racing_conditional_creates_exactly_one_wins(self):
        import concurrent.futures
        name = self.bucket()

        def create(i: int) -> bool:
            try:
                self.s3.put_object(Bucket=name, Key="lock", Body=f"writer {i}".encode(), IfNoneMatch="*")
                return True
            except botocore.exceptions.ClientError as e:
                self.assertEqual(e.response["Error"]["Code"], "PreconditionFailed")
                return False
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            won = [i for i, ok in enumerate(pool.map(create, range(12))) if ok]
        self.assertEqual(len(won), 1, won)
        self.assertEqual(self.s3.get_object(Bucket=name, Key="lock")["Body"].read(), f"writer {won[0]}".encode())
        # Every losing upload's bytes are gone, not left beside the winner: one file per stored version, server-wide.
        blobs = [p for p in (self.server.data_dir / "s3" / "objects").rglob("*") if p.is_file()]
        self.assertEqual(len(blobs), self._stored_versions())

    def _stored_versions(self) -> int:
        """Object versions (not delete markers) in every bucket of the server."""
        return sum(len(page.get("Versions", [])) for b in self.s3.list_buckets()["Buckets"]
                   for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=b["Name"]))

    def test_copy_object_keeps_or_replaces_metadata(self):
        name = self.bucket()
        other = self.bucket("dst")
        self.s3.put_object(Bucket=name, Key="src", Body=b"copy me", ContentType="text/x-src", Metadata={"a": "1"})
        copied = self.s3.copy_object(Bucket=other, Key="dst", CopySource={"Bucket": name, "Key": "src"})
        self.assertEqual(copied["CopyObjectResult"]["ETag"], md5_etag(b"copy me"))
        got = self.s3.get_object(Bucket=other, Key="dst")
        self.assertEqual((got["Body"].read(), got["ContentType"], got["Metadata"]), (b"copy me", "text/x-src", {"a": "1"}))
        self.s3.copy_object(Bucket=other, Key="dst2", CopySource=f"{name}/src", MetadataDirective="REPLACE",
                            ContentType="text/plain", Metadata={"b": "2"})
        got = self.s3.get_object(Bucket=other, Key="dst2")
        self.assertEqual((got["ContentType"], got["Metadata"]), ("text/plain", {"b": "2"}))
        # A copy onto itself without a change is refused, as on S3.
        self.assertS3Error(lambda: self.s3.copy_object(Bucket=name, Key="src", CopySource=f"{name}/src"), 400, "InvalidRequest")
        self.assertS3Error(lambda: self.s3.copy_object(Bucket=name, Key="x", CopySource=f"{name}/missing"), 404, "NoSuchKey")

    def test_delete_objects_with_quiet_and_missing_keys(self):
        name = self.bucket()
        for key in ("a", "b", "c"):
            self.s3.put_object(Bucket=name, Key=key, Body=key.encode())
        result = self.s3.delete_objects(Bucket=name, Delete={"Objects": [{"Key": "a"}, {"Key": "b"}, {"Key": "zz"}]})
        self.assertEqual(sorted(d["Key"] for d in result["Deleted"]), ["a", "b", "zz"])
        quiet = self.s3.delete_objects(Bucket=name, Delete={"Objects": [{"Key": "c"}], "Quiet": True})
        self.assertNotIn("Deleted", quiet)
        self.assertEqual(self.s3.list_objects_v2(Bucket=name)["KeyCount"], 0)

    def test_object_tagging(self):
        name = self.bucket()
        self.s3.put_object(Bucket=name, Key="t", Body=b"1", Tagging="a=1&b=two%20words")
        tags = {t["Key"]: t["Value"] for t in self.s3.get_object_tagging(Bucket=name, Key="t")["TagSet"]}
        self.assertEqual(tags, {"a": "1", "b": "two words"})
        self.assertEqual(self.s3.get_object(Bucket=name, Key="t")["TagCount"], 2)
        self.s3.put_object_tagging(Bucket=name, Key="t", Tagging={"TagSet": [{"Key": "only", "Value": "this"}]})
        self.assertEqual(self.s3.get_object_tagging(Bucket=name, Key="t")["TagSet"], [{"Key": "only", "Value": "this"}])
        self.s3.delete_object_tagging(Bucket=name, Key="t")
        self.assertEqual(self.s3.get_object_tagging(Bucket=name, Key="t")["TagSet"], [])
        too_many = {"TagSet": [{"Key": f"k{i}", "Value": "v"} for i in range(11)]}
        self.assertS3Error(lambda: self.s3.put_object_tagging(Bucket=name, Key="t", Tagging=too_many), 400, "BadRequest")


class MetricsTests(S3TestCase):
    def test_requests_and_bytes_in_metrics(self):
        import re as _re
        name = self.bucket()

        def scrape() -> str:
            return requests.get(f"{self.server.url}/metrics", timeout=30).text

        def value(text: str, series: str) -> float:
            m = _re.search(_re.escape(series) + r" (\S+)", text)
            return float(m.group(1)) if m else 0.0
        before = scrape()
        self.s3.put_object(Bucket=name, Key="m", Body=b"x" * 10_000)
        self.s3.get_object(Bucket=name, Key="m")["Body"].read()
        self.assertS3Error(lambda: self.s3.get_object(Bucket=name, Key="missing"), 404, "NoSuchKey")
        after = scrape()
        for series, at_least in (('lamina_s3_requests_total{operation="PutObject",status="2xx"}', 1),
                                 ('lamina_s3_requests_total{operation="GetObject",status="2xx"}', 1),
                                 ('lamina_s3_requests_total{operation="GetObject",status="4xx"}', 1),
                                 ('lamina_s3_bytes_total{direction="in"}', 10_000),
                                 ('lamina_s3_bytes_total{direction="out"}', 10_000)):
            with self.subTest(series=series):
                self.assertGreaterEqual(value(after, series) - value(before, series), at_least)


class ChecksumTests(S3TestCase):
    def test_sdk_checksums_stored_and_returned(self):
        name = self.bucket()
        body = b"checksum me " * 1000
        expected = {
            "CRC32": base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode(),
            "SHA256": base64.b64encode(hashlib.sha256(body).digest()).decode(),
            "SHA1": base64.b64encode(hashlib.sha1(body).digest()).decode(),
        }
        for algorithm, value in expected.items():
            with self.subTest(algorithm=algorithm):
                # botocore computes it and sends it as an aws-chunked trailer (STREAMING-UNSIGNED-PAYLOAD-TRAILER).
                put = self.s3.put_object(Bucket=name, Key=algorithm, Body=body, ChecksumAlgorithm=algorithm)
                self.assertEqual(put.get(f"Checksum{algorithm}"), value, put)
                head = self.s3.head_object(Bucket=name, Key=algorithm, ChecksumMode="ENABLED")
                self.assertEqual(head.get(f"Checksum{algorithm}"), value)
                got = self.s3.get_object(Bucket=name, Key=algorithm, ChecksumMode="ENABLED")
                self.assertEqual(got["Body"].read(), body)  # botocore validates the checksum as it reads
        # CRC32C (botocore computes it only with awscrt): given by the caller, checked by the server.
        crc32c = base64.b64encode(_crc32c(body).to_bytes(4, "big")).decode()
        self.s3.put_object(Bucket=name, Key="CRC32C", Body=body, ChecksumCRC32C=crc32c)
        self.assertEqual(self.s3.head_object(Bucket=name, Key="CRC32C", ChecksumMode="ENABLED").get("ChecksumCRC32C"), crc32c)
        wrong = base64.b64encode((_crc32c(body) ^ 1).to_bytes(4, "big")).decode()
        self.assertS3Error(lambda: self.s3.put_object(Bucket=name, Key="bad", Body=body, ChecksumCRC32C=wrong), 400, "BadDigest")

    def test_wrong_checksum_or_md5_refused_and_nothing_written(self):
        name = self.bucket()
        body = b"payload"
        wrong_crc = base64.b64encode((zlib.crc32(body) ^ 1).to_bytes(4, "big")).decode()
        self.assertS3Error(lambda: self.s3.put_object(Bucket=name, Key="crc", Body=body, ChecksumCRC32=wrong_crc), 400, "BadDigest")
        wrong_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
        self.assertS3Error(lambda: self.s3.put_object(Bucket=name, Key="md5", Body=body, ContentMD5=wrong_md5), 400, "BadDigest")
        self.assertEqual(self.s3.list_objects_v2(Bucket=name)["KeyCount"], 0)

    def test_declared_sha256_must_match_body(self):
        name = self.bucket()
        resp = requests.put(f"{self.server.url}/{name}/k", data=b"actual body",
                            headers={"x-amz-content-sha256": hashlib.sha256(b"another body").hexdigest(),
                                     "Authorization": _anonymous_auth()})
        self.assertEqual(resp.status_code, 400, resp.text)
        self.assertEqual(_xml_code(resp), "XAmzContentSHA256Mismatch")
        self.assertEqual(self.s3.list_objects_v2(Bucket=name)["KeyCount"], 0)


class ListingTests(S3TestCase):
    def fill(self, name: str, keys: list[str]) -> None:
        for key in keys:
            self.s3.put_object(Bucket=name, Key=key, Body=b"")

    def test_v2_prefix_delimiter_and_common_prefixes(self):
        name = self.bucket()
        self.fill(name, ["a.txt", "dir/1", "dir/2", "dir/sub/3", "other/4", "photos/2024/x.jpg"])
        top = self.s3.list_objects_v2(Bucket=name, Delimiter="/")
        self.assertEqual([o["Key"] for o in top["Contents"]], ["a.txt"])
        self.assertEqual([p["Prefix"] for p in top["CommonPrefixes"]], ["dir/", "other/", "photos/"])
        self.assertEqual(top["KeyCount"], 4)
        inner = self.s3.list_objects_v2(Bucket=name, Prefix="dir/", Delimiter="/")
        self.assertEqual([o["Key"] for o in inner["Contents"]], ["dir/1", "dir/2"])
        self.assertEqual([p["Prefix"] for p in inner["CommonPrefixes"]], ["dir/sub/"])
        self.assertEqual(self.s3.list_objects_v2(Bucket=name, StartAfter="dir/2")["Contents"][0]["Key"], "dir/sub/3")

    def test_v2_pages_with_continuation_tokens(self):
        name = self.bucket()
        keys = [f"k{i:03d}" for i in range(25)]
        self.fill(name, keys)
        first = self.s3.list_objects_v2(Bucket=name, MaxKeys=10)
        self.assertTrue(first["IsTruncated"])
        self.assertEqual(len(first["Contents"]), 10)
        seen = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=name, PaginationConfig={"PageSize": 7}):
            seen += [o["Key"] for o in page["Contents"]]
        self.assertEqual(seen, keys)
        self.assertS3Error(lambda: self.s3.list_objects_v2(Bucket=name, ContinuationToken="garbage!"), 400, "InvalidArgument")

    def test_v2_pages_of_common_prefixes(self):
        name = self.bucket()
        self.fill(name, [f"p{i:02d}/x" for i in range(12)] + ["z"])
        prefixes, keys = [], []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=name, Delimiter="/", PaginationConfig={"PageSize": 5}):
            prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
            keys += [o["Key"] for o in page.get("Contents", [])]
        self.assertEqual(prefixes, [f"p{i:02d}/" for i in range(12)])
        self.assertEqual(keys, ["z"])

    def test_v1_markers(self):
        name = self.bucket()
        keys = [f"m{i:02d}" for i in range(15)]
        self.fill(name, keys)
        first = self.s3.list_objects(Bucket=name, MaxKeys=6)
        self.assertTrue(first["IsTruncated"])
        seen = []
        for page in self.s3.get_paginator("list_objects").paginate(Bucket=name, PaginationConfig={"PageSize": 4}):
            seen += [o["Key"] for o in page["Contents"]]
        self.assertEqual(seen, keys)
        after = self.s3.list_objects(Bucket=name, Marker="m10")
        self.assertEqual([o["Key"] for o in after["Contents"]], keys[11:])

    def test_url_encoding_type(self):
        name = self.bucket()
        self.fill(name, ["sp ace/é"])
        raw = requests.get(f"{self.server.url}/{name}?list-type=2&encoding-type=url", headers={"Authorization": _anonymous_auth()})
        self.assertEqual(raw.status_code, 200)
        self.assertIn("<Key>sp%20ace/%C3%A9</Key>", raw.text)
        # boto3 asks for url encoding and decodes it.
        self.assertEqual(self.s3.list_objects_v2(Bucket=name)["Contents"][0]["Key"], "sp ace/é")


class VersioningTests(S3TestCase):
    def test_versions_delete_markers_and_version_ids(self):
        name = self.bucket()
        self.assertNotIn("Status", self.s3.get_bucket_versioning(Bucket=name))
        self.s3.put_object(Bucket=name, Key="before", Body=b"null version")
        self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        self.assertEqual(self.s3.get_bucket_versioning(Bucket=name)["Status"], "Enabled")
        v1 = self.s3.put_object(Bucket=name, Key="k", Body=b"one")["VersionId"]
        v2 = self.s3.put_object(Bucket=name, Key="k", Body=b"two")["VersionId"]
        self.assertNotEqual(v1, v2)
        self.assertEqual(self.s3.get_object(Bucket=name, Key="k")["Body"].read(), b"two")
        self.assertEqual(self.s3.get_object(Bucket=name, Key="k", VersionId=v1)["Body"].read(), b"one")
        marker = self.s3.delete_object(Bucket=name, Key="k")
        self.assertTrue(marker["DeleteMarker"])
        error = self.assertS3Error(lambda: self.s3.get_object(Bucket=name, Key="k"), 404, "NoSuchKey")
        self.assertEqual(error["ResponseMetadata"]["HTTPHeaders"].get("x-amz-delete-marker"), "true")
        self.assertEqual(self.s3.get_object(Bucket=name, Key="k", VersionId=v2)["Body"].read(), b"two")
        listed = self.s3.list_object_versions(Bucket=name, Prefix="k")
        self.assertEqual([(v["VersionId"], v["IsLatest"]) for v in listed["Versions"]], [(v2, False), (v1, False)])
        self.assertEqual(len(listed["DeleteMarkers"]), 1)
        self.assertTrue(listed["DeleteMarkers"][0]["IsLatest"])
        # A listing shows the live objects only, paged past the delete markers.
        for key in ("a", "b", "c", "d", "e"):
            self.s3.put_object(Bucket=name, Key=key, Body=key.encode())
        for key in ("b", "d"):
            self.s3.delete_object(Bucket=name, Key=key)
        first = self.s3.list_objects_v2(Bucket=name, MaxKeys=2)
        rest = self.s3.list_objects_v2(Bucket=name, MaxKeys=10, ContinuationToken=first["NextContinuationToken"])
        self.assertEqual([o["Key"] for o in first["Contents"] + rest["Contents"]], ["a", "before", "c", "e"])
        self.assertEqual(len(first["Contents"]), 2)
        # Deleting the marker brings the latest version back, listed again.
        self.s3.delete_object(Bucket=name, Key="k", VersionId=listed["DeleteMarkers"][0]["VersionId"])
        self.assertEqual(self.s3.get_object(Bucket=name, Key="k")["Body"].read(), b"two")
        self.assertEqual([o["Key"] for o in self.s3.list_objects_v2(Bucket=name)["Contents"]], ["a", "before", "c", "e", "k"])
        # The object written before versioning keeps the version id "null".
        before = self.s3.list_object_versions(Bucket=name, Prefix="before")["Versions"]
        self.assertEqual([v["VersionId"] for v in before], ["null"])
        self.assertS3Error(lambda: self.s3.get_object(Bucket=name, Key="k", VersionId="nonexistent"), 400, "InvalidArgument")

    def test_suspended_versioning_overwrites_null_version(self):
        name = self.bucket()
        self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        kept = self.s3.put_object(Bucket=name, Key="k", Body=b"kept")["VersionId"]
        self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Suspended"})
        self.s3.put_object(Bucket=name, Key="k", Body=b"null 1")
        self.s3.put_object(Bucket=name, Key="k", Body=b"null 2")
        versions = self.s3.list_object_versions(Bucket=name)["Versions"]
        self.assertEqual(sorted(v["VersionId"] for v in versions), sorted(["null", kept]))
        self.assertEqual(self.s3.get_object(Bucket=name, Key="k")["Body"].read(), b"null 2")


class CorsTests(S3TestCase):
    def test_cors_configuration_and_browser_requests(self):
        name = self.bucket()
        self.assertS3Error(lambda: self.s3.get_bucket_cors(Bucket=name), 404, "NoSuchCORSConfiguration")
        rules = [{"AllowedOrigins": ["https://app.example.com"], "AllowedMethods": ["GET", "PUT"],
                  "AllowedHeaders": ["content-type", "x-amz-*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600}]
        self.s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": rules})
        self.assertEqual(self.s3.get_bucket_cors(Bucket=name)["CORSRules"][0]["AllowedMethods"], ["GET", "PUT"])
        self.s3.put_object(Bucket=name, Key="page.json", Body=b"{}")
        url = f"{self.server.url}/{name}/page.json"
        # The browser's preflight is unsigned.
        pre = requests.options(url, headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT",
                                             "Access-Control-Request-Headers": "content-type, x-amz-meta-a"})
        self.assertEqual(pre.status_code, 200, pre.text)
        self.assertEqual(pre.headers["Access-Control-Allow-Origin"], "https://app.example.com")
        self.assertIn("PUT", pre.headers["Access-Control-Allow-Methods"])
        self.assertEqual(pre.headers.get("Access-Control-Max-Age"), "600")
        denied = requests.options(url, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
        self.assertEqual(denied.status_code, 403)
        self.assertNotIn("Access-Control-Allow-Origin", denied.headers)
        wrong_method = requests.options(url, headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "DELETE"})
        self.assertEqual(wrong_method.status_code, 403)
        actual = requests.get(url, headers={"Origin": "https://app.example.com", "Authorization": _anonymous_auth()})
        self.assertEqual(actual.headers.get("Access-Control-Allow-Origin"), "https://app.example.com")
        self.assertIn("ETag", actual.headers.get("Access-Control-Expose-Headers", ""))
        self.s3.delete_bucket_cors(Bucket=name)
        gone = requests.options(url, headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"})
        self.assertEqual(gone.status_code, 403)


class MultipartTests(S3TestCase):
    def test_upload_list_complete_with_composite_etag(self):
        name = self.bucket()
        parts_data = [b"a" * (5 * MiB), b"b" * (5 * MiB), b"tail"]
        upload = self.s3.create_multipart_upload(Bucket=name, Key="big", ContentType="application/x-test", Metadata={"m": "1"})
        upload_id = upload["UploadId"]
        self.assertIn(upload_id, [u["UploadId"] for u in self.s3.list_multipart_uploads(Bucket=name)["Uploads"]])
        parts = []
        for number, data in enumerate(parts_data, 1):
            etag = self.s3.upload_part(Bucket=name, Key="big", UploadId=upload_id, PartNumber=number, Body=data)["ETag"]
            self.assertEqual(etag, md5_etag(data))
            parts.append({"PartNumber": number, "ETag": etag})
        listed = self.s3.list_parts(Bucket=name, Key="big", UploadId=upload_id)
        self.assertEqual([(p["PartNumber"], p["Size"]) for p in listed["Parts"]], [(1, 5 * MiB), (2, 5 * MiB), (3, 4)])
        done = self.s3.complete_multipart_upload(Bucket=name, Key="big", UploadId=upload_id, MultipartUpload={"Parts": parts})
        composite = hashlib.md5(b"".join(hashlib.md5(d).digest() for d in parts_data)).hexdigest()
        self.assertEqual(done["ETag"], f'"{composite}-3"')
        got = self.s3.get_object(Bucket=name, Key="big")
        self.assertEqual(hashlib.sha256(got["Body"].read()).digest(), hashlib.sha256(b"".join(parts_data)).digest())
        self.assertEqual((got["ContentType"], got["Metadata"]), ("application/x-test", {"m": "1"}))
        self.assertEqual(self.s3.head_object(Bucket=name, Key="big", PartNumber=2)["ContentLength"], 5 * MiB)
        self.assertEqual(self.s3.list_multipart_uploads(Bucket=name).get("Uploads", []), [])
        self.assertS3Error(lambda: self.s3.list_parts(Bucket=name, Key="big", UploadId=upload_id), 404, "NoSuchUpload")

    def test_list_uploads_pages_in_key_then_initiation_order_and_an_aborting_loop_gets_them_all(self):
        # Several uploads of one key: a page may end inside a key, and the next goes on from that upload (the old build
        # compared upload ids, random, so a page skipped or repeated uploads of the key); max-uploads=0 was a 500.
        name = self.bucket()
        started = [(key, self.s3.create_multipart_upload(Bucket=name, Key=key)["UploadId"]) for key in ["a", "a", "a", "b", "c", "c", "x/1", "x/~", "x0"]]
        listed = [(u["Key"], u["UploadId"]) for page in self.s3.get_paginator("list_multipart_uploads").paginate(
            Bucket=name, PaginationConfig={"PageSize": 2}) for u in page.get("Uploads", [])]
        self.assertInKeyOrderOnceEach(listed, started)
        self.assertEqual([u["Key"] for u in self.s3.list_multipart_uploads(Bucket=name, Prefix="x/")["Uploads"]], ["x/1", "x/~"])
        self.assertEqual([u["Key"] for u in self.s3.list_multipart_uploads(Bucket=name, Prefix="x/", MaxUploads=1, KeyMarker="x/1")["Uploads"]], ["x/~"])
        empty = self.s3.list_multipart_uploads(Bucket=name, MaxUploads=0)
        self.assertEqual((empty.get("Uploads", []), empty["IsTruncated"]), ([], False))
        # A cleanup that aborts each page before asking for the next (its marker upload is gone by then) gets every one.
        aborted, markers = [], {}
        while True:
            page = self.s3.list_multipart_uploads(Bucket=name, MaxUploads=2, **markers)
            for u in page.get("Uploads", []):
                self.s3.abort_multipart_upload(Bucket=name, Key=u["Key"], UploadId=u["UploadId"])
                aborted.append((u["Key"], u["UploadId"]))
            if not page["IsTruncated"]:
                break
            markers = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
        self.assertInKeyOrderOnceEach(aborted, started)
        self.assertEqual(self.s3.list_multipart_uploads(Bucket=name).get("Uploads", []), [])

    def assertInKeyOrderOnceEach(self, listed: list[tuple[str, str]], started: list[tuple[str, str]]) -> None:
        # By key; within a key by initiation, which two uploads started in the same millisecond share (then by id).
        self.assertEqual(sorted(listed), sorted(started))
        self.assertEqual([key for key, _ in listed], sorted(key for key, _ in started))

    def test_refusals_small_parts_wrong_etags_order(self):
        name = self.bucket()
        upload_id = self.s3.create_multipart_upload(Bucket=name, Key="k")["UploadId"]
        e1 = self.s3.upload_part(Bucket=name, Key="k", UploadId=upload_id, PartNumber=1, Body=b"small")["ETag"]
        e2 = self.s3.upload_part(Bucket=name, Key="k", UploadId=upload_id, PartNumber=2, Body=b"small too")["ETag"]
        self.assertS3Error(lambda: self.s3.complete_multipart_upload(
            Bucket=name, Key="k", UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]}), 400, "EntityTooSmall")
        self.assertS3Error(lambda: self.s3.complete_multipart_upload(
            Bucket=name, Key="k", UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"deadbeef"'}]}), 400, "InvalidPart")
        self.assertS3Error(lambda: self.s3.complete_multipart_upload(
            Bucket=name, Key="k", UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": e2}, {"PartNumber": 1, "ETag": e1}]}), 400, "InvalidPartOrder")
        self.assertS3Error(lambda: self.s3.upload_part(Bucket=name, Key="k", UploadId=upload_id, PartNumber=10001, Body=b"x"),
                           400, "InvalidArgument")
        self.s3.abort_multipart_upload(Bucket=name, Key="k", UploadId=upload_id)
        self.assertS3Error(lambda: self.s3.upload_part(Bucket=name, Key="k", UploadId=upload_id, PartNumber=1, Body=b"x"),
                           404, "NoSuchUpload")
        self.assertS3Error(lambda: self.s3.head_object(Bucket=name, Key="k"), 404, "404")

    def test_upload_part_copy_with_range(self):
        name = self.bucket()
        source = bytes(range(256)) * (24 * 1024)  # 6 MiB
        self.s3.put_object(Bucket=name, Key="src", Body=source)
        upload_id = self.s3.create_multipart_upload(Bucket=name, Key="dst")["UploadId"]
        p1 = self.s3.upload_part_copy(Bucket=name, Key="dst", UploadId=upload_id, PartNumber=1,
                                      CopySource={"Bucket": name, "Key": "src"}, CopySourceRange=f"bytes=0-{5 * MiB - 1}")
        p2 = self.s3.upload_part_copy(Bucket=name, Key="dst", UploadId=upload_id, PartNumber=2,
                                      CopySource={"Bucket": name, "Key": "src"}, CopySourceRange=f"bytes={5 * MiB}-{len(source) - 1}")
        self.s3.complete_multipart_upload(Bucket=name, Key="dst", UploadId=upload_id, MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]}, {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]})
        self.assertEqual(self.s3.get_object(Bucket=name, Key="dst")["Body"].read(), source)

    def test_transfer_manager_round_trip(self):
        """boto3's upload_file/download_file: multipart with concurrent parts and CRC32 checksums per part."""
        import tempfile
        from boto3.s3.transfer import TransferConfig
        name = self.bucket()
        with tempfile.TemporaryDirectory() as tmp:
            src = f"{tmp}/src.bin"
            with open(src, "wb") as f:
                f.write(hashlib.sha256(b"seed").digest() * (24 * MiB // 32))
            config = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB, max_concurrency=4)
            self.s3.upload_file(src, name, "file.bin", Config=config)
            head = self.s3.head_object(Bucket=name, Key="file.bin")
            self.assertTrue(head["ETag"].endswith('-3"'), head["ETag"])
            dst = f"{tmp}/dst.bin"
            self.s3.download_file(name, "file.bin", dst, Config=config)
            with open(src, "rb") as a, open(dst, "rb") as b:
                self.assertEqual(hashlib.sha256(a.read()).digest(), hashlib.sha256(b.read()).digest())


class PresignTests(S3TestCase):
    """boto3 presigns S3 URLs with Signature Version 2 by default (AWSAccessKeyId/Expires/Signature), with SigV4 when
    configured (X-Amz-Algorithm/X-Amz-Expires/...): both are served and both expire."""

    def presigner(self, version: str):
        return self.s3 if version == "v2" else s3_client(self.server.url, signature_version="s3v4")

    def test_presigned_get_and_put(self):
        for version in ("v2", "v4"):
            with self.subTest(version=version):
                name = self.bucket()
                s3 = self.presigner(version)
                put_url = s3.generate_presigned_url("put_object", Params={"Bucket": name, "Key": "up.txt"}, ExpiresIn=300)
                self.assertIn("Signature=" if version == "v2" else "X-Amz-Signature=", put_url)
                resp = requests.put(put_url, data=b"uploaded by url")
                self.assertEqual(resp.status_code, 200, resp.text)
                get_url = s3.generate_presigned_url("get_object", Params={"Bucket": name, "Key": "up.txt"}, ExpiresIn=300)
                got = requests.get(get_url)
                self.assertEqual((got.status_code, got.content), (200, b"uploaded by url"))

    def test_presigned_url_expires(self):
        for version in ("v2", "v4"):
            with self.subTest(version=version):
                name = self.bucket()
                self.s3.put_object(Bucket=name, Key="k", Body=b"soon gone")
                url = self.presigner(version).generate_presigned_url("get_object", Params={"Bucket": name, "Key": "k"}, ExpiresIn=1)
                deadline = time.monotonic() + 15
                while True:  # the URL's own clock: valid for about a second after it was signed
                    resp = requests.get(url)
                    if resp.status_code != 200 or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                self.assertEqual(resp.status_code, 403, resp.text)
                self.assertEqual(_xml_code(resp), "AccessDenied")
                self.assertIn("Request has expired", resp.text)

    def test_presigned_v4_expiry_over_seven_days_refused(self):
        name = self.bucket()
        url = self.presigner("v4").generate_presigned_url("get_object", Params={"Bucket": name, "Key": "k"}, ExpiresIn=604801)
        resp = requests.get(url)
        self.assertEqual(resp.status_code, 400)
        self.assertEqual(_xml_code(resp), "AuthorizationQueryParametersError")


class HostileInputTests(S3TestCase):
    def test_malformed_xml_bodies_get_malformed_xml(self):
        name = self.bucket()
        for sub, body in (("tagging", b"<Tagging><TagSet>"), ("cors", b"not xml"), ("versioning", b"<x/>"),
                          ("notification", b"<NotificationConfiguration><Bad/></NotificationConfiguration>")):
            with self.subTest(sub=sub):
                resp = requests.put(f"{self.server.url}/{name}?{sub}", data=body,
                                    headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD", "Authorization": _anonymous_auth()})
                self.assertEqual(resp.status_code, 400, resp.text)
                self.assertIn(_xml_code(resp), ("MalformedXML", "InvalidArgument", "IllegalVersioningConfigurationException"))
        self.assertEqual(self.s3.get_bucket_versioning(Bucket=name).get("Status"), None)

    def test_key_too_long_and_bad_part_numbers(self):
        name = self.bucket()
        self.assertS3Error(lambda: self.s3.put_object(Bucket=name, Key="k" * 1025, Body=b"1"), 400, "KeyTooLongError")

    def test_truncated_upload_leaves_nothing(self):
        """A client that sends fewer bytes than Content-Length and goes away: no object, old one intact."""
        import socket
        name = self.bucket()
        self.s3.put_object(Bucket=name, Key="k", Body=b"original")
        host, port = self.server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(f"PUT /{name}/k HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 100000\r\n"
                         f"x-amz-content-sha256: UNSIGNED-PAYLOAD\r\nAuthorization: {_anonymous_auth()}\r\n\r\n".encode()
                         + b"partial" * 100)
        deadline = time.monotonic() + 10
        while self.s3.get_object(Bucket=name, Key="k")["Body"].read() == b"original" and time.monotonic() < deadline:
            # the server saw the connection end: nothing of the partial upload may appear
            if not any(p.name.startswith("upload") for p in (self.server.data_dir / "s3" / "tmp").iterdir()):
                break
            time.sleep(0.05)
        self.assertEqual(self.s3.get_object(Bucket=name, Key="k")["Body"].read(), b"original")
        self.assertEqual(list((self.server.data_dir / "s3" / "tmp").iterdir()), [])

    def test_declared_size_over_5_gib_refused_before_the_body(self):
        import socket
        name = self.bucket()
        host, port = self.server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(f"PUT /{name}/huge HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {6 * 1024 ** 3}\r\n"
                         f"x-amz-content-sha256: UNSIGNED-PAYLOAD\r\nAuthorization: {_anonymous_auth()}\r\n\r\n".encode())
            answer = b""
            while b"</Error>" not in answer:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        self.assertTrue(answer.startswith(b"HTTP/1.1 400"), answer[:200])
        self.assertIn(b"<Code>EntityTooLarge</Code>", answer)
        self.assertIn(b"<MaxSizeAllowed>5368709120</MaxSizeAllowed>", answer)

    def test_unknown_subresource_not_taken_for_another_operation(self):
        name = self.bucket()
        resp = requests.get(f"{self.server.url}/{name}?lifecycle", headers={"Authorization": _anonymous_auth()})
        self.assertEqual(resp.status_code, 501)
        self.assertEqual(_xml_code(resp), "NotImplemented")


def _anonymous_auth() -> str:
    """An Authorization header scoped to S3 whose signature is not checked (no keys configured, loopback)."""
    return ("AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, "
            "SignedHeaders=host, Signature=" + "0" * 64)


def _crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), bitwise: small inputs only."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _xml_code(resp: requests.Response) -> str | None:
    try:
        return ElementTree.fromstring(resp.content).findtext("Code")
    except ElementTree.ParseError:
        return None


if __name__ == "__main__":
    unittest.main()
