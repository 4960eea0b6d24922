"""The command line on libpq's multi-host URL: it finds the host that answers,
and a URL that libpq would refuse is a configuration error that touches nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from service.postgres_url import hosts_of, hosts_report, libpq_parameters
from tests.conftest import POSTGRES_URL, drop_postgres_schema, need_postgres
from tests.integration.processes import free_port, run_pm_order

pytestmark = pytest.mark.postgres


@pytest.fixture
def schema() -> Iterator[str]:
    need_postgres()
    name = f"url_{uuid.uuid4().hex[:12]}"
    yield name
    drop_postgres_schema(name)


def with_a_dead_host_first(schema: str, **query: str) -> str:
    """POSTGRES_URL's server named second, after a loopback port nobody listens on."""
    parts = urlsplit(POSTGRES_URL)
    user = f"{parts.username}@" if parts.username else ""
    hosts = f"127.0.0.1:{free_port()},{parts.hostname}:{parts.port or 5432}"
    params = "&".join(f"{k}={v}" for k, v in {**query, "schema": schema}.items())
    return f"{parts.scheme}://{user}{hosts}{parts.path}?{params}"


def schema_exists(schema: str) -> bool:
    with psycopg.connect(POSTGRES_URL) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)
        ).fetchone()
    return bool(row and row[0])


def test_the_command_line_finds_the_host_that_answers(
    schema: str, tmp_path: Path
) -> None:
    url = with_a_dead_host_first(schema, target_session_attrs="read-write")
    csv = tmp_path / "inventory.csv"
    csv.write_text("snid,project_id\nSN-URL-1,proj-a\n")
    imported = run_pm_order(
        "--database-url", url, "machines", "import", str(csv), cwd=tmp_path
    )
    assert imported.returncode == 0, imported.stderr
    listed = run_pm_order("--database-url", url, "machines", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "SN-URL-1" in listed.stdout


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ({"target_session_attrs": "standby"}, "pm-order writes on every connection"),
        ({"target_session_attrs": "writable"}, "must be one of"),
        ({"connect_timeout": "soon"}, "must be a whole number"),
        ({"sslmode": "sometimes"}, "sslmode='sometimes'"),
        ({"no_such_parameter": "1"}, "is not a URL libpq takes"),
    ],
)
def test_a_url_libpq_would_refuse_exits_2_and_changes_nothing(
    schema: str, tmp_path: Path, query: dict[str, str], said: str
) -> None:
    url = with_a_dead_host_first(schema, **query)
    result = run_pm_order("--database-url", url, "db", "upgrade", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    # the flag was used: its error names the flag, not the variable it overrides
    assert result.stderr.startswith("pm-order: --database-url "), result.stderr
    assert said in result.stderr
    assert "Traceback" not in result.stderr
    assert not schema_exists(schema)


def test_serve_with_a_refused_url_exits_2_before_forking_its_processes(
    schema: str, tmp_path: Path
) -> None:
    env = {
        "PM_ORDER_DATABASE_URL": with_a_dead_host_first(schema, connect_timeout="x"),
        "PM_ORDER_TOKENS_FILE": str(Path(__file__).parents[2] / "examples/tokens.json"),
    }
    result = run_pm_order("serve", "--workers", "2", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert "connect_timeout='x' must be a whole number" in result.stderr
    assert "serving process" not in result.stderr
    assert not schema_exists(schema)


async def test_the_hosts_report_says_what_each_host_is(schema: str) -> None:
    url = with_a_dead_host_first(schema)
    params, _ = libpq_parameters(url)
    (dead, dead_port), (alive, alive_port) = hosts_of(params)
    report = await hosts_report(params)
    assert report == (
        f"{dead}:{dead_port} does not answer (Connection refused); "
        f"{alive}:{alive_port} takes writes"
    )
