"""The tables every release shares on PostgreSQL, and their mark.

Beside the event store's table and its order-number sequence, every release
uses the mail ledger and the generations' registry; each release's read models
are elsewhere (projections/generations.py). Shared tables change only by
expanding (add, never rename or drop while a release that uses them may run),
and their mark says how far they have been expanded:

- `version`: the highest SHARED_VERSION of the releases that expanded them. A
  process that finds it at or above its own does no DDL at start, so no lock
  that running work could wait on; one that finds it lower expands them (under
  a lock) and raises it. It is never lowered: an older release leaves a newer
  one's tables and mark as it found them.
- `readable_from`: the lowest SHARED_VERSION that can still use them. A release
  below it says so in one line and does not start.

Release 0.1.0 marked its tables (shared and read models alike) in
`pm_order_schema`, compared for equality: it is left as it is, so that 0.1.0's
processes keep finding their mark, and read as "the tables of shared version 4".
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import psycopg
from psycopg.sql import SQL, Identifier

from service.config import ConfigError

# 4: the event store, its order-number sequence and the mail ledger (release
# 0.1.0 and before, marked in pm_order_schema); 5: the generations' registry,
# the notifications' positions and this mark.
SHARED_VERSION: Final = 5
# This release's tables are used as 0.1.0 (shared version 4) made them.
READABLE_FROM: Final = 4
# Release 0.1.0's shared tables, whatever its mark's number: what it made.
LEGACY_VERSION: Final = 4

CONNECT_TIMEOUT_SECONDS: Final = 2
# Creating the tables can take a while on a busy database; waiting for another
# process that does it is bounded all the same.
TABLES_LOCK_TIMEOUT_SECONDS: Final = 30

_MARK_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS {}.pm_order_shared_schema"
    " (version INTEGER NOT NULL, readable_from INTEGER NOT NULL)"
)


class DatabaseTooNew(ConfigError):
    """The shared tables were changed by a release this one cannot work beside."""


@dataclass(frozen=True)
class SharedMark:
    """How far the shared tables are expanded (0: not made)."""

    version: int
    readable_from: int = 0

    def check_readable(self, release: str) -> None:
        """DatabaseTooNew when this release cannot use the tables."""
        if self.readable_from > SHARED_VERSION:
            raise DatabaseTooNew(
                f"this database was changed by a later release (shared tables"
                f" version {self.version}, usable from version {self.readable_from}):"
                f" release {release} uses version {SHARED_VERSION} and cannot"
                " serve it; run a later release"
            )


def connect(conninfo: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        conninfo, connect_timeout=CONNECT_TIMEOUT_SECONDS, autocommit=True
    )


def shared_mark(conninfo: str, schema: str) -> SharedMark:
    """The shared tables' mark (one read; release 0.1.0's own when there is no
    other; version 0 when there is none)."""
    with connect(conninfo) as connection:
        try:
            row = connection.execute(
                SQL(
                    "SELECT version, readable_from FROM {}.pm_order_shared_schema"
                ).format(Identifier(schema))
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            row = None
        if row is not None:
            version, readable_from = row
            return SharedMark(int(version), int(readable_from))  # type: ignore[call-overload]
        try:
            legacy = connection.execute(
                SQL("SELECT version FROM {}.pm_order_schema").format(Identifier(schema))
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return SharedMark(0)
    if legacy is not None and int(legacy[0]) >= LEGACY_VERSION:  # type: ignore[call-overload]
        return SharedMark(LEGACY_VERSION)
    # Older than 0.1.0's last mark: its shared tables are made again (each
    # statement does nothing where they are there).
    return SharedMark(0)


def raise_mark(conninfo: str, schema: str) -> None:
    """Record that the shared tables are this release's (or later): the mark
    only ever rises."""
    name = Identifier(schema)
    with connect(conninfo) as connection, connection.transaction():
        connection.execute(SQL(_MARK_DDL).format(name))
        connection.execute(
            SQL("LOCK TABLE {}.pm_order_shared_schema IN EXCLUSIVE MODE").format(name)
        )
        updated = connection.execute(
            SQL(
                "UPDATE {}.pm_order_shared_schema"
                " SET version = GREATEST(version, %s),"
                " readable_from = GREATEST(readable_from, %s)"
            ).format(name),
            (SHARED_VERSION, READABLE_FROM),
        )
        if updated.rowcount == 0:
            connection.execute(
                SQL(
                    "INSERT INTO {}.pm_order_shared_schema (version, readable_from)"
                    " VALUES (%s, %s)"
                ).format(name),
                (SHARED_VERSION, READABLE_FROM),
            )


@contextmanager
def ddl_lock(conninfo: str, what: str) -> Iterator[None]:
    """Hold the database-wide lock under which pm-order makes `what` (every
    release has taken `pm-order tables <schema>` for its shared tables)."""
    with connect(conninfo) as connection:
        connection.execute(f"SET lock_timeout = '{TABLES_LOCK_TIMEOUT_SECONDS}s'")
        connection.execute("SELECT pg_advisory_lock(hashtext(%s))", (what,))
        yield  # the lock ends with the session


def create_schema(conninfo: str, schema: str) -> None:
    with connect(conninfo) as connection:
        connection.execute(
            SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(schema))
        )


def wait_briefly(attempt: int) -> None:
    """Give way to running work before trying DDL again."""
    time.sleep(0.5 * attempt)
