"""The projector: applies pages of the event log to a view, exactly once.

Each page of notifications is applied to the view's tables and the view's tracking
position is moved in the same transaction, so a projector killed at any moment
resumes where the last committed page ended, with nothing lost or doubled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from eventsourcing.persistence import ApplicationRecorder, Mapper, Notification
from eventsourcing.utils import get_topic

from domain.order import Order
from domain.server import Server
from projections.database import Cursor, ViewDatabase
from projections.view import View

PAGE_SIZE: Final = 1000

# The topics of the events the service writes. A projector whose views read all of
# them reads the log unfiltered; any other asks the database for its views'
# topics alone. (An event missing here is still read, just not filtered out.)
LOG_TOPICS: Final = frozenset(
    get_topic(e)
    for e in (
        Order.Requested,
        Order.Accepted,
        Order.Rejected,
        Order.WarningRaised,
        Server.Registered,
        Server.Reserved,
        Server.Transferred,
        Server.Released,
    )
)

_TRACKING_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS projection_tracking ("
    " view TEXT PRIMARY KEY,"
    " position BIGINT NOT NULL,"
    " moved_at DOUBLE PRECISION NOT NULL)",
)
_SELECT_POSITION: Final = "SELECT position FROM projection_tracking WHERE view = ?"
_SELECT_TRACKING: Final = (
    "SELECT position, moved_at FROM projection_tracking WHERE view = ?"
)
_SET_POSITION: Final = (
    "UPDATE projection_tracking SET position = ?, moved_at = ? WHERE view = ?"
)
_START_TRACKING: Final = (
    "INSERT INTO projection_tracking (view, position, moved_at) VALUES (?, 0, ?)"
    " ON CONFLICT (view) DO NOTHING"
)
# Moves only from the position this page was read after: a second projector that
# applied the same page first makes this update touch no row, and the page is
# rolled back.
_MOVE_TRACKING: Final = (
    "UPDATE projection_tracking SET position = ?, moved_at = ?"
    " WHERE view = ? AND position = ?"
)


Contents = dict[str, list[tuple[Any, ...]]]


def view_contents(db: ViewDatabase, view: View) -> Contents:
    """Every row of every table of `view`, sorted: for comparing two copies."""
    with db.reading() as cursor:
        return read_contents(cursor, view)


def read_contents(cursor: Cursor, view: View) -> Contents:
    contents: Contents = {}
    for table in view.tables:
        cursor.execute(f"SELECT * FROM {table}")  # names are ours, not input
        contents[table] = sorted((tuple(row) for row in cursor.fetchall()), key=repr)
    return contents


def tracking_of(db: ViewDatabase, view: str) -> tuple[int, float | None]:
    """(position, when it last moved) of `view`; (0, None) before its tables exist."""
    with db.reading() as cursor:
        cursor.execute(db.sql(_SELECT_TRACKING), (view,))
        row = cursor.fetchone()
    return (int(row[0]), float(row[1])) if row else (0, None)


def set_position(cursor: Cursor, db: ViewDatabase, view: str, position: int) -> None:
    """Move `view`'s tracking to `position` unconditionally (a rebuild's switch)."""
    cursor.execute(db.sql(_SET_POSITION), (position, time.time(), view))


class ProjectionConflict(Exception):
    """Another projector moved the same view first; this page was rolled back."""


def create_tracking_table(db: ViewDatabase) -> None:
    with db.writing() as cursor:
        for statement in _TRACKING_DDL:
            cursor.execute(statement)


def tracked_position(db: ViewDatabase, view: str) -> int:
    """How far `view` has applied the log (0 before anything)."""
    with db.reading() as cursor:
        return position_in(cursor, db, view)


def position_in(cursor: Cursor, db: ViewDatabase, view: str) -> int:
    """`view`'s position, read within `cursor`'s transaction."""
    cursor.execute(db.sql(_SELECT_POSITION), (view,))
    row = cursor.fetchone()
    return int(row[0]) if row else 0


def has_tracking(db: ViewDatabase, view: str) -> bool:
    """Whether `view`'s tables were created (its tracking row exists)."""
    with db.reading() as cursor:
        cursor.execute(db.sql(_SELECT_POSITION), (view,))
        return cursor.fetchone() is not None


