"""Orders to a destination that cannot answer (issue 26, finding 8): an operator
refuses them on its behalf with `pm-order orders refuse`, through the existing
Refused event; the servers go back, and the history says who and why. Run as a
user runs it, on both stores."""

from __future__ import annotations

from domain.order import Order, order_aggregate_id
from domain.service import OrderService
from service.store import Store
from tests.integration.test_mail import pm_order

OPERATOR = ["--operator", "ops-li", "--reason", "proj-b. does not exist (a typo)"]


def ordered(service: OrderService, snid: str, destination: str) -> int:
    written = service.request_transfer(
        source_project="proj-a",
        user="alice",
        snids=[snid],
        dest_project=destination,
        mailto=[],
    )
    assert written.order_id is not None
    return written.order_id


def state(store: Store, number: int) -> str:
    order = store.app.repository.get(order_aggregate_id(number))
    assert isinstance(order, Order)
    return order.state


async def test_an_operator_refuses_orders_to_a_project_that_does_not_exist(
    service: OrderService, store: Store, store_url: str
) -> None:
    # given orders to projects that do not exist
    service.register_servers([("SN-1", "proj-a"), ("SN-2", "proj-a")])
    typo = ordered(service, "SN-1", "proj-b.")
    other = ordered(service, "SN-2", "PROJ-B")
    # when
    status, output = await pm_order(
        store_url, "orders", "refuse", str(typo), str(other), *OPERATOR
    )
    # then both are refused, the servers are the source's again
    assert status == 0, output
    assert output.splitlines() == [
        f"order {typo} refused on behalf of proj-b. by operator ops-li "
        "(proj-b. does not exist (a typo))",
        f"order {other} refused on behalf of PROJ-B by operator ops-li "
        "(proj-b. does not exist (a typo))",
    ]
    assert (state(store, typo), state(store, other)) == ("refused", "refused")
    assert ordered(service, "SN-1", "proj-b") > other  # SN-1 may be ordered again
    # and the order's history says who refused it, and why
    status, history = await pm_order(store_url, "orders", "history", str(typo))
    assert status == 0, history
    assert "operator ops-li (proj-b. does not exist (a typo))" in history


async def test_a_decided_order_is_left_as_it_is_and_nothing_changes(
    service: OrderService, store: Store, store_url: str
) -> None:
    # given one unfinished order and one accepted
    service.register_servers([("SN-1", "proj-a"), ("SN-2", "proj-a")])
    waiting = ordered(service, "SN-1", "proj-zz-typo")
    accepted = ordered(service, "SN-2", "proj-b")
    service.decide(
        project="proj-b",
        user="bob",
        roles=frozenset(),
        order_ids=[accepted],
        accept=True,
    )
    head = service.head()
    # when
    status, output = await pm_order(
        store_url, "orders", "refuse", str(waiting), str(accepted), *OPERATOR
    )
    missing = await pm_order(store_url, "orders", "refuse", "999", *OPERATOR)
    # then
    assert status == 1
    assert f"order {accepted} is finished" in output
    assert missing[0] == 1
    assert "order 999 does not exist" in missing[1]
    assert service.head() == head
    assert state(store, waiting) == "unfinished"
