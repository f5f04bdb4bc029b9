"""SAM applications on Lamina (issue #23): templates written after the AWS `sam init` quick starts (hello world with an
Api event, S3 event processing, SQS, SNS, a schedule, a web backend with SimpleTable and an API; our own wording and
code) deployed with `aws cloudformation package` + `deploy` (AWS CLI v1, and v2 for deploy) and with `./lamina deploy`,
then used end to end (the API over HTTP, uploads, messages, items in the table), updated and deleted. Every template
passes cfn-lint, and Lamina's transform gives the same logical ids, types and the properties Lamina uses as AWS's
own transform (aws-sam-translator)."""
from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
import unittest
import uuid
from pathlib import Path

import requests

import cloudformation_support as cs
import lamina_harness as h

MODULE = __name__

HELLO_TEMPLATE = """AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Description: A greeting behind an API, after the quick start's hello world

Globals:
  Function:
    Timeout: 3

Resources:
  GreetingFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: greeting/
      Handler: app.handler
      Runtime: python3.12
      Events:
        Greet:
          Type: Api
          Properties:
            Path: /greet
            Method: get

Outputs:
  GreetingApi:
    Description: Where the Prod stage serves the greeting
    Value: !Sub "https://${ServerlessRestApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/Prod/greet/"
  GreetingFunction:
    Value: !GetAtt GreetingFunction.Arn
  GreetingFunctionRole:
    Value: !GetAtt GreetingFunctionRole.Arn
"""

HELLO_PY = """import json

WORD = "hello"

def handler(event, context):
    return {"statusCode": 200, "body": json.dumps({"message": f"{WORD} from lamina", "path": event["path"]})}
"""

UPLOADS_TEMPLATE = """AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Description: Logs the JSON documents uploaded to a bucket

Parameters:
  UploadBucketName:
    Type: String
    Description: The bucket's name

Resources:
  JsonLogger:
    Type: AWS::Serverless::Function
    Properties:
      Handler: src/logger.handler
      Runtime: nodejs22.x
      MemorySize: 128
      Timeout: 30
      Policies:
        - S3ReadPolicy:
            BucketName: !Ref UploadBucketName
      Events:
        NewJson:
          Type: S3
          Properties:
            Bucket: !Ref Uploads
            Events: s3:ObjectCreated:*
            Filter:
              S3Key:
                Rules:
                  - Name: suffix
                    Value: ".json"
  Uploads:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: !Ref UploadBucketName
      VersioningConfiguration:
        Status: Enabled
"""

UPLOADS_JS = """import { S3Client, GetObjectCommand } from "@aws-sdk/client-s3";
const s3 = new S3Client({ forcePathStyle: true });
export const handler = async (event) => {
  for (const record of event.Records) {
    const got = await s3.send(new GetObjectCommand({ Bucket: record.s3.bucket.name, Key: decodeURIComponent(record.s3.object.key) }));
    console.info("DOCUMENT", record.s3.object.key, await got.Body.transformToString());
  }
};
"""

QUEUE_TEMPLATE = """AWSTemplateFormatVersion: 2010-09-09
Description: >-
  Logs what arrives in a queue
Transform:
- AWS::Serverless-2016-10-31
Resources:
  WorkQueue:
    Type: AWS::SQS::Queue
  QueueLogger:
    Type: AWS::Serverless::Function
    Properties:
      Description: Logs each message of the queue.
      Runtime: nodejs22.x
      Handler: src/logger.handler
      Events:
        FromQueue:
          Type: SQS
          Properties:
            Queue: !GetAtt WorkQueue.Arn
            BatchSize: 5
      MemorySize: 128
      Timeout: 25
      Policies:
        - AWSLambdaBasicExecutionRole
Outputs:
  QueueUrl:
    Value: !Ref WorkQueue
"""

TOPIC_TEMPLATE = QUEUE_TEMPLATE.replace("Logs what arrives in a queue", "Logs what is published to a topic") \
    .replace("WorkQueue:\n    Type: AWS::SQS::Queue", "Announcements:\n    Type: AWS::SNS::Topic") \
    .replace("QueueLogger", "TopicLogger").replace("Logs each message of the queue.", "Logs each notification of the topic.") \
    .replace("FromQueue:\n          Type: SQS\n          Properties:\n            Queue: !GetAtt WorkQueue.Arn\n            BatchSize: 5",
             "FromTopic:\n          Type: SNS\n          Properties:\n            Topic: !Ref Announcements") \
    .replace("QueueUrl:\n    Value: !Ref WorkQueue", "TopicArn:\n    Value: !Ref Announcements")

SCHEDULE_TEMPLATE = """AWSTemplateFormatVersion: 2010-09-09
Description: >-
  Runs every hour
Transform:
- AWS::Serverless-2016-10-31
Resources:
  HourlyLogger:
    Type: AWS::Serverless::Function
    Properties:
      Description: Logs the scheduled event.
      Runtime: nodejs22.x
      Handler: src/logger.handler
      Events:
        Hourly:
          Type: Schedule
          Properties:
            Schedule: cron(0 * * * ? *)
      MemorySize: 128
      Timeout: 100
"""

LOGGER_JS = """export const handler = async (event) => {
  console.info("RECEIVED", JSON.stringify(event));
  return "logged";
};
"""

ITEMS_TEMPLATE = """AWSTemplateFormatVersion: 2010-09-09
Description: >-
  Items in a table behind an API
Transform:
- AWS::Serverless-2016-10-31
Resources:
  listItems:
    Type: AWS::Serverless::Function
    Properties:
      Handler: src/items.list
      Runtime: nodejs22.x
      MemorySize: 128
      Timeout: 30
      Description: Every item of the table.
      Policies:
        - DynamoDBCrudPolicy:
            TableName: !Ref ItemTable
      Environment:
        Variables:
          ITEM_TABLE: !Ref ItemTable
      Events:
        Api:
          Type: Api
          Properties:
            Path: /
            Method: GET
  getItem:
    Type: AWS::Serverless::Function
    Properties:
      Handler: src/items.get
      Runtime: nodejs22.x
      MemorySize: 128
      Timeout: 30
      Description: One item by its id.
      Policies:
        - DynamoDBCrudPolicy:
            TableName: !Ref ItemTable
      Environment:
        Variables:
          ITEM_TABLE: !Ref ItemTable
      Events:
        Api:
          Type: Api
          Properties:
            Path: /{id}
            Method: GET
  putItem:
    Type: AWS::Serverless::Function
    Properties:
      Handler: src/items.put
      Runtime: nodejs22.x
      MemorySize: 128
      Timeout: 30
      Description: Stores the item posted.
      Policies:
        - DynamoDBCrudPolicy:
            TableName: !Ref ItemTable
      Environment:
        Variables:
          ITEM_TABLE: !Ref ItemTable
      Events:
        Api:
          Type: Api
          Properties:
            Path: /
            Method: POST
  ItemTable:
    Type: AWS::Serverless::SimpleTable
    Properties:
      PrimaryKey:
        Name: id
        Type: String
      ProvisionedThroughput:
        ReadCapacityUnits: 2
        WriteCapacityUnits: 2
Outputs:
  ItemsEndpoint:
    Description: The Prod stage of the API
    Value: !Sub "https://${ServerlessRestApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/Prod/"
"""

