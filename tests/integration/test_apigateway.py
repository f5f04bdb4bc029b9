"""API Gateway (issue #22): HTTP APIs and REST APIs that invoke functions, driven by AWS CLI v2 (/usr/bin/aws), AWS
CLI v1, boto3, curl (the host form, <apiId>.execute-api.localhost, which curl resolves to loopback) and requests (the
path form, /_aws/execute-api/<apiId>/...).

* HTTP APIs: quick create with a Lambda target (CLI v2), the function's resource policy for apigateway.amazonaws.com
  and the execute-api source ARN enforced (500 without it), routes with path variables, greedy {proxy+}, ANY and
  $default and their precedence, payload 2.0 and 1.0 events, response mapping (structured, plain JSON, strings,
  cookies, base64), named stages with stage variables, AutoDeploy against explicit deployments, CORS preflight and
  headers, 500 on function error, 503 past the integration timeout, 429 when the function is throttled, 404s.
* REST APIs: import-rest-api (CLI v2) of a SAM-style Swagger 2 definition, resources/methods/integrations built with
  boto3, deployments and stages, the payload 1.0 event, 403 Missing Authentication Token, 502 on function error or a
  malformed result, binary media types, PutRestApi merge and overwrite, JSON-patch updates, 504 past the timeout.
* Control-plane errors in API Gateway's shape, and everything surviving kill -9.
"""
from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
import unittest
import uuid
from pathlib import Path

import botocore.exceptions
import botocore.loaders
import requests
import yaml

import lamina_harness as h

MODULE = __name__
CLI_V2 = "/usr/bin/aws"

# Answers by path (rawPath for payload 2.0, path for 1.0): what each response-mapping test needs.
ECHO = r'''
import base64
import json
import time

COUNT = 0


def handler(event, context):
    global COUNT
    COUNT += 1
    path = event.get("rawPath") or event.get("path") or "/"
    if path.endswith("/structured"):
        return {"statusCode": 201, "headers": {"content-type": "text/plain", "x-custom": "yes"},
                "multiValueHeaders": {"x-multi": ["a", "b"]}, "cookies": ["a=1; Path=/", "b=2"], "body": "created"}
    if path.endswith("/binary"):
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
    if path.endswith("/plain"):
        return {"hello": "world"}
    if path.endswith("/string"):
        return "just text"
    if path.endswith("/fail"):
        raise RuntimeError("boom")
    if path.endswith("/badheader"):
        return {"statusCode": 200, "headers": {"x-split": "a\r\nx-injected: 1"}, "body": "x"}
    if path.endswith("/slow"):
        time.sleep(3)
    return {"statusCode": 200, "headers": {"content-type": "application/json"},
            "body": json.dumps({"event": event, "request_id": context.aws_request_id, "count": COUNT})}
'''

SWAGGER = {
    "swagger": "2.0",
    "info": {"title": "pets", "version": "1.0"},
    "basePath": "/Prod",
    "x-amazon-apigateway-binary-media-types": ["application/octet-stream"],
    "paths": {
        "/hello": {"get": {"responses": {}, "x-amazon-apigateway-integration": {
            "type": "aws_proxy", "httpMethod": "POST", "uri": "__URI__"}}},
        "/items/{id}": {"get": {"parameters": [{"name": "id", "in": "path", "required": True, "type": "string"}],
                                "responses": {}, "x-amazon-apigateway-integration": {
                                    "type": "aws_proxy", "httpMethod": "POST", "uri": "__URI__"}}},
        "/{proxy+}": {"x-amazon-apigateway-any-method": {"responses": {}, "x-amazon-apigateway-integration": {
            "type": "aws_proxy", "httpMethod": "POST", "uri": "__URI__"}},
            "options": {"responses": {"200": {"headers": {"Access-Control-Allow-Origin": {"type": "string"}}}},
                        "x-amazon-apigateway-integration": {
                            "type": "mock", "requestTemplates": {"application/json": "{\"statusCode\": 200}"},
                            "responses": {"default": {"statusCode": "200", "responseParameters": {
                                "method.response.header.Access-Control-Allow-Origin": "'https://example.com'"},
                                "responseTemplates": {"application/json": "{}"}}}}}},
    },
}

_FUNCTION: str | None = None


def setUpModule():
    global _FUNCTION
    srv = h.start_module_server(MODULE)
    # One warm function serves most tests (cold starts are what makes these slow).
    _FUNCTION = f"apigw-echo-{uuid.uuid4().hex[:6]}"
    srv.client().create_function(FunctionName=_FUNCTION, Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                                 Code={"ZipFile": h.make_zip({"app.py": ECHO})}, Timeout=10)


def tearDownModule():
    h.stop_module_server(MODULE)


def invocation_uri(function_arn: str) -> str:
    return f"arn:aws:apigateway:{h.REGION}:lambda:path/2015-03-31/functions/{function_arn}/invocations"


class ApiGatewayTestCase(h.LaminaTestCase):

    @property
    def v2(self):
        return h.boto3_client(self.server.url, "apigatewayv2")

    @property
    def v1(self):
        return h.boto3_client(self.server.url, "apigateway")

    @property
    def function(self) -> str:
        return _FUNCTION

    def port(self) -> int:
        return int(self.server.url.rsplit(":", 1)[1])

    def url(self, api_id: str, path: str) -> str:
        """The path form, which needs no name resolution."""
        return f"{self.server.url}/_aws/execute-api/{api_id}{path}"

    def allow(self, api_id: str, source: str = "*", function: str | None = None, qualifier: str | None = None) -> None:
        """The permission API Gateway needs to invoke the function for this API (any stage and route by default)."""
        kwargs = {"Qualifier": qualifier} if qualifier else {}
        self.lam.add_permission(FunctionName=function or self.function, StatementId=f"apigw-{uuid.uuid4().hex[:8]}",
                                Action="lambda:InvokeFunction", Principal="apigateway.amazonaws.com",
                                SourceArn=f"arn:aws:execute-api:{h.REGION}:{h.ACCOUNT}:{api_id}/{source}", **kwargs)

    def http_api(self, name: str | None = None, **kwargs) -> str:
        api_id = self.v2.create_api(Name=name or self.fn_name(), ProtocolType="HTTP", **kwargs)["ApiId"]
        self.addCleanup(self._quietly, lambda: self.v2.delete_api(ApiId=api_id))
        return api_id

    def lambda_integration(self, api_id: str, version: str = "2.0", function: str | None = None, **kwargs) -> str:
        return self.v2.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", PayloadFormatVersion=version,
                                          IntegrationUri=h.function_arn(function or self.function), **kwargs)["IntegrationId"]

    @staticmethod
    def _quietly(fn) -> None:
        try:
            fn()
        except botocore.exceptions.ClientError:
            pass

    def get_event(self, url: str, **kwargs) -> dict:
        response = requests.request(kwargs.pop("method", "GET"), url, timeout=60, **kwargs)
        self.assertEqual(response.status_code, 200, response.text)
        return response.json()["event"]


