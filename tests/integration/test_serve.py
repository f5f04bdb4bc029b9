"""`./lamina serve` as an operator starts it: from any working directory, on a port that may be taken."""
from __future__ import annotations

import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import unittest
from pathlib import Path

import lamina_harness as h

LAMINA = str(h.REPO_ROOT / "lamina")


def inotify_watches(pid: int) -> int:
    """The inotify watches the process holds (each a line `inotify wd:…` in one of its descriptors' fdinfo)."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                count += sum(1 for line in f if line.startswith("inotify"))
        except OSError:
            pass  # closed meanwhile
    return count


class ServeTests(unittest.TestCase):

    def setUp(self):
        if os.environ.get("LAMINA_TEST_ENDPOINT", "").strip():
            self.skipTest("needs servers of its own")
        self.root = Path(tempfile.mkdtemp(prefix="lamina-it-serve-"))
        self.addCleanup(shutil.rmtree, self.root, True)

    def test_the_working_directory_is_not_watched(self):
        # ASP.NET Core's default reloads appsettings.json by watching its content root, recursively: a server started
        # from / held 58,000 inotify watches (past the default limit of many machines) and woke for every file written
        # below it. The server is started from a tree of 300 directories with its data directory inside it.
        work = self.root / "work"
        for i in range(300):
            (work / f"d{i // 20}" / f"e{i}").mkdir(parents=True)
        proc = subprocess.Popen([LAMINA, "serve", "--port", "0", "--data", str(work / "data")], cwd=work,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)  # the server exited

        threading.Thread(target=pump, daemon=True).start()
        try:
            url = None
            while url is None:
                line = lines.get(timeout=h.START_TIMEOUT)  # queue.Empty fails the test if the server says nothing
                if line is None:
                    self.fail(f"the server did not start (exit {proc.wait()})")
                if "listening on http://" in line:
                    url = line.split("listening on ", 1)[1].strip()
            # A function written into the data directory (files under the working directory) while the server runs.
            lam = h.boto3_client(url, "lambda")
            lam.create_function(FunctionName="watched", Runtime="python3.12", Role=h.ROLE, Handler="app.handler",
                                Code={"ZipFile": h.make_zip({"app.py": "def handler(event, context):\n    return event\n"})})
            self.assertEqual(inotify_watches(proc.pid), 0)
            threads = {Path(t, "comm").read_text().strip() for t in Path(f"/proc/{proc.pid}/task").iterdir()}
            self.assertNotIn(".NET File Watch", threads)
        finally:
            proc.terminate()
            proc.wait(timeout=60)

    def test_a_port_in_use_is_named_in_one_line(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            out = subprocess.run([LAMINA, "serve", "--port", str(port), "--data", str(self.root / "data")],
                                 capture_output=True, text=True, timeout=120)
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        self.assertIn(f"lamina: cannot listen on 127.0.0.1:{port}: the address is already in use", out.stderr)
        self.assertNotIn("Unhandled exception", out.stderr)


if __name__ == "__main__":
    unittest.main()
