"""Every request observed: its id (in the answer and in every log line written
while serving it), its duration in the metrics, one access-log line."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from api.clients import client_address
from api.context import IDENTITY, METRICS
from api.metrics import Metrics
from service.logs import GLOBAL_REQUEST_ID, REQUEST_ID

REQUEST_ID_HEADER: Final = "X-Openstack-Request-Id"
# The shape OpenStack services give their request ids: req-<uuid>.
_REQUEST_ID: Final = re.compile(
    r"req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE
)
# Not an HTTP status the server sends: the client went away first (nginx's 499).
CLIENT_GONE: Final = 499
UNMATCHED_ROUTE: Final = "unmatched"
# Of a request line or a user agent in the access log.
MOST_LOGGED_CHARACTERS: Final = 300
_ESCAPES: Final = str.maketrans(
    {'"': '\\"', **{c: f"\\x{c:02x}" for c in [*range(32), 127]}}
)

access_log = logging.getLogger("pm_order.access")


def new_request_id() -> str:
    """req-<a random (version 4) UUID>, as f"req-{uuid.uuid4()}" writes it, without
    making a UUID object (a tenth of a request's own time otherwise)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"req-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def inbound_request_id(value: str | None) -> str | None:
    """The caller's request id when it has the right shape, else None."""
    if value and _REQUEST_ID.fullmatch(value.strip()):
        return value.strip().lower()
    return None


def route_of(request: web.Request) -> str:
    """The route's template (`/mana_api/pm_order/{tenant_id}`), never the path:
    paths hold project ids, and would make a metric label per project."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


@web.middleware
async def observe_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    request_id = new_request_id()
    global_id = inbound_request_id(request.headers.get(REQUEST_ID_HEADER))
    request_token = REQUEST_ID.set(request_id)
    global_token = GLOBAL_REQUEST_ID.set(global_id)
    started = time.perf_counter()
    status = 500
    size = 0
    metrics = request.app[METRICS]
    metrics.in_flight += 1
    try:
        response = await handler(request)
        status = response.status
        size = response.content_length or 0
        response.headers[REQUEST_ID_HEADER] = request_id
        return response
    except web.HTTPException as error:  # one the error middleware let through
        status = error.status
        error.headers[REQUEST_ID_HEADER] = request_id
        raise
    except (asyncio.CancelledError, ConnectionResetError) as error:
        # The client went away (mid-body, or while waiting): its fault, not a
        # 5xx that alerts would count.
        status = CLIENT_GONE
        if isinstance(error, asyncio.CancelledError):
            raise
        # Nothing can be sent; aiohttp finds the connection closed.
        return web.Response(status=CLIENT_GONE)
    finally:
        metrics.in_flight -= 1
        _record(request, metrics, status, size, time.perf_counter() - started)
        GLOBAL_REQUEST_ID.reset(global_token)
        REQUEST_ID.reset(request_token)


def _record(
    request: web.Request, metrics: Metrics, status: int, size: int, seconds: float
) -> None:
    route = route_of(request)
    metrics.observe_request(request.method, route, str(status), seconds)
    if not access_log.isEnabledFor(logging.INFO):
        return
    identity = request.get(IDENTITY)
    project = identity.project if identity else None
    user = identity.user_name if identity else None
    client = client_address(request)
    version = request.version
    line = printable(
        f"{request.method} {request.raw_path} HTTP/{version.major}.{version.minor}"
    )
    agent = printable(request.headers.get("User-Agent", ""))
    # access_log.info(...) without its search of the stack for the caller (the
    # line never shows it): about a tenth of what a line costs.
    record = access_log.makeRecord(
        access_log.name,
        logging.INFO,
        __file__,
        0,
        '%s "%s" %d %d %.1fms project=%s user=%s agent="%s"',
        (
            client,
            line,
            status,
            size,
            seconds * 1000,
            project or "-",
            user or "-",
            agent,
        ),
        None,
        extra={
            "client": client,
            "request_line": line,
            "method": request.method,
            "route": route,
            "status": status,
            "size": size,
            "duration_seconds": round(seconds, 6),
            "project": project,
            "user": user,
            "user_agent": agent,
        },
    )
    access_log.handle(record)


def printable(text: str, most: int = MOST_LOGGED_CHARACTERS) -> str:
    """`text` for a log line: printable ASCII, quotes escaped, at most `most`
    characters (a URL or a user agent is the client's to choose)."""
    if len(text) > most:
        text = text[:most] + "..."
    if text.isascii() and text.isprintable() and '"' not in text:
        return text
    return text.encode("ascii", "backslashreplace").decode().translate(_ESCAPES)
