"""Function sources used by the integration tests (built into zips in memory)."""
from __future__ import annotations

from lamina_harness import js_sdk_zip, make_zip

# A Python "probe" handler: event["op"] selects what to do; the default echoes the event and
# reports what the context looked like. COUNT/PID show whether the environment was reused.
PY_PROBE = r'''
import errno
import json
import os
import socket
import sys
import time

COUNT = 0
VERSION = "__VERSION__"


def _context(context):
    return {
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_limit_in_mb": str(context.memory_limit_in_mb),
        "invoked_function_arn": context.invoked_function_arn,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "log_group_name": getattr(context, "log_group_name", None),
        "log_stream_name": getattr(context, "log_stream_name", None),
    }


def _oserror(e):
    return {"ok": False, "errno": e.errno, "errname": errno.errorcode.get(e.errno, str(e.errno)),
            "error": str(e)}


def handler(event, context):
    global COUNT
    COUNT += 1
    event = event if isinstance(event, dict) else {"value": event}
    op = event.get("op", "echo")
    print("probe-log-line op=%s request=%s" % (op, context.aws_request_id))
    sys.stdout.flush()
    if op == "sleep":
        time.sleep(float(event.get("seconds", 0)))
    elif op == "raise":
        raise ValueError(event.get("message", "boom"))
    elif op == "exit":
        sys.stdout.flush()
        os._exit(int(event.get("code", 3)))
    elif op == "env":
        return {"env": dict(os.environ), "count": COUNT}
    elif op == "write":
        try:
            with open(event["path"], event.get("mode", "w")) as f:
                f.write(event.get("data", "x"))
            with open(event["path"]) as f:
                return {"ok": True, "read_back": f.read()}
        except OSError as e:
            return _oserror(e)
    elif op == "listdir":
        try:
            return {"ok": True, "entries": sorted(os.listdir(event["path"]))}
        except OSError as e:
            return _oserror(e)
    elif op == "read":
        try:
            with open(event["path"], "rb") as f:
                return {"ok": True, "size": len(f.read())}
        except OSError as e:
            return _oserror(e)
    elif op == "cat":
        try:
            with open(event["path"], "rb") as f:
                return {"ok": True, "data": f.read(65536).decode("utf-8", "replace")}
        except OSError as e:
            return _oserror(e)
    elif op == "interfaces":
        return {"interfaces": sorted(name for _, name in socket.if_nameindex())}
    elif op == "connect":
        try:
            s = socket.create_connection((event["host"], int(event["port"])), timeout=2)
            s.close()
            return {"connected": True}
        except OSError as e:
            return {"connected": False, "error": "%s: %s" % (type(e).__name__, e)}
    elif op == "noop":
        return {"ok": True, "event_keys": sorted(event)}
    elif op == "big":
        return {"big": "x" * int(event["size"])}
    return {"op": op, "event": event, "count": COUNT, "pid": os.getpid(), "version": VERSION,
            "context": _context(context)}
'''


def py_probe_zip(version: str = "v1", filename: str = "app.py") -> bytes:
    return make_zip({filename: PY_PROBE.replace("__VERSION__", version)})


PY_RAISE = '''
def handler(event, context):
    raise ValueError("boom")
'''

PY_IMPORT_ERROR = '''
import nonexistent_module_lamina_xyz

def handler(event, context):
    return "unreachable"
'''

PY_NO_HANDLER = '''
def something_else(event, context):
    return "not the handler"
'''

# ---- Node.js -------------------------------------------------------------------------------

_NODE_BODY = r'''
let count = 0;
const handlerImpl = async (event, context) => {
  count += 1;
  event = (event && typeof event === "object") ? event : { value: event };
  const op = event.op || "echo";
  console.log(`probe-log-line op=${op} request=${context.awsRequestId}`);
  if (op === "raise") throw new Error(event.message || "boom");
  if (op === "exit") process.exit(event.code ?? 3);
  if (op === "env") return { env: { ...process.env }, count };
  return {
    op, event, count, pid: process.pid, flavor: "__FLAVOR__",
    context: {
      request_id: context.awsRequestId,
      function_name: context.functionName,
      function_version: context.functionVersion,
      memory_limit_in_mb: String(context.memoryLimitInMB),
      invoked_function_arn: context.invokedFunctionArn,
      remaining_ms: context.getRemainingTimeInMillis(),
    },
  };
};
'''

NODE_CJS = _NODE_BODY.replace("__FLAVOR__", "cjs") + "exports.handler = handlerImpl;\n"
NODE_ESM = _NODE_BODY.replace("__FLAVOR__", "esm") + "export const handler = handlerImpl;\n"

