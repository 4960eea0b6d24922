"""A rolling upgrade from one release to the next, and its rollback, while the
cluster serves (issue 23's "Done when", docs/upgrading.md's procedure): from the
previous release to HEAD, and from HEAD to HEAD with a change made in the test
(docs/read-models.md's worked example: a column added to the lists).

The previous release (0.1.0, 3f1bc4c, built from the repository's history) and
HEAD serve one PostgreSQL database together, behind a balancer that sends
requests only to ready processes and takes a process out 2 s before it stops.
Two `serve --api-only` and a `worker` of the previous release serve; HEAD's
processes replace them one at a time, in the order docs/upgrading.md gives; then
the previous release's replace HEAD's (the rollback); likewise HEAD and its
successor. Under the load of
tests/integration/lanes.py throughout: no request fails, no acknowledged order is
lost or listed in another state, every write shows at once on every process,
every mail is sent once (whichever release's mailer sends it), and `projections
verify` of both releases passes.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import psycopg
import pytest
from eventsourcing.persistence import StoredEvent
from psycopg import sql

from domain.order import Order
from domain.service import OrderApplication
from tests.integration.balancer import Backend, Balancer
from tests.integration.lanes import PROJECTS, TOKENS, Lanes
from tests.integration.processes import ApiServer, PmOrderProcess
from tests.integration.releases import (
    PREVIOUS_COMMIT,
    MissingHistory,
    Release,
    changed_head,
    head,
    materialise,
)
from tests.integration.smtp_server import Received, SmtpServer
from tests.integration.successor import successor

pytestmark = pytest.mark.postgres

# Servers per project: one lane each.
SERVERS_PER_PROJECT = 3
# Lane cycles (order, list, decide, list) in each step, at the least.
CYCLES_PER_STEP = 6
# The Message-ID of the mail about an order's event (mail/messages.py).
MESSAGE_ID = re.compile(r"<order-(\d+)\.event-(\d+)@[^>]+>")

T = TypeVar("T")


@pytest.fixture(scope="session")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    """Release 0.1.0 (3f1bc4c) from the repository's history, once a session."""
    try:
        return materialise(
            PREVIOUS_COMMIT, tmp_path_factory.mktemp("releases") / PREVIOUS_COMMIT
        )
    except MissingHistory as missing:
        pytest.fail(str(missing))


async def blocking(call: Callable[[], T]) -> T:
    """A blocking start or stop, off the loop that the load and the balancer run on."""
    return await asyncio.get_running_loop().run_in_executor(None, call)


class Cluster:
    """The processes of both releases on one database, behind the balancer."""

    def __init__(
        self, balancer: Balancer, lanes: Lanes, env: dict[str, str], logs: Path
    ) -> None:
        self.balancer = balancer
        self.lanes = lanes
        self.env = env
        self.logs = logs
        self.apis: dict[Backend, ApiServer] = {}
        self.processes: list[PmOrderProcess] = []
        self.steps: list[tuple[str, float]] = []
        self._started = 0

    def step(self, name: str) -> None:
        self.lanes.phase = name
        self.steps.append((name, time.monotonic()))

    def _log(self, release: Release, what: str) -> Path:
        self._started += 1
        return self.logs / f"{self._started:02d}-{release.name}-{what}.log"

    async def start_worker(self, release: Release) -> PmOrderProcess:
        worker = await blocking(
            lambda: release.process(["worker"], self.env, self._log(release, "worker"))
        )
        self.processes.append(worker)
        await blocking(lambda: worker.wait_for_log("worker started"))
        return worker

    async def start_api(self, release: Release) -> Backend:
        """An API process of `release`, taking traffic once its /readyz says so."""
        api = await blocking(lambda: release.api(self.env, self._log(release, "api")))
        self.processes.append(api)
        backend = self.balancer.add(f"{release.label} :{api.port}", api.base_url)
        self.apis[backend] = api
        await self.balancer.until_ready(backend)
        return backend

    async def replace_api(self, old: Backend, release: Release) -> Backend:
        """A new API process of `release` takes traffic, then `old` is taken out
        and stopped."""
        new = await self.start_api(release)
        await self.lanes.progress(CYCLES_PER_STEP)
        await self.balancer.take_out(old)
        await blocking(self.apis.pop(old).stop)
        return new

    async def stop(self, process: PmOrderProcess) -> None:
        await blocking(process.stop)

    def stop_all(self) -> None:
        for process in self.processes:
            process.stop()


