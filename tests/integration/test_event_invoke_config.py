"""Asynchronous invocation settings (issue #6) through boto3, raw signed HTTP and the AWS CLI:
Put/Update/Get/Delete/ListFunctionEventInvokeConfigs on $LATEST, a version and an alias, Put replacing and Update
merging, LastModified as an epoch number, Lambda's errors, and the settings going with their version, alias or
function."""
from __future__ import annotations

import datetime

import lamina_harness as h
from lamina_functions import py_probe_zip

MODULE = __name__


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


def _path(name: str) -> str:
    return f"/2019-09-25/functions/{h.quote_path_segment(name)}/event-invoke-config"


class EventInvokeConfigTests(h.LaminaTestCase):

    def _function(self, suffix: str = "", publish: bool = True, alias: str | None = "live") -> str:
        """A function; with version 1 published and, when `alias`, an alias to it."""
        name = self.fn_name(suffix)
        self.create_function(py_probe_zip(), name=name)
        if publish:
            self.lam.publish_version(FunctionName=name)
            if alias:
                self.lam.create_alias(FunctionName=name, Name=alias, FunctionVersion="1")
        return name

    def test_put_get_update_delete_on_latest(self):
        name = self._function(publish=False)
        put = self.lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1,
                                                       MaximumEventAgeInSeconds=3600)
        self.assertEqual(put["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertEqual(put["FunctionArn"], h.function_arn(name, "$LATEST"))
        self.assertEqual((put["MaximumRetryAttempts"], put["MaximumEventAgeInSeconds"]), (1, 3600))
        self.assertIsInstance(put["LastModified"], datetime.datetime)
        age = datetime.datetime.now(datetime.timezone.utc) - put["LastModified"]
        self.assertLess(abs(age.total_seconds()), 60, put["LastModified"])
        self.assertEqual(put["DestinationConfig"], {"OnSuccess": {}, "OnFailure": {}})

        # Unqualified and $LATEST name the same settings.
        got = self.lam.get_function_event_invoke_config(FunctionName=name, Qualifier="$LATEST")
        self.assertEqual((got["MaximumRetryAttempts"], got["MaximumEventAgeInSeconds"]), (1, 3600))

        # Update merges; Put replaces (what it leaves out is cleared).
        updated = self.lam.update_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
        self.assertEqual((updated["MaximumRetryAttempts"], updated["MaximumEventAgeInSeconds"]), (0, 3600))
        self.assertGreaterEqual(updated["LastModified"], put["LastModified"])
        replaced = self.lam.put_function_event_invoke_config(FunctionName=name, MaximumEventAgeInSeconds=60)
        self.assertEqual(replaced["MaximumEventAgeInSeconds"], 60)
        self.assertNotIn("MaximumRetryAttempts", replaced)
        self.assertNotIn("MaximumRetryAttempts", self.lam.get_function_event_invoke_config(FunctionName=name))

        deleted = self.lam.delete_function_event_invoke_config(FunctionName=name)
        self.assertEqual(deleted["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertAwsError(lambda: self.lam.get_function_event_invoke_config(FunctionName=name), 404,
                            "ResourceNotFoundException",
                            f"The function {h.function_arn(name, '$LATEST')} doesn't have an EventInvokeConfig")
        self.assertAwsError(lambda: self.lam.delete_function_event_invoke_config(FunctionName=name), 404,
                            "ResourceNotFoundException", "doesn't have an EventInvokeConfig")
        self.assertAwsError(lambda: self.lam.update_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1),
                            404, "ResourceNotFoundException", "doesn't have an EventInvokeConfig")

    def test_last_modified_is_an_epoch_number_on_the_wire(self):
        name = self._function(publish=False)
        resp = self.server.raw("PUT", _path(name), {"MaximumRetryAttempts": 2})
        self.assertEqual(resp.status, 200, repr(resp))
        self.assertIsInstance(resp.json["LastModified"], (int, float), repr(resp))
        self.assertRegex(resp.body.decode(), r'"LastModified":\d{10}(\.\d{1,3})?,')
        self.assertEqual(resp.json["DestinationConfig"], {"OnSuccess": {}, "OnFailure": {}})
        listed = self.server.raw("GET", _path(name) + "/list")
        self.assertEqual(listed.status, 200, repr(listed))
        self.assertEqual(listed.json["FunctionEventInvokeConfigs"][0]["LastModified"], resp.json["LastModified"])

    def test_version_and_alias_have_their_own_and_lose_them_when_deleted(self):
        name = self._function()
        target = self._function("target", publish=False)
        self.lam.put_function_event_invoke_config(FunctionName=name, Qualifier="1", MaximumRetryAttempts=0)
        alias_arn = h.function_arn(name, "live")
        put = self.lam.put_function_event_invoke_config(
            FunctionName=alias_arn, MaximumRetryAttempts=2,
            DestinationConfig={"OnFailure": {"Destination": h.function_arn(target)}})
        self.assertEqual(put["FunctionArn"], alias_arn)
        self.assertEqual(put["DestinationConfig"], {"OnSuccess": {}, "OnFailure": {"Destination": h.function_arn(target)}})

        self.assertEqual(self.lam.get_function_event_invoke_config(FunctionName=f"{name}:1")["MaximumRetryAttempts"], 0)
        self.assertEqual(self.lam.get_function_event_invoke_config(FunctionName=name, Qualifier="live")["MaximumRetryAttempts"], 2)
        # The alias's settings are its own: $LATEST has none.
        self.assertAwsError(lambda: self.lam.get_function_event_invoke_config(FunctionName=name), 404, "ResourceNotFoundException")

        # Update keeps the other destination side.
        merged = self.lam.update_function_event_invoke_config(
            FunctionName=name, Qualifier="live",
            DestinationConfig={"OnSuccess": {"Destination": h.function_arn(target, "$LATEST")}})
        self.assertEqual(merged["DestinationConfig"], {"OnSuccess": {"Destination": h.function_arn(target, "$LATEST")},
                                                       "OnFailure": {"Destination": h.function_arn(target)}})
        self.assertEqual(merged["MaximumRetryAttempts"], 2)

        arns = [c["FunctionArn"] for c in self.lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"]]
        self.assertEqual(arns, [h.function_arn(name, "1"), alias_arn])

        self.lam.delete_alias(FunctionName=name, Name="live")
        self.lam.delete_function(FunctionName=name, Qualifier="1")
        self.assertEqual(self.lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"], [])
        # An alias created again under the same name starts without settings.
        self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion="$LATEST")
        self.assertAwsError(lambda: self.lam.get_function_event_invoke_config(FunctionName=name, Qualifier="live"),
                            404, "ResourceNotFoundException")

    def test_list_pages(self):
        name = self._function()
        for qualifier in ("$LATEST", "1", "live"):
            self.lam.put_function_event_invoke_config(FunctionName=name, Qualifier=qualifier, MaximumRetryAttempts=1)
        first = self.lam.list_function_event_invoke_configs(FunctionName=name, MaxItems=2)
        self.assertEqual(len(first["FunctionEventInvokeConfigs"]), 2)
        rest = self.lam.list_function_event_invoke_configs(FunctionName=name, MaxItems=2, Marker=first["NextMarker"])
        self.assertNotIn("NextMarker", rest)
        arns = [c["FunctionArn"] for c in first["FunctionEventInvokeConfigs"] + rest["FunctionEventInvokeConfigs"]]
        self.assertEqual(sorted(arns), sorted(h.function_arn(name, q) for q in ("$LATEST", "1", "live")))
        paginated = self.lam.get_paginator("list_function_event_invoke_configs").paginate(
            FunctionName=name, PaginationConfig={"PageSize": 1})
        self.assertEqual(sum(len(p["FunctionEventInvokeConfigs"]) for p in paginated), 3)

    def test_errors(self):
        name = self._function()
        missing = self.fn_name("missing")
        self.assertAwsError(lambda: self.lam.put_function_event_invoke_config(FunctionName=missing, MaximumRetryAttempts=1),
                            404, "ResourceNotFoundException")
        self.assertAwsError(lambda: self.lam.put_function_event_invoke_config(FunctionName=name, Qualifier="gone",
                                                                              MaximumRetryAttempts=1),
                            404, "ResourceNotFoundException")
        self.assertAwsError(lambda: self.lam.put_function_event_invoke_config(FunctionName=name, Qualifier="9",
                                                                              MaximumRetryAttempts=1),
                            404, "ResourceNotFoundException")
        self.assertAwsError(lambda: self.lam.put_function_event_invoke_config(FunctionName=f"{name}:1", Qualifier="live",
                                                                              MaximumRetryAttempts=1),
                            400, "InvalidParameterValueException", "does not match the specified qualifier")
        self.assertAwsError(lambda: self.lam.put_function_event_invoke_config(FunctionName=name),
                            400, "InvalidParameterValueException", "at least one of error handling or destination setting")
        self.assertAwsError(lambda: self.lam.list_function_event_invoke_configs(FunctionName=missing),
                            404, "ResourceNotFoundException")
        self.assertAwsError(lambda: self.lam.get_function_event_invoke_config(FunctionName=missing),
                            404, "ResourceNotFoundException", "doesn't have an EventInvokeConfig")

        # Out of the model's ranges (boto3 would refuse them before sending).
        resp = self.server.raw("PUT", _path(name), {"MaximumRetryAttempts": 3})
        self.assertRawError(resp, 400, "ValidationException")
        self.assertIn("Value '3' at 'maximumRetryAttempts' failed to satisfy constraint: "
                      "Member must have value less than or equal to 2", resp.json["message"])
        resp = self.server.raw("POST", _path(name), {"MaximumEventAgeInSeconds": 59})
        self.assertRawError(resp, 400, "ValidationException")
        self.assertIn("Member must have value greater than or equal to 60", resp.json["message"])
        self.assertRawError(self.server.raw("PUT", _path(name), {"MaximumEventAgeInSeconds": 21601}), 400, "ValidationException")
        self.assertRawError(self.server.raw("PUT", _path(name), "{not json"), 400, "InvalidRequestContentException")
        self.assertRawError(self.server.raw("GET", _path(name) + "/list", query={"MaxItems": "51"}), 400)

        # Destinations: Lambda functions (other than itself), existing standard queues and existing topics.
        def put_failure(destination: str):
            return lambda: self.lam.put_function_event_invoke_config(
                FunctionName=name, DestinationConfig={"OnFailure": {"Destination": destination}})
        self.assertAwsError(put_failure(h.function_arn(name)), 400, "InvalidParameterValueException",
                            "You can't specify the function as a destination for itself.")
        self.assertAwsError(put_failure(h.function_arn(missing)), 400, "InvalidParameterValueException",
                            f"The destination ARN {h.function_arn(missing)} is invalid.")
        self.assertAwsError(put_failure(f"arn:aws:sqs:{h.REGION}:{h.ACCOUNT}:no-such-queue"), 400,
                            "InvalidParameterValueException", "is invalid")
        self.assertAwsError(put_failure(f"arn:aws:sns:{h.REGION}:{h.ACCOUNT}:no-such-topic"), 400,
                            "InvalidParameterValueException", "is invalid")
        self.assertAwsError(put_failure(f"arn:aws:iam::{h.ACCOUNT}:role/r"), 400,
                            "InvalidParameterValueException", "is invalid")
        resp = self.server.raw("PUT", _path(name), {"DestinationConfig": {"OnFailure": {"Destination": "not-an-arn"}}})
        self.assertRawError(resp, 400, "ValidationException")
        self.assertIn("at 'destinationConfig.onFailure.destination'", resp.json["message"])
        # Nothing of the refused requests was stored.
        self.assertEqual(self.lam.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"], [])

    def test_cli_v1_round_trip(self):
        name = self._function()
        target = self._function("target", publish=False)
        r = self.server.aws_cli("lambda", "put-function-event-invoke-config", "--function-name", name,
                                "--qualifier", "live", "--maximum-retry-attempts", "1",
                                "--destination-config", f'{{"OnFailure":{{"Destination":"{h.function_arn(target)}"}}}}')
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.json["FunctionArn"], h.function_arn(name, "live"))
        self.assertEqual(r.json["DestinationConfig"]["OnFailure"]["Destination"], h.function_arn(target))
        r = self.server.aws_cli("lambda", "update-function-event-invoke-config", "--function-name", name,
                                "--qualifier", "live", "--maximum-event-age-in-seconds", "7200")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual((r.json["MaximumRetryAttempts"], r.json["MaximumEventAgeInSeconds"]), (1, 7200))
        r = self.server.aws_cli("lambda", "get-function-event-invoke-config", "--function-name", name, "--qualifier", "live")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.json["MaximumEventAgeInSeconds"], 7200)
        self.assertIn("LastModified", r.json)
        r = self.server.aws_cli("lambda", "list-function-event-invoke-configs", "--function-name", name)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual([c["FunctionArn"] for c in r.json["FunctionEventInvokeConfigs"]], [h.function_arn(name, "live")])
        r = self.server.aws_cli("lambda", "delete-function-event-invoke-config", "--function-name", name, "--qualifier", "live")
        self.assertEqual(r.rc, 0, r)
        r = self.server.aws_cli("lambda", "get-function-event-invoke-config", "--function-name", name, "--qualifier", "live")
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("ResourceNotFoundException", r.stderr)


if __name__ == "__main__":
    import unittest
    unittest.main()
