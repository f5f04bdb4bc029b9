"""API Gateway (issue #22) beyond routing: authorizers, API keys and usage plans, access logs, metrics and HTTP
proxies, driven by boto3, AWS CLI v1 and v2, and requests on the path form (/_aws/execute-api/<apiId>/...).

* Lambda authorizers of HTTP APIs: simple responses and IAM policies (payload 2.0 and 1.0), results cached by the
  identity sources for the TTL (the authorizer is not invoked again), 401 without an identity, 403 when denied, 500
  when it fails or is not permitted; their context reaches the integration.
* REST TOKEN and REQUEST authorizers: policies for the method ARN, 401 on "Unauthorized", explicit deny messages.
* JWT authorizers against a JWKS served by the test (RS256 tokens signed with openssl): claims in the event, 401 for
  missing, expired, tampered, wrongly addressed tokens and unknown keys, 403 without the route's scopes.
* AWS_IAM routes: unsigned 403, SigV4-signed (service execute-api) 200 with the caller in the event.
* API keys: apiKeyRequired with keys, usage plans, quota (429 Limit Exceeded) and GetUsage, with AWS CLI v1.
* Access logs in a log group with $context variables (read back with the Logs API), metrics per API, stage and
  route at /metrics, HTTP_PROXY integrations to an HTTP server the test runs.
"""
from __future__ import annotations

import base64
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
import uuid
from pathlib import Path

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import boto3
import botocore.exceptions
import requests
from botocore.config import Config

import lamina_harness as h

MODULE = __name__
CLI_V2 = "/usr/bin/aws"

ECHO = r'''
import json


def handler(event, context):
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps({"event": event})}
'''

# One authorizer for every test: the token decides. simple-*: a simple response; policy-*: an IAM policy for the ARN
# of the request; fail: raises "Unauthorized" (a REST TOKEN authorizer's 401); broken: an answer that is no policy.
# COUNT (per environment) shows in the context whether a result came from the cache.
AUTHORIZER = r'''
COUNT = 0


def handler(event, context):
    global COUNT
    COUNT += 1
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    token = event.get("authorizationToken") or headers.get("authorization") or ""
    if event.get("type") == "REQUEST" and event.get("identitySource") and not token:
        token = event["identitySource"][0] if isinstance(event["identitySource"], list) else event["identitySource"]
    arn = event.get("routeArn") or event.get("methodArn")
    ctx = {"count": COUNT, "token": token, "num": 7, "flag": True}
    if token == "fail":
        raise Exception("Unauthorized")
    if token == "broken":
        return {"nonsense": 1}
    if token.startswith("simple-"):
        return {"isAuthorized": token.startswith("simple-allow"), "context": ctx}
    effect = "Allow" if token.startswith("policy-allow") else "Deny"
    return {"principalId": "user-" + token, "context": ctx, "usageIdentifierKey": event.get("queryStringParameters", {}).get("key") if event.get("queryStringParameters") else None,
            "policyDocument": {"Version": "2012-10-17", "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": arn}]}}
'''

_ECHO: str | None = None
_AUTH: str | None = None


def setUpModule():
    global _ECHO, _AUTH
    srv = h.start_module_server(MODULE)
    lam = srv.client()
    tag = uuid.uuid4().hex[:6]
    _ECHO, _AUTH = f"apigw-auth-echo-{tag}", f"apigw-authorizer-{tag}"
    for name, source in ((_ECHO, ECHO), (_AUTH, AUTHORIZER)):
        lam.create_function(FunctionName=name, Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                            Code={"ZipFile": h.make_zip({"app.py": source})})
        # Any API of this server's account may invoke them (each test's narrower grants are in test_apigateway).
        lam.add_permission(FunctionName=name, StatementId="apigw", Action="lambda:InvokeFunction", Principal="apigateway.amazonaws.com",
                           SourceArn=f"arn:aws:execute-api:{h.REGION}:{h.ACCOUNT}:*")


def tearDownModule():
    h.stop_module_server(MODULE)


def invocation_uri(name: str) -> str:
    return f"arn:aws:apigateway:{h.REGION}:lambda:path/2015-03-31/functions/{h.function_arn(name)}/invocations"


