"""Opening the store: the event store and the read models, from one database URL."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import psycopg
from eventsourcing.persistence import (
    ApplicationRecorder,
    Mapper,
    PersistenceError,
)
from eventsourcing.utils import get_topic
from psycopg.sql import SQL, Identifier

from domain.order import order_aggregate_id
from domain.order_numbers import last_taken
from domain.service import OrderApplication
from mail.ledger import DeliveryLedger
from notifications.position import NotificationPositions
from projections.database import (
    PostgresViews,
    SQLiteViews,
    ViewDatabase,
)
from projections.database.leadership import AdvisoryLock
from projections.generations import (
    REGISTRY_DDL,
    forget,
    generation,
    generation_of,
    generation_schema,
    generations,
    mark_caught_up,
    register,
)
from projections.mail_outbox import MailOutbox
from projections.order_lists import OrderLists
from projections.other_generations import LEGACY_PROJECTOR, PROJECTOR
from projections.projector import ProjectionConflict, Projector, has_tracking
from projections.reports import Reports
from projections.server_ownership import ServerOwnership
from projections.view import View
from service import shared_tables
from service.config import ConfigError, db_pool_size
from service.following import IDLE_POLL_SECONDS, Following
from service.observed_application import CountedOrderApplication
from service.postgres_url import LibpqPostgresFactory, libpq_parameters
from service.recorders import BatchReadingSQLiteRecorder, FailFastPostgresRecorder
from service.release import VERSION

log = logging.getLogger(__name__)

# A dead database must give a quick 503, not a hung request: waiting for a pooled
# connection, and for a lock, is bounded.
CONNECT_TIMEOUT_SECONDS: Final = 2
LOCK_TIMEOUT_SECONDS: Final = 5
# Release 0.1.0 kept its read models beside the event store's table: they are
# its own, left as they are until `pm-order db finish-upgrade` drops them.
LEGACY_RELEASE: Final = "0.1.0"
LEGACY_TABLES: Final = (
    "order_lists_orders",
    "order_lists_items",
    "order_lists_counts",
    "order_lists_versions",
    "order_lists_entries",
    "server_ownership",
    "mail_orders",
    "mail_outbox",
    "reports_days",
    "reports_orders",
    "projection_tracking",
)
# Writing this many rows at once (an import) refreshes the planner's statistics.
BULK_ROWS: Final = 1000
# Creating tables that give way to running work: how many tries in all.
DDL_ATTEMPTS: Final = 5


def read_models() -> list[View]:
    """This release's read models, as a Store has them (`Store.all_views`)."""
    return [OrderLists(), ServerOwnership(), MailOutbox(), Reports()]


