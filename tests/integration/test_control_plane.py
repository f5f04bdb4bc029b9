"""Control plane through boto3: create/get/list/update/delete, waiters, names and ARNs, 404s."""
from __future__ import annotations

import re
import time
import unittest
import uuid

import requests

import lamina_harness as h
from lamina_functions import py_probe_zip

MODULE = __name__


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


UUIDISH = re.compile(r"^[0-9a-fA-F-]{8,}$")


class CreateFunctionTests(h.LaminaTestCase):

    def test_create_function_returns_201_and_full_configuration(self):
        name = self.fn_name()
        zip_bytes = py_probe_zip()
        resp = self.create_function(zip_bytes, name=name, runtime="python3.12",
                                    Environment={"Variables": {"GREETING": "hello", "COUNT_N": "1"}},
                                    wait=False)
        self.assertEqual(resp["ResponseMetadata"]["HTTPStatusCode"], 201)
        self.assertTrue(resp["ResponseMetadata"].get("RequestId"), "x-amzn-RequestId missing")
        self.assertEqual(resp["FunctionName"], name)
        self.assertEqual(resp["FunctionArn"], h.function_arn(name))
        self.assertEqual(resp["Runtime"], "python3.12")
        self.assertEqual(resp["Role"], h.ROLE)
        self.assertEqual(resp["Handler"], "app.handler")
        self.assertEqual(resp["CodeSize"], len(zip_bytes))
        self.assertEqual(resp["CodeSha256"], h.b64_sha256(zip_bytes))
        self.assertEqual(resp["Timeout"], 3)
        self.assertEqual(resp["MemorySize"], 128)
        self.assertRegex(resp["LastModified"], h.LAST_MODIFIED_RE)
        self.assertEqual(resp["Version"], "$LATEST")
        self.assertEqual(resp["Environment"], {"Variables": {"GREETING": "hello", "COUNT_N": "1"}})
        self.assertIn(resp.get("State"), ("Pending", "Active"))
        self.assertIn("LastUpdateStatus", resp)
        self.assertRegex(resp.get("RevisionId", ""), UUIDISH)
        self.assertEqual(resp["PackageType"], "Zip")
        self.assertEqual(resp["Architectures"], ["x86_64"])
        self.assertEqual(resp["EphemeralStorage"], {"Size": 512})
        self.assertEqual(resp["Description"], "")
        self.assertEqual(resp["TracingConfig"], {"Mode": "PassThrough"})

        cfg = self.wait_active(name)
        self.assertEqual(cfg["State"], "Active")
        self.assertEqual(cfg["LastUpdateStatus"], "Successful")

    def test_create_function_with_explicit_settings(self):
        name = self.fn_name()
        resp = self.create_function(py_probe_zip(), name=name, runtime="python3.13",
                                    Timeout=30, MemorySize=512, Description="my description",
                                    EphemeralStorage={"Size": 1024}, Architectures=["x86_64"])
        self.assertEqual(resp["Timeout"], 30)
        self.assertEqual(resp["MemorySize"], 512)
        self.assertEqual(resp["Description"], "my description")
        self.assertEqual(resp["EphemeralStorage"], {"Size": 1024})
        self.assertNotIn("Variables", resp.get("Environment", {}) or {})
        cfg = self.lam.get_function_configuration(FunctionName=name)
        for key in ("Timeout", "MemorySize", "Description", "CodeSha256", "CodeSize", "Runtime"):
            self.assertEqual(cfg[key], resp[key], key)

    def test_waiter_function_active_v2(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, wait=False)
        t0 = time.monotonic()
        self.lam.get_waiter("function_active_v2").wait(
            FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        self.assertLess(time.monotonic() - t0, 60)
        self.assertEqual(self.lam.get_function(FunctionName=name)["Configuration"]["State"], "Active")

    def test_waiter_function_updated_v2(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        self.lam.update_function_code(FunctionName=name, ZipFile=py_probe_zip("v2"))
        self.lam.get_waiter("function_updated_v2").wait(
            FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        cfg = self.lam.get_function(FunctionName=name)["Configuration"]
        self.assertEqual(cfg["LastUpdateStatus"], "Successful")
        self.assertEqual(cfg["CodeSha256"], h.b64_sha256(py_probe_zip("v2")))


class GetAndListTests(h.LaminaTestCase):

    def test_get_function_returns_configuration_and_code(self):
        name = self.fn_name()
        zip_bytes = py_probe_zip()
        self.create_function(zip_bytes, name=name)
        resp = self.lam.get_function(FunctionName=name)
        self.assertEqual(resp["ResponseMetadata"]["HTTPStatusCode"], 200)
        cfg = resp["Configuration"]
        self.assertEqual(cfg["FunctionName"], name)
        self.assertEqual(cfg["FunctionArn"], h.function_arn(name))
        self.assertEqual(cfg["CodeSha256"], h.b64_sha256(zip_bytes))
        self.assertEqual(cfg["CodeSize"], len(zip_bytes))
        self.assertEqual(cfg["State"], "Active")
        self.assertEqual(resp["Code"]["RepositoryType"], "S3")
        self.assertRegex(resp["Code"]["Location"], r"^https?://")

    def test_get_function_code_location_downloads_the_zip(self):
        name = self.fn_name()
        zip_bytes = py_probe_zip("download")
        self.create_function(zip_bytes, name=name)
        location = self.lam.get_function(FunctionName=name)["Code"]["Location"]
        r = requests.get(location, timeout=30)  # unauthenticated, like `curl "$Location"`
        self.assertEqual(r.status_code, 200, r.text[:500])
        self.assertEqual(r.content, zip_bytes)

    def test_get_function_configuration(self):
        name = self.fn_name()
        zip_bytes = py_probe_zip()
        self.create_function(zip_bytes, name=name, Timeout=7)
        cfg = self.lam.get_function_configuration(FunctionName=name)
        self.assertEqual(cfg["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual(cfg["FunctionName"], name)
        self.assertEqual(cfg["FunctionArn"], h.function_arn(name))
        self.assertEqual(cfg["Timeout"], 7)
        self.assertEqual(cfg["Version"], "$LATEST")
        self.assertEqual(cfg["CodeSha256"], h.b64_sha256(zip_bytes))
        self.assertRegex(cfg["LastModified"], h.LAST_MODIFIED_RE)
        self.assertEqual(cfg["State"], "Active")
        self.assertEqual(cfg["LastUpdateStatus"], "Successful")
        self.assertNotIn("Configuration", cfg)

    def test_list_functions_paginates_with_max_items(self):
        names = sorted(self.fn_name(f"p{i}") for i in range(5))
        zip_bytes = py_probe_zip()
        for n in names:
            self.create_function(zip_bytes, name=n, wait=False)
        seen: list[str] = []
        marker, pages = None, 0
        while True:
            kw = {"MaxItems": 2}
            if marker:
                kw["Marker"] = marker
            page = self.lam.list_functions(**kw)
            pages += 1
            self.assertLessEqual(len(page["Functions"]), 2, f"page {pages} ignores MaxItems=2")
            seen += [f["FunctionName"] for f in page["Functions"]]
            for f in page["Functions"]:
                self.assertEqual(f["FunctionArn"], h.function_arn(f["FunctionName"]))
                self.assertIn("Runtime", f)
            marker = page.get("NextMarker")
            if not marker:
                break
            self.assertLess(pages, 500, "NextMarker chain does not end")
        self.assertGreaterEqual(pages, 3, "5 functions with MaxItems=2 need at least 3 pages")
        self.assertEqual(len(seen), len(set(seen)), f"duplicates across pages: {seen}")
        for n in names:
            self.assertIn(n, seen)

    def test_list_functions_paginator_collects_all(self):
        names = [self.fn_name(f"g{i}") for i in range(3)]
        for n in names:
            self.create_function(py_probe_zip(), name=n, wait=False)
        got = []
        for page in self.lam.get_paginator("list_functions").paginate(
                PaginationConfig={"PageSize": 1}):
            got += [f["FunctionName"] for f in page["Functions"]]
        self.assertEqual(len(got), len(set(got)))
        for n in names:
            self.assertIn(n, got)

    def test_list_functions_trailing_slash_route(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, wait=False)
        for path in ("/2015-03-31/functions/", "/2015-03-31/functions"):
            with self.subTest(path=path):
                r = self.server.raw("GET", path, query={"MaxItems": "50"})
                self.assertEqual(r.status, 200, repr(r))
                self.assertTrue(r.request_id, "missing x-amzn-RequestId")
                self.assertIsInstance(r.json.get("Functions"), list, repr(r))
        # follow markers on the trailing-slash form until our function shows up
        seen, marker = [], None
        for _ in range(200):
            q = {"MaxItems": "50"} | ({"Marker": marker} if marker else {})
            r = self.server.raw("GET", "/2015-03-31/functions/", query=q)
            self.assertEqual(r.status, 200, repr(r))
            seen += [f["FunctionName"] for f in r.json["Functions"]]
            marker = r.json.get("NextMarker")
            if not marker:
                break
        self.assertIn(name, seen)


class UpdateTests(h.LaminaTestCase):

    def test_update_function_code_changes_sha_and_revision(self):
        name = self.fn_name()
        v1, v2 = py_probe_zip("v1"), py_probe_zip("v2-longer-version-string")
        created = self.create_function(v1, name=name)
        before = self.lam.get_function_configuration(FunctionName=name)
        resp = self.lam.update_function_code(FunctionName=name, ZipFile=v2)
        self.assertEqual(resp["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual(resp["CodeSha256"], h.b64_sha256(v2))
        self.assertNotEqual(resp["CodeSha256"], created["CodeSha256"])
        self.assertEqual(resp["CodeSize"], len(v2))
        self.assertNotEqual(resp["RevisionId"], before["RevisionId"])
        self.assertRegex(resp["LastModified"], h.LAST_MODIFIED_RE)
        after = self.wait_updated(name)
        self.assertEqual(after["CodeSha256"], h.b64_sha256(v2))
        self.assertEqual(after["LastUpdateStatus"], "Successful")
        got = self.lam.get_function(FunctionName=name)["Configuration"]
        self.assertEqual(got["CodeSha256"], h.b64_sha256(v2))

    def test_update_function_configuration_replaces_environment(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name,
                             Environment={"Variables": {"KEY_A": "1", "KEY_B": "2"}})
        resp = self.lam.update_function_configuration(
            FunctionName=name, Environment={"Variables": {"KEY_C": "3"}})
        self.assertEqual(resp["Environment"]["Variables"], {"KEY_C": "3"})
        self.wait_updated(name)
        cfg = self.lam.get_function_configuration(FunctionName=name)
        self.assertEqual(cfg["Environment"]["Variables"], {"KEY_C": "3"})

    def test_update_function_configuration_timeout_memory_description(self):
        name = self.fn_name()
        created = self.create_function(py_probe_zip(), name=name)
        before = self.lam.get_function_configuration(FunctionName=name)
        resp = self.lam.update_function_configuration(
            FunctionName=name, Timeout=42, MemorySize=256, Description="updated")
        self.assertEqual(resp["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual(resp["Timeout"], 42)
        self.assertEqual(resp["MemorySize"], 256)
        self.assertEqual(resp["Description"], "updated")
        self.assertNotEqual(resp["RevisionId"], before["RevisionId"])
        self.assertEqual(resp["CodeSha256"], created["CodeSha256"], "code must not change")
        self.wait_updated(name)
        cfg = self.lam.get_function_configuration(FunctionName=name)
        self.assertEqual((cfg["Timeout"], cfg["MemorySize"], cfg["Description"]),
                         (42, 256, "updated"))

    def test_update_function_configuration_stale_revision_id_is_412(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        rev0 = self.lam.get_function_configuration(FunctionName=name)["RevisionId"]
        rev1 = self.lam.update_function_configuration(FunctionName=name, Timeout=5,
                                                      RevisionId=rev0)["RevisionId"]
        self.assertNotEqual(rev0, rev1)
        self.wait_updated(name)
        self.assertAwsError(
            lambda: self.lam.update_function_configuration(FunctionName=name, Timeout=9,
                                                           RevisionId=rev0),
            412, "PreconditionFailedException")
        cfg = self.lam.get_function_configuration(FunctionName=name)
        self.assertEqual(cfg["Timeout"], 5, "a rejected update must not apply")

    def test_update_function_code_stale_revision_id_is_412(self):
        name = self.fn_name()
        v1 = py_probe_zip("v1")
        self.create_function(v1, name=name)
        rev0 = self.lam.get_function_configuration(FunctionName=name)["RevisionId"]
        self.lam.update_function_configuration(FunctionName=name, Description="bump")
        self.wait_updated(name)
        self.assertAwsError(
            lambda: self.lam.update_function_code(FunctionName=name, ZipFile=py_probe_zip("v2"),
                                                  RevisionId=rev0),
            412, "PreconditionFailedException")
        cfg = self.lam.get_function_configuration(FunctionName=name)
        self.assertEqual(cfg["CodeSha256"], h.b64_sha256(v1))


class DeleteTests(h.LaminaTestCase):

    def test_delete_function_then_get_and_invoke_are_404(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, cleanup=False)
        resp = self.lam.delete_function(FunctionName=name)
        self.assertIn(resp["ResponseMetadata"]["HTTPStatusCode"], (200, 204))
        self.assertAwsError(lambda: self.lam.get_function(FunctionName=name),
                            404, "ResourceNotFoundException")
        self.assertAwsError(lambda: self.lam.get_function_configuration(FunctionName=name),
                            404, "ResourceNotFoundException")
        self.assertAwsError(lambda: self.lam.invoke(FunctionName=name, Payload=b"{}"),
                            404, "ResourceNotFoundException")
        self.assertAwsError(lambda: self.lam.delete_function(FunctionName=name),
                            404, "ResourceNotFoundException")
        self.assertNotIn(name, self.list_function_names())

    def test_delete_after_invoke_then_recreate_same_name(self):
        name = self.fn_name()
        self.create_function(py_probe_zip("first"), name=name, cleanup=False)
        _, out = self.invoke_ok(name, {})
        self.assertEqual(out["version"], "first")
        self.lam.delete_function(FunctionName=name)
        self.create_function(py_probe_zip("second"), name=name)
        _, out = self.invoke_ok(name, {})
        self.assertEqual(out["version"], "second", "a re-created function must not run old code")


class NamesAndArnsTests(h.LaminaTestCase):

    def test_function_name_forms_are_accepted(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        forms = {
            "name": name,
            "full ARN": h.function_arn(name),
            "partial ARN": f"{h.ACCOUNT}:function:{name}",
            "name:$LATEST": f"{name}:$LATEST",
            "full ARN:$LATEST": h.function_arn(name, "$LATEST"),
        }
        for label, ident in forms.items():
            with self.subTest(form=label, op="GetFunctionConfiguration"):
                cfg = self.lam.get_function_configuration(FunctionName=ident)
                self.assertEqual(cfg["FunctionName"], name)
            with self.subTest(form=label, op="GetFunction"):
                cfg = self.lam.get_function(FunctionName=ident)["Configuration"]
                self.assertEqual(cfg["FunctionName"], name)
            with self.subTest(form=label, op="Invoke"):
                resp, out = self.invoke_ok(ident, {"form": label})
                self.assertEqual(out["event"], {"form": label})
                self.assertEqual(resp["ExecutedVersion"], "$LATEST")

    def test_update_and_delete_by_arn(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, cleanup=False)
        resp = self.lam.update_function_configuration(FunctionName=h.function_arn(name),
                                                      Description="via arn")
        self.assertEqual(resp["Description"], "via arn")
        self.wait_updated(name)
        self.lam.delete_function(FunctionName=f"{h.ACCOUNT}:function:{name}")
        self.assertAwsError(lambda: self.lam.get_function(FunctionName=name),
                            404, "ResourceNotFoundException")


class MissingFunctionTests(h.LaminaTestCase):

    def test_missing_function_is_404_with_arn_in_message(self):
        name = f"missing-{uuid.uuid4().hex[:10]}"
        e = self.assertAwsError(lambda: self.lam.get_function(FunctionName=name),
                                404, "ResourceNotFoundException")
        self.assertIn(f"Function not found: {h.function_arn(name)}", e.response["Error"]["Message"])

    def test_missing_function_is_404_on_every_operation(self):
        name = f"missing-{uuid.uuid4().hex[:10]}"
        ops = {
            "GetFunction": lambda: self.lam.get_function(FunctionName=name),
            "GetFunctionConfiguration": lambda: self.lam.get_function_configuration(FunctionName=name),
            "UpdateFunctionCode": lambda: self.lam.update_function_code(
                FunctionName=name, ZipFile=py_probe_zip()),
            "UpdateFunctionConfiguration": lambda: self.lam.update_function_configuration(
                FunctionName=name, Timeout=5),
            "DeleteFunction": lambda: self.lam.delete_function(FunctionName=name),
            "Invoke": lambda: self.lam.invoke(FunctionName=name, Payload=b"{}"),
            "Invoke by ARN": lambda: self.lam.invoke(FunctionName=h.function_arn(name), Payload=b"{}"),
        }
        for op, call in ops.items():
            with self.subTest(op=op):
                self.assertAwsError(call, 404, "ResourceNotFoundException")
        self.assertNotIn(name, self.list_function_names(), "UpdateFunctionCode must not create")


if __name__ == "__main__":
    unittest.main()