class AuthTestCase(h.LaminaTestCase):

    @property
    def v2(self):
        return h.boto3_client(self.server.url, "apigatewayv2")

    @property
    def v1(self):
        return h.boto3_client(self.server.url, "apigateway")

    def url(self, api_id: str, path: str) -> str:
        return f"{self.server.url}/_aws/execute-api/{api_id}{path}"

    def http_api(self, **kwargs) -> tuple[str, str]:
        """An HTTP API with an echo integration and an AutoDeploy $default stage: (api id, integration id)."""
        api_id = self.v2.create_api(Name=self.fn_name(), ProtocolType="HTTP", **kwargs)["ApiId"]
        self.addCleanup(self._quietly, lambda: self.v2.delete_api(ApiId=api_id))
        integration = self.v2.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", PayloadFormatVersion="2.0",
                                                 IntegrationUri=h.function_arn(_ECHO))["IntegrationId"]
        self.v2.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
        return api_id, integration

    def rest_api(self, authorizer: dict | None = None, api_key_required: bool = False) -> tuple[str, str | None]:
        """A REST API with ANY /{proxy+} to the echo function, deployed to stage 'test': (api id, authorizer id)."""
        v1 = self.v1
        api_id = v1.create_rest_api(name=self.fn_name())["id"]
        self.addCleanup(self._quietly, lambda: v1.delete_rest_api(restApiId=api_id))
        root = v1.get_resources(restApiId=api_id)["items"][0]["id"]
        proxy = v1.create_resource(restApiId=api_id, parentId=root, pathPart="{proxy+}")["id"]
        authorizer_id = None
        method = {"authorizationType": "NONE"}
        if authorizer:
            authorizer_id = v1.create_authorizer(restApiId=api_id, name="auth", authorizerUri=invocation_uri(_AUTH), **authorizer)["id"]
            method = {"authorizationType": "CUSTOM", "authorizerId": authorizer_id}
        v1.put_method(restApiId=api_id, resourceId=proxy, httpMethod="ANY", apiKeyRequired=api_key_required, **method)
        v1.put_integration(restApiId=api_id, resourceId=proxy, httpMethod="ANY", type="AWS_PROXY", integrationHttpMethod="POST",
                           uri=invocation_uri(_ECHO))
        v1.create_deployment(restApiId=api_id, stageName="test")
        return api_id, authorizer_id

    @staticmethod
    def _quietly(fn) -> None:
        try:
            fn()
        except botocore.exceptions.ClientError:
            pass

    def event(self, url: str, **kwargs) -> dict:
        response = requests.get(url, timeout=60, **kwargs)
        self.assertEqual(response.status_code, 200, response.text)
        return response.json()["event"]


