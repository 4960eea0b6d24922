"""A view is stuck when it is behind and has not moved for the bound since it
fell behind: a quiet spell before a write is no sign of trouble (issue 26,
finding 4). The real app, API only (`serve --api-only`), on both stores."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

from aiohttp.test_utils import TestClient

from api.app import create_app
from domain.service import OrderService
from service.store import Store
from tests.conftest import INVENTORY, Api, FakeClock

QUIET_SECONDS: Final = 49.0
STUCK_AFTER: Final = 30.0


def quiet_for(store: Store, seconds: float) -> None:
    """Every view caught up with the log and last moved `seconds` ago."""
    store.catch_up()
    with store.views.writing() as cursor:
        cursor.execute(
            store.views.sql("UPDATE projection_tracking SET moved_at = ?"),
            (time.time() - seconds,),
        )


def written_now(store: Store, snid: str) -> None:
    """An order written by another process, not projected yet."""
    OrderService(store.app).request_transfer(
        source_project="proj-a",
        user="alice",
        snids=[snid],
        dest_project="proj-b",
        mailto=[],
    )


async def api_only(
    aiohttp_client: Any,
    store: Store,
    config_with: Any,
    clock: FakeClock,
    stuck_after: float = STUCK_AFTER,
) -> Api:
    OrderService(store.app, clock=clock).register_servers(INVENTORY)
    config = config_with(read_your_writes_timeout=0.2, ready_stuck_after=stuck_after)
    app = create_app(config, store=store, clock=clock, background=False)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    return Api(client=client, store=store, service=OrderService(store.app))


async def test_a_view_behind_by_a_fresh_write_after_a_quiet_spell_is_not_stuck(
    aiohttp_client: Any, store: Store, config_with: Any, clock: FakeClock
) -> None:
    # given a quiet spell longer than the bound, then a write the views lag behind
    api = await api_only(aiohttp_client, store, config_with, clock)
    quiet_for(store, QUIET_SECONDS)
    written_now(store, "SN-A-001")
    # when
    views = await views_check(api)
    status, body = await api.request(
        "tok-alice", "proj-a", {"snids": "SN-A-002", "dest_project": "proj-b"}
    )
    # then
    assert views["ok"] is True, views
    assert views["views"]["order_lists"]["lag_events"] > 0
    assert status == 200, body


async def test_a_view_behind_longer_than_the_bound_and_not_moving_is_stuck(
    aiohttp_client: Any, store: Store, config_with: Any, clock: FakeClock
) -> None:
    # given a write the views fall behind after a quiet spell, with a short bound
    api = await api_only(aiohttp_client, store, config_with, clock, stuck_after=1.0)
    quiet_for(store, QUIET_SECONDS)
    written_now(store, "SN-A-001")
    assert (await views_check(api))["ok"] is True
    head = api.head()
    # when the views stay behind past the bound
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10.0
    while (views := await views_check(api))["ok"] is not False:
        assert loop.time() < deadline, "the views were never called stuck"
        await asyncio.sleep(0.1)
    status, body = await api.request(
        "tok-alice", "proj-a", {"snids": "SN-A-002", "dest_project": "proj-b"}
    )
    # then
    assert "order_lists is stuck" in views["detail"]
    assert status == 503, body
    assert "nothing was written" in body["msg"]
    assert api.head() == head


async def views_check(api: Api) -> dict[str, Any]:
    """/readyz's views check (the NOTIFY listener has its own check)."""
    response = await api.client.get("/readyz")
    checks: dict[str, Any] = (await response.json())["checks"]
    return dict(checks["views"])
