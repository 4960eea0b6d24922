"""The read models in PostgreSQL, through a psycopg 3 connection pool: pipelined
pages, progress announced by NOTIFY, scratch schemas, reads retried once."""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from projections.database.interface import (
    Cursor,
    SwitchBusy,
    ViewDatabase,
    ViewDatabaseUnavailable,
)
from projections.database.leadership import AdvisoryLock, Leadership

if TYPE_CHECKING:
    import psycopg

    from projections.page_writer import Table

# A pool that loses its connections tries again after 1, 2, 4, 8... seconds:
# after an outage of a minute, the first connection to a promoted standby would
# come up to a minute late. Giving up early bounds the backoff; the next
# request that finds the pool empty starts a new attempt at once.
POOL_RECONNECT_SECONDS: Final = 2.0
# How long a rebuild's switch waits for a lock before it lets go of them all and
# tries again: the longest a reader waits behind it (well under the deadlock
# check's second, so a reader is never the one cancelled).
SWITCH_LOCK_WAIT_MS: Final = 200
# PostgreSQL's longest name (NAMEDATALEN - 1).
MAX_NAME: Final = 63


class PostgresViews(ViewDatabase):
    """Read models in PostgreSQL, through a psycopg 3 connection pool."""

    arrays = True

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str | None = None,
        shared_schema: str | None = None,
        max_size: int = 8,
        connect_timeout: float = 5.0,
        statement_timeout_ms: int = 10_000,
    ) -> None:
        import psycopg_pool
        from psycopg.conninfo import conninfo_to_dict

        self.conninfo = conninfo
        self.schema = schema
        self.max_size = max_size
        # Where the tables every release shares are (the event store's schema):
        # the mail ledger, the generations' registry. Found after the views'
        # own schema on the search path.
        self.shared_schema = schema if shared_schema is None else shared_schema
        self.connect_timeout = connect_timeout
        options = f"-c statement_timeout={statement_timeout_ms} -c lock_timeout=5000"
        path = [s for s in (schema, self.shared_schema) if s]
        if path:
            options += f" -c search_path={','.join(dict.fromkeys(path))}"
        self.connect_kwargs: dict[str, Any] = {"options": options}
        if "connect_timeout" not in conninfo_to_dict(conninfo):
            # (the database URL's own, if it has one, is the operator's choice)
            self.connect_kwargs["connect_timeout"] = max(1, int(connect_timeout))
        # The same settings again, set by each new connection of the pools: a
        # pooler in session mode (PgBouncer, docs/deployment-connections.md)
        # drops startup options, not what a session sets itself.
        self.session_settings: dict[str, str] = {
            "statement_timeout": str(statement_timeout_ms),
            "lock_timeout": "5000",
        }
        if path:
            self.session_settings["search_path"] = ", ".join(
                '"' + s.replace('"', '""') + '"' for s in dict.fromkeys(path)
            )
        # Autocommit: a lone read is one round trip; writing() opens a transaction.
        pool_kwargs = {**self.connect_kwargs, "autocommit": True}
        self._pool = psycopg_pool.ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_size,
            timeout=connect_timeout,
            kwargs=pool_kwargs,
            reconnect_timeout=POOL_RECONNECT_SECONDS,
            configure=self.configure_session,
            open=True,
        )

    def session_statement(self) -> tuple[str, list[str]]:
        """The statement (and its parameters) that gives a session its settings."""
        names = list(self.session_settings)
        calls = ", ".join("set_config(%s, %s, false)" for _ in names)
        values = [v for n in names for v in (n, self.session_settings[n])]
        return f"SELECT {calls}", values

    def configure_session(self, connection: psycopg.Connection[Any]) -> None:
        """A new connection of the pool takes the views' settings (autocommit:
        for the whole session)."""
        connection.execute(*self.session_statement())

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

    @contextmanager
    def shared_writing(self) -> Iterator[Cursor]:
        from psycopg import sql

        with self.writing() as cursor:
            cursor.execute(
                sql.SQL("SET LOCAL search_path = {}").format(
                    sql.Identifier(self.shared_schema or "public")
                )
            )
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

    def shared_leadership(self, name: str) -> Leadership:
        # The name every release has used for it (the event store's schema).
        return AdvisoryLock(self, f"pm-order:{self.shared_schema or 'public'}:{name}")

    def batched(self, cursor: Cursor) -> AbstractContextManager[None]:
        return cursor.connection.pipeline()  # type: ignore[attr-defined,no-any-return]

    def for_a_page(self, cursor: Cursor) -> None:
        # Without statistics, a join of a page's thousand keys with a table of
        # millions is planned as a hash join over the whole table: every page
        # would scan it. (SET LOCAL: until the transaction ends.)
        #
        # A page commits without waiting for its WAL to reach the disk: it is
        # visible to every process (and announced) at once, a disk write sooner,
        # which is most of a page's wait. The views and their tracking are one
        # transaction, so a database crash can only lose the last pages whole
        # (at most about 3 x wal_writer_delay), and the projector applies them
        # again from the event log, which is always committed durably.
        cursor.execute(_PAGE_SETTINGS)

    def announce_progress(
        self, cursor: Cursor, views: Sequence[str] = (), position: int = 0
    ) -> None:
        from psycopg import sql

        # The payload spares every listener a read of the tracking table.
        cursor.execute(
            sql.SQL("NOTIFY {}, {}").format(
                sql.Identifier(self.progress_channel),
                sql.Literal(" ".join([str(position), *views]) if views else ""),
            )
        )

    def columns(self, cursor: Cursor, table: str) -> frozenset[str]:
        # The views' schema is the connection's search path.
        cursor.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = %s",
            (table,),
        )
        return frozenset(name for (name,) in cursor.fetchall())

    builds_in_parallel = True

    def scratch(self, label: str) -> PostgresViews:
        from psycopg import sql

        schema = f"{self.schema or 'public'}_{label}"
        if len(schema) > MAX_NAME:
            # Cut to PostgreSQL's limit, told apart from any other cut alike.
            digest = hashlib.sha1(schema.encode(), usedforsecurity=False).hexdigest()
            schema = f"{schema[: MAX_NAME - 9]}_{digest[:8]}"
        with self.writing() as cursor:
            cursor.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema)
                )
            )
            cursor.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        return self.beside(schema)()

    def beside(self, schema: str) -> Callable[[], PostgresViews]:
        """How to open the scratch `schema` beside these views (picklable)."""
        return functools.partial(
            PostgresViews,
            self.conninfo,
            schema=schema,
            shared_schema=self.shared_schema,
            max_size=1,  # a rebuild's or a verification's scratch: one writer
            connect_timeout=self.connect_timeout,
        )

    def opener(self) -> Callable[[], PostgresViews]:
        assert self.max_size == 1, "only a scratch place is opened elsewhere"
        assert self.schema
        return self.beside(self.schema)

    @contextmanager
    def switching(self, scratches: Sequence[ViewDatabase]) -> Iterator[Cursor]:
        import psycopg

        try:
            with self.writing() as cursor:
                # Readers of a table wait behind the switch's lock on it, so it
                # waits for its locks a short while only, and gives them all back
                # to try again. (SET LOCAL: until the switch's transaction ends.)
                cursor.execute(f"SET LOCAL lock_timeout = {SWITCH_LOCK_WAIT_MS}")
                yield cursor
        except ViewDatabaseUnavailable as error:
            if isinstance(error.__cause__, psycopg.errors.LockNotAvailable):
                raise SwitchBusy(str(error)) from error
            raise

    def switch_tables_from(
        self, scratch: ViewDatabase, tables: Sequence[Table[Any]], cursor: Cursor
    ) -> None:
        from psycopg import sql

        assert isinstance(scratch, PostgresViews)
        assert scratch.schema
        # Whatever the service's bound on a statement, a switch is not cut short
        # halfway. (SET LOCAL: until the switch's transaction ends.)
        cursor.execute("SET LOCAL statement_timeout = 0")
        # The scratch's tables move in whole, their indexes with them: no row is
        # copied, whatever the size (a copy of a million orders' rows took
        # longer than the rebuild of them). The live table goes first, so the
        # moved indexes' names are free.
        live = sql.Identifier(self.schema or "public")
        for table in tables:
            name = sql.Identifier(table.name)
            cursor.execute(sql.SQL("DROP TABLE {}.{}").format(live, name))
            cursor.execute(
                sql.SQL("ALTER TABLE {}.{} SET SCHEMA {}").format(
                    sql.Identifier(scratch.schema), name, live
                )
            )

    def analyze(self, tables: Sequence[str]) -> None:
        from psycopg import sql

        with self.writing() as cursor:
            # Millions of rows take longer than the views' bound on a statement.
            cursor.execute("SET LOCAL statement_timeout = 0")
            for table in tables:
                cursor.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))

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


def progress_of(payload: str) -> tuple[int, list[str]] | None:
    """(position, views) announced by a projector's NOTIFY payload; None for an
    announcement that names none (a heartbeat, a rebuild's switch: read the
    tracking table)."""
    position, *views = payload.split() or [""]
    return (int(position), views) if views and position.isdigit() else None


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


_PAGE_SETTINGS = (
    "SELECT set_config('enable_seqscan', 'off', true),"
    " set_config('enable_hashjoin', 'off', true),"
    " set_config('enable_mergejoin', 'off', true),"
    " set_config('synchronous_commit', 'off', true)"
)


@lru_cache(maxsize=512)
def _to_format_params(statement: str) -> str:
    return statement.replace("?", "%s")
