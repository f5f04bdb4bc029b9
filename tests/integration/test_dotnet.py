""".NET runtimes: dotnet8/dotnet10 class-library handlers and an executable function on provided.al2023.

The functions under tests/integration/dotnet/ reference src/Lamina.Runtime by ProjectReference. They are built
once per source hash into a cache dir (dotnet builds are slow; LAMINA_DOTNET_CACHE overrides where) after the
server has started, so the library is already built by then (the build does not build the reference again and
never writes into the repo). Cold starts (Init Duration, first and warm invoke) are printed at the end, not asserted.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

import lamina_harness as h

MODULE = __name__
SOURCES = Path(__file__).resolve().parent / "dotnet"
RUNTIME_PROJECT = h.REPO_ROOT / "src" / "Lamina.Runtime"
CACHE_ROOT = Path(os.environ.get("LAMINA_DOTNET_CACHE") or Path(tempfile.gettempdir()) / "lamina-dotnet-functions")
HELLO = "HelloWorld::HelloWorld.Function::"
INIT_RE = re.compile(r"Init Duration: (\d+\.\d{2}) ms")
DURATION_RE = re.compile(r"\tDuration: (\d+\.\d{2}) ms")
TEXT_LOG_RE = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\t%s\t%s\t%s$"

_ZIPS: dict[str, bytes] = {}
_TIMINGS: list[str] = []


def setUpModule():
    h.start_module_server(MODULE)
    _ZIPS.update(_build_functions())


def tearDownModule():
    if _TIMINGS:
        sys.stderr.write("\n.NET cold starts (this machine, not asserted):\n  " + "\n  ".join(_TIMINGS) + "\n")
    h.stop_module_server(MODULE)


# ---- building the functions -------------------------------------------------------------------------------------

def _source_hash() -> str:
    digest = hashlib.sha256()
    for root in (SOURCES, RUNTIME_PROJECT):
        for path in sorted(root.rglob("*")):
            if path.is_file() and not {"bin", "obj"} & set(path.parts) and path.suffix in (".cs", ".csproj", ".props"):
                digest.update(str(path.relative_to(root)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _run(args: list[str], cwd: Path) -> None:
    env = dict(os.environ, DOTNET_CLI_TELEMETRY_OPTOUT="1", DOTNET_NOLOGO="1", MSBUILDDISABLENODEREUSE="1")
    p = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-2000:]}")


def _zip_dir(directory: Path) -> bytes:
    files, executables = {}, []
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.suffix not in (".pdb", ".xml"):
            name = str(path.relative_to(directory))
            files[name] = path.read_bytes()
            if name == "bootstrap":
                executables.append(name)
    return h.make_zip(files, executables)


def _build_functions() -> dict[str, bytes]:
    """hello8 / hello10 (class library for net8.0 / net10.0) and exe (provided.al2023), cached by source hash."""
    cache = CACHE_ROOT / _source_hash()
    names = ("hello8", "hello10", "hello10-noconfig", "exe")
    if not all((cache / f"{n}.zip").exists() for n in names):
        work = Path(tempfile.mkdtemp(prefix="build-", dir=_mkdir(CACHE_ROOT)))
        try:
            shutil.copytree(SOURCES, work / "src")
            # Outside the repo: the repo's Directory.Build.props (warnings as errors, artifacts output) stays out.
            for stub in ("Directory.Build.props", "Directory.Build.targets"):
                (work / "src" / stub).write_text("<Project></Project>\n")
            (work / "src" / "Directory.Packages.props").write_text(
                "<Project><PropertyGroup><ManagePackageVersionsCentrally>false</ManagePackageVersionsCentrally>"
                "</PropertyGroup></Project>\n")
            props = [f"-p:LaminaRuntimeProject={RUNTIME_PROJECT / 'Lamina.Runtime.csproj'}",
                     "-p:BuildProjectReferences=false"]
            _run(["dotnet", "build", "HelloWorld", "-c", "Release", "-nologo", "-v", "q", *props], work / "src")
            _run(["dotnet", "publish", "HelloExe", "-c", "Release", "-nologo", "-v", "q", "-o", str(work / "exe"),
                  *props], work / "src")
            (work / "exe" / "bootstrap").write_text("#!/bin/sh\nexec /usr/bin/dotnet /var/task/HelloExe.dll\n")
            zips = {
                "hello8": _zip_dir(work / "src" / "HelloWorld" / "bin" / "Release" / "net8.0"),
                "hello10": _zip_dir(work / "src" / "HelloWorld" / "bin" / "Release" / "net10.0"),
                "exe": _zip_dir(work / "exe"),
            }
            # A class library built without GenerateRuntimeConfigurationFiles: the bootstrap's own config applies.
            (work / "src" / "HelloWorld" / "bin" / "Release" / "net10.0" / "HelloWorld.runtimeconfig.json").unlink()
            zips["hello10-noconfig"] = _zip_dir(work / "src" / "HelloWorld" / "bin" / "Release" / "net10.0")
            staging = Path(tempfile.mkdtemp(prefix="zips-", dir=CACHE_ROOT))
            for name, data in zips.items():
                (staging / f"{name}.zip").write_bytes(data)
            try:
                staging.rename(cache)
            except OSError:  # another run finished the same build first
                shutil.rmtree(staging, ignore_errors=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return {n: (cache / f"{n}.zip").read_bytes() for n in names}


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---- tests ------------------------------------------------------------------------------------------------------

class DotNetTests(h.LaminaTestCase):

    def create_dotnet(self, method: str, runtime: str = "dotnet10", zip_name: str | None = None, **kwargs) -> str:
        name = self.fn_name(runtime)
        zip_name = zip_name or ("hello8" if runtime == "dotnet8" else "hello10")
        self.create_function(_ZIPS[zip_name], name=name, runtime=runtime, handler=HELLO + method,
                             Timeout=kwargs.pop("Timeout", 15), **kwargs)
        return name

    def invoke_tail(self, name: str, event) -> tuple[dict, object, str, float]:
        started = time.monotonic()
        resp, body, parsed = self.invoke(name, event, LogType="Tail")
        elapsed = (time.monotonic() - started) * 1000
        return resp, parsed if parsed is not None else body, h.decode_log_result(resp), elapsed

    def assertFunctionError(self, resp: dict, out, error_type: str) -> dict:
        self.assertEqual(resp["StatusCode"], 200)
        self.assertEqual(resp.get("FunctionError"), "Unhandled", out)
        self.assertIsInstance(out, dict, out)
        self.assertEqual(out.get("errorType"), error_type, out)
        self.assertIsInstance(out.get("errorMessage"), str, out)
        return out

    def test_hello_world_answers_on_dotnet8_and_dotnet10(self):
        for runtime in ("dotnet8", "dotnet10"):
            with self.subTest(runtime=runtime):
                name = self.create_dotnet("Handler", runtime)
                resp, out, log, cold_ms = self.invoke_tail(name, "Lamina")
                self.assertNotIn("FunctionError", resp, out)
                self.assertEqual(out, "Hello, Lamina!")
                request_id = resp["ResponseMetadata"]["RequestId"]
                self.assertRegex(log, h.report_line_re(request_id, cold=True))
                init = float(INIT_RE.search(log).group(1))
                first = float(DURATION_RE.search(log).group(1))

                resp, out, log, warm_ms = self.invoke_tail(name, "again")
                self.assertEqual(out, "Hello, again!")
                self.assertRegex(log, h.report_line_re(resp["ResponseMetadata"]["RequestId"], cold=False))
                warm = float(DURATION_RE.search(log).group(1))
                _TIMINGS.append(f"{runtime} hello world (class library): Init Duration {init:.1f} ms, first Duration "
                                f"{first:.1f} ms, first invoke round trip {cold_ms:.0f} ms; warm Duration {warm:.2f} "
                                f"ms, round trip {warm_ms:.1f} ms")

    def test_class_library_without_runtimeconfig(self):
        name = self.create_dotnet("Handler", zip_name="hello10-noconfig")
        _, out = self.invoke_ok(name, "plain")
        self.assertEqual(out, "Hello, plain!")

    def test_context_fields_and_one_instance_per_environment(self):
        name = self.create_dotnet("Context", MemorySize=256)
        client_context = {"custom": {"probe": "yes"}, "env": {}, "client": {}}
        resp = self.lam.invoke(FunctionName=name, Payload=b'{"k":"v"}',
                               ClientContext=base64.b64encode(json.dumps(client_context).encode()).decode())
        out = json.loads(resp["Payload"].read())
        self.assertNotIn("FunctionError", resp, out)
        self.assertEqual(json.loads(out["Event"]), {"k": "v"})
        self.assertEqual(out["AwsRequestId"], resp["ResponseMetadata"]["RequestId"])
        self.assertEqual(out["FunctionName"], name)
        self.assertEqual(out["FunctionVersion"], "$LATEST")
        self.assertEqual(out["InvokedFunctionArn"], h.function_arn(name))
        self.assertEqual(out["MemoryLimitInMB"], 256)
        self.assertGreater(out["RemainingMs"], 0)
        self.assertLessEqual(out["RemainingMs"], 15000)
        self.assertEqual(out["LogGroupName"], f"/aws/lambda/{name}")
        self.assertTrue(out["LogStreamName"])
        self.assertEqual(out["ClientCustom"], "yes")
        self.assertEqual(out["ExecutionEnv"], "AWS_Lambda_dotnet10")
        self.assertIn(".NET", out["FrameworkDescription"])
        self.assertEqual((out["Instance"], out["Calls"]), (1, 1))
        _, second = self.invoke_ok(name, {})
        self.assertEqual((second["Instance"], second["Calls"]), (1, 2), "the handler type is created once per environment")

    def test_exception_is_a_function_error_with_the_exception_type(self):
        name = self.create_dotnet("Throw")
        resp, out, log, _ = self.invoke_tail(name, "x")
        error = self.assertFunctionError(resp, out, "HelloWorldException")
        self.assertEqual(error["errorMessage"], "failed on x")
        self.assertTrue(any("HelloWorld.Function.Throw" in line for line in error["stackTrace"]), error)
        self.assertEqual(error["cause"]["errorType"], "InvalidOperationException")
        self.assertEqual(error["cause"]["errorMessage"], "inner cause")
        # The runtime logs it too, as one record at "fail".
        self.assertRegex(log, r"(?m)^\S+\t%s\tfail\tHelloWorld\.HelloWorldException: failed on x" %
                         re.escape(resp["ResponseMetadata"]["RequestId"]))
        # The environment survives a function error.
        resp, out, _, _ = self.invoke_tail(name, "y")
        self.assertEqual(out["errorMessage"], "failed on y")

    def test_source_generated_context_round_trips_a_poco(self):
        name = self.create_dotnet("Order", "dotnet8")
        order = {"orderId": "o-1", "customer": "Ada",
                 "lines": [{"sku": "a", "quantity": 2, "unitPrice": 1.25}, {"sku": "b", "quantity": 1, "unitPrice": 10}]}
        _, out = self.invoke_ok(name, order)
        # AWS's options: names as declared (PascalCase), matched case-insensitively on input.
        self.assertEqual(out, {"OrderId": "o-1", "Total": 12.5, "Items": 2, "Customer": "Ada"})

    def test_async_handler_and_log_format(self):
        name = self.create_dotnet("Log")
        resp, out, log, _ = self.invoke_tail(name, {"a": 1, "b": 21})
        self.assertEqual(out, {"a": 2, "b": 42})
        rid = re.escape(resp["ResponseMetadata"]["RequestId"])
        self.assertRegex(log, "(?m)" + TEXT_LOG_RE % (rid, "info", "console line"))
        self.assertRegex(log, "(?m)" + TEXT_LOG_RE % (rid, "info", "logger line"))
        self.assertRegex(log, "(?m)" + TEXT_LOG_RE % (rid, "fail", "stderr line"))
        self.assertNotIn("debug line", log)

    def test_json_log_format(self):
        name = self.create_dotnet("Log", LoggingConfig={"LogFormat": "JSON"})
        resp, out, log, _ = self.invoke_tail(name, {"a": 1})
        self.assertEqual(out, {"a": 2})
        records = [json.loads(line) for line in log.splitlines() if line.startswith("{") and '"message"' in line]
        by_message = {r["message"]: r for r in records}
        self.assertIn("logger line", by_message, log)
        record = by_message["logger line"]
        self.assertEqual(record["level"], "Information")
        self.assertEqual(record["requestId"], resp["ResponseMetadata"]["RequestId"])
        self.assertRegex(record["timestamp"], r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
        self.assertEqual(by_message["stderr line"]["level"], "Error")

    def test_event_that_does_not_fit_the_input_type(self):
        name = self.create_dotnet("Handler")
        resp, out, _, _ = self.invoke_tail(name, {"not": "a string"})
        error = self.assertFunctionError(resp, out, "JsonSerializerException")
        self.assertIn("System.String", error["errorMessage"])

    def test_no_input_no_output(self):
        name = self.create_dotnet("Nothing")
        resp, body, _ = self.invoke(name, {"ignored": True})
        self.assertEqual(resp["StatusCode"], 200)
        self.assertNotIn("FunctionError", resp, body)
        self.assertEqual(body, b"")

    def test_bad_handlers_are_init_errors(self):
        cases = [
            (HELLO + "Missing", "LambdaValidationException", "Found no methods matching method name 'Missing'"),
            ("Nope::Nope.Function::Handler", "LambdaValidationException", "Could not find the specified handler assembly"),
            ("HelloWorld::HelloWorld.Nope::Handler", "LambdaValidationException", "Unable to load type 'HelloWorld.Nope'"),
            ("HelloWorld.Function.Handler", "LambdaValidationException", "Invalid lambda function handler"),
        ]
        for handler, error_type, message in cases:
            with self.subTest(handler=handler):
                name = self.fn_name()
                self.create_function(_ZIPS["hello10"], name=name, runtime="dotnet10", handler=handler)
                resp, body, out = self.invoke(name, "x")
                error = self.assertFunctionError(resp, out, error_type)
                self.assertIn(message, error["errorMessage"])

    def test_executable_function_on_provided_al2023(self):
        name = self.fn_name()
        self.create_function(_ZIPS["exe"], name=name, runtime="provided.al2023", handler="unused", Timeout=15)
        resp, out, log, cold_ms = self.invoke_tail(name, {"name": "Lamina"})
        self.assertNotIn("FunctionError", resp, out)
        self.assertEqual(out, {"Message": "Hello, Lamina!", "FunctionName": name,
                               "RequestId": resp["ResponseMetadata"]["RequestId"]})
        init = float(INIT_RE.search(log).group(1))
        first = float(DURATION_RE.search(log).group(1))
        _TIMINGS.append(f"provided.al2023 executable (source-generated JSON, JIT): Init Duration {init:.1f} ms, "
                        f"first Duration {first:.1f} ms, first invoke round trip {cold_ms:.0f} ms")
        resp, out, _, _ = self.invoke_tail(name, {"name": "fail"})
        error = self.assertFunctionError(resp, out, "ArgumentException")
        self.assertEqual(error["errorMessage"], "no greeting for 'fail'")
        _, out = self.invoke_ok(name, {"name": "again"})
        self.assertEqual(out["Message"], "Hello, again!")


if __name__ == "__main__":
    unittest.main()
