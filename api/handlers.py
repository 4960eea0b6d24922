"""The three operations of /pm_order/{tenant_id}: parse, call, answer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiohttp import web

from api import requests, responses
from api.context import (
    ASYNC_READS,
    CONFIG,
    IDENTITY,
    PAGE_CACHE,
    SERVICE,
    STORE,
    after_write,
    before_read,
    run,
)
from api.health import refuse_writes_nobody_projects
from projections.order_lists import OrderLists

OPENAPI_PATH = Path(__file__).with_name("openapi.json")


async def list_orders(request: web.Request) -> web.Response:
    """GET: one page of one of the caller's five lists."""
    await before_read(request)
    reads = request.app.get(ASYNC_READS)
    if reads is not None:
        project = request[IDENTITY].project
        cache = request.app[PAGE_CACHE]
        # Only valid queries are cached: the same text is the same valid query.
        key = (project, request.query_string)
        cached = cache.get(key)
        # Read after this request came: a write answered before it shows here.
        if cached is not None and cached.version == await reads.version(project):
            return responses.json_bytes(cached.body)
        query = requests.list_query(request)
        page = await reads.page(
            project, query.list_type, limit=query.limit, marker=query.marker
        )
        body = responses.order_list_body(page, request.app[CONFIG].timezone)
        cache.put(key, page.version, body)
        return responses.json_bytes(body)
    query = requests.list_query(request)
    store = request.app[STORE]
    page = await run(
        request,
        OrderLists.page,
        store.views,
        request[IDENTITY].project,
        query.list_type,
        limit=query.limit,
        marker=query.marker,
    )
    return responses.order_list(page, request.app[CONFIG].timezone)


async def request_transfer(request: web.Request) -> web.Response:
    """POST: order the move of the caller's servers to another project."""
    identity = request[IDENTITY]
    body = await requests.transfer_request(request, identity.project)
    await refuse_writes_nobody_projects(request)
    # Queued for the next group commit: no thread of the pool waits meanwhile.
    written = await asyncio.wrap_future(
        request.app[SERVICE].request_transfer_later(
            source_project=identity.project,
            user=identity.user_name,
            snids=body.snids,
            dest_project=body.dest_project,
            mailto=body.mailto,
        )
    )
    await after_write(request, written.position)
    assert written.order_id is not None
    return responses.order_added(written.order_id)


async def decide_orders(request: web.Request) -> web.Response:
    """PUT: the destination accepts or refuses orders, all or none."""
    identity = request[IDENTITY]
    body = await requests.decision(request)
    await refuse_writes_nobody_projects(request)
    written = await run(
        request,
        request.app[SERVICE].decide,
        project=identity.project,
        user=identity.user_name,
        roles=identity.roles,
        order_ids=body.order_ids,
        accept=body.accept,
    )
    await after_write(request, written.position)
    return responses.orders_processed()


async def openapi_document(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of this API (no token needed)."""
    document = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    document["servers"] = [{"url": request.app[CONFIG].api_prefix or "/"}]
    return responses.json_ok(document)
