"""Listing a tenant's orders with a large store, against a bare aiohttp handler.

The store is grown to the size asked through the event store and the projectors
(bench/generate.py: no view row is written directly). The real app
(`python -m cli serve --api-only`, as behind a load balancer) answers
GET /mana_api/pm_order/{tenant}?type=N&limit=50 (types 0..4, a third of them with
a marker) from C concurrent connections; the baseline is a bare aiohttp handler
answering a fixed JSON body of the same size, measured by the same load generator
(wrk when installed, else an aiohttp client in a process of its own). Each side
runs twice, alternately, and the means are compared.

    .venv/bin/python bench/bench_list_orders.py [--size 100000] [--clients 16]
    .venv/bin/python bench/bench_list_orders.py --size 1000000   # the DESIGN figure
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from generate import TENANTS, Grown, grow, orders_stored
from harness import (
    PYTHON,
    SP_AGENT,
    Load,
    Process,
    Report,
    Request,
    Schema,
    free_port,
    fresh_schema,
    http_load,
    kept_schema,
    machine_line,
    main_of,
    pm_order_process,
    running,
    tokens_file,
)

from service.store import open_store

TARGET_P99_MS: Final = 20.0
TARGET_RATIO: Final = 0.5
PAGE: Final = 50

# A JSON handler with nothing behind it: the same document, encoded per request.
_BARE_SERVER: Final = """
import json, sys
from aiohttp import web
document = json.loads(open(sys.argv[2], "rb").read())
async def handler(request):
    return web.json_response(document)
app = web.Application()
app.router.add_get("/{tail:.*}", handler)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def list_requests(
    size: int, tokens: dict[str, str], count: int = 1000
) -> list[Request]:
    """A fixed mix of list queries: every type, a third with a marker."""
    rng = random.Random(7)
    requests = []
    for _ in range(count):
        tenant = f"proj-{rng.randrange(TENANTS)}"
        path = f"/mana_api/pm_order/{tenant}?type={rng.randrange(5)}&limit={PAGE}"
        if rng.random() < 1 / 3:
            path += f"&marker={rng.randrange(PAGE, size + 1)}"
        headers = {"X-Auth-Token": tokens[tenant], "Sp-Agent": SP_AGENT}
        requests.append((path, headers))
    return requests


def sample_request(tokens: dict[str, str]) -> Request:
    """The first page of a whole list: the body the bare handler answers."""
    path = f"/mana_api/pm_order/proj-0?type=4&limit={PAGE}"
    return path, {"X-Auth-Token": tokens["proj-0"], "Sp-Agent": SP_AGENT}


def fetch(base_url: str, request: Request) -> bytes:
    path, headers = request
    with urllib.request.urlopen(
        urllib.request.Request(base_url + path, headers=headers), timeout=10
    ) as response:
        return bytes(response.read())


def bare_server(body_file: Path) -> Process:
    port = free_port()
    return Process(
        "bare-aiohttp",
        [PYTHON, "-c", _BARE_SERVER, str(port), str(body_file)],
        port=port,
    )


def run(
    size: int,
    clients: int,
    seconds: float,
    generate_seconds: float,
    reuse: str = "",
) -> Report:
    report = Report(
        f"Listing a tenant's orders, {size:,} orders wanted ({clients} clients)",
        key="2. list",
    )
    report.note(machine_line())
    with (
        obtained_store(report, size, generate_seconds, reuse) as (schema, size),
        tempfile.TemporaryDirectory() as directory,
    ):
        projects = [f"proj-{k}" for k in range(TENANTS)]
        tokens, token_of = tokens_file(Path(directory), projects)
        requests = list_requests(size, token_of)
        serve = pm_order_process("serve", schema.url, tokens=tokens, api_only=True)
        with running(serve) as app:
            app.wait_until_answering("/mana_api/openapi.json")
            body_file = Path(directory) / "body.json"
            body_file.write_bytes(fetch(app.base_url, sample_request(token_of)))
            with running(bare_server(body_file)) as bare:
                bare.wait_until_answering("/")
                ours, baseline = alternate(app, bare, requests, clients, seconds)
        report.note(
            f"load: {ours[0].tool}, {clients} connections, {seconds:g}s per run, two"
            " runs each, alternating; the bare handler answers the app's first page"
            f" of a list ({body_file.stat().st_size:,} bytes of JSON)"
        )
    return judge(report, ours, baseline, size)


