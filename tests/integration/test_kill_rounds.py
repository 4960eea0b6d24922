"""SIGKILL at random moments, round after round, under a steady write load: two API
processes and two workers on one PostgreSQL database keep every promise.

The moments and the victims come from a seeded random generator
(PM_ORDER_FAULT_SEED, default 10): a failure names its seed and round, and the
same seed draws the same plan again.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from functools import partial
from pathlib import Path
from typing import Final

import pytest

from service.store import open_store
from tests.integration.invariants import (
    Ledger,
    broken_promises,
    caught_up_facts,
    read_facts,
    store_problems,
    views_differing_from_a_rebuild,
)
from tests.integration.processes import ApiServer, PmOrderProcess, run_pm_order
from tests.integration.waiting import in_thread, until
from tests.integration.write_load import Belief, WriteLoad, inventory

pytestmark = pytest.mark.postgres

SEED: Final = int(os.environ.get("PM_ORDER_FAULT_SEED", "10"))
ROUNDS: Final = 6
CLIENTS: Final = 4
SERVERS_PER_PROJECT: Final = 40
# After the restarts of a round, the load runs on until this many more writes
# have been acknowledged: the service is serving again, not merely up.
WRITES_AFTER_RESTART: Final = 5
ROUND_SECONDS: Final = 40.0


class Deployment:
    """Two `serve --api-only` processes and two workers, each killed and restarted
    at will; a restarted API process listens on a new port."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.starts = 0
        self.apis = [self._api(n) for n in (0, 1)]
        self.workers = [self._worker(n) for n in (0, 1)]
        for worker in self.workers:
            worker.wait_for_log("worker started")

    @property
    def names(self) -> list[str]:
        return ["api-0", "api-1", "worker-0", "worker-1"]

    def base_urls(self) -> list[str]:
        return [api.base_url for api in self.apis]

    def process(self, name: str) -> PmOrderProcess:
        kind, n = name.split("-")
        return self.apis[int(n)] if kind == "api" else self.workers[int(n)]

    def api(self, name: str) -> ApiServer:
        return self.apis[int(name.split("-")[1])]

    def kill(self, name: str) -> None:
        self.process(name).kill()
        self.process(name).stop()

    def restart(self, name: str) -> None:
        """Start `name` again and wait until it serves (or, a worker, works)."""
        kind, n = name.split("-")
        if kind == "api":
            self.apis[int(n)] = self._api(int(n))
        else:
            self.workers[int(n)] = worker = self._worker(int(n))
            worker.wait_for_log("worker started")

    def dead(self) -> list[str]:
        processes = [*self.apis, *self.workers]
        return [
            f"{name}:\n{p.log()[-3000:]}"
            for name, p in zip(self.names, processes, strict=True)
            if p.process.poll() is not None
        ]

    def log_tails(self) -> str:
        """The end of every current process's log, for a failure's message."""
        processes = [*self.apis, *self.workers]
        return "\n".join(
            f"--- {name}:\n{p.log()[-2500:]}"
            for name, p in zip(self.names, processes, strict=True)
        )

    def stop(self) -> None:
        for process in [*self.apis, *self.workers]:
            process.stop()

    def _api(self, n: int) -> ApiServer:
        self.starts += 1
        return ApiServer(self.env, self.logs / f"api-{n}.{self.starts}.log")

    def _worker(self, n: int) -> PmOrderProcess:
        self.starts += 1
        return PmOrderProcess(
            ["worker"], self.env, self.logs / f"worker-{n}.{self.starts}.log"
        )


def kill_plan(rng: random.Random, names: list[str]) -> list[list[str]]:
    """Victims per round: each process at least once, sometimes two at a time."""
    order = rng.sample(names, len(names))
    plan = []
    for round_ in range(ROUNDS):
        victims = [order[round_ % len(order)]]
        if rng.random() < 0.5:
            victims.append(rng.choice([n for n in names if n not in victims]))
        plan.append(victims)
    return plan


