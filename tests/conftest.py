"""Shared fixtures: the store on every backend, a settable clock, the real app.

Application and API tests take `store_url` (directly or through `store`) and so
run once per backend: SQLite always, PostgreSQL too. The PostgreSQL server is the
suite's own: a cluster made with initdb in a temporary folder on a free port,
started when the first PostgreSQL test needs it and stopped at the end of the
run, sized for the suite (SUITE_MAX_CONNECTIONS), so that the run neither
depends on nor takes from what else the machine's server serves.
PM_ORDER_TEST_POSTGRES_URL names a server to use instead (then none is started).
Each PostgreSQL test gets a schema of its own, dropped afterwards. In CI
(PM_ORDER_REQUIRE_POSTGRES=1) a missing PostgreSQL (no server at the URL given,
or no PostgreSQL binaries to start one) fails the run instead of skipping its
tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import pytest
from aiohttp.test_utils import TestClient

from api.app import create_app
from domain.service import OrderService
from service.config import Config, Limits
from service.store import Store, open_store
from tests.integration.processes import ThrowawayPostgres, free_port

# The suite's peak is about a hundred connections (servers in processes, each
# with its pools, beside the tests' own stores): room for it, and to spare.
SUITE_MAX_CONNECTIONS: Final = 400

_GIVEN_POSTGRES_URL: Final = os.environ.get("PM_ORDER_TEST_POSTGRES_URL") or None
# The own cluster's port is chosen now, so that POSTGRES_URL is known to the
# modules that import it; the cluster starts on it only when a test needs it.
_OWN_POSTGRES_PORT: Final = free_port()
POSTGRES_URL: Final = (
    _GIVEN_POSTGRES_URL or f"postgresql://postgres@127.0.0.1:{_OWN_POSTGRES_PORT}/test"
)
POSTGRES_REQUIRED = os.environ.get("PM_ORDER_REQUIRE_POSTGRES") == "1"

_own_cluster: list[ThrowawayPostgres] = []

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]

_postgres_reason: list[str | None] = []


def need_postgres() -> None:
    """Skip (or, in CI, fail) when PostgreSQL is not reachable."""
    if not _postgres_reason:
        _postgres_reason.append(_postgres_unavailable_reason())
    reason = _postgres_reason[0]
    if reason is None:
        return
    if POSTGRES_REQUIRED:
        pytest.fail(f"PostgreSQL is required (PM_ORDER_REQUIRE_POSTGRES=1): {reason}")
    pytest.skip(reason)


def _postgres_unavailable_reason() -> str | None:
    import psycopg

    if _GIVEN_POSTGRES_URL is None:
        try:
            _start_own_cluster()
        except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
            said = str(error).strip().splitlines() or [type(error).__name__]
            return f"cannot start the suite's own PostgreSQL cluster: {said[0]}"
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            return None
    except psycopg.Error as error:
        return f"no PostgreSQL at {POSTGRES_URL}: {error}".splitlines()[0]


def _start_own_cluster() -> None:
    """initdb and start the suite's cluster on its port, with a database `test`."""
    cluster = ThrowawayPostgres(
        port=_OWN_POSTGRES_PORT,
        settings={"max_connections": str(SUITE_MAX_CONNECTIONS)},
    )
    _own_cluster.append(cluster)
    import psycopg

    with psycopg.connect(cluster.url, autocommit=True) as connection:
        connection.execute("CREATE DATABASE test")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the suite's own cluster, and remove its folder."""
    while _own_cluster:
        _own_cluster.pop().destroy()


def drop_postgres_schema(schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        # The store's schema, and those beside it: its generations of the read
        # models, a rebuild's scratch schemas.
        beside = connection.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = %s"
            " OR starts_with(nspname, %s)",
            (schema, f"{schema}_"),
        ).fetchall()
        for (name,) in beside:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
            )


# tests/integration/test_pgbouncer.py runs the contract tests again with their
# PostgreSQL store behind a PgBouncer in front of the same server: its URL,
# with no database named.
PGBOUNCER_URL: Final = os.environ.get("PM_ORDER_TEST_PGBOUNCER_URL") or None


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store's URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/pm-order.sqlite3"
        return
    need_postgres()
    schema = f"test_{uuid.uuid4().hex[:12]}"
    if PGBOUNCER_URL is not None:  # the same server's database, through PgBouncer
        database = POSTGRES_URL.rsplit("/", 1)[1]
        yield f"{PGBOUNCER_URL.rstrip('/')}/{database}?schema={schema}"
    else:
        yield f"{POSTGRES_URL}?schema={schema}"
    drop_postgres_schema(schema)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def service(store: Store, clock: FakeClock) -> OrderService:
    return OrderService(store.app, clock=clock)


