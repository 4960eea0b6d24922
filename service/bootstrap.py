"""The composition root: builds the service for every entry point (`serve`, the
worker, each command) from the configuration, so that none builds a
half-configured one of its own.

The store (event store and read models), the OrderService with the configured
limits and the unfinished-order count, and the background work
(projectors, warning scheduler, mailer) come from here alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from domain.service import OrderService, utc_now
from projections.order_lists import OrderLists
from service.background import Background
from service.config import Config
from service.store import Store, open_store
from service.write_confirmation import confirmation_of


@dataclass(frozen=True)
class Composition:
    """What every entry point works with: the configuration, the open store and
    the service built on it."""

    config: Config
    store: Store
    service: OrderService

    def background(self, executor: Executor, *, run_work: bool = True) -> Background:
        """The background work of this process (with `run_work`, the projectors,
        the warning scheduler and the mailer; without, following the views other
        processes keep)."""
        return Background(
            self.store, self.service, self.config, executor, run_work=run_work
        )


def open_configured_store(config: Config) -> Store:
    """The configured store, its tables created or checked as configured."""
    return open_store(config.database_url, create_tables=config.create_tables)


def compose(
    config: Config, store: Store, *, clock: Callable[[], datetime] = utc_now
) -> Composition:
    """The service on `store`, as `config` says."""
    confirmation = confirmation_of(store.app.recorder)
    if confirmation is not None:
        confirmation.timeout = config.write_confirm_timeout
    # Who may decide is the policy's to say (PM_ORDER_APPROVER_ROLES is part of
    # its rule, api/policy.py): one place, which a policy file can override.
    service = OrderService(
        store.app,
        clock=clock,
        limits=config.limits.orders(),
        unfinished_orders=partial(OrderLists.unfinished_as_source, store.views),
    )
    return Composition(config=config, store=store, service=service)


@contextmanager
def composed(config: Config) -> Iterator[Composition]:
    """The configured store and service, open for one command."""
    store = open_configured_store(config)
    try:
        yield compose(config, store)
    finally:
        store.close()
