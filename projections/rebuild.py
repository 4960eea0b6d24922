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

import multiprocessing
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
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
    scratch = live.scratch(_label(label, views))
    try:
        projector = Projector(recorder, mapper, scratch, views)
        projector.create_tables()
        projector.catch_up(stop=stop, progress=progress)
    except BaseException:
        scratch.discard()
        raise
    return scratch, projector


# How another process opens the event log to read it: its recorder, its mapper,
# and how to close them (picklable).
OpenLog = Callable[[], tuple[ApplicationRecorder, Mapper[Any], Callable[[], None]]]

# A switch that did not get its locks (readers were in the way) catches up and
# tries again, this many times at most.
SWITCH_ATTEMPTS: Final = 20


def rebuild(
    recorder: ApplicationRecorder,
    mapper: Mapper[Any],
    live: ViewDatabase,
    views: View | Sequence[View],
    progress: Progress | None = None,
    *,
    processes: int = 1,
    open_log: OpenLog | None = None,
) -> int:
    """Rebuild `views` beside the live ones, then switch them in together;
    returns the position they are switched in at.

    With `processes` above one (and `open_log`), where the database lets several
    processes build at once, the views are shared among that many: each reads
    the log itself and folds its share into a scratch place of its own, a core
    each. This process builds the first share (told to `progress`).
    """
    views = list(views) if isinstance(views, Sequence) else [views]
    if not (live.builds_in_parallel and open_log is not None):
        processes = 1
    shares = [views[i :: min(processes, len(views))] for i in range(processes)]
    shares = [share for share in shares if share]
    scratches: list[ViewDatabase] = []
    try:
        projectors = []
        for share in shares:
            scratches.append(live.scratch(_label("rebuild", share)))
            projectors.append(Projector(recorder, mapper, scratches[-1], share))
            projectors[-1].create_tables()
        with _processes(len(shares) - 1) as pool:
            elsewhere = [
                pool.apply_async(
                    _caught_up_elsewhere, (open_log, scratch.opener(), share)
                )
                for scratch, share in zip(scratches[1:], shares[1:], strict=True)
            ]
            projectors[0].catch_up(progress=progress)
            for built in elsewhere:
                built.get()
        for scratch, share in zip(scratches, shares, strict=True):
            # Statistics for the planner, made before the tables serve (the live
            # tables' go with them; nothing else may refresh them soon).
            scratch.analyze([table.name for view in share for table in view.layout])
        for attempt in range(SWITCH_ATTEMPTS):
            try:
                return _switched_in(live, scratches, projectors, progress)
            except SwitchBusy:
                if attempt + 1 == SWITCH_ATTEMPTS:
                    raise
    finally:
        for scratch in scratches:
            scratch.discard()
    raise AssertionError("unreachable")


def _switched_in(
    live: ViewDatabase,
    scratches: list[ViewDatabase],
    projectors: list[Projector],
    progress: Progress | None,
) -> int:
    """Catch every share up once more (little is then re-applied after) and put
    the scratch tables in place of the live ones, in one transaction."""
    positions = [
        projector.catch_up(progress=progress if n == 0 else None)
        for n, projector in enumerate(projectors)
    ]
    with live.switching(scratches) as cursor:
        # The tracking rows first: they are what a live projector locks first
        # too, so the two take turns instead of interleaving their rows.
        for projector, position in zip(projectors, positions, strict=True):
            for view in projector.views:
                set_position(cursor, live, view.name, position)
        for scratch, projector in zip(scratches, projectors, strict=True):
            tables = [table for view in projector.views for table in view.layout]
            live.switch_tables_from(scratch, tables, cursor)
        live.announce_progress(cursor)
    return max(positions)


def _label(label: str, views: Sequence[View]) -> str:
    return "_".join([label, *(view.name for view in views)])


def _processes(count: int) -> AbstractContextManager[Any]:
    """`count` processes of a pool (stopped on leaving, whatever they are doing),
    started afresh (spawn: nothing of this process's connections goes with them)."""
    if count == 0:
        return nullcontext()
    return multiprocessing.get_context("spawn").Pool(count)


def _caught_up_elsewhere(
    open_log: OpenLog, open_scratch: Callable[[], ViewDatabase], views: list[View]
) -> int:
    """In a process of a pool: `views` (their tables made) caught up in their
    scratch place; their position."""
    recorder, mapper, close = open_log()
    scratch = open_scratch()
    try:
        return Projector(recorder, mapper, scratch, views).catch_up()
    finally:
        scratch.close()
        close()


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
