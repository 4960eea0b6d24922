"""The read models in a SQLite file of their generation's, beside the event
store's file (WAL mode), which every connection attaches as `shared`: the
tables every release shares (the mail ledger, the generations' registry) are
found there."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from projections.database.interface import (
    Cursor,
    ViewDatabase,
    ViewDatabaseUnavailable,
)

if TYPE_CHECKING:
    from projections.page_writer import Table


class SQLiteViews(ViewDatabase):
    """Read models in a SQLite file (WAL mode); the shared tables in the event
    store's (`shared_path`: attached as `shared`; None: this file has them)."""

    def __init__(
        self,
        path: str | Path,
        *,
        shared_path: str | Path | None = None,
        busy_timeout: float = 5.0,
    ) -> None:
        self.path = str(path)
        self.shared_path = None if shared_path is None else str(shared_path)
        self.busy_timeout = busy_timeout
        self._write_lock = threading.Lock()
        self._shared_lock = threading.Lock()
        self._shared_writer: sqlite3.Connection | None = None
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
            if self.shared_path is not None:
                connection.execute("ATTACH DATABASE ? AS shared", (self.shared_path,))
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

    @contextmanager
    def shared_writing(self) -> Iterator[Cursor]:
        if self.shared_path is None:
            with self.writing() as cursor:
                yield cursor
            return
        with self._shared_lock, _sqlite_errors():
            if self._shared_writer is None:
                self._shared_writer = sqlite3.connect(
                    self.shared_path,
                    timeout=self.busy_timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
                with self._all_lock:
                    self._all.append(self._shared_writer)
            writer = self._shared_writer
            cursor = writer.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
                yield cursor
            except BaseException:
                writer.rollback()
                raise
            else:
                writer.commit()
            finally:
                cursor.close()

    def columns(self, cursor: Cursor, table: str) -> frozenset[str]:
        cursor.execute("SELECT name FROM pragma_table_info(?)", (table,))
        return frozenset(name for (name,) in cursor.fetchall())

    def scratch(self, label: str) -> SQLiteViews:
        path = Path(f"{self.path}.{label}")
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            leftover.unlink(missing_ok=True)
        return SQLiteViews(path, busy_timeout=self.busy_timeout)

    def switch_tables_from(
        self, scratch: ViewDatabase, tables: Sequence[Table[Any]], cursor: Cursor
    ) -> None:
        assert isinstance(scratch, SQLiteViews)
        # Another file: the rows are copied in (the writer's lock is the file's).
        for table in tables:  # names are the views' own, never input
            # Columns by name: the statement means the same whatever their order.
            columns = ", ".join(table.names)
            cursor.execute(f"DELETE FROM main.{table.name}")
            cursor.execute(
                f"INSERT INTO main.{table.name} ({columns})"
                f" SELECT {columns} FROM scratch.{table.name}"
            )

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
