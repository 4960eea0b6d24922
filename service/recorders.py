"""The event store's recorders: the library's, reading many aggregates' events in
one statement, taking order numbers from a shared sequence (PostgreSQL), and
writing a batch as one message that is durable when it returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    InterfaceError,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import retry
from psycopg.pq import TransactionStatus
from psycopg.sql import SQL, Identifier

from projections.database.arrays import array_literal


def _with_fewer_retries(method: Any) -> Any:
    """The library's `method` retrying twice instead of ten times.

    The library offers no setting for it: its methods are wrapped by its own
    `retry` decorator (functools.wraps, hence `__wrapped__`), which this takes
    off and puts back with fewer attempts. eventsourcing is pinned below 9.6 in
    setup.cfg; a release that renames these methods fails the recorder tests."""
    return retry((InterfaceError, OperationalError), max_attempts=2, wait=0.1)(
        method.__wrapped__
    )


class FailFastPostgresRecorder(PostgresApplicationRecorder):
    """The library's recorder, retrying a lost connection once instead of ten times,
    reading the events of many aggregates in one statement, and counting order
    numbers in a sequence that every process shares.

    Ten attempts, each waiting for a pooled connection, turn a stopped database
    into a request that hangs for most of a minute; the contract wants a quick 503.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        schema = Identifier(self.datastore.schema)
        table = Identifier(self.events_table_name)
        # One index lookup per aggregate, whatever the planner knows of the table:
        # OFFSET 0 keeps each lookup apart (a lookup by one id is an index scan
        # even without statistics), where `= ANY(ids)` without statistics is
        # estimated as a large part of the table, and read by a sequential scan.
        self.select_events_of_statement = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state"
            " FROM unnest(%s::uuid[]) AS wanted(id) CROSS JOIN LATERAL ("
            " SELECT originator_id, originator_version, topic, state"
            " FROM {schema}.{table} WHERE originator_id = wanted.id OFFSET 0) e"
            " ORDER BY e.originator_id, e.originator_version"
        ).format(schema=schema, table=table)
        sequence = Identifier(
            self.events_table_name.removesuffix("_events") + "_order_numbers"
        )
        self.order_numbers_name = f"{self.datastore.schema}.{sequence.as_string()}"
        self.sql_create_statements.append(
            SQL(
                "CREATE SEQUENCE IF NOT EXISTS {schema}.{sequence} MINVALUE 0 START 1"
            ).format(schema=schema, sequence=sequence)
        )
        # Every 32nd number makes PostgreSQL log the sequence ahead, and that
        # statement's commit then waits for the disk. It need not: an order with
        # a number is stored by a later commit that does wait, and the log is
        # written in order, so a crash never loses the advance of a number that
        # an order holds (an unused number may be skipped: a gap).
        self._take_order_numbers = SQL(
            "SELECT nextval({name}::regclass) FROM"
            " (SELECT set_config('synchronous_commit', 'off', true)) AS no_wait,"
            " generate_series(1, %s)"
        ).format(name=self.order_numbers_name)
        self._advance_order_numbers = SQL(
            "SELECT setval({name}::regclass,"
            " GREATEST(%s, (SELECT last_value FROM {schema}.{sequence})))"
        ).format(name=self.order_numbers_name, schema=schema, sequence=sequence)
        self._insert_text: str | None = None
        self._insert_in_one_message = SQL("; ").join(
            [
                SQL("BEGIN"),
                SQL("SET LOCAL synchronous_commit = off"),
                *self.lock_table_statements,
                SQL("NOTIFY {}").format(Identifier(self.channel_name)),
                SQL(
                    "INSERT INTO {schema}.{table}"
                    " (originator_id, originator_version, topic, state)"
                    " SELECT * FROM unnest(%s::{id_type}[], %s::bigint[],"
                    " %s::text[], %s::bytea[]) RETURNING notification_id"
                ).format(
                    schema=schema,
                    table=table,
                    id_type=Identifier(self.datastore.originator_id_type),
                ),
                SQL("COMMIT"),
                # A transaction that writes to the log (a message for logical
                # decoding, which nothing here decodes), committed as configured:
                # it returns once the log is on disk (and on a synchronous
                # standby) up to it, the insert's commit included. (A transaction
                # that only takes an xid writes nothing, and does not wait.)
                SQL("SELECT pg_logical_emit_message(true, 'pm-order', '')"),
            ]
        )
        self._order_numbers_started = SQL(
            "SELECT is_called FROM {schema}.{sequence}"
        ).format(schema=schema, sequence=sequence)

    @retry((InterfaceError, OperationalError), max_attempts=2, wait=0.1)
    def take_order_numbers(self, count: int) -> list[int]:
        """`count` new order numbers, increasing: never given to anyone else."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._take_order_numbers, (count,), prepare=True)
            return sorted(int(row["nextval"]) for row in curs.fetchall())

    @retry((InterfaceError, OperationalError), max_attempts=2, wait=0.1)
    def select_events_of_taking_numbers(
        self, originator_ids: Sequence[UUID], count: int
    ) -> tuple[list[StoredEvent], list[int]]:
        """`select_events_of(originator_ids)` and `take_order_numbers(count)`, sent
        together: one round trip for a batch of requests' reads."""
        with (
            self.datastore.get_connection() as conn,
            conn.cursor() as events,
            conn.cursor() as numbers,
        ):
            with conn.pipeline():
                events.execute(
                    self.select_events_of_statement,
                    (list(originator_ids),),
                    prepare=True,
                )
                numbers.execute(self._take_order_numbers, (count,), prepare=True)
            return (
                _stored_events(events.fetchall()),
                sorted(int(row["nextval"]) for row in numbers.fetchall()),
            )

    @retry((InterfaceError, OperationalError), max_attempts=2, wait=0.1)
    def advance_order_numbers(self, last: int) -> None:
        """The next number given is after `last` (numbers up to it are taken)."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._advance_order_numbers, (last,))

    def order_numbers_started(self) -> bool:
        """Whether the sequence has given (or been told of) any number."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._order_numbers_started)
            row = curs.fetchone()
            return bool(row and row["is_called"])

    @retry((InterfaceError, OperationalError), max_attempts=2, wait=0.1)
    def select_events_of(self, originator_ids: Sequence[UUID]) -> list[StoredEvent]:
        """Every event of each aggregate in `originator_ids` (one statement, so one
        snapshot of the store), by aggregate and version."""
        if not originator_ids:
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                self.select_events_of_statement, (list(originator_ids),), prepare=True
            )
            return _stored_events(curs.fetchall())

    @retry((InterfaceError, OperationalError), max_attempts=2, wait=0.1)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The library's insert (the table lock, NOTIFY, the rows, in one
        transaction), sent as one message, and durable when it returns.

        The table lock orders commits as notification ids (a reader of the log
        never passes a gap that fills later), so it is held to the end of the
        commit, and writers take turns. Two things keep each turn short:
        - one message: the lock is never held for a round trip, nor while this
          process's Python prepares the next statement (under load, waiting for
          the GIL);
        - the commit does not wait for the disk under the lock. The message's
          last statement is a transaction of its own that does (it writes to
          the log): the log is flushed in order, so once it returns, the insert
          is on disk (and, with a synchronous standby, there too). Those waits,
          outside the lock, share one disk write among every writer waiting.
        The rows are visible to readers a disk write before they are durable:
        should the database crash in between, they are lost with everything
        written after them (the views included), and nobody was told they were
        stored.
        """
        if not stored_events:
            return []
        with (
            self.datastore.get_connection() as conn,
            psycopg.ClientCursor(conn) as inserting,
        ):
            try:
                # Client-side binding: statements with parameters in one message.
                # The arrays go as their text, built here: the driver quotes each
                # element on its own, in Python (a twentieth of a create's CPU).
                if self._insert_text is None:  # composed once, on a connection
                    self._insert_text = self._insert_in_one_message.as_string(conn)
                inserting.execute(
                    self._insert_text,
                    (
                        array_literal([str(e.originator_id) for e in stored_events]),
                        array_literal([e.originator_version for e in stored_events]),
                        array_literal([e.topic for e in stored_events]),
                        _bytea_array_literal([e.state for e in stored_events]),
                    ),
                )
            except psycopg.Error:
                # An error skips the rest of the message and leaves the
                # transaction block open, failed.
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.execute("ROLLBACK")
                raise
            while not (inserting.statusmessage or "").startswith("INSERT"):
                inserting.nextset()
            return [row["notification_id"] for row in inserting.fetchall()]

    select_events = _with_fewer_retries(PostgresApplicationRecorder.select_events)
    select_notifications = _with_fewer_retries(
        PostgresApplicationRecorder.select_notifications
    )
    max_notification_id = _with_fewer_retries(
        PostgresApplicationRecorder.max_notification_id
    )


def _bytea_array_literal(values: Sequence[bytes]) -> str:
    """PostgreSQL's text form of an array of bytea, each in hex."""
    return "{" + ",".join(['"\\\\x' + value.hex() + '"' for value in values]) + "}"


