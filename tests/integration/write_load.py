"""A steady write load for fault tests: clients that request orders, look in the
inboxes and decide orders over HTTP, and write down what each was told (a
`Ledger`).

Clients choose servers from what they believe about the store (`Belief`), which
the test resets from the store's facts between rounds; a belief gone stale only
makes a request fail with 400 or 409, which is recorded as such.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp

from tests.integration.invariants import Attempt, Facts, Ledger

TOKENS: Final = {"proj-a": "tok-alice", "proj-b": "tok-bob"}
# An answer may wait up to 10 s for the views (read-your-writes) before it comes.
REQUEST_TIMEOUT: Final = aiohttp.ClientTimeout(total=20)


def inventory(per_project: int) -> list[tuple[str, str]]:
    """`per_project` servers for each of the load's projects."""
    return [
        (f"SN-{project[-1].upper()}-{n:03d}", project)
        for project in TOKENS
        for n in range(per_project)
    ]


@dataclass
class Belief:
    """What the clients think the store holds: who owns each server, and which
    servers are held by unfinished orders (the orders are found in the inboxes)."""

    owners: dict[str, str]
    held: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, facts: Facts) -> Belief:
        return cls(
            owners={s.snid: s.owner for s in facts.servers.values()},
            held={snid for o in facts.unfinished() for snid in o.snids},
        )


class WriteLoad:
    """`clients` loops of POST and PUT against whichever URL `base_urls()` gives."""

    def __init__(
        self,
        base_urls: Callable[[], Sequence[str]],
        ledger: Ledger,
        belief: Belief,
        *,
        clients: int,
        seed: int,
    ) -> None:
        self.base_urls = base_urls
        self.ledger = ledger
        self.belief = belief
        self.clients = clients
        self.seed = seed
        self.in_flight = 0
        # POSTs in flight, by the base URL they went to.
        self.posting: Counter[str] = Counter()
        self._posted = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    async def posting_to(self, url: str, timeout: float) -> None:
        """Return while a POST to `url` is being answered (sent a moment ago and
        not answered yet)."""
        async with asyncio.timeout(timeout):
            while True:
                self._posted.clear()
                if self.posting[url] > 0:
                    # A moment for the request to be on its way, not still
                    # connecting: a kill then cuts off a write being answered.
                    await asyncio.sleep(0.002)
                    if self.posting[url] > 0:
                        return
                    continue
                await self._posted.wait()

    @property
    def acknowledged(self) -> int:
        """Writes answered 200 so far."""
        return len(self.ledger.acknowledged) + len(self.ledger.decisions)

    async def start(self) -> None:
        self._stop.clear()
        self._session = aiohttp.ClientSession(timeout=REQUEST_TIMEOUT)
        self._tasks = [
            asyncio.create_task(self._client(random.Random(self.seed * 1000 + n)))
            for n in range(self.clients)
        ]

    async def stop(self) -> None:
        """Stop sending; the requests in flight get their answers first."""
        self._stop.set()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            if self._session is not None:
                await self._session.close()

    async def _client(self, rng: random.Random) -> None:
        while not self._stop.is_set():
            url = rng.choice(list(self.base_urls()))
            busy = (
                await self._decide(rng, url)
                if rng.random() < 0.45
                else await self._request(rng, url)
            )
            if not busy:  # nothing to do, or nobody there: pause a little
                await asyncio.sleep(0.05)

    async def _request(self, rng: random.Random, url: str) -> bool:
        source = rng.choice(list(TOKENS))
        owned = [s for s, p in self.belief.owners.items() if p == source]
        # Now and then a server that may be held: exercises the 409 path.
        candidates = (
            owned
            if rng.random() < 0.1
            else [s for s in owned if s not in self.belief.held]
        )
        if not candidates:
            return False
        snids = tuple(rng.sample(candidates, min(len(candidates), rng.randint(1, 3))))
        dest = next(p for p in TOKENS if p != source)
        attempt = Attempt(source, dest, snids)
        fresh = [s for s in snids if s not in self.belief.held]
        self.belief.held.update(fresh)
        self.posting[url] += 1
        self._posted.set()
        try:
            status, body = await self._send(
                "POST",
                f"{url}/mana_api/pm_order/{source}",
                TOKENS[source],
                {"snids": ",".join(snids), "dest_project": dest},
            )
        except aiohttp.ClientConnectorError:
            # Never connected, so never sent: it cannot have been stored.
            self.ledger.statuses["POST ClientConnectorError"] += 1
            self.ledger.refused += 1
            self.belief.held.difference_update(fresh)
            return False
        except (aiohttp.ClientError, TimeoutError) as error:
            self.ledger.cut_off(attempt, error)
            return True  # it may hold its servers: the next round's belief will say
        finally:
            self.posting[url] -= 1
        self.ledger.answered(attempt, status, body)
        if 400 <= status < 500:
            self.belief.held.difference_update(fresh)
        return True

    async def _decide(self, rng: random.Random, url: str) -> bool:
        """Look in a project's inbox, as its owner would, and decide one order."""
        dest = rng.choice(list(TOKENS))
        try:
            status, body = await self._send(
                "GET", f"{url}/mana_api/pm_order/{dest}?type=0&limit=20", TOKENS[dest]
            )
        except (aiohttp.ClientError, TimeoutError) as error:
            self.ledger.statuses[f"GET {type(error).__name__}"] += 1
            return False
        self.ledger.statuses[f"GET {status}"] += 1
        if status != 200 or not body["orders"]:
            return False
        order = rng.choice(body["orders"])
        number, snids = order["id"], order["snids"].split(",")
        accept = rng.random() < 0.5
        try:
            status, _ = await self._send(
                "PUT",
                f"{url}/mana_api/pm_order/{dest}",
                TOKENS[dest],
                {"order_ids": [number], "accept": int(accept)},
            )
        except (aiohttp.ClientError, TimeoutError) as error:
            self.ledger.statuses[f"PUT {type(error).__name__}"] += 1
            return True  # decided or not: the inbox will say
        self.ledger.statuses[f"PUT {status}"] += 1
        if status == 200:
            self.ledger.decisions.append(((number,), accept))
            self.belief.held.difference_update(snids)
            if accept:
                for snid in snids:
                    self.belief.owners[snid] = dest
        return True

    async def _send(
        self, method: str, url: str, token: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        assert self._session is not None
        self.in_flight += 1
        try:
            async with self._session.request(
                method,
                url,
                json=body,
                headers={"X-Auth-Token": token, "Sp-Agent": "scloudm"},
            ) as response:
                return response.status, dict(await response.json())
        finally:
            self.in_flight -= 1
