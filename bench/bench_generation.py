"""A new release's read models, built from the whole log while the cluster serves.

A store is grown to N orders (bench/generate.py) and served by an API process
and a worker of this release; POSTs arrive at a steady rate, each timed to its
answer (read-your-writes included). Halfway, a worker of "the next release"
starts: its order lists' fold version is one higher, so its read models are
another generation (projections/generations.py), made beside the serving one
and caught up from the log. Printed: how long the new generation took to catch
up (to its registration as caught up: when its processes become ready), its
rate, and the serving processes' POST p50/p99 before it started and while it
caught up.

    python bench/bench_generation.py --orders 1000000 --rate 200
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Final

from generate import grow
from harness import (
    PYTHON,
    Process,
    Report,
    Row,
    Schema,
    fresh_schema,
    load_average,
    main_of,
    percentile,
    pm_order_process,
    running,
    tokens_file,
)

from domain.service import OrderService
from projections.generations import generation
from projections.order_lists import OrderLists
from service.store import Store, open_store

SOURCE: Final = "gen-source"
DEST: Final = "gen-dest"
SP_AGENT: Final = "scloudm"
# The next release, as far as its read models go: a fold one version higher.
NEXT_RELEASE: Final = (
    "import sys; from projections.order_lists import OrderLists;"
    " OrderLists.fold_version += 1;"
    " from cli.main import main; sys.argv[0] = 'pm-order'; sys.exit(main())"
)


def next_release_worker(url: str) -> Process:
    env = {"PM_ORDER_DATABASE_URL": url}
    return Process(
        "next-release-worker", [PYTHON, "-c", NEXT_RELEASE, "worker"], env=env
    )


def next_generation(store: Store) -> str:
    """The generation name the next release's read models have."""
    OrderLists.fold_version += 1
    try:
        from projections.generations import generation_of
        from service.store import read_models

        return generation_of(read_models())
    finally:
        OrderLists.fold_version -= 1


async def post_steadily(
    base_url: str, token: str, rate: float, snids: list[str], until: asyncio.Event
) -> list[tuple[float, float]]:
    """POST an order per server of `snids` at `rate` per second until `until`
    is set (or the servers run out): (sent at, seconds to the answer) each."""
    import aiohttp

    timed: list[tuple[float, float]] = []
    url = f"{base_url}/mana_api/pm_order/{SOURCE}"
    headers = {"X-Auth-Token": token, "Sp-Agent": SP_AGENT}
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256)
    ) as session:

        async def post(snid: str) -> None:
            began = time.perf_counter()
            body = {"snids": snid, "dest_project": DEST}
            async with session.post(url, json=body, headers=headers) as response:
                text = await response.text()
                if response.status != 200:
                    raise RuntimeError(f"POST: {response.status} {text}")
            timed.append((began, time.perf_counter() - began))

        posts = []
        start = time.perf_counter()
        for k, snid in enumerate(snids):
            if until.is_set():
                break
            delay = start + k / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            posts.append(asyncio.create_task(post(snid)))
        await asyncio.gather(*posts)
    return timed


def wait_caught_up(store: Store, name: str, worker: Process, limit: float) -> float:
    """Seconds until generation `name` is registered as caught up."""
    began = time.perf_counter()
    while True:
        made = generation(store.views, name)
        if made is not None and made.caught_up:
            return time.perf_counter() - began
        if worker.popen.poll() is not None:
            raise RuntimeError(f"the next release's worker ended:\n{worker.log_tail()}")
        if time.perf_counter() - began > limit:
            raise RuntimeError(f"not caught up in {limit:.0f} s")
        time.sleep(0.2)


def run_in(
    schema: Schema, orders: int, rate: float, warm: float, limit: float
) -> Report:
    store = open_store(schema.url)
    directory = Path(tempfile.mkdtemp(prefix="bench-generation-"))
    try:
        grown = grow(store, orders)
        events = store.app.recorder.max_notification_id() or 0
        count = int(rate * (warm + limit)) + 1
        snids = [f"GEN-{k:07d}" for k in range(count)]
        service = OrderService(store.app)
        for i in range(0, count, 1000):
            service.register_servers([(s, SOURCE) for s in snids[i : i + 1000]])
        store.analyze()
        tokens, token_of = tokens_file(directory, [SOURCE, DEST])
        worker = pm_order_process("worker", schema.url)
        api = pm_order_process("serve", schema.url, tokens=tokens, api_only=True)
        with running(worker), running(api):
            api.wait_until_answering("/readyz")
            name = next_generation(store)

            async def measure() -> tuple[list[tuple[float, float]], float, float]:
                done = asyncio.Event()
                posting = asyncio.create_task(
                    post_steadily(api.base_url, token_of[SOURCE], rate, snids, done)
                )
                await asyncio.sleep(warm)
                started = time.perf_counter()
                with running(next_release_worker(schema.url)) as next_worker:
                    seconds = await asyncio.to_thread(
                        wait_caught_up, store, name, next_worker, limit
                    )
                done.set()
                return await posting, started, seconds

            timed, started, seconds = asyncio.run(measure())
    finally:
        store.close()
    before = [s for at, s in timed if at < started]
    during = [s for at, s in timed if at >= started]
    report = Report(
        "A new generation of the read models, caught up while the cluster serves",
        key="6. generation",
        notes=[
            f"{orders:,} orders ({events:,} events; grown: {grown.describe()}); POSTs"
            f" at {rate:g}/s to a `serve --api-only` (with a worker) throughout; a"
            " worker of the next release (order lists' fold version + 1) starts"
            f" after {warm:g} s"
        ],
    )
    load = load_average()
    report.rows.append(
        Row(
            "new generation caught up (s)",
            f"{seconds:.1f}",
            target="< 180",
            verdict="PASS" if seconds < 180 else "FAIL",
            load=load,
        )
    )
    report.rows.append(Row("its rate (events/s)", f"{events / seconds:,.0f}"))
    for label, values in (("before", before), ("while catching up", during)):
        ms = [v * 1000 for v in values]
        p99 = percentile(ms, 99)
        report.rows.append(
            Row(
                f"POST p50 / p99 {label} (ms)",
                f"{percentile(ms, 50):.1f} / {p99:.1f}",
                target="p99 < 20" if label != "before" else "",
                verdict=("PASS" if p99 < 20 else "FAIL") if label != "before" else "",
                load=load,
            )
        )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument(
        "--warm", type=float, default=10.0, help="seconds of load first"
    )
    parser.add_argument(
        "--limit", type=float, default=900.0, help="give up after this many seconds"
    )
    args = parser.parse_args()

    def run() -> Report:
        with fresh_schema() as schema:
            return run_in(schema, args.orders, args.rate, args.warm, args.limit)

    main_of(run)


if __name__ == "__main__":
    main()