class HttpApiTests(ApiGatewayTestCase):

    def test_quick_create_with_cli_v2_and_curl(self):
        if shutil.which(CLI_V2) is None:
            self.skipTest("AWS CLI v2 (/usr/bin/aws) is not installed")
        created = self.server.aws_cli("apigatewayv2", "create-api", "--name", self.fn_name(), "--protocol-type", "HTTP",
                                      "--target", h.function_arn(self.function), cli=CLI_V2)
        self.assertEqual(created.rc, 0, created)
        api = created.json
        api_id = api["ApiId"]
        self.addCleanup(self._quietly, lambda: self.v2.delete_api(ApiId=api_id))
        self.assertRegex(api_id, r"^[a-z0-9]{10}$")
        self.assertEqual(api["ApiEndpoint"], f"http://{api_id}.execute-api.localhost:{self.port()}")
        self.assertEqual((api["ProtocolType"], api["RouteSelectionExpression"]), ("HTTP", "$request.method $request.path"))
        # What quick create made: a $default route to an AWS_PROXY integration (payload 2.0), an AutoDeploy $default stage.
        routes = self.v2.get_routes(ApiId=api_id)["Items"]
        self.assertEqual([r["RouteKey"] for r in routes], ["$default"])
        integration = self.v2.get_integration(ApiId=api_id, IntegrationId=routes[0]["Target"].split("/")[1])
        self.assertEqual((integration["IntegrationType"], integration["PayloadFormatVersion"]), ("AWS_PROXY", "2.0"))
        stage = self.v2.get_stage(ApiId=api_id, StageName="$default")
        self.assertTrue(stage["AutoDeploy"])
        self.assertTrue(stage["DeploymentId"])

        curl = shutil.which("curl")
        url = f"{api['ApiEndpoint']}/some/path?a=1&a=2&b=x"
        # As on AWS, quick create grants nothing: the function's policy must let API Gateway invoke it.
        denied = subprocess.run([curl, "-s", "-i", url], capture_output=True, text=True, timeout=60)
        self.assertIn("500", denied.stdout.splitlines()[0], denied.stdout)
        self.assertIn('{"message":"Internal Server Error"}', denied.stdout)
        self.allow(api_id, "$default/$default")
        answered = subprocess.run([curl, "-s", "-H", "Cookie: c1=v1; c2=v2", "-H", "X-Test: yes", url],
                                  capture_output=True, text=True, timeout=60)
        event = json.loads(answered.stdout)["event"]
        self.assertEqual((event["version"], event["routeKey"], event["rawPath"]), ("2.0", "$default", "/some/path"))
        self.assertEqual(event["rawQueryString"], "a=1&a=2&b=x")
        self.assertEqual(event["queryStringParameters"], {"a": "1,2", "b": "x"})
        self.assertEqual(event["cookies"], ["c1=v1", "c2=v2"])
        self.assertEqual(event["headers"]["x-test"], "yes")
        self.assertNotIn("cookie", event["headers"])
        context = event["requestContext"]
        self.assertEqual((context["apiId"], context["stage"], context["routeKey"], context["accountId"]),
                         (api_id, "$default", "$default", h.ACCOUNT))
        self.assertEqual(context["domainName"], f"{api_id}.execute-api.localhost")
        self.assertEqual((context["http"]["method"], context["http"]["path"], context["http"]["sourceIp"]), ("GET", "/some/path", "127.0.0.1"))
        self.assertFalse(event["isBase64Encoded"])

        # AWS CLI v1 sees the same API.
        listed = self.server.aws_cli("apigatewayv2", "get-apis")
        self.assertEqual(listed.rc, 0, listed)
        self.assertIn(api_id, [a["ApiId"] for a in listed.json["Items"]])
        deleted = self.server.aws_cli("apigatewayv2", "delete-api", "--api-id", api_id, cli=CLI_V2)
        self.assertEqual(deleted.rc, 0, deleted)
        self.assertEqual(requests.get(self.url(api_id, "/x"), timeout=30).status_code, 404)

    def test_routes_path_variables_greedy_and_default(self):
        api_id = self.http_api()
        integration = self.lambda_integration(api_id)
        for key in ["GET /pets/dog/1", "GET /pets/dog/{id}", "GET /pets/{proxy+}", "ANY /{proxy+}", "$default", "POST /pets/{id}/toys/{toy}"]:
            self.v2.create_route(ApiId=api_id, RouteKey=key, Target=f"integrations/{integration}")
        self.v2.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
        self.allow(api_id)

        def route(method, path):
            return self.get_event(self.url(api_id, path), method=method)

        self.assertEqual(route("GET", "/pets/dog/1")["routeKey"], "GET /pets/dog/1")
        event = route("GET", "/pets/dog/2")
        self.assertEqual((event["routeKey"], event["pathParameters"]), ("GET /pets/dog/{id}", {"id": "2"}))
        event = route("GET", "/pets/cat/1")
        self.assertEqual((event["routeKey"], event["pathParameters"]), ("GET /pets/{proxy+}", {"proxy": "cat/1"}))
        event = route("POST", "/test/5")
        self.assertEqual((event["routeKey"], event["pathParameters"]), ("ANY /{proxy+}", {"proxy": "test/5"}))
        event = route("POST", "/pets/7/toys/ball")
        self.assertEqual(event["pathParameters"], {"id": "7", "toy": "ball"})
        # The root path is not taken by a greedy variable: $default gets it.
        self.assertEqual(route("GET", "/")["routeKey"], "$default")
        # Percent-encoded path: rawPath keeps the encoding, the path variable is decoded.
        event = route("GET", "/pets/dog/a%20b")
        self.assertEqual((event["rawPath"], event["pathParameters"]["id"]), ("/pets/dog/a%20b", "a b"))

        # Without $default, an unmatched request is API Gateway's 404.
        other = self.http_api()
        self.v2.create_route(ApiId=other, RouteKey="GET /only", Target=f"integrations/{self.lambda_integration(other)}")
        self.v2.create_stage(ApiId=other, StageName="$default", AutoDeploy=True)
        missing = requests.get(self.url(other, "/elsewhere"), timeout=30)
        self.assertEqual((missing.status_code, missing.json()), (404, {"message": "Not Found"}))
        self.assertEqual(requests.post(self.url(other, "/only"), timeout=30).status_code, 404)
        self.assertEqual(requests.get(self.url("nosuchapi0", "/x"), timeout=30).status_code, 404)

    def test_stages_variables_and_deployments(self):
        api_id = self.http_api()
        integration = self.lambda_integration(api_id)
        self.v2.create_route(ApiId=api_id, RouteKey="GET /v1", Target=f"integrations/{integration}")
        self.allow(api_id)
        # A named stage without AutoDeploy serves the deployment it points at, and only that.
        deployment = self.v2.create_deployment(ApiId=api_id, Description="first")
        self.assertEqual(deployment["DeploymentStatus"], "DEPLOYED")
        stage = self.v2.create_stage(ApiId=api_id, StageName="prod", DeploymentId=deployment["DeploymentId"],
                                     StageVariables={"color": "blue"})
        self.assertEqual(stage["StageVariables"], {"color": "blue"})
        event = self.get_event(self.url(api_id, "/prod/v1"))
        self.assertEqual((event["requestContext"]["stage"], event["rawPath"]), ("prod", "/prod/v1"))
        self.assertEqual(event["stageVariables"], {"color": "blue"})

        self.v2.create_route(ApiId=api_id, RouteKey="GET /v2", Target=f"integrations/{integration}")
        self.assertEqual(requests.get(self.url(api_id, "/prod/v2"), timeout=30).status_code, 404)
        second = self.v2.create_deployment(ApiId=api_id, StageName="prod")
        self.assertEqual(self.v2.get_stage(ApiId=api_id, StageName="prod")["DeploymentId"], second["DeploymentId"])
        self.assertEqual(self.get_event(self.url(api_id, "/prod/v2"))["routeKey"], "GET /v2")
        self.v2.update_stage(ApiId=api_id, StageName="prod", StageVariables={"color": "red", "size": "L"})
        self.assertEqual(self.get_event(self.url(api_id, "/prod/v1"))["stageVariables"], {"color": "red", "size": "L"})
        self.assertEqual(len(self.v2.get_deployments(ApiId=api_id)["Items"]), 2)

        # An AutoDeploy stage follows each change on its own.
        self.v2.create_stage(ApiId=api_id, StageName="dev", AutoDeploy=True)
        self.assertEqual(requests.get(self.url(api_id, "/dev/v3"), timeout=30).status_code, 404)
        route = self.v2.create_route(ApiId=api_id, RouteKey="GET /v3", Target=f"integrations/{integration}")
        self.assertEqual(self.get_event(self.url(api_id, "/dev/v3"))["requestContext"]["stage"], "dev")
        self.v2.delete_route(ApiId=api_id, RouteId=route["RouteId"])
        self.assertEqual(requests.get(self.url(api_id, "/dev/v3"), timeout=30).status_code, 404)
        auto = [d for d in self.v2.get_deployments(ApiId=api_id)["Items"] if d.get("AutoDeployed")]
        self.assertGreaterEqual(len(auto), 2)
        self.assertAwsError(lambda: self.v2.create_deployment(ApiId=api_id, StageName="dev"), 400, "BadRequestException")
        self.assertAwsError(lambda: self.v2.delete_deployment(ApiId=api_id, DeploymentId=second["DeploymentId"]), 400, "BadRequestException")
        self.v2.delete_deployment(ApiId=api_id, DeploymentId=deployment["DeploymentId"])
        self.v2.delete_stage(ApiId=api_id, StageName="prod")
        self.assertEqual(requests.get(self.url(api_id, "/prod/v1"), timeout=30).status_code, 404)

    def test_response_mapping_payload_2_and_1(self):
        api_id = self.http_api()
        v2 = self.lambda_integration(api_id, "2.0")
        v1 = self.lambda_integration(api_id, "1.0")
        self.v2.create_route(ApiId=api_id, RouteKey="ANY /v2/{proxy+}", Target=f"integrations/{v2}")
        self.v2.create_route(ApiId=api_id, RouteKey="ANY /v1/{proxy+}", Target=f"integrations/{v1}")
        self.v2.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
        self.allow(api_id)

        structured = requests.get(self.url(api_id, "/v2/structured"), timeout=60)
        self.assertEqual((structured.status_code, structured.text), (201, "created"))
        self.assertEqual((structured.headers["content-type"], structured.headers["x-custom"]), ("text/plain", "yes"))
        self.assertEqual(structured.raw.headers.getlist("Set-Cookie"), ["a=1; Path=/", "b=2"])
        binary = requests.get(self.url(api_id, "/v2/binary"), timeout=60)
        self.assertEqual(binary.content, bytes(range(256)))
        plain = requests.get(self.url(api_id, "/v2/plain"), timeout=60)
        self.assertEqual((plain.status_code, plain.json(), plain.headers["content-type"]), (200, {"hello": "world"}, "application/json"))
        self.assertEqual(requests.get(self.url(api_id, "/v2/string"), timeout=60).text, "just text")
        failed = requests.get(self.url(api_id, "/v2/fail"), timeout=60)
        self.assertEqual((failed.status_code, failed.json()), (500, {"message": "Internal Server Error"}))
        # A header that would split the response is a malformed result, not a broken connection.
        split = requests.get(self.url(api_id, "/v2/badheader"), timeout=60)
        self.assertEqual((split.status_code, split.json()), (500, {"message": "Internal Server Error"}))
        self.assertNotIn("x-injected", split.headers)
        # A binary request body reaches the function base64-encoded.
        posted = self.get_event(self.url(api_id, "/v2/echo"), method="POST", data=bytes(range(256)),
                                headers={"Content-Type": "application/octet-stream"})
        self.assertTrue(posted["isBase64Encoded"])
        self.assertEqual(base64.b64decode(posted["body"]), bytes(range(256)))

        # Payload 1.0 from an HTTP API: version, multi-value maps, lower-cased headers, the stage's path.
        event = self.get_event(self.url(api_id, "/v1/echo?a=1&a=2"), headers={"X-Multi": "one"})
        self.assertEqual((event["version"], event["resource"], event["path"], event["httpMethod"]), ("1.0", "/v1/{proxy+}", "/v1/echo", "GET"))
        self.assertEqual(event["multiValueQueryStringParameters"], {"a": ["1", "2"]})
        self.assertEqual(event["queryStringParameters"], {"a": "2"})
        self.assertEqual(event["headers"]["x-multi"], "one")
        self.assertEqual(event["multiValueHeaders"]["x-multi"], ["one"])
        self.assertEqual(event["pathParameters"], {"proxy": "echo"})
        self.assertEqual(event["requestContext"]["resourcePath"], "/v1/{proxy+}")
        self.assertIsNone(event["body"])
        structured = requests.get(self.url(api_id, "/v1/structured"), timeout=60)
        self.assertEqual((structured.status_code, structured.text), (201, "created"))
        self.assertEqual(structured.raw.headers.getlist("x-multi"), ["a", "b"])
        # Format 1.0 needs a statusCode: anything else is a malformed result.
        self.assertEqual(requests.get(self.url(api_id, "/v1/plain"), timeout=60).status_code, 500)

    def test_cors(self):
        name = self.fn_name()  # a function of its own: its invocation count shows the preflight never reached it
        self.create_function(h.make_zip({"app.py": ECHO}), name=name)
        api_id = self.http_api(CorsConfiguration={"AllowOrigins": ["https://example.com"], "AllowMethods": ["GET", "POST"],
                                                  "AllowHeaders": ["x-custom"], "ExposeHeaders": ["x-custom"], "MaxAge": 300})
        self.v2.create_route(ApiId=api_id, RouteKey="GET /pets", Target=f"integrations/{self.lambda_integration(api_id, function=name)}")
        self.v2.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
        self.allow(api_id, function=name)
        count = requests.get(self.url(api_id, "/pets"), timeout=60).json()["count"]
        preflight = requests.options(self.url(api_id, "/pets"), headers={"Origin": "https://example.com", "Access-Control-Request-Method": "GET"},
                                     timeout=30)
        self.assertEqual(preflight.status_code, 204)
        self.assertEqual(preflight.headers["access-control-allow-origin"], "https://example.com")
        self.assertEqual(preflight.headers["access-control-allow-methods"], "GET,POST")
        self.assertEqual(preflight.headers["access-control-max-age"], "300")
        actual = requests.get(self.url(api_id, "/pets"), headers={"Origin": "https://example.com"}, timeout=30)
        self.assertEqual(actual.headers["access-control-allow-origin"], "https://example.com")
        self.assertEqual(actual.headers["access-control-expose-headers"], "x-custom")
        # The preflight never reached the function.
        self.assertEqual(actual.json()["count"], count + 1)
        other = requests.get(self.url(api_id, "/pets"), headers={"Origin": "https://evil.example"}, timeout=30)
        self.assertNotIn("access-control-allow-origin", other.headers)
        self.v2.delete_cors_configuration(ApiId=api_id)
        self.assertNotIn("CorsConfiguration", self.v2.get_api(ApiId=api_id))

    def test_permission_is_the_routes_source_arn(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": ECHO}), name=name)
        api_id = self.http_api()
        integration = self.lambda_integration(api_id, function=name)
        self.v2.create_route(ApiId=api_id, RouteKey="GET /allowed/{id}", Target=f"integrations/{integration}")
        self.v2.create_route(ApiId=api_id, RouteKey="GET /other", Target=f"integrations/{integration}")
        self.v2.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
        # The ARN a route invokes as: apiId/stage/METHOD/path-template.
        self.allow(api_id, "$default/GET/allowed/{id}", function=name)
        self.assertEqual(requests.get(self.url(api_id, "/allowed/1"), timeout=60).status_code, 200)
        denied = requests.get(self.url(api_id, "/other"), timeout=60)
        self.assertEqual((denied.status_code, denied.json()), (500, {"message": "Internal Server Error"}))
        # Another API's permission does not count; credentials on the integration (a role) do.
        self.v2.update_integration(ApiId=api_id, IntegrationId=integration, CredentialsArn=f"arn:aws:iam::{h.ACCOUNT}:role/apigw")
        self.assertEqual(requests.get(self.url(api_id, "/other"), timeout=60).status_code, 200)

    def test_timeout_and_throttle(self):
        api_id = self.http_api()
        quick = self.lambda_integration(api_id, TimeoutInMillis=1000)
        self.v2.create_route(ApiId=api_id, RouteKey="GET /slow", Target=f"integrations/{quick}")
        self.v2.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
        self.allow(api_id)
        started = time.monotonic()
        slow = requests.get(self.url(api_id, "/slow"), timeout=60)
        self.assertEqual((slow.status_code, slow.json()), (503, {"message": "Service Unavailable"}))
        self.assertLess(time.monotonic() - started, 2.9)

        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": ECHO}), name=name)
        self.lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
        throttled_api = self.http_api()
        self.v2.create_route(ApiId=throttled_api, RouteKey="$default", Target=f"integrations/{self.lambda_integration(throttled_api, function=name)}")
        self.v2.create_stage(ApiId=throttled_api, StageName="$default", AutoDeploy=True)
        self.allow(throttled_api, function=name)
        throttled = requests.get(self.url(throttled_api, "/x"), timeout=60)
        self.assertEqual((throttled.status_code, throttled.json()), (429, {"message": "Too Many Requests"}))

    def test_import_and_reimport_openapi_3(self):
        uri = invocation_uri(h.function_arn(self.function))
        definition = {"openapi": "3.0.1", "info": {"title": self.fn_name(), "version": "1"},
                      "x-amazon-apigateway-cors": {"allowOrigins": ["https://example.com"], "allowMethods": ["GET"]},
                      "paths": {"/pets/{id}": {"get": {"x-amazon-apigateway-integration": {
                          "type": "aws_proxy", "httpMethod": "POST", "uri": uri, "payloadFormatVersion": "2.0"}}},
                          "$default": {"x-amazon-apigateway-any-method": {"isDefaultRoute": True, "x-amazon-apigateway-integration": {
                              "type": "aws_proxy", "httpMethod": "POST", "uri": uri, "payloadFormatVersion": "1.0"}}}}}
        api = self.v2.import_api(Body=json.dumps(definition))
        api_id = api["ApiId"]
        self.addCleanup(self._quietly, lambda: self.v2.delete_api(ApiId=api_id))
        self.assertEqual((api["ProtocolType"], api["CorsConfiguration"]["AllowOrigins"]), ("HTTP", ["https://example.com"]))
        self.assertEqual(sorted(r["RouteKey"] for r in self.v2.get_routes(ApiId=api_id)["Items"]), ["$default", "GET /pets/{id}"])
        self.v2.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
        self.allow(api_id)
        self.assertEqual(self.get_event(self.url(api_id, "/pets/3"))["pathParameters"], {"id": "3"})
        self.assertEqual(self.get_event(self.url(api_id, "/other"))["version"], "1.0")
        # Reimport replaces the routes; the AutoDeploy stage serves the new ones at once.
        definition["paths"] = {"/cats": {"post": {"x-amazon-apigateway-integration": {"type": "aws_proxy", "uri": uri, "payloadFormatVersion": "2.0"}}}}
        self.v2.reimport_api(ApiId=api_id, Body=json.dumps(definition))
        self.assertEqual([r["RouteKey"] for r in self.v2.get_routes(ApiId=api_id)["Items"]], ["POST /cats"])
        self.assertEqual(self.get_event(self.url(api_id, "/cats"), method="POST")["routeKey"], "POST /cats")
        self.assertEqual(requests.get(self.url(api_id, "/pets/3"), timeout=30).status_code, 404)
        self.assertAwsError(lambda: self.v2.import_api(Body='{"swagger": "2.0"}'), 400, "BadRequestException")
        self.assertAwsError(lambda: self.v2.reimport_api(ApiId="nosuchapi0", Body=json.dumps(definition)), 404, "NotFoundException")
        # YAML, as most OpenAPI tools write it, is read the same way; neither JSON nor YAML is refused.
        in_yaml = self.v2.import_api(Body=yaml.safe_dump(definition))
        self.addCleanup(self._quietly, lambda: self.v2.delete_api(ApiId=in_yaml["ApiId"]))
        self.assertEqual([r["RouteKey"] for r in self.v2.get_routes(ApiId=in_yaml["ApiId"])["Items"]], ["POST /cats"])
        self.assertAwsError(lambda: self.v2.import_api(Body="paths: [unclosed"), 400, "BadRequestException")

    def test_control_plane_errors(self):
        v2 = self.v2
        self.assertAwsError(lambda: v2.get_api(ApiId="nosuchapi0"), 404, "NotFoundException")
        self.assertAwsError(lambda: v2.create_api(Name="ws", ProtocolType="WEBSOCKET", RouteSelectionExpression="$request.body.action"),
                            400, "BadRequestException")
        api_id = self.http_api()
        integration = self.lambda_integration(api_id)
        self.assertAwsError(lambda: v2.create_route(ApiId=api_id, RouteKey="FETCH /x"), 400, "BadRequestException")
        self.assertAwsError(lambda: v2.create_route(ApiId=api_id, RouteKey="GET /{proxy+}/x"), 400, "BadRequestException")
        self.assertAwsError(lambda: v2.create_route(ApiId=api_id, RouteKey="GET /x", Target="integrations/nope"), 400, "BadRequestException")
        v2.create_route(ApiId=api_id, RouteKey="GET /x", Target=f"integrations/{integration}")
        self.assertAwsError(lambda: v2.create_route(ApiId=api_id, RouteKey="GET /x"), 409, "ConflictException")
        self.assertAwsError(lambda: v2.delete_integration(ApiId=api_id, IntegrationId=integration), 409, "ConflictException")
        self.assertAwsError(lambda: v2.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri="not-an-arn",
                                                          PayloadFormatVersion="2.0"), 400, "BadRequestException")
        self.assertAwsError(lambda: v2.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=h.function_arn("x"),
                                                          PayloadFormatVersion="3.0"), 400, "BadRequestException")
        self.assertAwsError(lambda: v2.get_route(ApiId=api_id, RouteId="nope"), 404, "NotFoundException")
        v2.create_stage(ApiId=api_id, StageName="beta")
        self.assertAwsError(lambda: v2.create_stage(ApiId=api_id, StageName="beta"), 409, "ConflictException")
        self.assertAwsError(lambda: v2.create_stage(ApiId=api_id, StageName="bad name"), 400, "BadRequestException")
        self.assertAwsError(lambda: v2.update_stage(ApiId=api_id, StageName="beta", AccessLogSettings={
            "DestinationArn": "arn:aws:s3:::bucket", "Format": "$context.requestId"}), 400, "BadRequestException")
        # Malformed JSON from a raw client: API Gateway's 400, not a 500.
        raw = self.server.raw("POST", "/v2/apis", "{not json")
        self.assertRawError(raw, 400, "BadRequestException")
        tagged = v2.create_api(Name=self.fn_name(), ProtocolType="HTTP", Tags={"team": "a"})
        self.addCleanup(self._quietly, lambda: v2.delete_api(ApiId=tagged["ApiId"]))
        arn = f"arn:aws:apigateway:{h.REGION}::/apis/{tagged['ApiId']}"
        v2.tag_resource(ResourceArn=arn, Tags={"env": "test"})
        self.assertEqual(v2.get_tags(ResourceArn=arn)["Tags"], {"team": "a", "env": "test"})
        v2.untag_resource(ResourceArn=arn, TagKeys=["team"])
        self.assertEqual(v2.get_tags(ResourceArn=arn)["Tags"], {"env": "test"})


