"""Invoke through boto3: runtimes, context, warm reuse, errors, timeouts, crashes, logs, limits."""
from __future__ import annotations

import base64
import json
import time
import unittest

import botocore.exceptions

import lamina_harness as h
from lamina_functions import (NODE_CALLBACK, NODE_IMPORT_ERROR, NODE_NO_HANDLER, NODE_THROW,
                              PY_IMPORT_ERROR, PY_NO_HANDLER, bash_bootstrap_zip, node_cjs_zip,
                              node_esm_mjs_zip, node_type_module_zip, py_probe_zip)

MODULE = __name__
SIX_MB = 6 * 1024 * 1024
ONE_MB = 1024 * 1024


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


class _InvokeBase(h.LaminaTestCase):

    def assertContext(self, ctx: dict, name: str, resp: dict, memory: int = 128, timeout: int = 3):
        request_id = resp["ResponseMetadata"]["RequestId"]
        self.assertEqual(ctx["request_id"], request_id, "context request id != x-amzn-RequestId")
        self.assertEqual(ctx["function_name"], name)
        self.assertEqual(ctx["memory_limit_in_mb"], str(memory))
        self.assertEqual(ctx["invoked_function_arn"], h.function_arn(name))
        self.assertGreater(ctx["remaining_ms"], 0)
        self.assertLessEqual(ctx["remaining_ms"], timeout * 1000)

    def assertInvokeHeaders(self, resp: dict):
        headers = resp["ResponseMetadata"]["HTTPHeaders"]
        self.assertEqual(resp["StatusCode"], 200)
        self.assertEqual(resp.get("ExecutedVersion"), "$LATEST")
        self.assertEqual(headers.get("x-amz-executed-version"), "$LATEST")
        self.assertTrue(headers.get("x-amzn-requestid"), f"no x-amzn-RequestId: {headers}")

    def assertFunctionError(self, resp: dict, out, error_type: str):
        self.assertEqual(resp["StatusCode"], 200, "function errors keep HTTP 200")
        self.assertEqual(resp.get("FunctionError"), "Unhandled", out)
        self.assertIsInstance(out, dict, f"error payload is not a JSON object: {out!r}")
        self.assertEqual(out.get("errorType"), error_type, out)
        self.assertIsInstance(out.get("errorMessage"), str, out)


