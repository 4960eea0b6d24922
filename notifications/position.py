"""The publisher's position in the event log: a shared table, not a read model.

Written by the publisher only, after the broker confirmed every message up to
it. A rebuild or a new generation of the read models never touches it, so
nothing is announced twice because views were rebuilt. A database that has
history when the publisher first runs gets the log's head as the position:
what happens from then on is announced, not the whole past (`pm-order
notifications replay` announces a range again).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from projections.database import ViewDatabase

# One row per outbox (one today: the RabbitMQ notifier).
OUTBOX: Final = "rabbitmq"

_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS notification_positions ("
    " outbox TEXT PRIMARY KEY,"
    " position BIGINT NOT NULL,"
    " moved_at DOUBLE PRECISION NOT NULL)",
)
_SELECT: Final = (
    "SELECT position, moved_at FROM notification_positions WHERE outbox = ?"
)
_START: Final = (
    "INSERT INTO notification_positions (outbox, position, moved_at)"
    " VALUES (?, ?, ?) ON CONFLICT (outbox) DO NOTHING"
)
# Forward only: a publisher that lost its leadership unseen cannot move it back.
_MOVE: Final = (
    "UPDATE notification_positions SET position = ?, moved_at = ?"
    " WHERE outbox = ? AND position < ?"
)


@dataclass(frozen=True)
class Position:
    position: int
    moved_at: float


class NotificationPositions:
    """Reads and moves the outboxes' positions."""

    @staticmethod
    def create_tables(db: ViewDatabase) -> None:
        """Make the table beside the event store, with the tables every release
        and generation shares (the mail ledger)."""
        with db.shared_writing() as cursor:
            for statement in _DDL:
                cursor.execute(statement)

    @staticmethod
    def start(db: ViewDatabase, head: int, outbox: str = OUTBOX) -> Position:
        """The outbox's position; set to `head` (the log's) if it had none."""
        with db.writing() as cursor:
            cursor.execute(db.sql(_START), (outbox, head, time.time()))
            cursor.execute(db.sql(_SELECT), (outbox,))
            position, moved_at = cursor.fetchone()
        return Position(int(position), float(moved_at))

    @staticmethod
    def read(db: ViewDatabase, outbox: str = OUTBOX) -> Position | None:
        """The position; None before the outbox first ran (or its table exists)."""
        try:
            rows = db.query(_SELECT, (outbox,))
        except Exception as error:
            # (sqlite3's and psycopg's words for a table not made yet)
            if "notification_positions" not in str(error):
                raise
            return None
        return Position(int(rows[0][0]), float(rows[0][1])) if rows else None

    @staticmethod
    def move(db: ViewDatabase, position: int, outbox: str = OUTBOX) -> None:
        with db.writing() as cursor:
            cursor.execute(db.sql(_MOVE), (position, time.time(), outbox, position))
