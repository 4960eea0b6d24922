"""Run the six benchmarks (or some) and print one table of their verdicts.

    .venv/bin/python bench/run.py [--only create,list] [--size small|tiny]
    make bench [ONLY=list] [SIZE=small]

Each benchmark runs in a process of its own, bounded in time (it is stopped past
its limit, and the table says so); traffic goes to 127.0.0.1 only. The table is
also written to var/bench-latest.md. With both list and growth, the list
benchmark runs after growth on growth's store at its largest size (1,000,000
orders at full size) instead of generating the same store again. `--size tiny`
runs every benchmark end to end in seconds (tests/bench runs it in `make test`;
its figures mean nothing).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from harness import ROOT, drop_schema, load_average


@dataclass(frozen=True)
class Benchmark:
    script: str
    sizes: dict[str, tuple[str, ...]]  # the arguments at each size
    limits: dict[str, float]  # seconds before it is stopped, at each size


SIZES: Final = ("full", "small", "tiny")

# tiny: every benchmark end to end in seconds, for tests/bench (figures meaningless).
BENCHMARKS: Final = {
    "peers": Benchmark(
        "bench_peers.py",
        {
            "full": ("--orders", "2000", "--rounds", "3"),
            "small": ("--orders", "400", "--rounds", "2"),
            "tiny": ("--orders", "30", "--rounds", "1", "--clients", "4"),
        },
        {"full": 400, "small": 200, "tiny": 90},
    ),
    "create": Benchmark(
        "bench_create_orders.py",
        {
            "full": ("--orders", "4000"),
            "small": ("--orders", "400", "--baseline-seconds", "2"),
            "tiny": ("--orders", "30", "--clients", "4", "--baseline-seconds", "0.3"),
        },
        {"full": 300, "small": 100, "tiny": 60},
    ),
    "list": Benchmark(
        "bench_list_orders.py",
        {
            "full": ("--size", "1000000", "--generate-seconds", "1200"),
            "small": ("--size", "10000", "--seconds", "3"),
            "tiny": ("--size", "300", "--seconds", "1", "--clients", "4"),
        },
        # Alone it generates its store; after growth it reuses growth's (below).
        {"full": 1800, "small": 300, "tiny": 60},
    ),
    "lag": Benchmark(
        "bench_view_lag.py",
        {
            "full": ("--seconds", "20"),
            "small": ("--seconds", "5"),
            "tiny": ("--seconds", "1", "--rate", "20"),
        },
        {"full": 300, "small": 100, "tiny": 60},
    ),
    "projector": Benchmark(
        "bench_projector.py",
        {
            "full": ("--events", "200000"),
            "small": ("--events", "20000"),
            "tiny": ("--events", "2000", "--library-events", "100"),
        },
        {"full": 900, "small": 300, "tiny": 60},
    ),
    "growth": Benchmark(
        "bench_growth.py",
        {
            "full": (
                "--sizes",
                "10000,100000,1000000",
                "--generate-seconds",
                "900",
                "--rebuild-seconds",
                "240",
            ),
            "small": ("--sizes", "1000,10000", "--rebuild-seconds", "120"),
            "tiny": (
                "--sizes",
                "100,300",
                "--creates",
                "20",
                "--seconds",
                "1",
                "--backlog",
                "20",
                "--rebuild-seconds",
                "60",
                "--rebuild-post-rate",
                "5",
            ),
        },
        {"full": 2100, "small": 600, "tiny": 200},
    ),
    "generation": Benchmark(
        "bench_generation.py",
        {
            "full": ("--orders", "1000000", "--rate", "200"),
            "small": ("--orders", "20000", "--rate", "100", "--warm", "5"),
            "tiny": ("--orders", "200", "--rate", "20", "--warm", "1", "--limit", "60"),
        },
        {"full": 3600, "small": 600, "tiny": 120},
    ),
    "notifications": Benchmark(
        "bench_notifications.py",
        {
            "full": ("--orders", "1000", "--seconds", "10"),
            "small": ("--orders", "300", "--seconds", "3"),
            "tiny": (
                "--orders",
                "30",
                "--clients",
                "4",
                "--seconds",
                "1",
                "--rate",
                "20",
                "--also-rate",
                "10",
            ),
        },
        {"full": 400, "small": 150, "tiny": 90},
    ),
}

# When both run, growth goes first and keeps its store, and list measures on it
# (at growth's largest size) instead of generating the same store again.
REUSED_LIST_LIMITS: Final = {"full": 300, "small": 120, "tiny": 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated, of: {', '.join(BENCHMARKS)} (default: all)",
    )
    parser.add_argument(
        "--size",
        choices=SIZES,
        default="full",
        help="full (default), small (a quick look), tiny (a smoke test: seconds)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "var" / "bench-latest.md",
        help="where the table is written too (default var/bench-latest.md)",
    )
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}: {', '.join(BENCHMARKS)}")
    started = datetime.datetime.now(datetime.UTC)
    began = time.monotonic()
    shared = ""
    if "list" in names and "growth" in names:
        names.remove("list")
        names.insert(names.index("growth") + 1, "list")
        shared = f"bench_shared_{secrets.token_hex(4)}"
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as f:
        results = Path(f.name)
    problems: list[str] = []
    try:
        for name in names:
            bench = BENCHMARKS[name]
            argv = list(bench.sizes[args.size])
            limit = bench.limits[args.size]
            if shared and name == "growth":
                argv += ["--keep-store", shared]
            if shared and name == "list":
                argv += ["--reuse-store", shared]
                limit = REUSED_LIST_LIMITS[args.size]
            problem = run_one(name, bench.script, argv, limit, results)
            if problem:
                problems.append(problem)
            if shared and name == "list":
                drop_schema(shared)
        reports = [
            json.loads(line) for line in results.read_text().splitlines() if line
        ]
    finally:
        results.unlink(missing_ok=True)
        if shared:
            drop_schema(shared)
    elapsed = time.monotonic() - began
    table = summary(reports, started, args.size, problems, elapsed)
    print("\n" + table)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n", encoding="utf-8")
    print(f"(written to {out})")
    if problems:
        sys.exit(1)


def run_one(
    name: str, script: str, arguments: list[str], limit: float, results: Path
) -> str:
    """Run one benchmark; returns what went wrong, or ""."""
    argv = [sys.executable, str(ROOT / "bench" / script), *arguments]
    print(f"\n#### {name}: {' '.join(argv[1:])} (stopped after {limit:.0f}s)")
    sys.stdout.flush()
    env = {**os.environ, "PM_ORDER_BENCH_RESULTS": str(results)}
    began = time.monotonic()
    process = subprocess.Popen(argv, cwd=ROOT, env=env)
    try:
        code = process.wait(limit)
    except subprocess.TimeoutExpired:
        # SIGTERM unwinds the benchmark: its servers stop, its schema is dropped.
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return f"{name}: stopped after {limit:.0f}s"
    print(f"({name} took {time.monotonic() - began:.0f}s)")
    return "" if code == 0 else f"{name}: exited with {code}"


def summary(
    reports: list[dict[str, object]],
    started: datetime.datetime,
    size: str,
    problems: list[str],
    elapsed: float = 0.0,
) -> str:
    lines = [
        f"pm-order benchmarks, {size} size, started {started:%Y-%m-%d %H:%M} UTC on"
        f" {os.cpu_count()} cores, {elapsed / 60:.1f} minutes (load average at the"
        f" end {load_average()})",
        "",
        "| benchmark | measure | ours | baseline (same run) | ratio | target"
        " | verdict | load (1/5/15 min) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    # In the benchmarks' order (list may have run after growth, on its store).
    for report in sorted(reports, key=lambda r: str(r["key"] or r["title"])):
        rows = report["rows"]
        assert isinstance(rows, list)
        for row in rows:
            if not row["verdict"]:
                continue
            name = report["key"] or report["title"]
            target = row["target"].removeprefix("target ")
            lines.append(
                f"| {name} | {row['label']} | {row['value']}"
                f" | {row['baseline']} | {row['ratio']} | {target}"
                f" | {row['verdict']} | {row['load']} |"
            )
    for problem in problems:
        lines.append(f"| {problem.split(':')[0]} | | | | | | ERROR: {problem} | |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
