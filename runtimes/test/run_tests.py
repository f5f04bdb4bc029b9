"""End-to-end tests for Lamina's Node.js and Python runtime bootstraps.

Each test writes handler files into a temporary task root, starts a
FakeRuntimeAPI, launches the bootstrap as a child process (exactly as the
server does, but from runtimes/ instead of /var/runtime) and asserts on what
the bootstrap posts back, its stdout, and its exit code.

Usage:  /usr/bin/python3 runtimes/test/run_tests.py [-v] [name-substring ...]
Prints one line per test and, last, exactly:  runtimes: N passed, M failed
Exit status is non-zero when anything failed.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fake_runtime_api import Event, FakeRuntimeAPI  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RUNTIMES = os.path.dirname(HERE)
NODE = os.environ.get("LAMINA_TEST_NODE", "/usr/bin/node")
PYTHON = os.environ.get("LAMINA_TEST_PYTHON", "/usr/bin/python3")
NODE_BOOTSTRAP = os.path.join(RUNTIMES, "nodejs", "index.mjs")
PY_BOOTSTRAP = os.path.join(RUNTIMES, "python", "bootstrap.py")

ISO_TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


class Run:
    """Result of running a bootstrap against a fake API."""

    def __init__(self, api, proc, stdout, stderr, task_root):
        self.api = api
        self.proc = proc
        self.returncode = proc.returncode
        self.stdout = stdout
        self.stderr = stderr
        self.task_root = task_root

    @property
    def posts(self):
        return self.api.posts()

    @property
    def gets(self):
        return self.api.gets()

    def post(self, i=0):
        posts = self.posts
        if len(posts) <= i:
            raise AssertionError(
                "expected at least %d POSTs, got %r\nstdout:\n%s\nstderr:\n%s"
                % (i + 1, posts, self.stdout, self.stderr)
            )
        return posts[i]

    def describe(self):
        return "records=%r\nexit=%r\nstdout:\n%s\nstderr:\n%s" % (
            self.api.records(),
            self.returncode,
            self.stdout,
            self.stderr,
        )


def run_bootstrap(
    runtime,
    files,
    handler,
    events=(),
    n_posts=None,
    env=None,
    wait_exit=False,
    timeout=8.0,
    after=None,
):
    """Run one bootstrap until it made n_posts POSTs (default: len(events)),
    or exited when wait_exit.  after(api, proc) may add events / wait more."""
    task_root = tempfile.mkdtemp(prefix="lamina-rt-test-")
    for name, content in files.items():
        path = os.path.join(task_root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(content)
    api = FakeRuntimeAPI(events).start()
    if runtime == "node":
        cmd = [NODE, NODE_BOOTSTRAP]
        exec_env = "AWS_Lambda_nodejs20.x"
    else:
        cmd = [PYTHON, "-u", PY_BOOTSTRAP]
        exec_env = "AWS_Lambda_python3.11"
    proc_env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": "UTC",
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "_HANDLER": handler,
        "LAMBDA_TASK_ROOT": task_root,
        "LAMBDA_RUNTIME_DIR": RUNTIMES,
        "AWS_LAMBDA_FUNCTION_NAME": "test-fn",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/test-fn",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/01/[$LATEST]0123456789abcdef0123456789abcdef",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EXECUTION_ENV": exec_env,
    }
    if runtime == "node":
        proc_env["NODE_PATH"] = "/opt/nodejs/node_modules:" + os.path.join(RUNTIMES, "node_modules")
    else:
        proc_env["PYTHONPATH"] = "/opt/python/lib/python3.11/site-packages:/opt/python"
    proc_env.update(env or {})
    proc = subprocess.Popen(
        cmd,
        cwd=task_root,
        env=proc_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        if n_posts is None:
            n_posts = len(events)
        if wait_exit:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        elif n_posts:
            api.wait_for(lambda a: len(a.posts()) >= n_posts, timeout, proc)
        if after is not None:
            after(api, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        stdout, stderr = proc.communicate()
        api.stop()
    run = Run(api, proc, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace"), task_root)
    shutil.rmtree(task_root, ignore_errors=True)
    return run


def check(cond, msg, run=None):
    if not cond:
        raise AssertionError(msg + ("\n" + run.describe() if run is not None else ""))


def eq(actual, expected, what, run=None):
    if actual != expected:
        raise AssertionError(
            "%s: expected %r, got %r" % (what, expected, actual)
            + ("\n" + run.describe() if run is not None else "")
        )


def expect_response(run, i, path_id=None):
    rec = run.post(i)
    check(rec.path.endswith("/response"), "POST %d should be a response: %r" % (i, rec), run)
    if path_id is not None:
        eq(rec.path, "/2018-06-01/runtime/invocation/%s/response" % path_id, "response path", run)
    return rec


def expect_error(run, i, error_type, path="invocation"):
    rec = run.post(i)
    if path == "init":
        eq(rec.path, "/2018-06-01/runtime/init/error", "init error path", run)
    else:
        check(rec.path.endswith("/error") and "/invocation/" in rec.path, "POST %d should be an invocation error: %r" % (i, rec), run)
    eq(rec.headers.get("lambda-runtime-function-error-type"), error_type, "error-type header", run)
    body = rec.json()
    eq(body.get("errorType"), error_type, "errorType", run)
    return rec, body


def assert_plain_post(run, rec):
    check("content-length" in rec.headers, "POST must carry Content-Length", run)
    check("transfer-encoding" not in rec.headers, "POST must not be chunked", run)
    eq(rec.headers.get("content-type"), "application/json", "content-type", run)


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


# ===========================================================================
# Node.js


@test
def node_commonjs_async_handler_and_context():
    ev = Event({"hello": "world"}, request_id="req-node-1",
               client_context='{"custom":{"k":"v"},"env":{"e":1},"client":{"app_title":"t"}}',
               cognito_identity='{"cognitoIdentityId":"id1","cognitoIdentityPoolId":"pool1"}')
    run = run_bootstrap("node", {
        "index.js": """
exports.handler = async (event, context) => ({
  event,
  awsRequestId: context.awsRequestId,
  functionName: context.functionName,
  functionVersion: context.functionVersion,
  memoryLimitInMB: context.memoryLimitInMB,
  invokedFunctionArn: context.invokedFunctionArn,
  logGroupName: context.logGroupName,
  logStreamName: context.logStreamName,
  remaining: context.getRemainingTimeInMillis(),
  waits: context.callbackWaitsForEmptyEventLoop,
  clientContext: context.clientContext,
  identity: context.identity,
  trace: process.env._X_AMZN_TRACE_ID,
  hasLegacy: typeof context.succeed + typeof context.fail + typeof context.done,
});
""",
    }, "index.handler", [ev])
    rec = expect_response(run, 0, "req-node-1")
    assert_plain_post(run, rec)
    r = rec.json()
    eq(r["event"], {"hello": "world"}, "event", run)
    eq(r["awsRequestId"], "req-node-1", "awsRequestId", run)
    eq(r["functionName"], "test-fn", "functionName", run)
    eq(r["functionVersion"], "$LATEST", "functionVersion", run)
    eq(r["memoryLimitInMB"], "256", "memoryLimitInMB (string, as AWS)", run)
    eq(r["invokedFunctionArn"], ev.arn, "invokedFunctionArn", run)
    eq(r["logGroupName"], "/aws/lambda/test-fn", "logGroupName", run)
    check(r["logStreamName"].startswith("2024/01/01/"), "logStreamName", run)
    check(0 < r["remaining"] <= 3000, "remaining time %r" % r["remaining"], run)
    eq(r["waits"], True, "callbackWaitsForEmptyEventLoop default", run)
    eq(r["clientContext"], {"custom": {"k": "v"}, "env": {"e": 1}, "client": {"app_title": "t"}}, "clientContext", run)
    eq(r["identity"], {"cognitoIdentityId": "id1", "cognitoIdentityPoolId": "pool1"}, "identity", run)
    eq(r["trace"], ev.trace_id, "_X_AMZN_TRACE_ID", run)
    eq(r["hasLegacy"], "functionfunctionfunction", "succeed/fail/done", run)


@test
def node_esm_mjs_handler():
    run = run_bootstrap("node", {
        "app.mjs": """
import { basename } from 'node:path';
export const handler = async (event) => ({ esm: true, file: basename(new URL(import.meta.url).pathname), v: event.v });
""",
    }, "app.handler", [Event({"v": 7})])
    eq(expect_response(run, 0).json(), {"esm": True, "file": "app.mjs", "v": 7}, "result", run)


@test
def node_type_module_js_in_subfolder():
    run = run_bootstrap("node", {
        "package.json": '{"name":"x","type":"module"}',
        "src/app.js": """
export const handler = async () => ({ esm: typeof require === 'undefined', url: import.meta.url.endsWith('/src/app.js') });
""",
    }, "src/app.handler", [Event({})])
    eq(expect_response(run, 0).json(), {"esm": True, "url": True}, "result", run)


@test
def node_cjs_and_nested_export_path():
    run = run_bootstrap("node", {
        "lib/h.cjs": "module.exports = { api: { v1: { get: async () => 'nested' } } };",
    }, "lib/h.api.v1.get", [Event({})])
    eq(expect_response(run, 0).json(), "nested", "result", run)


@test
def node_js_preferred_over_mjs():
    run = run_bootstrap("node", {
        "index.js": "exports.handler = async () => 'js';",
        "index.mjs": "export const handler = async () => 'mjs';",
    }, "index.handler", [Event({})])
    eq(expect_response(run, 0).json(), "js", "AWS order: .js before .mjs", run)


@test
def node_callback_handler_waits_for_event_loop():
    run = run_bootstrap("node", {
        "index.js": """
let flag = 'not yet';
exports.handler = (event, context, callback) => {
  setTimeout(() => { flag = 'timer ran'; }, 150);
  callback(null, { cb: event.n, ctx: typeof context.awsRequestId });
  setTimeout(() => console.log('after callback, flag is', flag), 200);
};
""",
    }, "index.handler", [Event({"n": 1})])
    rec = expect_response(run, 0)
    eq(rec.json(), {"cb": 1, "ctx": "string"}, "result", run)
    # The response is only posted once the event loop drained, i.e. after both timers.
    check("after callback, flag is timer ran" in run.stdout, "callback must wait for empty event loop", run)


@test
def node_callback_no_wait():
    run = run_bootstrap("node", {
        "index.js": """
exports.handler = (event, context, callback) => {
  context.callbackWaitsForEmptyEventLoop = false;
  setTimeout(() => {}, 5000);
  callback(null, 'quick');
};
""",
    }, "index.handler", [Event({}), Event({})], timeout=4)
    eq([r.json() for r in run.posts], ["quick", "quick"], "results", run)
    check(run.posts[1].time - run.posts[0].time < 1.0, "must not wait for the 5s timer", run)


@test
def node_sync_handler_return_value_and_undefined():
    run = run_bootstrap("node", {
        "index.js": """
