"""A PostgreSQL failover under load, and the way back: no acknowledged order is
lost, and the service follows the new primary by itself.

Two throwaway clusters on loopback: a primary and a streaming standby made by
`pg_basebackup -R`, synchronous (`synchronous_standby_names`, with the default
`synchronous_commit = on`), so that a commit is acknowledged only once the
standby has it. One `serve` process (the API and every background role) is
given both hosts in libpq's multi-host URL. The primary is stopped in
immediate mode (a crash, as far as anyone can tell) and the standby promoted;
then the old primary is rewound into a standby of the new one (pg_rewind) and
the same is done the other way.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Final

import aiohttp
import psycopg
import pytest

from service.store import open_store
from tests.conftest import need_postgres
from tests.integration.invariants import (
    Attempt,
    Ledger,
    every_problem,
    read_facts,
)
from tests.integration.processes import ApiServer, ThrowawayPostgres, run_pm_order
from tests.integration.smtp_server import SmtpServer
from tests.integration.waiting import in_thread, readiness, until
from tests.integration.write_load import TOKENS, Belief, WriteLoad, inventory

pytestmark = pytest.mark.postgres

RECOVERY_SECONDS: Final = 30.0
# Servers only the probes request: each probe its own, so that a probe whose
# answer was lost (it may be stored) never makes the next one a conflict.
PROBE_SERVERS: Final = [f"SN-FO-{n:03d}" for n in range(80)]
ROLES: Final = ("projector", "warning_scheduler", "mailer")


@pytest.fixture
def pair() -> Iterator[tuple[ThrowawayPostgres, ThrowawayPostgres]]:
    """A primary and its synchronous standby, on loopback ports of their own."""
    need_postgres()
    clusters: list[ThrowawayPostgres] = []
    try:
        # pg_rewind needs data checksums (or wal_log_hints) to rewind a cluster,
        clusters.append(ThrowawayPostgres(checksums=True))
        # and the WAL of the rewound one back to the last checkpoint the two
        # shared, which its own crash recovery would otherwise recycle. (Set
        # before the base backup: the standby gets it too.)
        alter_system(clusters[0], "wal_keep_size", "1GB")
        clusters.append(ThrowawayPostgres(standby_of=clusters[0]))
        make_synchronous(clusters[0])
    except (RuntimeError, OSError) as error:
        for cluster in clusters:
            cluster.destroy()
        pytest.fail(f"cannot start a primary and a standby: {error}")
    yield clusters[0], clusters[1]
    for cluster in clusters:
        cluster.destroy()


def alter_system(cluster: ThrowawayPostgres, setting: str, value: str) -> None:
    """Set `setting` in the cluster's postgresql.auto.conf, and reload."""
    from psycopg import sql

    with psycopg.connect(cluster.conninfo, autocommit=True) as connection:
        connection.execute(
            sql.SQL("ALTER SYSTEM SET {} = {}").format(
                sql.Identifier(setting), sql.Literal(value)
            )
        )
        connection.execute("SELECT pg_reload_conf()")


def make_synchronous(primary: ThrowawayPostgres) -> None:
    """Have `primary` acknowledge a commit only once its standby has it (as an
    operator, or Patroni's synchronous mode, does once a standby streams), and
    wait until the standby is the synchronous one."""
    alter_system(primary, "synchronous_standby_names", "*")
    with psycopg.connect(primary.conninfo, autocommit=True) as connection:

        def synchronous() -> bool:
            row = connection.execute(
                "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"
            ).fetchone()
            return bool(row and row[0])

        deadline = time.monotonic() + RECOVERY_SECONDS
        while not synchronous():
            if time.monotonic() > deadline:
                raise RuntimeError("the standby never became synchronous")
            time.sleep(0.05)


