"""The aiohttp application: create_app, its routes, its middlewares, its lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from api import admin_handlers, handlers, health, policy, report_handlers
from api.auth import (
    SP_AGENT,
    Authenticator,
    Identity,
    authenticator_for,
    www_authenticate,
)
from api.clients import address_group, client_address
from api.context import (
    ASYNC_READS,
    AUTHENTICATOR,
    BACKGROUND,
    COMPOSITION,
    CONFIG,
    EXECUTOR,
    FOLLOWING,
    IDENTITY,
    METRICS,
    PAGE_CACHE,
    POLICY,
    SERVICE,
    STATUS,
    STORE,
)
from api.errors import ApiError, error_middleware
from api.metrics import Metrics
from api.observe import observe_middleware
from api.page_cache import PageCache
from api.rate_limit import (
    ADDRESS_GATE,
    RATE_LIMITER,
    AddressGate,
    RateLimiter,
    refuse_when_limited,
)
from api.requests import MAX_BODY_BYTES
from api.scrape import metrics, watch
from api.server import send_buffer_middleware, without_versions
from domain.service import utc_now
from projections.async_reads import AsyncListReads
from projections.database import PostgresViews
from projections.executor import in_pool
from service.bootstrap import compose, open_configured_store
from service.config import Config
from service.status import StoreStatus
from service.store import Store

# Routes whose callers must show a token for the project in the URL.
PROJECT_ROUTES: Final = frozenset({"orders", "report"})
# Routes for the cloud's administrators: a token, and no project in the URL.
ADMIN_ROUTES: Final = frozenset({"admin_unfinished", "admin_server"})
# The policy rule of each route and method (api/policy.py).
RULES: Final = {
    ("orders", "GET"): policy.LIST_ORDERS,
    ("orders", "POST"): policy.REQUEST_TRANSFER,
    ("orders", "PUT"): policy.DECIDE_ORDERS,
    ("report", "GET"): policy.SHOW_REPORT,
    ("admin_unfinished", "GET"): policy.LIST_UNFINISHED,
    ("admin_server", "GET"): policy.SHOW_SERVER,
}
STORE_THREADS: Final = 8

Lifetime = Callable[[web.Application], AsyncIterator[None]]


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
        middlewares=[
            observe_middleware,
            send_buffer_middleware,
            error_middleware,
            # The rate limit is checked in it, once a request is accepted.
            authentication_middleware,
        ],
        client_max_size=MAX_BODY_BYTES,
    )
    app[CONFIG] = config
    app[POLICY] = policy.Policy(config.policy_file, config.approver_roles)
    app.on_response_prepare.append(without_versions)
    app[RATE_LIMITER] = RateLimiter.from_limits(config.limits)
    app[ADDRESS_GATE] = AddressGate.from_limits(config.limits)
    app[METRICS] = Metrics()
    watch(app)
    prefix = config.api_prefix
    orders = app.router.add_resource(prefix + "/pm_order/{tenant_id}", name="orders")
    orders.add_route("GET", handlers.list_orders)
    orders.add_route("POST", handlers.request_transfer)
    orders.add_route("PUT", handlers.decide_orders)
    report = app.router.add_resource(
        prefix + "/pm_order_report/{tenant_id}", name="report"
    )
    report.add_route("GET", report_handlers.project_report)
    admin = prefix + "/pm_order_admin"
    app.router.add_get(
        admin + "/unfinished_orders",
        admin_handlers.unfinished_orders,
        name="admin_unfinished",
    )
    app.router.add_get(
        admin + "/servers/{snid}", admin_handlers.server, name="admin_server"
    )
    app.router.add_get(prefix + "/openapi.json", handlers.openapi_document)
    # Operations, outside the prefix (a gateway forwards only the API).
    health.add_routes(app)
    app.router.add_get("/metrics", metrics, name="metrics")
    # Started in this order, ended in the reverse one.
    app.cleanup_ctx.extend(
        [
            _executor,
            _authenticator(authenticator),
            _store(store, clock),
            _async_reads,
            _background(background),
        ]
    )
    return app


async def _executor(app: web.Application) -> AsyncIterator[None]:
    """The bounded pool in which every call of the synchronous store runs."""
    executor = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="pm-order-store")
    app[EXECUTOR] = executor
    yield
    executor.shutdown(wait=True)


def _authenticator(given: Authenticator | None) -> Lifetime:
    async def authenticator(app: web.Application) -> AsyncIterator[None]:
        app[AUTHENTICATOR] = given or authenticator_for(app[CONFIG])
        yield
        await app[AUTHENTICATOR].close()

    return authenticator


def _store(given: Store | None, clock: Callable[[], datetime]) -> Lifetime:
    """The given store, left open; or the configured one, closed at the end."""

    async def store(app: web.Application) -> AsyncIterator[None]:
        config = app[CONFIG]
        if given is None:
            app[STORE] = await in_pool(app[EXECUTOR], open_configured_store, config)
        else:
            app[STORE] = given
        app[COMPOSITION] = compose(config, app[STORE], clock=clock)
        app[SERVICE] = app[COMPOSITION].service
        app[STATUS] = StoreStatus(app[STORE], app[EXECUTOR])
        yield
        if given is None:
            await in_pool(app[EXECUTOR], app[STORE].close)

    return store


async def _async_reads(app: web.Application) -> AsyncIterator[None]:
    """PostgreSQL: list pages read on the event loop, from a pool of their own."""
    views = app[STORE].views
    if not isinstance(views, PostgresViews):
        yield
        return
    app[ASYNC_READS] = AsyncListReads(views)
    app[PAGE_CACHE] = PageCache()
    await app[ASYNC_READS].open()
    yield
    await app[ASYNC_READS].close()


def _background(run_work: bool) -> Lifetime:
    """Projectors, warning scheduler, mailer (or, without `run_work`, following
    the views other processes keep)."""

    async def background(app: web.Application) -> AsyncIterator[None]:
        work = app[COMPOSITION].background(app[EXECUTOR], run_work=run_work)
        app[BACKGROUND] = work
        app[FOLLOWING] = work.following
        await work.start()
        yield
        await work.stop(app[CONFIG].shutdown_timeout)

    return background


@web.middleware
async def authentication_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Token (401), then Sp-Agent (400), then the URL's project (400), then the
    policy (403), then the token's rate (429); all before the body is read."""
    match_info = request.match_info
    if match_info.http_exception is not None:
        # Routing comes first: unknown paths and methods answer whoever asks.
        raise match_info.http_exception
    route = match_info.route.name
    if route not in PROJECT_ROUTES and route not in ADMIN_ROUTES:
        return await handler(request)
    config = request.app[CONFIG]
    token = request.headers.get("X-Auth-Token", "")
    identity = await _identify(request, token) if token else None
    if identity is None or (route in PROJECT_ROUTES and not identity.project):
        # (A system-scoped token is for the admin routes only.)
        raise ApiError(
            401,
            "a valid X-Auth-Token is required"
            if not token
            else "the X-Auth-Token is unknown or expired",
            headers=www_authenticate(
                config.keystone.public_url if config.keystone else None
            ),
        )
    if request.headers.get("Sp-Agent") != SP_AGENT:
        raise ApiError(400, f"the Sp-Agent header must be {SP_AGENT!r}")
    tenant_id = match_info.get("tenant_id")
    if tenant_id is not None and tenant_id != identity.project:
        raise ApiError(
            400,
            f"Malformed request URL: URL's project_id '{tenant_id}' doesn't match "
            f"Context's project_id '{identity.project}'",
            reason="Unauthorized",
        )
    refusal = request.app[POLICY].refusal(
        RULES[route, "GET" if request.method == "HEAD" else request.method],
        identity,
        tenant_id,
    )
    if refusal is not None:
        raise ApiError(403, refusal.message)
    request[IDENTITY] = identity
    refuse_when_limited(request)
    health.refuse_until_built(request)
    return await handler(request)


async def _identify(request: web.Request, token: str) -> Identity | None:
    """The token's identity; a token not known valid goes through its client
    address group's gate (api/rate_limit.py), which counts the refused ones."""
    authenticator = request.app[AUTHENTICATOR]
    if authenticator.vouches_for(token):
        return await authenticator.identify(token)
    config = request.app[CONFIG]
    group = address_group(client_address(request), config.limits.auth_ipv6_prefix)
    return await request.app[ADDRESS_GATE].identify(
        group, lambda: authenticator.identify(token)
    )
