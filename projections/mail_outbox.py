"""The mail outbox: one message per order event for the order's `mailto` list.

The messages are a projection, filled by the projector (so exactly once per
event, whatever restarts or replays) and a function of the event log alone. What
the mailer did with each message (attempts, sent, given up) is kept beside it in
a ledger that is not part of the view: a replay of the log, even into fresh view
tables, finds every message it makes already accounted for there and sends
nothing again. A message's id is derived from its order and event version, so a
resent message carries the same Message-ID as the first try.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from eventsourcing.utils import get_topic

from domain.order import Order
from projections.database import Cursor, ViewDatabase
from projections.view import Events

NAME: Final = "mail_outbox"

PENDING: Final = "pending"
SENT: Final = "sent"
FAILED: Final = "failed"

REQUESTED: Final = "requested"
WARNED: Final = "warning"
ACCEPTED: Final = "accepted"
REFUSED: Final = "refused"

_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS mail_orders ("
    " order_id BIGINT PRIMARY KEY,"
    " snids TEXT NOT NULL,"
    " resource_project TEXT NOT NULL,"
    " dest_project TEXT NOT NULL,"
    " user_name TEXT NOT NULL,"
    " mailto TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS mail_outbox ("
    " message_id TEXT PRIMARY KEY,"
    " order_id BIGINT NOT NULL,"
    " kind TEXT NOT NULL,"
    " actor TEXT NOT NULL,"
    " warning_count INTEGER NOT NULL,"
    " happened_at DOUBLE PRECISION NOT NULL,"
    " recipients TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS mail_outbox_by_time"
    " ON mail_outbox (happened_at, message_id)",
    # The mailer's ledger: written by the mailer only, never rebuilt with the view.
    # A message without a row here has not been tried yet.
    "CREATE TABLE IF NOT EXISTS mail_deliveries ("
    " message_id TEXT PRIMARY KEY,"
    " state TEXT NOT NULL,"
    " attempts INTEGER NOT NULL,"
    " next_attempt_at DOUBLE PRECISION NOT NULL,"
    " last_error TEXT,"
    " sent_at DOUBLE PRECISION)",
    "CREATE INDEX IF NOT EXISTS mail_deliveries_due"
    " ON mail_deliveries (state, next_attempt_at)",
)
_INSERT_ORDER: Final = (
    "INSERT INTO mail_orders (order_id, snids, resource_project, dest_project,"
    " user_name, mailto) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO NOTHING"
)
_SELECT_MAILTO: Final = "SELECT mailto FROM mail_orders WHERE order_id = ?"
_INSERT_MESSAGE: Final = (
    "INSERT INTO mail_outbox (message_id, order_id, kind, actor, warning_count,"
    " happened_at, recipients) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (message_id) DO NOTHING"
)
_STATE: Final = f"COALESCE(d.state, '{PENDING}')"
_COLUMNS: Final = (
    "m.message_id, m.order_id, m.kind, m.actor, m.warning_count, m.happened_at,"
    f" m.recipients, {_STATE}, COALESCE(d.attempts, 0),"
    " COALESCE(d.next_attempt_at, 0), d.last_error, d.sent_at,"
    " o.snids, o.resource_project, o.dest_project, o.user_name"
)
_FROM: Final = (
    "FROM mail_outbox m JOIN mail_orders o ON o.order_id = m.order_id"
    " LEFT JOIN mail_deliveries d ON d.message_id = m.message_id"
)
# Never tried (no ledger row) or waiting for a retry whose time has come; the
# untried first, then by how long each has waited.
_SELECT_DUE: Final = (
    f"SELECT {_COLUMNS} {_FROM}"
    " WHERE d.message_id IS NULL OR (d.state = ? AND d.next_attempt_at <= ?)"
    " ORDER BY COALESCE(d.next_attempt_at, 0), m.happened_at, m.message_id LIMIT ?"
)
_SELECT_ALL: Final = f"SELECT {_COLUMNS} {_FROM} ORDER BY m.happened_at, m.message_id"
_SELECT_IN_STATE: Final = (
    f"SELECT {_COLUMNS} {_FROM} WHERE {_STATE} = ? ORDER BY m.happened_at, m.message_id"
)
# Each write to the ledger applies only to a message still pending: a message
# sent or given up on stays so (until `retry_failed`).
_MARK_SENT: Final = (
    "INSERT INTO mail_deliveries (message_id, state, attempts, next_attempt_at,"
    " last_error, sent_at) VALUES (?, ?, 1, 0, NULL, ?)"
    " ON CONFLICT (message_id) DO UPDATE SET state = excluded.state,"
    " attempts = mail_deliveries.attempts + 1, last_error = NULL,"
    " sent_at = excluded.sent_at"
    " WHERE mail_deliveries.state = ?"
)
# Mail another deployment already sent (an imported log): recorded as sent, with
# no attempt of ours, in one statement.
_MARK_UNTRIED_SENT: Final = (
    "INSERT INTO mail_deliveries (message_id, state, attempts, next_attempt_at,"
    " last_error, sent_at)"
    " SELECT m.message_id, ?, 0, 0, NULL, ? FROM mail_outbox m"
    " WHERE NOT EXISTS"
    " (SELECT 1 FROM mail_deliveries d WHERE d.message_id = m.message_id)"
)
_MARK_ATTEMPT_FAILED: Final = (
    "INSERT INTO mail_deliveries (message_id, state, attempts, next_attempt_at,"
    " last_error, sent_at) VALUES (?, ?, ?, ?, ?, NULL)"
    " ON CONFLICT (message_id) DO UPDATE SET state = excluded.state,"
    " attempts = excluded.attempts, next_attempt_at = excluded.next_attempt_at,"
    " last_error = excluded.last_error"
    " WHERE mail_deliveries.state = ?"
)
_RETRY_FAILED: Final = (
    "UPDATE mail_deliveries SET state = ?, attempts = 0, next_attempt_at = ?"
    " WHERE state = ?"
)
_RETRY_ONE: Final = (
    "UPDATE mail_deliveries SET state = ?, attempts = 0, next_attempt_at = ?"
    " WHERE state = ? AND message_id = ?"
)

_KIND_OF: Final = {
    get_topic(Order.Requested): REQUESTED,
    get_topic(Order.WarningRaised): WARNED,
    get_topic(Order.Accepted): ACCEPTED,
    get_topic(Order.Rejected): REFUSED,
}


def message_id(order_id: int, version: int, domain: str = "pm-order") -> str:
    """The Message-ID of the mail about version `version` of order `order_id`."""
    return f"<order-{order_id}.event-{version}@{domain}>"


@dataclass(frozen=True)
class OutgoingMail:
    """A message of the outbox with what it needs to be written."""

    message_id: str
    order_id: int
    kind: str
    actor: str
    warning_count: int
    happened_at: float
    recipients: list[str]
    state: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    sent_at: float | None
    snids: list[str]
    resource_project: str
    dest_project: str
    requested_by: str


def _mail(row: Any) -> OutgoingMail:
    values = list(row)
    values[6] = values[6].split(",")
    values[12] = values[12].split(",")
    return OutgoingMail(*values)


_Later = Order.Accepted | Order.Rejected | Order.WarningRaised


def _insert_message(
    cursor: Cursor,
    db: ViewDatabase,
    event: Order.Requested | _Later,
    actor: str,
    count: int,
    mailto: list[str],
) -> None:
    cursor.execute(
        db.sql(_INSERT_MESSAGE),
        (
            message_id(event.number, event.originator_version),
            event.number,
            _KIND_OF[get_topic(type(event))],
            actor,
            count,
            event.at.timestamp(),
            ",".join(mailto),
        ),
    )


class MailOutbox:
    """Projects Order events into messages to send."""

    name = NAME
    # The view proper, a function of the log. The mailer's ledger
    # (`mail_deliveries`) is not among them: a replay or a rebuild leaves it be.
    tables: tuple[str, ...] = ("mail_orders", "mail_outbox")
    # Holds state no replay could recompute (the ledger): `pm-order projections
    # rebuild` leaves this view alone.
    keeps_state = True
    topics = frozenset(_KIND_OF)

    def create_tables(self, cursor: Cursor, db: ViewDatabase) -> None:
        for statement in _DDL:
            cursor.execute(statement)

    def apply_page(self, cursor: Cursor, db: ViewDatabase, events: Events) -> None:
        for event in events:
            match event:
                case Order.Requested():
                    self._requested(cursor, db, event)
                case Order.Accepted(by=by) | Order.Rejected(by=by):
                    self._message(cursor, db, event, actor=by)
                case Order.WarningRaised(count=count):
                    self._message(cursor, db, event, actor="pm-order", count=count)

    @staticmethod
    def _requested(cursor: Cursor, db: ViewDatabase, event: Order.Requested) -> None:
        cursor.execute(
            db.sql(_INSERT_ORDER),
            (
                event.number,
                ",".join(event.snids),
                event.resource_project,
                event.dest_project,
                event.user,
                ",".join(event.mailto),
            ),
        )
        if event.mailto:
            _insert_message(cursor, db, event, event.user, 0, event.mailto)

    @staticmethod
    def _message(
        cursor: Cursor, db: ViewDatabase, event: _Later, *, actor: str, count: int = 0
    ) -> None:
        cursor.execute(db.sql(_SELECT_MAILTO), (event.number,))
        row = cursor.fetchone()
        if row and row[0]:
            _insert_message(cursor, db, event, actor, count, row[0].split(","))

    # -- the mailer's side -------------------------------------------------------

    @staticmethod
    def due(db: ViewDatabase, now: float, limit: int = 50) -> list[OutgoingMail]:
        """Messages never tried, or failed and due for a retry at `now`."""
        with db.reading() as cursor:
            cursor.execute(db.sql(_SELECT_DUE), (PENDING, now, limit))
            return [_mail(row) for row in cursor.fetchall()]

    @staticmethod
    def messages(db: ViewDatabase, state: str | None = None) -> list[OutgoingMail]:
        """Every message (or those in `state`), oldest first."""
        with db.reading() as cursor:
            if state is None:
                cursor.execute(db.sql(_SELECT_ALL))
            else:
                cursor.execute(db.sql(_SELECT_IN_STATE), (state,))
            return [_mail(row) for row in cursor.fetchall()]

    @staticmethod
    def mark_sent(db: ViewDatabase, message: str, now: float) -> None:
        """Record that the SMTP server took `message`."""
        with db.writing() as cursor:
            cursor.execute(db.sql(_MARK_SENT), (message, SENT, now, PENDING))

    @staticmethod
    def mark_untried_sent(db: ViewDatabase, now: float) -> int:
        """Record every never-tried message as sent elsewhere; returns how many."""
        with db.writing() as cursor:
            cursor.execute(db.sql(_MARK_UNTRIED_SENT), (SENT, now))
            return int(cursor.rowcount)

    @staticmethod
    def mark_attempt_failed(
        db: ViewDatabase,
        message: str,
        attempts: int,
        retry_at: float | None,
        error: str,
    ) -> None:
        """Record a failed try: retry at `retry_at`, or give up when it is None."""
        state = PENDING if retry_at is not None else FAILED
        with db.writing() as cursor:
            cursor.execute(
                db.sql(_MARK_ATTEMPT_FAILED),
                (message, state, attempts, retry_at or 0.0, error[:500], PENDING),
            )

    @staticmethod
    def retry_failed(db: ViewDatabase, now: float, message: str | None = None) -> int:
        """Put dead-lettered messages back in line; returns how many."""
        with db.writing() as cursor:
            if message is None:
                cursor.execute(db.sql(_RETRY_FAILED), (PENDING, now, FAILED))
            else:
                cursor.execute(db.sql(_RETRY_ONE), (PENDING, now, FAILED, message))
            return int(cursor.rowcount)
