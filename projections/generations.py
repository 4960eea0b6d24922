"""Generations of the read models: each release projects into tables of its own.

A release's read models are named by what makes them: each view's name, the
version of its fold, and the statements that create its tables. Change any of
them (a column, an index, a table, a fold) and the generation is another one,
with tables of its own (a PostgreSQL schema beside the event store's, or a
SQLite file beside the store's), built from the event log while the older
generation keeps serving the older release's processes. Nothing is altered in
place, so an older release never finds its tables changed, and a rollback finds
them as it left them.

The generations are registered in a table beside the event store's, shared by
every release: when each was made and by which release, when it first caught up
with the log (a process serves from a generation only after that), and when a
process serving from it was last seen (an older generation is dropped only by
`pm-order db finish-upgrade`, once no process of it has been seen for a while).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from projections.database import Cursor, ViewDatabase
from projections.view import View

# The registry, beside the event store (never in a generation).
REGISTRY_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS pm_order_generations ("
    " generation TEXT PRIMARY KEY,"
    " release TEXT NOT NULL,"
    " created_at DOUBLE PRECISION NOT NULL,"
    " caught_up_at DOUBLE PRECISION,"
    " seen_at DOUBLE PRECISION NOT NULL)"
)
_REGISTER: Final = (
    "INSERT INTO pm_order_generations"
    " (generation, release, created_at, caught_up_at, seen_at)"
    " VALUES (?, ?, ?, NULL, ?) ON CONFLICT (generation) DO NOTHING"
)
_CAUGHT_UP: Final = (
    "UPDATE pm_order_generations SET caught_up_at = ?"
    " WHERE generation = ? AND caught_up_at IS NULL"
)
_SEEN: Final = "UPDATE pm_order_generations SET seen_at = ? WHERE generation = ?"
_SELECT_ONE: Final = (
    "SELECT generation, release, created_at, caught_up_at, seen_at"
    " FROM pm_order_generations WHERE generation = ?"
)
_SELECT_ALL: Final = (
    "SELECT generation, release, created_at, caught_up_at, seen_at"
    " FROM pm_order_generations ORDER BY created_at"
)
_FORGET: Final = "DELETE FROM pm_order_generations WHERE generation = ?"


def generation_schema(schema: str, name: str) -> str:
    """The PostgreSQL schema of generation `name` beside the store's `schema`."""
    return f"{schema}_views_{name}"


def generation_of(views: Sequence[View]) -> str:
    """The generation `views` make: eight hex digits of a hash of each view's
    name, fold version and table statements (the same code, the same name)."""
    digest = hashlib.sha256()
    for view in views:
        digest.update(f"{view.name}\0{view.fold_version}\0".encode())
        for table in view.layout:
            for statement in table.ddl():
                digest.update(statement.encode() + b"\0")
    return digest.hexdigest()[:8]


@dataclass(frozen=True)
class Generation:
    """A registered generation of the read models."""

    name: str
    release: str
    created_at: float
    caught_up_at: float | None
    seen_at: float

    @property
    def caught_up(self) -> bool:
        return self.caught_up_at is not None


def register(cursor: Cursor, db: ViewDatabase, name: str, release: str) -> None:
    """Record generation `name`, made by `release` (nothing if it is known)."""
    now = time.time()
    cursor.execute(db.sql(_REGISTER), (name, release, now, now))


def mark_caught_up(db: ViewDatabase, name: str) -> bool:
    """Record that generation `name` reached the log's head (the first time
    only); whether this call recorded it."""
    with db.writing() as cursor:
        cursor.execute(db.sql(_CAUGHT_UP), (time.time(), name))
        return cursor.rowcount == 1


def mark_seen(db: ViewDatabase, name: str) -> None:
    """A process serving from generation `name` is alive now."""
    with db.writing() as cursor:
        cursor.execute(db.sql(_SEEN), (time.time(), name))


def generation(db: ViewDatabase, name: str) -> Generation | None:
    """Generation `name` as registered (None: never made)."""
    for row in db.query(_SELECT_ONE, [name]):
        return _generation(row)
    return None


def generations(db: ViewDatabase) -> list[Generation]:
    """Every registered generation, oldest first."""
    return [_generation(row) for row in db.query(_SELECT_ALL)]


def forget(cursor: Cursor, db: ViewDatabase, name: str) -> None:
    """Remove generation `name` from the registry (its tables are dropped)."""
    cursor.execute(db.sql(_FORGET), (name,))


def _generation(row: Sequence[object]) -> Generation:
    name, release, created_at, caught_up_at, seen_at = row
    return Generation(
        name=str(name),
        release=str(release),
        created_at=float(created_at),  # type: ignore[arg-type]
        caught_up_at=None if caught_up_at is None else float(caught_up_at),  # type: ignore[arg-type]
        seen_at=float(seen_at),  # type: ignore[arg-type]
    )
