"""Where the API's time goes: py-spy samples of `pm-order serve` under load.

The store is grown (bench/generate.py), a worker projects, and a `serve
--api-only` process answers first the list load (wrk or an aiohttp client, 16
connections) and then the create load (32 clients POSTing); py-spy samples the
serve process during each (the thread holding the GIL, 100 times a second: where
Python spends CPU), and the samples are broken down by the innermost frame of
ours or of a library.

    .venv/bin/python bench/profile.py [--size 10000] [--seconds 10]

Needs py-spy (pip install py-spy; it reads the process's memory, so ptrace must
be allowed, as it is for root here).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Final

from bench_create_orders import DEST, SOURCE, post_orders, register_servers
from bench_list_orders import list_requests
from generate import TENANTS, grow
from harness import (
    fresh_schema,
    http_load,
    machine_line,
    pm_order_process,
    running,
    tokens_file,
)

from service.store import open_store

# py-spy is a dev extra: in the venv beside this Python, even when the venv's bin/
# is not on PATH (as when the script is run as .venv/bin/python bench/profile.py).
PY_SPY: Final = str(
    next(
        (p for p in [Path(sys.executable).with_name("py-spy")] if p.exists()),
        shutil.which("py-spy") or "py-spy",
    )
)

# Innermost first: the first frame (from the leaf up) whose file matches a
# pattern names the sample's category.
CATEGORIES: Final = (
    ("psycopg/", "psycopg (driver: send, wait, read rows)"),
    ("psycopg_pool/", "psycopg_pool (getting a connection)"),
    ("eventsourcing/", "eventsourcing (encode, lock, insert, read aggregates)"),
    ("json/", "json (stdlib encode/decode)"),
    ("zoneinfo", "time formatting"),
    ("aiohttp/", "aiohttp (HTTP parse, respond)"),
    ("asyncio/", "asyncio (event loop, thread-pool hop)"),
    ("concurrent/", "thread pool (run_in_executor)"),
    ("threading.py", "thread pool (run_in_executor)"),
    ("/domain/", "domain (ours)"),
    ("/projections/", "projections (ours)"),
    ("/api/", "api (ours)"),
    ("/service/", "service (ours)"),
)


def category(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for pattern, name in CATEGORIES:
            if pattern in frame:
                return name
    return "other"


def breakdown(raw: Path) -> list[tuple[str, float]]:
    counts: Counter[str] = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if n.isdigit():
            counts[category(stack)] += int(n)
    total = sum(counts.values()) or 1
    return [(name, 100 * n / total) for name, n in counts.most_common()]


def sample(pid: int, seconds: float, out: Path) -> threading.Thread:
    def record() -> None:
        subprocess.run(
            [
                PY_SPY,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(int(seconds)),
                "--rate",
                "100",
                "--format",
                "raw",
                "--output",
                str(out),
                "--nonblocking",
                "--gil",  # only the thread holding the GIL: Python CPU time
            ],
            check=True,
            capture_output=True,
        )

    thread = threading.Thread(target=record)
    thread.start()
    return thread


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--orders", type=int, default=2000, help="POSTed")
    args = parser.parse_args()
    print(machine_line())
    with fresh_schema() as schema, tempfile.TemporaryDirectory() as directory:
        store = open_store(schema.url)
        grow(store, args.size)
        store.close()
        snids = register_servers(schema.url, args.orders)
        projects = [f"proj-{k}" for k in range(TENANTS)] + [SOURCE, DEST]
        tokens, token_of = tokens_file(Path(directory), projects)
        worker = pm_order_process("worker", schema.url)
        serve = pm_order_process("serve", schema.url, tokens=tokens, api_only=True)
        with running(worker), running(serve):
            serve.wait_until_answering("/mana_api/openapi.json")
            raw = Path(directory) / "list.txt"
            spy = sample(serve.popen.pid, args.seconds, raw)
            load = http_load(
                serve.base_url,
                list_requests(args.size, token_of),
                concurrency=16,
                seconds=args.seconds,
            )
            spy.join()
            print(
                f"\nGET list, 16 connections: {load.per_second:,.0f} requests/s,"
                f" p99 {load.p99_ms:.1f} ms"
            )
            for name, share in breakdown(raw):
                print(f"  {share:5.1f}%  {name}")
            raw = Path(directory) / "create.txt"
            spy = sample(serve.popen.pid, args.seconds, raw)
            run = asyncio.run(
                post_orders([serve.base_url], token_of[SOURCE], snids, 32)
            )
            spy.join()
            print(
                f"\nPOST order, 32 clients: {run.per_second:,.0f} orders/s"
                f" ({run.latency_text()})"
            )
            for name, share in breakdown(raw):
                print(f"  {share:5.1f}%  {name}")


if __name__ == "__main__":
    main()
