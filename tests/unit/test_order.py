"""The Order aggregate's rules, in memory."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.exceptions import AlreadyDecided
from domain.order import Order, order_aggregate_id
from domain.workflow import FINISHED, REFUSED, UNFINISHED
from tests.unit.conftest import T0, new_order

HOUR = timedelta(hours=1)


def decide(order: Order, accept: bool, by: str = "bob", minutes: int = 5) -> None:
    at = T0 + timedelta(minutes=minutes)
    if accept:
        order.accept(by=by, at=at)
    else:
        order.refuse(by=by, at=at)


# -- requesting ---------------------------------------------------------------------


def test_a_requested_order_is_unfinished_and_keeps_what_was_asked() -> None:
    # when
    order = Order(
        number=3,
        snids=["SN-9", "SN-1"],
        resource_project="proj-a",
        dest_project="proj-b",
        user="alice",
        mailto=["a@example.com"],
        at=T0,
    )
    # then
    assert order.state == UNFINISHED
    assert order.is_unfinished
    assert (
        order.number,
        order.snids,
        order.resource_project,
        order.dest_project,
        order.user,
        order.mailto,
        order.requested_at,
    ) == (3, ["SN-9", "SN-1"], "proj-a", "proj-b", "alice", ["a@example.com"], T0)
    assert (order.decided_by, order.decided_at) == (None, None)
    assert (order.warning_count, order.warned_at) == (0, None)


def test_the_requested_event_carries_every_field_of_the_order() -> None:
    # when
    order = Order(
        number=3,
        snids=["SN-9", "SN-1"],
        resource_project="proj-a",
        dest_project="proj-b",
        user="alice",
        mailto=[],
        at=T0,
    )
    # then
    [requested] = order.collect_events()
    assert isinstance(requested, Order.Requested)
    assert (
        requested.number,
        requested.snids,
        requested.resource_project,
        requested.dest_project,
        requested.user,
        requested.mailto,
        requested.at,
    ) == (3, ["SN-9", "SN-1"], "proj-a", "proj-b", "alice", [], T0)


def test_an_order_id_is_derived_from_its_number_alone() -> None:
    # given two orders with the same number, made apart
    first, second = new_order(number=12), new_order(number=12)
    # then they have the same aggregate id, and another number gives another id
    assert first.id == second.id == order_aggregate_id(12)
    assert order_aggregate_id(12) != order_aggregate_id(13)


# -- deciding -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "state", "event_class"),
    [(True, FINISHED, Order.Accepted), (False, REFUSED, Order.Rejected)],
)
def test_a_decision_moves_the_state(
    order: Order, accept: bool, state: str, event_class: type
) -> None:
    # when
    decide(order, accept)
    # then
    assert order.state == state
    assert not order.is_unfinished
    [decided] = order.collect_events()
    assert isinstance(decided, event_class)


@pytest.mark.parametrize("accept", [True, False])
def test_the_decision_event_carries_number_decider_and_time(
    order: Order, accept: bool
) -> None:
    # when
    decide(order, accept, by="bob", minutes=30)
    # then
    [decided] = order.collect_events()
    assert (decided.number, decided.by, decided.at) == (  # type: ignore[attr-defined]
        7,
        "bob",
        T0 + timedelta(minutes=30),
    )
    assert (order.decided_by, order.decided_at) == ("bob", T0 + timedelta(minutes=30))


@pytest.mark.parametrize("accept", [True, False])
def test_repeating_the_same_decision_triggers_no_event(
    order: Order, accept: bool
) -> None:
    # given
    decide(order, accept, by="bob", minutes=5)
    order.collect_events()
    # when
    decide(order, accept, by="bill", minutes=50)
    # then
    assert order.collect_events() == []
    assert (order.decided_by, order.decided_at) == ("bob", T0 + timedelta(minutes=5))


@pytest.mark.parametrize(("first", "then"), [(True, False), (False, True)])
def test_the_other_decision_raises_already_decided(
    order: Order, first: bool, then: bool
) -> None:
    # given
    decide(order, first)
    state = order.state
    order.collect_events()
    # when / then
    with pytest.raises(AlreadyDecided, match="order 7 is already"):
        decide(order, then)
    assert order.state == state
    assert order.collect_events() == []


@pytest.mark.parametrize(
    ("decided", "asked", "otherwise"),
    [
        (None, True, False),
        (None, False, False),
        (True, True, False),
        (True, False, True),
        (False, False, False),
        (False, True, True),
    ],
)
def test_decided_otherwise_is_true_only_for_the_opposite_decision(
    order: Order, decided: bool | None, asked: bool, otherwise: bool
) -> None:
    if decided is not None:
        decide(order, decided)
    assert order.decided_otherwise(asked) is otherwise


# -- warnings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("since_request", "due"),
    [
        (timedelta(0), False),
        (HOUR - timedelta(seconds=1), False),
        (HOUR, True),
        (3 * HOUR, True),
    ],
)
def test_a_warning_is_due_only_once_warn_after_has_passed_since_the_request(
    order: Order, since_request: timedelta, due: bool
) -> None:
    assert order.warning_due(T0 + since_request, HOUR, most=3) is due


@pytest.mark.parametrize(
    ("since_warning", "due"),
    [
        (timedelta(0), False),
        (HOUR - timedelta(seconds=1), False),
        (HOUR, True),
    ],
)
def test_the_next_warning_is_due_warn_after_the_last_one(
    order: Order, since_warning: timedelta, due: bool
) -> None:
    # given a first warning raised late, 90 minutes after the request
    first = T0 + timedelta(minutes=90)
    assert order.raise_warning(first, HOUR, most=3)
    # then the next one counts from that warning, not from the request
    assert order.warning_due(first + since_warning, HOUR, most=3) is due


def test_raising_a_warning_records_number_count_and_time(order: Order) -> None:
    # when
    raised = order.raise_warning(T0 + HOUR, HOUR, most=3)
    # then
    assert raised
    [warning] = order.collect_events()
    assert isinstance(warning, Order.WarningRaised)
    assert (warning.number, warning.count, warning.at) == (7, 1, T0 + HOUR)
    assert (order.warning_count, order.warned_at) == (1, T0 + HOUR)


def test_a_warning_leaves_the_order_unfinished(order: Order) -> None:
    order.raise_warning(T0 + HOUR, HOUR, most=3)
    assert order.state == UNFINISHED


def test_a_warning_that_is_not_due_raises_no_event(order: Order) -> None:
    # when
    raised = order.raise_warning(T0 + HOUR - timedelta(seconds=1), HOUR, most=3)
    # then
    assert not raised
    assert order.collect_events() == []
    assert order.warning_count == 0


def test_warnings_stop_at_most(order: Order) -> None:
    # given every warning allowed, each a period apart
    for n in range(1, 4):
        assert order.raise_warning(T0 + n * HOUR, HOUR, most=3)
    order.collect_events()
    # when a fourth period passes
    raised = order.raise_warning(T0 + 4 * HOUR, HOUR, most=3)
    # then
    assert not raised
    assert order.collect_events() == []
    assert order.warning_count == 3


def test_warnings_count_up_one_at_a_time(order: Order) -> None:
    for n in range(1, 4):
        order.raise_warning(T0 + n * HOUR, HOUR, most=3)
    counts = [e.count for e in order.collect_events()]  # type: ignore[attr-defined]
    assert counts == [1, 2, 3]


@pytest.mark.parametrize("accept", [True, False])
def test_no_warning_is_due_once_decided(order: Order, accept: bool) -> None:
    # given
    decide(order, accept)
    order.collect_events()
    # when
    raised = order.raise_warning(T0 + 10 * HOUR, HOUR, most=3)
    # then
    assert not order.warning_due(T0 + 10 * HOUR, HOUR, most=3)
    assert not raised
    assert order.collect_events() == []


def test_a_warned_order_can_still_be_decided(order: Order) -> None:
    # given
    order.raise_warning(T0 + HOUR, HOUR, most=3)
    # when
    order.accept(by="bob", at=T0 + 2 * HOUR)
    # then
    assert order.state == FINISHED
