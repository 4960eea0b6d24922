"""Listing a tenant's orders with a large store, against a bare aiohttp handler.

Only the read path is measured, so the order_lists view's tables are filled
directly with bulk SQL (generate_series), not by projecting events. The real app
(`python -m cli serve --api-only`, as behind a load balancer) answers
GET /mana_api/pm_order/{tenant}?type=N&limit=50 (types 0..4, a third of them with
a marker) from C concurrent connections; the baseline is a bare aiohttp handler
answering a fixed JSON body of the same size, measured by the same load generator
(wrk when installed, else an aiohttp client in a process of its own). Each side
runs twice, alternately, and the means are compared.

    .venv/bin/python bench/bench_list_orders.py [--size 100000] [--clients 8]
    .venv/bin/python bench/bench_list_orders.py --size 1000000   # the DESIGN figure
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Final

from harness import (
    PYTHON,
    SP_AGENT,
    Load,
    Process,
    Report,
    Request,
    connect,
    free_port,
    fresh_schema,
    http_load,
    machine_line,
    main_of,
    pm_order_process,
    running,
    tokens_file,
)

from service.store import open_store

TARGET_P99_MS: Final = 20.0
TARGET_RATIO: Final = 0.5
TENANTS: Final = 10
PAGE: Final = 50
SPREAD_SECONDS: Final = 30 * 86400.0  # orders were created over the last 30 days

# Order i goes from tenant i % T to another tenant; states cycle 2 unfinished,
# 6 finished, 2 refused in 10. Entries and counts follow from the orders exactly
# as the projector would have written them.
_FILL: Final = (
    """
    INSERT INTO order_lists_orders (id, snids, resource_project, dest_project,
        user_name, state, mailto, decided_by, warning_count, warned_at,
        created_at, updated_at)
    SELECT i, 'SN-' || lpad(i::text, 8, '0'),
        'proj-' || (i %% %(t)s),
        'proj-' || ((i %% %(t)s + 1 + (i / %(t)s) %% (%(t)s - 1)) %% %(t)s),
        'user-proj-' || (i %% %(t)s),
        CASE WHEN i %% 10 < 2 THEN 'unfinished'
             WHEN i %% 10 < 8 THEN 'finished' ELSE 'refused' END,
        'ops@example.com',
        CASE WHEN i %% 10 < 2 THEN NULL
             ELSE 'user-proj-' || ((i %% %(t)s + 1 + (i / %(t)s) %% (%(t)s - 1))
                                   %% %(t)s) END,
        0, NULL, %(now)s - %(spread)s * (%(n)s - i) / %(n)s,
        %(now)s - %(spread)s * (%(n)s - i) / %(n)s
    FROM generate_series(1, %(n)s) AS i
    """,
    """
    INSERT INTO order_lists_entries (tenant, order_id, role, state)
    SELECT resource_project, id, 'source', state FROM order_lists_orders
    UNION ALL
    SELECT dest_project, id, 'dest', state FROM order_lists_orders
    """,
    """
    INSERT INTO order_lists_counts (tenant, list_type, n)
    SELECT tenant, 3, count(*) FROM order_lists_entries
        WHERE role = 'source' GROUP BY tenant
    UNION ALL
    SELECT tenant, 4, count(*) FROM order_lists_entries GROUP BY tenant
    UNION ALL
    SELECT tenant, CASE state WHEN 'unfinished' THEN 0 WHEN 'finished' THEN 1
                   ELSE 2 END, count(*)
        FROM order_lists_entries WHERE role = 'dest' GROUP BY tenant, state
    """,
    "ANALYZE order_lists_orders",
    "ANALYZE order_lists_entries",
    "ANALYZE order_lists_counts",
)

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


def fill_view(schema: str, size: int) -> None:
    with connect(schema) as connection, connection.cursor() as cursor:
        for statement in _FILL:
            cursor.execute(
                statement,
                {"n": size, "t": TENANTS, "now": time.time(), "spread": SPREAD_SECONDS},
            )


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


def run(size: int, clients: int, seconds: float) -> Report:
    report = Report(
        f"Listing a tenant's orders, {size:,} orders stored ({clients} clients)"
    )
    report.note(machine_line())
    with fresh_schema() as schema, tempfile.TemporaryDirectory() as directory:
        open_store(schema.url).close()  # creates the tables
        began = time.perf_counter()
        fill_view(schema.name, size)
        report.note(
            f"the order_lists view was FILLED DIRECTLY with bulk SQL ({size:,} orders,"
            f" {2 * size:,} list entries, {TENANTS} tenants) in "
            f"{time.perf_counter() - began:.1f}s: only the read path is measured"
        )
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
    return judge(report, ours, baseline)


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


def judge(report: Report, ours: list[Load], baseline: list[Load]) -> Report:
    failures = sum(load.failures for load in ours + baseline)
    if failures:
        report.note(f"WARNING: {failures} requests failed (not counted)")
    ours_rate = sum(load.per_second for load in ours) / len(ours)
    bare_rate = sum(load.per_second for load in baseline) / len(baseline)
    p99 = max(load.p99_ms for load in ours)
    report.figure("ours: GET the list (serve --api-only)", describe(ours, ours_rate))
    report.figure("baseline: bare aiohttp JSON handler", describe(baseline, bare_rate))
    report.target(
        "p99 latency", f"{p99:.1f} ms", f"< {TARGET_P99_MS:.0f} ms", p99 < TARGET_P99_MS
    )
    ratio = ours_rate / bare_rate
    report.target(
        "requests/s over the bare handler's",
        f"{ratio:.2f}x",
        f">= {TARGET_RATIO}x",
        ratio >= TARGET_RATIO,
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
    parser.add_argument("--clients", type=int, default=8, help="(default 8)")
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="each of the 4 runs (default 5)"
    )
    args = parser.parse_args()
    main_of(lambda: run(args.size, args.clients, args.seconds))


if __name__ == "__main__":
    main()