class Projector:
    """Brings views up to date with the event log, a page per transaction.

    Several views may share a projector: the page is read and decoded once, and
    every view's rows and tracking position move in the same transaction.
    """

    def __init__(
        self,
        recorder: ApplicationRecorder,
        mapper: Mapper[Any],
        db: ViewDatabase,
        view: View | Sequence[View],
        *,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.recorder = recorder
        self.mapper = mapper
        self.db = db
        self.views: list[View] = (
            [view] if not isinstance(view, Sequence) else list(view)
        )
        self.page_size = page_size
        self._topics: frozenset[str] = frozenset().union(
            *(v.topics for v in self.views)
        )
        # Read from the database only the events some view reads (none skipped in
        # Python), unless the views read every kind the service writes.
        self._filter: list[str] | None = (
            None if self._topics >= LOG_TOPICS else sorted(self._topics)
        )

    @property
    def view(self) -> View:
        """The view of a one-view projector."""
        [view] = self.views
        return view

    @property
    def name(self) -> str:
        return "+".join(v.name for v in self.views)

    def create_tables(self) -> None:
        create_tracking_table(self.db)
        with self.db.writing() as cursor:
            for view in self.views:
                view.create_tables(cursor, self.db)
                cursor.execute(self.db.sql(_START_TRACKING), (view.name, time.time()))

    def position(self) -> int:
        """How far every view has got (the least of their positions)."""
        return min(self.positions().values())

    def positions(self) -> dict[str, int]:
        with self.db.reading() as cursor:
            return {v.name: position_in(cursor, self.db, v.name) for v in self.views}

    def run_page(self, after: int | None = None, stop: int | None = None) -> int:
        """Apply the next page after `after` (every view is there; default: read
        each view's tracked position), up to `stop` if given.

        Returns the new position (unchanged when the log holds nothing newer); every
        view is there afterwards.
        """
        positions = (
            self.positions()
            if after is None
            else dict.fromkeys((v.name for v in self.views), after)
        )
        start = min(positions.values())
        if self._filter is None:
            notifications = self.recorder.select_notifications(
                start=start, limit=self.page_size, stop=stop, inclusive_of_start=False
            )
            if not notifications:
                return start
            self.apply_page(positions, notifications)
            return notifications[-1].id
        # Filtered, a page short of `page_size` has read every event of the views'
        # topics up to the end: the log's head, read before the page. (Nothing
        # below the head can still appear: the event store commits under a table
        # lock, so in the order of the notification ids.) Moving there also passes
        # the events of other topics, whose writers may be waiting to read them.
        head = self.recorder.max_notification_id() or 0
        end = head if stop is None else min(stop, head)
        if end <= start:
            return start
        notifications = self.recorder.select_notifications(
            start=start,
            limit=self.page_size,
            stop=end,
            topics=self._filter,
            inclusive_of_start=False,
        )
        if len(notifications) == self.page_size:
            end = notifications[-1].id
        self.apply_page(positions, notifications, end)
        return end

    def apply_page(
        self,
        start: int | dict[str, int],
        notifications: Sequence[Notification],
        end: int | None = None,
    ) -> None:
        """Apply `notifications` to each view past its position (`start`), and move
        every view's tracking to the page's end (`end`, by default the last
        notification's id), all in one transaction."""
        positions = (
            start if isinstance(start, dict) else {v.name: start for v in self.views}
        )
        topics, to_domain_event = self._topics, self.mapper.to_domain_event
        decoded = [
            (n.id, n.topic, to_domain_event(n))
            for n in notifications
            if n.topic in topics
        ]
        db = self.db
        if end is None:
            end = notifications[-1].id
        with db.writing() as cursor:
            moved_at = time.time()
            for view in self.views:
                cursor.execute(
                    db.sql(_MOVE_TRACKING),
                    (end, moved_at, view.name, positions[view.name]),
                )
                if cursor.rowcount != 1:
                    raise ProjectionConflict(
                        f"{view.name} moved past {positions[view.name]} elsewhere"
                    )
            with db.batched(cursor):
                for view in self.views:
                    after = positions[view.name]
                    events = [
                        event
                        for id_, topic, event in decoded
                        if id_ > after and topic in view.topics
                    ]
                    if events:
                        view.apply_page(cursor, db, events)
                db.announce_progress(cursor)

    def catch_up(
        self, stop: int | None = None, progress: Callable[[int], None] | None = None
    ) -> int:
        """Apply pages until the log's end (or `stop`); returns the final position."""
        position = self.position()
        after: int | None = None  # the first page reads each view's own position
        while stop is None or position < stop:
            moved = self.run_page(after, stop)
            if moved == position:
                break
            position = after = moved
            if progress is not None:
                progress(position)
        return position
