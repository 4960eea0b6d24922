"""The event log as JSON lines, out and in: for archives, outside audits and moving
a deployment between the embedded store and PostgreSQL.

One line per event, in log order:

    {"id": 7, "aggregate_id": "...", "aggregate_type": "Order", "version": 1,
     "time": "2026-11-27T09:00:00+00:00", "type": "Order.Requested",
     "topic": "domain.order:Order.Requested", "data": {"number": 1, ...}}

`time` is when the event was recorded (the library's timestamp, UTC); `data` holds
the event's own fields, datetimes as ISO-8601 strings. An import rebuilds each event
with its aggregate id, version and time, so the store it fills replays to the same
orders and servers; notification ids are given afresh by that store.
"""

from __future__ import annotations

import json
import time
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import PersistenceError
from eventsourcing.utils import get_topic

from cli.progress import Progress, Silent
from domain.event_kinds import ORDER_EVENTS, SERVER_EVENTS
from domain.exceptions import DomainError
from domain.order import Order, order_aggregate_id
from domain.server import Server, server_aggregate_id
from domain.service import OrderApplication
from mail.ledger import DeliveryLedger
from service.store import Store

PAGE_SIZE: Final = 500
BATCH_SIZE: Final = 500

# Fields every event has, carried outside `data`.
_ENVELOPE: Final = frozenset(
    {"originator_id", "originator_version", "timestamp", "originator_topic"}
)

# The only classes an import builds: a file names them, it never picks code to run.
_AGGREGATES: Final[dict[type[Any], type[Any]]] = {
    **dict.fromkeys(ORDER_EVENTS, Order),
    **dict.fromkeys(SERVER_EVENTS, Server),
}
_CLASSES: Final = {get_topic(cls): cls for cls in _AGGREGATES}
_CREATED: Final = frozenset({Order.Requested, Server.Registered})

# The id an aggregate must have, from the event's own fields (both are derived).
_IDENTITY: Final[dict[type[Any], Callable[[Any], UUID]]] = {
    Order: lambda event: order_aggregate_id(event.number),
    Server: lambda event: server_aggregate_id(event.snid),
}


class ImportRefused(DomainError):
    """The file or the store does not allow an import; nothing was written."""


class ImportFailed(DomainError):
    """The store failed part way through writing: it holds a prefix of the log."""


# -- export ---------------------------------------------------------------------------


def export_events(
    app: OrderApplication,
    *,
    after: int = 0,
    project: str | None = None,
    page_size: int = PAGE_SIZE,
) -> Iterator[dict[str, Any]]:
    """The log's events after notification `after`, decoded, page by page.

    With `project`, only those concerning it. Which servers it owns and which
    orders are its own is learnt from the log's beginning, whatever `after` is.
    The log's end is fixed when the export starts.
    """
    head = app.recorder.max_notification_id() or 0
    concerns = _ProjectFilter(project) if project is not None else None
    position = 0 if concerns is not None else after
    while position < head:
        page = app.recorder.select_notifications(
            start=position, limit=page_size, stop=head, inclusive_of_start=False
        )
        if not page:
            break
        for notification in page:
            event = app.mapper.to_domain_event(notification)
            if concerns is not None and not concerns(event):
                continue
            if notification.id > after:
                yield event_record(notification.id, event)
        position = page[-1].id


def event_record(
    notification_id: int, event: DomainEventProtocol[Any]
) -> dict[str, Any]:
    """One exported line, as a JSON-ready dict."""
    cls = type(event)
    state = vars(event)
    return {
        "id": notification_id,
        "aggregate_id": str(event.originator_id),
        "aggregate_type": cls.__qualname__.split(".")[0],
        "version": event.originator_version,
        "time": state["timestamp"].astimezone(UTC).isoformat(),
        "type": cls.__qualname__,
        "topic": get_topic(cls),
        "data": {
            name: _plain(value)
            for name, value in state.items()
            if name not in _ENVELOPE
        },
    }


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


