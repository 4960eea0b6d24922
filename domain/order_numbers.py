"""Order numbers: integers handed out in sequence, never reused.

A number is taken when an order with it is stored; numbers are taken in
sequence (n+1 only once n is stored), so "taken" is monotonic in n and the next
free number is found by galloping forward from the last one seen, then
bisecting. A number is recorded in the order's `Requested` event, so a replay
gives the same numbers; two processes that pick the same number conflict on
the order's aggregate id, and the loser retries.
"""

from __future__ import annotations

from collections.abc import Callable


class OrderNumbers:
    """The lowest order number not yet taken, asked of the store as `taken(n)`."""

    def __init__(self, taken: Callable[[int], bool]) -> None:
        self._taken = taken
        self._last = 0

    def next(self) -> int:
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
        self._last = low
        return high

    def used_up_to(self, number: int) -> None:
        """Numbers up to `number` are stored (saves the next search some steps)."""
        self._last = max(self._last, number)
