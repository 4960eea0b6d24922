"""`pm-order machines import|list`: the server inventory."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from cli.grammar import project_option
from cli.progress import Steps
from cli.store_path import composed
from cli.terminal import paint
from language import ljust
from service.config import Config, ConfigError


def register(commands: Any) -> Any:
    """Adds `machines` (the command's word for servers); returns its
    sub-commands, for other groups to extend."""
    inventory = commands.add_parser(
        "machines",
        help="the server inventory",
        description="The server inventory: register servers from a CSV file, list "
        "them with their owners, or show one server's history.",
    )
    actions = inventory.add_subparsers(required=True, metavar="ACTION")
    load = actions.add_parser(
        "import",
        help="register servers from a CSV file with header snid,project_id",
        description="Register the servers of a CSV file whose first line is "
        "snid,project_id. Importing the same file again changes nothing (it says "
        "0 new); a row that names a known server under another project refuses "
        "the whole file. Ends with a summary: rows read, servers new, known.",
    )
    load.add_argument("file", type=Path)
    load.add_argument(
        "--new-only",
        action="store_true",
        help="register only the servers the store does not know yet, and leave "
        "the known ones as they are, whoever owns them now (`make run` imports "
        "the demo inventory so, every time)",
    )
    load.set_defaults(command=import_servers)
    listing = actions.add_parser("list", help="list servers and their owners")
    project_option(listing, "only this project's servers")
    listing.add_argument("--json", action="store_true", help="JSON lines")
    listing.set_defaults(command=list_servers)
    return actions


def import_servers(config: Config, args: argparse.Namespace) -> int:
    """Says how many rows were read, how many servers were new (registered)
    and how many known already; steps shown as they go on a terminal."""
    _ = config.language.gettext
    steps = Steps()
    steps.step(_("reading {file}", file=args.file))
    rows = read_inventory(args.file)
    with composed(config, creates_store=True) as root:
        steps.step(_("looking up the servers known already"))
        root.store.catch_up()
        views = root.store.views
        known = {s.snid for s in root.store.server_ownership.servers(views, None)}
        new = [row for row in rows if row[0] not in known]
        wanted = new if args.new_only else rows
        steps.step(_("registering {count} servers", count=len(wanted)))
        written = root.service.register_servers(wanted)
        steps.step(_("updating the views"))
        root.store.catch_up()
        root.store.after_bulk_write(len(wanted))
    steps.done()
    if args.json:
        summary = {
            "rows": len(rows),
            "new": len(new),
            "known": len(rows) - len(new),
            "position": written.position,
        }
        print(json.dumps(summary))
        return 0
    print(
        config.language.ngettext(
            "{count} row read; the log is at {position}",
            "{count} rows read; the log is at {position}",
            len(rows),
            position=written.position,
        )
    )
    print(
        paint(
            _(
                "{new} new servers registered, {known} known already",
                new=len(new),
                known=len(rows) - len(new),
            ),
            "green",
            sys.stdout,
        )
    )
    if args.new_only and (skipped := len(rows) - len(new)):
        print(
            _(
                "{count} of them name servers known already, left as they are",
                count=skipped,
            )
        )
    return 0


def list_servers(config: Config, args: argparse.Namespace) -> int:
    with composed(config) as root:
        root.store.catch_up()
        servers = root.store.server_ownership.servers(root.store.views, args.project)
    if args.json:
        for server in servers:
            print(
                json.dumps(
                    {
                        "snid": server.snid,
                        "project_id": server.project,
                        "order_id": server.order_id,
                    }
                )
            )
        return 0
    _ = config.language.gettext
    snid, project, order = _("SNID"), _("PROJECT"), _("ORDER")
    print(f"{ljust(snid, 24)} {ljust(project, 24)} {order}")
    for server in servers:
        held = "" if server.order_id is None else str(server.order_id)
        print(f"{ljust(server.snid, 24)} {ljust(server.project, 24)} {held}")
    return 0


def read_inventory(path: Path) -> list[tuple[str, str]]:
    """The (snid, project) rows of an inventory CSV file."""
    try:
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            header = [f.strip() for f in reader.fieldnames or []]
            if header != ["snid", "project_id"]:
                raise ConfigError(f"{path}: the first line must be 'snid,project_id'")
            rows = []
            for line, row in enumerate(reader, start=2):
                snid = (row.get("snid") or "").strip()
                project = (row.get("project_id") or "").strip()
                if not snid or not project or None in row:
                    raise ConfigError(f"{path}:{line}: expected 'snid,project_id'")
                rows.append((snid, project))
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"{path}: not a UTF-8 CSV file ({error})") from None
    return rows
