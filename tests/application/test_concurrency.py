"""Concurrent commands from separate processes: the store decides who wins.

Each racer has its own OrderApplication and OrderService, opened on the same store
URL as another process would, so the per-process lock inside OrderService plays no
part: only the event store's optimistic concurrency keeps the rules.

Threads released by a barrier race for real. Where a race has a narrow window, the
second half of this module opens it deterministically instead: another process's
whole command runs at a chosen moment of the first one's (just before it reads a
given aggregate, or just before it saves). The store, the services and their
retries are all real; only the timing is chosen.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar
from uuid import UUID

import pytest

from domain.exceptions import AlreadyDecided, ServersAlreadyOrdered
from domain.order import order_aggregate_id
from domain.server import server_aggregate_id
from domain.service import OrderService
from domain.workflow import FINISHED, REFUSED
from projections.database import SQLiteViews
from service.store import Store
from tests.application.conftest import decide, owner, request
from tests.conftest import FakeClock

T = TypeVar("T")

ROUNDS = 20
# Each PostgreSQL store holds about nine connections: keep the racers few.
RACERS = 4


def race(calls: Sequence[Callable[[], T]]) -> list[T | Exception]:
    """Run every call in its own thread, released together; each result or error."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T | Exception:
        barrier.wait(timeout=30)
        try:
            return call()
        except Exception as error:  # noqa: BLE001 - the outcome is what is tested
            return error

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls, timeout=120))


@pytest.fixture
def processes(
    reopen: Callable[[], Store], clock: FakeClock
) -> Callable[[int], list[OrderService]]:
    """`n` services, each on its own application and connections to the store."""

    def _open(n: int) -> list[OrderService]:
        return [OrderService(reopen().app, clock=clock) for _ in range(n)]

    return _open


def test_two_processes_racing_for_a_server_have_exactly_one_winner(
    processes: Callable[[int], list[OrderService]], store: Store
) -> None:
    # given
    first, second = processes(2)
    first.register_servers([("SN-1", "proj-a")])
    # when
    outcomes = race([partial(request, s, ["SN-1"]) for s in (first, second)])
    # then
    [winner] = [o for o in outcomes if isinstance(o, int)]
    [loser] = [o for o in outcomes if not isinstance(o, int)]
    assert isinstance(loser, ServersAlreadyOrdered)
    assert f"SN-1 (order {winner})" in str(loser)
    assert owner(store, "SN-1") == ("proj-a", winner)


def test_every_race_for_a_server_has_exactly_one_winner(
    processes: Callable[[int], list[OrderService]], store: Store
) -> None:
    # given
    first, second = processes(2)
    first.register_servers([(f"SN-{n}", "proj-a") for n in range(ROUNDS)])
    winners: list[int] = []
    for n in range(ROUNDS):
        # when
        snid = f"SN-{n}"
        outcomes = race([partial(request, s, [snid]) for s in (first, second)])
        # then
        won = [o for o in outcomes if isinstance(o, int)]
        lost = [o for o in outcomes if not isinstance(o, int)]
        assert len(won) == 1, f"round {n}: {outcomes}"
        assert isinstance(lost[0], ServersAlreadyOrdered), f"round {n}: {outcomes}"
        assert owner(store, snid) == ("proj-a", won[0])
        winners += won
    # and no loser wrote anything: registrations, then an order and a reservation
    # per round (PostgreSQL may skip notification ids, so count the events).
    # Numbers increase; on PostgreSQL a loser's number is skipped (a gap).
    assert winners == sorted(set(winners))
    if isinstance(store.views, SQLiteViews):
        assert winners == list(range(1, ROUNDS + 1))
    stored = store.app.recorder.select_notifications(start=None, limit=10 * ROUNDS)
    assert len(stored) == ROUNDS + 2 * ROUNDS


