"""Starts the real esdb server binary for tests: a free port (port 0, read back from the
announce line), a temporary data directory, and kill -9 / restart on the same port and data."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, List, Optional, Sequence

#: How long a starting server may take to announce its ports.
STARTUP_TIMEOUT_S = 20.0
#: How long a stopping server may take to exit after SIGTERM.
SHUTDOWN_TIMEOUT_S = 15.0

_ANNOUNCE = re.compile(r"^esdb listening on (\S+)")
_HTTP_ANNOUNCE = re.compile(r"^esdb http on (\S+)")


def repo_root() -> Path:
    """The repository holding this client (the directory with protocol/PROTOCOL.md)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "protocol" / "PROTOCOL.md").is_file():
            return parent
    raise RuntimeError(f"no protocol/PROTOCOL.md above {here}")


def server_binary() -> Path:
    """``ESDB_BIN``, else ``target/debug/esdb`` under the repo root (built if missing)."""
    configured = os.environ.get("ESDB_BIN")
    if configured:
        path = Path(configured)
        if not path.is_absolute():
            path = (repo_root() / path) if (repo_root() / path).exists() else path.resolve()
        if not path.is_file():
            raise RuntimeError(f"ESDB_BIN={configured} is not a file")
        return path
    path = repo_root() / "target" / "debug" / "esdb"
    if not path.is_file():
        subprocess.run(["cargo", "build", "--bin", "esdb"], cwd=repo_root(), check=True)
    return path


def seed_unreadable_binary() -> Optional[Path]:
    """The server crate's test tool ``examples/seed_unreadable`` (run-tests.sh builds it when
    missing), or ``None`` when it is not built."""
    target = Path(os.environ.get("CARGO_TARGET_DIR") or repo_root() / "target")
    if not target.is_absolute():
        target = repo_root() / target
    path = target / "debug" / "examples" / "seed_unreadable"
    return path if path.is_file() else None


def seed_unreadable(data_dir: Path, stream: str, datas: Sequence[str], store: str = "default") -> None:
    """Appends events of type ``Seeded`` with these data (JSON text the protocol would refuse,
    as an older server might have stored it) to ``stream``, while no server runs on
    ``data_dir``."""
    binary = seed_unreadable_binary()
    assert binary is not None, "examples/seed_unreadable is not built"
    subprocess.run([str(binary), str(data_dir), store, stream, *datas], check=True, timeout=60)


class EsdbServer:
    """One server process over a data directory; restartable on the same port."""

    def __init__(self, binary: Path, data_dir: Path, extra_args: Sequence[str] = ()) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.extra_args = list(extra_args)
        self.process: Optional["subprocess.Popen[bytes]"] = None
        self.port = 0
        self.http_port = 0
        self._log: Optional[IO[bytes]] = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_address(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def start(self) -> "EsdbServer":
        assert self.process is None, "already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.data_dir.parent / f"{self.data_dir.name}.log", "ab")
        command: List[str] = [
            str(self.binary),
            "serve",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--http",
            "127.0.0.1:0",
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]
        # Restarting on the port just freed may race with nothing else: retry binding briefly.
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._log)
            addresses = self._read_announce(process, deadline)
            if addresses is not None:
                break
            process.kill()
            process.wait()
            if time.monotonic() > deadline:
                raise RuntimeError(f"esdb did not start: {command}")
            time.sleep(0.1)
        self.process = process
        listen, http = addresses
        self.port = int(listen.rsplit(":", 1)[1])
        self.http_port = int(http.rsplit(":", 1)[1])
        return self

    @staticmethod
    def _read_announce(process: "subprocess.Popen[bytes]", deadline: float) -> Optional[List[str]]:
        assert process.stdout is not None
        # Raw reads: a buffered reader would hide a second line already read from select().
        fd = process.stdout.fileno()
        pending = b""
        listen: Optional[str] = None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                if process.poll() is not None:
                    return None
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            pending += chunk
            *lines, rest = pending.split(b"\n")
            pending = rest
            for raw in lines:
                line = raw.decode("utf-8", "replace")
                match = _ANNOUNCE.match(line)
                if match:
                    listen = match.group(1)
                match = _HTTP_ANNOUNCE.match(line)
                if match and listen is not None:
                    return [listen, match.group(1)]
        return None

    def kill9(self) -> None:
        """SIGKILL: no clean shutdown."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self._close_process()

    def stop(self) -> None:
        """SIGTERM, then wait (SIGKILL if it takes too long)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=SHUTDOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self._close_process()

    def restart(self) -> "EsdbServer":
        """Starts again on the same port and data directory."""
        return self.start()

    def _close_process(self) -> None:
        assert self.process is not None
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def metrics(self) -> str:
        """The Prometheus metrics text from the HTTP port."""
        import urllib.request

        with urllib.request.urlopen(f"http://{self.http_address}/metrics", timeout=10) as reply:
            text: str = reply.read().decode("utf-8")
            return text
