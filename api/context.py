"""What handlers reach through the app and the request: typed keys and helpers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, Final, TypeVar

from aiohttp import web

from api.auth import Authenticator, Identity
from api.metrics import Metrics
from api.page_cache import PageCache
from api.policy import Policy
from domain.service import OrderService
from projections.async_reads import AsyncListReads
from projections.executor import in_pool
from service.background import Background
from service.bootstrap import Composition
from service.config import Config
from service.following import Following
from service.status import StoreStatus
from service.store import Store

log = logging.getLogger(__name__)

T = TypeVar("T")

CONFIG: Final = web.AppKey("config", Config)
STORE: Final = web.AppKey("store", Store)
SERVICE: Final = web.AppKey("service", OrderService)
# What the composition root (service/bootstrap.py) built: the store and service.
COMPOSITION: Final = web.AppKey("composition", Composition)
FOLLOWING: Final = web.AppKey("following", Following)
BACKGROUND: Final = web.AppKey("background", Background)
STATUS: Final = web.AppKey("status", StoreStatus)
# PostgreSQL only: list pages read on the event loop.
ASYNC_READS: Final = web.AppKey("async_reads", AsyncListReads)
# With ASYNC_READS: rendered pages, checked against the project's version.
PAGE_CACHE: Final = web.AppKey("page_cache", PageCache)
AUTHENTICATOR: Final = web.AppKey("authenticator", Authenticator)
EXECUTOR: Final = web.AppKey("executor", Executor)
METRICS: Final = web.AppKey("metrics", Metrics)
# Who may do what (oslo.policy): checked by the authentication middleware.
POLICY: Final = web.AppKey("policy", Policy)

IDENTITY: Final = web.RequestKey("identity", Identity)


async def run(
    request: web.Request, function: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """Call the synchronous store in the bounded pool, off the event loop."""
    return await in_pool(request.app[EXECUTOR], function, *args, **kwargs)


async def before_read(request: web.Request) -> None:
    """While other releases serve too, wait until this process's read models
    show every write stored so far (one another release answered may not be in
    them yet): read-your-writes whichever process answers."""
    following = request.app[FOLLOWING]
    if following.others:
        config = request.app[CONFIG]
        await following.caught_up_with_the_head(config.read_your_writes_timeout)


async def after_write(request: web.Request, position: int) -> None:
    """Hold the answer until the views show the write (read-your-writes)."""
    config = request.app[CONFIG]
    metrics = request.app[METRICS]
    started = time.perf_counter()
    following = request.app[FOLLOWING]
    timeout = config.read_your_writes_timeout
    reached = await following.caught_up(position, timeout)
    if reached and following.others:
        # Other releases serve too (an upgrade under way): their read models
        # show it before the answer, so a read any process answers does.
        left = timeout - (time.perf_counter() - started)
        reached = await following.others_caught_up(position, max(left, 0.0))
    metrics.read_your_writes_wait.observe(time.perf_counter() - started)
    if not reached:
        metrics.read_your_writes_timeouts.inc()
        # The write is stored and will show; answering an error would be untrue.
        log.warning(
            "views did not reach %d within %.1fs",
            position,
            config.read_your_writes_timeout,
        )
