"""The CloudFormation-compatible API (issue #23) with boto3 and the AWS CLI v1 and v2: stacks of Lamina's resource
types (functions, permissions, queues, topics, subscriptions, rules, buckets with notifications, log groups, tables,
roles) created, described, updated in place or by replacement, rolled back when a service refuses, deleted (with
DeletionPolicy Retain), change sets, intrinsic functions and conditions, exports and imports, templates, errors, and a
restart. Every template here is also accepted by cfn-lint."""
from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import botocore.exceptions

import cloudformation_support as cs
import lamina_harness as h

MODULE = __name__

# A queue, a topic subscribed by the queue and by a function, a function (inline code) reading its environment, a
# disabled schedule targeting it, a bucket notifying it, a log group, a role; outputs with an export.
APP = """
AWSTemplateFormatVersion: "2010-09-09"
Description: Lamina's resource types wired together
Parameters:
  Greeting:
    Type: String
    Default: hello
    AllowedValues: [hello, hi, bonjour]
  Stage:
    Type: String
    Default: dev
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
Mappings:
  Sizes:
    dev: {Memory: 128}
    prod: {Memory: 256}
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 45
  Topic:
    Type: AWS::SNS::Topic
  QueueSubscription:
    Type: AWS::SNS::Subscription
    Properties:
      TopicArn: !Ref Topic
      Protocol: sqs
      Endpoint: !GetAtt Queue.Arn
      RawMessageDelivery: true
  Role:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal: {Service: lambda.amazonaws.com}
            Action: sts:AssumeRole
  Logs:
    Type: AWS::Logs::LogGroup
    Properties:
      RetentionInDays: 7
  Worker:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      Role: !GetAtt Role.Arn
      MemorySize: !FindInMap [Sizes, !Ref Stage, Memory]
      Timeout: 10
      Environment:
        Variables:
          GREETING: !Sub "${Greeting} from ${AWS::StackName}"
          QUEUE_URL: !Ref Queue
          ZONE: !Select [0, !GetAZs ""]
          PARTS: !Join ["+", !Split [",", "a,b,c"]]
          ENCODED: !Base64 lamina
          PROD_ONLY: !If [IsProd, "yes", !Ref AWS::NoValue]
      Code:
        ZipFile: |
          import json, os
          def handler(event, context):
              print("EVENT", json.dumps(event))
              return {k: os.environ.get(k) for k in ("GREETING", "QUEUE_URL", "ZONE", "PARTS", "ENCODED", "PROD_ONLY")}
  TopicToWorker:
    Type: AWS::SNS::Subscription
    Properties:
      TopicArn: !Ref Topic
      Protocol: lambda
      Endpoint: !GetAtt Worker.Arn
  TopicPermission:
    Type: AWS::Lambda::Permission
    Properties:
      Action: lambda:InvokeFunction
      FunctionName: !Ref Worker
      Principal: sns.amazonaws.com
      SourceArn: !Ref Topic
  Schedule:
    Type: AWS::Events::Rule
    Properties:
      ScheduleExpression: rate(1 hour)
      State: DISABLED
      Targets:
        - Id: worker
          Arn: !GetAtt Worker.Arn
          Input: '{"from": "schedule"}'
  BucketPermission:
    Type: AWS::Lambda::Permission
    Properties:
      Action: lambda:InvokeFunction
      FunctionName: !Ref Worker
      Principal: s3.amazonaws.com
      SourceAccount: !Ref AWS::AccountId
  Bucket:
    Type: AWS::S3::Bucket
    DependsOn: BucketPermission
    Properties:
      VersioningConfiguration: {Status: Enabled}
      NotificationConfiguration:
        LambdaConfigurations:
          - Event: s3:ObjectCreated:*
            Function: !GetAtt Worker.Arn
            Filter:
              S3Key:
                Rules: [{Name: suffix, Value: .txt}]
Outputs:
  WorkerName:
    Value: !Ref Worker
  WorkerArn:
    Value: !GetAtt Worker.Arn
    Export:
      Name: !Sub "${AWS::StackName}-worker-arn"
  QueueUrl:
    Value: !Ref Queue
  BucketName:
    Value: !Ref Bucket
  ProdNote:
    Condition: IsProd
    Value: production
"""


def setUpModule():
    h.start_module_server(MODULE, ["--async-retry-delay", "1"])


def tearDownModule():
    h.stop_module_server(MODULE)


