"""How a projector reads and writes its pages: only its views' topics read, the
positions of the events it skipped passed all the same, and the same rows
whatever the pages' sizes and whichever views share a projector.

The reference is always a projection of the same log one event a page, each view
on its own, into a database of its own: what applying the events one by one
gives.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import ApplicationRecorder

from domain.service import OrderService
from projections.database import SQLiteViews, ViewDatabase
from projections.mail_outbox import MailOutbox
from projections.order_lists import OrderLists
from projections.projector import Projector, tracked_position, view_contents
from projections.reports import Reports
from projections.server_ownership import ServerOwnership
from projections.view import View
from service.store import Store
from tests.application.conftest import decide
from tests.conftest import FakeClock


def every_view() -> list[View]:
    return [OrderLists(), ServerOwnership(), MailOutbox(), Reports()]


def contents(db: ViewDatabase, views: Sequence[View]) -> dict[str, Any]:
    dump: dict[str, Any] = {}
    for view in views:
        dump.update(view_contents(db, view))
        dump[f"position of {view.name}"] = tracked_position(db, view.name)
    return dump


def project(
    store: Store, db: ViewDatabase, views: Sequence[View], page_size: int
) -> None:
    projector = Projector(
        store.app.recorder, store.app.mapper, db, views, page_size=page_size
    )
    projector.create_tables()
    projector.catch_up()


@pytest.fixture
def reference(store: Store, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Every view projected one event a page, each on its own (SQLite)."""
    db = SQLiteViews(tmp_path / "one-by-one.sqlite3")
    for view in every_view():
        project(store, db, [view], page_size=1)
    yield contents(db, every_view())
    db.close()


@pytest.fixture
def log(service: OrderService, clock: FakeClock) -> OrderService:
    """Orders whose request, warnings and decision fall in one page or several,
    with servers registered between them (events no order view reads)."""
    service.register_servers([(f"SN-{n}", "proj-a") for n in range(1, 13)])
    numbers = []
    for n in range(1, 9):
        written = service.request_transfer(
            source_project="proj-a",
            user="alice",
            snids=[f"SN-{n}"],
            dest_project="proj-b" if n % 3 else "proj-c",
            mailto=[f"ops{n}@a.example.com"] if n % 2 else [],
        )
        assert written.order_id is not None
        numbers.append(written.order_id)
        if n == 4:
            service.register_servers([("SN-B-1", "proj-b"), ("SN-B-2", "proj-b")])
    for _ in range(2):
        clock.advance(hours=1)
        service.raise_warning(numbers[0], every=timedelta(hours=1), most=3)
        service.raise_warning(numbers[5], every=timedelta(hours=1), most=3)
    clock.advance(days=1)  # decisions on a later (UTC) day
    decide(service, [numbers[0], numbers[1], numbers[3]], accept=True, project="proj-b")
    decide(service, [numbers[5]], accept=False, project="proj-c")
    decide(service, [numbers[2]], accept=True, project="proj-c")
    return service


@pytest.mark.parametrize("page_size", [1, 2, 5, 1000])
def test_a_projector_per_view_gives_the_rows_applied_one_by_one(
    log: OrderService,
    store: Store,
    tmp_path: Path,
    reference: dict[str, Any],
    page_size: int,
) -> None:
    for view in every_view():
        project(store, store.views, [view], page_size)
    assert contents(store.views, every_view()) == reference


@pytest.mark.parametrize("page_size", [1, 3, 1000])
def test_one_projector_for_every_view_gives_the_same_rows(
    log: OrderService, store: Store, reference: dict[str, Any], page_size: int
) -> None:
    # Every topic is read (nothing filtered): the same rows all the same.
    project(store, store.views, every_view(), page_size)
    assert contents(store.views, every_view()) == reference


def test_a_projector_of_some_topics_reads_only_those(
    log: OrderService, store: Store
) -> None:
    read: list[str] = []
    recorder = Counting(store.app.recorder, read)
    projector = Projector(recorder, store.app.mapper, store.views, OrderLists())
    projector.create_tables()
    projector.catch_up()
    assert read
    assert set(read) <= OrderLists.topics


def test_a_projector_of_some_topics_moves_past_the_events_it_skips(
    log: OrderService, store: Store
) -> None:
    # given every order view at the end of the log
    projector = Projector(
        store.app.recorder, store.app.mapper, store.views, OrderLists(), page_size=2
    )
    projector.create_tables()
    assert projector.catch_up() == log.head()
    # when servers are registered (events the view does not read)
    log.register_servers([("SN-Z-1", "proj-z"), ("SN-Z-2", "proj-z")])
    head = log.head()
    # then the view passes them: a writer waiting to see position `head` in the
    # order lists is answered
    assert projector.run_page() == head
    assert tracked_position(store.views, OrderLists.name) == head
    # and nothing newer leaves it there
    assert projector.run_page() == head


def test_a_projector_of_some_topics_stops_where_told(
    log: OrderService, store: Store
) -> None:
    projector = Projector(
        store.app.recorder, store.app.mapper, store.views, MailOutbox(), page_size=2
    )
    projector.create_tables()
    # A position no mail event is at: the view goes exactly there.
    stop = log.head() - 3
    assert projector.catch_up(stop=stop) == stop
    assert tracked_position(store.views, MailOutbox.name) == stop
    assert projector.catch_up() == log.head()


def test_a_projector_of_some_topics_crosses_long_runs_of_other_events(
    service: OrderService, store: Store
) -> None:
    # Far more server events than a page's reading range, then one order.
    service.register_servers([(f"SN-{n}", "proj-a") for n in range(1, 60)])
    service.request_transfer(
        source_project="proj-a",
        user="alice",
        snids=["SN-1"],
        dest_project="proj-b",
        mailto=[],
    )
    projector = Projector(
        store.app.recorder, store.app.mapper, store.views, OrderLists(), page_size=2
    )
    projector.create_tables()
    assert projector.run_page() == service.head()  # one page: the order is found
    assert [
        o.id
        for o in OrderLists.page(store.views, "proj-a", 3, limit=5, marker=None).orders
    ] == [1]


class Counting:
    """A recorder that notes the topic of every notification it hands out."""

    def __init__(self, recorder: ApplicationRecorder, read: list[str]) -> None:
        self.recorder = recorder
        self.read = read

    def select_notifications(self, *args: Any, **kwargs: Any) -> Any:
        notifications = self.recorder.select_notifications(*args, **kwargs)
        self.read += [n.topic for n in notifications]
        return notifications

    def max_notification_id(self) -> int | None:
        return self.recorder.max_notification_id()
