"""The Server aggregate: who owns one physical server and which order holds it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from domain.exceptions import ServersAlreadyOrdered, ServersNotOwned

_SERVER_IDS: Final = uuid5(NAMESPACE_URL, "urn:pm-order:server")


def server_aggregate_id(snid: str) -> UUID:
    """The aggregate id of server `snid`: derived from the serial number alone."""
    return uuid5(_SERVER_IDS, snid)


def check_orderable(servers: Mapping[str, Server | None], project: str) -> None:
    """Every server must be `project`'s now and in no unfinished order.

    Unknown and foreign servers get the same refusal (ServersNotOwned), so that
    other projects' inventory does not leak; held ones get ServersAlreadyOrdered.
    """
    not_owned = [
        snid
        for snid, server in servers.items()
        if server is None or server.project_id != project
    ]
    if not_owned:
        raise ServersNotOwned(
            f"servers not owned by project {project}: {', '.join(not_owned)}"
        )
    held = {
        snid: server.order_id
        for snid, server in servers.items()
        if server is not None and server.order_id is not None
    }
    if held:
        raise ServersAlreadyOrdered(
            "servers already in an unfinished order: "
            + ", ".join(f"{snid} (order {number})" for snid, number in held.items())
        )


class Server(Aggregate):
    """One physical server, owned by one project, held by at most one open order."""

    # `project_id` is the stored events' word for the owner (see Order's events).
    class Registered(Aggregate.Created):
        snid: str
        project_id: str
        at: datetime

    class Reserved(Aggregate.Event):
        snid: str
        order_id: int
        at: datetime

    class Transferred(Aggregate.Event):
        snid: str
        order_id: int
        from_project: str
        to_project: str
        at: datetime

    class Released(Aggregate.Event):
        snid: str
        order_id: int
        at: datetime

    @staticmethod
    def create_id(snid: str) -> UUID:
        return server_aggregate_id(snid)

    @event(Registered)
    def __init__(self, snid: str, project_id: str, at: datetime) -> None:
        self.snid = snid
        self.project_id = project_id
        self.order_id: int | None = None

    def reserve(self, order_id: int, project: str, at: datetime) -> None:
        """Hold the server for an unfinished order of its owner, `project`."""
        check_orderable({self.snid: self}, project)
        self._reserve(snid=self.snid, order_id=order_id, at=at)

    def transfer(self, order_id: int, to_project: str, at: datetime) -> None:
        """Hand the server to the destination of the order that holds it."""
        self._check_held_by(order_id)
        self._transfer(
            snid=self.snid,
            order_id=order_id,
            from_project=self.project_id,
            to_project=to_project,
            at=at,
        )

    def release(self, order_id: int, at: datetime) -> None:
        """Give the server back to its owner's free pool."""
        self._check_held_by(order_id)
        self._release(snid=self.snid, order_id=order_id, at=at)

    def _check_held_by(self, order_id: int) -> None:
        if self.order_id != order_id:
            raise ValueError(f"{self.snid} is not held by order {order_id}")

    @event(Reserved)
    def _reserve(self, snid: str, order_id: int, at: datetime) -> None:
        self.order_id = order_id

    @event(Transferred)
    def _transfer(
        self, snid: str, order_id: int, from_project: str, to_project: str, at: datetime
    ) -> None:
        self.project_id = to_project
        self.order_id = None

    @event(Released)
    def _release(self, snid: str, order_id: int, at: datetime) -> None:
        self.order_id = None
