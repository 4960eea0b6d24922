"""GET: the five lists, their order, paging, times and the shape of an order."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from api.context import FOLLOWING
from tests.api import given
from tests.api.conftest import ONE_BACKEND, MakeApi
from tests.conftest import Api, FakeClock

ORDER_FIELDS = {
    "id",
    "snids",
    "resource_project",
    "dest_project",
    "user",
    "state",
    "warnning_times",
    "create_at",
    "update_at",
}


@pytest.fixture
async def scene(api: Api) -> Api:
    """Four orders: proj-a to proj-b left open (1), accepted (2) and refused (3);
    proj-b to proj-a left open (4)."""
    await given.ordered(api, "SN-A-001")
    await given.ordered(api, "SN-A-002")
    await given.ordered(api, "SN-A-003")
    await given.ordered(
        api, "SN-B-001", dest="proj-a", token="tok-bob", tenant="proj-b"
    )
    await given.decided(api, [2], accept=True)
    await given.decided(api, [3], accept=False)
    return api


@pytest.mark.parametrize(
    ("token", "tenant", "expected"),
    [
        # proj-b: the destination of 1..3, the source of 4
        ("tok-bob", "proj-b", {0: [1], 1: [2], 2: [3], 3: [4], 4: [4, 3, 2, 1]}),
        # proj-a: the source of 1..3, the destination of 4
        ("tok-alice", "proj-a", {0: [4], 1: [], 2: [], 3: [3, 2, 1], 4: [4, 3, 2, 1]}),
        # proj-c: no part in any of them
        ("tok-carol", "proj-c", {0: [], 1: [], 2: [], 3: [], 4: []}),
    ],
    ids=["destination", "source", "unrelated"],
)
async def test_each_list_type_holds_the_tenants_orders_in_that_role_and_state(
    scene: Api, token: str, tenant: str, expected: dict[int, list[int]]
) -> None:
    # when
    lists = {t: await given.listed(scene, token, tenant, type=t) for t in range(5)}
    # then
    assert {t: given.ids(body) for t, body in lists.items()} == expected
    assert {t: body["total_count"] for t, body in lists.items()} == {
        t: len(ids) for t, ids in expected.items()
    }


async def test_a_missing_type_lists_all_of_the_tenants_orders(scene: Api) -> None:
    # when
    without_type = await given.listed(scene, "tok-bob", "proj-b")
    # then
    assert without_type == await given.listed(scene, "tok-bob", "proj-b", type=4)
    assert given.ids(without_type) == [4, 3, 2, 1]


@ONE_BACKEND
@pytest.mark.parametrize(
    "query",
    [
        "type=5",
        "type=-1",
        "type=x",
        "type=",
        "type=1.0",
        "type=%201",
        "type=%EF%BC%91",
        "type=1&type=1",
        "type=0&type=3",
    ],
    ids=[
        "5",
        "-1",
        "x",
        "empty",
        "1.0",
        "space-1",
        "fullwidth-1",
        "repeated",
        "two-types",
    ],
)
async def test_a_type_other_than_0_to_4_is_rejected(api: Api, query: str) -> None:
    # when
    response = await api.client.get(
        f"{api.url('proj-a')}?{query}", headers=api.headers("tok-alice")
    )
    # then
    assert response.status == 400
    body = await response.json()
    assert body["code"] == 400
    assert "'type'" in body["msg"]


async def test_orders_come_newest_first(api: Api) -> None:
    # given
    for snid in ("SN-A-005", "SN-A-001", "SN-A-003"):
        await given.ordered(api, snid)
    # when
    body = await given.listed(api, "tok-alice", "proj-a", type=3)
    # then
    assert given.ids(body) == [3, 2, 1]
    assert [o["snids"] for o in body["orders"]] == ["SN-A-003", "SN-A-001", "SN-A-005"]


# -- paging -----------------------------------------------------------------------


@pytest.fixture
async def five_orders(api: Api) -> Api:
    """proj-a has ordered five servers to proj-b, one order each (ids 1..5)."""
    for n in range(1, 6):
        await given.ordered(api, f"SN-A-{n:03d}")
    return api


@pytest.mark.parametrize(
    ("params", "expected", "next_marker"),
    [
        ({"limit": 2}, [5, 4], 4),
        ({"limit": 2, "marker": 4}, [3, 2], 2),
        ({"limit": 2, "marker": 2}, [1], None),
        ({"limit": 5}, [5, 4, 3, 2, 1], None),
        ({"marker": 3}, [2, 1], None),
        ({}, [5, 4, 3, 2, 1], None),
    ],
)
async def test_a_page_holds_the_orders_after_the_marker_and_says_if_more_remain(
    five_orders: Api,
    params: dict[str, int],
    expected: list[int],
    next_marker: int | None,
) -> None:
    # when
    body = await given.listed(five_orders, "tok-bob", "proj-b", type=0, **params)
    # then
    assert given.ids(body) == expected
    assert body.get("next_marker") == next_marker
    assert ("next_marker" in body) == (next_marker is not None)
    assert body["total_count"] == 5


async def test_following_next_marker_visits_every_order_once(five_orders: Api) -> None:
    # given
    seen: list[int] = []
    params: dict[str, int] = {"limit": 2}
    # when
    while True:
        body = await given.listed(five_orders, "tok-alice", "proj-a", **params)
        seen += given.ids(body)
        if "next_marker" not in body:
            break
        params["marker"] = body["next_marker"]
    # then
    assert seen == [5, 4, 3, 2, 1]


@ONE_BACKEND
async def test_without_a_limit_a_page_holds_at_most_1000_orders(api: Api) -> None:
    # given: 1001 orders from proj-a to proj-b, made through the service (quicker)
    snids = [f"SN-P-{n:04d}" for n in range(1, 1002)]
    api.service.register_servers([(snid, "proj-a") for snid in snids])
    for snid in snids:
        api.service.request_transfer(
            source_project="proj-a",
            user="alice",
            snids=[snid],
            dest_project="proj-b",
            mailto=[],
        )
    assert await api.client.app[FOLLOWING].caught_up(api.head(), 30)
    # when
    body = await given.listed(api, "tok-bob", "proj-b", type=0)
    # then
    assert body["total_count"] == 1001
    assert given.ids(body) == list(range(1001, 1, -1))
    assert body["next_marker"] == 2


@ONE_BACKEND
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("limit", "0"),
        ("limit", "1001"),
        ("limit", "x"),
        ("limit", ""),
        ("limit", "-1"),
        ("limit", "2.5"),
        ("limit", "+3"),
        ("marker", "x"),
        ("marker", "0"),
        ("marker", "-3"),
        ("marker", ""),
        ("marker", "9" * 30),
    ],
)
async def test_a_limit_or_marker_that_is_not_such_an_integer_is_rejected(
    api: Api, name: str, value: str
) -> None:
    # when
    status, body = await api.list("tok-alice", "proj-a", **{name: value})
    # then
    assert status == 400
    assert f"'{name}'" in body["msg"]


# -- times --------------------------------------------------------------------------


async def test_times_are_written_as_date_and_time_to_the_second(
    api: Api, clock: FakeClock
) -> None:
    # given: ordered at 09:00:00 UTC, accepted 25m 7s later
    order_id = await given.ordered(api, "SN-A-001")
    clock.advance(minutes=25, seconds=7, microseconds=900_000)
    await given.decided(api, [order_id], accept=True)
    # when
    (order,) = (await given.listed(api, "tok-bob", "proj-b", type=1))["orders"]
    # then
    assert order["create_at"] == "2026-11-27 09:00:00"
    assert order["update_at"] == "2026-11-27 09:25:07"


@ONE_BACKEND
async def test_times_are_shown_in_the_configured_time_zone(
    make_api: MakeApi,
) -> None:
    # given: PM_ORDER_TIMEZONE=Asia/Shanghai (UTC+8); ordered at 09:00:00 UTC
    api = await make_api(timezone=ZoneInfo("Asia/Shanghai"))
    await given.ordered(api, "SN-A-001")
    # when
    (order,) = (await given.listed(api, "tok-alice", "proj-a"))["orders"]
    # then
    assert order["create_at"] == "2026-11-27 17:00:00"
    assert order["update_at"] == "2026-11-27 17:00:00"


async def test_warnning_times_is_empty_while_no_warning_was_raised(api: Api) -> None:
    # given
    await given.ordered(api, "SN-A-001")
    # when
    (order,) = (await given.listed(api, "tok-bob", "proj-b", type=0))["orders"]
    # then
    assert order["warnning_times"] == ""
    assert order["warning_count"] == 0


async def test_warnning_times_is_the_time_of_the_latest_warning(
    api: Api, clock: FakeClock
) -> None:
    # given: an order left unanswered for two warning periods (PM_ORDER_WARN_AFTER=1h)
    order_id = await given.ordered(api, "SN-A-001")
    for _ in range(2):
        clock.advance(hours=1, minutes=5)
        # The app's own scheduler may raise the warning first; either way one is.
        api.service.raise_warning(order_id, every=timedelta(hours=1), most=3)
    assert await api.client.app[FOLLOWING].caught_up(api.head(), 10)
    # when
    (order,) = (await given.listed(api, "tok-bob", "proj-b", type=0))["orders"]
    # then
    assert order["warnning_times"] == "2026-11-27 11:10:00"
    assert order["update_at"] == "2026-11-27 11:10:00"
    assert order["warning_count"] == 2
    assert order["state"] == "unfinished"


# -- the order's JSON ---------------------------------------------------------------


async def test_an_order_has_exactly_the_contracts_fields_and_its_additions(
    api: Api,
) -> None:
    # given
    order_id = await given.ordered(api, ["SN-A-002", "SN-A-001"])
    # when
    (order,) = (await given.listed(api, "tok-alice", "proj-a"))["orders"]
    # then
    assert set(order) == ORDER_FIELDS | {"warning_count", "handled_by", "handled_at"}
    assert order == {
        "id": order_id,
        "snids": "SN-A-002,SN-A-001",
        "resource_project": "proj-a",
        "dest_project": "proj-b",
        "user": "alice",
        "state": "unfinished",
        "warnning_times": "",
        "create_at": "2026-11-27 09:00:00",
        "update_at": "2026-11-27 09:00:00",
        "warning_count": 0,
        "handled_by": "",
        "handled_at": "",
    }


async def test_a_decided_order_says_who_handled_it_and_when(
    api: Api, clock: FakeClock
) -> None:
    # given: an order, accepted by bob an hour later
    order_id = await given.ordered(api, "SN-A-001")
    clock.advance(hours=1)
    await given.decided(api, [order_id], accept=True)
    # when
    (order,) = (await given.listed(api, "tok-alice", "proj-a", type=3))["orders"]
    # then
    assert order["handled_by"] == "bob"
    assert order["handled_at"] == "2026-11-27 10:00:00"
    assert order["update_at"] == "2026-11-27 10:00:00"


@ONE_BACKEND
async def test_an_empty_list_has_no_orders_and_a_zero_count(api: Api) -> None:
    # when
    body = await given.listed(api, "tok-carol", "proj-c")
    # then
    assert body == {"code": 200, "msg": "", "total_count": 0, "orders": []}
