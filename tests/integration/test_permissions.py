"""Resource-based policies (issue #9): AddPermission, GetPolicy and RemovePermission with boto3 and the AWS CLI v1 —
the statement and policy documents as JSON strings in IAM's shape, per qualifier, RevisionId preconditions, Lambda's
errors, and a policy going with its alias or function. Who a policy lets in (another account's key) is tested in
test_auth.py, where keys exist."""
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


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


class PermissionsTests(h.LaminaTestCase):

    def _function(self) -> str:
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        return name

    def _policy(self, name: str, **kwargs) -> tuple[dict, str]:
        got = self.lam.get_policy(FunctionName=name, **kwargs)
        self.assertIsInstance(got["Policy"], str)  # a JSON string, not an object
        return json.loads(got["Policy"]), got["RevisionId"]

    def test_add_get_remove_round_trip_in_iam_shape(self):
        name = self._function()
        added = self.lam.add_permission(FunctionName=name, StatementId="from-s3", Action="lambda:InvokeFunction",
                                        Principal="s3.amazonaws.com", SourceArn="arn:aws:s3:::my-bucket",
                                        SourceAccount="123456789012")
        self.assertEqual(added["ResponseMetadata"]["HTTPStatusCode"], 201)
        statement = json.loads(added["Statement"])
        self.assertEqual(statement, {
            "Sid": "from-s3", "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"},
            "Action": "lambda:InvokeFunction", "Resource": h.function_arn(name),
            "Condition": {"StringEquals": {"AWS:SourceAccount": "123456789012"},
                          "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::my-bucket"}},
        })
        self.lam.add_permission(FunctionName=name, StatementId="other-account", Action="lambda:*", Principal="111111111111")
        self.lam.add_permission(FunctionName=name, StatementId="anyone", Action="lambda:InvokeFunctionUrl", Principal="*",
                                FunctionUrlAuthType="NONE")

        policy, revision = self._policy(name)
        self.assertEqual((policy["Version"], policy["Id"]), ("2012-10-17", "default"))
        self.assertEqual([s["Sid"] for s in policy["Statement"]], ["from-s3", "other-account", "anyone"])
        self.assertEqual(policy["Statement"][0], statement)
        self.assertEqual(policy["Statement"][1]["Principal"], {"AWS": "arn:aws:iam::111111111111:root"})
        self.assertEqual(policy["Statement"][2]["Principal"], "*")
        self.assertEqual(policy["Statement"][2]["Condition"], {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}})

        removed = self.lam.remove_permission(FunctionName=name, StatementId="other-account", RevisionId=revision)
        self.assertEqual(removed["ResponseMetadata"]["HTTPStatusCode"], 204)
        policy, after = self._policy(name)
        self.assertNotEqual(after, revision)
        self.assertEqual([s["Sid"] for s in policy["Statement"]], ["from-s3", "anyone"])

        # Removing the last statement removes the policy.
        self.lam.remove_permission(FunctionName=name, StatementId="from-s3")
        self.lam.remove_permission(FunctionName=name, StatementId="anyone")
        self.assertAwsError(lambda: self.lam.get_policy(FunctionName=name), 404, "ResourceNotFoundException",
                            "The resource you requested does not exist.")

    def test_stale_revision_id_is_412_and_changes_nothing(self):
        name = self._function()
        self.lam.add_permission(FunctionName=name, StatementId="a", Action="lambda:InvokeFunction", Principal="111111111111")
        _, first = self._policy(name)
        self.lam.add_permission(FunctionName=name, StatementId="b", Action="lambda:InvokeFunction", Principal="222222222222",
                                RevisionId=first)
        policy, second = self._policy(name)
        self.assertNotEqual(first, second)

        self.assertAwsError(lambda: self.lam.add_permission(FunctionName=name, StatementId="c", Action="lambda:InvokeFunction",
                                                            Principal="333333333333", RevisionId=first),
                            412, "PreconditionFailedException", "does not match the latest Revision Id")
        self.assertAwsError(lambda: self.lam.remove_permission(FunctionName=name, StatementId="a", RevisionId=first),
                            412, "PreconditionFailedException")
        unchanged, revision = self._policy(name)
        self.assertEqual((unchanged, revision), (policy, second))

    def test_errors_are_lambdas(self):
        name = self._function()
        self.lam.add_permission(FunctionName=name, StatementId="dup", Action="lambda:InvokeFunction", Principal="111111111111")
        self.assertAwsError(lambda: self.lam.add_permission(FunctionName=name, StatementId="dup", Action="lambda:InvokeFunction",
                                                            Principal="111111111111"),
                            409, "ResourceConflictException", "The statement id (dup) provided already exists")
        self.assertAwsError(lambda: self.lam.add_permission(FunctionName=name, StatementId="x", Action="lambda:InvokeFunction",
                                                            Principal="111111111111", Qualifier="$LATEST"),
                            400, "InvalidParameterValueException", "We currently do not support adding policies for $LATEST.")
        self.assertAwsError(lambda: self.lam.add_permission(FunctionName=name, StatementId="x", Action="lambda:InvokeFunction",
                                                            Principal="111111111111", Qualifier="nope"),
                            404, "ResourceNotFoundException", "Cannot find alias arn")
        self.assertAwsError(lambda: self.lam.add_permission(FunctionName=name, StatementId="x", Action="lambda:InvokeFunction",
                                                            Principal="111111111111", Qualifier="7"),
                            404, "ResourceNotFoundException", "Function not found")
        self.assertAwsError(lambda: self.lam.add_permission(FunctionName=name + "-missing", StatementId="x",
                                                            Action="lambda:InvokeFunction", Principal="111111111111"),
                            404, "ResourceNotFoundException", "Function not found")
        self.assertAwsError(lambda: self.lam.remove_permission(FunctionName=name, StatementId="never"), 404,
                            "ResourceNotFoundException", "Statement never is not found in resource policy.")
        # The model's constraints, checked by Lamina (raw: botocore would refuse to send some of these).
        for body, member in (({"StatementId": "bad id", "Action": "lambda:InvokeFunction", "Principal": "*"}, "statementId"),
                             ({"StatementId": "x", "Action": "s3:GetObject", "Principal": "*"}, "action"),
                             ({"StatementId": "x", "Action": "lambda:InvokeFunction", "Principal": "has space"}, "principal"),
                             ({"StatementId": "x", "Action": "lambda:InvokeFunction", "Principal": "*", "SourceAccount": "12"}, "sourceAccount"),
                             ({"StatementId": "x", "Action": "lambda:InvokeFunction", "Principal": "*",
                               "FunctionUrlAuthType": "MAYBE"}, "functionUrlAuthType"),
                             ({"Action": "lambda:InvokeFunction", "Principal": "*"}, "statementId")):
            resp = self.server.raw("POST", f"/2015-03-31/functions/{name}/policy", body)
            self.assertRawError(resp, 400, "ValidationException")
            self.assertIn(f"at '{member}'", json.loads(resp.text)["message"])
        policy, _ = self._policy(name)
        self.assertEqual([s["Sid"] for s in policy["Statement"]], ["dup"])  # nothing half-written

    def test_policy_too_large_is_refused(self):
        name = self._function()
        long_arn = "arn:aws:s3:::" + "b" * 900
        for i in range(15):
            self.lam.add_permission(FunctionName=name, StatementId=f"s{i}", Action="lambda:InvokeFunction",
                                    Principal="s3.amazonaws.com", SourceArn=long_arn)
        error = self.assertAwsError(lambda: [self.lam.add_permission(FunctionName=name, StatementId=f"t{i}", Action="lambda:InvokeFunction",
                                                                     Principal="s3.amazonaws.com", SourceArn=long_arn)
                                             for i in range(10)],
                                    400, "PolicyLengthExceededException", "bigger than the limit (20480)")
        self.assertIsNotNone(error)
        policy, _ = self._policy(name)
        self.assertLessEqual(len(json.dumps(policy, separators=(",", ":"))), 20480)

    def test_each_qualifier_has_its_own_policy_which_goes_with_its_alias(self):
        name = self._function()
        self.lam.publish_version(FunctionName=name)
        self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        self.lam.add_permission(FunctionName=name, StatementId="on-alias", Action="lambda:InvokeFunction",
                                Principal="111111111111", Qualifier="live")
        self.lam.add_permission(FunctionName=name, StatementId="on-version", Action="lambda:InvokeFunction",
                                Principal="111111111111", Qualifier="1")
        alias_policy, _ = self._policy(name, Qualifier="live")
        self.assertEqual(alias_policy["Statement"][0]["Resource"], h.function_arn(name, "live"))
        # The qualified ARN names the same policy.
        by_arn = json.loads(self.lam.get_policy(FunctionName=h.function_arn(name, "live"))["Policy"])
        self.assertEqual(by_arn, alias_policy)
        version_policy, _ = self._policy(name, Qualifier="1")
        self.assertEqual([s["Sid"] for s in version_policy["Statement"]], ["on-version"])
        self.assertAwsError(lambda: self.lam.get_policy(FunctionName=name), 404, "ResourceNotFoundException")

        self.lam.delete_alias(FunctionName=name, Name="live")
        self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        self.assertAwsError(lambda: self.lam.get_policy(FunctionName=name, Qualifier="live"), 404, "ResourceNotFoundException")

    def test_aws_cli_add_get_remove(self):
        name = self._function()
        added = self.server.aws_cli("lambda", "add-permission", "--function-name", name, "--statement-id", "cli",
                                    "--action", "lambda:InvokeFunction", "--principal", "events.amazonaws.com",
                                    "--source-arn", "arn:aws:events:us-east-1:000000000000:rule/r")
        self.assertEqual(added.rc, 0, added)
        self.assertEqual(json.loads(added.json["Statement"])["Principal"], {"Service": "events.amazonaws.com"})
        got = self.server.aws_cli("lambda", "get-policy", "--function-name", name)
        self.assertEqual(got.rc, 0, got)
        self.assertEqual(json.loads(got.json["Policy"])["Statement"][0]["Sid"], "cli")
        removed = self.server.aws_cli("lambda", "remove-permission", "--function-name", name, "--statement-id", "cli")
        self.assertEqual(removed.rc, 0, removed)
        missing = self.server.aws_cli("lambda", "get-policy", "--function-name", name)
        self.assertNotEqual(missing.rc, 0)
        self.assertIn("ResourceNotFoundException", missing.stderr)



class PolicyDurabilityTests(unittest.TestCase):

    def test_policies_survive_a_restart(self):
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            self.skipTest("needs a server of its own")
        data_dir = Path(tempfile.mkdtemp(prefix="lamina-it-policy-"))
        self.addCleanup(shutil.rmtree, data_dir, True)
        first = h.LaminaServer("policy-1", data_dir=data_dir).start()
        try:
            lam = h.boto3_client(first.url, "lambda")
            lam.create_function(FunctionName="kept", Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                                Code={"ZipFile": py_probe_zip()})
            lam.add_permission(FunctionName="kept", StatementId="kept", Action="lambda:InvokeFunction", Principal="111111111111")
            before = lam.get_policy(FunctionName="kept")
        finally:
            first.stop()
        second = h.LaminaServer("policy-2", data_dir=data_dir).start()
        try:
            after = h.boto3_client(second.url, "lambda").get_policy(FunctionName="kept")
            self.assertEqual((after["Policy"], after["RevisionId"]), (before["Policy"], before["RevisionId"]))
        finally:
            second.stop()
