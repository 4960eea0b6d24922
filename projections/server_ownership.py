"""Server ownership: which project owns each server and which order holds it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from eventsourcing.utils import get_topic

from domain.server import Server
from projections.database import Cursor, ViewDatabase
from projections.view import Events, TablesFromDdl

NAME: Final = "server_ownership"

_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS server_ownership ("
    " snid TEXT PRIMARY KEY,"
    " project_id TEXT NOT NULL,"
    " order_id BIGINT,"
    " updated_at DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX IF NOT EXISTS server_ownership_by_project"
    " ON server_ownership (project_id, snid)",
)
_REGISTER: Final = (
    "INSERT INTO server_ownership (snid, project_id, order_id, updated_at)"
    " VALUES (?, ?, NULL, ?)"
)
_HOLD: Final = "UPDATE server_ownership SET order_id = ?, updated_at = ? WHERE snid = ?"
_MOVE: Final = (
    "UPDATE server_ownership SET project_id = ?, order_id = NULL, updated_at = ?"
    " WHERE snid = ?"
)
_SELECT_ALL: Final = (
    "SELECT snid, project_id, order_id, updated_at FROM server_ownership ORDER BY snid"
)
_SELECT_OF_PROJECT: Final = (
    "SELECT snid, project_id, order_id, updated_at FROM server_ownership"
    " WHERE project_id = ? ORDER BY snid"
)


@dataclass(frozen=True)
class ServerRow:
    snid: str
    project_id: str
    order_id: int | None
    updated_at: float


class ServerOwnership(TablesFromDdl):
    """Projects Server events into one row per server."""

    name = NAME
    ddl = _DDL
    tables: tuple[str, ...] = ("server_ownership",)
    topics = frozenset(
        get_topic(e)
        for e in (
            Server.Registered,
            Server.Reserved,
            Server.Transferred,
            Server.Released,
        )
    )

    def apply_page(self, cursor: Cursor, db: ViewDatabase, events: Events) -> None:
        for event in events:
            match event:
                case Server.Registered():
                    cursor.execute(
                        db.sql(_REGISTER),
                        (event.snid, event.project_id, event.at.timestamp()),
                    )
                case Server.Reserved():
                    cursor.execute(
                        db.sql(_HOLD),
                        (event.order_id, event.at.timestamp(), event.snid),
                    )
                case Server.Transferred():
                    cursor.execute(
                        db.sql(_MOVE),
                        (event.to_project, event.at.timestamp(), event.snid),
                    )
                case Server.Released():
                    cursor.execute(
                        db.sql(_HOLD), (None, event.at.timestamp(), event.snid)
                    )

    @staticmethod
    def servers(db: ViewDatabase, project_id: str | None = None) -> list[ServerRow]:
        with db.reading() as cursor:
            if project_id is None:
                cursor.execute(db.sql(_SELECT_ALL))
            else:
                cursor.execute(db.sql(_SELECT_OF_PROJECT), (project_id,))
            return [ServerRow(*row) for row in cursor.fetchall()]
