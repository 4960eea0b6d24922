"""The background work of a process: projectors, the warning scheduler, the mailer.

Each piece runs in one process at a time among all those sharing a store: the
projectors per view, the scheduler and the mailer each under a leadership of
their own (PostgreSQL advisory locks; SQLite has one process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Final

from domain.service import OrderService
from mail.mailer import DEFAULT_BACKOFF, Backoff, Mailer
from projections.following import Following, ask_to_lead, stop_tasks
from service.config import Config
from service.store import Store
from service.warning_scheduler import WarningScheduler

log = logging.getLogger(__name__)

MAILER_POLL_SECONDS: Final = 1.0
STANDBY_POLL_SECONDS: Final = 1.0


class Background:
    """The projectors, the warning scheduler and the mailer of one process."""

    def __init__(
        self,
        store: Store,
        service: OrderService,
        config: Config,
        executor: Executor,
        *,
        run_work: bool = True,
        mail_backoff: Backoff = DEFAULT_BACKOFF,
        mail_poll: float = MAILER_POLL_SECONDS,
    ) -> None:
        self.store = store
        self.executor = executor
        self.run_work = run_work
        self.following: Following = store.following(
            executor, run_projectors=run_work, idle_poll=config.idle_poll_seconds
        )
        self.scheduler = WarningScheduler(
            service, store.views, every=config.warn_after, most=config.warn_max
        )
        self.mailer: Mailer | None = None
        if config.smtp is not None:
            self.mailer = Mailer(
                store.views,
                config.smtp,
                executor,
                sender=config.mail_from,
                zone=config.timezone,
                backoff=mail_backoff,
            )
        seconds = config.warn_after.total_seconds()
        self.scheduler_interval = min(max(seconds / 10, 0.2), 30.0)
        self.mail_poll = mail_poll
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.following.start()
        if not self.run_work:
            return
        self._spawn(
            self._elected("warning_scheduler", self._warn, self.scheduler_interval)
        )
        if self.mailer is None:
            log.warning(
                "PM_ORDER_SMTP_URL is not set: mail stays in the outbox, unsent"
            )
        else:
            self._spawn(
                self._elected("mailer", self.mailer.deliver_due, self.mail_poll)
            )

    async def stop(self) -> None:
        await stop_tasks(self._tasks)
        self._tasks.clear()
        await self.following.stop()

    async def _warn(self) -> None:
        loop = asyncio.get_running_loop()
        if await loop.run_in_executor(self.executor, self.scheduler.run_once):
            self.following.wake()

    async def _elected(
        self, name: str, step: Callable[[], Awaitable[object]], interval: float
    ) -> None:
        """Run `step` every `interval` while this process leads `name`."""
        leadership = self.store.views.leadership(name)
        what = name.replace("_", " ")
        leading = False
        failures = 0
        try:
            while True:
                try:
                    # Asked every round, not once: a leader whose database session
                    # ended has lost the lock to a standby and must stop at once.
                    was_leading, leading = (
                        leading,
                        await ask_to_lead(leadership, self.executor),
                    )
                    if leading and not was_leading:
                        log.info("running the %s here", what)
                    elif was_leading and not leading:
                        log.warning("no longer running the %s here", what)
                    if not leading:
                        await asyncio.sleep(STANDBY_POLL_SECONDS)
                        continue
                    await step()
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception:
                    failures += 1
                    if failures == 1:
                        log.exception("the %s failed; retrying", what)
                    leading = False
                    await asyncio.get_running_loop().run_in_executor(
                        self.executor, leadership.release
                    )
                await asyncio.sleep(interval)
        finally:
            with contextlib.suppress(Exception):
                leadership.release()

    def _spawn(
        self,
        coroutine: Awaitable[None],
    ) -> None:
        self._tasks.append(asyncio.ensure_future(coroutine))
