"""The load of a rolling upgrade: one client lane per server, and a lister.

A lane orders its server from its owner to another project, lists the order at
once (on whichever process the balancer picks: read-your-writes across
processes and releases), has the destination accept or refuse it, and lists it
again in the destination's list of that state; a quarter of the orders mail
someone (a message per event). A lister reads every project's
list meanwhile. Every answer that is not a 200, and every connection that
fails, is a failed request; each is written down with the phase it fell in.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp

from tests.integration.balancer import Balancer, NoBackend

PROJECTS: Final = ("proj-a", "proj-b", "proj-c")
TOKENS: Final = {"proj-a": "tok-alice", "proj-b": "tok-bob", "proj-c": "tok-carol"}
HEADERS: Final = {"Sp-Agent": "scloudm"}
# A write's answer may wait up to 10 s for the views (read-your-writes).
REQUEST_TIMEOUT: Final = aiohttp.ClientTimeout(total=20)
# A lane's order is among its project's newest this many (few lanes per project).
RECENT: Final = 50
# The share of orders that mail someone (each of their events: one message).
MAIL_SHARE: Final = 0.25


class Failed(Exception):
    """A request failed: the lane stops writing (what its server holds is
    unknown)."""


@dataclass
class Ordered:
    """An acknowledged order, and the state its latest acknowledged write gave it."""

    source: str
    dest: str
    snid: str
    mailto: list[str]
    state: str = "unfinished"


@dataclass
class Lanes:
    """The lanes and the lister, over `balancer`; what they were told."""

    balancer: Balancer
    session: aiohttp.ClientSession
    owners: dict[str, str]
    seed: int = 23
    phase: str = "start"
    orders: dict[int, Ordered] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    stale_reads: list[str] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    cycles: int = 0
    _running: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: bool = False
    _busy: int = 0
    _cycled: asyncio.Condition = field(default_factory=asyncio.Condition)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _failed_lanes: set[str] = field(default_factory=set)

    def start(self) -> None:
        self._running.set()
        self._tasks = [
            asyncio.create_task(self._lane(snid, random.Random(f"{self.seed}{snid}")))
            for snid in self.owners
        ]
        self._tasks.append(asyncio.create_task(self._lister(random.Random(self.seed))))

    async def stop(self) -> None:
        self._stopping = True
        self._running.set()
        await asyncio.gather(*self._tasks)

    async def pause(self) -> None:
        """No new request; return once every request sent has its answer."""
        self._running.clear()
        async with asyncio.timeout(60):
            while self._busy:
                await asyncio.sleep(0.05)

    def resume(self) -> None:
        self._running.set()

    async def progress(self, cycles: int, seconds: float = 60.0) -> None:
        """Wait until the lanes have done `cycles` more cycles (order, list,
        decide, list), so that every phase is under load."""
        target = self.cycles + cycles
        async with asyncio.timeout(seconds), self._cycled:
            await self._cycled.wait_for(
                lambda: self.cycles >= target or self._all_lanes_failed()
            )

    def _all_lanes_failed(self) -> bool:
        return len(self._failed_lanes) == len(self.owners)

    # -- the clients ------------------------------------------------------------

    async def _lane(self, snid: str, rng: random.Random) -> None:
        try:
            while await self._go():
                self._busy += 1
                try:
                    await self._cycle(snid, rng)
                finally:
                    self._busy -= 1
                async with self._cycled:
                    self.cycles += 1
                    self._cycled.notify_all()
        except Failed:
            async with self._cycled:
                self._failed_lanes.add(snid)
                self._cycled.notify_all()
        # What its server holds is unknown now: the lane reads on, so that
        # every later step still counts what fails.
        await self._lister(rng)

    async def _cycle(self, snid: str, rng: random.Random) -> None:
        source = self.owners[snid]
        dest = rng.choice([p for p in PROJECTS if p != source])
        mailto = [f"{snid.lower()}@example.com"] if rng.random() < MAIL_SHARE else []
        body = await self._send(
            rng,
            "POST",
            source,
            json={"snids": snid, "dest_project": dest, "mailto": ",".join(mailto)},
        )
        number = int(body["order_id"])
        order = self.orders[number] = Ordered(source, dest, snid, mailto)
        await self._listed(rng, source, 3, number, "unfinished", "POST", body)
        accept = rng.random() < 0.5
        body = await self._send(
            rng, "PUT", dest, json={"order_ids": [number], "accept": int(accept)}
        )
        order.state = "finished" if accept else "refused"
        await self._listed(
            rng, dest, 1 if accept else 2, number, order.state, "PUT", body
        )
        if accept:
            self.owners[snid] = dest

    async def _listed(
        self,
        rng: random.Random,
        project: str,
        kind: int,
        number: int,
        state: str,
        method: str,
        answer: dict[str, Any],
    ) -> None:
        """Read-your-writes: the order shows, in `state`, on the process picked
        (`answer`: the write's)."""
        body = await self._send(
            rng, "GET", project, params={"type": str(kind), "limit": str(RECENT)}
        )
        shown = {o["id"]: o["state"] for o in body["orders"]}
        if shown.get(number) != state:
            self.stale_reads.append(
                f"[{self.phase}] order {number} after its {method} to "
                f"{answer['_by']}: {project}'s list {kind} on {body['_by']} "
                f"shows {shown.get(number)!r}, not {state!r}"
            )

    async def _lister(self, rng: random.Random) -> None:
        while await self._go():
            self._busy += 1
            try:
                for project in PROJECTS:
                    await self._send(
                        rng, "GET", project, params={"type": "4", "limit": "20"}
                    )
            except Failed:
                pass  # written down; the lister goes on
            finally:
                self._busy -= 1
            await asyncio.sleep(0.05)  # a lister's pace, not a synchronisation

    async def _go(self) -> bool:
        await self._running.wait()
        return not self._stopping

    async def _send(
        self,
        rng: random.Random,
        method: str,
        project: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One request through the balancer; Failed (written down) unless 200."""
        self.requests[self.phase] += 1
        try:
            async with (
                self.balancer.sending(rng) as backend,
                self.session.request(
                    method,
                    f"{backend.base_url}/mana_api/pm_order/{project}",
                    json=json,
                    params=params,
                    headers={**HEADERS, "X-Auth-Token": TOKENS[project]},
                    timeout=REQUEST_TIMEOUT,
                ) as response,
            ):
                status, text = response.status, await response.text()
                if status == 200:
                    body = dict(await response.json())
                    body["_by"] = backend.name  # which process answered
                    return body
                what = f"{status} from {backend.name}: {text[:300]}"
        except (NoBackend, aiohttp.ClientError, TimeoutError) as error:
            what = f"{type(error).__name__}: {error}"
        self.failures.append(f"[{self.phase}] {method} {project}: {what}")
        raise Failed(what)