def _stored_events(rows: Sequence[Any]) -> list[StoredEvent]:
    return [
        StoredEvent(
            originator_id=row["originator_id"],
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=bytes(row["state"]),
        )
        for row in rows
    ]


class BatchReadingSQLiteRecorder(SQLiteApplicationRecorder):
    """The library's SQLite recorder, reading the events of many aggregates in one
    statement (as FailFastPostgresRecorder does)."""

    def select_events_of(self, originator_ids: Sequence[UUID]) -> list[StoredEvent]:
        """Every event of each aggregate in `originator_ids` (one statement, so one
        snapshot of the store), by aggregate and version."""
        found: list[StoredEvent] = []
        ids = list(originator_ids)
        # One transaction for every chunk: one snapshot, however many ids.
        with self.datastore.transaction(commit=False) as cursor:
            for start in range(0, len(ids), _SQLITE_IDS_PER_STATEMENT):
                chunk = ids[start : start + _SQLITE_IDS_PER_STATEMENT]
                cursor.execute(
                    f"SELECT originator_id, originator_version, topic, state"
                    f" FROM {self.events_table_name}"
                    f" WHERE originator_id IN ({','.join('?' * len(chunk))})"
                    " ORDER BY originator_id, originator_version",
                    [i.hex for i in chunk],
                )
                found.extend(
                    StoredEvent(
                        originator_id=self.convert_originator_id(row["originator_id"]),
                        originator_version=row["originator_version"],
                        topic=row["topic"],
                        state=row["state"],
                    )
                    for row in cursor.fetchall()
                )
        return found


# SQLite's default bound on a statement's parameters is 999 (older builds).
_SQLITE_IDS_PER_STATEMENT: Final = 500
