"""A read that starts after a write's answer shows the write, whoever reads."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from api.app import create_app
from domain.service import OrderService
from projections.order_lists import OrderLists
from service.store import Store, open_store
from tests.api import given
from tests.conftest import INVENTORY, Api, FakeClock


async def test_a_request_shows_at_once_in_both_projects_lists(api: Api) -> None:
    # when
    order_id = await given.ordered(api, "SN-A-001")
    # then
    assert given.ids(await given.listed(api, "tok-alice", "proj-a", type=3)) == [
        order_id
    ]
    assert given.ids(await given.listed(api, "tok-bob", "proj-b", type=0)) == [order_id]


async def test_an_acceptance_shows_at_once_in_both_projects_lists(api: Api) -> None:
    # given
    order_id = await given.ordered(api, "SN-A-001")
    # when
    await given.decided(api, [order_id], accept=True)
    # then
    inbox = await given.listed(api, "tok-bob", "proj-b", type=0)
    accepted = await given.listed(api, "tok-bill", "proj-b", type=1)
    initiated = await given.listed(api, "tok-alice", "proj-a", type=3)
    assert (inbox["total_count"], given.ids(inbox)) == (0, [])
    assert (accepted["total_count"], given.ids(accepted)) == (1, [order_id])
    assert given.state_of(initiated, order_id) == "finished"


async def test_a_refusal_shows_at_once_in_both_projects_lists(api: Api) -> None:
    # given
    order_id = await given.ordered(api, "SN-A-001")
    # when
    await given.decided(api, [order_id], accept=False)
    # then
    refused = await given.listed(api, "tok-bob", "proj-b", type=2)
    initiated = await given.listed(api, "tok-alice", "proj-a", type=3)
    assert given.ids(refused) == [order_id]
    assert given.state_of(initiated, order_id) == "refused"


async def test_every_write_in_a_quick_series_shows_in_the_next_read(api: Api) -> None:
    for n in range(1, 9):
        # when
        order_id = await given.ordered(api, f"SN-A-{n:03d}")
        # then
        body = await given.listed(api, "tok-bob", "proj-b", type=0)
        assert (body["total_count"], given.ids(body)) == (1, [order_id])
        # when
        await given.decided(api, [order_id], accept=n % 2 == 1)
        # then
        body = await given.listed(api, "tok-bob", "proj-b", type=0)
        assert body["total_count"] == 0
        body = await given.listed(api, "tok-alice", "proj-a", type=3, limit=1)
        assert given.state_of(body, order_id) == ("finished" if n % 2 else "refused")


async def test_a_write_shows_to_a_client_on_another_connection(api: Api) -> None:
    # given: a second HTTP client of its own, sharing nothing with the first
    url = api.client.make_url(api.url("proj-b"))
    async with aiohttp.ClientSession() as other:
        # when
        order_id = await given.ordered(api, "SN-A-001")
        async with other.get(
            url, headers=api.headers("tok-bob"), params={"type": "0"}
        ) as response:
            # then
            assert response.status == 200
            assert given.ids(await response.json()) == [order_id]
        # when
        async with other.put(
            url,
            headers=api.headers("tok-bob"),
            json={"order_ids": [order_id], "accept": 1},
        ) as response:
            assert response.status == 200
        # then
        body = await given.listed(api, "tok-alice", "proj-a", type=3)
        assert given.state_of(body, order_id) == "finished"


async def test_an_api_only_process_refuses_writes_while_no_process_projects(
    aiohttp_client: Any, store: Store, config_with: Any, clock: FakeClock
) -> None:
    # given: an API-only process (`serve --api-only`) and no worker anywhere: the
    # views stay behind the log (issue 16, finding 7: each write's answer waited
    # 10 s for them, then said 200 while no list showed it)
    service = OrderService(store.app, clock=clock)
    service.register_servers(INVENTORY)
    # (stuck: behind, and not moved since the tables were made)
    config = config_with(read_your_writes_timeout=0.5, ready_stuck_after=0.0)
    app = create_app(config, store=store, clock=clock, background=False)
    client = await aiohttp_client(app)
    api = Api(client=client, store=store, service=service)
    head = api.head()
    # when
    status, body = await api.request(
        "tok-alice", "proj-a", {"snids": "SN-A-001", "dest_project": "proj-b"}
    )
    # then: refused plainly, nothing written
    assert (status, body["code"]) == (503, 503)
    assert "start `pm-order worker`" in body["msg"]
    assert "nothing was written" in body["msg"]
    assert api.head() == head
    status, body = await api.decide(
        "tok-bob", "proj-b", {"order_ids": "1", "accept": 1}
    )
    assert status == 503
    # and /readyz says what to run
    response = await client.get("/readyz")
    ready = await response.json()
    assert response.status == 503
    assert "this process is API only" in ready["checks"]["views"]["detail"]
    assert "`pm-order worker`" in ready["msg"]
    await client.close()


async def test_a_release_whose_read_models_are_being_built_serves_nothing_yet(
    aiohttp_client: Any,
    store: Store,
    store_url: str,
    config_with: Any,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given: a store with history, opened by a release whose order lists fold
    # otherwise (a new generation), as an API-only process: nobody builds it yet
    service = OrderService(store.app, clock=clock)
    service.register_servers(INVENTORY)
    store.catch_up()
    monkeypatch.setattr(OrderLists, "fold_version", OrderLists.fold_version + 1)
    newer = open_store(store_url)
    try:
        app = create_app(config_with(), store=newer, clock=clock, background=False)
        client = await aiohttp_client(app)
        api = Api(client=client, store=newer, service=service)
        head = api.head()
        # when: a client asks it anything
        listed = await client.get(api.url("proj-a"), headers=api.headers("tok-alice"))
        status, body = await api.request(
            "tok-alice", "proj-a", {"snids": "SN-A-001", "dest_project": "proj-b"}
        )
        # then: 503, nothing written, and /readyz says why
        assert listed.status == 503
        assert "building its read models" in (await listed.json())["msg"]
        assert (status, body["code"]) == (503, 503)
        assert "nothing was written" in body["msg"]
        assert api.head() == head
        response = await client.get("/readyz")
        ready = await response.json()
        assert response.status == 503
        assert "generation" in ready["failed"]
        assert (
            f"generation {newer.generation}" in ready["checks"]["generation"]["detail"]
        )
        # when: its worker has built it
        newer.catch_up()
        # then: it serves, as soon as it learns so
        deadline = asyncio.get_running_loop().time() + 10
        while (await client.get("/readyz")).status != 200:
            assert asyncio.get_running_loop().time() < deadline, "never ready"
            await asyncio.sleep(0.05)
        listed = await client.get(api.url("proj-a"), headers=api.headers("tok-alice"))
        assert listed.status == 200
        await client.close()
    finally:
        newer.close()
