"""Reading many aggregates in one statement, and numbering orders without asking
the store each time: the same answers as one read per aggregate, and as a search
of the store, on both stores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import uuid4

from eventsourcing.persistence import StoredEvent

from domain.order import order_aggregate_id
from domain.server import Server, server_aggregate_id
from domain.service import OrderService
from projections.database import SQLiteViews
from service.store import Store
from tests.application.conftest import INVENTORY, decide, owner, request
from tests.conftest import FakeClock


def per_aggregate(store: Store, aggregate_ids: list[Any]) -> list[Any]:
    """The stored events of each aggregate, read one aggregate at a time."""
    return [e for i in aggregate_ids for e in store.app.recorder.select_events(i)]


def test_reading_many_aggregates_at_once_gives_what_reading_each_gives(
    registered: OrderService, store: Store
) -> None:
    # given servers registered, reserved, transferred and released, and orders
    accepted = request(registered, ["SN-A-1", "SN-A-2"])
    refused = request(registered, ["SN-A-3"], dest_project="proj-c")
    request(registered, ["SN-A-4"])
    decide(registered, [accepted], accept=True)
    decide(registered, [refused], accept=False, project="proj-c")
    ids = [
        *(server_aggregate_id(snid) for snid, _ in INVENTORY),
        server_aggregate_id("SN-NEVER-REGISTERED"),
        *(order_aggregate_id(n) for n in (1, 2, 3, 99)),
    ]
    # when
    many = store.app.recorder.select_events_of(ids)  # type: ignore[attr-defined]
    # then: the same events, each aggregate's in version order, none for the unknown
    by_id = sorted(many, key=lambda e: ids.index(e.originator_id))
    assert by_id == per_aggregate(store, ids)
    assert [e.originator_version for e in many if e.originator_id == ids[0]] == [
        1,
        2,
        3,
    ]
    assert store.app.recorder.select_events_of([]) == []  # type: ignore[attr-defined]


def test_the_servers_read_at_once_are_the_servers_read_one_by_one(
    registered: OrderService, store: Store
) -> None:
    # given
    number = request(registered, ["SN-A-1"])
    decide(registered, [request(registered, ["SN-A-2"])], accept=True)
    snids = ["SN-A-1", "SN-A-2", "SN-A-3", "SN-UNKNOWN"]
    ids = [server_aggregate_id(s) for s in snids]
    # when
    stored = store.app.recorder.select_events_of(ids)  # type: ignore[attr-defined]
    servers: dict[Any, Any] = dict.fromkeys(ids)
    for record in stored:
        event: Any = store.app.mapper.to_domain_event(record)
        servers[record.originator_id] = event.mutate(servers[record.originator_id])
    # then
    for snid, server in zip(snids, servers.values(), strict=True):
        if snid == "SN-UNKNOWN":
            assert server is None
            continue
        assert isinstance(server, Server)
        alone: Any = store.app.repository.get(server_aggregate_id(snid))
        assert (server.version, server.project_id, server.order_id) == (
            alone.version,
            alone.project_id,
            alone.order_id,
        )
    assert owner(store, "SN-A-1") == ("proj-a", number)
    assert owner(store, "SN-A-2") == ("proj-b", None)


def test_many_ids_at_once_are_all_read(service: OrderService, store: Store) -> None:
    # given more servers than SQLite takes parameters in one statement
    rows = [(f"SN-{n:04d}", "proj-a") for n in range(1200)]
    service.register_servers(rows)
    ids = [server_aggregate_id(s) for s, _ in rows]
    # when
    stored = store.app.recorder.select_events_of(ids)  # type: ignore[attr-defined]
    # then
    assert sorted(e.originator_id for e in stored) == sorted(ids)


def test_two_services_taking_turns_number_their_orders_in_sequence(
    reopen: Callable[[], Store], clock: FakeClock
) -> None:
    # given two services on one store (as two processes), each knowing its last
    # number, which the other's orders make stale
    stores = [reopen(), reopen()]
    services = [OrderService(s.app, clock=clock) for s in stores]
    services[0].register_servers([(f"SN-{n}", "proj-a") for n in range(12)])
    conflicts_before = sum(s.app.conflicts for s in stores)  # type: ignore[attr-defined]
    # when they take turns: 1, 2, 2, 1, 1, 2, 2, ...
    numbers = [request(services[(n + 1) // 2 % 2], [f"SN-{n}"]) for n in range(12)]
    # then: every number once, none skipped, each order holding its own server
    assert numbers == list(range(1, 13))
    for n, number in enumerate(numbers):
        assert services[1].order(number).snids == [f"SN-{n}"]
        assert owner(stores[0], f"SN-{n}") == ("proj-a", number)
    # and with searched numbers (SQLite), each one's first stale number was found
    # out by the store (a conflict, then a retry), and after it each asks the
    # store first; counted numbers (PostgreSQL) never conflict
    conflicts = [s.app.conflicts for s in stores]  # type: ignore[attr-defined]
    assert conflicts == ([1, 1] if isinstance(stores[0].views, SQLiteViews) else [0, 0])
    assert conflicts_before == 0


def test_a_service_numbers_on_after_orders_of_another_it_never_saw(
    reopen: Callable[[], Store], clock: FakeClock
) -> None:
    # given one service ordered 1..3, then another (new) ordered 4..5
    first, second = (OrderService(reopen().app, clock=clock) for _ in range(2))
    first.register_servers([(f"SN-{n}", "proj-a") for n in range(7)])
    assert [request(first, [f"SN-{n}"]) for n in range(3)] == [1, 2, 3]
    assert [request(second, [f"SN-{n}"]) for n in (3, 4)] == [4, 5]
    # when the first orders again
    number = request(first, ["SN-5"])
    # then it takes the next free number, not its own next one
    assert number == 6
    assert request(second, ["SN-6"]) == 7


def test_the_insert_stores_each_events_bytes_and_topic_exactly(store: Store) -> None:
    # given events whose states hold every byte value, and topics with the
    # characters an array's text form must escape
    events = [
        StoredEvent(
            originator_id=uuid4(),
            originator_version=version,
            topic=topic,
            state=state,
        )
        for version, (topic, state) in enumerate(
            [
                ("domain.order:Order.Requested", bytes(range(256))),
                ('a "quoted", {braced} topic', b'\\"{},NULL'),
                ("back\\slash", b""),
                ("NULL", "\u4e2d\u6587".encode()),
            ],
            start=1,
        )
    ]
    # when
    store.app.recorder.insert_events(events)
    # then: read back as written, byte for byte
    recorder = store.app.recorder
    read = [e for event in events for e in recorder.select_events(event.originator_id)]
    assert [
        (e.originator_id, e.originator_version, e.topic, bytes(e.state)) for e in read
    ] == [(e.originator_id, e.originator_version, e.topic, e.state) for e in events]
