"""What every read model has: its tables, the events it reads, how a page of them
changes its tables."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol

from eventsourcing.domain import DomainEventProtocol

from projections.database import Cursor, ViewDatabase
from projections.page_writer import Changes, Statement, Table

Events = Sequence[DomainEventProtocol[Any]]


class View(Protocol):
    """A read model, filled by the projector and rebuilt from the log at will."""

    name: str
    # The topics of the events it reads; the projector hands it no others.
    topics: frozenset[str]

    @property
    def fold_version(self) -> int:
        """Raised when the fold changes what it writes (its tables' statements
        are compared without it): the read models are then another generation."""
        ...

    @property
    def layout(self) -> tuple[Table[Any], ...]:
        """Its tables, each described by its row."""
        ...

    @property
    def tables(self) -> tuple[str, ...]:
        """Every table of the view (compared by `verify`, replaced by `rebuild`)."""
        ...

    def create_tables(self, cursor: Cursor, db: ViewDatabase) -> None: ...

    def apply_page(self, cursor: Cursor, db: ViewDatabase, events: Events) -> None:
        """Apply `events` (in log order) within the page's transaction."""
        ...


class ReadModel(ABC):
    """A view whose tables are described by their rows (`layout`), and whose fold
    says what each event changes; the page writer writes a page's changes."""

    name: str
    topics: frozenset[str]
    layout: tuple[Table[Any], ...]
    fold_version: int = 1

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(table.name for table in self.layout)

    def create_tables(self, cursor: Cursor, db: ViewDatabase) -> None:
        """Make the tables and their indexes (in a generation of their own: never
        altered in place, see projections/generations.py)."""
        for table in self.layout:
            for statement in table.ddl():
                cursor.execute(statement)

    def apply_page(self, cursor: Cursor, db: ViewDatabase, events: Events) -> None:
        """Fold the page's events, in log order, then write what they changed:
        each row once, as applying the events one by one would have left it."""
        changes = Changes()
        self.read_before(cursor, db, events, changes)
        for event in events:
            self.fold(event, changes)
        changes.write(cursor, db)

    @property
    def reads_before_folding(self) -> bool:
        """Whether the fold needs rows written before the page (it overrides
        `read_before`): its page is then folded within the page's transaction,
        after the page before has committed. Without, a page is folded ahead
        (`statements_of`), while the page before is being written."""
        return type(self).read_before is not ReadModel.read_before

    def statements_of(self, db: ViewDatabase, events: Events) -> list[Statement]:
        """The statements of a page of `events`, folded without the database
        (only for a view that does not read before folding)."""
        if self.reads_before_folding:
            raise TypeError(f"{self.name} reads rows before folding a page")
        changes = Changes()
        for event in events:
            self.fold(event, changes)
        return changes.statements(db)

    def read_before(
        self, cursor: Cursor, db: ViewDatabase, events: Events, changes: Changes
    ) -> None:
        """Read, for the fold, rows written before the page (`changes.found`):
        most views need none, their changes look them up in the database."""
        return

    @abstractmethod
    def fold(self, event: Any, changes: Changes) -> None:
        """Say in `changes` what `event` changes."""
