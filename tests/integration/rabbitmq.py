"""RabbitMQ for the notification tests: the machine's broker (never stopped), a
node of the test's own that it may stop and start, and the documented consumer
(examples/notification_consumer.py: oslo.messaging's notification listener)
run as a process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Final

import aiormq
import pytest

from notifications.settings import NotificationSettings
from tests.integration.processes import free_port, wait_until

ROOT: Final = Path(__file__).resolve().parents[2]
CONSUMER: Final = ROOT / "examples" / "notification_consumer.py"
# The machine's broker: CI's .ci/run installs and starts it where it is missing.
BROKER_URL: Final = os.environ.get(
    "PM_ORDER_TEST_TRANSPORT_URL", "rabbit://guest:guest@127.0.0.1:5672/"
)
RABBITMQ_BIN: Final = Path("/usr/lib/rabbitmq/bin")
NODE_START_SECONDS: Final = 120.0


def unique_topic() -> str:
    """A topic of the test's own: its queue holds only its notifications."""
    return f"pm-order-test-{uuid.uuid4().hex[:12]}"


def settings(url: str, topic: str) -> NotificationSettings:
    return NotificationSettings.from_url(url, topic=topic)


def need_broker(url: str = BROKER_URL) -> None:
    """Fail (not skip) when the broker does not answer: the tests need it."""
    try:
        asyncio.run(_ping(url))
    except Exception as error:  # noqa: BLE001 - any failure is "no broker"
        pytest.fail(f"no RabbitMQ at {url.split('@')[-1]}: {error!r}")


async def _ping(url: str) -> None:
    connection = await aiormq.connect(_amqp(url))
    await connection.close()


def delete_queue(url: str, topic: str) -> None:
    """Remove the test's queue from the broker."""

    async def delete() -> None:
        connection = await aiormq.connect(_amqp(url))
        channel = await connection.channel()
        await channel.queue_delete(f"{topic}.info")
        await connection.close()

    with contextlib.suppress(Exception):
        asyncio.run(delete())


def _amqp(url: str) -> str:
    return "amqp://" + url.removeprefix("rabbit://")


class Consumer:
    """The documented consumer, as a process: each notification once, a JSON line."""

    def __init__(self, url: str, topic: str, folder: Path) -> None:
        self.out_path = folder / f"consumer-{topic}.jsonl"
        self.err_path = folder / f"consumer-{topic}.log"
        self._out = self.out_path.open("wb")
        self._err = self.err_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, str(CONSUMER)],
            env={
                **os.environ,
                "PM_ORDER_TRANSPORT_URL": url,
                "PM_ORDER_NOTIFICATION_TOPIC": topic,
            },
            stdout=self._out,
            stderr=self._err,
        )
        wait_until(lambda: "listening" in self.log(), "the consumer to listen", 60)

    def log(self) -> str:
        if self.process.poll() is not None and "listening" not in self._read_err():
            raise RuntimeError(f"the consumer exited:\n{self._read_err()}")
        return self._read_err()

    def _read_err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def received(self) -> list[dict[str, Any]]:
        text = self.out_path.read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def wait_for(
        self, message_ids: set[str], seconds: float = 60.0
    ) -> list[dict[str, Any]]:
        """Every notification received once the expected ids all came."""

        def all_came() -> bool:
            self.log()
            return message_ids <= {m["message_id"] for m in self.received()}

        try:
            wait_until(all_came, f"{len(message_ids)} notifications", seconds)
        except TimeoutError:
            got = {m["message_id"] for m in self.received()}
            raise AssertionError(
                f"{len(message_ids - got)} of {len(message_ids)} never came; "
                f"consumer log:\n{self._read_err()[-3000:]}"
            ) from None
        return self.received()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._out.close()
        self._err.close()


class OwnRabbitNode:
    """A RabbitMQ node of the test's own (its own port, name and data), which it
    may stop and start; never the machine's."""

    def __init__(self) -> None:
        if not (RABBITMQ_BIN / "rabbitmq-server").exists():
            raise RuntimeError(f"RabbitMQ is not installed ({RABBITMQ_BIN})")
        self.folder = Path(tempfile.mkdtemp(prefix="pm-order-rabbit-"))
        self.port = free_port()
        self.name = f"pmordertest{self.port}@localhost"
        (self.folder / "enabled_plugins").write_text("[].\n")
        self.env = {
            **os.environ,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.folder / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.folder / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(self.folder / "pid"),
        }
        self._log = (self.folder / "server.log").open("wb")
        self.process = subprocess.Popen(
            [str(RABBITMQ_BIN / "rabbitmq-server")],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._ctl("wait", str(self.folder / "pid"), "--timeout", "120")

    @property
    def url(self) -> str:
        return f"rabbit://guest:guest@127.0.0.1:{self.port}/"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.name, *args],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=NODE_START_SECONDS,
        )

    def stop_broker(self) -> None:
        """The broker stops (its connections drop); the node's data stays."""
        self._ctl("stop_app")

    def start_broker(self) -> None:
        self._ctl("start_app")

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self._ctl("stop")
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()
        shutil.rmtree(self.folder, ignore_errors=True)
