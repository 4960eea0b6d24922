"""pm-order against what a user would write instead (issue 27, target 1).

Three set-ups, one process each, each on a fresh PostgreSQL database of its own
on the benchmark's server:
- pm-order: `serve` (one process: API and worker);
- a plain CRUD service (bench/peers/crud_service.py: aiohttp and a psycopg pool,
  the servers locked FOR UPDATE, the rule checked, the order inserted);
- the eventsourcing library as documented (bench/peers/library_service.py: one
  aggregate per POST, `app.save` in the default executor, no rule, no view).
C concurrent clients POST one-server orders, each for a server of its own; the
set-ups take turns round by round (the first of a round rotates), so that the
drift of a shared machine's load falls on all three. Each set-up's rate is its
orders over its time in all rounds; the CPU each server process spent per order
is read from /proc.

    .venv/bin/python bench/bench_peers.py [--orders 2000] [--rounds 3] [--clients 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import psycopg
from bench_create_orders import DEST, SOURCE, Run, post_orders, register_servers
from harness import (
    POSTGRES_URL,
    PYTHON,
    ROOT,
    Process,
    Report,
    check_postgres,
    free_port,
    machine_line,
    main_of,
    pm_order_process,
    running,
    tokens_file,
)
from psycopg import sql

TARGET_CRUD: Final = 1.5
TARGET_LIBRARY: Final = 2.0
WARM_UP: Final = 40
SETUPS: Final = ("pm-order", "CRUD", "library")


@contextmanager
def fresh_database(name: str) -> Iterator[str]:
    """A new database `name` on the benchmark's server (its URL), dropped after."""
    check_postgres()
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)
            )
        )
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}", query=""))
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)
                )
            )


def peer_process(name: str, script: str, url: str, tokens: Path) -> Process:
    port = free_port()
    argv = [PYTHON, str(ROOT / "bench" / "peers" / script)]
    argv += ["--port", str(port), "--database-url", url, "--tokens", str(tokens)]
    return Process(name, argv, port=port)


def crud_servers(url: str, snids: list[str]) -> None:
    """The CRUD service's servers, owned by SOURCE (its tables exist once it
    answers)."""
    with (
        psycopg.connect(url) as connection,
        connection.cursor() as cursor,
        cursor.copy("COPY servers (snid, project) FROM STDIN") as copy,
    ):
        for snid in snids:
            copy.write_row((snid, SOURCE))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Measured:
    runs: list[Run]
    cpu: float = 0.0

    @property
    def joined(self) -> Run:
        return Run.joined(self.runs)


def run(orders: int, rounds: int, clients: int) -> Report:
    report = Report(
        f"pm-order against a CRUD service and the eventsourcing library"
        f" ({clients} clients, one process each)",
        key="1. peers",
    )
    report.note(machine_line())
    each = WARM_UP + orders * rounds
    prefix = f"bench_peers_{secrets.token_hex(4)}"
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        tokens, token_of = tokens_file(directory, [SOURCE, DEST])
        urls = {
            setup: stack.enter_context(fresh_database(f"{prefix}_{n}"))
            for n, setup in enumerate(SETUPS)
        }
        snids = register_servers(urls["pm-order"], each)
        processes = {
            "pm-order": pm_order_process("serve", urls["pm-order"], tokens=tokens),
            "CRUD": peer_process("crud", "crud_service.py", urls["CRUD"], tokens),
            "library": peer_process(
                "library", "library_service.py", urls["library"], tokens
            ),
        }
        for process in processes.values():
            stack.enter_context(running(process))
        for process in processes.values():
            process.wait_until_answering("/")
        crud_servers(urls["CRUD"], snids)
        measured = {setup: Measured([]) for setup in SETUPS}
        token = token_of[SOURCE]
        for process in processes.values():
            asyncio.run(post_orders([process.base_url], token, snids[:WARM_UP], 2))
        for r in range(rounds):
            first = WARM_UP + r * orders
            turn = SETUPS[r % len(SETUPS) :] + SETUPS[: r % len(SETUPS)]
            for setup in turn:
                process = processes[setup]
                cpu = cpu_seconds(process.popen.pid)
                measured[setup].runs.append(
                    asyncio.run(
                        post_orders(
                            [process.base_url],
                            token,
                            snids[first : first + orders],
                            clients,
                        )
                    )
                )
                measured[setup].cpu += cpu_seconds(process.popen.pid) - cpu
    rates = {}
    for setup in SETUPS:
        joined = measured[setup].joined
        rates[setup] = joined.per_second
        per_round = ", ".join(f"{r.per_second:,.0f}" for r in measured[setup].runs)
        report.figure(
            f"{setup}: POST an order",
            f"{joined.per_second:,.0f} orders/s  (rounds {per_round};"
            f" {joined.latency_text()}; its process's CPU"
            f" {1000 * measured[setup].cpu / joined.count:.2f} ms per order)",
        )
    for peer, target in (("CRUD", TARGET_CRUD), ("library", TARGET_LIBRARY)):
        ratio = rates["pm-order"] / rates[peer]
        report.target(
            f"create vs {peer}, {clients} clients",
            f"{rates['pm-order']:,.0f} orders/s",
            f">= {target}x",
            ratio >= target,
            baseline=f"{peer} {rates[peer]:,.0f} orders/s",
            ratio=f"{ratio:.2f}x",
        )
    report.note(f"{orders:,} orders per set-up per round, {rounds} rounds")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000, help="per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    main_of(lambda: run(args.orders, args.rounds, args.clients))


if __name__ == "__main__":
    main()