class PythonInvokeTests(_InvokeBase):

    def test_python_handler_roundtrip_context_and_headers(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, runtime="python3.12")
        event = {"hello": "world", "n": 1, "nested": {"list": [1, 2, 3]}, "unicode": "h\u00e9llo \u2603 \U0001F600"}
        resp, out = self.invoke_ok(name, event)
        self.assertInvokeHeaders(resp)
        self.assertEqual(out["event"], event)
        self.assertContext(out["context"], name, resp)
        self.assertEqual(out["context"]["function_version"], "$LATEST")

    def test_python_all_runtime_versions(self):
        for runtime in ("python3.11", "python3.12", "python3.13"):
            with self.subTest(runtime=runtime):
                name = self.fn_name(runtime.replace(".", ""))
                self.create_function(py_probe_zip(), name=name, runtime=runtime, MemorySize=256)
                resp, out = self.invoke_ok(name, {"runtime": runtime})
                self.assertEqual(out["event"], {"runtime": runtime})
                self.assertContext(out["context"], name, resp, memory=256)

    def test_python_handler_in_subdirectory_module(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"pkg/__init__.py": "",
                                         "pkg/mod.py": "def go(e, c):\n    return {'sub': e}\n"}),
                             name=name, handler="pkg/mod.go")
        _, out = self.invoke_ok(name, {"x": 1})
        self.assertEqual(out, {"sub": {"x": 1}})

    def test_python_non_dict_payloads_roundtrip(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": "def handler(e, c):\n    return e\n"}), name=name)
        for event in ("a string", 42, [1, "two", None], None, True):
            with self.subTest(event=event):
                _, out = self.invoke_ok(name, Payload=json.dumps(event).encode())
                self.assertEqual(out, event)

    def test_warm_reuse_python(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        _, first = self.invoke_ok(name, {})
        _, second = self.invoke_ok(name, {})
        self.assertEqual(first["count"], 1)
        self.assertEqual(second["count"], 2, "second invoke should reuse the warm environment")
        self.assertEqual(first["pid"], second["pid"])

    def test_python_function_error(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        resp, _, out = self.invoke(name, {"op": "raise", "message": "boom"})
        self.assertFunctionError(resp, out, "ValueError")
        self.assertEqual(out["errorMessage"], "boom")
        self.assertIsInstance(out.get("stackTrace"), list, out)
        self.assertTrue(resp["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-requestid"))
        # the environment survives a handled exception
        _, after = self.invoke_ok(name, {})
        self.assertEqual(after["op"], "echo")

    def test_python_import_error_then_next_invoke_answers(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": PY_IMPORT_ERROR}), name=name)
        for attempt in (1, 2):
            with self.subTest(attempt=attempt):
                t0 = time.monotonic()
                resp, _, out = self.invoke(name, {})
                self.assertLess(time.monotonic() - t0, 20)
                self.assertFunctionError(resp, out, "Runtime.ImportModuleError")
                self.assertIn("nonexistent_module_lamina_xyz", out["errorMessage"])

    def test_python_missing_module_file_is_import_error(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, handler="nosuchfile.handler")
        resp, _, out = self.invoke(name, {})
        self.assertFunctionError(resp, out, "Runtime.ImportModuleError")

    def test_python_handler_not_found_then_next_invoke_answers(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": PY_NO_HANDLER}), name=name, handler="app.handler")
        for attempt in (1, 2):
            with self.subTest(attempt=attempt):
                t0 = time.monotonic()
                resp, _, out = self.invoke(name, {})
                self.assertLess(time.monotonic() - t0, 20)
                self.assertFunctionError(resp, out, "Runtime.HandlerNotFound")

    @h.slow
    def test_timeout_is_sandbox_timedout_then_recovers(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, Timeout=1)
        t0 = time.monotonic()
        resp, _, out = self.invoke(name, {"op": "sleep", "seconds": 10})
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 5, f"timeout answered after {elapsed:.1f} s")
        self.assertGreaterEqual(elapsed, 0.9, "answered before the 1 s deadline")
        self.assertFunctionError(resp, out, "Sandbox.Timedout")
        self.assertIn("Task timed out after 1.00 seconds", out["errorMessage"])
        _, ok = self.invoke_ok(name, {"op": "sleep", "seconds": 0})
        self.assertEqual(ok["op"], "sleep")

    @h.slow
    def test_timeout_log_tail_has_timeout_line(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, Timeout=1)
        resp, _, out = self.invoke(name, {"op": "sleep", "seconds": 10}, LogType="Tail")
        self.assertFunctionError(resp, out, "Sandbox.Timedout")
        log = h.decode_log_result(resp)
        rid = resp["ResponseMetadata"]["RequestId"]
        self.assertIn("Task timed out after 1.00 seconds", log)
        self.assertIn(f"START RequestId: {rid}", log)
        self.assertIn(f"REPORT RequestId: {rid}", log)

    def test_sleep_just_under_timeout_succeeds(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, Timeout=2)
        self.invoke_ok(name, {})  # cold start outside the measured call
        _, out = self.invoke_ok(name, {"op": "sleep", "seconds": 1.2})
        self.assertEqual(out["op"], "sleep")

    def test_crash_os_exit_is_runtime_exit_error_then_recovers(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        t0 = time.monotonic()
        resp, _, out = self.invoke(name, {"op": "exit", "code": 3})
        self.assertLess(time.monotonic() - t0, 10, "a crash must be answered promptly")
        self.assertFunctionError(resp, out, "Runtime.ExitError")
        _, ok = self.invoke_ok(name, {})
        self.assertEqual(ok["count"], 1, "after a crash the next invoke runs in a fresh environment")

    def test_log_tail_cold_then_warm(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        for phase in ("cold", "warm"):
            with self.subTest(phase=phase):
                resp, out = self.invoke_ok(name, {}, LogType="Tail")
                rid = resp["ResponseMetadata"]["RequestId"]
                self.assertEqual(out["context"]["request_id"], rid)
                log = h.decode_log_result(resp)
                lines = log.splitlines()
                start = f"START RequestId: {rid} Version: $LATEST"
                handler_line = f"probe-log-line op=echo request={rid}"
                end = f"END RequestId: {rid}"
                idx = {}
                for key, needle in (("start", start), ("handler", handler_line), ("end", end),
                                    ("report", f"REPORT RequestId: {rid}\t")):
                    found = [i for i, line in enumerate(lines) if needle in line]
                    self.assertTrue(found, f"{key} line {needle!r} not in log:\n{log}")
                    idx[key] = found[0]
                self.assertLess(idx["start"], idx["handler"], log)
                self.assertLess(idx["handler"], idx["end"], log)
                self.assertLess(idx["end"], idx["report"], log)
                self.assertRegex(lines[idx["start"]], rf"^START RequestId: {rid} Version: \$LATEST\s*$")
                self.assertRegex(lines[idx["end"]], rf"^END RequestId: {rid}\s*$")
                m = h.report_line_re(rid, 128, cold=(phase == "cold")).search(log)
                self.assertIsNotNone(m, f"REPORT line not in AWS format ({phase}):\n{log!r}")
                self.assertGreaterEqual(int(m["billed"]), int(float(m["duration"])))
                if phase == "warm":
                    self.assertNotIn("Init Duration", lines[idx["report"]])

    def test_log_type_none_has_no_log_result(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        resp, _ = self.invoke_ok(name, {})
        self.assertNotIn("LogResult", resp)

    def test_environment_variables_visible_to_handler(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, MemorySize=192,
                             Environment={"Variables": {"MY_VAR": "my value", "EMOJI": "\u2603\U0001F600",
                                                       "EQUALS": "a=b=c"}})
        _, out = self.invoke_ok(name, {"op": "env"})
        env = out["env"]
        self.assertEqual(env.get("MY_VAR"), "my value")
        self.assertEqual(env.get("EMOJI"), "\u2603\U0001F600")
        self.assertEqual(env.get("EQUALS"), "a=b=c")
        self.assertEqual(env.get("AWS_LAMBDA_FUNCTION_NAME"), name)
        self.assertEqual(env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), "192")
        self.assertEqual(env.get("AWS_LAMBDA_FUNCTION_VERSION"), "$LATEST")
        self.assertEqual(env.get("AWS_REGION"), "us-east-1")
        self.assertEqual(env.get("_HANDLER"), "app.handler")
        self.assertEqual(env.get("LAMBDA_TASK_ROOT"), "/var/task")
        self.assertTrue(env.get("AWS_LAMBDA_RUNTIME_API"), "AWS_LAMBDA_RUNTIME_API not set")
        self.assertNotIn("://", env["AWS_LAMBDA_RUNTIME_API"], "must be host:port without scheme")

    def test_update_code_then_invoke_runs_new_code(self):
        name = self.fn_name()
        self.create_function(py_probe_zip("v1"), name=name)
        _, out = self.invoke_ok(name, {})
        self.assertEqual(out["version"], "v1")
        self.lam.update_function_code(FunctionName=name, ZipFile=py_probe_zip("v2"))
        self.wait_updated(name)
        _, out = self.invoke_ok(name, {})
        self.assertEqual(out["version"], "v2", "a warm environment ran stale code after UpdateFunctionCode")
        self.assertEqual(out["count"], 1)

    def test_update_configuration_then_invoke_sees_new_environment(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, Environment={"Variables": {"PHASE": "one"}})
        _, out = self.invoke_ok(name, {"op": "env"})
        self.assertEqual(out["env"].get("PHASE"), "one")
        self.lam.update_function_configuration(FunctionName=name,
                                               Environment={"Variables": {"PHASE": "two"}})
        self.wait_updated(name)
        _, out = self.invoke_ok(name, {"op": "env"})
        self.assertEqual(out["env"].get("PHASE"), "two", "stale environment after configuration update")

    def test_response_over_6mb_is_function_error(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, MemorySize=512, Timeout=30)
        resp, _, out = self.invoke(name, {"op": "big", "size": SIX_MB + 1024})
        self.assertFunctionError(resp, out, "Function.ResponseSizeTooLarge")
        _, ok = self.invoke_ok(name, {})
        self.assertEqual(ok["op"], "echo")


class NodeInvokeTests(_InvokeBase):

    def _check_node(self, runtime: str, zip_bytes: bytes, handler: str, flavor: str):
        name = self.fn_name(flavor)
        self.create_function(zip_bytes, name=name, runtime=runtime, handler=handler)
        event = {"node": flavor, "unicode": "\u2603"}
        resp, out = self.invoke_ok(name, event)
        self.assertInvokeHeaders(resp)
        self.assertEqual(out["flavor"], flavor)
        self.assertEqual(out["event"], event)
        self.assertContext(out["context"], name, resp)
        return name

    def test_node_commonjs_handler(self):
        self._check_node("nodejs20.x", node_cjs_zip(), "index.handler", "cjs")

    def test_node_esm_mjs_handler(self):
        self._check_node("nodejs22.x", node_esm_mjs_zip(), "index.handler", "esm")

    def test_node_type_module_package(self):
        self._check_node("nodejs20.x", node_type_module_zip(), "index.handler", "type-module")

    def test_node_callback_handler(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"index.js": NODE_CALLBACK}), name=name,
                             runtime="nodejs18.x", handler="index.handler")
        resp, out = self.invoke_ok(name, {"cb": True})
        self.assertEqual(out["flavor"], "callback")
        self.assertEqual(out["event"], {"cb": True})
        self.assertEqual(out["context"]["request_id"], resp["ResponseMetadata"]["RequestId"])

    def test_node_all_runtime_versions(self):
        for runtime in ("nodejs18.x", "nodejs20.x", "nodejs22.x"):
            with self.subTest(runtime=runtime):
                name = self.fn_name(runtime.replace(".", ""))
                self.create_function(node_cjs_zip(), name=name, runtime=runtime,
                                     handler="index.handler")
                _, out = self.invoke_ok(name, {"runtime": runtime})
                self.assertEqual(out["event"], {"runtime": runtime})

    def test_warm_reuse_node(self):
        name = self.fn_name()
        self.create_function(node_cjs_zip(), name=name, runtime="nodejs20.x", handler="index.handler")
        _, first = self.invoke_ok(name, {})
        _, second = self.invoke_ok(name, {})
        self.assertEqual((first["count"], second["count"]), (1, 2))
        self.assertEqual(first["pid"], second["pid"])

    def test_node_function_error(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"index.js": NODE_THROW}), name=name,
                             runtime="nodejs20.x", handler="index.handler")
        resp, _, out = self.invoke(name, {})
        self.assertFunctionError(resp, out, "Error")
        self.assertEqual(out["errorMessage"], "boom")
        self.assertIsInstance(out.get("trace", out.get("stackTrace")), list, out)

    def test_node_import_error_then_next_invoke_answers(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"index.js": NODE_IMPORT_ERROR}), name=name,
                             runtime="nodejs20.x", handler="index.handler")
        for attempt in (1, 2):
            with self.subTest(attempt=attempt):
                t0 = time.monotonic()
                resp, _, out = self.invoke(name, {})
                self.assertLess(time.monotonic() - t0, 20)
                self.assertFunctionError(resp, out, "Runtime.ImportModuleError")

    def test_node_handler_not_found_then_next_invoke_answers(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"index.js": NODE_NO_HANDLER}), name=name,
                             runtime="nodejs20.x", handler="index.handler")
        for attempt in (1, 2):
            with self.subTest(attempt=attempt):
                t0 = time.monotonic()
                resp, _, out = self.invoke(name, {})
                self.assertLess(time.monotonic() - t0, 20)
                self.assertFunctionError(resp, out, "Runtime.HandlerNotFound")

    def test_node_crash_process_exit_then_recovers(self):
        name = self.fn_name()
        self.create_function(node_cjs_zip(), name=name, runtime="nodejs20.x", handler="index.handler")
        t0 = time.monotonic()
        resp, _, out = self.invoke(name, {"op": "exit", "code": 3})
        self.assertLess(time.monotonic() - t0, 10)
        self.assertFunctionError(resp, out, "Runtime.ExitError")
        _, ok = self.invoke_ok(name, {})
        self.assertEqual(ok["count"], 1)

    def test_node_heap_sized_to_the_memory_and_gc_exposed(self):
        # As Lambda's Node.js bootstrap starts node: V8's heap fits the function's memory (V8's own limit, 2 GB and
        # more, would let the heap grow past a small function's memory before collecting), and global.gc exists.
        code = h.make_zip({"index.js": "const v8 = require('v8');\nexports.handler = async () => "
                                       "({ gc: typeof global.gc, limit: v8.getHeapStatistics().heap_size_limit });\n"})
        limits = {}
        for memory in (128, 1024):
            name = self.fn_name(f"heap{memory}")
            self.create_function(code, name=name, runtime="nodejs20.x", handler="index.handler", MemorySize=memory)
            _, out = self.invoke_ok(name, {})
            self.assertEqual(out["gc"], "function", out)
            limits[memory] = out["limit"] / (1 << 20)
        # The old generation gets nine tenths of the memory, the young one a few times its semi-space (a twentieth).
        self.assertTrue(110 <= limits[128] <= 160, limits)
        self.assertTrue(900 <= limits[1024] <= 1250, limits)

    def test_node_log_tail(self):
        name = self.fn_name()
        self.create_function(node_cjs_zip(), name=name, runtime="nodejs20.x", handler="index.handler")
        resp, _ = self.invoke_ok(name, {}, LogType="Tail")
        rid = resp["ResponseMetadata"]["RequestId"]
        log = h.decode_log_result(resp)
        self.assertIn(f"START RequestId: {rid} Version: $LATEST", log)
        self.assertIn(f"probe-log-line op=echo request={rid}", log)
        self.assertIn(f"END RequestId: {rid}", log)
        self.assertRegex(log, h.report_line_re(rid, 128, cold=True))


