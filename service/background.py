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
from notifications.publisher import Publisher
from projections.executor import in_pool
from service.config import Config
from service.election import Election
from service.following import STOP_GRACE_SECONDS, Following, stop_tasks
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
                language=config.language,
                backoff=mail_backoff,
            )
        # PM_ORDER_TRANSPORT_URL: every order event announced on RabbitMQ.
        self.notifier: Publisher | None = None
        if config.notifications is not None:
            self.notifier = Publisher(
                store.app,
                store.views,
                config.notifications,
                wait_for_events=self.following.caught_up,
            )
        seconds = config.warn_after.total_seconds()
        self.scheduler_interval = min(max(seconds / 10, 0.2), 30.0)
        self.mail_poll = mail_poll
        # Every role this process may lead: the projector's, then these.
        self.elections: dict[str, Election] = {}
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.following.start()
        if not self.run_work:
            return
        self._elected("warning_scheduler", self._warn, self.scheduler_interval)
        if self.mailer is None:
            log.warning(
                "PM_ORDER_SMTP_URL is not set: mail stays in the outbox, unsent"
            )
        else:
            self._elected("mailer", self.mailer.deliver_due, self.mail_poll)
        if self.notifier is not None:
            with contextlib.suppress(Exception):  # else its first round does it
                await self.notifier.start()
            # Its round waits for new events itself; after a failure (the
            # broker down), a second before trying again.
            self._elected("notifier", self.notifier.publish_due, 0, retry_after=1.0)

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop at a boundary: the scheduler's round and the mailer's batch in
        progress end (within `grace` seconds), then the projectors' pages."""
        deadline = asyncio.get_running_loop().time() + grace
        self._stopping.set()
        if running := [t for t in self._tasks if not t.done()]:
            await asyncio.wait(running, timeout=grace)
        await stop_tasks(self._tasks)
        self._tasks.clear()
        if self.notifier is not None:
            await self.notifier.close()
        left = deadline - asyncio.get_running_loop().time()
        await self.following.stop(max(left, 0.1))

    @property
    def leading(self) -> dict[str, bool]:
        """Each role and whether this process leads it now."""
        return {
            "projector": self.following.leading,
            **{role: e.leading for role, e in self.elections.items()},
        }

    async def _warn(self) -> None:
        if await in_pool(self.executor, self.scheduler.run_once):
            self.following.wake()

    def _elected(
        self,
        name: str,
        step: Callable[[], Awaitable[object]],
        interval: float,
        *,
        retry_after: float | None = None,
    ) -> None:
        """Run `step` every `interval` while this process leads `name` (after a
        failure, again after `retry_after`, by default `interval`)."""
        # One process of every release and generation leads it (the same lock
        # every release takes), once this one's read models have caught up: a
        # generation being built from the log sends nothing it has not reached.
        election = Election(
            name,
            self.store.views.shared_leadership(name),
            self.executor,
            retry_after=interval if retry_after is None else retry_after,
        )
        self.elections[name] = election

        async def work() -> None:
            await step()
            await self._pause(interval)

        async def once_caught_up() -> None:
            caught_up = asyncio.ensure_future(self.following.wait_caught_up_once())
            stopping = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait(
                [caught_up, stopping], return_when=asyncio.FIRST_COMPLETED
            )
            await stop_tasks([caught_up, stopping])
            if self._stopping.is_set():
                return
            await election.run(
                work,
                lambda: self._pause(STANDBY_POLL_SECONDS),
                stopping=self._stopping.is_set,
            )

        self._spawn(once_caught_up())

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    def _spawn(
        self,
        coroutine: Awaitable[None],
    ) -> None:
        self._tasks.append(asyncio.ensure_future(coroutine))