@contextmanager
def obtained_store(
    report: Report, size: int, generate_seconds: float, reuse: str
) -> Iterator[tuple[Schema, int]]:
    """(the schema, the orders it holds): the store another benchmark of this run
    kept (`reuse`: bench/run.py hands over the growth benchmark's), else one grown
    here to `size` (stopped short after `generate_seconds`), dropped afterwards."""
    if reuse:
        with kept_schema(reuse) as schema:
            store = open_store(schema.url, create_tables=False)
            try:
                held = orders_stored(store)
            finally:
                store.close()
            report.note(
                f"store: {held:,} orders, the growth benchmark's store of this run"
                f" (schema {reuse}: generated through the event store and"
                " projected by the projectors, then its orders POSTed), reused"
                " as it is"
            )
            yield schema, held
        return
    with fresh_schema() as schema:
        store = open_store(schema.url)
        try:
            grown = grow(store, size, deadline=time.perf_counter() + generate_seconds)
        finally:
            store.close()
        report.note(describe_growth(grown, size))
        yield schema, grown.orders


def alternate(
    app: Process, bare: Process, requests: list[Request], clients: int, seconds: float
) -> tuple[list[Load], list[Load]]:
    """Two runs of each, alternately, after a warm-up of both."""
    ours: list[Load] = []
    baseline: list[Load] = []
    for process in (app, bare):
        http_load(process.base_url, requests, concurrency=clients, seconds=1)
    for _ in range(2):
        for process, loads in ((bare, baseline), (app, ours)):
            loads.append(
                http_load(
                    process.base_url, requests, concurrency=clients, seconds=seconds
                )
            )
    return ours, baseline


def describe_growth(grown: Grown, wanted: int) -> str:
    short = (
        ""
        if grown.orders >= wanted
        else f" (STOPPED SHORT of {wanted:,}: generating took too long)"
    )
    return f"store: {grown.orders:,} orders{short}: {grown.describe()}"


def judge(report: Report, ours: list[Load], baseline: list[Load], size: int) -> Report:
    failures = sum(load.failures for load in ours + baseline)
    if failures:
        report.note(f"WARNING: {failures} requests failed (not counted)")
    ours_rate = sum(load.per_second for load in ours) / len(ours)
    bare_rate = sum(load.per_second for load in baseline) / len(baseline)
    p99 = max(load.p99_ms for load in ours)
    report.figure("ours: GET the list (serve --api-only)", describe(ours, ours_rate))
    report.figure("baseline: bare aiohttp JSON handler", describe(baseline, bare_rate))
    ratio = ours_rate / bare_rate
    report.target(
        f"p99 latency, {size:,} orders",
        f"{p99:.1f} ms",
        f"< {TARGET_P99_MS:.0f} ms",
        p99 < TARGET_P99_MS,
        baseline=f"bare handler p99 {max(load.p99_ms for load in baseline):.1f} ms",
    )
    report.target(
        f"requests/s, {size:,} orders",
        f"{ours_rate:,.0f} requests/s",
        f">= {TARGET_RATIO}x",
        ratio >= TARGET_RATIO,
        baseline=f"bare handler {bare_rate:,.0f} requests/s",
        ratio=f"{ratio:.2f}x",
    )
    return report


def describe(loads: list[Load], mean_rate: float) -> str:
    runs = ", ".join(f"{load.per_second:,.0f}" for load in loads)
    p50 = max(load.p50_ms for load in loads)
    p99 = max(load.p99_ms for load in loads)
    return (
        f"{mean_rate:,.0f} requests/s  (runs {runs};"
        f" worst run: p50 {p50:.1f} ms, p99 {p99:.1f} ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", type=int, default=100_000, help="orders stored (default 100000)"
    )
    parser.add_argument("--clients", type=int, default=16, help="(default 16)")
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="each of the 4 runs (default 5)"
    )
    parser.add_argument(
        "--generate-seconds",
        type=float,
        default=900.0,
        help="stop generating orders after this long (default 900)",
    )
    parser.add_argument(
        "--reuse-store",
        default="",
        metavar="SCHEMA",
        help="measure on the store another benchmark of this run kept in SCHEMA"
        " (bench/run.py: the growth benchmark's) instead of growing one",
    )
    args = parser.parse_args()
    main_of(
        lambda: run(
            args.size,
            args.clients,
            args.seconds,
            args.generate_seconds,
            args.reuse_store,
        )
    )


if __name__ == "__main__":
    main()
