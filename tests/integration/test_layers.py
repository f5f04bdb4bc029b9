"""Layers (issue #4) through boto3, raw signed HTTP and the AWS CLI: PublishLayerVersion, GetLayerVersion(ByArn),
ListLayers, ListLayerVersions, DeleteLayerVersion; functions with layers merged into /opt (later wins), Python and
Node.js libraries from layers, a custom runtime's bootstrap from a layer, the 5-layer and 250 MB limits."""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import tempfile
import time
import unittest
from pathlib import Path

import requests

import lamina_harness as h
from lamina_functions import BASH_BOOTSTRAP, py_probe_zip

MODULE = __name__
LAYERS = "/2018-10-31/layers"
VALIDATION = ("ValidationException", "InvalidParameterValueException")

# Reports what the function sees of its layers.
PY_LAYER_USER = r'''
import os

def handler(event, context):
    out = {"code": "__CODE__"}
    try:
        import mylib
        out["mylib"] = mylib.VALUE
    except ImportError as e:
        out["mylib"] = "ImportError: %s" % e
    try:
        import shared
        out["shared"] = shared.WHO
    except ImportError as e:
        out["shared"] = "ImportError: %s" % e
    out["opt"] = sorted(os.listdir("/opt"))
    return out
'''

NODE_LAYER_USER = r'''
const greeter = require("greeter");
exports.handler = async () => ({ greeting: greeter.greet("lamina"), version: greeter.version });
'''


# A minimal external extension in bash: registers for INVOKE and SHUTDOWN and logs what it receives.
BASH_EXTENSION = r'''#!/bin/bash
set -euo pipefail
API="http://${AWS_LAMBDA_RUNTIME_API}/2020-01-01/extension"
HEADERS="$(mktemp)"
curl -sS -D "$HEADERS" -o /dev/null -X POST "$API/register" \
  -H "Lambda-Extension-Name: $(basename "$0")" -d '{"events": ["INVOKE", "SHUTDOWN"]}'
ID=$(grep -Fi Lambda-Extension-Identifier "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
echo "layer-extension registered"
while true; do
  EVENT=$(curl -sS -H "Lambda-Extension-Identifier: $ID" "$API/event/next")
  case "$EVENT" in
    *SHUTDOWN*) exit 0 ;;
    *) echo "layer-extension saw $(echo "$EVENT" | grep -o '"eventType":"[A-Z]*"')" ;;
  esac
done
'''


def py_user_zip(code: str = "v1") -> bytes:
    return h.make_zip({"app.py": PY_LAYER_USER.replace("__CODE__", code)})


def python_layer(**modules: str) -> bytes:
    return h.make_zip({f"python/{name}.py": source for name, source in modules.items()})


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


class _LayerBase(h.LaminaTestCase):

    def layer_name(self, suffix: str = "") -> str:
        return self.fn_name(suffix)  # same rules as function names are fine for layer names

    def publish_layer(self, name: str, zip_bytes: bytes, **kwargs) -> dict:
        resp = self.lam.publish_layer_version(LayerName=name, Content={"ZipFile": zip_bytes}, **kwargs)
        self.assertEqual(resp["ResponseMetadata"]["HTTPStatusCode"], 201)
        return resp


