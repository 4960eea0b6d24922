"""Start-up errors of the real `pm-order` command: one line, exit 2, nothing
served or made. Binding failures are found before "serving on" is logged; a
SQLite store path that does not exist is refused by every command but those
that make a store; `db upgrade` says whether it created the tables."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from tests.integration.processes import free_port
from tests.integration.processes import run_installed_pm_order as pm_order


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The only line of stderr (log lines aside), for a command that exited 2."""
    assert result.returncode == 2, result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith("pm-order:")]
    assert len(said) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "serving on" not in result.stderr
    return said[0]


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "tokens.json").write_text('{"tokens": []}')
    return {
        "PM_ORDER_TOKENS_FILE": str(tmp_path / "tokens.json"),
        "PM_ORDER_DATABASE_URL": f"sqlite:///{tmp_path}/store.sqlite3",
    }


def test_serve_on_a_port_in_use_is_one_line_and_exit_2(
    tmp_path: Path, tokens: dict[str, str]
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        line = one_line(pm_order("serve", "--port", str(port), cwd=tmp_path, **tokens))
    assert f"127.0.0.1:{port}" in line
    assert "in use" in line


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (["--host", "192.0.2.1"], "not one of this host's"),
        (["--port", "99999"], "--port 99999: must be 1 to 65535"),
        (["--port", "0"], "--port 0: must be 1 to 65535"),
        (["--host", "no.such.host.invalid"], "--host no.such.host.invalid: unknown"),
    ],
)
def test_serve_where_it_cannot_listen_is_one_line_and_exit_2(
    tmp_path: Path, tokens: dict[str, str], arguments: list[str], said: str
) -> None:
    port = ["--port", str(free_port())] if "--port" not in arguments else []
    line = one_line(pm_order("serve", *arguments, *port, cwd=tmp_path, **tokens))
    assert said in line


def test_serve_with_several_workers_on_a_port_in_use_is_refused_before_forking(
    tmp_path: Path, tokens: dict[str, str], postgres_schema_url: str
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {**tokens, "PM_ORDER_DATABASE_URL": postgres_schema_url}
        result = pm_order(
            "serve", "--workers", "2", "--port", str(port), cwd=tmp_path, **env
        )
    assert "in use" in one_line(result)
    assert "serving processes" not in result.stderr


def test_serve_without_tables_and_without_creating_them_exits_2_before_serving(
    tmp_path: Path, tokens: dict[str, str], database_url: str
) -> None:
    env = {**tokens, "PM_ORDER_DATABASE_URL": database_url}
    result = pm_order(
        "serve",
        "--port",
        str(free_port()),
        cwd=tmp_path,
        PM_ORDER_CREATE_TABLES="no",
        **env,
    )
    assert "pm-order db upgrade" in one_line(result)


def test_db_upgrade_says_it_created_the_tables_then_that_they_are_up_to_date(
    tmp_path: Path, database_url: str
) -> None:
    first = pm_order("--database-url", database_url, "db", "upgrade", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "created the tables"
    again = pm_order("--database-url", database_url, "db", "upgrade", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "tables are up to date"


READ_ONLY = [
    ["machines", "list"],
    ["machines", "history", "SN-1"],
    ["orders", "show", "1"],
    ["orders", "history", "1"],
    ["projections", "status"],
    ["projections", "verify"],
    ["projections", "rebuild"],
    ["mail", "list"],
    ["report", "--since", "2026-01-01"],
    ["events", "export"],
    ["projections", "generations"],
    ["db", "finish-upgrade"],
]


@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
def test_a_store_path_whose_folder_does_not_exist_is_refused_and_not_made(
    tmp_path: Path, command: list[str]
) -> None:
    url = f"sqlite:///{tmp_path}/no/such/folder/store.sqlite3"
    line = one_line(pm_order("--database-url", url, *command, cwd=tmp_path))
    assert (
        f"--database-url: no store at {tmp_path}/no/such/folder/store.sqlite3" in line
    )
    assert "folder" in line
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
def test_a_read_only_command_does_not_create_a_store(
    tmp_path: Path, command: list[str]
) -> None:
    store = tmp_path / "store.sqlite3"
    env = {"PM_ORDER_DATABASE_URL": f"sqlite:///{store}"}
    line = one_line(pm_order(*command, cwd=tmp_path, **env))
    assert (
        f"PM_ORDER_DATABASE_URL: no store at {store} (the file does not exist)" in line
    )
    assert not store.exists()


@pytest.mark.parametrize(
    "command",
    [
        ["db", "upgrade"],
        ["machines", "import", "inventory.csv"],
        ["events", "import", "events.jsonl"],
    ],
    ids=" ".join,
)
def test_the_commands_that_make_a_store_make_its_folder(
    tmp_path: Path, command: list[str]
) -> None:
    (tmp_path / "inventory.csv").write_text("snid,project_id\nSN-1,p1\n")
    (tmp_path / "events.jsonl").write_text("")
    url = f"sqlite:///{tmp_path}/new/folder/store.sqlite3"
    result = pm_order("--database-url", url, *command, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "new/folder/store.sqlite3").is_file()


def test_a_bad_database_url_flag_is_named_as_the_flag(tmp_path: Path) -> None:
    line = one_line(
        pm_order("--database-url", "postgres:/x", "machines", "list", cwd=tmp_path)
    )
    assert line.startswith("pm-order: --database-url 'postgres:/x' must be")
    assert "PM_ORDER_DATABASE_URL" not in line
