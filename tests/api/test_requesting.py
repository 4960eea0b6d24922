"""POST: requesting a transfer; every refusal leaves the store as it was."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest

from tests.api import given
from tests.api.conftest import ONE_BACKEND
from tests.conftest import Api

A_TO_B = {"snids": "SN-A-001", "dest_project": "proj-b"}
ONE_MIB = 1024 * 1024


async def post_raw(
    api: Api,
    data: bytes,
    *,
    content_type: str | None = "application/json",
    token: str = "tok-alice",
    tenant: str = "proj-a",
) -> tuple[int, dict[str, Any]]:
    headers = api.headers(token)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = await api.client.post(
        api.url(tenant), headers=headers, data=io.BytesIO(data)
    )
    return response.status, await response.json()


async def everything_listed(api: Api) -> list[dict[str, Any]]:
    """Every project's list of all its orders."""
    return [
        await given.listed(api, token, tenant)
        for token, tenant in (
            ("tok-alice", "proj-a"),
            ("tok-bob", "proj-b"),
            ("tok-carol", "proj-c"),
        )
    ]


@pytest.fixture
async def busy(api: Api) -> Api:
    """proj-a has already ordered SN-A-010 to proj-c (order 1)."""
    await given.ordered(api, "SN-A-010", dest="proj-c")
    return api


# -- success ------------------------------------------------------------------------


async def test_a_request_answers_add_success_with_the_new_order_id(api: Api) -> None:
    # when
    status, body = await api.request("tok-alice", "proj-a", A_TO_B)
    # then
    assert status == 200
    assert body == {"code": 200, "msg": "add success", "order_id": 1}


async def test_order_ids_are_given_in_increasing_order_from_1(api: Api) -> None:
    # when
    ids = [
        await given.ordered(api, "SN-A-001"),
        await given.ordered(
            api, "SN-B-001", dest="proj-c", token="tok-bob", tenant="proj-b"
        ),
        await given.ordered(api, "SN-A-002", dest="proj-c"),
    ]
    # then
    assert ids == [1, 2, 3]


@ONE_BACKEND
@pytest.mark.parametrize(
    "snids",
    [
        "SN-A-003,SN-A-001,SN-A-002",
        " SN-A-003 , SN-A-001,SN-A-002 ",
        ["SN-A-003", "SN-A-001", "SN-A-002"],
        [" SN-A-003", "SN-A-001 ", "SN-A-002"],
    ],
    ids=["string", "string-with-spaces", "array", "array-with-spaces"],
)
async def test_snids_are_kept_in_the_order_given(api: Api, snids: Any) -> None:
    # when
    order_id = await given.ordered(api, snids)
    # then
    (order,) = (await given.listed(api, "tok-alice", "proj-a"))["orders"]
    assert order["id"] == order_id
    assert order["snids"] == "SN-A-003,SN-A-001,SN-A-002"
    for snid in ("SN-A-001", "SN-A-002", "SN-A-003"):
        assert api.owner(snid) == ("proj-a", order_id)


async def test_a_request_may_name_200_servers(api: Api) -> None:
    # given: proj-a has 200 servers
    many = [f"SN-M-{n:03d}" for n in range(200)]
    api.service.register_servers([(snid, "proj-a") for snid in many])
    # when
    status, body = await api.request(
        "tok-alice", "proj-a", {"snids": ",".join(many), "dest_project": "proj-b"}
    )
    # then
    assert status == 200, body
    assert api.owner(many[-1]) == ("proj-a", body["order_id"])


@ONE_BACKEND
async def test_a_body_tenant_id_equal_to_the_url_is_allowed(api: Api) -> None:
    # when
    status, _ = await api.request(
        "tok-alice", "proj-a", {**A_TO_B, "tenant_id": "proj-a"}
    )
    # then
    assert status == 200


@ONE_BACKEND
@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "Application/JSON",
    ],
)
async def test_a_json_content_type_with_parameters_is_accepted(
    api: Api, content_type: str
) -> None:
    # when
    status, body = await post_raw(
        api, json.dumps(A_TO_B).encode(), content_type=content_type
    )
    # then
    assert status == 200, body


@ONE_BACKEND
async def test_a_body_of_exactly_1_mib_is_read(api: Api) -> None:
    # given
    text = json.dumps(A_TO_B)
    data = text[:-1].encode() + b" " * (ONE_MIB - len(text)) + b"}"
    assert len(data) == ONE_MIB
    # when
    status, body = await post_raw(api, data)
    # then
    assert status == 200, body


