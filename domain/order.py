"""The Order aggregate: a request to move servers from one project to another."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain import workflow
from domain.exceptions import AlreadyDecided
from domain.workflow import ACCEPT, REFUSE, WARN

_ORDER_IDS: Final = uuid5(NAMESPACE_URL, "urn:pm-order:order")


def order_aggregate_id(number: int) -> UUID:
    """The aggregate id of order `number`: the same on every replay."""
    return uuid5(_ORDER_IDS, str(number))


class Order(Aggregate):
    """A transfer of servers from `resource_project` to `dest_project`."""

    # Events' attribute names are the stored format, in the contract's words:
    # `resource_project` and `dest_project` here, `project_id`, `from_project` and
    # `to_project` in Server's. Renaming one would need an upcaster for every
    # stored event, so code says `source_project`/`dest_project` and `project`
    # everywhere but where an event (or the JSON) is read or written; the
    # aggregates' attributes follow their events (the library ties them).
    class Requested(Aggregate.Created):
        number: int
        snids: list[str]
        resource_project: str
        dest_project: str
        user: str
        mailto: list[str]
        at: datetime

    # A decision records the state the workflow gave it. Events stored before
    # the state was recorded carry none: theirs is the default.
    class Accepted(Aggregate.Event):
        number: int
        by: str
        at: datetime
        state: str = workflow.outcome(ACCEPT)

    class Rejected(Aggregate.Event):
        number: int
        by: str
        at: datetime
        state: str = workflow.outcome(REFUSE)

    class WarningRaised(Aggregate.Event):
        number: int
        count: int
        at: datetime

    @staticmethod
    def create_id(number: int) -> UUID:
        return order_aggregate_id(number)

    @event(Requested)
    def __init__(
        self,
        number: int,
        snids: list[str],
        resource_project: str,
        dest_project: str,
        user: str,
        mailto: list[str],
        at: datetime,
    ) -> None:
        self.number = number
        self.snids = list(snids)
        self.resource_project = resource_project
        self.dest_project = dest_project
        self.user = user
        self.mailto = list(mailto)
        self.requested_at = at
        self.state: str = workflow.UNFINISHED
        self.decided_by: str | None = None
        self.decided_at: datetime | None = None
        self.warning_count = 0
        self.warned_at: datetime | None = None

    @property
    def is_unfinished(self) -> bool:
        return self.state == workflow.UNFINISHED

    def decided_otherwise(self, accept: bool) -> bool:
        """Whether the order was already decided the other way."""
        return not self.is_unfinished and self.state != workflow.outcome(
            workflow.decision(accept)
        )

    def accept(self, by: str, at: datetime) -> None:
        """The destination takes the servers; a repeat changes nothing."""
        if self._decision_needed(ACCEPT):
            state = workflow.next_state(ACCEPT, self.state)
            self._accept(number=self.number, by=by, at=at, state=state)

    def refuse(self, by: str, at: datetime) -> None:
        """The destination declines and the servers stay; a repeat changes nothing."""
        if self._decision_needed(REFUSE):
            state = workflow.next_state(REFUSE, self.state)
            self._refuse(number=self.number, by=by, at=at, state=state)

    def _decision_needed(self, trigger: str) -> bool:
        if self.state == workflow.outcome(trigger):
            return False
        if not workflow.may(trigger, self.state):
            raise AlreadyDecided(f"order {self.number} is already {self.state}")
        return True

    @event(Accepted)
    def _accept(
        self, number: int, by: str, at: datetime, state: str = Accepted.state
    ) -> None:
        self.state = state
        self.decided_by = by
        self.decided_at = at

    @event(Rejected)
    def _refuse(
        self, number: int, by: str, at: datetime, state: str = Rejected.state
    ) -> None:
        self.state = state
        self.decided_by = by
        self.decided_at = at

    def warning_due(self, now: datetime, every: timedelta, most: int) -> bool:
        """Whether an unanswered order is owed a warning at `now`."""
        if not workflow.may(WARN, self.state) or self.warning_count >= most:
            return False
        since = self.warned_at or self.requested_at
        return now >= since + every

    def raise_warning(self, now: datetime, every: timedelta, most: int) -> bool:
        """Raise a warning if one is due; say whether one was raised."""
        if not self.warning_due(now, every, most):
            return False
        self._raise_warning(number=self.number, count=self.warning_count + 1, at=now)
        return True

    @event(WarningRaised)
    def _raise_warning(self, number: int, count: int, at: datetime) -> None:
        # A warning leaves the state as it is (the workflow's "warn" goes to "=").
        self.warning_count = count
        self.warned_at = at