class ProvidedRuntimeTests(_InvokeBase):

    def test_provided_al2023_bash_bootstrap(self):
        self._check("provided.al2023")

    def test_provided_al2_bash_bootstrap(self):
        self._check("provided.al2")

    def _check(self, runtime: str):
        name = self.fn_name(runtime.replace(".", ""))
        self.create_function(bash_bootstrap_zip(), name=name, runtime=runtime,
                             handler="function.handler")
        for i in (1, 2):
            with self.subTest(invoke=i):
                event = {"i": i, "s": "text"}
                resp, out = self.invoke_ok(name, event)
                self.assertInvokeHeaders(resp)
                self.assertEqual(out, {"echo": event, "request_id": resp["ResponseMetadata"]["RequestId"],
                                       "handler": "function.handler"})

    def test_provided_missing_bootstrap_is_function_error(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"not-bootstrap.sh": "#!/bin/sh\n"}), name=name,
                             runtime="provided.al2023", handler="x")
        t0 = time.monotonic()
        resp, _, out = self.invoke(name, {})
        self.assertLess(time.monotonic() - t0, 20)
        self.assertEqual(resp["StatusCode"], 200)
        self.assertEqual(resp.get("FunctionError"), "Unhandled", out)
        self.assertEqual(out.get("errorType"), "Runtime.InvalidEntrypoint", out)
        self.assertIn("bootstrap", out.get("errorMessage", ""), out)