# -- the real app, through aiohttp's test client ---------------------------------

TOKENS = [
    {
        "token": "tok-alice",
        "user_name": "alice",
        "project_id": "proj-a",
        "roles": ["member"],
    },
    {
        "token": "tok-bob",
        "user_name": "bob",
        "project_id": "proj-b",
        "roles": ["member", "approver"],
    },
    {
        "token": "tok-bill",
        "user_name": "bill",
        "project_id": "proj-b",
        "roles": ["member"],
    },
    {
        "token": "tok-carol",
        "user_name": "carol",
        "project_id": "proj-c",
        "roles": ["member"],
    },
    {
        "token": "tok-expired",
        "user_name": "old",
        "project_id": "proj-a",
        "expires_at": "2020-01-01T00:00:00Z",
    },
]

INVENTORY = [
    *((f"SN-A-{n:03d}", "proj-a") for n in range(1, 11)),
    *((f"SN-B-{n:03d}", "proj-b") for n in range(1, 6)),
    *((f"SN-C-{n:03d}", "proj-c") for n in range(1, 4)),
]


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tokens": TOKENS}))
    return path


@pytest.fixture
def config(tokens_file: Path) -> Config:
    # Tests send bursts with one token, and many unknown tokens from one address;
    # the limits' own tests turn them on.
    return Config(
        tokens_file=tokens_file,
        limits=Limits(rate_per_second=None, auth_failures_per_second=None),
    )


@dataclass
class Api:
    """The app under test, spoken to over HTTP as the contract says."""

    client: TestClient
    store: Store
    service: OrderService
    prefix: str = "/mana_api"

    def url(self, tenant: str) -> str:
        return f"{self.prefix}/pm_order/{tenant}"

    @staticmethod
    def headers(token: str | None, **extra: str) -> dict[str, str]:
        headers = {"Sp-Agent": "scloudm", **extra}
        if token is not None:
            headers["X-Auth-Token"] = token
        return headers

    async def list(
        self, token: str, tenant: str, **params: Any
    ) -> tuple[int, dict[str, Any]]:
        response = await self.client.get(
            self.url(tenant),
            headers=self.headers(token),
            params={k: str(v) for k, v in params.items()},
        )
        return response.status, await response.json()

    async def request(
        self, token: str, tenant: str, body: Any
    ) -> tuple[int, dict[str, Any]]:
        response = await self.client.post(
            self.url(tenant), headers=self.headers(token), json=body
        )
        return response.status, await response.json()

    async def decide(
        self, token: str, tenant: str, body: Any
    ) -> tuple[int, dict[str, Any]]:
        response = await self.client.put(
            self.url(tenant), headers=self.headers(token), json=body
        )
        return response.status, await response.json()

    def head(self) -> int:
        """The event log's last position: unchanged means nothing was written."""
        return self.service.head()

    def owner(self, snid: str) -> tuple[str, int | None]:
        """(project, holding order) of a server, from the event store itself."""
        from domain.server import Server, server_aggregate_id

        server = self.store.app.repository.get(server_aggregate_id(snid))
        assert isinstance(server, Server)
        return server.project_id, server.order_id


@pytest.fixture
async def api(
    aiohttp_client: Any, store: Store, config: Config, clock: FakeClock
) -> AsyncIterator[Api]:
    """The real app on the test store, with tokens and INVENTORY registered."""
    service = OrderService(store.app, clock=clock)
    service.register_servers(INVENTORY)
    app = create_app(config, store=store, clock=clock)
    client = await aiohttp_client(app)
    yield Api(client=client, store=store, service=service)
    await client.close()  # stop the app's background work before the store closes


@pytest.fixture
def config_with(config: Config) -> Any:
    """Build a variant of `config`: config_with(approver_roles=...)."""
    return lambda **changes: replace(config, **changes)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say loudly when PostgreSQL tests were skipped, and why."""
    skipped = [
        report
        for report in terminalreporter.stats.get("skipped", [])
        if "postgres" in getattr(report, "keywords", {})
    ]
    if skipped:
        reason = _postgres_reason[0] if _postgres_reason else "unknown"
        terminalreporter.write_sep(
            "!",
            f"{len(skipped)} PostgreSQL tests SKIPPED: {reason}",
            red=True,
            bold=True,
        )
        terminalreporter.write_line(
            "Install PostgreSQL's server binaries (the suite starts its own "
            "cluster), or name a server in PM_ORDER_TEST_POSTGRES_URL, to run them; "
            "CI sets PM_ORDER_REQUIRE_POSTGRES=1 and fails instead."
        )