@ONE_BACKEND
@pytest.mark.parametrize(
    ("mailto", "kept"),
    [
        (None, []),
        ("", []),
        ([], []),
        (" ", []),
        ("ann@example.com, bo@example.org", ["ann@example.com", "bo@example.org"]),
        (["ann@example.com"], ["ann@example.com"]),
    ],
    ids=["absent", "empty-string", "empty-array", "blank", "string", "array"],
)
async def test_mailto_names_who_is_told_and_empty_means_nobody(
    api: Api, mailto: Any, kept: list[str]
) -> None:
    # given
    body = dict(A_TO_B) if mailto is None else {**A_TO_B, "mailto": mailto}
    # when
    status, answer = await api.request("tok-alice", "proj-a", body)
    # then
    assert status == 200, answer
    assert api.service.order(answer["order_id"]).mailto == kept


@ONE_BACKEND
async def test_fields_that_try_to_set_state_user_id_or_source_are_ignored(
    api: Api,
) -> None:
    # given
    body = {
        **A_TO_B,
        "state": "finished",
        "user": "mallory",
        "user_name": "mallory",
        "id": 77,
        "order_id": 77,
        "number": 77,
        "resource_project": "proj-c",
        "create_at": "2000-01-01 00:00:00",
    }
    # when
    status, answer = await api.request("tok-alice", "proj-a", body)
    # then
    assert status == 200
    assert answer["order_id"] == 1
    (order,) = (await given.listed(api, "tok-bob", "proj-b", type=0))["orders"]
    assert order["id"] == 1
    assert order["user"] == "alice"
    assert order["state"] == "unfinished"
    assert order["resource_project"] == "proj-a"
    assert order["create_at"] == "2026-11-27 09:00:00"
    assert (await given.listed(api, "tok-carol", "proj-c"))["total_count"] == 0


# -- refusals: 400 ----------------------------------------------------------------


def body(**fields: Any) -> bytes:
    return json.dumps({**A_TO_B, **fields}).encode()


def without(field: str) -> bytes:
    return json.dumps({k: v for k, v in A_TO_B.items() if k != field}).encode()


ADDRESSES = [f"user{n}@example.com" for n in range(21)]

BAD_BODIES = [
    pytest.param(
        b'{"snids": "SN-A-001", "dest_project": ', "malformed JSON", id="malformed-json"
    ),
    pytest.param(b"", "malformed JSON", id="empty-body"),
    pytest.param(
        b'{"snids": "SN-A-001", "dest_project": "proj-b"} {}',
        "malformed JSON",
        id="trailing-data",
    ),
    pytest.param(
        b'{"snids": "SN-A-001", "dest_project": "proj-b", "note": NaN}',
        "malformed JSON",
        id="nan",
    ),
    pytest.param(
        b'{"snids": "SN-A-001", "dest_project": "proj-b", "note": -Infinity}',
        "malformed JSON",
        id="infinity",
    ),
    pytest.param(b"\xff\xfe\x00", "UTF-8", id="not-utf8"),
    pytest.param(b"[1, 2]", "JSON object", id="array"),
    pytest.param(b'"SN-A-001"', "JSON object", id="string"),
    pytest.param(b"null", "JSON object", id="null"),
    pytest.param(without("snids"), "'snids' is required", id="no-snids"),
    pytest.param(without("dest_project"), "'dest_project' is required", id="no-dest"),
    pytest.param(body(snids=5), "'snids'", id="snids-number"),
    pytest.param(body(snids={"SN-A-001": 1}), "'snids'", id="snids-object"),
    pytest.param(body(snids=["SN-A-001", 2]), "'snids'", id="snids-array-of-numbers"),
    pytest.param(body(snids=None), "'snids'", id="snids-null"),
    pytest.param(body(snids=""), "'snids'", id="snids-empty"),
    pytest.param(body(snids=[]), "'snids'", id="snids-empty-array"),
    pytest.param(body(snids="SN-A-001,,SN-A-002"), "snid", id="snids-empty-item"),
    pytest.param(
        body(snids=",".join(f"SN-A-{n:03d}" for n in range(1, 202))),
        "at most 200",
        id="201-snids",
    ),
    pytest.param(
        body(snids="SN-A-001,SN-A-002,SN-A-001"), "SN-A-001", id="repeated-snid"
    ),
    pytest.param(
        body(snids=["SN-A-001", " SN-A-001"]), "SN-A-001", id="repeated-snid-with-space"
    ),
    pytest.param(body(snids="SN-A-001,SN/A/002"), "SN/A/002", id="snid-slash"),
    pytest.param(body(snids="SN A 001"), "SN A 001", id="snid-inner-space"),
    pytest.param(body(snids="SN-A-001;DROP"), "SN-A-001;DROP", id="snid-semicolon"),
    pytest.param(body(snids="SN-Ä-001"), "snid", id="snid-non-ascii"),
    pytest.param(body(snids="S" * 65), "snid", id="snid-65-chars"),
    pytest.param(body(dest_project=5), "'dest_project'", id="dest-number"),
    pytest.param(body(dest_project=""), "dest_project", id="dest-empty"),
    pytest.param(body(dest_project="proj b"), "dest_project", id="dest-space"),
    pytest.param(body(dest_project="p" * 65), "dest_project", id="dest-65-chars"),
    pytest.param(body(dest_project="proj-a"), "dest_project", id="dest-is-tenant"),
    pytest.param(body(mailto="not-an-address"), "not-an-address", id="mail-invalid"),
    pytest.param(body(mailto="ann@example"), "ann@example", id="mail-no-dot"),
    pytest.param(body(mailto="ann@example.com,bo@"), "bo@", id="mail-one-bad"),
    pytest.param(body(mailto=",".join(ADDRESSES)), "at most 20", id="21-mails"),
    pytest.param(body(mailto=ADDRESSES), "at most 20", id="21-mails-array"),
    pytest.param(body(mailto=5), "'mailto'", id="mail-number"),
    pytest.param(body(mailto=["ann@example.com", 5]), "'mailto'", id="mail-numbers"),
    pytest.param(body(tenant_id="proj-b"), "tenant_id", id="body-tenant-other"),
]


