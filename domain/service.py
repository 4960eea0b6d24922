"""The application service: the only way to change anything, in plain values."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypedDict, TypeVar, Unpack
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
)
from eventsourcing.persistence import (
    IntegrityError,
    PersistenceError,
    Recording,
    StoredEvent,
)

from domain import values
from domain.exceptions import (
    AlreadyDecided,
    Conflict,
    DomainError,
    InvalidInput,
    NotAllowed,
    OrdersNotFound,
    ServersAlreadyOrdered,
    ServersNotOwned,
    StoreUnavailable,
    TooManyUnfinishedOrders,
)
from domain.group_commit import GroupCommit, Pending
from domain.limits import (
    DEFAULT_ORDER_LIMITS,
    OrderLimits,
    UnfinishedCount,
    UnfinishedTally,
)
from domain.order import Order, order_aggregate_id
from domain.order_numbers import (
    CountedOrderNumbers,
    NumberCounter,
    OrderNumbers,
    SearchedOrderNumbers,
)
from domain.server import Server, check_orderable, server_aggregate_id

Clock = Callable[[], datetime]

# A version conflict means another writer got there first: re-read, re-check and
# try again. Each retry follows someone else's success, so a few are plenty.
MAX_ATTEMPTS: Final = 10

T = TypeVar("T")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Written:
    """What a command did: the log position that shows it, and the new order's id."""

    position: int
    order_id: int | None = None


class TransferRequest(TypedDict):
    """One caller's request to move servers: the keywords of `request_transfer`."""

    source_project: str
    user: str
    snids: list[str]
    dest_project: str
    mailto: list[str]


_Pending = Pending[TransferRequest, Written]


class _StaleRead(Exception):
    """Aggregates read one by one disagree: another writer changed them between."""


