"""The synchronous standby lost (issue 26, finding 9): a primary whose
`synchronous_standby_names` names a standby that is not running. A write is
answered 503 within the bound, saying it may have been stored; /readyz and
pm_order_writes_unconfirmed say writes are not confirmed; once the operator
relaxes synchronous replication, writes are confirmed again. The real app on a
throwaway primary (initdb on a free port)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

import psycopg
import pytest

from api.app import create_app
from domain.service import OrderService
from service.config import Config
from service.store import Store, open_store
from service.write_confirmation import CancelledAfter
from tests.conftest import INVENTORY, Api, FakeClock, need_postgres
from tests.integration.processes import ThrowawayPostgres
from tests.integration.test_failover import alter_system

pytestmark = pytest.mark.postgres

BOUND: Final = 1.0
# The answer's time: the bound, and a margin for the machine.
ANSWERED_WITHIN: Final = BOUND + 4.0


@pytest.fixture
def primary() -> Iterator[ThrowawayPostgres]:
    need_postgres()
    cluster = ThrowawayPostgres()
    yield cluster
    cluster.destroy()


@pytest.fixture
async def api(
    aiohttp_client: Any, primary: ThrowawayPostgres, config: Config, clock: FakeClock
) -> AsyncIterator[Api]:
    store: Store = open_store(primary.url)
    service = OrderService(store.app, clock=clock)
    service.register_servers(INVENTORY)
    settings = Config(
        tokens_file=config.tokens_file,
        limits=config.limits,
        database_url=primary.url,
        write_confirm_timeout=BOUND,
        read_your_writes_timeout=BOUND,
    )
    client = await aiohttp_client(create_app(settings, store=store, clock=clock))
    yield Api(client=client, store=store, service=service)
    # the standby back out of the way, so that nothing waits at the close
    standby_waited_for(primary, "")
    await client.close()
    store.close()


def standby_waited_for(primary: ThrowawayPostgres, names: str) -> None:
    """Set synchronous_standby_names, and wait until the primary acts on it: a
    durable write waits for a standby (`names`) or does not (empty)."""
    alter_system(primary, "synchronous_standby_names", names)
    deadline = time.monotonic() + 10
    with psycopg.connect(primary.conninfo, autocommit=True) as conn:
        while True:
            with CancelledAfter(conn, 0.3) as bound:
                conn.execute("SELECT pg_logical_emit_message(true, 'test', '')")
            if bound.fired == bool(names):
                return
            assert time.monotonic() < deadline, "the primary ignored the setting"


async def transfer(api: Api, snid: str) -> tuple[int, dict[str, Any], float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(ANSWERED_WITHIN * 3):
        status, body = await api.request(
            "tok-alice", "proj-a", {"snids": snid, "dest_project": "proj-b"}
        )
    return status, body, loop.time() - started


async def metric(api: Api) -> float:
    response = await api.client.get("/metrics")
    lines = (await response.text()).splitlines()
    [line] = [x for x in lines if x.startswith("pm_order_writes_unconfirmed ")]
    return float(line.split()[1])


async def test_a_write_the_lost_standby_does_not_confirm_is_a_503_that_says_so(
    api: Api, primary: ThrowawayPostgres
) -> None:
    # given a primary that waits for a synchronous standby that is gone
    assert (await transfer(api, "SN-A-001"))[0] == 200
    standby_waited_for(primary, "gone_standby")
    head = api.head()
    # when
    status, body, took = await transfer(api, "SN-A-002")
    # then the answer comes within the bound, and says the order may be stored
    assert status == 503, body
    assert "may have been stored" in body["msg"]
    assert "type=3" in body["msg"]
    assert took < ANSWERED_WITHIN
    assert api.head() > head  # (it was: committed, not confirmed)
    # and /readyz and the metric say that writes are not confirmed
    ready = await api.client.get("/readyz")
    readiness = await ready.json()
    assert ready.status == 503
    assert "writes are not confirmed durable" in readiness["checks"]["store"]["detail"]
    assert await metric(api) == 1


async def test_writes_are_confirmed_again_once_the_standby_is_not_waited_for(
    api: Api, primary: ThrowawayPostgres
) -> None:
    # given writes unconfirmed
    standby_waited_for(primary, "gone_standby")
    assert (await transfer(api, "SN-A-001"))[0] == 503
    # when the operator stops waiting for the lost standby
    standby_waited_for(primary, "")
    # then /readyz confirms writes again by itself, and writes are taken
    ready = await api.client.get("/readyz")
    assert ready.status == 200, await ready.text()
    assert await metric(api) == 0
    assert (await transfer(api, "SN-A-003"))[0] == 200