class LayerApiTests(_LayerBase):

    def test_publish_get_list_delete(self):
        name = self.layer_name()
        zip1 = python_layer(mylib="VALUE = 'one'\n")
        first = self.publish_layer(name, zip1, Description="first", CompatibleRuntimes=["python3.12", "python3.13"],
                                   CompatibleArchitectures=["x86_64"], LicenseInfo="MIT")
        self.assertEqual(first["Version"], 1)
        self.assertEqual(first["LayerArn"], f"arn:aws:lambda:{h.REGION}:{h.ACCOUNT}:layer:{name}")
        self.assertEqual(first["LayerVersionArn"], f"{first['LayerArn']}:1")
        self.assertEqual((first["Description"], first["LicenseInfo"]), ("first", "MIT"))
        self.assertEqual(first["CompatibleRuntimes"], ["python3.12", "python3.13"])
        self.assertEqual(first["CompatibleArchitectures"], ["x86_64"])
        self.assertEqual(first["Content"]["CodeSha256"], h.b64_sha256(zip1))
        self.assertEqual(first["Content"]["CodeSize"], len(zip1))
        self.assertRegex(first["CreatedDate"], h.LAST_MODIFIED_RE)
        self.assertEqual(requests.get(first["Content"]["Location"], timeout=30).content, zip1)

        second = self.publish_layer(name, python_layer(mylib="VALUE = 'two'\n"), CompatibleRuntimes=["nodejs20.x"])
        self.assertEqual(second["Version"], 2)

        got = self.lam.get_layer_version(LayerName=name, VersionNumber=1)
        self.assertEqual(got["LayerVersionArn"], first["LayerVersionArn"])
        self.assertEqual(got["Content"]["CodeSha256"], first["Content"]["CodeSha256"])
        by_arn = self.lam.get_layer_version_by_arn(Arn=second["LayerVersionArn"])
        self.assertEqual(by_arn["Version"], 2)
        by_layer_arn = self.lam.get_layer_version(LayerName=first["LayerArn"], VersionNumber=2)
        self.assertEqual(by_layer_arn["Version"], 2)

        versions = self.lam.list_layer_versions(LayerName=name)["LayerVersions"]
        self.assertEqual([v["Version"] for v in versions], [2, 1])
        self.assertEqual(versions[1]["LayerVersionArn"], first["LayerVersionArn"])
        filtered = self.lam.list_layer_versions(LayerName=name, CompatibleRuntime="python3.12")["LayerVersions"]
        self.assertEqual([v["Version"] for v in filtered], [1])
        page = self.lam.list_layer_versions(LayerName=name, MaxItems=1)
        self.assertEqual([v["Version"] for v in page["LayerVersions"]], [2])
        rest = self.lam.list_layer_versions(LayerName=name, Marker=page["NextMarker"])
        self.assertEqual([v["Version"] for v in rest["LayerVersions"]], [1])

        layers = {layer["LayerName"]: layer for layer in self.all_layers()}
        self.assertEqual(layers[name]["LatestMatchingVersion"]["Version"], 2)
        layers = {layer["LayerName"]: layer for layer in self.all_layers(CompatibleRuntime="python3.13")}
        self.assertEqual(layers[name]["LatestMatchingVersion"]["Version"], 1)
        layers = {layer["LayerName"]: layer for layer in self.all_layers(CompatibleArchitecture="arm64")}
        self.assertNotIn(name, layers)

        self.lam.delete_layer_version(LayerName=name, VersionNumber=1)
        self.lam.delete_layer_version(LayerName=name, VersionNumber=1)  # idempotent
        e = self.assertAwsError(lambda: self.lam.get_layer_version(LayerName=name, VersionNumber=1), 404,
                                "ResourceNotFoundException")
        self.assertIn("does not exist", e.response["Error"]["Message"])
        self.assertAwsError(lambda: self.lam.get_layer_version_by_arn(Arn=first["LayerVersionArn"]), 404,
                            "ResourceNotFoundException")
        self.assertEqual([v["Version"] for v in self.lam.list_layer_versions(LayerName=name)["LayerVersions"]], [2])
        # Numbers are never reused, even after every version is gone.
        self.lam.delete_layer_version(LayerName=name, VersionNumber=2)
        self.assertNotIn(name, [layer["LayerName"] for layer in self.all_layers()])
        self.assertEqual(self.publish_layer(name, zip1)["Version"], 3)

    def all_layers(self, **kwargs) -> list[dict]:
        return [layer for page in self.lam.get_paginator("list_layers").paginate(**kwargs, PaginationConfig={"PageSize": 2})
                for layer in page["Layers"]]

    def test_unknown_layers_and_bad_input(self):
        name = self.layer_name()
        self.assertAwsError(lambda: self.lam.get_layer_version(LayerName=name, VersionNumber=1), 404,
                            "ResourceNotFoundException")
        self.assertEqual(self.lam.list_layer_versions(LayerName=name)["LayerVersions"], [])
        self.assertAwsError(lambda: self.lam.get_layer_version(LayerName=name, VersionNumber=0), 400,
                            "InvalidParameterValueException")
        bad = {
            "not a zip": {"Content": {"ZipFile": "bm90IGEgemlw"}},
            "no content": {},
            "unknown runtime": {"Content": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="},
                                "CompatibleRuntimes": ["cobol85"]},
            "too many architectures": {"Content": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="},
                                       "CompatibleArchitectures": ["x86_64", "arm64", "x86_64"]},
            "S3 content": {"Content": {"S3Bucket": "bucket", "S3Key": "key.zip"}},
            "long description": {"Content": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}, "Description": "d" * 257},
        }
        for label, body in bad.items():
            with self.subTest(case=label):
                r = self.server.raw("POST", f"{LAYERS}/{name}/versions", body)
                self.assertRawError(r, 400)
        for bad_name in ("has space", "a" * 141):
            with self.subTest(name=bad_name):
                r = self.server.raw("POST", f"{LAYERS}/{h.quote_path_segment(bad_name)}/versions",
                                    {"Content": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}})
                self.assertRawError(r, 400, VALIDATION)
        r = self.server.raw("GET", LAYERS, query={"find": "LayerVersion", "Arn": "not-an-arn"})
        self.assertRawError(r, 400, VALIDATION)
        r = self.server.raw("GET", LAYERS, query={"CompatibleRuntime": "cobol85"})
        self.assertRawError(r, 400, VALIDATION)
        self.assertEqual(self.lam.list_layer_versions(LayerName=name)["LayerVersions"], [], "a refused publish published")


