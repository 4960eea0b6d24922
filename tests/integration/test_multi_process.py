"""Several API processes and workers on one PostgreSQL database act as one service."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from projections.database import PostgresViews
from projections.projector import Projector, view_contents
from service.store import (
    PostgresSettings,
    create_schema,
    open_store,
    postgres_settings,
)
from tests.conftest import drop_postgres_schema
from tests.integration.processes import ApiServer, PmOrderProcess

pytestmark = pytest.mark.postgres

HEADERS = {"Sp-Agent": "scloudm", "X-Auth-Token": "tok-alice"}
SERVERS = [f"SN-{n:03d}" for n in range(20)]
REQUESTS = 50


def pm_order(*args: str, env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )


async def post_order(
    session: aiohttp.ClientSession, server: ApiServer, snids: list[str]
) -> tuple[int, dict[str, Any]]:
    async with session.post(
        f"{server.base_url}/mana_api/pm_order/proj-a",
        json={"snids": snids, "dest_project": "proj-b"},
        headers=HEADERS,
    ) as response:
        return response.status, await response.json()


async def list_orders(
    session: aiohttp.ClientSession,
    server: ApiServer,
    token: str,
    tenant: str,
    kind: int,
) -> dict[str, Any]:
    async with session.get(
        f"{server.base_url}/mana_api/pm_order/{tenant}",
        params={"type": str(kind)},
        headers={**HEADERS, "X-Auth-Token": token},
    ) as response:
        assert response.status == 200
        return dict(await response.json())


def rebuilt_views_equal_live(url: str) -> None:
    """Project the whole log into a fresh schema and compare with the live views."""
    store = open_store(url, create_tables=False)
    settings = postgres_settings(url)
    rebuild = PostgresSettings(
        **{**settings.__dict__, "schema": f"rb_{uuid.uuid4().hex[:10]}"}
    )
    create_schema(rebuild)
    fresh = PostgresViews(rebuild.conninfo, schema=rebuild.schema)
    try:
        for view in store.all_views:
            projector = Projector(store.app.recorder, store.app.mapper, fresh, view)
            projector.create_tables()
            assert projector.catch_up() == store.app.recorder.max_notification_id()
            assert view_contents(store.views, view) == view_contents(fresh, view), (
                view.name
            )
    finally:
        fresh.close()
        store.close()
        drop_postgres_schema(str(rebuild.schema))


def tables_and_servers(url: str, tokens_path: Path, tmp_path: Path) -> dict[str, str]:
    """The tables on `url` and SERVERS owned by proj-a; the processes' environment."""
    env = {
        "PM_ORDER_DATABASE_URL": url,
        "PM_ORDER_TOKENS_FILE": str(tokens_path),
        "PM_ORDER_CREATE_TABLES": "no",
    }
    pm_order("db", "upgrade", env=env)
    inventory = tmp_path / "inventory.csv"
    inventory.write_text(
        "snid,project_id\n" + "".join(f"{s},proj-a\n" for s in SERVERS)
    )
    pm_order("machines", "import", str(inventory), env=env)
    return env


async def test_two_api_processes_and_two_workers_give_one_order_per_server(
    postgres_schema_url: str, tokens_path: Path, tmp_path: Path
) -> None:
    # Given: the tables, twenty servers of proj-a, two workers, two API processes
    env = tables_and_servers(postgres_schema_url, tokens_path, tmp_path)
    leader = PmOrderProcess(["worker"], env, tmp_path / "worker-1.log")
    leader.wait_for_log("projecting order_lists")
    standby = PmOrderProcess(["worker"], env, tmp_path / "worker-2.log")
    standby.wait_for_log("worker started")
    apis = [ApiServer(env, tmp_path / f"api-{n}.log") for n in (1, 2)]
    try:
        # When: 50 requests for overlapping windows of three servers, through both
        # processes at once, and the leading worker is killed once ten are answered
        windows = [
            [SERVERS[(i + k) % len(SERVERS)] for k in range(3)] for i in range(REQUESTS)
        ]
        answered = 0
        killed = asyncio.Event()

        async def one(i: int) -> tuple[int, dict[str, Any]]:
            nonlocal answered
            result = await post_order(session, apis[i % 2], windows[i])
            answered += 1
            if answered == 10:
                leader.kill()
                killed.set()
            return result

        async with aiohttp.ClientSession() as session:
            results = await asyncio.gather(*(one(i) for i in range(REQUESTS)))
            assert killed.is_set()

            # Then: every server is in at most one order, and every refusal is a 409
            won = [
                (body["order_id"], windows[i])
                for i, (status, body) in enumerate(results)
                if status == 200
            ]
            assert {status for status, _ in results} <= {200, 409}
            held = [snid for _, snids in won for snid in snids]
            assert len(held) == len(set(held))
            assert len({order_id for order_id, _ in won}) == len(won)
            for i, (status, body) in enumerate(results):
                if status == 409:
                    assert any(s in held for s in windows[i]), body

            # and each order shows through both processes
            for api in apis:
                listed = await list_orders(session, api, "tok-alice", "proj-a", 3)
                assert listed["total_count"] == len(won)
                assert {o["id"] for o in listed["orders"]} == {n for n, _ in won}

            # and a decision made through one process shows through the other at once
            first = min(n for n, _ in won)
            async with session.put(
                f"{apis[0].base_url}/mana_api/pm_order/proj-b",
                json={"order_ids": [first], "accept": 1},
                headers={**HEADERS, "X-Auth-Token": "tok-bob"},
            ) as response:
                assert response.status == 200
            accepted = await list_orders(session, apis[1], "tok-bob", "proj-b", 1)
            assert [o["id"] for o in accepted["orders"]] == [first]

        # and the standby took over the projections, with nothing lost or doubled
        assert "projecting order_lists" in standby.log()
        await asyncio.get_running_loop().run_in_executor(
            None, rebuilt_views_equal_live, postgres_schema_url
        )
    finally:
        for process in [*apis, standby, leader]:
            process.stop()


async def test_orders_posted_in_turn_to_two_processes_are_numbered_in_sequence_and_show_in_the_other(  # noqa: E501
    postgres_schema_url: str, tokens_path: Path, tmp_path: Path
) -> None:
    # Given: two API processes, one of them projecting (serve), the other not
    env = tables_and_servers(postgres_schema_url, tokens_path, tmp_path)
    apis = [
        ApiServer(env, tmp_path / "api-serve.log", api_only=False),
        ApiServer(env, tmp_path / "api-only.log"),
    ]
    try:
        async with aiohttp.ClientSession() as session:
            for i, snid in enumerate(SERVERS):
                # When: each order is POSTed to the other process than the last
                # (each process's next number is stale: the save conflicts and the
                # retry looks in the store)
                writer, reader = apis[i % 2], apis[(i + 1) % 2]
                status, body = await post_order(session, writer, [snid])
                # Then: numbers follow on, none skipped or used twice
                assert (status, body.get("order_id")) == (200, i + 1), body
                # and the other process shows the order as soon as it is answered
                listed = await list_orders(session, reader, "tok-alice", "proj-a", 3)
                assert listed["total_count"] == i + 1
                assert i + 1 in {o["id"] for o in listed["orders"]}
    finally:
        for api in apis:
            api.stop()
