"""Replay: a fresh application on the same store reads back exactly what was written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from domain.order import Order, order_aggregate_id
from domain.server import server_aggregate_id
from domain.service import OrderService
from domain.workflow import FINISHED, REFUSED, UNFINISHED
from service.store import Store
from tests.application.conftest import INVENTORY, request
from tests.conftest import FakeClock

NUMBERS = [1, 2, 3, 4, 5]  # the orders of the `history` fixture


def state_of(aggregate: Any) -> dict[str, Any]:
    """Everything an aggregate holds, but the events it has not saved (none here)."""
    return {k: v for k, v in vars(aggregate).items() if k != "_pending_events"}


def test_the_history_has_every_kind_of_order(history: OrderService) -> None:
    # a guard for the tests below: they compare something worth comparing
    states = [history.order(n).state for n in NUMBERS]
    assert states == [FINISHED, REFUSED, UNFINISHED, UNFINISHED, UNFINISHED]
    assert history.order(3).warning_count == 2


@pytest.mark.parametrize("number", NUMBERS)
def test_an_order_read_back_by_a_fresh_application_is_the_same(
    history: OrderService, store: Store, reopen: Callable[[], Store], number: int
) -> None:
    # given
    before: object = store.app.repository.get(order_aggregate_id(number))
    # when
    after: object = reopen().app.repository.get(order_aggregate_id(number))
    # then
    assert isinstance(after, Order)
    assert after.number == number
    assert state_of(after) == state_of(before)


@pytest.mark.parametrize("snid", [snid for snid, _ in INVENTORY])
def test_a_server_read_back_by_a_fresh_application_is_the_same(
    history: OrderService, store: Store, reopen: Callable[[], Store], snid: str
) -> None:
    # given
    before: object = store.app.repository.get(server_aggregate_id(snid))
    # when
    after: object = reopen().app.repository.get(server_aggregate_id(snid))
    # then
    assert state_of(after) == state_of(before)


def test_a_fresh_application_continues_numbering_after_the_last_order(
    history: OrderService, reopen: Callable[[], Store], clock: FakeClock
) -> None:
    # given a new process on the same store
    fresh = OrderService(reopen().app, clock=clock)
    # when
    number = request(fresh, ["SN-A-6"])
    # then
    assert number == max(NUMBERS) + 1


def test_a_fresh_application_sees_the_same_log_head(
    history: OrderService, reopen: Callable[[], Store], clock: FakeClock
) -> None:
    fresh = OrderService(reopen().app, clock=clock)
    assert fresh.head() == history.head()


def test_an_order_read_at_its_first_version_is_as_requested(
    history: OrderService, reopen: Callable[[], Store], clock: FakeClock
) -> None:
    # given order 1, accepted since
    fresh = OrderService(reopen().app, clock=clock)
    # when
    first = fresh.order(1, version=1)
    # then
    assert (first.state, first.decided_by) == (UNFINISHED, None)
    assert fresh.order(1).state == FINISHED