exports.value = (event) => ({ sync: event.x });
exports.nothing = (event) => { };
exports.legacy = (event, context) => { setTimeout(() => context.succeed('via succeed'), 20); };
""",
    }, "index.value", [Event({"x": 2})])
    eq(expect_response(run, 0).json(), {"sync": 2}, "sync return value", run)
    run = run_bootstrap("node", {"index.js": "exports.nothing = (event) => { };"}, "index.nothing", [Event({})])
    eq(expect_response(run, 0).body, b"null", "undefined -> null", run)
    run = run_bootstrap("node", {
        "index.js": "exports.legacy = (event, context) => { setTimeout(() => context.succeed('via succeed'), 20); };"
    }, "index.legacy", [Event({})])
    eq(expect_response(run, 0).json(), "via succeed", "context.succeed", run)


@test
def node_thrown_error():
    ev = Event({}, request_id="req-err")
    run = run_bootstrap("node", {
        "index.js": """
exports.handler = async () => { const e = new TypeError('boom'); e.code = 'E_BOOM'; throw e; };
""",
    }, "index.handler", [ev])
    rec, body = expect_error(run, 0, "TypeError")
    eq(rec.path, "/2018-06-01/runtime/invocation/req-err/error", "path", run)
    assert_plain_post(run, rec)
    eq(body["errorMessage"], "boom", "errorMessage", run)
    check(isinstance(body["trace"], list) and body["trace"][0] == "TypeError: boom", "trace[0]", run)
    check(any("index.js" in l for l in body["trace"]), "trace mentions index.js", run)
    eq(body["stackTrace"], body["trace"], "stackTrace == trace", run)
    m = re.search(r"^(" + ISO_TS + r")\treq-err\tERROR\tInvoke Error \t(\{.*\})$", run.stdout, re.M)
    check(m is not None, "Invoke Error log line", run)
    logged = json.loads(m.group(2))
    eq((logged["errorType"], logged["errorMessage"], logged["code"]), ("TypeError", "boom", "E_BOOM"), "logged error", run)


@test
def node_non_error_values():
    run = run_bootstrap("node", {
        "index.js": "exports.handler = (e, c, cb) => cb('plain string failure');",
    }, "index.handler", [Event({})])
    _, body = expect_error(run, 0, "string")
    eq((body["errorMessage"], body["trace"]), ("plain string failure", []), "string error", run)
    run = run_bootstrap("node", {
        "index.js": "exports.handler = async () => { throw { some: 'object' }; };",
    }, "index.handler", [Event({})])
    _, body = expect_error(run, 0, "object")
    eq(body["errorMessage"], "[object Object]", "object error", run)


@test
def node_import_error():
    run = run_bootstrap("node", {"other.js": "exports.x = 1;"}, "missing.handler", wait_exit=True)
    rec, body = expect_error(run, 0, "Runtime.ImportModuleError", path="init")
    assert_plain_post(run, rec)
    check(body["errorMessage"].startswith("Error: Cannot find module 'missing'\nRequire stack:\n- "),
          "message like AWS: %r" % body["errorMessage"], run)
    check(body["trace"][0].startswith("Runtime.ImportModuleError: Error: Cannot find module 'missing'"), "trace", run)
    eq(run.returncode, 129, "exit code", run)
    check(re.search(r"\tundefined\tERROR\tUncaught Exception \t\{\"errorType\":\"Runtime.ImportModuleError\"", run.stdout),
          "Uncaught Exception log line with undefined request id", run)


@test
def node_module_throws_at_import():
    run = run_bootstrap("node", {
        "index.js": "throw new RangeError('bad config');",
    }, "index.handler", wait_exit=True)
    _, body = expect_error(run, 0, "RangeError", path="init")
    eq(body["errorMessage"], "bad config", "message", run)
    eq(run.returncode, 129, "exit code", run)


@test
def node_async_failure_after_module_load_is_init_error():
    run = run_bootstrap("node", {
        "index.js": "setTimeout(() => { throw new Error('background init failure'); }, 50);\nexports.handler = async () => 1;",
    }, "index.handler", wait_exit=True)
    _, body = expect_error(run, 0, "Error", path="init")
    eq(body["errorMessage"], "background init failure", "message", run)
    eq(run.returncode, 129, "exit code", run)


@test
def node_handler_not_found():
    run = run_bootstrap("node", {"index.js": "exports.other = async () => 1;"}, "index.handler", wait_exit=True)
    _, body = expect_error(run, 0, "Runtime.HandlerNotFound", path="init")
    eq(body["errorMessage"], "index.handler is undefined or not exported", "message", run)
    check(run.returncode != 0, "non-zero exit", run)
    run = run_bootstrap("node", {"index.js": "exports.handler = 42;"}, "index.handler", wait_exit=True)
    _, body = expect_error(run, 0, "Runtime.HandlerNotFound", path="init")
    eq(body["errorMessage"], "index.handler is not a function", "message", run)


@test
def node_malformed_handler_and_syntax_error():
    run = run_bootstrap("node", {"index.js": "exports.handler = async () => 1;"}, "index", wait_exit=True)
    _, body = expect_error(run, 0, "Runtime.MalformedHandlerName", path="init")
    eq(body["errorMessage"], "Bad handler", "message", run)
    run = run_bootstrap("node", {"index.js": "exports.handler = async () => {{;"}, "index.handler", wait_exit=True)
    _, body = expect_error(run, 0, "Runtime.UserCodeSyntaxError", path="init")
    check(body["errorMessage"].startswith("SyntaxError: "), "message %r" % body["errorMessage"], run)
    run = run_bootstrap("node", {"x.mjs": "export const handler = async () => {{;"}, "x.handler", wait_exit=True)
    expect_error(run, 0, "Runtime.UserCodeSyntaxError", path="init")


@test
def node_console_logging_format():
    run = run_bootstrap("node", {
        "index.js": """
