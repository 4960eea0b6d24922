"""The read models in the SQLite file of the event store (WAL mode)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from projections.database.interface import (
    Cursor,
    ViewDatabase,
    ViewDatabaseUnavailable,
)


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

    def columns(self, cursor: Cursor, table: str) -> frozenset[str]:
        cursor.execute("SELECT name FROM pragma_table_info(?)", (table,))
        return frozenset(name for (name,) in cursor.fetchall())

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


@contextmanager
def _sqlite_errors() -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as error:
        # Locked past the busy timeout, disk full, file gone: not the caller's fault.
        raise ViewDatabaseUnavailable(str(error)) from error
