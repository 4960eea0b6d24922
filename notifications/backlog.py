"""How far the announcements are behind the event log: read from the database,
so any process (an API-only one too) can tell."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Final

from eventsourcing.persistence import ApplicationRecorder, Mapper

from notifications.position import NotificationPositions
from projections.database import ViewDatabase
from projections.view_status import ViewStatus

# Its row's name beside the views' in `pm-order projections status`.
NAME: Final = "notifications"


def backlog(
    recorder: ApplicationRecorder, mapper: Mapper[Any], db: ViewDatabase
) -> ViewStatus | None:
    """The publisher's position, the log's head, the events between (of every
    kind: the server events among them are passed, not announced) and the age of
    the oldest; None before the publisher first ran."""
    found = NotificationPositions.read(db)
    if found is None:
        return None
    head = recorder.max_notification_id() or 0
    lag_seconds = 0.0
    if found.position < head:
        for first in recorder.select_notifications(
            start=found.position, limit=1, inclusive_of_start=False
        ):
            event = mapper.to_domain_event(first)
            waiting_since: datetime = getattr(event, "timestamp")  # noqa: B009
            lag_seconds = max(0.0, time.time() - waiting_since.timestamp())
    return ViewStatus(
        name=NAME,
        position=found.position,
        head=head,
        lag_events=max(head - found.position, 0),
        lag_seconds=lag_seconds,
        moved_at=found.moved_at,
    )
