"""Hostile and invalid control-plane input (RELIABILITY.md §4.1): AWS-shaped 4xx, nothing created.

Most requests go out as raw SigV4-signed HTTP so botocore's client-side validation cannot stop them.
"""
from __future__ import annotations

import base64
import json
import os
import unittest
import uuid
from pathlib import Path

import lamina_harness as h
from lamina_functions import py_probe_zip

MODULE = __name__
FUNCTIONS = "/2015-03-31/functions"
IPVE = "InvalidParameterValueException"
VALIDATION = {"InvalidParameterValueException", "ValidationException"}


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


class _ErrorsBase(h.LaminaTestCase):

    def create_body(self, name: str, **overrides) -> dict:
        body = {
            "FunctionName": name,
            "Runtime": "python3.12",
            "Role": h.ROLE,
            "Handler": "app.handler",
            "Code": {"ZipFile": base64.b64encode(py_probe_zip()).decode("ascii")},
        }
        body.update(overrides)
        return body

    def raw_create(self, body) -> h.RawResponse:
        return self.server.raw("POST", FUNCTIONS, body=body)

    def assertRejected(self, name: str, status: int, codes, **overrides) -> h.RawResponse:
        r = self.raw_create(self.create_body(name, **overrides))
        if r.status == 201:
            self.addCleanup(self._delete_quietly, name)
        self.assertRawError(r, status, codes)
        return r

    def assertNotCreated(self, name: str) -> None:
        self.assertAwsError(lambda: self.lam.get_function(FunctionName=name),
                            404, "ResourceNotFoundException")


class NameValidationTests(_ErrorsBase):

    def test_create_duplicate_name_is_409(self):
        name = self.fn_name()
        self.create_function(py_probe_zip("one"), name=name)
        self.assertAwsError(
            lambda: self.lam.create_function(FunctionName=name, Runtime="python3.12", Role=h.ROLE,
                                             Handler="app.handler",
                                             Code={"ZipFile": py_probe_zip("two")}),
            409, "ResourceConflictException")
        cfg = self.lam.get_function_configuration(FunctionName=name)
        self.assertEqual(cfg["CodeSha256"], h.b64_sha256(py_probe_zip("one")),
                         "the losing create must not replace the code")

    def test_create_name_65_chars_is_400(self):
        name = ("n" + uuid.uuid4().hex * 3)[:65]
        self.assertEqual(len(name), 65)
        self.assertRejected(name, 400, VALIDATION)
        self.assertFunctionAbsent(name)

    def test_create_name_64_chars_is_accepted(self):
        name = ("n" + uuid.uuid4().hex * 3)[:64]
        r = self.raw_create(self.create_body(name))
        self.addCleanup(self._delete_quietly, name)
        self.assertEqual(r.status, 201, repr(r))
        self.assertEqual(r.json["FunctionName"], name)

    def test_create_name_with_invalid_characters_is_400(self):
        tag = uuid.uuid4().hex[:6]
        bad_names = [
            f"has space {tag}",
            f"slash/{tag}",
            f"../dotdot{tag}",
            "..",
            f"dot.{tag}",
            f"nul\x00{tag}",
            f"emoji\U0001F600{tag}",
            f"rtl\u202e{tag}",
            "$LATEST",
            "",
        ]
        for bad in bad_names:
            with self.subTest(name=bad):
                self.assertRejected(bad, 400, VALIDATION)
        names = self.list_function_names()
        for bad in bad_names:
            self.assertNotIn(bad, names)

    def test_unknown_route_is_json_error_not_500(self):
        for method, path in (("GET", "/2015-03-31/no-such-thing"),
                             ("POST", "/2099-01-01/functions"),
                             ("PATCH", f"{FUNCTIONS}/x")):
            with self.subTest(method=method, path=path):
                r = self.server.raw(method, path, body=b"{}" if method != "GET" else None)
                self.assertRawError(r, range(400, 500))


