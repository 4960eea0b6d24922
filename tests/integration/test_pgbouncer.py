"""pm-order behind a real PgBouncer, in the mode docs/deployment-connections.md
recommends (session pooling, startup options ignored): the contract tests of
the API, and the processes that hold a session (the NOTIFY listener, leadership
by advisory lock)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import POSTGRES_REQUIRED, POSTGRES_URL, TOKENS, need_postgres
from tests.integration.pgbouncer import PgBouncer
from tests.integration.processes import (
    ApiServer,
    PmOrderProcess,
    run_pm_order,
    wait_until,
)

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]

# The contract tests run again behind PgBouncer: writing, deciding, listing and
# reading one's writes (the views' progress heard through LISTEN, the
# projector's leadership held by an advisory lock), and every answer against
# the OpenAPI document: their PostgreSQL halves, about a hundred tests.
CONTRACT_TESTS = [
    "tests/api/test_requesting.py",
    "tests/api/test_deciding.py",
    "tests/api/test_listing.py",
    "tests/api/test_read_your_writes.py",
    "tests/api/test_openapi.py",
]


@pytest.fixture
def pgbouncer() -> Iterator[PgBouncer]:
    need_postgres()
    try:
        bouncer = PgBouncer(POSTGRES_URL)
    except (RuntimeError, OSError) as error:
        if POSTGRES_REQUIRED:
            pytest.fail(f"cannot start PgBouncer: {error}")
        pytest.skip(f"cannot start PgBouncer: {error}")
    yield bouncer
    bouncer.stop()


def test_the_contract_tests_pass_behind_pgbouncer(pgbouncer: PgBouncer) -> None:
    bouncer_url = pgbouncer.url("").rstrip("/")
    env = {
        **os.environ,
        "PM_ORDER_TEST_POSTGRES_URL": POSTGRES_URL,
        "PM_ORDER_TEST_PGBOUNCER_URL": bouncer_url,
        "PM_ORDER_REQUIRE_POSTGRES": "1",
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "postgresql",
            *CONTRACT_TESTS,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed is not None, summary
    assert int(passed.group(1)) >= 90, summary
    assert "skipped" not in summary, summary
    # and the stores really were behind PgBouncer: it let the tests in
    assert "login attempt: db=" in pgbouncer.log(), pgbouncer.log()[-2000:]


@pytest.fixture
def bounced_database(pgbouncer: PgBouncer) -> Iterator[str]:
    """A database of its own, reached through PgBouncer."""
    database = f"bounced_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(
            sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database))
        )
    yield pgbouncer.url(database)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database))
        )


def test_a_server_and_a_worker_share_the_work_behind_pgbouncer(
    bounced_database: str, tmp_path: Path
) -> None:
    """serve --api-only and worker, as processes, through PgBouncer: the worker
    leads the projector (advisory lock) and announces its progress (NOTIFY);
    the server hears it (LISTEN), and a write shows at once in the lists."""
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": TOKENS}))
    (tmp_path / "inventory.csv").write_text("snid,project_id\nSN-1,proj-a\n")
    env = {
        "PM_ORDER_DATABASE_URL": bounced_database,
        "PM_ORDER_TOKENS_FILE": str(tokens),
    }
    made = run_pm_order("machines", "import", "inventory.csv", cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    worker = PmOrderProcess(["worker"], env, tmp_path / "worker.log")
    server = ApiServer(env, tmp_path / "serve.log", api_only=True)
    try:
        base = f"{server.base_url}/mana_api/pm_order/proj-a"
        headers = {"X-Auth-Token": "tok-alice", "Sp-Agent": "scloudm"}
        wait_until(lambda: _ready(server.base_url), "readiness: a worker projecting")
        body = json.dumps({"snids": "SN-1", "dest_project": "proj-b"}).encode()
        write = urllib.request.Request(
            base,
            data=body,
            headers={**headers, "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(write, timeout=10) as answer:
            order_id = json.loads(answer.read())["order_id"]
        read = urllib.request.Request(f"{base}?type=3", headers=headers)
        with urllib.request.urlopen(read, timeout=10) as answer:
            listed = json.loads(answer.read())
        assert order_id in [order["id"] for order in listed["orders"]], listed
        # the leaderships are advisory locks held on sessions PgBouncer keeps
        database = bounced_database.rsplit("/", 1)[1]
        with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
            row = connection.execute(
                "SELECT count(*) FROM pg_locks JOIN pg_database d"
                " ON d.oid = pg_locks.database"
                " WHERE locktype = 'advisory' AND d.datname = %s",
                (database,),
            ).fetchone()
        assert row is not None
        assert row[0] >= 1
        # and the read models are in their generation's schema, not in public:
        # the search path reached the sessions although PgBouncer dropped the
        # startup options
        with psycopg.connect(
            POSTGRES_URL.rsplit("/", 1)[0] + f"/{database}", autocommit=True
        ) as connection:
            schemas = {
                schema
                for (schema,) in connection.execute(
                    "SELECT table_schema FROM information_schema.tables"
                    " WHERE table_name = 'server_ownership'"
                )
            }
        assert schemas, "no server_ownership table"
        assert "public" not in schemas, schemas
    finally:
        server.stop()
        worker.stop()


def _ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False
