"""The database that holds the read models, SQLite or PostgreSQL: one module per
job (the interface the views use, each database, the array encoder, leadership)."""

from __future__ import annotations

from projections.database.arrays import array_literal
from projections.database.interface import (
    Cursor,
    SwitchBusy,
    ViewDatabase,
    ViewDatabaseUnavailable,
)
from projections.database.leadership import AdvisoryLock, Leadership, SoleLeader
from projections.database.postgres import (
    POOL_RECONNECT_SECONDS,
    PostgresViews,
    progress_of,
    read_attempts,
)
from projections.database.sqlite import SQLiteViews

__all__ = [
    "POOL_RECONNECT_SECONDS",
    "AdvisoryLock",
    "Cursor",
    "Leadership",
    "PostgresViews",
    "SQLiteViews",
    "SoleLeader",
    "SwitchBusy",
    "ViewDatabase",
    "ViewDatabaseUnavailable",
    "array_literal",
    "progress_of",
    "read_attempts",
]