async def caught_up(release: Release, env: dict[str, str], seconds: float = 60) -> None:
    """Wait until `release`'s read models show every event stored when the wait
    began, as its `projections status` says (an operator's check: a release's
    /readyz may answer 200 while it is behind within its lag bound, as 0.1.0's
    does)."""
    head = await blocking(lambda: _log_head(env["PM_ORDER_DATABASE_URL"]))
    async with asyncio.timeout(seconds):
        while True:
            status = await blocking(
                lambda: release.run("projections", "status", "--json", env=env)
            )
            assert status.returncode == 0, status.stdout + status.stderr
            rows = [json.loads(line) for line in status.stdout.splitlines()]
            if rows and min(int(row["position"]) for row in rows) >= head:
                return
            await asyncio.sleep(0.2)  # the command's next look


@pytest.fixture(scope="session")
def head_release() -> Release:
    return head()


@pytest.fixture(scope="session")
def head_with_changed_read_models(
    tmp_path_factory: pytest.TempPathFactory,
) -> Release:
    """HEAD with its read models changed as a successor would: a column added
    (docs/read-models.md's worked example), a column renamed, a view added."""
    return changed_head(
        tmp_path_factory.mktemp("releases") / "successor",
        successor,
        "changed-read-models",
    )


# (N-1, N): the release users run today and HEAD; HEAD and its successor.
PAIRS = {
    "3f1bc4c-to-HEAD": ("previous_release", "head_release"),
    "HEAD-to-HEAD-with-changed-read-models": (
        "head_release",
        "head_with_changed_read_models",
    ),
}


@pytest.mark.parametrize("pair", list(PAIRS))
async def test_a_release_and_its_successor_roll_out_and_back_under_load(
    pair: str,
    request: pytest.FixtureRequest,
    postgres_schema_url: str,
    tokens_path: Path,
    smtp_up: SmtpServer,
    tmp_path: Path,
) -> None:
    old, new = (request.getfixturevalue(name) for name in PAIRS[pair])
    env = {
        "PM_ORDER_DATABASE_URL": postgres_schema_url,
        "PM_ORDER_TOKENS_FILE": str(tokens_path),
        "PM_ORDER_RATE_LIMIT": "off",
        "PM_ORDER_SMTP_URL": smtp_up.url,
        "PM_ORDER_MAIL_FROM": "pm-order@example.com",
    }
    servers = {
        f"SN-{project[-1].upper()}-{n}": project
        for project in PROJECTS
        for n in range(1, SERVERS_PER_PROJECT + 1)
    }
    inventory = tmp_path / "inventory.csv"
    inventory.write_text(
        "snid,project_id\n" + "".join(f"{s},{p}\n" for s, p in servers.items())
    )
    imported = old.run("machines", "import", str(inventory), env=env)
    assert imported.returncode == 0, imported.stderr
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        Balancer(session) as balancer,
    ):
        lanes = Lanes(balancer, session, dict(servers))
        cluster = Cluster(balancer, lanes, env, tmp_path)
        try:
            try:
                head_verify = await _roll_out_and_back(cluster, old, new, env)
            except Exception as error:
                # Say what the load met up to where the procedure stopped.
                await lanes.stop()
                summary = _summary(cluster, lanes, time.monotonic() - started)
                raise AssertionError(
                    "\n".join(
                        [
                            f"the procedure stopped: {error!r}",
                            summary,
                            *lanes.failures[:20],
                        ]
                    )
                ) from error
            await lanes.stop()
            took = time.monotonic() - started

            # Then (each property checked, all broken ones said at once):
            broken: list[str] = []
            # no request failed, in any step
            broken += lanes.failures[:20]
            # and every write showed at once, on whichever process was asked
            # (the other release's processes too)
            broken += lanes.stale_reads[:20]
            # and every acknowledged order is in the event log, in the state its
            # last acknowledged write gave it, and nothing else is
            acknowledged = {n: o.state for n, o in lanes.orders.items()}
            in_the_log = _states_in_the_log(postgres_schema_url)
            broken += _differences("the event log", acknowledged, in_the_log)
            # and listed so by the processes serving at the end
            for backend in list(balancer.backends):
                broken += _differences(
                    f"the lists of {backend.name}",
                    {n: (o.source, o.dest, o.state) for n, o in lanes.orders.items()},
                    await _listed(session, backend),
                )
            # and the views of both releases equal a recomputation from the log
            old_verify = await blocking(
                lambda: old.run("projections", "verify", env=env)
            )
            for release, verify in ((new, head_verify), (old, old_verify)):
                if verify.returncode != 0:
                    broken.append(
                        f"{release.label}'s projections verify: "
                        + (verify.stdout + verify.stderr)[-2000:]
                    )
            # and each mail was sent once, whichever release's mailer sent it:
            # one per event of each order that mails someone
            expected = sorted(
                (n, version)
                for n, o in lanes.orders.items()
                if o.mailto
                for version in (1, 2)
            )
            try:
                await smtp_up.mailbox.wait_for(len(expected), seconds=60)
            except TimeoutError as error:
                broken.append(f"mail: {error}")
            sent = sorted(map(_order_and_event, smtp_up.mailbox.received))
            if sent != expected:
                twice = sorted({m for m in sent if sent.count(m) > 1})
                broken.append(
                    f"mail: {len(sent)} messages sent for {len(expected)} expected;"
                    f" sent more than once: {twice[:20]};"
                    f" never sent: {sorted(set(expected) - set(sent))[:20]}"
                )
            summary = _summary(cluster, lanes, took)
            assert not broken, "\n".join([summary, *broken])
            print(summary)
        finally:
            await blocking(cluster.stop_all)
    for log in sorted(tmp_path.glob("*.log")):
        assert "Traceback" not in log.read_text(errors="replace"), log.name