class FunctionLayerTests(_LayerBase):

    def test_python_module_from_layer_is_importable(self):
        layer = self.publish_layer(self.layer_name(), python_layer(mylib="VALUE = 'from the layer'\n"))
        name = self.fn_name()
        created = self.create_function(py_user_zip(), name=name, Layers=[layer["LayerVersionArn"]])
        self.assertEqual(created["Layers"], [{"Arn": layer["LayerVersionArn"], "CodeSize": layer["Content"]["CodeSize"]}])
        _, out = self.invoke_ok(name, {})
        self.assertEqual(out["mylib"], "from the layer")
        self.assertEqual(out["opt"], ["python"])
        got = self.lam.get_function(FunctionName=name)
        self.assertEqual(got["Configuration"]["Layers"][0]["Arn"], layer["LayerVersionArn"])

    def test_python_site_packages_path_from_layer(self):
        layer = self.publish_layer(self.layer_name(), h.make_zip(
            {"python/lib/python3.12/site-packages/mylib/__init__.py": "VALUE = 'site-packages'\n"}))
        name = self.fn_name()
        self.create_function(py_user_zip(), name=name, Layers=[layer["LayerVersionArn"]])
        self.assertEqual(self.invoke_ok(name, {})[1]["mylib"], "site-packages")

    def test_node_package_from_layer_is_importable(self):
        layer = self.publish_layer(self.layer_name(), h.make_zip({
            "nodejs/node_modules/greeter/package.json": '{"name": "greeter", "version": "1.2.3", "main": "index.js"}',
            "nodejs/node_modules/greeter/index.js":
                "exports.greet = (who) => `hello ${who}`;\nexports.version = require('./package.json').version;\n",
        }), CompatibleRuntimes=["nodejs20.x"])
        name = self.fn_name()
        self.create_function(h.make_zip({"index.js": NODE_LAYER_USER}), name=name, runtime="nodejs20.x",
                             handler="index.handler", Layers=[layer["LayerVersionArn"]])
        _, out = self.invoke_ok(name, {})
        self.assertEqual(out, {"greeting": "hello lamina", "version": "1.2.3"})

    def test_custom_runtime_bootstrap_from_layer(self):
        layer = self.publish_layer(self.layer_name(), h.make_zip({"bootstrap": BASH_BOOTSTRAP}, executables=["bootstrap"]),
                                   CompatibleRuntimes=["provided.al2023"])
        name = self.fn_name()
        # The function's own zip has no bootstrap: /opt/bootstrap (from the layer) is the runtime.
        self.create_function(h.make_zip({"handler.txt": "just data"}), name=name, runtime="provided.al2023",
                             handler="function.handler", Layers=[layer["LayerVersionArn"]])
        _, out = self.invoke_ok(name, {"hello": "layer"})
        self.assertEqual(out["echo"], {"hello": "layer"})
        self.assertEqual(out["handler"], "function.handler")

    def test_layers_merge_in_order_later_wins(self):
        a = self.publish_layer(self.layer_name("a"), python_layer(shared="WHO = 'a'\n", mylib="VALUE = 'only in a'\n"))
        b = self.publish_layer(self.layer_name("b"), h.make_zip({"python/shared.py": "WHO = 'b'\n",
                                                                 "bin/tool": "#!/bin/sh\necho tool\n"},
                                                                executables=["bin/tool"]))
        name = self.fn_name()
        self.create_function(py_user_zip(), name=name, Layers=[a["LayerVersionArn"], b["LayerVersionArn"]])
        _, out = self.invoke_ok(name, {})
        self.assertEqual((out["shared"], out["mylib"]), ("b", "only in a"))
        self.assertEqual(out["opt"], ["bin", "python"])
        self.lam.update_function_configuration(FunctionName=name, Layers=[b["LayerVersionArn"], a["LayerVersionArn"]])
        self.wait_updated(name)
        _, out = self.invoke_ok(name, {})
        self.assertEqual(out["shared"], "a")
        # Read-only /opt, like Lambda's.
        self.lam.update_function_code(FunctionName=name, ZipFile=py_probe_zip())
        self.wait_updated(name)
        _, wrote = self.invoke_ok(name, {"op": "write", "path": "/opt/python/new.py"})
        self.assertFalse(wrote["ok"], wrote)
        _, tool = self.invoke_ok(name, {"op": "listdir", "path": "/opt/bin"})
        self.assertEqual(tool["entries"], ["tool"])
        # Layers=[] removes them.
        self.lam.update_function_configuration(FunctionName=name, Layers=[])
        self.wait_updated(name)
        self.assertNotIn("Layers", self.lam.get_function_configuration(FunctionName=name))
        _, opt = self.invoke_ok(name, {"op": "listdir", "path": "/opt"})
        self.assertEqual(opt["entries"], [])

    def test_external_extension_from_layer_runs(self):
        layer = self.publish_layer(self.layer_name(), h.make_zip(
            {"extensions/layer-extension": BASH_EXTENSION}, executables=["extensions/layer-extension"]))
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, Layers=[layer["LayerVersionArn"]])
        resp, out = self.invoke_ok(name, {"op": "listdir", "path": "/opt/extensions"}, LogType="Tail")
        self.assertEqual(out["entries"], ["layer-extension"])
        log = h.decode_log_result(resp)
        self.assertIn("layer-extension registered", log)

    def test_versions_with_different_code_and_layers_answer_differently(self):
        one = self.publish_layer(self.layer_name("one"), python_layer(mylib="VALUE = 'layer one'\n"))
        two = self.publish_layer(self.layer_name("two"), python_layer(mylib="VALUE = 'layer two'\n"))
        name = self.fn_name()
        self.create_function(py_user_zip("code one"), name=name, Layers=[one["LayerVersionArn"]])
        self.assertEqual(self.lam.publish_version(FunctionName=name)["Version"], "1")
        self.lam.update_function_code(FunctionName=name, ZipFile=py_user_zip("code two"))
        self.wait_updated(name)
        self.lam.update_function_configuration(FunctionName=name, Layers=[two["LayerVersionArn"]])
        self.wait_updated(name)
        v2 = self.lam.publish_version(FunctionName=name)
        self.assertEqual(v2["Layers"][0]["Arn"], two["LayerVersionArn"])
        v1 = self.lam.get_function_configuration(FunctionName=name, Qualifier="1")
        self.assertEqual(v1["Layers"][0]["Arn"], one["LayerVersionArn"])
        for qualifier, expected in (("1", ("code one", "layer one")), ("2", ("code two", "layer two"))):
            with self.subTest(version=qualifier):
                resp, out = self.invoke_ok(name, {}, Qualifier=qualifier)
                self.assertEqual(resp["ExecutedVersion"], qualifier)
                self.assertEqual((out["code"], out["mylib"]), expected)

    def test_deleted_layer_version_keeps_working_for_its_functions(self):
        layer_name = self.layer_name()
        layer = self.publish_layer(layer_name, python_layer(mylib="VALUE = 'still here'\n"))
        other = self.publish_layer(self.layer_name("other"), python_layer(shared="WHO = 'other'\n"))
        name = self.fn_name()
        self.create_function(py_user_zip(), name=name, Layers=[layer["LayerVersionArn"], other["LayerVersionArn"]])
        self.lam.delete_layer_version(LayerName=layer_name, VersionNumber=1)
        self.assertEqual(self.invoke_ok(name, {})[1]["mylib"], "still here")
        # A new configuration (so a cold start) that keeps the deleted layer keeps working too.
        self.lam.update_function_configuration(FunctionName=name, MemorySize=256)
        self.wait_updated(name)
        self.assertEqual(self.invoke_ok(name, {})[1]["mylib"], "still here")
        self.assertEqual(self.lam.publish_version(FunctionName=name)["Version"], "1")
        self.assertEqual(self.invoke_ok(name, {}, Qualifier="1")[1]["mylib"], "still here")
        # But it can no longer be added to a function.
        e = self.assertAwsError(lambda: self.lam.update_function_configuration(FunctionName=name, Layers=[layer["LayerVersionArn"]]),
                                400, "InvalidParameterValueException")
        self.assertIn(f"Layer version {layer['LayerVersionArn']} does not exist.", e.response["Error"]["Message"])


class UnusedCodeTests(h.OwnServerTestCase, _LayerBase):
    """Code and layer packages nothing uses any more leave the disk (each deploy used to leave its zip and tree for
    good); what a configuration still uses stays, whatever was deleted around it."""

    SERVER_ARGS = ["--unused-code-retention", "2"]  # rounds every second

    def stored(self, hash_hex: str) -> bool:
        return (self.server.data_dir / "code" / f"{hash_hex}.zip").exists()

    def wait_gone(self, what: str, path: Path) -> None:
        deadline = time.monotonic() + 60
        while path.exists():
            self.assertLess(time.monotonic(), deadline, f"{what} ({path}) is still on disk")
            time.sleep(0.2)

    def test_unused_code_leaves_the_disk_and_used_code_stays(self):
        code = self.server.data_dir / "code"
        a_name = self.layer_name("a")
        a = self.publish_layer(a_name, python_layer(mylib="VALUE = 'from a'\n"))
        b = self.publish_layer(self.layer_name("b"), python_layer(shared="WHO = 'b'\n"))
        a_hash, b_hash = (base64.b64decode(x["Content"]["CodeSha256"]).hex() for x in (a, b))
        v1, v2, g1 = py_user_zip("v1"), py_user_zip("v2"), py_user_zip("g1")
        v1_hash, v2_hash, g1_hash = (hashlib.sha256(z).hexdigest() for z in (v1, v2, g1))

        name = self.fn_name()
        self.create_function(v1, name=name, Layers=[a["LayerVersionArn"], b["LayerVersionArn"]])
        self.assertEqual(self.lam.publish_version(FunctionName=name)["Version"], "1")
        merged = [p for p in (self.server.data_dir / "opt").iterdir() if not p.name.startswith("tmp-")]
        self.assertEqual(len(merged), 1, merged)
        # $LATEST moves on; version 1 keeps v1 and both layers, one of them deleted.
        self.lam.update_function_code(FunctionName=name, ZipFile=v2)
        self.wait_updated(name)
        self.lam.update_function_configuration(FunctionName=name, Layers=[])
        self.wait_updated(name)
        self.lam.delete_layer_version(LayerName=a_name, VersionNumber=1)

        # Another function's replaced code goes, rounds later.
        other = self.fn_name("other")
        self.create_function(g1, name=other)
        self.lam.update_function_code(FunctionName=other, ZipFile=py_user_zip("g2"))
        self.wait_updated(other)
        self.wait_gone("the replaced code", code / g1_hash)
        self.wait_gone("the replaced code's zip", code / f"{g1_hash}.zip")  # removed a moment after the tree (a full run caught the gap)
        for hash_hex in (v1_hash, v2_hash, a_hash, b_hash):
            self.assertTrue(self.stored(hash_hex) and (code / hash_hex).is_dir(), hash_hex)
        self.assertTrue(merged[0].is_dir())
        out = self.invoke_ok(name, {}, Qualifier="1")[1]
        self.assertEqual((out["code"], out["mylib"], out["shared"]), ("v1", "from a", "b"))
        self.assertEqual(self.invoke_ok(name, {})[1]["code"], "v2")

        # Version 1 deleted: its code, the deleted layer version's and the merged tree go; layer b (a live version) stays.
        self.lam.delete_function(FunctionName=name, Qualifier="1")
        self.wait_gone("version 1's code", code / v1_hash)
        self.wait_gone("the deleted layer version's code", code / a_hash)
        self.wait_gone("the merged layer tree", merged[0])
        self.assertTrue(self.stored(b_hash))
        self.assertTrue(self.stored(v2_hash))
        self.assertEqual(self.invoke_ok(name, {})[1]["code"], "v2")

        # The function deleted: its code goes; the same bytes uploaded again are stored whole again.
        self.lam.delete_function(FunctionName=name)
        self.wait_gone("a deleted function's code", code / v2_hash)
        self.create_function(v2, name=name)
        self.assertEqual(self.invoke_ok(name, {})[1]["code"], "v2")
        self.assertIn("code packages and layer trees nothing uses any more", self.server.output_since(0, limit=100_000))


