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
    paths hold tenant ids, and would make a metric label per tenant."""
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
    metrics = request.app[METRICS]
    metrics.in_flight += 1
    try:
        response = await handler(request)
        status = response.status
        response.headers[REQUEST_ID_HEADER] = request_id
        return response
    except web.HTTPException as error:  # one the error middleware let through
        status = error.status
        error.headers[REQUEST_ID_HEADER] = request_id
        raise
    except asyncio.CancelledError:
        status = CLIENT_GONE
        raise
    finally:
        metrics.in_flight -= 1
        _record(request, metrics, status, time.perf_counter() - started)
        GLOBAL_REQUEST_ID.reset(global_token)
        REQUEST_ID.reset(request_token)


def _record(
    request: web.Request, metrics: Metrics, status: int, seconds: float
) -> None:
    route = route_of(request)
    metrics.observe_request(request.method, route, str(status), seconds)
    identity = request.get(IDENTITY)
    project = identity.project_id if identity else None
    user = identity.user_name if identity else None
    if not access_log.isEnabledFor(logging.INFO):
        return
    # access_log.info(...) without its search of the stack for the caller (the
    # line never shows it): about a tenth of what a line costs.
    record = access_log.makeRecord(
        access_log.name,
        logging.INFO,
        __file__,
        0,
        "%s %s %d %.1fms project=%s user=%s",
        (
            request.method,
            route,
            status,
            seconds * 1000,
            project or "-",
            user or "-",
        ),
        None,
        extra={
            "method": request.method,
            "route": route,
            "status": status,
            "duration_seconds": round(seconds, 6),
            "project": project,
            "user": user,
        },
    )
    access_log.handle(record)
