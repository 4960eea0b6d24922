"""The warning scheduler on the real store, with a clock that moves when told.

The scheduler reads the order lists to find candidates, so every run here first
brings the views up to date (`store.catch_up()`), as the background projectors
would; the order itself decides whether a warning is due.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from api.context import FOLLOWING
from domain.order import Order
from domain.service import OrderService
from service.store import Store
from service.warning_scheduler import WarningScheduler
from tests.application.conftest import decide, request
from tests.conftest import Api, FakeClock

EVERY = timedelta(hours=1)
MOST = 3


def scheduler(service: OrderService, store: Store) -> WarningScheduler:
    return WarningScheduler(service, store.views, every=EVERY, most=MOST)


def run(service: OrderService, store: Store) -> int:
    """One scheduler round on up-to-date views; returns how many were raised."""
    store.catch_up()
    return scheduler(service, store).run_once()


def warnings_stored(store: Store, number: int) -> list[Order.WarningRaised]:
    events = store.app.repository.event_store.get(Order.create_id(number))
    return [e for e in events if isinstance(e, Order.WarningRaised)]


def test_no_warning_before_the_order_waited_warn_after(
    registered: OrderService, store: Store, clock: FakeClock
) -> None:
    # given
    number = request(registered, ["SN-A-1"])
    # when
    clock.advance(minutes=59, seconds=59)
    raised = run(registered, store)
    # then
    assert raised == 0
    assert registered.order(number).warning_count == 0


def test_a_warning_is_raised_once_the_order_waited_warn_after(
    registered: OrderService, store: Store, clock: FakeClock
) -> None:
    # given
    number = request(registered, ["SN-A-1"])
    # when
    now = clock.advance(hours=1)
    raised = run(registered, store)
    # then
    assert raised == 1
    order = registered.order(number)
    assert (order.warning_count, order.warned_at) == (1, now)


def test_only_orders_that_waited_long_enough_are_warned(
    registered: OrderService, store: Store, clock: FakeClock
) -> None:
    # given one order an hour old and one half an hour old
    old = request(registered, ["SN-A-1"])
    clock.advance(minutes=30)
    young = request(registered, ["SN-A-2"])
    # when
    clock.advance(minutes=30)
    run(registered, store)
    # then
    assert registered.order(old).warning_count == 1
    assert registered.order(young).warning_count == 0


def test_another_warning_follows_each_further_period_and_not_sooner(
    registered: OrderService, store: Store, clock: FakeClock
) -> None:
    # given a first warning
    number = request(registered, ["SN-A-1"])
    clock.advance(hours=1)
    run(registered, store)
    # when half a period passes, then the whole of it
    clock.advance(minutes=30)
    half_way = run(registered, store)
    clock.advance(minutes=30)
    a_period_on = run(registered, store)
    # then
    assert (half_way, a_period_on) == (0, 1)
    assert registered.order(number).warning_count == 2


def test_warnings_stop_at_warn_max(
    registered: OrderService, store: Store, clock: FakeClock
) -> None:
    # given
    number = request(registered, ["SN-A-1"])
    # when twice as many periods pass as warnings are allowed
    raised = []
    for _ in range(2 * MOST):
        clock.advance(hours=1)
        raised.append(run(registered, store))
    # then
    assert raised == [1] * MOST + [0] * MOST
    assert len(warnings_stored(store, number)) == MOST


@pytest.mark.parametrize("accept", [True, False], ids=["accepted", "refused"])
def test_a_decision_ends_the_warnings(
    registered: OrderService, store: Store, clock: FakeClock, accept: bool
) -> None:
    # given an order warned once, then decided
    number = request(registered, ["SN-A-1"])
    clock.advance(hours=1)
    run(registered, store)
    decide(registered, [number], accept=accept)
    # when
    clock.advance(hours=5)
    raised = run(registered, store)
    # then
    assert raised == 0
    assert registered.order(number).warning_count == 1


def test_a_scheduler_reading_a_view_not_yet_caught_up_raises_no_second_warning(
    registered: OrderService, store: Store, clock: FakeClock
) -> None:
    # given a warning raised but not yet in the order lists (a restart, a lag)
    number = request(registered, ["SN-A-1"])
    clock.advance(hours=1)
    run(registered, store)
    # when the scheduler runs on the stale view: the order is proposed again
    raised = scheduler(registered, store).run_once()
    # then the order declines
    assert raised == 0
    assert len(warnings_stored(store, number)) == 1


def test_two_schedulers_running_at_the_same_moment_never_raise_one_twice(
    registered: OrderService,
    store: Store,
    clock: FakeClock,
    reopen: Callable[[], Store],
) -> None:
    # given nine overdue orders, and two processes' schedulers on the same store
    numbers = [request(registered, [f"SN-A-{n}"]) for n in range(1, 7)]
    numbers += [
        request(
            registered, [f"SN-B-{n}"], source_project="proj-b", dest_project="proj-a"
        )
        for n in range(1, 4)
    ]
    clock.advance(hours=1)
    store.catch_up()
    schedulers = []
    for _ in range(2):
        other = reopen()
        schedulers.append(scheduler(OrderService(other.app, clock=clock), other))
    start = threading.Barrier(2)

    def round_of(one: WarningScheduler) -> int:
        start.wait(timeout=10)
        return one.run_once()

    # when both run at once
    with ThreadPoolExecutor(2) as pool:
        raised = list(pool.map(round_of, schedulers))
    # then each order got exactly one warning, raised by one scheduler or the other
    assert sum(raised) == len(numbers)
    assert [len(warnings_stored(store, n)) for n in numbers] == [1] * len(numbers)


async def test_the_order_json_shows_the_latest_warning_time_and_count(
    store: Store, api: Api, clock: FakeClock
) -> None:
    # given an order warned twice, an hour apart
    status, body = await api.request(
        "tok-alice", "proj-a", {"snids": "SN-A-001", "dest_project": "proj-b"}
    )
    assert status == 200
    loop = asyncio.get_running_loop()
    for _ in range(2):
        clock.advance(hours=1)
        await loop.run_in_executor(None, run, api.service, store)
    latest = clock.now
    # when the views have caught up with the log
    assert await api.client.app[FOLLOWING].caught_up(api.head(), 5)
    status, listed = await api.list("tok-bob", "proj-b", type=0)
    # then
    assert status == 200
    [order] = listed["orders"]
    assert order["id"] == body["order_id"]
    assert order["warnning_times"] == latest.strftime("%Y-%m-%d %H:%M:%S")
    assert order["warning_count"] == 2
