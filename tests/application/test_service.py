"""The application service on the real event store (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.exceptions import (
    AlreadyDecided,
    InvalidInput,
    NotAllowed,
    OrdersNotFound,
    ServersAlreadyOrdered,
    ServersNotOwned,
)
from domain.order import Order
from domain.server import Server
from domain.service import OrderService
from domain.workflow import FINISHED, REFUSED, UNFINISHED
from service.store import Store
from tests.application.conftest import INVENTORY, decide, owner, request
from tests.conftest import FakeClock

EVERY = timedelta(hours=1)
MOST = 3


# -- registering servers -------------------------------------------------------------


def test_registering_servers_records_each_owner_free(
    service: OrderService, store: Store
) -> None:
    # when
    service.register_servers([("SN-1", "proj-a"), ("SN-2", "proj-b")])
    # then
    assert owner(store, "SN-1") == ("proj-a", None)
    assert owner(store, "SN-2") == ("proj-b", None)


def test_registering_returns_the_position_of_the_last_event(
    service: OrderService,
) -> None:
    written = service.register_servers([("SN-1", "proj-a"), ("SN-2", "proj-b")])
    assert written.position == service.head() == 2


def test_registering_the_same_rows_again_writes_nothing(service: OrderService) -> None:
    # given
    service.register_servers(INVENTORY)
    head = service.head()
    # when
    written = service.register_servers(INVENTORY)
    # then
    assert service.head() == head
    assert written.position == head


def test_registering_new_rows_beside_known_ones_adds_only_the_new(
    service: OrderService, store: Store
) -> None:
    # given
    service.register_servers([("SN-1", "proj-a")])
    # when
    service.register_servers([("SN-1", "proj-a"), ("SN-2", "proj-a")])
    # then
    assert service.head() == 2
    assert owner(store, "SN-2") == ("proj-a", None)


def test_registering_refuses_to_move_an_owned_server(
    service: OrderService, store: Store
) -> None:
    # given
    service.register_servers([("SN-1", "proj-a")])
    # when / then
    with pytest.raises(InvalidInput, match="server SN-1 belongs to proj-a"):
        service.register_servers([("SN-1", "proj-b")])
    assert owner(store, "SN-1") == ("proj-a", None)


def test_registering_is_all_or_none(service: OrderService, store: Store) -> None:
    # given
    service.register_servers([("SN-1", "proj-a")])
    head = service.head()
    # when one row of three would move an owned server
    with pytest.raises(InvalidInput):
        service.register_servers(
            [("SN-2", "proj-a"), ("SN-1", "proj-b"), ("SN-3", "proj-a")]
        )
    # then none of the others was registered
    assert service.head() == head
    assert store.app.recorder.select_notifications(start=head + 1, limit=10) == []


def test_registering_a_server_for_two_projects_at_once_is_refused(
    service: OrderService,
) -> None:
    with pytest.raises(InvalidInput, match="SN-1 is listed for two projects"):
        service.register_servers([("SN-1", "proj-a"), ("SN-1", "proj-b")])
    assert service.head() == 0


@pytest.mark.parametrize(
    ("row", "complaint"),
    [
        (("bad snid", "proj-a"), "invalid snid"),
        (("SN-1", "bad/proj"), "invalid project"),
    ],
)
def test_registering_an_invalid_row_is_refused(
    service: OrderService, row: tuple[str, str], complaint: str
) -> None:
    with pytest.raises(InvalidInput, match=complaint):
        service.register_servers([("SN-0", "proj-a"), row])
    assert service.head() == 0


# -- requesting a transfer -----------------------------------------------------------


def test_a_request_records_the_order_as_given(
    registered: OrderService, clock: FakeClock
) -> None:
    # when
    number = registered.request_transfer(
        source_project="proj-a",
        user="alice",
        snids=["SN-A-3", "SN-A-1"],
        dest_project="proj-b",
        mailto=["x@example.com"],
    ).order_id
    # then
    assert number is not None
    order = registered.order(number)
    assert (
        order.number,
        order.snids,
        order.resource_project,
        order.dest_project,
        order.user,
        order.mailto,
        order.requested_at,
        order.state,
    ) == (
        number,
        ["SN-A-3", "SN-A-1"],
        "proj-a",
        "proj-b",
        "alice",
        ["x@example.com"],
        clock.now,
        UNFINISHED,
    )


def test_requesting_reserves_every_server_for_the_new_order(
    registered: OrderService, store: Store
) -> None:
    # when
    number = request(registered, ["SN-A-1", "SN-A-2"])
    # then
    assert owner(store, "SN-A-1") == ("proj-a", number)
    assert owner(store, "SN-A-2") == ("proj-a", number)
    assert owner(store, "SN-A-3") == ("proj-a", None)


def test_the_order_and_its_reservations_are_written_in_one_save(
    registered: OrderService, store: Store
) -> None:
    # given
    head = registered.head()
    # when
    written = registered.request_transfer(
        source_project="proj-a",
        user="alice",
        snids=["SN-A-1", "SN-A-2"],
        dest_project="proj-b",
        mailto=[],
    )
    # then exactly the order and its two reservations follow, ending at the answer
    added = store.app.recorder.select_notifications(start=head + 1, limit=10)
    events = [store.app.mapper.to_domain_event(n) for n in added]
    kinds: list[type] = [type(e) for e in events]
    assert kinds == [Order.Requested, Server.Reserved, Server.Reserved]
    assert [n.id for n in added] == [head + 1, head + 2, head + 3]
    assert written.position == added[-1].id == registered.head()


def test_order_numbers_are_one_two_three(registered: OrderService) -> None:
    numbers = [request(registered, [f"SN-A-{n}"]) for n in (1, 2, 3)]
    assert numbers == [1, 2, 3]


@pytest.mark.parametrize("accept", [True, False])
def test_order_numbers_are_never_reused_after_decisions(
    registered: OrderService, accept: bool
) -> None:
    # given orders 1 and 2, then decided (so their servers are free again)
    first = request(registered, ["SN-A-1"])
    second = request(registered, ["SN-A-2"])
    decide(registered, [first, second], accept=accept)
    # when the same servers are ordered again, by whoever owns them now
    source, dest = ("proj-b", "proj-c") if accept else ("proj-a", "proj-b")
    third = request(registered, ["SN-A-1"], source_project=source, dest_project=dest)
    fourth = request(registered, ["SN-A-2"], source_project=source, dest_project=dest)
    # then
    assert [first, second, third, fourth] == [1, 2, 3, 4]


def test_a_second_service_on_the_same_store_continues_the_numbers(
    registered: OrderService, store: Store, clock: FakeClock
) -> None:
    # given
    request(registered, ["SN-A-1"])
    request(registered, ["SN-A-2"])
    # when another service (with no memory of the last number) requests
    other = OrderService(store.app, clock=clock)
    # then
    assert request(other, ["SN-A-3"]) == 3
    assert request(registered, ["SN-A-4"]) == 4


@pytest.mark.parametrize(
    ("snids", "named"),
    [
        (["SN-B-1"], "SN-B-1"),
        (["SN-NOBODY"], "SN-NOBODY"),
        (["SN-A-1", "SN-B-1", "SN-A-2"], "SN-B-1"),
    ],
)
def test_requesting_servers_the_project_does_not_own_raises_servers_not_owned(
    registered: OrderService, snids: list[str], named: str
) -> None:
    # given
    head = registered.head()
    # when / then
    with pytest.raises(ServersNotOwned) as refused:
        request(registered, snids)
    assert str(refused.value) == f"servers not owned by project proj-a: {named}"
    assert registered.head() == head


def test_unknown_and_foreign_servers_get_the_same_message_shape(
    registered: OrderService,
) -> None:
    # when
    with pytest.raises(ServersNotOwned) as foreign:
        request(registered, ["SN-B-1"])
    with pytest.raises(ServersNotOwned) as unknown:
        request(registered, ["SN-B-9"])
    # then the messages differ only by the serial number
    assert str(foreign.value).replace("SN-B-1", "<snid>") == str(unknown.value).replace(
        "SN-B-9", "<snid>"
    )


def test_held_servers_raise_servers_already_ordered_naming_snid_and_order(
    registered: OrderService,
) -> None:
    # given
    first = request(registered, ["SN-A-1"])
    second = request(registered, ["SN-A-2"])
    head = registered.head()
    # when / then
    with pytest.raises(ServersAlreadyOrdered) as refused:
        request(registered, ["SN-A-3", "SN-A-2", "SN-A-1"], dest_project="proj-c")
    message = str(refused.value)
    assert f"SN-A-2 (order {second})" in message
    assert f"SN-A-1 (order {first})" in message
    assert "SN-A-3" not in message
    assert registered.head() == head


def test_a_refused_request_reserves_none_of_its_servers(
    registered: OrderService, store: Store
) -> None:
    # given
    request(registered, ["SN-A-2"])
    # when
    with pytest.raises(ServersAlreadyOrdered):
        request(registered, ["SN-A-1", "SN-A-2"])
    # then
    assert owner(store, "SN-A-1") == ("proj-a", None)


def test_ownership_is_checked_before_holding(registered: OrderService) -> None:
    # given a held server of the project and a foreign one
    request(registered, ["SN-A-1"])
    # when both problems apply, the 400 answers (it leaks nothing about the other)
    with pytest.raises(ServersNotOwned):
        request(registered, ["SN-A-1", "SN-B-1"])


@pytest.mark.parametrize(
    ("snids", "dest", "mailto", "complaint"),
    [
        ([], "proj-b", [], "at least one server"),
        (["SN-A-1", "SN-A-1"], "proj-b", [], "repeats SN-A-1"),
        ([f"SN-{n}" for n in range(201)], "proj-b", [], "at most 200"),
        (["SN-A-1"], "proj-a", [], "another project"),
        (["SN-A-1"], "", [], "invalid dest_project"),
        (["SN-A-1"], "proj b", [], "invalid dest_project"),
        (["SN-A-1"], "proj-b", ["not-an-address"], "invalid address"),
    ],
)
def test_an_invalid_request_is_refused_before_anything_is_written(
    registered: OrderService,
    snids: list[str],
    dest: str,
    mailto: list[str],
    complaint: str,
) -> None:
    head = registered.head()
    with pytest.raises(InvalidInput, match=complaint):
        registered.request_transfer(
            source_project="proj-a",
            user="alice",
            snids=snids,
            dest_project=dest,
            mailto=mailto,
        )
    assert registered.head() == head


# -- deciding ------------------------------------------------------------------------


def test_accepting_transfers_the_servers_to_the_destination(
    registered: OrderService, store: Store
) -> None:
    # given
    number = request(registered, ["SN-A-1", "SN-A-2"])
    # when
    decide(registered, [number], accept=True)
    # then
    assert owner(store, "SN-A-1") == ("proj-b", None)
    assert owner(store, "SN-A-2") == ("proj-b", None)
    assert registered.order(number).state == FINISHED


def test_refusing_returns_servers_to_the_source(
    registered: OrderService, store: Store
) -> None:
    # given
    number = request(registered, ["SN-A-1", "SN-A-2"])
    # when
    decide(registered, [number], accept=False)
    # then
    assert owner(store, "SN-A-1") == ("proj-a", None)
    assert owner(store, "SN-A-2") == ("proj-a", None)
    assert registered.order(number).state == REFUSED


@pytest.mark.parametrize(("accept", "new_owner"), [(True, "proj-b"), (False, "proj-a")])
def test_decided_servers_can_be_ordered_again_by_their_owner(
    registered: OrderService, accept: bool, new_owner: str
) -> None:
    # given
    decide(registered, [request(registered, ["SN-A-1"])], accept=accept)
    # when
    again = request(
        registered, ["SN-A-1"], source_project=new_owner, dest_project="proj-c"
    )
    # then
    assert registered.order(again).resource_project == new_owner


@pytest.mark.parametrize("accept", [True, False])
def test_a_decision_records_who_decided_and_when(
    registered: OrderService, clock: FakeClock, accept: bool
) -> None:
    # given
    number = request(registered, ["SN-A-1"])
    decided_at = clock.advance(minutes=20)
    # when
    decide(registered, [number], accept=accept)
    # then
    order = registered.order(number)
    assert (order.decided_by, order.decided_at) == ("bob", decided_at)


def test_deciding_several_orders_decides_each(registered: OrderService) -> None:
    # given
    numbers = [request(registered, [f"SN-A-{n}"]) for n in (1, 2, 3)]
    # when
    decide(registered, numbers, accept=True)
    # then
    assert [registered.order(n).state for n in numbers] == [FINISHED] * 3


@pytest.mark.parametrize("accept", [True, False])
def test_repeating_a_decision_writes_nothing(
    registered: OrderService, accept: bool
) -> None:
    # given
    number = request(registered, ["SN-A-1"])
    decide(registered, [number], accept=accept)
    head = registered.head()
    # when
    position = decide(registered, [number], accept=accept)
    # then
    assert registered.head() == head
    assert position == head


def test_orders_already_decided_the_same_way_are_skipped_beside_new_ones(
    registered: OrderService,
) -> None:
    # given order 1 accepted, order 2 unfinished
    first = request(registered, ["SN-A-1"])
    second = request(registered, ["SN-A-2"])
    decide(registered, [first], accept=True)
    version = registered.order(first).version
    # when both are accepted
    decide(registered, [first, second], accept=True)
    # then order 2 is accepted and order 1 got no new event
    assert registered.order(second).state == FINISHED
    assert registered.order(first).version == version


def test_deciding_is_all_or_nothing_when_one_order_is_missing(
    registered: OrderService, store: Store
) -> None:
    # given
    number = request(registered, ["SN-A-1"])
    head = registered.head()
    # when / then
    with pytest.raises(
        OrdersNotFound, match=r"orders not found for project proj-b: 99$"
    ):
        decide(registered, [number, 99], accept=True)
    assert registered.head() == head
    assert owner(store, "SN-A-1") == ("proj-a", number)


def test_orders_of_another_destination_are_not_found(registered: OrderService) -> None:
    # given an order to proj-b and one to proj-c
    to_b = request(registered, ["SN-A-1"])
    to_c = request(registered, ["SN-A-2"], dest_project="proj-c")
    head = registered.head()
    # when proj-b decides both, or the source tries to decide its own order
    with pytest.raises(OrdersNotFound, match=f": {to_c}$"):
        decide(registered, [to_b, to_c], accept=True)
    with pytest.raises(OrdersNotFound, match=f": {to_b}$"):
        decide(registered, [to_b], accept=True, project="proj-a")
    # then
    assert registered.head() == head


@pytest.mark.parametrize(("first", "then"), [(True, False), (False, True)])
def test_deciding_is_all_or_nothing_when_one_order_was_decided_otherwise(
    registered: OrderService, store: Store, first: bool, then: bool
) -> None:
    # given order 1 decided one way, order 2 unfinished
    decided = request(registered, ["SN-A-1"])
    open_ = request(registered, ["SN-A-2"])
    decide(registered, [decided], accept=first)
    head = registered.head()
    # when / then
    with pytest.raises(
        AlreadyDecided, match=f"orders already decided the other way: {decided} "
    ):
        decide(registered, [open_, decided], accept=then)
    assert registered.head() == head
    assert registered.order(open_).state == UNFINISHED
    assert owner(store, "SN-A-2") == ("proj-a", open_)


def test_not_found_answers_before_already_decided(registered: OrderService) -> None:
    decided = request(registered, ["SN-A-1"])
    decide(registered, [decided], accept=True)
    with pytest.raises(OrdersNotFound):
        decide(registered, [decided, 99], accept=False)


@pytest.mark.parametrize(
    "roles", [frozenset(), frozenset({"member"}), frozenset({"admin"})]
)
def test_deciding_without_an_approver_role_raises_not_allowed(
    store: Store, clock: FakeClock, roles: frozenset[str]
) -> None:
    # given a service where only approvers decide
    service = OrderService(
        store.app, clock=clock, approver_roles=frozenset({"approver"})
    )
    service.register_servers(INVENTORY)
    number = request(service, ["SN-A-1"])
    head = service.head()
    # when / then
    with pytest.raises(NotAllowed, match="approver"):
        decide(service, [number], accept=True, roles=roles)
    assert service.head() == head
    assert service.order(number).state == UNFINISHED


def test_not_allowed_answers_before_not_found(store: Store, clock: FakeClock) -> None:
    service = OrderService(
        store.app, clock=clock, approver_roles=frozenset({"approver"})
    )
    with pytest.raises(NotAllowed):
        decide(service, [99], accept=True, roles=frozenset({"member"}))


def test_an_approver_role_may_decide(store: Store, clock: FakeClock) -> None:
    # given
    service = OrderService(
        store.app, clock=clock, approver_roles=frozenset({"approver"})
    )
    service.register_servers(INVENTORY)
    number = request(service, ["SN-A-1"])
    # when
    decide(service, [number], accept=True, roles=frozenset({"member", "approver"}))
    # then
    assert service.order(number).state == FINISHED


@pytest.mark.parametrize(
    ("order_ids", "complaint"),
    [
        ([], "at least one"),
        ([1, 1], "repeats 1"),
        ([0], "positive"),
        (list(range(1, 202)), "at most 200"),
    ],
)
def test_an_invalid_list_of_order_ids_is_refused(
    registered: OrderService, order_ids: list[int], complaint: str
) -> None:
    with pytest.raises(InvalidInput, match=complaint):
        decide(registered, order_ids, accept=True)


# -- warnings ------------------------------------------------------------------------


def warn(service: OrderService, number: int) -> int:
    return service.raise_warning(number, every=EVERY, most=MOST).position


def test_no_warning_is_raised_before_the_period_has_passed(
    registered: OrderService, clock: FakeClock
) -> None:
    # given
    number = request(registered, ["SN-A-1"])
    head = registered.head()
    clock.advance(minutes=59, seconds=59)
    # when
    position = warn(registered, number)
    # then
    assert position == 0
    assert registered.head() == head
    assert registered.order(number).warning_count == 0


def test_a_warning_is_raised_once_the_period_has_passed(
    registered: OrderService, clock: FakeClock
) -> None:
    # given
    number = request(registered, ["SN-A-1"])
    now = clock.advance(hours=1)
    # when
    position = warn(registered, number)
    # then
    order = registered.order(number)
    assert (order.warning_count, order.warned_at) == (1, now)
    assert position == registered.head()


def test_warnings_repeat_after_each_period(
    registered: OrderService, clock: FakeClock
) -> None:
    # given a first warning
    number = request(registered, ["SN-A-1"])
    clock.advance(hours=1)
    warn(registered, number)
    # when just under, then exactly, one more period passes
    clock.advance(minutes=59)
    warn(registered, number)
    before = registered.order(number).warning_count
    clock.advance(minutes=1)
    warn(registered, number)
    # then
    assert (before, registered.order(number).warning_count) == (1, 2)


def test_warnings_stop_at_most(registered: OrderService, clock: FakeClock) -> None:
    # given every warning raised
    number = request(registered, ["SN-A-1"])
    for _ in range(MOST):
        clock.advance(hours=1)
        warn(registered, number)
    head = registered.head()
    # when
    clock.advance(hours=5)
    warn(registered, number)
    # then
    assert registered.order(number).warning_count == MOST
    assert registered.head() == head


@pytest.mark.parametrize("accept", [True, False])
def test_a_decision_stops_warnings(
    registered: OrderService, clock: FakeClock, accept: bool
) -> None:
    # given
    number = request(registered, ["SN-A-1"])
    decide(registered, [number], accept=accept)
    head = registered.head()
    # when
    clock.advance(hours=2)
    position = warn(registered, number)
    # then
    assert position == 0
    assert registered.head() == head
    assert registered.order(number).warning_count == 0


def test_a_second_warning_call_at_the_same_moment_raises_nothing(
    registered: OrderService, clock: FakeClock
) -> None:
    # given
    number = request(registered, ["SN-A-1"])
    clock.advance(hours=1)
    warn(registered, number)
    head = registered.head()
    # when
    position = warn(registered, number)
    # then
    assert position == 0
    assert registered.head() == head
    assert registered.order(number).warning_count == 1


def test_warning_an_unknown_order_raises_orders_not_found(
    registered: OrderService,
) -> None:
    with pytest.raises(OrdersNotFound, match="order 5 not found"):
        warn(registered, 5)


def test_reading_an_unknown_order_raises_orders_not_found(
    registered: OrderService,
) -> None:
    with pytest.raises(OrdersNotFound):
        registered.order(1)
