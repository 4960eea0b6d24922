"""Opening the store: the event store and the read models, from one database URL."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import psycopg
from eventsourcing.persistence import (
    PersistenceError,
)
from eventsourcing.utils import get_topic
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
from service.config import ConfigError, db_pool_size
from service.following import IDLE_POLL_SECONDS, Following
from service.observed_application import CountedOrderApplication
from service.postgres_url import LibpqPostgresFactory, libpq_parameters
from service.recorders import BatchReadingSQLiteRecorder, FailFastPostgresRecorder

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
        max_size=db_pool_size(),
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
            # PM_ORDER_DB_POOL_SIZE connections at most (no overflow beyond).
            "POSTGRES_POOL_SIZE": str(db_pool_size()),
            "POSTGRES_MAX_OVERFLOW": "0",
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
