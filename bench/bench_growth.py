"""Growth: the create and list figures, rebuild time and peak memory, by store size.

One store grows through the sizes given (bench/generate.py: through the event
store, never by writing view rows). At each size: a fresh `pm-order worker`
projects what was added (its catch-up time and peak RSS are shown); a fresh
`pm-order serve --api-only` answers the list benchmark (16 clients, against a bare
aiohttp handler of the same JSON) and the create benchmark (32 clients POSTing
orders, against bare INSERT + COMMIT) while the worker projects; then
`pm-order projections rebuild` rebuilds every view from the whole log (its time
and peak RSS). The table says whether list latency stays flat and memory does not
grow with the store.

    .venv/bin/python bench/bench_growth.py [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench_create_orders import SOURCE, bare_inserts, post_orders
from bench_list_orders import (
    alternate,
    bare_server,
    fetch,
    list_requests,
    sample_request,
)
from generate import TENANTS, analyze, grow
from harness import (
    PYTHON,
    ROOT,
    Report,
    Schema,
    fresh_schema,
    machine_line,
    main_of,
    peak_rss_mb,
    pm_order_process,
    running,
    tokens_file,
)

from domain.service import OrderService
from projections.projector import tracked_position
from service.store import Store, open_store

LIST_CLIENTS: Final = 16
CREATE_CLIENTS: Final = 32
# p99 at the largest size within this factor of the smallest's: "flat".
FLAT: Final = 2.0


@dataclass
class Step:
    size: int
    events: int
    write_seconds: float
    catch_up_seconds: float
    worker_mb: float
    api_mb: float
    list_p99_ms: float
    list_rate: float
    bare_list_rate: float
    create_rate: float
    bare_insert_rate: float
    rebuild_seconds: float
    rebuild_mb: float


def wait_projected(store: Store, timeout: float) -> None:
    head = store.app.recorder.max_notification_id() or 0
    deadline = time.perf_counter() + timeout
    while tracked_position(store.views, "order_lists") < head:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the worker did not reach {head} in {timeout:.0f}s")
        time.sleep(0.05)


def rebuild(url: str) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of `pm-order projections rebuild`."""
    env = {**os.environ, "PM_ORDER_DATABASE_URL": url}
    start = time.perf_counter()
    # Its progress bar goes to a file: a pipe nobody reads would fill and stall it.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [PYTHON, "-m", "cli", "projections", "rebuild"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        if process.returncode != 0:
            log.seek(0)
            raise RuntimeError(f"rebuild failed: {log.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def step(
    store: Store,
    schema: Schema,
    directory: Path,
    size: int,
    creates: int,
    seconds: float,
) -> Step:
    grown = grow(store, size, project=False)
    # Servers for this step's POSTs, registered before the worker starts.
    snids = [f"GROW-{size}-{k:06d}" for k in range(creates)]
    service = OrderService(store.app)
    for i in range(0, creates, 1000):
        service.register_servers([(s, SOURCE) for s in snids[i : i + 1000]])
    projects = [f"proj-{k}" for k in range(TENANTS)] + [SOURCE]
    tokens, token_of = tokens_file(directory, projects)
    worker = pm_order_process("worker", schema.url)
    with running(worker):
        began = time.perf_counter()
        wait_projected(store, timeout=3600)
        catch_up = time.perf_counter() - began
        analyze(store)
        serve = pm_order_process("serve", schema.url, tokens=tokens, api_only=True)
        with running(serve):
            serve.wait_until_answering("/mana_api/openapi.json")
            body_file = directory / "body.json"
            body_file.write_bytes(fetch(serve.base_url, sample_request(token_of)))
            with running(bare_server(body_file)) as bare:
                bare.wait_until_answering("/")
                ours, baseline = alternate(
                    serve,
                    bare,
                    list_requests(grown.orders, token_of),
                    LIST_CLIENTS,
                    seconds,
                )
            before = asyncio.run(bare_inserts(schema, CREATE_CLIENTS, 2.0))
            created = asyncio.run(
                post_orders(serve.base_url, token_of[SOURCE], snids, CREATE_CLIENTS)
            )
            after = asyncio.run(bare_inserts(schema, CREATE_CLIENTS, 2.0))
            api_mb = peak_rss_mb(serve.popen.pid)
        worker_mb = peak_rss_mb(worker.popen.pid)
    rebuild_seconds, rebuild_mb = rebuild(schema.url)
    return Step(
        size=grown.orders,
        events=store.app.recorder.max_notification_id() or 0,
        write_seconds=grown.write_seconds,
        catch_up_seconds=catch_up,
        worker_mb=worker_mb,
        api_mb=api_mb,
        list_p99_ms=max(load.p99_ms for load in ours),
        list_rate=sum(load.per_second for load in ours) / len(ours),
        bare_list_rate=sum(load.per_second for load in baseline) / len(baseline),
        create_rate=created.per_second,
        bare_insert_rate=(before.per_second + after.per_second) / 2,
        rebuild_seconds=rebuild_seconds,
        rebuild_mb=rebuild_mb,
    )


