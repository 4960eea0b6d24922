"""The warning scheduler: proposes a warning for each order that waited too long.

It asks the order lists which unfinished orders have waited `every` since their
request or last warning, and asks each order to raise a warning; the order
decides whether one is due, so two schedulers, a restart or a replay never raise
one twice.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from domain.exceptions import Conflict, OrdersNotFound
from domain.service import OrderService
from projections.database import ViewDatabase
from projections.order_lists import OrderLists

log = logging.getLogger(__name__)


class WarningScheduler:
    def __init__(
        self, service: OrderService, db: ViewDatabase, *, every: timedelta, most: int
    ) -> None:
        self.service = service
        self.db = db
        self.every = every
        self.most = most

    def run_once(self) -> int:
        """Raise every warning due now; returns how many were raised."""
        if self.most < 1:
            return 0
        waited_since = (self.service.clock() - self.every).timestamp()
        raised = 0
        for order_id in OrderLists.overdue(self.db, waited_since, self.most):
            try:
                written = self.service.raise_warning(
                    order_id, every=self.every, most=self.most
                )
            except (OrdersNotFound, Conflict) as error:
                log.warning("no warning for order %d: %s", order_id, error)
                continue
            if written.position:
                raised += 1
        if raised:
            log.info("raised %d warnings", raised)
        return raised
