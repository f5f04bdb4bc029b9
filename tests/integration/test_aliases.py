"""Aliases (issue #4) through boto3, raw signed HTTP and the AWS CLI: Create/Get/Update/Delete/ListAliases,
Lambda's validation rules, weighted routing (X-Amz-Executed-Version), versions protected by aliases."""
from __future__ import annotations

import collections
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
VALIDATION = ("ValidationException", "InvalidParameterValueException")


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


class _AliasBase(h.LaminaTestCase):

    def two_versions(self) -> str:
        """A function with version 1 ("one") and version 2 ("two"); $LATEST runs "two"."""
        name = self.fn_name()
        self.create_function(py_probe_zip("one"), name=name)
        self.assertEqual(self.lam.publish_version(FunctionName=name)["Version"], "1")
        self.lam.update_function_code(FunctionName=name, ZipFile=py_probe_zip("two"))
        self.wait_updated(name)
        self.assertEqual(self.lam.publish_version(FunctionName=name)["Version"], "2")
        return name

    def raw_alias(self, method: str, name: str, alias: str | None = None, body=None):
        path = f"{FUNCTIONS}/{h.quote_path_segment(name)}/aliases"
        if alias is not None:
            path += "/" + h.quote_path_segment(alias)
        return self.server.raw(method, path, body)


class AliasCrudTests(_AliasBase):

    def test_create_get_update_list_delete(self):
        name = self.two_versions()
        created = self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1", Description="prod")
        self.assertEqual(created["ResponseMetadata"]["HTTPStatusCode"], 201)
        self.assertEqual(created["AliasArn"], h.function_arn(name, "live"))
        self.assertEqual((created["Name"], created["FunctionVersion"], created["Description"]), ("live", "1", "prod"))
        self.assertTrue(created["RevisionId"])
        self.assertNotIn("RoutingConfig", created)

        got = self.lam.get_alias(FunctionName=name, Name="live")
        self.assertEqual(got["RevisionId"], created["RevisionId"])

        updated = self.lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2",
                                        RevisionId=created["RevisionId"])
        self.assertEqual((updated["FunctionVersion"], updated["Description"]), ("2", "prod"))
        self.assertNotEqual(updated["RevisionId"], created["RevisionId"])
        self.assertAwsError(lambda: self.lam.update_alias(FunctionName=name, Name="live", Description="x",
                                                          RevisionId=created["RevisionId"]),
                            412, "PreconditionFailedException")

        self.lam.create_alias(FunctionName=name, Name="dev", FunctionVersion="$LATEST")
        self.lam.create_alias(FunctionName=name, Name="canary", FunctionVersion="1",
                              RoutingConfig={"AdditionalVersionWeights": {"2": 0.25}})
        listed = self.lam.list_aliases(FunctionName=name)["Aliases"]
        self.assertEqual([a["Name"] for a in listed], ["canary", "dev", "live"])
        self.assertEqual(listed[0]["RoutingConfig"], {"AdditionalVersionWeights": {"2": 0.25}})
        self.assertEqual([a["Name"] for a in self.lam.list_aliases(FunctionName=name, FunctionVersion="2")["Aliases"]],
                         ["live"])
        page = self.lam.list_aliases(FunctionName=name, MaxItems=2)
        self.assertEqual(len(page["Aliases"]), 2)
        rest = self.lam.list_aliases(FunctionName=name, Marker=page["NextMarker"])
        self.assertEqual([a["Name"] for a in page["Aliases"] + rest["Aliases"]], ["canary", "dev", "live"])
        self.assertNotIn("NextMarker", rest)

        self.lam.delete_alias(FunctionName=name, Name="dev")
        e = self.assertAwsError(lambda: self.lam.get_alias(FunctionName=name, Name="dev"), 404, "ResourceNotFoundException")
        self.assertIn(h.function_arn(name, "dev"), e.response["Error"]["Message"])
        self.assertAwsError(lambda: self.lam.invoke(FunctionName=name, Qualifier="dev", Payload=b"{}"),
                            404, "ResourceNotFoundException")

    def test_alias_conflict_and_unknown_function(self):
        name = self.two_versions()
        self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        e = self.assertAwsError(lambda: self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion="2"),
                                409, "ResourceConflictException")
        self.assertIn(h.function_arn(name, "live"), e.response["Error"]["Message"])
        other = self.fn_name("missing")
        for call in (lambda: self.lam.create_alias(FunctionName=other, Name="a", FunctionVersion="1"),
                     lambda: self.lam.get_alias(FunctionName=other, Name="a"),
                     lambda: self.lam.list_aliases(FunctionName=other)):
            self.assertAwsError(call, 404, "ResourceNotFoundException")

    def test_alias_by_arn_and_get_function_through_alias(self):
        name = self.two_versions()
        self.lam.create_alias(FunctionName=h.function_arn(name), Name="live", FunctionVersion="1")
        cfg = self.lam.get_function_configuration(FunctionName=name, Qualifier="live")
        self.assertEqual((cfg["Version"], cfg["FunctionArn"]), ("1", h.function_arn(name, "live")))
        got = self.lam.get_function(FunctionName=f"{name}:live")
        self.assertEqual(got["Configuration"]["CodeSha256"], h.b64_sha256(py_probe_zip("one")))
        for ident, kw in ((f"{name}:live", {}), (h.function_arn(name, "live"), {}), (name, {"Qualifier": "live"}),
                          (f"{h.ACCOUNT}:function:{name}:live", {})):
            with self.subTest(ident=ident, **kw):
                resp, out = self.invoke_ok(ident, {}, **kw)
                self.assertEqual((resp["ExecutedVersion"], out["version"]), ("1", "one"))
                self.assertEqual(out["context"]["invoked_function_arn"], h.function_arn(name, "live"))
                self.assertEqual(out["context"]["function_version"], "1")

    def test_alias_to_latest_follows_updates(self):
        name = self.fn_name()
        self.create_function(py_probe_zip("a"), name=name)
        self.lam.create_alias(FunctionName=name, Name="dev", FunctionVersion="$LATEST")
        resp, out = self.invoke_ok(name, {}, Qualifier="dev")
        self.assertEqual((resp["ExecutedVersion"], out["version"]), ("$LATEST", "a"))
        self.lam.update_function_code(FunctionName=name, ZipFile=py_probe_zip("b"))
        self.wait_updated(name)
        self.assertEqual(self.invoke_ok(name, {}, Qualifier="dev")[1]["version"], "b")

    def test_update_alias_moves_traffic_at_once(self):
        name = self.two_versions()
        self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        self.assertEqual(self.invoke_ok(name, {}, Qualifier="live")[1]["version"], "one")
        self.lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2")
        self.assertEqual(self.invoke_ok(name, {}, Qualifier="live")[1]["version"], "two")


