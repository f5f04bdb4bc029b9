#!/usr/bin/env python3
"""DynamoDB API benchmark (issue #21): Lamina beside dynalite (npm, LevelDB on disk) in the same run.

    python3 bench/dynamodb.py [--quick]        (bench/run.sh dynamodb installs dynalite and wrk first)

Per target:
  - single-item PutItem and GetItem latency, one connection, closed loop: p50 / p99
  - PutItem and GetItem throughput at 16 connections (wrk, 10 s each): requests/s and p99
  - a Query of one 100,000-item partition, read to the end through its 1 MB pages: total time
And for Lamina: the lag from a PutItem's acknowledgement to the handler of a stream-mapped function: p50 / p99.

Both servers get the same signed requests (a fixed signature: neither checks it here — Lamina has no access keys
in this run and dynalite never checks). Lamina commits with fsync (synchronous=FULL, group commit); dynalite writes
LevelDB without syncing, so its writes are not durable across a power loss — keep that in mind reading the numbers.
"""
import base64, http.client, json, os, re, shutil, signal, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lamina_server import ROOT, percentile, zip_of  # noqa: E402

QUICK = "--quick" in sys.argv
LATENCY_N = 2000 if QUICK else 10000
WRK_SECONDS = 5 if QUICK else 10
QUERY_ITEMS = 20000 if QUICK else 100000
LAG_N = 50 if QUICK else 200
HEADERS = {
    "Content-Type": "application/x-amz-json-1.0",
    # A well-formed SigV4 header: Lamina without access keys and dynalite accept it as is.
    "Authorization": "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=0",
    "X-Amz-Date": "20260101T000000Z",
}


def call(conn, op, body):
    conn.request("POST", "/", body=json.dumps(body), headers={**HEADERS, "X-Amz-Target": "DynamoDB_20120810." + op})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise RuntimeError(f"{op}: {r.status} {data[:300]!r}")
    return json.loads(data) if data else {}


