"""Growing a store to N orders through the event store and the projectors.

Order i (1, 2, ...) moves server SN-i from tenant i % T to another tenant; of ten
orders, two stay unfinished, six are accepted and two refused. Every event is
what the service would save for it (the server registered, the order requested
and the server reserved, then the decision and the server transferred or
released), saved through the application in large batches of aggregates (the
same events, far fewer round trips than one command at a time); then the
projectors of every view catch up, as a worker would. No view row is written
directly.

Growing is resumable: a store already holding n orders grows from n + 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from domain.order import Order
from domain.server import Server
from service.store import Store

TENANTS: Final = 10
BATCH: Final = 500  # orders per save
SPREAD: Final = timedelta(days=30)  # order times spread over the last 30 days


def tenant(i: int) -> str:
    return f"proj-{i % TENANTS}"


def dest_of(i: int) -> str:
    k = i % TENANTS
    return f"proj-{(k + 1 + (i // TENANTS) % (TENANTS - 1)) % TENANTS}"


@dataclass
class Grown:
    orders: int  # orders in the store now
    events: int  # events written by this call
    write_seconds: float
    project_seconds: float
    # Pages that failed and were applied again (see project()).
    retried_pages: int = 0


def orders_in(store: Store) -> int:
    """How many orders the generator has stored (read from the order lists)."""
    rows = store.views.query("SELECT COALESCE(MAX(id), 0) FROM order_lists_orders")
    return int(rows[0][0])


def grow(
    store: Store, target: int, *, deadline: float | None = None, project: bool = True
) -> Grown:
    """Add orders until the store holds `target` (or `deadline`, a perf_counter
    time, passes: it stops after the batch in hand); then project them."""
    first = orders_in(store) + 1
    app = store.app
    now = datetime.now(UTC)
    events = 0
    began = time.perf_counter()
    i = first
    while i <= target:
        if deadline is not None and time.perf_counter() > deadline:
            break
        end = min(target, i + BATCH - 1)
        events += _save_batch(app, i, end, target, now)
        i = end + 1
    written = time.perf_counter()
    retried = project_all(store) if project else 0
    if project:
        analyze(store)
    return Grown(
        orders=i - 1,
        events=events,
        write_seconds=written - began,
        project_seconds=time.perf_counter() - written,
        retried_pages=retried,
    )


def analyze(store: Store) -> None:
    """Refresh the planner's statistics, as autovacuum does on a live store some
    time after a bulk of changes: with the counts of an empty table, the planner
    sorts a tenant's whole list for every page instead of walking its index."""
    with store.views.writing() as cursor:
        for table in store.order_lists.tables:
            cursor.execute(f"ANALYZE {table}")  # names are ours, not input


def project_all(store: Store, attempts: int = 50) -> int:
    """Catch every view up; returns how many pages failed and were applied again.

    A failed page is rolled back whole (its tracking with it), so applying it
    again is safe. (psycopg's pipeline mode has been seen to hand a read the
    result of an earlier statement on a busy machine: counted, not hidden.)
    """
    import psycopg

    for failures in range(attempts):
        try:
            store.catch_up()
            return failures
        except psycopg.ProgrammingError:
            continue
    raise RuntimeError(f"projecting failed {attempts} times")


def _save_batch(app: Any, first: int, last: int, target: int, now: datetime) -> int:
    span = SPREAD.total_seconds()
    servers: list[Server] = []
    orders: list[Order] = []
    for i in range(first, last + 1):
        # Older orders first, the newest about now.
        at = now - timedelta(seconds=span * (target - i) / max(target, 1))
        snid = f"SN-{i:08d}"
        server = Server(snid=snid, project_id=tenant(i), at=at)
        order = Order(
            number=i,
            snids=[snid],
            resource_project=tenant(i),
            dest_project=dest_of(i),
            user=f"user-{tenant(i)}",
            mailto=["ops@example.com"],
            at=at,
        )
        server.reserve(order_id=i, project=tenant(i), at=at)
        kind = i % 10
        if kind >= 2:
            by = f"user-{dest_of(i)}"
            if kind < 8:
                order.accept(by=by, at=at)
                server.transfer(i, dest_of(i), at=at)
            else:
                order.refuse(by=by, at=at)
                server.release(i, at=at)
        servers.append(server)
        orders.append(order)
    return len(app.save(*servers, *orders))
