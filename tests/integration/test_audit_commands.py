"""`pm-order orders history|show`, `machines history` and `events export|import`,
run as a user would run them, on both stores."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cli.event_archive import export_events
from domain.service import OrderService
from projections.server_ownership import ServerRow
from service.store import open_store
from tests.application.conftest import decide, request
from tests.conftest import (
    BACKENDS,
    POSTGRES_URL,
    FakeClock,
    drop_postgres_schema,
    need_postgres,
)
from tests.integration.test_command_line import pm_order

SHANGHAI = {"PM_ORDER_TIMEZONE": "Asia/Shanghai"}


def _postgres_url() -> str:
    need_postgres()
    return f"{POSTGRES_URL}?schema=cli_audit_{os.urandom(6).hex()}"


def _schema(url: str) -> str | None:
    return url.split("?schema=")[1] if "?schema=" in url else None


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    url = (
        f"sqlite:///{tmp_path}/cli.sqlite3"
        if request.param == "sqlite"
        else _postgres_url()
    )
    yield url
    if schema := _schema(url):
        drop_postgres_schema(schema)


@pytest.fixture
def other_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """An empty store on the other backend than `database_url`'s."""
    url = (
        _postgres_url()
        if database_url.startswith("sqlite")
        else f"sqlite:///{tmp_path}/other.sqlite3"
    )
    yield url
    if schema := _schema(url):
        drop_postgres_schema(schema)


@pytest.fixture
def orders(database_url: str) -> str:
    """The store at `database_url` with two orders moving SN-1 (times UTC):

    1: proj-a -> proj-b, SN-1 and SN-2, by alice at 09:05, warned at 10:05,
       accepted by bob at 10:15
    2: proj-b -> proj-c, SN-1, by bob at 10:25, refused by carol at 10:35
    """
    clock = FakeClock(datetime(2026, 11, 27, 9, 0, tzinfo=UTC))
    store = open_store(database_url)
    try:
        service = OrderService(store.app, clock=clock)
        service.register_servers([("SN-1", "proj-a"), ("SN-2", "proj-a")])
        clock.advance(minutes=5)
        first = service.request_transfer(
            source_project="proj-a",
            user="alice",
            snids=["SN-1", "SN-2"],
            dest_project="proj-b",
            mailto=["ops@example.com"],
        ).order_id
        assert first is not None
        clock.advance(hours=1)
        service.raise_warning(first, every=timedelta(hours=1), most=3)
        clock.advance(minutes=10)
        decide(service, [first], accept=True)
        clock.advance(minutes=10)
        second = request(
            service,
            ["SN-1"],
            source_project="proj-b",
            dest_project="proj-c",
            user="bob",
        )
        clock.advance(minutes=10)
        service.decide(
            project="proj-c",
            user="carol",
            roles=frozenset(),
            order_ids=[second],
            accept=False,
        )
        store.catch_up()
    finally:
        store.close()
    return database_url


