"""A database whose order lists were made by an older version (SCHEMA_VERSION 2
and before: one entry per order and party, with its role and state) answers the
same lists after the upgrade, from the items the entries became."""

from __future__ import annotations

from typing import Any

from domain.service import OrderService
from projections.order_lists import LIST_TYPES, OrderLists
from service.store import Store
from tests.conftest import INVENTORY, FakeClock

PROJECTS = ("proj-a", "proj-b")

# The older version's table, as it made it.
_OLD_ENTRIES = (
    "CREATE TABLE order_lists_entries (tenant TEXT NOT NULL,"
    " order_id BIGINT NOT NULL, role TEXT NOT NULL, state TEXT NOT NULL,"
    " PRIMARY KEY (tenant, order_id))"
)
_ENTRIES_OF_ORDERS = (
    "INSERT INTO order_lists_entries (tenant, order_id, role, state)"
    " SELECT source_project, id, 'source', state FROM order_lists_orders"
    " UNION ALL SELECT dest_project, id, 'dest', state FROM order_lists_orders"
)


def every_list(store: Store) -> dict[tuple[str, int], Any]:
    """Each project's every list, whole: its orders' ids and its count."""
    found = {}
    for project in PROJECTS:
        for list_type in LIST_TYPES:
            page = OrderLists.page(
                store.views, project, list_type, limit=100, marker=None
            )
            found[project, list_type] = ([o.id for o in page.orders], page.total_count)
    return found


def test_the_entries_of_an_older_database_become_its_lists_items(
    store: Store, service: OrderService, clock: FakeClock
) -> None:
    # given: orders in every state, projected
    service.register_servers(INVENTORY)
    for snid in [s for s, project in INVENTORY if project == "proj-a"][:8]:
        service.request_transfer(
            source_project="proj-a",
            user="alice",
            snids=[snid],
            dest_project="proj-b",
            mailto=["a@example.com"],
        )
        clock.advance(minutes=1)
    for order_ids, accept in (([1, 2], True), ([3], False)):
        service.decide(
            project="proj-b",
            user="bob",
            roles=frozenset(),
            order_ids=order_ids,
            accept=accept,
        )
    store.catch_up()
    lists = every_list(store)
    assert lists["proj-b", 0] == ([8, 7, 6, 5, 4], 5)  # the inbox, newest first
    # and: the lists as the older version kept them (entries, no items)
    with store.views.writing() as cursor:
        cursor.execute("DROP TABLE order_lists_items")
        cursor.execute(_OLD_ENTRIES)
        cursor.execute(_ENTRIES_OF_ORDERS)
    # when: the tables are made again, as an upgrade makes them
    store.create_tables()
    # then: every list answers as before, and the entries are gone
    assert every_list(store) == lists
    with store.views.reading() as cursor:
        assert not store.views.has_table(cursor, "order_lists_entries")
    # and: the lists go on from there
    service.decide(
        project="proj-b", user="bob", roles=frozenset(), order_ids=[4], accept=True
    )
    store.catch_up()
    assert every_list(store)["proj-b", 1] == ([4, 2, 1], 3)