class LambdaAuthorizerTests(AuthTestCase):

    def test_http_simple_responses_cached_by_identity(self):
        api_id, integration = self.http_api()
        authorizer = self.v2.create_authorizer(ApiId=api_id, Name="simple", AuthorizerType="REQUEST", AuthorizerUri=invocation_uri(_AUTH),
                                               AuthorizerPayloadFormatVersion="2.0", EnableSimpleResponses=True,
                                               IdentitySource=["$request.header.Authorization"], AuthorizerResultTtlInSeconds=300)
        self.v2.create_route(ApiId=api_id, RouteKey="GET /secure", Target=f"integrations/{integration}", AuthorizationType="CUSTOM",
                             AuthorizerId=authorizer["AuthorizerId"])
        url = self.url(api_id, "/secure")

        first = self.event(url, headers={"Authorization": "simple-allow"})["requestContext"]["authorizer"]["lambda"]
        self.assertEqual((first["token"], first["num"], first["flag"]), ("simple-allow", 7, True))
        again = self.event(url, headers={"Authorization": "simple-allow"})["requestContext"]["authorizer"]["lambda"]
        self.assertEqual(again["count"], first["count"], "a cached result must not invoke the authorizer again")
        missing = requests.get(url, timeout=30)
        self.assertEqual((missing.status_code, missing.json()), (401, {"message": "Unauthorized"}))
        denied = requests.get(url, headers={"Authorization": "simple-deny"}, timeout=60)
        self.assertEqual((denied.status_code, denied.json()), (403, {"message": "Forbidden"}))
        # A new identity is a new decision (the denial in between was one too).
        other = self.event(url, headers={"Authorization": "simple-allow-2"})["requestContext"]["authorizer"]["lambda"]
        self.assertGreater(other["count"], first["count"])
        # ResetAuthorizersCache drops the cached decisions of the stage.
        self.v2.reset_authorizers_cache(ApiId=api_id, StageName="$default")
        fresh = self.event(url, headers={"Authorization": "simple-allow"})["requestContext"]["authorizer"]["lambda"]
        self.assertGreater(fresh["count"], other["count"])
        broken = requests.get(url, headers={"Authorization": "broken"}, timeout=60)
        self.assertEqual((broken.status_code, broken.json()), (500, {"message": "Internal Server Error"}))

    def test_http_policy_responses_and_permission(self):
        api_id, integration = self.http_api()
        authorizer = self.v2.create_authorizer(ApiId=api_id, Name="policy", AuthorizerType="REQUEST", AuthorizerUri=invocation_uri(_AUTH),
                                               AuthorizerPayloadFormatVersion="1.0", IdentitySource=["$request.header.Authorization"],
                                               AuthorizerResultTtlInSeconds=0)
        self.v2.create_route(ApiId=api_id, RouteKey="GET /things/{id}", Target=f"integrations/{integration}", AuthorizationType="CUSTOM",
                             AuthorizerId=authorizer["AuthorizerId"])
        url = self.url(api_id, "/things/1")
        allowed = self.event(url, headers={"Authorization": "policy-allow"})["requestContext"]["authorizer"]["lambda"]
        self.assertEqual(allowed["token"], "policy-allow")
        # TTL 0: every request asks the authorizer again.
        self.assertGreater(self.event(url, headers={"Authorization": "policy-allow"})["requestContext"]["authorizer"]["lambda"]["count"], allowed["count"])
        self.assertEqual(requests.get(url, headers={"Authorization": "policy-deny"}, timeout=60).status_code, 403)

        # An authorizer function API Gateway may not invoke: 500, as on AWS.
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": AUTHORIZER}), name=name)
        locked = self.v2.create_authorizer(ApiId=api_id, Name="locked", AuthorizerType="REQUEST", AuthorizerUri=invocation_uri(name),
                                           AuthorizerPayloadFormatVersion="2.0", EnableSimpleResponses=True, IdentitySource=["$request.header.Authorization"])
        self.v2.create_route(ApiId=api_id, RouteKey="GET /locked", Target=f"integrations/{integration}", AuthorizationType="CUSTOM",
                             AuthorizerId=locked["AuthorizerId"])
        self.assertEqual(requests.get(self.url(api_id, "/locked"), headers={"Authorization": "simple-allow"}, timeout=60).status_code, 500)
        self.lam.add_permission(FunctionName=name, StatementId="authorizer", Action="lambda:InvokeFunction", Principal="apigateway.amazonaws.com",
                                SourceArn=f"arn:aws:execute-api:{h.REGION}:{h.ACCOUNT}:{api_id}/authorizers/{locked['AuthorizerId']}")
        self.assertEqual(requests.get(self.url(api_id, "/locked"), headers={"Authorization": "simple-allow"}, timeout=60).status_code, 200)
        self.assertAwsError(lambda: self.v2.delete_authorizer(ApiId=api_id, AuthorizerId=locked["AuthorizerId"]), 409, "ConflictException")

    def test_rest_token_and_request_authorizers(self):
        api_id, _ = self.rest_api({"type": "TOKEN", "identitySource": "method.request.header.Authorization", "authorizerResultTtlInSeconds": 0})
        url = self.url(api_id, "/test/anything")
        event = self.event(url, headers={"Authorization": "policy-allow-1"})
        authorizer = event["requestContext"]["authorizer"]
        # REST APIs pass the context's values as strings, and the principal beside them.
        self.assertEqual((authorizer["principalId"], authorizer["num"], authorizer["flag"], authorizer["token"]),
                         ("user-policy-allow-1", "7", "true", "policy-allow-1"))
        denied = requests.get(url, headers={"Authorization": "policy-deny"}, timeout=60)
        self.assertEqual((denied.status_code, denied.json()), (403, {"message": "User is not authorized to access this resource with an explicit deny"}))
        unauthorized = requests.get(url, headers={"Authorization": "fail"}, timeout=60)
        self.assertEqual((unauthorized.status_code, unauthorized.json()), (401, {"message": "Unauthorized"}))
        self.assertEqual(requests.get(url, timeout=30).status_code, 401)

        request_api, _ = self.rest_api({"type": "REQUEST", "identitySource": "method.request.header.Authorization,method.request.querystring.q",
                                        "authorizerResultTtlInSeconds": 300})
        first = self.event(self.url(request_api, "/test/x?q=1"), headers={"Authorization": "policy-allow"})
        second = self.event(self.url(request_api, "/test/x?q=1"), headers={"Authorization": "policy-allow"})
        self.assertEqual(first["requestContext"]["authorizer"]["count"], second["requestContext"]["authorizer"]["count"])
        self.assertEqual(requests.get(self.url(request_api, "/test/x"), headers={"Authorization": "policy-allow"}, timeout=30).status_code, 401)
        # The cached policy allows only the method ARN it was written for: another path with the same identity is
        # denied from the cache (AWS's well-known caching behaviour), until the cache is flushed.
        self.assertEqual(requests.get(self.url(request_api, "/test/y?q=1"), headers={"Authorization": "policy-allow"}, timeout=30).status_code, 403)
        self.assertEqual(self.v1.flush_stage_authorizers_cache(restApiId=request_api, stageName="test")["ResponseMetadata"]["HTTPStatusCode"], 202)
        third = self.event(self.url(request_api, "/test/y?q=1"), headers={"Authorization": "policy-allow"})
        self.assertGreater(third["requestContext"]["authorizer"]["count"], first["requestContext"]["authorizer"]["count"])


