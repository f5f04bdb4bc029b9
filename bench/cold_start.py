#!/usr/bin/env python3
"""Cold-start cost per runtime, with and without outbound network.

Starts the Release server on a free port with a temp data dir; for each runtime and network setting, invokes N
freshly created functions once each (every invoke is a cold start) and prints the p50/p90 of the REPORT line's
Init Duration and of the client-side request time, beside the bare process start time of the same interpreter.

    python3 bench/cold_start.py [N]
"""
import base64, http.client, json, re, subprocess, sys, time

from lamina_server import percentile, running_server, zip_of

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10

RUNTIMES = {
    "python3.12": ("app.handler", {"app.py": "def handler(e, c):\n    return e\n"}, ["/usr/bin/python3", "-c", "pass"]),
    "nodejs20.x": ("index.handler", {"index.js": "exports.handler = async (e) => e;\n"}, ["/usr/bin/node", "-e", "0"]),
}


def main():
    with running_server() as port:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        print(f"cold start, {N} functions per row (each invoked once)")
        print(f"{'runtime':<12}{'network':<9}{'init p50':>10}{'init p90':>10}{'request p50':>13}{'bare start p50':>16}")
        for runtime, (handler, files, bare) in RUNTIMES.items():
            bare_samples = []
            for _ in range(N):
                t = time.perf_counter(); subprocess.run(bare, check=True); bare_samples.append((time.perf_counter() - t) * 1000)
            for network in ("on", "none"):
                inits, requests = [], []
                for i in range(N):
                    name = f"cold-{runtime.replace('.', '-')}-{network}-{i}"
                    body = {"FunctionName": name, "Runtime": runtime, "Handler": handler,
                            "Role": "arn:aws:iam::000000000000:role/bench",
                            "Code": {"ZipFile": base64.b64encode(zip_of(files)).decode()}}
                    if network == "none":
                        body["Environment"] = {"Variables": {"LAMINA_NETWORK": "none"}}
                    conn.request("POST", "/2015-03-31/functions", body=json.dumps(body), headers={"Content-Type": "application/json"})
                    r = conn.getresponse(); r.read(); assert r.status == 201, r.status
                    t = time.perf_counter()
                    conn.request("POST", f"/2015-03-31/functions/{name}/invocations", body=b"{}", headers={"X-Amz-Log-Type": "Tail"})
                    r = conn.getresponse(); r.read()
                    requests.append((time.perf_counter() - t) * 1000)
                    tail = base64.b64decode(r.getheader("X-Amz-Log-Result")).decode()
                    inits.append(float(re.search(r"Init Duration: ([0-9.]+) ms", tail).group(1)))
                print(f"{runtime:<12}{network:<9}{percentile(inits, .5):>10.1f}{percentile(inits, .9):>10.1f}{percentile(requests, .5):>13.1f}{percentile(bare_samples, .5):>16.1f}")


if __name__ == "__main__":
    main()
