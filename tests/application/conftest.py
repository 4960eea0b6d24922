"""Application-test helpers: a small inventory, reading aggregates back, more stores."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from domain.server import Server, server_aggregate_id
from domain.service import OrderService
from service.store import Store, open_store
from tests.conftest import FakeClock

INVENTORY = [
    *((f"SN-A-{n}", "proj-a") for n in range(1, 7)),
    *((f"SN-B-{n}", "proj-b") for n in range(1, 4)),
    ("SN-C-1", "proj-c"),
]


@pytest.fixture
def registered(service: OrderService) -> OrderService:
    """The service with INVENTORY registered."""
    service.register_servers(INVENTORY)
    return service


@pytest.fixture
def history(registered: OrderService, clock: FakeClock) -> OrderService:
    """Orders 1..5 in every state, over three projects.

    1: proj-a -> proj-b, SN-A-1 and SN-A-2, accepted
    2: proj-a -> proj-c, SN-A-3, refused
    3: proj-a -> proj-b, SN-A-4, by ann, warned twice
    4: proj-a -> proj-b, SN-A-5, unfinished
    5: proj-b -> proj-a, SN-B-1, unfinished
    """
    accepted = request(registered, ["SN-A-1", "SN-A-2"])
    refused = request(registered, ["SN-A-3"], dest_project="proj-c")
    warned = request(registered, ["SN-A-4"], user="ann")
    request(registered, ["SN-A-5"])
    request(
        registered,
        ["SN-B-1"],
        source_project="proj-b",
        dest_project="proj-a",
        user="bob",
    )
    clock.advance(minutes=10)
    decide(registered, [accepted], accept=True)
    decide(registered, [refused], accept=False, project="proj-c")
    for _ in range(2):
        clock.advance(hours=1)
        registered.raise_warning(warned, every=timedelta(hours=1), most=3)
    return registered


def owner(store: Store, snid: str) -> tuple[str, int | None]:
    """(owning project, holding order) of a server, read from the event store."""
    server: object = store.app.repository.get(server_aggregate_id(snid))
    assert isinstance(server, Server)
    return server.project_id, server.order_id


def request(
    service: OrderService,
    snids: list[str],
    *,
    source_project: str = "proj-a",
    dest_project: str = "proj-b",
    user: str = "alice",
) -> int:
    """Request a transfer and return the new order's number."""
    written = service.request_transfer(
        source_project=source_project,
        user=user,
        snids=snids,
        dest_project=dest_project,
        mailto=[],
    )
    assert written.order_id is not None
    return written.order_id


def decide(
    service: OrderService,
    order_ids: list[int],
    *,
    accept: bool,
    project: str = "proj-b",
    roles: frozenset[str] = frozenset({"member"}),
) -> int:
    """Decide orders and return the log position that shows it."""
    return service.decide(
        project=project, user="bob", roles=roles, order_ids=order_ids, accept=accept
    ).position


@pytest.fixture
def reopen(store_url: str) -> Iterator[Callable[[], Store]]:
    """Open the test store again, as another process would; closed afterwards."""
    opened: list[Store] = []

    def _open() -> Store:
        opened.append(open_store(store_url))
        return opened[-1]

    yield _open
    for store in opened:
        store.close()
