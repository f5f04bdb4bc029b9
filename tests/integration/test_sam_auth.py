"""SAM's Cors and Auth on AWS::Serverless::Api and HttpApi (issue #23): a shop's API written the way SAM's docs write
them — a Lambda TOKEN authorizer as the REST API's default, a method that opts out with `Authorizer: NONE`, one that
needs an API key, CORS preflight answers; an HTTP API with a Lambda REQUEST authorizer (simple responses), a route
without authorization and one behind IAM. Deployed with `./lamina deploy` and used over HTTP with `requests` and
SigV4-signed calls; the template passes cfn-lint, and Lamina's transform writes the same definitions and permissions
as AWS's own (aws-sam-translator), Swagger bodies compared whole. The same gates in plain CloudFormation:
AWS::ApiGateway::Authorizer, ApiKey, UsagePlan and UsagePlanKey created, updated in place and deleted with their stack,
and an AWS::ApiGatewayV2::Authorizer on an HTTP API's route."""
from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from pathlib import Path

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import requests

import cloudformation_support as cs
import lamina_harness as h

MODULE = __name__

SHOP_TEMPLATE = """AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Description: A shop's REST and HTTP APIs behind authorizers, with CORS for its web front end
Metadata:
  cfn-lint:
    config:
      # SAM's own output for Auth.UsagePlan has a DependsOn next to a Ref (W3005), which cfn-lint sees after transforming.
      ignore_checks: [W3005]

Globals:
  Function:
    Runtime: python3.12
    Timeout: 5

Resources:
  ShopApi:
    Type: AWS::Serverless::Api
    Properties:
      StageName: Prod
      Cors:
        AllowOrigin: "'https://shop.example'"
        AllowHeaders: "'Content-Type,Authorization'"
        MaxAge: "'300'"
      Auth:
        DefaultAuthorizer: TokenGate
        AddDefaultAuthorizerToCorsPreflight: false
        UsagePlan:
          CreateUsagePlan: PER_API
          UsagePlanName: shop-partners
          Quota:
            Limit: 1000
            Period: DAY
        Authorizers:
          TokenGate:
            FunctionArn: !GetAtt Gatekeeper.Arn
            Identity:
              ReauthorizeEvery: 0

  ShopHttpApi:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        EnableIamAuthorizer: true
        DefaultAuthorizer: KeyGate
        Authorizers:
          KeyGate:
            FunctionArn: !GetAtt HttpGatekeeper.Arn
            AuthorizerPayloadFormatVersion: "2.0"
            EnableSimpleResponses: true
            EnableFunctionDefaultPermissions: true
            Identity:
              Headers:
                - X-Shop-Key

  Gatekeeper:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: gate/
      Handler: gate.token

  HttpGatekeeper:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: gate/
      Handler: gate.http

  Backend:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: backend/
      Handler: app.handler
      Events:
        Orders:
          Type: Api
          Properties:
            RestApiId: !Ref ShopApi
            Path: /orders
            Method: get
        Catalog:
          Type: Api
          Properties:
            RestApiId: !Ref ShopApi
            Path: /catalog
            Method: get
            Auth:
              Authorizer: NONE
        Partners:
          Type: Api
          Properties:
            RestApiId: !Ref ShopApi
            Path: /partners
            Method: get
            Auth:
              Authorizer: NONE
              ApiKeyRequired: true
        HttpOrders:
          Type: HttpApi
          Properties:
            ApiId: !Ref ShopHttpApi
            Path: /orders
            Method: get
        HttpCatalog:
          Type: HttpApi
          Properties:
            ApiId: !Ref ShopHttpApi
            Path: /catalog
            Method: get
            Auth:
              Authorizer: NONE
        HttpAdmin:
          Type: HttpApi
          Properties:
            ApiId: !Ref ShopHttpApi
            Path: /admin
            Method: get
            Auth:
              Authorizer: AWS_IAM

Outputs:
  ShopApiUrl:
    Value: !Sub "https://${ShopApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/Prod/"
  ShopHttpApiUrl:
    Value: !Sub "https://${ShopHttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/"
"""

