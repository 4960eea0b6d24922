"""Who may call: token (401), Sp-Agent (400), tenant (400), after routing (404, 405)."""

from __future__ import annotations

import io
import json
from http import HTTPStatus
from typing import Any

import pytest
from aiohttp import ClientResponse

from tests.api import given
from tests.api.conftest import ONE_BACKEND, MakeApi
from tests.conftest import Api

# Who may call is settled before the store is asked anything.
pytestmark = ONE_BACKEND

A_VALID_BODY = {
    "POST": {"snids": "SN-A-001", "dest_project": "proj-b"},
    "PUT": {"order_ids": "1", "accept": 1},
}
ERROR_KEYS = {"code", "msg", "reason"}
MISMATCH = (
    "Malformed request URL: URL's project_id '{url}' doesn't match "
    "Context's project_id '{token}'"
)


async def send(
    api: Api,
    method: str,
    path: str,
    *,
    headers: dict[str, str],
    body: Any = None,
    data: bytes | None = None,
) -> ClientResponse:
    if data is None and body is not None:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **headers}
    # Large bodies go as a stream, as aiohttp asks (raw bytes would warn).
    payload = io.BytesIO(data) if data is not None else None
    return await api.client.request(method, path, headers=headers, data=payload)


async def error_body(response: ClientResponse) -> dict[str, Any]:
    """The body of an error, checked to be the contract's JSON shape."""
    assert response.content_type == "application/json"
    body: dict[str, Any] = await response.json()
    assert set(body) == ERROR_KEYS
    assert body["code"] == response.status
    assert isinstance(body["msg"], str)
    assert body["msg"]
    return body


# -- the token: 401 ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "token"),
    [
        ("GET", None),
        ("GET", ""),
        ("GET", "tok-nobody"),
        ("GET", "tok-expired"),
        ("POST", None),
        ("POST", "tok-expired"),
        ("PUT", None),
        ("PUT", "tok-nobody"),
    ],
    ids=[
        "GET-missing",
        "GET-empty",
        "GET-unknown",
        "GET-expired",
        "POST-missing",
        "POST-expired",
        "PUT-missing",
        "PUT-unknown",
    ],
)
async def test_a_request_without_a_valid_token_is_unauthorized(
    api: Api, method: str, token: str | None
) -> None:
    # given
    head = api.head()
    # when
    response = await send(
        api,
        method,
        api.url("proj-a"),
        headers=api.headers(token),
        body=A_VALID_BODY.get(method),
    )
    # then
    assert response.status == 401
    assert response.headers["WWW-Authenticate"]
    body = await error_body(response)
    assert body["reason"] == "Unauthorized"
    assert api.head() == head


# -- Sp-Agent: 400 ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "sp_agent"),
    [
        ("GET", None),
        ("GET", ""),
        ("GET", "SCLOUDM"),
        ("GET", "scloud"),
        ("GET", "scloudm2"),
        ("POST", None),
        ("PUT", "curl"),
    ],
    ids=[
        "GET-missing",
        "GET-empty",
        "GET-upper-case",
        "GET-short",
        "GET-longer",
        "POST-missing",
        "PUT-other",
    ],
)
async def test_the_sp_agent_header_must_be_exactly_scloudm(
    api: Api, method: str, sp_agent: str | None
) -> None:
    # given
    headers = {"X-Auth-Token": "tok-alice"}
    if sp_agent is not None:
        headers["Sp-Agent"] = sp_agent
    head = api.head()
    # when
    response = await send(
        api, method, api.url("proj-a"), headers=headers, body=A_VALID_BODY.get(method)
    )
    # then
    assert response.status == 400
    body = await error_body(response)
    assert "Sp-Agent" in body["msg"]
    assert "scloudm" in body["msg"]
    assert api.head() == head


# -- the tenant: 400 "Unauthorized" -----------------------------------------------


