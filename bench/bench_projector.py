"""Projector catch-up on PostgreSQL: our Projector against two baselines.

All project the same event log into the same order_lists tables (emptied between
runs). Ours applies a page of notifications and moves the tracking in one
transaction. The first baseline is the physical limit of this work: the view's
final rows (as ours left them) INSERTed bare into the same tables, in batches of
PAGE rows per transaction, pipelined. The second is eventsourcing's
ProjectionRunner with a Projection whose view (a PostgresTrackingRecorder) applies
one event and records its tracking per transaction, as the library's
documentation shows; it runs until it has applied the first --library-events
events that change the view (at about a thousand a second, the whole log would
take minutes), and rates of those events are compared.

    .venv/bin/python bench/bench_projector.py [--events 200000]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any, Final, cast

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from harness import (
    Report,
    Schema,
    fresh_schema,
    machine_line,
    main_of,
    search_path,
)
from psycopg.rows import tuple_row

from domain.order import Order
from domain.server import Server
from domain.service import OrderApplication
from projections.order_lists import OrderLists
from projections.projector import PAGE_SIZE as PAGE
from projections.projector import Projector, set_position, view_contents
from service import interpreter
from service.store import open_store, postgres_settings

TARGET_RATIO: Final = 10.0
# Issue 17: the read models' rewrite keeps the projector at 0.8x of the bare INSERT
# of its rows at least (the design asked 0.5x).
TARGET_BARE_RATIO: Final = 0.8
PROJECTS: Final = 20
BATCH: Final = 500  # aggregates per save while filling the log
_NOT_WAITING_FOR_THE_DISK: Final = "SET LOCAL synchronous_commit = off"


# -- the baseline: the library's way ----------------------------------------------


class _QuestionMarks:
    """What OrderLists.apply_page asks of its database: `?` to `%s`, and its rows
    written as arrays, as PostgreSQL's views write them."""

    arrays = True

    @staticmethod
    def sql(statement: str) -> str:
        return statement.replace("?", "%s")


class OrderListsRecorder(PostgresTrackingRecorder):
    """The order_lists tables as a library view: one event per transaction."""

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        # The view's SQL names its tables unqualified, like ours: find them where
        # ours are. (Set once per connection, not per transaction.)
        cast(dict[str, Any], datastore.pool.kwargs)["options"] = (
            f"-c search_path={search_path(datastore.schema)}"
        )
        super().__init__(datastore, **kwargs)
        self.order_lists = OrderLists()

    def apply(self, event: Any, tracking: Tracking) -> None:
        with (
            self.datastore.get_connection() as connection,
            connection.transaction(),
            connection.cursor(row_factory=tuple_row) as cursor,
        ):
            self.order_lists.apply_page(cursor, cast(Any, _QuestionMarks()), [event])
            self._insert_tracking(cast(Any, cursor), tracking)


class OrderListsProjection(Projection[OrderListsRecorder]):
    name = "order_lists_library"
    # Filtered in the database: the runner never sees the servers' events.
    topics = tuple(sorted(OrderLists.topics))

    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.apply(domain_event, tracking)


def run_library(url: str, view_head: int, timeout: float) -> float:
    """Seconds for a new ProjectionRunner to record tracking up to `view_head`
    (it may go a little further meanwhile)."""
    env = postgres_settings(url).env(create_tables=True)
    start = time.perf_counter()
    runner = ProjectionRunner(
        application_class=OrderApplication,
        projection_class=OrderListsProjection,
        view_class=OrderListsRecorder,
        env=env,
    )
    try:
        with runner:
            while (runner.view.max_tracking_id(OrderApplication.name) or 0) < view_head:
                # Waits 10 ms, and raises what the processing thread raised.
                runner.run_forever(timeout=0.01)
                if runner.is_interrupted.is_set():
                    raise RuntimeError("the ProjectionRunner stopped early")
                if time.perf_counter() - start > timeout:
                    raise RuntimeError(f"the ProjectionRunner took over {timeout}s")
            return time.perf_counter() - start
    finally:
        runner.view.datastore.close()


