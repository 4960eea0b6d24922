"""PUT: the destination accepts or refuses orders, all or none."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api import given
from tests.api.conftest import ONE_BACKEND, MakeApi
from tests.conftest import Api

APPROVERS = frozenset({"approver"})


async def owners(api: Api, *snids: str) -> list[tuple[str, int | None]]:
    return [api.owner(snid) for snid in snids]


# -- the effect ---------------------------------------------------------------------


async def test_accepting_moves_every_server_to_the_destination(api: Api) -> None:
    # given
    order_id = await given.ordered(api, "SN-A-001,SN-A-002")
    # when
    status, body = await api.decide(
        "tok-bob", "proj-b", {"order_ids": str(order_id), "accept": 1}
    )
    # then
    assert status == 200
    assert body == {"code": 200, "msg": "Order processing success"}
    assert await owners(api, "SN-A-001", "SN-A-002") == [("proj-b", None)] * 2
    listing = await given.listed(api, "tok-bob", "proj-b", type=1)
    assert given.ids(listing) == [order_id]
    assert given.state_of(listing, order_id) == "finished"


async def test_refusing_returns_servers_to_the_source(api: Api) -> None:
    # given
    order_id = await given.ordered(api, "SN-A-001,SN-A-002")
    # when
    status, body = await api.decide(
        "tok-bob", "proj-b", {"order_ids": str(order_id), "accept": 0}
    )
    # then
    assert status == 200
    assert body == {"code": 200, "msg": "Order processing success"}
    assert await owners(api, "SN-A-001", "SN-A-002") == [("proj-a", None)] * 2
    listing = await given.listed(api, "tok-bob", "proj-b", type=2)
    assert given.state_of(listing, order_id) == "refused"


async def test_refused_servers_can_be_ordered_again_by_the_source(api: Api) -> None:
    # given
    refused = await given.ordered(api, "SN-A-001")
    await given.decided(api, [refused], accept=False)
    # when
    again = await given.ordered(api, "SN-A-001", dest="proj-c")
    # then
    assert api.owner("SN-A-001") == ("proj-a", again)


async def test_accepted_servers_can_be_ordered_again_by_the_destination_only(
    api: Api,
) -> None:
    # given
    accepted = await given.ordered(api, "SN-A-001")
    await given.decided(api, [accepted], accept=True)
    # when
    status_for_source, _ = await api.request(
        "tok-alice", "proj-a", {"snids": "SN-A-001", "dest_project": "proj-c"}
    )
    again = await given.ordered(
        api, "SN-A-001", dest="proj-c", token="tok-bob", tenant="proj-b"
    )
    # then
    assert status_for_source == 400
    assert api.owner("SN-A-001") == ("proj-b", again)


async def test_a_batch_decides_every_order_in_it(api: Api) -> None:
    # given
    first = await given.ordered(api, "SN-A-001")
    second = await given.ordered(api, "SN-A-002,SN-A-003")
    # when
    status, _ = await api.decide(
        "tok-bob", "proj-b", {"order_ids": f"{first},{second}", "accept": 1}
    )
    # then
    assert status == 200
    assert (
        await owners(api, "SN-A-001", "SN-A-002", "SN-A-003") == [("proj-b", None)] * 3
    )


# -- who decides ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "tenant"),
    [("tok-alice", "proj-a"), ("tok-carol", "proj-c")],
    ids=["source", "unrelated"],
)
async def test_only_the_destination_decides(api: Api, token: str, tenant: str) -> None:
    # given
    order_id = await given.ordered(api, "SN-A-001")
    head = api.head()
    # when
    status, body = await api.decide(
        token, tenant, {"order_ids": [order_id], "accept": 1}
    )
    # then
    assert status == 404
    assert body["reason"] == "Not Found"
    assert str(order_id) in body["msg"]
    assert api.head() == head
    assert api.owner("SN-A-001") == ("proj-a", order_id)


async def test_unknown_order_ids_are_404_naming_them(api: Api) -> None:
    # given
    order_id = await given.ordered(api, "SN-A-001")
    head = api.head()
    # when
    status, body = await api.decide(
        "tok-bob", "proj-b", {"order_ids": [order_id, 99, 1000], "accept": 1}
    )
    # then
    assert status == 404
    assert "99" in body["msg"]
    assert "1000" in body["msg"]
    assert api.head() == head
    assert api.owner("SN-A-001") == ("proj-a", order_id)


async def test_roles_are_required_where_approver_roles_are_configured(
    make_api: MakeApi,
) -> None:
    # given: only "approver" may decide; tok-bill is a member of proj-b, tok-bob an
    # approver
    api = await make_api(approver_roles=APPROVERS)
    order_id = await given.ordered(api, "SN-A-001")
    head = api.head()
    # when
    by_member = await api.decide(
        "tok-bill", "proj-b", {"order_ids": [order_id], "accept": 1}
    )
    unchanged = (api.head(), api.owner("SN-A-001"))
    by_approver = await api.decide(
        "tok-bob", "proj-b", {"order_ids": [order_id], "accept": 1}
    )
    # then
    assert by_member[0] == 403
    assert by_member[1]["reason"] == "Forbidden"
    assert "approver" in by_member[1]["msg"]
    assert unchanged == (head, ("proj-a", order_id))
    assert by_approver[0] == 200
    assert api.owner("SN-A-001") == ("proj-b", None)


async def test_without_approver_roles_any_member_of_the_destination_decides(
    api: Api,
) -> None:
    # given
    order_id = await given.ordered(api, "SN-A-001")
    # when
    status, _ = await api.decide(
        "tok-bill", "proj-b", {"order_ids": [order_id], "accept": 0}
    )
    # then
    assert status == 200


# -- all or nothing -----------------------------------------------------------------


async def test_a_batch_with_an_order_of_another_project_changes_nothing(
    api: Api,
) -> None:
    # given: orders 1 and 2 go to proj-b, order 3 to proj-c
    await given.ordered(api, "SN-A-001")
    await given.ordered(api, "SN-A-002")
    await given.ordered(api, "SN-A-003", dest="proj-c")
    head = api.head()
    # when
    status, body = await api.decide(
        "tok-bob", "proj-b", {"order_ids": "1,2,3", "accept": 1}
    )
    # then
    assert status == 404
    assert body["msg"].endswith(": 3")
    assert api.head() == head
    assert await owners(api, "SN-A-001", "SN-A-002", "SN-A-003") == [
        ("proj-a", 1),
        ("proj-a", 2),
        ("proj-a", 3),
    ]
    assert given.ids(await given.listed(api, "tok-bob", "proj-b", type=0)) == [2, 1]


async def test_a_batch_with_an_order_decided_the_other_way_changes_nothing(
    api: Api,
) -> None:
    # given: orders 1 and 2 are open, order 3 was refused
    await given.ordered(api, "SN-A-001")
    await given.ordered(api, "SN-A-002")
    await given.ordered(api, "SN-A-003")
    await given.decided(api, [3], accept=False)
    head = api.head()
    # when
    status, body = await api.decide(
        "tok-bob", "proj-b", {"order_ids": [1, 2, 3], "accept": 1}
    )
    # then
    assert status == 409
    assert body["reason"] == "Conflict"
    assert "3" in body["msg"]
    assert api.head() == head
    assert await owners(api, "SN-A-001", "SN-A-002", "SN-A-003") == [
        ("proj-a", 1),
        ("proj-a", 2),
        ("proj-a", None),
    ]
    assert given.ids(await given.listed(api, "tok-bob", "proj-b", type=0)) == [2, 1]


# -- repeats ------------------------------------------------------------------------


@pytest.mark.parametrize("accept", [1, 0], ids=["accept", "refuse"])
async def test_repeating_a_decision_succeeds_and_changes_nothing(
    api: Api, accept: int
) -> None:
    # given
    order_id = await given.ordered(api, "SN-A-001")
    await given.decided(api, [order_id], accept=bool(accept))
    head, lists = api.head(), await given.listed(api, "tok-bob", "proj-b")
    owner = api.owner("SN-A-001")
    # when
    status, body = await api.decide(
        "tok-bob", "proj-b", {"order_ids": [order_id], "accept": accept}
    )
    # then
    assert status == 200
    assert body == {"code": 200, "msg": "Order processing success"}
    assert api.head() == head
    assert await given.listed(api, "tok-bob", "proj-b") == lists
    assert api.owner("SN-A-001") == owner


@pytest.mark.parametrize(
    ("first", "then"),
    [(1, 0), (0, 1)],
    ids=["refusing-an-accepted", "accepting-a-refused"],
)
async def test_deciding_an_order_the_other_way_is_409(
    api: Api, first: int, then: int
) -> None:
    # given
    order_id = await given.ordered(api, "SN-A-001")
    await given.decided(api, [order_id], accept=bool(first))
    head, owner = api.head(), api.owner("SN-A-001")
    # when
    status, body = await api.decide(
        "tok-bob", "proj-b", {"order_ids": [order_id], "accept": then}
    )
    # then
    assert status == 409
    assert str(order_id) in body["msg"]
    assert api.head() == head
    assert api.owner("SN-A-001") == owner


async def test_a_batch_may_mix_open_orders_and_orders_already_so_decided(
    api: Api,
) -> None:
    # given
    await given.ordered(api, "SN-A-001")
    await given.ordered(api, "SN-A-002")
    await given.decided(api, [1], accept=True)
    # when
    status, _ = await api.decide(
        "tok-bob", "proj-b", {"order_ids": [1, 2], "accept": 1}
    )
    # then
    assert status == 200
    assert await owners(api, "SN-A-001", "SN-A-002") == [("proj-b", None)] * 2


# -- which problem answers ----------------------------------------------------------


async def test_a_missing_role_answers_before_unknown_orders(make_api: MakeApi) -> None:
    # given
    api = await make_api(approver_roles=APPROVERS)
    # when
    status, _ = await api.decide("tok-bill", "proj-b", {"order_ids": [42], "accept": 1})
    # then
    assert status == 403


async def test_unknown_orders_answer_before_orders_decided_the_other_way(
    api: Api,
) -> None:
    # given
    order_id = await given.ordered(api, "SN-A-001")
    await given.decided(api, [order_id], accept=True)
    # when
    status, body = await api.decide(
        "tok-bob", "proj-b", {"order_ids": [order_id, 42], "accept": 0}
    )
    # then
    assert status == 404
    assert "42" in body["msg"]


# -- reading the body ---------------------------------------------------------------


@ONE_BACKEND
@pytest.mark.parametrize(
    ("accept", "state"),
    [(1, "finished"), (0, "refused"), ("1", "finished"), ("0", "refused")],
    ids=["1", "0", "string-1", "string-0"],
)
async def test_accept_is_1_or_0_as_a_number_or_a_string(
    api: Api, accept: Any, state: str
) -> None:
    # given
    order_id = await given.ordered(api, "SN-A-001")
    # when
    status, _ = await api.decide(
        "tok-bob", "proj-b", {"order_ids": [order_id], "accept": accept}
    )
    # then
    assert status == 200
    listing = await given.listed(api, "tok-bob", "proj-b")
    assert given.state_of(listing, order_id) == state


@ONE_BACKEND
@pytest.mark.parametrize(
    "order_ids",
    ["1,2", " 1 , 2 ", [1, 2], "2,1", [2, 1]],
    ids=["string", "string-with-spaces", "array", "string-reversed", "array-reversed"],
)
async def test_order_ids_are_a_comma_separated_string_or_an_array(
    api: Api, order_ids: Any
) -> None:
    # given
    await given.ordered(api, "SN-A-001")
    await given.ordered(api, "SN-A-002")
    # when
    status, _ = await api.decide(
        "tok-bob", "proj-b", {"order_ids": order_ids, "accept": 1}
    )
    # then
    assert status == 200
    assert given.ids(await given.listed(api, "tok-bob", "proj-b", type=1)) == [2, 1]


BAD_DECISIONS = [
    pytest.param({"order_ids": "1", "accept": True}, "'accept'", id="accept-true"),
    pytest.param({"order_ids": "1", "accept": False}, "'accept'", id="accept-false"),
    pytest.param({"order_ids": "1", "accept": 2}, "'accept'", id="accept-2"),
    pytest.param({"order_ids": "1", "accept": -1}, "'accept'", id="accept-minus-1"),
    pytest.param({"order_ids": "1", "accept": 0.5}, "'accept'", id="accept-half"),
    pytest.param({"order_ids": "1", "accept": "yes"}, "'accept'", id="accept-yes"),
    pytest.param(
        {"order_ids": "1", "accept": "true"}, "'accept'", id="accept-true-text"
    ),
    pytest.param({"order_ids": "1", "accept": ""}, "'accept'", id="accept-empty"),
    pytest.param({"order_ids": "1", "accept": None}, "'accept'", id="accept-null"),
    pytest.param({"order_ids": "1", "accept": [1]}, "'accept'", id="accept-array"),
    pytest.param({"order_ids": "1"}, "'accept'", id="accept-missing"),
    pytest.param({"accept": 1}, "'order_ids'", id="ids-missing"),
    pytest.param({"order_ids": "1,1", "accept": 1}, "1", id="ids-repeated"),
    pytest.param({"order_ids": [1, 2, 1], "accept": 1}, "1", id="ids-repeated-array"),
    pytest.param({"order_ids": "", "accept": 1}, "'order_ids'", id="ids-empty"),
    pytest.param({"order_ids": [], "accept": 1}, "'order_ids'", id="ids-empty-array"),
    pytest.param({"order_ids": "1,,2", "accept": 1}, "'order_ids'", id="ids-gap"),
    pytest.param({"order_ids": "1,x", "accept": 1}, "'order_ids'", id="ids-letter"),
    pytest.param({"order_ids": "-1", "accept": 1}, "'order_ids'", id="ids-negative"),
    pytest.param({"order_ids": [0], "accept": 1}, "'order_ids'", id="ids-zero"),
    pytest.param({"order_ids": [1.5], "accept": 1}, "'order_ids'", id="ids-fraction"),
    pytest.param({"order_ids": [True], "accept": 1}, "'order_ids'", id="ids-boolean"),
    pytest.param({"order_ids": 1, "accept": 1}, "'order_ids'", id="ids-bare-number"),
    pytest.param(
        {"order_ids": ",".join(map(str, range(1, 202))), "accept": 1},
        "at most 200",
        id="201-ids",
    ),
    pytest.param([1], "JSON object", id="not-an-object"),
]


@ONE_BACKEND
@pytest.mark.parametrize(("body", "says"), BAD_DECISIONS)
async def test_a_bad_decision_body_is_400_and_changes_nothing(
    api: Api, body: Any, says: str
) -> None:
    # given
    order_id = await given.ordered(api, "SN-A-001")
    head = api.head()
    # when
    status, answer = await api.decide("tok-bob", "proj-b", body)
    # then
    assert status == 400
    assert answer["reason"] == "Bad Request"
    assert says in answer["msg"]
    assert api.head() == head
    assert api.owner("SN-A-001") == ("proj-a", order_id)


@ONE_BACKEND
async def test_the_role_is_checked_before_the_body(make_api: MakeApi) -> None:
    # given: the contract's order is token, Sp-Agent, tenant, policy, then body
    api = await make_api(approver_roles=APPROVERS)
    # when
    status, _ = await api.decide("tok-bill", "proj-b", {"order_ids": [1], "accept": 7})
    # then
    assert status == 403


@pytest.mark.parametrize(
    "raw",
    [
        '{"order_ids": "ORDER", "accept": 0, "accept": 1}',
        '{"order_ids": "ORDER", "order_ids": "ORDER", "accept": 1}',
    ],
    ids=["accept twice", "order_ids twice"],
)
async def test_a_body_that_repeats_a_key_is_400_and_decides_nothing(
    api: Api, raw: str
) -> None:
    # given: an unfinished order (issue 16, finding 6: the last key won)
    order_id = await given.ordered(api, "SN-A-001")
    head = api.head()
    # when
    response = await api.client.put(
        api.url("proj-b"),
        headers=api.headers("tok-bob", **{"Content-Type": "application/json"}),
        data=raw.replace("ORDER", str(order_id)),
    )
    # then
    body = await response.json()
    assert (response.status, body["code"]) == (400, 400)
    assert "is repeated" in body["msg"]
    assert api.head() == head
    assert api.owner("SN-A-001") == ("proj-a", order_id)
    listing = await given.listed(api, "tok-bob", "proj-b", type=0)
    assert given.state_of(listing, order_id) == "unfinished"