class ParameterValidationTests(_ErrorsBase):

    def test_create_unknown_runtime_is_400(self):
        for runtime in ("cobol85", "python2.0", "nodejs4.3x"):
            with self.subTest(runtime=runtime):
                name = self.fn_name(runtime.replace(".", ""))
                self.assertRejected(name, 400, IPVE, Runtime=runtime)
                self.assertNotCreated(name)

    def test_create_memory_size_out_of_range_is_400(self):
        for memory in (127, 10241, 0, -1):
            with self.subTest(memory=memory):
                name = self.fn_name(f"m{memory}")
                self.assertRejected(name, 400, IPVE, MemorySize=memory)
                self.assertNotCreated(name)

    def test_create_timeout_out_of_range_is_400(self):
        for timeout in (0, 901, -5):
            with self.subTest(timeout=timeout):
                name = self.fn_name(f"t{timeout}")
                self.assertRejected(name, 400, IPVE, Timeout=timeout)
                self.assertNotCreated(name)

    def test_create_memory_and_timeout_boundaries_are_accepted(self):
        for memory, timeout in ((128, 1), (10240, 900)):
            with self.subTest(memory=memory, timeout=timeout):
                name = self.fn_name(f"b{memory}")
                r = self.raw_create(self.create_body(name, MemorySize=memory, Timeout=timeout))
                self.addCleanup(self._delete_quietly, name)
                self.assertEqual(r.status, 201, repr(r))
                self.assertEqual((r.json["MemorySize"], r.json["Timeout"]), (memory, timeout))

    def test_create_reserved_environment_keys_are_400(self):
        for key in ("AWS_REGION", "_HANDLER", "AWS_LAMBDA_RUNTIME_API", "AWS_ACCESS_KEY_ID",
                    "AWS_LAMBDA_FUNCTION_NAME", "LAMBDA_TASK_ROOT"):
            with self.subTest(key=key):
                name = self.fn_name(key.strip("_").lower().replace("_", "")[:12])
                self.assertRejected(name, 400, IPVE, Environment={"Variables": {key: "x"}})
                self.assertNotCreated(name)

    def test_create_environment_over_4kb_is_400(self):
        name = self.fn_name()
        variables = {f"K{i:03d}": "v" * 100 for i in range(45)}  # ~4.6 KB of keys + values
        self.assertGreater(sum(len(k) + len(v) for k, v in variables.items()), 4096)
        self.assertRejected(name, 400, IPVE, Environment={"Variables": variables})
        self.assertNotCreated(name)

    def test_create_environment_just_under_4kb_is_accepted(self):
        name = self.fn_name()
        # AWS measures the JSON text of the map ("String measured: {...}" in its error), which is
        # longer than keys + values; stay under 4 KB by both measures.
        variables = {f"K{i:03d}": "v" * 100 for i in range(33)}
        self.assertLess(len(json.dumps(variables, separators=(",", ":"))), 4000)
        r = self.raw_create(self.create_body(name, Environment={"Variables": variables}))
        self.addCleanup(self._delete_quietly, name)
        self.assertEqual(r.status, 201, repr(r))
        self.assertEqual(r.json["Environment"]["Variables"], variables)

    def test_create_environment_bad_key_pattern_is_400(self):
        for key in ("1ABC", "A-B", "A.B", "HAS SPACE", "ÄÖ"):
            with self.subTest(key=key):
                name = self.fn_name()
                self.assertRejected(name, 400, VALIDATION, Environment={"Variables": {key: "x"}})
                self.assertNotCreated(name)

    def test_update_configuration_with_reserved_key_is_400_and_keeps_old_env(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, Environment={"Variables": {"KEEP": "me"}})
        for key in ("AWS_REGION", "_HANDLER"):
            with self.subTest(key=key):
                self.assertAwsError(
                    lambda: self.lam.update_function_configuration(
                        FunctionName=name, Environment={"Variables": {key: "x", "NEW": "1"}}),
                    400, IPVE)
        cfg = self.lam.get_function_configuration(FunctionName=name)
        self.assertEqual(cfg["Environment"]["Variables"], {"KEEP": "me"})

    def test_update_configuration_out_of_range_is_400_and_keeps_old_values(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, Timeout=10, MemorySize=256)
        path = f"{FUNCTIONS}/{h.quote_path_segment(name)}/configuration"
        for field, value in (("MemorySize", 127), ("MemorySize", 10241),
                             ("Timeout", 0), ("Timeout", 901)):
            with self.subTest(field=field, value=value):
                r = self.server.raw("PUT", path, body={field: value})
                self.assertRawError(r, 400, IPVE)
        cfg = self.lam.get_function_configuration(FunctionName=name)
        self.assertEqual((cfg["Timeout"], cfg["MemorySize"]), (10, 256))