ITEMS_JS = """import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient, PutCommand, GetCommand, ScanCommand } from "@aws-sdk/lib-dynamodb";
const db = DynamoDBDocumentClient.from(new DynamoDBClient({}));
const table = process.env.ITEM_TABLE;
const reply = (statusCode, body) => ({ statusCode, body: JSON.stringify(body) });
export const list = async () => reply(200, (await db.send(new ScanCommand({ TableName: table }))).Items);
export const get = async (event) => {
  const found = await db.send(new GetCommand({ TableName: table, Key: { id: event.pathParameters.id } }));
  return found.Item ? reply(200, found.Item) : reply(404, { message: "no such item" });
};
export const put = async (event) => {
  const item = JSON.parse(event.body);
  await db.send(new PutCommand({ TableName: table, Item: item }));
  return reply(200, item);
};
"""

# More of SAM than the quick starts use: Globals, AutoPublishAlias, layers, a function URL, an invoke config, a table's
# stream, an EventBridge rule, an HTTP API, an explicit REST API, a DeploymentPreference.
BROAD_TEMPLATE = """AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Description: Many of SAM's features at once
Globals:
  Function:
    Runtime: python3.12
    Timeout: 5
    MemorySize: 256
    Environment:
      Variables:
        SHARED: from-globals
    Tags:
      team: platform
Resources:
  Library:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: library/
      CompatibleRuntimes: [python3.12]
  Failures:
    Type: AWS::SQS::Queue
  Events:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      StreamSpecification: {StreamViewType: NEW_IMAGE}
  Backend:
    Type: AWS::Serverless::Api
    Properties:
      StageName: v1
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: worker/
      Handler: app.handler
      Layers: [!Ref Library]
      AutoPublishAlias: live
      DeploymentPreference:
        Type: AllAtOnce
      Environment:
        Variables:
          OWN: from-function
      FunctionUrlConfig:
        AuthType: NONE
      EventInvokeConfig:
        MaximumRetryAttempts: 1
        DestinationConfig:
          OnFailure:
            Type: SQS
            Destination: !GetAtt Failures.Arn
      Events:
        Changes:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt Events.StreamArn
            StartingPosition: LATEST
            BatchSize: 10
        Orders:
          Type: EventBridgeRule
          Properties:
            Pattern:
              source: [shop.orders]
        Http:
          Type: HttpApi
          Properties:
            Path: /work/{id}
            Method: post
        Rest:
          Type: Api
          Properties:
            RestApiId: !Ref Backend
            Path: /work
            Method: any
Outputs:
  WorkerAlias:
    Value: !Ref WorkerAliaslive
  HttpApi:
    Value: !Ref ServerlessHttpApi
  RestApi:
    Value: !Ref Backend
"""

WORKER_PY = """import os, json
import library

def handler(event, context):
    print("EVENT", json.dumps(event), flush=True)
    return {"statusCode": 200, "body": json.dumps({"shared": os.environ.get("SHARED"), "own": os.environ.get("OWN"), "library": library.NAME,
            "version": context.function_version})}
"""

LOGWATCH_TEMPLATE = """AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Description: Watches another function's log lines for alerts

Resources:
  Source:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: source/
      Handler: app.handler
      Runtime: python3.12
  SourceLogs:
    Type: AWS::Logs::LogGroup
    Properties:
      LogGroupName: !Sub /aws/lambda/${Source}
      RetentionInDays: 7
  Watcher:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: watcher/
      Handler: app.handler
      Runtime: python3.12
      Events:
        Alerts:
          Type: CloudWatchLogs
          Properties:
            LogGroupName: !Ref SourceLogs
            FilterPattern: ALERT
"""

SOURCE_PY = """def handler(event, context):
    print(event["text"])
"""

WATCHER_PY = """import base64, gzip, json

def handler(event, context):
    data = json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))
    for e in data["logEvents"]:
        print("WATCHED", data["logGroup"], data["subscriptionFilters"][0], e["message"])
"""

APPS = {
    "greeting": (HELLO_TEMPLATE, {"greeting/app.py": HELLO_PY, "greeting/requirements.txt": ""}),
    "uploads": (UPLOADS_TEMPLATE, {"src/logger.mjs": UPLOADS_JS, "package.json": '{"name": "uploads", "type": "module"}'}),
    "queue": (QUEUE_TEMPLATE, {"src/logger.mjs": LOGGER_JS}),
    "topic": (TOPIC_TEMPLATE, {"src/logger.mjs": LOGGER_JS}),
    "schedule": (SCHEDULE_TEMPLATE, {"src/logger.mjs": LOGGER_JS}),
    "items": (ITEMS_TEMPLATE, {"src/items.mjs": ITEMS_JS}),
    "broad": (BROAD_TEMPLATE, {"worker/app.py": WORKER_PY, "library/python/library.py": "NAME = 'the library'\n"}),
    "logwatch": (LOGWATCH_TEMPLATE, {"source/app.py": SOURCE_PY, "watcher/app.py": WATCHER_PY}),
}


def setUpModule():
    h.start_module_server(MODULE, ["--async-retry-delay", "1"])


def tearDownModule():
    h.stop_module_server(MODULE)