def test_racers_on_overlapping_servers_have_exactly_one_winner(
    processes: Callable[[int], list[OrderService]], store: Store
) -> None:
    # given two requests sharing only SN-2
    first, second = processes(2)
    first.register_servers([(f"SN-{n}", "proj-a") for n in (1, 2, 3)])
    # when
    outcomes = race(
        [
            lambda: request(first, ["SN-1", "SN-2"]),
            lambda: request(second, ["SN-2", "SN-3"]),
        ]
    )
    # then the loser reserved nothing, not even its unshared server
    [winner] = [o for o in outcomes if isinstance(o, int)]
    [loser] = [o for o in outcomes if not isinstance(o, int)]
    assert isinstance(loser, ServersAlreadyOrdered)
    held = {snid: owner(store, snid)[1] for snid in ("SN-1", "SN-2", "SN-3")}
    assert list(held.values()).count(winner) == 2
    assert list(held.values()).count(None) == 1


def test_racers_on_disjoint_servers_all_win_with_consecutive_numbers(
    processes: Callable[[int], list[OrderService]], store: Store
) -> None:
    # given
    services = processes(RACERS)
    services[0].register_servers([(f"SN-{n}", "proj-a") for n in range(RACERS)])
    # when
    outcomes = race([partial(request, s, [f"SN-{n}"]) for n, s in enumerate(services)])
    # then
    assert sorted(outcomes) == list(range(1, RACERS + 1))  # type: ignore[type-var]
    for n, number in enumerate(outcomes):
        assert owner(store, f"SN-{n}") == ("proj-a", number)
        assert services[0].order(number).snids == [f"SN-{n}"]  # type: ignore[arg-type]


# -- chosen interleavings ------------------------------------------------------------


def run_before_reading(
    monkeypatch: pytest.MonkeyPatch,
    service: OrderService,
    aggregate_id: UUID,
    action: Callable[[], Any],
) -> None:
    """Run `action` once, just before `service` first reads `aggregate_id` (alone,
    or with others in one statement: then before that statement)."""
    repository = service.app.repository
    recorder = service.app.recorder
    read = repository.get
    read_many = recorder.select_events_of  # type: ignore[attr-defined]
    # PostgreSQL: a batch's servers are read with its order numbers.
    read_many_taking_numbers = getattr(
        recorder, "select_events_of_taking_numbers", None
    )
    pending = [action]

    def get(wanted: UUID, *args: Any, **kwargs: Any) -> Any:
        if wanted == aggregate_id and pending:
            pending.pop()()
        return read(wanted, *args, **kwargs)

    def select_events_of(wanted: Sequence[UUID]) -> Any:
        if aggregate_id in wanted and pending:
            pending.pop()()
        return read_many(wanted)

    def select_events_of_taking_numbers(wanted: Sequence[UUID], count: int) -> Any:
        if aggregate_id in wanted and pending:
            pending.pop()()
        assert read_many_taking_numbers is not None
        return read_many_taking_numbers(wanted, count)

    monkeypatch.setattr(repository, "get", get)
    monkeypatch.setattr(recorder, "select_events_of", select_events_of)
    if read_many_taking_numbers is not None:
        monkeypatch.setattr(
            recorder, "select_events_of_taking_numbers", select_events_of_taking_numbers
        )


def run_before_saving(
    monkeypatch: pytest.MonkeyPatch, service: OrderService, action: Callable[[], Any]
) -> None:
    """Run `action` once, just before `service` first saves."""
    save = service.app.save
    pending = [action]

    def save_after_action(*args: Any, **kwargs: Any) -> Any:
        if pending:
            pending.pop()()
        return save(*args, **kwargs)

    monkeypatch.setattr(service.app, "save", save_after_action)


def run_at(
    moment: str,
    monkeypatch: pytest.MonkeyPatch,
    service: OrderService,
    action: Callable[[], Any],
) -> None:
    """Run another process's `action` at `moment` of `service`'s next command."""
    if moment == "before saving":
        run_before_saving(monkeypatch, service, action)
    else:
        aggregate_id = {
            "before reading the order": order_aggregate_id(1),
            "before reading SN-1": server_aggregate_id("SN-1"),
            "between reading SN-1 and SN-2": server_aggregate_id("SN-2"),
        }[moment]
        run_before_reading(monkeypatch, service, aggregate_id, action)


