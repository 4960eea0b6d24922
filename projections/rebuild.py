"""Rebuilding and verifying a view from the event log, beside the live one.

A view is rebuilt into a scratch place (a file beside the SQLite store, a schema
beside the PostgreSQL one) while the live tables keep answering; then one
transaction replaces the live rows and moves the view's position, so readers
see the old view or the new one, never half of one. Interrupted before the
switch, nothing has changed; the next run starts the scratch place afresh. A
live projector that had moved further notices the position moved under it and
re-applies from there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, Mapper

from projections.database import ViewDatabase
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
    view: View,
    label: str,
    *,
    stop: int | None = None,
    progress: Progress | None = None,
) -> tuple[ViewDatabase, Projector]:
    """A fresh copy of `view` in a scratch place, projected up to `stop` or the end."""
    scratch = live.scratch(f"{label}_{view.name}")
    try:
        projector = Projector(recorder, mapper, scratch, view)
        projector.create_tables()
        projector.catch_up(stop=stop, progress=progress)
    except BaseException:
        scratch.discard()
        raise
    return scratch, projector


def rebuild(
    recorder: ApplicationRecorder,
    mapper: Mapper[Any],
    live: ViewDatabase,
    view: View,
    progress: Progress | None = None,
) -> int:
    """Rebuild `view` beside the live one, then switch it in; returns its position."""
    scratch, projector = build_beside(
        recorder, mapper, live, view, "rebuild", progress=progress
    )
    try:
        # Catch up once more just before switching, so little is re-applied after.
        position = projector.catch_up(progress=progress)
        with live.attached(scratch), live.writing() as cursor:
            # The tracking row first: it is what a live projector locks first too,
            # so the two take turns instead of interleaving their rows.
            set_position(cursor, live, view.name, position)
            live.copy_tables_from(scratch, view.layout, cursor)
            live.announce_progress(cursor)
    finally:
        scratch.discard()
    return position


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
