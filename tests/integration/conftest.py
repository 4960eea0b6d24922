"""Fixtures for tests that run real processes against PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    BACKENDS,
    POSTGRES_URL,
    TOKENS,
    drop_postgres_schema,
    need_postgres,
)
from tests.integration.processes import ThrowawayPostgres
from tests.integration.smtp_server import Mailbox, SmtpServer


@pytest.fixture
def postgres_schema_url() -> Iterator[str]:
    """A fresh schema on the shared PostgreSQL server, dropped afterwards."""
    need_postgres()
    schema = f"it_{uuid.uuid4().hex[:12]}"
    yield f"{POSTGRES_URL}?schema={schema}"
    drop_postgres_schema(schema)


@pytest.fixture
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL cluster of the test's own, safe to stop and start."""
    need_postgres()
    try:
        cluster = ThrowawayPostgres()
    except (RuntimeError, OSError) as error:
        pytest.fail(f"cannot start a throwaway PostgreSQL cluster: {error}")
    yield cluster
    cluster.destroy()


@pytest.fixture
def tokens_path(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": TOKENS}))
    return path


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store's URL on each backend, for commands run as processes."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/cli.sqlite3"
        return
    need_postgres()
    schema = f"cli_{uuid.uuid4().hex[:12]}"
    yield f"{POSTGRES_URL}?schema={schema}"
    drop_postgres_schema(schema)


@pytest.fixture
def smtp_up() -> Iterator[SmtpServer]:
    """A real SMTP server on a loopback port, started (and stopped afterwards)."""
    server = SmtpServer(Mailbox())
    server.start()
    yield server
    server.stop()
