"""Connections to the database that holds the read models: SQLite or PostgreSQL.

Statements are written once with `?` placeholders; PostgreSQL gets them as `%s`.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractContextManager, closing, contextmanager, nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Protocol


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


_NUMBERS_OR_NONE: Final = frozenset({int, float, type(None)})


def array_literal(values: Sequence[Any]) -> str:
    """PostgreSQL's text form of an array of ints, floats, strings and None.

    Built here rather than by the driver, which adapts each element on its own and
    takes longer than the server takes to read the whole array. Floats are written
    as `repr` writes them: the shortest text that reads back as the same float.
    """
    kinds = set(map(type, values))
    if kinds == {str}:
        joined = '","'.join(values)
        if "\\" not in joined and joined.count('"') == 2 * (len(values) - 1):
            return '{"' + joined + '"}'  # nothing in the strings to escape
    elif kinds <= _NUMBERS_OR_NONE:  # repr(None) is "None"; no number's has it
        return "{" + ",".join(map(repr, values)).replace("None", "NULL") + "}"
    return "{" + ",".join(map(_element, values)) + "}"


def _element(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):  # an int to Python, not to PostgreSQL
        raise TypeError("booleans are not written as array elements")
    if isinstance(value, int | float):
        return repr(value)
    raise TypeError(f"{type(value).__name__} is not written as an array element")


class ViewDatabaseUnavailable(Exception):
    """The read-model database cannot be reached."""


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

    def leadership(self, name: str) -> Leadership:
        """Who may run the projector of view `name`: this process or another."""
        return SoleLeader()

    def announce_progress(self, cursor: Cursor) -> None:
        """Tell other processes, on commit, that a view moved (PostgreSQL only)."""
        return  # one process on SQLite: nobody to tell

    def batched(self, cursor: Cursor) -> AbstractContextManager[None]:
        """Send the statements that follow without waiting for each answer (a
        PostgreSQL pipeline). A read inside must use a `reader` of its own: the
        shared cursor may be handed the answer of an earlier statement."""
        return nullcontext()

    def by_keys(self, cursor: Cursor) -> None:
        """Plan the rest of `cursor`'s transaction for statements that each touch
        rows by key (a page's writes): through the indexes, never a scan of a
        whole table, whatever the planner's statistics say (none, on tables
        just created or emptied)."""
        return

    def reader(self, cursor: Cursor) -> AbstractContextManager[Cursor]:
        """A cursor of its own in `cursor`'s transaction, for a read among
        batched writes: it gets its own rows, whatever arrives for the others."""
        return closing(getattr(cursor, "connection").cursor())  # noqa: B009

    @abstractmethod
    def scratch(self, label: str) -> ViewDatabase:
        """An empty place beside this database to build a view's tables in."""

    @abstractmethod
    def copy_tables_from(
        self, scratch: ViewDatabase, tables: Sequence[str], cursor: Cursor
    ) -> None:
        """Replace `tables`' rows with `scratch`'s, in `cursor`'s transaction."""

    @abstractmethod
    def discard(self) -> None:
        """Close and remove a scratch place."""

    def attached(self, scratch: ViewDatabase) -> AbstractContextManager[None]:
        """Make `scratch` reachable from this database's write transactions."""
        return nullcontext()

    @abstractmethod
    def close(self) -> None:
        """Close every connection."""


class Leadership(Protocol):
    """An election among processes for the one projector of a view."""

    def try_acquire(self) -> bool: ...

    def release(self) -> None: ...


class SoleLeader:
    """One process owns the embedded store: it always leads."""

    def try_acquire(self) -> bool:
        return True

    def release(self) -> None:
        return None