console.log('init line');
exports.handler = async () => {
  console.log('hello %s', 'world', { a: 1 });
  console.info('multi\\nline');
  console.warn('careful');
  console.error('bad', new Error('e1').message);
  console.debug('dbg');
  console.trace('trc');
  return 1;
};
""",
    }, "index.handler", [Event({}, request_id="log-req")])
    expect_response(run, 0)
    lines = run.stdout.split("\n")

    def has(level, msg, rid="log-req"):
        pat = re.compile("^" + ISO_TS + "\t" + re.escape(rid) + "\t" + level + "\t" + re.escape(msg) + "$")
        check(any(pat.match(l) for l in lines), "missing log line %s %r" % (level, msg), run)

    has("INFO", "init line", rid="undefined")
    has("INFO", "hello world { a: 1 }")
    has("INFO", "multi\rline")
    has("WARN", "careful")
    has("ERROR", "bad e1")
    has("DEBUG", "dbg")
    has("TRACE", "trc")


@test
def node_log_level_and_json_format():
    run = run_bootstrap("node", {
        "index.js": """
exports.handler = async () => { console.debug('hidden'); console.info('shown'); console.error('err', new Error('x')); return 1; };
""",
    }, "index.handler", [Event({}, request_id="jr")], env={"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "INFO"})
    expect_response(run, 0)
    recs = [json.loads(l) for l in run.stdout.splitlines() if l.startswith("{")]
    eq([(r["level"], r["requestId"]) for r in recs], [("INFO", "jr"), ("ERROR", "jr")], "json records", run)
    eq(recs[0]["message"], "shown", "message", run)
    eq(recs[1]["errorMessage"], "x", "errorMessage", run)
    check("hidden" not in run.stdout, "debug filtered", run)


@test
def node_uncaught_exception_during_invoke():
    run = run_bootstrap("node", {
        "index.js": """
exports.handler = async () => { setTimeout(() => { throw new Error('late failure'); }, 10); return new Promise(() => {}); };
""",
    }, "index.handler", [Event({})], wait_exit=True)
    _, body = expect_error(run, 0, "Error")
    eq(body["errorMessage"], "late failure", "message", run)
    eq(run.returncode, 129, "exit code", run)
    check("\tERROR\tUncaught Exception \t" in run.stdout, "logged", run)


@test
def node_unhandled_rejection_during_invoke():
    run = run_bootstrap("node", {
        "index.js": """
exports.handler = async () => { Promise.reject(new Error('nobody catches')); await new Promise(r => setTimeout(r, 200)); return 'x'; };
""",
    }, "index.handler", [Event({})], wait_exit=True)
    _, body = expect_error(run, 0, "Runtime.UnhandledPromiseRejection")
    eq(body["errorMessage"], "Error: nobody catches", "message", run)
    eq(run.returncode, 128, "exit code (AWS uses 128 for rejections)", run)
    eq(len(run.posts), 1, "only one post", run)


@test
def node_never_settled_promise():
    run = run_bootstrap("node", {
        "index.js": "exports.handler = async () => new Promise(() => {});",
    }, "index.handler", [Event({}), Event({})])
    expect_error(run, 0, "Runtime.NodeJsExit")
    expect_error(run, 1, "Runtime.NodeJsExit")  # the runtime keeps serving


@test
def node_unserialisable_result_and_bad_event():
    run = run_bootstrap("node", {
        "index.js": "exports.handler = async (e) => e.big ? { n: 10n } : e;",
    }, "index.handler", [Event({"big": 1}), Event(b"{not json"), Event(b""), Event({"ok": True})])
    _, body = expect_error(run, 0, "Runtime.JSONStringifyError")
    eq(body["errorMessage"], "Unable to stringify response body", "message", run)
    expect_error(run, 1, "SyntaxError")
    eq(expect_response(run, 2).json(), {}, "empty body -> {}", run)
    eq(expect_response(run, 3).json(), {"ok": True}, "loop survives", run)


@test
def node_keep_alive_single_connection():
    events = [Event({"i": i}) for i in range(3)]
    run = run_bootstrap("node", {"index.js": "exports.handler = async (e) => e.i;"}, "index.handler", events,
                        after=lambda api, proc: api.wait_for(lambda a: len(a.gets()) >= 4, 2))
    eq([r.json() for r in run.posts], [0, 1, 2], "results", run)
    eq(len(run.gets), 4, "GETs (3 served + 1 pending)", run)
    eq({r.conn for r in run.api.records()}, {run.api.records()[0].conn}, "one TCP connection", run)
    # ordering: GET, POST, GET, POST, ...
    eq([r.method for r in run.api.records()], ["GET", "POST"] * 3 + ["GET"], "request order", run)


@test
def node_reconnects_when_connection_dropped():
    events = [Event({"i": 0}, close_after=True), Event({"i": 1}), Event({"i": 2}, close_after=True), Event({"i": 3})]
    run = run_bootstrap("node", {"index.js": "exports.handler = async (e) => { await new Promise(r => setTimeout(r, 20)); return e.i; };"},
                        "index.handler", events)
    eq([r.json() for r in run.posts], [0, 1, 2, 3], "results", run)
    eq(len({r.conn for r in run.posts}), 2, "a new connection after each drop", run)


@test
def node_exits_quietly_when_the_environment_shuts_down():
    run = run_bootstrap("node", {"index.js": "exports.handler = async (e) => e.i;"}, "index.handler",
                        [Event({"i": 1}), Event(shutting_down=True)], n_posts=1, wait_exit=True)
    eq([r.json() for r in run.posts], [1], "results", run)
    eq(run.proc.returncode, 0, "exit status", run)
    eq(run.stderr, "", "nothing written to the function's log", run)


@test
def node_streaming_response():
    run = run_bootstrap("node", {
        "index.mjs": """
