"""The projector: applies pages of the event log to a view, exactly once.

Each page of notifications is applied to the view's tables and the view's tracking
position is moved in the same transaction, so a projector killed at any moment
resumes where the last committed page ended, with nothing lost or doubled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any, Final, TypeVar

from eventsourcing.persistence import ApplicationRecorder, Mapper, Notification

from domain.event_kinds import LOG_TOPICS
from projections.database import Cursor, ViewDatabase
from projections.page_writer import Statement, run
from projections.view import ReadModel, View

T = TypeVar("T")

PAGE_SIZE: Final = 1000
# A filtered projector's first select of a page reads this many pages' worth of
# notification ids.
_WINDOW_PAGES: Final = 4

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
@cache
def _move_tracking(views: int) -> str:
    """The statement moving `views` views from one position (? marks: the new
    position, the time, the views' names, the position they move from)."""
    marks = ", ".join("?" * views)
    return (
        "UPDATE projection_tracking SET position = ?, moved_at = ?"
        f" WHERE view IN ({marks}) AND position = ?"
    )


Contents = dict[str, list[tuple[Any, ...]]]


def view_contents(db: ViewDatabase, view: View) -> Contents:
    """Every row of every table of `view`, sorted: for comparing two copies."""
    with db.reading() as cursor:
        return read_contents(cursor, view)


def read_contents(cursor: Cursor, view: View) -> Contents:
    """Every row of every table of `view`, its columns by name in the row's
    order (whatever order the database keeps them in), sorted."""
    contents: Contents = {}
    for table in view.layout:
        # Names are ours, not input.
        cursor.execute(f"SELECT {table.selected} FROM {table.name}")
        rows = cursor.fetchall()
        contents[table.name] = sorted((tuple(row) for row in rows), key=repr)
    return contents


def tracking_of(db: ViewDatabase, view: str) -> tuple[int, float | None]:
    """(position, when it last moved) of `view`; (0, None) before its tables exist."""
    with db.reading() as cursor:
        cursor.execute(db.sql(_SELECT_TRACKING), (view,))
        row = cursor.fetchone()
    if row is None:
        return (0, None)
    position, moved_at = row
    return (int(position), float(moved_at))


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
    if row is None:
        return 0
    (position,) = row
    return int(position)


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
        # Python), unless the views read every kind the service writes. (An event
        # missing from LOG_TOPICS is still read, just not filtered out.)
        self._filter: list[str] | None = (
            None if self._topics >= LOG_TOPICS else sorted(self._topics)
        )

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
        page = self._read_page(start, stop)
        if page is None:
            return start
        self._apply(positions, page)
        return page.end

    def _read_page(self, start: int, stop: int | None) -> _Page | None:
        """The page after `start` (up to `stop`), decoded; None if nothing newer."""
        if self._filter is None:
            notifications = self.recorder.select_notifications(
                start=start, limit=self.page_size, stop=stop, inclusive_of_start=False
            )
            if not notifications:
                return None
            return self._decoded(notifications, notifications[-1].id)
        # Filtered, the page reads every event of its views' topics up to the log's
        # head, read before it (nothing below the head can still appear: the event
        # store commits under a table lock, so in the order of the notification
        # ids), or up to the page's last event when it fills. Moving to the head
        # also passes the events of other topics, whose writers may be waiting for
        # a view to pass them.
        head = self.recorder.max_notification_id() or 0
        end = head if stop is None else min(stop, head)
        found: list[Notification] = []
        position = start
        # Each select reads a bounded range of ids, whatever plan the database
        # picks for a filter on topics (without statistics, a sort of every later
        # event); the range doubles while the views' events are sparse.
        window = self.page_size * _WINDOW_PAGES
        while position < end:
            upto = min(end, position + window)
            wanted = self.page_size - len(found)
            more = self.recorder.select_notifications(
                start=position,
                limit=wanted,
                stop=upto,
                topics=self._filter,
                inclusive_of_start=False,
            )
            found.extend(more)
            if len(more) == wanted:
                position = more[-1].id
                break
            position, window = upto, window * 2
        if position == start:
            return None
        return self._decoded(found, position)

    def _decoded(self, notifications: Sequence[Notification], end: int) -> _Page:
        topics, to_domain_event = self._topics, self.mapper.to_domain_event
        return _Page(
            [
                (n.id, n.topic, to_domain_event(n))
                for n in notifications
                if n.topic in topics
            ],
            end,
        )

    def _events_for(self, view: View, after: int, page: _Page) -> list[Any]:
        """The page's events that `view` reads and has not applied (it is at
        `after`)."""
        topics = view.topics
        return [e for id_, topic, e in page.events if id_ > after and topic in topics]

    def _fold_ahead(self, positions: dict[str, int], page: _Page) -> _FoldedAhead:
        """The statements of the views that fold a page without the database,
        built before the page's transaction (the others fold within it)."""
        folded: _FoldedAhead = {}
        for view in self.views:
            if isinstance(view, ReadModel) and not view.reads_before_folding:
                events = self._events_for(view, positions[view.name], page)
                folded[view.name] = view.statements_of(self.db, events)
        return folded

    def _apply(
        self,
        positions: dict[str, int],
        page: _Page,
        folded: _FoldedAhead | None = None,
    ) -> None:
        db = self.db
        folded = self._fold_ahead(positions, page) if folded is None else folded
        with db.writing() as cursor:
            moved_at = time.time()
            # Views at the same position (all of them, but after a rebuild) move
            # in one statement: one round trip before the page's writes.
            at: dict[int, list[str]] = {}
            for view in self.views:
                at.setdefault(positions[view.name], []).append(view.name)
            for after, names in at.items():
                cursor.execute(
                    db.sql(_move_tracking(len(names))),
                    (page.end, moved_at, *names, after),
                )
                if cursor.rowcount != len(names):
                    raise ProjectionConflict(
                        f"{', '.join(names)} moved past {after} elsewhere"
                    )
            with db.batched(cursor):
                db.for_a_page(cursor)
                for view in self.views:
                    if (statements := folded.get(view.name)) is not None:
                        run(cursor, statements)
                    elif events := self._events_for(view, positions[view.name], page):
                        view.apply_page(cursor, db, events)
                db.announce_progress(cursor, [v.name for v in self.views], page.end)

    def catch_up(
        self, stop: int | None = None, progress: Callable[[int], None] | None = None
    ) -> int:
        """Apply pages until the log's end (or `stop`); returns the final position.

        Three pages are in hand at once, each in a thread of its own: the next
        but one is read and decoded, the next is folded into its statements (for
        the views that fold without reading), and this one is written. The
        database writes one page while Python prepares the others.
        """
        positions = self.positions()
        position = min(positions.values())
        if stop is not None and position >= stop:
            return position
        with (
            ThreadPoolExecutor(1, thread_name_prefix="read-ahead") as reading,
            ThreadPoolExecutor(1, thread_name_prefix="page-writer") as writing,
        ):
            next_page = reading.submit(self._read_page, position, stop)
            written: Future[int] | None = None
            while (page := next_page.result()) is not None:
                if stop is None or page.end < stop:
                    next_page = reading.submit(self._read_page, page.end, stop)
                else:
                    next_page = _done(None)
                folded = self._fold_ahead(positions, page)
                # One page written at a time, in order: this one starts once
                # the page before has committed.
                if written is not None:
                    self._committed(written, progress)
                written = writing.submit(self._written, positions, page, folded)
                positions = dict.fromkeys(positions, page.end)
            return position if written is None else self._committed(written, progress)

    def _written(
        self, positions: dict[str, int], page: _Page, folded: _FoldedAhead
    ) -> int:
        self._apply(positions, page, folded)
        return page.end

    @staticmethod
    def _committed(written: Future[int], progress: Callable[[int], None] | None) -> int:
        """The position a page's write reached, once committed (its error, if
        it failed), told to `progress`."""
        position = written.result()
        if progress is not None:
            progress(position)
        return position


# The statements of a page folded ahead of its transaction, by view.
_FoldedAhead = dict[str, list[Statement]]


@dataclass(frozen=True)
class _Page:
    """Decoded events of the views' topics, and the position the page ends at."""

    events: list[tuple[int, str, Any]]
    end: int


def _done(result: T) -> Future[T]:
    done: Future[T] = Future()
    done.set_result(result)
    return done
