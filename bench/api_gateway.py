#!/usr/bin/env python3
"""What API Gateway adds to a warm invoke (issue #22): one connection, closed loop, the same warm function reached
four ways in the same run, interleaved request by request so that the machine's noise falls on all of them alike:

* ``invoke``: the Invoke API with a small payload ({"x":1});
* ``invoke+event``: the Invoke API with the very event an HTTP API route sends (so the difference to the next line is
  API Gateway's own work: routing, building the event, the permission check, mapping the result);
* ``http-api``: GET on an HTTP API route (payload 2.0), by host name (Host: <id>.execute-api.localhost);
* ``rest-api``: GET on a REST API method (payload 1.0, imported from OpenAPI), stage prefix in the path.

Prints p50/p90/p99 per way and the added latency of the API routes over the direct invoke.

    python3 bench/api_gateway.py [N]
"""
import base64, http.client, json, sys, time

from lamina_server import percentile, running_server, zip_of

N = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
WARMUP = 300

FUNCTIONS = {
    # Each answers in the proxy format (which REST APIs require), echoing its event in the body.
    "python-echo": ("python3.12", "app.handler", {"app.py": "import json\ndef handler(e, c):\n    return {'statusCode': 200, 'body': json.dumps(e)}\n"}),
    "provided-echo": ("provided.al2023", "none", {"bootstrap": (
        "#!/usr/bin/python3\n"
        "import http.client, json, os\n"
        "c = http.client.HTTPConnection(os.environ['AWS_LAMBDA_RUNTIME_API'])\n"
        "while True:\n"
        "    c.request('GET', '/2018-06-01/runtime/invocation/next'); r = c.getresponse(); body = r.read()\n"
        "    rid = r.getheader('Lambda-Runtime-Aws-Request-Id')\n"
        "    answer = json.dumps({'statusCode': 200, 'body': body.decode()})\n"
        "    c.request('POST', f'/2018-06-01/runtime/invocation/{rid}/response', body=answer); c.getresponse().read()\n")}),
}


def call(conn, method, path, body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    return r.status, data


def setup(conn, name, runtime, handler, files):
    arn = f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    status, _ = call(conn, "POST", "/2015-03-31/functions", json.dumps({
        "FunctionName": name, "Runtime": runtime, "Handler": handler, "Role": "arn:aws:iam::000000000000:role/bench",
        "Code": {"ZipFile": base64.b64encode(zip_of(files)).decode()}}), {"Content-Type": "application/json"})
    assert status == 201, status
    status, _ = call(conn, "POST", f"/2015-03-31/functions/{name}/policy", json.dumps({
        "StatementId": "apigw", "Action": "lambda:InvokeFunction", "Principal": "apigateway.amazonaws.com",
        "SourceArn": "arn:aws:execute-api:us-east-1:000000000000:*"}), {"Content-Type": "application/json"})
    assert status == 201, status
    # HTTP API: quick create (an AutoDeploy $default stage, a $default route, payload 2.0) plus a route of its own.
    status, body = call(conn, "POST", "/v2/apis", json.dumps({"name": name, "protocolType": "HTTP", "target": arn}),
                        {"Content-Type": "application/json"})
    assert status == 201, (status, body)
    http_id = json.loads(body)["apiId"]
    # REST API: imported, deployed to stage "bench".
    uri = f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{arn}/invocations"
    definition = {"swagger": "2.0", "info": {"title": name}, "paths": {"/items/{id}": {"get": {
        "x-amazon-apigateway-integration": {"type": "aws_proxy", "httpMethod": "POST", "uri": uri}}}}}
    status, body = call(conn, "POST", "/restapis?mode=import", json.dumps(definition), {"Content-Type": "application/json"})
    assert status == 201, (status, body)
    rest_id = json.loads(body)["id"]
    status, _ = call(conn, "POST", f"/restapis/{rest_id}/deployments", json.dumps({"stageName": "bench"}), {"Content-Type": "application/json"})
    assert status == 201, status
    # The event the HTTP API sends, as the function echoes it: the payload of "invoke+event".
    status, event = call(conn, "GET", "/items/1", headers={"Host": f"{http_id}.execute-api.localhost"})
    assert status == 200, (status, event)
    return http_id, rest_id, event


def main():
    with running_server() as port:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        print(f"API Gateway over a direct invoke, 1 connection, {N} requests per way, interleaved, after {WARMUP} warm-up rounds")
        print(f"{'function':<15}{'way':<14}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}")
        for name, (runtime, handler, files) in FUNCTIONS.items():
            http_id, rest_id, event = setup(conn, name, runtime, handler, files)
            ways = {
                "invoke": ("POST", f"/2015-03-31/functions/{name}/invocations", b'{"x":1}', {}),
                "invoke+event": ("POST", f"/2015-03-31/functions/{name}/invocations", event, {}),
                "http-api": ("GET", "/items/1", None, {"Host": f"{http_id}.execute-api.localhost"}),
                "rest-api": ("GET", "/bench/items/1", None, {"Host": f"{rest_id}.execute-api.localhost"}),
            }
            samples = {way: [] for way in ways}
            for i in range(N + WARMUP):
                for way, (method, path, body, headers) in ways.items():
                    t = time.perf_counter()
                    status, _ = call(conn, method, path, body, headers)
                    elapsed = (time.perf_counter() - t) * 1000
                    if status != 200:
                        raise RuntimeError(f"{name} {way}: {status}")
                    if i >= WARMUP:
                        samples[way].append(elapsed)
            p = {way: (percentile(s, 0.5), percentile(s, 0.9), percentile(s, 0.99)) for way, s in samples.items()}
            for way, (p50, p90, p99) in p.items():
                print(f"{name:<15}{way:<14}{p50:>9.3f}{p90:>9.3f}{p99:>9.3f}")
            for way in ("http-api", "rest-api"):
                print(f"{name:<15}{'added ' + way.split('-')[0]:<14}{p[way][0] - p['invoke'][0]:>9.3f}{'':>9}{p[way][2] - p['invoke'][2]:>9.3f}"
                      f"   (over invoke+event: p50 {p[way][0] - p['invoke+event'][0]:+.3f}, p99 {p[way][2] - p['invoke+event'][2]:+.3f})")


if __name__ == "__main__":
    main()
