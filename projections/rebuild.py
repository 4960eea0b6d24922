"""Rebuilding and verifying views from the event log, beside the live ones.

Views are rebuilt into a scratch place (a file beside the SQLite store, a schema
beside the PostgreSQL one) while the live tables keep answering, in one pass
over the log for them all (read and decoded once); then one transaction puts
the new tables in place of the live ones and moves the views' positions, so
readers see the old views or the new, never half of one. Interrupted before the
switch, nothing has changed; the next run starts the scratch place afresh. A
live projector that had moved further notices the position moved under it and
re-applies from there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from eventsourcing.persistence import ApplicationRecorder, Mapper

from projections.database import SwitchBusy, ViewDatabase
from projections.projector import (
    Contents,
    Projector,
    position_in,
    read_contents,
    set_position,
    tracked_position,
)
from projections.view import View

Progress = Callable[[int], None]


def build_beside(
    recorder: ApplicationRecorder,
    mapper: Mapper[Any],
    live: ViewDatabase,
    views: View | Sequence[View],
    label: str,
    *,
    stop: int | None = None,
    progress: Progress | None = None,
) -> tuple[ViewDatabase, Projector]:
    """Fresh copies of `views` in a scratch place, projected up to `stop` or the
    end, in one pass over the log."""
    views = list(views) if isinstance(views, Sequence) else [views]
    scratch = live.scratch("_".join([label, *(v.name for v in views)]))
    try:
        projector = Projector(recorder, mapper, scratch, views)
        projector.create_tables()
        projector.catch_up(stop=stop, progress=progress)
    except BaseException:
        scratch.discard()
        raise
    return scratch, projector


# A switch that did not get its locks (readers were in the way) catches up and
# tries again, this many times at most.
SWITCH_ATTEMPTS: Final = 20


def rebuild(
    recorder: ApplicationRecorder,
    mapper: Mapper[Any],
    live: ViewDatabase,
    views: View | Sequence[View],
    progress: Progress | None = None,
) -> int:
    """Rebuild `views` beside the live ones, then switch them in together;
    returns their position."""
    views = list(views) if isinstance(views, Sequence) else [views]
    scratch, projector = build_beside(
        recorder, mapper, live, views, "rebuild", progress=progress
    )
    try:
        tables = [table for view in views for table in view.layout]
        # Statistics for the planner, made before the tables serve (the live
        # tables' go with them; nothing else may refresh them soon).
        scratch.analyze([table.name for table in tables])
        for attempt in range(SWITCH_ATTEMPTS):
            # Catch up once more just before switching, so little is re-applied after.
            position = projector.catch_up(progress=progress)
            try:
                with live.switching(scratch) as cursor:
                    # The tracking rows first: they are what a live projector
                    # locks first too, so the two take turns instead of
                    # interleaving their rows.
                    for view in views:
                        set_position(cursor, live, view.name, position)
                    live.switch_tables_from(scratch, tables, cursor)
                    live.announce_progress(cursor)
            except SwitchBusy:
                if attempt + 1 == SWITCH_ATTEMPTS:
                    raise
                continue
            return position
    finally:
        scratch.discard()
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Difference:
    """Rows of one table that the live view lacks, or has but should not."""

    table: str
    missing: list[tuple[Any, ...]]
    unexpected: list[tuple[Any, ...]]


def verify(
    recorder: ApplicationRecorder,
    mapper: Mapper[Any],
    live: ViewDatabase,
    view: View,
    progress: Progress | None = None,
) -> list[Difference]:
    """Recompute `view` from the events and compare it with the live one, at the
    live view's own position. Empty: they are equal."""
    position = tracked_position(live, view.name)
    scratch, projector = build_beside(
        recorder, mapper, live, view, "verify", stop=position, progress=progress
    )
    try:
        while True:
            with live.reading() as cursor:
                live_position = position_in(cursor, live, view.name)
                live_rows = read_contents(cursor, view)
            if live_position == projector.catch_up(stop=live_position):
                break
            # The live view moved meanwhile: take the recomputation as far.
        with scratch.reading() as cursor:
            computed = read_contents(cursor, view)
    finally:
        scratch.discard()
    return _differences(computed, live_rows)


def _differences(computed: Contents, live: Contents) -> list[Difference]:
    differences = []
    for table in computed:
        want, have = Counter(computed[table]), Counter(live.get(table, []))
        missing = sorted((want - have).elements(), key=repr)
        unexpected = sorted((have - want).elements(), key=repr)
        if missing or unexpected:
            differences.append(Difference(table, missing, unexpected))
    return differences
