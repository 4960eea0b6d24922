"""Growing a store to N orders through the event store and the projectors.

Order i (1, 2, ...) moves server SN-i from tenant i % T to another tenant; of ten
orders, two stay unfinished, six are accepted and two refused. Every event is
what the service would save for it (the server registered, the order requested
and the server reserved, then the decision and the server transferred or
released), made by the domain's own aggregates, turned into stored events by the
application's mapper and inserted by the application's recorder in large
batches (the same events, far fewer round trips than one command at a time).
Then each view's own projector catches up, as a worker would. No view row is
written directly.

Where the time went before (py-spy, 30,000 orders): writing, a third in psycopg
dumping the library's array of composite values in Python, a sixth in the
library's runtime protocol checks, the rest making and encoding the events;
projecting, mostly waiting on the database (the reports and mail views read a
row per event), one view after another. So:

- the recorder used here (`CopyingRecorder`, a subclass of the store's) inserts
  a batch with COPY (binary, dumped in C) under the library's table lock and
  NOTIFY, instead of INSERT ... unnest(array);
- several processes make, encode and insert batches at once (the table lock
  takes them in turn; while one inserts, the others encode);
- the four views' projectors (`Store.projectors()`: one per view, each with its
  own tracking) run in processes of their own, following the log while it is
  written; the writers wait when they get LEAD events ahead of the slowest;
- every table (the event log's included) is ANALYZEd at the end, as autovacuum
  would in production, and the service's order numbers continue after the last.

Projecting is what bounds it (the reports and mail views apply an event at a
time); a `deadline` stops the writing between batches, so a store that cannot be
grown in time stops short (and says so) instead of overrunning.

Growing is resumable: a store already holding n orders grows from n + 1.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier

from domain.order import Order, order_aggregate_id
from domain.order_numbers import last_taken
from domain.server import Server
from domain.service import OrderApplication
from projections.projector import ProjectionConflict, Projector, tracked_position
from service.recorders import FailFastPostgresRecorder
from service.store import Store, open_store

# Bumped whenever what the generator writes changes.
VERSION: Final = 2
TENANTS: Final = 10
BATCH: Final = 2000  # orders per insert (about 9,200 events)
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
    # Pages that failed and were applied again (see project_all()).
    retried_pages: int = 0
    writers: int = 1
    projectors: int = 1

    @property
    def written_per_second(self) -> float:
        return self.events / self.write_seconds if self.write_seconds > 0 else 0.0

    @property
    def projected_per_second(self) -> float:
        return self.events / self.project_seconds if self.project_seconds > 0 else 0.0

    def describe(self) -> str:
        """One line: what was generated, how, how fast."""
        retried = (
            f"; {self.retried_pages} pages failed and were applied again"
            if self.retried_pages
            else ""
        )
        written = (
            f"{self.events:,} events written through the event store in"
            f" {self.write_seconds:.0f}s ({self.written_per_second:,.0f} events/s,"
            f" {self.writers} writer processes)"
        )
        if not self.projectors:
            return written + ", not projected here"
        return (
            f"{written}; every view projected by its own projector"
            f" ({self.projectors} processes following the writers)"
            f" {self.project_seconds:.0f}s after the start"
            f" ({self.projected_per_second:,.0f} events/s){retried}"
        )


class CopyingRecorder(FailFastPostgresRecorder):
    """The store's recorder, inserting a batch of stored events with one COPY.

    The same rows in the same table, under the same EXCLUSIVE table lock and with
    the same NOTIFY, in one transaction: only the statement that carries the rows
    differs (the library's INSERT ... FROM unnest(array of composites) is dumped
    value by value in Python; COPY's binary rows are dumped in C). It returns no
    notification ids, which the generator does not need.
    """

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return None
        copy_statement = SQL(
            "COPY {}.{} (originator_id, originator_version, topic, state)"
            " FROM STDIN (FORMAT BINARY)"
        ).format(Identifier(self.datastore.schema), Identifier(self.events_table_name))
        with (
            self.datastore.get_connection() as connection,
            connection.transaction(),
            connection.cursor() as cursor,
        ):
            self._lock_table(cursor)
            with cursor.copy(copy_statement) as copy:
                copy.set_types(
                    [self.datastore.originator_id_type, "int8", "text", "bytea"]
                )
                for e in stored_events:
                    copy.write_row(
                        (e.originator_id, e.originator_version, e.topic, e.state)
                    )
            self._notify_channel(cursor)
        return None


def orders_stored(store: Store) -> int:
    """How many orders the store holds (numbers are taken in sequence), asked of
    the event store as the service asks it."""
    recorder = store.app.recorder
    return last_taken(
        lambda n: bool(recorder.select_events(order_aggregate_id(n), limit=1))
    )


def grow(
    store: Store,
    target: int,
    *,
    deadline: float | None = None,
    project: bool = True,
    writers: int | None = None,
) -> Grown:
    """Add orders until the store holds `target`, or until `deadline` (a
    perf_counter time) passes: the batches in hand are finished, and the store
    holds orders 1..n without a gap. With `project`, every view is caught up
    (and every table ANALYZEd) before it returns.

    A few batches are written and projected here; more, by `writers` processes
    writing while the views' projectors, one process each, follow the log. The
    writers are held at most LEAD events ahead of the slowest projector, so when
    `deadline` stops the writing, little is left to project.
    """
    first = orders_stored(store) + 1
    url = _url_of(store)
    env = _writer_env(store)
    began = time.perf_counter()
    if first > target:
        return Grown(first - 1, 0, 0.0, 0.0)
    if url is None or env is None or target - first < 2 * BATCH:
        grown = _grow_here(store, first, target, deadline, project)
    else:
        n = writers or max(2, os.cpu_count() or 1)
        grown = _grow_in_processes(store, url, env, first, target, deadline, project, n)
    # The service's order numbers continue after the generated ones.
    store.after_bulk_write(0, last_order=grown.orders)
    if project:
        store.analyze()
    grown.project_seconds = time.perf_counter() - began
    return grown


# -- growing ----------------------------------------------------------------------

# How far (in events) the writers may run ahead of the slowest projector.
LEAD: Final = 200_000


def _batches(first: int, target: int) -> Iterator[tuple[int, int]]:
    i = first
    while i <= target:
        end = min(target, i + BATCH - 1)
        yield i, end
        i = end + 1


def _grow_here(
    store: Store, first: int, target: int, deadline: float | None, project: bool
) -> Grown:
    """Write and project in this process (a small growth, or SQLite)."""
    now = time.time()
    began = time.perf_counter()
    events, last = 0, first - 1
    for a, b in _batches(first, target):
        if deadline is not None and time.perf_counter() > deadline:
            break
        events += _save_batch(store.app, a, b, target, now)
        last = b
    write_seconds = time.perf_counter() - began
    retried = 0
    if project:
        for projector in store.projectors():
            retried += _catch_up(projector)
    return Grown(
        orders=last,
        events=events,
        write_seconds=write_seconds,
        project_seconds=0.0,  # set by grow()
        retried_pages=retried,
        writers=1,
        projectors=1 if project else 0,
    )


def _grow_in_processes(
    store: Store,
    url: str,
    env: dict[str, str],
    first: int,
    target: int,
    deadline: float | None,
    project: bool,
    writers: int,
) -> Grown:
    context = multiprocessing.get_context("spawn")
    tasks: Any = context.Queue()
    done: Any = context.Queue()
    finished = context.Event()  # set once the last event is written
    final_head = context.Value("q", 0)
    names = [view.name for view in store.all_views] if project else []
    processes = [
        context.Process(
            target=_writer_main, args=(env, sys.path, tasks, done), daemon=True
        )
        for _ in range(writers)
    ] + [
        context.Process(
            target=_projector_main,
            args=(url, name, sys.path, finished, final_head, done),
            daemon=True,
        )
        for name in names
    ]
    recorder = store.app.recorder
    now = time.time()
    began = time.perf_counter()
    events, last, outstanding, retried = 0, first - 1, 0, 0
    projected: set[str] = set()

    def collect(timeout: float) -> None:
        """Take one message from the children (or fail if one died)."""
        nonlocal events, outstanding, retried
        try:
            message = done.get(timeout=timeout)
        except queue.Empty:
            dead = [p for p in processes if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(
                    f"a generator process died ({dead[0].exitcode})"
                ) from None
            return
        match message:
            case ("wrote", int(count)):
                events += count
                outstanding -= 1
            case ("projected", str(name), int(pages)):
                projected.add(name)
                retried += pages
            case ("error", str(text)):
                raise RuntimeError(f"generating failed: {text}")

    def behind() -> int:
        head = recorder.max_notification_id() or 0
        return head - min(tracked_position(store.views, name) for name in names)

    try:
        for process in processes:
            process.start()
        for a, b in _batches(first, target):
            if deadline is not None and time.perf_counter() > deadline:
                break
            while outstanding >= 2 * writers:
                collect(1.0)
            while names and behind() > LEAD:
                collect(0.2)
            tasks.put((a, b, target, now))
            outstanding += 1
            last = b
        for _ in range(writers):
            tasks.put(None)
        while outstanding:
            collect(1.0)
        write_seconds = time.perf_counter() - began
        final_head.value = recorder.max_notification_id() or 0
        finished.set()
        while len(projected) < len(names):
            collect(1.0)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join(10)
    return Grown(
        orders=last,
        events=events,
        write_seconds=write_seconds,
        project_seconds=0.0,  # set by grow()
        retried_pages=retried,
        writers=writers,
        projectors=len(names),
    )


def _writer_env(store: Store) -> dict[str, str] | None:
    env = dict(store.app.env)
    if env.get("PERSISTENCE_MODULE") != "eventsourcing.postgres":
        return None
    env["APPLICATION_RECORDER_TOPIC"] = get_topic(CopyingRecorder)
    env["CREATE_TABLE"] = "n"
    return env


def _writer_main(env: dict[str, str], path: list[str], tasks: Any, done: Any) -> None:
    """A writer process: batches from `tasks` until None, a count for each."""
    sys.path[:] = path
    app = OrderApplication(env=env)
    try:
        while (task := tasks.get()) is not None:
            done.put(("wrote", _save_batch(app, *task)))
    except BaseException as error:
        done.put(("error", f"writer: {error!r}"))
        raise
    finally:
        app.close()


def _projector_main(
    url: str, name: str, path: list[str], finished: Any, final_head: Any, done: Any
) -> None:
    """A projector process: view `name`'s own projector follows the log until the
    writing is finished and the view has reached the last event."""
    sys.path[:] = path
    store = open_store(url, create_tables=False)
    try:
        [projector] = [p for p in store.projectors() if p.name == name]
        retried = 0
        while True:
            retried += _catch_up(projector)
            # Read `finished` before the position: set only after the last write.
            last = finished.is_set()
            position = projector.position()
            if last and position >= final_head.value:
                break
            time.sleep(0.05)  # caught up with the writers: let them get ahead
        done.put(("projected", name, retried))
    except BaseException as error:
        done.put(("error", f"{name}: {error!r}"))
        raise
    finally:
        store.close()


def _catch_up(projector: Projector, attempts: int = 50) -> int:
    """Catch `projector` up with the log; returns the pages retried.

    A failed page is rolled back whole (its tracking with it), so applying it
    again is safe. (psycopg's pipeline mode has been seen to hand a read the
    result of an earlier statement on a busy machine: counted, not hidden.)
    """
    import psycopg

    for failures in range(attempts):
        try:
            projector.catch_up()
            return failures
        except (psycopg.ProgrammingError, ProjectionConflict):
            continue
    raise RuntimeError(f"projecting {projector.name} failed {attempts} times")


def _save_batch(
    app: OrderApplication, first: int, last: int, target: int, now: float
) -> int:
    """Make orders first..last as the service would, and store their events."""
    span = SPREAD.total_seconds()
    origin = datetime.fromtimestamp(now, UTC)
    events: list[Any] = []
    for i in range(first, last + 1):
        # Older orders first, the newest about now.
        at = origin - timedelta(seconds=span * (target - i) / max(target, 1))
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
        events += server.collect_events()
        events += order.collect_events()
    # The application's mapper and recorder: the stored events are exactly what
    # app.save would insert for these aggregates.
    stored = [app.mapper.to_stored_event(event) for event in events]
    app.recorder.insert_events(stored)
    return len(stored)


def project_all(store: Store) -> int:
    """Catch every view up here, each with its own projector; returns the pages
    that failed and were applied again."""
    return sum(_catch_up(projector) for projector in store.projectors())


def _url_of(store: Store) -> str | None:
    """The pm-order database URL of `store` (None for SQLite)."""
    env = store.app.env
    if env.get("PERSISTENCE_MODULE") != "eventsourcing.postgres":
        return None
    from urllib.parse import quote

    password = env.get("POSTGRES_PASSWORD", "")
    credentials = quote(env["POSTGRES_USER"]) + (
        f":{quote(password)}" if password else ""
    )
    url = (
        f"postgresql://{credentials}@{env['POSTGRES_HOST']}:{env['POSTGRES_PORT']}"
        f"/{quote(env['POSTGRES_DBNAME'])}"
    )
    schema = env.get("POSTGRES_SCHEMA")
    return f"{url}?schema={schema}" if schema else url
