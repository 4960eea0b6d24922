"""Every error as the contract's JSON: {"code", "msg", "reason"}; never a traceback.

Each domain exception class maps to one status, here and only here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from api.auth import IdentityUnavailable
from domain.exceptions import (
    Conflict,
    DomainError,
    InvalidInput,
    NotAllowed,
    OrdersNotFound,
    StoreUnavailable,
)
from projections.database import ViewDatabaseUnavailable

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS: Final = "5"
# An error's message names what was wrong, quoting the request: at most this many
# characters of it, so that an answer never echoes a request back in bulk.
MAX_MESSAGE_CHARS: Final = 1000

STATUS_OF: Final[dict[type[DomainError], int]] = {
    InvalidInput: 400,
    NotAllowed: 403,
    OrdersNotFound: 404,
    Conflict: 409,
    StoreUnavailable: 503,
}


class ApiError(Exception):
    """An HTTP-level refusal (authentication, headers, body framing)."""

    def __init__(
        self,
        status: int,
        msg: str,
        *,
        reason: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(msg)
        self.status = status
        self.msg = msg
        self.reason = reason or HTTPStatus(status).phrase
        self.headers = dict(headers or {})


def error_response(
    status: int,
    msg: str,
    *,
    reason: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    reason = reason or HTTPStatus(status).phrase
    response = error_json(
        {"code": status, "msg": excerpt(msg), "reason": reason}, status, headers
    )
    if response.headers.get("Connection") == "close":
        # Really close it: aiohttp would otherwise linger for the rest of a body.
        response.force_close()
    return response


def excerpt(msg: str) -> str:
    """`msg`, cut to MAX_MESSAGE_CHARS with a note of how much was left out."""
    if len(msg) <= MAX_MESSAGE_CHARS:
        return msg
    left_out = len(msg) - MAX_MESSAGE_CHARS
    return f"{msg[:MAX_MESSAGE_CHARS]}... ({left_out} more characters)"


def error_json(
    body: dict[str, Any], status: int, headers: Mapping[str, str] | None = None
) -> web.Response:
    """An error's JSON, as compact as a success's (api/responses.py)."""
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


def status_of(error: DomainError) -> int:
    for kind in type(error).__mro__:
        if kind in STATUS_OF:
            return STATUS_OF[kind]
    return 500


_HTTP_MESSAGES: Final = {
    404: "no such resource",
    405: "method not allowed here",
    413: "request body is larger than 1 MiB",
}


@web.middleware
async def error_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(
            error.status, error.msg, reason=error.reason, headers=error.headers
        )
    except DomainError as error:
        status = status_of(error)
        headers = {"Retry-After": RETRY_AFTER_SECONDS} if status == 503 else None
        return error_response(status, str(error), headers=headers)
    except (ViewDatabaseUnavailable, IdentityUnavailable) as error:
        log.warning("unavailable: %s", error)
        what = "identity service" if isinstance(error, IdentityUnavailable) else "store"
        return error_response(
            503,
            f"the {what} is unavailable; try again",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    except web.HTTPException as error:
        if error.status < 400:
            raise
        headers = {k: v for k, v in error.headers.items() if k in ("Allow",)}
        msg = _HTTP_MESSAGES.get(error.status, error.reason)
        return error_response(error.status, msg, headers=headers)
    except ConnectionResetError:
        raise  # the client went away: api/observe.py counts it, nothing is sent
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return error_response(500, "internal error; it has been logged")
