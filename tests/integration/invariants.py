"""What must hold in the store after any crash, read from the event log itself.

The facts are rebuilt from the events (not from the aggregates' code, nor from
the views), and each check returns every problem it finds, so that a failure
names them all. The fault tests record what each client was told (`Ledger`) and
check it against the facts: an acknowledged write is stored, an unacknowledged
one is wholly there or wholly absent.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from domain.order import Order
from domain.server import Server
from projections.projector import tracked_position
from service.store import Store, open_store
from tests.integration.processes import run_pm_order

PAGE = 1000


@dataclass
class OrderFacts:
    number: int
    snids: tuple[str, ...]
    source: str
    dest: str
    state: str = "unfinished"
    # The notification id of the decision, None while unfinished.
    decided_at: int | None = None


@dataclass
class ServerFacts:
    snid: str
    registered_to: str
    owner: str
    holding: int | None = None
    # (kind, order number, notification id) of each Reserved/Transferred/Released.
    moves: list[tuple[str, int, int]] = field(default_factory=list)


@dataclass
class Facts:
    head: int
    orders: dict[int, OrderFacts]
    servers: dict[str, ServerFacts]

    def unfinished(self) -> list[OrderFacts]:
        return [o for o in self.orders.values() if o.state == "unfinished"]


def notifications(store: Store) -> Iterator[tuple[int, object]]:
    """(notification id, domain event) of the whole log, in order."""
    recorder, mapper = store.app.recorder, store.app.mapper
    start = 0
    while True:
        page = recorder.select_notifications(
            start=start, limit=PAGE, inclusive_of_start=False
        )
        if not page:
            return
        for notification in page:
            yield notification.id, mapper.to_domain_event(notification)
        start = page[-1].id


def read_facts(store: Store) -> Facts:
    """Orders and servers as the events say they are."""
    orders: dict[int, OrderFacts] = {}
    servers: dict[str, ServerFacts] = {}
    head = 0
    for position, event in notifications(store):
        head = position
        if isinstance(event, Order.Requested):
            orders[event.number] = OrderFacts(
                event.number,
                tuple(event.snids),
                event.resource_project,
                event.dest_project,
            )
        elif isinstance(event, Order.Accepted | Order.Rejected):
            order = orders[event.number]
            order.state = "finished" if isinstance(event, Order.Accepted) else "refused"
            order.decided_at = position
        elif isinstance(event, Server.Registered):
            servers[event.snid] = ServerFacts(
                event.snid, event.project_id, event.project_id
            )
        elif isinstance(event, Server.Reserved):
            server = servers[event.snid]
            server.holding = event.order_id
            server.moves.append(("reserved", event.order_id, position))
        elif isinstance(event, Server.Transferred):
            server = servers[event.snid]
            server.owner, server.holding = event.to_project, None
            server.moves.append(("transferred", event.order_id, position))
        elif isinstance(event, Server.Released):
            server = servers[event.snid]
            server.holding = None
            server.moves.append(("released", event.order_id, position))
    return Facts(head, orders, servers)


# -- the invariants of the store ---------------------------------------------------


def servers_in_more_than_one_unfinished_order(facts: Facts) -> list[str]:
    """Every server is in at most one unfinished order, and held by that one."""
    holders: dict[str, list[int]] = {}
    for order in facts.unfinished():
        for snid in order.snids:
            holders.setdefault(snid, []).append(order.number)
    problems = [
        f"{snid} is in unfinished orders {numbers}"
        for snid, numbers in holders.items()
        if len(numbers) > 1
    ]
    for snid, server in facts.servers.items():
        expected = holders.get(snid, [None])[0]
        if server.holding != expected:
            problems.append(
                f"{snid} is held by order {server.holding}, its unfinished order is "
                f"{expected}"
            )
    return problems


def servers_not_where_finished_orders_put_them(facts: Facts) -> list[str]:
    """Each accepted order found its servers with its source and left them with its
    destination: following a server's accepted orders, in the order they were
    decided, from the project it was registered to, ends with its owner now."""
    problems = []
    accepted: dict[str, list[OrderFacts]] = {}
    for order in facts.orders.values():
        if order.state == "finished":
            for snid in order.snids:
                accepted.setdefault(snid, []).append(order)
    for snid, server in facts.servers.items():
        owner = server.registered_to
        for order in sorted(accepted.get(snid, []), key=lambda o: o.decided_at or 0):
            if order.source != owner:
                problems.append(
                    f"order {order.number} moved {snid} from {order.source}, "
                    f"but {owner} owned it"
                )
            owner = order.dest
        if server.owner != owner:
            problems.append(
                f"{snid} belongs to {server.owner}; its finished orders put it "
                f"with {owner}"
            )
    return problems


def half_written_orders(facts: Facts) -> list[str]:
    """An order exists with all its reservations, or not at all; a decision moved
    all of its servers, or none; every server's move belongs to such an order."""
    problems = []
    # Numbers are unique (the orders are keyed by them) and positive; on
    # PostgreSQL they may have gaps (a sequence skips what a failed save took, and
    # up to 32 more after a crash), as the README says.
    if any(number < 1 for number in facts.orders):
        problems.append(f"order numbers below 1: {sorted(facts.orders)[:5]}")
    moves = {
        (kind, number, snid)
        for snid, server in facts.servers.items()
        for kind, number, _ in server.moves
    }
    for order in facts.orders.values():
        follow_up = {"finished": "transferred", "refused": "released"}.get(order.state)
        for snid in order.snids:
            if snid not in facts.servers:
                problems.append(f"order {order.number} holds unknown server {snid}")
            if ("reserved", order.number, snid) not in moves:
                problems.append(f"order {order.number} lacks the reservation of {snid}")
            if follow_up and (follow_up, order.number, snid) not in moves:
                problems.append(
                    f"order {order.number} is {order.state} but {snid} was not "
                    f"{follow_up}"
                )
    for kind, number, snid in sorted(moves):
        mover = facts.orders.get(number)
        if mover is None or snid not in mover.snids:
            problems.append(f"{snid} was {kind} by order {number}, which lacks it")
    return problems


