"""What the read models ask of their database, whichever it is: transactions,
reads, a scratch place to rebuild a view in, and the cursor they write through.

Statements are written once with `?` placeholders; PostgreSQL gets them as `%s`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, closing, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Protocol

from projections.database.leadership import Leadership, SoleLeader

if TYPE_CHECKING:
    from projections.page_writer import Table


class Cursor(Protocol):
    """The part of a DB-API cursor the read models use (rows are tuples)."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, statement: Any, params: Sequence[Any] = ..., /) -> Any: ...

    def executemany(
        self, statement: Any, params: Sequence[Sequence[Any]], /
    ) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class ViewDatabaseUnavailable(Exception):
    """The read-model database cannot be reached."""


class SwitchBusy(Exception):
    """A rebuild's switch did not get its locks in time; nothing was switched."""


class ViewDatabase(ABC):
    """Transactions and reads against the read-model tables."""

    # Whether statements may take arrays of values (PostgreSQL's `unnest`).
    arrays: bool = False

    @abstractmethod
    def writing(self) -> AbstractContextManager[Cursor]:
        """One write transaction: committed on success, rolled back on error."""

    @abstractmethod
    def reading(self) -> AbstractContextManager[Cursor]:
        """A consistent read."""

    def sql(self, statement: str) -> str:
        return statement

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        """The rows of one read statement, without a transaction around it (a
        single statement is consistent by itself): one round trip."""
        with self.reading() as cursor:
            cursor.execute(self.sql(statement), params)
            return cursor.fetchall()

    @abstractmethod
    def shared_writing(self) -> AbstractContextManager[Cursor]:
        """One write transaction on the tables every release shares (beside the
        event store: the mail ledger, the generations' registry), where an
        unqualified name is one of theirs."""

    @abstractmethod
    def columns(self, cursor: Cursor, table: str) -> frozenset[str]:
        """The columns `table` has now, where this database makes views (none:
        there is no such table)."""

    def has_table(self, cursor: Cursor, name: str) -> bool:
        """Whether table `name` exists (where this database makes views)."""
        return bool(self.columns(cursor, name))

    def leadership(self, name: str) -> Leadership:
        """Who may run the projector of view `name`: this process or another."""
        return SoleLeader()

    def shared_leadership(self, name: str) -> Leadership:
        """Who may do work `name` whose effects are shared by every generation
        and release (the mailer, the warning scheduler): one process of them all."""
        return SoleLeader()

    def announce_progress(
        self, cursor: Cursor, views: Sequence[str] = (), position: int = 0
    ) -> None:
        """Tell other processes, on commit, that views moved (PostgreSQL only):
        that `views` reached `position`, when given (see `progress_of`)."""
        return  # one process on SQLite: nobody to tell

    def batched(self, cursor: Cursor) -> AbstractContextManager[None]:
        """Send the statements that follow without waiting for each answer (a
        PostgreSQL pipeline). A read inside must use a `reader` of its own: the
        shared cursor may be handed the answer of an earlier statement."""
        return nullcontext()

    def for_a_page(self, cursor: Cursor) -> None:
        """Set up the rest of `cursor`'s transaction for a projector's page: its
        statements each touch rows by key, so plan them through the indexes,
        never a scan of a whole table, whatever the planner's statistics say
        (none, on tables just created or emptied); and commit it without
        waiting for the disk (views are derived: see PostgresViews)."""
        return

    def reader(self, cursor: Cursor) -> AbstractContextManager[Cursor]:
        """A cursor of its own in `cursor`'s transaction, for a read among
        batched writes: it gets its own rows, whatever arrives for the others."""
        return closing(getattr(cursor, "connection").cursor())  # noqa: B009

    @abstractmethod
    def scratch(self, label: str) -> ViewDatabase:
        """An empty place beside this database to build a view's tables in."""

    @abstractmethod
    def switch_tables_from(
        self, scratch: ViewDatabase, tables: Sequence[Table[Any]], cursor: Cursor
    ) -> None:
        """Put `scratch`'s `tables` in place of this database's, in `cursor`'s
        transaction (a `switching` one): readers see the old rows or the new."""

    def switching(
        self, scratches: Sequence[ViewDatabase]
    ) -> AbstractContextManager[Cursor]:
        """The write transaction of a rebuild's switch, `scratches` reachable
        from it. Where the switch takes locks that readers wait behind, it waits
        for them a short while only: `SwitchBusy` then, nothing done (try again)."""
        [scratch] = scratches  # (more only where builds_in_parallel)
        return _attached_writing(self, scratch)

    # Whether views may be built beside this database by several processes at
    # once, each in a scratch place of its own, and switched in together.
    builds_in_parallel: bool = False

    def opener(self) -> Callable[[], ViewDatabase]:
        """How another process opens this database (picklable); only where
        `builds_in_parallel`."""
        raise NotImplementedError

    def analyze(self, tables: Sequence[str]) -> None:
        """Refresh the planner's statistics of `tables` (where the database
        keeps them and nobody else refreshes them: autovacuum may be off)."""
        return

    @abstractmethod
    def discard(self) -> None:
        """Close and remove a scratch place."""

    def attached(self, scratch: ViewDatabase) -> AbstractContextManager[None]:
        """Make `scratch` reachable from this database's write transactions."""
        return nullcontext()

    @abstractmethod
    def close(self) -> None:
        """Close every connection."""


@contextmanager
def _attached_writing(db: ViewDatabase, scratch: ViewDatabase) -> Iterator[Cursor]:
    with db.attached(scratch), db.writing() as cursor:
        yield cursor
