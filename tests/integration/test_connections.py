"""A command of the command line holds at most two connections to PostgreSQL
(docs/deployment-connections.md): proved by a role the server lets hold no more
than two (a third would be refused, as a control with one shows), and seen in
pg_stat_activity by the application_name every connection of it carries."""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from tests.conftest import POSTGRES_URL, drop_postgres_schema, need_postgres
from tests.integration.processes import PM_ORDER_SCRIPT
from tests.integration.processes import run_installed_pm_order as pm_order

pytestmark = pytest.mark.postgres


COMMANDS = [
    ["machines", "list"],
    ["machines", "list", "--json", "--project", "p1"],
    ["machines", "history", "SN-00001"],
    ["machines", "import", "inventory.csv"],
    ["projections", "status"],
    ["mail", "list"],
    ["report"],
    ["events", "export", "-o", "events.jsonl"],
]


def as_role(url: str, role: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


def admin(statement: sql.Composable) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(statement)


@pytest.fixture
def limited_store(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(URL, role): a store of 300 servers in a schema of its own, reached as a
    role of its own (not a superuser: its connection limit holds)."""
    need_postgres()
    role = f"pm_cli_{uuid.uuid4().hex[:8]}"
    schema = f"conn_{uuid.uuid4().hex[:12]}"
    database = urlsplit(POSTGRES_URL).path.lstrip("/")
    admin(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    admin(
        sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
            sql.Identifier(database), sql.Identifier(role)
        )
    )
    url = f"{as_role(POSTGRES_URL, role)}?schema={schema}"
    rows = "".join(f"SN-{n:05d},p{n % 3}\n" for n in range(300))
    (tmp_path / "inventory.csv").write_text("snid,project_id\n" + rows)
    made = pm_order(
        "--database-url", url, "machines", "import", "inventory.csv", cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr
    yield url, role
    drop_postgres_schema(schema)
    admin(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    admin(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def limit(role: str, connections: int) -> None:
    admin(
        sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(
            sql.Identifier(role), sql.Literal(connections)
        )
    )


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_command_holds_at_most_two_connections(
    limited_store: tuple[str, str], tmp_path: Path, command: list[str]
) -> None:
    url, role = limited_store
    # given: the server refuses this role a third connection at once
    limit(role, 2)
    # when
    result = pm_order("--database-url", url, *command, cwd=tmp_path)
    # then: the command never needed one
    assert result.returncode == 0, result.stderr
    assert "too many connections" not in result.stderr


def test_the_limit_is_real_a_command_refused_a_second_connection_fails(
    limited_store: tuple[str, str], tmp_path: Path
) -> None:
    url, role = limited_store
    limit(role, 1)
    result = pm_order("--database-url", url, "machines", "list", cwd=tmp_path)
    # (the server's refusal, or the pool's giving up after it)
    assert result.returncode == 3, result.stderr
    assert (
        "too many connections for role" in result.stderr
        or "couldn't get a connection" in result.stderr
    ), result.stderr


def test_pg_stat_activity_sees_at_most_two_connections_of_a_command(
    limited_store: tuple[str, str], tmp_path: Path
) -> None:
    url, _ = limited_store
    seen: list[int] = []
    listed = subprocess.Popen(
        [str(PM_ORDER_SCRIPT), "--database-url", url, "machines", "list"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PGAPPNAME"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    done = threading.Event()

    def sample() -> None:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            while not done.is_set():
                row = connection.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE application_name = 'pm-order-machines-list'"
                ).fetchone()
                seen.append(row[0] if row else 0)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        assert listed.wait(120) == 0
    finally:
        done.set()
        sampler.join()
    assert 1 <= max(seen) <= 2, seen