@ONE_BACKEND
@pytest.mark.parametrize(("data", "says"), BAD_BODIES)
async def test_a_bad_body_is_400_and_changes_nothing(
    busy: Api, data: bytes, says: str
) -> None:
    # given
    head, lists = busy.head(), await everything_listed(busy)
    # when
    status, answer = await post_raw(busy, data)
    # then
    assert status == 400
    assert answer["code"] == 400
    assert answer["reason"] == "Bad Request"
    assert says in answer["msg"]
    assert busy.head() == head
    assert await everything_listed(busy) == lists
    assert busy.owner("SN-A-001") == ("proj-a", None)


# -- refusals: the rules ----------------------------------------------------------


@pytest.mark.parametrize("snid", ["SN-C-002", "SN-Z-999"], ids=["foreign", "unknown"])
async def test_servers_the_tenant_does_not_own_are_400_and_change_nothing(
    busy: Api, snid: str
) -> None:
    # given
    head, lists = busy.head(), await everything_listed(busy)
    # when
    status, answer = await busy.request(
        "tok-alice", "proj-a", {"snids": f"SN-A-001,{snid}", "dest_project": "proj-b"}
    )
    # then
    assert status == 400
    assert snid in answer["msg"]
    assert busy.head() == head
    assert await everything_listed(busy) == lists
    assert busy.owner("SN-A-001") == ("proj-a", None)


async def test_foreign_and_unknown_servers_get_the_same_message(api: Api) -> None:
    # when
    _, foreign = await api.request(
        "tok-alice", "proj-a", {"snids": "SN-B-001", "dest_project": "proj-c"}
    )
    _, unknown = await api.request(
        "tok-alice", "proj-a", {"snids": "SN-X-001", "dest_project": "proj-c"}
    )
    # then: only the snid differs, and the owner is not named
    assert foreign["msg"].replace("SN-B-001", "?") == unknown["msg"].replace(
        "SN-X-001", "?"
    )
    assert "proj-b" not in foreign["msg"]
    assert foreign == {**foreign, "code": 400, "reason": "Bad Request"}


async def test_servers_in_an_unfinished_order_are_409_naming_snids_and_orders(
    api: Api,
) -> None:
    # given
    first = await given.ordered(api, "SN-A-001,SN-A-002")
    second = await given.ordered(api, "SN-A-005", dest="proj-c")
    head, lists = api.head(), await everything_listed(api)
    # when
    status, answer = await api.request(
        "tok-alice",
        "proj-a",
        {"snids": "SN-A-003,SN-A-002,SN-A-005", "dest_project": "proj-c"},
    )
    # then
    assert status == 409
    assert answer["reason"] == "Conflict"
    assert f"SN-A-002 (order {first})" in answer["msg"]
    assert f"SN-A-005 (order {second})" in answer["msg"]
    assert "SN-A-003" not in answer["msg"]
    assert api.head() == head
    assert await everything_listed(api) == lists
    assert api.owner("SN-A-003") == ("proj-a", None)


