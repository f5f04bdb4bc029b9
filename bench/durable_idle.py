#!/usr/bin/env python3
"""An idle server's CPU with many ended durable executions in its store (they stay for their retention, 14 days).

    python3 bench/durable_idle.py BUILD_A/Lamina.Server.dll BUILD_B/Lamina.Server.dll [count] [events]

Makes a data directory with `count` (default 300,000) ended executions written straight into durable.db, each with
`events` history events and as many operations (default 0), then starts each build on a copy of it and prints how long
it took to listen, the server's CPU over 20 s of doing nothing, its resident memory, and the median time of a
ListDurableExecutionsByFunction page (50, newest first) and of a GetDurableExecution of an ended one.
"""
import io, os, re, shutil, sqlite3, subprocess, sys, tempfile, time, zipfile
import boto3
buffer = io.BytesIO()
with zipfile.ZipFile(buffer, "w") as z:
    z.writestr("index.mjs", "export const handler = async () => 1;\n")
zip_bytes = buffer.getvalue()
def start(dll, data):
    p = subprocess.Popen(["dotnet", dll, "serve", "--port", "0", "--data", data], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in p.stdout:
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m: return p, int(m.group(1))
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
base = tempfile.mkdtemp()
p, port = start(sys.argv[1], base); p.terminate(); p.wait()
db = sqlite3.connect(os.path.join(base, "durable.db"))
now = int(time.time() * 1000)
N = int(sys.argv[3]) if len(sys.argv) > 3 else 300_000
db.executemany("INSERT INTO executions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
    ((f"arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST/durable-execution/n{i}/{i:032x}", "f", "arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST", "$LATEST", f"n{i}", '{"x":1}', now - 3600_000, 60, 14, "SUCCEEDED", '"ok"', None, now - 3500_000) for i in range(N)))
EVENTS = int(sys.argv[4]) if len(sys.argv) > 4 else 0
arn = lambda i: f"arn:aws:lambda:us-east-1:000000000000:function:f:$LATEST/durable-execution/n{i}/{i:032x}"
step = '{"Id":"%s","Type":"STEP","Status":"SUCCEEDED","StepDetails":{"Result":"{\\"n\\":3}","Attempt":1}}'
db.executemany("INSERT INTO operations (arn, seq, id, json) VALUES (?,?,?,?)",
    ((arn(i), k, f"op{k}", step % f"op{k}") for i in range(N) for k in range(EVENTS)))
db.executemany("INSERT INTO events VALUES (?,?,?)",
    ((arn(i), k + 1, '{"EventType":"StepSucceeded","EventId":%d,"Id":"op%d","StepSucceededDetails":{"Result":{"Payload":"{\\"n\\":3}"}}}' % (k + 1, k)) for i in range(N) for k in range(EVENTS)))
db.commit(); db.close()
for dll in sys.argv[1:3]:
    data = tempfile.mkdtemp(); shutil.copytree(base, data, dirs_exist_ok=True)
    t = time.time(); p, port = start(dll, data); listening = time.time() - t
    time.sleep(5)  # let startup settle
    c0 = cpu(p.pid); t0 = time.time(); time.sleep(20); c1 = cpu(p.pid)
    print(dll.split("/")[2], f"{N} ended executions, {EVENTS} events each: listening after {listening:.1f} s, idle server CPU {100*(c1-c0)/(time.time()-t0):.1f}% of a core", open(f"/proc/{p.pid}/status").read().split("VmRSS:")[1].split("\n")[0].strip())
    lam = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    lam.create_function(FunctionName="f", Runtime="nodejs22.x", Role="arn:aws:iam::000000000000:role/r", Handler="index.handler",
                        Code={"ZipFile": zip_bytes}, DurableConfig={"ExecutionTimeout": 60, "RetentionPeriodInDays": 14})
    def median_ms(call, n=21):
        times = []
        for _ in range(n):
            t = time.perf_counter(); call(); times.append(1000 * (time.perf_counter() - t))
        return sorted(times)[n // 2]
    listed = median_ms(lambda: lam.list_durable_executions_by_function(FunctionName="f", ReverseOrder=True, MaxItems=50))
    got = median_ms(lambda: lam.get_durable_execution(DurableExecutionArn=arn(N // 2)))
    print(f"    ListDurableExecutionsByFunction (50, newest first) {listed:.1f} ms, GetDurableExecution {got:.1f} ms (medians of 21, boto3)")
    p.terminate(); p.wait(); shutil.rmtree(data)
