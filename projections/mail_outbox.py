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

from typing import Any, Final

from eventsourcing.utils import get_topic

from domain.order import Order
from projections.database import Cursor, RowsStatement, ViewDatabase
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
_INSERT_ORDERS: Final = RowsStatement(
    each="INSERT INTO mail_orders (order_id, snids, resource_project, dest_project,"
    " user_name, mailto) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO NOTHING",
    arrays="INSERT INTO mail_orders (order_id, snids, resource_project, dest_project,"
    " user_name, mailto) SELECT * FROM unnest(?::bigint[], ?::text[], ?::text[],"
    " ?::text[], ?::text[], ?::text[]) ON CONFLICT (order_id) DO NOTHING",
)
_INSERT_MESSAGES: Final = RowsStatement(
    each="INSERT INTO mail_outbox (message_id, order_id, kind, actor, warning_count,"
    " happened_at, recipients) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (message_id) DO NOTHING",
    arrays="INSERT INTO mail_outbox (message_id, order_id, kind, actor, warning_count,"
    " happened_at, recipients) SELECT * FROM unnest(?::text[], ?::bigint[], ?::text[],"
    " ?::text[], ?::integer[], ?::double precision[], ?::text[])"
    " ON CONFLICT (message_id) DO NOTHING",
)
# A later event's message goes to its order's `mailto`, as its request recorded
# it: found by the statement itself (no read among the page's pipelined writes).
_INSERT_LATER_MESSAGES: Final = RowsStatement(
    each="INSERT INTO mail_outbox (message_id, order_id, kind, actor, warning_count,"
    " happened_at, recipients) SELECT ?, order_id, ?, ?, ?, ?, mailto FROM mail_orders"
    " WHERE order_id = ? AND mailto <> '' ON CONFLICT (message_id) DO NOTHING",
    arrays="INSERT INTO mail_outbox (message_id, order_id, kind, actor, warning_count,"
    " happened_at, recipients) SELECT m.message_id, o.order_id, m.kind, m.actor,"
    " m.warning_count, m.happened_at, o.mailto"
    " FROM unnest(?::text[], ?::text[], ?::text[], ?::integer[],"
    " ?::double precision[], ?::bigint[])"
    " AS m (message_id, kind, actor, warning_count, happened_at, order_id)"
    " JOIN mail_orders o ON o.order_id = m.order_id WHERE o.mailto <> ''"
    " ON CONFLICT (message_id) DO NOTHING",
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


class MailOutbox(TablesFromDdl):
    """Projects Order events into messages to send."""

    name = NAME
    ddl = _DDL
    # A function of the log alone. What the mailer did with each message is in
    # its ledger (mail/ledger.py), which a replay or a rebuild leaves be.
    tables: tuple[str, ...] = ("mail_orders", "mail_outbox")
    topics = frozenset(_KIND_OF)

    def apply_page(self, cursor: Cursor, db: ViewDatabase, events: Events) -> None:
        """Three statements a page: the orders, their requests' messages, the
        messages of later events (after the orders they need)."""
        orders: list[tuple[Any, ...]] = []
        requested: list[tuple[Any, ...]] = []
        later: list[tuple[Any, ...]] = []
        for event in events:
            match event:
                case Order.Requested():
                    mailto = ",".join(event.mailto)
                    orders.append(
                        (
                            event.number,
                            ",".join(event.snids),
                            event.resource_project,
                            event.dest_project,
                            event.user,
                            mailto,
                        )
                    )
                    if event.mailto:
                        requested.append(
                            (
                                message_id(event.number, event.originator_version),
                                event.number,
                                REQUESTED,
                                event.user,
                                0,
                                event.at.timestamp(),
                                mailto,
                            )
                        )
                case Order.Accepted(by=by) | Order.Rejected(by=by):
                    later.append(_later(event, by, 0))
                case Order.WarningRaised(count=count):
                    later.append(_later(event, "pm-order", count))
        db.apply_rows(cursor, _INSERT_ORDERS, orders)
        db.apply_rows(cursor, _INSERT_MESSAGES, requested)
        db.apply_rows(cursor, _INSERT_LATER_MESSAGES, later)


def _later(
    event: Order.Accepted | Order.Rejected | Order.WarningRaised, actor: str, count: int
) -> tuple[Any, ...]:
    return (
        message_id(event.number, event.originator_version),
        _KIND_OF[get_topic(type(event))],
        actor,
        count,
        event.at.timestamp(),
        event.number,
    )
