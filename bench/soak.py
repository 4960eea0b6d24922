"""Soak: mixed traffic against one real `pm-order serve` for a long while, to show
that memory and latency stay flat.

Lists (40 %), transfer requests (30 %), acceptances and refusals (30 %, of
orders found in the inbox) at a steady rate from a few clients, on loopback.
Every minute: the server's resident memory (VmRSS from /proc, the highest seen
in the minute), requests answered, errors, p50 and p99 latency. The run fails
(exit 1) when the last minute's memory or p99 exceeds the first minute's by
more than 20 %.

    .venv/bin/python bench/soak.py                # 10 minutes on SQLite
    SOAK_MINUTES=3 .venv/bin/python bench/soak.py --postgres

SOAK_MINUTES (default 10, at least 2), SOAK_RATE (requests per second, default
40), SOAK_POSTGRES=1 (same as --postgres; the server is
PM_ORDER_BENCH_POSTGRES_URL, a throw-away schema of it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
from harness import (
    Process,
    fresh_schema,
    machine_line,
    percentile,
    pm_order_process,
    running,
    stop_on_sigterm,
    tokens_file,
)

from domain.service import OrderService
from service.store import open_store

PROJECTS: Final = ("proj-a", "proj-b")
SERVERS_PER_PROJECT: Final = 300
CLIENTS: Final = 4
# A list is a page, as a careful client asks: its cost does not grow with the
# store, so a slower list means a slower server, not more data.
PAGE: Final = 50
GROWTH_LIMIT: Final = 0.20
# Answers that are part of mixed traffic: stale inbox reads give 404/409.
EXPECTED: Final = frozenset({200, 400, 404, 409})


@dataclass
class Minute:
    """What one minute of the run measured."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    rss_kib: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 99) * 1000