NODE_CALLBACK = r'''
let count = 0;
exports.handler = function (event, context, callback) {
  count += 1;
  console.log(`probe-log-line callback request=${context.awsRequestId}`);
  setTimeout(() => callback(null, {
    flavor: "callback", event, count,
    context: { request_id: context.awsRequestId, function_name: context.functionName },
  }), 5);
};
'''

NODE_THROW = '''
exports.handler = async () => { throw new Error("boom"); };
'''

NODE_IMPORT_ERROR = '''
const missing = require("nonexistent-module-lamina-xyz");
exports.handler = async () => missing;
'''

NODE_NO_HANDLER = '''
exports.somethingElse = async () => "not the handler";
'''


def node_cjs_zip() -> bytes:
    return make_zip({"index.js": NODE_CJS})


def node_esm_mjs_zip() -> bytes:
    return make_zip({"index.mjs": NODE_ESM})


def node_type_module_zip() -> bytes:
    return make_zip({"package.json": '{"name":"probe","version":"1.0.0","type":"module"}\n',
                     "index.js": NODE_ESM.replace('flavor: "esm"', 'flavor: "type-module"')})


# ---- provided.* ----------------------------------------------------------------------------

# The classic AWS custom-runtime tutorial bootstrap, in bash + curl.
BASH_BOOTSTRAP = r'''#!/bin/bash
set -euo pipefail
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  EVENT_DATA=$(curl -sS -D "$HEADERS" "$API/invocation/next")
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$HEADERS"
  echo "bootstrap handling $REQUEST_ID"
  RESPONSE="{\"echo\":$EVENT_DATA,\"request_id\":\"$REQUEST_ID\",\"handler\":\"${_HANDLER:-}\"}"
  curl -sS -X POST "$API/invocation/$REQUEST_ID/response" --data-binary "$RESPONSE" -o /dev/null
done
'''


def bash_bootstrap_zip() -> bytes:
    return make_zip({"bootstrap": BASH_BOOTSTRAP}, executables=["bootstrap"])


# A function that calls Lamina with the SDK and probes what else it can reach. `fetch` sends unsigned requests.
SDK_CALLER = r"""
import { LambdaClient, InvokeCommand, ListFunctionsCommand } from "@aws-sdk/client-lambda";

const env = process.env;

async function raw(path) {
  const response = await fetch(env.AWS_ENDPOINT_URL + path);
  return { status: response.status, type: response.headers.get("x-amzn-errortype"), body: await response.text() };
}

async function attempt(client) {
  try {
    await client.send(new ListFunctionsCommand({}));
    return "accepted";
  } catch (e) {
    return e.name;
  }
}

export const handler = async (event) => {
  const out = {
    endpoint: env.AWS_ENDPOINT_URL,
    keyId: env.AWS_ACCESS_KEY_ID,
    hasSecret: Boolean(env.AWS_SECRET_ACCESS_KEY),
    hasToken: Boolean(env.AWS_SESSION_TOKEN),
  };
  const sdk = new LambdaClient({ maxAttempts: 1 });
  try {
    if (event.invoke) {
      const result = await sdk.send(new InvokeCommand({ FunctionName: event.invoke, Payload: JSON.stringify({ via: "sdk" }) }));
      out.invoked = JSON.parse(new TextDecoder().decode(result.Payload));
    }
    out.listed = (await sdk.send(new ListFunctionsCommand({}))).Functions.map((f) => f.FunctionName);
  } catch (e) {
    out.sdkError = `${e.name}: ${e.message}`;
  }
  if (event.probes) {
    out.unsigned = await raw("/2015-03-31/functions/");
    out.wrongSecret = await attempt(new LambdaClient({ maxAttempts: 1, credentials: {
      accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: "x" + env.AWS_SECRET_ACCESS_KEY.slice(1), sessionToken: env.AWS_SESSION_TOKEN } }));
    out.noToken = await attempt(new LambdaClient({ maxAttempts: 1, credentials: {
      accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY } }));
    out.unknownKey = await attempt(new LambdaClient({ maxAttempts: 1, credentials: {
      accessKeyId: "ASIAAAAAAAAAAAAAAAAA", secretAccessKey: env.AWS_SECRET_ACCESS_KEY, sessionToken: env.AWS_SESSION_TOKEN } }));
    out.operator = await raw("/lamina/v1/environments");
    out.metrics = await raw("/metrics");
  }
  if (event.reveal) {
    out.credentials = { id: env.AWS_ACCESS_KEY_ID, secret: env.AWS_SECRET_ACCESS_KEY, token: env.AWS_SESSION_TOKEN };
  }
  return out;
};
"""


def sdk_caller_zip() -> bytes:
    """SDK_CALLER with the AWS SDK for JavaScript v3 (Node.js, handler index.handler)."""
    return js_sdk_zip(SDK_CALLER)