def leaders(base_url: str) -> dict[str, bool]:
    """Each background role and whether the process leads it, from /metrics."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = {}
    for line in text.splitlines():
        if line.startswith("pm_order_leader{"):
            role = line.split('role="')[1].split('"')[0]
            found[role] = float(line.rsplit(" ", 1)[1]) == 1.0
    return found


class Probe:
    """POSTs orders of servers of its own, one after another, and tells when the
    first is acknowledged after a given moment."""

    def __init__(self, base_url: str, ledger: Ledger) -> None:
        self.base_url = base_url
        self.ledger = ledger
        self.servers = iter(PROBE_SERVERS)

    async def first_acknowledged(self, session: aiohttp.ClientSession) -> float:
        """Request orders until one is answered 200; the time.monotonic() of that
        answer. Every other answer is a 503 with Retry-After, or none at all."""
        deadline = time.monotonic() + RECOVERY_SECONDS
        while time.monotonic() < deadline:
            snid = next(self.servers, None)
            assert snid is not None, (
                f"no order acknowledged in {len(PROBE_SERVERS)} tries"
            )
            attempt = Attempt("proj-a", "proj-b", (snid,))
            try:
                async with session.post(
                    f"{self.base_url}/mana_api/pm_order/proj-a",
                    json={"snids": snid, "dest_project": "proj-b"},
                    headers={"X-Auth-Token": TOKENS["proj-a"], "Sp-Agent": "scloudm"},
                ) as response:
                    body = await response.json()
                    self.ledger.answered(attempt, response.status, body)
                    if response.status == 200:
                        return time.monotonic()
                    assert response.status == 503, body
                    assert response.headers["Retry-After"].isdigit()
            except (aiohttp.ClientError, TimeoutError) as error:
                self.ledger.cut_off(attempt, error)
            await asyncio.sleep(0.1)
        raise TimeoutError("no order acknowledged after the failover")


async def fail_over(
    old: ThrowawayPostgres,
    new: ThrowawayPostgres,
    *,
    serve: ApiServer,
    load: WriteLoad,
    probe: Probe,
    session: aiohttp.ClientSession,
    look_before_promoting: bool,
) -> float:
    """Stop `old` at once and promote `new`, under load; the seconds from the
    stop to the first order acknowledged by `new`."""
    acknowledged = load.acknowledged
    await until(lambda: load.acknowledged >= acknowledged + 15, "writes", 30)
    died = time.monotonic()
    await in_thread(old.stop)
    if look_before_promoting:
        # /readyz says what is happening: one host down, none taking writes
        body = await readiness(
            session, serve.base_url, 503, RECOVERY_SECONDS, failing="store"
        )
        detail = str(body["msg"])
        assert f"127.0.0.1:{old.port} does not answer" in detail, body
        assert f"127.0.0.1:{new.port} is a standby" in detail, body
        assert "no host takes writes" in detail, body
    await in_thread(new.promote)
    first = await probe.first_acknowledged(session)
    # The load's own writes are acknowledged again too
    acknowledged = load.acknowledged
    await until(
        lambda: load.acknowledged >= acknowledged + 10,
        "writes acknowledged on the new primary",
        RECOVERY_SECONDS,
    )
    return first - died


@pytest.mark.timeout(170)
async def test_a_failover_loses_no_acknowledged_order_and_needs_no_restart(
    pair: tuple[ThrowawayPostgres, ThrowawayPostgres],
    smtp_up: SmtpServer,
    tokens_path: Path,
    tmp_path: Path,
) -> None:
    # Given: a primary and its synchronous standby, named together in one URL
    first, second = pair
    url = (
        f"postgresql://postgres@127.0.0.1:{first.port},127.0.0.1:{second.port}"
        "/postgres?target_session_attrs=read-write&schema=failover"
    )
    env = {
        "PM_ORDER_DATABASE_URL": url,
        "PM_ORDER_TOKENS_FILE": str(tokens_path),
        "PM_ORDER_RATE_LIMIT": "off",
        # With SMTP set, the mailer is among the roles elected
        "PM_ORDER_SMTP_URL": smtp_up.url,
    }
    csv = tmp_path / "inventory.csv"
    csv.write_text(
        "snid,project_id\n"
        + "".join(f"{s},proj-a\n" for s in PROBE_SERVERS)
        + "".join(f"{s},{p}\n" for s, p in inventory(30))
    )
    # (the command line takes the multi-host URL too)
    imported = run_pm_order("machines", "import", str(csv), cwd=tmp_path, env=env)
    assert imported.returncode == 0, imported.stderr
    env["PM_ORDER_CREATE_TABLES"] = "no"
    # and one `serve` process, the API and every background role in one
    serve = await in_thread(
        partial(ApiServer, env, tmp_path / "serve.log", api_only=False)
    )
    ledger = Ledger()
    took: list[float] = []
    try:
        serve.wait_for_log("projecting order_lists")
        store = await in_thread(partial(open_store, url, create_tables=False))
        belief = Belief.of(await in_thread(read_facts, store))
        await in_thread(store.close)
        for snid in PROBE_SERVERS:
            del belief.owners[snid]
        probe = Probe(serve.base_url, ledger)
        load = WriteLoad(lambda: [serve.base_url], ledger, belief, clients=3, seed=19)
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=20)
        ) as session:
            await load.start()
            try:
                # When: the primary dies and the standby is promoted
                took.append(
                    await fail_over(
                        first,
                        second,
                        serve=serve,
                        load=load,
                        probe=probe,
                        session=session,
                        look_before_promoting=True,
                    )
                )
                # and the old primary comes back as a standby of the new one,
                # which then waits for it at each commit
                await in_thread(first.rewind_as_standby_of, second)
                await in_thread(make_synchronous, second)
                # and the new primary dies in turn, the old one promoted again
                took.append(
                    await fail_over(
                        second,
                        first,
                        serve=serve,
                        load=load,
                        probe=probe,
                        session=session,
                        look_before_promoting=False,
                    )
                )
            finally:
                await load.stop()
            print(
                "from the primary's death to the first order acknowledged by the "
                f"new one: {took[0]:.2f} s (readiness checked before promoting), "
                f"{took[1]:.2f} s (promoted at once)"
            )

            # Then: the same process serves, ready again by itself, listener and all
            assert serve.process.poll() is None
            body = await readiness(session, serve.base_url, 200, RECOVERY_SECONDS)
            assert body["checks"]["listener"]["ok"] is True, body
            # and it leads every background role again, on the new primary
            await until(
                lambda: leaders(serve.base_url) == dict.fromkeys(ROLES, True),
                "every role led again",
                RECOVERY_SECONDS,
            )

        # and every acknowledged write is on the new primary, nothing half
        # written, and the views equal a rebuild from the events
        facts, problems = await in_thread(every_problem, url, ledger, tmp_path)
        print(f"{len(facts.orders)} orders, {dict(ledger.statuses)}")
        assert not problems, "\n".join(problems)
        # and no request was answered with a 500: only 503s while no host wrote
        assert set(ledger.server_errors()) <= {"POST 503", "PUT 503", "GET 503"}
        assert "unexpected error" not in serve.log()
    finally:
        serve.stop()
