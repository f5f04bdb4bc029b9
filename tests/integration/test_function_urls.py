"""Function URLs (issue #10): Create/Get/Update/Delete/ListFunctionUrlConfigs with boto3 and the AWS CLI, and the
URLs themselves over real HTTP — the host form with curl (which resolves *.localhost to loopback) and the path form
with requests: the payload 2.0 event (method, path, query, headers, cookies, binary body), the response mapping
(status, headers, cookies, base64 bodies, results without statusCode), AuthType NONE with and without the resource
policy, AWS_IAM signed and unsigned, CORS preflight, 502 on a function error and 429 when throttled."""
from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess

import requests

import lamina_harness as h

MODULE = __name__

URL_ECHO = r'''
import base64
import json


def handler(event, context):
    path = event.get("rawPath", "")
    if path == "/structured":
        return {"statusCode": 201, "headers": {"x-custom": "yes", "content-type": "text/plain"},
                "cookies": ["a=1; Path=/", "b=2"], "body": "created"}
    if path == "/binary":
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
    if path == "/plain":
        return {"hello": "world"}
    if path == "/string":
        return "just text"
    if path == "/fail":
        raise RuntimeError("boom")
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event)}
'''

URL_PATTERN = re.compile(r"^http://([a-z0-9]{32})\.lambda-url\.us-east-1\.localhost:(\d+)/$")


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