async def test_concurrent_requests_for_the_same_server_let_exactly_one_win(
    api: Api,
) -> None:
    # when
    answers = await asyncio.gather(
        *(
            api.request(
                "tok-alice",
                "proj-a",
                {"snids": f"SN-A-001,SN-A-00{n}", "dest_project": "proj-b"},
            )
            for n in range(2, 7)
        )
    )
    # then
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200, 409, 409, 409, 409]
    (winner,) = [body["order_id"] for status, body in answers if status == 200]
    assert api.owner("SN-A-001") == ("proj-a", winner)
    assert (await given.listed(api, "tok-bob", "proj-b"))["total_count"] == 1


# -- refusals: size and type --------------------------------------------------------


@ONE_BACKEND
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_body_over_1_mib_is_413_and_changes_nothing(
    busy: Api, chunked: bool
) -> None:
    # given
    text = json.dumps(A_TO_B)
    data = text[:-1].encode() + b" " * (ONE_MIB - len(text) + 1) + b"}"
    assert len(data) == ONE_MIB + 1
    head, lists = busy.head(), await everything_listed(busy)
    headers = busy.headers("tok-alice", **{"Content-Type": "application/json"})

    async def chunks() -> Any:
        for start in range(0, len(data), 64 * 1024):
            yield data[start : start + 64 * 1024]

    # when
    response = await busy.client.post(
        busy.url("proj-a"),
        headers=headers,
        data=chunks() if chunked else io.BytesIO(data),
    )
    # then
    assert response.status == 413
    answer = await response.json()
    assert answer["reason"] == "Request Entity Too Large"
    assert "1 MiB" in answer["msg"]
    assert busy.head() == head
    assert await everything_listed(busy) == lists
    assert busy.owner("SN-A-001") == ("proj-a", None)


@ONE_BACKEND
@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/jsonx",
        "text/json",
        "multipart/form-data; boundary=x",
    ],
)
async def test_a_body_not_sent_as_json_is_415_and_changes_nothing(
    busy: Api, content_type: str | None
) -> None:
    # given
    head, lists = busy.head(), await everything_listed(busy)
    # when
    status, answer = await post_raw(
        busy, json.dumps(A_TO_B).encode(), content_type=content_type
    )
    # then
    assert status == 415
    assert answer["reason"] == "Unsupported Media Type"
    assert "application/json" in answer["msg"]
    assert busy.head() == head
    assert await everything_listed(busy) == lists


@ONE_BACKEND
async def test_a_body_that_does_not_decompress_is_400_and_changes_nothing(
    busy: Api,
) -> None:
    # given: the body says it is gzip, and is not
    head, lists = busy.head(), await everything_listed(busy)
    headers = busy.headers(
        "tok-alice",
        **{"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    # when
    response = await busy.client.post(
        busy.url("proj-a"),
        headers=headers,
        data=io.BytesIO(json.dumps(A_TO_B).encode()),
    )
    # then
    assert response.status == 400
    answer = await response.json()
    assert answer["reason"] == "Bad Request"
    assert "Content-Encoding" in answer["msg"]
    assert busy.head() == head
    assert await everything_listed(busy) == lists


@ONE_BACKEND
async def test_the_size_is_checked_before_the_type(api: Api) -> None:
    # when
    status, _ = await post_raw(api, b"x" * (2 * ONE_MIB), content_type="text/plain")
    # then
    assert status == 413


@ONE_BACKEND
async def test_the_type_is_checked_before_the_fields(api: Api) -> None:
    # when
    status, _ = await post_raw(api, b"{not json", content_type="text/plain")
    # then
    assert status == 415


@ONE_BACKEND
async def test_the_fields_are_checked_before_the_rules(busy: Api) -> None:
    # given: SN-A-010 is in order 1, SN-B-001 is not proj-a's, and dest is missing
    data = json.dumps({"snids": "SN-A-010,SN-B-001"}).encode()
    # when
    status, answer = await post_raw(busy, data)
    # then
    assert status == 400
    assert "dest_project" in answer["msg"]
