"""The Server aggregate's rules, in memory."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.exceptions import ServersAlreadyOrdered, ServersNotOwned
from domain.server import Server, server_aggregate_id
from tests.unit.conftest import T0, new_server

LATER = T0 + timedelta(minutes=10)


def test_a_registered_server_is_owned_and_free() -> None:
    # when
    server = Server(snid="SN-1", project_id="proj-a", at=T0)
    # then
    assert (server.snid, server.project_id, server.order_id) == ("SN-1", "proj-a", None)
    [registered] = server.collect_events()
    assert isinstance(registered, Server.Registered)
    assert (registered.snid, registered.project_id, registered.at) == (
        "SN-1",
        "proj-a",
        T0,
    )


def test_a_server_id_is_derived_from_its_snid_alone() -> None:
    assert new_server("SN-1").id == new_server("SN-1", "proj-z").id
    assert server_aggregate_id("SN-1") != server_aggregate_id("SN-2")


def test_reserving_holds_the_server_for_the_order(server: Server) -> None:
    # when
    server.reserve(order_id=4, project="proj-a", at=LATER)
    # then
    assert server.order_id == 4
    assert server.project_id == "proj-a"
    [reserved] = server.collect_events()
    assert isinstance(reserved, Server.Reserved)
    assert (reserved.snid, reserved.order_id, reserved.at) == ("SN-1", 4, LATER)


@pytest.mark.parametrize("second_order", [4, 5])
def test_a_held_server_cannot_be_reserved_twice(
    server: Server, second_order: int
) -> None:
    # given
    server.reserve(order_id=4, project="proj-a", at=T0)
    server.collect_events()
    # when / then
    with pytest.raises(ServersAlreadyOrdered, match=r"SN-1 \(order 4\)"):
        server.reserve(order_id=second_order, project="proj-a", at=LATER)
    assert server.order_id == 4
    assert server.collect_events() == []


def test_only_the_owner_may_reserve_a_server(server: Server) -> None:
    # when / then
    with pytest.raises(ServersNotOwned, match="not owned by project proj-z: SN-1"):
        server.reserve(order_id=4, project="proj-z", at=LATER)
    assert server.order_id is None
    assert server.collect_events() == []


def test_transferring_gives_the_server_to_the_destination_and_frees_it(
    server: Server,
) -> None:
    # given
    server.reserve(order_id=4, project="proj-a", at=T0)
    server.collect_events()
    # when
    server.transfer(order_id=4, to_project="proj-b", at=LATER)
    # then
    assert (server.project_id, server.order_id) == ("proj-b", None)
    [transferred] = server.collect_events()
    assert isinstance(transferred, Server.Transferred)
    assert (
        transferred.snid,
        transferred.order_id,
        transferred.from_project,
        transferred.to_project,
        transferred.at,
    ) == ("SN-1", 4, "proj-a", "proj-b", LATER)


def test_releasing_returns_the_server_to_its_owner_free(server: Server) -> None:
    # given
    server.reserve(order_id=4, project="proj-a", at=T0)
    server.collect_events()
    # when
    server.release(order_id=4, at=LATER)
    # then
    assert (server.project_id, server.order_id) == ("proj-a", None)
    [released] = server.collect_events()
    assert isinstance(released, Server.Released)
    assert (released.snid, released.order_id, released.at) == ("SN-1", 4, LATER)


@pytest.mark.parametrize("held_by", [None, 5])
@pytest.mark.parametrize("move", ["transfer", "release"])
def test_only_the_holding_order_may_transfer_or_release(
    server: Server, held_by: int | None, move: str
) -> None:
    # given a server free, or held by another order than 4
    if held_by is not None:
        server.reserve(order_id=held_by, project="proj-a", at=T0)
    server.collect_events()
    # when / then
    moves = {
        "transfer": lambda: server.transfer(order_id=4, to_project="proj-b", at=LATER),
        "release": lambda: server.release(order_id=4, at=LATER),
    }
    with pytest.raises(ValueError, match="SN-1 is not held by order 4"):
        moves[move]()
    assert (server.project_id, server.order_id) == ("proj-a", held_by)
    assert server.collect_events() == []


@pytest.mark.parametrize("move", ["transfer", "release"])
def test_a_freed_server_can_be_reserved_again(server: Server, move: str) -> None:
    # given
    server.reserve(order_id=4, project="proj-a", at=T0)
    if move == "transfer":
        server.transfer(order_id=4, to_project="proj-b", at=T0)
    else:
        server.release(order_id=4, at=T0)
    owner = "proj-b" if move == "transfer" else "proj-a"
    # when
    server.reserve(order_id=9, project=owner, at=LATER)
    # then
    assert server.order_id == 9
