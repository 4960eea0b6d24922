"""The cloud administrators' routes (/pm_order_admin/...): what operators ask the
command line, over the API, across projects. The policy (api/policy.py) lets
only the cloud's administrators in, before a handler runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from api import requests, responses
from api.context import CONFIG, STORE, run
from api.errors import ApiError
from domain.event_kinds import KIND_OF
from domain.server import Server, server_aggregate_id
from domain.values import check_snid
from projections.order_lists import OrderLists
from projections.server_ownership import ServerOwnership
from service.store import Store


async def unfinished_orders(request: web.Request) -> web.Response:
    """GET: every project's unfinished orders (those holding servers), oldest
    first, paged with `limit` and `marker` as the lists are."""
    limit, marker = requests.paging(request)
    page = await run(
        request,
        OrderLists.unfinished,
        request.app[STORE].views,
        limit=limit,
        marker=marker,
    )
    return responses.order_list(page, request.app[CONFIG].timezone)


async def server(request: web.Request) -> web.Response:
    """GET: a server's owner, the unfinished order holding it (if any), and every
    event of its history, oldest first; 404 for a server never registered."""
    snid = check_snid(request.match_info["snid"])
    store = request.app[STORE]
    owned = await run(request, ServerOwnership.server, store.views, snid)
    history = await run(request, _history, store, snid)
    if owned is None and not history:
        raise ApiError(404, f"server {snid} not found")
    zone = request.app[CONFIG].timezone
    return responses.json_ok(
        {
            "code": 200,
            "msg": "",
            "snid": snid,
            # The read model's answer; the history may be a moment ahead of it.
            "project": owned.project if owned else history[-1]["project"],
            "order_id": owned.order_id if owned else None,
            "history": [{**step, "at": _shown(step["at"], zone)} for step in history],
        }
    )


def _history(store: Store, snid: str) -> list[dict[str, Any]]:
    """Each event of server `snid` from the event store, oldest first, with the
    project that owned it after the event."""
    steps: list[dict[str, Any]] = []
    owner = ""
    events: list[Any] = list(store.app.events.get(server_aggregate_id(snid)))
    for event in events:
        source = destination = None
        order_id = getattr(event, "order_id", None)
        match event:
            case Server.Registered():
                owner = event.project_id
            case Server.Transferred():
                source, destination = event.from_project, event.to_project
                owner = event.to_project
        steps.append(
            {
                "version": event.originator_version,
                "event": KIND_OF.get(type(event), type(event).__name__.lower()),
                "at": event.at,
                "order_id": order_id,
                "from_project": source,
                "to_project": destination,
                "project": owner,
            }
        )
    return steps


def _shown(moment: datetime, zone: ZoneInfo) -> str:
    return responses.format_time(moment.timestamp(), zone)
