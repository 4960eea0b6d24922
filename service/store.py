"""Opening the store: the event store and the read models, from one database URL."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    InterfaceError,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import get_topic, retry
from psycopg.pq import TransactionStatus
from psycopg.sql import SQL, Identifier

from domain.order import order_aggregate_id
from domain.order_numbers import last_taken
from domain.service import OrderApplication
from mail.ledger import DeliveryLedger
from projections.database import (
    PostgresViews,
    SQLiteViews,
    ViewDatabase,
    ViewDatabaseUnavailable,
)
from projections.mail_outbox import MailOutbox
from projections.order_lists import OrderLists
from projections.projector import ProjectionConflict, Projector, has_tracking
from projections.reports import Reports
from projections.server_ownership import ServerOwnership
from projections.view import View
from service.config import ConfigError
from service.following import IDLE_POLL_SECONDS, Following
from service.observed_application import CountedOrderApplication
from service.postgres_url import LibpqPostgresFactory, libpq_parameters

log = logging.getLogger(__name__)

# A dead database must give a quick 503, not a hung request: waiting for a pooled
# connection, and for a lock, is bounded.
CONNECT_TIMEOUT_SECONDS: Final = 2
LOCK_TIMEOUT_SECONDS: Final = 5
# The version of the tables (event store, sequence, views, ledger) this code
# makes: a process that finds the database marked with it does no DDL at start.
# Raise it whenever a table, index or sequence is added or changed, or a
# backfill is added (2: order_lists_counts keeps each project's unfinished sent
# orders; 3: order_lists_items, one row per list an order is in, replace
# order_lists_entries; 4: read-model columns renamed to one word per concept:
# `tenant` and `project_id` to `project`, reports_orders' `project` to
# `source_project`, reports_days' `accepted` to `finished`).
SCHEMA_VERSION: Final = 4
# Creating the tables can take a while on a busy database; waiting for another
# process that does it is bounded all the same.
TABLES_LOCK_TIMEOUT_SECONDS: Final = 30
# Writing this many rows at once (an import) refreshes the planner's statistics.
BULK_ROWS: Final = 1000
# Creating tables that give way to running work: how many tries in all.
DDL_ATTEMPTS: Final = 5


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
                if self._insert_text is None:  # composed once, on a connection
                    self._insert_text = self._insert_in_one_message.as_string(conn)
                inserting.execute(
                    self._insert_text,
                    (
                        [e.originator_id for e in stored_events],
                        [e.originator_version for e in stored_events],
                        [e.topic for e in stored_events],
                        [e.state for e in stored_events],
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


@dataclass
class Store:
    """The event store (through the application) and the read-model database."""

    app: OrderApplication
    views: ViewDatabase
    order_lists: OrderLists = field(default_factory=OrderLists)
    server_ownership: ServerOwnership = field(default_factory=ServerOwnership)
    mail_outbox: MailOutbox = field(default_factory=MailOutbox)
    reports: Reports = field(default_factory=Reports)

    @property
    def all_views(self) -> list[View]:
        return [self.order_lists, self.server_ownership, self.mail_outbox, self.reports]

    def projector(self) -> Projector:
        """One projector for every view: a page is read and applied once for all."""
        return Projector(self.app.recorder, self.app.mapper, self.views, self.all_views)

    def projectors(self) -> list[Projector]:
        return [
            Projector(self.app.recorder, self.app.mapper, self.views, view)
            for view in self.all_views
        ]

    def following(
        self,
        executor: Executor,
        *,
        run_projectors: bool,
        idle_poll: float = IDLE_POLL_SECONDS,
    ) -> Following:
        """The background projection of every view (or the watch of it)."""
        return Following(
            self.views,
            [self.projector()],
            executor,
            run_projectors=run_projectors,
            idle_poll=idle_poll,
            events_channel=getattr(self.app.recorder, "channel_name", None),
        )

    def create_tables(self) -> None:
        self.projector().create_tables()
        DeliveryLedger.create_tables(self.views)
        recorder = self.app.recorder
        if (
            isinstance(recorder, FailFastPostgresRecorder)
            and not recorder.order_numbers_started()
        ):
            # A store from before the sequence numbered its orders without
            # gaps: the sequence continues after the last of them.
            last = last_taken(
                lambda n: bool(recorder.select_events(order_aggregate_id(n), limit=1))
            )
            if last:
                recorder.advance_order_numbers(last)

    def after_bulk_write(self, rows: int, *, last_order: int = 0) -> None:
        """`rows` were just written in bulk, orders up to `last_order` among them:
        the order numbers continue after it, and the planner's statistics are
        refreshed when the bulk is large (as autovacuum would, later)."""
        recorder = self.app.recorder
        if last_order and isinstance(recorder, FailFastPostgresRecorder):
            recorder.advance_order_numbers(last_order)
        if rows >= BULK_ROWS:
            self.analyze()

    def analyze(self) -> None:
        """Refresh the planner's statistics of every table (PostgreSQL), as
        autovacuum would some time after a bulk of changes: called after the bulk
        writes this product makes itself (imports), so that the plans after them
        are not made for empty tables."""
        recorder = self.app.recorder
        if not isinstance(recorder, FailFastPostgresRecorder):
            return  # SQLite's planner does without
        with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                SQL("ANALYZE {}.{}").format(
                    Identifier(recorder.datastore.schema),
                    Identifier(recorder.events_table_name),
                )
            )
        with self.views.writing() as cursor:
            for view in self.all_views:
                for table in view.tables:
                    cursor.execute(f"ANALYZE {table}")  # names are ours, not input

    def catch_up(self) -> None:
        """Bring every view up to date here, whether or not a server is running."""
        projector = self.projector()
        for _ in range(10):
            try:
                projector.catch_up()
                break
            except ProjectionConflict:
                continue  # another process moved it first: read its position again

    def check_tables(self) -> None:
        """Fail with a clear message when the tables were never created."""
        try:
            self.app.recorder.max_notification_id()
            missing = [
                view.name
                for view in self.all_views
                if not has_tracking(self.views, view.name)
            ]
        except PersistenceError as error:
            if not _is_missing_table(error):
                raise
            missing = ["the event store"]
        except ViewDatabaseUnavailable:
            raise
        except Exception as error:
            if not _is_missing_table(error):
                raise
            missing = ["projection_tracking"]
        if missing:
            self.close()
            raise ConfigError(
                f"the database lacks pm-order tables ({', '.join(missing)}): "
                "run `pm-order db upgrade` (or set PM_ORDER_CREATE_TABLES=yes)"
            )

    def close(self) -> None:
        self.views.close()
        self.app.close()


def open_store(url: str, *, create_tables: bool = True, upgrade: bool = False) -> Store:
    """Open the store at `url` (sqlite:///PATH or postgresql://...).

    With `create_tables`, the tables are made where the schema mark says they are
    not this version's; with `upgrade` (`pm-order db upgrade`), whatever it says.
    """
    if url.startswith("sqlite:///"):
        path = sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "APPLICATION_RECORDER_TOPIC": get_topic(BatchReadingSQLiteRecorder),
            "SQLITE_DBNAME": str(path),
            "SQLITE_LOCK_TIMEOUT": str(LOCK_TIMEOUT_SECONDS),
            "CREATE_TABLE": "y" if create_tables else "n",
        }
        app = CountedOrderApplication(env=env)
        views: ViewDatabase = SQLiteViews(path, busy_timeout=LOCK_TIMEOUT_SECONDS)
        return _with_tables(Store(app=app, views=views), create_tables)
    settings = postgres_settings(url)
    if upgrade or (create_tables and not tables_current(settings)):
        # Processes starting together on a fresh (or older) database would race
        # to create the same tables: they take turns, and the ones after the
        # first find the tables made.
        with tables_lock(settings):
            for attempt in range(1, DDL_ATTEMPTS + 1):
                if tables_current(settings) and not upgrade:
                    break
                try:
                    return _opened_postgres(settings, create_tables=True)
                except Exception as error:
                    # Upgrading a running system: DDL waits on (or deadlocks
                    # with) its writers and projectors for a bounded time, then
                    # gives way and tries again, rather than hold them up.
                    if attempt == DDL_ATTEMPTS or not _is_lock_contention(error):
                        raise
                    log.warning("creating tables gave way to running work: again")
                    time.sleep(0.5 * attempt)
    # The tables are there (or must be): no DDL, so no lock that a running
    # projector or writer could wait on, or deadlock with.
    return _opened_postgres(settings, create_tables=False)


def _opened_postgres(settings: PostgresSettings, *, create_tables: bool) -> Store:
    if create_tables and settings.schema:
        create_schema(settings)
    app = CountedOrderApplication(env=settings.env(create_tables))
    views = PostgresViews(
        settings.conninfo,
        schema=settings.schema,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
    )
    store = _with_tables(Store(app=app, views=views), create_tables)
    if create_tables:
        mark_tables_current(settings)
    return store


def _with_tables(store: Store, create_tables: bool) -> Store:
    if create_tables:
        store.create_tables()
    else:
        store.check_tables()
    return store


def tables_current(settings: PostgresSettings) -> bool:
    """Whether the database's pm-order tables are this version's (one read of
    the schema mark, no lock beyond it)."""

    with psycopg.connect(
        settings.conninfo, connect_timeout=CONNECT_TIMEOUT_SECONDS, autocommit=True
    ) as connection:
        try:
            row = connection.execute(
                SQL("SELECT version FROM {}.pm_order_schema").format(
                    Identifier(settings.schema or "public")
                )
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return False
    return row is not None and row[0] == SCHEMA_VERSION


def mark_tables_current(settings: PostgresSettings) -> None:
    """Record that the tables are this version's: later starts skip their DDL."""

    schema = Identifier(settings.schema or "public")
    with (
        psycopg.connect(
            settings.conninfo, connect_timeout=CONNECT_TIMEOUT_SECONDS, autocommit=True
        ) as connection,
        connection.transaction(),
    ):
        connection.execute(
            SQL(
                "CREATE TABLE IF NOT EXISTS {}.pm_order_schema"
                " (version INTEGER NOT NULL)"
            ).format(schema)
        )
        connection.execute(SQL("DELETE FROM {}.pm_order_schema").format(schema))
        connection.execute(
            SQL("INSERT INTO {}.pm_order_schema (version) VALUES (%s)").format(schema),
            (SCHEMA_VERSION,),
        )


@contextmanager
def tables_lock(settings: PostgresSettings) -> Iterator[None]:
    """Hold the database-wide lock under which pm-order creates its tables."""

    with psycopg.connect(
        settings.conninfo, connect_timeout=CONNECT_TIMEOUT_SECONDS, autocommit=True
    ) as connection:
        connection.execute(f"SET lock_timeout = '{TABLES_LOCK_TIMEOUT_SECONDS}s'")
        connection.execute(
            "SELECT pg_advisory_lock(hashtext(%s))",
            (f"pm-order tables {settings.schema or 'public'}",),
        )
        yield  # the lock ends with the session


def _is_missing_table(error: BaseException) -> bool:
    """Whether `error` (or what caused it) says that a table does not exist."""
    if _cause(error, psycopg.errors.UndefinedTable) is not None:
        return True
    # SQLite gives a missing table no error code of its own (SQLITE_ERROR, as for
    # any error in a statement): only its message says what is missing.
    sqlite_error = _cause(error, sqlite3.OperationalError)
    return sqlite_error is not None and "no such table" in str(sqlite_error)


def _is_lock_contention(error: BaseException) -> bool:
    """Whether `error` (or what caused it) is a lock wait that timed out or a
    deadlock."""
    kinds = (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected)
    return _cause(error, kinds) is not None


def _cause(
    error: BaseException, kinds: type[BaseException] | tuple[type[BaseException], ...]
) -> BaseException | None:
    """`error`, or the error it was raised from or while handling (the library
    raises its own classes from the driver's), that is one of `kinds`."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, kinds):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def sqlite_path(url: str) -> Path:
    """sqlite:///rel is relative to the working directory; sqlite:////abs is not."""
    return Path(url[len("sqlite:///") :])


@dataclass(frozen=True)
class PostgresSettings:
    """Where the store is: libpq's connection parameters and pm-order's schema."""

    host: str  # one host, or several separated by commas (libpq's multi-host form)
    port: str  # one port for every host, or one each
    user: str
    password: str
    dbname: str
    schema: str | None
    # libpq's other parameters: target_session_attrs, keepalives, sslmode...
    options: tuple[tuple[str, str], ...] = ()

    @property
    def conninfo(self) -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password or None,
            dbname=self.dbname,
            **dict(self.options),
        )

    def env(self, create_tables: bool) -> dict[str, str]:
        env = {
            "PERSISTENCE_MODULE": get_topic(LibpqPostgresFactory),
            LibpqPostgresFactory.CONNINFO: self.conninfo,
            "APPLICATION_RECORDER_TOPIC": get_topic(FailFastPostgresRecorder),
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": self.port,
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT_SECONDS),
            "POSTGRES_LOCK_TIMEOUT": str(LOCK_TIMEOUT_SECONDS),
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "10",
            # No pre-ping: a connection found dead fails its statement, and the
            # recorder retries it once on a fresh one (FailFastPostgresRecorder).
            "POSTGRES_MAX_WAITING": "64",
            "POSTGRES_POOL_SIZE": "2",
            "POSTGRES_MAX_OVERFLOW": "8",
            "CREATE_TABLE": "y" if create_tables else "n",
        }
        if self.schema:
            env["POSTGRES_SCHEMA"] = self.schema
        return env


def postgres_settings(url: str) -> PostgresSettings:
    """The settings of a postgresql:// URL (libpq's, one host or several);
    ConfigError for one that libpq would refuse."""
    params, own = libpq_parameters(url)
    named = ("host", "port", "user", "password", "dbname")
    return PostgresSettings(
        host=params["host"],
        port=params.get("port", "5432"),
        user=params["user"],
        password=params.get("password", ""),
        dbname=params["dbname"],
        schema=own.get("schema"),
        options=tuple((k, v) for k, v in params.items() if k not in named),
    )


def create_schema(settings: PostgresSettings) -> None:
    from psycopg import sql

    with psycopg.connect(
        settings.conninfo, connect_timeout=CONNECT_TIMEOUT_SECONDS, autocommit=True
    ) as connection:
        connection.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                sql.Identifier(settings.schema or "public")
            )
        )
