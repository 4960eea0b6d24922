"""How far a view is behind the event log, in notification ids and in seconds."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, Mapper

from domain.event_kinds import LOG_TOPICS
from projections.database import ViewDatabase
from projections.projector import tracking_of
from projections.view import View


@dataclass(frozen=True)
class ViewStatus:
    name: str
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    moved_at: float | None


def status(
    recorder: ApplicationRecorder, mapper: Mapper[Any], live: ViewDatabase, view: View
) -> ViewStatus:
    """How far `view` is behind the log, in notification ids and in seconds."""
    head = recorder.max_notification_id() or 0
    position, moved_at = tracking_of(live, view.name)
    lag_seconds = 0.0
    if position < head:
        for first in recorder.select_notifications(
            start=position, limit=1, inclusive_of_start=False
        ):
            if first.topic not in LOG_TOPICS:
                break  # written by a later release: its kind is not known here
            event = mapper.to_domain_event(first)
            waiting_since: datetime = getattr(event, "timestamp")  # noqa: B009
            lag_seconds = max(0.0, time.time() - waiting_since.timestamp())
    return ViewStatus(
        name=view.name,
        position=position,
        head=head,
        lag_events=head - position,
        lag_seconds=lag_seconds,
        moved_at=moved_at,
    )