export const handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  responseStream.setContentType('text/plain');
  responseStream.write('hello ');
  await new Promise(r => setTimeout(r, 10));
  responseStream.end(context.awsRequestId);
});
export const failing = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write('partial');
  throw new Error('mid-stream');
});
""",
    }, "index.handler", [Event({}, request_id="s1"), Event({}, request_id="s2")])
    for i, rid in enumerate(["s1", "s2"]):
        rec = expect_response(run, i, rid)
        eq(rec.headers.get("lambda-runtime-function-response-mode"), "streaming", "mode header", run)
        eq(rec.headers.get("content-type"), "text/plain", "content type", run)
        check(rec.chunked, "chunked", run)
        eq(rec.body, b"hello " + rid.encode(), "streamed body", run)
    run = run_bootstrap("node", {
        "index.mjs": """
export const handler = awslambda.streamifyResponse(async (event, responseStream) => {
  const s = awslambda.HttpResponseStream.from(responseStream, { statusCode: 201, headers: { 'x-a': 'b' } });
  s.write('body');
  s.end();
});
""",
    }, "index.handler", [Event({})])
    rec = expect_response(run, 0)
    eq(rec.headers.get("content-type"), "application/vnd.awslambda.http-integration-response", "prelude content type", run)
    eq(rec.body, b'{"statusCode":201,"headers":{"x-a":"b"}}' + b"\0" * 8 + b"body", "prelude + body", run)
    run = run_bootstrap("node", {
        "index.mjs": """
export const failing = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write('partial');
  throw new Error('mid-stream');
});
""",
    }, "index.failing", [Event({}), Event({})])
    rec = expect_response(run, 0)
    eq(rec.body, b"partial", "partial body", run)
    eq(rec.trailers.get("lambda-runtime-function-error-type"), "Error", "trailer type", run)
    err = json.loads(base64.b64decode(rec.trailers["lambda-runtime-function-error-body"]))
    eq(err["errorMessage"], "mid-stream", "trailer body", run)
    expect_response(run, 1)


# A warm environment's trace variable: each invocation's, in process.env and a child's environment, and the memory it
# takes does not grow with invocations: setenv kept every trace header given to it, for good (1.7–2.1 MB over the 1,500
# invocations measured, with these headers).
TRACE_EVENTS = 3000


def trace_header(i):
    # Long (a trace header may carry fields of the caller's), so that each kept copy is seen over the heap's own noise.
    return "Root=1-%08x-%024x;Parent=%016x;Sampled=1;Caller=%s" % (i, i, i, "x" * 1000)


def trace_events(measure_at):
    events = [Event({"child": True}, trace_id="Root=1-00000000-000000000000000000000001;Sampled=0"),
              Event({"child": True}, trace_id="Root=1-00000000-000000000000000000000002;Sampled=0"),
              Event({"child": True}, trace_id=None)]
    for i in range(TRACE_EVENTS):
        events.append(Event({"measure": i in measure_at}, trace_id=trace_header(i)))
    return events


def check_trace_variable(run, heap_growth_limit):
    results = [r.json() for r in run.posts]
    eq(len(results), TRACE_EVENTS + 3, "responses", run)
    for i, expected in enumerate(["Root=1-00000000-000000000000000000000001;Sampled=0",
                                  "Root=1-00000000-000000000000000000000002;Sampled=0", None]):
        eq(results[i]["env"], expected, "_X_AMZN_TRACE_ID of invocation %d" % i, run)
        eq(results[i]["listed"], expected is not None, "_X_AMZN_TRACE_ID among the variables, invocation %d" % i, run)
        eq(results[i]["child"], expected or "", "a child process's _X_AMZN_TRACE_ID, invocation %d" % i, run)
    eq(results[-1]["env"], trace_header(TRACE_EVENTS - 1), "the last trace", run)
    heaps = [r["heap"] for r in results if r.get("heap") is not None]
    eq(len(heaps), 2, "heap measured twice", run)
    check(heaps[1] - heaps[0] < heap_growth_limit,
          "the runtime's heap grew by %d bytes over %d invocations (limit %d)"
          % (heaps[1] - heaps[0], TRACE_EVENTS - 1500, heap_growth_limit), run)


@test
def node_trace_variable_per_invocation_without_growth():
    # The C heap (brk area) holds what setenv allocated; V8's own heap is mapped elsewhere.
    run = run_bootstrap("node", {"index.js": """
