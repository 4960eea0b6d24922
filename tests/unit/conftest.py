"""Unit-test helpers: aggregates built in memory, no store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.order import Order
from domain.server import Server

T0 = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)


def new_order(number: int = 7, at: datetime = T0) -> Order:
    """An unfinished order with its Requested event already collected."""
    order = Order(
        number=number,
        snids=["SN-2", "SN-1"],
        resource_project="proj-a",
        dest_project="proj-b",
        user="alice",
        mailto=["ops@example.com"],
        at=at,
    )
    order.collect_events()
    return order


def new_server(snid: str = "SN-1", project_id: str = "proj-a") -> Server:
    """A registered, free server with its Registered event already collected."""
    server = Server(snid=snid, project_id=project_id, at=T0)
    server.collect_events()
    return server


@pytest.fixture
def order() -> Order:
    return new_order()


@pytest.fixture
def server() -> Server:
    return new_server()