GATE_PY = """def token(event, context):
    # A TOKEN authorizer: the Authorization header's value, allowed or refused with "Unauthorized" (a 401).
    if event.get("authorizationToken") != "Bearer open-sesame":
        raise Exception("Unauthorized")
    return {
        "principalId": "shopper-1",
        "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event["methodArn"]}]},
        "context": {"tier": "gold"},
    }


def http(event, context):
    # An HTTP API REQUEST authorizer with simple responses.
    return {"isAuthorized": (event.get("headers") or {}).get("x-shop-key") == "k-123", "context": {"tier": "silver"}}
"""

BACKEND_PY = """import json


def handler(event, context):
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"path": event.get("rawPath") or event.get("path"),
                                "authorizer": (event.get("requestContext") or {}).get("authorizer")})}
"""

FILES = {"gate/gate.py": GATE_PY, "backend/app.py": BACKEND_PY}


def packaged(template: str) -> dict:
    """The template as `package` leaves it: the functions' code in S3."""
    from samtranslator.yaml_helper import yaml_parse  # type: ignore
    parsed = yaml_parse(template)
    for resource in parsed["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://code-bucket/shop.zip"
    return parsed


def lint_text(test: h.LaminaTestCase, template: str) -> None:
    """cfn-lint accepts the template text."""
    folder = Path(tempfile.mkdtemp(prefix="lamina-it-access-"))
    test.addCleanup(shutil.rmtree, folder, True)
    (folder / "template.yaml").write_text(template)
    cs.cfn_lint(test, folder / "template.yaml")


def sam_errors(template: dict) -> list[str]:
    """The messages aws-sam-translator refuses the template with (none when it takes it)."""
    from samtranslator.model.exceptions import InvalidDocumentException  # type: ignore
    try:
        cs.sam_translate(template)
    except InvalidDocumentException as e:
        return [cause.message for cause in e.causes]
    return []


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


class SamApiAuthTests(h.LaminaTestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="lamina-it-sam-auth-"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.cf = cs.cfn(self.server)

    def app(self) -> Path:
        folder = self.tmp / f"shop-{uuid.uuid4().hex[:6]}"
        folder.mkdir(parents=True)
        (folder / "template.yaml").write_text(SHOP_TEMPLATE)
        for path, text in FILES.items():
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_text(text)
        return folder

    def deploy(self) -> str:
        folder = self.app()
        stack = f"shop-{uuid.uuid4().hex[:6]}"
        self.addCleanup(lambda: cs.lamina_cli("delete-stack", stack, cwd=folder, server=self.server))
        r = cs.lamina_cli("deploy", "--stack-name", stack, cwd=folder, server=self.server)
        self.assertEqual(r.returncode, 0, f"lamina deploy failed:\n{r.stdout}\n{r.stderr}")
        return stack

    def base(self, stack: str, logical_id: str, stage: str = "") -> str:
        return f"{self.server.url}/_aws/execute-api/{cs.physical(self.cf, stack, logical_id)}{stage}"

    def test_template_passes_cfn_lint(self):
        cs.cfn_lint(self, self.app() / "template.yaml")

    def test_definitions_and_permissions_match_aws_sam_translator(self):
        template = packaged(SHOP_TEMPLATE)
        reference = cs.sam_translate(template)
        stack = f"compare-shop-{uuid.uuid4().hex[:6]}"
        self.cf.create_change_set(StackName=stack, ChangeSetName="compare", ChangeSetType="CREATE", TemplateBody=json.dumps(template, default=str),
                                  Capabilities=["CAPABILITY_IAM"])
        self.addCleanup(lambda: self.cf.delete_change_set(ChangeSetName="compare", StackName=stack))
        described = self.cf.describe_change_set(ChangeSetName="compare", StackName=stack)
        self.assertEqual(described["Status"], "CREATE_COMPLETE", described.get("StatusReason"))
        ours = self.cf.get_template(StackName=stack, ChangeSetName="compare", TemplateStage="Processed")["TemplateBody"]
        ours = json.loads(ours) if isinstance(ours, str) else json.loads(json.dumps(ours))

        def by_id(t):
            return {cs.strip_hash(k): v for k, v in t["Resources"].items()}
        ours, theirs = by_id(ours), by_id(reference)
        self.assertEqual(sorted((k, v["Type"]) for k, v in ours.items()), sorted((k, v["Type"]) for k, v in theirs.items()))
        # The authorizers' permissions: the REST API's always, the HTTP API's because EnableFunctionDefaultPermissions.
        self.assertIn("ShopApiTokenGateAuthorizerPermission", ours)
        self.assertIn("ShopHttpApiKeyGateAuthorizerPermission", ours)
        self.assertEqual({ours[k]["Type"] for k in ("ShopApiUsagePlan", "ShopApiApiKey", "ShopApiUsagePlanKey")},
                         {"AWS::ApiGateway::UsagePlan", "AWS::ApiGateway::ApiKey", "AWS::ApiGateway::UsagePlanKey"})
        for logical_id, resource in ours.items():
            if resource["Type"] in ("AWS::ApiGateway::RestApi", "AWS::ApiGatewayV2::Api", "AWS::Lambda::Permission",
                                    "AWS::ApiGateway::UsagePlan", "AWS::ApiGateway::ApiKey", "AWS::ApiGateway::UsagePlanKey"):
                with self.subTest(resource=logical_id):
                    self.assertEqual(resource["Properties"], theirs[logical_id]["Properties"])
                    self.assertEqual(resource.get("DependsOn"), theirs[logical_id].get("DependsOn"))

    def test_rest_api_default_authorizer_opt_out_api_key_and_cors(self):
        stack = self.deploy()
        base = self.base(stack, "ShopApi", "/Prod")

        # The default authorizer guards /orders: no token or a wrong one is a 401; the right one reaches the function
        # with the authorizer's principal and context.
        self.assertEqual(requests.get(base + "/orders", timeout=60).status_code, 401)
        self.assertEqual(requests.get(base + "/orders", headers={"Authorization": "Bearer nope"}, timeout=60).status_code, 401)
        allowed = requests.get(base + "/orders", headers={"Authorization": "Bearer open-sesame"}, timeout=60)
        self.assertEqual(allowed.status_code, 200, allowed.text)
        authorizer = allowed.json()["authorizer"]
        self.assertEqual((authorizer["principalId"], authorizer["tier"]), ("shopper-1", "gold"))

        # Authorizer: NONE opts out of the default.
        catalog = requests.get(base + "/catalog", timeout=60)
        self.assertEqual(catalog.status_code, 200, catalog.text)
        self.assertEqual(catalog.json()["path"], "/catalog")

        # ApiKeyRequired: Forbidden without a key; through with the key of the plan Auth.UsagePlan made for the stage.
        self.assertEqual(requests.get(base + "/partners", timeout=60).json(), {"message": "Forbidden"})
        apigw = h.boto3_client(self.server.url, "apigateway")
        plan = apigw.get_usage_plan(usagePlanId=cs.physical(self.cf, stack, "ShopApiUsagePlan"))
        self.assertEqual((plan["name"], plan["apiStages"], plan["quota"]["limit"]),
                         ("shop-partners", [{"apiId": cs.physical(self.cf, stack, "ShopApi"), "stage": "Prod"}], 1000))
        key = apigw.get_api_key(apiKey=cs.physical(self.cf, stack, "ShopApiApiKey"), includeValue=True)
        self.assertTrue(key["enabled"])
        self.assertEqual([k["id"] for k in apigw.get_usage_plan_keys(usagePlanId=plan["id"])["items"]], [key["id"]])
        self.assertEqual(requests.get(base + "/partners", headers={"x-api-key": "not-a-key-of-this-plan"}, timeout=60).status_code, 403)
        partners = requests.get(base + "/partners", headers={"x-api-key": key["value"]}, timeout=60)
        self.assertEqual(partners.status_code, 200, partners.text)

        # CORS: a preflight gets the configured headers from the mock integration, with no token (the default
        # authorizer is kept off preflights) and the allowed methods computed from the path's.
        preflight = requests.options(base + "/orders", headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "GET"}, timeout=60)
        self.assertEqual(preflight.status_code, 200, preflight.text)
        self.assertEqual(preflight.headers["Access-Control-Allow-Origin"], "https://shop.example")
        self.assertEqual(preflight.headers["Access-Control-Allow-Methods"], "GET,OPTIONS")
        self.assertEqual(preflight.headers["Access-Control-Allow-Headers"], "Content-Type,Authorization")
        self.assertEqual(preflight.headers["Access-Control-Max-Age"], "300")

    def test_http_api_lambda_authorizer_opt_out_and_iam(self):
        stack = self.deploy()
        base = self.base(stack, "ShopHttpApi")

        self.assertEqual(requests.get(base + "/orders", timeout=60).status_code, 401)  # no identity source: 401
        self.assertEqual(requests.get(base + "/orders", headers={"X-Shop-Key": "wrong"}, timeout=60).status_code, 403)
        allowed = requests.get(base + "/orders", headers={"X-Shop-Key": "k-123"}, timeout=60)
        self.assertEqual(allowed.status_code, 200, allowed.text)
        self.assertEqual(allowed.json()["authorizer"]["lambda"], {"tier": "silver"})

        self.assertEqual(requests.get(base + "/catalog", timeout=60).status_code, 200)

        # AWS_IAM: unsigned requests are refused; SigV4 (service execute-api) gets through with the caller's identity.
        unsigned = requests.get(base + "/admin", timeout=60)
        self.assertEqual(unsigned.status_code, 403, unsigned.text)
        request = botocore.awsrequest.AWSRequest(method="GET", url=base + "/admin")
        botocore.auth.SigV4Auth(botocore.credentials.Credentials(h.ACCESS_KEY, h.SECRET_KEY), "execute-api", h.REGION).add_auth(request)
        signed = requests.get(base + "/admin", headers=dict(request.headers.items()), timeout=60)
        self.assertEqual(signed.status_code, 200, signed.text)
        self.assertEqual(signed.json()["authorizer"]["iam"]["accountId"], h.ACCOUNT)

    def test_auth_mistakes_fail_the_change_set_with_sams_messages(self):
        cases = {
            "NONE without a default authorizer": (
                SHOP_TEMPLATE.replace("        DefaultAuthorizer: TokenGate\n", ""),
                "'NONE' is only a valid value when a DefaultAuthorizer on the API is specified."),
            "an authorizer the API does not define": (
                SHOP_TEMPLATE.replace("              Authorizer: AWS_IAM", "              Authorizer: Missing"),
                "Unable to set Authorizer [Missing] on API method [get] for path [/admin] because it wasn't defined in the API's Authorizers."),
            "an unknown Cors key": (
                SHOP_TEMPLATE.replace("        MaxAge: \"'300'\"", "        MaxAges: \"'300'\""),
                "Invalid key 'MaxAges' for 'Cors' property."),
            "a Cognito user pool authorizer": (
                SHOP_TEMPLATE.replace("            FunctionArn: !GetAtt Gatekeeper.Arn", "            UserPoolArn: arn:aws:cognito-idp:us-east-1:000000000000:userpool/x"),
                "Lamina has no Cognito user pools"),
        }
        for name, (template, message) in cases.items():
            with self.subTest(case=name):
                stack = f"bad-shop-{uuid.uuid4().hex[:6]}"
                self.cf.create_change_set(StackName=stack, ChangeSetName="bad", ChangeSetType="CREATE",
                                          TemplateBody=json.dumps(packaged(template), default=str), Capabilities=["CAPABILITY_IAM"])
                self.addCleanup(lambda stack=stack: self.cf.delete_change_set(ChangeSetName="bad", StackName=stack))
                described = self.cf.describe_change_set(ChangeSetName="bad", StackName=stack)
                self.assertEqual(described["Status"], "FAILED")
                self.assertIn(message, described["StatusReason"])
                # Where AWS's transform refuses the template too, its whole message is Lamina's.
                for reference in sam_errors(packaged(template)):
                    self.assertIn(reference, described["StatusReason"])


# The plain-CloudFormation templates' backend (it answers with what the authorizer passed on) and the head of their
# gate function (each template gives the gate's code).
FUNCTIONS = """  Backend:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      Role: !Sub arn:aws:iam::${AWS::AccountId}:role/backend
      Code:
        ZipFile: |
          import json
          def handler(event, context):
              return {"statusCode": 200, "body": json.dumps(event["requestContext"].get("authorizer"))}
  Gate:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      Role: !Sub arn:aws:iam::${AWS::AccountId}:role/gate
      Code:
        ZipFile: |
"""

ACCESS_TEMPLATE = """AWSTemplateFormatVersion: '2010-09-09'
Description: A REST API whose method needs a token (a Lambda TOKEN authorizer) and an API key in a usage plan
Parameters:
  KeyEnabled:
    Type: String
    Default: 'true'
  DailyQuota:
    Type: Number
    Default: 100
Resources:
""" + FUNCTIONS + """          def handler(event, context):
              if event.get("authorizationToken") != "let-me-in":
                  raise Exception("Unauthorized")
              return {"principalId": "partner", "policyDocument": {"Version": "2012-10-17", "Statement": [
                  {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event["methodArn"]}]}}
  Api:
    Type: AWS::ApiGateway::RestApi
    Properties:
      Name: partner-api
  Things:
    Type: AWS::ApiGateway::Resource
    Properties:
      RestApiId: !Ref Api
      ParentId: !GetAtt Api.RootResourceId
      PathPart: things
  TokenAuthorizer:
    Type: AWS::ApiGateway::Authorizer
    Properties:
      RestApiId: !Ref Api
      Name: token
      Type: TOKEN
      IdentitySource: method.request.header.Authorization
      AuthorizerResultTtlInSeconds: 0
      AuthorizerUri: !Sub arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Gate.Arn}/invocations
  GetThings:
    Type: AWS::ApiGateway::Method
    Properties:
      RestApiId: !Ref Api
      ResourceId: !Ref Things
      HttpMethod: GET
      AuthorizationType: CUSTOM
      AuthorizerId: !Ref TokenAuthorizer
      ApiKeyRequired: true
      Integration:
        Type: AWS_PROXY
        IntegrationHttpMethod: POST
        Uri: !Sub arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Backend.Arn}/invocations
  Deployment:
    Type: AWS::ApiGateway::Deployment
    DependsOn: GetThings
    Properties:
      RestApiId: !Ref Api
      StageName: live
  BackendPermission:
    Type: AWS::Lambda::Permission
    Properties:
      Action: lambda:InvokeFunction
      FunctionName: !Ref Backend
      Principal: apigateway.amazonaws.com
      SourceArn: !Sub arn:aws:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/*
  GatePermission:
    Type: AWS::Lambda::Permission
    Properties:
      Action: lambda:InvokeFunction
      FunctionName: !Ref Gate
      Principal: apigateway.amazonaws.com
      SourceArn: !Sub arn:aws:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/authorizers/*
  PartnerKey:
    Type: AWS::ApiGateway::ApiKey
    Properties:
      Enabled: !Ref KeyEnabled
      Description: the partner's key
  PartnerPlan:
    Type: AWS::ApiGateway::UsagePlan
    DependsOn: Deployment
    Properties:
      UsagePlanName: partners
      ApiStages:
        - ApiId: !Ref Api
          Stage: live
      Quota:
        Limit: !Ref DailyQuota
        Period: DAY
      Throttle:
        RateLimit: 50
        BurstLimit: 100
  PartnerPlanKey:
    Type: AWS::ApiGateway::UsagePlanKey
    Properties:
      KeyId: !Ref PartnerKey
      KeyType: API_KEY
      UsagePlanId: !Ref PartnerPlan
Outputs:
  KeyId:
    Value: !GetAtt PartnerKey.APIKeyId
  PlanId:
    Value: !Ref PartnerPlan
  AuthorizerId:
    Value: !GetAtt TokenAuthorizer.AuthorizerId
"""


class ApiAccessResourceTests(h.LaminaTestCase):

    def setUp(self):
        self.cf = cs.cfn(self.server)
        self.apigw = h.boto3_client(self.server.url, "apigateway")

    def test_template_passes_cfn_lint(self):
        lint_text(self, ACCESS_TEMPLATE)

    def test_authorizer_key_and_plan_gate_the_method_then_update_and_delete(self):
        stack = f"access-{uuid.uuid4().hex[:6]}"
        self.addCleanup(lambda: self.cf.delete_stack(StackName=stack))
        stack_id = self.cf.create_stack(StackName=stack, TemplateBody=ACCESS_TEMPLATE)["StackId"]
        created = cs.wait_stack(self.cf, stack)
        self.assertEqual(created["StackStatus"], "CREATE_COMPLETE", cs.event_lines(self.cf, stack))
        out = cs.outputs(created)
        api = cs.physical(self.cf, stack, "Api")
        url = f"{self.server.url}/_aws/execute-api/{api}/live/things"
        key = self.apigw.get_api_key(apiKey=out["KeyId"], includeValue=True)
        self.assertEqual((key["enabled"], key["description"]), (True, "the partner's key"))
        plan = self.apigw.get_usage_plan(usagePlanId=out["PlanId"])
        self.assertEqual((plan["name"], plan["apiStages"], plan["quota"]["limit"], plan["quota"]["period"]),
                         ("partners", [{"apiId": api, "stage": "live"}], 100, "DAY"))
        self.assertEqual([k["id"] for k in self.apigw.get_usage_plan_keys(usagePlanId=out["PlanId"])["items"]], [out["KeyId"]])
        self.assertEqual(self.apigw.get_authorizer(restApiId=api, authorizerId=out["AuthorizerId"])["type"], "TOKEN")

        self.assertEqual(requests.get(url, headers={"Authorization": "let-me-in"}, timeout=60).json(), {"message": "Forbidden"})  # no key
        self.assertEqual(requests.get(url, headers={"x-api-key": key["value"]}, timeout=60).status_code, 401)  # no token
        ok = requests.get(url, headers={"x-api-key": key["value"], "Authorization": "let-me-in"}, timeout=60)
        self.assertEqual(ok.status_code, 200, ok.text)
        self.assertEqual(ok.json()["principalId"], "partner")

        # In place: the quota and the key's state change; the key, plan and authorizer keep their ids.
        self.cf.update_stack(StackName=stack, UsePreviousTemplate=True,
                             Parameters=[{"ParameterKey": "KeyEnabled", "ParameterValue": "false"}, {"ParameterKey": "DailyQuota", "ParameterValue": "5"}])
        updated = cs.wait_stack(self.cf, stack)
        self.assertEqual(updated["StackStatus"], "UPDATE_COMPLETE", cs.event_lines(self.cf, stack))
        self.assertEqual(cs.outputs(updated), out)
        self.assertEqual(self.apigw.get_usage_plan(usagePlanId=out["PlanId"])["quota"]["limit"], 5)
        self.assertFalse(self.apigw.get_api_key(apiKey=out["KeyId"])["enabled"])
        self.assertEqual(requests.get(url, headers={"x-api-key": key["value"], "Authorization": "let-me-in"}, timeout=60).status_code, 403)

        self.cf.delete_stack(StackName=stack)
        self.assertEqual(cs.wait_stack(self.cf, stack_id)["StackStatus"], "DELETE_COMPLETE")
        for call in (lambda: self.apigw.get_api_key(apiKey=out["KeyId"]), lambda: self.apigw.get_usage_plan(usagePlanId=out["PlanId"])):
            self.assertEqual(cs.client_error(call).response["Error"]["Code"], "NotFoundException")


HTTP_ACCESS_TEMPLATE = """AWSTemplateFormatVersion: '2010-09-09'
Description: An HTTP API route behind a Lambda REQUEST authorizer, in plain CloudFormation
Parameters:
  Ttl:
    Type: Number
    Default: 0
Resources:
""" + FUNCTIONS + """          def handler(event, context):
              return {"isAuthorized": event["headers"].get("x-key") == "k-9", "context": {"who": "partner"}}
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties:
      Name: partner-http
      ProtocolType: HTTP
  Integration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !GetAtt Backend.Arn
      PayloadFormatVersion: '2.0'
  KeyAuthorizer:
    Type: AWS::ApiGatewayV2::Authorizer
    Properties:
      ApiId: !Ref Api
      Name: key
      AuthorizerType: REQUEST
      AuthorizerUri: !Sub arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Gate.Arn}/invocations
      AuthorizerPayloadFormatVersion: '2.0'
      EnableSimpleResponses: true
      AuthorizerResultTtlInSeconds: !Ref Ttl
      IdentitySource:
        - $request.header.X-Key
  Route:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: GET /things
      Target: !Sub integrations/${Integration}
      AuthorizationType: CUSTOM
      AuthorizerId: !Ref KeyAuthorizer
  Stage:
    Type: AWS::ApiGatewayV2::Stage
    Properties:
      ApiId: !Ref Api
      StageName: $default
      AutoDeploy: true
  BackendPermission:
    Type: AWS::Lambda::Permission
    Properties:
      Action: lambda:InvokeFunction
      FunctionName: !Ref Backend
      Principal: apigateway.amazonaws.com
      SourceArn: !Sub arn:aws:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/*
  GatePermission:
    Type: AWS::Lambda::Permission
    Properties:
      Action: lambda:InvokeFunction
      FunctionName: !Ref Gate
      Principal: apigateway.amazonaws.com
      SourceArn: !Sub arn:aws:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/authorizers/*
Outputs:
  AuthorizerId:
    Value: !Ref KeyAuthorizer
"""


class HttpApiAuthorizerResourceTests(h.LaminaTestCase):

    def test_template_passes_cfn_lint(self):
        lint_text(self, HTTP_ACCESS_TEMPLATE)

    def test_request_authorizer_gates_the_route_and_updates_in_place(self):
        cf = cs.cfn(self.server)
        v2 = h.boto3_client(self.server.url, "apigatewayv2")
        stack = f"http-access-{uuid.uuid4().hex[:6]}"
        self.addCleanup(lambda: cf.delete_stack(StackName=stack))
        cf.create_stack(StackName=stack, TemplateBody=HTTP_ACCESS_TEMPLATE)
        created = cs.wait_stack(cf, stack)
        self.assertEqual(created["StackStatus"], "CREATE_COMPLETE", cs.event_lines(cf, stack))
        api = cs.physical(cf, stack, "Api")
        authorizer_id = cs.outputs(created)["AuthorizerId"]
        authorizer = v2.get_authorizer(ApiId=api, AuthorizerId=authorizer_id)
        self.assertEqual((authorizer["AuthorizerType"], authorizer["IdentitySource"], authorizer["EnableSimpleResponses"]),
                         ("REQUEST", ["$request.header.X-Key"], True))
        url = f"{self.server.url}/_aws/execute-api/{api}/things"
        self.assertEqual(requests.get(url, timeout=60).status_code, 401)
        self.assertEqual(requests.get(url, headers={"X-Key": "wrong"}, timeout=60).status_code, 403)
        ok = requests.get(url, headers={"X-Key": "k-9"}, timeout=60)
        self.assertEqual(ok.status_code, 200, ok.text)
        self.assertEqual(ok.json()["lambda"], {"who": "partner"})

        cf.update_stack(StackName=stack, UsePreviousTemplate=True, Parameters=[{"ParameterKey": "Ttl", "ParameterValue": "60"}])
        updated = cs.wait_stack(cf, stack)
        self.assertEqual(updated["StackStatus"], "UPDATE_COMPLETE", cs.event_lines(cf, stack))
        self.assertEqual(cs.outputs(updated)["AuthorizerId"], authorizer_id)
        self.assertEqual(v2.get_authorizer(ApiId=api, AuthorizerId=authorizer_id)["AuthorizerResultTtlInSeconds"], 60)
