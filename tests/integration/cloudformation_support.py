"""What the CloudFormation and SAM test modules share: clients, waiting for stacks, reading events, cfn-lint, and AWS's
own SAM transform (aws-sam-translator) for comparing Lamina's processed templates with."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import botocore.exceptions

import lamina_harness as h

TERMINAL = ("_COMPLETE", "_FAILED")


def cfn(server: h.LaminaServer):
    return h.boto3_client(server.url, "cloudformation")


def stack_status(client, name: str) -> dict:
    return client.describe_stacks(StackName=name)["Stacks"][0]


def wait_stack(client, name: str, timeout: float = 120) -> dict:
    """The stack once its status is no longer *_IN_PROGRESS (polls; operations answer when done, so this is quick)."""
    deadline = time.monotonic() + timeout
    while True:
        stack = stack_status(client, name)
        status = stack["StackStatus"]
        if not status.endswith("_IN_PROGRESS") or status == "REVIEW_IN_PROGRESS":
            return stack
        if time.monotonic() > deadline:
            raise AssertionError(f"stack {name} still {status} after {timeout}s")
        time.sleep(0.2)


def events(client, name: str) -> list[dict]:
    """Every event of the stack, oldest first."""
    found, token = [], None
    while True:
        kwargs = {"StackName": name, **({"NextToken": token} if token else {})}
        page = client.describe_stack_events(**kwargs)
        found.extend(page["StackEvents"])
        token = page.get("NextToken")
        if not token:
            return list(reversed(found))


def event_lines(client, name: str) -> list[tuple[str, str, str]]:
    """(logical id, status, reason) of every event, oldest first."""
    return [(e["LogicalResourceId"], e["ResourceStatus"], e.get("ResourceStatusReason", "")) for e in events(client, name)]


def physical(client, stack: str, logical_id: str) -> str:
    return client.describe_stack_resource(StackName=stack, LogicalResourceId=logical_id)["StackResourceDetail"]["PhysicalResourceId"]


def outputs(stack: dict) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def cfn_lint(test, template: str | Path) -> None:
    """cfn-lint (pip) accepts the template (exit status 0: no errors, no warnings)."""
    exe = shutil.which("cfn-lint")
    if exe is None:
        test.fail("cfn-lint is required (pip install cfn-lint); ./test.sh installs it")
    p = subprocess.run([exe, str(template)], capture_output=True, text=True, timeout=120)
    test.assertEqual(p.returncode, 0, f"cfn-lint rejected {template}:\n{p.stdout}{p.stderr}")


def sam_translate(template: dict) -> dict:
    """AWS's own SAM transform (aws-sam-translator) of a template whose code is already in S3."""
    os.environ.setdefault("AWS_DEFAULT_REGION", h.REGION)
    from samtranslator.translator.transform import transform  # type: ignore

    class ManagedPolicies:  # the translator asks IAM for these; the ones SAM templates name
        def load(self):
            return {name: f"arn:aws:iam::aws:policy/service-role/{name}" for name in (
                "AWSLambdaBasicExecutionRole", "AWSLambdaSQSQueueExecutionRole", "AWSLambdaDynamoDBExecutionRole",
                "AWSLambdaKinesisExecutionRole", "AWSLambdaRole")}

    return transform(json.loads(json.dumps(template, default=str)), {}, ManagedPolicies())


def strip_hash(logical_id: str) -> str:
    """A logical id without the 10-hex suffix SAM appends to deployments and layer versions (its own hash input)."""
    if len(logical_id) > 10 and all(c in "0123456789abcdef" for c in logical_id[-10:]):
        return logical_id[:-10]
    return logical_id


def client_error(fn) -> botocore.exceptions.ClientError:
    try:
        fn()
    except botocore.exceptions.ClientError as e:
        return e
    raise AssertionError("expected a ClientError")


def lamina_cli(*args: str, cwd: Path, server: h.LaminaServer, timeout: float = 300) -> subprocess.CompletedProcess:
    """``./lamina <args>`` run as a user would, against the test's server (LAMINA_ENDPOINT), output captured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(LAMINA_ENDPOINT=server.url, AWS_ACCESS_KEY_ID=h.ACCESS_KEY, AWS_SECRET_ACCESS_KEY=h.SECRET_KEY, AWS_DEFAULT_REGION=h.REGION,
               TERM="dumb", NO_COLOR="1")
    return subprocess.run([str(h.REPO_ROOT / "lamina"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def aws_env(server: h.LaminaServer) -> dict[str, str]:
    """The CLI's environment with AWS_ENDPOINT_URL set, which `aws cloudformation package`'s S3 client (CLI v1) honours."""
    env = server.aws_cli_env()
    env["AWS_ENDPOINT_URL"] = server.url
    return env


def run_cli(server: h.LaminaServer, *args: str, cli: str = "aws", cwd: Path | None = None, timeout: float = 180,
            env: dict[str, str] | None = None) -> h.CliResult:
    cmd = server.aws_cli_command(*args, cli=cli)
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=env or server.aws_cli_env(), cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    return h.CliResult(cmd, p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"), time.monotonic() - t0)


def poll(fn, timeout: float = 30, interval: float = 0.2, what: str = "condition") -> Any:
    """fn() once it returns something truthy; AssertionError after the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def log_messages(server: h.LaminaServer, function: str) -> str:
    logs = h.boto3_client(server.url, "logs")
    try:
        found = logs.filter_log_events(logGroupName=f"/aws/lambda/{function}")["events"]
    except botocore.exceptions.ClientError:
        return ""
    return "\n".join(e["message"] for e in found)


PYTHON = sys.executable
