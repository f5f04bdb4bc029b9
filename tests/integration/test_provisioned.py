"""Provisioned concurrency (issue #5) through boto3 and the AWS CLI: Put/Get/Delete/ListProvisionedConcurrencyConfigs
on versions and aliases, environments initialised ahead of traffic (IN_PROGRESS -> READY, or FAILED with a reason),
used first and warm (no Init Duration in REPORT), replaced when they die, and on-demand scale-out beyond them."""
from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor

import lamina_harness as h
from test_concurrency import _sent

MODULE = __name__

# Reports how its environment was initialised and which process it is; "crash" ends the process mid-invoke.
PROVISIONED_PY = '''
import os, time, uuid
PROCESS = uuid.uuid4().hex
INIT_TYPE = os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")

def handler(event, context):
    if event.get("crash"):
        os._exit(3)
    time.sleep(float(event.get("sleep", 0)))
    return {"process": PROCESS, "init": INIT_TYPE, "version": context.function_version}
'''

FAILING_INIT_PY = '''
raise RuntimeError("init fails on purpose")

def handler(event, context):
    return "never"
'''


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


class ProvisionedConcurrencyTests(h.LaminaTestCase):

    def _published(self, code: str = PROVISIONED_PY, **kwargs) -> str:
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": code}), name=name, Timeout=30, **kwargs)
        self.lam.publish_version(FunctionName=name)
        return name

    def _wait_status(self, name: str, qualifier: str, wanted: str, timeout: float = 60) -> dict:
        """Polls GetProvisionedConcurrencyConfig until Status is `wanted` (initialisation runs in the background)."""
        deadline = time.monotonic() + timeout
        while True:
            config = self.lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier)
            if config["Status"] == wanted:
                return config
            if time.monotonic() > deadline:
                self.fail(f"provisioned concurrency of {name}:{qualifier} not {wanted} within {timeout} s: {config}")
            time.sleep(0.1)

    def _environments(self, name: str) -> list[dict]:
        resp = self.server.raw("GET", "/lamina/v1/environments")
        self.assertEqual(resp.status, 200, repr(resp))
        return [e for e in resp.json["Environments"] if e["FunctionName"] == name]

    def test_version_put_in_progress_then_ready_and_first_invoke_is_warm(self):
        name = self._published()
        put = self.lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=2)
        self.assertEqual(put["ResponseMetadata"]["HTTPStatusCode"], 202)
        self.assertEqual(put["RequestedProvisionedConcurrentExecutions"], 2)
        self.assertIn(put["Status"], ("IN_PROGRESS", "READY"))
        self.assertRegex(put["LastModified"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000$")

        ready = self._wait_status(name, "1", "READY")
        self.assertEqual(ready["AllocatedProvisionedConcurrentExecutions"], 2)
        self.assertEqual(ready["AvailableProvisionedConcurrentExecutions"], 2)
        self.assertEqual(ready["RequestedProvisionedConcurrentExecutions"], 2)
        environments = self._environments(name)
        self.assertEqual(len(environments), 2, environments)
        for environment in environments:
            self.assertEqual(environment["InitializationType"], "provisioned-concurrency", environment)
            self.assertEqual(environment["ColdStartReason"], "provisioned", environment)
            self.assertEqual(environment["State"], "idle", environment)

        # The first invocation lands on an environment initialised ahead of traffic: no Init Duration in REPORT.
        resp, payload = self.invoke_ok(name, {}, Qualifier="1", LogType="Tail")
        self.assertEqual(payload["init"], "provisioned-concurrency")
        self.assertEqual(payload["version"], "1")
        tail = base64.b64decode(resp["LogResult"]).decode()
        self.assertIn("REPORT RequestId:", tail)
        self.assertNotIn("Init Duration", tail)
        # No environment was started on demand for it.
        self.assertEqual(len(self._environments(name)), 2)

        # $LATEST has no provisioned concurrency: it starts cold, on demand.
        resp, payload = self.invoke_ok(name, {}, LogType="Tail")
        self.assertEqual(payload["init"], "on-demand")
        self.assertIn("Init Duration", base64.b64decode(resp["LogResult"]).decode())

    def test_alias_is_served_by_provisioned_environments_and_beyond_them_on_demand(self):
        name = self._published()
        self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        self.lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=1)
        self._wait_status(name, "live", "READY")
        _, payload = self.invoke_ok(name, {}, Qualifier="live")
        self.assertEqual(payload["init"], "provisioned-concurrency")
        provisioned_process = payload["process"]
        # The version the alias points at uses the same environments.
        _, payload = self.invoke_ok(name, {}, Qualifier="1")
        self.assertEqual(payload["process"], provisioned_process)

        # Two at once: one on the provisioned environment, the other scales out on demand.
        with ThreadPoolExecutor(2) as pool:
            first = _sent(pool, self.server.url, f"{name}:live", {"sleep": 2})
            second = _sent(pool, self.server.url, f"{name}:live", {"sleep": 2})
            results = [first.result(60), second.result(60)]
        self.assertEqual([r["status"] for r in results], [200, 200], results)
        self.assertEqual(sorted(r["payload"]["init"] for r in results), ["on-demand", "provisioned-concurrency"], results)
        reasons = sorted(e["ColdStartReason"] for e in self._environments(name))
        self.assertEqual(reasons, ["provisioned", "scale_out"])

    def test_a_provisioned_environment_that_dies_is_replaced(self):
        name = self._published()
        self.lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1)
        self._wait_status(name, "1", "READY")
        before = [e["Id"] for e in self._environments(name)]
        resp, body, _ = self.invoke(name, {"crash": True}, Qualifier="1")
        self.assertEqual(resp.get("FunctionError"), "Unhandled", body)
        self.assertIn(b"Runtime.ExitError", body)

        deadline = time.monotonic() + 30
        while True:
            environments = [e for e in self._environments(name) if e["Provisioned"] and e["State"] == "idle"]
            if environments and environments[0]["Id"] not in before:
                break
            if time.monotonic() > deadline:
                self.fail(f"no replacement provisioned environment: {self._environments(name)}")
            time.sleep(0.1)
        self._wait_status(name, "1", "READY")
        _, payload = self.invoke_ok(name, {}, Qualifier="1")
        self.assertEqual(payload["init"], "provisioned-concurrency")

    def test_init_failure_reports_failed_with_a_reason(self):
        name = self._published(FAILING_INIT_PY)
        self.lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1)
        failed = self._wait_status(name, "1", "FAILED")
        self.assertIn("FUNCTION_ERROR_INIT_FAILURE", failed["StatusReason"])
        self.assertEqual(failed["AllocatedProvisionedConcurrentExecutions"], 0)

    def test_list_lower_and_delete_stop_the_environments(self):
        name = self._published()
        self.lam.publish_version(FunctionName=name, Description="second")  # no change: still version 1
        self.lam.update_function_configuration(FunctionName=name, Description="v2")
        self.wait_updated(name)
        self.lam.publish_version(FunctionName=name)
        self.lam.create_alias(FunctionName=name, Name="blue", FunctionVersion="2")
        self.lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=2)
        self.lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="blue", ProvisionedConcurrentExecutions=1)
        self._wait_status(name, "1", "READY")
        self._wait_status(name, "blue", "READY")

        listed = self.lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"]
        self.assertEqual([c["FunctionArn"] for c in listed], [h.function_arn(name, "1"), h.function_arn(name, "blue")])
        page = self.lam.list_provisioned_concurrency_configs(FunctionName=name, MaxItems=1)
        self.assertEqual(len(page["ProvisionedConcurrencyConfigs"]), 1)
        self.assertEqual(page["NextMarker"], "blue")

        # Lowering the count stops the surplus; deleting stops the rest.
        self.lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1)
        self._wait_count(name, "1", 1)
        resp = self.lam.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
        self.assertEqual(resp["ResponseMetadata"]["HTTPStatusCode"], 204)
        self._wait_count(name, "1", 0)
        self.assertAwsError(lambda: self.lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1"),
                            404, "ProvisionedConcurrencyConfigNotFoundException")
        # Deleting the alias takes its provisioned concurrency with it.
        self.lam.delete_alias(FunctionName=name, Name="blue")
        self.assertEqual(self.lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"], [])
        self._wait_count(name, "2", 0)

    def _wait_count(self, name: str, version: str, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            live = [e for e in self._environments(name) if e["Version"] == version and e["Provisioned"] and e["State"] != "stopping"]
            if len(live) == count:
                return
            if time.monotonic() > deadline:
                self.fail(f"{len(live)} provisioned environments of {name}:{version}, expected {count}: {live}")
            time.sleep(0.1)

    def test_errors(self):
        name = self._published()
        self.assertAwsError(lambda: self.lam.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="$LATEST", ProvisionedConcurrentExecutions=1), 400, "InvalidParameterValueException",
            "unpublished function versions")
        self.assertAwsError(lambda: self.lam.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="9", ProvisionedConcurrentExecutions=1), 404, "ResourceNotFoundException")
        self.assertAwsError(lambda: self.lam.put_provisioned_concurrency_config(
            FunctionName=self.fn_name("missing"), Qualifier="1", ProvisionedConcurrentExecutions=1), 404, "ResourceNotFoundException")
        self.assertAwsError(lambda: self.lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1"),
                            404, "ProvisionedConcurrencyConfigNotFoundException")
        path = f"/2019-09-30/functions/{name}/provisioned-concurrency"
        self.assertRawError(self.server.raw("PUT", path + "?Qualifier=1", {"ProvisionedConcurrentExecutions": 0}), 400, "ValidationException")
        self.assertRawError(self.server.raw("PUT", path + "?Qualifier=1", {}), 400, "InvalidParameterValueException")
        self.assertRawError(self.server.raw("PUT", path, {"ProvisionedConcurrentExecutions": 1}), 400, "InvalidParameterValueException")

        # A weighted alias cannot have it; nor may it exceed the function's reservation.
        self.lam.update_function_configuration(FunctionName=name, Description="v2")
        self.wait_updated(name)
        self.lam.publish_version(FunctionName=name)
        self.lam.create_alias(FunctionName=name, Name="split", FunctionVersion="1", RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
        self.assertAwsError(lambda: self.lam.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="split", ProvisionedConcurrentExecutions=1), 400, "InvalidParameterValueException", "weights")
        self.lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
        self.assertAwsError(lambda: self.lam.put_provisioned_concurrency_config(
            FunctionName=name, Qualifier="2", ProvisionedConcurrentExecutions=2), 400, "InvalidParameterValueException",
            "reservedConcurrentExecution")
        self.assertEqual(self.lam.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"], [])

    def test_cli_put_get_list_delete(self):
        name = self._published()
        r = self.server.aws_cli("lambda", "put-provisioned-concurrency-config", "--function-name", name,
                                "--qualifier", "1", "--provisioned-concurrent-executions", "1")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.json["RequestedProvisionedConcurrentExecutions"], 1)
        self._wait_status(name, "1", "READY")
        r = self.server.aws_cli("lambda", "get-provisioned-concurrency-config", "--function-name", name, "--qualifier", "1")
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(r.json["Status"], "READY")
        r = self.server.aws_cli("lambda", "list-provisioned-concurrency-configs", "--function-name", name)
        self.assertEqual(r.rc, 0, r)
        self.assertEqual(len(r.json["ProvisionedConcurrencyConfigs"]), 1)
        r = self.server.aws_cli("lambda", "delete-provisioned-concurrency-config", "--function-name", name, "--qualifier", "1")
        self.assertEqual(r.rc, 0, r)


if __name__ == "__main__":
    import unittest
    unittest.main()
