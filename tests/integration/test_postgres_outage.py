"""A stopped PostgreSQL gives quick 503s and changes nothing; the service recovers
when it comes back, without a restart. Runs against a cluster of the test's own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from api.app import create_app
from domain.service import OrderService
from service.config import Config
from service.store import Store, open_store
from tests.conftest import INVENTORY, Api, FakeClock
from tests.integration.processes import ThrowawayPostgres

pytestmark = pytest.mark.postgres

# Generous: the point is "no hang", and the store's own timeouts are 5 seconds.
QUICK_SECONDS = 15


@pytest.fixture
async def outage_api(
    aiohttp_client: Any, throwaway_postgres: ThrowawayPostgres, config: Config
) -> AsyncIterator[tuple[Api, ThrowawayPostgres]]:
    store: Store = open_store(f"{throwaway_postgres.url}?schema=outage")
    service = OrderService(store.app)
    service.register_servers(INVENTORY)
    client = await aiohttp_client(create_app(config, store=store, clock=FakeClock()))
    yield Api(client=client, store=store, service=service), throwaway_postgres
    await client.close()  # stop the app's background work before the store closes
    store.close()


async def retried_until_served(
    call: Callable[[], Awaitable[tuple[int, dict[str, Any]]]], seconds: float = 20
) -> tuple[int, dict[str, Any]]:
    """Call again while the answer is 503, as a client honouring Retry-After would
    (more often than it says, to keep the test short), for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        status, body = await call()
        if status != 503 or time.monotonic() > deadline:
            return status, body
        await asyncio.sleep(0.2)


async def timed(call: Any) -> tuple[float, int, dict[str, Any]]:
    started = time.monotonic()
    status, body = await call
    return time.monotonic() - started, status, body


async def test_a_stopped_database_answers_503_quickly_and_changes_nothing(
    outage_api: tuple[Api, ThrowawayPostgres],
) -> None:
    api, cluster = outage_api
    # Given: a working service with one order
    status, _ = await api.request(
        "tok-alice", "proj-a", {"snids": "SN-A-001", "dest_project": "proj-b"}
    )
    assert status == 200

    # When: the database stops
    cluster.stop()

    # Then: writes and reads answer 503 with Retry-After, quickly
    for call in (
        api.request(
            "tok-alice", "proj-a", {"snids": "SN-A-002", "dest_project": "proj-b"}
        ),
        api.decide("tok-bob", "proj-b", {"order_ids": "1", "accept": 1}),
        api.list("tok-alice", "proj-a"),
    ):
        elapsed, status, body = await timed(call)
        assert status == 503, body
        assert body["code"] == 503
        assert "unavailable" in body["msg"]
        assert elapsed < QUICK_SECONDS

    # When: it starts again
    cluster.start()

    # Then: the service works again without a restart (a client retrying on 503,
    # as Retry-After invites, is served within seconds), and the failed requests
    # left nothing behind: the inbox holds the first order and the new one. (Its
    # number may skip some: a sequence gives them, and a crash moves it on.)
    status, body = await retried_until_served(
        lambda: api.request(
            "tok-alice", "proj-a", {"snids": "SN-A-002", "dest_project": "proj-b"}
        )
    )
    assert status == 200, body
    number = body["order_id"]
    assert number > 1
    status, body = await api.list("tok-bob", "proj-b", type=0)
    assert [(o["id"], o["state"]) for o in body["orders"]] == [
        (number, "unfinished"),
        (1, "unfinished"),
    ]
    assert api.owner("SN-A-001") == ("proj-a", 1)


async def test_retry_after_is_set_on_503(
    outage_api: tuple[Api, ThrowawayPostgres],
) -> None:
    api, cluster = outage_api
    cluster.stop()
    response = await api.client.get(api.url("proj-a"), headers=api.headers("tok-alice"))
    assert response.status == 503
    assert response.headers["Retry-After"].isdigit()
