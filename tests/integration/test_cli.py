"""The AWS CLI against Lamina: create, wait, get, list (auto-pagination), update, invoke, delete.

Runs with the CLI on PATH (``aws``, CLI v1 here; override with LAMINA_AWS_CLI) and, when present,
Debian's CLI v2 at /usr/bin/aws (older model: trailing-slash ListFunctions, needs
``--cli-binary-format raw-in-base64-out`` for the invoke payload).
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
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


def _cli_major(exe: str) -> int | None:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout + out.stderr).strip()
    if text.startswith("aws-cli/"):
        return int(text[len("aws-cli/"):].split(".", 1)[0])
    return None


class _CliBase(h.CliTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.major = _cli_major(cls.CLI)
        if cls.major is None:
            raise unittest.SkipTest(f"{cls.CLI!r} is not a working AWS CLI")

    def write_zip(self, data: bytes, label: str) -> str:
        path = self.tmp / f"{self.fn_name(label)}.zip"
        path.write_bytes(data)
        return f"fileb://{path}"

    def payload_args(self, payload: str) -> list[str]:
        args = ["--payload", payload]
        if self.major and self.major >= 2:
            args += ["--cli-binary-format", "raw-in-base64-out"]
        return args

    def cli_create(self, name: str, zip_bytes: bytes, *extra: str) -> dict:
        r = self.aws("lambda", "create-function", "--function-name", name,
                     "--runtime", "python3.12", "--handler", "app.handler", "--role", h.ROLE,
                     "--zip-file", self.write_zip(zip_bytes, "code"), *extra)
        self.addCleanup(self._delete_quietly, name)
        return r.json

    # ---- tests --------------------------------------------------------------------------------

    def test_cli_create_function_and_wait_active(self):
        name = self.fn_name()
        zip_bytes = py_probe_zip()
        out = self.cli_create(name, zip_bytes, "--timeout", "9", "--memory-size", "256",
                              "--environment", "Variables={COLOR=blue,SIZE=2}")
        self.assertEqual(out["FunctionName"], name)
        self.assertEqual(out["FunctionArn"], h.function_arn(name))
        self.assertEqual(out["CodeSha256"], h.b64_sha256(zip_bytes))
        self.assertEqual(out["CodeSize"], len(zip_bytes))
        self.assertEqual((out["Timeout"], out["MemorySize"]), (9, 256))
        self.assertEqual(out["Environment"]["Variables"], {"COLOR": "blue", "SIZE": "2"})
        self.assertRegex(out["LastModified"], h.LAST_MODIFIED_RE)
        self.aws("lambda", "wait", "function-active-v2", "--function-name", name)
        state = self.aws("lambda", "get-function-configuration", "--function-name", name,
                         "--query", "State", "--output", "text").stdout.strip()
        self.assertEqual(state, "Active")

    def test_cli_get_function_and_configuration(self):
        name = self.fn_name()
        zip_bytes = py_probe_zip()
        self.create_function(zip_bytes, name=name)
        got = self.aws("lambda", "get-function", "--function-name", name).json
        self.assertEqual(got["Configuration"]["FunctionName"], name)
        self.assertEqual(got["Configuration"]["CodeSha256"], h.b64_sha256(zip_bytes))
        self.assertEqual(got["Code"]["RepositoryType"], "S3")
        cfg = self.aws("lambda", "get-function-configuration", "--function-name",
                       h.function_arn(name)).json
        self.assertEqual(cfg["FunctionName"], name)
        self.assertEqual(cfg["Handler"], "app.handler")

    def test_cli_list_functions_autopaginates(self):
        names = [self.fn_name(f"l{i}") for i in range(5)]
        for n in names:
            self.create_function(py_probe_zip(), name=n, wait=False)
        all_names = set(self.list_function_names())
        for args in ((), ("--page-size", "2")):
            with self.subTest(args=args):
                out = self.aws("lambda", "list-functions", *args).json
                listed = [f["FunctionName"] for f in out["Functions"]]
                self.assertEqual(len(listed), len(set(listed)), "duplicates in CLI listing")
                self.assertEqual(set(listed), all_names)
                self.assertNotIn("NextMarker", out)
        out = self.aws("lambda", "list-functions", "--max-items", "2").json
        self.assertEqual(len(out["Functions"]), 2)
        self.assertIn("NextToken", out, "CLI pagination token missing with --max-items")

    def test_cli_update_code_and_wait_updated(self):
        name = self.fn_name()
        self.create_function(py_probe_zip("v1"), name=name)
        before = self.lam.get_function_configuration(FunctionName=name)
        v2 = py_probe_zip("v2")
        out = self.aws("lambda", "update-function-code", "--function-name", name,
                       "--zip-file", self.write_zip(v2, "v2")).json
        self.assertEqual(out["CodeSha256"], h.b64_sha256(v2))
        self.assertNotEqual(out["RevisionId"], before["RevisionId"])
        self.aws("lambda", "wait", "function-updated-v2", "--function-name", name)
        _, res = self.invoke_ok(name, {})
        self.assertEqual(res["version"], "v2")

    def test_cli_update_configuration(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, Environment={"Variables": {"OLD": "1"}})
        out = self.aws("lambda", "update-function-configuration", "--function-name", name,
                       "--timeout", "12", "--memory-size", "384", "--description", "from cli",
                       "--environment", "Variables={NEW=2}").json
        self.assertEqual((out["Timeout"], out["MemorySize"], out["Description"]), (12, 384, "from cli"))
        self.assertEqual(out["Environment"]["Variables"], {"NEW": "2"})
        self.aws("lambda", "wait", "function-updated-v2", "--function-name", name)

    def test_cli_invoke_with_log_tail(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        outfile = self.tmp / f"{name}.json"
        r = self.aws("lambda", "invoke", "--function-name", name, "--log-type", "Tail",
                     *self.payload_args('{"from": "cli", "n": 1}'), str(outfile))
        meta = r.json
        self.assertEqual(meta["StatusCode"], 200)
        self.assertEqual(meta["ExecutedVersion"], "$LATEST")
        self.assertNotIn("FunctionError", meta)
        result = json.loads(outfile.read_text())
        self.assertEqual(result["event"], {"from": "cli", "n": 1})
        rid = result["context"]["request_id"]
        log = base64.b64decode(meta["LogResult"]).decode()
        self.assertIn(f"START RequestId: {rid} Version: $LATEST", log)
        self.assertIn(f"probe-log-line op=echo request={rid}", log)
        self.assertIn(f"END RequestId: {rid}", log)
        self.assertRegex(log, h.report_line_re(rid, 128, cold=True))

    def test_cli_invoke_function_error(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        outfile = self.tmp / f"{name}.json"
        r = self.aws("lambda", "invoke", "--function-name", name,
                     *self.payload_args('{"op": "raise", "message": "cli boom"}'), str(outfile))
        self.assertEqual(r.json["FunctionError"], "Unhandled")
        err = json.loads(outfile.read_text())
        self.assertEqual((err["errorType"], err["errorMessage"]), ("ValueError", "cli boom"))

    def test_cli_delete_function(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, cleanup=False)
        self.aws("lambda", "delete-function", "--function-name", name)
        r = self.aws("lambda", "get-function", "--function-name", name, ok=False)
        self.assertNotEqual(r.rc, 0)
        self.assertIn("ResourceNotFoundException", r.stderr)
        self.assertIn(f"Function not found: {h.function_arn(name)}", r.stderr)

    def test_cli_errors_are_reported_by_name(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        r = self.aws("lambda", "create-function", "--function-name", name,
                     "--runtime", "python3.12", "--handler", "app.handler", "--role", h.ROLE,
                     "--zip-file", self.write_zip(py_probe_zip(), "dup"), ok=False)
        self.assertNotEqual(r.rc, 0)
        self.assertIn("ResourceConflictException", r.stderr)
        r = self.aws("lambda", "update-function-configuration", "--function-name", name,
                     "--memory-size", "10241", ok=False)
        self.assertNotEqual(r.rc, 0)
        self.assertIn("InvalidParameterValueException", r.stderr)


class CliV1Tests(_CliBase):
    """The AWS CLI on PATH (v1 on these machines) or LAMINA_AWS_CLI."""
    CLI = os.environ.get("LAMINA_AWS_CLI", "aws")


class CliV2DebianTests(_CliBase):
    """Debian's awscli package (CLI v2.9, older botocore model). Skipped when not installed."""
    CLI = "/usr/bin/aws" if os.path.exists("/usr/bin/aws") else None


del _CliBase  # keep the abstract base out of discovery

if __name__ == "__main__":
    unittest.main()
