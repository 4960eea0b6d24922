"""Many processes on one PostgreSQL database: writes that never collide, starts that
never take a lock from running work, plans that need no statistics."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from psycopg import sql

from domain.order import order_aggregate_id
from domain.service import OrderService
from projections.generations import generation_of, generation_schema
from service.recorders import FailFastPostgresRecorder
from service.store import (
    open_store,
    postgres_settings,
    read_models,
)
from tests.application.conftest import request
from tests.integration.processes import ApiServer, PmOrderProcess
from tests.integration.test_multi_process import (
    HEADERS,
    pm_order,
    rebuilt_views_equal_live,
)

pytestmark = pytest.mark.postgres

CLIENTS = 32
# Servers enough for the load to outlast the starts (each request takes one).
SERVERS = 8000
STARTS_DURING_LOAD = 2


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in the metrics"
    return float(found.group(1))


async def test_two_api_processes_under_distinct_posts_answer_every_one_200(
    postgres_schema_url: str, tokens_path: Path, tmp_path: Path
) -> None:
    # Given: a server of proj-a for each request, a worker and two API processes
    servers = [f"SN-{n:04d}" for n in range(SERVERS)]
    env = {
        "PM_ORDER_DATABASE_URL": postgres_schema_url,
        "PM_ORDER_TOKENS_FILE": str(tokens_path),
        # One token stands for 32 clients here: no per-token limit.
        "PM_ORDER_RATE_LIMIT": "off",
        # ... and one source project for thousands of waiting orders.
        "PM_ORDER_MAX_UNFINISHED_ORDERS": str(SERVERS),
    }
    inventory = tmp_path / "inventory.csv"
    inventory.write_text(
        "snid,project_id\n" + "".join(f"{s},proj-a\n" for s in servers)
    )
    pm_order("machines", "import", str(inventory), env=env)
    worker = PmOrderProcess(["worker"], env, tmp_path / "worker.log")
    worker.wait_for_log("projecting order_lists")
    apis = [ApiServer(env, tmp_path / f"api-{n}.log") for n in (1, 2)]
    started: list[PmOrderProcess] = []
    try:
        async with aiohttp.ClientSession() as session:
            unordered = iter(servers)
            starts_done = asyncio.Event()

            async def client(c: int) -> list[tuple[int, dict[str, Any]]]:
                """POSTs, each for a server no other request names, until every
                start is done."""
                answers = []
                for k, snid in enumerate(unordered):
                    if starts_done.is_set():
                        break
                    async with session.post(
                        f"{apis[(c + k) % 2].base_url}/mana_api/pm_order/proj-a",
                        json={"snids": snid, "dest_project": "proj-b"},
                        headers=HEADERS,
                    ) as response:
                        answers.append((response.status, await response.json()))
                return answers

            def start_more() -> None:
                # While the load runs: an API process (which creates tables if it
                # must: here it finds them made) and a worker start together, again
                # and again.
                for n in range(STARTS_DURING_LOAD):
                    late_worker = PmOrderProcess(
                        ["worker"], env, tmp_path / f"worker-late-{n}.log"
                    )
                    started.append(late_worker)
                    started.append(ApiServer(env, tmp_path / f"api-late-{n}.log"))
                    late_worker.wait_for_log("worker started")

            # When: 32 clients POST at once, each for servers of its own, while
            # processes start
            loop = asyncio.get_running_loop()
            starting = loop.run_in_executor(None, start_more)
            starting.add_done_callback(lambda _: starts_done.set())
            results = await asyncio.gather(*(client(c) for c in range(CLIENTS)))
            await starting

            # Then: every answer is a 200 with an order number of its own
            answers = [answer for answers in results for answer in answers]
            assert next(unordered, None) is not None, "the load ended before the starts"
            assert [status for status, _ in answers] == [200] * len(answers), [
                body for status, body in answers if status != 200
            ]
            numbers = [body["order_id"] for _, body in answers]
            assert len(set(numbers)) == len(numbers)
            # and numbers increase in each client's sequence of requests
            for answers_of_one in results:
                mine = [body["order_id"] for _, body in answers_of_one]
                assert mine == sorted(mine)
            # and no process met a conflict, retried or given up
            for api in apis:
                async with session.get(f"{api.base_url}/metrics") as response:
                    text = await response.text()
                assert metric(text, "pm_order_conflicts_retried_total") == 0
                assert metric(text, "pm_order_conflicts_given_up_total") == 0
            # and the processes started during the load all came up and answer
            for process in started:
                assert process.process.poll() is None, process.log()
            late_api = next(p for p in started if isinstance(p, ApiServer))
            async with session.get(
                f"{late_api.base_url}/mana_api/pm_order/proj-a",
                params={"type": "3", "limit": "1"},
                headers=HEADERS,
            ) as response:
                assert (await response.json())["total_count"] == len(answers)
        for process in started:
            assert "deadlock" not in process.log()
        await loop.run_in_executor(None, rebuilt_views_equal_live, postgres_schema_url)
    finally:
        for process in [*started, *apis, worker]:
            process.stop()


def test_starting_on_made_tables_takes_no_lock_that_running_work_holds(
    postgres_schema_url: str,
) -> None:
    # Given: the tables, and running work holding the locks that writers and
    # projectors take (DDL on these tables would wait for them, or deadlock)
    open_store(postgres_schema_url).close()
    with psycopg.connect(postgres_schema_url.split("?")[0]) as running:
        for table in ("pm_order_events", "projection_tracking", "order_lists_orders"):
            running.execute(
                sql.SQL("LOCK TABLE {}.{} IN ROW EXCLUSIVE MODE").format(
                    sql.Identifier(schema_of(postgres_schema_url, table)),
                    sql.Identifier(table),
                )
            )
        # When: another process starts, creating tables where needed
        store = open_store(postgres_schema_url, create_tables=True)
        # Then: it opened (no DDL waited for the running work) and reads
        try:
            assert OrderService(store.app).head() == 0
        finally:
            store.close()


def test_a_store_numbered_before_the_sequence_continues_after_its_last_order(
    postgres_schema_url: str,
) -> None:
    # Given: orders 1..3, stored as the version before the sequence did (no
    # sequence, no schema mark)
    store = open_store(postgres_schema_url)
    service = OrderService(store.app)
    service.register_servers([(f"SN-{n}", "proj-a") for n in range(4)])
    assert [request(service, [f"SN-{n}"]) for n in range(3)] == [1, 2, 3]
    store.close()
    schema = sql.Identifier(str(postgres_settings(postgres_schema_url).schema))
    with psycopg.connect(postgres_schema_url.split("?")[0], autocommit=True) as db:
        db.execute(sql.SQL("DROP SEQUENCE {}.pm_order_order_numbers").format(schema))
        db.execute(sql.SQL("DROP TABLE {}.pm_order_shared_schema").format(schema))
    # When: this version starts on it and an order is requested
    store = open_store(postgres_schema_url)
    try:
        number = request(OrderService(store.app), ["SN-3"])
        # Then: its number follows the last one, without a conflict
        assert number == 4
        assert store.app.conflicts == 0  # type: ignore[attr-defined]
    finally:
        store.close()


def test_reading_servers_without_statistics_looks_each_one_up_by_index(
    postgres_schema_url: str,
) -> None:
    # Given: an event log of 100,000 events never analysed (a restore, a bulk load)
    store = open_store(postgres_schema_url)
    try:
        recorder = store.app.recorder
        assert isinstance(recorder, FailFastPostgresRecorder)
        table = sql.SQL("{}.{}").format(
            sql.Identifier(recorder.datastore.schema),
            sql.Identifier(recorder.events_table_name),
        )
        with recorder.datastore.get_connection() as conn:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (originator_id, originator_version, topic, state)"
                    " SELECT gen_random_uuid(), 1, 'x', '\\x00'::bytea"
                    " FROM generate_series(1, 100000)"
                ).format(table)
            )
            ids = [order_aggregate_id(n) for n in range(1, 201)]
            # When: the service's statement for 200 servers is planned, either way
            # a prepared statement may be (custom or generic plan)
            for mode in ("force_custom_plan", "force_generic_plan"):
                conn.execute(
                    sql.SQL("SET plan_cache_mode = {}").format(sql.Literal(mode))
                )
                name = sql.Identifier(mode)
                text = recorder.select_events_of_statement.as_string(conn)
                conn.execute(
                    sql.SQL("PREPARE {} AS ").format(name)
                    + sql.SQL(text.replace("%s", "$1"))  # type: ignore[arg-type]
                )
                explained = conn.execute(
                    sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE {}({})").format(
                        name, sql.Literal(ids)
                    )
                ).fetchone()
                assert explained is not None
                plan = explained["QUERY PLAN"]
                # Then: the events are read by an index lookup per server, never
                # by a scan of the table or of its whole index
                scans = list(_scans_of(plan[0]["Plan"], recorder.events_table_name))
                assert scans, plan
                for scan in scans:
                    assert scan["Node Type"] in ("Index Scan", "Bitmap Heap Scan"), scan
                    assert "wanted.id" in _conditions(scan), scan
    finally:
        store.close()


def _scans_of(node: dict[str, Any], table: str) -> Any:
    if node.get("Relation Name") == table:
        yield node
    for child in node.get("Plans", []):
        yield from _scans_of(child, table)


def _conditions(node: dict[str, Any]) -> str:
    """Every condition of `node` and its children, as one text."""
    found = [str(node.get(key, "")) for key in ("Index Cond", "Recheck Cond")]
    found += [_conditions(child) for child in node.get("Plans", [])]
    return " ".join(found)


def test_db_upgrade_makes_the_tables_whatever_the_schema_mark_says(
    postgres_schema_url: str,
) -> None:
    # Given: the tables, marked as this version's, less an index (dropped by hand)
    open_store(postgres_schema_url).close()
    schema = schema_of(postgres_schema_url, "order_lists_orders")
    index = "order_lists_orders_waiting"

    def indexed() -> bool:
        with psycopg.connect(postgres_schema_url.split("?")[0]) as db:
            row = db.execute(
                "SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.{index}",)
            ).fetchone()
            return bool(row and row[0])

    with psycopg.connect(postgres_schema_url.split("?")[0], autocommit=True) as db:
        db.execute(
            sql.SQL("DROP INDEX {}.{}").format(*map(sql.Identifier, (schema, index)))
        )
    # When: a process starts, then `db upgrade` runs
    open_store(postgres_schema_url).close()
    assert not indexed()  # a start trusts the mark: no DDL
    open_store(postgres_schema_url, upgrade=True).close()
    # Then: the upgrade made it again
    assert indexed()


def schema_of(url: str, table: str) -> str:
    """The schema of `table`: the store's (the event store's table), or that of
    this release's generation of the read models."""
    schema = str(postgres_settings(url).schema)
    if table.startswith("pm_order_"):
        return schema
    return generation_schema(schema, generation_of(read_models()))


