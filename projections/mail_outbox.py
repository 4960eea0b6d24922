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

from dataclasses import dataclass
from typing import Any, Final

from domain.event_kinds import (
    ACCEPTED,
    KIND_OF,
    ORDER_TOPICS,
    REFUSED,
    REQUESTED,
    SERVICE_ACTOR,
)
from domain.event_kinds import WARNING as WARNED
from domain.order import Order
from projections.page_writer import Changes, Int32, Lookup, Table
from projections.view import ReadModel

NAME: Final = "mail_outbox"

# The kinds of message, as mail/messages.py words them: the event kinds.
__all__ = ["ACCEPTED", "REFUSED", "REQUESTED", "WARNED", "MailOutbox", "message_id"]


@dataclass(slots=True)
class MailOrder:
    """What a message needs to know of its order."""

    order_id: int
    snids: str
    source_project: str
    dest_project: str
    user: str
    mailto: str


@dataclass(slots=True)
class Message:
    """One message to send: about which event of which order, to whom."""

    message_id: str
    order_id: int
    kind: str
    actor: str
    warning_count: Int32
    happened_at: float
    recipients: str


# Rows inserted again (a replayed event) are left as they were.
ORDERS: Final = Table(
    "mail_orders",
    MailOrder,
    key=["order_id"],
    keep_first=True,
    stored_as={"user": "user_name"},  # a word PostgreSQL reserves
)
OUTBOX: Final = Table(
    "mail_outbox",
    Message,
    key=["message_id"],
    keep_first=True,
    indexes=[
        "CREATE INDEX IF NOT EXISTS mail_outbox_by_time"
        " ON mail_outbox (happened_at, message_id)",
    ],
)
# A later event's message goes to its order's `mailto`, as its request recorded
# it: found by the statement itself (no read among the page's pipelined writes).
_ITS_RECIPIENTS: Final = Lookup(
    ORDERS,
    "order_id",
    (("recipients", "mailto"),),
    where="o.mailto <> ''",
    keeps=lambda order: bool(order.mailto),
)


def message_id(order_id: int, version: int, domain: str = "pm-order") -> str:
    """The Message-ID of the mail about version `version` of order `order_id`."""
    return f"<order-{order_id}.event-{version}@{domain}>"


class MailOutbox(ReadModel):
    """Projects Order events into messages to send."""

    name = NAME
    # A function of the log alone. What the mailer did with each message is in
    # its ledger (mail/ledger.py), which a replay or a rebuild leaves be.
    layout = (ORDERS, OUTBOX)
    topics = ORDER_TOPICS

    def fold(self, event: Any, changes: Changes) -> None:
        match event:
            case Order.Requested():
                mailto = ",".join(event.mailto)
                changes.insert(
                    ORDERS,
                    MailOrder(
                        order_id=event.number,
                        snids=",".join(event.snids),
                        source_project=event.resource_project,
                        dest_project=event.dest_project,
                        user=event.user,
                        mailto=mailto,
                    ),
                )
                if event.mailto:
                    changes.insert(
                        OUTBOX,
                        Message(
                            message_id=message_id(
                                event.number, event.originator_version
                            ),
                            order_id=event.number,
                            kind=REQUESTED,
                            actor=event.user,
                            warning_count=0,
                            happened_at=event.at.timestamp(),
                            recipients=mailto,
                        ),
                    )
            case Order.Accepted(by=by) | Order.Rejected(by=by):
                _later(changes, event, by, 0)
            case Order.WarningRaised(count=count):
                _later(changes, event, SERVICE_ACTOR, count)


def _later(
    changes: Changes,
    event: Order.Accepted | Order.Rejected | Order.WarningRaised,
    actor: str,
    count: int,
) -> None:
    """The message of an event after the request, to the request's `mailto`
    (none when it was empty)."""
    changes.insert_through(
        OUTBOX,
        _ITS_RECIPIENTS,
        event.number,
        message_id=message_id(event.number, event.originator_version),
        order_id=event.number,
        kind=KIND_OF[type(event)],
        actor=actor,
        warning_count=count,
        happened_at=event.at.timestamp(),
    )