class FunctionLayerValidationTests(_LayerBase):

    def test_layer_rules(self):
        layer_name = self.layer_name()
        arns = [self.publish_layer(layer_name, python_layer(mylib=f"VALUE = {i}\n"))["LayerVersionArn"] for i in range(2)]
        others = [self.publish_layer(self.layer_name(f"o{i}"), python_layer(mylib="VALUE = 0\n"))["LayerVersionArn"]
                  for i in range(5)]
        name = self.fn_name()
        self.create_function(py_user_zip(), name=name)
        cases = {
            "more than 5": (others + [arns[0]], "Cannot reference more than 5 layers."),
            "missing version": ([f"{arns[0][:arns[0].rindex(':')]}:99"], "does not exist"),
            "two versions of one layer": (arns, "Two different versions of the same layer"),
            "other region": ([arns[0].replace(h.REGION, "eu-west-1")], "same region"),
        }
        for label, (layers, message) in cases.items():
            with self.subTest(case=label):
                e = self.assertAwsError(lambda: self.lam.update_function_configuration(FunctionName=name, Layers=layers),
                                        400, "InvalidParameterValueException")
                self.assertIn(message, e.response["Error"]["Message"])
                self.assertAwsError(lambda: self.lam.create_function(
                    FunctionName=self.fn_name("x"), Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                    Code={"ZipFile": py_user_zip()}, Layers=layers), 400, "InvalidParameterValueException")
        r = self.server.raw("PUT", f"/2015-03-31/functions/{name}/configuration", {"Layers": ["not-an-arn"]})
        self.assertRawError(r, 400, VALIDATION)
        self.assertNotIn("Layers", self.lam.get_function_configuration(FunctionName=name))
        # Exactly 5 is fine.
        out = self.lam.update_function_configuration(FunctionName=name, Layers=others)
        self.assertEqual([layer["Arn"] for layer in out["Layers"]], others)

    @h.slow
    def test_code_and_layers_over_250_mb_unzipped_are_refused(self):
        big = self.publish_layer(self.layer_name(), h.make_zip_bomb(140))  # 140 MiB unzipped, fine alone
        small = self.publish_layer(self.layer_name("small"), python_layer(mylib="VALUE = 1\n"))
        name = self.fn_name()
        e = self.assertAwsError(lambda: self.lam.create_function(
            FunctionName=name, Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
            Code={"ZipFile": h.make_zip_bomb(120)}, Layers=[big["LayerVersionArn"]]), 400, "InvalidParameterValueException")
        self.assertIn("Function code combined with layers exceeds the maximum allowed size of 262144000 bytes. "
                      "The actual size is ", e.response["Error"]["Message"])
        self.assertFunctionAbsent(name)
        # Adding the big layer to big code (UpdateFunctionConfiguration) is refused…
        self.create_function(h.make_zip_bomb(120), name=name, Layers=[small["LayerVersionArn"]])
        self.assertAwsError(lambda: self.lam.update_function_configuration(
            FunctionName=name, Layers=[small["LayerVersionArn"], big["LayerVersionArn"]]), 400, "InvalidParameterValueException")
        # …and so is big code under the big layer (UpdateFunctionCode).
        self.lam.update_function_code(FunctionName=name, ZipFile=py_user_zip())
        self.wait_updated(name)
        self.lam.update_function_configuration(FunctionName=name, Layers=[big["LayerVersionArn"]])
        self.wait_updated(name)
        self.assertAwsError(lambda: self.lam.update_function_code(FunctionName=name, ZipFile=h.make_zip_bomb(120)),
                            400, "InvalidParameterValueException")
        self.assertEqual(self.lam.get_function_configuration(FunctionName=name)["CodeSha256"], h.b64_sha256(py_user_zip()))


