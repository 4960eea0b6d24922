"""The pm-order command, run as a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from language import width
from tests.api.fake_keystone import FakeKeystone
from tests.integration.processes import free_port, wait_until
from tests.integration.processes import run_pm_order as pm_order

__all__ = ["pm_order"]


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def listed(database_url: str, cwd: Path, *args: str) -> list[dict[str, object]]:
    result = pm_order(
        "--database-url", database_url, "machines", "list", "--json", *args, cwd=cwd
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_importing_machines_registers_every_row(
    database_url: str, tmp_path: Path
) -> None:
    inventory = write_csv(tmp_path / "in.csv", "snid,project_id\nS1,p1\nS2,p1\nS3,p2\n")
    result = pm_order(
        "--database-url",
        database_url,
        "machines",
        "import",
        str(inventory),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert listed(database_url, tmp_path) == [
        {"snid": "S1", "project_id": "p1", "order_id": None},
        {"snid": "S2", "project_id": "p1", "order_id": None},
        {"snid": "S3", "project_id": "p2", "order_id": None},
    ]
    assert [s["snid"] for s in listed(database_url, tmp_path, "--project", "p2")] == [
        "S3"
    ]


def test_reimporting_the_same_rows_changes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    inventory = write_csv(tmp_path / "in.csv", "snid,project_id\nS1,p1\n")
    args = ("--database-url", database_url, "machines", "import", str(inventory))
    assert pm_order(*args, cwd=tmp_path).returncode == 0
    again = pm_order(*args, cwd=tmp_path)
    assert again.returncode == 0
    assert listed(database_url, tmp_path) == [
        {"snid": "S1", "project_id": "p1", "order_id": None}
    ]


def test_a_row_moving_an_owned_server_refuses_the_whole_file(
    database_url: str, tmp_path: Path
) -> None:
    first = write_csv(tmp_path / "a.csv", "snid,project_id\nS1,p1\n")
    assert (
        pm_order(
            "--database-url",
            database_url,
            "machines",
            "import",
            str(first),
            cwd=tmp_path,
        ).returncode
        == 0
    )
    moving = write_csv(tmp_path / "b.csv", "snid,project_id\nS2,p2\nS1,p2\n")
    result = pm_order(
        "--database-url", database_url, "machines", "import", str(moving), cwd=tmp_path
    )
    assert result.returncode == 1
    assert "S1 belongs to p1" in result.stderr
    assert "Traceback" not in result.stderr
    assert [s["snid"] for s in listed(database_url, tmp_path)] == ["S1"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("snid,owner\nS1,p1\n", "first line must be 'snid,project_id'"),
        ("snid,project_id\nS1\n", "expected 'snid,project_id'"),
        ("snid,project_id\nS 1,p1\n", "invalid snid"),
    ],
)
def test_a_malformed_inventory_is_refused_with_a_message(
    tmp_path: Path, text: str, message: str
) -> None:
    inventory = write_csv(tmp_path / "bad.csv", text)
    result = pm_order("machines", "import", str(inventory), cwd=tmp_path)
    assert result.returncode in (1, 2)
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_without_a_token_source_says_how_to_set_one(tmp_path: Path) -> None:
    result = pm_order("serve", "--port", "1", cwd=tmp_path)
    assert result.returncode == 2
    assert "PM_ORDER_TOKENS_FILE" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PM_ORDER_DATABASE_URL", "mysql://x"),
        ("PM_ORDER_TIMEZONE", "Mars/Olympus"),
        ("PM_ORDER_WARN_AFTER", "soon"),
        ("PM_ORDER_WARN_MAX", "-1"),
        ("PM_ORDER_IDLE_POLL_SECONDS", "0"),
        ("PM_ORDER_IDLE_POLL_SECONDS", "soon"),
        ("PM_ORDER_TOKENS_FILE", "/nonexistent/tokens.json"),
        ("PM_ORDER_MAX_SERVERS_PER_ORDER", "500"),
        ("PM_ORDER_RATE_LIMIT", "fast"),
        ("PM_ORDER_LANGUAGE", "fr"),
    ],
)
def test_invalid_configuration_exits_2_with_one_line(
    tmp_path: Path, variable: str, value: str
) -> None:
    env = {"PM_ORDER_TOKENS_FILE": str(tmp_path / "tokens.json"), variable: value}
    (tmp_path / "tokens.json").write_text('{"tokens": []}')
    result = pm_order("serve", "--port", "1", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert variable in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_without_table_creation_the_tables_come_from_db_upgrade(
    database_url: str, tmp_path: Path
) -> None:
    off = {"PM_ORDER_CREATE_TABLES": "no"}
    before = pm_order(
        "--database-url", database_url, "machines", "list", cwd=tmp_path, env=off
    )
    assert before.returncode == 2
    assert "pm-order db upgrade" in before.stderr
    assert (
        pm_order(
            "--database-url", database_url, "db", "upgrade", cwd=tmp_path
        ).returncode
        == 0
    )
    after = pm_order(
        "--database-url", database_url, "machines", "list", cwd=tmp_path, env=off
    )
    assert after.returncode == 0, after.stderr


def test_a_reader_that_stops_early_ends_the_command_quietly(tmp_path: Path) -> None:
    # given more servers than a pipe holds before the reader must read
    rows = "".join(f"SERVER-{n:05d},p1\n" for n in range(3000))
    inventory = write_csv(tmp_path / "many.csv", "snid,project_id\n" + rows)
    assert pm_order("machines", "import", str(inventory), cwd=tmp_path).returncode == 0
    # when the reader takes one line and goes away, as `| head -1` does
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "machines", "list"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("PM_ORDER_")},
    )
    assert process.stdout is not None
    assert process.stdout.readline().startswith(b"SNID")
    process.stdout.close()
    _, errors = process.communicate(timeout=60)
    # then it ends with status 0 and no traceback
    assert process.returncode == 0
    assert b"Traceback" not in errors


def test_serve_with_keystone_but_no_service_credentials_says_what_to_set(
    tmp_path: Path,
) -> None:
    env = {"PM_ORDER_KEYSTONE_URL": "http://127.0.0.1:1/v3"}
    result = pm_order("serve", "--port", "1", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert "PM_ORDER_KEYSTONE_USER" in result.stderr
    assert "PM_ORDER_KEYSTONE_APP_CREDENTIAL_ID" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_with_only_keystone_and_service_credentials_checks_tokens_there(
    tmp_path: Path,
) -> None:
    with FakeKeystone.in_thread() as keystone:
        # given `serve` with nothing set but Keystone and the service's account
        env = {
            "PM_ORDER_KEYSTONE_URL": keystone.url,
            "PM_ORDER_KEYSTONE_USER": FakeKeystone.SERVICE_USER,
            "PM_ORDER_KEYSTONE_PASSWORD": FakeKeystone.SERVICE_PASSWORD,
            "PM_ORDER_KEYSTONE_PROJECT": FakeKeystone.SERVICE_PROJECT,
        }
        token = keystone.issue("alice", "proj-a")
        port = free_port()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PM_ORDER_")}
        log_path = tmp_path / "serve.log"
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "cli", "serve", "--port", str(port)],
                cwd=tmp_path,
                env={**clean, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            base = f"http://127.0.0.1:{port}/mana_api"
            wait_until(
                lambda: answers(server, base + "/openapi.json", log_path), "serve"
            )
            # when
            known = http_get(base + "/pm_order/proj-a", token)
            unknown = http_get(base + "/pm_order/proj-a", "gAAAAAunknown")
        finally:
            server.terminate()
            server.wait(15)
        # then
        assert known[0] == 200, log_path.read_text()
        assert json.loads(known[2]) == {
            "code": 200,
            "msg": "",
            "total_count": 0,
            "orders": [],
        }
        assert unknown[0] == 401
        assert unknown[1]["WWW-Authenticate"] == f'Keystone uri="{keystone.url}"'
        assert keystone.validations[token] == 1
        assert keystone.logins == 1


def answers(server: subprocess.Popen[bytes], url: str, log_path: Path) -> bool:
    if server.poll() is not None:
        raise RuntimeError(f"serve exited early:\n{log_path.read_text()}")
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


def http_get(url: str, token: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        url, headers={"X-Auth-Token": token, "Sp-Agent": "scloudm"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_machines_speak_chinese_with_pm_order_language_zh_cn(
    database_url: str, tmp_path: Path
) -> None:
    # given
    chinese = {"PM_ORDER_LANGUAGE": "zh_CN"}
    inventory = write_csv(tmp_path / "in.csv", "snid,project_id\nS1,p1\nS2,p2\n")
    # when
    imported = pm_order(
        "--database-url", database_url, "machines", "import", str(inventory),
        cwd=tmp_path, env=chinese,
    )  # fmt: skip
    listing = pm_order(
        "--database-url", database_url, "machines", "list", cwd=tmp_path, env=chinese
    )
    # then the messages and headings are Chinese
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith("已读取 2 行；日志位于 ")
    assert listing.returncode == 0, listing.stderr
    header, *rows = listing.stdout.splitlines()
    assert header.split() == ["SNID", "项目", "订单"]
    assert [row.split() for row in rows] == [["S1", "p1"], ["S2", "p2"]]
    # and the columns line up, a Chinese character taking two columns
    assert width(header[: header.index("项目")]) == rows[0].index("p1") == 25
    assert width(header[: header.index("订单")]) == 50


# -- issue 16: what a new user's first hour found ---------------------------------

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "command",
    [
        ["machines", "list"],
        ["machines", "import", "INVENTORY"],
        ["orders", "show", "1"],
        ["projections", "status"],
        ["mail", "list"],
        ["report"],
        ["db", "upgrade"],
        ["serve", "--port", "PORT"],
        ["worker"],
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_an_unreachable_database_is_one_line_and_exit_status_3(
    tmp_path: Path, command: list[str]
) -> None:
    inventory = write_csv(tmp_path / "in.csv", "snid,project_id\nS1,p1\n")
    tokens = tmp_path / "tokens.json"
    tokens.write_text('{"tokens": []}')
    url = f"postgresql://postgres:pw@127.0.0.1:{free_port()}/test"
    args = [
        str(inventory) if a == "INVENTORY" else str(free_port()) if a == "PORT" else a
        for a in command
    ]
    result = pm_order(
        "--database-url",
        url,
        *args,
        cwd=tmp_path,
        env={"PM_ORDER_TOKENS_FILE": str(tokens)},
    )
    assert result.returncode == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if '"level"' not in line]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("pm-order: the database is unavailable (")
    assert "Connection refused" in errors[0]
    assert "pw@" not in result.stderr
    assert "Traceback" not in result.stderr


def test_make_run_s_import_step_works_again_after_orders_moved_servers(
    tmp_path: Path,
) -> None:
    # given: the import step of `make run`, exactly as the Makefile has it
    makefile = (REPOSITORY / "Makefile").read_text()
    recipe = makefile.split("\nrun: install\n")[1].split("\n\n")[0]
    (step,) = [
        line.strip() for line in recipe.splitlines() if "machines import" in line
    ]
    command = step.replace("$(BIN)/pm-order", f"{sys.executable} -m cli")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PM_ORDER_")},
        "PM_ORDER_DATABASE_URL": f"sqlite:///{tmp_path}/demo.sqlite3",
    }

    def import_step() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            shell=True,
            cwd=REPOSITORY,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    first = import_step()
    assert first.returncode == 0, first.stderr
    # and the README's walk-through: alice's SN-A-001 goes to proj-b
    from domain.service import OrderService
    from service.store import open_store

    store = open_store(env["PM_ORDER_DATABASE_URL"])
    try:
        service = OrderService(store.app)
        order = service.request_transfer(
            source_project="proj-a",
            user="alice",
            snids=["SN-A-001"],
            dest_project="proj-b",
            mailto=[],
        )
        assert order.order_id is not None
        service.decide(
            project="proj-b",
            user="bob",
            roles=frozenset({"member"}),
            order_ids=[order.order_id],
            accept=True,
        )
    finally:
        store.close()
    # when: `make run` again
    second = import_step()
    # then
    assert second.returncode == 0, second.stderr
    assert listed(env["PM_ORDER_DATABASE_URL"], tmp_path, "--project", "proj-b")[0] == {
        "snid": "SN-A-001",
        "project_id": "proj-b",
        "order_id": None,
    }


def test_mail_retry_of_an_unknown_message_says_so_and_exits_1(
    database_url: str, tmp_path: Path
) -> None:
    made = pm_order("--database-url", database_url, "db", "upgrade", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    result = pm_order(
        "--database-url", database_url, "mail", "retry", "nope", cwd=tmp_path
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "pm-order: no such message: <nope>"
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (["serve"], ["address to listen on (default: 127.0.0.1)", "(default: 8080)"]),
        (["worker"], ["Run the background work without serving the API"]),
        (["db", "upgrade"], ["Create or upgrade every table"]),
        (["mail", "retry"], ["Put messages the mailer gave up on"]),
        (["projections", "rebuild"], ["order_lists, server_ownership, mail_outbox"]),
        (["projections", "verify"], ["order_lists, server_ownership, mail_outbox"]),
    ],
)
def test_each_command_s_help_describes_it(
    tmp_path: Path, command: list[str], shown: list[str]
) -> None:
    result = pm_order(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for words in shown:
        assert words in text, result.stdout


def test_projections_status_json_gives_moved_at_as_an_iso_time(
    database_url: str, tmp_path: Path
) -> None:
    # given: a store whose views have moved
    inventory = write_csv(tmp_path / "in.csv", "snid,project_id\nS1,p1\n")
    imported = pm_order(
        "--database-url",
        database_url,
        "machines",
        "import",
        str(inventory),
        cwd=tmp_path,
    )
    assert imported.returncode == 0, imported.stderr
    listed(database_url, tmp_path)
    # when
    result = pm_order(
        "--database-url", database_url, "projections", "status", "--json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        moved_at = json.loads(line)["moved_at"]
        assert isinstance(moved_at, str), line
        assert datetime.fromisoformat(moved_at).utcoffset() is not None


def test_a_database_url_without_a_database_name_is_one_line_and_exit_status_2(
    tmp_path: Path,
) -> None:
    result = pm_order(
        "--database-url",
        "postgresql://postgres:pw@127.0.0.1:5432",
        "machines",
        "list",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("pm-order: ")
    assert "names no database" in line
    assert "pw@" not in line
