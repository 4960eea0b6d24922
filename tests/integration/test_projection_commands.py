"""`pm-order projections status|rebuild|verify`, run as an operator would."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from domain.service import OrderService
from mail import ledger
from mail.ledger import DeliveryLedger
from service.store import generation_path, open_store
from tests.integration.processes import run_pm_order as pm_order


@pytest.fixture
def ordered(database_url: str) -> str:
    """A store with servers, two orders (one accepted), views caught up."""
    store = open_store(database_url)
    try:
        service = OrderService(store.app)
        service.register_servers([("S1", "p1"), ("S2", "p1"), ("S3", "p2")])
        service.request_transfer(
            source_project="p1", user="u", snids=["S1"], dest_project="p2", mailto=[]
        )
        service.request_transfer(
            source_project="p1", user="u", snids=["S2"], dest_project="p2", mailto=[]
        )
        service.decide(
            project="p2", user="v", roles=frozenset(), order_ids=[1], accept=True
        )
        store.catch_up()
    finally:
        store.close()
    return database_url


def test_status_shows_every_view_caught_up(ordered: str, tmp_path: Path) -> None:
    result = pm_order(
        "--database-url", ordered, "projections", "status", "--json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert set(rows) == {"order_lists", "server_ownership", "mail_outbox", "reports"}
    assert all(row["lag_events"] == 0 for row in rows.values())
    table = pm_order("--database-url", ordered, "projections", "status", cwd=tmp_path)
    assert table.stdout.splitlines()[0].split()[:4] == [
        "VIEW",
        "POSITION",
        "HEAD",
        "LAG",
    ]


def test_status_speaks_chinese_with_pm_order_language_zh_cn(
    ordered: str, tmp_path: Path
) -> None:
    # when
    table = pm_order(
        "--database-url", ordered, "projections", "status", cwd=tmp_path,
        env={"PM_ORDER_LANGUAGE": "zh_CN"},
    )  # fmt: skip
    # then
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == [
        "视图",
        "位置",
        "日志头",
        "延迟",
        "延迟",
        "(秒)",
        "更新时间",
    ]
    # every view moved: the time it did, written the Chinese way
    assert all(
        re.search(r"  \d{4}年\d{1,2}月\d{1,2}日 \d\d:\d\d:\d\d$", r) for r in rows
    )


def test_verify_exits_0_when_the_views_match_the_events(
    ordered: str, tmp_path: Path
) -> None:
    result = pm_order("--database-url", ordered, "projections", "verify", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "order_lists: equal" in result.stdout


def test_verify_exits_1_listing_a_corrupted_row(ordered: str, tmp_path: Path) -> None:
    store = open_store(ordered)
    with store.views.writing() as cursor:
        cursor.execute(
            "UPDATE order_lists_orders SET user_name = 'mallory' WHERE id = 2"
        )
    store.close()
    result = pm_order(
        "--database-url", ordered, "projections", "verify", "order_lists", cwd=tmp_path
    )
    assert result.returncode == 1
    assert "order_lists: DIFFERS" in result.stdout
    assert "missing" in result.stdout
    assert "'u'" in result.stdout
    assert "unexpected" in result.stdout
    assert "'mallory'" in result.stdout


def empty_server_ownership(url: str) -> None:
    """Corrupt a view on purpose: every row of server_ownership deleted."""
    store = open_store(url)
    try:
        with store.views.writing() as cursor:
            cursor.execute("DELETE FROM server_ownership")
    finally:
        store.close()


def test_rebuild_repairs_the_view_and_shows_progress_as_plain_lines_off_a_terminal(
    ordered: str, tmp_path: Path
) -> None:
    empty_server_ownership(ordered)
    result = pm_order(
        "--database-url",
        ordered,
        "projections",
        "rebuild",
        "server_ownership",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    # stderr is a pipe here: lines, never a bar redrawn with carriage returns.
    assert "server_ownership: " in result.stderr
    assert "events (100%)" in result.stderr
    assert "\r" not in result.stderr
    assert "server_ownership: rebuilt" in result.stdout
    assert (
        pm_order(
            "--database-url", ordered, "projections", "verify", cwd=tmp_path
        ).returncode
        == 0
    )


def test_rebuilding_the_mail_outbox_forgets_nothing_sent(
    database_url: str, tmp_path: Path
) -> None:
    # given an order whose mail was sent
    store = open_store(database_url)
    try:
        service = OrderService(store.app)
        service.register_servers([("S1", "p1")])
        service.request_transfer(
            source_project="p1",
            user="u",
            snids=["S1"],
            dest_project="p2",
            mailto=["a@b.c"],
        )
        store.catch_up()
        [message] = DeliveryLedger.messages(store.views)
        DeliveryLedger.mark_sent(store.views, message.message_id, time.time())
    finally:
        store.close()
    # when
    result = pm_order(
        "--database-url",
        database_url,
        "projections",
        "rebuild",
        "mail_outbox",
        cwd=tmp_path,
    )
    # then the view is rebuilt and its message is still recorded as sent
    assert result.returncode == 0, result.stderr
    store = open_store(database_url)
    try:
        [after] = DeliveryLedger.messages(store.views)
    finally:
        store.close()
    assert (after.message_id, after.state) == (message.message_id, ledger.SENT)


def test_a_view_whose_rebuild_fails_is_named_and_the_others_are_still_rebuilt(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/store.sqlite3"
    store = open_store(url)
    OrderService(store.app).register_servers([("S1", "p1")])
    store.catch_up()
    store.close()
    # the scratch files of order_lists (beside the read models' own file: the
    # one of every view rebuilt together, and its own) cannot be made: folders
    # are in their place
    views = generation_path(tmp_path / "store.sqlite3", store.generation)
    Path(f"{views}.rebuild_order_lists_server_ownership_mail_outbox_reports").mkdir()
    Path(f"{views}.rebuild_order_lists").mkdir()
    result = pm_order("--database-url", url, "projections", "rebuild", cwd=tmp_path)
    assert result.returncode == 1
    assert "order_lists: rebuild failed, nothing switched: " in result.stderr
    assert "server_ownership: rebuilt" in result.stdout
    assert "reports: rebuilt" in result.stdout


def test_a_rebuild_with_no_process_is_refused_and_changes_nothing(
    ordered: str, tmp_path: Path
) -> None:
    # given a view corrupted on purpose
    empty_server_ownership(ordered)
    # when the rebuild is asked for with no process to do it
    result = pm_order(
        "--database-url",
        ordered,
        "projections",
        "rebuild",
        "--processes",
        "0",
        cwd=tmp_path,
    )
    # then it is refused in one line, and the view is as it was
    assert result.returncode == 2
    assert "--processes 0: must be 1 or more" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "rebuilt" not in result.stdout
    store = open_store(ordered)
    try:
        assert store.views.query("SELECT count(*) FROM server_ownership") == [(0,)]
    finally:
        store.close()
