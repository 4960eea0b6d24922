"""Creating orders over HTTP on PostgreSQL, against bare INSERT + COMMIT.

Real servers answer POSTs of one-server orders from C concurrent aiohttp clients,
in three set-ups, one after another on one store: `serve` alone (projectors in
it); one `serve --api-only` and a `worker`; two `serve --api-only` (the clients
round-robin between them) and a `worker`. Each answer waits, as always, until the
views show the order. The baseline is the same number of clients, one
psycopg connection each, doing single-row INSERT + COMMIT into a plain table. The
baseline runs before and after the orders, and its mean is the one compared.

    .venv/bin/python bench/bench_create_orders.py [--orders 1500] [--clients 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp
import psycopg
from harness import (
    POSTGRES_URL,
    SP_AGENT,
    Report,
    Schema,
    fresh_schema,
    machine_line,
    main_of,
    percentile,
    pm_order_process,
    running,
    tokens_file,
)

from domain.service import OrderService
from service.store import open_store

TARGET_RATIO: Final = 0.5
# Two API processes write at least this much of what one does.
SCALE_OUT_RATIO: Final = 0.9
SOURCE: Final = "proj-src"
DEST: Final = "proj-dst"
WARM_UP: Final = 20
REGISTER_BATCH: Final = 1000


@dataclass(frozen=True)
class Run:
    count: int
    seconds: float
    latencies: list[float]

    @property
    def per_second(self) -> float:
        return self.count / self.seconds

    @staticmethod
    def joined(runs: list[Run]) -> Run:
        """Several runs as one: their orders over their time together."""
        return Run(
            sum(r.count for r in runs),
            sum(r.seconds for r in runs),
            [latency for r in runs for latency in r.latencies],
        )

    def latency_text(self) -> str:
        p50 = percentile(self.latencies, 50) * 1000
        p99 = percentile(self.latencies, 99) * 1000
        return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"


def register_servers(
    url: str, count: int, source: str = SOURCE, first: int = 0
) -> list[str]:
    """`count` servers of `source`, registered through the service."""
    snids = [f"BENCH-{i:07d}" for i in range(first, first + count)]
    store = open_store(url)
    try:
        service = OrderService(store.app)
        for i in range(0, count, REGISTER_BATCH):
            service.register_servers(
                [(s, source) for s in snids[i : i + REGISTER_BATCH]]
            )
    finally:
        store.close()
    return snids


async def post_orders(
    base_urls: list[str],
    token: str,
    snids: list[str],
    clients: int,
    source: str = SOURCE,
) -> Run:
    """POST one order of `source` per snid from `clients` concurrent clients,
    client i to base_urls[i % len(base_urls)] (a load balancer's round robin)."""
    headers = {"X-Auth-Token": token, "Sp-Agent": SP_AGENT}
    pending = iter(snids)
    latencies: list[float] = []

    async def client(session: aiohttp.ClientSession, base_url: str) -> None:
        url = f"{base_url}/mana_api/pm_order/{source}"
        for snid in pending:
            body = {"snids": snid, "dest_project": DEST, "mailto": "ops@example.com"}
            began = time.perf_counter()
            async with session.post(url, json=body, headers=headers) as response:
                answer = await response.text()
                if response.status != 200:
                    raise RuntimeError(f"POST {snid}: {response.status} {answer}")
            latencies.append(time.perf_counter() - began)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(
            *(client(session, base_urls[i % len(base_urls)]) for i in range(clients))
        )
        seconds = time.perf_counter() - start
    return Run(len(latencies), seconds, latencies)


async def bare_inserts(schema: Schema, clients: int, seconds: float) -> Run:
    """Single-row INSERT + COMMIT from `clients` connections for `seconds`."""
    body = json.dumps(
        {"snids": "BENCH-0000001", "dest_project": DEST, "mailto": "ops@example.com"}
    )
    options = f"-c search_path={schema.name}"
    async with await psycopg.AsyncConnection.connect(
        POSTGRES_URL, autocommit=True, options=options
    ) as setup:
        await setup.execute(
            "CREATE TABLE IF NOT EXISTS bench_bare_inserts"
            " (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL)"
        )
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        async with await psycopg.AsyncConnection.connect(
            POSTGRES_URL, options=options
        ) as connection:
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                await connection.execute(
                    "INSERT INTO bench_bare_inserts (body) VALUES (%s)", (body,)
                )
                await connection.commit()
                latencies.append(time.perf_counter() - began)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return Run(len(latencies), time.perf_counter() - start, latencies)


def group_commits(schema: Schema) -> tuple[int, int]:
    """(orders stored, transactions that stored them): each transaction's rows
    share their xmin."""
    with psycopg.connect(
        POSTGRES_URL, options=f"-c search_path={schema.name}"
    ) as connection:
        row = connection.execute(
            "SELECT count(*), count(DISTINCT xmin::text) FROM pm_order_events"
            " WHERE topic LIKE %s",
            ("%Order.Requested",),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


# The set-ups measured: (name, API processes, with a worker apart).
SETUPS: Final = (
    ("serve, 1 process", 1, False),
    ("1 serve --api-only + worker", 1, True),
    ("2 serve --api-only + worker", 2, True),
)


def measure(
    url: str,
    tokens: Path,
    token: str,
    source: str,
    snids: list[str],
    clients: int,
    setup: tuple[str, int, bool],
) -> Run:
    """POST an order of `source` for each of `snids` to the set-up's processes."""
    _, apis, worker_apart = setup
    processes = [
        pm_order_process("serve", url, tokens=tokens, api_only=worker_apart)
        for _ in range(apis)
    ]
    if worker_apart:
        processes.append(pm_order_process("worker", url))
    with ExitStack() as stack:
        for process in processes:
            stack.enter_context(running(process))
        servers = [p for p in processes if p.port is not None]
        for server in servers:
            server.wait_until_answering("/mana_api/openapi.json")
        urls = [server.base_url for server in servers]
        asyncio.run(post_orders(urls, token, snids[:WARM_UP], 2, source))
        return asyncio.run(post_orders(urls, token, snids[WARM_UP:], clients, source))


def run(orders: int, clients: int, baseline_seconds: float) -> Report:
    report = Report(
        f"Creating orders over HTTP on PostgreSQL ({clients} clients)",
        key="1. create",
    )
    report.note(machine_line())
    each = WARM_UP + orders
    # The set-ups compared with each other run twice, alternately: the load on a
    # shared machine drifts, and one run of a few seconds each would compare
    # moments as much as set-ups.
    order = [SETUPS[0], SETUPS[1], SETUPS[2], SETUPS[1], SETUPS[2]]
    # Each run orders the servers of a project of its own: every run starts with
    # no unfinished order (a project's count of them is part of each POST).
    sources = [f"{SOURCE}-{n}" for n in range(len(order))]
    with fresh_schema() as schema, tempfile.TemporaryDirectory() as directory:
        began = time.perf_counter()
        snids = [
            register_servers(schema.url, each, source, first=n * each)
            for n, source in enumerate(sources)
        ]
        report.note(
            f"setup: {each * len(order):,} servers registered through OrderService"
            f" in {time.perf_counter() - began:.1f}s"
        )
        tokens, token_of = tokens_file(Path(directory), [*sources, DEST])
        before = asyncio.run(bare_inserts(schema, clients, baseline_seconds))
        of_setup: dict[str, list[Run]] = {}
        for n, (setup, source) in enumerate(zip(order, sources, strict=True)):
            of_setup.setdefault(setup[0], []).append(
                measure(
                    schema.url,
                    tokens,
                    token_of[source],
                    source,
                    snids[n],
                    clients,
                    setup,
                )
            )
        runs = {name: Run.joined(each_run) for name, each_run in of_setup.items()}
        batches = group_commits(schema)
        after = asyncio.run(bare_inserts(schema, clients, baseline_seconds))
    baseline = (before.per_second + after.per_second) / 2
    for name, measured in runs.items():
        report.figure(
            f"ours: POST an order ({name})",
            f"{measured.per_second:,.0f} orders/s  ({measured.count:,} in"
            f" {measured.seconds:.1f}s; {measured.latency_text()})",
        )
    report.note(
        f"group commit: {batches[0]:,} orders in {batches[1]:,} transactions"
        f" ({batches[0] / max(batches[1], 1):.1f} orders per transaction)"
    )
    report.figure(
        "baseline: bare INSERT + COMMIT",
        f"{baseline:,.0f} rows/s  (before {before.per_second:,.0f},"
        f" after {after.per_second:,.0f}; {before.latency_text()})",
    )
    one, two = runs[SETUPS[1][0]], runs[SETUPS[2][0]]
    scale = two.per_second / one.per_second
    report.target(
        "two API processes vs one (worker apart)",
        f"{two.per_second:,.0f} vs {one.per_second:,.0f} orders/s",
        f">= {SCALE_OUT_RATIO}x",
        scale >= SCALE_OUT_RATIO,
        baseline=f"{one.per_second:,.0f} orders/s (one)",
        ratio=f"{scale:.2f}x",
    )
    best_name, best = max(runs.items(), key=lambda item: item[1].per_second)
    ratio = best.per_second / baseline
    report.target(
        f"orders/s, {clients} clients, best set-up ({best_name})",
        f"{best.per_second:,.0f} orders/s",
        f">= {TARGET_RATIO}x",
        ratio >= TARGET_RATIO,
        baseline=f"{baseline:,.0f} INSERT+COMMIT/s",
        ratio=f"{ratio:.2f}x",
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--orders", "--size", type=int, default=1500, help="(default 1500)"
    )
    parser.add_argument("--clients", type=int, default=32, help="(default 32)")
    parser.add_argument(
        "--baseline-seconds",
        type=float,
        default=5.0,
        help="each of the two baseline runs (default 5)",
    )
    args = parser.parse_args()
    main_of(lambda: run(args.orders, args.clients, args.baseline_seconds))


if __name__ == "__main__":
    main()
