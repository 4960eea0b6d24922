"""The aiohttp application: create_app, its routes, its middlewares, its lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from api import handlers, report_handlers
from api.auth import SP_AGENT, Authenticator, authenticator_for, www_authenticate
from api.context import (
    ASYNC_READS,
    AUTHENTICATOR,
    CONFIG,
    EXECUTOR,
    FOLLOWING,
    IDENTITY,
    SERVICE,
    STORE,
)
from api.errors import ApiError, error_middleware
from api.requests import MAX_BODY_BYTES
from domain.service import OrderService, utc_now
from projections.async_reads import AsyncListReads
from projections.database import PostgresViews
from service.background import Background
from service.config import Config
from service.store import Store, open_store

# Routes whose callers must show a token for the project in the URL.
PROJECT_ROUTES: Final = frozenset({"orders", "report"})
STORE_THREADS: Final = 8


def create_app(
    config: Config,
    *,
    store: Store | None = None,
    authenticator: Authenticator | None = None,
    clock: Callable[[], datetime] = utc_now,
    background: bool = True,
) -> web.Application:
    """The API; with `background`, also the background work (projectors, warning
    scheduler, mailer); without, it follows the views other processes keep.

    A given `store` is used as it is and left open; otherwise one is opened from
    the configuration and closed with the app.
    """
    app = web.Application(
        middlewares=[error_middleware, authentication_middleware],
        client_max_size=MAX_BODY_BYTES,
    )
    app[CONFIG] = config
    prefix = config.api_prefix
    orders = app.router.add_resource(prefix + "/pm_order/{tenant_id}", name="orders")
    orders.add_route("GET", handlers.list_orders)
    orders.add_route("POST", handlers.request_transfer)
    orders.add_route("PUT", handlers.decide_orders)
    report = app.router.add_resource(
        prefix + "/pm_order_report/{tenant_id}", name="report"
    )
    report.add_route("GET", report_handlers.project_report)
    app.router.add_get(prefix + "/openapi.json", handlers.openapi_document)
    app.cleanup_ctx.append(
        _lifetime(
            store=store, authenticator=authenticator, clock=clock, background=background
        )
    )
    return app


def _lifetime(
    *,
    store: Store | None,
    authenticator: Authenticator | None,
    clock: Callable[[], datetime],
    background: bool,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        config = app[CONFIG]
        executor = ThreadPoolExecutor(
            STORE_THREADS, thread_name_prefix="pm-order-store"
        )
        app[EXECUTOR] = executor
        app[AUTHENTICATOR] = authenticator or authenticator_for(config)
        owned = store is None
        if store is None:
            app[STORE] = await app.loop.run_in_executor(
                executor,
                partial(
                    open_store, config.database_url, create_tables=config.create_tables
                ),
            )
        else:
            app[STORE] = store
        app[SERVICE] = OrderService(
            app[STORE].app, approver_roles=config.approver_roles, clock=clock
        )
        work = Background(
            app[STORE], app[SERVICE], config, executor, run_work=background
        )
        app[FOLLOWING] = work.following
        views = app[STORE].views
        if isinstance(views, PostgresViews):
            app[ASYNC_READS] = AsyncListReads(views)
            await app[ASYNC_READS].open()
        await work.start()
        try:
            yield
        finally:
            await work.stop()
            if ASYNC_READS in app:
                await app[ASYNC_READS].close()
            await app[AUTHENTICATOR].close()
            if owned:
                await app.loop.run_in_executor(executor, app[STORE].close)
            executor.shutdown(wait=True)

    return lifetime


@web.middleware
async def authentication_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Token (401), then Sp-Agent (400), then the URL's project (400)."""
    match_info = request.match_info
    if match_info.http_exception is not None:
        # Routing comes first: unknown paths and methods answer whoever asks.
        raise match_info.http_exception
    if match_info.route.name not in PROJECT_ROUTES:
        return await handler(request)
    config = request.app[CONFIG]
    token = request.headers.get("X-Auth-Token", "")
    identity = await request.app[AUTHENTICATOR].identify(token) if token else None
    if identity is None:
        raise ApiError(
            401,
            "a valid X-Auth-Token is required"
            if not token
            else "the X-Auth-Token is unknown or expired",
            headers=www_authenticate(config.keystone_url),
        )
    if request.headers.get("Sp-Agent") != SP_AGENT:
        raise ApiError(400, f"the Sp-Agent header must be {SP_AGENT!r}")
    tenant_id = match_info["tenant_id"]
    if tenant_id != identity.project_id:
        raise ApiError(
            400,
            f"Malformed request URL: URL's project_id '{tenant_id}' doesn't match "
            f"Context's project_id '{identity.project_id}'",
            reason="Unauthorized",
        )
    request[IDENTITY] = identity
    return await handler(request)
