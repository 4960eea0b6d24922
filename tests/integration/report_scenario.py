"""A week of orders for the report's integration tests, written to a store.

Days in UTC, from Monday 2026-11-23; nothing is requested on the 26th:

    order  requested      source -> dest     outcome     time to decision
      1    23rd 09:00     proj-a -> proj-b   accepted         300 s
      2    23rd 10:00     proj-a -> proj-c   refused         5400 s
      3    23rd 11:00     proj-b -> proj-a   accepted          40 s
      4    24th 09:00     proj-a -> proj-b   accepted        1200 s
      5    24th 14:00     proj-c -> proj-a   accepted       20000 s
      6    25th 08:00     proj-b -> proj-c   refused       100000 s
      7    25th 09:00     proj-a -> proj-b   unfinished
      8    27th 09:00     proj-a -> proj-c   accepted         700 s
      9    27th 10:00     proj-b -> proj-a   unfinished

The events are stored, not projected: the report command must catch up itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from domain.service import OrderService
from service.store import open_store
from tests.conftest import FakeClock

ACCEPT: Final = "accept"
REFUSE: Final = "refuse"

# (day of November, hour, source, destination, decision or None, seconds to it)
ORDERS: Final = (
    (23, 9, "proj-a", "proj-b", ACCEPT, 300),
    (23, 10, "proj-a", "proj-c", REFUSE, 5400),
    (23, 11, "proj-b", "proj-a", ACCEPT, 40),
    (24, 9, "proj-a", "proj-b", ACCEPT, 1200),
    (24, 14, "proj-c", "proj-a", ACCEPT, 20000),
    (25, 8, "proj-b", "proj-c", REFUSE, 100000),
    (25, 9, "proj-a", "proj-b", None, 0),
    (27, 9, "proj-a", "proj-c", ACCEPT, 700),
    (27, 10, "proj-b", "proj-a", None, 0),
)

# What the report must show, worked out by hand from ORDERS.
DAYS: Final = ("2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26", "2026-11-27")
DAYS_WITH_ACCEPTED: Final = 3  # 23rd, 24th, 27th
DAYS_WITH_REFUSED: Final = 2  # 23rd, 25th
DAYS_WITH_UNFINISHED: Final = 2  # 25th, 27th
PROJ_A_SUMMARY: Final = {
    "project": "proj-a",
    "requested": 5,
    "accepted": 3,
    "refused": 1,
    "unfinished": 1,
    "servers_in": 2,
    "servers_out": 3,
    "warnings": 0,
    "decisions": 4,
    # 300, 700, 1200, 5400: the mean of the middle two; rank 2.85 for the 95th
    "median_decision_seconds": 950.0,
    "p95_decision_seconds": 4770.0,
}


def record_orders(database_url: str) -> None:
    """Register servers and write ORDERS to the store at `database_url`."""
    clock = FakeClock()
    store = open_store(database_url)
    try:
        service = OrderService(store.app, clock=clock)
        service.register_servers(
            [(f"SN-{p[-1]}-{n}", p) for p in ("proj-a", "proj-b", "proj-c")
             for n in range(1, 10)]
        )  # fmt: skip
        steps: list[tuple[datetime, int, str]] = []
        for index, (day, hour, _, _, decision, seconds) in enumerate(ORDERS):
            requested = datetime(2026, 11, day, hour, tzinfo=UTC)
            steps.append((requested, index, "request"))
            if decision is not None:
                steps.append((requested + timedelta(seconds=seconds), index, decision))
        numbers: dict[int, int] = {}
        taken: dict[str, int] = {}
        for moment, index, step in sorted(steps):
            clock.now = moment
            _, _, source, dest, _, _ = ORDERS[index]
            if step == "request":
                taken[source] = taken.get(source, 0) + 1
                written = service.request_transfer(
                    source_project=source, user="alice", dest_project=dest, mailto=[],
                    snids=[f"SN-{source[-1]}-{taken[source]}"],
                )  # fmt: skip
                assert written.order_id is not None
                numbers[index] = written.order_id
            else:
                service.decide(
                    project=dest, user="bob", roles=frozenset({"member"}),
                    order_ids=[numbers[index]], accept=step == ACCEPT,
                )  # fmt: skip
    finally:
        store.close()
