"""The projector: the log applied to the views exactly once, whatever happens.

How "the view is right" is judged: the full contents of every view table
(`view_contents`) and each tracked position are compared with views rebuilt from
scratch by a fresh projector reading the same event log into a second,
independent database: an empty SQLite file of its own (`rebuilt`). Nothing is
copied and nothing in the database under test is dropped, so the reference cannot
inherit a fault of the run it judges; on PostgreSQL it also checks that both
dialects of the views agree.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.domain import DomainEventProtocol

from domain.order import Order
from domain.server import Server
from domain.service import OrderService
from domain.workflow import FINISHED, UNFINISHED
from projections.database import Cursor, SQLiteViews, ViewDatabase
from projections.order_lists import OrderLists
from projections.projector import (
    ProjectionConflict,
    Projector,
    tracked_position,
    view_contents,
)
from projections.reports import Reports
from projections.server_ownership import ServerOwnership, ServerRow
from projections.view import View
from service.store import Store
from tests.application.conftest import decide, request
from tests.conftest import FakeClock

VIEWS = ("order_lists", "server_ownership")
Contents = dict[str, Any]


def all_views() -> list[View]:
    return [OrderLists(), ServerOwnership()]


def contents(db: ViewDatabase) -> Contents:
    """Every row of every view table, and each view's tracked position."""
    dump: Contents = {}
    for view in all_views():
        dump.update(view_contents(db, view))
        dump[f"position of {view.name}"] = tracked_position(db, view.name)
    return dump


def projectors(
    store: Store, db: ViewDatabase | None = None, page_size: int = 3
) -> list[Projector]:
    """A projector per view, reading `store`'s log in small pages into `db`."""
    return [
        Projector(
            store.app.recorder,
            store.app.mapper,
            db or store.views,
            view,
            page_size=page_size,
        )
        for view in all_views()
    ]


def catch_up(store: Store) -> None:
    for projector in projectors(store):
        projector.catch_up()


@pytest.fixture
def rebuilt(store: Store, tmp_path: Path) -> Iterator[Callable[[], Contents]]:
    """The views rebuilt from `store`'s log into a database of their own."""
    db = SQLiteViews(tmp_path / "rebuilt-views.sqlite3")

    def _rebuild() -> Contents:
        for projector in projectors(store, db, page_size=1000):
            projector.create_tables()
            projector.catch_up()
        return contents(db)

    yield _rebuild
    db.close()


def ids(store: Store, project: str, list_type: int, **paging: Any) -> list[int]:
    page = OrderLists.page(
        store.views,
        project,
        list_type,
        limit=paging.get("limit", 1000),
        marker=paging.get("marker"),
    )
    return [order.id for order in page.orders]


def stored_events(store: Store) -> list[DomainEventProtocol[Any]]:
    notifications = store.app.recorder.select_notifications(start=None, limit=10_000)
    return [store.app.mapper.to_domain_event(n) for n in notifications]


# -- what the log gives ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("project", "list_type", "expected"),
    [
        ("proj-a", 0, [5]),
        ("proj-a", 1, []),
        ("proj-a", 2, []),
        ("proj-a", 3, [4, 3, 2, 1]),
        ("proj-a", 4, [5, 4, 3, 2, 1]),
        ("proj-b", 0, [4, 3]),
        ("proj-b", 1, [1]),
        ("proj-b", 2, []),
        ("proj-b", 3, [5]),
        ("proj-b", 4, [5, 4, 3, 1]),
        ("proj-c", 0, []),
        ("proj-c", 1, []),
        ("proj-c", 2, [2]),
        ("proj-c", 3, []),
        ("proj-c", 4, [2]),
        ("proj-x", 4, []),
    ],
)
def test_projecting_the_log_gives_each_list_newest_first_with_its_count(
    history: OrderService,
    store: Store,
    project: str,
    list_type: int,
    expected: list[int],
) -> None:
    # when
    catch_up(store)
    # then
    page = OrderLists.page(store.views, project, list_type, limit=1000, marker=None)
    assert [order.id for order in page.orders] == expected
    assert page.total_count == len(expected)
    assert page.next_marker is None