def rss_kib(pid: int) -> int:
    """The resident set size of process `pid`, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


class Traffic:
    """CLIENTS closed loops, paced to `rate` requests per second in all."""

    def __init__(
        self, base_url: str, tokens: dict[str, str], rate: float, seed: int = 1
    ) -> None:
        self.base_url = base_url
        self.tokens = tokens
        self.interval = CLIENTS / rate
        self.rng = random.Random(seed)
        self.free = {
            p: {f"SOAK-{p[-1].upper()}-{n:04d}" for n in range(SERVERS_PER_PROJECT)}
            for p in PROJECTS
        }
        self.minutes: list[Minute] = [Minute()]

    @property
    def minute(self) -> Minute:
        return self.minutes[-1]

    async def run(self, deadline: float) -> None:
        connector = aiohttp.TCPConnector(limit=CLIENTS)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as s:
            await asyncio.gather(*(self._client(s, deadline) for _ in range(CLIENTS)))

    async def _client(self, session: aiohttp.ClientSession, deadline: float) -> None:
        due = time.monotonic() + self.rng.uniform(0, self.interval)
        while due < deadline:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            due += self.interval
            draw = self.rng.random()
            tenant = self.rng.choice(PROJECTS)
            if draw < 0.4:
                await self._list(session, tenant)
            elif draw < 0.7:
                await self._request(session, tenant)
            else:
                await self._decide(session, tenant)

    async def _call(
        self,
        session: aiohttp.ClientSession,
        kind: str,
        method: str,
        tenant: str,
        **kwargs: Any,
    ) -> tuple[int, dict[str, Any]]:
        minute = self.minute  # the minute the request started in
        headers = {"X-Auth-Token": self.tokens[tenant], "Sp-Agent": "scloudm"}
        started = time.perf_counter()
        try:
            async with session.request(
                method,
                f"{self.base_url}/mana_api/pm_order/{tenant}",
                headers=headers,
                **kwargs,
            ) as response:
                body = await response.json()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            minute.errors += 1
            return 0, {}
        minute.latencies.append(time.perf_counter() - started)
        minute.kinds[kind] = minute.kinds.get(kind, 0) + 1
        if status not in EXPECTED:
            minute.errors += 1
        return status, body

    async def _list(self, session: aiohttp.ClientSession, tenant: str) -> None:
        params = {"type": str(self.rng.randint(0, 4)), "limit": str(PAGE)}
        await self._call(session, "list", "GET", tenant, params=params)

    async def _request(self, session: aiohttp.ClientSession, tenant: str) -> None:
        free = self.free[tenant]
        if not free:
            await self._list(session, tenant)
            return
        snids = self.rng.sample(sorted(free), min(len(free), self.rng.randint(1, 3)))
        free.difference_update(snids)
        dest = next(p for p in PROJECTS if p != tenant)
        status, _ = await self._call(
            session,
            "request",
            "POST",
            tenant,
            json={"snids": ",".join(snids), "dest_project": dest},
        )
        if status != 200:
            free.update(snids)

    async def _decide(self, session: aiohttp.ClientSession, tenant: str) -> None:
        status, body = await self._call(
            session, "list", "GET", tenant, params={"type": "0", "limit": str(PAGE)}
        )
        if status != 200 or not body["orders"]:
            return
        order = self.rng.choice(body["orders"])
        accept = self.rng.random() < 0.5
        status, _ = await self._call(
            session,
            "accept" if accept else "refuse",
            "PUT",
            tenant,
            json={"order_ids": [order["id"]], "accept": int(accept)},
        )
        if status == 200:
            owner = tenant if accept else order["resource_project"]
            self.free[owner].update(order["snids"].split(","))


async def soak(
    server: Process, tokens: dict[str, str], minutes: int, rate: float
) -> int:
    traffic = Traffic(server.base_url, tokens, rate)
    started = time.monotonic()
    deadline = started + minutes * 60
    load = asyncio.create_task(traffic.run(deadline))
    print_header()
    while not load.done():
        await asyncio.wait({load}, timeout=1.0)
        traffic.minute.rss_kib = max(traffic.minute.rss_kib, rss_kib(server.popen.pid))
        if (
            time.monotonic() - started >= 60 * len(traffic.minutes)
            and len(traffic.minutes) < minutes
        ):
            print_row(len(traffic.minutes), traffic.minute)
            traffic.minutes.append(Minute())
    await load
    print_row(len(traffic.minutes), traffic.minute)
    return verdict(traffic.minutes)


def print_header() -> None:
    print(
        f"{'minute':>6} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'RSS MiB':>8}  mix"
    )


def print_row(number: int, minute: Minute) -> None:
    mix = " ".join(f"{k}={n}" for k, n in sorted(minute.kinds.items()))
    print(
        f"{number:>6} {len(minute.latencies):>9} {minute.errors:>7} "
        f"{minute.p50_ms:>8.1f} {minute.p99_ms:>8.1f} {minute.rss_kib / 1024:>8.1f}"
        f"  {mix}",
        flush=True,
    )


def verdict(minutes: list[Minute]) -> int:
    """0 when the last minute's memory and p99 are within 20 % of the first's."""
    first, last = minutes[0], minutes[-1]
    failed = False
    for label, before, after, unit in (
        ("memory (RSS)", first.rss_kib / 1024, last.rss_kib / 1024, "MiB"),
        ("p99 latency", first.p99_ms, last.p99_ms, "ms"),
    ):
        growth = after / before - 1 if before else float("inf")
        ok = growth <= GROWTH_LIMIT
        failed = failed or not ok
        print(
            f"{label}: first minute {before:.1f} {unit}, last minute {after:.1f} "
            f"{unit} ({growth:+.1%}; limit +{GROWTH_LIMIT:.0%}): "
            + ("PASS" if ok else "FAIL")
        )
    errors = sum(m.errors for m in minutes)
    if errors:
        print(f"errors (no answer, or a status other than 200/400/404/409): {errors}")
        failed = True
    print("result: " + ("FAIL" if failed else "PASS"))
    return 1 if failed else 0


@contextlib.contextmanager
def database(postgres: bool) -> Iterator[str]:
    """A fresh store's URL: a throw-away schema, or a SQLite file in a temp dir."""
    if postgres:
        with fresh_schema() as schema:
            yield schema.url
        return
    with tempfile.TemporaryDirectory(prefix="pm-order-soak-") as folder:
        yield f"sqlite:///{folder}/soak.sqlite3"


def register_servers(url: str) -> None:
    store = open_store(url)
    try:
        OrderService(store.app).register_servers(
            [
                (f"SOAK-{p[-1].upper()}-{n:04d}", p)
                for p in PROJECTS
                for n in range(SERVERS_PER_PROJECT)
            ]
        )
    finally:
        store.close()


def main() -> None:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres",
        action="store_true",
        default=os.environ.get("SOAK_POSTGRES") == "1",
        help="PostgreSQL (PM_ORDER_BENCH_POSTGRES_URL) instead of SQLite",
    )
    args = parser.parse_args()
    minutes = int(os.environ.get("SOAK_MINUTES", "10"))
    rate = float(os.environ.get("SOAK_RATE", "40"))
    if minutes < 2:
        sys.exit("SOAK_MINUTES must be at least 2: the first minute is the reference")
    print(machine_line())
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(
        f"soak: {minutes} minutes, {rate:g} requests/s from {CLIENTS} clients, "
        f"{backend}, one `pm-order serve` on loopback"
    )
    with tempfile.TemporaryDirectory(prefix="pm-order-soak-tokens-") as folder:
        tokens_path, tokens = tokens_file(Path(folder), PROJECTS)
        with database(args.postgres) as url:
            register_servers(url)
            with running(pm_order_process("serve", url, tokens=tokens_path)) as server:
                server.wait_until_answering("/mana_api/openapi.json")
                status = asyncio.run(soak(server, tokens, minutes, rate))
    sys.exit(status)


if __name__ == "__main__":
    main()
