"""Fixtures for the HTTP contract tests: the app under another configuration."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.app import create_app
from domain.service import OrderService
from service.store import Store
from tests.conftest import INVENTORY, Api, FakeClock

MakeApi = Callable[..., Awaitable[Api]]

# For tests of how a request is read (headers, query, body, fields): the answer is
# given before the store is asked anything, so one backend is enough, and a
# PostgreSQL store costs half a second to set up. What the store does runs on both.
ONE_BACKEND = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


@pytest.fixture
async def make_api(
    aiohttp_client: Any, store: Store, config_with: Any, clock: FakeClock
) -> AsyncIterator[MakeApi]:
    """Build the real app with some settings changed: `await make_api(timezone=...)`.

    Like `api`, on the test store with INVENTORY registered; use one or the other
    in a test, never both (two apps would project into one store).
    """
    clients: list[TestClient[Any, Any]] = []

    async def make(**changes: Any) -> Api:
        service = OrderService(store.app, clock=clock)
        service.register_servers(INVENTORY)
        app = create_app(config_with(**changes), store=store, clock=clock)
        client = await aiohttp_client(app)
        clients.append(client)
        return Api(client=client, store=store, service=service)

    yield make
    for client in clients:
        await client.close()  # stop the app's background work before the store closes
