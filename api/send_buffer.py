"""The bytes of large answers waiting for their clients to take them: counted,
and bounded by a budget for the whole process (PM_ORDER_SEND_BUFFER_MB).

An answer of LARGE_ANSWER bytes or more is counted from when it is handed to
its connection until the connection has taken it (all but the transport's low
water mark, when aiohttp's drain returns) or is closed. One that would take the
count past the budget waits up to ROOM_WAIT_SECONDS for answers before it to
be taken, then is refused (the caller answers 503 with Retry-After). Smaller
answers are never counted nor refused: each connection holds at most the
transport's high water mark of them, LARGE_ANSWER, before its writes wait.

A connection that takes nothing of its answer for the send timeout is closed
by the server (api/server.py); that frees its answer here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from api.metrics import PREFIX

# The event loop's transport (uvloop's and asyncio's) asks its protocol to wait
# once more than 64 KiB are waiting to be sent: a smaller answer never waits.
LARGE_ANSWER: Final = 64 * 1024
# How long an answer past the budget waits for room before it is refused: long
# enough for answers being taken at the speed of a network to make room.
ROOM_WAIT_SECONDS: Final = 1.0


class SendBuffer:
    """The budget of bytes held for large answers being sent, shared by the
    connections of one server."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.held = 0
        self.refused = 0
        # Connections closed for taking nothing of their answer in time.
        self.too_slow = 0
        self._freed = asyncio.Event()

    async def admit(self, size: int) -> bool:
        """Count an answer of `size` bytes about to be sent; False (nothing
        counted) when there was no room for it within ROOM_WAIT_SECONDS."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ROOM_WAIT_SECONDS
        while not self._fits(size):
            try:
                async with asyncio.timeout_at(deadline):
                    await self._freed.wait()
            except TimeoutError:
                self.refused += 1
                return False
        self.held += size
        return True

    def release(self, size: int) -> None:
        """An answer counted by `admit` is taken, or its connection closed."""
        self.held -= size
        # Wake whoever waits for room, each to look again; later waits wait for
        # the next release.
        freed, self._freed = self._freed, asyncio.Event()
        freed.set()

    def _fits(self, size: int) -> bool:
        # An answer larger than the whole budget is sent when nothing else is.
        return self.held == 0 or self.held + size <= self.budget


class SendBufferCollector(Collector):
    """The send buffer's figures, read at each scrape."""

    def __init__(self, buffer: SendBuffer) -> None:
        self.buffer = buffer

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            PREFIX + "http_send_buffer_bytes",
            "Bytes of large answers (64 KiB or more) waiting for their clients "
            "to take them.",
            value=self.buffer.held,
        )
        yield GaugeMetricFamily(
            PREFIX + "http_send_buffer_budget_bytes",
            "The most bytes of large answers held for clients "
            "(PM_ORDER_SEND_BUFFER_MB).",
            value=self.buffer.budget,
        )
        yield CounterMetricFamily(
            PREFIX + "http_send_buffer_refusals",
            "Large answers refused (503) because the send buffer was full.",
            value=self.buffer.refused,
        )
        yield CounterMetricFamily(
            PREFIX + "http_slow_clients_closed",
            "Connections closed for taking nothing of their answer within "
            "PM_ORDER_SEND_TIMEOUT.",
            value=self.buffer.too_slow,
        )