def run(
    url: str,
    cwd: Path,
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    if stdin is None:
        return pm_order("--database-url", url, *args, cwd=cwd, env=env)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PM_ORDER_")}
    return subprocess.run(
        [sys.executable, "-m", "cli", "--database-url", url, *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def ok_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def shown_as_of(
    url: str, cwd: Path, moment: str, env: dict[str, str] | None = None
) -> Any:
    """Order 1 as `orders show 1 --as-of MOMENT --json` gives it."""
    shown = run(url, cwd, "orders", "show", "1", "--as-of", moment, "--json", env=env)
    return ok_json(shown)


def refused_with(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1, result.stdout
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# -- orders history -------------------------------------------------------------------


def test_orders_history_prints_the_timeline_as_a_table(
    orders: str, tmp_path: Path
) -> None:
    # given order 1, requested, warned about and accepted
    # when its history is asked for
    result = run(orders, tmp_path, "orders", "history", "1")
    # then a table shows each event with its time, actor, state change and change
    lines = ok_lines(result)
    assert lines[0] == "order 1: proj-a -> proj-b (times in UTC)"
    assert lines[1].split() == [
        "VERSION",
        "TIME",
        "EVENT",
        "USER",
        "PROJECT",
        "STATE",
        "CHANGE",
    ]
    assert lines[2].split()[:9] == [
        "1",
        "2026-11-27",
        "09:05:00",
        "requested",
        "alice",
        "proj-a",
        "-",
        "->",
        "unfinished",
    ]
    assert lines[3].split()[3:5] == ["warning", "pm-order"]
    assert lines[4].endswith("moved SN-1, SN-2 from proj-a to proj-b")


def test_orders_history_json_gives_times_in_the_configured_zone(
    orders: str, tmp_path: Path
) -> None:
    # given order 1 and PM_ORDER_TIMEZONE=Asia/Shanghai
    # when its history is asked for as JSON
    history = ok_json(
        run(orders, tmp_path, "orders", "history", "1", "--json", env=SHANGHAI)
    )
    # then each event's time is in that zone, with who acted and the state change
    assert history["timezone"] == "Asia/Shanghai"
    assert [
        (e["time"], e["event"], e["user"], e["project"], e["state_after"])
        for e in history["events"]
    ] == [
        ("2026-11-27T17:05:00+08:00", "requested", "alice", "proj-a", "unfinished"),
        ("2026-11-27T18:05:00+08:00", "warning", "pm-order", None, "unfinished"),
        ("2026-11-27T18:15:00+08:00", "accepted", "bob", "proj-b", "finished"),
    ]


def test_orders_history_of_an_unknown_order_exits_1_with_one_line(
    tmp_path: Path,
) -> None:
    # given an empty store (made: read-only commands never make one)
    made = run(f"sqlite:///{tmp_path}/empty.sqlite3", tmp_path, "db", "upgrade")
    assert made.returncode == 0, made.stderr
    # when the history of order 42 is asked for
    result = run(
        f"sqlite:///{tmp_path}/empty.sqlite3", tmp_path, "orders", "history", "42"
    )
    # then the command fails with one clear line
    refused_with(result, "order 42 not found")


# -- orders show ----------------------------------------------------------------------


def test_orders_show_as_of_reads_the_order_as_it_stood_then(
    orders: str, tmp_path: Path
) -> None:
    # given order 1, requested at 17:05 and warned about at 18:05 Shanghai time
    # when it is shown as of 18:00 in that zone
    order = shown_as_of(orders, tmp_path, "2026-11-27 18:00:00", env=SHANGHAI)
    # then it is the order as requested, unwarned
    assert (order["version"], order["state"], order["warning_count"]) == (
        1,
        "unfinished",
        0,
    )
    assert order["as_of"] == "2026-11-27T18:00:00+08:00"


def test_orders_show_accepts_a_moment_with_its_offset(
    orders: str, tmp_path: Path
) -> None:
    # given order 1, accepted at 10:15 UTC
    # when it is shown as of 10:15 UTC, written with an offset
    order = shown_as_of(orders, tmp_path, "2026-11-27T10:15:00+00:00")
    # then the acceptance at that very moment is part of it
    assert (order["version"], order["state"], order["decided_by"]) == (
        3,
        "finished",
        "bob",
    )


def test_orders_show_prints_the_order_now_as_a_table(
    orders: str, tmp_path: Path
) -> None:
    # given order 2, refused by carol
    # when it is shown with no moment
    result = run(orders, tmp_path, "orders", "show", "2")
    # then a table of its fields shows it as it is now
    fields = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in ok_lines(result))
    assert (fields["as of"], fields["version"]) == ("now", "2 of 2")
    assert (fields["state"], fields["decided_by"]) == ("refused", "carol")
    assert fields["decided_at"] == "2026-11-27 10:35:00"


def test_orders_show_before_the_request_exits_1_saying_so(
    orders: str, tmp_path: Path
) -> None:
    # given order 1, requested at 09:05 UTC
    # when it is shown as of 09:00
    result = run(
        orders, tmp_path, "orders", "show", "1", "--as-of", "2026-11-27 09:00:00"
    )
    # then the command fails: the order did not exist yet
    refused_with(result, "order 1 did not exist yet at 2026-11-27 09:00:00 (UTC)")


def test_orders_show_with_a_malformed_moment_is_a_usage_error(tmp_path: Path) -> None:
    # given any store
    # when a moment that is not a time is given
    result = run(
        f"sqlite:///{tmp_path}/empty.sqlite3",
        tmp_path,
        "orders",
        "show",
        "1",
        "--as-of",
        "yesterday",
    )
    # then argparse refuses it (exit 2) and says what a moment looks like
    assert result.returncode == 2
    assert "YYYY-MM-DD HH:MM:SS" in result.stderr


# -- machines history -----------------------------------------------------------------


def test_machines_history_prints_owners_and_moves_as_a_table(
    orders: str, tmp_path: Path
) -> None:
    # given SN-1 moved proj-a -> proj-b by order 1, then held and freed by order 2
    # when its history is asked for
    result = run(orders, tmp_path, "machines", "history", "SN-1")
    # then the owners, the moving orders and each event are shown
    lines = ok_lines(result)
    assert lines[1:3] == ["owners:   proj-a -> proj-b", "moved by: order 1"]
    assert [line.split()[3] for line in lines[4:]] == [
        "registered",
        "reserved",
        "transferred",
        "reserved",
        "released",
    ]


def test_machines_history_json_lists_each_event(orders: str, tmp_path: Path) -> None:
    # given SN-1 moved by order 1, then freed by order 2
    # when its history is asked for as JSON
    history = ok_json(run(orders, tmp_path, "machines", "history", "SN-1", "--json"))
    # then each event names its owner after it, its order and who acted
    assert [
        (e["event"], e["owner"], e["order_id"], e["user"]) for e in history["events"]
    ] == [
        ("registered", "proj-a", None, None),
        ("reserved", "proj-a", 1, "alice"),
        ("transferred", "proj-b", 1, "bob"),
        ("reserved", "proj-b", 2, "bob"),
        ("released", "proj-b", 2, "carol"),
    ]
    assert (history["owners"], history["moved_by"]) == (["proj-a", "proj-b"], [1])


def test_machines_history_of_an_unknown_server_exits_1(tmp_path: Path) -> None:
    # given an empty store (made: read-only commands never make one)
    made = run(f"sqlite:///{tmp_path}/empty.sqlite3", tmp_path, "db", "upgrade")
    assert made.returncode == 0, made.stderr
    # when the history of an unknown server is asked for
    result = run(
        f"sqlite:///{tmp_path}/empty.sqlite3", tmp_path, "machines", "history", "SN-404"
    )
    # then the command fails with one clear line
    refused_with(result, "server SN-404 not found")


# -- events export / import -----------------------------------------------------------


def test_export_and_import_move_a_deployment_to_the_other_store(
    orders: str, other_url: str, tmp_path: Path
) -> None:
    # given a deployment on one backend, exported to a file
    exported = run(orders, tmp_path, "events", "export", "--output", "log.jsonl")
    assert exported.returncode == 0, exported.stderr
    assert "13 events written to log.jsonl" in exported.stdout
    # when the file is piped into an empty store on the other backend
    imported = run(
        other_url,
        tmp_path,
        "events",
        "import",
        "--json",
        stdin=(tmp_path / "log.jsonl").read_text(),
    )
    # then it holds the same events, and its views show the same servers
    assert ok_json(imported) == {
        "events": 13,
        "aggregates": 4,
        "position": 13,
        "mail_marked_sent": 3,
    }
    assert servers(other_url) == servers(orders)


def servers(url: str) -> list[ServerRow]:
    store = open_store(url)
    try:
        return store.server_ownership.servers(store.views)
    finally:
        store.close()


def test_export_writes_json_lines_for_a_tenant_after_an_id(
    orders: str, tmp_path: Path
) -> None:
    # given two orders; only order 2 concerns proj-c
    # when proj-c's events after notification 5 are exported
    result = run(
        orders, tmp_path, "events", "export", "--tenant", "proj-c", "--after", "5"
    )
    # then standard output holds order 2's events, one JSON object per line
    records = [json.loads(line) for line in ok_lines(result)]
    assert [(r["type"], r["data"]["number"]) for r in records] == [
        ("Order.Requested", 2),
        ("Order.Rejected", 2),
    ]


def test_import_into_a_store_that_holds_events_exits_1_and_writes_nothing(
    orders: str, tmp_path: Path
) -> None:
    # given a store with events, and its own export
    store = open_store(orders)
    try:
        with (tmp_path / "log.jsonl").open("w") as file:
            file.writelines(json.dumps(r) + "\n" for r in export_events(store.app))
        # when the export is imported into it
        result = run(orders, tmp_path, "events", "import", "log.jsonl")
        # then the command refuses, and the log still ends where it did
        refused_with(result, "the store already holds events (up to notification 13)")
        assert store.app.recorder.max_notification_id() == 13
    finally:
        store.close()


def test_import_of_a_malformed_file_exits_1_naming_the_line(tmp_path: Path) -> None:
    # given a file whose second line is not JSON
    (tmp_path / "bad.jsonl").write_text("\n{oops\n")
    # when it is imported into an empty store
    result = run(
        f"sqlite:///{tmp_path}/empty.sqlite3", tmp_path, "events", "import", "bad.jsonl"
    )
    # then the command refuses, naming the line
    refused_with(result, "line 2: not JSON")


# -- help -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("orders", "history"),
        ("orders", "show"),
        ("machines", "history"),
        ("events", "export"),
        ("events", "import"),
    ],
    ids=" ".join,
)
def test_every_audit_command_explains_itself(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    # given no store at all
    # when a command is asked for help
    result = pm_order(*command, "--help", cwd=tmp_path)
    # then it prints its usage and exits 0
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: pm-order {' '.join(command)}")
    assert "--json" in result.stdout


# -- in Chinese (PM_ORDER_LANGUAGE=zh_CN) ---------------------------------------------

CHINESE = {"PM_ORDER_LANGUAGE": "zh_CN"}


def test_the_audit_tables_speak_chinese_and_json_stays_english(
    orders: str, tmp_path: Path
) -> None:
    # when
    history = run(orders, tmp_path, "orders", "history", "1", env=CHINESE)
    machine = run(orders, tmp_path, "machines", "history", "SN-1", env=CHINESE)
    as_json = ok_json(
        run(orders, tmp_path, "orders", "history", "1", "--json", env=CHINESE)
    )
    # then the tables' headings, lines and changes are Chinese ...
    lines = ok_lines(history)
    assert lines[0] == "订单 1：proj-a -> proj-b（时间按 UTC）"
    assert lines[1].split() == ["版本", "时间", "事件", "用户", "项目", "状态", "变更"]
    assert lines[2].endswith("已预留 SN-1, SN-2，将从 proj-a 转至 proj-b")
    assert ok_lines(machine)[1:3] == [
        "所有者：  proj-a -> proj-b",
        "转移订单：订单 1",
    ]
    # ... the event log's own words (events, states) stay as recorded
    assert lines[2].split()[3] == "requested"
    # and JSON, for programs, is the same in every language
    assert as_json["events"][0]["change"] == (
        "reserved SN-1, SN-2 to move from proj-a to proj-b"
    )