@dataclass
class Store:
    """The event store (through the application) and the read-model database."""

    app: OrderApplication
    # This release's generation of the read models (with the shared tables
    # reachable through it: projections/generations.py).
    views: ViewDatabase
    order_lists: OrderLists = field(default_factory=OrderLists)
    server_ownership: ServerOwnership = field(default_factory=ServerOwnership)
    mail_outbox: MailOutbox = field(default_factory=MailOutbox)
    reports: Reports = field(default_factory=Reports)
    generation: str = field(init=False)

    @property
    def all_views(self) -> list[View]:
        return [self.order_lists, self.server_ownership, self.mail_outbox, self.reports]

    def __post_init__(self) -> None:
        # The name of this release's generation of the read models: what they
        # were when the store was opened.
        self.generation = generation_of(self.all_views)

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
            generation=self.generation,
            head=self.app.recorder.max_notification_id,
            run_projectors=run_projectors,
            idle_poll=idle_poll,
            events_channel=getattr(self.app.recorder, "channel_name", None),
        )

    def create_tables(self) -> None:
        """Make this release's generation of the read models, and register it
        (its tables are made once: a generation is never altered)."""
        projector = self.projector()
        projector.create_tables()
        with self.views.shared_writing() as cursor:
            register(cursor, self.views, self.generation, VERSION)
        if not self.app.recorder.max_notification_id():
            # Nothing to build it from: a new store's generation serves at once.
            mark_caught_up(self.views, self.generation)

    def create_shared_tables(self, since: int = 0) -> None:
        """Make the tables every release shares, beside the event store's, after
        shared version `since` (0: all): the mail ledger, the generations'
        registry; the order numbers continue after the stored orders."""
        if since < shared_tables.LEGACY_VERSION:
            DeliveryLedger.create_tables(self.views)
        with self.views.shared_writing() as cursor:
            cursor.execute(REGISTRY_DDL)
        NotificationPositions.create_tables(self.views)
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
        self.views.analyze([table for view in self.all_views for table in view.tables])

    def catch_up(self) -> None:
        """Bring every view up to date here, whether or not a server is running
        (a generation that reaches the log's head is recorded as caught up)."""
        projector = self.projector()
        for _ in range(10):
            try:
                projector.catch_up()
                break
            except ProjectionConflict:
                continue  # another process moved it first: read its position again
        if projector.position() >= (self.app.recorder.max_notification_id() or 0):
            mark_caught_up(self.views, self.generation)

    def finish_upgrade(
        self, idle_seconds: float, *, only: str | None = None
    ) -> list[str]:
        """Drop the read models no process serves from any more: every other
        generation whose processes were last seen over `idle_seconds` ago and
        whose projector nobody leads, and release 0.1.0's tables (beside the
        event store's) when its projector is not running. What was dropped, by
        name; with `only`, just that generation (this release's own included:
        after a rollback) or 0.1.0's. (The event log is untouched: a release
        rolled back to later builds its read models again from it.)"""
        dropped = []
        now = time.time()
        for older in generations(self.views):
            if only is None and older.name == self.generation:
                continue  # (`only` names it after a rollback: this release's own)
            if only is not None and older.name != only:
                continue
            if now - older.seen_at < idle_seconds:
                continue
            if self._drop_generation(older.name):
                dropped.append(older.name)
        if only in (None, LEGACY_RELEASE) and self._drop_legacy_tables():
            dropped.append(LEGACY_RELEASE)
        return dropped

    def _drop_generation(self, name: str) -> bool:
        views = self.views
        if isinstance(views, PostgresViews):
            base = views.shared_schema or "public"
            schema = generation_schema(base, name)
            busy = AdvisoryLock(views, f"pm-order:{schema}:{PROJECTOR}")
            if not busy.try_acquire():
                return False  # its projector runs: a process of it is alive
            try:
                with views.shared_writing() as cursor:
                    cursor.execute(
                        SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                            Identifier(schema)
                        )
                    )
                    forget(cursor, views, name)
            finally:
                busy.release()
            return True
        assert isinstance(views, SQLiteViews)
        assert views.shared_path is not None
        with views.shared_writing() as cursor:
            forget(cursor, views, name)
        for path in _files_of(generation_path(Path(views.shared_path), name)):
            path.unlink(missing_ok=True)
        return True

    def _drop_legacy_tables(self) -> bool:
        """Drop release 0.1.0's read models (and its mark, so that 0.1.0 started
        again would make them anew); False when there are none, or its
        projector runs."""
        views = self.views
        names = [*LEGACY_TABLES, "pm_order_schema"]
        if isinstance(views, PostgresViews):
            base = views.shared_schema or "public"
            busy = AdvisoryLock(views, f"pm-order:{base}:{LEGACY_PROJECTOR}")
            if not busy.try_acquire():
                return False
            try:
                with views.shared_writing() as cursor:
                    if not views.has_table(cursor, "projection_tracking"):
                        return False
                    for table in names:
                        cursor.execute(
                            SQL("DROP TABLE IF EXISTS {}.{}").format(
                                Identifier(base), Identifier(table)
                            )
                        )
            finally:
                busy.release()
            return True
        with views.shared_writing() as cursor:
            cursor.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'projection_tracking'"
            )
            if cursor.fetchone() is None:
                return False
            for table in names:
                cursor.execute(f"DROP TABLE IF EXISTS {table}")  # ours, not input
        return True

    def shape_problems(self) -> list[str]:
        """How the generation's tables differ from what this release reads and
        writes: a table missing, or a column (none: as expected)."""
        problems = []
        with self.views.reading() as cursor:
            for view in self.all_views:
                for table in view.layout:
                    have = self.views.columns(cursor, table.name)
                    if not have:
                        problems.append(f"{table.name} is missing")
                    elif lacking := [n for n in table.names if n not in have]:
                        problems.append(f"{table.name} lacks {', '.join(lacking)}")
        return problems

    def check_tables(self) -> None:
        """Fail with a clear message when the tables were never created: the
        event store's, or this release's generation of the read models."""
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
        except Exception as error:
            if not _is_missing_table(error):
                raise
            missing = [f"the read models of release {VERSION}"]
        if missing:
            self.close()
            raise ConfigError(
                f"the database lacks pm-order tables ({', '.join(missing)};"
                f" generation {self.generation}): run `pm-order db upgrade`"
                " (or set PM_ORDER_CREATE_TABLES=yes)"
            )

    def close(self) -> None:
        self.views.close()
        self.app.close()


def open_store(url: str, *, create_tables: bool = True, upgrade: bool = False) -> Store:
    """Open the store at `url` (sqlite:///PATH or postgresql://...).

    With `create_tables`, the shared tables are made where their mark says they
    are older than this release's, and this release's generation of the read
    models where it is not registered; with `upgrade` (`pm-order db upgrade`),
    whatever the marks say. A database changed by a release this one cannot work
    beside: ConfigError.
    """
    if url.startswith("sqlite:///"):
        return _opened_sqlite(sqlite_path(url), create_tables=create_tables)
    settings = postgres_settings(url)
    schema = settings.schema or "public"
    mark = shared_tables.shared_mark(settings.conninfo, schema)
    mark.check_readable(VERSION)
    if upgrade or (create_tables and mark.version < shared_tables.SHARED_VERSION):
        _expand_shared_tables(settings, upgrade=upgrade)
    store = _opened_postgres(settings)
    try:
        if upgrade or (
            create_tables and generation(store.views, store.generation) is None
        ):
            _make_generation(store, settings)
        else:
            store.check_tables()
    except BaseException:
        store.close()
        raise
    return store


