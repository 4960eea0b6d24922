"""The limits on what a project may ask for: each refusal is the contract's error
JSON, says what the limit is, and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from service.config import Limits
from tests.api import given
from tests.api.conftest import ONE_BACKEND, MakeApi
from tests.api.test_authentication import error_body
from tests.conftest import Api


def limits(**changes: Any) -> Limits:
    return Limits(rate_per_second=None, **changes)


async def everything(api: Api) -> tuple[Any, ...]:
    """The log's head and every list of every project."""
    lists = []
    for token, tenant in (("tok-alice", "proj-a"), ("tok-bob", "proj-b")):
        for list_type in range(5):
            lists.append(await given.listed(api, token, tenant, type=list_type))
    return api.head(), lists


async def refused(
    api: Api, body: dict[str, Any], status: int, token: str = "tok-alice"
) -> str:
    """POST `body` as proj-a: refused with `status`, nothing changed; its msg."""
    before = await everything(api)
    response = await api.client.post(
        api.url("proj-a"), headers=api.headers(token), json=body
    )
    assert response.status == status
    msg = (await error_body(response))["msg"]
    assert await everything(api) == before
    return str(msg)


# -- unfinished orders per source project: 409 (the store matters: both) -----------


async def test_a_project_at_its_limit_of_unfinished_orders_gets_409(
    make_api: MakeApi,
) -> None:
    # given: proj-a may keep two orders waiting, and does
    api = await make_api(limits=limits(max_unfinished_orders=2))
    await given.ordered(api, "SN-A-001")
    await given.ordered(api, "SN-A-002", dest="proj-c")
    # when / then
    msg = await refused(api, {"snids": "SN-A-003", "dest_project": "proj-b"}, 409)
    assert msg == (
        "project proj-a has 2 unfinished orders and may have at most 2 waiting for "
        "a decision: wait until some are accepted or refused"
    )


async def test_a_decision_makes_room_for_another_order(make_api: MakeApi) -> None:
    api = await make_api(limits=limits(max_unfinished_orders=1))
    first = await given.ordered(api, "SN-A-001")
    await refused(api, {"snids": "SN-A-002", "dest_project": "proj-b"}, 409)
    await given.decided(api, [first], accept=False)
    await given.ordered(api, "SN-A-002")


async def test_orders_addressed_to_a_project_do_not_count_against_it(
    make_api: MakeApi,
) -> None:
    # given: at most one each; proj-b is asked for two orders and makes one
    api = await make_api(limits=limits(max_unfinished_orders=1))
    await given.ordered(api, "SN-A-001")
    await given.ordered(api, "SN-C-001", token="tok-carol", tenant="proj-c")
    await given.ordered(
        api, "SN-B-001", dest="proj-a", token="tok-bob", tenant="proj-b"
    )
    # then: proj-a is at its limit all the same
    await refused(api, {"snids": "SN-A-002", "dest_project": "proj-c"}, 409)


# -- servers per order, addresses per mailto, mail domains: 400 --------------------


@ONE_BACKEND
async def test_an_order_of_more_servers_than_allowed_is_400(make_api: MakeApi) -> None:
    api = await make_api(limits=limits(max_servers_per_order=3))
    await given.ordered(api, ["SN-A-001", "SN-A-002", "SN-A-003"])
    msg = await refused(
        api,
        {"snids": "SN-A-004,SN-A-005,SN-A-006,SN-A-007", "dest_project": "proj-b"},
        400,
    )
    assert msg == "'snids' names 4 servers: at most 3 per order"


@ONE_BACKEND
async def test_by_default_an_order_holds_at_most_the_contracts_200_servers(
    api: Api,
) -> None:
    snids = ",".join(f"SN-{n}" for n in range(201))
    msg = await refused(api, {"snids": snids, "dest_project": "proj-b"}, 400)
    assert msg == "'snids' names 201 servers: at most 200 per order"


@ONE_BACKEND
async def test_more_mailto_addresses_than_allowed_is_400(make_api: MakeApi) -> None:
    api = await make_api(limits=limits(max_mailto=2))
    body = {
        "snids": "SN-A-001",
        "dest_project": "proj-b",
        "mailto": "a@example.com,b@example.com,c@example.com",
    }
    assert await refused(api, body, 400) == "'mailto' has 3 addresses: at most 2"


@ONE_BACKEND
async def test_with_no_mailto_allowed_an_order_mails_nobody(make_api: MakeApi) -> None:
    api = await make_api(limits=limits(max_mailto=0))
    body = {"snids": "SN-A-001", "dest_project": "proj-b", "mailto": "a@example.com"}
    assert await refused(api, body, 400) == (
        "'mailto' must be empty: this service sends no mail to anyone"
    )
    status, _ = await api.request(
        "tok-alice", "proj-a", {"snids": "SN-A-001", "dest_project": "proj-b"}
    )
    assert status == 200


@ONE_BACKEND
@pytest.mark.parametrize(
    "address", ["x@example.org", "x@ops.example.com", "x@example.com.evil.net"]
)
async def test_an_address_outside_the_allowed_mail_domains_is_400_naming_it(
    make_api: MakeApi, address: str
) -> None:
    api = await make_api(limits=limits(mail_domains=frozenset({"example.com"})))
    body = {
        "snids": "SN-A-001",
        "dest_project": "proj-b",
        "mailto": f"ok@example.com,{address}",
    }
    msg = await refused(api, body, 400)
    assert msg == (
        f"'mailto' has {address!r}, outside the mail domains this service may send to"
    )


@ONE_BACKEND
async def test_addresses_in_the_allowed_mail_domains_are_taken_whatever_their_case(
    make_api: MakeApi,
) -> None:
    api = await make_api(
        limits=limits(mail_domains=frozenset({"example.com", "example.org"}))
    )
    body = {
        "snids": "SN-A-001",
        "dest_project": "proj-b",
        "mailto": "Ops@EXAMPLE.com,dev@example.org",
    }
    status, answer = await api.request("tok-alice", "proj-a", body)
    assert status == 200, answer
