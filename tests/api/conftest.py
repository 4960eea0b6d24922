"""Fixtures for the HTTP contract tests: the app under another configuration."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from api.app import create_app
from domain.service import OrderService
from pm_order.store import Store
from tests.conftest import INVENTORY, Api, FakeClock

MakeApi = Callable[..., Awaitable[Api]]


@pytest.fixture
def make_api(
    aiohttp_client: Any, store: Store, config_with: Any, clock: FakeClock
) -> MakeApi:
    """Build the real app with some settings changed: `await make_api(timezone=...)`.

    Like `api`, on the test store with INVENTORY registered; use one or the other
    in a test, never both (two apps would project into the same views).
    """

    async def make(**changes: Any) -> Api:
        service = OrderService(store.app, clock=clock)
        service.register_servers(INVENTORY)
        app = create_app(config_with(**changes), store=store, clock=clock)
        client = await aiohttp_client(app)
        return Api(client=client, store=store, service=service)

    return make


@pytest.fixture(autouse=True)
def _store_outlives_the_app(store: Store) -> Store:
    """Open the store before the app's client, so it is closed after the app.

    `api` asks for `aiohttp_client` before `store`; pytest tears fixtures down in
    reverse, so without this the store would be closed while the app's projector
    threads still use it (a segfault on SQLite).
    """
    return store