class CloudFormationTests(h.LaminaTestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="lamina-it-cfn-"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.cf = cs.cfn(self.server)

    def stack_name(self, suffix: str = "") -> str:
        return f"{self._testMethodName.replace('test_', '').replace('_', '-')[:32].strip('-')}{suffix}-{uuid.uuid4().hex[:6]}"

    def lint(self, template: str) -> None:
        path = self.tmp / f"{uuid.uuid4().hex}.yaml"
        path.write_text(template)
        cs.cfn_lint(self, path)

    def create(self, name: str, template: str, parameters: dict[str, str] | None = None, capabilities=("CAPABILITY_IAM",), expect="CREATE_COMPLETE") -> dict:
        self.cf.create_stack(StackName=name, TemplateBody=template, Capabilities=list(capabilities),
                             Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in (parameters or {}).items()])
        stack = cs.wait_stack(self.cf, name)
        self.assertEqual(stack["StackStatus"], expect, json.dumps(cs.event_lines(self.cf, name), indent=1))
        if expect == "CREATE_COMPLETE":
            self.addCleanup(self._delete_quietly, name)
        return stack

    def _delete_quietly(self, name: str) -> None:
        try:
            self.cf.delete_stack(StackName=name)
        except botocore.exceptions.ClientError:
            pass

    def update(self, name: str, template: str, parameters: dict[str, str] | None = None, expect="UPDATE_COMPLETE") -> dict:
        self.cf.update_stack(StackName=name, TemplateBody=template, Capabilities=["CAPABILITY_IAM"],
                             Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in (parameters or {}).items()])
        stack = cs.wait_stack(self.cf, name)
        self.assertEqual(stack["StackStatus"], expect, json.dumps(cs.event_lines(self.cf, name), indent=1))
        return stack

    # ---- create, describe, use, delete --------------------------------------------------------------------------------

    def test_stack_of_every_kind_is_created_wired_and_deleted(self):
        self.lint(APP)
        name = self.stack_name()
        stack = self.create(name, APP, {"Greeting": "bonjour"})
        out = cs.outputs(stack)
        self.assertNotIn("ProdNote", out)  # its condition is false
        self.assertEqual(stack["Parameters"], [{"ParameterKey": "Greeting", "ParameterValue": "bonjour"}, {"ParameterKey": "Stage", "ParameterValue": "dev"}])
        self.assertTrue(stack["StackId"].startswith(f"arn:aws:cloudformation:us-east-1:000000000000:stack/{name}/"))

        # Each resource is what its own service reports, named as CloudFormation names them.
        worker = out["WorkerName"]
        self.assertRegex(worker, rf"^{name[:30]}.*-Worker-[A-Z0-9]{{12}}$")
        config = self.lam.get_function_configuration(FunctionName=worker)
        self.assertEqual((config["MemorySize"], config["Timeout"], config["Runtime"]), (128, 10, "python3.12"))
        self.assertTrue(config["Role"].startswith("arn:aws:iam::000000000000:role/"))
        _, result = self.invoke_ok(worker, {})
        self.assertEqual(result["GREETING"], f"bonjour from {name}")
        self.assertEqual(result["QUEUE_URL"], out["QueueUrl"])
        self.assertEqual((result["ZONE"], result["PARTS"], result["ENCODED"], result["PROD_ONLY"]), ("us-east-1a", "a+b+c", "bGFtaW5h", None))
        sqs = h.boto3_client(self.server.url, "sqs")
        self.assertEqual(sqs.get_queue_attributes(QueueUrl=out["QueueUrl"], AttributeNames=["VisibilityTimeout"])["Attributes"]["VisibilityTimeout"], "45")
        rule = h.boto3_client(self.server.url, "events").describe_rule(Name=cs.physical(self.cf, name, "Schedule"))
        self.assertEqual((rule["ScheduleExpression"], rule["State"]), ("rate(1 hour)", "DISABLED"))
        logs = h.boto3_client(self.server.url, "logs").describe_log_groups(logGroupNamePrefix=cs.physical(self.cf, name, "Logs"))["logGroups"]
        self.assertEqual(logs[0].get("retentionInDays"), 7)
        self.assertEqual(self.cf.list_exports()["Exports"][0:0], [])
        self.assertIn({"ExportingStackId": stack["StackId"], "Name": f"{name}-worker-arn", "Value": out["WorkerArn"]}, self.cf.list_exports()["Exports"])

        # Wired: a message published to the topic reaches the queue (raw) and the function; an upload reaches the function.
        h.boto3_client(self.server.url, "sns").publish(TopicArn=cs.physical(self.cf, name, "Topic"), Message="via-topic")
        received = cs.poll(lambda: sqs.receive_message(QueueUrl=out["QueueUrl"], WaitTimeSeconds=1).get("Messages"), what="the topic's message in the queue")
        self.assertEqual(received[0]["Body"], "via-topic")
        h.boto3_client(self.server.url, "s3").put_object(Bucket=out["BucketName"], Key="note.txt", Body=b"x")
        cs.poll(lambda: "via-topic" in cs.log_messages(self.server, worker) and "note.txt" in cs.log_messages(self.server, worker), timeout=60,
                what="the function's log of both events")

        # Events as CloudFormation reports them, oldest first.
        lines = cs.event_lines(self.cf, name)
        self.assertEqual(lines[0], (name, "CREATE_IN_PROGRESS", "User Initiated"))
        self.assertEqual(lines[-1], (name, "CREATE_COMPLETE", ""))
        worker_events = [(status, reason) for logical, status, reason in lines if logical == "Worker"]
        self.assertEqual(worker_events, [("CREATE_IN_PROGRESS", ""), ("CREATE_IN_PROGRESS", "Resource creation Initiated"), ("CREATE_COMPLETE", "")])
        # Dependencies first: the bucket after its permission, subscriptions after the topic.
        order = [logical for logical, status, _ in lines if status == "CREATE_COMPLETE"]
        self.assertLess(order.index("BucketPermission"), order.index("Bucket"))
        self.assertLess(order.index("Topic"), order.index("QueueSubscription"))
        summaries = self.cf.list_stack_resources(StackName=name)["StackResourceSummaries"]
        self.assertEqual(len(summaries), 11)
        self.assertTrue(all(s["ResourceStatus"] == "CREATE_COMPLETE" for s in summaries))
        detail = self.cf.describe_stack_resources(StackName=name, LogicalResourceId="Queue")["StackResources"][0]
        self.assertEqual(detail["PhysicalResourceId"], out["QueueUrl"])

        # Delete: everything goes; the bucket must be emptied first, as on AWS (S3's own refusal, then a retry).
        self.cf.delete_stack(StackName=name)
        failed = cs.wait_stack(self.cf, stack["StackId"])
        self.assertEqual(failed["StackStatus"], "DELETE_FAILED")
        reasons = [reason for logical, status, reason in cs.event_lines(self.cf, stack["StackId"]) if status == "DELETE_FAILED" and logical == "Bucket"]
        self.assertIn("Resource handler returned message:", reasons[0])
        s3 = h.boto3_client(self.server.url, "s3")
        for version in s3.list_object_versions(Bucket=out["BucketName"]).get("Versions", []):
            s3.delete_object(Bucket=out["BucketName"], Key=version["Key"], VersionId=version["VersionId"])
        self.cf.delete_stack(StackName=name)
        deleted = cs.wait_stack(self.cf, stack["StackId"])
        self.assertEqual(deleted["StackStatus"], "DELETE_COMPLETE")
        self.assertIn("DeletionTime", deleted)
        e = cs.client_error(lambda: self.cf.describe_stacks(StackName=name))
        self.assertEqual(e.response["Error"]["Code"], "ValidationError")
        self.assertEqual(e.response["Error"]["Message"], f"Stack with id {name} does not exist")
        self.assertFunctionAbsent(worker)
        self.assertRaises(botocore.exceptions.ClientError, lambda: sqs.get_queue_attributes(QueueUrl=out["QueueUrl"]))
        self.assertNotIn(f"{name}-worker-arn", [x["Name"] for x in self.cf.list_exports()["Exports"]])
        listed = [s for s in self.cf.list_stacks(StackStatusFilter=["DELETE_COMPLETE"])["StackSummaries"] if s["StackId"] == stack["StackId"]]
        self.assertEqual(len(listed), 1)

    # ---- failures and rollbacks ---------------------------------------------------------------------------------------

    def test_a_control_character_in_a_stack_leaves_every_listing_readable(self):
        # XML 1.0 cannot carry NUL or most control characters, even escaped: one in a stack's description or output
        # made DescribeStacks and ListStacks (every stack's) unparseable to the SDKs. They come back as U+FFFD.
        name = self.stack_name()
        template = json.dumps({
            "Description": "before\u0000between\u0001after",
            "Parameters": {"Value": {"Type": "String"}},
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {"Echo": {"Value": {"Ref": "Value"}}},
        })
        self.create(name, template, parameters={"Value": "a\u0000b"})
        stack = self.cf.describe_stacks(StackName=name)["Stacks"][0]
        self.assertEqual(stack["Description"], "before\ufffdbetween\ufffdafter")
        self.assertEqual(stack["Outputs"][0]["OutputValue"], "a\ufffdb")
        listed = [s for page in self.cf.get_paginator("list_stacks").paginate() for s in page["StackSummaries"]]
        self.assertIn(name, [s["StackName"] for s in listed])
        self.assertIn(name, [s["StackName"] for s in self.cf.describe_stacks()["Stacks"]])

    def test_failed_create_rolls_back_with_the_services_message(self):
        template = """
Resources:
  Queue:
    Type: AWS::SQS::Queue
  Broken:
    Type: AWS::Lambda::Function
    DependsOn: Queue
    Properties:
      Runtime: python3.12
      Handler: index.handler
      Role: arn:aws:iam::000000000000:role/lambda-role
      Timeout: 99999
      Code:
        ZipFile: "def handler(e, c): return 1"
"""
        name = self.stack_name()
        stack = self.create(name, template, expect="ROLLBACK_COMPLETE")
        lines = cs.event_lines(self.cf, stack["StackId"])
        failed = [reason for logical, status, reason in lines if (logical, status) == ("Broken", "CREATE_FAILED")]
        self.assertEqual(len(failed), 1)
        self.assertRegex(failed[0], r'^Resource handler returned message: ".*(?i:timeout).*" \(RequestToken: [0-9a-f-]{36}, HandlerErrorCode: InvalidRequest\)$')
        self.assertIn((name, "ROLLBACK_IN_PROGRESS", "The following resource(s) failed to create: [Broken]. Rollback requested by user."), lines)
        self.assertIn(("Queue", "DELETE_COMPLETE", ""), lines)
        self.assertEqual(lines[-1], (name, "ROLLBACK_COMPLETE", ""))
        queues = h.boto3_client(self.server.url, "sqs").list_queues(QueueNamePrefix=name[:20]).get("QueueUrls", [])
        self.assertEqual(queues, [])
        # A ROLLBACK_COMPLETE stack cannot be updated, only deleted.
        e = cs.client_error(lambda: self.cf.update_stack(StackName=name, TemplateBody=template))
        self.assertIn("ROLLBACK_COMPLETE state and can not be updated", e.response["Error"]["Message"])
        self.cf.delete_stack(StackName=name)
        self.assertEqual(cs.wait_stack(self.cf, stack["StackId"])["StackStatus"], "DELETE_COMPLETE")

    def test_log_subscription_filter_needs_the_functions_permission(self):
        template = """
Resources:
  Watched:
    Type: AWS::Logs::LogGroup
  Watcher:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      Role: arn:aws:iam::000000000000:role/lambda-role
      Code:
        ZipFile: "def handler(e, c): print(e)"
  WatcherPermission:
    Type: AWS::Lambda::Permission
    Properties:
      Action: lambda:InvokeFunction
      FunctionName: !Ref Watcher
      Principal: logs.amazonaws.com
      SourceArn: !GetAtt Watched.Arn
  Errors:
    Type: AWS::Logs::SubscriptionFilter
    DependsOn: WatcherPermission
    Properties:
      FilterName: !Sub "${AWS::StackName}-errors"
      LogGroupName: !Ref Watched
      FilterPattern: "{ $.level = ERROR }"
      DestinationArn: !GetAtt Watcher.Arn
Outputs:
  Filter:
    Value: !Ref Errors
"""
        self.lint(template)
        # Without the permission, CloudWatch Logs' refusal fails the create, which rolls back.
        unpermitted = template.split("  WatcherPermission:")[0] + "  Errors:" + template.split("  Errors:")[1].replace("    DependsOn: WatcherPermission\n", "")
        refused = self.stack_name("-no")
        stack = self.create(refused, unpermitted, expect="ROLLBACK_COMPLETE")
        failed = [reason for logical, status, reason in cs.event_lines(self.cf, stack["StackId"]) if (logical, status) == ("Errors", "CREATE_FAILED")]
        self.assertEqual(len(failed), 1)
        self.assertIn("Could not execute the lambda function. Make sure you have given CloudWatch Logs permission to execute your function.", failed[0])
        self.cf.delete_stack(StackName=refused)
        # With it: Ref is the filter's name; deleting the stack removes the filter and the group.
        name = self.stack_name("-yes")
        stack = self.create(name, template)
        self.assertEqual(cs.outputs(stack)["Filter"], f"{name}-errors")
        logs = h.boto3_client(self.server.url, "logs")
        group = cs.physical(self.cf, name, "Watched")
        [described] = logs.describe_subscription_filters(logGroupName=group)["subscriptionFilters"]
        self.assertEqual((described["filterName"], described["filterPattern"]), (f"{name}-errors", "{ $.level = ERROR }"))
        self.cf.delete_stack(StackName=name)
        self.assertEqual(cs.wait_stack(self.cf, stack["StackId"])["StackStatus"], "DELETE_COMPLETE")
        self.assertEqual(logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"], [])

    def test_update_changes_only_what_changed_replaces_renamed_and_removes_dropped(self):
        v1 = """
Parameters:
  Suffix: {Type: String, Default: a}
Resources:
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      FunctionName: !Sub "${AWS::StackName}-${Suffix}"
      Runtime: python3.12
      Handler: index.handler
      Role: arn:aws:iam::000000000000:role/lambda-role
      Environment: {Variables: {COLOUR: red}}
      Code: {ZipFile: "import os\\ndef handler(e, c): return os.environ['COLOUR']"}
  Queue:
    Type: AWS::SQS::Queue
  Kept:
    Type: AWS::SNS::Topic
"""
        name = self.stack_name()
        self.create(name, v1)
        queue_before = cs.physical(self.cf, name, "Queue")
        topic_before = cs.physical(self.cf, name, "Kept")
        # 1. In place: only the environment changes.
        self.update(name, v1.replace("COLOUR: red", "COLOUR: blue"))
        self.assertEqual(self.invoke_ok(f"{name}-a", {})[1], "blue")
        lines = cs.event_lines(self.cf, name)
        update = lines[[i for i, l in enumerate(lines) if l == (name, "UPDATE_IN_PROGRESS", "User Initiated")][-1]:]
        self.assertEqual([l for l in update if l[0] != name], [("Fn", "UPDATE_IN_PROGRESS", ""), ("Fn", "UPDATE_COMPLETE", "")])
        self.assertEqual([l[1] for l in update if l[0] == name], ["UPDATE_IN_PROGRESS", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_COMPLETE"])
        self.assertEqual(cs.physical(self.cf, name, "Queue"), queue_before)
        # 2. A new name is a new function; the old one goes in the cleanup phase. The dropped queue goes; a new topic comes.
        v2 = v1.replace("Default: a", "Default: b").replace("  Queue:\n    Type: AWS::SQS::Queue\n", "  Added:\n    Type: AWS::SNS::Topic\n")
        self.update(name, v2)
        lines = cs.event_lines(self.cf, name)
        self.assertIn(("Fn", "UPDATE_IN_PROGRESS", "Requested update requires the creation of a new physical resource; hence creating one."), lines)
        self.assertEqual(self.invoke_ok(f"{name}-b", {})[1], "red")
        self.assertFunctionAbsent(f"{name}-a")
        cleanup = lines[[i for i, l in enumerate(lines) if l[1] == "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"][-1]:]
        self.assertIn(("Queue", "DELETE_COMPLETE", ""), cleanup)
        self.assertIn(("Fn", "DELETE_COMPLETE", ""), cleanup)
        self.assertEqual(cs.physical(self.cf, name, "Kept"), topic_before)
        self.assertEqual(sorted(r["LogicalResourceId"] for r in self.cf.list_stack_resources(StackName=name)["StackResourceSummaries"]), ["Added", "Fn", "Kept"])
        # 3. Nothing changed: CloudFormation's own refusal.
        e = cs.client_error(lambda: self.cf.update_stack(StackName=name, TemplateBody=v2, Capabilities=["CAPABILITY_IAM"]))
        self.assertEqual((e.response["Error"]["Code"], e.response["Error"]["Message"]), ("ValidationError", "No updates are to be performed."))

    def test_durable_config_is_set_and_updated_in_place(self):
        # Found deploying the sam init quick start "hello-durable-ts": SAM passes DurableConfig through, and CloudFormation
        # updates it without interruption.
        template = """
Transform: AWS::Serverless-2016-10-31
Resources:
  Flow:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: !Sub "${AWS::StackName}-flow"
      Runtime: python3.12
      Handler: index.handler
      InlineCode: "def handler(e, c): return 1"
      DurableConfig: {ExecutionTimeout: 900, RetentionPeriodInDays: 7}
"""
        name = self.stack_name()
        capabilities = ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
        self.create(name, template, capabilities=capabilities)
        self.assertEqual(self.lam.get_function_configuration(FunctionName=f"{name}-flow")["DurableConfig"],
                         {"ExecutionTimeout": 900, "RetentionPeriodInDays": 7})
        self.cf.update_stack(StackName=name, TemplateBody=template.replace("ExecutionTimeout: 900", "ExecutionTimeout: 1800"), Capabilities=capabilities)
        self.assertEqual(cs.wait_stack(self.cf, name)["StackStatus"], "UPDATE_COMPLETE")
        self.assertEqual(self.lam.get_function_configuration(FunctionName=f"{name}-flow")["DurableConfig"]["ExecutionTimeout"], 1800)
        self.assertNotIn("Requested update requires the creation of a new physical resource; hence creating one.",
                         [l[2] for l in cs.event_lines(self.cf, name) if l[0] == "Flow"])

    def test_failed_update_rolls_everything_back(self):
        v1 = """
Resources:
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      Role: arn:aws:iam::000000000000:role/lambda-role
      MemorySize: 128
      Code: {ZipFile: "def handler(e, c): return 'v1'"}
  Topic:
    Type: AWS::SNS::Topic
"""
        name = self.stack_name()
        self.create(name, v1)
        fn = cs.physical(self.cf, name, "Fn")
        topic = cs.physical(self.cf, name, "Topic")
        v2 = v1.replace("MemorySize: 128", "MemorySize: 256").replace("return 'v1'", "return 'v2'") + """
  NewQueue:
    Type: AWS::SQS::Queue
  Bad:
    Type: AWS::Lambda::Permission
    DependsOn: [Fn, NewQueue]
    Properties:
      Action: lambda:InvokeFunction
      FunctionName: does-not-exist-anywhere
      Principal: sns.amazonaws.com
"""
        self.update(name, v2, expect="UPDATE_ROLLBACK_COMPLETE")
        lines = cs.event_lines(self.cf, name)
        bad = [reason for logical, status, reason in lines if (logical, status) == ("Bad", "CREATE_FAILED")]
        self.assertIn("HandlerErrorCode: NotFound", bad[0])
        self.assertIn((name, "UPDATE_ROLLBACK_IN_PROGRESS", "The following resource(s) failed to update: [Bad]. "), lines)
        self.assertEqual([l[1] for l in lines[-3:] if l[0] == name][-1], "UPDATE_ROLLBACK_COMPLETE")
        # The function is back as it was, the new queue is gone, the topic untouched.
        config = self.lam.get_function_configuration(FunctionName=fn)
        self.assertEqual(config["MemorySize"], 128)
        self.assertEqual(self.invoke_ok(fn, {})[1], "v1")
        self.assertEqual(cs.physical(self.cf, name, "Topic"), topic)
        self.assertEqual(sorted(r["LogicalResourceId"] for r in self.cf.list_stack_resources(StackName=name)["StackResourceSummaries"]), ["Fn", "Topic"])
        self.assertEqual(h.boto3_client(self.server.url, "sqs").list_queues(QueueNamePrefix=name[:20]).get("QueueUrls", []), [])
        # The stack serves the old template, and updates again.
        self.assertIn("return 'v1'", self.cf.get_template(StackName=name)["TemplateBody"])
        self.update(name, v1.replace("MemorySize: 128", "MemorySize: 192"))

    def test_deletion_policy_retain_keeps_the_resource(self):
        template = """
Resources:
  KeptQueue:
    Type: AWS::SQS::Queue
    DeletionPolicy: Retain
    UpdateReplacePolicy: Retain
  GoneQueue:
    Type: AWS::SQS::Queue
"""
        self.lint(template)
        name = self.stack_name()
        stack = self.create(name, template)
        kept, gone = cs.physical(self.cf, name, "KeptQueue"), cs.physical(self.cf, name, "GoneQueue")
        self.cf.delete_stack(StackName=name)
        self.assertEqual(cs.wait_stack(self.cf, stack["StackId"])["StackStatus"], "DELETE_COMPLETE")
        lines = cs.event_lines(self.cf, stack["StackId"])
        self.assertIn(("KeptQueue", "DELETE_SKIPPED", ""), lines)
        sqs = h.boto3_client(self.server.url, "sqs")
        self.assertIn("QueueArn", sqs.get_queue_attributes(QueueUrl=kept, AttributeNames=["QueueArn"])["Attributes"])
        self.assertRaises(botocore.exceptions.ClientError, lambda: sqs.get_queue_attributes(QueueUrl=gone))
        sqs.delete_queue(QueueUrl=kept)

    def test_events_page_on_from_where_the_last_page_ended(self):
        # 60 queues: 182 events, more than a page (100). An update between two pages adds events at the head (newest
        # first); the next page still goes on with the older ones, none twice.
        queues = "".join(f"  Queue{i}:\n    Type: AWS::SQS::Queue\n" for i in range(60))
        template = "Resources:\n" + queues
        self.lint(template)
        name = self.stack_name()
        self.create(name, template)
        created = [e["EventId"] for e in reversed(cs.events(self.cf, name))]  # newest first, as listed
        first = self.cf.describe_stack_events(StackName=name)
        self.assertEqual(len(first["StackEvents"]), 100)
        self.cf.update_stack(StackName=name, TemplateBody=template + "  Queue60:\n    Type: AWS::SQS::Queue\n")
        self.assertEqual(cs.wait_stack(self.cf, name)["StackStatus"], "UPDATE_COMPLETE")
        second = self.cf.describe_stack_events(StackName=name, NextToken=first["NextToken"])
        self.assertNotIn("NextToken", second)
        listed = [e["EventId"] for e in first["StackEvents"] + second["StackEvents"]]
        self.assertEqual(len(listed), len(set(listed)), "an event listed twice")
        self.assertEqual(listed, created)
        self.assertEqual((second["StackEvents"][-1]["LogicalResourceId"], second["StackEvents"][-1]["ResourceStatus"]),
                         (name, "CREATE_IN_PROGRESS"))  # the oldest event last
        e = cs.client_error(lambda: self.cf.describe_stack_events(StackName=name, NextToken="100"))
        self.assertEqual(e.response["Error"]["Code"], "ValidationError")

    # ---- exports and imports ------------------------------------------------------------------------------------------

    def test_exports_are_imported_and_protected(self):
        exporter = """
Resources:
  Topic:
    Type: AWS::SNS::Topic
Outputs:
  TopicArn:
    Value: !Ref Topic
    Export:
      Name: !Sub "${AWS::StackName}-topic"
"""
        name = self.stack_name("-exp")
        self.create(name, exporter)
        importer = f"""
Resources:
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      Role: arn:aws:iam::000000000000:role/lambda-role
      Environment:
        Variables:
          TOPIC: !ImportValue {name}-topic
      Code:
        ZipFile: "def handler(e, c): return 1"
"""
        self.lint(importer)
        user = self.stack_name("-imp")
        stack = self.create(user, importer)
        variables = self.lam.get_function_configuration(FunctionName=cs.physical(self.cf, user, "Fn"))["Environment"]["Variables"]
        self.assertEqual(variables["TOPIC"], cs.physical(self.cf, name, "Topic"))
        self.assertEqual(self.cf.list_imports(ExportName=f"{name}-topic")["Imports"], [user])
        # Another stack cannot export the same name; the exporter cannot be deleted while imported.
        clash = self.stack_name("-clash")
        self.cf.create_stack(StackName=clash, TemplateBody=exporter.replace("${AWS::StackName}-topic", f"{name}-topic"))
        self.assertEqual(cs.wait_stack(self.cf, clash)["StackStatus"], "ROLLBACK_COMPLETE")
        self.assertIn(f"Export with name {name}-topic is already exported by stack {name}", json.dumps(cs.event_lines(self.cf, clash)))
        self.cf.delete_stack(StackName=clash)
        self.cf.delete_stack(StackName=name)
        blocked = cs.wait_stack(self.cf, name)
        self.assertEqual((blocked["StackStatus"], blocked["StackStatusReason"]), ("DELETE_FAILED", f"Export {name}-topic cannot be deleted as it is in use by {user}"))
        self.cf.delete_stack(StackName=user)
        cs.wait_stack(self.cf, stack["StackId"])
        self.cf.delete_stack(StackName=name)
        self.assertEqual(cs.wait_stack(self.cf, blocked["StackId"])["StackStatus"], "DELETE_COMPLETE")
        e = cs.client_error(lambda: self.cf.create_stack(StackName=self.stack_name("-late"), TemplateBody=importer))
        self.assertEqual(e.response["Error"]["Message"], f"No export named {name}-topic found.")

    # ---- change sets --------------------------------------------------------------------------------------------------

    def test_change_sets_preview_then_execute(self):
        v1 = """
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      DelaySeconds: 0
  Topic:
    Type: AWS::SNS::Topic
"""
        name = self.stack_name()
        created = self.cf.create_change_set(StackName=name, ChangeSetName="first", ChangeSetType="CREATE", TemplateBody=v1)
        self.assertTrue(created["Id"].startswith("arn:aws:cloudformation:us-east-1:000000000000:changeSet/first/"))
        self.assertEqual(cs.stack_status(self.cf, name)["StackStatus"], "REVIEW_IN_PROGRESS")
        self.cf.get_waiter("change_set_create_complete").wait(ChangeSetName="first", StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        described = self.cf.describe_change_set(ChangeSetName="first", StackName=name)
        self.assertEqual((described["Status"], described["ExecutionStatus"]), ("CREATE_COMPLETE", "AVAILABLE"))
        self.assertEqual(sorted((c["ResourceChange"]["Action"], c["ResourceChange"]["LogicalResourceId"]) for c in described["Changes"]),
                         [("Add", "Queue"), ("Add", "Topic")])
        self.assertEqual([s["ChangeSetName"] for s in self.cf.list_change_sets(StackName=name)["Summaries"]], ["first"])
        self.cf.execute_change_set(ChangeSetName=created["Id"])
        self.cf.get_waiter("stack_create_complete").wait(StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        self.addCleanup(self._delete_quietly, name)
        self.assertEqual(cs.stack_status(self.cf, name)["ChangeSetId"], created["Id"])

        # An update: a modified property (no replacement), a replacement, a removal.
        v2 = """
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      DelaySeconds: 5
  Topic:
    Type: AWS::SNS::Topic
    Properties:
      TopicName: !Sub "${AWS::StackName}-renamed"
"""
        self.cf.create_change_set(StackName=name, ChangeSetName="second", TemplateBody=v2)
        changes = {c["ResourceChange"]["LogicalResourceId"]: c["ResourceChange"] for c in self.cf.describe_change_set(ChangeSetName="second", StackName=name)["Changes"]}
        self.assertEqual((changes["Queue"]["Action"], changes["Queue"]["Replacement"]), ("Modify", "False"))
        self.assertEqual(changes["Queue"]["Details"][0]["Target"], {"Attribute": "Properties", "Name": "DelaySeconds", "RequiresRecreation": "Never"})
        self.assertEqual((changes["Topic"]["Action"], changes["Topic"]["Replacement"]), ("Modify", "True"))
        self.assertEqual(changes["Topic"]["Details"][0]["Target"]["RequiresRecreation"], "Always")
        # Nothing new: the change set fails, as `aws cloudformation deploy` expects.
        self.cf.create_change_set(StackName=name, ChangeSetName="same", TemplateBody=v1)
        same = self.cf.describe_change_set(ChangeSetName="same", StackName=name)
        self.assertEqual((same["Status"], same["ExecutionStatus"]), ("FAILED", "UNAVAILABLE"))
        self.assertEqual(same["StatusReason"], "The submitted information didn't contain changes. Submit different information to create a change set.")
        e = cs.client_error(lambda: self.cf.execute_change_set(ChangeSetName="same", StackName=name))
        self.assertEqual(e.response["Error"]["Code"], "InvalidChangeSetStatus")
        self.cf.delete_change_set(ChangeSetName="same", StackName=name)
        # The processed template of a change set is available before it runs.
        self.assertIn("renamed", self.cf.get_template(StackName=name, ChangeSetName="second")["TemplateBody"])
        self.cf.execute_change_set(ChangeSetName="second", StackName=name)
        self.cf.get_waiter("stack_update_complete").wait(StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        self.assertTrue(cs.physical(self.cf, name, "Topic").endswith(f":{name}-renamed"))
        self.assertEqual(self.cf.list_change_sets(StackName=name)["Summaries"][0]["ExecutionStatus"], "EXECUTE_COMPLETE")
        # A pending change set's name is taken; an executed one's may be used again (the AWS CLI names its change sets
        # after the second, and two `deploy`s can finish within one here).
        self.cf.create_change_set(StackName=name, ChangeSetName="third", TemplateBody=v1)
        e = cs.client_error(lambda: self.cf.create_change_set(StackName=name, ChangeSetName="third", TemplateBody=v2))
        self.assertEqual(e.response["Error"]["Code"], "AlreadyExistsException")
        self.cf.execute_change_set(ChangeSetName="third", StackName=name)
        self.cf.get_waiter("stack_update_complete").wait(StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        again = self.cf.create_change_set(StackName=name, ChangeSetName="third", TemplateBody=v2)
        self.assertEqual([(s["ChangeSetId"], s["ExecutionStatus"]) for s in self.cf.list_change_sets(StackName=name)["Summaries"]],
                         [(again["Id"], "AVAILABLE")])
        e = cs.client_error(lambda: self.cf.describe_change_set(ChangeSetName="nope", StackName=name))
        self.assertEqual(e.response["Error"]["Code"], "ChangeSetNotFound")

    # ---- templates and errors -----------------------------------------------------------------------------------------

    def test_templates_validated_summarised_and_returned(self):
        yaml_body = "Parameters:\n  Size: {Type: Number, Default: 3, Description: how many}\nResources:\n  Q: {Type: 'AWS::SQS::Queue'}\n"
        validated = self.cf.validate_template(TemplateBody=yaml_body)
        self.assertEqual(validated["Parameters"], [{"ParameterKey": "Size", "DefaultValue": "3", "NoEcho": False, "Description": "how many"}])
        summary = self.cf.get_template_summary(TemplateBody=yaml_body)
        self.assertEqual(summary["ResourceTypes"], ["AWS::SQS::Queue"])
        self.assertEqual(summary["Parameters"][0]["ParameterType"], "Number")
        iam = self.cf.get_template_summary(TemplateBody="Resources:\n  R: {Type: 'AWS::IAM::Role', Properties: {AssumeRolePolicyDocument: {}}}\n")
        self.assertEqual(iam["Capabilities"], ["CAPABILITY_IAM"])
        cases = {
            "Resources: [": "Template format error: YAML not well-formed.",
            "{\"Resources\": ": "Template format error: JSON not well-formed.",
            "Description: nothing\n": "Template format error: At least one Resources member must be defined.",
            "Resources:\n  A: {Properties: {}}\n": "Template format error: [/Resources/A] Every Resources object must contain a Type member.",
            "Resources:\n  A: {Type: 'AWS::SQS::Queue', DependsOn: B}\n": "Template format error: Unresolved resource dependencies [B] in the Resources block of the template",
            "Resources:\n  A: {Type: 'AWS::SQS::Queue'}\nFoo: 1\n": "Template format error: Invalid template property or properties [Foo]",
        }
        for body, message in cases.items():
            with self.subTest(body=body):
                e = cs.client_error(lambda: self.cf.validate_template(TemplateBody=body))
                self.assertEqual(e.response["Error"]["Code"], "ValidationError")
                self.assertTrue(e.response["Error"]["Message"].startswith(message), e.response["Error"]["Message"])
        name = self.stack_name()
        self.create(name, yaml_body, {"Size": "4"})
        self.assertEqual(self.cf.get_template(StackName=name)["TemplateBody"], yaml_body)
        processed = self.cf.get_template(StackName=name, TemplateStage="Processed")["TemplateBody"]  # botocore parses JSON bodies
        self.assertEqual(processed["Resources"]["Q"]["Type"], "AWS::SQS::Queue")

    def test_requests_refused_as_cloudformation_refuses_them(self):
        queue = "Resources:\n  Q: {Type: 'AWS::SQS::Queue'}\n"
        role = "Resources:\n  R: {Type: 'AWS::IAM::Role', Properties: {AssumeRolePolicyDocument: {}}}\n"
        named = "Resources:\n  R: {Type: 'AWS::IAM::Role', Properties: {RoleName: x, AssumeRolePolicyDocument: {}}}\n"
        params = "Parameters:\n  P: {Type: String, AllowedPattern: '[a-z]+'}\n  N: {Type: Number, MaxValue: 5}\n" + queue
        name = self.stack_name()
        self.create(name, queue)
        cases = [
            (dict(StackName=name, TemplateBody=queue), "AlreadyExistsException", f"Stack [{name}] already exists"),
            (dict(StackName=self.stack_name("-r"), TemplateBody=role), "InsufficientCapabilitiesException", "Requires capabilities : [CAPABILITY_IAM]"),
            (dict(StackName=self.stack_name("-n"), TemplateBody=named, Capabilities=["CAPABILITY_IAM"]), "InsufficientCapabilitiesException",
             "Requires capabilities : [CAPABILITY_NAMED_IAM]"),
            (dict(StackName=self.stack_name("-p"), TemplateBody=params), "ValidationError", "Parameters: [P, N] must have values"),
            (dict(StackName=self.stack_name("-q"), TemplateBody=params, Parameters=[{"ParameterKey": "P", "ParameterValue": "ABC"}, {"ParameterKey": "N", "ParameterValue": "1"}]),
             "ValidationError", "Parameter 'P' must match pattern [a-z]+"),
            (dict(StackName=self.stack_name("-s"), TemplateBody=params, Parameters=[{"ParameterKey": "P", "ParameterValue": "abc"}, {"ParameterKey": "N", "ParameterValue": "9"}]),
             "ValidationError", "Parameter 'N' must be a number not greater than 5"),
            (dict(StackName=self.stack_name("-u"), TemplateBody=queue, Parameters=[{"ParameterKey": "Nope", "ParameterValue": "1"}]),
             "ValidationError", "Parameters: [Nope] do not exist in the template"),
            (dict(StackName="9starts-with-a-digit", TemplateBody=queue), "ValidationError", "Member must satisfy regular expression pattern"),
            (dict(StackName=self.stack_name("-t"), TemplateBody="Resources:\n  I: {Type: 'AWS::EC2::Instance'}\n"), "ValidationError",
             "Template format error: Unrecognized resource types: [AWS::EC2::Instance]"),
            (dict(StackName=self.stack_name("-g"), TemplateBody="Resources:\n  Q: {Type: 'AWS::SQS::Queue'}\nOutputs:\n  O: {Value: !GetAtt Q.Nope}\n"),
             "ValidationError", "Template error: resource Q does not support attribute type Nope in Fn::GetAtt"),
            (dict(StackName=self.stack_name("-c"), TemplateBody="Resources:\n  A: {Type: 'AWS::SQS::Queue', DependsOn: B}\n  B: {Type: 'AWS::SQS::Queue', DependsOn: A}\n"),
             "ValidationError", "Circular dependency between resources: [A, B]"),
            (dict(StackName=self.stack_name("-b"), TemplateBody="Resources:\n  Q: {Type: 'AWS::SQS::Queue', Properties: {X: " + "y" * 52000 + "}}\n"),
             "ValidationError", "Member must have length less than or equal to 51200"),
        ]
        for kwargs, code, message in cases:
            with self.subTest(message=message):
                e = cs.client_error(lambda: self.cf.create_stack(**kwargs))
                self.assertEqual(e.response["Error"]["Code"], code)
                self.assertIn(message, e.response["Error"]["Message"])
                self.assertEqual(e.response["ResponseMetadata"]["HTTPStatusCode"], 400)
        e = cs.client_error(lambda: self.cf.describe_stacks(StackName="never-was"))
        self.assertEqual(e.response["Error"]["Message"], "Stack with id never-was does not exist")
        e = cs.client_error(lambda: self.cf.describe_stack_events(StackName="never-was"))
        self.assertEqual(e.response["Error"]["Message"], "Stack [never-was] does not exist")
        self.cf.delete_stack(StackName="never-was")  # CloudFormation answers success
        # A resource-level parameter mistake is the service's own message in the events.
        bad = self.stack_name("-bad")
        self.cf.create_stack(StackName=bad, TemplateBody="Resources:\n  Q: {Type: 'AWS::SQS::Queue', Properties: {DelaySeconds: 9999}}\n")
        self.assertEqual(cs.wait_stack(self.cf, bad)["StackStatus"], "ROLLBACK_COMPLETE")
        reason = [r for l, s, r in cs.event_lines(self.cf, bad) if s == "CREATE_FAILED"][0]
        self.assertIn("DelaySeconds", reason)
        self.cf.delete_stack(StackName=bad)

    # ---- the AWS CLI --------------------------------------------------------------------------------------------------

    def test_aws_cli_v1_and_v2_deploy_wait_events_delete(self):
        template = self.tmp / "cli.yaml"
        template.write_text("""
Parameters:
  Size: {Type: Number, Default: 128}
Resources:
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      Runtime: python3.12
      Handler: index.handler
      Role: arn:aws:iam::000000000000:role/lambda-role
      MemorySize: !Ref Size
      Code: {ZipFile: "def handler(e, c): return 'cli'"}
Outputs:
  Name: {Value: !Ref Fn}
""")
        cs.cfn_lint(self, template)
        name = self.stack_name()
        self.addCleanup(self._delete_quietly, name)
        v1 = cs.run_cli(self.server, "cloudformation", "deploy", "--template-file", str(template), "--stack-name", name)
        self.assertEqual(v1.rc, 0, repr(v1))
        self.assertIn(f"Successfully created/updated stack - {name}", v1.stdout)
        if shutil.which("/usr/bin/aws") is None:
            self.fail("AWS CLI v2 (/usr/bin/aws, Debian package awscli) is required; ./test.sh installs it")
        v2 = cs.run_cli(self.server, "cloudformation", "deploy", "--template-file", str(template), "--stack-name", name,
                        "--parameter-overrides", "Size=256", cli="/usr/bin/aws")
        self.assertEqual(v2.rc, 0, repr(v2))
        fn = cs.outputs(cs.stack_status(self.cf, name))["Name"]
        self.assertEqual(self.lam.get_function_configuration(FunctionName=fn)["MemorySize"], 256)
        again = cs.run_cli(self.server, "cloudformation", "deploy", "--template-file", str(template), "--stack-name", name,
                           "--parameter-overrides", "Size=256", "--no-fail-on-empty-changeset", cli="/usr/bin/aws")
        self.assertEqual(again.rc, 0, repr(again))
        self.assertIn("No changes to deploy", again.stdout)
        for cli in ("aws", "/usr/bin/aws"):
            with self.subTest(cli=cli):
                r = cs.run_cli(self.server, "cloudformation", "wait", "stack-update-complete", "--stack-name", name, cli=cli)
                self.assertEqual(r.rc, 0, repr(r))
                r = cs.run_cli(self.server, "cloudformation", "describe-stack-events", "--stack-name", name, cli=cli)
                self.assertEqual(r.rc, 0, repr(r))
                self.assertEqual(r.json["StackEvents"][0]["ResourceStatus"], "UPDATE_COMPLETE")
                r = cs.run_cli(self.server, "cloudformation", "describe-stack-resources", "--stack-name", name, cli=cli)
                self.assertEqual(r.json["StackResources"][0]["PhysicalResourceId"], fn)
        r = cs.run_cli(self.server, "cloudformation", "delete-stack", "--stack-name", name, cli="/usr/bin/aws")
        self.assertEqual(r.rc, 0, repr(r))
        r = cs.run_cli(self.server, "cloudformation", "wait", "stack-delete-complete", "--stack-name", name)
        self.assertEqual(r.rc, 0, repr(r))
        self.assertFunctionAbsent(fn)


class RestartTests(h.LaminaTestCase):
    """Stacks live in cloudformation.db: a restart keeps them, and they update afterwards."""

    def test_stacks_survive_a_restart(self):
        if h.os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            self.skipTest("needs a server of its own")
        data_dir = Path(tempfile.mkdtemp(prefix="lamina-it-cfn-restart-"))
        self.addCleanup(shutil.rmtree, data_dir, True)
        template = "Resources:\n  Q: {Type: 'AWS::SQS::Queue', Properties: {DelaySeconds: 1}}\nOutputs:\n  U: {Value: !Ref Q}\n"
        first = h.LaminaServer("cfn-restart-1", data_dir=data_dir).start()
        try:
            cf = cs.cfn(first)
            cf.create_stack(StackName="kept", TemplateBody=template)
            self.assertEqual(cs.wait_stack(cf, "kept")["StackStatus"], "CREATE_COMPLETE")
        finally:
            first.kill()
        second = h.LaminaServer("cfn-restart-2", data_dir=data_dir).start()
        try:
            cf = cs.cfn(second)
            stack = cs.stack_status(cf, "kept")
            self.assertEqual(stack["StackStatus"], "CREATE_COMPLETE")
            cf.update_stack(StackName="kept", TemplateBody=template.replace("DelaySeconds: 1", "DelaySeconds: 2"))
            self.assertEqual(cs.wait_stack(cf, "kept")["StackStatus"], "UPDATE_COMPLETE")
            url = cs.outputs(cs.stack_status(cf, "kept"))["U"].replace(first.url, second.url)
            sqs = h.boto3_client(second.url, "sqs")
            self.assertEqual(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["DelaySeconds"])["Attributes"]["DelaySeconds"], "2")
        finally:
            second.stop()
