"""Real processes for integration tests: pm-order servers and workers, and a
throwaway PostgreSQL cluster the test owns (never the shared server)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Final

STARTUP_SECONDS: Final = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: object, what: str, seconds: float = STARTUP_SECONDS) -> None:
    """Poll `condition()` until true; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise TimeoutError(f"gave up waiting for {what}")


class PmOrderProcess:
    """`python -m cli ARGS` with its own environment and log file."""

    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        log_path: Path,
        *,
        cwd: Path | None = None,
    ) -> None:
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", *args],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, seconds: float = STARTUP_SECONDS) -> None:
        def seen() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.args} exited early:\n{self.log()}")
            return text in self.log()

        wait_until(seen, f"{text!r} in the log of {self.args}", seconds)

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()


class ApiServer(PmOrderProcess):
    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        api_only: bool = True,
        cwd: Path | None = None,
    ) -> None:
        self.port = free_port()
        args = ["serve", "--host", "127.0.0.1", "--port", str(self.port)]
        super().__init__(
            [*args, "--api-only"] if api_only else args, env, log_path, cwd=cwd
        )
        wait_until(self._answers, f"pm-order serve on port {self.port}")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"serve exited early:\n{self.log()}")
        try:
            with urllib.request.urlopen(
                f"{self.base_url}/mana_api/openapi.json", timeout=1
            ):
                return True
        except OSError:
            return False


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


class ThrowawayPostgres:
    """A PostgreSQL cluster in a temporary folder, on a free port, that tests may
    stop and start at will: a new one, or (`standby_of`) a streaming standby of
    another, made by `pg_basebackup -R`. `settings` are given to the server at
    each start; `port` is the one it listens on (a free one when not given);
    `checksums` makes a new cluster with data checksums (which
    pg_rewind needs, as it needs wal_log_hints otherwise)."""

    def __init__(
        self,
        *,
        settings: Mapping[str, str] | None = None,
        standby_of: ThrowawayPostgres | None = None,
        checksums: bool = False,
        port: int | None = None,
    ) -> None:
        bin_dir = _postgres_bin()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL server binaries are not installed")
        self.bin = bin_dir
        self.settings = dict(settings or {})
        self.folder = Path(tempfile.mkdtemp(prefix="pm-order-pg-"))
        self.data = self.folder / "data"
        self.port = port or free_port()
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        if standby_of is None:
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                *(["--data-checksums"] if checksums else []),
            )
        else:
            self._run(
                "pg_basebackup",
                "-D",
                str(self.data),
                "-d",
                standby_of.conninfo,
                "-R",
                "--checkpoint=fast",
                "--no-sync",
            )
        self.start()

    @property
    def conninfo(self) -> str:
        """libpq's keywords for this cluster alone (for replication and pg_rewind)."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def _run(self, tool: str, *args: str) -> None:
        finished = subprocess.run(
            _as_postgres([str(self.bin / tool), *args]),
            check=False,
            capture_output=True,
            text=True,
        )
        if finished.returncode != 0:
            raise RuntimeError(f"{tool} failed: {finished.stderr}")

    def promote(self) -> None:
        """Make this standby a primary (`pg_ctl promote`), waiting until it is."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "30", "promote")

    def rewind_as_standby_of(self, primary: ThrowawayPostgres) -> None:
        """Turn this stopped former primary into a standby of `primary`: undo what
        it wrote after their histories parted (pg_rewind, which needs data
        checksums or wal_log_hints), then follow `primary` (-R)."""
        # A promoted server writes its new timeline to its control file only at
        # its next checkpoint; until then pg_rewind sees one timeline, and
        # finds nothing to rewind.
        self._run("psql", "-d", primary.conninfo, "-c", "CHECKPOINT")
        self._run(
            "pg_rewind",
            "-D",
            str(self.data),
            f"--source-server={primary.conninfo}",
            "-R",
            "--no-sync",
        )
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        subprocess.run(
            _as_postgres(
                [
                    str(self.bin / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-w",
                    "-t",
                    "30",
                    "-l",
                    str(self.folder / "server.log"),
                    "-o",
                    f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
                    " -c fsync=off"
                    + "".join(f" -c {k}={v}" for k, v in self.settings.items()),
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        subprocess.run(
            _as_postgres(
                [
                    str(self.bin / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-w",
                    "-m",
                    "immediate",
                    "stop",
                ]
            ),
            check=False,
            capture_output=True,
        )

    def destroy(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.folder)


def run_pm_order(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m cli ARGS` to completion, with no PM_ORDER_* inherited."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PM_ORDER_")}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# The script `make install` installs, beside this interpreter.
PM_ORDER_SCRIPT: Final = Path(sys.executable).parent / "pm-order"


def run_installed_pm_order(
    *args: str, cwd: Path, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """The installed `pm-order` script to completion, as an operator runs it:
    no PM_ORDER_* (nor PGAPPNAME) inherited, `env` set."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PM_ORDER_")}
    clean.pop("PGAPPNAME", None)
    return subprocess.run(
        [str(PM_ORDER_SCRIPT), *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