class AliasValidationTests(_AliasBase):

    def test_names_lambda_refuses(self):
        name = self.two_versions()
        for alias in ("123", "$LATEST", "has space", "a" * 129):
            with self.subTest(alias=alias):
                r = self.raw_alias("POST", name, body={"Name": alias, "FunctionVersion": "1"})
                self.assertRawError(r, 400, VALIDATION)
        self.assertEqual(self.lam.list_aliases(FunctionName=name)["Aliases"], [])

    def test_versions_lambda_refuses(self):
        name = self.two_versions()
        e = self.assertAwsError(lambda: self.lam.create_alias(FunctionName=name, Name="a", FunctionVersion="7"),
                                404, "ResourceNotFoundException")
        self.assertIn(h.function_arn(name, "7"), e.response["Error"]["Message"])
        r = self.raw_alias("POST", name, body={"Name": "a", "FunctionVersion": "live"})
        self.assertRawError(r, 400, VALIDATION)
        r = self.raw_alias("POST", name, body={"Name": "a"})
        self.assertRawError(r, 400, VALIDATION)

    def test_routing_rules(self):
        name = self.two_versions()
        cases = {
            "two additional versions": ({"Name": "a", "FunctionVersion": "1",
                                         "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.1, "3": 0.1}}}, 400),
            "weight above 1": ({"Name": "a", "FunctionVersion": "1",
                                "RoutingConfig": {"AdditionalVersionWeights": {"2": 1.5}}}, 400),
            "negative weight": ({"Name": "a", "FunctionVersion": "1",
                                 "RoutingConfig": {"AdditionalVersionWeights": {"2": -0.5}}}, 400),
            "same version twice": ({"Name": "a", "FunctionVersion": "1",
                                    "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.5}}}, 400),
            "$LATEST with routing": ({"Name": "a", "FunctionVersion": "$LATEST",
                                      "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.5}}}, 400),
            "$LATEST as additional": ({"Name": "a", "FunctionVersion": "1",
                                       "RoutingConfig": {"AdditionalVersionWeights": {"$LATEST": 0.5}}}, 400),
            "missing additional": ({"Name": "a", "FunctionVersion": "1",
                                    "RoutingConfig": {"AdditionalVersionWeights": {"9": 0.5}}}, 404),
            "weight not a number": ({"Name": "a", "FunctionVersion": "1",
                                     "RoutingConfig": {"AdditionalVersionWeights": {"2": "half"}}}, 400),
        }
        for label, (body, status) in cases.items():
            with self.subTest(case=label):
                self.assertRawError(self.raw_alias("POST", name, body=body), status)
        self.assertEqual(self.lam.list_aliases(FunctionName=name)["Aliases"], [])
        e = self.assertAwsError(lambda: self.lam.create_alias(
            FunctionName=name, Name="a", FunctionVersion="$LATEST", RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}}),
            400, "InvalidParameterValueException")
        self.assertIn("$LATEST is not supported for an alias pointing to more than 1 version", e.response["Error"]["Message"])

    def test_update_checks_routing_against_the_new_version(self):
        name = self.two_versions()
        self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1",
                              RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
        # Moving the primary onto the additional version, or to $LATEST, breaks the kept routing.
        self.assertAwsError(lambda: self.lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2"),
                            400, "InvalidParameterValueException")
        self.assertAwsError(lambda: self.lam.update_alias(FunctionName=name, Name="live", FunctionVersion="$LATEST"),
                            400, "InvalidParameterValueException")
        # Clearing the routing in the same call is fine.
        out = self.lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2",
                                    RoutingConfig={"AdditionalVersionWeights": {}})
        self.assertEqual(out["FunctionVersion"], "2")
        self.assertNotIn("RoutingConfig", out)
        self.assertAwsError(lambda: self.lam.update_alias(FunctionName=name, Name="nope", FunctionVersion="1"),
                            404, "ResourceNotFoundException")

    def test_versions_referenced_by_aliases_cannot_be_deleted(self):
        name = self.two_versions()
        self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1",
                              RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})
        self.lam.create_alias(FunctionName=name, Name="stable", FunctionVersion="1")
        e = self.assertAwsError(lambda: self.lam.delete_function(FunctionName=name, Qualifier="1"),
                                409, "ResourceConflictException")
        self.assertEqual(e.response["Error"]["Message"],
                         "Unable to delete version because the following aliases reference it: [live, stable]")
        e = self.assertAwsError(lambda: self.lam.delete_function(FunctionName=name, Qualifier="2"),
                                409, "ResourceConflictException")
        self.assertIn("[live]", e.response["Error"]["Message"])
        self.assertAwsError(lambda: self.lam.delete_function(FunctionName=name, Qualifier="live"),
                            400, "InvalidParameterValueException")
        self.lam.delete_alias(FunctionName=name, Name="live")
        self.lam.delete_function(FunctionName=name, Qualifier="2")
        versions = [v["Version"] for v in self.lam.list_versions_by_function(FunctionName=name)["Versions"]]
        self.assertEqual(versions, ["$LATEST", "1"])


class WeightedRoutingTests(_AliasBase):

    def test_thirty_percent_goes_to_the_additional_version(self):
        name = self.two_versions()
        self.lam.create_alias(FunctionName=name, Name="canary", FunctionVersion="1",
                              RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}})
        counts = collections.Counter()
        for i in range(200):
            resp, out = self.invoke_ok(name, {"i": i}, Qualifier="canary")
            executed = resp["ExecutedVersion"]
            counts[executed] += 1
            # The header names the version that ran, and the alias is what the function was invoked as.
            self.assertEqual(out["version"], {"1": "one", "2": "two"}[executed])
            self.assertEqual(out["context"]["function_version"], executed)
            self.assertEqual(out["context"]["invoked_function_arn"], h.function_arn(name, "canary"))
        self.assertEqual(set(counts), {"1", "2"}, counts)
        # Binomial(200, 0.3): mean 60, sd 6.5. 30..90 is about 4.6 sd either side (false failure ~ 4e-6).
        self.assertGreaterEqual(counts["2"], 30, counts)
        self.assertLessEqual(counts["2"], 90, counts)

    def test_weight_zero_and_one(self):
        name = self.two_versions()
        self.lam.create_alias(FunctionName=name, Name="never", FunctionVersion="1",
                              RoutingConfig={"AdditionalVersionWeights": {"2": 0.0}})
        self.lam.create_alias(FunctionName=name, Name="always", FunctionVersion="1",
                              RoutingConfig={"AdditionalVersionWeights": {"2": 1.0}})
        for _ in range(20):
            self.assertEqual(self.invoke_ok(name, {}, Qualifier="never")[0]["ExecutedVersion"], "1")
            self.assertEqual(self.invoke_ok(name, {}, Qualifier="always")[0]["ExecutedVersion"], "2")

    def test_raw_header_reports_the_executed_version(self):
        name = self.two_versions()
        self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion="2")
        r = self.server.raw("POST", f"{FUNCTIONS}/{h.quote_path_segment(name + ':live')}/invocations", body=b"{}")
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.headers.get("X-Amz-Executed-Version"), "2")