async def kill_and_restart(
    load: WriteLoad, deployment: Deployment, victims: list[str], rng: random.Random
) -> int:
    """Kill each victim at a random moment under load and restart it while the load
    goes on, until writes are acknowledged again. Returns how many requests were in
    flight when an API process was killed."""
    started = time.monotonic()
    cut_off = 0
    await load.start()
    try:
        for victim in victims:
            await until(lambda: load.in_flight > 0, "the load to be running", 10)
            await asyncio.sleep(rng.uniform(0.3, 2.0))  # the random moment
            if victim.startswith("api"):
                # ... when a write to it is being answered: one is cut off.
                await load.posting_to(deployment.api(victim).base_url, 10)
                cut_off += load.in_flight
            deployment.kill(victim)
            await in_thread(deployment.restart, victim)
        acknowledged = load.acknowledged
        try:
            await until(
                lambda: load.acknowledged >= acknowledged + WRITES_AFTER_RESTART,
                "writes acknowledged after the restarts",
                max(5.0, ROUND_SECONDS - (time.monotonic() - started)),
            )
        except TimeoutError as error:
            raise TimeoutError(
                f"{error}: {load.acknowledged - acknowledged} acknowledged, "
                f"{load.in_flight} in flight\n{deployment.log_tails()}"
            ) from None
    finally:
        await load.stop()
    return cut_off


@pytest.mark.timeout(175)
async def test_sigkill_rounds_under_load_break_no_promise(
    postgres_schema_url: str, tokens_path: Path, tmp_path: Path
) -> None:
    # Given: the tables, servers for two projects, two workers and two API processes
    env = {
        "PM_ORDER_DATABASE_URL": postgres_schema_url,
        "PM_ORDER_TOKENS_FILE": str(tokens_path),
        "PM_ORDER_CREATE_TABLES": "no",
        # The load is what is under test here, not the per-token rate limit.
        "PM_ORDER_RATE_LIMIT": "off",
    }
    assert run_pm_order("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    csv = tmp_path / "inventory.csv"
    csv.write_text(
        "snid,project_id\n"
        + "".join(f"{s},{p}\n" for s, p in inventory(SERVERS_PER_PROJECT))
    )
    imported = run_pm_order("machines", "import", str(csv), cwd=tmp_path, env=env)
    assert imported.returncode == 0, imported.stderr
    rng = random.Random(SEED)
    deployment = await in_thread(Deployment, env, tmp_path)
    store = await in_thread(
        partial(open_store, postgres_schema_url, create_tables=False)
    )
    ledger = Ledger()
    facts = await in_thread(read_facts, store)
    cut_off_in_flight = 0
    try:
        for round_, victims in enumerate(kill_plan(rng, deployment.names), 1):
            where = f"seed {SEED}, round {round_} (killed {', '.join(victims)})"
            load = WriteLoad(
                deployment.base_urls,
                ledger,
                Belief.of(facts),
                clients=CLIENTS,
                seed=SEED * 100 + round_,
            )
            # When: the victims are killed at random moments under load, and restarted
            cut_off_in_flight += await kill_and_restart(load, deployment, victims, rng)

            # Then: nobody else died, and once the views have caught up (the
            # restarted workers project again) every promise holds
            assert not deployment.dead(), where
            facts = await in_thread(caught_up_facts, store)
            problems = [
                *store_problems(facts),
                *broken_promises(facts, ledger),
                *await in_thread(
                    views_differing_from_a_rebuild, postgres_schema_url, tmp_path
                ),
            ]
            # Shown when the test fails: what each round did.
            print(f"{where}: {len(facts.orders)} orders, {dict(ledger.statuses)}")
            assert not problems, f"{where}:\n" + "\n".join(problems)
            # (the store stayed up: no request had a reason to fail on the server)
            assert not ledger.server_errors(), f"{where}: {dict(ledger.statuses)}"
    finally:
        deployment.stop()
        await in_thread(store.close)

    # and the load was real: many writes acknowledged, and some cut off by a kill
    assert len(ledger.acknowledged) >= 20, dict(ledger.statuses)
    assert ledger.decisions, dict(ledger.statuses)
    assert cut_off_in_flight > 0
    assert ledger.uncertain, dict(ledger.statuses)
