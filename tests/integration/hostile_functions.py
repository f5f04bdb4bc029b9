"""Function sources for test_hostile.py: a Python handler that misbehaves on request, and custom-runtime
bootstraps that misuse the Runtime API (RELIABILITY.md §4.2). Zips are built in memory."""
from __future__ import annotations

from lamina_harness import make_zip

# A Python handler (runtime python3.x): event["op"] picks the misbehaviour. Every op that leaves processes
# behind puts event["marker"] in their argv, so the test can look for them from the host (/proc/*/cmdline).
HOSTILE_PY = r'''
import errno
import os
import socket
import subprocess
import sys
import time

COUNT = 0
KEEP = []  # sockets kept open between invocations


def _err(e):
    return {"ok": False, "errno": e.errno, "errname": errno.errorcode.get(e.errno, str(e.errno)),
            "error": str(e)}


def _spawn_daemon(marker):
    """Double fork + setsid, then exec `sleep 1000` whose argv[0] carries the marker."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                fd = os.open("/dev/null", os.O_RDWR)
                for target in (0, 1, 2):
                    os.dup2(fd, target)
                os.execv("/usr/bin/sleep", ["lamina-daemon-" + marker, "1000"])
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def _interfaces():
    return sorted(name for _, name in socket.if_nameindex())


def _connect(host, port, timeout=2):
    try:
        s = socket.create_connection((host, int(port)), timeout=timeout)
        s.close()
        return {"connected": True}
    except OSError as e:
        return {"connected": False, "error": "%s: %s" % (type(e).__name__, e),
                "errname": errno.errorcode.get(e.errno or 0, str(e.errno))}


def handler(event, context):
    global COUNT
    COUNT += 1
    op = event.get("op", "echo")
    print("hostile-log-line op=%s request=%s" % (op, context.aws_request_id), flush=True)

    if op == "echo":
        return {"op": op, "count": COUNT, "pid": os.getpid(), "request_id": context.aws_request_id}

    if op == "spin":  # infinite loop, optionally after leaving a daemon behind
        if event.get("marker"):
            _spawn_daemon(event["marker"])
        while True:
            pass

    if op == "sleep":
        time.sleep(float(event["seconds"]))
        return {"op": op, "slept": event["seconds"], "count": COUNT}

    if op == "daemon":
        _spawn_daemon(event["marker"])
        return {"op": op, "spawned": True}

    if op == "forkbomb":
        # fork + exec sleepers (argv[0] carries the marker) until fork fails, then let the error escape
        n = 0
        try:
            while n < 100000:
                pid = os.fork()
                if pid == 0:
                    try:
                        os.execv("/usr/bin/sleep", ["lamina-bomb-" + event["marker"], "1000"])
                    finally:
                        os._exit(127)
                n += 1
        except OSError as e:
            print("forkbomb: forked %d processes, then fork failed: %s %s"
                  % (n, errno.errorcode.get(e.errno, e.errno), e), flush=True)
            raise
        return {"op": op, "forked": n, "note": "fork never failed"}

    if op == "hog":
        chunks = []
        for i in range(int(event["mb"])):
            chunks.append(b"\x01" * (1024 * 1024))  # written, so resident
        return {"op": op, "allocated_mb": len(chunks)}

    if op == "fill_tmp":
        path = "/tmp/fill-" + event["marker"]
        written = 0
        chunk = b"\x02" * (1024 * 1024)
        try:
            with open(path, "wb") as f:
                while written < int(event.get("max_mb", 20000)) * 1024 * 1024:
                    f.write(chunk)
                    f.flush()
                    written += len(chunk)
                os.fsync(f.fileno())
            return {"ok": True, "written": written}
        except OSError as e:
            r = _err(e)
            r["written"] = written
            return r

    if op == "flood":
        mb = int(event["mb"])
        if event.get("newlines"):
            line = b"f" * 99 + b"\n"
            chunk = line * (1024 * 1024 // len(line))
        else:
            chunk = b"F" * (1024 * 1024)
        total = 0
        while total < mb * 1024 * 1024:
            view = memoryview(chunk)
            while view:
                n = os.write(1, view)
                view = view[n:]
            total += len(chunk)
        if not event.get("newlines"):
            os.write(1, b"\n")
        print("flood done bytes=%d" % total, flush=True)
        return {"op": op, "bytes": total}

    if op == "write":
        results = {}
        for path in event["paths"]:
            try:
                with open(path, "w") as f:
                    f.write(event.get("data", "x"))
                results[path] = {"ok": True}
            except OSError as e:
                results[path] = _err(e)
        return results

    if op == "open_for_write":
        # permission check only: open(O_WRONLY) and close, never write (these are host kernel settings)
        results = {}
        for path in event["paths"]:
            try:
                os.close(os.open(path, os.O_WRONLY))
                results[path] = {"ok": True}
            except OSError as e:
                results[path] = _err(e)
        return results

    if op == "listdir":
        try:
            return {"ok": True, "entries": sorted(os.listdir(event["path"]))}
        except OSError as e:
            return _err(e)

    if op == "read":
        try:
            with open(event["path"], "rb") as f:
                return {"ok": True, "data": f.read(4096).decode("utf-8", "replace")}
        except OSError as e:
            return _err(e)

    if op == "snoop":
        # everything a curious function can see of other functions from inside its sandbox
        secret = event["secret"]
        found = []
        proc = {}
        for entry in sorted(os.listdir("/proc")):
            if not entry.isdigit():
                continue
            info = {}
            for name in ("cmdline", "environ"):
                try:
                    with open("/proc/%s/%s" % (entry, name), "rb") as f:
                        data = f.read()
                    info[name] = data.replace(b"\0", b" ").decode("utf-8", "replace")[:8000]
                    if secret.encode() in data:
                        found.append("/proc/%s/%s" % (entry, name))
                except OSError as e:
                    info[name] = "error: " + errno.errorcode.get(e.errno, str(e.errno))
            proc[entry] = info
        walked = []
        for top in ("/", "/var", "/tmp", "/opt", "/etc", "/dev", "/run", "/home", "/root", "/mnt", "/srv",
                    "/var/runtime"):
            for dirpath, dirnames, filenames in os.walk(top, onerror=lambda e: None):
                if dirpath in ("/proc", "/sys", "/usr") or dirpath.startswith(("/proc/", "/sys/", "/usr/")):
                    dirnames[:] = []
                    continue
                for fn in filenames:
                    if event["filename"] in fn:
                        walked.append(os.path.join(dirpath, fn))
                if dirpath == "/":
                    dirnames[:] = [d for d in dirnames if d not in ("proc", "sys", "usr")]
        with open("/proc/self/mountinfo") as f:
            mountinfo = f.read()
        return {"found_in_proc": found, "proc": proc, "files_named_like_secret": sorted(set(walked)),
                "own_env_has_secret": any(secret in v for v in os.environ.values()),
                "mountinfo": mountinfo}

    if op == "net":
        out = {"interfaces": _interfaces()}
        isolated = out["interfaces"] == ["lo"]
        out["isolated"] = isolated
        for host, port in event.get("local", []):  # loopback targets: always safe to try
            out["%s:%s" % (host, port)] = _connect(host, port)
        # Anything that is not loopback is probed only when the sandbox has no other interface, so that a
        # broken sandbox cannot send real traffic off this machine.
        for host, port in event.get("remote", []):
            out["%s:%s" % (host, port)] = _connect(host, port, timeout=1) if isolated else {"skipped": True}
        if isolated:  # a name lookup with a working resolver would leave this machine
            try:
                socket.getaddrinfo("example.com", 443)
                out["dns"] = "resolved"
            except OSError as e:
                out["dns"] = "%s: %s" % (type(e).__name__, e)
        out["gateway"] = None
        try:
            with open("/proc/net/route") as f:
                for line in f.read().splitlines()[1:]:
                    fields = line.split()
                    if fields[1] == "00000000" and fields[2] != "00000000":
                        out["gateway"] = socket.inet_ntoa(bytes.fromhex(fields[2])[::-1])
        except OSError:
            pass
        return out

    if op == "connect_outbound":  # only ever pointed at a listener the test runs on this machine
        return _connect(event["host"], event["port"])

    if op == "listen":
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", int(event["port"])))
        s.listen(8)
        KEEP.append(s)
        return {"listening": int(event["port"])}

    if op == "exit":
        sys.stdout.flush()
        os._exit(int(event["code"]))

    raise ValueError("unknown op %r" % op)
'''


