"""Compatibility with what real clients show (issue #17), each item driven by the client named:

* ``aws lambda invoke --log-type Tail`` (AWS CLI v2, /usr/bin/aws): the decoded LogResult has START, the function's
  own line, END and REPORT, with ``Init Duration`` on the cold invoke and without it on the warm one, for Python,
  Node.js and provided.al2023 (a bash bootstrap).
* Unhandled errors (AWS CLI v2): ``"FunctionError": "Unhandled"`` in the output, the error JSON in the outfile,
  for Python, Node.js and provided.al2023 (what the bootstrap posted to /runtime/invocation/ID/error).
* CreateFunction with a corrupt or non-zip ZipFile (boto3, the AWS SDK for JavaScript v3 run by node, and AWS CLI
  v2, which refuses what is not a zip at all before sending): 400 InvalidParameterValueException "Could not unzip
  uploaded file. ...", and nothing stored (GetFunction 404, not listed, no new file under <data dir>/code/).
* Two layers holding the same file (AWS CLI v2): the later layer wins in /opt; reordering them flips it.
* ``ExecutedVersion`` (AWS CLI v2) through ``--qualifier``, ``NAME:alias``, ``NAME:version`` and the alias ARN,
  before and after update-alias, confirmed by the version the function says it is.
* Provisioned concurrency (AWS CLI v2): put on an alias, poll until READY, the first invoke has no Init Duration.
* ``aws logs tail --follow`` (AWS CLI v2) started before invocations shows each of them.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import queue
import re
import subprocess
import threading
import time
import unittest
import zipfile
import zlib
from pathlib import Path

import lamina_harness as h
from lamina_functions import NODE_CJS, bash_bootstrap_zip, py_probe_zip

MODULE = __name__
CLI_V2 = "/usr/bin/aws"
UNZIP_MESSAGE = "Could not unzip uploaded file. Please check your file, then try to upload again."
CLI_ZIP_MESSAGE = "--zip-file must be a zip file with the fileb:// prefix"

# A provided.al2023 bootstrap whose every invocation fails through /runtime/invocation/ID/error.
FAILING_BOOTSTRAP = r'''#!/bin/bash
set -euo pipefail
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  curl -sS -D "$HEADERS" -o /dev/null "$API/invocation/next"
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$HEADERS"
  echo "bootstrap failing $REQUEST_ID"
  curl -sS -X POST "$API/invocation/$REQUEST_ID/error" -H "Lambda-Runtime-Function-Error-Type: Custom.BashFailure" \
    --data-binary "{\"errorType\":\"Custom.BashFailure\",\"errorMessage\":\"bash refused $REQUEST_ID\",\"stackTrace\":[\"bootstrap line 11\"]}" \
    -o /dev/null
done
'''

# Says which version ran, from the environment and the context.
VERSION_PY = '''
import os

def handler(event, context):
    print("running version", os.environ["AWS_LAMBDA_FUNCTION_VERSION"])
    return {"version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"], "tag": os.environ.get("TAG"),
            "context_version": context.function_version, "invoked_arn": context.invoked_function_arn,
            "init": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE")}
'''

# A Node.js (CommonJS) script run on this machine with NODE_PATH at the SDK: tries CreateFunction with each package,
# then GetFunction and ListFunctions, and prints what the SDK reported as JSON.
JS_CREATE_SCRIPT = r'''
const { LambdaClient, CreateFunctionCommand, GetFunctionCommand, ListFunctionsCommand } = require("@aws-sdk/client-lambda");
const fs = require("fs");

const [endpoint, casesFile, role] = process.argv.slice(2);
const client = new LambdaClient({
  endpoint, region: "us-east-1", maxAttempts: 1,
  credentials: { accessKeyId: "test", secretAccessKey: "test" },
});
const failure = (e) => ({ name: e.name, message: e.message, status: e.$metadata && e.$metadata.httpStatusCode,
                          requestId: e.$metadata && e.$metadata.requestId });

(async () => {
  const cases = JSON.parse(fs.readFileSync(casesFile, "utf8"));
  const results = {};
  for (const c of cases) {
    const result = {};
    try {
      const created = await client.send(new CreateFunctionCommand({
        FunctionName: c.name, Runtime: "python3.12", Role: role, Handler: "app.handler",
        Code: { ZipFile: Buffer.from(c.zip, "base64") },
      }));
      result.created = created.FunctionArn;
    } catch (e) {
      result.error = failure(e);
    }
    try {
      await client.send(new GetFunctionCommand({ FunctionName: c.name }));
      result.get = "found";
    } catch (e) {
      result.get = failure(e);
    }
    results[c.name] = result;
  }
  const listed = [];
  let marker;
  do {
    const page = await client.send(new ListFunctionsCommand(marker ? { Marker: marker } : {}));
    listed.push(...page.Functions.map((f) => f.FunctionName));
    marker = page.NextMarker;
  } while (marker);
  console.log(JSON.stringify({ results, listed }));
})().catch((e) => { console.error(e); process.exit(1); });
'''


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


# ---- corrupt packages ---------------------------------------------------------------------------

def _good_zip() -> bytes:
    # Enough incompressible-ish text that the deflated data is a few KB (room to corrupt its middle).
    filler = "\n".join("# " + hashlib.sha256(str(i).encode()).hexdigest() for i in range(300))
    return h.make_zip({"app.py": "def handler(event, context):\n    return 'fine'\n" + filler + "\n"})


def _flip(data: bytearray, offset: int) -> None:
    data[offset] ^= 0xFF


def bad_packages() -> dict[str, bytes]:
    """Four packages Lambda cannot unzip, each checked to be refused by Python's zipfile too."""
    good = _good_zip()
    assert good.startswith(b"PK\x03\x04")
    central = good.index(b"PK\x01\x02")

    bad_crc = bytearray(good)
    _flip(bad_crc, 14)               # CRC-32 in the local file header
    _flip(bad_crc, central + 16)     # CRC-32 in the central directory header

    bad_data = bytearray(good)
    name_len, extra_len = int.from_bytes(good[26:28], "little"), int.from_bytes(good[28:30], "little")
    data_start = 30 + name_len + extra_len
    compressed = int.from_bytes(good[18:22], "little")
    middle = data_start + compressed // 2
    for i in range(16):
        _flip(bad_data, middle + i)

    packages = {
        "not-a-zip": b"this is a text file, not a deployment package\n" * 20,
        "truncated": good[: len(good) // 2],
        "bad-crc": bytes(bad_crc),
        "bad-data": bytes(bad_data),
    }
    # The fixtures are what their names say: zipfile cannot open the first two, and cannot read back the last two.
    for label in ("not-a-zip", "truncated"):
        assert not zipfile.is_zipfile(io.BytesIO(packages[label])), label
    for label in ("bad-crc", "bad-data"):
        with zipfile.ZipFile(io.BytesIO(packages[label])) as zf:
            try:
                bad = zf.testzip()
            except (zipfile.BadZipFile, zlib.error) as e:  # a broken deflate stream
                bad = str(e)
            assert bad, f"{label} reads back fine"
    return packages


# ---- the tests ----------------------------------------------------------------------------------

class CliV2CompatTests(h.CliTestCase):
    CLI = CLI_V2 if os.path.exists(CLI_V2) else None

    # ---- helpers --------------------------------------------------------------------------------
    def fileb(self, data: bytes, label: str) -> str:
        path = self.tmp / f"{self.fn_name(label)}.zip"
        path.write_bytes(data)
        return f"fileb://{path}"

    def cli_invoke(self, function: str, payload: dict | None = None, *extra: str) -> tuple[dict, bytes]:
        """``aws lambda invoke`` (CLI v2): returns the CLI's JSON output and the outfile's bytes."""
        outfile = self.tmp / f"{self.fn_name('out')}.json"
        r = self.aws("lambda", "invoke", "--function-name", function,
                     "--payload", json.dumps(payload if payload is not None else {}),
                     "--cli-binary-format", "raw-in-base64-out", *extra, str(outfile))
        self.assertTrue(outfile.exists(), f"no outfile written: {r!r}")
        return r.json, outfile.read_bytes()

    def tail_of(self, out: dict) -> str:
        self.assertIn("LogResult", out, out)
        return base64.b64decode(out["LogResult"]).decode("utf-8", "replace")

    def request_id_of(self, tail: str) -> str:
        m = re.search(r"^START RequestId: (\S+) Version: \$LATEST$", tail, re.M)
        self.assertIsNotNone(m, f"no START line for $LATEST in LogResult:\n{tail}")
        return m.group(1)

    def wait_updated_cli(self, name: str) -> None:
        self.aws("lambda", "wait", "function-updated-v2", "--function-name", name)

    def code_files(self) -> set[str] | None:
        data_dir = self.server.data_dir
        if data_dir is None:
            return None
        code = Path(data_dir) / "code"
        return set(os.listdir(code)) if code.exists() else set()

    def assertNothingStored(self, name: str, code_before: set[str] | None) -> None:
        self.assertAwsError(lambda: self.lam.get_function(FunctionName=name), 404, "ResourceNotFoundException")
        self.assertFunctionAbsent(name)
        if code_before is not None:
            self.assertEqual(self.code_files(), code_before, f"files appeared under <data>/code/ for {name}")

    # ---- 1. LogResult for three runtimes, cold then warm ---------------------------------------
    def test_log_tail_cold_then_warm_for_python_node_and_provided(self):
        cases = [
            ("python3.12", "app.handler", py_probe_zip(), lambda rid: f"probe-log-line op=echo request={rid}",
             lambda out: out["context"]["request_id"]),
            ("nodejs20.x", "index.handler", h.make_zip({"index.js": NODE_CJS}),
             lambda rid: f"probe-log-line op=echo request={rid}", lambda out: out["context"]["request_id"]),
            ("provided.al2023", "function.handler", bash_bootstrap_zip(), lambda rid: f"bootstrap handling {rid}",
             lambda out: out["request_id"]),
        ]
        for runtime, handler, code, printed, seen_id in cases:
            with self.subTest(runtime=runtime):
                name = self.fn_name(runtime.replace(".", ""))
                self.create_function(code, runtime=runtime, handler=handler, name=name)
                ids = []
                for invoke, cold in (("cold", True), ("warm", False)):
                    out, payload = self.cli_invoke(name, {"n": invoke}, "--log-type", "Tail")
                    self.assertEqual(out["StatusCode"], 200, out)
                    self.assertNotIn("FunctionError", out, payload)
                    self.assertEqual(out.get("ExecutedVersion"), "$LATEST", out)
                    tail = self.tail_of(out)
                    rid = self.request_id_of(tail)
                    self.assertEqual(seen_id(json.loads(payload)), rid, f"{invoke}: the function saw another request id")
                    lines = tail.splitlines()
                    self.assertIn(printed(rid), "\n".join(lines), f"{invoke}: the function's own line is missing:\n{tail}")
                    self.assertIn(f"END RequestId: {rid}", lines, f"{invoke}: no END line:\n{tail}")
                    self.assertRegex(tail, h.report_line_re(rid, cold=cold),
                                     f"{invoke}: REPORT line {'without' if cold else 'with'} Init Duration:\n{tail}")
                    ids.append(rid)
                self.assertNotEqual(ids[0], ids[1])

    # ---- 2. Unhandled errors ----------------------------------------------------------------------
    def test_unhandled_error_output_and_outfile_for_python_node_and_provided(self):
        with self.subTest(runtime="python3.12"):
            name = self.fn_name("py")
            self.create_function(py_probe_zip(), name=name)
            out, payload = self.cli_invoke(name, {"op": "raise", "message": "python says no"})
            self.assertEqual(out.get("FunctionError"), "Unhandled", out)
            self.assertEqual(out["StatusCode"], 200, out)
            error = json.loads(payload)
            self.assertEqual(error["errorType"], "ValueError", error)
            self.assertEqual(error["errorMessage"], "python says no", error)
            self.assertIsInstance(error.get("stackTrace"), list, error)
            self.assertTrue(any("raise ValueError" in frame for frame in error["stackTrace"]), error)

        with self.subTest(runtime="nodejs20.x"):
            name = self.fn_name("node")
            self.create_function(h.make_zip({"index.js": NODE_CJS}), name=name, runtime="nodejs20.x",
                                 handler="index.handler")
            out, payload = self.cli_invoke(name, {"op": "raise", "message": "node says no"})
            self.assertEqual(out.get("FunctionError"), "Unhandled", out)
            self.assertEqual(out["StatusCode"], 200, out)
            error = json.loads(payload)
            self.assertEqual(error["errorType"], "Error", error)
            self.assertEqual(error["errorMessage"], "node says no", error)

        with self.subTest(runtime="provided.al2023"):
            name = self.fn_name("provided")
            self.create_function(h.make_zip({"bootstrap": FAILING_BOOTSTRAP}, executables=["bootstrap"]), name=name,
                                 runtime="provided.al2023", handler="function.handler")
            out, payload = self.cli_invoke(name, {}, "--log-type", "Tail")
            self.assertEqual(out.get("FunctionError"), "Unhandled", out)
            self.assertEqual(out["StatusCode"], 200, out)
            rid = self.request_id_of(self.tail_of(out))
            self.assertEqual(json.loads(payload), {"errorType": "Custom.BashFailure",
                                                   "errorMessage": f"bash refused {rid}",
                                                   "stackTrace": ["bootstrap line 11"]})

    # ---- 3. Corrupt packages ----------------------------------------------------------------------
    def test_corrupt_zip_with_boto3(self):
        for label, data in bad_packages().items():
            with self.subTest(package=label):
                name = self.fn_name(label)
                before = self.code_files()
                e = self.assertAwsError(lambda: self.lam.create_function(
                    FunctionName=name, Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                    Code={"ZipFile": data}), 400, "InvalidParameterValueException")
                self.assertEqual(e.response["Error"]["Message"], UNZIP_MESSAGE)
                self.assertNothingStored(name, before)

    def test_corrupt_zip_with_the_javascript_sdk(self):
        done = subprocess.run([str(h.REPO_ROOT / "tests/integration/prepare_js_sdk.sh")], capture_output=True,
                              text=True, timeout=600)
        self.assertEqual(done.returncode, 0, f"prepare_js_sdk.sh failed: {done.stderr[-3000:]}")
        node_modules = done.stdout.strip().splitlines()[-1]
        packages = bad_packages()
        names = {label: self.fn_name(label) for label in packages}
        cases = [{"name": names[label], "zip": base64.b64encode(data).decode()} for label, data in packages.items()]
        cases_file = self.tmp / f"{self.fn_name('cases')}.json"
        cases_file.write_text(json.dumps(cases))
        script = self.tmp / f"{self.fn_name('create')}.cjs"
        script.write_text(JS_CREATE_SCRIPT)
        before = self.code_files()
        run = subprocess.run(["node", str(script), self.server.url, str(cases_file), h.ROLE], capture_output=True,
                             text=True, timeout=120, env={**os.environ, "NODE_PATH": node_modules})
        self.assertEqual(run.returncode, 0, f"node failed: {run.stderr[-3000:]}")
        report = json.loads(run.stdout.strip().splitlines()[-1])
        for label, name in names.items():
            with self.subTest(package=label):
                result = report["results"][name]
                self.assertNotIn("created", result, result)
                self.assertEqual(result["error"]["name"], "InvalidParameterValueException", result)
                self.assertEqual(result["error"]["status"], 400, result)
                self.assertEqual(result["error"]["message"], UNZIP_MESSAGE, result)
                self.assertTrue(result["error"]["requestId"], result)
                self.assertEqual(result["get"]["name"], "ResourceNotFoundException", result)
                self.assertEqual(result["get"]["status"], 404, result)
                self.assertNotIn(name, report["listed"])
                self.assertNothingStored(name, None)
        if before is not None:
            self.assertEqual(self.code_files(), before, "files appeared under <data>/code/")

    def test_corrupt_zip_with_cli_v2(self):
        for label, data in bad_packages().items():
            with self.subTest(package=label):
                name = self.fn_name(label)
                before = self.code_files()
                r = self.aws("lambda", "create-function", "--function-name", name, "--runtime", "python3.12",
                             "--handler", "app.handler", "--role", h.ROLE, "--zip-file", self.fileb(data, label), ok=False)
                self.assertNotEqual(r.rc, 0, repr(r))
                self.assertEqual(r.stdout.strip(), "", repr(r))
                if label in ("not-a-zip", "truncated"):
                    # CLI v2 opens the file as a zip before sending anything (the same against AWS).
                    self.assertIn(CLI_ZIP_MESSAGE, r.stderr, repr(r))
                else:
                    # Its central directory reads fine, so the CLI sends it and shows the server's refusal.
                    self.assertIn("InvalidParameterValueException", r.stderr, repr(r))
                    self.assertIn(UNZIP_MESSAGE, r.stderr, repr(r))
                self.assertNothingStored(name, before)

    # ---- 4. Layers with the same file ----------------------------------------------------------
    def test_later_layer_wins_and_reordering_flips_it(self):
        arns = {}
        for label in ("A", "B"):
            layer = self.fn_name(f"layer{label}")
            zip_arg = self.fileb(h.make_zip({"same.txt": f"from layer {label}\n", f"only-{label}.txt": label}), label)
            out = self.aws("lambda", "publish-layer-version", "--layer-name", layer, "--zip-file", zip_arg,
                           "--compatible-runtimes", "python3.12").json
            self.assertEqual(out["Version"], 1, out)
            arns[label] = out["LayerVersionArn"]

        name = self.fn_name()
        out = self.aws("lambda", "create-function", "--function-name", name, "--runtime", "python3.12",
                       "--handler", "app.handler", "--role", h.ROLE, "--zip-file", self.fileb(py_probe_zip(), "code"),
                       "--layers", arns["A"], arns["B"]).json
        self.addCleanup(self._delete_quietly, name)
        self.assertEqual([layer["Arn"] for layer in out["Layers"]], [arns["A"], arns["B"]])
        self.aws("lambda", "wait", "function-active-v2", "--function-name", name)

        def opt() -> tuple[str, list[str]]:
            out, payload = self.cli_invoke(name, {"op": "cat", "path": "/opt/same.txt"})
            self.assertNotIn("FunctionError", out, payload)
            same = json.loads(payload)
            self.assertTrue(same.get("ok"), same)
            out, payload = self.cli_invoke(name, {"op": "listdir", "path": "/opt"})
            self.assertNotIn("FunctionError", out, payload)
            return same["data"], json.loads(payload).get("entries")

        data, entries = opt()
        self.assertEqual(data, "from layer B\n")
        self.assertTrue({"same.txt", "only-A.txt", "only-B.txt"} <= set(entries or []), entries)

        out = self.aws("lambda", "update-function-configuration", "--function-name", name,
                       "--layers", arns["B"], arns["A"]).json
        self.assertEqual([layer["Arn"] for layer in out["Layers"]], [arns["B"], arns["A"]])
        self.wait_updated_cli(name)
        data, entries = opt()
        self.assertEqual(data, "from layer A\n")
        self.assertTrue({"same.txt", "only-A.txt", "only-B.txt"} <= set(entries or []), entries)

    # ---- 5. ExecutedVersion -----------------------------------------------------------------------
    def test_executed_version_through_alias_version_and_arn(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": VERSION_PY}), name=name, Environment={"Variables": {"TAG": "one"}})
        self.assertEqual(self.aws("lambda", "publish-version", "--function-name", name).json["Version"], "1")
        self.aws("lambda", "update-function-configuration", "--function-name", name,
                 "--environment", "Variables={TAG=two}")
        self.wait_updated_cli(name)
        self.assertEqual(self.aws("lambda", "publish-version", "--function-name", name).json["Version"], "2")
        alias = self.aws("lambda", "create-alias", "--function-name", name, "--name", "live",
                         "--function-version", "1").json
        self.assertEqual(alias["AliasArn"], h.function_arn(name, "live"))

        def check(how: str, args: list[str], version: str, invoked_arn: str) -> None:
            with self.subTest(how=how, expected=version):
                out, payload = self.cli_invoke(*args)
                self.assertNotIn("FunctionError", out, payload)
                self.assertEqual(out.get("ExecutedVersion"), version, out)
                ran = json.loads(payload)
                self.assertEqual(ran["version"], version, ran)
                self.assertEqual(ran["context_version"], version, ran)
                self.assertEqual(ran["tag"], {"1": "one", "2": "two"}[version], ran)
                self.assertEqual(ran["invoked_arn"], invoked_arn, ran)

        live_arn = h.function_arn(name, "live")
        check("--qualifier live", [name, {}, "--qualifier", "live"], "1", live_arn)
        check("NAME:live", [f"{name}:live"], "1", live_arn)
        check("NAME:2", [f"{name}:2"], "2", h.function_arn(name, "2"))
        check("alias ARN", [live_arn], "1", live_arn)

        updated = self.aws("lambda", "update-alias", "--function-name", name, "--name", "live",
                           "--function-version", "2").json
        self.assertEqual(updated["FunctionVersion"], "2")
        check("--qualifier live", [name, {}, "--qualifier", "live"], "2", live_arn)
        check("NAME:live", [f"{name}:live"], "2", live_arn)
        check("alias ARN", [live_arn], "2", live_arn)
        check("NAME:1", [f"{name}:1"], "1", h.function_arn(name, "1"))

    # ---- 6. Provisioned concurrency ---------------------------------------------------------------
    def test_provisioned_alias_ready_then_first_invoke_is_warm(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": VERSION_PY}), name=name, Timeout=30)
        self.assertEqual(self.aws("lambda", "publish-version", "--function-name", name).json["Version"], "1")
        self.aws("lambda", "create-alias", "--function-name", name, "--name", "live", "--function-version", "1")
        put = self.aws("lambda", "put-provisioned-concurrency-config", "--function-name", name, "--qualifier", "live",
                       "--provisioned-concurrent-executions", "1").json
        self.assertEqual(put["RequestedProvisionedConcurrentExecutions"], 1, put)
        self.assertIn(put["Status"], ("IN_PROGRESS", "READY"), put)

        deadline = time.monotonic() + 60
        while True:
            got = self.aws("lambda", "get-provisioned-concurrency-config", "--function-name", name,
                           "--qualifier", "live").json
            if got["Status"] == "READY":
                break
            self.assertEqual(got["Status"], "IN_PROGRESS", got)
            if time.monotonic() > deadline:
                self.fail(f"provisioned concurrency not READY within 60 s: {got}")
        self.assertEqual(got["AllocatedProvisionedConcurrentExecutions"], 1, got)
        self.assertEqual(got["AvailableProvisionedConcurrentExecutions"], 1, got)

        out, payload = self.cli_invoke(name, {}, "--qualifier", "live", "--log-type", "Tail")
        self.assertNotIn("FunctionError", out, payload)
        self.assertEqual(out.get("ExecutedVersion"), "1", out)
        tail = self.tail_of(out)
        m = re.search(r"^START RequestId: (\S+) Version: 1$", tail, re.M)
        self.assertIsNotNone(m, f"no START line for version 1:\n{tail}")
        self.assertRegex(tail, h.report_line_re(m.group(1), cold=False),
                         f"the first invoke on a provisioned environment reports Init Duration:\n{tail}")
        self.assertEqual(json.loads(payload)["init"], "provisioned-concurrency", payload)

    # ---- 7. aws logs tail --follow ----------------------------------------------------------------
    def test_logs_tail_follow_shows_invocations_made_after_it_started(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        _, first = self.invoke_ok(name, {"n": 0})  # the log group exists from the first invocation on
        group = f"/aws/lambda/{name}"

        command = self.server.aws_cli_command("logs", "tail", group, "--follow", "--format", "short", cli=CLI_V2)
        follow = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=self.server.aws_cli_env())
        lines: queue.Queue[str] = queue.Queue()
        seen: list[str] = []
        threading.Thread(target=lambda: [lines.put(line) for line in follow.stdout], daemon=True).start()

        def read_until(wanted: set[str], timeout: float) -> None:
            missing = set(wanted)
            deadline = time.monotonic() + timeout
            while missing and time.monotonic() < deadline:
                try:
                    line = lines.get(timeout=0.25)
                except queue.Empty:
                    if follow.poll() is not None:
                        break
                    continue
                seen.append(line.rstrip("\n"))
                missing = {text for text in missing if text not in line}
            if missing:
                stderr = follow.stderr.read() if follow.poll() is not None else "(still running)"
                self.fail(f"`aws logs tail --follow` did not show {sorted(missing)} within {timeout} s; "
                          f"exit={follow.poll()} stderr={stderr[-1500:]!r}; last lines: {seen[-15:]}")

        try:
            # The tail is running once it has shown what was there before it started.
            read_until({f"request={first['context']['request_id']}"}, 30)
            ids = []
            for n in (1, 2, 3):
                resp, out = self.invoke_ok(name, {"n": n})
                rid = resp["ResponseMetadata"]["RequestId"]
                self.assertEqual(out["context"]["request_id"], rid)
                ids.append(rid)
            wanted = set()
            for rid in ids:
                wanted |= {f"probe-log-line op=echo request={rid}", f"REPORT RequestId: {rid}"}
            read_until(wanted, 30)
        finally:
            follow.kill()
            follow.wait(10)
            follow.stdout.close()
            follow.stderr.close()


if __name__ == "__main__":
    unittest.main()
