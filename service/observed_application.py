"""The order application, counting what it stores: events by type, and the
version conflicts met on saving, read by the metrics at scrape time."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from eventsourcing.persistence import IntegrityError

from domain.service import OrderApplication


class CountedOrderApplication(OrderApplication):
    """OrderApplication (same name, same tables) that counts in this process."""

    # Set again: eventsourcing names a subclass after itself otherwise.
    name = OrderApplication.name

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counting = threading.Lock()
        # Events stored, by type ("Order.Requested"); conflicts met saving (each
        # is re-read and retried by the service, or answered 409 at the last).
        self.events_appended: Counter[str] = Counter()
        self.conflicts = 0

    # The library's public `save` (not its private `_record`, which `save` calls):
    # a conflict raises from it before anything is stored, and it returns what
    # was stored.
    def save(self, *objs: Any, **kwargs: Any) -> Any:
        try:
            recordings = super().save(*objs, **kwargs)
        except IntegrityError:
            with self._counting:
                self.conflicts += 1
            raise
        with self._counting:
            self.events_appended.update(
                type(r.domain_event).__qualname__ for r in recordings
            )
        return recordings

    def counts(self) -> tuple[dict[str, int], int]:
        """(events appended by type, conflicts) so far: a consistent copy."""
        with self._counting:
            return dict(self.events_appended), self.conflicts
