"""A real PgBouncer (Debian's package) in front of a PostgreSQL server, in the
mode docs/deployment-connections.md recommends: session pooling, pm-order's
startup `options` ignored (the read models' sessions set their settings
themselves)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.integration.processes import _as_postgres, free_port

BINARY_PLACES = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")


def pgbouncer_binary() -> str | None:
    found = shutil.which("pgbouncer")
    if found:
        return found
    return next((p for p in BINARY_PLACES if os.access(p, os.X_OK)), None)


class PgBouncer:
    """PgBouncer on a free loopback port, pooling every database of the server
    at `server_url` for its user (trust authentication, as the test cluster)."""

    def __init__(self, server_url: str, *, pool_mode: str = "session") -> None:
        binary = pgbouncer_binary()
        if binary is None:
            raise RuntimeError(
                "pgbouncer is not installed (Debian: apt-get install pgbouncer)"
            )
        server = urlsplit(server_url)
        self.user = server.username or "postgres"
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="pm-order-pgbouncer-"))
        self.pidfile = self.folder / "pgbouncer.pid"
        (self.folder / "users.txt").write_text(f'"{self.user}" ""\n')
        (self.folder / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={server.hostname} port={server.port or 5432}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.folder / 'users.txt'}\n"
            f"pool_mode = {pool_mode}\n"
            # pm-order sends statement_timeout, lock_timeout and search_path as
            # startup options too, which PgBouncer refuses unless ignored.
            "ignore_startup_parameters = options\n"
            "max_client_conn = 2000\n"
            "default_pool_size = 40\n"
            f"logfile = {self.folder / 'pgbouncer.log'}\n"
            f"pidfile = {self.pidfile}\n"
        )
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            for path in (self.folder, *self.folder.iterdir()):
                shutil.chown(path, "postgres", "postgres")
        started = subprocess.run(
            _as_postgres([binary, "-d", str(self.folder / "pgbouncer.ini")]),
            capture_output=True,
            text=True,
            check=False,
        )
        if started.returncode != 0:
            raise RuntimeError(f"pgbouncer did not start: {started.stderr.strip()}")
        self._wait_until_listening()

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.folder / "pgbouncer.log").read_text(errors="replace")
        return ""

    def _wait_until_listening(self) -> None:
        import socket

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"pgbouncer does not listen on {self.port}:\n{self.log()}")

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            pid = int(self.pidfile.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                os.kill(pid, 0)  # OSError once it has gone
                time.sleep(0.05)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.folder)
