"""Response streaming (issue #24): InvokeWithResponseStream read by boto3 and the AWS SDK for JavaScript v3, function
URLs in RESPONSE_STREAM mode read by http.client and curl, and the Runtime API's streamed responses written by the
Node.js runtime's awslambda.streamifyResponse / awslambda.HttpResponseStream.from. The streaming function writes,
sleeps, writes: every client must see the first bytes well before the function ends."""
from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import subprocess
import time
import urllib.parse

import lamina_harness as h
from lamina_functions import py_probe_zip

MODULE = __name__

# Options come from the Invoke payload or, on a function URL, from the query string.
NODE_STREAMING = r"""
export const handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  const o = event.queryStringParameters ? Object.fromEntries(Object.entries(event.queryStringParameters).map(([k, v]) => [k, /^\d+$/.test(v) ? Number(v) : v])) : event;
  if (o.http) {
    responseStream = awslambda.HttpResponseStream.from(responseStream, {
      statusCode: 201, headers: { 'Content-Type': 'text/plain', 'X-Streamed': 'yes' }, cookies: ['flavour=chunky'] });
  } else {
    responseStream.setContentType('text/plain');
  }
  if (o.big) {
    const piece = Buffer.alloc(1024 * 1024, 120);
    for (let i = 0; i < o.big; i++) {
      if (!responseStream.write(piece)) await new Promise((r) => responseStream.once('drain', r));
    }
    responseStream.end();
    return;
  }
  responseStream.write('first|');
  await new Promise((r) => setTimeout(r, o.sleepMs ?? 2000));
  if (o.fail) throw new Error('boom mid-stream');
  responseStream.write('second');
  responseStream.end();
});
"""

# Runs on the host: the JS SDK's InvokeWithResponseStreamCommand, timing each event from the send.
JS_CLIENT = r"""
const { LambdaClient, InvokeWithResponseStreamCommand } = require('@aws-sdk/client-lambda');
(async () => {
  const [endpoint, name, payload] = process.argv.slice(2);
  const client = new LambdaClient({ endpoint, region: 'us-east-1',
    credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' } });
  const started = Date.now();
  const out = { events: [] };
  try {
    const res = await client.send(new InvokeWithResponseStreamCommand({ FunctionName: name, Payload: Buffer.from(payload), LogType: 'Tail' }));
    out.status = res.StatusCode; out.version = res.ExecutedVersion;
    for await (const event of res.EventStream) {
      const at = Date.now() - started;
      if (event.PayloadChunk) out.events.push({ at, chunk: Buffer.from(event.PayloadChunk.Payload).toString() });
      if (event.InvokeComplete) out.events.push({ at, complete: event.InvokeComplete });
    }
  } catch (e) {
    out.error = { name: e.name, status: e.$metadata && e.$metadata.httpStatusCode, message: e.message };
  }
  console.log(JSON.stringify(out));
})();
"""


def setUpModule():
    h.start_module_server(MODULE)


def tearDownModule():
    h.stop_module_server(MODULE)


def _node_streaming_zip() -> bytes:
    return h.make_zip({"index.mjs": NODE_STREAMING})


