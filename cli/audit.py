"""Audit: what happened to an order or a server, read from the event store itself.

The read models answer the API; these answers come from the events, the only
source of truth, so that an auditor can check the views against them. Times are
returned as they were recorded (UTC); showing them in a zone is the caller's job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.event_kinds import (
    ACCEPTED,
    KIND_OF,
    REFUSED,
    REGISTERED,
    RELEASED,
    REQUESTED,
    RESERVED,
    SERVICE_ACTOR,
    TRANSFERRED,
    WARNING,
)
from domain.exceptions import DomainError, OrdersNotFound
from domain.order import Order, order_aggregate_id
from domain.server import Server, server_aggregate_id
from domain.service import OrderApplication
from domain.time_format import show_time
from language import ENGLISH, Language

# The words of each kind of event, as the audit shows them (and its tests read).
__all__ = [
    "ACCEPTED",
    "REFUSED",
    "REGISTERED",
    "RELEASED",
    "REQUESTED",
    "RESERVED",
    "TRANSFERRED",
    "WARNING",
    "show_time",
]

A = TypeVar("A", bound=Aggregate)


class OrderNotYetRequested(OrdersNotFound):
    """The order exists now but did not at the moment asked about."""

    def __init__(self, number: int, as_of: datetime, requested_at: datetime) -> None:
        self.number = number
        self.as_of = as_of
        self.requested_at = requested_at
        super().__init__(self.describe())

    def describe(self, zone: tzinfo | None = None) -> str:
        """The refusal for a person, with times in `zone` (default: as recorded)."""
        named = f" ({zone})" if zone is not None else ""
        return (
            f"order {self.number} did not exist yet at "
            f"{show_time(self.as_of, zone)}{named}: it was requested at "
            f"{show_time(self.requested_at, zone)}"
        )


class ServerNotFound(DomainError):
    """No server with this serial number was ever registered."""


# -- an order's timeline -----------------------------------------------------------


@dataclass(frozen=True)
class OrderStep:
    """One event of an order: when, who (for which project), and what it changed."""

    version: int
    at: datetime
    event: str
    user: str
    project: str | None
    state_before: str | None
    state_after: str
    snids: tuple[str, ...]
    from_project: str | None
    to_project: str | None
    warning: int | None
    change: str


@dataclass(frozen=True)
class OrderHistory:
    number: int
    resource_project: str
    dest_project: str
    steps: tuple[OrderStep, ...]


def order_history(
    app: OrderApplication, number: int, language: Language = ENGLISH
) -> OrderHistory:
    """Every event of order `number`, oldest first; OrdersNotFound if there is none."""
    order: Order | None = None
    steps: list[OrderStep] = []
    for event, order in _replayed(app, order_aggregate_id(number), Order):
        before = steps[-1].state_after if steps else None
        steps.append(_order_step(event, order, before, language))
    if order is None:
        raise OrdersNotFound(f"order {number} not found")
    return OrderHistory(
        number=number,
        resource_project=order.resource_project,
        dest_project=order.dest_project,
        steps=tuple(steps),
    )


def _order_step(
    event: object, order: Order, before: str | None, language: Language
) -> OrderStep:
    """One event of an order; its `change` in `language`."""
    _ = language.gettext
    snids = tuple(order.snids)
    listed = ", ".join(snids)
    source_project, dest_project = order.resource_project, order.dest_project
    moved_from: str | None = source_project
    moved_to: str | None
    project: str | None
    warning: int | None = None
    names = {
        "snids": listed,
        "source": source_project,
        "destination": dest_project,
    }
    match event:
        case Order.Requested():
            user, project, moved_to = event.user, source_project, dest_project
            change = _(
                "reserved {snids} to move from {source} to {destination}", **names
            )
        case Order.Accepted():
            user, project, moved_to = event.by, dest_project, dest_project
            change = _("moved {snids} from {source} to {destination}", **names)
        case Order.Rejected():
            user, project, moved_to = event.by, dest_project, source_project
            change = _("freed {snids} back to {source}", **names)
        case Order.WarningRaised():
            user, project, warning = SERVICE_ACTOR, None, event.count
            snids, moved_from, moved_to = (), None, None
            change = _(
                "warning {count}: still waiting for {destination} to decide",
                count=event.count,
                destination=dest_project,
            )
    return OrderStep(
        **_what_and_when(event),
        user=user,
        project=project,
        state_before=before,
        state_after=order.state,
        snids=snids,
        from_project=moved_from,
        to_project=moved_to,
        warning=warning,
        change=change,
    )


# -- an order at a moment ----------------------------------------------------------


@dataclass(frozen=True)
class OrderAsOf:
    """An order as it stood at `as_of` (now when None): its last version by then."""

    number: int
    version: int
    latest_version: int
    as_of: datetime | None
    snids: tuple[str, ...]
    resource_project: str
    dest_project: str
    user: str
    mailto: tuple[str, ...]
    state: str
    decided_by: str | None
    decided_at: datetime | None
    warning_count: int
    warned_at: datetime | None
    requested_at: datetime
    updated_at: datetime


def order_as_of(
    app: OrderApplication, number: int, as_of: datetime | None = None
) -> OrderAsOf:
    """Order `number` at its last version whose event happened at or before `as_of`.

    An event exactly at `as_of` counts as done by then.
    """
    if as_of is not None and as_of.tzinfo is None:
        raise ValueError("as_of must carry a time zone")
    # Every order event records when it happened in `at`.
    times: list[tuple[int, datetime]] = [
        (event.originator_version, event.at)
        for event in _events_of(app, order_aggregate_id(number))
    ]
    if not times:
        raise OrdersNotFound(f"order {number} not found")
    done = [(v, at) for v, at in times if as_of is None or at <= as_of]
    if not done:
        raise OrderNotYetRequested(number, as_of or times[0][1], times[0][1])
    version, updated_at = done[-1]
    order = _order(app, number, version)
    return OrderAsOf(
        number=number,
        version=version,
        latest_version=times[-1][0],
        as_of=as_of,
        snids=tuple(order.snids),
        resource_project=order.resource_project,
        dest_project=order.dest_project,
        user=order.user,
        mailto=tuple(order.mailto),
        state=order.state,
        decided_by=order.decided_by,
        decided_at=order.decided_at,
        warning_count=order.warning_count,
        warned_at=order.warned_at,
        requested_at=order.requested_at,
        updated_at=updated_at,
    )


# -- a server's owners -------------------------------------------------------------


@dataclass(frozen=True)
class ServerStep:
    """One event of a server: who owned it after, and which order did it."""

    version: int
    at: datetime
    event: str
    owner: str
    order_id: int | None
    from_project: str | None
    to_project: str | None
    user: str | None
    change: str


@dataclass(frozen=True)
class ServerHistory:
    snid: str
    owners: tuple[str, ...]
    moved_by: tuple[int, ...]
    steps: tuple[ServerStep, ...]


def server_history(
    app: OrderApplication, snid: str, language: Language = ENGLISH
) -> ServerHistory:
    """Every event of server `snid`, oldest first; ServerNotFound if there is none."""
    orders: dict[int, Order] = {}

    def order(number: int) -> Order:
        if number not in orders:
            orders[number] = _order(app, number)
        return orders[number]

    steps: list[ServerStep] = []
    for event, server in _replayed(app, server_aggregate_id(snid), Server):
        owner_before = steps[-1].owner if steps else None
        steps.append(
            _server_step(event, server.project_id, owner_before, order, language)
        )
    if not steps:
        raise ServerNotFound(f"server {snid} not found")
    owners: list[str] = []
    for step in steps:
        if not owners or owners[-1] != step.owner:
            owners.append(step.owner)
    return ServerHistory(
        snid=snid,
        owners=tuple(owners),
        moved_by=tuple(
            s.order_id
            for s in steps
            if s.event == TRANSFERRED and s.order_id is not None
        ),
        steps=tuple(steps),
    )


def _server_step(
    event: object,
    owner: str,
    owner_before: str | None,
    order: Callable[[int], Order],
    language: Language,
) -> ServerStep:
    """One event of a server; its `change` in `language`."""
    _ = language.gettext
    order_id: int | None = None
    user: str | None = None
    moved_from: str | None
    moved_to: str | None
    match event:
        case Server.Registered():
            moved_from, moved_to = None, owner
            change = _("registered to {owner}", owner=owner)
        case Server.Reserved():
            held = order(event.order_id)
            order_id, user = event.order_id, held.user
            moved_from, moved_to = owner, held.dest_project
            change = _(
                "reserved by order {order} ({owner} -> {destination})",
                order=order_id,
                owner=owner,
                destination=held.dest_project,
            )
        case Server.Transferred():
            order_id, user = event.order_id, order(event.order_id).decided_by
            moved_from, moved_to = event.from_project, event.to_project
            change = _(
                "moved from {source} to {destination} by order {order}",
                source=event.from_project,
                destination=event.to_project,
                order=order_id,
            )
        case Server.Released():
            order_id, user = event.order_id, order(event.order_id).decided_by
            moved_from, moved_to = owner_before, owner
            change = _(
                "freed back to {owner} (order {order} refused)",
                owner=owner,
                order=order_id,
            )
    return ServerStep(
        **_what_and_when(event),
        owner=owner,
        order_id=order_id,
        from_project=moved_from,
        to_project=moved_to,
        user=user,
        change=change,
    )


# -- reading the store ---------------------------------------------------------------


def _events_of(app: OrderApplication, aggregate_id: UUID) -> Iterator[Any]:
    return iter(app.events.get(aggregate_id))


def _replayed(
    app: OrderApplication, aggregate_id: UUID, kind: type[A]
) -> Iterator[tuple[Any, A]]:
    """Each event of an aggregate of `kind`, with the aggregate as it left it (the
    same object, changed by the next); TypeError for an event of another kind."""
    aggregate: A | None = None
    for event in _events_of(app, aggregate_id):
        if not isinstance(event, kind.Event):
            raise TypeError(
                f"not an event of {kind.__name__}: {type(event).__qualname__}"
            )
        mutated = event.mutate(aggregate)
        assert isinstance(mutated, kind)
        aggregate = mutated
        yield event, aggregate


def _what_and_when(event: Any) -> dict[str, Any]:
    """What every step says of its event: its version, its time, its kind."""
    return {
        "version": event.originator_version,
        "at": event.at,
        "event": KIND_OF[type(event)],
    }


def _order(app: OrderApplication, number: int, version: int | None = None) -> Order:
    """Order `number` at `version` (default: its last), by the domain's own rules."""
    order: Any = app.repository.get(order_aggregate_id(number), version=version)
    assert isinstance(order, Order)
    return order