class JwtAuthorizerTests(AuthTestCase):
    """A JWKS server on loopback and RS256 tokens signed by openssl: what an OIDC issuer does."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.workdir = Path(tempfile.mkdtemp(prefix="lamina-it-jwt-"))
        cls.key = cls.workdir / "key.pem"
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(cls.key)],
                       check=True, capture_output=True)
        modulus = subprocess.run(["openssl", "rsa", "-in", str(cls.key), "-noout", "-modulus"], check=True, capture_output=True, text=True).stdout
        n = base64.urlsafe_b64encode(bytes.fromhex(modulus.strip().split("=", 1)[1])).rstrip(b"=").decode()
        jwks = {"keys": [{"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256", "n": n, "e": "AQAB"}]}

        class Issuer(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                if self.path == "/.well-known/openid-configuration":
                    body = json.dumps({"issuer": cls.issuer, "jwks_uri": cls.issuer + "/keys"}).encode()
                elif self.path == "/keys":
                    body = json.dumps(jwks).encode()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        cls.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Issuer)
        cls.issuer = f"http://127.0.0.1:{cls.httpd.server_address[1]}"
        threading.Thread(target=cls.httpd.serve_forever, daemon=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.httpd.shutdown()
        cls.httpd.server_close()
        shutil.rmtree(cls.workdir, ignore_errors=True)
        super().tearDownClass()

    def token(self, kid: str = "k1", **claims) -> str:
        now = int(time.time())
        payload = {"iss": self.issuer, "aud": "my-app", "sub": "ann", "exp": now + 300, "iat": now - 5, **claims}
        encode = lambda part: base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()  # noqa: E731
        signing_input = f"{encode({'alg': 'RS256', 'typ': 'JWT', 'kid': kid})}.{encode(payload)}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=signing_input.encode(),
                                   check=True, capture_output=True).stdout
        return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"

    def test_jwt_authorizer(self):
        api_id, integration = self.http_api()
        authorizer = self.v2.create_authorizer(ApiId=api_id, Name="jwt", AuthorizerType="JWT", IdentitySource=["$request.header.Authorization"],
                                               JwtConfiguration={"Issuer": self.issuer, "Audience": ["my-app"]})["AuthorizerId"]
        self.v2.create_route(ApiId=api_id, RouteKey="GET /me", Target=f"integrations/{integration}", AuthorizationType="JWT", AuthorizerId=authorizer)
        self.v2.create_route(ApiId=api_id, RouteKey="POST /me", Target=f"integrations/{integration}", AuthorizationType="JWT", AuthorizerId=authorizer,
                             AuthorizationScopes=["write"])
        url = self.url(api_id, "/me")

        jwt = self.event(url, headers={"Authorization": f"Bearer {self.token(scope='read write')}"})["requestContext"]["authorizer"]["jwt"]
        self.assertEqual((jwt["claims"]["sub"], jwt["claims"]["aud"], jwt["claims"]["iss"]), ("ann", "my-app", self.issuer))
        self.assertEqual(jwt["scopes"], ["read", "write"])
        # The bare token works as well as the Bearer form.
        self.assertEqual(requests.get(url, headers={"Authorization": self.token()}, timeout=60).status_code, 200)

        tampered = self.token()[:-4] + ("AAAA" if not self.token().endswith("AAAA") else "BBBB")
        for headers in ({}, {"Authorization": "Bearer not.a.jwt"}, {"Authorization": f"Bearer {self.token(exp=int(time.time()) - 60)}"},
                        {"Authorization": f"Bearer {self.token(aud='someone-else')}"}, {"Authorization": f"Bearer {self.token(iss='https://evil')}"},
                        {"Authorization": f"Bearer {self.token(kid='unknown')}"}, {"Authorization": f"Bearer {tampered}"}):
            refused = requests.get(url, headers=headers, timeout=60)
            self.assertEqual((refused.status_code, refused.json()), (401, {"message": "Unauthorized"}), headers)
            self.assertIn("Bearer", refused.headers["www-authenticate"])
        # Scopes: the token needs one of the route's.
        forbidden = requests.post(url, headers={"Authorization": f"Bearer {self.token(scope='read')}"}, timeout=60)
        self.assertEqual((forbidden.status_code, forbidden.json()), (403, {"message": "Forbidden"}))
        self.assertEqual(requests.post(url, headers={"Authorization": f"Bearer {self.token(scp=['write'])}"}, timeout=60).status_code, 200)
        self.assertAwsError(lambda: self.v2.create_authorizer(ApiId=api_id, Name="bad", AuthorizerType="JWT", IdentitySource=["$request.header.A"],
                                                              JwtConfiguration={"Audience": ["x"]}), 400, "BadRequestException")


class AccessTests(AuthTestCase):

    def test_aws_iam_route(self):
        api_id, integration = self.http_api()
        self.v2.create_route(ApiId=api_id, RouteKey="GET /iam", Target=f"integrations/{integration}", AuthorizationType="AWS_IAM")
        url = self.url(api_id, "/iam")
        unsigned = requests.get(url, timeout=30)
        self.assertEqual((unsigned.status_code, unsigned.json()), (403, {"message": "Missing Authentication Token"}))
        request = botocore.awsrequest.AWSRequest(method="GET", url=url)
        botocore.auth.SigV4Auth(botocore.credentials.Credentials(h.ACCESS_KEY, h.SECRET_KEY), "execute-api", h.REGION).add_auth(request)
        signed = requests.get(url, headers=dict(request.headers.items()), timeout=60)
        self.assertEqual(signed.status_code, 200, signed.text)
        self.assertEqual(signed.json()["event"]["requestContext"]["authorizer"]["iam"]["accountId"], h.ACCOUNT)

    def test_api_keys_and_usage_plans_with_cli_v1(self):
        api_id, _ = self.rest_api(api_key_required=True)
        url = self.url(api_id, "/test/thing")
        self.assertEqual(requests.get(url, timeout=30).json(), {"message": "Forbidden"})

        def aws(*args):
            result = self.server.aws_cli(*args)
            self.assertEqual(result.rc, 0, result)
            return result.json

        key = aws("apigateway", "create-api-key", "--name", self.fn_name(), "--enabled")
        self.addCleanup(self._quietly, lambda: self.v1.delete_api_key(apiKey=key["id"]))
        self.assertEqual(len(key["value"]), 40)
        self.assertEqual(requests.get(url, headers={"x-api-key": key["value"]}, timeout=30).status_code, 403)  # in no plan yet
        plan = aws("apigateway", "create-usage-plan", "--name", self.fn_name(), "--api-stages", f"apiId={api_id},stage=test",
                   "--quota", "limit=2,period=DAY", "--throttle", "rateLimit=100,burstLimit=100")
        self.addCleanup(self._quietly, lambda: self.v1.delete_usage_plan(usagePlanId=plan["id"]))
        aws("apigateway", "create-usage-plan-key", "--usage-plan-id", plan["id"], "--key-id", key["id"], "--key-type", "API_KEY")
        listed = aws("apigateway", "get-usage-plan-keys", "--usage-plan-id", plan["id"])
        self.assertEqual([k["id"] for k in listed["items"]], [key["id"]])
        self.assertNotIn("value", aws("apigateway", "get-api-key", "--api-key", key["id"]))
        self.assertEqual(aws("apigateway", "get-api-key", "--api-key", key["id"], "--include-value")["value"], key["value"])

        identity = self.event(url, headers={"x-api-key": key["value"]})["requestContext"]["identity"]
        self.assertEqual((identity["apiKey"], identity["apiKeyId"]), (key["value"], key["id"]))
        self.assertEqual(requests.get(url, headers={"x-api-key": key["value"]}, timeout=60).status_code, 200)
        over = requests.get(url, headers={"x-api-key": key["value"]}, timeout=30)
        self.assertEqual((over.status_code, over.json()), (429, {"message": "Limit Exceeded"}))
        today = time.strftime("%Y-%m-%d", time.gmtime())
        usage = aws("apigateway", "get-usage", "--usage-plan-id", plan["id"], "--start-date", today, "--end-date", today)
        self.assertEqual(usage["items"][key["id"]], [[2, 0]])
        aws("apigateway", "update-usage", "--usage-plan-id", plan["id"], "--key-id", key["id"], "--patch-operations", "op=replace,path=/remaining,value=5")
        self.assertEqual(requests.get(url, headers={"x-api-key": key["value"]}, timeout=60).status_code, 200)
        aws("apigateway", "update-api-key", "--api-key", key["id"], "--patch-operations", "op=replace,path=/enabled,value=false")
        self.assertEqual(requests.get(url, headers={"x-api-key": key["value"]}, timeout=30).status_code, 403)
        self.assertAwsError(lambda: self.v1.create_api_key(name="short", value="too-short"), 400, "BadRequestException")
        self.assertAwsError(lambda: self.v1.create_usage_plan_key(usagePlanId=plan["id"], keyId="nope", keyType="API_KEY"), 404, "NotFoundException")

    def test_access_logs_and_metrics(self):
        group = f"/apigw/access/{uuid.uuid4().hex[:8]}"
        api_id, integration = self.http_api()
        self.v2.create_route(ApiId=api_id, RouteKey="GET /logged/{id}", Target=f"integrations/{integration}")
        fmt = json.dumps({"requestId": "$context.requestId", "status": "$context.status", "routeKey": "$context.routeKey",
                          "path": "$context.path", "ip": "$context.identity.sourceIp", "latency": "$context.integrationLatency",
                          "error": "$context.error.message"})
        self.v2.update_stage(ApiId=api_id, StageName="$default",
                             AccessLogSettings={"DestinationArn": f"arn:aws:logs:{h.REGION}:{h.ACCOUNT}:log-group:{group}", "Format": fmt})
        ok = requests.get(self.url(api_id, "/logged/1"), timeout=60)
        missing = requests.get(self.url(api_id, "/nothing"), timeout=60)
        self.assertEqual((ok.status_code, missing.status_code), (200, 404))

        logs = h.boto3_client(self.server.url, "logs")
        deadline = time.monotonic() + 30
        lines: list[dict] = []
        while time.monotonic() < deadline:
            try:
                lines = [json.loads(e["message"]) for e in logs.filter_log_events(logGroupName=group)["events"]]
            except logs.exceptions.ResourceNotFoundException:
                lines = []
            if len(lines) >= 2:
                break
            time.sleep(0.1)
        by_id = {line["requestId"]: line for line in lines}
        first = by_id[ok.headers["apigw-requestid"]]
        self.assertEqual((first["status"], first["routeKey"], first["path"], first["ip"], first["error"]), ("200", "GET /logged/{id}", "/logged/1", "127.0.0.1", "-"))
        self.assertRegex(first["latency"], r"^\d+$")
        second = by_id[missing.headers["apigw-requestid"]]
        self.assertEqual((second["status"], second["routeKey"], second["error"]), ("404", "-", "Not Found"))
        streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
        self.assertEqual([s["logStreamName"] for s in streams], [f"{api_id}/$default"])

        metrics = requests.get(f"{self.server.url}/metrics", timeout=30).text
        ok_series = re.search(rf'^lamina_api_requests_total\{{api="{api_id}",stage="\$default",route="GET /logged/{{id}}",status="2xx"\}} (\d+)$', metrics, re.M)
        self.assertIsNotNone(ok_series, metrics[-3000:])
        self.assertEqual(ok_series.group(1), "1")
        self.assertRegex(metrics, rf'lamina_api_requests_total\{{api="{api_id}",stage="\$default",route="-",status="4xx"\}} 1')
        self.assertRegex(metrics, rf'lamina_api_latency_seconds_count\{{api="{api_id}",stage="\$default",route="GET /logged/{{id}}"\}} 1')
        self.assertRegex(metrics, rf'lamina_api_integration_latency_seconds_count\{{api="{api_id}",stage="\$default",route="GET /logged/{{id}}"\}} 1')

        # A route or a stage no longer served takes its series along; the rest stay.
        route_id = next(r["RouteId"] for r in self.v2.get_routes(ApiId=api_id)["Items"] if r["RouteKey"] == "GET /logged/{id}")
        self.v2.delete_route(ApiId=api_id, RouteId=route_id)  # the $default stage deploys itself
        metrics = requests.get(f"{self.server.url}/metrics", timeout=30).text
        self.assertEqual(re.findall(rf'^.*api="{api_id}".*route="GET /logged/{{id}}".*$', metrics, re.M), [])
        self.assertRegex(metrics, rf'lamina_api_requests_total\{{api="{api_id}",stage="\$default",route="-",status="4xx"\}} 1')
        self.v2.create_route(ApiId=api_id, RouteKey="GET /two", Target=f"integrations/{integration}")
        self.v2.create_stage(ApiId=api_id, StageName="two", AutoDeploy=True)
        self.assertEqual(requests.get(self.url(api_id, "/two/two"), timeout=60).status_code, 200)
        metrics = requests.get(f"{self.server.url}/metrics", timeout=30).text
        self.assertRegex(metrics, rf'lamina_api_requests_total\{{api="{api_id}",stage="two",route="GET /two",status="2xx"\}} 1')
        self.v2.delete_stage(ApiId=api_id, StageName="two")
        metrics = requests.get(f"{self.server.url}/metrics", timeout=30).text
        self.assertEqual(re.findall(rf'^.*api="{api_id}",stage="two".*$', metrics, re.M), [])
        self.assertRegex(metrics, rf'lamina_api_requests_total\{{api="{api_id}",stage="\$default",route="-",status="4xx"\}} 1')

        # A deleted API's series leave /metrics (APIs made and deleted by the hundred kept every one).
        self.v2.delete_api(ApiId=api_id)
        metrics = requests.get(f"{self.server.url}/metrics", timeout=30).text
        self.assertEqual(re.findall(rf'^.*api="{api_id}".*$', metrics, re.M), [])

    def test_rest_access_logs_with_cli_v2(self):
        if shutil.which(CLI_V2) is None:
            self.skipTest("AWS CLI v2 (/usr/bin/aws) is not installed")
        group = f"rest-access-{uuid.uuid4().hex[:8]}"
        api_id, _ = self.rest_api()
        updated = self.server.aws_cli("apigateway", "update-stage", "--rest-api-id", api_id, "--stage-name", "test", "--patch-operations",
                                      f"op=replace,path=/accessLogSettings/destinationArn,value=arn:aws:logs:{h.REGION}:{h.ACCOUNT}:log-group:{group}",
                                      "op=replace,path=/accessLogSettings/format,value=$context.requestId $context.httpMethod $context.resourcePath $context.status",
                                      cli=CLI_V2)
        self.assertEqual(updated.rc, 0, updated)
        answered = requests.post(self.url(api_id, "/test/a/b"), timeout=60)
        self.assertEqual(answered.status_code, 200)
        logs = h.boto3_client(self.server.url, "logs")
        expected = f"{answered.headers['x-amz-apigw-id']} POST /{{proxy+}} 200"
        deadline = time.monotonic() + 30
        messages: list[str] = []
        while time.monotonic() < deadline and expected not in messages:
            try:
                messages = [e["message"] for e in logs.filter_log_events(logGroupName=group)["events"]]
            except logs.exceptions.ResourceNotFoundException:
                messages = []
            time.sleep(0.1)
        self.assertIn(expected, messages)


class HttpProxyTests(AuthTestCase):

    def test_http_proxy_integration(self):
        seen: list[dict] = []

        class Backend(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen.append({"method": self.command, "path": self.path, "body": body.decode(), "x-test": self.headers.get("X-Test")})
                answer = json.dumps(seen[-1]).encode()
                self.send_response(207)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Backend", "yes")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_GET = do_POST = _answer  # noqa: N815 - http.server's names

            def log_message(self, *args):
                pass

        backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Backend)
        threading.Thread(target=backend.serve_forever, daemon=True).start()
        self.addCleanup(backend.server_close)
        self.addCleanup(backend.shutdown)
        base = f"http://127.0.0.1:{backend.server_address[1]}"
        api_id = self.v2.create_api(Name=self.fn_name(), ProtocolType="HTTP")["ApiId"]
        self.addCleanup(self._quietly, lambda: self.v2.delete_api(ApiId=api_id))
        mapped = self.v2.create_integration(ApiId=api_id, IntegrationType="HTTP_PROXY", IntegrationMethod="ANY", IntegrationUri=f"{base}/base/{{proxy}}",
                                            PayloadFormatVersion="1.0")["IntegrationId"]
        whole = self.v2.create_integration(ApiId=api_id, IntegrationType="HTTP_PROXY", IntegrationMethod="ANY", IntegrationUri=base,
                                           PayloadFormatVersion="1.0")["IntegrationId"]
        self.v2.create_route(ApiId=api_id, RouteKey="ANY /p/{proxy+}", Target=f"integrations/{mapped}")
        self.v2.create_route(ApiId=api_id, RouteKey="$default", Target=f"integrations/{whole}")
        self.v2.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)

        proxied = requests.post(self.url(api_id, "/p/x/y?q=1"), data="hello", headers={"X-Test": "t"}, timeout=60)
        self.assertEqual((proxied.status_code, proxied.headers["x-backend"]), (207, "yes"))
        self.assertEqual(proxied.json(), {"method": "POST", "path": "/base/x/y?q=1", "body": "hello", "x-test": "t"})
        # The $default route passes the whole path on.
        self.assertEqual(requests.get(self.url(api_id, "/any/where?z=2"), timeout=60).json()["path"], "/any/where?z=2")
        backend.shutdown()
        backend.server_close()
        gone = requests.get(self.url(api_id, "/any/where"), timeout=60)
        self.assertEqual(gone.status_code, 500)


class AccessKeyTests(unittest.TestCase):
    """With access keys, the control planes need a signature of one (service apigateway); the data plane does not (an
    API's routes have their own authorization), except AWS_IAM routes, which need a valid one (service execute-api)."""

    @classmethod
    def setUpClass(cls):
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            raise unittest.SkipTest("needs a server of its own")
        cls.root = Path(tempfile.mkdtemp(prefix="lamina-it-apigw-keys-"))
        created = subprocess.run([str(h.REPO_ROOT / "lamina"), "keys", "create", "--data", str(cls.root / "data")],
                                 capture_output=True, text=True, timeout=120)
        assert created.returncode == 0, created.stderr
        cls.key = json.loads(created.stdout)
        cls.server = h.LaminaServer("apigw-keys", data_dir=cls.root / "data").start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    def client(self, service: str, secret: str | None = None):
        return boto3.client(service, endpoint_url=self.server.url, region_name=h.REGION, aws_access_key_id=self.key["AccessKeyId"],
                            aws_secret_access_key=secret or self.key["SecretAccessKey"], config=Config(retries={"max_attempts": 0}))

    def signed_get(self, url: str, secret: str) -> requests.Response:
        request = botocore.awsrequest.AWSRequest(method="GET", url=url)
        botocore.auth.SigV4Auth(botocore.credentials.Credentials(self.key["AccessKeyId"], secret), "execute-api", h.REGION).add_auth(request)
        return requests.get(url, headers=dict(request.headers.items()), timeout=60)

    def test_control_plane_signed_data_plane_open(self):
        lam, v2 = self.client("lambda"), self.client("apigatewayv2")
        lam.create_function(FunctionName="keyed", Runtime="python3.12", Role=h.ROLE, Handler="app.handler", Code={"ZipFile": h.make_zip({"app.py": ECHO})})
        lam.add_permission(FunctionName="keyed", StatementId="apigw", Action="lambda:InvokeFunction", Principal="apigateway.amazonaws.com")
        api_id = v2.create_api(Name="keyed", ProtocolType="HTTP", Target=h.function_arn("keyed"))["ApiId"]
        integration = v2.get_routes(ApiId=api_id)["Items"][0]["Target"]
        v2.create_route(ApiId=api_id, RouteKey="GET /iam", Target=integration, AuthorizationType="AWS_IAM")
        with self.assertRaises(botocore.exceptions.ClientError) as refused:
            self.client("apigatewayv2", secret="wrong" * 8).get_apis()
        self.assertEqual(refused.exception.response["ResponseMetadata"]["HTTPStatusCode"], 403)
        self.assertEqual(requests.get(f"{self.server.url}/v2/apis", timeout=30).status_code, 403)

        base = f"{self.server.url}/_aws/execute-api/{api_id}"
        self.assertEqual(requests.get(f"{base}/open", timeout=60).status_code, 200)
        self.assertEqual(requests.get(f"{base}/iam", timeout=30).json(), {"message": "Missing Authentication Token"})
        self.assertEqual(self.signed_get(f"{base}/iam", "wrong" * 8).status_code, 403)
        signed = self.signed_get(f"{base}/iam", self.key["SecretAccessKey"])
        self.assertEqual(signed.status_code, 200, signed.text)
        self.assertEqual(signed.json()["event"]["requestContext"]["authorizer"]["iam"]["accessKey"], self.key["AccessKeyId"])