def run(sizes: list[int], creates: int, seconds: float) -> Report:
    report = Report(
        "Growth: figures 1 and 2, rebuild time and peak RSS by store size",
        key="5. growth",
    )
    report.note(machine_line())
    steps: list[Step] = []
    with fresh_schema() as schema, tempfile.TemporaryDirectory() as directory:
        store = open_store(schema.url)
        try:
            for size in sizes:
                steps.append(
                    step(store, schema, Path(directory), size, creates, seconds)
                )
                print(f"  (size {size:,} done)", flush=True)
        finally:
            store.close()
    report.note(
        "| orders | events | create orders/s (ratio to bare INSERT) | list p99 ms"
        " | list requests/s (ratio to bare handler) | worker catch-up s"
        " | rebuild s | peak RSS MiB: API / worker / rebuild |"
    )
    report.note("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for s in steps:
        report.note(
            f"| {s.size:,} | {s.events:,}"
            f" | {s.create_rate:,.0f} ({s.create_rate / s.bare_insert_rate:.2f}x)"
            f" | {s.list_p99_ms:.1f}"
            f" | {s.list_rate:,.0f} ({s.list_rate / s.bare_list_rate:.2f}x)"
            f" | {s.catch_up_seconds:.1f} | {s.rebuild_seconds:.1f}"
            f" | {s.api_mb:.0f} / {s.worker_mb:.0f} / {s.rebuild_mb:.0f} |"
        )
    first, last = steps[0], steps[-1]
    span = f"{first.size:,} to {last.size:,} orders"
    growth = last.list_p99_ms / first.list_p99_ms
    report.target(
        f"list p99, {span}",
        f"{first.list_p99_ms:.1f} -> {last.list_p99_ms:.1f} ms",
        f"flat (<= {FLAT:g}x)",
        growth <= FLAT,
        baseline=f"at {first.size:,} orders",
        ratio=f"{growth:.2f}x",
    )
    for label, low, high in (
        ("API", first.api_mb, last.api_mb),
        ("worker", first.worker_mb, last.worker_mb),
    ):
        report.target(
            f"{label} peak RSS, {span}",
            f"{low:.0f} -> {high:.0f} MiB",
            f"flat (<= {FLAT:g}x)",
            high / low <= FLAT,
            baseline=f"at {first.size:,} orders",
            ratio=f"{high / low:.2f}x",
        )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="10000,100000,1000000",
        help="store sizes in orders, ascending (default 10000,100000,1000000)",
    )
    parser.add_argument(
        "--creates", type=int, default=1000, help="orders POSTed per size"
    )
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="each list run (default 3)"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    main_of(lambda: run(sizes, args.creates, args.seconds))


if __name__ == "__main__":
    main()