class InvocationTypeTests(_InvokeBase):

    def test_invocation_type_event_is_202(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        resp, body, _ = self.invoke(name, {"async": True}, InvocationType="Event")
        self.assertEqual(resp["StatusCode"], 202)
        self.assertEqual(resp["ResponseMetadata"]["HTTPStatusCode"], 202)
        self.assertEqual(body, b"")
        self.assertNotIn("FunctionError", resp)
        self.assertTrue(resp["ResponseMetadata"].get("RequestId"))

    def test_invocation_type_dry_run_is_204(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        resp, body, _ = self.invoke(name, {}, InvocationType="DryRun")
        self.assertEqual(resp["StatusCode"], 204)
        self.assertEqual(body, b"")

    def test_dry_run_missing_function_is_404(self):
        self.assertAwsError(lambda: self.lam.invoke(FunctionName=self.fn_name(),
                                                    InvocationType="DryRun"),
                            404, "ResourceNotFoundException")

    @h.slow
    def test_payload_over_6mb_is_413(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        payload = json.dumps("a" * (SIX_MB - 1)).encode()
        self.assertEqual(len(payload), SIX_MB + 1)
        try:
            self.assertAwsError(lambda: self.lam.invoke(FunctionName=name, Payload=payload),
                                413, "RequestTooLargeException")
        except botocore.exceptions.HTTPClientError as e:
            self.fail(f"connection failed instead of a 413 answer: {e!r}")

    @h.slow
    def test_payload_just_under_6mb_is_accepted(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, MemorySize=512, Timeout=30)
        payload = json.dumps({"op": "noop", "pad": "a" * (SIX_MB - 200)}).encode()
        self.assertLessEqual(len(payload), SIX_MB)
        resp, out = self.invoke_ok(name, Payload=payload)
        self.assertEqual(out, {"ok": True, "event_keys": ["op", "pad"]})

    def test_event_payload_over_1mb_is_413(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        payload = json.dumps("a" * ONE_MB).encode()
        self.assertAwsError(lambda: self.lam.invoke(FunctionName=name, Payload=payload,
                                                    InvocationType="Event"),
                            413, "RequestTooLargeException")

    def test_non_json_payload_is_rejected(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        try:
            self.lam.invoke(FunctionName=name, Payload=b"{not json")
            self.fail("a non-JSON RequestResponse payload was accepted")
        except botocore.exceptions.ClientError as err:
            status = err.response["ResponseMetadata"]["HTTPStatusCode"]
            self.assertIn(status, (400, 415), err.response)
            self.assertIn(err.response["Error"]["Code"],
                          ("InvalidRequestContentException", "UnsupportedMediaTypeException"))

    def test_empty_payload_is_accepted(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": "def handler(e, c):\n    return {'got': e}\n"}),
                             name=name)
        resp, _, out = self.invoke(name)
        self.assertEqual(resp["StatusCode"], 200)
        self.assertNotIn("FunctionError", resp, out)
        self.assertIn(out["got"], ({}, None))


class QualifierTests(_InvokeBase):

    def test_qualifier_latest_works(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        resp, out = self.invoke_ok(name, {"q": 1}, Qualifier="$LATEST")
        self.assertEqual(resp["ExecutedVersion"], "$LATEST")
        self.assertEqual(out["event"], {"q": 1})

    def test_unknown_qualifier_is_404(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        for q in ("7", "no-such-alias"):
            with self.subTest(qualifier=q):
                self.assertAwsError(lambda: self.lam.invoke(FunctionName=name, Qualifier=q,
                                                            Payload=b"{}"),
                                    404, "ResourceNotFoundException")
                self.assertAwsError(lambda: self.lam.invoke(FunctionName=f"{name}:{q}",
                                                            Payload=b"{}"),
                                    404, "ResourceNotFoundException")


if __name__ == "__main__":
    unittest.main()