const fs = require('fs');
const cp = require('child_process');
function heap() {
  const smaps = fs.readFileSync('/proc/self/smaps', 'latin1');
  const at = smaps.indexOf('[heap]');
  if (at < 0) return 0;
  return Number(/Rss:\\s+(\\d+) kB/.exec(smaps.slice(at))[1]) * 1024;
}
exports.handler = async (event) => ({
  env: process.env._X_AMZN_TRACE_ID ?? null,
  listed: Object.keys(process.env).includes('_X_AMZN_TRACE_ID') && '_X_AMZN_TRACE_ID' in process.env,
  child: event.child ? cp.execFileSync('/bin/sh', ['-c', 'printf %s "$_X_AMZN_TRACE_ID"']).toString() : undefined,
  heap: event.measure ? heap() : null,
});
"""}, "index.handler", trace_events({1500, TRACE_EVENTS - 1}), timeout=60,
        # V8's young generation stays at 1 MB: as it grows (to 16 MB by default) more of each invocation's garbage,
        # the headers' strings among it, lives in the C heap between collections, which that heap's size would show.
        env={"NODE_OPTIONS": "--max-semi-space-size=1"})
    check_trace_variable(run, 512 * 1024)


# ===========================================================================
# Python


PY_APP = '''
import logging
import time

logger = logging.getLogger()
logger.setLevel(logging.INFO)
logger.info("init info")

def handler(event, context):
    r1 = context.get_remaining_time_in_millis()
    time.sleep(0.03)
    r2 = context.get_remaining_time_in_millis()
    logger.info("in handler %s", event.get("n"))
    print("printed line")
    import os
    return {
        "event": event,
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "r1": r1, "r2": r2,
        "client_context": None if context.client_context is None else {
            "custom": context.client_context.custom,
            "app_title": context.client_context.client.app_title,
        },
        "identity": [context.identity.cognito_identity_id, context.identity.cognito_identity_pool_id],
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
        "sys_path": __import__("sys").path,
        "repr": repr(context)[:14],
    }
'''


@test
def python_success_and_context():
    ev1 = Event({"n": 1}, request_id="py-1",
                client_context='{"custom":{"k":"v"},"client":{"app_title":"t"}}',
                cognito_identity='{"cognitoIdentityId":"id1","cognitoIdentityPoolId":"pool1"}')
    ev2 = Event({"n": 2}, request_id="py-2", trace_id=None)
    run = run_bootstrap("python", {"app.py": PY_APP}, "app.handler", [ev1, ev2])
    rec = expect_response(run, 0, "py-1")
    assert_plain_post(run, rec)
    r = rec.json()
    eq(r["event"], {"n": 1}, "event", run)
    eq(r["aws_request_id"], "py-1", "aws_request_id", run)
    eq(r["function_name"], "test-fn", "function_name", run)
    eq(r["function_version"], "$LATEST", "function_version", run)
    eq(r["invoked_function_arn"], ev1.arn, "invoked_function_arn", run)
    eq(r["memory_limit_in_mb"], "256", "memory_limit_in_mb (str, as AWS)", run)
    eq(r["log_group_name"], "/aws/lambda/test-fn", "log_group_name", run)
    check(r["log_stream_name"].startswith("2024/01/01/"), "log_stream_name", run)
    check(0 < r["r2"] < r["r1"] <= 3000, "remaining time positive & decreasing: %r %r" % (r["r1"], r["r2"]), run)
    check(r["r1"] - r["r2"] >= 25, "remaining time decreased by the sleep", run)
    eq(r["client_context"], {"custom": {"k": "v"}, "app_title": "t"}, "client_context", run)
    eq(r["identity"], ["id1", "pool1"], "identity", run)
    eq(r["trace"], ev1.trace_id, "_X_AMZN_TRACE_ID", run)
    eq(r["sys_path"][0], run.task_root, "sys.path[0] is the task root", run)
    check(not any(p.rstrip("/").endswith("runtimes/python") for p in r["sys_path"]),
          "runtime folder not on sys.path: %r" % r["sys_path"], run)
    eq(r["repr"], "LambdaContext(", "context repr", run)
    r2 = expect_response(run, 1, "py-2").json()
    eq(r2["client_context"], None, "no client context", run)
    eq(r2["identity"], [None, None], "empty identity", run)
    eq(r2["trace"], None, "_X_AMZN_TRACE_ID removed", run)
    lines = run.stdout.split("\n")
    check(re.search(r"^\[INFO\]\t" + ISO_TS + r"\t\tinit info$", run.stdout, re.M), "init log line", run)
    check(re.search(r"^\[INFO\]\t" + ISO_TS + r"\tpy-1\tin handler 1$", run.stdout, re.M), "invoke log line", run)
    check("printed line" in lines, "print is raw", run)


@test
def python_trace_variable_per_invocation_without_growth():
    run = run_bootstrap("python", {"app.py": """
import ctypes
import os
import subprocess


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2


def handler(event, context):
    return {
        "env": os.environ.get("_X_AMZN_TRACE_ID"),
        "listed": "_X_AMZN_TRACE_ID" in dict(os.environ),
        "child": subprocess.run(["/bin/sh", "-c", 'printf %s "$_X_AMZN_TRACE_ID"'], capture_output=True,
                                text=True).stdout if event.get("child") else None,
        "heap": libc.mallinfo2().uordblks if event.get("measure") else None,  # bytes malloc has handed out
    }