@pytest.mark.parametrize(
    ("method", "token", "token_project", "url_project"),
    [
        ("GET", "tok-alice", "proj-a", "proj-b"),
        ("POST", "tok-bob", "proj-b", "proj-a"),
        ("PUT", "tok-carol", "proj-c", "proj-nowhere"),
    ],
)
async def test_a_token_for_another_project_gets_the_exact_mismatch_message(
    api: Api, method: str, token: str, token_project: str, url_project: str
) -> None:
    # given
    head = api.head()
    # when
    response = await send(
        api,
        method,
        api.url(url_project),
        headers=api.headers(token),
        body=A_VALID_BODY.get(method),
    )
    # then
    assert response.status == 400
    assert await error_body(response) == {
        "code": 400,
        "msg": MISMATCH.format(url=url_project, token=token_project),
        "reason": "Unauthorized",
    }
    assert api.head() == head


async def test_a_valid_token_for_the_urls_project_is_let_through(api: Api) -> None:
    # when
    status, body = await api.list("tok-alice", "proj-a")
    # then
    assert status == 200
    assert body["code"] == 200


# -- the order of the checks ------------------------------------------------------


async def test_the_token_is_checked_before_the_sp_agent_and_the_tenant(
    api: Api,
) -> None:
    # given: an unknown token, no Sp-Agent, another project in the URL
    headers = {"X-Auth-Token": "tok-nobody"}
    # when
    response = await send(api, "GET", api.url("proj-b"), headers=headers)
    # then
    assert response.status == 401


async def test_the_sp_agent_is_checked_before_the_tenant(api: Api) -> None:
    # given: a valid token for proj-a, a wrong Sp-Agent, proj-b in the URL
    headers = {"X-Auth-Token": "tok-alice", "Sp-Agent": "curl"}
    # when
    response = await send(api, "GET", api.url("proj-b"), headers=headers)
    # then
    assert response.status == 400
    assert "Sp-Agent" in (await error_body(response))["msg"]


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("application/json", b"{not json"),
        ("text/plain", b"snids=SN-A-001"),
        ("application/json", b" " * (2 * 1024 * 1024)),
    ],
    ids=["malformed-json", "not-json", "over-1-MiB"],
)
async def test_the_tenant_is_checked_before_the_body(
    api: Api, content_type: str, data: bytes
) -> None:
    # given: tok-alice (proj-a) posts to proj-b a body that is wrong in itself
    headers = api.headers("tok-alice", **{"Content-Type": content_type})
    # when
    response = await send(api, "POST", api.url("proj-b"), headers=headers, data=data)
    # then
    assert response.status == 400
    assert (await error_body(response))["reason"] == "Unauthorized"


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("application/json", b"{not json"),
        ("text/plain", b"snids=SN-A-001"),
        ("application/json", b" " * (2 * 1024 * 1024)),
    ],
    ids=["malformed-json", "not-json", "over-1-MiB"],
)
async def test_a_body_is_not_read_before_the_token_is_checked(
    api: Api, content_type: str, data: bytes
) -> None:
    # given
    headers = {"Sp-Agent": "scloudm", "Content-Type": content_type}
    # when
    response = await send(api, "POST", api.url("proj-a"), headers=headers, data=data)
    # then
    assert response.status == 401


# -- identity comes only from the token -------------------------------------------


async def test_a_client_sent_project_header_does_not_change_the_project(
    api: Api,
) -> None:
    # given: tok-alice (proj-a) claims proj-b by header
    headers = api.headers(
        "tok-alice", **{"X-Project-Id": "proj-b", "X-Tenant-Id": "proj-b"}
    )
    # when
    response = await send(api, "GET", api.url("proj-b"), headers=headers)
    # then
    assert response.status == 400
    assert (await error_body(response))["msg"] == MISMATCH.format(
        url="proj-b", token="proj-a"
    )


async def test_a_client_sent_user_name_does_not_change_the_orders_user(
    api: Api,
) -> None:
    # given
    headers = api.headers(
        "tok-alice", **{"X-User-Name": "mallory", "X-User-Id": "mallory"}
    )
    # when
    response = await send(
        api,
        "POST",
        api.url("proj-a"),
        headers=headers,
        body={"snids": "SN-A-001", "dest_project": "proj-b"},
    )
    # then
    assert response.status == 200
    listing = await given.listed(api, "tok-bob", "proj-b", type=0)
    assert [o["user"] for o in listing["orders"]] == ["alice"]