class RestApiTests(ApiGatewayTestCase):

    def definition(self, function: str | None = None) -> bytes:
        return json.dumps(SWAGGER).replace("__URI__", invocation_uri(h.function_arn(function or self.function))).encode()

    def test_import_with_cli_v2_and_serve(self):
        if shutil.which(CLI_V2) is None:
            self.skipTest("AWS CLI v2 (/usr/bin/aws) is not installed")
        with tempfile.NamedTemporaryFile(suffix=".json") as body:
            body.write(self.definition())
            body.flush()
            imported = self.server.aws_cli("apigateway", "import-rest-api", "--body", f"fileb://{body.name}", cli=CLI_V2)
        self.assertEqual(imported.rc, 0, imported)
        api_id = imported.json["id"]
        self.addCleanup(self._quietly, lambda: self.v1.delete_rest_api(restApiId=api_id))
        self.assertEqual(imported.json["name"], "pets")
        paths = self.server.aws_cli("apigateway", "get-resources", "--rest-api-id", api_id, cli=CLI_V2)
        self.assertEqual(sorted(r["path"] for r in paths.json["items"]), ["/", "/hello", "/items", "/items/{id}", "/{proxy+}"])
        deployed = self.server.aws_cli("apigateway", "create-deployment", "--rest-api-id", api_id, "--stage-name", "Prod", cli=CLI_V2)
        self.assertEqual(deployed.rc, 0, deployed)
        # The REST permission names the resource template, as SAM and Terraform write it.
        self.allow(api_id, "*/GET/items/{id}")
        self.allow(api_id, "*/GET/hello")

        curl = subprocess.run([shutil.which("curl"), "-s", f"http://{api_id}.execute-api.localhost:{self.port()}/Prod/items/42?q=1&q=2",
                               "-H", "X-Test: yes"], capture_output=True, text=True, timeout=60)
        event = json.loads(curl.stdout)["event"]
        self.assertEqual((event["resource"], event["path"], event["httpMethod"]), ("/items/{id}", "/items/42", "GET"))
        self.assertNotIn("version", event)
        self.assertEqual(event["pathParameters"], {"id": "42"})
        self.assertEqual((event["queryStringParameters"], event["multiValueQueryStringParameters"]), ({"q": "2"}, {"q": ["1", "2"]}))
        self.assertEqual((event["headers"]["X-Test"], event["multiValueHeaders"]["X-Test"]), ("yes", ["yes"]))
        self.assertIsNone(event["stageVariables"])
        context = event["requestContext"]
        self.assertEqual((context["path"], context["stage"], context["resourcePath"]), ("/Prod/items/42", "Prod", "/items/{id}"))
        self.assertEqual((context["identity"]["sourceIp"], context["apiId"]), ("127.0.0.1", api_id))
        self.assertTrue(context["resourceId"])

        # Only what the policy allows: /{proxy+} is not granted.
        denied = requests.get(self.url(api_id, "/Prod/anything"), timeout=60)
        self.assertEqual((denied.status_code, denied.json()), (500, {"message": "Internal server error"}))
        # REST APIs' own answers: an unknown stage, a path without a method.
        self.assertEqual(requests.get(self.url(api_id, "/Beta/hello"), timeout=30).json(), {"message": "Forbidden"})
        missing = requests.delete(self.url(api_id, "/Prod/items/42"), timeout=30)
        self.assertEqual((missing.status_code, missing.json(), missing.headers["x-amzn-errortype"]),
                         (403, {"message": "Missing Authentication Token"}, "MissingAuthenticationTokenException"))
        # The MOCK integration of the OPTIONS method (as SAM writes for CORS) answers without a function.
        options = requests.options(self.url(api_id, "/Prod/whatever"), timeout=30)
        self.assertEqual((options.status_code, options.headers["access-control-allow-origin"]), (200, "https://example.com"))

    def test_import_yaml_with_cli_v1_and_serve(self):
        with tempfile.NamedTemporaryFile(suffix=".yaml") as body:
            body.write(yaml.safe_dump(json.loads(self.definition()), sort_keys=False).encode())
            body.flush()
            imported = self.server.aws_cli("apigateway", "import-rest-api", "--body", f"fileb://{body.name}")
        self.assertEqual(imported.rc, 0, imported)
        api_id = imported.json["id"]
        self.addCleanup(self._quietly, lambda: self.v1.delete_rest_api(restApiId=api_id))
        self.assertEqual(imported.json["name"], "pets")
        self.assertEqual(sorted(r["path"] for r in self.v1.get_resources(restApiId=api_id)["items"]),
                         ["/", "/hello", "/items", "/items/{id}", "/{proxy+}"])
        self.v1.create_deployment(restApiId=api_id, stageName="Prod")
        self.allow(api_id, "*/GET/items/{id}")
        event = requests.get(self.url(api_id, "/Prod/items/7"), timeout=60).json()["event"]
        self.assertEqual((event["resource"], event["pathParameters"]), ("/items/{id}", {"id": "7"}))
        with tempfile.NamedTemporaryFile(suffix=".yaml") as body:
            body.write(b"swagger: '2.0'\npaths: {/x: [unclosed\n")
            body.flush()
            refused = self.server.aws_cli("apigateway", "import-rest-api", "--body", f"fileb://{body.name}")
        self.assertNotEqual(refused.rc, 0)
        self.assertIn("BadRequestException", refused.stderr)

    def test_build_with_boto3(self):
        v1 = self.v1
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": ECHO}), name=name)
        api = v1.create_rest_api(name=self.fn_name(), binaryMediaTypes=["application/octet-stream"])
        api_id = api["id"]
        self.addCleanup(self._quietly, lambda: v1.delete_rest_api(restApiId=api_id))
        self.assertIsInstance(api["createdDate"].timestamp(), float)
        root = v1.get_resources(restApiId=api_id)["items"][0]
        self.assertEqual((root["path"], root["id"]), ("/", api["rootResourceId"]))
        items = v1.create_resource(restApiId=api_id, parentId=root["id"], pathPart="items")
        item = v1.create_resource(restApiId=api_id, parentId=items["id"], pathPart="{id}")
        self.assertEqual(item["path"], "/items/{id}")
        self.assertAwsError(lambda: v1.create_resource(restApiId=api_id, parentId=items["id"], pathPart="{other}"), 400, "BadRequestException")
        self.assertAwsError(lambda: v1.create_resource(restApiId=api_id, parentId=root["id"], pathPart="items"), 409, "ConflictException")
        for resource in (items, item):
            v1.put_method(restApiId=api_id, resourceId=resource["id"], httpMethod="ANY", authorizationType="NONE")
            v1.put_integration(restApiId=api_id, resourceId=resource["id"], httpMethod="ANY", type="AWS_PROXY", integrationHttpMethod="POST",
                               uri=invocation_uri(h.function_arn(name)))
        self.assertAwsError(lambda: v1.create_deployment(restApiId=api_id, stageName="bad stage"), 400, "BadRequestException")
        deployment = v1.create_deployment(restApiId=api_id, stageName="dev", variables={"tier": "gold"})
        self.assertEqual(v1.get_stage(restApiId=api_id, stageName="dev")["deploymentId"], deployment["id"])
        method = v1.get_method(restApiId=api_id, resourceId=item["id"], httpMethod="ANY")
        self.assertEqual(method["methodIntegration"]["type"], "AWS_PROXY")
        embedded = v1.get_resources(restApiId=api_id, embed=["methods"])["items"]
        self.assertEqual({r["path"]: sorted(r.get("resourceMethods", {})) for r in embedded}, {"/": [], "/items": ["ANY"], "/items/{id}": ["ANY"]})
        self.allow(api_id, function=name)

        event = self.get_event(self.url(api_id, "/dev/items/7"), method="PUT", json={"k": "v"})
        self.assertEqual((event["httpMethod"], event["resource"], event["stageVariables"]), ("PUT", "/items/{id}", {"tier": "gold"}))
        self.assertEqual(json.loads(event["body"]), {"k": "v"})
        self.assertFalse(event["isBase64Encoded"])
        # A binary media type makes the body base64 on the way in, and a base64 result binary on the way out.
        binary = self.get_event(self.url(api_id, "/dev/items/7"), method="POST", data=b"\x00\xff\x01",
                                headers={"Content-Type": "application/octet-stream"})
        self.assertTrue(binary["isBase64Encoded"])
        self.assertEqual(base64.b64decode(binary["body"]), b"\x00\xff\x01")
        decoded = requests.get(self.url(api_id, "/dev/items/binary"), headers={"Accept": "application/octet-stream"}, timeout=60)
        self.assertEqual(decoded.content, bytes(range(256)))
        self.assertEqual(requests.get(self.url(api_id, "/dev/items/structured"), timeout=60).status_code, 201)
        failed = requests.get(self.url(api_id, "/dev/items/fail"), timeout=60)
        self.assertEqual((failed.status_code, failed.json()), (502, {"message": "Internal server error"}))
        malformed = requests.get(self.url(api_id, "/dev/items/plain"), timeout=60)
        self.assertEqual(malformed.status_code, 502)

        # JSON-patch updates: stage variables, the method, the API.
        stage = v1.update_stage(restApiId=api_id, stageName="dev", patchOperations=[
            {"op": "replace", "path": "/variables/tier", "value": "silver"}, {"op": "replace", "path": "/description", "value": "d"}])
        self.assertEqual((stage["variables"], stage["description"]), ({"tier": "silver"}, "d"))
        self.assertEqual(self.get_event(self.url(api_id, "/dev/items"))["stageVariables"], {"tier": "silver"})
        self.assertAwsError(lambda: v1.update_stage(restApiId=api_id, stageName="dev", patchOperations=[{"op": "replace", "path": "/nope", "value": "x"}]),
                            400, "BadRequestException")
        renamed = v1.update_rest_api(restApiId=api_id, patchOperations=[{"op": "replace", "path": "/name", "value": "renamed"}])
        self.assertEqual(renamed["name"], "renamed")
        # Timeouts: 504 past the integration's timeoutInMillis.
        v1.update_integration(restApiId=api_id, resourceId=item["id"], httpMethod="ANY", patchOperations=[
            {"op": "replace", "path": "/timeoutInMillis", "value": "1000"}])
        v1.create_deployment(restApiId=api_id, stageName="dev")
        slow = requests.get(self.url(api_id, "/dev/items/slow"), timeout=60)
        self.assertEqual((slow.status_code, slow.json()), (504, {"message": "Endpoint request timed out"}))

        v1.delete_resource(restApiId=api_id, resourceId=items["id"])
        self.assertEqual([r["path"] for r in v1.get_resources(restApiId=api_id)["items"]], ["/"])
        self.assertAwsError(lambda: v1.get_rest_api(restApiId="nosuchapi0"), 404, "NotFoundException")
        self.assertAwsError(lambda: v1.get_method(restApiId=api_id, resourceId=root["id"], httpMethod="GET"), 404, "NotFoundException")

    def test_put_rest_api_merge_and_overwrite(self):
        v1 = self.v1
        api_id = v1.import_rest_api(body=self.definition())["id"]
        self.addCleanup(self._quietly, lambda: v1.delete_rest_api(restApiId=api_id))
        extra = {"swagger": "2.0", "info": {"title": "pets", "version": "2.0"}, "paths": {"/extra": {"get": {
            "responses": {}, "x-amazon-apigateway-integration": {"type": "aws_proxy", "httpMethod": "POST",
                                                                 "uri": invocation_uri(h.function_arn(self.function))}}}}}
        merged = v1.put_rest_api(restApiId=api_id, mode="merge", body=json.dumps(extra).encode())
        self.assertEqual(merged["version"], "2.0")
        self.assertIn("/extra", [r["path"] for r in v1.get_resources(restApiId=api_id, limit=500)["items"]])
        self.assertIn("/hello", [r["path"] for r in v1.get_resources(restApiId=api_id, limit=500)["items"]])
        v1.put_rest_api(restApiId=api_id, mode="overwrite", body=json.dumps(extra).encode())
        self.assertEqual(sorted(r["path"] for r in v1.get_resources(restApiId=api_id)["items"]), ["/", "/extra"])
        # Bad definitions: API Gateway's 400 with the reason.
        self.assertAwsError(lambda: v1.import_rest_api(body=b"not json"), 400, "BadRequestException")
        self.assertAwsError(lambda: v1.import_rest_api(body=b'{"openapi": "3.0.1", "paths": {}}'), 400, "BadRequestException", "info.title")
        self.assertAwsError(lambda: v1.import_rest_api(body=json.dumps({"swagger": "2.0", "info": {"title": "t"}, "paths": {"/x": {"get": {
            "x-amazon-apigateway-integration": {"type": "aws_proxy", "uri": {"Fn::Sub": "x"}}}}}}).encode()), 400, "BadRequestException", "Fn::Sub")
        warned = {"swagger": "2.0", "info": {"title": "w"}, "x-amazon-apigateway-gateway-responses": {}, "paths": {}}
        self.assertAwsError(lambda: v1.import_rest_api(body=json.dumps(warned).encode(), failOnWarnings=True), 400, "BadRequestException")
        lenient = v1.import_rest_api(body=json.dumps(warned).encode())
        self.addCleanup(self._quietly, lambda: v1.delete_rest_api(restApiId=lenient["id"]))
        self.assertTrue(lenient["warnings"])

    def test_openapi_3_with_cli_v1(self):
        document = {
            "openapi": "3.0.1", "info": {"title": "oas3", "version": "1"},
            "servers": [{"url": "https://example.com/{basePath}", "variables": {"basePath": {"default": "/v1"}}}],
            "paths": {"/greet/{name}": {"post": {
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                "x-amazon-apigateway-integration": {"type": "aws_proxy", "httpMethod": "POST",
                                                    "uri": invocation_uri(h.function_arn(self.function))}}}},
        }
        with tempfile.NamedTemporaryFile(suffix=".json") as body:
            body.write(json.dumps(document).encode())
            body.flush()
            imported = self.server.aws_cli("apigateway", "import-rest-api", "--parameters", "basepath=prepend", "--body", f"fileb://{body.name}")
        self.assertEqual(imported.rc, 0, imported)
        api_id = imported.json["id"]
        self.addCleanup(self._quietly, lambda: self.v1.delete_rest_api(restApiId=api_id))
        self.v1.create_deployment(restApiId=api_id, stageName="live")
        self.allow(api_id)
        event = self.get_event(self.url(api_id, "/live/v1/greet/ann"), method="POST", data="hi")
        self.assertEqual((event["resource"], event["pathParameters"], event["body"]), ("/v1/greet/{name}", {"name": "ann"}, "hi"))


