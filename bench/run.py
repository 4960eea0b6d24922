"""Run the five benchmarks (or some) and print one table of their verdicts.

    .venv/bin/python bench/run.py [--only create,list] [--size small]
    make bench [ONLY=list] [SIZE=small]

Each benchmark runs in a process of its own, bounded in time (it is stopped past
its limit, and the table says so); traffic goes to 127.0.0.1 only. The table is
also written to var/bench-latest.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from harness import ROOT, load_average


@dataclass(frozen=True)
class Benchmark:
    script: str
    small: tuple[str, ...]
    full: tuple[str, ...]
    limit_seconds: float  # at the full size; the small one gets a third


BENCHMARKS: Final = {
    "create": Benchmark(
        "bench_create_orders.py",
        ("--orders", "400", "--baseline-seconds", "2"),
        ("--orders", "4000"),
        300,
    ),
    "list": Benchmark(
        "bench_list_orders.py",
        ("--size", "10000", "--seconds", "3"),
        ("--size", "100000"),
        900,
    ),
    "lag": Benchmark(
        "bench_view_lag.py",
        ("--seconds", "5"),
        ("--seconds", "20"),
        300,
    ),
    "projector": Benchmark(
        "bench_projector.py",
        ("--events", "20000"),
        ("--events", "200000"),
        900,
    ),
    "growth": Benchmark(
        "bench_growth.py",
        ("--sizes", "1000,10000"),
        ("--sizes", "10000,100000"),
        1500,
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated, of: {', '.join(BENCHMARKS)} (default: all)",
    )
    parser.add_argument("--size", choices=("small", "full"), default="full")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}: {', '.join(BENCHMARKS)}")
    started = datetime.datetime.now(datetime.UTC)
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as f:
        results = Path(f.name)
    problems: list[str] = []
    try:
        for name in names:
            problem = run_one(name, BENCHMARKS[name], args.size, results)
            if problem:
                problems.append(problem)
        reports = [
            json.loads(line) for line in results.read_text().splitlines() if line
        ]
    finally:
        results.unlink(missing_ok=True)
    table = summary(reports, started, args.size, problems)
    print("\n" + table)
    out = ROOT / "var" / "bench-latest.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(table + "\n", encoding="utf-8")
    print(f"(written to {out.relative_to(ROOT)})")
    if problems:
        sys.exit(1)


def run_one(name: str, bench: Benchmark, size: str, results: Path) -> str:
    """Run one benchmark; returns what went wrong, or ""."""
    argv = [sys.executable, str(ROOT / "bench" / bench.script)]
    argv += list(bench.small if size == "small" else bench.full)
    limit = bench.limit_seconds / (3 if size == "small" else 1)
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
) -> str:
    lines = [
        f"pm-order benchmarks, {size} size, started {started:%Y-%m-%d %H:%M} UTC on"
        f" {os.cpu_count()} cores (load average at the end {load_average()})",
        "",
        "| benchmark | measure | ours | baseline (same run) | ratio | target"
        " | verdict | load (1/5/15 min) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for report in reports:
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