class StreamingTests(h.LaminaTestCase):

    def _streaming_function(self, **kwargs) -> str:
        name = self.fn_name()
        self.create_function(_node_streaming_zip(), name=name, runtime="nodejs22.x", handler="index.handler", **kwargs)
        return name

    def _warm(self, name: str) -> None:
        """One quick streamed invocation, so that the timed one measures streaming, not a cold start."""
        events = self._stream(name, {"sleepMs": 0})
        self.assertEqual(b"".join(e[1] for e in events if e[0] == "chunk"), b"first|second")

    def _stream(self, name: str, event: dict, **kwargs) -> list[tuple]:
        """Invokes with boto3's invoke_with_response_stream: [(kind, value, seconds since the call)]."""
        started = time.monotonic()
        resp = self.lam.invoke_with_response_stream(FunctionName=name, Payload=json.dumps(event).encode(), **kwargs)
        self.assertEqual(resp["StatusCode"], 200)
        self.assertEqual(resp["ExecutedVersion"], "$LATEST")
        self.assertEqual(resp["ResponseStreamContentType"], "application/vnd.amazon.eventstream")
        events = []
        for event in resp["EventStream"]:
            at = time.monotonic() - started
            if "PayloadChunk" in event:
                events.append(("chunk", event["PayloadChunk"]["Payload"], at))
            elif "InvokeComplete" in event:
                events.append(("complete", event["InvokeComplete"], at))
        self.assertEqual(events[-1][0], "complete", events)
        self.assertEqual([e[0] for e in events].count("complete"), 1, events)
        return events

    def test_boto3_sees_the_first_chunk_before_the_function_ends(self):
        name = self._streaming_function()
        self._warm(name)
        events = self._stream(name, {"sleepMs": 2000})
        chunks = [e for e in events if e[0] == "chunk"]
        self.assertEqual(b"".join(c[1] for c in chunks), b"first|second")
        self.assertEqual(chunks[0][1], b"first|")
        self.assertLess(chunks[0][2], 1.0, events)
        self.assertGreaterEqual(events[-1][2], 1.9, events)
        self.assertEqual(events[-1][1], {}, events)  # no error, no log asked for

    def test_js_sdk_sees_the_first_chunk_before_the_function_ends(self):
        name = self._streaming_function()
        self._warm(name)
        modules = h.js_sdk_modules()
        script = os.path.join(self.server.data_dir, "stream-client.cjs")
        with open(script, "w") as f:
            f.write(JS_CLIENT)
        done = subprocess.run(["node", script, self.server.url, name, json.dumps({"sleepMs": 2000})], capture_output=True, text=True,
                              timeout=60, env={**os.environ, "NODE_PATH": str(modules)})
        self.assertEqual(done.returncode, 0, done.stderr)
        out = json.loads(done.stdout.strip().splitlines()[-1])
        self.assertNotIn("error", out, out)
        self.assertEqual((out["status"], out["version"]), (200, "$LATEST"))
        chunks = [e for e in out["events"] if "chunk" in e]
        self.assertEqual("".join(c["chunk"] for c in chunks), "first|second", out)
        self.assertLess(chunks[0]["at"], 1000, out)
        complete = out["events"][-1]
        self.assertGreaterEqual(complete["at"], 1900, out)
        self.assertNotIn("ErrorCode", complete["complete"], out)
        self.assertIn("REPORT RequestId:", base64.b64decode(complete["complete"]["LogResult"]).decode(), out)

        # The same client on an unknown function: the API's own 404, parsed as such.
        done = subprocess.run(["node", script, self.server.url, "no-such-function-" + name[-6:], "{}"], capture_output=True, text=True,
                              timeout=60, env={**os.environ, "NODE_PATH": str(modules)})
        out = json.loads(done.stdout.strip().splitlines()[-1])
        self.assertEqual((out["error"]["name"], out["error"]["status"]), ("ResourceNotFoundException", 404), out)

    def test_mid_stream_error_shows_in_invoke_complete(self):
        name = self._streaming_function()
        events = self._stream(name, {"sleepMs": 100, "fail": True}, LogType="Tail")
        self.assertEqual([e[1] for e in events if e[0] == "chunk"], [b"first|"])
        complete = events[-1][1]
        self.assertEqual(complete["ErrorCode"], "Error", complete)
        self.assertEqual(complete["ErrorDetails"], "boom mid-stream", complete)
        self.assertIn("boom mid-stream", base64.b64decode(complete["LogResult"]).decode())

    def test_timeout_mid_stream_shows_in_invoke_complete(self):
        name = self._streaming_function(Timeout=1)
        events = self._stream(name, {"sleepMs": 5000})
        self.assertEqual([e[1] for e in events if e[0] == "chunk"], [b"first|"])
        self.assertEqual(events[-1][1]["ErrorCode"], "Sandbox.Timedout", events)
        self.assertIn("Task timed out after 1.00 seconds", events[-1][1]["ErrorDetails"])
        # The environment was reset; the next invocation works.
        self.assertEqual(b"".join(e[1] for e in self._stream(name, {"sleepMs": 0}) if e[0] == "chunk"), b"first|second")

    def test_buffered_functions_work_through_the_streaming_api(self):
        name = self.fn_name()
        self.create_function(py_probe_zip(), name=name)
        events = self._stream(name, {"hello": "stream"}, LogType="Tail")
        chunks = [e[1] for e in events if e[0] == "chunk"]
        self.assertEqual(len(chunks), 1, events)
        self.assertEqual(json.loads(chunks[0])["event"], {"hello": "stream"})
        complete = events[-1][1]
        self.assertNotIn("ErrorCode", complete)
        self.assertIn("REPORT RequestId:", base64.b64decode(complete["LogResult"]).decode())

        failing = self.fn_name("raise")
        self.create_function(h.make_zip({"app.py": "def handler(event, context):\n    raise ValueError('buffered boom')\n"}), name=failing)
        events = self._stream(failing, {})
        self.assertEqual([e for e in events if e[0] == "chunk"], [])
        self.assertEqual(events[-1][1]["ErrorCode"], "ValueError", events)
        self.assertEqual(events[-1][1]["ErrorDetails"], "buffered boom", events)

    def test_plain_invoke_of_a_streaming_function_is_buffered(self):
        name = self._streaming_function()
        resp, body, _ = self.invoke(name, {"sleepMs": 10})
        self.assertEqual(body, b"first|second")
        self.assertNotIn("FunctionError", resp)
        self.assertEqual(resp["ResponseMetadata"]["HTTPHeaders"]["content-type"], "text/plain")
        resp, body, parsed = self.invoke(name, {"sleepMs": 10, "fail": True})
        self.assertEqual(resp.get("FunctionError"), "Unhandled", body)
        self.assertEqual((parsed["errorType"], parsed["errorMessage"]), ("Error", "boom mid-stream"))

    def test_api_errors_before_the_stream(self):
        missing = self.fn_name("missing")
        self.assertAwsError(lambda: self.lam.invoke_with_response_stream(FunctionName=missing, Payload=b"{}"), 404,
                            "ResourceNotFoundException", message_contains=missing)
        name = self._streaming_function()
        dry = self.lam.invoke_with_response_stream(FunctionName=name, InvocationType="DryRun", Payload=b"{}")
        self.assertEqual(dry["StatusCode"], 204)
        raw = self.server.raw("POST", f"/2021-11-15/functions/{name}/response-streaming-invocations", body=b"{}",
                              headers={"X-Amz-Invocation-Type": "Event"})
        self.assertRawError(raw, 400, "InvalidParameterValueException")
        raw = self.server.raw("POST", f"/2021-11-15/functions/{name}/response-streaming-invocations", body=b"{not json")
        self.assertRawError(raw, 400, "InvalidRequestContentException")

    def test_streamed_response_over_20_mb_is_cut(self):
        name = self._streaming_function(Timeout=30, MemorySize=256)
        events = self._stream(name, {"big": 21})
        received = sum(len(e[1]) for e in events if e[0] == "chunk")
        self.assertLessEqual(received, 20 * 1024 * 1024)
        self.assertGreater(received, 10 * 1024 * 1024)
        self.assertEqual(events[-1][1]["ErrorCode"], "Function.ResponseSizeTooLarge", events[-1])
        events = self._stream(name, {"big": 19})
        self.assertEqual(sum(len(e[1]) for e in events if e[0] == "chunk"), 19 * 1024 * 1024)
        self.assertNotIn("ErrorCode", events[-1][1])