def test_a_listed_order_shows_its_request_and_its_warnings(
    history: OrderService, store: Store, clock: FakeClock
) -> None:
    # when
    catch_up(store)
    # then order 3 (requested at T0 by ann, warned at T0+1h10m and T0+2h10m)
    [row] = [
        o
        for o in OrderLists.page(store.views, "proj-b", 0, limit=10, marker=None).orders
        if o.id == 3
    ]
    requested = (clock.now - timedelta(hours=2, minutes=10)).timestamp()
    assert (row.snids, row.source_project, row.dest_project, row.user, row.state) == (
        "SN-A-4",
        "proj-a",
        "proj-b",
        "ann",
        UNFINISHED,
    )
    assert (row.warning_count, row.warned_at) == (2, clock.now.timestamp())
    assert (row.created_at, row.updated_at) == (requested, clock.now.timestamp())


def test_a_listed_order_shows_its_decision_time(
    history: OrderService, store: Store, clock: FakeClock
) -> None:
    # when
    catch_up(store)
    # then order 1, accepted 10 minutes after it was requested
    [row] = OrderLists.page(store.views, "proj-b", 1, limit=10, marker=None).orders
    assert row.state == FINISHED
    assert row.updated_at - row.created_at == 600
    assert row.warned_at is None


def test_a_listed_order_keeps_its_servers_in_the_order_requested(
    registered: OrderService, store: Store
) -> None:
    request(registered, ["SN-A-3", "SN-A-1", "SN-A-2"])
    catch_up(store)
    [row] = OrderLists.page(store.views, "proj-a", 3, limit=10, marker=None).orders
    assert row.snids == "SN-A-3,SN-A-1,SN-A-2"


def test_pages_of_a_list_follow_each_other_without_gap_or_repeat(
    history: OrderService, store: Store
) -> None:
    # given
    catch_up(store)
    # when the list of proj-a's orders is read two at a time
    pages = []
    marker = None
    while True:
        page = OrderLists.page(store.views, "proj-a", 4, limit=2, marker=marker)
        pages.append(([o.id for o in page.orders], page.next_marker, page.total_count))
        if page.next_marker is None:
            break
        marker = page.next_marker
    # then
    assert pages == [([5, 4], 4, 5), ([3, 2], 2, 5), ([1], None, 5)]


def test_projecting_the_log_gives_each_servers_owner_and_holding_order(
    history: OrderService, store: Store
) -> None:
    # when
    catch_up(store)
    # then
    owners = {
        r.snid: (r.project, r.order_id) for r in ServerOwnership.servers(store.views)
    }
    assert owners == {
        "SN-A-1": ("proj-b", None),
        "SN-A-2": ("proj-b", None),
        "SN-A-3": ("proj-a", None),
        "SN-A-4": ("proj-a", 3),
        "SN-A-5": ("proj-a", 4),
        "SN-A-6": ("proj-a", None),
        "SN-B-1": ("proj-b", 5),
        "SN-B-2": ("proj-b", None),
        "SN-B-3": ("proj-b", None),
        "SN-C-1": ("proj-c", None),
    }


def test_the_servers_of_one_project_are_listed_by_snid(
    history: OrderService, store: Store
) -> None:
    catch_up(store)
    rows = ServerOwnership.servers(store.views, "proj-b")
    assert [r.snid for r in rows] == ["SN-A-1", "SN-A-2", "SN-B-1", "SN-B-2", "SN-B-3"]
    assert all(isinstance(r, ServerRow) for r in rows)


def test_catching_up_moves_every_view_to_the_head_of_the_log(
    history: OrderService, store: Store
) -> None:
    catch_up(store)
    assert [tracked_position(store.views, v) for v in VIEWS] == [history.head()] * 2


def test_catching_up_again_changes_nothing(history: OrderService, store: Store) -> None:
    # given
    catch_up(store)
    before = contents(store.views)
    # when
    catch_up(store)
    # then
    assert contents(store.views) == before


def test_the_views_equal_views_rebuilt_from_scratch(
    history: OrderService, store: Store, rebuilt: Callable[[], Contents]
) -> None:
    catch_up(store)
    assert contents(store.views) == rebuilt()


# -- stopping, restarting, failing -----------------------------------------------------


