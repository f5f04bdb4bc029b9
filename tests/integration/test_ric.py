"""AWS's own Node.js runtime interface client (npm ``aws-lambda-ric``) runs unchanged as a custom runtime.

The package is installed and its native client (aws-lambda-cpp + curl) built once per machine by
``prepare_ric.sh`` (test.sh runs it first and passes the path in ``LAMINA_RIC_DIR``; run alone, this module
runs it itself). The function zip carries ``node_modules/aws-lambda-ric`` (package.json, bin/, dist/ with
``rapid-client.node``), a ``bootstrap`` that execs the package's ``bin/index.mjs`` with ``$_HANDLER``, and an
ES-module handler. Every check runs twice: with the native client (the RIC's default) and with the plain-``http``
fallback (``AWS_LAMBDA_NODEJS_USE_ALTERNATIVE_CLIENT_1=true``).
"""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import unittest
from pathlib import Path

import lamina_harness as h

MODULE = __name__
HERE = Path(__file__).resolve().parent
PREPARE = HERE / "prepare_ric.sh"
PREPARE_TIMEOUT = 1800  # the first build compiles curl and aws-lambda-cpp: ~2 min on 2 cores

TRACE_RE = re.compile(r"^Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=[01](;.*)?$")

BOOTSTRAP = """#!/bin/sh
# AWS's documented way to run aws-lambda-ric as a custom runtime: node <ric>/bin/index.mjs <handler>,
# from the function's directory (the RIC resolves the handler against process.cwd()).
cd "$LAMBDA_TASK_ROOT"
exec /usr/bin/node /var/task/node_modules/aws-lambda-ric/bin/index.mjs "$_HANDLER"
"""

HANDLER = r"""
let count = 0;

class CustomError extends Error {
  constructor(message) {
    super(message);
    this.name = "CustomError";
  }
}

export const handler = async (event, context) => {
  count += 1;
  console.log(`ric-log-line request=${context.awsRequestId} count=${count}`);
  if (event && event.op === "throw") {
    throw new CustomError(event.message || "boom");
  }
  return {
    count,
    pid: process.pid,
    event,
    requestId: context.awsRequestId,
    functionName: context.functionName,
    functionVersion: context.functionVersion,
    memoryLimitInMB: String(context.memoryLimitInMB),
    invokedFunctionArn: context.invokedFunctionArn,
    logGroupName: context.logGroupName,
    logStreamName: context.logStreamName,
    remainingMs: context.getRemainingTimeInMillis(),
    clientContext: context.clientContext ?? null,
    trace: process.env._X_AMZN_TRACE_ID ?? null,
    alternativeClient: process.env.AWS_LAMBDA_NODEJS_USE_ALTERNATIVE_CLIENT_1 ?? null,
    nodeVersion: process.version,
  };
};
"""

_RIC_DIR: Path | None = None


def _prepare_ric() -> Path:
    """The prepared package dir: LAMINA_RIC_DIR if test.sh set it, else whatever prepare_ric.sh prints."""
    from_env = os.environ.get("LAMINA_RIC_DIR", "").strip()
    if from_env and (Path(from_env) / "dist" / "rapid-client.node").is_file():
        return Path(from_env)
    try:
        p = subprocess.run([str(PREPARE)], stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=PREPARE_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"prepare_ric.sh did not finish within {PREPARE_TIMEOUT} s") from e
    err = p.stderr.decode("utf-8", "replace")
    if p.returncode == 2:
        raise unittest.SkipTest("aws-lambda-ric cannot be prepared on this machine: "
                                + (err.strip().splitlines() or ["(no message)"])[-1])
    lines = p.stdout.decode("utf-8", "replace").strip().splitlines()
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"prepare_ric.sh failed with status {p.returncode}:\n{err[-4000:]}")
    path = Path(lines[-1])
    if not (path / "dist" / "rapid-client.node").is_file():
        raise RuntimeError(f"prepare_ric.sh printed {path}, which has no dist/rapid-client.node")
    return path


