"""What the store says about the service's health: each view's position, lag and
last move, the mail outbox by state; read from the database at most about once a
second however often readiness and metrics ask."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Final

from mail.outbox_counts import outbox_by_state
from notifications.backlog import backlog
from projections import view_status
from projections.executor import in_pool
from service.logs import redact
from service.store import Store

log = logging.getLogger(__name__)

MAX_AGE_SECONDS: Final = 1.0
# A store that does not answer within this is down, as far as readiness goes.
SAMPLE_TIMEOUT_SECONDS: Final = 5.0


@dataclass(frozen=True)
class Sample:
    """The store's answers at `taken_at`, or why it gave none."""

    taken_at: float
    views: list[view_status.ViewStatus] = field(default_factory=list)
    outbox: dict[str, int] = field(default_factory=dict)
    # The announcements' backlog (None: never published here).
    notifications: view_status.ViewStatus | None = None
    error: str | None = None
    # How the tables this process reads differ from what it expects (none: as
    # expected).
    shape_problems: list[str] = field(default_factory=list)

    @property
    def head(self) -> int:
        return max((v.head for v in self.views), default=0)


class StoreStatus:
    """The latest sample of the store, taken again when older than `max_age`."""

    def __init__(
        self,
        store: Store,
        executor: Executor,
        *,
        max_age: float = MAX_AGE_SECONDS,
        timeout: float = SAMPLE_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.executor = executor
        self.max_age = max_age
        self.timeout = timeout
        self.clock = clock
        self.latest: Sample | None = None
        self._sampling = asyncio.Lock()

    async def sample(self) -> Sample:
        """A sample at most `max_age` old; callers arriving together share one."""
        async with self._sampling:
            latest = self.latest
            if latest is not None and self.clock() - latest.taken_at < self.max_age:
                return latest
            try:
                async with asyncio.timeout(self.timeout):
                    self.latest = await in_pool(self.executor, self._read)
            except TimeoutError:
                reason = f"no answer within {self.timeout:g} s"
                log.warning("the store does not answer: %s", reason)
                self.latest = Sample(taken_at=self.clock(), error=reason)
            except Exception as error:  # noqa: BLE001 - any failure is "store down"
                reason = redact(str(error).splitlines()[0] if str(error) else "")
                log.warning("the store does not answer: %s", reason or repr(error))
                self.latest = Sample(
                    taken_at=self.clock(), error=reason or type(error).__name__
                )
            return self.latest

    def _read(self) -> Sample:
        app = self.store.app
        views = [
            view_status.status(app.recorder, app.mapper, self.store.views, view)
            for view in self.store.all_views
        ]
        return Sample(
            taken_at=self.clock(),
            views=views,
            outbox=outbox_by_state(self.store.views),
            notifications=backlog(app.recorder, app.mapper, self.store.views),
            shape_problems=self.store.shape_problems(),
        )