class OrderApplication(Application[UUID]):
    """The event store of orders and servers."""

    # Table names come from the name: fixed so that subclasses share the store.
    name = "pm_order"

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """The library's `save` of aggregates (only aggregates are saved here),
        each one's events collected without the library's two `isinstance`
        checks against its Protocols: on Python 3.11 each check walks the
        Protocol's classes, a twentieth of a create's CPU (bench/README.md)."""
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        for aggregate in objs:
            processing_event.events.extend(aggregate.collect_events())
            processing_event.aggregates[aggregate.id] = aggregate
        processing_event.saved_kwargs.update(kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        self.notify(processing_event.events)  # the library's deprecated hook
        return recordings


class OrderService:
    """Requests, decides and warns about transfer orders; registers servers."""

    def __init__(
        self,
        app: OrderApplication,
        *,
        approver_roles: frozenset[str] = frozenset(),
        clock: Clock = utc_now,
        limits: OrderLimits = DEFAULT_ORDER_LIMITS,
        unfinished_orders: UnfinishedCount | None = None,
    ) -> None:
        """`unfinished_orders` counts a source project's unfinished orders in the
        read model; without it the limit on them is not checked."""
        self.app = app
        self.approver_roles = approver_roles
        self.clock = clock
        self.limits = limits
        self._unfinished_orders = unfinished_orders
        self._transfers: GroupCommit[TransferRequest, Written] = GroupCommit(
            self._request_batch
        )
        self._numbers = self._order_numbers()
        self._counting = threading.Lock()
        # Conflicts a client was told about (409 after the last attempt), as
        # against those retried here unseen (counted by the store's recorder).
        self.conflicts_given_up = 0

    # -- commands ---------------------------------------------------------------

    def register_servers(self, rows: Sequence[tuple[str, str]]) -> Written:
        """Register (snid, project) rows, all or none; a repeated row changes nothing.

        A row that would give an owned server to another project is refused:
        servers change hands only through orders.
        """
        wanted: dict[str, str] = {}
        for snid, project in rows:
            values.check_snid(snid)
            values.check_project(project)
            if wanted.setdefault(snid, project) != project:
                raise InvalidInput(f"server {snid} is listed for two projects")

        def attempt() -> Written:
            now = self.clock()
            new: list[Server] = []
            servers = self._servers(list(wanted))
            for snid, project in wanted.items():
                server = servers[snid]
                if server is None:
                    new.append(Server(snid=snid, project_id=project, at=now))
                elif server.project_id != project:
                    raise InvalidInput(
                        f"server {snid} belongs to {server.project_id}: servers "
                        "change hands only through orders"
                    )
            return Written(self._save(*new))

        return self._retrying(attempt)

    def request_transfer(self, **request: Unpack[TransferRequest]) -> Written:
        """Order the move of `snids` from `source_project` to `dest_project`.

        Requests arriving together are saved together (group commit): one
        transaction for all of them, each still judged on its own.
        """
        return self._transfers.submit(self._checked(request))

    def request_transfer_later(
        self, **request: Unpack[TransferRequest]
    ) -> Future[Written]:
        """`request_transfer` without waiting: the request is checked now (an
        InvalidInput is raised here), queued for the next batch, and its outcome
        comes as the future's result or exception."""
        return self._transfers.submit_later(self._checked(request))

    def _checked(self, request: TransferRequest) -> TransferRequest:
        """`request` as it is saved (its mail addresses cleaned); InvalidInput
        naming a value that is not allowed."""
        values.check_snids(request["snids"], self.limits.max_servers_per_order)
        values.check_project(request["dest_project"], "dest_project")
        if request["dest_project"] == request["source_project"]:
            raise InvalidInput(
                "'dest_project' must be another project than the caller's"
            )
        mailto = values.check_mailto(
            request["mailto"], self.limits.max_mailto, self.limits.mail_domains
        )
        return {**request, "mailto": mailto}

    def _request_batch(self, batch: list[_Pending]) -> None:
        self._retrying(lambda: self._try_batch(batch))

    def _try_batch(self, batch: list[_Pending]) -> None:
        """Judge each request against the store and the ones before it, then save
        the accepted ones in one transaction; decide each request only once saved."""
        now = self.clock()
        # A number for each request, taken before judging them (a refusal names
        # the order holding a server, one of this batch's included): a refused
        # request's number is left unused.
        servers, taken = self._servers_and_numbers(
            list(dict.fromkeys(s for p in batch for s in p.request["snids"])),
            len(batch),
        )
        numbers = iter(taken)
        verdicts: list[tuple[_Pending, int | DomainError]] = []
        orders: list[Order] = []
        reserved: dict[str, Server] = {}
        # The batch's own orders count towards each project's limit as they are made.
        unfinished = (
            UnfinishedTally(self._unfinished_orders, self.limits.max_unfinished_orders)
            if self._unfinished_orders is not None
            else None
        )
        for pending in batch:
            request = pending.request
            source_project, snids = request["source_project"], request["snids"]
            try:
                # Servers reserved by requests earlier in the batch count as held.
                check_orderable({s: servers[s] for s in snids}, source_project)
                if unfinished is not None:
                    unfinished.check(source_project)
            except (
                ServersNotOwned,
                ServersAlreadyOrdered,
                TooManyUnfinishedOrders,
            ) as refusal:
                verdicts.append((pending, refusal))
                continue
            if unfinished is not None:
                unfinished.add(source_project)
            number = next(numbers)
            orders.append(
                Order(
                    number=number,
                    snids=snids,
                    resource_project=source_project,
                    dest_project=request["dest_project"],
                    user=request["user"],
                    mailto=request["mailto"],
                    at=now,
                )
            )
            for snid in snids:
                server = servers[snid]
                assert server is not None
                server.reserve(order_id=number, project=source_project, at=now)
                reserved[snid] = server
            verdicts.append((pending, number))
        used = [o.number for o in orders]
        try:
            position = self._save(*orders, *reserved.values()) if orders else 0
        except IntegrityError:
            self._numbers.conflicted(used)
            raise
        self._numbers.stored(used)
        for pending, verdict in verdicts:
            if isinstance(verdict, DomainError):
                pending.fail(verdict)
            else:
                pending.succeed(Written(position, order_id=verdict))

    def decide(
        self,
        *,
        project: str,
        user: str,
        roles: frozenset[str],
        order_ids: list[int],
        accept: bool,
    ) -> Written:
        """Accept or refuse orders addressed to `project`, all or none."""
        values.check_order_ids(order_ids)
        if self.approver_roles and not roles & self.approver_roles:
            raise NotAllowed(
                "deciding orders needs one of the roles: "
                + ", ".join(sorted(self.approver_roles))
            )

        def attempt() -> Written:
            now = self.clock()
            orders = {n: self._get(Order, order_aggregate_id(n)) for n in order_ids}
            missing = [
                n for n, o in orders.items() if o is None or o.dest_project != project
            ]
            if missing:
                raise OrdersNotFound(
                    f"orders not found for project {project}: "
                    + ", ".join(map(str, missing))
                )
            found = [o for o in orders.values() if o is not None]
            decided = [o for o in found if o.decided_otherwise(accept)]
            if decided:
                raise AlreadyDecided(
                    "orders already decided the other way: "
                    + ", ".join(f"{o.number} ({o.state})" for o in decided)
                )
            changing = [o for o in found if o.is_unfinished]
            if not changing:
                return Written(self.head())
            servers: list[Server] = []
            for order in changing:
                held = self._servers(order.snids)
                for server in held.values():
                    if server is None or server.order_id != order.number:
                        # Read after another writer decided the order: start again.
                        raise _StaleRead
                    if accept:
                        server.transfer(order.number, order.dest_project, at=now)
                    else:
                        server.release(order.number, at=now)
                    servers.append(server)
                if accept:
                    order.accept(by=user, at=now)
                else:
                    order.refuse(by=user, at=now)
            return Written(self._save(*changing, *servers))

        return self._retrying(attempt)

    def raise_warning(self, order_id: int, *, every: timedelta, most: int) -> Written:
        """Warn about an unanswered order if the order says one is due."""

        def attempt() -> Written:
            order = self._get(Order, order_aggregate_id(order_id))
            if order is None:
                raise OrdersNotFound(f"order {order_id} not found")
            if not order.raise_warning(self.clock(), every, most):
                return Written(0)
            return Written(self._save(order))

        return self._retrying(attempt)

    # -- queries of the store itself (tools; the API reads the projections) ------

    def order(self, order_id: int, version: int | None = None) -> Order:
        order = self._get(Order, order_aggregate_id(order_id), version)
        if order is None:
            raise OrdersNotFound(f"order {order_id} not found")
        return order

    def head(self) -> int:
        """The notification id of the last event stored (0 if none)."""
        with self._store_errors():
            return self.app.recorder.max_notification_id() or 0

    # -- plumbing ---------------------------------------------------------------

    def _retrying(self, attempt: Callable[[], T]) -> T:
        for _ in range(MAX_ATTEMPTS):
            try:
                return attempt()
            except IntegrityError:
                # Someone else changed what we read. (A failed save also emptied the
                # aggregates' pending events.) The next attempt reads it all again.
                continue
            except _StaleRead:
                continue
        with self._counting:
            self.conflicts_given_up += 1
        raise Conflict("the store is busy with competing changes; try again")

    def _save(self, *aggregates: Any) -> int:
        if not aggregates:
            return self.head()
        with self._store_errors():
            recordings = self.app.save(*aggregates)
        return max(r.notification.id for r in recordings)

    def _servers(self, snids: list[str]) -> dict[str, Server | None]:
        """The servers `snids` (None: not registered), read in one statement."""
        found = self._aggregates(Server, [server_aggregate_id(s) for s in snids])
        return {s: found[server_aggregate_id(s)] for s in snids}

    def _servers_and_numbers(
        self, snids: list[str], count: int
    ) -> tuple[dict[str, Server | None], list[int]]:
        """The servers `snids`, and `count` numbers for new orders: in one round
        trip where the store counts the numbers and can read both at once."""
        both = getattr(self.app.recorder, "select_events_of_taking_numbers", None)
        if both is None or not isinstance(self._numbers, CountedOrderNumbers):
            return self._servers(snids), self._numbers.take(count)
        ids = [server_aggregate_id(s) for s in snids]
        with self._store_errors():
            stored, numbers = both(ids, count)
        found = self._decoded(Server, ids, stored)
        return {s: found[server_aggregate_id(s)] for s in snids}, numbers

    def _aggregates(
        self, kind: type[T], aggregate_ids: Sequence[UUID]
    ) -> dict[UUID, T | None]:
        """The aggregates `aggregate_ids` as they are now (None: none), read in one
        statement where the recorder can (`select_events_of`), else one by one."""
        select_events_of = getattr(self.app.recorder, "select_events_of", None)
        if select_events_of is None:
            return {i: self._get(kind, i) for i in aggregate_ids}
        with self._store_errors():
            stored: Sequence[StoredEvent] = select_events_of(aggregate_ids)
        return self._decoded(kind, aggregate_ids, stored)

    def _decoded(
        self,
        kind: type[T],
        aggregate_ids: Sequence[UUID],
        stored: Sequence[StoredEvent],
    ) -> dict[UUID, T | None]:
        """The aggregates `aggregate_ids` (None: none) from their `stored` events."""
        events: dict[UUID, list[StoredEvent]] = {i: [] for i in aggregate_ids}
        for record in stored:
            originator = record.originator_id
            key = originator if isinstance(originator, UUID) else UUID(str(originator))
            events[key].append(record)
        to_domain_event = self.app.mapper.to_domain_event
        found: dict[UUID, T | None] = {}
        for aggregate_id, records in events.items():
            # What the library's project_aggregate does, without its runtime
            # Protocol check per event (Python 3.11 walks the Protocol's
            # members on each: 1% of a create's CPU).
            aggregate: Any = None
            for record in records:
                event: Any = to_domain_event(record)  # the domain's: each mutates
                aggregate = event.mutate(aggregate)
            assert aggregate is None or isinstance(aggregate, kind)
            found[aggregate_id] = aggregate
        return found

    def _get(
        self, kind: type[T], aggregate_id: UUID, version: int | None = None
    ) -> T | None:
        with self._store_errors():
            try:
                aggregate: object = self.app.repository.get(
                    aggregate_id, version=version
                )
            except AggregateNotFoundError:
                return None
        assert isinstance(aggregate, kind)
        return aggregate

    def _order_numbers(self) -> OrderNumbers:
        """From the store's counter where it has one (PostgreSQL: processes share
        it), else searched in the store (SQLite: one writing process)."""
        recorder = self.app.recorder
        if isinstance(recorder, NumberCounter):
            return CountedOrderNumbers(recorder, self._number_taken)
        return SearchedOrderNumbers(self._number_taken)

    def _number_taken(self, number: int) -> bool:
        with self._store_errors():
            return bool(
                self.app.recorder.select_events(order_aggregate_id(number), limit=1)
            )

    @contextmanager
    def _store_errors(self) -> Iterator[None]:
        try:
            yield
        except IntegrityError:
            raise
        except PersistenceError as error:
            raise StoreUnavailable(
                "the order store is unavailable; try again"
            ) from error
