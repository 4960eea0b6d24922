"""A load balancer as an operator sets one up in front of pm-order's API
processes, in the test's own event loop (client-side routing): a request goes to
a process whose `/readyz` answered 200 at its latest check, never to one taken
out; a process is taken out some seconds before it is stopped, and stopped only
once the requests it was given have their answers."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Final

import aiohttp

# How often each process's /readyz is asked (a real balancer: every 2-5 s; the
# test's processes come and go within seconds).
CHECK_SECONDS: Final = 0.25
PROBE_TIMEOUT: Final = aiohttp.ClientTimeout(total=2)
# Taken out this long before it is stopped, as the operator does.
OUT_BEFORE_STOP_SECONDS: Final = 2.0
# Requests still being answered after that: waited for, within this bound.
DRAIN_SECONDS: Final = 30.0


class NoBackend(Exception):
    """No process is ready to take a request."""


@dataclass(eq=False)
class Backend:
    """One API process behind the balancer."""

    name: str
    base_url: str
    ready: bool = False
    out: bool = False
    in_flight: int = 0


class Balancer:
    """Picks a ready process for each request; checks /readyz in the background."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.backends: list[Backend] = []
        self._checks: asyncio.Task[None] | None = None
        self._checked = asyncio.Event()

    async def __aenter__(self) -> Balancer:
        self._checks = asyncio.create_task(self._check_forever())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._checks is not None:
            self._checks.cancel()
            with suppress(asyncio.CancelledError):
                await self._checks

    def add(self, name: str, base_url: str) -> Backend:
        """A process the balancer checks, and sends requests to once ready."""
        backend = Backend(name, base_url)
        self.backends.append(backend)
        return backend

    async def until_ready(self, backend: Backend, seconds: float = 60.0) -> None:
        """Wait until a check found `backend` ready (it takes traffic from then)."""
        async with asyncio.timeout(seconds):
            while not backend.ready:
                self._checked.clear()
                await self._checked.wait()

    async def take_out(self, backend: Backend) -> None:
        """No new request to `backend`; return once it may be stopped: after
        OUT_BEFORE_STOP_SECONDS, and when its requests have their answers."""
        backend.out = True
        await asyncio.sleep(OUT_BEFORE_STOP_SECONDS)
        async with asyncio.timeout(DRAIN_SECONDS):
            while backend.in_flight:
                await asyncio.sleep(0.05)
        self.backends.remove(backend)

    def pick(self, rng: random.Random) -> Backend:
        ready = [b for b in self.backends if b.ready and not b.out]
        if not ready:
            raise NoBackend("no API process is ready")
        return rng.choice(ready)

    @asynccontextmanager
    async def sending(self, rng: random.Random) -> AsyncIterator[Backend]:
        """A ready process for one request, counted as in flight on it meanwhile."""
        backend = self.pick(rng)
        backend.in_flight += 1
        try:
            yield backend
        finally:
            backend.in_flight -= 1

    async def _check_forever(self) -> None:
        while True:
            await asyncio.gather(
                *(self._check(b) for b in list(self.backends) if not b.out)
            )
            self._checked.set()
            await asyncio.sleep(CHECK_SECONDS)

    async def _check(self, backend: Backend) -> None:
        try:
            async with self.session.get(
                f"{backend.base_url}/readyz", timeout=PROBE_TIMEOUT
            ) as response:
                backend.ready = response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            backend.ready = False
