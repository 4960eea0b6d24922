"""The mailer's ledger: what became of each message of the outbox.

Written by the mailer only, and never part of a view: a replay or a rebuild of
the outbox finds every message it makes already accounted for here, and sends
nothing again. A message without a row here has not been tried yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from projections.database import ViewDatabase

PENDING: Final = "pending"
SENT: Final = "sent"
FAILED: Final = "failed"

_DDL: Final = (
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

# The outbox's messages (projections/mail_outbox.py) with their delivery state.
_STATE: Final = f"COALESCE(d.state, '{PENDING}')"
_COLUMNS: Final = (
    "m.message_id, m.order_id, m.kind, m.actor, m.warning_count, m.happened_at,"
    f" m.recipients, {_STATE}, COALESCE(d.attempts, 0),"
    " COALESCE(d.next_attempt_at, 0), d.last_error, d.sent_at,"
    " o.snids, o.source_project, o.dest_project, o.user_name"
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
    source_project: str
    dest_project: str
    requested_by: str


def _mail(row: Any) -> OutgoingMail:
    values = list(row)
    values[6] = values[6].split(",")
    values[12] = values[12].split(",")
    return OutgoingMail(*values)


class DeliveryLedger:
    """Reads the outbox with its delivery state; records what the mailer did."""

    @staticmethod
    def create_tables(db: ViewDatabase) -> None:
        """Make the ledger beside the event store: shared by every generation of
        the read models, so a new generation's outbox sends nothing again."""
        with db.shared_writing() as cursor:
            for statement in _DDL:
                cursor.execute(statement)

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
