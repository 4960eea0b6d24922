"""Out of file descriptors (issue 26, finding 6): `pm-order serve` raises its
soft limit to the hard one and says so; when stalled connections use up even
that, new ones are shed at once (not left waiting) and the log gets one line,
not a traceback per failed accept. A real server process under a low limit."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from tests.conftest import TOKENS
from tests.integration.processes import free_port, wait_until

LIMITED: Final = (
    "import resource, runpy, sys;"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[2])));"
    "sys.argv = ['pm-order', *sys.argv[3:]];"
    "runpy.run_module('cli', run_name='__main__')"
)
STALLED: Final = 200


class LimitedServer:
    """`pm-order serve` with the open-files limit (soft, hard) given."""

    def __init__(self, tmp_path: Path, soft: int, hard: int) -> None:
        tokens = tmp_path / "tokens.json"
        tokens.write_text(json.dumps({"tokens": TOKENS}))
        self.port = free_port()
        self.log_path = tmp_path / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PM_ORDER_")}
        env.update(
            PM_ORDER_TOKENS_FILE=str(tokens),
            PM_ORDER_DATABASE_URL=f"sqlite:///{tmp_path / 'pm-order.sqlite3'}",
            PM_ORDER_CLIENT_TIMEOUT="60s",
        )
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", LIMITED, str(soft), str(hard),
                 "--log-format", "text", "serve", "--api-only",
                 "--host", "127.0.0.1", "--port", str(self.port)],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_until(self._answers, "pm-order serve answering")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"serve exited early:\n{self.log()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                return s.recv(12).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def stalled() -> Iterator[list[socket.socket]]:
    connections: list[socket.socket] = []
    yield connections
    for connection in connections:
        connection.close()


def test_serve_raises_its_soft_descriptor_limit_to_the_hard_one(
    tmp_path: Path,
) -> None:
    server = LimitedServer(tmp_path, soft=256, hard=512)
    try:
        assert "open files: at most 512 (the soft limit, 256, raised)" in server.log()
    finally:
        server.stop()


async def test_out_of_descriptors_new_connections_are_shed_with_one_log_line(
    tmp_path: Path, stalled: list[socket.socket]
) -> None:
    # given a server whose descriptors stalled connections have used up
    server = LimitedServer(tmp_path, soft=96, hard=96)
    try:
        for _ in range(STALLED):
            stalled.append(socket.create_connection(("127.0.0.1", server.port)))
        # when new clients come, for a few seconds
        loop = asyncio.get_running_loop()
        answers = []
        for _ in range(5):
            started = loop.time()
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                async with asyncio.timeout(5):
                    answers.append((await reader.read(), loop.time() - started))
            except ConnectionResetError:
                answers.append((b"", loop.time() - started))
            finally:
                writer.close()
        # then each is told at once (shed, or answered once a descriptor is free)
        assert all(waited < 5 for _answer, waited in answers)
        log = server.log()
        # (uvloop, which `serve` runs on, sheds them itself, silently: libuv
        # keeps a spare descriptor for it; on asyncio's loop api/server.py does,
        # and says so once a minute)
        assert log.count("out of file descriptors") <= 2
        assert "Traceback" not in log
        assert "socket.accept() out of system resource" not in log
    finally:
        server.stop()