def store_problems(facts: Facts) -> list[str]:
    return [
        *servers_in_more_than_one_unfinished_order(facts),
        *servers_not_where_finished_orders_put_them(facts),
        *half_written_orders(facts),
    ]


# -- what the clients were told ----------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """A POST as sent: who asked for which servers to go where."""

    source: str
    dest: str
    snids: tuple[str, ...]


@dataclass
class Ledger:
    """Every write the clients sent, by what they were told.

    `uncertain` holds the POSTs that got no answer (cut off, connection refused)
    or a 5xx: each may or may not have been stored, but wholly if at all.
    """

    acknowledged: dict[int, Attempt] = field(default_factory=dict)
    uncertain: list[Attempt] = field(default_factory=list)
    refused: int = 0
    # (order numbers, accept) of each PUT answered 200.
    decisions: list[tuple[tuple[int, ...], bool]] = field(default_factory=list)
    # "POST 200", "PUT 409", "GET ServerDisconnectedError": how many of each.
    statuses: Counter[str] = field(default_factory=Counter)

    def answered(self, attempt: Attempt, status: int, body: dict[str, object]) -> None:
        self.statuses[f"POST {status}"] += 1
        if status == 200:
            number = body["order_id"]
            assert isinstance(number, int), body
            self.acknowledged[number] = attempt
        elif status >= 500:
            self.uncertain.append(attempt)
        else:
            self.refused += 1

    def cut_off(self, attempt: Attempt, error: BaseException) -> None:
        self.statuses[f"POST {type(error).__name__}"] += 1
        self.uncertain.append(attempt)

    def server_errors(self) -> dict[str, int]:
        """The answers with a 5xx status, by method and status."""
        return {
            key: n
            for key, n in self.statuses.items()
            if (status := key.split()[1]).isdigit() and int(status) >= 500
        }


def broken_promises(facts: Facts, ledger: Ledger) -> list[str]:
    """Every acknowledged write is stored as acknowledged; every other order in the
    store is one of the unanswered POSTs (one order each at most)."""
    problems = []
    for number, attempt in ledger.acknowledged.items():
        order = facts.orders.get(number)
        if order is None:
            problems.append(f"acknowledged order {number} is not in the store")
        elif Attempt(order.source, order.dest, order.snids) != attempt:
            problems.append(f"acknowledged order {number} is stored as {order}")
    for numbers, accept in ledger.decisions:
        wanted = "finished" if accept else "refused"
        for number in numbers:
            order = facts.orders.get(number)
            if order is None or order.state != wanted:
                state = order.state if order else "absent"
                problems.append(
                    f"order {number} was acknowledged {wanted} but is {state}"
                )
    unanswered = Counter(ledger.uncertain)
    for order in facts.orders.values():
        if order.number in ledger.acknowledged:
            continue
        attempt = Attempt(order.source, order.dest, order.snids)
        if unanswered[attempt] > 0:
            unanswered[attempt] -= 1
        else:
            problems.append(f"order {order.number} was never asked for: {attempt}")
    return problems


# -- the views -----------------------------------------------------------------------


def views_behind(store: Store) -> dict[str, int]:
    """Each view that has not reached the log's head, and its position."""
    head = store.app.recorder.max_notification_id() or 0
    positions = {v.name: tracked_position(store.views, v.name) for v in store.all_views}
    return {name: p for name, p in positions.items() if p < head}


def caught_up_facts(store: Store, seconds: float = 30.0) -> Facts:
    """The store's facts once every view has reached the log's head."""
    deadline = time.monotonic() + seconds
    while behind := views_behind(store):
        if time.monotonic() > deadline:
            raise TimeoutError(f"views still behind the log: {behind}")
        time.sleep(0.1)
    return read_facts(store)


def views_differing_from_a_rebuild(database_url: str, cwd: Path) -> list[str]:
    """`pm-order projections verify`: each view recomputed from the events."""
    result = run_pm_order(
        "--database-url", database_url, "projections", "verify", "--json", cwd=cwd
    )
    if result.returncode not in (0, 1):
        return [f"projections verify failed ({result.returncode}): {result.stderr}"]
    report: dict[str, list[object]] = json.loads(result.stdout)
    problems = [f"{view}: {diff}" for view, diff in report.items() if diff]
    if result.returncode != 0 and not problems:
        problems.append(f"projections verify exited 1: {result.stdout}")
    return problems


def every_problem(
    database_url: str, ledger: Ledger, cwd: Path
) -> tuple[Facts, list[str]]:
    """The store's facts once every view has caught up, and every problem found:
    in the store, in the promises made to the clients, in the views against a
    rebuild."""
    store = open_store(database_url, create_tables=False)
    try:
        facts = caught_up_facts(store)
    finally:
        store.close()
    return facts, [
        *store_problems(facts),
        *broken_promises(facts, ledger),
        *views_differing_from_a_rebuild(database_url, cwd),
    ]
