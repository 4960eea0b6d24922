"""Keeping views up to date in the background, and waiting for them.

Projectors run as asyncio tasks whose database work happens in the executor.
Of all processes sharing a store, one runs each view's projector: the leader
(PostgreSQL: an advisory lock; SQLite: the only process). The others stand by
and take over when the leader's session ends.

A command's handler awaits `caught_up(position)` before it answers, so that any
read starting after the answer sees the write (read-your-writes). Where a view
is projected by another process, this process learns the view's position from
the tracking table, woken by the projector's NOTIFY on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, Final, TypeVar

from projections.database import PostgresViews, ViewDatabase, progress_of
from projections.executor import in_pool
from projections.generations import generation, mark_caught_up, mark_seen
from projections.other_generations import (
    PROJECTOR,
    OtherGeneration,
    position_of,
    running_others,
)
from projections.projector import (
    PAGE_SIZE,
    ProjectionConflict,
    Projector,
    tracked_position,
)
from service.election import Election
from service.notify_listener import NotifyListener

log = logging.getLogger(__name__)

T = TypeVar("T")

# How often to look for events nobody told us about (other processes on SQLite,
# a missed NOTIFY), and how often a standby asks for leadership.
IDLE_POLL_SECONDS: Final = 1.0
STANDBY_POLL_SECONDS: Final = 1.0
# Reading the tracking table while requests wait on another process's projector.
_WAIT_POLL_FIRST: Final = 0.002
_WAIT_POLL_MOST: Final = 0.05
# While the listener hears, positions are read when the projector announces that
# it moved; this timer only bounds the wait should an announcement be lost.
_WAIT_POLL_HEARING: Final = 0.25
_RETRY_AFTER_ERROR: Final = 1.0
# While a generation is built from the log: events caught up between looks at
# whether this process is stopping (and at the log's head).
_BUILD_STRETCH: Final = 100 * PAGE_SIZE
# How often a process looks for other releases' read models that serve.
_OTHERS_EVERY_SECONDS: Final = 1.0
# How often a process not projecting reads whether its generation caught up.
_GENERATION_POLL: Final = 0.5
# How often a process says that it serves from its generation (the registry's
# `seen_at`: `pm-order db finish-upgrade` drops only generations unseen for long).
SEEN_EVERY_SECONDS: Final = 30.0
# How long stop() lets a projector finish the page it is applying.
STOP_GRACE_SECONDS: Final = 10.0


def tracked_positions(db: ViewDatabase, views: Sequence[str]) -> dict[str, int]:
    """The tracked position of each of `views` (0 before anything), in one read."""
    rows = db.query(
        "SELECT view, position FROM projection_tracking"
        f" WHERE view IN ({', '.join('?' * len(views))})",
        list(views),
    )
    found = {str(view): int(position) for view, position in rows}
    return {view: found.get(view, 0) for view in views}


async def stop_tasks(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` and wait until they have ended, cancelling again any that
    outlives a cancellation (Python 3.11's asyncio can lose one that arrives just as
    a wait ends, and a stop that waited on such a task would never return)."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1.0)
        if pending:
            log.warning(
                "cancelling again: %s", ", ".join(t.get_name() for t in pending)
            )
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "%s ended with an error", task.get_name(), exc_info=task.exception()
            )


class Following:
    """Runs (or watches other processes run) the projectors of some views."""

    def __init__(
        self,
        db: ViewDatabase,
        projectors: Sequence[Projector],
        executor: Executor,
        *,
        generation: str | None = None,
        head: Callable[[], int | None] | None = None,
        run_projectors: bool = True,
        idle_poll: float = IDLE_POLL_SECONDS,
        standby_poll: float = STANDBY_POLL_SECONDS,
        events_channel: str | None = None,
    ) -> None:
        self.db = db
        # The generation of the read models followed (None: not registered, as
        # in tests of the projection alone): served from once it has caught up.
        self.generation = generation
        # The log's head, read from the event store (for reads while other
        # releases serve: see projections/other_generations.py).
        self._head = head
        # Other releases' read models that serve now: writes wait for them too.
        self.others: list[OtherGeneration] = []
        self._serving: set[str] = set()
        self._caught_up = asyncio.Event()
        if generation is None:
            self._caught_up.set()
        self.projectors = list(projectors)
        self.views = [v.name for p in self.projectors for v in p.views]
        self.executor = executor
        self.run_projectors = run_projectors
        self.idle_poll = idle_poll
        self.standby_poll = standby_poll
        # None on SQLite: one process, woken by its own writes.
        self.listener: NotifyListener | None = None
        if isinstance(db, PostgresViews):
            channels = [db.progress_channel]
            # New events wake a projector: where none runs here, not hearing of
            # them spares this process (and the database) a notification per write.
            if events_channel and run_projectors:
                channels.append(events_channel)
            self.listener = NotifyListener(db, executor, channels, self._heard)
        self.elections = {p.name: self._election(p) for p in self.projectors}
        self._positions = dict.fromkeys(self.views, 0)
        self._leading = dict.fromkeys(self.views, False)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._wakes = {p.name: asyncio.Event() for p in self.projectors}
        self._progress = asyncio.Event()
        self._stopping = False
        self._projecting: list[asyncio.Task[None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._poller: asyncio.Task[None] | None = None
        # Pages are applied in threads of their own: a page waited for by
        # requests never queues behind other calls in the shared pool.
        self._pages = ThreadPoolExecutor(
            max(len(self.projectors), 1), thread_name_prefix="pm-order-projector"
        )

    @property
    def position(self) -> int:
        """The log position every followed view has reached."""
        return min(self._positions.values(), default=0)

    @property
    def caught_up_once(self) -> bool:
        """Whether this generation of the read models has reached the log's head
        (here or in another process): until then it is still being built from
        the log, and nothing is served from it."""
        return self._caught_up.is_set()

    async def wait_caught_up_once(self) -> None:
        await self._caught_up.wait()

    @property
    def leading(self) -> bool:
        """Whether this process runs the projector of every followed view."""
        return all(self._leading.values())

    def listener_alive(self, now: float | None = None) -> bool | None:
        """Whether the NOTIFY listener hears lately; None where there is no
        listener (SQLite)."""
        return None if self.listener is None else self.listener.alive(now)

    async def start(self) -> None:
        for view in self.views:
            self._positions[view] = await self._position_or(view, 0)
        if self.generation is not None:
            await self._learn_caught_up(self.generation)
            if isinstance(self.db, PostgresViews):
                # Known before this process serves: its first write or read
                # already keeps read-your-writes with the other releases.
                await self._look_for_others(self.db)
        if self.run_projectors:
            for projector in self.projectors:
                self._projecting.append(
                    self._spawn(self._follow(projector), f"project {projector.name}")
                )
        if self.listener is not None:
            self._spawn(self.listener.listen(), "listen")
            self._spawn(self.listener.heartbeat(), "listener heartbeat")
        if self.generation is not None:
            self._spawn(self._keep_registered(self.generation), "generation")
            if isinstance(self.db, PostgresViews):
                self._spawn(self._watch_others(self.db), "other releases")

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Let each projector finish the page it is applying (within `grace`
        seconds), then end every task; leadership is released."""
        self._stopping = True
        self.wake()
        if projecting := [t for t in self._projecting if not t.done()]:
            await asyncio.wait(projecting, timeout=grace)
        await stop_tasks([*self._tasks, *([self._poller] if self._poller else [])])
        self._tasks.clear()
        self._projecting.clear()
        for _, future in self._waiters:
            future.cancel()
        self._waiters.clear()
        self._pages.shutdown(wait=False)

    def wake(self) -> None:
        """New events were stored: project them now (call on the event loop)."""
        for wake in self._wakes.values():
            wake.set()

    async def caught_up(self, position: int, timeout: float) -> bool:
        """Wait until every view has applied the log up to `position`."""
        if self.position >= position:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((position, future))
        self.wake()
        if not self.leading and (self._poller is None or self._poller.done()):
            self._poller = asyncio.create_task(self._poll_while_waited())
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            return False
        finally:
            self._waiters = [(p, f) for p, f in self._waiters if f is not future]
        return True

    def _election(self, projector: Projector) -> Election:
        views = [v.name for v in projector.views]

        def lead(leading: bool) -> None:
            for view in views:
                self._leading[view] = leading

        # A generation's projector is named by the generation alone (its schema):
        # another release finds whether it runs without knowing its views.
        leadership = PROJECTOR if self.generation is not None else projector.name
        return Election(
            "projector",
            self.db.leadership(leadership),
            self.executor,
            doing=f"projecting {', '.join(views)}",
            on_change=lead,
            retry_after=_RETRY_AFTER_ERROR,
        )

    async def _follow(self, projector: Projector) -> None:
        election = self.elections[projector.name]
        await election.run(
            lambda: self._project(projector, election.recovered),
            lambda: self._pause(projector.name, self.standby_poll),
            stopping=lambda: self._stopping,
        )

    async def _project(
        self, projector: Projector, succeeded: Callable[[], None]
    ) -> None:
        """Apply pages while there are any, then wait to be woken; until stopped,
        and only between pages."""
        name = projector.name
        position: int | None = None  # None: read each view's own position
        while not self._stopping:
            # Cleared before reading, so a wake during the read is not lost.
            self._wakes[name].clear()
            # While the generation is being built, the log's head before each
            # page says when it has caught up (writes may never pause long
            # enough for a page to find nothing newer).
            building = self.generation is not None and not self._caught_up.is_set()
            head = await self._run(self._head) if building and self._head else None
            try:
                if head:
                    # Far behind (a generation built from the whole log): pages
                    # pipelined, three in hand at once, a bounded stretch at a
                    # time so that a stop is heard between stretches.
                    if position is None:
                        position = await in_pool(self._pages, projector.position)
                    stop = min(head, position + _BUILD_STRETCH)
                    moved = await in_pool(self._pages, projector.catch_up, stop)
                else:
                    moved = await in_pool(self._pages, projector.run_page, position)
            except ProjectionConflict:
                # Moved elsewhere (a standby that took over, a rebuild switched in):
                # carry on from where each view is now.
                log.info("%s moved elsewhere; reading its positions again", name)
                position = None
                continue
            succeeded()
            if building and (moved == position or moved >= (head or 0)):
                await self._built()
            if moved != position:
                position = moved
                for view in projector.views:
                    self._advance(view.name, position)
                continue
            await self._pause(name, self.idle_poll)

    async def _built(self) -> None:
        """This process's projector brought the generation to the log's head."""
        assert self.generation is not None
        await self._run(mark_caught_up, self.db, self.generation)
        log.info("generation %s of the read models caught up", self.generation)
        self._caught_up.set()

    async def _pause(self, name: str, seconds: float) -> None:
        wake = self._wakes[name]
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
        # cancellation that arrives as the wait ends, and stop() would hang.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await wake.wait()
        wake.clear()

    def _heard(self, channel: str, payload: str) -> None:
        if self.listener is None or channel != self.listener.db.progress_channel:
            self.wake()  # new events stored
        elif progress := progress_of(payload):
            position, views = progress
            for view in views:
                if view in self._positions:
                    self._advance(view, position)
        else:
            self._progress.set()  # the waiters' poll reads the positions

    async def _poll_while_waited(self) -> None:
        """Read the views' positions while requests wait on another process's
        projector: when it announces progress (NOTIFY), and on a timer only while
        the announcements may not come (no listener, or one that hears nothing)."""
        delay = _WAIT_POLL_FIRST
        # While the listener hears, the projector's announcements say how far the
        # views got (they are read as they come, not here): the first read waits
        # for a sign that they may not come (an announcement naming no position,
        # or none for a while).
        read = not self.listener_alive()
        while self._waiters:
            # Cleared before reading, so an announcement during the read is not lost.
            self._progress.clear()
            if read:
                for view, position in (await self._positions_now()).items():
                    self._advance(view, position)
                if not self._waiters:
                    return
            read = True
            listening = self.listener_alive()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_WAIT_POLL_HEARING if listening else delay):
                    await self._progress.wait()
            delay = min(delay * 2, _WAIT_POLL_MOST)

    async def _positions_now(self) -> dict[str, int]:
        """Every followed view's tracked position, in one statement (on failure,
        the positions known)."""
        try:
            return await self._run(tracked_positions, self.db, self.views)
        except Exception as error:  # noqa: BLE001 - a waiter retries; never crash the poll
            log.warning("cannot read the positions of the views: %s", error)
            return dict(self._positions)

    async def _position_or(self, view: str, fallback: int) -> int:
        try:
            return await self._run(tracked_position, self.db, view)
        except Exception as error:  # noqa: BLE001 - a waiter retries; never crash the poll
            log.warning("cannot read the position of %s: %s", view, error)
            return fallback

    def _advance(self, view: str, position: int) -> None:
        self._positions[view] = max(self._positions[view], position)
        reached = self.position
        for wanted, future in self._waiters:
            if wanted <= reached and not future.done():
                future.set_result(None)

    async def _keep_registered(self, name: str) -> None:
        """Learn when generation `name` has caught up (where another process
        projects it), then say now and then that a process serves from it."""
        while not self._caught_up.is_set():
            if await self._learn_caught_up(name):
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_GENERATION_POLL):
                    await self._caught_up.wait()
        while True:
            try:
                await self._run(mark_seen, self.db, name)
            except Exception as error:  # noqa: BLE001 - a heartbeat missed is no harm
                log.warning("cannot record generation %s as in use: %s", name, error)
            await asyncio.sleep(SEEN_EVERY_SECONDS)

    async def others_caught_up(self, position: int, timeout: float) -> bool:
        """Wait until every other release's serving read models show `position`
        (none: at once)."""
        others = list(self.others)
        if not others:
            return True
        assert isinstance(self.db, PostgresViews)
        db = self.db
        try:
            async with asyncio.timeout(timeout):
                for other in others:
                    delay = _WAIT_POLL_FIRST
                    while True:
                        reached = await self._run(position_of, db, other)
                        if reached is None or reached >= position:
                            break
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, _WAIT_POLL_MOST)
        except TimeoutError:
            return False
        return True

    async def caught_up_with_the_head(self, timeout: float) -> bool:
        """While other releases serve: wait until this process's read models
        show every write stored so far (one another release answered, say)."""
        if not self.others or self._head is None:
            return True
        head = await self._run(self._head) or 0
        return await self.caught_up(head, timeout)

    async def _watch_others(self, db: PostgresViews) -> None:
        """Keep `others` current: look every second."""
        while True:
            await asyncio.sleep(_OTHERS_EVERY_SECONDS)
            await self._look_for_others(db)

    async def _look_for_others(self, db: PostgresViews) -> None:
        """One look for the other generations that serve: their projector runs
        and they have caught up (within a page of the log's head, read first:
        a generation still being built is further behind). Once seen serving, a
        generation counts until its projector stops."""
        assert self.generation is not None
        try:
            head = (await self._run(self._head) if self._head else 0) or 0
            running = await self._run(running_others, db, self.generation)
            found = []
            for other in running:
                position = await self._run(position_of, db, other)
                if position is None:
                    continue
                if other.name in self._serving or position >= head - PAGE_SIZE:
                    self._serving.add(other.name)
                    found.append(other)
            self._serving &= {other.name for other in running}
        except Exception as error:  # noqa: BLE001 - look again; never crash the watch
            log.warning("cannot see other releases' read models: %s", error)
            return
        if [o.name for o in found] != [o.name for o in self.others]:
            log.info(
                "other releases' read models serving: %s",
                ", ".join(o.name for o in found) or "none",
            )
        self.others = found

    async def _learn_caught_up(self, name: str) -> bool:
        """Whether the registry says generation `name` has caught up (noted)."""
        try:
            found = await self._run(generation, self.db, name)
        except Exception as error:  # noqa: BLE001 - read again; never crash the watch
            log.warning("cannot read generation %s: %s", name, error)
            return False
        if found is not None and found.caught_up:
            self._caught_up.set()
        return self._caught_up.is_set()

    def _spawn(self, coroutine: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coroutine, name=name)
        self._tasks.append(task)
        return task

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        return await in_pool(self.executor, function, *args)
