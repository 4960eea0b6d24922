"""What announcing costs: orders created over HTTP with and without the
notification outbox, and the lag from an order's commit to a consumer's receipt
of its notification at a steady 200 orders/s.

One `serve` process (projectors and notifier in it) on PostgreSQL, announcing to
the local RabbitMQ (PM_ORDER_BENCH_TRANSPORT_URL, default
rabbit://guest:guest@127.0.0.1:5672/) on a topic of the run's own. The create
rate is measured without the outbox and with it alternately, twice each (the
load on a shared machine drifts). The lag is the time from the event's own time
(taken by the service just before its commit) to the receipt of its
notification by an AMQP consumer of the queue, for every order of a steady load.

    .venv/bin/python bench/bench_notifications.py [--orders 1000] [--seconds 10]
        [--rate 200] [--also-rate 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import aiohttp
import aiormq
from bench_create_orders import Run, post_orders, register_servers
from harness import (
    PYTHON,
    SP_AGENT,
    Process,
    Report,
    free_port,
    fresh_schema,
    machine_line,
    main_of,
    percentile,
    running,
    tokens_file,
)

TRANSPORT_URL: Final = os.environ.get(
    "PM_ORDER_BENCH_TRANSPORT_URL", "rabbit://guest:guest@127.0.0.1:5672/"
)
DEST: Final = "proj-dst"
# Announcing should cost the API little: the notifier is a task of its own.
TARGET_RATIO: Final = 0.9
WARM_UP: Final = 20


def serve(database_url: str, tokens: Path, topic: str | None) -> Process:
    """`serve` (background work in it), announcing on `topic` if given."""
    env = {
        "PM_ORDER_DATABASE_URL": database_url,
        "PM_ORDER_TOKENS_FILE": str(tokens),
        "PM_ORDER_RATE_LIMIT": "off",
        "PM_ORDER_MAX_UNFINISHED_ORDERS": "1000000",
        "PM_ORDER_TRANSPORT_URL": TRANSPORT_URL if topic else "",
        "PM_ORDER_NOTIFICATION_TOPIC": topic or "",
    }
    port = free_port()
    argv = [PYTHON, "-m", "cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = Process("pm-order-serve", argv, env=env, port=port)
    process.wait_until_answering("/mana_api/openapi.json")
    return process


def _amqp(url: str) -> str:
    return "amqp://" + url.removeprefix("rabbit://")


class Receipts:
    """An AMQP consumer of the topic's queue: when each order's request came."""

    def __init__(self, topic: str) -> None:
        self.queue = f"{topic}.info"
        self.lags: dict[int, float] = {}
        self._connection: aiormq.abc.AbstractConnection | None = None

    async def start(self) -> None:
        self._connection = await aiormq.connect(_amqp(TRANSPORT_URL))
        channel = await self._connection.channel()
        await channel.queue_declare(self.queue, durable=True)
        await channel.basic_consume(self.queue, self._received, no_ack=True)

    async def _received(self, message: aiormq.abc.DeliveredMessage) -> None:
        received = time.time()
        inner = json.loads(json.loads(message.body)["oslo.message"])
        data = inner["payload"]["pm_order_object.data"]
        if data["action"] != "requested":
            return
        happened = datetime.strptime(inner["timestamp"], "%Y-%m-%d %H:%M:%S.%f")
        self.lags[data["order_id"]] = (
            received - happened.replace(tzinfo=UTC).timestamp()
        )

    async def close(self) -> None:
        """Stop consuming (the queue stays: the publisher's own declaration)."""
        assert self._connection is not None
        await self._connection.close()


async def delete_queue(topic: str) -> None:
    """Remove the run's queue, once nothing publishes to it."""
    connection = await aiormq.connect(_amqp(TRANSPORT_URL))
    channel = await connection.channel()
    await channel.queue_delete(f"{topic}.info")
    await connection.close()


async def steady(
    base_url: str, token: str, source: str, snids: list[str], rate: float
) -> list[int]:
    """POST one order per snid at `rate` a second (an open loop: each at its
    time, whatever the answers before); the orders' ids."""
    headers = {"X-Auth-Token": token, "Sp-Agent": SP_AGENT}
    url = f"{base_url}/mana_api/pm_order/{source}"
    ids: list[int] = []

    async def one(session: aiohttp.ClientSession, at: float, snid: str) -> None:
        await asyncio.sleep(max(at - time.perf_counter(), 0))
        body = {"snids": snid, "dest_project": DEST}
        async with session.post(url, json=body, headers=headers) as response:
            answer = await response.json()
            if response.status != 200:
                raise RuntimeError(f"POST {snid}: {response.status} {answer}")
            ids.append(int(answer["order_id"]))

    start = time.perf_counter() + 0.2
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(
            *(one(session, start + i / rate, s) for i, s in enumerate(snids))
        )
    return ids


async def measure_lag(
    base_url: str, token: str, source: str, snids: list[str], rate: float, topic: str
) -> list[float]:
    receipts = Receipts(topic)
    await receipts.start()
    try:
        ids = await steady(base_url, token, source, snids, rate)
        deadline = time.monotonic() + 60
        while not set(ids) <= set(receipts.lags) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        missing = set(ids) - set(receipts.lags)
        if missing:
            raise RuntimeError(f"{len(missing)} notifications never came")
        return [receipts.lags[i] for i in ids]
    finally:
        await receipts.close()


def run(orders: int, clients: int, seconds: float, rate: float, also: float) -> Report:
    report = Report(
        f"Announcing on RabbitMQ: create rate with and without the outbox "
        f"({clients} clients), commit-to-receipt lag at {rate:g} orders/s",
        key="7. notifications",
    )
    report.note(machine_line())
    rates = [rate, *([also] if also else [])]
    steady_orders = [int(seconds * r) for r in rates]
    plan = [False, True, False, True]  # with the outbox? alternately
    each = WARM_UP + orders
    sources = [f"proj-src-{n}" for n in range(len(plan) + len(rates))]
    topic = f"pm-order-bench-{uuid.uuid4().hex[:8]}"
    with fresh_schema() as schema, tempfile.TemporaryDirectory() as directory:
        snids = [
            register_servers(schema.url, each, source, first=n * each)
            for n, source in enumerate(sources[: len(plan)])
        ]
        first = len(plan) * each
        for n, count in enumerate(steady_orders):
            snids.append(
                register_servers(schema.url, count, sources[len(plan) + n], first=first)
            )
            first += count
        tokens, token_of = tokens_file(Path(directory), [*sources, DEST])
        runs: dict[bool, list[Run]] = {False: [], True: []}
        for n, announcing in enumerate(plan):
            with running(
                serve(schema.url, tokens, topic if announcing else None)
            ) as api:
                urls = [api.base_url]
                source, token = sources[n], token_of[sources[n]]
                asyncio.run(post_orders(urls, token, snids[n][:WARM_UP], 2, source))
                runs[announcing].append(
                    asyncio.run(
                        post_orders(urls, token, snids[n][WARM_UP:], clients, source)
                    )
                )
        lags: dict[float, list[float]] = {}
        with running(serve(schema.url, tokens, topic)) as api:
            for n, steady_rate in enumerate(rates):
                source = sources[len(plan) + n]
                lags[steady_rate] = asyncio.run(
                    measure_lag(
                        api.base_url,
                        token_of[source],
                        source,
                        snids[len(plan) + n],
                        steady_rate,
                        topic,
                    )
                )
        asyncio.run(delete_queue(topic))
    without, with_outbox = Run.joined(runs[False]), Run.joined(runs[True])
    for label, measured in (("without the outbox", without), ("with it", with_outbox)):
        report.figure(
            f"POST an order, {label}",
            f"{measured.per_second:,.0f} orders/s  ({measured.count:,} in"
            f" {measured.seconds:.1f}s; {measured.latency_text()})",
        )
    ratio = with_outbox.per_second / without.per_second
    report.target(
        "create rate with the outbox against without",
        f"{with_outbox.per_second:,.0f} vs {without.per_second:,.0f} orders/s",
        f">= {TARGET_RATIO}x",
        ratio >= TARGET_RATIO,
        baseline=f"{without.per_second:,.0f} orders/s (without)",
        ratio=f"{ratio:.2f}x",
    )
    for steady_rate, measured_lags in lags.items():
        report.figure(
            f"commit-to-receipt lag at {steady_rate:g} orders/s"
            f" ({len(measured_lags):,} orders)",
            f"p50 {percentile(measured_lags, 50) * 1000:.1f} ms, p99 "
            f"{percentile(measured_lags, 99) * 1000:.1f} ms,"
            f" max {max(measured_lags) * 1000:.1f} ms",
        )
    if without.per_second < rate:
        report.note(
            f"this machine created {without.per_second:,.0f} orders/s at most: at"
            f" {rate:g}/s requests queue, and the lag measures the backlog"
        )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000, help="per create run")
    parser.add_argument("--clients", type=int, default=32, help="(default 32)")
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="of the steady load"
    )
    parser.add_argument("--rate", type=float, default=200.0, help="orders/s")
    parser.add_argument(
        "--also-rate",
        type=float,
        default=50.0,
        help="the lag at this rate too (default 50; 0: not)",
    )
    args = parser.parse_args()
    main_of(
        lambda: run(args.orders, args.clients, args.seconds, args.rate, args.also_rate)
    )


if __name__ == "__main__":
    main()