def hostile_py_zip(extra: dict[str, str] | None = None) -> bytes:
    files = {"app.py": HOSTILE_PY}
    files.update(extra or {})
    return make_zip(files)


# A custom runtime (provided.al2023) written against the Runtime API with http.client, that misuses the API on
# request (event["action"]). What the API answered to a misuse is kept in STATE and returned by the next
# invocations ("echo"), because it often happens after the caller already has its answer.
RAPI_BOOTSTRAP = r'''#!/usr/bin/python3
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid

API = os.environ["AWS_LAMBDA_RUNTIME_API"]
BASE = "/2018-06-01/runtime"
STATE = {}
LAST_ID = None


def call(method, path, body=None, headers=None, timeout=None):
    conn = http.client.HTTPConnection(API, timeout=timeout)
    send_error = None
    try:
        try:
            conn.request(method, BASE + path, body=body, headers=headers or {})
        except OSError as e:
            send_error = repr(e)
        try:
            resp = conn.getresponse()
            data = resp.read()
        except OSError as e:
            return {"status": None, "headers": {}, "raw": b"",
                    "error": "%s; no response: %r" % (send_error, e)}
        return {"status": resp.status, "headers": {k.lower(): v for k, v in resp.getheaders()},
                "raw": data, "error": send_error}
    finally:
        conn.close()


def record(r):
    try:
        body = json.loads(r["raw"]) if r["raw"] else None
    except ValueError:
        body = r["raw"][:500].decode("utf-8", "replace")
    return {"status": r["status"], "body": body, "error": r["error"]}


def respond(rid, obj):
    return call("POST", "/invocation/%s/response" % rid, json.dumps(obj).encode(),
                {"Content-Type": "application/json"})


if os.environ.get("EARLY_RESPONSE") == "1":
    # /response before the first /next: no invocation is in progress
    STATE["early_response"] = record(call("POST", "/invocation/%s/response" % uuid.uuid4(), b'{"early":true}',
                                          {"Content-Type": "application/json"}))
    STATE["early_error"] = record(call("POST", "/invocation/%s/error" % uuid.uuid4(),
                                       b'{"errorType":"Early","errorMessage":"early"}',
                                       {"Lambda-Runtime-Function-Error-Type": "Early"}))

while True:
    nxt = call("GET", "/invocation/next")
    if nxt["status"] != 200:
        print("bootstrap: /next answered %r; exiting" % (record(nxt),), flush=True)
        sys.exit(1)
    rid = nxt["headers"]["lambda-runtime-aws-request-id"]
    event = json.loads(nxt["raw"] or b"{}")
    action = event.get("action", "echo") if isinstance(event, dict) else "echo"
    print("bootstrap action=%s request=%s" % (action, rid), flush=True)

    if action == "echo":
        respond(rid, {"action": action, "request_id": rid, "pid": os.getpid(), "state": STATE})

    elif action == "double":
        first = respond(rid, {"answer": "first", "request_id": rid})
        second = respond(rid, {"answer": "second", "request_id": rid})
        STATE["double"] = {"first": record(first), "second": record(second)}
        print("bootstrap second-response status=%s" % second["status"], flush=True)

    elif action == "wrong_id":
        other = str(uuid.uuid4())
        result = {"answer": "right", "request_id": rid}
        result["other_response"] = record(respond(other, {"answer": "wrong"}))
        result["other_error"] = record(call("POST", "/invocation/%s/error" % other,
                                            b'{"errorType":"Wrong","errorMessage":"wrong id"}',
                                            {"Lambda-Runtime-Function-Error-Type": "Wrong"}))
        if LAST_ID:
            result["stale_response"] = record(respond(LAST_ID, {"answer": "stale"}))
        # a second /next while this invocation is open: 403, or it blocks (then the 2 s timeout ends it)
        result["next_again"] = record(call("GET", "/invocation/next", timeout=2))
        respond(rid, result)

    elif action == "oversize":
        size = int(event.get("size", 7 * 1024 * 1024))
        big = b'"' + b"x" * (size - 2) + b'"'
        r = call("POST", "/invocation/%s/response" % rid, big, {"Content-Type": "application/json"})
        STATE["oversize"] = record(r)
        print("bootstrap oversize status=%s" % r["status"], flush=True)

    elif action == "exit":
        sys.stdout.flush()
        os._exit(int(event["code"]))

    elif action == "kill9":
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)

    elif action == "bomb":
        # the classic bash fork bomb; its processes' argv carry the marker ($0 of bash -c)
        subprocess.Popen(["/bin/bash", "-c", ":(){ :|:& };:", "lamina-bomb-" + event["marker"]],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(3600)

    else:
        call("POST", "/invocation/%s/error" % rid,
             json.dumps({"errorType": "UnknownAction", "errorMessage": action}).encode(),
             {"Lambda-Runtime-Function-Error-Type": "UnknownAction"})
    LAST_ID = rid
'''

# Never calls /next: init never ends. The sleeping process carries the function's MARKER in its argv.
HANG_BOOTSTRAP = '''#!/bin/bash
echo "bootstrap: hanging without calling /next"
exec -a "lamina-hang-$MARKER" /usr/bin/sleep 1000
'''

# Exits before calling /next.
EXIT_BOOTSTRAP = '''#!/bin/sh
echo "bootstrap: exiting at once"
exit 1
'''


def bootstrap_zip(source: str) -> bytes:
    return make_zip({"bootstrap": source}, executables=["bootstrap"])