class _ProjectFilter:
    """Whether an event concerns `project`, following the log from its beginning.

    Orders: those `project` is the source or the destination of. Servers: the events
    of a server while `project` owns it, and the transfers that give it or take it.
    """

    def __init__(self, project: str) -> None:
        self.project = project
        self.orders: set[int] = set()
        self.servers: set[str] = set()

    def __call__(self, event: object) -> bool:
        project = self.project
        if isinstance(event, Order.Requested):
            if project in (event.resource_project, event.dest_project):
                self.orders.add(event.number)
                return True
            return False
        if isinstance(event, Order.Accepted | Order.Rejected | Order.WarningRaised):
            return event.number in self.orders
        if isinstance(event, Server.Registered):
            if event.project_id == project:
                self.servers.add(event.snid)
                return True
            return False
        if isinstance(event, Server.Transferred):
            if event.to_project == project:
                self.servers.add(event.snid)
                return True
            if event.from_project == project:
                self.servers.discard(event.snid)
                return True
            return False
        if isinstance(event, Server.Reserved | Server.Released):
            return event.snid in self.servers
        return False


# -- import ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Imported:
    """What an import wrote."""

    events: int
    aggregates: int
    position: int
    mail_marked_sent: int


def import_events(
    store: Store,
    path: Path,
    *,
    batch_size: int = BATCH_SIZE,
    send_mail: bool = False,
    progress: Callable[[str, int], Progress] = lambda phase, total: Silent(),
) -> Imported:
    """Load an exported log into an empty store, then bring its views up to date.

    The whole file is checked before anything is written: a bad line refuses it
    all (ImportRefused, naming the line). Then the events are stored in log order,
    a batch per transaction; should the store fail part way, it holds a prefix of
    the log and a new import needs an empty store again.

    `progress(phase, total)` gives what shows the progress of each phase
    ("checking": total unknown, 0; "writing").

    The mail of imported events is the business of the deployment the log comes
    from: unless `send_mail`, it is recorded as delivered, so that moving a
    deployment does not mail everyone again.
    """
    _check_empty(store.app)
    checked = progress("checking", 0)
    aggregates = total = 0
    for event in _read(path):
        total += 1
        aggregates += type(event) in _CREATED
        if total % batch_size == 0:
            checked.update(total)
    checked.update(total)
    checked.close()
    _check_empty(store.app)
    written, position, batch, last_order = 0, 0, [], 0
    stored = progress("writing", total)
    try:
        for event in _read(path):
            if isinstance(event, Order.Requested):
                last_order = max(last_order, event.number)
            batch.append(event)
            if len(batch) >= batch_size:
                position = _put(store.app, batch)
                written, batch = written + len(batch), []
                stored.update(written)
        if batch:
            position = _put(store.app, batch)
            written += len(batch)
        stored.update(written)
        stored.close()
    except PersistenceError as error:
        raise ImportFailed(
            f"the store failed after {written} events were written ({error}): it "
            "holds the start of the log only; empty it and import again"
        ) from error
    store.catch_up()
    store.after_bulk_write(written, last_order=last_order)
    marked = 0 if send_mail else _mark_mail_delivered(store)
    return Imported(
        events=written,
        aggregates=aggregates,
        position=position,
        mail_marked_sent=marked,
    )


def _check_empty(app: OrderApplication) -> None:
    head = app.recorder.max_notification_id()
    if head:
        raise ImportRefused(
            f"the store already holds events (up to notification {head}): "
            "import only into an empty store; nothing was written"
        )


def _put(app: OrderApplication, batch: list[Any]) -> int:
    recordings = app.events.put(batch)
    return max(r.notification.id for r in recordings)


def _mark_mail_delivered(store: Store) -> int:
    return DeliveryLedger.mark_untried_sent(store.views, time.time())


