"""The audit trail, read from the event store: history, show --as-of, machines.

Each scenario is built through the service, the clock moving between steps, so
every event has a known time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from cli import audit
from cli.audit import OrderNotYetRequested, ServerNotFound
from domain.exceptions import OrdersNotFound
from domain.service import OrderService
from service.store import Store
from tests.application.conftest import decide, request
from tests.conftest import FakeClock

REQUESTED_AT = datetime(2026, 11, 27, 9, 10, tzinfo=UTC)
WARNED_AT = datetime(2026, 11, 27, 10, 10, tzinfo=UTC)
DECIDED_AT = datetime(2026, 11, 27, 10, 30, tzinfo=UTC)
WARN_EVERY = timedelta(hours=1)


def at(moment: datetime, clock: FakeClock) -> None:
    clock.now = moment


@pytest.fixture
def warned_then_accepted(registered: OrderService, clock: FakeClock) -> int:
    """Order 1: proj-a -> proj-b of SN-A-1 and SN-A-2 by alice at 09:10, warned
    at 10:10, accepted by bob at 10:30."""
    at(REQUESTED_AT, clock)
    number = request(registered, ["SN-A-1", "SN-A-2"])
    at(WARNED_AT, clock)
    registered.raise_warning(number, every=WARN_EVERY, most=3)
    at(DECIDED_AT, clock)
    decide(registered, [number], accept=True)
    return number


@pytest.fixture
def refused(registered: OrderService, clock: FakeClock) -> int:
    """Order 1: proj-a -> proj-b of SN-A-1 at 09:10, refused by bob at 10:30."""
    at(REQUESTED_AT, clock)
    number = request(registered, ["SN-A-1"])
    at(DECIDED_AT, clock)
    decide(registered, [number], accept=False)
    return number


# -- orders history ----------------------------------------------------------------


def test_history_lists_every_event_of_the_order_at_its_time(
    store: Store, warned_then_accepted: int
) -> None:
    # given an order requested, warned about and accepted at known times
    # when its history is read
    history = audit.order_history(store.app, warned_then_accepted)
    # then each event is there, in order, at the time it happened
    assert [(s.version, s.event, s.at) for s in history.steps] == [
        (1, audit.REQUESTED, REQUESTED_AT),
        (2, audit.WARNING, WARNED_AT),
        (3, audit.ACCEPTED, DECIDED_AT),
    ]


def test_history_names_who_acted_and_for_which_project(
    store: Store, warned_then_accepted: int
) -> None:
    # given an order requested by alice of proj-a and accepted by bob of proj-b
    # when its history is read
    history = audit.order_history(store.app, warned_then_accepted)
    # then the requester acts for the source, the decider for the destination,
    # and the service itself raises warnings
    assert [(s.user, s.project) for s in history.steps] == [
        ("alice", "proj-a"),
        ("pm-order", None),
        ("bob", "proj-b"),
    ]


def test_history_shows_each_state_change(
    store: Store, warned_then_accepted: int
) -> None:
    # given an order warned about, then accepted
    # when its history is read
    history = audit.order_history(store.app, warned_then_accepted)
    # then each event shows the state before and after it
    assert [(s.state_before, s.state_after) for s in history.steps] == [
        (None, "unfinished"),
        ("unfinished", "unfinished"),
        ("unfinished", "finished"),
    ]


def test_history_says_which_servers_were_reserved_and_moved(
    store: Store, warned_then_accepted: int
) -> None:
    # given an accepted order of two servers, warned about once
    # when its history is read
    history = audit.order_history(store.app, warned_then_accepted)
    # then the request reserved them, the warning is counted, the acceptance
    # moved them from the source to the destination
    assert [s.change for s in history.steps] == [
        "reserved SN-A-1, SN-A-2 to move from proj-a to proj-b",
        "warning 1: still waiting for proj-b to decide",
        "moved SN-A-1, SN-A-2 from proj-a to proj-b",
    ]


def test_history_of_a_refused_order_says_the_servers_were_freed(
    store: Store, refused: int
) -> None:
    # given a refused order
    # when its history is read
    last = audit.order_history(store.app, refused).steps[-1]
    # then the refusal freed the servers back to the source
    assert (last.event, last.user, last.project) == ("refused", "bob", "proj-b")
    assert (last.from_project, last.to_project) == ("proj-a", "proj-a")
    assert last.change == "freed SN-A-1 back to proj-a"
    assert (last.state_before, last.state_after) == ("unfinished", "refused")


def test_history_of_an_unknown_order_is_refused(store: Store) -> None:
    # given an empty store
    # when the history of order 7 is asked for
    # then it is not found
    with pytest.raises(OrdersNotFound, match="order 7 not found"):
        audit.order_history(store.app, 7)


# -- orders show --as-of -----------------------------------------------------------


def test_an_order_before_its_request_did_not_exist_yet(
    store: Store, warned_then_accepted: int
) -> None:
    # given an order requested at 09:10
    # when it is asked for as of 09:00
    # then the answer says it did not exist yet, and when it was requested
    with pytest.raises(OrderNotYetRequested) as refused:
        audit.order_as_of(
            store.app, warned_then_accepted, REQUESTED_AT - timedelta(minutes=10)
        )
    assert str(refused.value) == (
        "order 1 did not exist yet at 2026-11-27 09:00:00: "
        "it was requested at 2026-11-27 09:10:00"
    )


def test_an_order_between_events_is_shown_as_the_earlier_one_left_it(
    store: Store, warned_then_accepted: int
) -> None:
    # given an order requested at 09:10 and warned about at 10:10
    # when it is asked for as of 10:00
    order = audit.order_as_of(
        store.app, warned_then_accepted, datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    )
    # then it is the requested order, not yet warned about
    assert (order.version, order.latest_version) == (1, 3)
    assert (order.state, order.warning_count, order.warned_at) == (
        "unfinished",
        0,
        None,
    )
    assert order.updated_at == REQUESTED_AT


def test_an_event_exactly_at_the_moment_asked_counts_as_done(
    store: Store, warned_then_accepted: int
) -> None:
    # given an order warned about at 10:10
    # when it is asked for as of 10:10 exactly
    order = audit.order_as_of(store.app, warned_then_accepted, WARNED_AT)
    # then the warning is part of it
    assert (order.version, order.warning_count, order.warned_at) == (
        2,
        1,
        WARNED_AT,
    )


def test_an_order_after_its_decision_shows_the_decision(
    store: Store, warned_then_accepted: int
) -> None:
    # given an order accepted by bob at 10:30
    # when it is asked for as of the next day
    order = audit.order_as_of(
        store.app, warned_then_accepted, DECIDED_AT + timedelta(days=1)
    )
    # then it is finished, decided by bob at 10:30
    assert (order.version, order.state) == (3, "finished")
    assert (order.decided_by, order.decided_at) == ("bob", DECIDED_AT)
    assert order.snids == ("SN-A-1", "SN-A-2")
    assert (order.resource_project, order.dest_project, order.user) == (
        "proj-a",
        "proj-b",
        "alice",
    )


def test_without_a_moment_the_order_is_shown_as_it_is_now(
    store: Store, warned_then_accepted: int
) -> None:
    # given an order with three events
    # when it is asked for with no moment
    order = audit.order_as_of(store.app, warned_then_accepted)
    # then it is its latest version
    assert (order.version, order.state, order.as_of) == (3, "finished", None)
    assert order.updated_at == DECIDED_AT


def test_a_moment_in_another_zone_is_compared_as_an_instant(
    store: Store, warned_then_accepted: int
) -> None:
    # given an order warned about at 10:10 UTC
    # when it is asked for as of 18:09 in UTC+8 (10:09 UTC)
    order = audit.order_as_of(
        store.app,
        warned_then_accepted,
        datetime(2026, 11, 27, 18, 9, tzinfo=timezone(timedelta(hours=8))),
    )
    # then the warning has not happened yet
    assert order.version == 1


def test_an_unknown_order_at_any_moment_is_not_found(store: Store) -> None:
    # given an empty store
    # when order 3 is asked for as of a moment
    # then it is not found, which is not the same as "not yet"
    with pytest.raises(OrdersNotFound, match="order 3 not found") as refused:
        audit.order_as_of(store.app, 3, DECIDED_AT)
    assert not isinstance(refused.value, OrderNotYetRequested)


# -- machines history --------------------------------------------------------------


@pytest.fixture
def moved_twice(registered: OrderService, clock: FakeClock) -> str:
    """SN-A-1: proj-a -> proj-b by order 1 (bob accepts at 10:30), then proj-b ->
    proj-c by order 2 (bob requests at 11:00, carol accepts at 11:30)."""
    at(REQUESTED_AT, clock)
    first = request(registered, ["SN-A-1"])
    at(DECIDED_AT, clock)
    decide(registered, [first], accept=True)
    at(datetime(2026, 11, 27, 11, 0, tzinfo=UTC), clock)
    second = request(
        registered,
        ["SN-A-1"],
        source_project="proj-b",
        dest_project="proj-c",
        user="bob",
    )
    at(datetime(2026, 11, 27, 11, 30, tzinfo=UTC), clock)
    registered.decide(
        project="proj-c",
        user="carol",
        roles=frozenset({"member"}),
        order_ids=[second],
        accept=True,
    )
    return "SN-A-1"


def test_server_history_names_every_owner_and_the_orders_that_moved_it(
    store: Store, moved_twice: str
) -> None:
    # given a server moved from proj-a to proj-b, then from proj-b to proj-c
    # when its history is read
    history = audit.server_history(store.app, moved_twice)
    # then it was owned by the three projects in turn, moved by orders 1 and 2
    assert history.owners == ("proj-a", "proj-b", "proj-c")
    assert history.moved_by == (1, 2)


def test_server_history_lists_each_event_with_its_time_and_order(
    store: Store, moved_twice: str
) -> None:
    # given a server moved twice
    # when its history is read
    steps = audit.server_history(store.app, moved_twice).steps
    # then registration, reservations and transfers come in order, with times
    assert [(s.event, s.at, s.order_id, s.owner) for s in steps] == [
        ("registered", datetime(2026, 11, 27, 9, 0, tzinfo=UTC), None, "proj-a"),
        ("reserved", REQUESTED_AT, 1, "proj-a"),
        ("transferred", DECIDED_AT, 1, "proj-b"),
        ("reserved", datetime(2026, 11, 27, 11, 0, tzinfo=UTC), 2, "proj-b"),
        ("transferred", datetime(2026, 11, 27, 11, 30, tzinfo=UTC), 2, "proj-c"),
    ]


def test_server_history_names_who_reserved_and_who_moved_it(
    store: Store, moved_twice: str
) -> None:
    # given a server requested by alice and bob and accepted by bob and carol
    # when its history is read
    steps = audit.server_history(store.app, moved_twice).steps
    # then each reservation names the requester, each transfer the decider
    assert [(s.user, s.change) for s in steps] == [
        (None, "registered to proj-a"),
        ("alice", "reserved by order 1 (proj-a -> proj-b)"),
        ("bob", "moved from proj-a to proj-b by order 1"),
        ("bob", "reserved by order 2 (proj-b -> proj-c)"),
        ("carol", "moved from proj-b to proj-c by order 2"),
    ]


def test_server_history_shows_a_refusal_freeing_the_server(
    store: Store, refused: int
) -> None:
    # given a server whose order was refused
    # when its history is read
    history = audit.server_history(store.app, "SN-A-1")
    # then it was freed back to its owner, which never changed
    last = history.steps[-1]
    assert (last.event, last.order_id, last.owner, last.user) == (
        "released",
        refused,
        "proj-a",
        "bob",
    )
    assert history.owners == ("proj-a",)
    assert history.moved_by == ()


def test_server_history_of_an_unknown_server_is_refused(store: Store) -> None:
    # given an empty store
    # when the history of an unregistered server is asked for
    # then it is not found
    with pytest.raises(ServerNotFound, match="server SN-X not found"):
        audit.server_history(store.app, "SN-X")
