"""Memory held for clients that do not take their answers (issue 26, finding 6):
bounded while they hold on, given back once they go. A real `pm-order serve`
process on a SQLite store of a thousand orders (a list page is 250 KiB), spoken
to over raw sockets that send requests and never read; its memory read from
/proc."""

from __future__ import annotations

import json
import select
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from domain.service import OrderService
from service.store import open_store
from tests.conftest import TOKENS
from tests.integration.processes import ApiServer, wait_until

ORDERS: Final = 1000
PAGE: Final = f"/mana_api/pm_order/proj-a?limit={ORDERS}"
HEADERS: Final = {"X-Auth-Token": "tok-alice", "Sp-Agent": "scloudm"}
REQUEST: Final = (
    f"GET {PAGE} HTTP/1.1\r\nHost: x\r\n"
    + "".join(f"{name}: {value}\r\n" for name, value in HEADERS.items())
    + "\r\n"
).encode()
SEND_BUFFER_MB: Final = 1
MiB: Final = 1024 * 1024
# Measured on this test (eight runs, three beside two busy processes on two
# cores): 300 such readers grew the process by 84 MiB before; by 0.1 to 2.4 MiB
# after, and it was back within 0.1 MiB once they closed. The margins leave
# room for a loaded machine, not for a third of 200 readers' 50 MiB of answers.
READERS: Final = 200
MOST_GROWTH: Final = 16 * MiB
GIVEN_BACK_WITHIN: Final = 8 * MiB


def _with_orders(database_url: str) -> None:
    """ORDERS unfinished orders of proj-a, one server each."""
    store = open_store(database_url)
    try:
        service = OrderService(store.app)
        snids = [f"SN-S-{n:04d}" for n in range(ORDERS)]
        service.register_servers([(snid, "proj-a") for snid in snids])
        requested = [
            service.request_transfer_later(
                source_project="proj-a",
                user="alice",
                snids=[snid],
                dest_project="proj-b",
                mailto=[],
            )
            for snid in snids
        ]
        for written in requested:
            written.result()
    finally:
        store.close()


class Server(ApiServer):
    """`pm-order serve` (its projectors too) on a store of ORDERS orders."""

    def __init__(self, tmp_path: Path) -> None:
        tokens = tmp_path / "tokens.json"
        tokens.write_text(json.dumps({"tokens": TOKENS}))
        database_url = f"sqlite:///{tmp_path / 'pm-order.sqlite3'}"
        _with_orders(database_url)
        env = {
            "PM_ORDER_DATABASE_URL": database_url,
            "PM_ORDER_TOKENS_FILE": str(tokens),
            "PM_ORDER_RATE_LIMIT": "off",
            "PM_ORDER_SEND_BUFFER_MB": str(SEND_BUFFER_MB),
            "PM_ORDER_SEND_TIMEOUT": "2s",
        }
        super().__init__(env, tmp_path / "serve.log", api_only=False, cwd=tmp_path)
        wait_until(lambda: self.orders_listed() == ORDERS, "the views caught up")

    def get(self, path: str) -> bytes:
        request = urllib.request.Request(self.base_url + path, headers=HEADERS)
        with urllib.request.urlopen(request, timeout=10) as answer:
            body: bytes = answer.read()
            return body

    def orders_listed(self) -> int:
        return len(json.loads(self.get(PAGE))["orders"])

    def rss(self) -> int:
        """The process's resident memory, in bytes."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc/PID/status")

    def metric(self, name: str) -> float:
        for line in self.get("/metrics").decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"no metric {name}")

    def warm(self) -> None:
        """Its working set for READERS connections at once (each with objects
        of its own) whose clients take their answers."""
        clients = [read_nothing(self.port) for _ in range(READERS)]
        for client in clients:
            with client:
                take_answer(client)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = Server(tmp_path_factory.mktemp("slow-readers"))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def readers() -> Iterator[list[socket.socket]]:
    connections: list[socket.socket] = []
    yield connections
    for connection in connections:
        connection.close()


def read_nothing(port: int, requests: int = 1) -> socket.socket:
    """A client that sends `requests` GETs of the page and takes nothing."""
    connection = socket.socket()
    # As small as the kernel allows: the server's writes stop at once.
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    connection.connect(("127.0.0.1", port))
    connection.sendall(REQUEST * requests)
    return connection


def take_answer(connection: socket.socket) -> None:
    """Read one whole answer (its headers and Content-Length bytes)."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += connection.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        body += connection.recv(65536)


def all_answered(connections: list[socket.socket]) -> bool:
    """Every connection has the start of an answer waiting for it."""
    _readable, _, _ = select.select(connections, [], [], 0)
    return len(_readable) == len(connections)


def test_memory_held_for_clients_not_reading_is_bounded_and_given_back(
    server: Server, readers: list[socket.socket]
) -> None:
    # given a server at its working set
    server.warm()
    baseline = server.rss()
    # when READERS clients ask for a 250 KiB page each and take none of it
    readers.extend(read_nothing(server.port) for _ in range(READERS))
    wait_until(lambda: all_answered(readers), "every reader answered", 30)
    held = server.rss()
    # then the process holds a bounded part of those 50 MiB of answers
    assert held - baseline < MOST_GROWTH, f"{(held - baseline) / MiB:.1f} MiB held"
    assert server.metric("pm_order_http_send_buffer_bytes") <= SEND_BUFFER_MB * MiB
    # and gives it back once they have gone
    for reader in readers:
        reader.close()
    wait_until(
        lambda: server.rss() - baseline < GIVEN_BACK_WITHIN,
        f"memory given back (baseline {baseline / MiB:.1f} MiB)",
        15,
    )


def test_a_client_taking_nothing_of_its_answers_is_disconnected_within_the_budget(
    server: Server, readers: list[socket.socket]
) -> None:
    # given clients that each ask for more pages than the kernel's send buffer
    # holds (it takes 2.8 MB of a connection's answers), so that the server
    # holds an answer for each, and the budget holds four
    closed_before = server.metric("pm_order_http_slow_clients_closed_total")
    readers.extend(read_nothing(server.port, requests=24) for _ in range(6))
    budget_kept = []

    def all_closed() -> bool:
        budget_kept.append(
            server.metric("pm_order_http_send_buffer_bytes") <= SEND_BUFFER_MB * MiB
        )
        closed = server.metric("pm_order_http_slow_clients_closed_total")
        return closed - closed_before == len(readers)

    # then each is closed once it has taken nothing for the send timeout,
    # and never more than the budget is held for them
    wait_until(all_closed, "every reader closed as too slow", 30)
    assert all(budget_kept)
    assert server.metric("pm_order_http_send_buffer_bytes") == 0
    assert server.metric("pm_order_http_send_buffer_refusals_total") > 0