class StreamingUrlTests(h.LaminaTestCase):

    def _url(self, **kwargs) -> str:
        name = self.fn_name()
        self.create_function(_node_streaming_zip(), name=name, runtime="nodejs22.x", handler="index.handler", **kwargs)
        created = self.lam.create_function_url_config(FunctionName=name, AuthType="NONE", InvokeMode="RESPONSE_STREAM")
        self.assertEqual(created["InvokeMode"], "RESPONSE_STREAM")
        self.lam.add_permission(FunctionName=name, StatementId="public-url", Action="lambda:InvokeFunctionUrl",
                                Principal="*", FunctionUrlAuthType="NONE")
        url_id = urllib.parse.urlparse(created["FunctionUrl"]).hostname.split(".")[0]
        path = f"/lambda-url/{url_id}/"
        warm = self._get(path + "?sleepMs=0")
        self.assertEqual(warm[2], b"first|second")
        return path

    def _get(self, path: str) -> tuple[http.client.HTTPResponse, float, bytes, float]:
        """GET on the URL: (response, seconds to the first body bytes, body, seconds to the end)."""
        parsed = urllib.parse.urlparse(self.server.url)
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        self.addCleanup(conn.close)
        started = time.monotonic()
        conn.request("GET", path)
        resp = conn.getresponse()
        first = resp.read1(65536)
        first_at = time.monotonic() - started
        rest = resp.read()
        return resp, first_at, first + rest, time.monotonic() - started

    def test_http_client_gets_status_headers_cookies_and_the_first_chunk_early(self):
        path = self._url()
        resp, first_at, body, total = self._get(path + "?http=1&sleepMs=2000")
        self.assertEqual(resp.status, 201)
        self.assertEqual(resp.getheader("Content-Type"), "text/plain")
        self.assertEqual(resp.getheader("X-Streamed"), "yes")
        self.assertEqual(resp.getheader("Set-Cookie"), "flavour=chunky")
        self.assertEqual(resp.getheader("Transfer-Encoding"), "chunked")
        self.assertEqual(body, b"first|second")
        self.assertLess(first_at, 1.0)
        self.assertGreaterEqual(total, 1.9)

    def test_curl_sees_the_first_byte_before_the_function_ends(self):
        if shutil.which("curl") is None:
            self.fail("curl is not installed")
        path = self._url()
        done = subprocess.run(["curl", "-sS", "-N", "-o", "-", "-w", "\n%{http_code} %{time_starttransfer} %{time_total}",
                               self.server.url + path + "?sleepMs=2000"], capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr)
        body, _, stats = done.stdout.rpartition("\n")
        status, first, total = stats.split()
        self.assertEqual((status, body), ("200", "first|second"))
        self.assertLess(float(first), 1.0, stats)
        self.assertGreaterEqual(float(total), 1.9, stats)

    def test_mid_stream_error_cuts_the_response(self):
        path = self._url()
        parsed = urllib.parse.urlparse(self.server.url)
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        self.addCleanup(conn.close)
        conn.request("GET", path + "?http=1&sleepMs=100&fail=1")
        resp = conn.getresponse()
        self.assertEqual(resp.status, 201)
        self.assertEqual(resp.read1(65536), b"first|")
        with self.assertRaises((http.client.IncompleteRead, ConnectionError)):  # never a clean end of the chunked body
            resp.read()
        # Nothing reached the client: a 502, as for a buffered function.
        python = self.fn_name("py")
        self.create_function(h.make_zip({"app.py": "def handler(event, context):\n    raise ValueError('no')\n"}), name=python)
        created = self.lam.create_function_url_config(FunctionName=python, AuthType="NONE", InvokeMode="RESPONSE_STREAM")
        self.lam.add_permission(FunctionName=python, StatementId="public-url", Action="lambda:InvokeFunctionUrl",
                                Principal="*", FunctionUrlAuthType="NONE")
        url_id = urllib.parse.urlparse(created["FunctionUrl"]).hostname.split(".")[0]
        resp, _, body, _ = self._get(f"/lambda-url/{url_id}/")
        self.assertEqual(resp.status, 502)
        self.assertEqual(json.loads(body), {"Message": "Internal Server Error"})

    def test_buffered_function_behind_a_streaming_url(self):
        name = self.fn_name()
        self.create_function(h.make_zip({"app.py": "def handler(event, context):\n    return {'statusCode': 202, 'body': 'buffered', 'headers': {'X-Mode': 'b'}}\n"}), name=name)
        created = self.lam.create_function_url_config(FunctionName=name, AuthType="NONE", InvokeMode="RESPONSE_STREAM")
        self.lam.add_permission(FunctionName=name, StatementId="public-url", Action="lambda:InvokeFunctionUrl",
                                Principal="*", FunctionUrlAuthType="NONE")
        url_id = urllib.parse.urlparse(created["FunctionUrl"]).hostname.split(".")[0]
        resp, _, body, _ = self._get(f"/lambda-url/{url_id}/")
        self.assertEqual((resp.status, resp.getheader("X-Mode"), body), (202, "b", b"buffered"))