def setUpModule():
    global _RIC_DIR
    _RIC_DIR = _prepare_ric()  # before the server starts: the first build takes minutes
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


_ZIP: bytes | None = None


def ric_zip() -> bytes:
    """bootstrap + index.mjs + node_modules/aws-lambda-ric/{package.json,bin/,dist/}."""
    global _ZIP
    if _ZIP is None:
        assert _RIC_DIR is not None
        files: dict[str, bytes | str] = {"bootstrap": BOOTSTRAP, "index.mjs": HANDLER}
        executables = ["bootstrap"]
        prefix = "node_modules/aws-lambda-ric"
        files[f"{prefix}/package.json"] = (_RIC_DIR / "package.json").read_bytes()
        for sub in ("bin", "dist"):
            for path in sorted((_RIC_DIR / sub).rglob("*")):
                if path.is_file():
                    rel = f"{prefix}/{path.relative_to(_RIC_DIR).as_posix()}"
                    files[rel] = path.read_bytes()
                    if os.access(path, os.X_OK):
                        executables.append(rel)
        _ZIP = h.make_zip(files, executables=executables)
    return _ZIP


class _RicTests(h.LaminaTestCase):
    """The checks; subclasses pick the native client or the JS fallback."""

    ALTERNATIVE_CLIENT = False

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._shared = None

    def function(self) -> str:
        """One function per class (warm across tests), created on first use."""
        cls = type(self)
        if cls._shared is None:
            name = self.fn_name("ric")
            self.create_function(ric_zip(), name=name, runtime="provided.al2023",
                                 handler="index.handler", Timeout=10, MemorySize=256,
                                 Environment=self._environment(), cleanup=False)
            cls._shared = name
        return cls._shared

    @classmethod
    def tearDownClass(cls):
        srv = h.server_for(MODULE)
        if cls._shared and srv is not None:
            try:
                srv.client().delete_function(FunctionName=cls._shared)
            except Exception:  # noqa: BLE001 - best effort
                pass
        super().tearDownClass()

    def _environment(self) -> dict:
        variables = {"MODE": "alternative" if self.ALTERNATIVE_CLIENT else "native"}
        if self.ALTERNATIVE_CLIENT:
            variables["AWS_LAMBDA_NODEJS_USE_ALTERNATIVE_CLIENT_1"] = "true"
        return {"Variables": variables}

    def _request_id(self, resp: dict) -> str:
        return resp["ResponseMetadata"]["RequestId"]

    # ---- tests ------------------------------------------------------------------------------

    def test_cold_then_warm_invoke_with_context_and_logs(self):
        name = self.fn_name("cold")
        self.create_function(ric_zip(), name=name, runtime="provided.al2023", handler="index.handler",
                             Timeout=10, MemorySize=256, Environment=self._environment())
        outs = []
        for phase in ("cold", "warm"):
            with self.subTest(phase=phase):
                event = {"phase": phase, "unicode": "h\u00e9llo \u2603 \U0001F600", "n": [1, 2]}
                resp, out = self.invoke_ok(name, event, LogType="Tail")
                rid = self._request_id(resp)
                self.assertEqual(resp.get("ExecutedVersion"), "$LATEST")
                self.assertEqual(out["event"], event)
                self.assertEqual(out["requestId"], rid, "context.awsRequestId != x-amzn-RequestId")
                self.assertEqual(out["functionName"], name)
                self.assertEqual(out["functionVersion"], "$LATEST")
                self.assertEqual(out["memoryLimitInMB"], "256")
                self.assertEqual(out["invokedFunctionArn"], h.function_arn(name))
                self.assertEqual(out["logGroupName"], f"/aws/lambda/{name}")
                self.assertTrue(out["logStreamName"], out)
                self.assertGreater(out["remainingMs"], 0, out)
                self.assertLessEqual(out["remainingMs"], 10_000, out)
                expected_alt = "true" if self.ALTERNATIVE_CLIENT else None
                self.assertEqual(out["alternativeClient"], expected_alt)
                log = h.decode_log_result(resp)
                self.assertIn(f"ric-log-line request={rid} count={out['count']}", log)
                self.assertIn(f"START RequestId: {rid}", log)
                self.assertIn(f"REPORT RequestId: {rid}", log)
                if phase == "cold":
                    # printed by the RIC's bin/index.mjs during Init, part of the first invocation's log
                    self.assertIn("Executing 'index.handler' in function directory '/var/task'", log)
                outs.append(out)
        if len(outs) == 2:
            self.assertEqual((outs[0]["count"], outs[1]["count"]), (1, 2), "warm invoke did not reuse the RIC")
            self.assertEqual(outs[0]["pid"], outs[1]["pid"])

    def test_client_context_reaches_context_client_context(self):
        client_context = {
            "custom": {"k": "v", "unicode": "\u2603"},
            "client": {"installation_id": "inst-1", "app_title": "Lamina tests", "app_version_name": "1.0",
                       "app_version_code": "1", "app_package_name": "dev.lamina.tests"},
            "env": {"platform": "linux", "make": "lamina", "model": "it", "locale": "en_US"},
        }
        encoded = base64.b64encode(json.dumps(client_context).encode("utf-8")).decode("ascii")
        resp, out = self.invoke_ok(self.function(), {"cc": True}, ClientContext=encoded)
        self.assertEqual(out["clientContext"], client_context, out)
        # without X-Amz-Client-Context the RIC's context has none (the header must be absent, not empty)
        _, out = self.invoke_ok(self.function(), {"cc": False})
        self.assertIsNone(out["clientContext"], out)

    def test_trace_id_in_process_env(self):
        traces = []
        for _ in range(2):
            _, out = self.invoke_ok(self.function(), {"trace": True})
            self.assertIsInstance(out["trace"], str, f"_X_AMZN_TRACE_ID not set in the handler: {out}")
            self.assertRegex(out["trace"], TRACE_RE)
            traces.append(out["trace"])
        self.assertNotEqual(traces[0], traces[1], "every invocation gets its own trace header")

    def test_thrown_error_is_function_error_and_environment_survives(self):
        name = self.function()
        _, before = self.invoke_ok(name, {})
        resp, _, out = self.invoke(name, {"op": "throw", "message": "ric boom"}, LogType="Tail")
        self.assertEqual(resp["StatusCode"], 200)
        self.assertEqual(resp.get("FunctionError"), "Unhandled", out)
        self.assertIsInstance(out, dict, out)
        self.assertEqual(out.get("errorType"), "CustomError", out)
        self.assertEqual(out.get("errorMessage"), "ric boom", out)
        self.assertIsInstance(out.get("trace"), list, out)
        log = h.decode_log_result(resp)
        self.assertIn(f"ric-log-line request={self._request_id(resp)}", log)
        # the RIC logs the error too (ERROR	Invoke Error	…)
        self.assertIn("CustomError", log)
        _, after = self.invoke_ok(name, {})
        self.assertEqual(after["pid"], before["pid"], "a handled error must not reset the environment")
        self.assertEqual(after["count"], before["count"] + 2)

    def test_missing_handler_module_is_import_error(self):
        name = self.fn_name("nomod")
        self.create_function(ric_zip(), name=name, runtime="provided.al2023", handler="nosuchmodule.handler",
                             Timeout=10, Environment=self._environment())
        for attempt in (1, 2):
            with self.subTest(attempt=attempt):
                resp, _, out = self.invoke(name, {})
                self.assertEqual(resp["StatusCode"], 200)
                self.assertEqual(resp.get("FunctionError"), "Unhandled", out)
                self.assertIsInstance(out, dict, out)
                self.assertEqual(out.get("errorType"), "Runtime.ImportModuleError", out)


class NativeClientTests(_RicTests):
    ALTERNATIVE_CLIENT = False


class AlternativeClientTests(_RicTests):
    ALTERNATIVE_CLIENT = True


del _RicTests  # the base holds no tests of its own

if __name__ == "__main__":
    unittest.main()
