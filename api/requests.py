"""Reading requests into plain values: the list query and the two bodies.

The order of checks is the contract's: size (413), type (415), JSON (400), then
each field (400). Rules about the store are the domain's, not checked here.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from api.context import CONFIG
from api.errors import ApiError
from domain import values
from domain.exceptions import InvalidInput

MAX_BODY_BYTES: Final = 1024 * 1024
MAX_PAGE: Final = 1000


@dataclass(frozen=True)
class ListQuery:
    list_type: int
    limit: int
    marker: int | None


@dataclass(frozen=True)
class TransferRequest:
    snids: list[str]
    dest_project: str
    mailto: list[str]


@dataclass(frozen=True)
class Decision:
    order_ids: list[int]
    accept: bool


def list_query(request: web.Request) -> ListQuery:
    list_type = _one_param(request, "type")
    if list_type is None:
        list_type = "4"
    if list_type not in ("0", "1", "2", "3", "4"):
        raise InvalidInput(f"'type' must be 0, 1, 2, 3 or 4, not {list_type[:20]!r}")
    limit = _int_param(request, "limit", low=1, high=MAX_PAGE)
    return ListQuery(
        list_type=int(list_type),
        limit=MAX_PAGE if limit is None else limit,
        marker=_int_param(request, "marker", low=1, high=2**62),
    )


def paging(request: web.Request) -> tuple[int, int | None]:
    """`limit` (default and most: MAX_PAGE) and `marker`, as the lists take them."""
    limit = _int_param(request, "limit", low=1, high=MAX_PAGE)
    marker = _int_param(request, "marker", low=1, high=2**62)
    return (MAX_PAGE if limit is None else limit), marker


async def transfer_request(request: web.Request, tenant_id: str) -> TransferRequest:
    body = await _json_object(request)
    if body.get("tenant_id", tenant_id) != tenant_id:
        raise InvalidInput("'tenant_id' in the body must be the URL's project")
    snids = body.get("snids")
    if snids is None:
        raise InvalidInput("'snids' is required")
    dest_project = body.get("dest_project")
    if dest_project is None:
        raise InvalidInput("'dest_project' is required")
    if not isinstance(dest_project, str):
        raise InvalidInput("'dest_project' must be a string")
    mailto = body.get("mailto")
    return TransferRequest(
        snids=values.split_list(snids, "snids"),
        dest_project=dest_project,
        mailto=[] if mailto is None else values.split_list(mailto, "mailto"),
    )


async def decision(request: web.Request) -> Decision:
    body = await _json_object(request)
    if "order_ids" not in body:
        raise InvalidInput("'order_ids' is required")
    if "accept" not in body:
        raise InvalidInput("'accept' is required: 1 to accept, 0 to refuse")
    return Decision(
        order_ids=_order_ids(body["order_ids"]), accept=_accept(body["accept"])
    )


def _order_ids(value: Any) -> list[int]:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")] if value.strip() else []
        if not all(p.isascii() and p.isdigit() and len(p) <= 18 for p in parts):
            raise InvalidInput("'order_ids' must be order numbers separated by commas")
        ids = [int(p) for p in parts]
    elif isinstance(value, list):
        if not all(_is_integer(i) for i in value):
            raise InvalidInput("'order_ids' as an array must hold integers only")
        # Bounded before int(): 1e300 is an integral JSON number too.
        if not all(1 <= i <= values.MAX_ORDER_ID for i in value):
            raise InvalidInput(values.ORDER_IDS_OUT_OF_RANGE)
        ids = [int(i) for i in value]
    else:
        raise InvalidInput("'order_ids' must be a comma-separated string or an array")
    return values.check_order_ids(ids)


def _is_integer(value: Any) -> bool:
    # JSON has one number type: 7.0 is the integer 7 (as JSON Schema says), but
    # true is not 1 (bool is an int in Python).
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int) and not isinstance(value, bool)


def _accept(value: Any) -> bool:
    # Exactly the integers 1/0 or the strings "1"/"0": not true/false (bool is an
    # int in Python), not 1.0.
    if (type(value) is int and value in (0, 1)) or value in ("0", "1"):
        return value in (1, "1")
    raise InvalidInput("'accept' must be 1 (accept) or 0 (refuse)")


async def _json_object(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "request body is larger than 1 MiB")
    if request.content_type != "application/json":
        raise ApiError(
            415, "the body must be JSON: send Content-Type: application/json"
        )
    timeout = request.app[CONFIG].client_timeout
    try:
        # aiohttp refuses more than MAX_BODY_BYTES with 413.
        async with asyncio.timeout(timeout):
            raw = await request.read()
    except TimeoutError:
        # A body that stops arriving must not hold the connection for ever.
        raise ApiError(
            408,
            f"the body did not arrive within {timeout:g} s",
            headers={"Connection": "close"},
        ) from None
    except web.RequestPayloadError:
        # The client's fault, not ours (500); what is left of the body cannot be
        # read either, so the connection ends with this answer.
        raise ApiError(
            400,
            "the body cannot be read: it is not what its Content-Encoding "
            "or Transfer-Encoding says",
            headers={"Connection": "close"},
        ) from None
    try:
        body = json.loads(
            raw.decode("utf-8"),
            parse_constant=_not_json,
            object_pairs_hook=_object_without_repeats,
        )
    except UnicodeDecodeError:
        raise InvalidInput("the body is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise InvalidInput(
            f"malformed JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except (RecursionError, ValueError):
        # Nested too deeply, or a number too long to convert.
        raise InvalidInput(
            "malformed JSON: nested too deeply or too long a number"
        ) from None
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object")
    return body


def _object_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # {"accept": 0, "accept": 1}: which one did the client mean? Refuse, rather
    # than let the last one win.
    body = dict(pairs)
    if len(body) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidInput(f"malformed JSON: the key {key[:40]!r} is repeated")
            seen.add(key)
    return body


def _not_json(constant: str) -> Any:
    # Python's json reads NaN and Infinity, which JSON (RFC 8259) does not have.
    raise InvalidInput(f"malformed JSON: {constant} is not a JSON value")


def _one_param(request: web.Request, name: str) -> str | None:
    given = request.query.getall(name, [])
    if len(given) > 1:
        raise InvalidInput(f"'{name}' is given more than once")
    return given[0] if given else None


def _int_param(request: web.Request, name: str, *, low: int, high: int) -> int | None:
    text = _one_param(request, name)
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 19) or not (
        low <= int(text) <= high
    ):
        raise InvalidInput(f"'{name}' must be an integer from {low} to {high}")
    return int(text)