async def test_a_client_sent_roles_header_does_not_grant_a_role(
    make_api: MakeApi,
) -> None:
    # given: deciding needs "approver"; tok-bill (proj-b) is only a member
    api = await make_api(approver_roles=frozenset({"approver"}))
    order_id = await given.ordered(api, "SN-A-001")
    head = api.head()
    headers = api.headers("tok-bill", **{"X-Roles": "approver,admin"})
    # when
    response = await send(
        api,
        "PUT",
        api.url("proj-b"),
        headers=headers,
        body={"order_ids": [order_id], "accept": 1},
    )
    # then
    assert response.status == 403
    assert api.head() == head


# -- routing comes first ----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "token"),
    [
        ("/", None),
        ("/mana_api", None),
        ("/mana_api/pm_order", None),
        ("/mana_api/pm_order/", "tok-alice"),
        ("/mana_api/pm_order/proj-a/orders", None),
        ("/mana_api/pm_order/proj-a/", "tok-alice"),
        ("/pm_order/proj-a", "tok-alice"),
    ],
)
async def test_an_unknown_path_is_404_whoever_asks(
    api: Api, path: str, token: str | None
) -> None:
    # when
    response = await send(api, "GET", path, headers=api.headers(token))
    # then
    assert response.status == 404
    body = await error_body(response)
    assert body["reason"] == "Not Found"


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("DELETE", {}),
        ("PATCH", {}),
        ("HEAD", {}),
        ("OPTIONS", {"X-Auth-Token": "tok-alice", "Sp-Agent": "scloudm"}),
        ("DELETE", {"X-Auth-Token": "tok-alice", "Sp-Agent": "scloudm"}),
    ],
    ids=[
        "DELETE-anonymous",
        "PATCH-anonymous",
        "HEAD-anonymous",
        "OPTIONS-alice",
        "DELETE-alice",
    ],
)
async def test_a_method_the_path_does_not_take_is_405_with_allow(
    api: Api, method: str, headers: dict[str, str]
) -> None:
    # when
    response = await send(api, method, api.url("proj-a"), headers=headers)
    # then
    assert response.status == 405
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert allowed == {"GET", "POST", "PUT"}
    if method != "HEAD":  # a HEAD answer has no body
        assert (await error_body(response))["reason"] == "Method Not Allowed"


# -- every error is the contract's JSON -------------------------------------------


ORDERS = "/mana_api/pm_order/proj-a"
ALICE = {"X-Auth-Token": "tok-alice", "Sp-Agent": "scloudm"}
ALICE_JSON = {**ALICE, "Content-Type": "application/json"}

ERRORS = [
    pytest.param("GET", ORDERS, {}, None, 401, id="401"),
    pytest.param("GET", ORDERS, {"X-Auth-Token": "tok-alice"}, None, 400, id="400"),
    pytest.param("GET", ORDERS + "?type=9", ALICE, None, 400, id="400-type"),
    pytest.param("GET", "/mana_api/nothing", {}, None, 404, id="404"),
    pytest.param("DELETE", ORDERS, {}, None, 405, id="405"),
    pytest.param("POST", ORDERS, ALICE_JSON, b"[" * 100_000, 400, id="400-deep-json"),
    pytest.param(
        "POST",
        ORDERS,
        ALICE_JSON,
        b'{"x": ' + b"9" * 100_000 + b"}",
        400,
        id="400-huge-number",
    ),
    pytest.param("POST", ORDERS, ALICE_JSON, b"\xff\xfe{}", 400, id="400-not-utf8"),
    pytest.param(
        "POST", ORDERS, {**ALICE, "Content-Type": "text/plain"}, b"{}", 415, id="415"
    ),
    pytest.param(
        "POST", ORDERS, ALICE_JSON, b"{" + b" " * (1024 * 1024) + b"}", 413, id="413"
    ),
]


@pytest.mark.parametrize(("method", "path", "headers", "data", "status"), ERRORS)
async def test_every_error_is_json_with_code_msg_and_reason(
    api: Api,
    method: str,
    path: str,
    headers: dict[str, str],
    data: bytes | None,
    status: int,
) -> None:
    # when
    response = await send(api, method, path, headers=headers, data=data)
    # then
    assert response.status == status
    body = await error_body(response)
    assert body["reason"] == HTTPStatus(status).phrase
    for internal in ("Traceback", 'File "', ".py", "SELECT", "sqlite", "psycopg"):
        assert internal not in body["msg"]
