"""`pm-order projections status|rebuild|verify`: the read models and the log."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from datetime import datetime, tzinfo
from typing import Any, Final

from cli.progress import ProgressBar, ProgressLines, Steps, progress_for
from cli.store_path import composed
from language import Language, ljust, rjust, width
from notifications.backlog import backlog
from projections import rebuild as rebuilding
from projections import view_status
from projections.generations import generations
from projections.mail_outbox import MailOutbox
from projections.order_lists import OrderLists
from projections.reports import Reports
from projections.server_ownership import ServerOwnership
from projections.view import View
from service.config import Config, ConfigError
from service.store import Store, open_event_log

# Every view, by name, in the order they are projected and shown.
__all__ = ["ProgressBar", "ProgressLines", "progress_for"]  # (their home was here)

VIEW_NAMES: Final = tuple(
    view.name for view in (OrderLists, ServerOwnership, MailOutbox, Reports)
)
# Processes a rebuild shares the views among (PostgreSQL): two folds at once
# rebuilt 920,000 events in 32 s against 40 s in one (bench/README.md).
REBUILD_PROCESSES: Final = 2
# How much lower than the serving processes' the rebuild's CPU priority is.
REBUILD_NICENESS: Final = 10
_VIEW_HELP: Final = f"one view: {', '.join(VIEW_NAMES)} (default: every view)"


def register(commands: Any) -> None:
    group = commands.add_parser(
        "projections",
        help="the read models (views)",
        description="The read models (views) the API answers from, kept from the "
        "event log by projectors: how far each is, rebuild one from the events, "
        "or verify it against a recomputation.",
    )
    actions = group.add_subparsers(required=True, metavar="ACTION")
    status = actions.add_parser(
        "status", help="each view's position, the log's head, the lag, the last move"
    )
    status.add_argument("--json", action="store_true", help="JSON lines")
    status.set_defaults(command=show_status)
    listed = actions.add_parser(
        "generations",
        help="the generations of the read models, and which this release serves",
        description="Every generation of the read models in the database: the "
        "release that made it, when, whether it has caught up with the event log, "
        "when a process serving from it was last seen. `pm-order db "
        "finish-upgrade` drops those no process uses any more.",
    )
    listed.add_argument("--json", action="store_true", help="JSON lines")
    listed.set_defaults(command=show_generations)
    rebuild = actions.add_parser(
        "rebuild",
        help="rebuild views from the events into fresh tables, then switch them in",
    )
    rebuild.add_argument("name", nargs="?", choices=VIEW_NAMES, help=_VIEW_HELP)
    rebuild.add_argument(
        "--processes",
        type=int,
        default=REBUILD_PROCESSES,
        metavar="N",
        help="PostgreSQL: share the views among N processes building at once, "
        f"a core each (default {REBUILD_PROCESSES}; 1: this one only). SQLite: one",
    )
    rebuild.set_defaults(command=rebuild_views)
    verify = actions.add_parser(
        "verify", help="recompute views from the events and compare with the live ones"
    )
    verify.add_argument("name", nargs="?", choices=VIEW_NAMES, help=_VIEW_HELP)
    verify.add_argument("--json", action="store_true", help="differences as JSON")
    verify.set_defaults(command=verify_views)


def show_status(config: Config, args: argparse.Namespace) -> int:
    with composed(config) as root:
        store = root.store
        rows = [
            view_status.status(store.app.recorder, store.app.mapper, store.views, view)
            for view in store.all_views
        ]
        # The announcements on the bus, once published: behind like a view.
        if announced := backlog(store.app.recorder, store.app.mapper, store.views):
            rows.append(announced)
    if args.json:
        for row in rows:
            moved_at = _iso(row.moved_at, config.timezone)
            print(json.dumps({**row.__dict__, "moved_at": moved_at}))
        return 0
    language = config.language
    _ = language.gettext
    view, position, head = _("VIEW"), _("POSITION"), _("HEAD")
    lag, lag_seconds, moved_at = _("LAG"), _("LAG (s)"), _("MOVED AT")
    print(
        f"{ljust(view, 18)} {rjust(position, 9)} {rjust(head, 9)} "
        f"{rjust(lag, 7)} {rjust(lag_seconds, 8)}  {moved_at}"
    )
    for row in rows:
        moved = (
            language.moment(datetime.fromtimestamp(row.moved_at, config.timezone))
            if row.moved_at is not None
            else _("never")
        )
        print(
            f"{row.name:<18} {row.position:>9} {row.head:>9} {row.lag_events:>7} "
            f"{row.lag_seconds:>8.1f}  {moved}"
        )
    return 0


def show_generations(config: Config, args: argparse.Namespace) -> int:
    with composed(config) as root:
        store = root.store
        found = generations(store.views)
        current = store.generation
    zone = config.timezone
    if args.json:
        for made in found:
            print(
                json.dumps(
                    {
                        "generation": made.name,
                        "release": made.release,
                        "this_release": made.name == current,
                        "created_at": _iso(made.created_at, zone),
                        "caught_up_at": _iso(made.caught_up_at, zone),
                        "seen_at": _iso(made.seen_at, zone),
                    }
                )
            )
        return 0
    language = config.language
    _ = language.gettext

    def moment(seconds: float | None) -> str:
        if seconds is None:
            return _("not yet")
        return language.moment(datetime.fromtimestamp(seconds, zone))

    name, release = _("GENERATION"), _("RELEASE")
    caught_up, seen = _("CAUGHT UP"), _("LAST SEEN")
    print(f"{ljust(name, 12)} {ljust(release, 9)} {ljust(caught_up, 20)} {seen}")
    for made in found:
        mark = " *" if made.name == current else ""
        print(
            f"{made.name + mark:<12} {made.release:<9} "
            f"{moment(made.caught_up_at):<20} {moment(made.seen_at)}"
        )
    return 0


def rebuild_views(config: Config, args: argparse.Namespace) -> int:
    """Every view chosen is rebuilt in one pass over the log and switched in
    with the others; if that fails, each on its own, so that one view that cannot
    be rebuilt stops none of the others."""
    _ = config.language.gettext
    if args.processes < 1:
        raise ConfigError(f"--processes {args.processes}: must be 1 or more")
    # Serving processes on the same machine come first: the rebuild (and the
    # processes it starts, which inherit this) takes the CPU they leave.
    os.nice(REBUILD_NICENESS)
    # How a process that builds a share of the views opens the event log.
    open_log = functools.partial(open_event_log, config.database_url)
    with composed(config) as root:
        store = root.store
        views = _chosen(store, args.name)
        head = store.app.recorder.max_notification_id() or 0
        try:
            together = _rebuilt(
                store, views, head, config.language, args.processes, open_log
            )
        except KeyboardInterrupt:
            return 130
        if together is not None:
            rebuilt = dict.fromkeys((view.name for view in views), together)
        else:
            if len(views) > 1:
                print(_("rebuilding the views one by one"), file=sys.stderr)
            rebuilt = {}
            for view in views:
                try:
                    position = _rebuilt(store, [view], head, config.language)
                except KeyboardInterrupt:
                    return 130
                if position is not None:
                    rebuilt[view.name] = position
        for name, position in rebuilt.items():
            if args.json:
                print(json.dumps({"view": name, "position": position}))
            else:
                print(
                    _(
                        "{view}: rebuilt up to {position} and switched in",
                        view=name,
                        position=position,
                    )
                )
    return 0 if len(rebuilt) == len(views) else 1


def _rebuilt(
    store: Store,
    views: list[View],
    head: int,
    language: Language,
    processes: int = 1,
    open_log: rebuilding.OpenLog | None = None,
) -> int | None:
    """`views` rebuilt and switched in: their position; None if that failed
    (said on stderr, nothing switched). Interrupted: said, then raised again."""
    _ = language.gettext
    name = "+".join(view.name for view in views)
    bar = progress_for(name, head, sys.stderr)
    try:
        position = rebuilding.rebuild(
            store.app.recorder,
            store.app.mapper,
            store.views,
            views,
            bar.update,
            processes=processes,
            open_log=open_log,
        )
    except KeyboardInterrupt:
        bar.close()
        print(_("{view}: interrupted; nothing switched", view=name), file=sys.stderr)
        raise
    except Exception as error:  # noqa: BLE001 - shown, then the next view
        bar.close()
        reason = f"{type(error).__name__}: {error}"
        print(
            _(
                "{view}: rebuild failed, nothing switched: {error}",
                view=name,
                error=reason,
            ),
            file=sys.stderr,
        )
        return None
    bar.close()
    return position


def verify_views(config: Config, args: argparse.Namespace) -> int:
    _ = config.language.gettext
    equal = True
    report: dict[str, Any] = {}
    with composed(config) as root:
        store = root.store
        steps = Steps()
        for view in _chosen(store, args.name):
            steps.step(_("{view}: recomputing from the events", view=view.name))
            differences = rebuilding.verify(
                store.app.recorder, store.app.mapper, store.views, view
            )
            steps.done()
            report[view.name] = [d.__dict__ for d in differences]
            equal = equal and not differences
            if not args.json:
                _print_differences(view.name, differences, config.language)
    if args.json:
        print(json.dumps(report, default=str))
    return 0 if equal else 1


def _print_differences(
    name: str, differences: list[rebuilding.Difference], language: Language
) -> None:
    _ = language.gettext
    if not differences:
        print(_("{view}: equal to a recomputation from the events", view=name))
        return
    print(_("{view}: DIFFERS from a recomputation from the events", view=name))
    missing, unexpected = _("missing"), _("unexpected")
    widest = max(width(missing), width(unexpected))
    for difference in differences:
        for row in difference.missing:
            print(f"  {difference.table}: {ljust(missing, widest)} {row}")
        for row in difference.unexpected:
            print(f"  {difference.table}: {ljust(unexpected, widest)} {row}")


def _chosen(store: Store, name: str | None) -> list[View]:
    views = [v for v in store.all_views if name is None or v.name == name]
    if name is not None and not views:
        known = ", ".join(v.name for v in store.all_views)
        raise ConfigError(f"no view {name!r} to do that with; choose one of: {known}")
    return views


def _iso(seconds: float | None, zone: tzinfo) -> str | None:
    """ISO-8601 with the zone's offset, as the other commands' JSON times; None:
    never moved."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, zone).isoformat(timespec="milliseconds")