class _CliBase(h.CliTestCase):

    def test_cli_layer_lifecycle_and_function_with_layer(self):
        layer_name = self.fn_name("layer")
        zip_path = self.tmp / f"{layer_name}.zip"
        zip_path.write_bytes(python_layer(mylib="VALUE = 'cli layer'\n"))
        out = self.aws("lambda", "publish-layer-version", "--layer-name", layer_name, "--zip-file", f"fileb://{zip_path}",
                       "--compatible-runtimes", "python3.12", "python3.13", "--license-info", "MIT").json
        self.assertEqual(out["Version"], 1)
        arn = out["LayerVersionArn"]
        got = self.aws("lambda", "get-layer-version", "--layer-name", layer_name, "--version-number", "1").json
        self.assertEqual(got["CompatibleRuntimes"], ["python3.12", "python3.13"])
        got = self.aws("lambda", "get-layer-version-by-arn", "--arn", arn).json
        self.assertEqual(got["LicenseInfo"], "MIT")
        listed = self.aws("lambda", "list-layers", "--compatible-runtime", "python3.13").json
        self.assertIn(layer_name, [layer["LayerName"] for layer in listed["Layers"]])
        versions = self.aws("lambda", "list-layer-versions", "--layer-name", layer_name).json
        self.assertEqual([v["Version"] for v in versions["LayerVersions"]], [1])

        name = self.fn_name()
        fn_zip = self.tmp / f"{name}.zip"
        fn_zip.write_bytes(py_user_zip())
        out = self.aws("lambda", "create-function", "--function-name", name, "--runtime", "python3.12",
                       "--handler", "app.handler", "--role", h.ROLE, "--zip-file", f"fileb://{fn_zip}",
                       "--layers", arn).json
        self.addCleanup(self._delete_quietly, name)
        self.assertEqual(out["Layers"][0]["Arn"], arn)
        self.wait_active(name)
        self.assertEqual(self.invoke_ok(name, {})[1]["mylib"], "cli layer")
        self.aws("lambda", "delete-layer-version", "--layer-name", layer_name, "--version-number", "1")
        versions = self.aws("lambda", "list-layer-versions", "--layer-name", layer_name).json
        self.assertEqual(versions["LayerVersions"], [])
        self.assertEqual(self.invoke_ok(name, {})[1]["mylib"], "cli layer")


class CliV1Tests(_CliBase):
    CLI = os.environ.get("LAMINA_AWS_CLI", "aws")


class CliV2DebianTests(_CliBase):
    CLI = "/usr/bin/aws" if os.path.exists("/usr/bin/aws") else None


del _CliBase

if __name__ == "__main__":
    unittest.main()
