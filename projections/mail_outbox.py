"""The mail outbox: one message per order event for the order's `mailto` list.

The messages are a projection, filled by the projector (so exactly once per
event, whatever restarts or replays) and a function of the event log alone. What
the mailer did with each message (attempts, sent, given up) is kept in the
mailer's ledger (mail/ledger.py), not here: a replay of the log, even into fresh
view tables, finds every message it makes already accounted for there and sends
nothing again. A message's id is derived from its order and event version, so a
resent message carries the same Message-ID as the first try.
"""

from __future__ import annotations

from typing import Final

from eventsourcing.utils import get_topic

from domain.order import Order
from projections.database import Cursor, ViewDatabase
from projections.view import Events, TablesFromDdl

NAME: Final = "mail_outbox"

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
_KIND_OF: Final = {
    get_topic(Order.Requested): REQUESTED,
    get_topic(Order.WarningRaised): WARNED,
    get_topic(Order.Accepted): ACCEPTED,
    get_topic(Order.Rejected): REFUSED,
}


def message_id(order_id: int, version: int, domain: str = "pm-order") -> str:
    """The Message-ID of the mail about version `version` of order `order_id`."""
    return f"<order-{order_id}.event-{version}@{domain}>"


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


class MailOutbox(TablesFromDdl):
    """Projects Order events into messages to send."""

    name = NAME
    ddl = _DDL
    # A function of the log alone. What the mailer did with each message is in
    # its ledger (mail/ledger.py), which a replay or a rebuild leaves be.
    tables: tuple[str, ...] = ("mail_orders", "mail_outbox")
    topics = frozenset(_KIND_OF)

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