class ZipValidationTests(_ErrorsBase):

    def _escape_candidates(self, marker: str) -> list[Path]:
        """Places an escaping zip entry could land (relative to the data dir, cwd, /tmp)."""
        places = [Path("/tmp") / marker, h.REPO_ROOT / marker, Path("/") / marker]
        if self.server.root_dir:
            places.append(self.server.root_dir / marker)
        return places

    def test_create_corrupt_zip_is_400(self):
        for label, data in (("garbage", b"this is not a zip file at all" * 10),
                            ("truncated", py_probe_zip()[:40]),
                            ("bad central dir", py_probe_zip()[:-30])):
            with self.subTest(kind=label):
                name = self.fn_name(label.replace(" ", ""))
                self.assertRejected(name, 400, IPVE,
                                    Code={"ZipFile": base64.b64encode(data).decode("ascii")})
                self.assertNotCreated(name)

    def test_create_empty_zip_is_400(self):
        name = self.fn_name()
        self.assertRejected(name, 400, IPVE, Code={"ZipFile": ""})
        self.assertNotCreated(name)

    def test_create_zip_slip_is_400_and_writes_nothing_outside(self):
        marker = f"lamina-evil-{uuid.uuid4().hex[:8]}.txt"
        tmp_target = f"/tmp/{marker}"
        app = ("app.py", b"def handler(e, c):\n    return 1\n", 0o100644)
        variants = {
            "dotdot": [app, (f"../{marker}", b"evil", 0o100644)],
            "deep dotdot": [app, (f"a/b/../../../../{marker}", b"evil", 0o100644)],
            "many dotdots": [app, ("../" * 12 + f"tmp/{marker}", b"evil", 0o100644)],
            "absolute": [app, (tmp_target, b"evil", 0o100644)],
            "symlink then file": [app, ("link", b"/tmp", 0o120777), (f"link/{marker}", b"evil", 0o100644)],
        }
        for label, entries in variants.items():
            with self.subTest(variant=label):
                name = self.fn_name(label.replace(" ", ""))
                data = h.make_zip_raw_entries(entries)
                self.assertRejected(name, 400, IPVE,
                                    Code={"ZipFile": base64.b64encode(data).decode("ascii")})
                self.assertNotCreated(name)
                for place in self._escape_candidates(marker):
                    self.assertFalse(place.exists(), f"zip entry escaped to {place}")

    @h.slow
    def test_create_zip_bomb_is_400(self):
        bomb = h.make_zip_bomb(260)
        self.assertLess(len(bomb), 5 * 1024 * 1024, "the bomb should be small when compressed")
        name = self.fn_name()
        r = self.raw_create(self.create_body(
            name, Code={"ZipFile": base64.b64encode(bomb).decode("ascii")}))
        if r.status == 201:
            self.addCleanup(self._delete_quietly, name)
        self.assertRawError(r, 400, IPVE)
        self.assertNotCreated(name)

    def test_update_code_with_bad_zip_is_400_and_keeps_old_code(self):
        name = self.fn_name()
        good = py_probe_zip("good")
        self.create_function(good, name=name)
        path = f"{FUNCTIONS}/{h.quote_path_segment(name)}/code"
        for label, data in (("garbage", b"PK\x03\x04 garbage"), ("empty", b""),
                            ("slip", h.make_zip_raw_entries([("../x.txt", b"x", 0o100644)]))):
            with self.subTest(kind=label):
                r = self.server.raw("PUT", path,
                                    body={"ZipFile": base64.b64encode(data).decode("ascii")})
                self.assertRawError(r, 400, IPVE)
        cfg = self.lam.get_function_configuration(FunctionName=name)
        self.assertEqual(cfg["CodeSha256"], h.b64_sha256(good))
        self.assertEqual(cfg["CodeSize"], len(good))
        _, out = self.invoke_ok(name, {})
        self.assertEqual(out["version"], "good")


