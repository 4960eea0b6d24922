"""A project may keep only so many orders waiting: the read model's count plus the
orders of the batch being judged."""

from __future__ import annotations

from functools import partial

from domain.exceptions import TooManyUnfinishedOrders
from domain.limits import OrderLimits
from domain.service import OrderService, Written
from projections.order_lists import OrderLists
from service.store import Store
from tests.application.test_group_commit import queued_together, request
from tests.conftest import INVENTORY, FakeClock


def limited(store: Store, clock: FakeClock, most: int) -> OrderService:
    service = OrderService(
        store.app,
        clock=clock,
        limits=OrderLimits(max_unfinished_orders=most),
        unfinished_orders=partial(OrderLists.unfinished_as_source, store.views),
    )
    service.register_servers(INVENTORY)
    return service


def test_orders_of_one_batch_count_towards_the_limit(
    store: Store, clock: FakeClock
) -> None:
    # given: proj-a may have three unfinished orders and has one already
    service = limited(store, clock, 3)
    service.request_transfer(**request("SN-A-001"))
    store.catch_up()
    # when: four more arrive together, and one of proj-b's
    outcomes = queued_together(
        service,
        [request(f"SN-A-{n:03d}") for n in range(2, 6)]
        + [request("SN-B-001", "proj-b")],
    )
    # then: two of proj-a's are made, two refused; proj-b's is its own affair
    made = [o for o in outcomes[:4] if isinstance(o, Written)]
    refused = [o for o in outcomes[:4] if isinstance(o, TooManyUnfinishedOrders)]
    assert (len(made), len(refused)) == (2, 2)
    assert "project proj-a has 3 unfinished orders" in str(refused[0])
    assert isinstance(outcomes[4], Written)


def test_the_count_is_the_read_models(store: Store, clock: FakeClock) -> None:
    # given: proj-a at its limit of two, as the views show
    service = limited(store, clock, 2)
    first = service.request_transfer(**request("SN-A-001")).order_id
    service.request_transfer(**request("SN-A-002"))
    store.catch_up()
    assert OrderLists.unfinished_as_source(store.views, "proj-a") == 2
    head = service.head()
    # when / then: a third is refused and writes nothing
    refused = outcome(service, "SN-A-003")
    assert isinstance(refused, TooManyUnfinishedOrders)
    assert service.head() == head
    # when: the destination decides one, and the views show it
    assert first is not None
    service.decide(
        project="proj-c", user="c", roles=frozenset(), order_ids=[first], accept=False
    )
    store.catch_up()
    # then: there is room again
    assert isinstance(outcome(service, "SN-A-003"), Written)


def outcome(service: OrderService, snid: str) -> Written | TooManyUnfinishedOrders:
    try:
        return service.request_transfer(**request(snid))
    except TooManyUnfinishedOrders as error:
        return error


def orders_count(store: Store, project: str) -> int:
    """The unfinished orders `project` asked for, counted in the lists' orders."""
    [(n,)] = store.views.query(
        "SELECT COUNT(*) FROM order_lists_orders"
        " WHERE source_project = ? AND state = 'unfinished'",
        [project],
    )
    return int(n)


def test_the_kept_count_follows_requests_and_decisions_in_any_page(
    store: Store, clock: FakeClock
) -> None:
    # given: orders requested and decided in one page, and across pages
    service = limited(store, clock, 100)
    numbers = [
        service.request_transfer(**request(f"SN-A-{n:03d}")).order_id
        for n in range(1, 6)
    ]
    decided = [n for n in numbers[:2] if n is not None]
    service.decide(
        project="proj-c", user="c", roles=frozenset(), order_ids=decided, accept=True
    )
    store.catch_up()  # requests and decisions in one page
    later = [n for n in numbers[2:4] if n is not None]
    service.decide(
        project="proj-c", user="c", roles=frozenset(), order_ids=later, accept=False
    )
    store.catch_up()  # decisions of orders requested in an earlier page
    # then: the count kept by the projector is the orders' count
    assert OrderLists.unfinished_as_source(store.views, "proj-a") == 1
    assert orders_count(store, "proj-a") == 1
    assert OrderLists.unfinished_as_source(store.views, "proj-c") == 0
