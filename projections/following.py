"""Keeping views up to date in the background, and waiting for them.

Projectors run as asyncio tasks whose database work happens in the executor.
A command's handler awaits `caught_up(position)` before it answers, so that any
read starting after the answer sees the write (read-your-writes). Where the
projectors run in another process, the tracking table is polled instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any, Final, TypeVar

from projections.database import ViewDatabase
from projections.projector import Projector, tracked_position

log = logging.getLogger(__name__)

T = TypeVar("T")

# How often to look for events written by other processes when nothing woke us.
IDLE_POLL_SECONDS: Final = 1.0
# Polling the tracking table while requests wait on another process's projector.
_WAIT_POLL_FIRST: Final = 0.002
_WAIT_POLL_MOST: Final = 0.05
_RETRY_AFTER_ERROR: Final = 1.0


class Following:
    """Runs projectors (or watches other processes' projectors) for some views."""

    def __init__(
        self,
        db: ViewDatabase,
        projectors: Sequence[Projector],
        executor: Executor,
        *,
        run_projectors: bool = True,
        idle_poll: float = IDLE_POLL_SECONDS,
    ) -> None:
        self.db = db
        self.projectors = list(projectors)
        self.views = [p.view.name for p in self.projectors]
        self.executor = executor
        self.run_projectors = run_projectors
        self.idle_poll = idle_poll
        self._positions = dict.fromkeys(self.views, 0)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._wake: list[asyncio.Event] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._poller: asyncio.Task[None] | None = None

    @property
    def position(self) -> int:
        """The log position every followed view has reached."""
        return min(self._positions.values(), default=0)

    async def start(self) -> None:
        for view in self.views:
            self._positions[view] = await self._run(tracked_position, self.db, view)
        if self.run_projectors:
            for projector in self.projectors:
                wake = asyncio.Event()
                self._wake.append(wake)
                self._tasks.append(
                    asyncio.create_task(
                        self._follow(projector, wake), name=f"project {projector.view.name}"
                    )
                )

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._poller] if self._poller else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        for _, future in self._waiters:
            future.cancel()
        self._waiters.clear()

    def wake(self) -> None:
        """New events were stored: project them now (call on the event loop)."""
        for wake in self._wake:
            wake.set()

    async def caught_up(self, position: int, timeout: float) -> bool:
        """Wait until every view has applied the log up to `position`."""
        if self.position >= position:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((position, future))
        if self.run_projectors:
            self.wake()
        elif self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll_while_waited())
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return False
        finally:
            self._waiters = [(p, f) for p, f in self._waiters if f is not future]
        return True

    async def _follow(self, projector: Projector, wake: asyncio.Event) -> None:
        view = projector.view.name
        position = self._positions[view]
        while True:
            try:
                moved = await self._run(projector.run_page, position)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("projecting %s failed; retrying", view)
                await asyncio.sleep(_RETRY_AFTER_ERROR)
                position = await self._position_or(view, position)
                continue
            if moved != position:
                position = moved
                self._advance(view, position)
                continue
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), self.idle_poll)
            except TimeoutError:
                pass

    async def _poll_while_waited(self) -> None:
        delay = _WAIT_POLL_FIRST
        while self._waiters:
            for view in self.views:
                self._advance(view, await self._position_or(view, self._positions[view]))
            if not self._waiters:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, _WAIT_POLL_MOST)

    async def _position_or(self, view: str, fallback: int) -> int:
        try:
            return await self._run(tracked_position, self.db, view)
        except Exception:
            log.warning("cannot read the position of %s", view, exc_info=True)
            return fallback

    def _advance(self, view: str, position: int) -> None:
        self._positions[view] = max(self._positions[view], position)
        reached = self.position
        for wanted, future in self._waiters:
            if wanted <= reached and not future.done():
                future.set_result(None)

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, function, *args)