@pytest.mark.parametrize("pages_before_restart", [0, 1, 2, 5])
def test_a_projector_restarted_mid_way_ends_with_the_views_rebuilt_from_scratch(
    history: OrderService,
    store: Store,
    reopen: Callable[[], Store],
    rebuilt: Callable[[], Contents],
    pages_before_restart: int,
) -> None:
    # given a few pages of one event applied (a page holds only its view's events:
    # five of three would reach the end of the orders' nine)
    for projector in projectors(store, page_size=1):
        for _ in range(pages_before_restart):
            projector.run_page()
    assert tracked_position(store.views, "order_lists") < history.head()
    # when a new process's projectors catch up
    restarted = reopen()
    catch_up(restarted)
    # then
    assert contents(restarted.views) == rebuilt()


def test_a_restarted_projector_neither_loses_nor_doubles_a_row(
    history: OrderService, store: Store, reopen: Callable[[], Store]
) -> None:
    # given two pages applied, then a restart
    for projector in projectors(store):
        projector.run_page()
        projector.run_page()
    restarted = reopen()
    # when
    catch_up(restarted)
    # then one order row and four list items per request, one row per server
    dump = contents(restarted.views)
    events = stored_events(store)
    requests = sum(isinstance(e, Order.Requested) for e in events)
    registrations = sum(isinstance(e, Server.Registered) for e in events)
    assert len(dump["order_lists_orders"]) == requests
    assert len(dump["order_lists_items"]) == 4 * requests
    assert len(dump["server_ownership"]) == registrations
    counts = {
        (project, list_type): n for project, list_type, n in dump["order_lists_counts"]
    }
    assert counts[("proj-a", 4)] == len(ids(restarted, "proj-a", 4))


def test_a_projector_killed_between_pages_loses_nothing_written_meanwhile(
    history: OrderService,
    store: Store,
    reopen: Callable[[], Store],
    rebuilt: Callable[[], Contents],
) -> None:
    # given a process that applied two pages, then died (its store is never used again)
    dying = reopen()
    for projector in projectors(dying):
        projector.run_page()
        projector.run_page()
    # and more orders and decisions stored after it died
    decide(history, [4], accept=False)
    request(history, ["SN-A-5"], dest_project="proj-c")
    # when another process catches up
    survivor = reopen()
    catch_up(survivor)
    # then
    assert contents(survivor.views) == rebuilt()
    assert ids(survivor, "proj-c", 0) == [6]


class FailingAfter:
    """A real view that crashes after applying `good` events of a page."""

    def __init__(self, view: View, good: int) -> None:
        self.view = view
        self.name = view.name
        self.tables = view.tables
        self.topics = view.topics
        self.good = good

    def create_tables(self, cursor: Cursor, db: ViewDatabase) -> None:
        self.view.create_tables(cursor, db)

    def apply_page(
        self,
        cursor: Cursor,
        db: ViewDatabase,
        events: Sequence[DomainEventProtocol[Any]],
    ) -> None:
        for event in events:
            if self.good == 0:
                raise RuntimeError("crashed mid-page")
            self.good -= 1
            self.view.apply_page(cursor, db, [event])


def test_a_page_that_fails_half_way_leaves_neither_rows_nor_a_moved_position(
    registered: OrderService, store: Store
) -> None:
    # given three orders, and a projector that dies after applying two of them
    for n in (1, 2, 3):
        request(registered, [f"SN-A-{n}"])
    before = contents(store.views)
    failing = Projector(
        store.app.recorder,
        store.app.mapper,
        store.views,
        FailingAfter(OrderLists(), good=2),
        page_size=1000,
    )
    # when
    with pytest.raises(RuntimeError, match="crashed mid-page"):
        failing.run_page()
    # then
    assert contents(store.views) == before


def test_a_page_that_failed_is_applied_whole_by_the_next_run(
    registered: OrderService, store: Store, rebuilt: Callable[[], Contents]
) -> None:
    # given a page that failed half-way
    for n in (1, 2, 3):
        request(registered, [f"SN-A-{n}"])
    failing = Projector(
        store.app.recorder,
        store.app.mapper,
        store.views,
        FailingAfter(OrderLists(), good=2),
        page_size=1000,
    )
    with pytest.raises(RuntimeError):
        failing.run_page()
    # when
    catch_up(store)
    # then
    assert contents(store.views) == rebuilt()


# -- two projectors on one view --------------------------------------------------------


