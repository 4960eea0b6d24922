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
from service.bootstrap import composed
from service.config import Config, ConfigError


def register(commands: Any) -> None:
    events = command_group(
        commands,
        "events",
        help="the event log as JSON lines: export and import",
        description="The event log, the only source of truth, as JSON lines.",
    )
    _export_arguments(action(events, "export", export_command))
    _import_arguments(action(events, "import", import_command))


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--after",
        type=_notification_id,
        default=0,
        metavar="ID",
        help="only events after this notification id",
    )
    parser.add_argument(
        "--tenant",
        dest="project",
        metavar="T",
        help="only events concerning project T: its orders (as source or "
        "destination), and its servers while it owns them",
    )
    parser.add_argument(
        "--output",
        "-o",
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
        records = export_events(root.store.app, after=args.after, project=args.project)
        if args.output is None:
            return _to_standard_output(records)
        with _replaced(args.output) as file:
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


@contextmanager
def _replaced(path: Path) -> Iterator[TextIO]:
    """A file that replaces `path` only once completely written."""
    try:
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".partial"
        )
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            yield file
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def import_command(config: Config, args: argparse.Namespace) -> int:
    """load an exported event log into an empty store

    Load a whole exported event log into an EMPTY store, then bring the views up
    to date. The file is checked completely before anything is written: a bad
    line refuses the whole file. Exports made with --after or --tenant are not
    whole logs and are refused.
    """
    with _input_file(args.file) as path, composed(config) as root:
        imported = import_events(root.store, path, send_mail=args.send_mail)
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