class SamTests(h.LaminaTestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="lamina-it-sam-"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.cf = cs.cfn(self.server)

    def app(self, name: str) -> Path:
        """A fresh copy of one application's folder: template.yaml and its code."""
        folder = self.tmp / f"{name}-{uuid.uuid4().hex[:6]}"
        template, files = APPS[name]
        folder.mkdir(parents=True)
        (folder / "template.yaml").write_text(template)
        for path, text in files.items():
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_text(text)
        return folder

    def stack_name(self, app: str) -> str:
        return f"{app}-{uuid.uuid4().hex[:6]}"

    def delete_later(self, name: str) -> None:
        def delete():
            try:
                self.cf.delete_stack(StackName=name)
            except Exception:  # noqa: BLE001 - cleanup only
                pass
        self.addCleanup(delete)

    def lamina_deploy(self, folder: Path, stack: str, *args: str, expect_ok: bool = True):
        r = cs.lamina_cli("deploy", "--stack-name", stack, *args, cwd=folder, server=self.server)
        if expect_ok:
            self.assertEqual(r.returncode, 0, f"lamina deploy failed:\n{r.stdout}\n{r.stderr}")
        return r

    def api_url(self, stack: str, logical_id: str = "ServerlessRestApi", stage: str = "Prod") -> str:
        api = cs.physical(self.cf, stack, logical_id)
        return f"{self.server.url}/_aws/execute-api/{api}/{stage}"

    def logged(self, stack: str, logical_id: str, text: str, timeout: float = 60) -> str:
        function = cs.physical(self.cf, stack, logical_id)
        return cs.poll(lambda: (m := cs.log_messages(self.server, function)) and text in m and m, timeout=timeout, what=f"{text!r} in {function}'s log")

    # ---- the templates ------------------------------------------------------------------------------------------------

    def test_templates_pass_cfn_lint(self):
        for name in APPS:
            with self.subTest(app=name):
                cs.cfn_lint(self, self.app(name) / "template.yaml")

    def test_transform_matches_aws_sam_translator(self):
        for name in APPS:
            with self.subTest(app=name):
                self._compare_with_reference(name)

    def _compare_with_reference(self, name: str) -> None:
        from samtranslator.yaml_helper import yaml_parse  # type: ignore
        template = yaml_parse(APPS[name][0])
        # What `package` would leave: code in S3.
        for resource in template["Resources"].values():
            props = resource.get("Properties", {})
            if resource["Type"] == "AWS::Serverless::Function":
                props["CodeUri"] = f"s3://code-bucket/{name}.zip"
            if resource["Type"] == "AWS::Serverless::LayerVersion":
                props["ContentUri"] = f"s3://code-bucket/{name}-layer.zip"
        parameters = [{"ParameterKey": "UploadBucketName", "ParameterValue": "compare-bucket"}] if name == "uploads" else []
        reference = cs.sam_translate(template)
        stack = self.stack_name(f"compare-{name}")
        self.cf.create_change_set(StackName=stack, ChangeSetName="compare", ChangeSetType="CREATE", TemplateBody=json.dumps(template, default=str),
                                  Parameters=parameters, Capabilities=["CAPABILITY_IAM"])
        self.addCleanup(lambda: self.cf.delete_change_set(ChangeSetName="compare", StackName=stack))
        described = self.cf.describe_change_set(ChangeSetName="compare", StackName=stack)
        self.assertEqual(described["Status"], "CREATE_COMPLETE", described.get("StatusReason"))
        ours = self.cf.get_template(StackName=stack, ChangeSetName="compare", TemplateStage="Processed")["TemplateBody"]
        ours = json.loads(ours) if isinstance(ours, str) else json.loads(json.dumps(ours))

        def kinds(t):
            # Deployments and layer versions are named after a hash of SAM's own Python structures: compared without it.
            return sorted((cs.strip_hash(k) if v["Type"] in ("AWS::ApiGateway::Deployment", "AWS::Lambda::LayerVersion") else k, v["Type"]) for k, v in t["Resources"].items())
        self.assertEqual(kinds(ours), kinds(reference))
        self.assertEqual(ours.get("Outputs"), reference.get("Outputs"))
        # The properties Lamina acts on are the reference's.
        compared = {
            "AWS::Lambda::Function": ["Code", "Handler", "Runtime", "Timeout", "MemorySize", "Environment", "Layers", "Role", "Tags"],
            "AWS::Lambda::Permission": ["Action", "FunctionName", "Principal", "SourceArn", "SourceAccount", "FunctionUrlAuthType"],
            "AWS::Lambda::EventSourceMapping": ["EventSourceArn", "FunctionName", "BatchSize", "StartingPosition"],
            "AWS::Lambda::Version": ["FunctionName"],
            "AWS::Lambda::Alias": ["Name", "FunctionName", "FunctionVersion"],
            "AWS::Lambda::LayerVersion": ["Content", "LayerName", "CompatibleRuntimes"],
            "AWS::Lambda::Url": ["TargetFunctionArn", "AuthType"],
            "AWS::Lambda::EventInvokeConfig": ["FunctionName", "Qualifier", "MaximumRetryAttempts", "DestinationConfig"],
            "AWS::Events::Rule": ["ScheduleExpression", "EventPattern", "State", "Targets"],
            "AWS::SNS::Subscription": ["Endpoint", "Protocol", "TopicArn"],
            "AWS::S3::Bucket": ["NotificationConfiguration", "BucketName", "VersioningConfiguration"],
            "AWS::DynamoDB::Table": ["AttributeDefinitions", "KeySchema", "BillingMode", "ProvisionedThroughput", "StreamSpecification"],
            "AWS::ApiGateway::Stage": ["StageName", "RestApiId"],
            "AWS::ApiGatewayV2::Stage": ["StageName", "ApiId", "AutoDeploy"],
            "AWS::ApiGatewayV2::Api": ["Body"],
            "AWS::ApiGateway::RestApi": ["Body"],
            "AWS::CodeDeploy::DeploymentGroup": ["DeploymentConfigName"],
            "AWS::Logs::SubscriptionFilter": ["LogGroupName", "FilterPattern", "DestinationArn"],
        }
        by_stripped = {cs.strip_hash(k): v for k, v in reference["Resources"].items()}
        for logical_id, resource in ours["Resources"].items():
            theirs = reference["Resources"].get(logical_id) or by_stripped.get(cs.strip_hash(logical_id))
            for prop in compared.get(resource["Type"], []):
                with self.subTest(app=name, resource=logical_id, property=prop):
                    self.assertEqual(resource.get("Properties", {}).get(prop), theirs.get("Properties", {}).get(prop))
            with self.subTest(app=name, resource=logical_id, attribute="DependsOn/DeletionPolicy/UpdatePolicy"):
                for attribute in ("DependsOn", "DeletionPolicy", "UpdatePolicy"):
                    self.assertEqual(resource.get(attribute), theirs.get(attribute), attribute)

    # ---- the AWS CLI's package and deploy -----------------------------------------------------------------------------

    def test_hello_world_with_aws_cloudformation_package_and_deploy(self):
        folder = self.app("greeting")
        stack = self.stack_name("greeting")
        self.delete_later(stack)
        env = cs.aws_env(self.server)
        bucket = f"deploy-{uuid.uuid4().hex[:8]}"
        h.boto3_client(self.server.url, "s3").create_bucket(Bucket=bucket)
        packaged = folder / "packaged.yaml"
        r = cs.run_cli(self.server, "cloudformation", "package", "--template-file", "template.yaml", "--s3-bucket", bucket,
                       "--output-template-file", str(packaged), cwd=folder, env=env)
        self.assertEqual(r.rc, 0, repr(r))
        self.assertRegex(packaged.read_text(), rf"CodeUri: s3://{bucket}/[0-9a-f]{{32}}")
        r = cs.run_cli(self.server, "cloudformation", "deploy", "--template-file", str(packaged), "--stack-name", stack, "--capabilities", "CAPABILITY_IAM", cwd=folder)
        self.assertEqual(r.rc, 0, repr(r))
        outputs = cs.outputs(cs.stack_status(self.cf, stack))
        api = cs.physical(self.cf, stack, "ServerlessRestApi")
        self.assertEqual(outputs["GreetingApi"], f"https://{api}.execute-api.us-east-1.amazonaws.com/Prod/greet/")
        self.assertTrue(outputs["GreetingFunctionRole"].startswith("arn:aws:iam::000000000000:role/"))
        got = requests.get(self.api_url(stack) + "/greet", timeout=30)
        self.assertEqual((got.status_code, got.json()["message"]), (200, "hello from lamina"))

        # The code changes: package again, deploy with AWS CLI v2; only the function is updated.
        (folder / "greeting/app.py").write_text(HELLO_PY.replace('WORD = "hello"', 'WORD = "goodbye"'))
        r = cs.run_cli(self.server, "cloudformation", "package", "--template-file", "template.yaml", "--s3-bucket", bucket,
                       "--output-template-file", str(packaged), cwd=folder, env=env)
        self.assertEqual(r.rc, 0, repr(r))
        if shutil.which("/usr/bin/aws") is None:
            self.fail("AWS CLI v2 (/usr/bin/aws, Debian package awscli) is required; ./test.sh installs it")
        r = cs.run_cli(self.server, "cloudformation", "deploy", "--template-file", str(packaged), "--stack-name", stack, "--capabilities", "CAPABILITY_IAM",
                       cli="/usr/bin/aws", cwd=folder)
        self.assertEqual(r.rc, 0, repr(r))
        got = requests.get(self.api_url(stack) + "/greet", timeout=30)
        self.assertEqual(got.json()["message"], "goodbye from lamina")
        lines = cs.event_lines(self.cf, stack)
        last = lines[max(i for i, l in enumerate(lines) if l[1] == "UPDATE_IN_PROGRESS" and l[0] == stack):]
        self.assertEqual(sorted({l[0] for l in last if l[1] == "UPDATE_COMPLETE"} - {stack}), ["GreetingFunction"])
        r = cs.run_cli(self.server, "cloudformation", "delete-stack", "--stack-name", stack, cli="/usr/bin/aws")
        self.assertEqual(r.rc, 0, repr(r))
        r = cs.run_cli(self.server, "cloudformation", "wait", "stack-delete-complete", "--stack-name", stack, cli="/usr/bin/aws")
        self.assertEqual(r.rc, 0, repr(r))
        self.assertEqual(requests.get(f"{self.server.url}/_aws/execute-api/{api}/Prod/greet", timeout=30).status_code, 404)

    def test_undeployable_templates_fail_the_change_set_with_sams_message(self):
        folder = self.app("greeting")
        # Not packaged: CodeUri is a local folder.
        r = cs.run_cli(self.server, "cloudformation", "deploy", "--template-file", str(folder / "template.yaml"), "--stack-name", self.stack_name("local"),
                       "--capabilities", "CAPABILITY_IAM")
        self.assertNotEqual(r.rc, 0)
        self.assertIn("Failed to create the changeset", r.stderr)
        self.assertIn("Resource with id [GreetingFunction] is invalid. 'CodeUri' is not a valid S3 Uri of the form 's3://bucket/key'", r.stderr)
        nested = "Transform: AWS::Serverless-2016-10-31\nResources:\n  Nested:\n    Type: AWS::Serverless::Application\n    Properties: {Location: x.yaml}\n"
        stack = self.stack_name("nested")
        self.cf.create_change_set(StackName=stack, ChangeSetName="nested", ChangeSetType="CREATE", TemplateBody=nested)
        described = self.cf.describe_change_set(ChangeSetName="nested", StackName=stack)
        self.assertEqual(described["Status"], "FAILED")
        self.assertIn("Resource with id [Nested] is invalid. Lamina does not deploy nested applications", described["StatusReason"])
        self.assertTrue(described["StatusReason"].startswith("Transform AWS::Serverless-2016-10-31 failed with: Invalid Serverless Application Specification document. Number of errors found: 1."))
        self.cf.delete_change_set(ChangeSetName="nested", StackName=stack)
        e = cs.client_error(lambda: self.cf.describe_stacks(StackName=stack))
        self.assertIn("does not exist", e.response["Error"]["Message"])

    # ---- ./lamina deploy ------------------------------------------------------------------------------------------------

    def test_event_apps_with_lamina_deploy(self):
        # S3: only .json uploads reach the function, which reads them with the runtime's SDK.
        uploads = self.app("uploads")
        stack = self.stack_name("uploads")
        bucket = f"uploads-{uuid.uuid4().hex[:8]}"
        self.delete_later(stack)
        r = self.lamina_deploy(uploads, stack, "--parameter-overrides", f"UploadBucketName={bucket}")
        self.assertIn(f"Stack {stack}: CREATE_COMPLETE", r.stdout)
        self.assertRegex(r.stdout, r"Packaged JsonLogger: \. → s3://lamina-deployments/[0-9a-f]{64}\.zip")
        s3 = h.boto3_client(self.server.url, "s3")
        s3.put_object(Bucket=bucket, Key="skipped.txt", Body=b"not json")
        s3.put_object(Bucket=bucket, Key="order.json", Body=b'{"order": 7}')
        log = self.logged(stack, "JsonLogger", '{"order": 7}')
        self.assertIn("DOCUMENT order.json", log)
        self.assertNotIn("skipped.txt", log)

        # SQS and SNS: a message reaches the function.
        queue = self.app("queue")
        queue_stack = self.stack_name("queue")
        self.delete_later(queue_stack)
        r = self.lamina_deploy(queue, queue_stack)
        url = re.search(r"QueueUrl = (\S+)", r.stdout).group(1)
        h.boto3_client(self.server.url, "sqs").send_message(QueueUrl=url.replace("http://127.0.0.1", self.server.url.rsplit(":", 1)[0]), MessageBody="queued work")
        self.logged(queue_stack, "QueueLogger", "queued work")
        topic = self.app("topic")
        topic_stack = self.stack_name("topic")
        self.delete_later(topic_stack)
        r = self.lamina_deploy(topic, topic_stack)
        arn = re.search(r"TopicArn = (\S+)", r.stdout).group(1)
        h.boto3_client(self.server.url, "sns").publish(TopicArn=arn, Message="announced")
        self.logged(topic_stack, "TopicLogger", "announced")

        # A schedule: the rule, its target and the function's permission are there (the hourly firing is EventBridge's own test).
        schedule = self.app("schedule")
        schedule_stack = self.stack_name("schedule")
        self.delete_later(schedule_stack)
        self.lamina_deploy(schedule, schedule_stack)
        events = h.boto3_client(self.server.url, "events")
        rule = cs.physical(self.cf, schedule_stack, "HourlyLoggerHourly")
        self.assertEqual(events.describe_rule(Name=rule)["ScheduleExpression"], "cron(0 * * * ? *)")
        function = cs.physical(self.cf, schedule_stack, "HourlyLogger")
        self.assertEqual(events.list_targets_by_rule(Rule=rule)["Targets"][0]["Arn"], h.function_arn(function))
        policy = json.loads(self.lam.get_policy(FunctionName=function)["Policy"])
        self.assertEqual(policy["Statement"][0]["Principal"], {"Service": "events.amazonaws.com"})

        # Deleting with ./lamina delete-stack: the bucket must be empty first, as on AWS.
        for version in s3.list_object_versions(Bucket=bucket).get("Versions", []):
            s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
        for name, folder in ((stack, uploads), (queue_stack, queue), (topic_stack, topic), (schedule_stack, schedule)):
            r = cs.lamina_cli("delete-stack", name, cwd=folder, server=self.server)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn(f"Stack {name}: DELETE_COMPLETE", r.stdout)
        self.assertFunctionAbsent(function)

    def test_cloudwatch_logs_event_delivers_matching_lines_then_update_and_delete(self):
        folder = self.app("logwatch")
        stack = self.stack_name("logwatch")
        self.delete_later(stack)
        self.lamina_deploy(folder, stack)
        source = cs.physical(self.cf, stack, "Source")
        group = cs.physical(self.cf, stack, "SourceLogs")
        self.assertEqual(group, f"/aws/lambda/{source}")
        logs = h.boto3_client(self.server.url, "logs")
        watcher_arn = self.lam.get_function_configuration(FunctionName=cs.physical(self.cf, stack, "Watcher"))["FunctionArn"]
        [described] = logs.describe_subscription_filters(logGroupName=group)["subscriptionFilters"]
        self.assertEqual((described["filterName"], described["filterPattern"], described["destinationArn"]),
                         (cs.physical(self.cf, stack, "WatcherAlerts"), "ALERT", watcher_arn))
        policy = json.loads(self.lam.get_policy(FunctionName=watcher_arn)["Policy"])
        self.assertEqual([st["Principal"] for st in policy["Statement"]], [{"Service": "logs.amazonaws.com"}])

        # The source's matching lines reach the watcher (asynchronously); the others do not.
        self.invoke_ok(source, {"text": "all fine"})
        self.invoke_ok(source, {"text": "ALERT disk full"})
        log = self.logged(stack, "Watcher", "ALERT disk full")
        self.assertIn(f"WATCHED {group} {described['filterName']} ALERT disk full", log)
        self.assertNotIn("all fine", log)

        # An update changes the pattern of the same filter.
        (folder / "template.yaml").write_text(LOGWATCH_TEMPLATE.replace("FilterPattern: ALERT", "FilterPattern: CRITICAL"))
        r = self.lamina_deploy(folder, stack)
        self.assertIn(f"Stack {stack}: UPDATE_COMPLETE", r.stdout)
        [updated] = logs.describe_subscription_filters(logGroupName=group)["subscriptionFilters"]
        self.assertEqual((updated["filterName"], updated["filterPattern"]), (described["filterName"], "CRITICAL"))
        self.invoke_ok(source, {"text": "CRITICAL queue stuck"})
        self.logged(stack, "Watcher", "CRITICAL queue stuck")

        # Without the event the filter goes (the group stays); then the whole stack.
        (folder / "template.yaml").write_text(LOGWATCH_TEMPLATE.split("      Events:")[0])
        self.lamina_deploy(folder, stack)
        self.assertEqual(logs.describe_subscription_filters(logGroupName=group)["subscriptionFilters"], [])
        r = cs.lamina_cli("delete-stack", stack, cwd=folder, server=self.server)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"Stack {stack}: DELETE_COMPLETE", r.stdout)
        self.assertFunctionAbsent(source)
        # The group goes before the function (it names it): lines the function's environment writes as it stops may make
        # it again, as Lambda does on AWS — without any filter.
        try:
            self.assertEqual(logs.describe_subscription_filters(logGroupName=group)["subscriptionFilters"], [])
        except logs.exceptions.ResourceNotFoundException:
            pass

    def test_items_backend_with_lamina_deploy_then_update_and_delete(self):
        folder = self.app("items")
        stack = self.stack_name("items")
        self.delete_later(stack)
        r = self.lamina_deploy(folder, stack)
        self.assertIn("ItemsEndpoint = https://", r.stdout)
        self.assertIn("on this server: http://", r.stdout)
        base = self.api_url(stack)
        put = requests.post(base + "/", data=json.dumps({"id": "7", "name": "seven"}), timeout=60)
        self.assertEqual(put.status_code, 200, put.text)
        self.assertEqual(requests.get(base + "/7", timeout=60).json(), {"id": "7", "name": "seven"})
        self.assertEqual(requests.get(base + "/", timeout=60).json(), [{"id": "7", "name": "seven"}])
        self.assertEqual(requests.get(base + "/8", timeout=60).status_code, 404)
        table = cs.physical(self.cf, stack, "ItemTable")
        described = h.boto3_client(self.server.url, "dynamodb").describe_table(TableName=table)["Table"]
        self.assertEqual(described["KeySchema"], [{"AttributeName": "id", "KeyType": "HASH"}])

        # A second deploy without changes changes nothing.
        r = self.lamina_deploy(folder, stack)
        self.assertIn(f"No changes to deploy: stack {stack} is up to date.", r.stdout)
        # A code change updates only the functions; the table and its items stay.
        (folder / "src/items.mjs").write_text(ITEMS_JS.replace('"no such item"', '"nothing with that id"'))
        r = self.lamina_deploy(folder, stack)
        self.assertIn(f"Stack {stack}: UPDATE_COMPLETE", r.stdout)
        self.assertNotIn("ItemTable", "".join(l for l in r.stdout.splitlines() if "UPDATE_COMPLETE " in l))
        self.assertEqual(requests.get(base + "/8", timeout=60).json(), {"message": "nothing with that id"})
        self.assertEqual(requests.get(base + "/7", timeout=60).json()["name"], "seven")
        self.assertEqual(cs.physical(self.cf, stack, "ItemTable"), table)
        r = cs.lamina_cli("delete-stack", stack, cwd=folder, server=self.server)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("DELETE_COMPLETE", r.stdout)
        self.assertNotIn(table, h.boto3_client(self.server.url, "dynamodb").list_tables()["TableNames"])

    def test_broad_template_aliases_layers_urls_streams_rules_and_apis(self):
        folder = self.app("broad")
        stack = self.stack_name("broad")
        self.delete_later(stack)
        r = self.lamina_deploy(folder, stack)
        outputs = dict(re.findall(r"^  (\w+) = (\S+)$", r.stdout, re.M))
        alias = outputs["WorkerAlias"]
        self.assertTrue(alias.endswith(":live"), alias)
        function = cs.physical(self.cf, stack, "Worker")
        self.assertEqual(self.lam.get_alias(FunctionName=function, Name="live")["FunctionVersion"], "1")
        config = self.lam.get_function_configuration(FunctionName=function, Qualifier="live")
        self.assertEqual(config["Environment"]["Variables"], {"SHARED": "from-globals", "OWN": "from-function"})
        self.assertEqual((config["MemorySize"], config["Timeout"]), (256, 5))
        self.assertEqual(self.lam.list_tags(Resource=h.function_arn(function))["Tags"], {"lambda:createdBy": "SAM", "team": "platform"})
        # Through the alias: the function URL, the HTTP API, the REST API's stage, the rule and the table's stream.
        url_id = self.lam.get_function_url_config(FunctionName=function, Qualifier="live")["FunctionUrl"].split("//")[1].split(".")[0]
        url = f"{self.server.url}/lambda-url/{url_id}/"
        body = requests.get(url, timeout=60).json()
        self.assertEqual((body["library"], body["version"]), ("the library", "1"))
        http = requests.post(f"{self.server.url}/_aws/execute-api/{outputs['HttpApi']}/work/42", data="{}", timeout=60)
        self.assertEqual(http.status_code, 200, http.text)
        rest = requests.get(f"{self.server.url}/_aws/execute-api/{outputs['RestApi']}/v1/work", timeout=60)
        self.assertEqual(rest.status_code, 200, rest.text)
        h.boto3_client(self.server.url, "events").put_events(Entries=[{"Source": "shop.orders", "DetailType": "placed", "Detail": '{"n": 1}'}])
        h.boto3_client(self.server.url, "dynamodb").put_item(TableName=cs.physical(self.cf, stack, "Events"), Item={"pk": {"S": "streamed"}})
        log = cs.poll(lambda: (m := cs.log_messages(self.server, function)) and "shop.orders" in m and "streamed" in m and m, timeout=60,
                      what="the rule's and the stream's events")
        self.assertIn('"eventSource": "aws:dynamodb"', log)

        # New code: a new version, the alias moves to it, the first version stays (DeletionPolicy Retain).
        (folder / "worker/app.py").write_text(WORKER_PY.replace('"own"', '"own2"'))
        r = self.lamina_deploy(folder, stack)
        self.assertEqual(self.lam.get_alias(FunctionName=function, Name="live")["FunctionVersion"], "2")
        versions = [v["Version"] for v in self.lam.list_versions_by_function(FunctionName=function)["Versions"]]
        self.assertEqual(versions, ["$LATEST", "1", "2"])
        lines = cs.event_lines(self.cf, stack)
        self.assertTrue(any(l[0].startswith("WorkerVersion") and l[1] == "DELETE_SKIPPED" for l in lines), lines)
        self.assertEqual(requests.get(url, timeout=60).json()["version"], "2")
        r = cs.lamina_cli("delete-stack", stack, cwd=folder, server=self.server)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


