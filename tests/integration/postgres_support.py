"""What the modules that run Lamina on PostgreSQL share: a throwaway PostgreSQL 15 cluster in a temp dir, and a TCP
proxy between the server and it that can cut, refuse or hold connections (the faults of RELIABILITY.md's PostgreSQL
row, as Toxiproxy would inject them)."""
from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path | None:
    for version in ("17", "16", "15"):
        path = Path(f"/usr/lib/postgresql/{version}/bin")
        if (path / "initdb").exists():
            return path
    return None


class Postgres:
    """A throwaway PostgreSQL cluster in a temp dir, as the postgres user when run as root (initdb refuses root)."""

    def __init__(self, root: Path, bin_dir: Path):
        self.dir = root / "pg"
        self.bin = bin_dir
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        self.dir.mkdir(parents=True)
        if self.as_postgres:
            shutil.chown(self.dir, "postgres")
            os.chmod(root, 0o755)

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-A", "trust", "-U", "lamina", "--no-sync")
        # fsync stays on: the durability promise is the point. max_connections: three nodes' pools and their tests.
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w", "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=300", "start")
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "lamina", "lamina")

    def url(self, database: str = "lamina", port: int | None = None) -> str:
        return f"postgresql://lamina@127.0.0.1:{port or self.port}/{database}"

    def createdb(self, database: str) -> None:
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "lamina", database)

    def sql(self, database: str, statement: str) -> str:
        """Runs `statement` with psql; its rows, unaligned, one per line, columns separated by |."""
        return subprocess.run([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "lamina", "-d", database,
                               "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", statement],
                              check=True, capture_output=True, text=True, timeout=60).stdout.strip()

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass


class FaultProxy:
    """A TCP proxy on a loopback port in front of `target_port`. `up` forwards; `down()` resets every open connection
    and every new one at once (a database that went away: connection refused, reset mid-transaction); `hold()` keeps
    connections open but forwards nothing either way (a database that stopped answering: a partition, a stalled
    disk); `up()` forwards again. Each pair of sockets is served by one thread with select()."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._mode = "up"
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._closed = False
        self.connections = 0  # accepted since start, for tests that assert the server reconnected
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def mode(self) -> str:
        return self._mode

    def up(self) -> None:
        self._mode = "up"

    def hold(self) -> None:
        self._mode = "hold"

    def down(self) -> None:
        """Resets every connection (RST, not FIN: the server sees a connection reset mid-whatever it was doing)."""
        with self._lock:
            self._mode = "down"
            pairs = list(self._pairs)
        for client, upstream in pairs:
            _reset(client)
            _reset(upstream)

    def close(self) -> None:
        self._closed = True
        self.down()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            if self._mode == "down":
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                _reset(client)
                continue
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair: tuple[socket.socket, socket.socket]) -> None:
        client, upstream = pair
        other = {client: upstream, upstream: client}
        try:
            while self._mode != "down":
                if self._mode == "hold":
                    time.sleep(0.05)  # bytes wait in the kernel's buffers until the proxy is up again (or down)
                    continue
                readable, _, _ = select.select([client, upstream], [], [], 0.05)
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    other[s].sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._pairs.discard(pair)
            _reset(client)
            _reset(upstream)


def _reset(s: socket.socket) -> None:
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()
    except OSError:
        pass