def open_event_log(
    url: str,
) -> tuple[ApplicationRecorder, Mapper[Any], Callable[[], None]]:
    """The event log of the store at `url`, for a process that only reads it (a
    rebuild's builder): its recorder, its mapper, and how to close them."""
    store = open_store(url, create_tables=False)
    return store.app.recorder, store.app.mapper, store.close


def _opened_sqlite(path: Path, *, create_tables: bool) -> Store:
    path.parent.mkdir(parents=True, exist_ok=True)
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "APPLICATION_RECORDER_TOPIC": get_topic(BatchReadingSQLiteRecorder),
        "SQLITE_DBNAME": str(path),
        "SQLITE_LOCK_TIMEOUT": str(LOCK_TIMEOUT_SECONDS),
        "CREATE_TABLE": "y" if create_tables else "n",
    }
    app = CountedOrderApplication(env=env)
    # The generation's file is named after the read models it holds.
    generation_file = generation_path(path, generation_of(read_models()))
    views = SQLiteViews(
        generation_file, shared_path=path, busy_timeout=LOCK_TIMEOUT_SECONDS
    )
    store = Store(app=app, views=views)
    if create_tables:
        store.create_shared_tables()
        store.create_tables()
    else:
        store.check_tables()
    return store


def _files_of(database: Path) -> list[Path]:
    """A SQLite database's file and its write-ahead log's."""
    return [database, Path(f"{database}-wal"), Path(f"{database}-shm")]


def generation_path(store_path: Path, name: str) -> Path:
    """Where generation `name` of the read models of the SQLite store at
    `store_path` is: a file beside it."""
    return store_path.with_name(f"{store_path.name}.views-{name}")


def _expand_shared_tables(settings: PostgresSettings, *, upgrade: bool) -> None:
    """Make or expand the shared tables, under the lock every release takes for
    them; processes starting together take turns, and the ones after the first
    find them made."""
    schema = settings.schema or "public"
    with shared_tables.ddl_lock(settings.conninfo, f"pm-order tables {schema}"):
        for attempt in range(1, DDL_ATTEMPTS + 1):
            mark = shared_tables.shared_mark(settings.conninfo, schema)
            if mark.version >= shared_tables.SHARED_VERSION and not upgrade:
                return
            try:
                _create_shared(settings, since=0 if upgrade else mark.version)
                shared_tables.raise_mark(settings.conninfo, schema)
                return
            except Exception as error:
                # Upgrading a running system: DDL waits on (or deadlocks with)
                # its writers for a bounded time, then gives way and tries
                # again, rather than hold them up.
                if attempt == DDL_ATTEMPTS or not _is_lock_contention(error):
                    raise
                log.warning("creating tables gave way to running work: again")
                shared_tables.wait_briefly(attempt)


def _create_shared(settings: PostgresSettings, *, since: int) -> None:
    """The shared tables' statements after version `since` (0: all of them)."""
    schema = settings.schema or "public"
    shared_tables.create_schema(settings.conninfo, schema)
    # The event store's table and sequence: made by the library, as by every
    # release before (their statements take locks that running writers hold,
    # so a database that has them is spared them).
    app = CountedOrderApplication(env=settings.env(create_tables=since == 0))
    views = PostgresViews(
        settings.conninfo,
        schema=schema,
        max_size=1,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
    )
    try:
        Store(app=app, views=views).create_shared_tables(since)
    finally:
        views.close()
        app.close()


def _opened_postgres(settings: PostgresSettings) -> Store:
    app = CountedOrderApplication(env=settings.env(create_tables=False))
    schema = settings.schema or "public"
    name = generation_of(read_models())
    views = PostgresViews(
        settings.conninfo,
        schema=generation_schema(schema, name),
        shared_schema=schema,
        max_size=db_pool_size(),
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
    )
    return Store(app=app, views=views)


def _make_generation(store: Store, settings: PostgresSettings) -> None:
    """Make this release's generation (its schema, tables and registration),
    once among processes starting together; it touches no table another
    generation or release uses, so it waits on no running work."""
    schema = generation_schema(settings.schema or "public", store.generation)
    with shared_tables.ddl_lock(settings.conninfo, f"pm-order tables {schema}"):
        shared_tables.create_schema(settings.conninfo, schema)
        store.create_tables()


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
    """Make the store's schema (the event store's and the shared tables')."""
    shared_tables.create_schema(settings.conninfo, settings.schema or "public")