class _CliBase(h.CliTestCase):

    def test_cli_alias_lifecycle_with_routing(self):
        name = self.fn_name()
        self.create_function(py_probe_zip("one"), name=name)
        self.aws("lambda", "publish-version", "--function-name", name)
        self.lam.update_function_configuration(FunctionName=name, Timeout=5)
        self.wait_updated(name)
        self.aws("lambda", "publish-version", "--function-name", name)
        out = self.aws("lambda", "create-alias", "--function-name", name, "--name", "live",
                       "--function-version", "1", "--routing-config", "AdditionalVersionWeights={2=0.5}").json
        self.assertEqual(out["RoutingConfig"], {"AdditionalVersionWeights": {"2": 0.5}})
        out = self.aws("lambda", "update-alias", "--function-name", name, "--name", "live",
                       "--function-version", "2", "--routing-config", "AdditionalVersionWeights={}").json
        self.assertEqual(out["FunctionVersion"], "2")
        got = self.aws("lambda", "get-alias", "--function-name", name, "--name", "live").json
        self.assertEqual(got["AliasArn"], h.function_arn(name, "live"))
        listed = self.aws("lambda", "list-aliases", "--function-name", name).json
        self.assertEqual([a["Name"] for a in listed["Aliases"]], ["live"])
        outfile = self.tmp / f"{name}.json"
        meta = self.aws("lambda", "invoke", "--function-name", f"{name}:live", str(outfile)).json
        self.assertEqual(meta["ExecutedVersion"], "2")
        self.assertEqual(json.loads(outfile.read_text())["context"]["invoked_function_arn"], h.function_arn(name, "live"))
        r = self.aws("lambda", "delete-function", "--function-name", name, "--qualifier", "2", ok=False)
        self.assertNotEqual(r.rc, 0)
        self.assertIn("ResourceConflictException", r.stderr)
        self.aws("lambda", "delete-alias", "--function-name", name, "--name", "live")
        self.assertEqual(self.aws("lambda", "list-aliases", "--function-name", name).json["Aliases"], [])


class CliV1Tests(_CliBase):
    CLI = os.environ.get("LAMINA_AWS_CLI", "aws")


class CliV2DebianTests(_CliBase):
    CLI = "/usr/bin/aws" if os.path.exists("/usr/bin/aws") else None


del _CliBase

if __name__ == "__main__":
    unittest.main()