async def _roll_out_and_back(
    cluster: Cluster, old: Release, new: Release, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """docs/upgrading.md's procedure, under the lanes' load: N-1 (`old`) serves,
    N (`new`) replaces it, then N-1 replaces N. Returns N's verify, run while N
    alone served."""
    lanes = cluster.lanes
    # Given: the previous release serves: a worker, two API processes
    cluster.step(f"{old.label} only")
    old_worker = await cluster.start_worker(old)
    apis = list(await asyncio.gather(*(cluster.start_api(old) for _ in range(2))))
    lanes.start()
    await lanes.progress(CYCLES_PER_STEP)

    # When: HEAD's worker starts beside the old one, then HEAD's API
    # processes replace the old ones one at a time, then the old worker
    # stops (docs/upgrading.md)
    cluster.step(f"{new.label} worker starts beside {old.label}'s")
    new_worker = await cluster.start_worker(new)
    await lanes.progress(CYCLES_PER_STEP)
    for n in range(len(apis)):
        cluster.step(f"{new.label} API process {n + 1} replaces one")
        apis[n] = await cluster.replace_api(apis[n], new)
    cluster.step(f"{old.label} worker stops")
    await cluster.stop(old_worker)
    await lanes.progress(CYCLES_PER_STEP)
    # (HEAD alone serves: its verify, with the load held for it)
    await lanes.pause()
    head_verify = await blocking(lambda: new.run("projections", "verify", env=env))
    lanes.resume()

    # and then it is rolled back: the old worker first, its API
    # processes replacing HEAD's once ready, HEAD's worker last
    cluster.step(f"rollback: {old.label} worker starts")
    await cluster.start_worker(old)
    await caught_up(old, env)
    await lanes.progress(CYCLES_PER_STEP)
    for n in range(len(apis)):
        cluster.step(f"rollback: {old.label} API process {n + 1} replaces one")
        apis[n] = await cluster.replace_api(apis[n], old)
    cluster.step(f"rollback: {new.label} worker stops")
    await cluster.stop(new_worker)
    await lanes.progress(CYCLES_PER_STEP)
    return head_verify


def _summary(cluster: Cluster, lanes: Lanes, took: float) -> str:
    failed: dict[str, int] = {}
    for failure in lanes.failures:
        phase = failure[1 : failure.index("]")]
        failed[phase] = failed.get(phase, 0) + 1
    ends = [at for _, at in cluster.steps[1:]] + [time.monotonic()]
    rows = [
        f"  {name}: {failed.get(name, 0)} failed of {lanes.requests[name]}"
        f" ({end - at:.1f} s)"
        for (name, at), end in zip(cluster.steps, ends, strict=True)
    ]
    return "\n".join(
        [
            f"rolling upgrade and rollback: {took:.0f} s, {len(lanes.orders)} orders,"
            f" {sum(lanes.requests.values())} requests",
            *rows,
        ]
    )


def _differences(
    where: str, acknowledged: dict[int, Any], found: dict[int, Any]
) -> list[str]:
    """What `where` holds otherwise than the clients were told (at most 20)."""
    return [
        f"{where}: order {n} is {found.get(n)!r}, acknowledged {acknowledged.get(n)!r}"
        for n in sorted(acknowledged.keys() | found.keys())
        if acknowledged.get(n) != found.get(n)
    ][:20]


def _order_and_event(received: Received) -> tuple[int, int]:
    """The order and event version a message is about, from its Message-ID."""
    found = MESSAGE_ID.fullmatch(received.message_id)
    assert found, received.message_id
    return int(found.group(1)), int(found.group(2))


def _log_head(url: str) -> int:
    """The event log's last position."""
    base, _, schema = url.partition("?schema=")
    with psycopg.connect(base) as db:
        row = db.execute(
            sql.SQL("SELECT max(notification_id) FROM {}.pm_order_events").format(
                sql.Identifier(schema)
            )
        ).fetchone()
    return int(row[0] or 0) if row else 0


def _states_in_the_log(url: str) -> dict[int, str]:
    """Each order's state, from its events in the log (read with HEAD's code)."""
    base, _, query = url.partition("?schema=")
    mapper = OrderApplication(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper
    with psycopg.connect(base) as db:
        rows = db.execute(
            sql.SQL(
                "SELECT originator_id, originator_version, topic, state"
                " FROM {}.pm_order_events WHERE topic LIKE %s"
                " ORDER BY notification_id"
            ).format(sql.Identifier(query)),
            ["domain.order:%"],
        ).fetchall()
    states: dict[int, str] = {}
    for originator_id, version, topic, state in rows:
        event: Any = mapper.to_domain_event(
            StoredEvent(originator_id, version, topic, bytes(state))
        )
        if isinstance(event, Order.Requested):
            states[event.number] = "unfinished"
        elif isinstance(event, Order.Accepted | Order.Rejected):
            states[event.number] = event.state
    return states


async def _listed(
    session: aiohttp.ClientSession, backend: Backend
) -> dict[int, tuple[str, str, str]]:
    """Every order of every project's list 4 (all of its orders), paged through,
    as (source, destination, state)."""
    listed: dict[int, tuple[str, str, str]] = {}
    for project in PROJECTS:
        marker: int | None = None
        while True:
            params = {"type": "4", "limit": "1000"}
            if marker is not None:
                params["marker"] = str(marker)
            async with session.get(
                f"{backend.base_url}/mana_api/pm_order/{project}",
                params=params,
                headers={"Sp-Agent": "scloudm", "X-Auth-Token": TOKENS[project]},
            ) as response:
                assert response.status == 200, await response.text()
                body = await response.json()
            for o in body["orders"]:
                listed[o["id"]] = (o["resource_project"], o["dest_project"], o["state"])
            marker = body.get("next_marker")
            if marker is None:
                break
    return listed


async def test_a_rollback_after_the_upgrade_was_finished_rebuilds_the_old_read_models(
    previous_release: Release,
    postgres_schema_url: str,
    tokens_path: Path,
    smtp_up: SmtpServer,
    tmp_path: Path,
) -> None:
    old, new = previous_release, head()
    env = {
        "PM_ORDER_DATABASE_URL": postgres_schema_url,
        "PM_ORDER_TOKENS_FILE": str(tokens_path),
        "PM_ORDER_SMTP_URL": smtp_up.url,
        "PM_ORDER_MAIL_FROM": "pm-order@example.com",
    }
    inventory = tmp_path / "inventory.csv"
    inventory.write_text(
        "snid,project_id\n" + "".join(f"SN-A-{n},proj-a\n" for n in range(1, 7))
    )
    imported = old.run("machines", "import", str(inventory), env=env)
    assert imported.returncode == 0, imported.stderr
    told: dict[int, str] = {}  # what each order's last write was answered
    processes: list[ApiServer] = []

    def serve(release: Release, name: str) -> ApiServer:
        started = release.api(env, tmp_path / f"{name}.log", api_only=False)
        processes.append(started)
        return started

    async with aiohttp.ClientSession() as session:

        async def write(api: ApiServer, snid: str, decision: bool | None) -> None:
            number = await _post(session, api, snid)
            told[number] = "unfinished"
            if decision is not None:
                await _put(session, api, number, decision)
                told[number] = "finished" if decision else "refused"

        try:
            # Given: orders made under 0.1.0, then under HEAD beside it, then
            # under HEAD alone, 0.1.0's read models dropped in between (the
            # upgrade finished: HEAD's `db finish-upgrade`)
            old_serve = await blocking(lambda: serve(old, "old-serve"))
            await _ready(session, old_serve)
            await write(old_serve, "SN-A-1", decision=True)
            await write(old_serve, "SN-A-2", decision=None)
            new_serve = await blocking(lambda: serve(new, "new-serve"))
            await _ready(session, new_serve)
            await write(new_serve, "SN-A-3", decision=False)
            await blocking(old_serve.stop)
            finished = await blocking(
                lambda: new.run("db", "finish-upgrade", "--idle", "1s", env=env)
            )
            assert finished.returncode == 0, finished.stdout + finished.stderr
            assert old.version in finished.stdout, finished.stdout
            await write(new_serve, "SN-A-4", decision=True)

            # When: 0.1.0 is started again beside HEAD (a rollback), and once
            # its read models are built again from the log, HEAD stops
            old_again = await blocking(lambda: serve(old, "old-again"))
            await caught_up(old, env)
            await _ready(session, old_again)
            await blocking(new_serve.stop)
            await write(old_again, "SN-A-5", decision=False)

            # Then: 0.1.0 lists every order in the state it was acknowledged in
            assert await _listed_orders(session, old_again) == told
            # and its order numbers went on from HEAD's (the sequence is shared)
            assert sorted(told) == list(range(1, len(told) + 1))
            # and each mail was sent once, though 0.1.0 projected its outbox anew
            # (a message per event: the request, and the decision if any)
            expected = sorted(
                (n, version)
                for n, state in told.items()
                for version in ((1,) if state == "unfinished" else (1, 2))
            )
            await smtp_up.mailbox.wait_for(len(expected), seconds=60)
            sent = sorted(map(_order_and_event, smtp_up.mailbox.received))
            assert sent == expected
            # and its views equal a recomputation from the log
            verify = await blocking(lambda: old.run("projections", "verify", env=env))
            assert verify.returncode == 0, verify.stdout + verify.stderr
        finally:
            await blocking(lambda: _stop_all(processes))
    for log in sorted(tmp_path.glob("*.log")):
        assert "Traceback" not in log.read_text(errors="replace"), log.name


async def _ready(
    session: aiohttp.ClientSession, api: ApiServer, seconds: float = 60.0
) -> None:
    """Wait until `api`'s /readyz answers 200 (a balancer would send it traffic)."""
    async with asyncio.timeout(seconds):
        while True:
            async with session.get(f"{api.base_url}/readyz") as response:
                if response.status == 200:
                    return
            await asyncio.sleep(0.2)  # the balancer's next check


async def _post(session: aiohttp.ClientSession, api: ApiServer, snid: str) -> int:
    async with session.post(
        f"{api.base_url}/mana_api/pm_order/proj-a",
        json={"snids": snid, "dest_project": "proj-b", "mailto": "ops@example.com"},
        headers={"Sp-Agent": "scloudm", "X-Auth-Token": TOKENS["proj-a"]},
    ) as response:
        body = await response.json()
        assert response.status == 200, body
        return int(body["order_id"])


async def _put(
    session: aiohttp.ClientSession, api: ApiServer, number: int, accept: bool
) -> None:
    async with session.put(
        f"{api.base_url}/mana_api/pm_order/proj-b",
        json={"order_ids": [number], "accept": int(accept)},
        headers={"Sp-Agent": "scloudm", "X-Auth-Token": TOKENS["proj-b"]},
    ) as response:
        assert response.status == 200, await response.text()


async def _listed_orders(
    session: aiohttp.ClientSession, api: ApiServer
) -> dict[int, str]:
    """proj-a's orders (all of them here) and their states, as `api` lists them."""
    async with session.get(
        f"{api.base_url}/mana_api/pm_order/proj-a",
        params={"type": "4"},
        headers={"Sp-Agent": "scloudm", "X-Auth-Token": TOKENS["proj-a"]},
    ) as response:
        assert response.status == 200, await response.text()
        return {o["id"]: o["state"] for o in (await response.json())["orders"]}


def _stop_all(processes: list[ApiServer]) -> None:
    for process in processes:
        process.stop()
