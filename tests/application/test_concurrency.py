"""Concurrent requests from separate processes: the store decides who wins.

Each racer has its own OrderApplication and OrderService, opened on the same store
URL as another process would, so the per-process lock inside OrderService plays no
part: only the event store's optimistic concurrency keeps the rules.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from domain.exceptions import AlreadyDecided, ServersAlreadyOrdered
from domain.service import OrderService
from domain.workflow import FINISHED, REFUSED
from pm_order.store import Store
from tests.application.conftest import decide, owner, request
from tests.conftest import FakeClock

T = TypeVar("T")

ROUNDS = 20
RACERS = 6


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
def processes(reopen: Callable[[], Store], clock: FakeClock) -> Callable[[int], list[OrderService]]:
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
    outcomes = race([lambda s=s: request(s, ["SN-1"]) for s in (first, second)])
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
        outcomes = race([lambda s=s: request(s, [f"SN-{n}"]) for s in (first, second)])
        # then
        won = [o for o in outcomes if isinstance(o, int)]
        lost = [o for o in outcomes if not isinstance(o, int)]
        assert len(won) == 1, f"round {n}: {outcomes}"
        assert isinstance(lost[0], ServersAlreadyOrdered), f"round {n}: {outcomes}"
        assert owner(store, f"SN-{n}") == ("proj-a", won[0])
        winners += won
    # and no loser wrote anything: registrations, then an order and a reservation
    # per round (PostgreSQL may skip notification ids, so count the events)
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
    outcomes = race([lambda: request(first, ["SN-1", "SN-2"]),
                     lambda: request(second, ["SN-2", "SN-3"])])
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
    outcomes = race(
        [lambda s=s, n=n: request(s, [f"SN-{n}"]) for n, s in enumerate(services)]
    )
    # then
    assert sorted(outcomes) == list(range(1, RACERS + 1))  # type: ignore[type-var]
    for n, number in enumerate(outcomes):
        assert owner(store, f"SN-{n}") == ("proj-a", number)
        assert services[0].order(number).snids == [f"SN-{n}"]  # type: ignore[arg-type]


def test_racing_accept_and_refuse_of_one_order_decide_it_once(
    processes: Callable[[int], list[OrderService]], store: Store
) -> None:
    # given
    first, second = processes(2)
    first.register_servers([("SN-1", "proj-a"), ("SN-2", "proj-a")])
    number = request(first, ["SN-1", "SN-2"])
    # when
    outcomes = race([lambda: decide(first, [number], accept=True),
                     lambda: decide(second, [number], accept=False)])
    # then one decision stands, the other is a conflict, and the servers agree
    accepting, refusing = outcomes
    [error] = [o for o in outcomes if isinstance(o, Exception)]
    assert isinstance(error, AlreadyDecided)
    state, new_owner = (
        (REFUSED, "proj-a") if accepting is error else (FINISHED, "proj-b")
    )
    assert first.order(number).state == state
    assert owner(store, "SN-1") == owner(store, "SN-2") == (new_owner, None)