def test_a_projector_applying_a_page_another_already_applied_raises_conflict(
    history: OrderService, store: Store, reopen: Callable[[], Store]
) -> None:
    # given two processes' projectors of the same view, both at the same position
    mine = projectors(store)[0]
    theirs = projectors(reopen())[0]
    start = mine.position()
    # when the other applies the next page first
    theirs.run_page(start)
    applied = contents(store.views)
    # then applying it again from the same start is refused, and changes nothing
    with pytest.raises(ProjectionConflict):
        mine.run_page(start)
    assert contents(store.views) == applied


def test_catching_up_tells_each_page_s_end_once_it_is_committed(
    history: OrderService, store: Store
) -> None:
    # given a projector of small pages (the next folded while one is written)
    projector = projectors(store)[0]
    head = store.app.recorder.max_notification_id()
    told: list[tuple[int, int]] = []
    # when it catches up, reading the tracked position as each page is told
    end = projector.catch_up(
        progress=lambda at: told.append(
            (at, tracked_position(store.views, "order_lists"))
        )
    )
    # then each page was committed when told, in order, up to the log's head
    assert end == head
    assert len(told) > 2
    assert all(at == committed for at, committed in told)
    assert [at for at, _ in told] == sorted({at for at, _ in told})
    assert told[-1][0] == head


def test_a_page_folded_ahead_is_not_written_when_the_page_before_lost_a_race(
    history: OrderService, store: Store, reopen: Callable[[], Store]
) -> None:
    # given a projector catching up in small pages, and another process's
    # projector of the same view that applies a page as soon as the first
    # page is committed (the second is folded by then)
    mine = projectors(store)[0]
    theirs = projectors(reopen())[0]
    told: list[int] = []

    def race(position: int) -> None:
        if not told:
            theirs.run_page(position)
            told.append(tracked_position(store.views, "order_lists"))

    # when: the second page is written after the other's
    with pytest.raises(ProjectionConflict):
        mine.catch_up(progress=race)
    # then: the view is where the other left it, with the orders requested up
    # to there and none of the page folded ahead
    position = told[0]
    assert tracked_position(store.views, "order_lists") == position
    requested = [
        store.app.mapper.to_domain_event(n).number
        for n in store.app.recorder.select_notifications(start=None, limit=10_000)
        if n.id <= position and n.topic.endswith("Order.Requested")
    ]
    listed = [row[0] for row in contents(store.views)["order_lists_orders"]]
    assert sorted(listed) == sorted(requested)
    assert position < store.app.recorder.max_notification_id()


def test_a_projector_that_lost_a_race_resumes_from_the_tracked_position(
    history: OrderService,
    store: Store,
    reopen: Callable[[], Store],
    rebuilt: Callable[[], Contents],
) -> None:
    # given a page lost to another process's projector
    mine, _ = projectors(store)
    theirs, _ = projectors(reopen())
    start = mine.position()
    theirs.run_page(start)
    with pytest.raises(ProjectionConflict):
        mine.run_page(start)
    # when both carry on
    mine.catch_up()
    theirs.catch_up()
    for projector in projectors(store)[1:]:
        projector.catch_up()
    # then
    assert contents(store.views) == rebuilt()


def test_two_projectors_racing_on_a_page_apply_it_once(
    history: OrderService,
    store: Store,
    reopen: Callable[[], Store],
    rebuilt: Callable[[], Contents],
) -> None:
    # given two processes' projectors of each view, at the same position
    racers = [projectors(store), projectors(reopen())]
    barrier = threading.Barrier(2)

    def race(mine: list[Projector]) -> list[str]:
        outcomes = []
        for projector in mine:
            start = projector.position()
            barrier.wait(timeout=30)
            try:
                projector.run_page(start)
                outcomes.append("applied")
            except ProjectionConflict:
                outcomes.append("conflict")
        return outcomes

    # when they race for the first page of each view
    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(race, racers, timeout=60)
    # then each page was applied by one and refused to the other
    for mine, theirs in zip(first, second, strict=True):
        assert {mine, theirs} == {"applied", "conflict"}
    # and after both catch up, nothing was applied twice
    for projector in racers[0] + racers[1]:
        projector.catch_up()
    assert contents(store.views) == rebuilt()


def test_only_a_view_that_reads_before_folding_folds_within_its_page() -> None:
    # A view overriding read_before (the reports read orders of earlier pages)
    # must not be folded ahead of its transaction; the others may be.
    assert Reports().reads_before_folding
    assert not OrderLists().reads_before_folding
    assert not ServerOwnership().reads_before_folding
