"""An event as an OpenStack notification: oslo.messaging's envelope (version 2.0)
around the message, and a versioned payload as Nova's versioned notifications
have (a name, a namespace, a version, the fields).

The payload's version is 1.0; a field added is a minor version (1.1), a field
removed or changed a major one (2.0), as Nova's rules for its payloads say.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from uuid import NAMESPACE_URL, uuid5

from domain import workflow
from domain.event_kinds import KIND_OF, SERVICE_ACTOR
from domain.order import Order

ENVELOPE_VERSION: Final = "2.0"
PAYLOAD_NAME: Final = "OrderPayload"
PAYLOAD_NAMESPACE: Final = "pm_order"
PAYLOAD_VERSION: Final = "1.0"
PRIORITY: Final = "INFO"
EVENT_TYPE_PREFIX: Final = "pm_order.order."
_MESSAGE_IDS: Final = uuid5(NAMESPACE_URL, "urn:pm-order:notification")
# oslo.messaging writes its timestamps so (str() of a naive UTC datetime).
_TIMESTAMP: Final = "%Y-%m-%d %H:%M:%S.%f"


@dataclass(frozen=True)
class Requested:
    """What every notification of an order repeats of its request."""

    snids: list[str]
    source_project: str
    dest_project: str
    user: str
    at: datetime

    @classmethod
    def of(cls, event: Order.Requested) -> Requested:
        return cls(
            list(event.snids),
            event.resource_project,
            event.dest_project,
            event.user,
            event.at,
        )


def message_id(event: Any) -> str:
    """The event's id: the same whenever it is announced again (a replay)."""
    return str(uuid5(_MESSAGE_IDS, f"{event.originator_id}:{event.originator_version}"))


def action_of(event: Any) -> str:
    """`requested`, `accepted`, `refused`, `warning`; a later kind of event is
    named after its class (WarningCleared: `warning_cleared`)."""
    kind = KIND_OF.get(type(event))
    if kind is not None:
        return kind
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(event).__name__).lower()


def _state_after(event: Any) -> str | None:
    match event:
        case Order.Requested() | Order.WarningRaised():
            return workflow.UNFINISHED
    state = getattr(event, "state", None)
    return state if isinstance(state, str) else None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def notification(
    event: Any, order: Requested, position: int, publisher_id: str
) -> dict[str, Any]:
    """The oslo.messaging message announcing `event` (at `position` in the log)
    of the order that `order` requested."""
    at: datetime = getattr(event, "at", None) or event.timestamp
    fields = {
        "order_id": event.number,
        "action": action_of(event),
        "state": _state_after(event),
        "snids": order.snids,
        "source_project": order.source_project,
        "dest_project": order.dest_project,
        "user": order.user,
        # Who did it: the requester, the decider, or the service (a warning).
        "actor": getattr(event, "by", None) or getattr(event, "user", SERVICE_ACTOR),
        "warning_count": getattr(event, "count", None),
        "requested_at": _iso(order.at),
        "happened_at": _iso(at),
        "event_version": event.originator_version,
        "log_position": position,
    }
    return {
        "message_id": message_id(event),
        "publisher_id": publisher_id,
        "event_type": EVENT_TYPE_PREFIX + fields["action"],
        "priority": PRIORITY,
        "payload": {
            "pm_order_object.name": PAYLOAD_NAME,
            "pm_order_object.namespace": PAYLOAD_NAMESPACE,
            "pm_order_object.version": PAYLOAD_VERSION,
            "pm_order_object.data": fields,
        },
        "timestamp": at.astimezone(UTC).replace(tzinfo=None).strftime(_TIMESTAMP),
    }


def envelope(message: dict[str, Any]) -> bytes:
    """The AMQP body oslo.messaging sends: the message as JSON text inside."""
    return json.dumps(
        {"oslo.version": ENVELOPE_VERSION, "oslo.message": json.dumps(message)}
    ).encode()