# An alias shifted by a canary of our own: 20% for a minute, then all; a PreTraffic hook that passes or fails on request.
SHIFT_TEMPLATE = """AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Description: Traffic shifting between versions of an alias
Parameters:
  HookFails:
    Type: String
    Default: "no"
    AllowedValues: ["yes", "no"]
  Shift:
    Type: String
    Default: canary
    AllowedValues: [canary, all]
Conditions:
  Canary: !Equals [!Ref Shift, canary]
Resources:
  OneMinuteCanary:
    Type: AWS::CodeDeploy::DeploymentConfig
    Properties:
      ComputePlatform: Lambda
      TrafficRoutingConfig:
        Type: TimeBasedCanary
        TimeBasedCanary:
          CanaryPercentage: 20
          CanaryInterval: 1
  Checker:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      InlineCode: |
        import os
        import boto3
        def handler(event, context):
            # As AWS's hook samples do: the verdict goes to CodeDeploy.
            status = "Failed" if os.environ["FAIL"] == "yes" else "Succeeded"
            boto3.client("codedeploy").put_lifecycle_event_hook_execution_status(
                deploymentId=event["DeploymentId"], lifecycleEventHookExecutionId=event["LifecycleEventHookExecutionId"], status=status)
            return status
      Policies:
        - Version: "2012-10-17"
          Statement:
            - Effect: Allow
              Action: codedeploy:PutLifecycleEventHookExecutionStatus
              Resource: "*"
      Environment:
        Variables:
          FAIL: !Ref HookFails
  Service:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: service/
      Runtime: python3.12
      Handler: app.handler
      AutoPublishAlias: live
      DeploymentPreference:
        Type: !If [Canary, !Ref OneMinuteCanary, AllAtOnce]
        Hooks:
          PreTraffic: !Ref Checker
"""

