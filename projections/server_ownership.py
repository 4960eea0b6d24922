"""Server ownership: which project owns each server and which order holds it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from eventsourcing.utils import get_topic

from domain.server import Server
from projections.database import Cursor, RowsStatement, ViewDatabase
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
_REGISTER: Final = RowsStatement(
    each="INSERT INTO server_ownership (snid, project_id, order_id, updated_at)"
    " VALUES (?, ?, ?, ?)",
    arrays="INSERT INTO server_ownership (snid, project_id, order_id, updated_at)"
    " SELECT * FROM unnest(?::text[], ?::text[], ?::bigint[], ?::double precision[])",
)
# What the page's events did to a server registered before it: its new project
# (NULL: the same), holding order and time; one row per server.
_CHANGE: Final = RowsStatement(
    each="UPDATE server_ownership SET project_id = COALESCE(?, project_id),"
    " order_id = ?, updated_at = ? WHERE snid = ?",
    arrays="UPDATE server_ownership s"
    " SET project_id = COALESCE(c.project_id, s.project_id),"
    " order_id = c.order_id, updated_at = c.updated_at"
    " FROM unnest(?::text[], ?::bigint[], ?::double precision[], ?::text[])"
    " AS c (project_id, order_id, updated_at, snid) WHERE s.snid = c.snid",
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
        """Two statements a page: the page's events are folded, in log order, into
        the row each server ends with (inserted if registered in the page)."""
        new: dict[str, list[Any]] = {}  # snid, project, order, updated at
        changed: dict[str, list[Any]] = {}  # project or None, order, updated at, snid
        project: str | None
        order: int | None
        for event in events:
            match event:
                case Server.Registered():
                    at = event.at.timestamp()
                    new[event.snid] = [event.snid, event.project_id, None, at]
                    continue
                case Server.Reserved():
                    project, order, at = None, event.order_id, event.at.timestamp()
                case Server.Transferred():
                    project, order, at = event.to_project, None, event.at.timestamp()
                case Server.Released():
                    project, order, at = None, None, event.at.timestamp()
                case _:
                    continue
            if (row := new.get(event.snid)) is not None:
                if project is not None:
                    row[1] = project
                row[2], row[3] = order, at
            elif (change := changed.get(event.snid)) is not None:
                if project is not None:
                    change[0] = project
                change[1], change[2] = order, at
            else:
                changed[event.snid] = [project, order, at, event.snid]
        db.apply_rows(cursor, _REGISTER, list(new.values()))
        db.apply_rows(cursor, _CHANGE, list(changed.values()))

    @staticmethod
    def servers(db: ViewDatabase, project_id: str | None = None) -> list[ServerRow]:
        with db.reading() as cursor:
            if project_id is None:
                cursor.execute(db.sql(_SELECT_ALL))
            else:
                cursor.execute(db.sql(_SELECT_OF_PROJECT), (project_id,))
            return [ServerRow(*row) for row in cursor.fetchall()]
