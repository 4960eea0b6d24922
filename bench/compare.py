"""Old code against new, alternately: creates per second of `serve` at two commits.

The code at `--old` (default HEAD) is unpacked from git into a temporary
directory, and the working tree is the new code; each runs `pm-order serve` (one
process, API and worker) on a fresh database of its own, and C clients POST
one-server orders to each in turn, round by round (the first of a round
alternates), so that the drift of a shared machine's load falls on both. Each
one's rate is its orders over its time in all rounds; the CPU its process spent
per order is read from /proc.

    .venv/bin/python bench/compare.py [--old REV] [--orders 2000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import secrets
import subprocess
import tarfile
import tempfile
from contextlib import ExitStack
from pathlib import Path

from bench_create_orders import DEST, SOURCE, post_orders, register_servers
from bench_peers import WARM_UP, Measured, cpu_seconds, fresh_database
from harness import (
    PYTHON,
    ROOT,
    Process,
    Report,
    free_port,
    machine_line,
    main_of,
    pm_order_env,
    running,
    tokens_file,
)


def unpacked(rev: str, directory: Path) -> Path:
    """The tree of commit `rev` in `directory`."""
    archive = subprocess.run(
        ["git", "archive", rev], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    return directory


def serve_at(code: Path, url: str, tokens: Path) -> Process:
    """`python -m cli serve` of the code in `code` (its packages first on the
    path: the current directory comes before the installed ones)."""
    port = free_port()
    argv = [PYTHON, "-m", "cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    env = pm_order_env(url, tokens)
    return Process(f"serve-{code.name}", argv, env=env, port=port, cwd=code)


def run(old: str, orders: int, rounds: int, clients: int) -> Report:
    report = Report(f"Old code ({old}) against new (the working tree), serve")
    report.note(machine_line())
    names = (f"old {old}", "new")
    each = WARM_UP + orders * rounds
    prefix = f"bench_compare_{secrets.token_hex(4)}"
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        code = {names[0]: unpacked(old, directory / "old"), names[1]: ROOT}
        tokens, token_of = tokens_file(directory, [SOURCE, DEST])
        urls = {
            name: stack.enter_context(fresh_database(f"{prefix}_{n}"))
            for n, name in enumerate(names)
        }
        snids = {name: register_servers(urls[name], each) for name in names}
        processes = {
            name: stack.enter_context(running(serve_at(code[name], urls[name], tokens)))
            for name in names
        }
        for process in processes.values():
            process.wait_until_answering("/")
        token = token_of[SOURCE]
        for name, process in processes.items():
            asyncio.run(
                post_orders([process.base_url], token, snids[name][:WARM_UP], 2)
            )
        measured = {name: Measured([]) for name in names}
        for r in range(rounds):
            first = WARM_UP + r * orders
            for name in names[r % 2 :] + names[: r % 2]:
                process = processes[name]
                cpu = cpu_seconds(process.popen.pid)
                measured[name].runs.append(
                    asyncio.run(
                        post_orders(
                            [process.base_url],
                            token,
                            snids[name][first : first + orders],
                            clients,
                        )
                    )
                )
                measured[name].cpu += cpu_seconds(process.popen.pid) - cpu
    for name in names:
        joined = measured[name].joined
        cpu_ms = 1000 * measured[name].cpu / joined.count
        per_round = ", ".join(f"{r.per_second:,.0f}" for r in measured[name].runs)
        report.figure(
            f"{name}: POST an order",
            f"{joined.per_second:,.0f} orders/s  (rounds {per_round};"
            f" {joined.latency_text()}; CPU {cpu_ms:.2f} ms per order)",
        )
    new, old_run = measured[names[1]].joined, measured[names[0]].joined
    report.note(f"new / old: {new.per_second / old_run.per_second:.2f}x")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="HEAD", help="a commit (default HEAD)")
    parser.add_argument("--orders", type=int, default=2000, help="per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    main_of(lambda: run(args.old, args.orders, args.rounds, args.clients))


if __name__ == "__main__":
    main()
