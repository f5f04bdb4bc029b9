#!/usr/bin/env python3
"""Warm-invoke latency through the Invoke API, one connection, closed loop.

Starts the Release server on a free port with a temp data dir, deploys echo functions for each runtime, warms them,
then times N sequential invocations and prints p50/p90/p99 per runtime, beside the latency of a request that the
server answers without running anything (404 for a missing function): the difference is the invoke path plus the
runtime's own round trip.

    python3 bench/warm_invoke.py [N]
"""
import base64, http.client, json, re, subprocess, sys, time

from lamina_server import percentile, running_server, zip_of

N = int(sys.argv[1]) if len(sys.argv) > 1 else 5000

FUNCTIONS = {
    "node-echo": ("nodejs20.x", "index.handler", {"index.js": "exports.handler = async (e) => e;\n"}),
    "python-echo": ("python3.12", "app.handler", {"app.py": "def handler(e, c):\n    return e\n"}),
    "provided-echo": ("provided.al2023", "none", {"bootstrap": (
        "#!/usr/bin/python3\n"
        "import http.client, os\n"
        "c = http.client.HTTPConnection(os.environ['AWS_LAMBDA_RUNTIME_API'])\n"
        "while True:\n"
        "    c.request('GET', '/2018-06-01/runtime/invocation/next'); r = c.getresponse(); body = r.read()\n"
        "    rid = r.getheader('Lambda-Runtime-Aws-Request-Id')\n"
        "    c.request('POST', f'/2018-06-01/runtime/invocation/{rid}/response', body=body); c.getresponse().read()\n")}),
}


def main():
    with running_server() as port:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        for name, (runtime, handler, files) in FUNCTIONS.items():
            body = json.dumps({"FunctionName": name, "Runtime": runtime, "Handler": handler,
                               "Role": "arn:aws:iam::000000000000:role/bench",
                               "Code": {"ZipFile": base64.b64encode(zip_of(files)).decode()}})
            conn.request("POST", "/2015-03-31/functions", body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse(); r.read()
            assert r.status == 201, r.status

        print(f"warm invoke, 1 connection, {N} invocations each, payload {{\"x\":1}}")
        print(f"{'target':<16}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}")
        for name in ["no-such-function", *FUNCTIONS]:
            path = f"/2015-03-31/functions/{name}/invocations"
            samples = []
            for i in range(N + 200):
                t = time.perf_counter()
                conn.request("POST", path, body=b'{"x":1}')
                r = conn.getresponse(); r.read()
                if i >= 200:
                    samples.append((time.perf_counter() - t) * 1000)
            p50, p90, p99 = (percentile(samples, q) for q in (0.5, 0.9, 0.99))
            print(f"{name:<16}{p50:>10.3f}{p90:>10.3f}{p99:>10.3f}")


if __name__ == "__main__":
    main()
