"""Group commit: requests that arrive together are saved in one transaction.

Each caller queues its request and waits its turn; whoever's turn it is saves
every request queued meanwhile as one batch, in which each request is still
judged on its own. One batch at a time per process: conflicts then only come
from other processes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from domain.exceptions import Conflict, DomainError, StoreUnavailable

R = TypeVar("R")
W = TypeVar("W")

# The most requests saved in one transaction.
MAX_BATCH: Final = 64


@dataclass
class Pending(Generic[R, W]):
    """One caller's request, waiting for its batch to be saved."""

    request: R
    done: bool = False
    written: W | None = None
    error: DomainError | None = None

    def succeed(self, written: W) -> None:
        self.written, self.done = written, True

    def fail(self, error: DomainError) -> None:
        self.error, self.done = error, True

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
    ) -> None:
        self._save_batch = save_batch
        self._max_batch = max_batch
        self._turn = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[Pending[R, W]] = []

    def submit(self, request: R) -> W:
        """Save `request` with whatever arrives meanwhile; its outcome."""
        pending: Pending[R, W] = Pending(request)
        with self._queue_lock:
            self._queue.append(pending)
        # A request saved by another thread's batch is done when its turn comes.
        with self._turn:
            while not pending.done:
                with self._queue_lock:
                    batch = self._queue[: self._max_batch]
                    del self._queue[: self._max_batch]
                self._run(batch)
        return pending.outcome()

    def queued(self) -> int:
        """How many requests wait for a batch."""
        with self._queue_lock:
            return len(self._queue)

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold every batch back meanwhile: requests only queue."""
        with self._turn:
            yield

    def _run(self, batch: list[Pending[R, W]]) -> None:
        try:
            self._save_batch(batch)
        except DomainError as error:
            for pending in batch:
                pending.fail(error)
        except BaseException:
            for pending in batch:
                pending.fail(StoreUnavailable("the order could not be stored"))
            raise
        finally:
            for pending in batch:
                if not pending.done:  # pragma: no cover - every path decides above
                    pending.fail(Conflict("the order could not be stored; try again"))
