"""Every benchmark still runs: `bench/run.py --size tiny`, end to end on PostgreSQL.

The benchmarks are not run by anything else in `make test`, so a change to the
code they drive (a renamed method, a new argument) used to go unnoticed until
someone ran `make bench`. Here each one runs at a tiny size, with its real
servers, worker and load, and must print its figures and verdicts; what the
figures are is not checked (speed is for `make bench` to show, not for a test).
`mypy` checks bench/ too (`make lint`).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_URL, need_postgres

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.postgres


def run_benchmarks(only: str, tmp_path: Path) -> tuple[str, str]:
    """(what bench/run.py printed, the table it wrote) for `--only only`."""
    need_postgres()
    table = tmp_path / "bench.md"
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--size",
            "tiny",
            "--only",
            only,
            "--out",
            str(table),
        ],
        cwd=ROOT,
        env={**os.environ, "PM_ORDER_BENCH_POSTGRES_URL": POSTGRES_URL},
        capture_output=True,
        text=True,
        timeout=280,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-6000:]
    return output, table.read_text(encoding="utf-8")


def verdict_rows(table: str, key: str) -> list[str]:
    rows = [line for line in table.splitlines() if line.startswith(f"| {key} |")]
    for row in rows:
        assert any(v in row for v in ("| PASS |", "| FAIL |", "| CANNOT JUDGE: ")), row
    return rows


@pytest.mark.parametrize(
    ("name", "key", "printed"),
    [
        ("peers", "1. peers", ["pm-order: POST an order", "CRUD: POST an order"]),
        ("create", "1. create", ["ours: POST an order", "baseline: bare INSERT"]),
        ("lag", "3. lag", ["ours: order created to shown", "INSERT+NOTIFY"]),
        ("projector", "4. projector", ["ours: Projector", "ProjectionRunner"]),
        ("generation", "6. generation", ["new generation caught up"]),
        ("notifications", "7. notifications", ["POST an order, with it"]),
    ],
)
def test_a_benchmark_prints_its_figures(
    name: str, key: str, printed: list[str], tmp_path: Path
) -> None:
    output, table = run_benchmarks(name, tmp_path)
    assert verdict_rows(table, key), table
    for text in printed:
        assert text in output, output[-6000:]
    assert "ERROR" not in table


def test_growth_and_list_on_its_store_print_their_figures(tmp_path: Path) -> None:
    """Together, list measures on the store growth kept (as in `make bench`)."""
    output, table = run_benchmarks("growth,list", tmp_path)
    growth = verdict_rows(table, "5. growth")
    assert len([row for row in growth if "CANNOT JUDGE" not in row]) == 4, table
    # The rebuild's targets (its time, the answers meanwhile) are at a million
    # orders, not at 300.
    rebuild = [row for row in growth if "rebuild" in row]
    assert len(rebuild) == 2, table
    for row in rebuild:
        assert "CANNOT JUDGE: the largest store is 300 orders" in row, table
    assert len(verdict_rows(table, "2. list")) == 2, table
    # Growth's table has a row for each size; list says whose store it measured.
    for size in ("| 100 |", "| 300 |"):
        assert size in output, output[-6000:]
    assert "the growth benchmark's store of this run" in output, output[-6000:]
    assert "ours: GET the list" in output
    assert "ERROR" not in table
    # The store they shared is dropped afterwards.
    [shared] = set(re.findall(r"--keep-store (bench_shared_\w+)", output))
    import psycopg

    with psycopg.connect(POSTGRES_URL) as connection:
        left = connection.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (shared,)
        ).fetchall()
    assert not left, f"{shared} was left behind"


def test_growth_of_one_size_cannot_judge_growth() -> None:
    """One size compared with itself would pass whatever it measured."""
    need_postgres()
    completed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_growth.py"),
            *("--sizes", "100", "--creates", "20", "--seconds", "1"),
            *("--backlog", "20", "--rebuild-seconds", "60"),
            *("--rebuild-post-rate", "5"),
        ],
        cwd=ROOT,
        env={**os.environ, "PM_ORDER_BENCH_POSTGRES_URL": POSTGRES_URL},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-6000:]
    verdicts = re.findall(r"target [^:]*: (PASS|FAIL|CANNOT JUDGE: [^(]*)", output)
    assert verdicts, output[-6000:]
    assert all(v.startswith("CANNOT JUDGE") for v in verdicts), output[-6000:]
    assert "CANNOT JUDGE: one size" in output, output[-6000:]


def test_list_alone_grows_its_own_store(tmp_path: Path) -> None:
    output, table = run_benchmarks("list", tmp_path)
    assert len(verdict_rows(table, "2. list")) == 2, table
    assert "generated through the event store" in output or "events written" in output
