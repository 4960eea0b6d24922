"""The events the service writes: their topics, and the word for each kind of event
in the audit trail, the mail and the reports."""

from __future__ import annotations

from typing import Any, Final

from eventsourcing.utils import get_topic

from domain.order import Order
from domain.server import Server

REQUESTED: Final = "requested"
ACCEPTED: Final = "accepted"
REFUSED: Final = "refused"
WARNING: Final = "warning"

REGISTERED: Final = "registered"
RESERVED: Final = "reserved"
TRANSFERRED: Final = "transferred"
RELEASED: Final = "released"

# Who raises warnings: no person, the service itself.
SERVICE_ACTOR: Final = "pm-order"

KIND_OF: Final[dict[type[Any], str]] = {
    Order.Requested: REQUESTED,
    Order.Accepted: ACCEPTED,
    Order.Rejected: REFUSED,
    Order.WarningRaised: WARNING,
    Server.Registered: REGISTERED,
    Server.Reserved: RESERVED,
    Server.Transferred: TRANSFERRED,
    Server.Released: RELEASED,
}


# Every event class the service writes, by aggregate.
ORDER_EVENTS: Final[tuple[type[Any], ...]] = (
    Order.Requested,
    Order.Accepted,
    Order.Rejected,
    Order.WarningRaised,
)
SERVER_EVENTS: Final[tuple[type[Any], ...]] = (
    Server.Registered,
    Server.Reserved,
    Server.Transferred,
    Server.Released,
)

ORDER_TOPICS: Final = frozenset(map(get_topic, ORDER_EVENTS))
SERVER_TOPICS: Final = frozenset(map(get_topic, SERVER_EVENTS))
# Every topic the service writes.
LOG_TOPICS: Final = ORDER_TOPICS | SERVER_TOPICS
