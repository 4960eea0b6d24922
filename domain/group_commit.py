"""Group commit: requests that arrive together are saved in one transaction.

Each caller queues its request; one batch at a time per process saves every
request queued meanwhile, each still judged on its own. A synchronous caller
(`submit`) waits its turn and then saves the batch itself; an asynchronous one
(`submit_later`) gets a future, and a committer thread of this GroupCommit
saves the batches: no thread waits per request, so a batch can hold as many
requests as there are callers. One batch at a time: conflicts then only come
from other processes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from domain.exceptions import Conflict, DomainError, StoreUnavailable

log = logging.getLogger(__name__)

R = TypeVar("R")
W = TypeVar("W")

# The most requests saved in one transaction.
MAX_BATCH: Final = 64
# How long the committer thread waits for more requests before it ends.
COMMITTER_IDLE_SECONDS: Final = 1.0


@dataclass
class Pending(Generic[R, W]):
    """One caller's request, waiting for its batch to be saved."""

    request: R
    done: bool = False
    written: W | None = None
    error: DomainError | None = None
    future: Future[W] | None = field(default=None, repr=False)

    def succeed(self, written: W) -> None:
        self.written, self.done = written, True
        if self.future is not None:
            self.future.set_result(written)

    def fail(self, error: DomainError) -> None:
        self.error, self.done = error, True
        if self.future is not None:
            self.future.set_exception(error)

    def outcome(self) -> W:
        if self.error is not None:
            raise self.error
        assert self.written is not None
        return self.written


class GroupCommit(Generic[R, W]):
    """Hands the requests of concurrent callers to `save_batch`, a batch at a time.

    `save_batch` decides every request of its batch (`succeed` or `fail`); a
    domain error it raises fails the whole batch.
    """

    def __init__(
        self,
        save_batch: Callable[[list[Pending[R, W]]], None],
        *,
        max_batch: int = MAX_BATCH,
        idle: float = COMMITTER_IDLE_SECONDS,
    ) -> None:
        self._save_batch = save_batch
        self._max_batch = max_batch
        self._idle = idle
        self._turn = threading.Lock()
        self._queue_lock = threading.Lock()
        self._arrived = threading.Condition(self._queue_lock)
        self._queue: list[Pending[R, W]] = []
        self._committing = False  # a committer thread runs (or is starting)

    def submit(self, request: R) -> W:
        """Save `request` with whatever arrives meanwhile; its outcome."""
        pending: Pending[R, W] = Pending(request)
        with self._queue_lock:
            self._queue.append(pending)
        # A request saved by another thread's batch is done when its turn comes.
        with self._turn:
            while not pending.done:
                self._run(self._take())
        return pending.outcome()

    def submit_later(self, request: R) -> Future[W]:
        """Queue `request` for the committer thread; the future of its outcome (a
        DomainError it may raise is the request's refusal)."""
        pending: Pending[R, W] = Pending(request, future=Future())
        with self._queue_lock:
            self._queue.append(pending)
            self._arrived.notify()
            start, self._committing = not self._committing, True
        if start:
            threading.Thread(
                target=self._commit, name="pm-order-group-commit", daemon=True
            ).start()
        assert pending.future is not None
        return pending.future

    def queued(self) -> int:
        """How many requests wait for a batch."""
        with self._queue_lock:
            return len(self._queue)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold every batch back meanwhile: requests only queue."""
        with self._turn:
            yield

    def _take(self) -> list[Pending[R, W]]:
        with self._queue_lock:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
        return batch

    def _commit(self) -> None:
        """The committer thread: batches while requests come, then it ends."""
        while True:
            with self._queue_lock:
                if not self._queue:
                    self._arrived.wait(self._idle)
                if not self._queue:
                    self._committing = False
                    return
            with self._turn:
                batch = self._take()
                if not batch:
                    continue  # a synchronous caller took them meanwhile
                try:
                    self._run(batch)
                except Exception:  # each request of the batch was failed already
                    log.exception("saving a batch of %d requests failed", len(batch))

    def _run(self, batch: list[Pending[R, W]]) -> None:
        try:
            self._save_batch(batch)
        except DomainError as error:
            for pending in batch:
                if not pending.done:
                    pending.fail(error)
        except BaseException:
            for pending in batch:
                if not pending.done:
                    pending.fail(StoreUnavailable("the order could not be stored"))
            raise
        finally:
            for pending in batch:
                if not pending.done:  # pragma: no cover - every path decides above
                    pending.fail(Conflict("the order could not be stored; try again"))
