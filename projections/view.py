"""What every read model has: its tables, the events it reads, how a page of them
changes its tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from eventsourcing.domain import DomainEventProtocol

from projections.database import Cursor, ViewDatabase

Events = Sequence[DomainEventProtocol[Any]]


class View(Protocol):
    """A read model, filled by the projector and rebuilt from the log at will."""

    name: str
    # Every table of the view (compared by `verify`, replaced by `rebuild`).
    tables: tuple[str, ...]
    # The topics of the events it reads; the projector hands it no others.
    topics: frozenset[str]

    def create_tables(self, cursor: Cursor, db: ViewDatabase) -> None: ...

    def apply_page(self, cursor: Cursor, db: ViewDatabase, events: Events) -> None:
        """Apply `events` (in log order) within the page's transaction."""
        ...


class TablesFromDdl:
    """For a view whose tables are made by its `ddl` statements (idempotent)."""

    ddl: tuple[str, ...]

    def create_tables(self, cursor: Cursor, db: ViewDatabase) -> None:
        for statement in self.ddl:
            cursor.execute(statement)