class Server:
    """A child process printing its port; stdout drained in the background (Lamina's function log lines are kept)."""

    def __init__(self, command, pattern, env=None):
        self.lines = []
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.port = None
        for line in self.proc.stdout:
            m = re.search(pattern, line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            raise RuntimeError(f"{command[0]} did not start")
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stdout:
            if " LAG " in line:
                self.lines.append(line)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def create_table(port, name, stream=False):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    body = {"TableName": name, "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "N"}]}
    if stream:
        body["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    out = call(conn, "CreateTable", body)
    for _ in range(100):
        if call(conn, "DescribeTable", {"TableName": name})["Table"]["TableStatus"] == "ACTIVE":
            break
        time.sleep(0.1)
    return out


def item(i, pk="bench"):
    return {"pk": {"S": pk}, "sk": {"N": str(i)}, "name": {"S": f"item-{i}"}, "n": {"N": str(i * 7 % 1000)}}


def latency(port, op, make):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for i in range(300):
        call(conn, op, make(i))
    samples = []
    for i in range(LATENCY_N):
        body = make(i)
        t = time.perf_counter()
        call(conn, op, body)
        samples.append((time.perf_counter() - t) * 1000)
    return percentile(samples, 0.5), percentile(samples, 0.99)


WRK_SCRIPT = """
local counter = 0
local target = os.getenv("TARGET")
local table = os.getenv("TABLE")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-amz-json-1.0"
wrk.headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=0"
wrk.headers["X-Amz-Date"] = "20260101T000000Z"
wrk.headers["X-Amz-Target"] = "DynamoDB_20120810." .. target
request = function()
  counter = counter + 1
  local i = counter % 5000
  if target == "PutItem" then
    wrk.body = '{"TableName":"' .. table .. '","Item":{"pk":{"S":"wrk"},"sk":{"N":"' .. i .. '"},"name":{"S":"item-' .. i .. '"},"n":{"N":"' .. counter .. '"}}}'
  else
    wrk.body = '{"TableName":"' .. table .. '","Key":{"pk":{"S":"bench"},"sk":{"N":"' .. (i % 300) .. '"}}}'
  end
  return wrk.format()
end
response = function(status, headers, body)
  if status ~= 200 then errors_seen = (errors_seen or 0) + 1 end
end
"""


def throughput(port, op, table, script):
    env = {**os.environ, "TARGET": op, "TABLE": table}
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{WRK_SECONDS}s", "--latency", "-s", script, f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, env=env, timeout=WRK_SECONDS + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(\w+)", out)
    p99ms = float(p99.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, p99ms, int(non2xx.group(1)) if non2xx else 0


def big_query(port, table):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    t = time.perf_counter()
    for start in range(0, QUERY_ITEMS, 25):
        call(conn, "BatchWriteItem", {"RequestItems": {table: [{"PutRequest": {"Item": item(i, "big")}} for i in range(start, min(start + 25, QUERY_ITEMS))]}})
    load = time.perf_counter() - t
    timings = []
    for _ in range(3):
        t = time.perf_counter()
        count, pages, key = 0, 0, None
        while True:
            body = {"TableName": table, "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "big"}}}
            if key:
                body["ExclusiveStartKey"] = key
            page = call(conn, "Query", body)
            count += page["Count"]
            pages += 1
            key = page.get("LastEvaluatedKey")
            if not key:
                break
        timings.append(time.perf_counter() - t)
        assert count == QUERY_ITEMS, count
    # The same read with Select=COUNT: the server's part alone (no items to serialise, send and parse).
    counts = []
    for _ in range(3):
        t = time.perf_counter()
        count, key = 0, None
        while True:
            body = {"TableName": table, "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "big"}}, "Select": "COUNT"}
            if key:
                body["ExclusiveStartKey"] = key
            page = call(conn, "Query", body)
            count += page["Count"]
            key = page.get("LastEvaluatedKey")
            if not key:
                break
        counts.append(time.perf_counter() - t)
        assert count == QUERY_ITEMS, count
    return load, min(timings), pages, min(counts)


def stream_lag(server):
    """A table with a stream, a mapping to a Python function printing the lag from the item's put time to its handler."""
    port = server.port
    conn = http.client.HTTPConnection("127.0.0.1", port)
    arn = create_table(port, "lagtable", stream=True)["TableDescription"]["LatestStreamArn"]
    code = ("import time\n"
            "def handler(event, context):\n"
            "    now = time.time() * 1000\n"
            "    for r in event['Records']:\n"
            "        print('LAG', now - float(r['dynamodb']['NewImage']['t']['N']), flush=True)\n")
    body = json.dumps({"FunctionName": "lag", "Runtime": "python3.12", "Handler": "app.handler", "Role": "arn:aws:iam::000000000000:role/bench",
                       "Code": {"ZipFile": base64.b64encode(zip_of({"app.py": code})).decode()}})
    conn.request("POST", "/2015-03-31/functions", body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse(); r.read()
    assert r.status == 201, r.status
    conn.request("POST", "/2015-03-31/event-source-mappings", headers={"Content-Type": "application/json"},
                 body=json.dumps({"EventSourceArn": arn, "FunctionName": "lag", "StartingPosition": "LATEST", "BatchSize": 1}))
    r = conn.getresponse(); r.read()
    assert r.status == 202, r.status
    for i in range(LAG_N + 5):
        # Stamped just after the put is acknowledged would be fairer to the server, but the item must carry it:
        # stamped just before the put, so the figure includes the PutItem itself.
        call(conn, "PutItem", {"TableName": "lagtable", "Item": {"pk": {"S": "lag"}, "sk": {"N": str(i)}, "t": {"N": repr(time.time() * 1000)}}})
        deadline = time.monotonic() + 10
        while len(server.lines) <= i and time.monotonic() < deadline:
            time.sleep(0.0005)
    lags = [float(line.split(" LAG ")[1]) for line in server.lines[5:]]
    return percentile(lags, 0.5), percentile(lags, 0.99), len(lags)


def main():
    dynalite = os.path.join(os.environ.get("LAMINA_BENCH_CACHE", os.path.expanduser("~/.cache/lamina-bench")), "dynalite/node_modules/.bin/dynalite")
    if not os.path.exists(dynalite):
        sys.exit(f"bench: dynalite is missing at {dynalite}: run bench/run.sh dynamodb")
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(WRK_SCRIPT)
    script.close()
    results = {}
    for target in ("lamina", "dynalite"):
        data = tempfile.mkdtemp(prefix=f"bench-{target}-")
        if target == "lamina":
            env = {**os.environ, "Logging__LogLevel__Lamina.Function": "Debug"}
            server = Server([os.path.join(ROOT, "lamina"), "serve", "--port", "0", "--data", data], r"listening on http://127\.0\.0\.1:(\d+)", env)
        else:
            port = 18000 + os.getpid() % 1000
            server = Server(["node", dynalite, "--host", "127.0.0.1", "--port", str(port), "--path", os.path.join(data, "db"),
                             "--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0"], r"listening at: http://\S+:(\d+)")
        try:
            create_table(server.port, "bench")
            r = {}
            r["put"] = latency(server.port, "PutItem", lambda i: {"TableName": "bench", "Item": item(i)})
            r["get"] = latency(server.port, "GetItem", lambda i: {"TableName": "bench", "Key": {"pk": {"S": "bench"}, "sk": {"N": str(i % 300)}}})
            r["put16"] = throughput(server.port, "PutItem", "bench", script.name)
            r["get16"] = throughput(server.port, "GetItem", "bench", script.name)
            create_table(server.port, "bigquery")
            r["query"] = big_query(server.port, "bigquery")
            if target == "lamina":
                r["lag"] = stream_lag(server)
            results[target] = r
        finally:
            server.stop()
            shutil.rmtree(data, ignore_errors=True)
    os.unlink(script.name)

    print(f"DynamoDB API, same machine, same run ({LATENCY_N} sequential calls; wrk -t2 -c16 {WRK_SECONDS}s; {QUERY_ITEMS} items)")
    print(f"{'measure':<44}{'lamina':>18}{'dynalite':>18}")
    rows = [
        ("PutItem p50 / p99 ms, 1 connection", lambda r: f"{r['put'][0]:.2f} / {r['put'][1]:.2f}"),
        ("GetItem p50 / p99 ms, 1 connection", lambda r: f"{r['get'][0]:.2f} / {r['get'][1]:.2f}"),
        ("PutItem req/s, 16 connections", lambda r: f"{r['put16'][0]:.0f}"),
        ("PutItem p99 ms, 16 connections", lambda r: f"{r['put16'][1]:.2f}"),
        ("GetItem req/s, 16 connections", lambda r: f"{r['get16'][0]:.0f}"),
        ("GetItem p99 ms, 16 connections", lambda r: f"{r['get16'][1]:.2f}"),
        (f"load {QUERY_ITEMS} items (BatchWriteItem) s", lambda r: f"{r['query'][0]:.1f}"),
        (f"Query all {QUERY_ITEMS} (1 MB pages) s", lambda r: f"{r['query'][1]:.2f}"),
        ("  pages", lambda r: f"{r['query'][2]}"),
        (f"Query all {QUERY_ITEMS}, Select=COUNT s", lambda r: f"{r['query'][3]:.2f}"),
    ]
    for label, fmt in rows:
        print(f"{label:<44}{fmt(results['lamina']):>18}{fmt(results['dynalite']):>18}")
    errors = {t: (r["put16"][2], r["get16"][2]) for t, r in results.items()}
    print(f"non-2xx responses under load (put, get): {errors}")
    p50, p99, n = results["lamina"]["lag"]
    print(f"stream-to-function lag (PutItem sent -> handler start), Lamina, {n} records one at a time: p50 {p50:.1f} ms, p99 {p99:.1f} ms")


if __name__ == "__main__":
    main()