"""}, "app.handler", trace_events({1500, TRACE_EVENTS - 1}), timeout=60)
    check_trace_variable(run, 512 * 1024)


@test
def python_keep_alive_single_connection():
    run = run_bootstrap("python", {"app.py": "def handler(e, c):\n    return e['i']\n"}, "app.handler",
                        [Event({"i": 0}), Event({"i": 1})],
                        after=lambda api, proc: api.wait_for(lambda a: len(a.gets()) >= 3, 2))
    eq([r.json() for r in run.posts], [0, 1], "results", run)
    eq([r.method for r in run.api.records()], ["GET", "POST", "GET", "POST", "GET"], "request order", run)
    eq(len({r.conn for r in run.api.records()}), 1, "one TCP connection", run)


@test
def python_reconnects_when_connection_dropped():
    events = [Event({"i": 0}, close_after=True), Event({"i": 1}), Event({"i": 2}, close_after=True), Event({"i": 3})]
    run = run_bootstrap("python", {"app.py": "import time\ndef handler(e, c):\n    time.sleep(0.02)\n    return e['i']\n"},
                        "app.handler", events)
    eq([r.json() for r in run.posts], [0, 1, 2, 3], "results", run)
    eq(len({r.conn for r in run.posts}), 2, "a new connection after each drop", run)
    eq(run.stderr, "", "no diagnostics (transparent reconnect)", run)


@test
def python_exits_quietly_when_the_environment_shuts_down():
    run = run_bootstrap("python", {"app.py": "def handler(e, c):\n    return e['i']\n"}, "app.handler",
                        [Event({"i": 1}), Event(shutting_down=True)], n_posts=1, wait_exit=True)
    eq([r.json() for r in run.posts], [1], "results", run)
    eq(run.proc.returncode, 0, "exit status", run)
    eq(run.stderr, "", "nothing written to the function's log", run)


@test
def python_exception():
    src = 'def handler(event, context):\n    helper()\n\ndef helper():\n    raise ValueError("boom")\n'
    run = run_bootstrap("python", {"app.py": src}, "app.handler", [Event({}, request_id="py-err")])
    rec, body = expect_error(run, 0, "ValueError")
    eq(rec.path, "/2018-06-01/runtime/invocation/py-err/error", "path", run)
    assert_plain_post(run, rec)
    eq(body["errorMessage"], "boom", "errorMessage", run)
    eq(body["requestId"], "py-err", "requestId", run)
    eq(list(body.keys()), ["errorMessage", "errorType", "requestId", "stackTrace"], "key order", run)
    eq(body["stackTrace"], [
        '  File "%s/app.py", line 2, in handler\n    helper()\n' % run.task_root,
        '  File "%s/app.py", line 5, in helper\n    raise ValueError("boom")\n' % run.task_root,
    ], "stackTrace (runtime frames stripped)", run)
    expected_log = ("[ERROR] ValueError: boom\rTraceback (most recent call last):\r"
                    "\u00a0\u00a0File \"%s/app.py\", line 2, in handler\r\u00a0\u00a0\u00a0\u00a0helper()\r" % run.task_root)
    check(expected_log in run.stdout, "AWS-style error log line", run)


@test
def python_import_error():
    run = run_bootstrap("python", {"other.py": "x = 1\n"}, "nomod.handler", wait_exit=True)
    rec, body = expect_error(run, 0, "Runtime.ImportModuleError", path="init")
    assert_plain_post(run, rec)
    eq(body["errorMessage"], "Unable to import module 'nomod': No module named 'nomod'", "message", run)
    eq(body["stackTrace"], [], "stackTrace", run)
    eq(body["requestId"], "", "requestId", run)
    eq(run.returncode, 1, "exit code", run)
    check("[ERROR] Runtime.ImportModuleError: Unable to import module 'nomod'" in run.stdout, "logged", run)
    # dependency missing inside the user module
    run = run_bootstrap("python", {"app.py": "import not_installed_pkg\ndef handler(e, c): pass\n"}, "app.handler", wait_exit=True)
    _, body = expect_error(run, 0, "Runtime.ImportModuleError", path="init")
    eq(body["errorMessage"], "Unable to import module 'app': No module named 'not_installed_pkg'", "message", run)


@test
def python_missing_handler_and_malformed():
    run = run_bootstrap("python", {"app.py": "def other(e, c): pass\n"}, "app.handler", wait_exit=True)
    _, body = expect_error(run, 0, "Runtime.HandlerNotFound", path="init")
    eq(body["errorMessage"], "Handler 'handler' missing on module 'app'", "message", run)
    check(run.returncode != 0, "non-zero exit", run)
    run = run_bootstrap("python", {"app.py": "def other(e, c): pass\n"}, "app", wait_exit=True)
    _, body = expect_error(run, 0, "Runtime.MalformedHandlerName", path="init")
    eq(body["errorMessage"], "Bad handler 'app': not enough values to unpack (expected 2, got 1)", "message", run)
    run = run_bootstrap("python", {"app.py": "def handler(e, c):\n  return (\n"}, "app.handler", wait_exit=True)
    _, body = expect_error(run, 0, "Runtime.UserCodeSyntaxError", path="init")
    check(body["errorMessage"].startswith("Syntax error in module 'app': "), "message", run)
    check(body["stackTrace"][0].startswith('  File "%s/app.py" Line ' % run.task_root), "trace", run)
    run = run_bootstrap("python", {"app.py": "raise RuntimeError('init failed')\n"}, "app.handler", wait_exit=True)
    _, body = expect_error(run, 0, "RuntimeError", path="init")
    eq(body["errorMessage"], "init failed", "message", run)
    check(any("app.py" in f for f in body["stackTrace"]), "trace", run)


@test
def python_module_forms():
    files = {
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "",
        "pkg/sub/mod.py": "def fn(e, c):\n    return __name__\n",
        "dir/plain.py": "def fn(e, c):\n    return __name__\n",
    }
    run = run_bootstrap("python", files, "pkg.sub.mod.fn", [Event({})])
    eq(expect_response(run, 0).json(), "pkg.sub.mod", "dotted", run)
    run = run_bootstrap("python", files, "pkg/sub/mod.fn", [Event({})])
    eq(expect_response(run, 0).json(), "pkg.sub.mod", "slash", run)
    run = run_bootstrap("python", files, "dir/plain.fn", [Event({})])
    eq(expect_response(run, 0).json(), "dir.plain", "slash into namespace package", run)


@test
def python_results_and_bad_events():
    src = """
