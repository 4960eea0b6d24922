"""Create at each store size, right after the store's bulk was written and after
a CHECKPOINT: does a large store slow a create, or the bulk's aftermath?

For each size: a fresh schema is grown (bench/generate.py), a `pm-order serve`
(one process) started on it, and three runs of 3,000 one-server orders POSTed by
32 clients: the first at once (with py-spy attached to `serve` for its first
3 s, when it is installed: its samples go to var/create_after_bulk_<size>.txt),
then a CHECKPOINT, then two more. Each run prints its rate and the buffers that
PostgreSQL's backends had to write themselves meanwhile (dirty pages of the
bulk evicted by the run's own work).

    .venv/bin/python bench/create_after_bulk.py [SIZE ...]   # default 10000 1000000

Not part of `make bench`: a diagnosis of growth's "create at 1,000,000 vs at
10,000 orders" (bench/README.md, target 4).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Final

import psycopg
from bench_create_orders import DEST, SOURCE, post_orders, register_servers
from generate import grow
from harness import (
    POSTGRES_URL,
    fresh_schema,
    load_average,
    pm_order_process,
    running,
    tokens_file,
)

from service.store import open_store

ORDERS: Final = 3000
CLIENTS: Final = 32
WARM_UP: Final = 200
RUNS: Final = 3


def backend_writes() -> int:
    """Buffers PostgreSQL's backends have written themselves, so far."""
    with psycopg.connect(POSTGRES_URL) as connection:
        row = connection.execute(
            "SELECT buffers_backend FROM pg_stat_bgwriter"
        ).fetchone()
    return int(row[0]) if row else 0


def profiled(pid: int, size: int) -> subprocess.Popen[bytes] | None:
    """py-spy on `pid` for 3 s (GIL samples), if it is installed."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return None
    Path("var").mkdir(exist_ok=True)
    output = f"var/create_after_bulk_{size}.txt"
    sampling = ["--gil", "-r", "200", "-d", "3", "-f", "raw", "-o", output]
    return subprocess.Popen(
        [spy, "record", *sampling, "-p", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def measure(size: int) -> None:
    with ExitStack() as stack:
        schema = stack.enter_context(fresh_schema())
        store = open_store(schema.url)
        began = time.perf_counter()
        try:
            grow(store, size, deadline=began + 1200)
        finally:
            store.close()
        print(f"[{size:,}] grown in {time.perf_counter() - began:.0f} s", flush=True)
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        tokens, token_of = tokens_file(directory, [SOURCE, DEST])
        snids = register_servers(schema.url, WARM_UP + RUNS * ORDERS, first=10**7)
        serve = pm_order_process("serve", schema.url, tokens=tokens)
        stack.enter_context(running(serve))
        serve.wait_until_answering("/")
        token = token_of[SOURCE]
        asyncio.run(post_orders([serve.base_url], token, snids[:WARM_UP], 4))
        for run in range(RUNS):
            if run == 1:
                with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
                    connection.execute("CHECKPOINT")
            written = backend_writes()
            spy = profiled(serve.popen.pid, size) if run == 0 else None
            first = WARM_UP + run * ORDERS
            done = asyncio.run(
                post_orders(
                    [serve.base_url], token, snids[first : first + ORDERS], CLIENTS
                )
            )
            if spy is not None:
                spy.wait()
            when = "right after the bulk" if run == 0 else "after a CHECKPOINT"
            print(
                f"[{size:,}] run {run + 1}, {when}"
                f"{' (py-spy attached 3 s)' if spy else ''}: "
                f"{done.per_second:,.0f} orders/s ({done.latency_text()}); buffers "
                f"written by backends {backend_writes() - written}; "
                f"load {load_average()}",
                flush=True,
            )


def main() -> None:
    for size in [int(a) for a in sys.argv[1:]] or [10_000, 1_000_000]:
        measure(size)


if __name__ == "__main__":
    main()
