"""PostgreSQL restarted in immediate mode (a crash, as far as its clients can tell)
under load: the service answers 503 with Retry-After while it is down, then
recovers by itself, NOTIFY wake-ups included, and keeps every promise.

The worker polls for events only every 30 seconds here
(PM_ORDER_IDLE_POLL_SECONDS), so a write through an API-only process shows in
the views within a second or two only if the worker's listener heard the
store's NOTIFY: that is how the test tells a listener that came back from
polling that covers for a dead one.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from pathlib import Path
from typing import Final

import aiohttp
import pytest

from service.store import open_store
from tests.integration.invariants import (
    Attempt,
    Ledger,
    every_problem,
    read_facts,
)
from tests.integration.processes import (
    ApiServer,
    PmOrderProcess,
    ThrowawayPostgres,
    run_pm_order,
)
from tests.integration.waiting import in_thread, readiness, until
from tests.integration.write_load import TOKENS, Belief, WriteLoad, inventory

pytestmark = pytest.mark.postgres

IDLE_POLL_SECONDS: Final = 30
# Far below both the idle poll (30 s) and the read-your-writes bound (10 s), which
# is how long a write's answer waits when no projector moves.
WOKEN_SECONDS: Final = 3.0
PROBES: Final = 5
OUTAGE_503S: Final = 3
RECOVERY_SECONDS: Final = 45.0
PROJECTING: Final = "projecting order_lists"
PROBE: Final = "SN-PROBE"


async def probe_write(
    session: aiohttp.ClientSession,
    writer: ApiServer,
    reader: ApiServer,
    ledger: Ledger,
) -> float:
    """Request the probe's server through `writer` and refuse the order; the seconds
    until the order shows (refused) through `reader`: the worker projected both."""
    attempt = Attempt("proj-a", "proj-b", (PROBE,))
    started = time.monotonic()
    async with session.post(
        f"{writer.base_url}/mana_api/pm_order/proj-a",
        json={"snids": PROBE, "dest_project": "proj-b"},
        headers={"X-Auth-Token": TOKENS["proj-a"], "Sp-Agent": "scloudm"},
    ) as response:
        ledger.answered(attempt, response.status, await response.json())
        assert response.status == 200, await response.text()
        number = (await response.json())["order_id"]
    async with session.put(
        f"{writer.base_url}/mana_api/pm_order/proj-b",
        json={"order_ids": [number], "accept": 0},
        headers={"X-Auth-Token": TOKENS["proj-b"], "Sp-Agent": "scloudm"},
    ) as response:
        assert response.status == 200, await response.text()
        ledger.decisions.append(((number,), False))
    async with session.get(
        f"{reader.base_url}/mana_api/pm_order/proj-b",
        params={"type": "2", "limit": "1"},
        headers={"X-Auth-Token": TOKENS["proj-b"], "Sp-Agent": "scloudm"},
    ) as response:
        listed = await response.json()
    shown = [o["id"] for o in listed["orders"]]
    assert shown == [number], f"order {number} not shown refused: the worker slept"
    return time.monotonic() - started


async def wake_ups_work(
    session: aiohttp.ClientSession,
    apis: list[ApiServer],
    worker: PmOrderProcess,
    ledger: Ledger,
) -> list[float]:
    """PROBES writes, each shown through the other API process within
    WOKEN_SECONDS, while the worker's projector ran on without failing (so no
    retry after an error did the work of a wake-up)."""
    projecting = worker.log().count(PROJECTING)
    took = []
    for n in range(PROBES):
        took.append(await probe_write(session, apis[n % 2], apis[(n + 1) % 2], ledger))
    assert worker.log().count(PROJECTING) == projecting, worker.log()[-3000:]
    assert max(took) < WOKEN_SECONDS, took
    return took


@pytest.mark.timeout(175)
async def test_an_immediate_restart_under_load_is_survived_without_a_restart(
    throwaway_postgres: ThrowawayPostgres, tokens_path: Path, tmp_path: Path
) -> None:
    # Given: a cluster of the test's own, servers for two projects (and one for
    # probing), one worker polling only every 30 s, two API-only processes
    url = f"{throwaway_postgres.url}?schema=restart"
    env = {
        "PM_ORDER_DATABASE_URL": url,
        "PM_ORDER_TOKENS_FILE": str(tokens_path),
        "PM_ORDER_IDLE_POLL_SECONDS": str(IDLE_POLL_SECONDS),
        # The load is what is under test here, not the per-token rate limit.
        "PM_ORDER_RATE_LIMIT": "off",
    }
    csv = tmp_path / "inventory.csv"
    csv.write_text(
        f"snid,project_id\n{PROBE},proj-a\n"
        + "".join(f"{s},{p}\n" for s, p in inventory(30))
    )
    imported = run_pm_order("machines", "import", str(csv), cwd=tmp_path, env=env)
    assert imported.returncode == 0, imported.stderr
    # The tables are made (by the import); the processes only use them, as in
    # production: processes starting together must not race to create them.
    env["PM_ORDER_CREATE_TABLES"] = "no"
    worker = PmOrderProcess(["worker"], env, tmp_path / "worker.log")
    apis: list[ApiServer] = []
    ledger = Ledger()
    try:
        worker.wait_for_log(PROJECTING)
        apis.extend(
            await asyncio.gather(
                *(in_thread(ApiServer, env, tmp_path / f"api-{n}.log") for n in (0, 1))
            )
        )
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=20)
        ) as session:
            # (the wake-ups work to begin with)
            await wake_ups_work(session, apis, worker, ledger)
            store = await in_thread(partial(open_store, url, create_tables=False))
            belief = Belief.of(await in_thread(read_facts, store))
            await in_thread(store.close)
            del belief.owners[PROBE]  # the probes' own
            load = WriteLoad(
                lambda: [api.base_url for api in apis],
                ledger,
                belief,
                clients=3,
                seed=10,
            )
            await load.start()
            try:
                await until(lambda: load.acknowledged >= 20, "writes under load", 30)

                # When: PostgreSQL stops at once, as in a crash
                throwaway_postgres.stop()

                # Then: requests get 503 with Retry-After while it is down
                await until(
                    lambda: (
                        sum(n for k, n in ledger.statuses.items() if k.endswith(" 503"))
                        >= OUTAGE_503S
                    ),
                    "503 answers during the outage",
                    30,
                )
                for api in apis:
                    async with session.get(
                        f"{api.base_url}/mana_api/pm_order/proj-a",
                        headers={"X-Auth-Token": "tok-alice", "Sp-Agent": "scloudm"},
                    ) as response:
                        assert response.status == 503
                        assert response.headers["Retry-After"].isdigit()
                        assert (await response.json())["code"] == 503
                    # and /readyz says why: the store is down
                    body = await readiness(session, api.base_url, 503, RECOVERY_SECONDS)
                    assert "store" in body["failed"], body

                # When: it starts again
                throwaway_postgres.start()

                # Then: writes are acknowledged again, with no process restarted
                acknowledged = load.acknowledged
                await until(
                    lambda: load.acknowledged >= acknowledged + 10,
                    "writes acknowledged after the restart",
                    RECOVERY_SECONDS,
                )
            finally:
                await load.stop()
            assert [p.process.poll() for p in [worker, *apis]] == [None] * 3
            for api in apis:
                # and every API process says it is ready again, listener included
                body = await readiness(session, api.base_url, 200, RECOVERY_SECONDS)
                assert body["checks"]["listener"]["ok"] is not False, body

            # and the worker is woken by NOTIFY again, not only by its 30 s poll
            deadline = time.monotonic() + RECOVERY_SECONDS
            while True:
                try:
                    took = await wake_ups_work(session, apis, worker, ledger)
                    break
                except AssertionError:
                    # The listener reconnects a second or so after the database
                    # is back; each try costs at most 10 s (read-your-writes).
                    if time.monotonic() > deadline:
                        raise
            print(f"after the restart, writes showed within {max(took):.2f} s")

        # and every promise holds: no order half-written, every acknowledged
        # write stored, the views equal to a rebuild
        facts, problems = await in_thread(every_problem, url, ledger, tmp_path)
        print(f"{len(facts.orders)} orders, {dict(ledger.statuses)}")
        assert not problems, "\n".join(problems)
        assert set(ledger.server_errors()) <= {"POST 503", "PUT 503", "GET 503"}
    finally:
        for process in [*apis, worker]:
            process.stop()
