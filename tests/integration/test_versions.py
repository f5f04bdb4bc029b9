"""Versions (issue #4) through boto3 and the AWS CLI: PublishVersion, ListVersionsByFunction, qualifiers on
Invoke/Get/Delete, ListFunctions with FunctionVersion=ALL, immutability, one environment per version."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import unittest
from pathlib import Path

import lamina_harness as h
from lamina_functions import py_probe_zip

MODULE = __name__
FUNCTIONS = "/2015-03-31/functions"


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


class _VersionsBase(h.LaminaTestCase):

    def publish(self, name: str, **kwargs) -> dict:
        resp = self.lam.publish_version(FunctionName=name, **kwargs)
        self.assertEqual(resp["ResponseMetadata"]["HTTPStatusCode"], 201)
        return resp

    def change(self, name: str, version: str) -> None:
        """Gives $LATEST new code (the probe reports `version`)."""
        self.lam.update_function_code(FunctionName=name, ZipFile=py_probe_zip(version))
        self.wait_updated(name)

    def list_versions(self, name: str, **kwargs) -> list[dict]:
        versions, marker = [], None
        for _ in range(100):
            page = self.lam.list_versions_by_function(FunctionName=name, **({"Marker": marker} if marker else {}), **kwargs)
            versions += page["Versions"]
            marker = page.get("NextMarker")
            if not marker:
                return versions
        self.fail("ListVersionsByFunction pagination did not terminate")


class PublishTests(_VersionsBase):

    def test_publish_numbers_versions_and_each_runs_its_own_code(self):
        name = self.fn_name()
        v1_zip = py_probe_zip("one")
        self.create_function(v1_zip, name=name)

        first = self.publish(name)
        self.assertEqual(first["Version"], "1")
        self.assertEqual(first["FunctionArn"], h.function_arn(name, "1"))
        self.assertEqual(first["CodeSha256"], h.b64_sha256(v1_zip))
        self.assertEqual(first["State"], "Active")
        self.assertRegex(first["LastModified"], h.LAST_MODIFIED_RE)

        self.change(name, "two")
        second = self.publish(name)
        self.assertEqual(second["Version"], "2")
        self.assertEqual(second["FunctionArn"], h.function_arn(name, "2"))

        for qualifier, code in (("1", "one"), ("2", "two"), ("$LATEST", "two")):
            with self.subTest(qualifier=qualifier):
                resp, out = self.invoke_ok(name, {"q": qualifier}, Qualifier=qualifier)
                self.assertEqual(resp["ExecutedVersion"], qualifier)
                self.assertEqual(out["version"], code)
                self.assertEqual(out["context"]["function_version"], qualifier)
                self.assertEqual(out["context"]["invoked_function_arn"], h.function_arn(name, qualifier))
        # Unqualified is $LATEST, with the unqualified ARN.
        resp, out = self.invoke_ok(name, {})
        self.assertEqual(resp["ExecutedVersion"], "$LATEST")
        self.assertEqual(out["context"]["invoked_function_arn"], h.function_arn(name))

    def test_publish_unchanged_returns_the_latest_version(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        first = self.publish(name)
        again = self.publish(name, Description="nothing changed")
        self.assertEqual(again["Version"], "1")
        self.assertEqual(again["RevisionId"], first["RevisionId"])
        self.assertEqual([v["Version"] for v in self.list_versions(name)], ["$LATEST", "1"])
        # A configuration change is a change.
        self.lam.update_function_configuration(FunctionName=name, MemorySize=256)
        self.wait_updated(name)
        self.assertEqual(self.publish(name)["Version"], "2")

    def test_publish_preconditions_revision_id_and_code_sha256(self):
        name = self.fn_name()
        zip_bytes = py_probe_zip()
        self.create_function(zip_bytes, name=name)
        latest = self.lam.get_function_configuration(FunctionName=name)
        self.assertAwsError(lambda: self.lam.publish_version(FunctionName=name, RevisionId="not-the-revision"),
                            412, "PreconditionFailedException")
        e = self.assertAwsError(lambda: self.lam.publish_version(FunctionName=name, CodeSha256="bm9wZQ=="),
                                400, "InvalidParameterValueException")
        self.assertIn(f"is different from current CodeSHA256 in $LATEST ({h.b64_sha256(zip_bytes)})",
                      e.response["Error"]["Message"])
        self.assertEqual([v["Version"] for v in self.list_versions(name)], ["$LATEST"], "a refused publish published")
        ok = self.publish(name, RevisionId=latest["RevisionId"], CodeSha256=latest["CodeSha256"],
                          Description="release one")
        self.assertEqual((ok["Version"], ok["Description"]), ("1", "release one"))
        self.assertEqual(self.lam.get_function_configuration(FunctionName=name)["Description"], "",
                         "the version's description must not change $LATEST")

    def test_publish_unknown_function_is_404(self):
        self.assertAwsError(lambda: self.lam.publish_version(FunctionName=self.fn_name()), 404,
                            "ResourceNotFoundException")

    def test_create_and_update_code_with_publish(self):
        name = self.fn_name()
        created = self.create_function(py_probe_zip("one"), name=name, Publish=True)
        self.assertEqual(created["Version"], "1")
        updated = self.lam.update_function_code(FunctionName=name, ZipFile=py_probe_zip("two"), Publish=True)
        self.assertEqual(updated["Version"], "2")
        self.assertEqual(updated["FunctionArn"], h.function_arn(name, "2"))
        self.wait_updated(name)
        self.assertEqual(self.invoke_ok(name, {}, Qualifier="1")[1]["version"], "one")
        self.assertEqual(self.invoke_ok(name, {}, Qualifier="2")[1]["version"], "two")


class ImmutabilityTests(_VersionsBase):

    def test_version_keeps_its_configuration_when_latest_changes(self):
        name = self.fn_name()
        self.create_function(py_probe_zip("one"), name=name, Environment={"Variables": {"COLOR": "blue"}},
                             MemorySize=256, Description="first")
        self.publish(name)
        self.lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"COLOR": "red"}},
                                               MemorySize=512, Description="second", Timeout=10)
        self.wait_updated(name)
        self.change(name, "two")

        v1 = self.lam.get_function_configuration(FunctionName=name, Qualifier="1")
        self.assertEqual((v1["Version"], v1["MemorySize"], v1["Description"], v1["Timeout"]), ("1", 256, "first", 3))
        self.assertEqual(v1["Environment"]["Variables"], {"COLOR": "blue"})
        self.assertEqual(v1["FunctionArn"], h.function_arn(name, "1"))
        got = self.lam.get_function(FunctionName=name, Qualifier="1")
        self.assertEqual(got["Configuration"]["Version"], "1")
        self.assertEqual(got["Configuration"]["CodeSha256"], h.b64_sha256(py_probe_zip("one")))

        _, env = self.invoke_ok(name, {"op": "env"}, Qualifier="1")
        self.assertEqual(env["env"]["COLOR"], "blue")
        self.assertEqual(env["env"]["AWS_LAMBDA_FUNCTION_VERSION"], "1")
        self.assertEqual(env["env"]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256")
        _, env = self.invoke_ok(name, {"op": "env"})
        self.assertEqual(env["env"]["COLOR"], "red")
        self.assertEqual(env["env"]["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST")

    def test_environments_belong_to_one_version(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        self.publish(name)  # same code and configuration as $LATEST
        # Each environment has its own log stream (and PID namespace, so PIDs would not tell them apart).
        env = lambda out: out["context"]["log_stream_name"]  # noqa: E731
        _, latest_a = self.invoke_ok(name, {})
        _, v1_a = self.invoke_ok(name, {}, Qualifier="1")
        _, latest_b = self.invoke_ok(name, {})
        _, v1_b = self.invoke_ok(name, {}, Qualifier="1")
        self.assertNotEqual(env(latest_a), env(v1_a), "an environment served two versions")
        self.assertEqual((env(latest_a), env(v1_a)), (env(latest_b), env(v1_b)), "warm environments not reused")
        self.assertEqual((latest_b["count"], v1_b["count"]), (2, 2))
        # Updating $LATEST does not disturb version 1's warm environment.
        self.change(name, "v2")
        _, v1_c = self.invoke_ok(name, {}, Qualifier="1")
        self.assertEqual((env(v1_c), v1_c["count"]), (env(v1_a), 3))

    def test_log_stream_and_report_name_the_version(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        self.publish(name)
        resp, out = self.invoke_ok(name, {}, Qualifier="1", LogType="Tail")
        rid = out["context"]["request_id"]
        self.assertIn(f"START RequestId: {rid} Version: 1", h.decode_log_result(resp))
        self.assertIn("[1]", out["context"]["log_stream_name"])


class QualifierTests(_VersionsBase):

    def test_every_name_form_reaches_the_version(self):
        name = self.fn_name()
        self.create_function(py_probe_zip("one"), name=name)
        self.publish(name)
        self.change(name, "two")
        forms = {
            "name:1": (f"{name}:1", None),
            "full ARN:1": (h.function_arn(name, "1"), None),
            "partial ARN:1": (f"{h.ACCOUNT}:function:{name}:1", None),
            "Qualifier=1": (name, "1"),
            "ARN + Qualifier=1": (h.function_arn(name), "1"),
            "name:1 + Qualifier=1": (f"{name}:1", "1"),
        }
        for label, (ident, qualifier) in forms.items():
            with self.subTest(form=label):
                kw = {"Qualifier": qualifier} if qualifier else {}
                resp, out = self.invoke_ok(ident, {}, **kw)
                self.assertEqual((resp["ExecutedVersion"], out["version"]), ("1", "one"))
                cfg = self.lam.get_function_configuration(FunctionName=ident, **kw)
                self.assertEqual((cfg["Version"], cfg["FunctionArn"]), ("1", h.function_arn(name, "1")))

    def test_conflicting_qualifiers_are_refused(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        self.publish(name)
        self.assertAwsError(lambda: self.lam.invoke(FunctionName=f"{name}:1", Qualifier="$LATEST", Payload=b"{}"),
                            400, "InvalidParameterValueException")

    def test_unknown_version_is_404_everywhere(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        self.publish(name)
        for call in (lambda: self.lam.invoke(FunctionName=name, Qualifier="2", Payload=b"{}"),
                     lambda: self.lam.get_function(FunctionName=name, Qualifier="2"),
                     lambda: self.lam.get_function_configuration(FunctionName=f"{name}:2"),
                     lambda: self.lam.delete_function(FunctionName=name, Qualifier="2")):
            e = self.assertAwsError(call, 404, "ResourceNotFoundException")
            self.assertIn(f"Function not found: {h.function_arn(name, '2')}", e.response["Error"]["Message"])


class ListTests(_VersionsBase):

    def test_list_versions_latest_first_qualified_arns_paginated(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        for i in range(4):
            self.publish(name)
            self.lam.update_function_configuration(FunctionName=name, Timeout=4 + i)
            self.wait_updated(name)
        page = self.lam.list_versions_by_function(FunctionName=name, MaxItems=2)
        self.assertEqual([v["Version"] for v in page["Versions"]], ["$LATEST", "1"])
        self.assertIn("NextMarker", page)
        versions = self.list_versions(name, MaxItems=2)
        self.assertEqual([v["Version"] for v in versions], ["$LATEST", "1", "2", "3", "4"])
        self.assertEqual([v["FunctionArn"] for v in versions],
                         [h.function_arn(name, q) for q in ("$LATEST", "1", "2", "3", "4")])
        self.assertEqual([v["Timeout"] for v in versions], [7, 3, 4, 5, 6])
        paginated = [v["Version"] for p in self.lam.get_paginator("list_versions_by_function").paginate(
            FunctionName=name, PaginationConfig={"PageSize": 3}) for v in p["Versions"]]
        self.assertEqual(paginated, ["$LATEST", "1", "2", "3", "4"])

    def test_list_versions_unknown_function_is_404(self):
        self.assertAwsError(lambda: self.lam.list_versions_by_function(FunctionName=self.fn_name()),
                            404, "ResourceNotFoundException")

    def test_list_functions_with_all_versions(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        self.publish(name)
        arns, marker = [], None
        for _ in range(1000):
            kw = {"Marker": marker} if marker else {}
            page = self.lam.list_functions(FunctionVersion="ALL", MaxItems=3, **kw)
            arns += [f["FunctionArn"] for f in page["Functions"]]
            marker = page.get("NextMarker")
            if not marker:
                break
        self.assertEqual(len(arns), len(set(arns)), "duplicates across pages")
        self.assertIn(h.function_arn(name, "$LATEST"), arns)
        self.assertIn(h.function_arn(name, "1"), arns)
        plain = [f["FunctionArn"] for f in self.lam.list_functions(MaxItems=50)["Functions"]]
        self.assertNotIn(h.function_arn(name, "1"), plain)
        self.assertIn(name, self.list_function_names())


class DeleteTests(_VersionsBase):

    def test_delete_one_version(self):
        name = self.fn_name()
        self.create_function(py_probe_zip("one"), name=name)
        self.publish(name)
        self.change(name, "two")
        self.publish(name)
        self.invoke_ok(name, {}, Qualifier="1")  # a warm environment that must stop serving
        resp = self.lam.delete_function(FunctionName=name, Qualifier="1")
        self.assertIn(resp["ResponseMetadata"]["HTTPStatusCode"], (200, 204))
        self.assertAwsError(lambda: self.lam.invoke(FunctionName=name, Qualifier="1", Payload=b"{}"),
                            404, "ResourceNotFoundException")
        self.assertEqual([v["Version"] for v in self.list_versions(name)], ["$LATEST", "2"])
        self.assertEqual(self.invoke_ok(name, {}, Qualifier="2")[1]["version"], "two")
        # Numbers are never reused.
        self.change(name, "three")
        self.assertEqual(self.publish(name)["Version"], "3")
        # Delete by qualified ARN.
        self.lam.delete_function(FunctionName=h.function_arn(name, "3"))
        self.assertEqual([v["Version"] for v in self.list_versions(name)], ["$LATEST", "2"])

    def test_delete_latest_qualifier_is_refused(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        self.assertAwsError(lambda: self.lam.delete_function(FunctionName=name, Qualifier="$LATEST"),
                            400, "InvalidParameterValueException")
        self.lam.get_function(FunctionName=name)

    def test_delete_function_deletes_every_version_and_alias(self):
        name = self.fn_name()
        self.create_function(py_probe_zip("old"), name=name, cleanup=False)
        self.publish(name)
        self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        self.invoke_ok(name, {}, Qualifier="live")
        self.lam.delete_function(FunctionName=name)
        for q in ("1", "live", "$LATEST"):
            self.assertAwsError(lambda: self.lam.get_function(FunctionName=name, Qualifier=q), 404,
                                "ResourceNotFoundException")
        # The name starts over.
        self.create_function(py_probe_zip("new"), name=name)
        self.assertEqual([v["Version"] for v in self.list_versions(name)], ["$LATEST"])
        self.assertEqual(self.lam.list_aliases(FunctionName=name)["Aliases"], [])
        self.assertEqual(self.publish(name)["Version"], "1")
        self.assertEqual(self.invoke_ok(name, {}, Qualifier="1")[1]["version"], "new")


class _CliBase(h.CliTestCase):

    def test_cli_publish_list_invoke_delete_versions(self):
        name = self.fn_name()
        self.create_function(py_probe_zip("one"), name=name)
        out = self.aws("lambda", "publish-version", "--function-name", name, "--description", "cli").json
        self.assertEqual((out["Version"], out["Description"]), ("1", "cli"))
        zip_path = self.tmp / f"{name}.zip"
        zip_path.write_bytes(py_probe_zip("two"))
        out = self.aws("lambda", "update-function-code", "--function-name", name,
                       "--zip-file", f"fileb://{zip_path}", "--publish").json
        self.assertEqual(out["Version"], "2")
        listed = self.aws("lambda", "list-versions-by-function", "--function-name", name,
                          "--page-size", "1").json
        self.assertEqual([v["Version"] for v in listed["Versions"]], ["$LATEST", "1", "2"])
        outfile = self.tmp / f"{name}.json"
        meta = self.aws("lambda", "invoke", "--function-name", name, "--qualifier", "1", str(outfile)).json
        self.assertEqual(meta["ExecutedVersion"], "1")
        self.assertEqual(json.loads(outfile.read_text())["version"], "one")
        self.aws("lambda", "delete-function", "--function-name", name, "--qualifier", "1")
        listed = self.aws("lambda", "list-versions-by-function", "--function-name", name).json
        self.assertEqual([v["Version"] for v in listed["Versions"]], ["$LATEST", "2"])
        every = self.aws("lambda", "list-functions", "--function-version", "ALL").json
        self.assertIn(h.function_arn(name, "2"), [f["FunctionArn"] for f in every["Functions"]])


class CliV1Tests(_CliBase):
    CLI = os.environ.get("LAMINA_AWS_CLI", "aws")


class CliV2DebianTests(_CliBase):
    CLI = "/usr/bin/aws" if os.path.exists("/usr/bin/aws") else None


del _CliBase

if __name__ == "__main__":
    unittest.main()
