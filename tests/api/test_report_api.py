"""GET /mana_api/pm_order_report/{tenant_id}: the caller's figures, as JSON.

The scenario, days in UTC:

    27th 09:00  1: proj-a -> proj-b, 2 servers  accepted 09:10        (600 s)
    27th 09:00  2: proj-a -> proj-c, 1 server   refused  28th 09:00 (86400 s)
    28th 09:00  3: proj-a -> proj-b, 1 server   unfinished, warned 10:00
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import ClientResponse

from api.context import FOLLOWING
from tests.api import given
from tests.conftest import Api, FakeClock

MISMATCH = (
    "Malformed request URL: URL's project_id 'proj-b' doesn't match "
    "Context's project_id 'proj-a'"
)


def report_url(api: Api, tenant: str) -> str:
    return f"{api.prefix}/pm_order_report/{tenant}"


async def get_report(
    api: Api, tenant: str, token: str | None = "tok-alice", **params: str
) -> ClientResponse:
    return await api.client.get(
        report_url(api, tenant), headers=api.headers(token), params=params
    )


async def report_body(api: Api, tenant: str, token: str, **params: str) -> Any:
    response = await get_report(api, tenant, token, **params)
    assert response.status == 200, await response.text()
    return await response.json()


@pytest.fixture
async def scenario(api: Api, clock: FakeClock) -> Api:
    """The orders of the module's docstring, through the API."""
    clock.now = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    first = await given.ordered(api, "SN-A-001,SN-A-002")
    second = await given.ordered(api, "SN-A-003", dest="proj-c")
    clock.now = datetime(2026, 11, 27, 9, 10, tzinfo=UTC)
    await given.decided(api, [first], accept=True)
    clock.now = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    await given.decided(api, [second], accept=False, token="tok-carol", tenant="proj-c")
    third = await given.ordered(api, "SN-A-004")
    clock.now = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    warned = api.service.raise_warning(third, every=timedelta(hours=1), most=3)
    # Warnings come from the scheduler, not a request: wait for the views here.
    assert await api.client.app[FOLLOWING].caught_up(warned.position, 10)
    return api


async def test_the_report_gives_the_caller_s_figures_per_utc_day(
    scenario: Api,
) -> None:
    # when
    body = await report_body(scenario, "proj-a", "tok-alice")
    # then
    assert body["code"] == 200
    assert body["msg"] == ""
    assert body["tenant_id"] == "proj-a"
    assert body["days"] == [
        {"day": "2026-11-27", "requested": 2, "accepted": 1, "refused": 1,
         "unfinished": 0, "servers_in": 0, "servers_out": 2, "warnings": 0},
        {"day": "2026-11-28", "requested": 1, "accepted": 0, "refused": 0,
         "unfinished": 1, "servers_in": 0, "servers_out": 0, "warnings": 1},
    ]  # fmt: skip


async def test_the_report_summarises_the_caller_s_project(scenario: Api) -> None:
    # when
    body = await report_body(scenario, "proj-a", "tok-alice")
    # then the median of 600 s and 86400 s, and their linear 95th percentile
    assert body["summary"] == {
        "requested": 3, "accepted": 1, "refused": 1, "unfinished": 1,
        "servers_in": 0, "servers_out": 2, "warnings": 1, "decisions": 2,
        "median_decision_seconds": 43500.0, "p95_decision_seconds": 82110.0,
    }  # fmt: skip


async def test_the_report_holds_only_the_caller_s_project(scenario: Api) -> None:
    # when
    body = await report_body(scenario, "proj-b", "tok-bob")
    # then proj-b requested nothing; it received order 1's two servers
    assert body["tenant_id"] == "proj-b"
    assert body["days"] == [
        {"day": "2026-11-27", "requested": 0, "accepted": 0, "refused": 0,
         "unfinished": 0, "servers_in": 2, "servers_out": 0, "warnings": 0},
    ]  # fmt: skip
    assert body["summary"]["servers_in"] == 2


async def test_since_and_until_bound_the_days(scenario: Api) -> None:
    # when
    body = await report_body(
        scenario, "proj-a", "tok-alice", since="2026-11-28", until="2026-11-28"
    )
    # then
    assert [day["day"] for day in body["days"]] == ["2026-11-28"]
    assert body["summary"]["requested"] == 1
    assert body["summary"]["median_decision_seconds"] is None


async def test_a_project_without_orders_gets_a_summary_of_zeros(api: Api) -> None:
    # when
    body = await report_body(api, "proj-c", "tok-carol")
    # then
    assert body["days"] == []
    assert body["summary"]["requested"] == 0
    assert body["summary"]["p95_decision_seconds"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"since": "2026-13-01"},
        {"until": "yesterday"},
        {"since": "20261127"},
        {"since": "2026-11-28", "until": "2026-11-27"},
    ],
    ids=["no-such-month", "not-a-date", "not-dashed", "since-after-until"],
)
async def test_a_malformed_day_range_is_a_bad_request(
    api: Api, params: dict[str, str]
) -> None:
    # when
    response = await get_report(api, "proj-a", **params)
    # then
    assert response.status == 400
    body = await response.json()
    assert set(body) == {"code", "msg", "reason"}
    assert body["code"] == 400


async def test_a_repeated_day_is_a_bad_request(api: Api) -> None:
    # when
    response = await api.client.get(
        report_url(api, "proj-a") + "?since=2026-11-27&since=2026-11-28",
        headers=api.headers("tok-alice"),
    )
    # then
    assert response.status == 400


# -- who may ask ----------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "tok-nobody", "tok-expired"])
async def test_the_report_needs_a_valid_token(api: Api, token: str | None) -> None:
    # when
    response = await get_report(api, "proj-a", token)
    # then
    assert response.status == 401
    assert response.headers["WWW-Authenticate"]


async def test_the_report_needs_the_sp_agent_header(api: Api) -> None:
    # when
    response = await api.client.get(
        report_url(api, "proj-a"), headers={"X-Auth-Token": "tok-alice"}
    )
    # then
    assert response.status == 400


async def test_the_report_of_another_project_is_refused(api: Api) -> None:
    # when
    response = await get_report(api, "proj-b", "tok-alice")
    # then
    assert response.status == 400
    assert await response.json() == {
        "code": 400,
        "msg": MISMATCH,
        "reason": "Unauthorized",
    }