import decimal, datetime
def handler(e, c):
    k = e.get("kind")
    if k == "dec": return {"a": decimal.Decimal("1.5"), "b": decimal.Decimal("3")}
    if k == "bytes": return b"raw-bytes"
    if k == "none": return None
    if k == "bad": return {"t": datetime.datetime(2020, 1, 1)}
    return e
"""
    events = [Event({"kind": "dec"}), Event({"kind": "bytes"}), Event({"kind": "none"}),
              Event({"kind": "bad"}), Event(b"{oops"), Event(b""), Event({"kind": "echo", "u": "\u00e9"})]
    run = run_bootstrap("python", {"app.py": src}, "app.handler", events)
    eq(expect_response(run, 0).json(), {"a": 1.5, "b": 3}, "Decimal", run)
    rec = expect_response(run, 1)
    eq((rec.body, rec.headers.get("content-type")), (b"raw-bytes", "application/unknown"), "bytes", run)
    eq(expect_response(run, 2).body, b"null", "None -> null", run)
    _, body = expect_error(run, 3, "Runtime.MarshalError")
    eq(body["errorMessage"], "Unable to marshal response: Object of type datetime is not JSON serializable", "message", run)
    _, body = expect_error(run, 4, "Runtime.UnmarshalError")
    check(body["errorMessage"].startswith("Unable to unmarshal input: "), "message", run)
    eq(expect_response(run, 5).json(), {}, "empty body -> {}", run)
    eq(expect_response(run, 6).json(), {"kind": "echo", "u": "\u00e9"}, "unicode", run)


@test
def python_sys_exit_in_handler():
    run = run_bootstrap("python", {"app.py": "import sys\ndef handler(e, c):\n    sys.exit(3)\n"}, "app.handler",
                        [Event({}, request_id="ex1")], wait_exit=True)
    _, body = expect_error(run, 0, "Runtime.ExitError")
    eq(body["errorMessage"], "RequestId: ex1 Error: Runtime exited with error: exit status 3", "message", run)
    eq(run.returncode, 3, "exit code", run)


@test
def python_log_level_env_and_json():
    src = """
import logging
log = logging.getLogger("mine")
def handler(e, c):
    log.debug("dbg")
    try:
        1/0
    except ZeroDivisionError:
        log.exception("caught")
    return 1
"""
    run = run_bootstrap("python", {"app.py": src}, "app.handler", [Event({}, request_id="lv")],
                        env={"AWS_LAMBDA_LOG_LEVEL": "DEBUG"})
    expect_response(run, 0)
    check(re.search(r"^\[DEBUG\]\t" + ISO_TS + r"\tlv\tdbg$", run.stdout, re.M), "debug line", run)
    check(re.search(r"^\[ERROR\]\t" + ISO_TS + r"\tlv\tcaught\rTraceback \(most recent call last\):\r.*ZeroDivisionError: division by zero$",
                    run.stdout, re.M), "exception record is one line", run)
    run = run_bootstrap("python", {"app.py": src}, "app.handler", [Event({}, request_id="js")],
                        env={"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "INFO"})
    expect_response(run, 0)
    recs = [json.loads(l) for l in run.stdout.splitlines() if l.startswith("{")]
    eq(len(recs), 1, "only the ERROR record (debug filtered)", run)
    eq((recs[0]["level"], recs[0]["message"], recs[0]["requestId"], recs[0]["errorType"], recs[0]["logger"]),
       ("ERROR", "caught", "js", "ZeroDivisionError", "mine"), "json record", run)


@test
def python_default_log_level_is_warning():
    src = "import logging\nlogging.getLogger().info('quiet')\nlogging.getLogger().warning('loud')\ndef handler(e, c):\n    return 1\n"
    run = run_bootstrap("python", {"app.py": src}, "app.handler", [Event({})])
    expect_response(run, 0)
    check("quiet" not in run.stdout, "INFO suppressed by default", run)
    check(re.search(r"^\[WARNING\]\t" + ISO_TS + r"\t\tloud$", run.stdout, re.M), "warning shown", run)


# ===========================================================================


def main(argv):
    verbose = "-v" in argv
    filters = [a for a in argv if not a.startswith("-")]
    tests = [t for t in TESTS if not filters or any(f in t.__name__ for f in filters)]
    for exe in (NODE, PYTHON):
        if not os.path.exists(exe):
            print("missing interpreter: %s" % exe)
    start = time.time()
    results = {}

    def run_one(t):
        t0 = time.time()
        try:
            t()
            return t.__name__, None, time.time() - t0
        except Exception:
            return t.__name__, traceback.format_exc(), time.time() - t0

    with ThreadPoolExecutor(max_workers=min(8, max(1, len(tests)))) as pool:
        for name, err, dt in pool.map(run_one, tests):
            results[name] = err
            if err is None:
                print("ok    %-50s %.2fs" % (name, dt))
            else:
                print("FAIL  %-50s %.2fs" % (name, dt))
                print("      " + err.replace("\n", "\n      "))
    passed = sum(1 for e in results.values() if e is None)
    failed = len(results) - passed
    if verbose:
        print("total time %.2fs" % (time.time() - start))
    print("runtimes: %d passed, %d failed" % (passed, failed))
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