SERVICE_PY = 'def handler(event, context):\n    return "v1"\n'


class TrafficShiftTests(h.LaminaTestCase):
    """DeploymentPreference: the alias moves by the deployment configuration's steps, a PreTraffic hook can stop it, and a
    shift a crash interrupted is rolled back at the next start."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="lamina-it-shift-"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def app(self) -> Path:
        folder = self.tmp / uuid.uuid4().hex[:8]
        (folder / "service").mkdir(parents=True)
        (folder / "template.yaml").write_text(SHIFT_TEMPLATE)
        (folder / "service/app.py").write_text(SERVICE_PY)
        return folder

    def deploy(self, server: h.LaminaServer, folder: Path, stack: str, *args: str) -> None:
        r = cs.lamina_cli("deploy", "--stack-name", stack, *args, cwd=folder, server=server)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def start_update(self, server: h.LaminaServer, folder: Path, stack: str, **parameters: str) -> None:
        """Version 2 of the code, deployed by a change set that is executed but not waited for."""
        (folder / "service/app.py").write_text(SERVICE_PY.replace("v1", "v2"))
        r = cs.lamina_cli("deploy", "--stack-name", stack, "--no-execute-changeset",
                          *[f"--parameter-overrides={k}={v}" for k, v in parameters.items()], cwd=folder, server=server)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        change_set = re.search(r"Change set \S*?(arn:aws:cloudformation:\S+changeSet/\S+) is ready", r.stdout.replace("[bold]", "").replace("[/]", ""))
        cf = cs.cfn(server)
        cf.execute_change_set(ChangeSetName=change_set.group(1))

    def test_template_passes_cfn_lint(self):
        cs.cfn_lint(self, self.app() / "template.yaml")

    def test_failing_pre_traffic_hook_rolls_the_update_back(self):
        folder = self.app()
        stack = f"shift-hook-{uuid.uuid4().hex[:6]}"
        self.deploy(self.server, folder, stack, "--parameter-overrides", "Shift=all", "HookFails=yes")
        cf = cs.cfn(self.server)
        function = cs.physical(cf, stack, "Service")
        self.assertEqual(self.lam.get_alias(FunctionName=function, Name="live")["FunctionVersion"], "1")
        (folder / "service/app.py").write_text(SERVICE_PY.replace("v1", "v2"))
        r = cs.lamina_cli("deploy", "--stack-name", stack, "--parameter-overrides", "Shift=all", "HookFails=yes", cwd=folder, server=self.server)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("UPDATE_ROLLBACK_COMPLETE", r.stdout)
        self.assertIn("The BeforeAllowTrafficHook function", r.stdout)
        self.assertIn("reported the lifecycle event Failed", r.stdout)
        alias = self.lam.get_alias(FunctionName=function, Name="live")
        self.assertEqual((alias["FunctionVersion"], alias.get("RoutingConfig", {}).get("AdditionalVersionWeights", {})), ("1", {}))
        self.assertEqual(self.invoke_ok(function, {}, Qualifier="live")[1], "v1")
        cf.delete_stack(StackName=stack)

    def test_codedeploy_hook_status_errors(self):
        codedeploy = h.boto3_client(self.server.url, "codedeploy")
        for kwargs, code in [
            ({"deploymentId": "d-ABCDEFGHI", "lifecycleEventHookExecutionId": "x", "status": "Succeeded"}, "DeploymentDoesNotExistException"),
            ({"deploymentId": "nope", "lifecycleEventHookExecutionId": "x", "status": "Succeeded"}, "InvalidDeploymentIdException"),
            ({"lifecycleEventHookExecutionId": "x", "status": "Succeeded"}, "DeploymentIdRequiredException"),
        ]:
            with self.subTest(code=code):
                error = cs.client_error(lambda: codedeploy.put_lifecycle_event_hook_execution_status(**kwargs))
                self.assertEqual(error.response["Error"]["Code"], code)
        error = cs.client_error(lambda: codedeploy.list_applications())
        self.assertEqual(error.response["Error"]["Code"], "UnknownOperationException")

    def test_crash_during_a_shift_rolls_the_alias_back_at_start(self):
        if h.os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            self.skipTest("needs a server of its own")
        data_dir = Path(tempfile.mkdtemp(prefix="lamina-it-shift-crash-"))
        self.addCleanup(shutil.rmtree, data_dir, True)
        folder = self.app()
        stack = f"shift-crash-{uuid.uuid4().hex[:6]}"
        first = h.LaminaServer("shift-1", data_dir=data_dir).start()
        try:
            self.deploy(first, folder, stack)
            lam = first.client()
            function = cs.physical(cs.cfn(first), stack, "Service")
            self.start_update(first, folder, stack)
            # Mid-shift: 20% of the alias's traffic on version 2.
            cs.poll(lambda: lam.get_alias(FunctionName=function, Name="live").get("RoutingConfig", {}).get("AdditionalVersionWeights") == {"2": 0.2},
                    timeout=30, what="the canary's 20% on version 2")
            self.assertEqual(cs.stack_status(cs.cfn(first), stack)["StackStatus"], "UPDATE_IN_PROGRESS")
        finally:
            first.kill()
        second = h.LaminaServer("shift-2", data_dir=data_dir).start()
        try:
            cf = cs.cfn(second)
            final = cs.wait_stack(cf, stack, timeout=60)
            self.assertEqual(final["StackStatus"], "UPDATE_ROLLBACK_COMPLETE", cs.event_lines(cf, stack))
            self.assertIn((stack, "UPDATE_ROLLBACK_IN_PROGRESS", "Lamina restarted while the operation was in progress"), cs.event_lines(cf, stack))
            alias = second.client().get_alias(FunctionName=function, Name="live")
            self.assertEqual((alias["FunctionVersion"], alias.get("RoutingConfig", {}).get("AdditionalVersionWeights", {})), ("1", {}))
            # Version 2 was published before the crash; SAM gives versions DeletionPolicy Retain, so, as in CloudFormation,
            # the rollback's cleanup skips it (DELETE_SKIPPED) and it stays, unused.
            versions = [v["Version"] for v in second.client().list_versions_by_function(FunctionName=function)["Versions"]]
            self.assertEqual(versions, ["$LATEST", "1", "2"])
            self.assertEqual(second.client().invoke(FunctionName=function, Qualifier="live")["Payload"].read(), b'"v1"')
        finally:
            second.stop()

    @h.slow
    def test_canary_shifts_a_fifth_then_everything(self):
        folder = self.app()
        stack = f"shift-canary-{uuid.uuid4().hex[:6]}"
        self.deploy(self.server, folder, stack)
        cf = cs.cfn(self.server)
        function = cs.physical(cf, stack, "Service")
        started = time.monotonic()
        self.start_update(self.server, folder, stack)
        cs.poll(lambda: self.lam.get_alias(FunctionName=function, Name="live").get("RoutingConfig", {}).get("AdditionalVersionWeights") == {"2": 0.2},
                timeout=30, what="the canary's 20% on version 2")
        answers = [self.invoke_ok(function, {}, Qualifier="live")[1] for _ in range(60)]
        self.assertGreater(answers.count("v2"), 2)
        self.assertGreater(answers.count("v1"), 30)
        final = cs.wait_stack(cf, stack, timeout=150)
        self.assertEqual(final["StackStatus"], "UPDATE_COMPLETE")
        self.assertGreaterEqual(time.monotonic() - started, 59)
        alias = self.lam.get_alias(FunctionName=function, Name="live")
        self.assertEqual((alias["FunctionVersion"], alias.get("RoutingConfig", {}).get("AdditionalVersionWeights", {})), ("2", {}))
        self.assertTrue(any("Shifting traffic" in reason and "20%" in reason for _, _, reason in cs.event_lines(cf, stack)))
        cf.delete_stack(StackName=stack)


# A ScheduleV2 event (AWS::Scheduler::Schedule), named per stack so that stacks do not collide.
SCHEDULE_V2_TEMPLATE = """AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Description: A function run every minute by EventBridge Scheduler
Resources:
  Ticker:
    Type: AWS::Serverless::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      InlineCode: |
        import json
        def handler(event, context):
            print("TICK", json.dumps(event))
            return "ticked"
      Events:
        EveryMinute:
          Type: ScheduleV2
          Properties:
            Name: !Sub "${AWS::StackName}-tick"
            ScheduleExpression: rate(1 minute)
            Input: '{"job": "tick"}'