def _read(path: Path) -> Iterator[Any]:
    """The event of each line, checked as part of a whole log; else refused."""
    last_id = 0
    versions: dict[UUID, tuple[type[Any], int]] = {}
    try:
        with path.open(encoding="utf-8") as lines:
            for number, event, notification_id in _parsed(lines):
                where = f"line {number}"
                if notification_id <= last_id:
                    raise ImportRefused(
                        f"{where}: id {notification_id} does not follow {last_id}: "
                        "the lines must be in log order"
                    )
                last_id = notification_id
                _check_sequence(where, event, versions)
                yield event
    except OSError as error:
        raise ImportRefused(f"{path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ImportRefused(f"{path}: not UTF-8 text ({error.reason})") from None


def _parsed(lines: Iterable[str]) -> Iterator[tuple[int, Any, int]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ImportRefused(
                f"line {number}: not JSON ({error.msg}); nothing was written"
            ) from None
        event, notification_id = _event_from(f"line {number}", record)
        yield number, event, notification_id


def _check_sequence(
    where: str, event: Any, versions: dict[UUID, tuple[type[Any], int]]
) -> None:
    """Each aggregate starts with its creation and counts its versions 1, 2, 3..."""
    kind = _AGGREGATES[type(event)]
    aggregate_id = event.originator_id
    known_kind, last = versions.get(aggregate_id, (kind, 0))
    if known_kind is not kind:
        _refuse(where, f"aggregate {aggregate_id} was a {known_kind.__name__} before")
    if event.originator_version != last + 1:
        _refuse(
            where,
            f"{kind.__name__} {aggregate_id} version {event.originator_version} "
            f"follows version {last}: not a whole log (an export with --after or "
            "--project cannot be imported)",
        )
    if (type(event) in _CREATED) != (last == 0):
        _refuse(where, f"{type(event).__qualname__} at version {last + 1}")
    if _IDENTITY[kind](event) != aggregate_id:
        _refuse(where, f"aggregate_id {aggregate_id} does not match its data")
    versions[aggregate_id] = (kind, event.originator_version)


def _event_from(where: str, record: object) -> tuple[Any, int]:
    """The domain event a line describes, and its notification id; else refused."""
    if not isinstance(record, dict):
        _refuse(where, "expected a JSON object")
    notification_id = _integer(where, record, "id")
    version = _integer(where, record, "version")
    topic = record.get("topic")
    cls = _CLASSES.get(topic) if isinstance(topic, str) else None
    if cls is None:
        _refuse(where, f"unknown event topic {topic!r}")
    kind = _AGGREGATES[cls]
    for key, expected in (
        ("type", cls.__qualname__),
        ("aggregate_type", kind.__name__),
    ):
        if key in record and record[key] != expected:
            _refuse(where, f"{key} {record[key]!r} does not match topic {topic}")
    try:
        aggregate_id = UUID(str(record.get("aggregate_id")))
    except ValueError:
        _refuse(where, f"aggregate_id {record.get('aggregate_id')!r} is not a UUID")
    timestamp = _moment(where, "time", record.get("time"))
    data = record.get("data")
    if not isinstance(data, dict):
        _refuse(where, "'data' must be a JSON object")
    values = _fields_of(where, cls, data)
    if cls in _CREATED:
        values["originator_topic"] = get_topic(kind)
    event = cls(
        originator_id=aggregate_id,
        originator_version=version,
        timestamp=timestamp,
        **values,
    )
    return event, notification_id


def _fields_of(where: str, cls: type[Any], data: dict[str, Any]) -> dict[str, Any]:
    """The event's own fields from `data`, each of the type its class declares."""
    hints = _hints(cls)
    missing = sorted(set(hints) - set(data))
    unexpected = sorted(set(data) - set(hints))
    if missing or unexpected:
        _refuse(
            where,
            f"{cls.__qualname__} data: missing {missing or 'nothing'}, "
            f"unexpected {unexpected or 'nothing'}",
        )
    return {
        name: _typed(f"{where}: data.{name}", hint, data[name])
        for name, hint in hints.items()
    }


def _hints(cls: type[Any]) -> dict[str, Any]:
    declared = typing.get_type_hints(cls)
    return {f.name: declared[f.name] for f in fields(cls) if f.name not in _ENVELOPE}


def _typed(where: str, hint: Any, value: Any) -> Any:
    if hint is datetime:
        return _moment(where, "", value)
    if hint is int:
        fits = isinstance(value, int) and not isinstance(value, bool)
    elif hint is str:
        fits = isinstance(value, str)
    elif typing.get_origin(hint) is list and typing.get_args(hint) == (str,):
        fits = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        raise TypeError(f"no import rule for fields of type {hint!r}")
    if not fits:
        _refuse(where, f"expected {getattr(hint, '__name__', hint)}, got {value!r}")
    return list(value) if isinstance(value, list) else value


def _integer(where: str, record: dict[str, Any], key: str) -> int:
    value = record.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        _refuse(where, f"'{key}' must be a positive integer, got {value!r}")
    return value


def _moment(where: str, key: str, value: Any) -> datetime:
    label = f"'{key}' " if key else ""
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        _refuse(where, f"{label}must be an ISO-8601 time with its offset: {value!r}")
    return moment


def _refuse(where: str, problem: str) -> typing.NoReturn:
    raise ImportRefused(f"{where}: {problem}; nothing was written")
