"""The background worker: projectors, warning scheduler and mailer, until stopped."""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from projections.executor import in_pool
from service.bootstrap import compose, open_configured_store
from service.config import Config

log = logging.getLogger(__name__)


async def work(config: Config, stop: asyncio.Event | None = None) -> None:
    """Run the background work on the configured store until `stop` or a signal."""
    stop = stop or _stop_on_signals()
    executor = ThreadPoolExecutor(4, thread_name_prefix="pm-order-worker")
    store = await in_pool(executor, open_configured_store, config)
    work = compose(config, store).background(executor)
    try:
        await work.start()
        log.info("worker started")
        await stop.wait()
    finally:
        await work.stop(config.shutdown_timeout)
        await in_pool(executor, store.close)
        executor.shutdown(wait=True)
        log.info("worker stopped")


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop
