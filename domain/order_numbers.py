"""Order numbers: integers handed out in sequence, never reused.

A number is taken when an order with it is stored; numbers are taken in
sequence (n+1 only once n is stored), so "taken" is monotonic in n and the next
free number is found by galloping forward from the last one seen, then
bisecting. Once known, the next number is taken to be the one after the last
this process stored, without asking the store: if another process took it
meanwhile, the save conflicts on the order's aggregate id, and the retry
(after `forget`) searches the store again, as do the next ones for a while
(another process is writing too). So a number is only ever used once
its predecessor is stored: none is skipped, none is used twice. A number is
recorded in the order's `Requested` event, so a replay gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

# After a conflict another process is likely writing too: the next searches ask
# the store (one read while the last number seen is still free) rather than
# guess, so that two busy processes do not conflict on every batch.
SEARCHES_AFTER_CONFLICT: Final = 100


class OrderNumbers:
    """The lowest order number not yet taken, asked of the store as `taken(n)`
    only when this process does not know it."""

    def __init__(self, taken: Callable[[int], bool]) -> None:
        self._taken = taken
        self._last = 0
        self._known = False  # whether _last is the last number stored, for all we know
        self._searches = 0  # how many more next() ask the store all the same

    def next(self) -> int:
        if self._known and not self._searches:
            return self._last + 1
        self._searches = max(self._searches - 1, 0)
        low, step = self._last, 1
        while self._taken(low + step):
            low += step
            step *= 2
        high = low + step
        while high - low > 1:
            middle = (low + high) // 2
            if self._taken(middle):
                low = middle
            else:
                high = middle
        self._last, self._known = low, True
        return high

    def used_up_to(self, number: int) -> None:
        """Numbers up to `number` are stored: the next is `number + 1`, as far
        as this process knows."""
        self._last = max(self._last, number)
        self._known = True

    def forget(self) -> None:
        """Another writer may have taken numbers: the next `next` asks the store,
        and so do the SEARCHES_AFTER_CONFLICT after it."""
        self._known = False
        self._searches = SEARCHES_AFTER_CONFLICT
