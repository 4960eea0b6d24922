"""A database made before the read models' columns were renamed (schema version
3: `tenant`, `project_id`, `resource_project` and `accepted` columns, orders
whose outcome is "accepted") is upgraded when a process starts on it, and
answers as before."""

from __future__ import annotations

from typing import Any

import pytest
from psycopg.sql import SQL, Identifier

from domain.service import OrderService
from projections.database import SQLiteViews
from projections.order_lists import LIST_TYPES, OrderLists
from projections.reports import Reports
from projections.server_ownership import ServerOwnership
from service.store import SCHEMA_VERSION, Store, open_store, postgres_settings
from tests.application.conftest import request

PROJECTS = ("proj-a", "proj-b", "proj-c")
OLD_VERSION = 3
# (table, column as it was, column as it is) for every column renamed since.
RENAMED = {
    ("order_lists_orders", "resource_project", "source_project"),
    ("order_lists_counts", "tenant", "project"),
    ("order_lists_versions", "tenant", "project"),
    ("server_ownership", "project_id", "project"),
    ("reports_orders", "project", "source_project"),
    ("reports_days", "accepted", "finished"),
    ("mail_orders", "resource_project", "source_project"),
}


def renamed_columns(store: Store) -> set[tuple[str, str, str]]:
    return {
        (table.name, old, new)
        for view in store.all_views
        for table in getattr(view, "layout", ())
        for old, new in table.renamed.items()
    }


def made_old(store: Store, store_url: str) -> None:
    """Give `store`'s tables their old column names, and mark it with the old
    version: as a database the previous release left."""
    with store.views.writing() as cursor:
        for table, old, new in RENAMED:
            cursor.execute(f"ALTER TABLE {table} RENAME COLUMN {new} TO {old}")
        cursor.execute(
            "UPDATE reports_orders SET outcome = 'accepted' WHERE outcome = 'finished'"
        )
    if not isinstance(store.views, SQLiteViews):  # SQLite has no mark: DDL each start
        settings = postgres_settings(store_url)
        schema = Identifier(settings.schema or "public")
        with store.views.writing() as cursor:
            cursor.execute(
                SQL("UPDATE {}.pm_order_schema SET version = %s").format(schema),
                (OLD_VERSION,),
            )


def columns(store: Store, table: str) -> frozenset[str]:
    with store.views.reading() as cursor:
        return store.views.columns(cursor, table)


def index_definitions(store: Store, table: str) -> dict[str, str]:
    """The table's own indexes (not its key's), by name: their definitions."""
    if isinstance(store.views, SQLiteViews):
        statement = (
            "SELECT name, sql FROM sqlite_master"
            " WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL"
        )
    else:
        statement = (
            "SELECT indexname, indexdef FROM pg_indexes"
            " WHERE schemaname = current_schema() AND tablename = ?"
        )
    found = store.views.query(statement, [table])
    return {name: sql for name, sql in found if not name.endswith("_pkey")}


def everything_read(store: Store) -> dict[str, Any]:
    """What every query of the read models answers."""
    views = store.views
    return {
        "lists": {
            (project, list_type): OrderLists.page(
                views, project, list_type, limit=1000, marker=None
            )
            for project in PROJECTS
            for list_type in LIST_TYPES
        },
        "versions": {p: OrderLists.version(views, p) for p in PROJECTS},
        "sent": {p: OrderLists.unfinished_as_source(views, p) for p in PROJECTS},
        "servers": ServerOwnership.servers(views),
        "servers_of_a": ServerOwnership.servers(views, "proj-a"),
        "report": Reports.figures(views, None, None, None),
        "report_of_b": Reports.figures(views, "proj-b", None, None),
    }


def test_the_renamed_columns_are_the_tables_descriptions(store: Store) -> None:
    assert renamed_columns(store) == RENAMED


def test_an_old_database_is_upgraded_on_start_and_answers_as_before(
    store_url: str, history: OrderService, store: Store
) -> None:
    # given a database with orders in every state, as the previous release left it
    store.catch_up()
    before = everything_read(store)
    tables = sorted({table for table, _, _ in RENAMED})
    indexes = {table: index_definitions(store, table) for table in tables}
    made_old(store, store_url)
    assert all(old in columns(store, table) for table, old, _ in RENAMED)
    store.close()
    # when a process starts on it
    upgraded = open_store(store_url)
    try:
        # then the columns have their new names, and the same indexes are on them
        for table, old, new in RENAMED:
            assert new in columns(upgraded, table), table
            assert old not in columns(upgraded, table), table
        assert {t: index_definitions(upgraded, t) for t in tables} == indexes
        # and every query answers as it did, and the orders' outcomes are states
        assert everything_read(upgraded) == before
        outcomes = upgraded.views.query("SELECT DISTINCT outcome FROM reports_orders")
        assert {outcome for (outcome,) in outcomes} == {
            "finished",
            "refused",
            "unfinished",
        }
        # and new events are projected into the renamed columns
        service = OrderService(upgraded.app)
        service.register_servers([("SN-NEW-1", "proj-c")])
        request(service, ["SN-NEW-1"], source_project="proj-c", dest_project="proj-a")
        upgraded.catch_up()
        inbox = OrderLists.page(upgraded.views, "proj-a", 0, limit=1, marker=None)
        assert [o.snids for o in inbox.orders] == ["SN-NEW-1"]
    finally:
        upgraded.close()


# PostgreSQL only: SQLite has no schema mark, its DDL runs at every start.
@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_the_upgrade_marks_the_database_with_this_version(
    store_url: str, store: Store
) -> None:
    made_old(store, store_url)
    store.close()
    upgraded = open_store(store_url)
    try:
        [(version,)] = upgraded.views.query("SELECT version FROM pm_order_schema")
        assert version == SCHEMA_VERSION
    finally:
        upgraded.close()
