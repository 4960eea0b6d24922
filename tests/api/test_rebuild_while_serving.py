"""A view rebuilt while the API serves: no request fails or sees half a view."""

from __future__ import annotations

import asyncio
import threading

from projections import rebuild as rebuilding
from tests.conftest import Api

ORDERS_BEFORE = 40


async def test_requests_during_a_rebuild_all_succeed_and_see_whole_lists(
    api: Api,
) -> None:
    # Given: forty orders from proj-a (servers ordered, refused, ordered again)
    for n in range(ORDERS_BEFORE):
        status, body = await api.request(
            "tok-alice",
            "proj-a",
            {"snids": f"SN-A-{n % 10 + 1:03d}", "dest_project": "proj-b"},
        )
        assert status == 200, body
        status, body = await api.decide(
            "tok-bob", "proj-b", {"order_ids": [body["order_id"]], "accept": 0}
        )
        assert status == 200, body
    store = api.store
    loop = asyncio.get_running_loop()
    halfway, go_on = threading.Event(), threading.Event()

    def pause_once_built(_: int) -> None:
        # The rebuild holds here, its fresh tables built and not yet switched in,
        # until the clients below have been served meanwhile.
        if not halfway.is_set():
            halfway.set()
            assert go_on.wait(30)

    # When: the order lists are rebuilt in another thread while clients keep going
    rebuilding_done = loop.run_in_executor(
        None,
        rebuilding.rebuild,
        store.app.recorder,
        store.app.mapper,
        store.views,
        store.order_lists,
        pause_once_built,
    )
    assert await loop.run_in_executor(None, halfway.wait, 30)
    created = ORDERS_BEFORE

    async def order_and_list() -> None:
        nonlocal created
        status, body = await api.request(
            "tok-alice",
            "proj-a",
            {"snids": f"SN-A-{created % 10 + 1:03d}", "dest_project": "proj-c"},
        )
        assert status == 200, body
        created += 1
        # proj-c refuses it, so the server is free for the rounds that follow
        status, refused = await api.decide(
            "tok-carol", "proj-c", {"order_ids": [body["order_id"]], "accept": 0}
        )
        assert status == 200, refused
        status, body = await api.list("tok-alice", "proj-a", type=3)
        # Then: every list is whole: exactly the orders answered so far
        assert status == 200, body
        assert body["total_count"] == created
        assert len(body["orders"]) == created

    for _ in range(3):
        await order_and_list()  # while the rebuild is half-way
    go_on.set()
    while not rebuilding_done.done():
        await order_and_list()  # while it catches up and switches
        if created >= ORDERS_BEFORE + 10:
            break
    await rebuilding_done
    await order_and_list()  # after the switch

    # and the rebuilt view is the one a recomputation gives
    assert (
        rebuilding.verify(
            store.app.recorder, store.app.mapper, store.views, store.order_lists
        )
        == []
    )
