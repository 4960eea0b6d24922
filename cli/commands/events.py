"""`pm-order events export|import`: the event log as JSON lines, out and in."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from cli.arguments import action, command_group
from cli.event_archive import export_events, import_events
from cli.grammar import project_option
from cli.output_file import replaced
from cli.progress import Progress, Silent, on_terminal
from cli.store_path import composed
from cli.terminal import is_terminal
from service.config import Config


def register(commands: Any) -> None:
    events = command_group(
        commands,
        "events",
        help="the event log as JSON lines: export and import",
        description="The event log, the only source of truth, as JSON lines.",
    )
    exporting = action(events, "export", export_command)
    exporting.set_defaults(own_output=True)  # --output: written by the command
    _export_arguments(exporting)
    _import_arguments(action(events, "import", import_command))


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--after",
        type=_notification_id,
        default=0,
        metavar="ID",
        help="only events after this notification id",
    )
    project_option(
        parser,
        "only events concerning PROJECT: its orders (as source or destination), "
        "and its servers while it owns them",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="write to FILE (complete or not at all) instead of standard output",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="JSON lines (the only format; accepted for symmetry)",
    )


def _import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file",
        nargs="?",
        type=Path,
        metavar="FILE",
        help="the JSON lines file (default: standard input)",
    )
    parser.add_argument(
        "--send-mail",
        action="store_true",
        help="let the mailer send the imported events' mail again (by default it "
        "is recorded as delivered by the deployment the log comes from)",
    )
    parser.add_argument("--json", action="store_true", help="the summary as JSON")


def export_command(config: Config, args: argparse.Namespace) -> int:
    """write the event log as JSON lines, one decoded event per line

    Write the event log as JSON lines, in log order: id (notification id),
    aggregate_id, aggregate_type, version, time (recorded, UTC), type, topic and
    data (the event's fields).
    """
    with composed(config) as root:
        head = root.store.app.recorder.max_notification_id() or 0
        records = export_events(root.store.app, after=args.after, project=args.project)
        # The bar goes with the output to a file or a pipe, not between the
        # lines of an export written to the terminal itself.
        shown = args.output is not None or not is_terminal(sys.stdout)
        bar = (
            on_terminal(config.language.gettext("exporting"), max(head - args.after, 0))
            if shown
            else Silent()
        )
        records = _counted(records, bar, args.after)
        if args.output is None:
            return _to_standard_output(records)
        with replaced(args.output) as file:
            count, last = _write(records, file)
    print(
        config.language.ngettext(
            "{count} event written to {file} (last notification id {last})",
            "{count} events written to {file} (last notification id {last})",
            count,
            file=args.output,
            last=last,
        )
    )
    return 0


def _counted(
    records: Iterator[dict[str, Any]], bar: Progress, after: int
) -> Iterator[dict[str, Any]]:
    """`records`, moving `bar` by their notification ids as they go by."""
    last = after
    for record in records:
        last = record["id"]
        if last % 100 == 0:
            bar.update(last - after)
        yield record
    bar.update(last - after)
    bar.close()


def _write(records: Iterator[dict[str, Any]], file: TextIO) -> tuple[int, int]:
    count, last = 0, 0
    for record in records:
        file.write(json.dumps(record, ensure_ascii=False) + "\n")
        count, last = count + 1, record["id"]
    file.flush()
    return count, last


def _to_standard_output(records: Iterator[dict[str, Any]]) -> int:
    try:
        _write(records, sys.stdout)
    except BrokenPipeError:
        # The reader left (`| head`): stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


def import_command(config: Config, args: argparse.Namespace) -> int:
    """load an exported event log into an empty store

    Load a whole exported event log into an EMPTY store, then bring the views up
    to date. The file is checked completely before anything is written: a bad
    line refuses the whole file. Exports made with --after or --project are not
    whole logs and are refused.
    """
    _ = config.language.gettext
    names = {"checking": _("checking"), "writing": _("writing")}
    with (
        _input_file(args.file) as path,
        composed(config, creates_store=True) as root,
    ):
        imported = import_events(
            root.store,
            path,
            send_mail=args.send_mail,
            progress=lambda phase, total: on_terminal(names[phase], total),
        )
    if args.json:
        print(
            json.dumps(
                {
                    "events": imported.events,
                    "aggregates": imported.aggregates,
                    "position": imported.position,
                    "mail_marked_sent": imported.mail_marked_sent,
                }
            )
        )
        return 0
    language = config.language
    print(
        language.ngettext(
            "{count} event of {aggregates} orders and servers imported; "
            "the log is at {position}; views up to date",
            "{count} events of {aggregates} orders and servers imported; "
            "the log is at {position}; views up to date",
            imported.events,
            aggregates=imported.aggregates,
            position=imported.position,
        )
    )
    if imported.mail_marked_sent:
        print(
            language.ngettext(
                "{count} mail message recorded as already delivered "
                "(use --send-mail to send it again)",
                "{count} mail messages recorded as already delivered "
                "(use --send-mail to send them again)",
                imported.mail_marked_sent,
            )
        )
    return 0


@contextmanager
def _input_file(path: Path | None) -> Iterator[Path]:
    """The file to import; standard input is kept in a temporary file, because
    the import reads its input twice (check everything, then write)."""
    if path is not None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="pm-order-import-") as folder:
        spooled = Path(folder) / "events.jsonl"
        with spooled.open("wb") as file:
            shutil.copyfileobj(sys.stdin.buffer, file)
        yield spooled


def _notification_id(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a notification id (0 or more)"
        )
    return int(text)
