"""Server ownership: which project owns each server and which order holds it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from domain.event_kinds import SERVER_TOPICS
from domain.server import Server
from projections.database import ViewDatabase
from projections.page_writer import Changes, Table
from projections.view import ReadModel

NAME: Final = "server_ownership"


@dataclass(slots=True)
class ServerRow:
    """A server, the project that owns it and the order holding it (if any)."""

    snid: str
    project: str
    order_id: int | None
    updated_at: float


SERVERS: Final = Table(
    "server_ownership",
    ServerRow,
    key=["snid"],
    indexes=[
        "CREATE INDEX IF NOT EXISTS server_ownership_by_project"
        " ON server_ownership (project, snid)",
    ],
)

_SELECT_ALL: Final = f"SELECT {SERVERS.selected} FROM server_ownership ORDER BY snid"
_SELECT_ONE: Final = f"SELECT {SERVERS.selected} FROM server_ownership WHERE snid = ?"
_SELECT_OF_PROJECT: Final = (
    f"SELECT {SERVERS.selected} FROM server_ownership WHERE project = ? ORDER BY snid"
)


class ServerOwnership(ReadModel):
    """Projects Server events into one row per server."""

    name = NAME
    layout = (SERVERS,)
    topics = SERVER_TOPICS

    def fold(self, event: Any, changes: Changes) -> None:
        """What each event changes, once (the page writer merges a change into
        a server the page registers)."""
        match event:
            case Server.Registered():
                at = event.at.timestamp()
                changes.insert(
                    SERVERS, ServerRow(event.snid, event.project_id, None, at)
                )
            case Server.Reserved():
                _held(changes, event.snid, event.at, order_id=event.order_id)
            case Server.Transferred():
                _held(changes, event.snid, event.at, None, project=event.to_project)
            case Server.Released():
                _held(changes, event.snid, event.at, order_id=None)

    @staticmethod
    def server(db: ViewDatabase, snid: str) -> ServerRow | None:
        """Server `snid` (None: never registered)."""
        rows = db.query(_SELECT_ONE, (snid,))
        return SERVERS.row_of(rows[0]) if rows else None

    @staticmethod
    def servers(db: ViewDatabase, project: str | None = None) -> list[ServerRow]:
        with db.reading() as cursor:
            if project is None:
                cursor.execute(db.sql(_SELECT_ALL))
            else:
                cursor.execute(db.sql(_SELECT_OF_PROJECT), (project,))
            return [SERVERS.row_of(row) for row in cursor.fetchall()]


def _held(
    changes: Changes,
    snid: str,
    at: datetime,
    order_id: int | None,
    *,
    project: str | None = None,
) -> None:
    """Server `snid` is held by `order_id` (None: by no order) from `at`, and
    belongs to `project` if given."""
    held: dict[str, object] = {"order_id": order_id, "updated_at": at.timestamp()}
    if project is not None:
        held["project"] = project
    changes.update(SERVERS, {"snid": snid}, **held)
