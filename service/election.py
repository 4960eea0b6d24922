"""Leading a piece of background work among the processes sharing a store.

One loop for every role (the projector, the warning scheduler, the mailer): ask
for leadership, stand by while another process leads, run the work while
leading, and release the leadership after a failure, so that a standby may take
over while this process waits to try again.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Final

from projections.database import Leadership
from projections.executor import in_pool

log = logging.getLogger(__name__)

RETRY_AFTER_FAILURE_SECONDS: Final = 1.0


async def ask_to_lead(leadership: Leadership, executor: Executor) -> bool:
    """Whether this process leads, asked in the executor."""
    future = executor.submit(contextvars.copy_context().run, leadership.try_acquire)
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        # Stopped while asking: the call may still be running in its thread, and
        # would leave a session (and the lock) open with nobody to close it.
        future.add_done_callback(lambda _: leadership.release())
        raise


class Election:
    """This process's part in the election for one role."""

    def __init__(
        self,
        role: str,
        leadership: Leadership,
        executor: Executor,
        *,
        doing: str | None = None,
        on_change: Callable[[bool], None] | None = None,
        retry_after: float = RETRY_AFTER_FAILURE_SECONDS,
    ) -> None:
        self.role = role
        # For the log: "projecting order_lists here", "running the mailer here".
        self.doing = doing or f"running the {role.replace('_', ' ')}"
        self.leadership = leadership
        self.executor = executor
        self.on_change = on_change
        self.retry_after = retry_after
        self.leading = False
        self.failures = 0

    def recovered(self) -> None:
        """The work succeeded again: the next failure is news worth a traceback."""
        self.failures = 0

    async def run(
        self,
        work: Callable[[], Awaitable[object]],
        standby: Callable[[], Awaitable[object]],
        *,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        """Until cancelled or `stopping()`: while leading, `await work()` (again
        each time it returns); while another process leads, `await standby()`."""
        try:
            while not stopping():
                try:
                    # Asked before each round of work, not once: a leader whose
                    # database session ended has lost the lock to a standby.
                    leading = await ask_to_lead(self.leadership, self.executor)
                    if leading != self.leading:
                        log.log(
                            logging.INFO if leading else logging.WARNING,
                            "%s%s here",
                            "" if leading else "no longer ",
                            self.doing,
                        )
                        self._lead(leading)
                    if not leading:
                        await standby()
                        continue
                    await work()
                    self.recovered()
                except asyncio.CancelledError:
                    raise
                except Exception as error:
                    self.failures += 1
                    if self.failures == 1:
                        log.exception("%s failed; retrying", self.doing)
                    else:
                        log.debug("%s failed again: %s", self.doing, error)
                    self._lead(False)
                    await in_pool(self.executor, self.leadership.release)
                    await asyncio.sleep(self.retry_after)
        finally:
            self._lead(False)
            with contextlib.suppress(Exception):
                self.leadership.release()

    def _lead(self, leading: bool) -> None:
        self.leading = leading
        if self.on_change is not None:
            self.on_change(leading)
