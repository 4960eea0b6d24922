"""Setting the scene through the API itself; each step asserts that it succeeded."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api


async def ordered(
    api: Api,
    snids: str | list[str],
    *,
    dest: str = "proj-b",
    token: str = "tok-alice",
    tenant: str = "proj-a",
) -> int:
    """`tenant` has asked to move `snids` to `dest`: the new order's id."""
    status, body = await api.request(
        token, tenant, {"snids": snids, "dest_project": dest}
    )
    assert status == 200, body
    order_id = body["order_id"]
    assert isinstance(order_id, int)
    return order_id


async def decided(
    api: Api,
    order_ids: list[int],
    *,
    accept: bool,
    token: str = "tok-bob",
    tenant: str = "proj-b",
) -> None:
    """The destination `tenant` has accepted (or refused) `order_ids`."""
    status, body = await api.decide(
        token, tenant, {"order_ids": order_ids, "accept": 1 if accept else 0}
    )
    assert status == 200, body


async def listed(api: Api, token: str, tenant: str, **params: Any) -> dict[str, Any]:
    """The body of a successful GET of `tenant`'s list."""
    status, body = await api.list(token, tenant, **params)
    assert status == 200, body
    return body


def ids(body: dict[str, Any]) -> list[int]:
    return [order["id"] for order in body["orders"]]


def state_of(body: dict[str, Any], order_id: int) -> str:
    (order,) = [o for o in body["orders"] if o["id"] == order_id]
    return str(order["state"])
