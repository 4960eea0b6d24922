"""`pm-order report`, run as a user would run it, in each format, on each store."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from language import width
from tests.conftest import BACKENDS, POSTGRES_URL, drop_postgres_schema, need_postgres
from tests.integration.processes import run_pm_order
from tests.integration.report_scenario import DAYS, PROJ_A_SUMMARY, record_orders


def pm_order(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PM_ORDER_")}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=cwd, env=clean, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store holding the orders of report_scenario, not yet projected."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/report.sqlite3"
        record_orders(url)
        yield url
        return
    need_postgres()
    schema = f"report_{os.urandom(6).hex()}"
    url = f"{POSTGRES_URL}?schema={schema}"
    record_orders(url)
    yield url
    drop_postgres_schema(schema)


def report(database_url: str, cwd: Path, *args: str) -> str:
    """The standard output of a successful `pm-order report ARGS`."""
    result = pm_order("--database-url", database_url, "report", *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_default_format_is_a_table_for_people(
    database_url: str, tmp_path: Path
) -> None:
    # when
    text = report(database_url, tmp_path)
    # then
    lines = text.splitlines()
    assert lines[0] == "All projects, from 2026-11-23 to 2026-11-27 (days in UTC)"
    proj_a = next(line for line in lines if line.startswith("proj-a "))
    assert proj_a.split() == [
        "proj-a", "5", "3", "1", "1", "2", "3", "0", "4", "15m", "50s", "1h", "19m"
    ]  # fmt: skip


def test_the_csv_format_parses_into_day_rows_and_project_rows(
    database_url: str, tmp_path: Path
) -> None:
    # when
    rows = list(
        csv.DictReader(io.StringIO(report(database_url, tmp_path, "--format", "csv")))
    )
    # then
    day_rows = [r for r in rows if r["kind"] == "day"]
    assert sorted({r["day"] for r in day_rows}) == [
        d for d in DAYS if d != "2026-11-26"
    ]
    (proj_a,) = [r for r in rows if r["kind"] == "project" and r["project"] == "proj-a"]
    assert proj_a == {
        "kind": "project", "day": "",
        **{k: str(v) for k, v in PROJ_A_SUMMARY.items()},
    }  # fmt: skip


def test_the_json_format_parses_with_days_and_projects(
    database_url: str, tmp_path: Path
) -> None:
    # when
    body = json.loads(report(database_url, tmp_path, "--format", "json"))
    # then
    assert body["time_zone"] == "UTC"
    assert {d["project"] for d in body["days"]} == {"proj-a", "proj-b", "proj-c"}
    assert [p["project"] for p in body["projects"]] == ["proj-a", "proj-b", "proj-c"]
    assert body["projects"][0] == PROJ_A_SUMMARY


def test_the_html_format_writes_one_self_contained_file(
    database_url: str, tmp_path: Path
) -> None:
    # given
    output = tmp_path / "report.html"
    # when
    result = pm_order(
        "--database-url", database_url, "report", "--format", "html",
        "--output", str(output), cwd=tmp_path,
    )  # fmt: skip
    # then
    assert result.returncode == 0, result.stderr
    page = output.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 2
    for outside in ("<script", "<link", "<img", "src=", "href=", "url(", "://"):
        assert outside not in page


def test_tenant_and_days_narrow_the_report(database_url: str, tmp_path: Path) -> None:
    # when
    body = json.loads(
        report(
            database_url, tmp_path, "--format", "json", "--tenant", "proj-b",
            "--since", "2026-11-24", "--until", "2026-11-25",
        )
    )  # fmt: skip
    # then
    assert {(d["project"], d["day"]) for d in body["days"]} == {
        ("proj-b", "2026-11-24"),
        ("proj-b", "2026-11-25"),
    }
    assert [p["project"] for p in body["projects"]] == ["proj-b"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2026-02-30"], "--since: '2026-02-30' is not a valid date"),
        (["--until", "27/11/2026"], "--until: '27/11/2026' is not a valid date"),
        (["--since", "2026-11-28", "--until", "2026-11-27"], "is after --until"),
    ],
    ids=["no-such-day", "not-iso", "since-after-until"],
)
def test_a_bad_date_exits_2_with_a_one_line_message(
    tmp_path: Path, args: list[str], message: str
) -> None:
    # when
    result = pm_order("report", *args, cwd=tmp_path)
    # then
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_help_names_every_format(tmp_path: Path) -> None:
    # when
    result = pm_order("report", "--help", cwd=tmp_path)
    # then
    assert result.returncode == 0
    assert "{table,csv,json,html}" in result.stdout
    assert "days in UTC" in result.stdout


def test_with_pm_order_language_zh_cn_the_table_is_chinese_and_aligned(
    database_url: str, tmp_path: Path
) -> None:
    # when
    result = run_pm_order(
        "--database-url", database_url, "report", cwd=tmp_path,
        env={"PM_ORDER_LANGUAGE": "zh_CN"},
    )  # fmt: skip
    # then
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "全部项目，2026-11-23 至 2026-11-27（按 UTC 计日）"
    header = lines[2]
    assert header.split() == [
        "项目", "已申请", "已接受", "已拒绝", "未完成", "迁入", "迁出", "警告",
        "已决定", "中位数", "P95",
    ]  # fmt: skip
    proj_a = next(line for line in lines if line.startswith("proj-a "))
    assert proj_a.split() == [
        "proj-a", "5", "3", "1", "1", "2", "3", "0", "4", "15分50秒", "1小时19分"
    ]  # fmt: skip
    # numbers end under the end of their heading, Chinese characters two columns wide
    assert width(proj_a) == width(header)
    assert (
        lines[-1]
        == "迁入、迁出：当天迁入和迁出的服务器。中位数、P95：从申请到决定的时间。"
    )


def test_the_default_language_keeps_the_english_table(
    database_url: str, tmp_path: Path
) -> None:
    # when
    text = report(database_url, tmp_path)
    # then
    assert text.splitlines()[2].split()[:3] == ["PROJECT", "REQUESTED", "ACCEPTED"]