class SQLiteViews(ViewDatabase):
    """Read models in the same SQLite file as the event store (WAL mode)."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0) -> None:
        self.path = str(path)
        self.busy_timeout = busy_timeout
        self._write_lock = threading.Lock()
        self._writer = self._connect()
        self._readers = threading.local()
        self._all: list[sqlite3.Connection] = [self._writer]
        self._all_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as error:
            raise ViewDatabaseUnavailable(str(error)) from error
        return connection

    @contextmanager
    def writing(self) -> Iterator[Cursor]:
        with self._write_lock, _sqlite_errors():
            cursor = self._writer.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
                yield cursor
            except BaseException:
                self._writer.rollback()
                raise
            else:
                self._writer.commit()
            finally:
                cursor.close()

    @contextmanager
    def reading(self) -> Iterator[Cursor]:
        connection: sqlite3.Connection | None = getattr(
            self._readers, "connection", None
        )
        if connection is None:
            connection = self._connect()
            self._readers.connection = connection
            with self._all_lock:
                self._all.append(connection)
        cursor = connection.cursor()
        try:
            with _sqlite_errors():
                cursor.execute("BEGIN")
                yield cursor
        finally:
            connection.rollback()
            cursor.close()

    def scratch(self, label: str) -> SQLiteViews:
        path = Path(f"{self.path}.{label}")
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            leftover.unlink(missing_ok=True)
        return SQLiteViews(path, busy_timeout=self.busy_timeout)

    def copy_tables_from(
        self, scratch: ViewDatabase, tables: Sequence[str], cursor: Cursor
    ) -> None:
        assert isinstance(scratch, SQLiteViews)
        for table in tables:  # names are the views' own, never input
            cursor.execute(f"DELETE FROM main.{table}")
            cursor.execute(f"INSERT INTO main.{table} SELECT * FROM scratch.{table}")

    @contextmanager
    def attached(self, scratch: ViewDatabase) -> Iterator[None]:
        """`scratch` readable as schema `scratch` from this database's writer."""
        assert isinstance(scratch, SQLiteViews)
        with self._write_lock:
            self._writer.execute("ATTACH DATABASE ? AS scratch", (scratch.path,))
        try:
            yield
        finally:
            with self._write_lock:
                self._writer.execute("DETACH DATABASE scratch")

    def discard(self) -> None:
        self.close()
        for path in (self.path, f"{self.path}-wal", f"{self.path}-shm"):
            Path(path).unlink(missing_ok=True)

    def close(self) -> None:
        with self._all_lock:
            for connection in self._all:
                connection.close()
            self._all.clear()


class PostgresViews(ViewDatabase):
    """Read models in PostgreSQL, through a psycopg 3 connection pool."""

    arrays = True

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str | None = None,
        max_size: int = 8,
        connect_timeout: float = 5.0,
        statement_timeout_ms: int = 10_000,
    ) -> None:
        import psycopg_pool

        self.conninfo = conninfo
        self.schema = schema
        self.connect_timeout = connect_timeout
        options = f"-c statement_timeout={statement_timeout_ms} -c lock_timeout=5000"
        if schema:
            options += f" -c search_path={schema}"
        self.connect_kwargs: dict[str, Any] = {
            "connect_timeout": max(1, int(connect_timeout)),
            "options": options,
        }
        # Autocommit: a lone read is one round trip; writing() opens a transaction.
        pool_kwargs = {**self.connect_kwargs, "autocommit": True}
        self._pool = psycopg_pool.ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_size,
            timeout=connect_timeout,
            kwargs=pool_kwargs,
            open=True,
        )

    @contextmanager
    def writing(self) -> Iterator[Cursor]:
        import psycopg
        import psycopg_pool

        try:
            with (
                self._pool.connection() as connection,
                connection.transaction(),
                connection.cursor() as cursor,
            ):
                yield cursor
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout) as error:
            self._replace_dead_connections()
            raise ViewDatabaseUnavailable(str(error)) from error

    @contextmanager
    def reading(self) -> Iterator[Cursor]:
        with self.writing() as cursor:
            yield cursor

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        for attempt in read_attempts():
            with attempt, self._pool.connection() as connection:
                return connection.execute(self.sql(statement), params).fetchall()
            self._replace_dead_connections()
            attempt.unless_last()
        raise AssertionError("unreachable")

    def _replace_dead_connections(self) -> None:
        # Checking on every use would cost a round trip per read; checking after
        # a failure costs nothing while all is well.
        with contextlib.suppress(Exception):
            self._pool.check()

    def sql(self, statement: str) -> str:
        return _to_format_params(statement)

    @property
    def progress_channel(self) -> str:
        return f"{self.schema or 'public'}_pm_order_projected"

    def leadership(self, name: str) -> Leadership:
        return AdvisoryLock(self, f"pm-order:{self.schema or 'public'}:{name}")

    def batched(self, cursor: Cursor) -> AbstractContextManager[None]:
        return cursor.connection.pipeline()  # type: ignore[attr-defined,no-any-return]

    def by_keys(self, cursor: Cursor) -> None:
        # Without statistics, a join of a page's thousand keys with a table of
        # millions is planned as a hash join over the whole table: every page
        # would scan it. (SET LOCAL: until the transaction ends.)
        cursor.execute(_BY_KEYS)

    def announce_progress(self, cursor: Cursor) -> None:
        from psycopg import sql

        cursor.execute(
            sql.SQL("NOTIFY {}").format(sql.Identifier(self.progress_channel))
        )

    async def notifications(self, channels: Sequence[str]) -> AsyncIterator[str]:
        """The channel of each NOTIFY received; ends when the connection breaks."""
        import psycopg
        from psycopg import sql

        connection = await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, **self.connect_kwargs
        )
        try:
            for channel in channels:
                await connection.execute(
                    sql.SQL("LISTEN {}").format(sql.Identifier(channel))
                )
            async for notify in connection.notifies():
                yield notify.channel
        finally:
            await connection.close()

    def scratch(self, label: str) -> PostgresViews:
        from psycopg import sql

        schema = f"{self.schema or 'public'}_{label}"[:63]
        with self.writing() as cursor:
            cursor.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema)
                )
            )
            cursor.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        return PostgresViews(
            self.conninfo,
            schema=schema,
            max_size=2,
            connect_timeout=self.connect_timeout,
        )

    def copy_tables_from(
        self, scratch: ViewDatabase, tables: Sequence[str], cursor: Cursor
    ) -> None:
        from psycopg import sql

        assert isinstance(scratch, PostgresViews)
        assert scratch.schema
        for table in tables:
            cursor.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table)))
            cursor.execute(
                sql.SQL("INSERT INTO {} SELECT * FROM {}.{}").format(
                    sql.Identifier(table),
                    sql.Identifier(scratch.schema),
                    sql.Identifier(table),
                )
            )

    def discard(self) -> None:
        import psycopg
        from psycopg import sql

        schema = self.schema
        assert schema, "only a scratch schema is discarded"
        self.close()

        with psycopg.connect(
            self.conninfo, autocommit=True, **self.connect_kwargs
        ) as c:
            c.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema)
                )
            )

    def close(self) -> None:
        self._pool.close()