# -- the event log ----------------------------------------------------------------


class Log:
    """What was written: counts, and the last notification the view cares about."""

    def __init__(self) -> None:
        self.events = 0
        self.view_events = 0
        self.view_head = 0
        self.view_ids: list[int] = []
        self.orders = 0
        self.decided = 0

    def saved(self, app: OrderApplication, aggregates: list[Any]) -> None:
        for recording in app.save(*aggregates):
            self.events += 1
            if recording.notification.topic in OrderLists.topics:
                self.view_events += 1
                self.view_head = max(self.view_head, recording.notification.id)
                self.view_ids.append(recording.notification.id)


def fill_log(app: OrderApplication, events: int) -> Log:
    """About `events` events, as the service would write them: each server is
    registered and ordered; every other order is then accepted or refused.

    Saved in large batches of aggregates (the same events, far fewer round trips
    than one command at a time).
    """
    log = Log()
    now = datetime.now(UTC)
    projects = [f"proj-{k}" for k in range(PROJECTS)]
    # 3 events per server and order, 2 more for each decided one (half of them).
    count = max(1, events // 4)
    servers = [
        Server(snid=f"SN-{i:07d}", project_id=projects[i % PROJECTS], at=now)
        for i in range(count)
    ]
    for i in range(0, count, BATCH):
        log.saved(app, servers[i : i + BATCH])
    orders = []
    for i, server in enumerate(servers):
        source = projects[i % PROJECTS]
        dest = projects[
            (i % PROJECTS + 1 + (i // PROJECTS) % (PROJECTS - 1)) % PROJECTS
        ]
        orders.append(
            Order(
                number=i + 1,
                snids=[server.snid],
                resource_project=source,
                dest_project=dest,
                user=f"user-{source}",
                mailto=[f"ops@{source}.example.com"],
                at=now,
            )
        )
        server.reserve(order_id=i + 1, project=source, at=now)
    for i in range(0, count, BATCH):
        log.saved(app, [*orders[i : i + BATCH], *servers[i : i + BATCH]])
    log.orders = count
    decided = []
    for i, (order, server) in enumerate(zip(orders, servers, strict=True)):
        if i % 2:
            continue
        if i % 4 == 0:
            order.accept(by=f"user-{order.dest_project}", at=now)
            server.transfer(order.number, order.dest_project, at=now)
        else:
            order.refuse(by=f"user-{order.dest_project}", at=now)
            server.release(order.number, at=now)
        decided += [order, server]
    for i in range(0, len(decided), BATCH):
        log.saved(app, decided[i : i + BATCH])
    log.decided = len(decided) // 2
    return log


# -- the benchmark ----------------------------------------------------------------


def empty_view(store: Any) -> None:
    with store.views.writing() as cursor:
        for table in store.order_lists.tables:
            cursor.execute(f"TRUNCATE {table}")
        set_position(cursor, store.views, store.order_lists.name, 0)


def bare_insert(store: Any, contents: dict[str, list[tuple[Any, ...]]]) -> float:
    """Seconds to INSERT `contents` into the emptied tables, PAGE rows a
    transaction, pipelined, committed as the projector's pages are: the view's
    rows with nothing to decide."""
    empty_view(store)
    batches: list[tuple[str, list[tuple[Any, ...]]]] = []
    for table, rows in contents.items():
        if not rows:
            continue
        marks = ", ".join(["%s"] * len(rows[0]))
        statement = f"INSERT INTO {table} VALUES ({marks})"
        batches += [(statement, rows[i : i + PAGE]) for i in range(0, len(rows), PAGE)]
    start = time.perf_counter()
    for statement, rows in batches:
        with store.views.writing() as cursor, cursor.connection.pipeline():
            # Committed as the projector commits its pages: without waiting
            # for the disk (the views are derived).
            cursor.execute(_NOT_WAITING_FOR_THE_DISK)
            cursor.executemany(statement, rows)
    return time.perf_counter() - start


def run(events: int, library_events: int) -> Report:
    report = Report(
        "Projector catch-up on PostgreSQL (the order_lists view)", key="4. projector"
    )
    report.note(machine_line())
    with fresh_schema() as schema:
        store = open_store(schema.url)
        try:
            return measure(store, schema, events, library_events, report)
        finally:
            store.close()


def measure(
    store: Any, schema: Schema, events: int, library_events: int, report: Report
) -> Report:
    began = time.perf_counter()
    log = fill_log(store.app, events)
    head = store.app.recorder.max_notification_id()
    report.note(
        f"log: {log.events:,} events ({log.orders:,} servers registered and ordered,"
        f" {log.decided:,} orders decided), written in "
        f"{time.perf_counter() - began:.1f}s; {log.view_events:,} of them change the"
        " view"
    )
    projector = Projector(
        store.app.recorder, store.app.mapper, store.views, store.order_lists
    )

    def ours() -> float:
        empty_view(store)
        start = time.perf_counter()
        assert projector.catch_up() == head
        return time.perf_counter() - start

    # Ours before and after the baselines: the load on the machine drifts.
    ours_seconds = [ours()]
    contents = view_contents(store.views, store.order_lists)
    rows = sum(len(r) for r in contents.values())
    bare_seconds = bare_insert(store, contents)
    assert view_contents(store.views, store.order_lists) == contents
    empty_view(store)
    # The runner skips the servers' events in the database: compare the events
    # that change the view, per second.
    library_count = max(1, min(library_events, len(log.view_ids)))
    library_seconds = run_library(
        schema.url, log.view_ids[library_count - 1], timeout=max(600.0, events / 20)
    )
    ours_seconds.append(ours())
    mean_ours = sum(ours_seconds) / len(ours_seconds)
    ours_rate = log.view_events / mean_ours
    library_rate = library_count / library_seconds

    report.figure(
        f"ours: Projector, pages of {PAGE} per transaction",
        f"{log.events / mean_ours:,.0f} events/s, {ours_rate:,.0f} view events/s"
        f"  ({' and '.join(f'{s:.2f}s' for s in ours_seconds)} for the log)",
    )
    report.figure(
        "baseline: bare batched INSERT of the view's rows",
        f"{bare_seconds:.2f}s for {rows:,} rows ({log.events / bare_seconds:,.0f}"
        " log events/s)",
    )
    report.figure(
        "baseline: library ProjectionRunner, 1 event/tx",
        f"{library_rate:,.0f} view events/s  ({library_seconds:.2f}s for the first"
        f" {library_count:,} view events)",
    )
    bare_ratio = bare_seconds / mean_ours
    report.target(
        f"catch-up over {log.events:,} events vs bare INSERT",
        f"{mean_ours:.2f}s",
        f">= {TARGET_BARE_RATIO}x",
        bare_ratio >= TARGET_BARE_RATIO,
        baseline=f"bare INSERT {bare_seconds:.2f}s",
        ratio=f"{bare_ratio:.2f}x",
    )
    ratio = ours_rate / library_rate
    report.target(
        "catch-up vs the library's runner",
        f"{ours_rate:,.0f} view events/s",
        f"> {TARGET_RATIO:.0f}x",
        ratio > TARGET_RATIO,
        baseline=f"ProjectionRunner {library_rate:,.0f} view events/s",
        ratio=f"{ratio:.1f}x",
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events",
        "--size",
        type=int,
        default=200_000,
        help="events in the log (default 200000)",
    )
    parser.add_argument(
        "--library-events",
        type=int,
        default=3_000,
        help="the library's runner projects this many of the view's events"
        " (default 3000)",
    )
    args = parser.parse_args()
    # The projector runs here as in `pm-order worker` or `projections rebuild`.
    interpreter.tune()
    main_of(lambda: run(args.events, args.library_events))


if __name__ == "__main__":
    main()
