"""Order numbers: integers, unique, never reused, increasing in each process.

A number is recorded in its order's `Requested` event (so a replay gives the same
numbers) and the order's aggregate id is derived from it, so two orders can never
be stored with one number: the second save conflicts.

Two ways of handing them out, by store:

- `CountedOrderNumbers` (PostgreSQL): the store counts (a sequence). Any number of
  processes take numbers at once and never collide; a number taken by a batch
  that then fails is skipped (gaps, as an auto-increment has).
- `SearchedOrderNumbers` (SQLite, one process): the lowest number not yet taken,
  found by galloping forward from the last one seen, then bisecting; once known,
  the next is the one after the last this process stored. No gaps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Final, Protocol, runtime_checkable

log = logging.getLogger(__name__)

# After a conflict another process is likely writing too: the next searches ask
# the store (one read while the last number seen is still free) rather than
# guess, so that two busy processes do not conflict on every batch.
SEARCHES_AFTER_CONFLICT: Final = 100


class OrderNumbers(Protocol):
    """Where a batch of new orders gets its numbers."""

    def take(self, count: int) -> list[int]:
        """`count` numbers for new orders, increasing."""

    def stored(self, numbers: Sequence[int]) -> None:
        """Orders with `numbers` were stored."""

    def conflicted(self, numbers: Sequence[int]) -> None:
        """A save of orders with `numbers` conflicted (with what, unknown)."""


@runtime_checkable
class NumberCounter(Protocol):
    """The store's counter of order numbers (a PostgreSQL sequence)."""

    def take_order_numbers(self, count: int) -> list[int]: ...

    def advance_order_numbers(self, last: int) -> None: ...


def last_taken(taken: Callable[[int], bool], after: int = 0) -> int:
    """The last number of the unbroken run of numbers taken from `after + 1` on
    (`after` itself when none is): gallop forward, then bisect."""
    low, step = after, 1
    while taken(low + step):
        low += step
        step *= 2
    high = low + step
    while high - low > 1:
        middle = (low + high) // 2
        if taken(middle):
            low = middle
        else:
            high = middle
    return low


class CountedOrderNumbers:
    """Numbers from the store's counter: unique across processes without asking
    which are taken."""

    def __init__(self, counter: NumberCounter, taken: Callable[[int], bool]) -> None:
        self._counter = counter
        self._taken = taken

    def take(self, count: int) -> list[int]:
        return self._counter.take_order_numbers(count) if count else []

    def stored(self, numbers: Sequence[int]) -> None:
        pass

    def conflicted(self, numbers: Sequence[int]) -> None:
        """A number the counter gave was taken already: the counter is behind the
        store (orders written without it, such as by an older version during a
        rolling upgrade). Move it past them; otherwise the conflict was on a
        server, and the counter is fine."""
        clashing = [n for n in numbers if self._taken(n)]
        if clashing:
            last = last_taken(self._taken, max(clashing))
            log.warning(
                "order numbers up to %d were taken without the counter: it now "
                "continues after them",
                last,
            )
            self._counter.advance_order_numbers(last)


class SearchedOrderNumbers:
    """The lowest number not yet taken, asked of the store as `taken(n)` only when
    this process does not know it (one writing process)."""

    def __init__(self, taken: Callable[[int], bool]) -> None:
        self._taken = taken
        self._last = 0
        self._known = False  # whether _last is the last number stored, for all we know
        self._searches = 0  # how many more takes ask the store all the same

    def take(self, count: int) -> list[int]:
        if not count:
            return []
        if not self._known or self._searches:
            self._searches = max(self._searches - 1, 0)
            self._last, self._known = last_taken(self._taken, self._last), True
        return list(range(self._last + 1, self._last + 1 + count))

    def stored(self, numbers: Sequence[int]) -> None:
        """Numbers up to the last of `numbers` are stored: the next follows it, as
        far as this process knows."""
        if numbers:
            self._last = max(self._last, max(numbers))
            self._known = True

    def conflicted(self, numbers: Sequence[int]) -> None:
        """Another writer may have taken numbers: the next `take` asks the store,
        and so do the SEARCHES_AFTER_CONFLICT after it."""
        self._known = False
        self._searches = SEARCHES_AFTER_CONFLICT