class FunctionUrlTests(h.LaminaTestCase):

    def _function(self, auth: str = "NONE", public: bool = True, **url_kwargs) -> tuple[str, str]:
        """A function with a URL; with `public`, the permission AuthType NONE needs. Returns (name, FunctionUrl)."""
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": URL_ECHO}), name=name)
        created = self.lam.create_function_url_config(FunctionName=name, AuthType=auth, **url_kwargs)
        if public:
            self.lam.add_permission(FunctionName=name, StatementId="public-url", Action="lambda:InvokeFunctionUrl",
                                    Principal="*", FunctionUrlAuthType="NONE")
        return name, created["FunctionUrl"]

    def _path_form(self, function_url: str) -> str:
        url_id = URL_PATTERN.match(function_url).group(1)
        return f"{self.server.url}/lambda-url/{url_id}"

    def test_config_lifecycle(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": URL_ECHO}), name=name)
        created = self.lam.create_function_url_config(FunctionName=name, AuthType="NONE",
                                                      Cors={"AllowOrigins": ["https://example.com"], "MaxAge": 60})
        self.assertEqual(created["ResponseMetadata"]["HTTPStatusCode"], 201)
        match = URL_PATTERN.match(created["FunctionUrl"])
        self.assertIsNotNone(match, created["FunctionUrl"])
        self.assertEqual(int(match.group(2)), int(self.server.url.rsplit(":", 1)[1]))
        self.assertEqual(created["FunctionArn"], h.function_arn(name))
        self.assertEqual((created["AuthType"], created["InvokeMode"]), ("NONE", "BUFFERED"))
        self.assertEqual(created["Cors"], {"AllowOrigins": ["https://example.com"], "MaxAge": 60})

        got = self.lam.get_function_url_config(FunctionName=name)
        self.assertEqual(got["FunctionUrl"], created["FunctionUrl"])
        self.assertIn("LastModifiedTime", got)
        updated = self.lam.update_function_url_config(FunctionName=name, AuthType="AWS_IAM")
        self.assertEqual((updated["AuthType"], updated["FunctionUrl"]), ("AWS_IAM", created["FunctionUrl"]))
        self.assertEqual(updated["Cors"], created["Cors"])  # left out: kept

        self.assertAwsError(lambda: self.lam.create_function_url_config(FunctionName=name, AuthType="NONE"), 409,
                            "ResourceConflictException", "FunctionUrlConfig exists")
        self.lam.publish_version(FunctionName=name)
        self.lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
        on_alias = self.lam.create_function_url_config(FunctionName=name, Qualifier="live", AuthType="NONE")
        self.assertEqual(on_alias["FunctionArn"], h.function_arn(name, "live"))
        self.assertNotEqual(on_alias["FunctionUrl"], created["FunctionUrl"])
        listed = self.lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]
        self.assertEqual(sorted(c["FunctionUrl"] for c in listed), sorted([created["FunctionUrl"], on_alias["FunctionUrl"]]))

        self.assertAwsError(lambda: self.lam.create_function_url_config(FunctionName=name, Qualifier="nope", AuthType="NONE"),
                            404, "ResourceNotFoundException")
        raw = self.server.raw("POST", f"/2021-10-31/functions/{name}/url?Qualifier=1", {"AuthType": "NONE"})
        self.assertRawError(raw, 400, "ValidationException")
        raw = self.server.raw("POST", f"/2021-10-31/functions/{name}/url?Qualifier=live", {"AuthType": "MAYBE"})
        self.assertRawError(raw, 400, "ValidationException")

        # Deleting the alias takes its URL along; the URL then answers 404.
        self.lam.delete_alias(FunctionName=name, Name="live")
        self.assertEqual(requests.get(self._path_form(on_alias["FunctionUrl"]) + "/", timeout=30).status_code, 404)
        deleted = self.lam.delete_function_url_config(FunctionName=name)
        self.assertEqual(deleted["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertAwsError(lambda: self.lam.get_function_url_config(FunctionName=name), 404, "ResourceNotFoundException")
        self.assertEqual(self.lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"], [])

    def test_request_becomes_a_payload_2_event(self):
        _, function_url = self._function()
        binary = bytes(range(256))
        response = requests.post(self._path_form(function_url) + "/some/path%20x?a=1&a=2&b=three",
                                 data=binary, headers={"Content-Type": "application/octet-stream", "X-Test": "yes",
                                                       "Cookie": "c1=v1; c2=v2"}, timeout=60)
        self.assertEqual(response.status_code, 200, response.text)
        event = response.json()
        self.assertEqual(event["version"], "2.0")
        self.assertEqual(event["routeKey"], "$default")
        self.assertEqual(event["rawPath"], "/some/path%20x")
        self.assertEqual(event["rawQueryString"], "a=1&a=2&b=three")
        self.assertEqual(event["queryStringParameters"], {"a": "1,2", "b": "three"})
        self.assertEqual(event["cookies"], ["c1=v1", "c2=v2"])
        self.assertEqual(event["headers"]["x-test"], "yes")
        self.assertNotIn("cookie", event["headers"])
        self.assertEqual(event["requestContext"]["http"]["method"], "POST")
        self.assertEqual(event["requestContext"]["http"]["path"], "/some/path%20x")
        self.assertEqual(event["requestContext"]["accountId"], "anonymous")
        self.assertEqual(event["requestContext"]["apiId"], URL_PATTERN.match(function_url).group(1))
        self.assertTrue(event["isBase64Encoded"])
        self.assertEqual(base64.b64decode(event["body"]), binary)

        text = requests.put(self._path_form(function_url) + "/", json={"k": "v"}, timeout=60).json()
        self.assertEqual((text["requestContext"]["http"]["method"], text["isBase64Encoded"]), ("PUT", False))
        self.assertEqual(json.loads(text["body"]), {"k": "v"})
        self.assertNotIn("queryStringParameters", text)

    def test_host_form_works_as_given_with_curl(self):
        if shutil.which("curl") is None:
            self.skipTest("curl is not installed")
        _, function_url = self._function()
        out = subprocess.run(["curl", "-sS", "-i", "--max-time", "60", function_url + "structured?x=1"],
                             capture_output=True, text=True, timeout=90)
        self.assertEqual(out.returncode, 0, out.stderr)
        head, _, body = out.stdout.replace("\r\n", "\n").partition("\n\n")
        self.assertTrue(head.startswith("HTTP/1.1 201"), head)
        self.assertIn("x-custom: yes", head.lower())
        self.assertEqual(sorted(re.findall(r"(?im)^set-cookie: (.*)$", head)), ["a=1; Path=/", "b=2"])
        self.assertEqual(body, "created")

    def test_responses_map_back(self):
        _, function_url = self._function()
        base = self._path_form(function_url)
        binary = requests.get(base + "/binary", timeout=60)
        self.assertEqual((binary.status_code, binary.headers["content-type"]), (200, "application/octet-stream"))
        self.assertEqual(binary.content, bytes(range(256)))
        plain = requests.get(base + "/plain", timeout=60)
        self.assertEqual((plain.status_code, plain.headers["content-type"], plain.json()), (200, "application/json", {"hello": "world"}))
        string = requests.get(base + "/string", timeout=60)
        self.assertEqual((string.status_code, string.text), (200, "just text"))
        failed = requests.get(base + "/fail", timeout=60)
        self.assertEqual((failed.status_code, failed.json()), (502, {"Message": "Internal Server Error"}))

    def test_auth_none_needs_the_public_permission(self):
        name, function_url = self._function(public=False)
        refused = requests.get(self._path_form(function_url) + "/plain", timeout=60)
        self.assertEqual((refused.status_code, refused.json()), (403, {"Message": "Forbidden"}))
        self.lam.add_permission(FunctionName=name, StatementId="public-url", Action="lambda:InvokeFunctionUrl",
                                Principal="*", FunctionUrlAuthType="NONE")
        self.assertEqual(requests.get(self._path_form(function_url) + "/plain", timeout=60).status_code, 200)

    def test_aws_iam_refuses_unsigned_and_accepts_signed(self):
        _, function_url = self._function(auth="AWS_IAM", public=False)
        url = self._path_form(function_url) + "/echo?q=1"
        unsigned = requests.post(url, data=b'{"x":1}', timeout=60)
        self.assertEqual((unsigned.status_code, unsigned.json()), (403, {"Message": "Forbidden"}))
        signed = h.signed_request("POST", url, b'{"x":1}', h.ACCESS_KEY, h.SECRET_KEY)
        self.assertEqual(signed.status_code, 200, signed.text)
        event = signed.json()
        self.assertEqual(event["requestContext"]["authorizer"]["iam"]["accountId"], "000000000000")
        self.assertEqual(event["requestContext"]["accountId"], "000000000000")

    def test_cors_preflight_and_response_headers(self):
        _, function_url = self._function(Cors={"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET", "POST"],
                                               "AllowHeaders": ["x-custom"], "ExposeHeaders": ["x-custom"], "MaxAge": 300})
        base = self._path_form(function_url)
        preflight = requests.options(base + "/anything", headers={"Origin": "https://app.example",
                                                                  "Access-Control-Request-Method": "POST"}, timeout=60)
        self.assertEqual(preflight.status_code, 200)
        self.assertEqual(preflight.headers["access-control-allow-origin"], "https://app.example")
        self.assertEqual(preflight.headers["access-control-allow-methods"], "GET,POST")
        self.assertEqual(preflight.headers["access-control-allow-headers"], "x-custom")
        self.assertEqual(preflight.headers["access-control-max-age"], "300")
        other = requests.options(base + "/anything", headers={"Origin": "https://evil.example",
                                                              "Access-Control-Request-Method": "POST"}, timeout=60)
        self.assertNotIn("access-control-allow-origin", other.headers)
        actual = requests.get(base + "/structured", headers={"Origin": "https://app.example"}, timeout=60)
        self.assertEqual(actual.headers["access-control-allow-origin"], "https://app.example")
        self.assertEqual(actual.headers["access-control-expose-headers"], "x-custom")

    def test_throttled_url_is_429(self):
        name, function_url = self._function()
        self.lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
        throttled = requests.get(self._path_form(function_url) + "/plain", timeout=60)
        self.assertEqual((throttled.status_code, throttled.json()), (429, {"Message": "Rate Exceeded."}))

    def test_aws_cli_create_and_get(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": URL_ECHO}), name=name)
        created = self.server.aws_cli("lambda", "create-function-url-config", "--function-name", name, "--auth-type", "NONE")
        self.assertEqual(created.rc, 0, created)
        self.assertRegex(created.json["FunctionUrl"], URL_PATTERN)
        got = self.server.aws_cli("lambda", "get-function-url-config", "--function-name", name)
        self.assertEqual(got.rc, 0, got)
        self.assertEqual(got.json["FunctionUrl"], created.json["FunctionUrl"])