@pytest.fixture
def two(
    processes: Callable[[int], list[OrderService]],
) -> tuple[OrderService, OrderService]:
    """Two processes, with SN-1..SN-4 registered to proj-a."""
    first, second = processes(2)
    first.register_servers([(f"SN-{n}", "proj-a") for n in range(1, 5)])
    return first, second


@pytest.mark.parametrize(
    "moment", ["before reading SN-1", "between reading SN-1 and SN-2", "before saving"]
)
def test_a_server_ordered_meanwhile_by_another_process_is_reported_held(
    two: tuple[OrderService, OrderService],
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    moment: str,
) -> None:
    # given another process orders SN-2 while this one orders SN-1 and SN-2
    first, second = two
    theirs: list[int] = []
    run_at(
        moment,
        monkeypatch,
        first,
        lambda: theirs.append(request(second, ["SN-2", "SN-3"])),
    )
    # when / then
    with pytest.raises(ServersAlreadyOrdered) as refused:
        request(first, ["SN-1", "SN-2"])
    assert f"SN-2 (order {theirs[0]})" in str(refused.value)
    assert owner(store, "SN-1") == ("proj-a", None)
    assert owner(store, "SN-2") == ("proj-a", theirs[0])


def test_a_number_taken_meanwhile_by_another_process_is_not_reused(
    two: tuple[OrderService, OrderService],
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given another process takes a number for other servers just before this one
    # saves
    first, second = two
    theirs: list[int] = []
    run_before_saving(
        monkeypatch, first, lambda: theirs.append(request(second, ["SN-3"]))
    )
    # when
    number = request(first, ["SN-1"])
    # then the two orders have numbers of their own
    assert owner(store, "SN-3") == ("proj-a", theirs[0])
    assert owner(store, "SN-1") == ("proj-a", number)
    if isinstance(store.views, SQLiteViews):
        # searched numbers: the other took 1, and this request retried with 2
        assert (theirs[0], number) == (1, 2)
    else:
        # counted numbers: this one had 1 before the other asked; no conflict
        assert (number, theirs[0]) == (1, 2)
        assert store.app.conflicts == 0  # type: ignore[attr-defined]


MOMENTS = [
    "before reading the order",
    "between reading SN-1 and SN-2",
    "before saving",
]


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize(
    ("mine", "theirs", "state", "new_owner"),
    [(True, False, REFUSED, "proj-a"), (False, True, FINISHED, "proj-b")],
)
def test_a_decision_taken_meanwhile_the_other_way_raises_already_decided(
    two: tuple[OrderService, OrderService],
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    moment: str,
    mine: bool,
    theirs: bool,
    state: str,
    new_owner: str,
) -> None:
    # given order 1 of SN-1 and SN-2, decided one way by another process meanwhile
    first, second = two
    number = request(first, ["SN-1", "SN-2"])
    run_at(moment, monkeypatch, first, lambda: decide(second, [number], accept=theirs))
    # when / then
    with pytest.raises(AlreadyDecided):
        decide(first, [number], accept=mine)
    assert first.order(number).state == state
    assert owner(store, "SN-1") == owner(store, "SN-2") == (new_owner, None)


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize(
    ("accept", "state", "new_owner"),
    [(True, FINISHED, "proj-b"), (False, REFUSED, "proj-a")],
)
def test_the_same_decision_taken_meanwhile_is_a_success_that_writes_nothing_more(
    two: tuple[OrderService, OrderService],
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    moment: str,
    accept: bool,
    state: str,
    new_owner: str,
) -> None:
    # given order 1, decided the same way by another process meanwhile
    first, second = two
    number = request(first, ["SN-1", "SN-2"])
    heads: list[int] = []
    run_at(
        moment,
        monkeypatch,
        first,
        lambda: heads.append(decide(second, [number], accept=accept)),
    )
    # when
    decide(first, [number], accept=accept)
    # then
    assert first.head() == heads[0]
    assert first.order(number).state == state
    assert owner(store, "SN-1") == owner(store, "SN-2") == (new_owner, None)
