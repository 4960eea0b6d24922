"""Rebuilding, verifying and watching the views, on each store."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from domain.service import OrderService
from projections import rebuild as rebuilding
from projections import view_status
from projections.database import PostgresViews, SQLiteViews
from projections.projector import (
    Projector,
    set_position,
    tracked_position,
    view_contents,
)
from service.store import Store, open_event_log
from tests.conftest import INVENTORY, FakeClock


@pytest.fixture
def busy_store(store: Store, service: OrderService, clock: FakeClock) -> Store:
    """Twenty orders in every state, views caught up."""
    service.register_servers(INVENTORY)
    for n in range(1, 11):
        service.request_transfer(
            source_project="proj-a",
            user="alice",
            snids=[f"SN-A-{n:03d}"],
            dest_project="proj-b",
            mailto=["a@example.com"],
        )
        clock.advance(minutes=5)
    service.decide(
        project="proj-b", user="bob", roles=frozenset(), order_ids=[1, 2], accept=True
    )
    service.decide(
        project="proj-b", user="bob", roles=frozenset(), order_ids=[3], accept=False
    )
    store.catch_up()
    return store


def rebuild(
    store: Store, name: str, progress: rebuilding.Progress | None = None
) -> int:
    view = next(v for v in store.all_views if v.name == name)
    return rebuilding.rebuild(
        store.app.recorder, store.app.mapper, store.views, view, progress
    )


def verify(store: Store, name: str) -> list[rebuilding.Difference]:
    view = next(v for v in store.all_views if v.name == name)
    return rebuilding.verify(store.app.recorder, store.app.mapper, store.views, view)


@pytest.mark.parametrize("name", ["order_lists", "server_ownership", "reports"])
def test_a_rebuild_switches_in_the_same_rows_at_the_head(
    busy_store: Store, name: str
) -> None:
    view = next(v for v in busy_store.all_views if v.name == name)
    before = view_contents(busy_store.views, view)
    position = rebuild(busy_store, name)
    assert position == busy_store.app.recorder.max_notification_id()
    assert tracked_position(busy_store.views, name) == position
    assert view_contents(busy_store.views, view) == before


def test_a_rebuild_repairs_a_corrupted_view(busy_store: Store) -> None:
    view = busy_store.order_lists
    good = view_contents(busy_store.views, view)
    with busy_store.views.writing() as cursor:
        cursor.execute("UPDATE order_lists_orders SET state = 'finished' WHERE id = 5")
    rebuild(busy_store, "order_lists")
    assert view_contents(busy_store.views, view) == good


def test_an_interrupted_rebuild_switches_nothing_and_can_run_again(
    busy_store: Store,
) -> None:
    view = busy_store.order_lists
    with busy_store.views.writing() as cursor:
        cursor.execute(
            "UPDATE order_lists_orders SET user_name = 'mallory' WHERE id = 4"
        )
    corrupted = view_contents(busy_store.views, view)
    position = tracked_position(busy_store.views, view.name)

    def interrupt(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rebuild(busy_store, "order_lists", interrupt)
    assert view_contents(busy_store.views, view) == corrupted
    assert tracked_position(busy_store.views, view.name) == position

    rebuild(busy_store, "order_lists")
    assert verify(busy_store, "order_lists") == []


def test_verify_finds_nothing_in_a_view_the_projector_built(busy_store: Store) -> None:
    for view in busy_store.all_views:
        assert verify(busy_store, view.name) == [], view.name


def test_verify_lists_a_row_corrupted_on_purpose(busy_store: Store) -> None:
    with busy_store.views.writing() as cursor:
        cursor.execute(
            "UPDATE server_ownership SET project = 'proj-z' WHERE snid = 'SN-A-004'"
        )
    [difference] = verify(busy_store, "server_ownership")
    assert difference.table == "server_ownership"
    assert [row[:3] for row in difference.missing] == [("SN-A-004", "proj-a", 4)]
    assert [row[:3] for row in difference.unexpected] == [("SN-A-004", "proj-z", 4)]


def test_verify_finds_a_row_the_view_should_not_have(busy_store: Store) -> None:
    with busy_store.views.writing() as cursor:
        cursor.execute("DELETE FROM order_lists_items WHERE order_id = 7")
    [difference] = verify(busy_store, "order_lists")
    assert difference.table == "order_lists_items"
    # its lists: the source's REQUESTED_BY_ME and ALL, the destination's two
    assert sorted(row[0] for row in difference.missing) == [
        "proj-a",
        "proj-a",
        "proj-b",
        "proj-b",
    ]
    assert difference.unexpected == []


def test_status_tells_the_lag_in_events_and_seconds(
    busy_store: Store, service: OrderService
) -> None:
    caught_up = view_status.status(
        busy_store.app.recorder,
        busy_store.app.mapper,
        busy_store.views,
        busy_store.order_lists,
    )
    assert caught_up.lag_events == 0
    assert caught_up.lag_seconds == 0
    assert caught_up.moved_at is not None

    service.request_transfer(
        source_project="proj-c",
        user="carol",
        snids=["SN-C-001"],
        dest_project="proj-a",
        mailto=[],
    )
    behind = view_status.status(
        busy_store.app.recorder,
        busy_store.app.mapper,
        busy_store.views,
        busy_store.order_lists,
    )
    assert behind.head > behind.position
    assert behind.lag_events == behind.head - behind.position
    assert behind.lag_seconds >= 0


def test_a_live_projector_ahead_of_a_switched_rebuild_re_applies_from_its_position(
    busy_store: Store, service: OrderService
) -> None:
    # Given: a rebuild built up to now, and a new order the live view will have first
    view = busy_store.order_lists
    scratch, rebuilt = rebuilding.build_beside(
        busy_store.app.recorder, busy_store.app.mapper, busy_store.views, view, "t"
    )
    try:
        service.request_transfer(
            source_project="proj-c",
            user="carol",
            snids=["SN-C-002"],
            dest_project="proj-a",
            mailto=[],
        )
        busy_store.catch_up()
        # When: the older rebuild is switched in
        with busy_store.views.switching([scratch]) as cursor:
            busy_store.views.switch_tables_from(scratch, view.layout, cursor)
            set_position(cursor, busy_store.views, view.name, rebuilt.position())
    finally:
        scratch.discard()
    # Then: the projector continues from the switched position and loses nothing
    live = Projector(
        busy_store.app.recorder, busy_store.app.mapper, busy_store.views, view
    )
    assert live.catch_up() == busy_store.app.recorder.max_notification_id()
    assert verify(busy_store, "order_lists") == []


# PostgreSQL only: SQLite has no bound on a statement.
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_a_switch_moves_its_tables_whatever_the_bound_on_a_statement(
    busy_store: Store,
) -> None:
    # given the live views bounded to 10 ms a statement (the service's bound is
    # 10 s; a switch at a million orders waits for readers to let go)
    db = busy_store.views
    view = next(v for v in busy_store.all_views if v.name == "order_lists")
    scratch = db.scratch("bounded")
    try:
        with scratch.writing() as cursor:
            view.create_tables(cursor, scratch)
        with db.writing() as cursor:
            cursor.execute("SET LOCAL statement_timeout = 10")
            # when the switch moves the scratch tables in
            db.switch_tables_from(scratch, view.layout, cursor)
            # then its statements run unbounded, to the end of the switch
            cursor.execute("SHOW statement_timeout")
            assert cursor.fetchone() == ("0",)
    finally:
        scratch.discard()


def test_views_shared_among_two_processes_are_rebuilt_as_one_would(
    busy_store: Store, store_url: str
) -> None:
    # given every view as the projector made it, then one corrupted
    before = {v.name: view_contents(busy_store.views, v) for v in busy_store.all_views}
    with busy_store.views.writing() as cursor:
        cursor.execute("DELETE FROM server_ownership WHERE snid = 'SN-A-004'")
    # when every view is rebuilt with two processes (PostgreSQL: a share each;
    # SQLite: one process whatever is asked)
    position = rebuilding.rebuild(
        busy_store.app.recorder,
        busy_store.app.mapper,
        busy_store.views,
        busy_store.all_views,
        processes=2,
        open_log=functools.partial(open_event_log, store_url),
    )
    # then each is switched in at the head, as the projector made it
    assert position == busy_store.app.recorder.max_notification_id()
    for view in busy_store.all_views:
        assert tracked_position(busy_store.views, view.name) == position, view.name
        assert view_contents(busy_store.views, view) == before[view.name], view.name
    assert _scratch_places(busy_store) == []


def _failing_log() -> Any:
    raise RuntimeError("the log cannot be read here")


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_a_share_that_fails_in_another_process_switches_nothing(
    busy_store: Store,
) -> None:
    # given a corrupted view
    with busy_store.views.writing() as cursor:
        cursor.execute("DELETE FROM server_ownership WHERE snid = 'SN-A-004'")
    corrupted = view_contents(busy_store.views, busy_store.server_ownership)
    positions = {
        v.name: tracked_position(busy_store.views, v.name) for v in busy_store.all_views
    }
    # when the process building the second share cannot read the log
    with pytest.raises(RuntimeError, match="cannot be read here"):
        rebuilding.rebuild(
            busy_store.app.recorder,
            busy_store.app.mapper,
            busy_store.views,
            busy_store.all_views,
            processes=2,
            open_log=_failing_log,
        )
    # then no view is switched in, and no scratch place is left behind
    assert view_contents(busy_store.views, busy_store.server_ownership) == corrupted
    for view in busy_store.all_views:
        assert tracked_position(busy_store.views, view.name) == positions[view.name]
    assert _scratch_places(busy_store) == []


def _scratch_places(store: Store) -> list[str]:
    """The rebuilds' scratch places left beside the store's views."""
    if isinstance(store.views, SQLiteViews):
        views = Path(store.views.path)
        return [str(p) for p in views.parent.glob(f"{views.name}.rebuild_*")]
    rows = store.views.query(
        "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE ?",
        (f"{store.views.schema}_rebuild%",),
    )
    return [name for (name,) in rows]


# PostgreSQL only: its names are cut at 63 characters; SQLite's files are not.
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_scratch_places_named_past_the_longest_name_stay_apart(
    busy_store: Store,
) -> None:
    # given two labels alike in their first 63 characters, and beyond
    alike = "rebuild_" + "x" * 80
    first = busy_store.views.scratch(alike + "_one")
    second = busy_store.views.scratch(alike + "_two")
    try:
        # then each has a schema of its own, within PostgreSQL's limit
        assert isinstance(first, PostgresViews)
        assert isinstance(second, PostgresViews)
        assert first.schema != second.schema
        assert len(first.schema or "") <= 63
        assert len(second.schema or "") <= 63
        assert len(_scratch_places(busy_store)) == 2
    finally:
        first.discard()
        second.discard()
