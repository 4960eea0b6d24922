"""The JSON bodies of successful answers."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web

from domain.time_format import TIME_FORMAT
from projections.order_lists import OrderPage, OrderRow


def json_ok(body: dict[str, Any]) -> web.Response:
    # orjson: the same compact UTF-8 text as json.dumps(ensure_ascii=False), in a
    # fifth of the time. (Request bodies keep the standard decoder: its error
    # messages and its refusal of NaN are part of the contract.)
    return json_bytes(orjson.dumps(body))


def json_bytes(body: bytes) -> web.Response:
    """An answer whose JSON is already encoded."""
    return web.Response(body=body, content_type="application/json", charset="utf-8")


def format_time(seconds: float | None, zone: ZoneInfo) -> str:
    """A moment as YYYY-MM-DD HH:MM:SS in `zone`; "" for none."""
    if seconds is None:
        return ""
    return _format_second(int(seconds), zone)


@lru_cache(maxsize=65536)
def _format_second(second: int, zone: ZoneInfo) -> str:
    # Times show whole seconds, and a page repeats few of them: formatting is the
    # largest cost of a list answer, so each second is formatted once.
    return datetime.fromtimestamp(second, zone).strftime(TIME_FORMAT)


def order_json(order: OrderRow, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "id": order.id,
        "snids": order.snids,
        "resource_project": order.source_project,
        "dest_project": order.dest_project,
        "user": order.user,
        "state": order.state,
        "warnning_times": format_time(order.warned_at, zone),
        "create_at": format_time(order.created_at, zone),
        "update_at": format_time(order.updated_at, zone),
        "warning_count": order.warning_count,
        # Who accepted or refused it, and when ("" while unfinished).
        "handled_by": order.decided_by or "",
        "handled_at": format_time(order.decided_at, zone),
    }


def order_list(page: OrderPage, zone: ZoneInfo) -> web.Response:
    return json_bytes(order_list_body(page, zone))


def order_list_body(page: OrderPage, zone: ZoneInfo) -> bytes:
    """The JSON text of a list answer."""
    body: dict[str, Any] = {
        "code": 200,
        "msg": "",
        "total_count": page.total_count,
        "orders": [order_json(order, zone) for order in page.orders],
    }
    if page.next_marker is not None:
        body["next_marker"] = page.next_marker
    return orjson.dumps(body)


def order_added(order_id: int) -> web.Response:
    return json_ok({"code": 200, "msg": "add success", "order_id": order_id})


def orders_processed() -> web.Response:
    return json_ok({"code": 200, "msg": "Order processing success"})