class HostileTests(ApiGatewayTestCase):
    """RELIABILITY.md §4.1 for API Gateway: a seeded fuzz of both control planes from botocore's models, and hostile
    requests to the data plane. Never a 5xx from the control plane, always API Gateway's error shape, never a dropped
    connection, a healthy server after."""

    WEIRD = ["", " ", "..", "%2F", "%2e%2e", "%00", "a%00b", "%ZZ", "\u00e9", "\U0001F600", "{}", "[]", "null", "-1", "9" * 30,
             "$default", "ANY /{proxy+}", "GET /", "x" * 3000, "<script>", "%0D%0AX-Injected:%201", "arn:aws:lambda:::function:x"]

    def _value(self, rng: random.Random, shapes: dict, name: str, depth: int = 0):
        shape = shapes[name]
        kind = shape["type"]
        if rng.random() < 0.1:
            return rng.choice([None, 1, -1, 2 ** 63, "x", [], {}, True, 1.5])
        if depth > 3:
            return None
        if kind == "structure":
            return {m: self._value(rng, shapes, spec["shape"], depth + 1) for m, spec in shape.get("members", {}).items()
                    if "location" not in spec and (m in shape.get("required", []) or rng.random() < 0.4)}
        if kind == "list":
            return [self._value(rng, shapes, shape["member"]["shape"], depth + 1) for _ in range(rng.choice([0, 1, 3]))]
        if kind == "map":
            return {rng.choice(self.WEIRD) or "k": self._value(rng, shapes, shape["value"]["shape"], depth + 1) for _ in range(rng.choice([0, 1, 2]))}
        if kind == "string":
            return rng.choice(shape["enum"]) if shape.get("enum") and rng.random() < 0.6 else rng.choice(self.WEIRD)
        if kind in ("integer", "long"):
            return rng.choice([0, -1, 1, 50, 29000, 30001, 2 ** 31, 3601])
        if kind == "double":
            return rng.choice([0.0, -1.0, 1e308])
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "timestamp":
            return rng.choice([0, "yesterday"])
        return None

    def test_control_plane_fuzz(self):
        seed = int(os.environ.get("LAMINA_FUZZ_SEED", "").strip() or 22)
        rng = random.Random(seed)
        loader = botocore.loaders.Loader()
        http_id = self.http_api()
        rest_id = self.v1.create_rest_api(name=self.fn_name())["id"]
        self.addCleanup(self._quietly, lambda: self.v1.delete_rest_api(restApiId=rest_id))
        operations = []
        for service in ("apigatewayv2", "apigateway"):
            model = loader.load_service_model(service, "service-2")
            for name, spec in model["operations"].items():
                operations.append((model, name, spec))
        problems = []
        mark = self.server.mark()
        for _ in range(int(os.environ.get("LAMINA_APIGW_FUZZ_COUNT", "").strip() or 600)):
            model, name, spec = rng.choice(operations)
            path, _, fixed = spec["http"]["requestUri"].partition("?")

            def param(match):
                member = match.group(1).lower().rstrip("+")
                if rng.random() < 0.6 and "api" in member and "key" not in member:
                    return http_id if "v2" in path else rest_id
                return h.quote_path_segment(rng.choice(self.WEIRD) or "x")

            url_path = re.sub(r"\{([^}]+)\}", param, path)
            query = fixed
            shape = model["shapes"].get(spec["input"]["shape"]) if "input" in spec else None
            body: bytes | None = None
            r = rng.random()
            if shape is not None and r < 0.6:
                body = json.dumps(self._value(rng, model["shapes"], spec["input"]["shape"])).encode()
            elif r < 0.75:
                body = rng.choice([b"{", b"[]", b"null", b'{"name": 1}', b"\xff\xfe", b'{"a":' + b"[" * 300 + b"]" * 300 + b"}",
                                   b'{"patchOperations": [{"op": "replace", "path": "/x~1y", "value": "\\ud800"}]}'])
            url = f"{self.server.url}{url_path}" + (f"?{query}" if query else "")
            try:
                response = requests.request(spec["http"]["method"], url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
            except requests.RequestException as e:
                problems.append(f"{name} {url_path}: no answer ({e})")
                continue
            if response.status_code >= 500:
                problems.append(f"{name} {spec['http']['method']} {url_path}: {response.status_code} {response.text[:300]}")
            elif response.status_code >= 400 and not response.headers.get("x-amzn-ErrorType"):
                problems.append(f"{name} {url_path}: {response.status_code} without x-amzn-ErrorType")
        self.assertEqual(requests.get(f"{self.server.url}/health", timeout=30).status_code, 200)
        logged = [line for line in self.server.output_since(mark, 100_000).splitlines() if re.search(r"Unhandled|\bfail: |   at ", line)]
        problems += [f"server log: {line}" for line in logged]
        self.assertFalse(problems, f"seed {seed}:\n" + "\n".join(problems[:10]))

    def test_hostile_data_plane_requests(self):
        api_id = self.http_api()
        self.v2.create_route(ApiId=api_id, RouteKey="GET /items/{id}", Target=f"integrations/{self.lambda_integration(api_id)}")
        self.v2.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
        self.allow(api_id)
        base = self.url(api_id, "")
        for path in ["/items/%2F", "/items/..%2F..%2Fetc%2Fpasswd", "/items/%00", "/items/%ZZ", "/items/" + "a" * 6000, "//items//x", "/items/x?%ZZ=%00",
                     "/items/\u00e9", "/items/a%0D%0AX-Injected:%201"]:
            response = requests.get(base + path, timeout=60)
            self.assertIn(response.status_code, (200, 400, 404, 414, 431), f"{path}: {response.status_code} {response.text[:200]}")
            self.assertNotIn("x-injected", response.headers)
        for method in ["PROPFIND", "TRACE", "FOO"]:
            self.assertEqual(requests.request(method, base + "/items/1", timeout=30).status_code, 404)
        too_big = requests.post(self.url(api_id, "/items/1"), data=b"x" * (10 * 1024 * 1024 + 1), timeout=120)
        self.assertIn(too_big.status_code, (404, 413))
        # Under API Gateway's 10 MB but over Lambda's 6 MB event once base64-encoded: 413, the function never sees it.
        self.v2.create_route(ApiId=api_id, RouteKey="POST /items/{id}", Target=f"integrations/{self.lambda_integration(api_id)}")
        too_long = requests.post(self.url(api_id, "/items/1"), data=bytes(5 * 1024 * 1024), headers={"Content-Type": "application/octet-stream"}, timeout=120)
        self.assertEqual((too_long.status_code, too_long.json()), (413, {"message": "Request Entity Too Large"}))
        huge_header = requests.get(base + "/items/1", headers={"X-Big": "y" * 30_000}, timeout=60)
        self.assertIn(huge_header.status_code, (200, 431))
        self.assertEqual(requests.get(base + "/items/1", timeout=60).status_code, 200)


class DurabilityTests(unittest.TestCase):

    def test_apis_survive_kill_9(self):
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            self.skipTest("needs a server of its own")
        data_dir = Path(tempfile.mkdtemp(prefix="lamina-it-apigw-"))
        self.addCleanup(shutil.rmtree, data_dir, True)
        first = h.LaminaServer("apigw-1", data_dir=data_dir).start()
        try:
            lam = first.client()
            lam.create_function(FunctionName="durable", Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                                Code={"ZipFile": h.make_zip({"app.py": ECHO})})
            lam.add_permission(FunctionName="durable", StatementId="apigw", Action="lambda:InvokeFunction",
                               Principal="apigateway.amazonaws.com")
            v2 = h.boto3_client(first.url, "apigatewayv2")
            http_id = v2.create_api(Name="durable", ProtocolType="HTTP", Target=h.function_arn("durable"))["ApiId"]
            v1 = h.boto3_client(first.url, "apigateway")
            swagger = json.dumps(SWAGGER).replace("__URI__", invocation_uri(h.function_arn("durable")))
            rest_id = v1.import_rest_api(body=swagger.encode())["id"]
            v1.create_deployment(restApiId=rest_id, stageName="Prod")
        finally:
            first.kill()
        second = h.LaminaServer("apigw-2", data_dir=data_dir).start()
        try:
            self.assertEqual(requests.get(f"{second.url}/_aws/execute-api/{http_id}/x", timeout=60).json()["event"]["rawPath"], "/x")
            self.assertEqual(requests.get(f"{second.url}/_aws/execute-api/{rest_id}/Prod/hello", timeout=60).json()["event"]["resource"], "/hello")
            v1 = h.boto3_client(second.url, "apigateway")
            self.assertEqual(len(v1.get_deployments(restApiId=rest_id)["items"]), 1)
        finally:
            second.stop()


if __name__ == "__main__":
    unittest.main()