class MalformedRequestTests(_ErrorsBase):

    def test_malformed_json_body_is_400_with_error_type(self):
        bodies = {
            "truncated": b'{"FunctionName": "x", "Runtime": ',
            "not json": b"FunctionName=x&Runtime=python3.12",
            "invalid utf-8": b'{"FunctionName": "\xff\xfe\xfd"}',
            "lone surrogate": b'{"FunctionName": "\\ud800"}',
            "deep nesting": b'{"FunctionName":' + b"[" * 10000 + b"]" * 10000 + b"}",
            "array": b"[1, 2, 3]",
            "wrong types": b'{"FunctionName": 42, "Timeout": "abc", "Code": "zip"}',
            "empty": b"",
        }
        for label, body in bodies.items():
            with self.subTest(kind=label):
                r = self.server.raw("POST", FUNCTIONS, body=body,
                                    headers={"Content-Type": "application/json"})
                self.assertRawError(r, 400)
                self.assertNotIn("   at ", r.text, "stack trace leaked into the error body")

    def test_malformed_json_on_update_configuration_is_400(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name, Timeout=11)
        path = f"{FUNCTIONS}/{h.quote_path_segment(name)}/configuration"
        r = self.server.raw("PUT", path, body=b'{"Timeout": 5,', headers={"Content-Type": "application/json"})
        self.assertRawError(r, 400)
        self.assertEqual(self.lam.get_function_configuration(FunctionName=name)["Timeout"], 11)

    def test_error_body_shape(self):
        name = f"missing-{uuid.uuid4().hex[:8]}"
        r = self.server.raw("GET", f"{FUNCTIONS}/{name}")
        self.assertRawError(r, 404, "ResourceNotFoundException")
        self.assertIn("application/json", r.headers.get("Content-Type", ""))
        self.assertEqual(r.json.get("Type"), "User", repr(r))
        self.assertIn(f"Function not found: {h.function_arn(name)}", r.json.get("Message", ""),
                      repr(r))

    def test_missing_required_fields_is_400(self):
        full = self.create_body(self.fn_name())
        for field in ("FunctionName", "Role", "Code", "Runtime", "Handler"):
            with self.subTest(missing=field):
                body = {k: v for k, v in full.items() if k != field}
                r = self.raw_create(body)
                if r.status == 201:
                    self.addCleanup(self._delete_quietly, full["FunctionName"])
                self.assertRawError(r, 400, VALIDATION)
        self.assertNotCreated(full["FunctionName"])

    def test_malformed_function_arn_in_path_is_4xx_not_500(self):
        for ident in ("arn:aws:lambda:us-east-1:000000000000:function:",
                      "arn:aws:lambda:us-east-1:000000000000:layer:x",
                      "arn:aws:lambda:xx:1:function:y",
                      "a" * 200,
                      "name:bad qualifier"):
            with self.subTest(ident=ident):
                r = self.server.raw("GET", f"{FUNCTIONS}/{h.quote_path_segment(ident)}")
                self.assertRawError(r, (400, 404))


if __name__ == "__main__":
    unittest.main()
