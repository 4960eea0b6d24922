"""Read models whose tables once had columns under other names: a database made
before a rename gets the new names when the tables are made (`Table.renamed`)."""

from __future__ import annotations

import sqlite3

from projections.database import Cursor, ViewDatabase
from projections.view import ReadModel

_COLUMNS_SQLITE = "SELECT name FROM pragma_table_info(?)"
# The views' schema is the connection's search path (PostgresViews sets it).
_COLUMNS_POSTGRES = (
    "SELECT column_name FROM information_schema.columns"
    " WHERE table_schema = current_schema() AND table_name = %s"
)


def columns_now(cursor: Cursor, table: str) -> frozenset[str]:
    """The columns `table` has in the database now (none: there is no such table)."""
    sqlite = isinstance(cursor, sqlite3.Cursor)
    cursor.execute(_COLUMNS_SQLITE if sqlite else _COLUMNS_POSTGRES, (table,))
    return frozenset(name for (name,) in cursor.fetchall())


class RenamingReadModel(ReadModel):
    """A read model whose tables' DDL renames the old columns it finds."""

    def create_tables(self, cursor: Cursor, db: ViewDatabase) -> None:
        for table in self.layout:
            for statement in table.ddl(columns_now(cursor, table.name)):
                cursor.execute(statement)
        for statement in self.after_tables:
            cursor.execute(statement)