Outputs:
  TickerName:
    Value: !Ref Ticker
"""


class ScheduleV2Tests(h.LaminaTestCase):
    """ScheduleV2 events: the schedule runs as an EventBridge rule with its target and the function's permission, fires,
    and goes with its stack; what Lamina cannot run at the right time is refused."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="lamina-it-schedv2-"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def deploy(self) -> tuple[Path, str, str]:
        folder = self.tmp / uuid.uuid4().hex[:8]
        folder.mkdir()
        (folder / "template.yaml").write_text(SCHEDULE_V2_TEMPLATE)
        stack = f"tick-{uuid.uuid4().hex[:6]}"
        r = cs.lamina_cli("deploy", "--stack-name", stack, cwd=folder, server=self.server)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.addCleanup(lambda: cs.cfn(self.server).delete_stack(StackName=stack))
        return folder, stack, cs.physical(cs.cfn(self.server), stack, "Ticker")

    def test_template_passes_cfn_lint(self):
        path = self.tmp / "schedule-v2.yaml"
        path.write_text(SCHEDULE_V2_TEMPLATE)
        cs.cfn_lint(self, path)

    def test_schedule_is_wired_then_removed_with_its_stack(self):
        folder, stack, function = self.deploy()
        cf = cs.cfn(self.server)
        self.assertEqual(cs.physical(cf, stack, "TickerEveryMinute"), f"{stack}-tick")
        events = h.boto3_client(self.server.url, "events")
        rule = f"Scheduler_default_{stack}-tick"
        self.assertEqual(events.describe_rule(Name=rule)["ScheduleExpression"], "rate(1 minute)")
        target = events.list_targets_by_rule(Rule=rule)["Targets"][0]
        self.assertEqual((target["Arn"], target["Input"]), (h.function_arn(function), '{"job": "tick"}'))
        statement = json.loads(self.lam.get_policy(FunctionName=function)["Policy"])["Statement"][0]
        self.assertEqual((statement["Sid"], statement["Principal"]), (rule, {"Service": "events.amazonaws.com"}))
        r = cs.lamina_cli("delete-stack", stack, cwd=folder, server=self.server)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(cs.client_error(lambda: events.describe_rule(Name=rule)).response["Error"]["Code"], "ResourceNotFoundException")

    def test_what_cannot_run_on_time_is_refused(self):
        cf = cs.cfn(self.server)
        for name, extra, message in [
            ("zone", "ScheduleExpressionTimezone: Europe/Paris", "ScheduleExpressionTimezone Europe/Paris is not supported yet"),
            ("once", None, "one-time at() schedules are not supported yet"),
        ]:
            with self.subTest(name):
                template = SCHEDULE_V2_TEMPLATE.replace("rate(1 minute)", "at(2030-01-01T00:00:00)" if extra is None else "rate(1 minute)")
                if extra:
                    template = template.replace("            Input:", f"            {extra}\n            Input:")
                stack = f"tick-{name}-{uuid.uuid4().hex[:6]}"
                cf.create_stack(StackName=stack, TemplateBody=template, Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"])
                final = cs.wait_stack(cf, stack, timeout=60)
                self.assertEqual(final["StackStatus"], "ROLLBACK_COMPLETE")
                reasons = [reason for _, status, reason in cs.event_lines(cf, stack) if status == "CREATE_FAILED"]
                self.assertTrue(any(message in reason for reason in reasons), reasons)
                cf.delete_stack(StackName=stack)

    @h.slow
    def test_schedule_fires_with_its_input(self):
        _, _, function = self.deploy()
        log = cs.poll(lambda: (m := cs.log_messages(self.server, function)) and "TICK" in m and m, timeout=90, what="a firing in the function's log")
        self.assertIn('TICK {"job": "tick"}', log)