class ReadAttempt:
    """One attempt at a read through a connection pool.

    A lost connection is likely one from before a database restart, and the
    pool's other idle ones are as dead: the caller replaces them and reads once
    more (the attempt ends quietly). No connection free in time, or a second
    lost one: ViewDatabaseUnavailable.
    """

    def __init__(self, last: bool) -> None:
        self.last = last
        self.error: Exception | None = None

    def __enter__(self) -> ReadAttempt:
        return self

    def __exit__(self, kind: Any, error: BaseException | None, trace: Any) -> bool:
        import psycopg
        import psycopg_pool

        if isinstance(error, psycopg_pool.PoolTimeout):
            raise ViewDatabaseUnavailable(str(error)) from error
        if isinstance(error, psycopg.OperationalError):
            self.error = error
            return True
        return False

    def unless_last(self) -> None:
        """After the dead connections are replaced: give up if this was the last."""
        if self.last and self.error is not None:
            raise ViewDatabaseUnavailable(str(self.error)) from self.error


def read_attempts() -> Iterator[ReadAttempt]:
    """The attempts at a read: the first, and one more after a lost connection."""
    yield ReadAttempt(last=False)
    yield ReadAttempt(last=True)


class AdvisoryLock:
    """Leadership held as a session advisory lock on a connection of its own.

    The lock goes when the holder's session does (its process died, or the
    database restarted), and a standby's next try takes it.
    """

    def __init__(self, views: PostgresViews, name: str) -> None:
        self.views = views
        self.key = int.from_bytes(
            hashlib.sha256(name.encode()).digest()[:8], "big", signed=True
        )
        self._connection: Any = None

    def try_acquire(self) -> bool:
        import psycopg

        try:
            if self._connection is None or self._connection.closed:
                self._connection = psycopg.connect(
                    self.views.conninfo, autocommit=True, **self.views.connect_kwargs
                )
            row = self._connection.execute(
                "SELECT pg_try_advisory_lock(%s)", (self.key,)
            ).fetchone()
        except psycopg.Error:
            self.release()
            return False
        if row is None:
            return False
        (acquired,) = row
        return bool(acquired)

    def release(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None


@contextmanager
def _sqlite_errors() -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as error:
        # Locked past the busy timeout, disk full, file gone: not the caller's fault.
        raise ViewDatabaseUnavailable(str(error)) from error


_BY_KEYS = (
    "SELECT set_config('enable_seqscan', 'off', true),"
    " set_config('enable_hashjoin', 'off', true),"
    " set_config('enable_mergejoin', 'off', true)"
)


@lru_cache(maxsize=512)
def _to_format_params(statement: str) -> str:
    return statement.replace("?", "%s")