def analysed(url: str, table: str) -> bool:
    """Whether `table` (of the URL's schema, or of the read models' generation)
    has planner statistics (ANALYZEd)."""
    schema = schema_of(url, table)
    with psycopg.connect(url.split("?")[0]) as db:
        row = db.execute(
            "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables"
            " WHERE schemaname = %s AND relname = %s",
            (schema, table),
        ).fetchone()
    return bool(row and row[0])


@pytest.mark.parametrize(("rows", "analysed_after"), [(10, False), (1000, True)])
def test_a_bulk_import_of_servers_refreshes_the_planners_statistics(
    postgres_schema_url: str,
    tokens_path: Path,
    tmp_path: Path,
    rows: int,
    analysed_after: bool,
) -> None:
    # Given: a CSV of `rows` servers
    inventory = tmp_path / "inventory.csv"
    inventory.write_text(
        "snid,project_id\n" + "".join(f"SN-{n:05d},proj-a\n" for n in range(rows))
    )
    env = {
        "PM_ORDER_DATABASE_URL": postgres_schema_url,
        "PM_ORDER_TOKENS_FILE": str(tokens_path),
    }
    # When: it is imported, as an operator does
    pm_order("machines", "import", str(inventory), env=env)
    # Then: a bulk (1,000 rows or more) leaves every table analysed, as autovacuum
    # would later; a few rows leave that to autovacuum
    for table in ("pm_order_events", "server_ownership", "order_lists_items"):
        assert analysed(postgres_schema_url, table) is analysed_after, table


def test_the_event_stores_sessions_never_compile_statements(
    postgres_schema_url: str,
) -> None:
    store = open_store(postgres_schema_url)
    try:
        recorder = store.app.recorder
        assert isinstance(recorder, FailFastPostgresRecorder)
        with recorder.datastore.get_connection() as conn:
            row = conn.execute("SHOW jit").fetchone()
        assert row is not None
        assert row["jit"] == "off"
    finally:
        store.close()
