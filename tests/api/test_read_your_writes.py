"""A read that starts after a write's answer shows the write, whoever reads."""

from __future__ import annotations

from typing import Any

import aiohttp

from api.app import create_app
from domain.service import OrderService
from service.store import Store
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
