"""The pm-order command line: serve the API, manage the server inventory."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from domain.exceptions import DomainError
from domain.service import OrderService
from pm_order.config import Config, ConfigError, check_database_url
from pm_order.store import Store, open_store
from projections.projector import ProjectionConflict

log = logging.getLogger("pm_order")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = Config.from_env()
        if getattr(args, "database_url", None):
            config = _replace(
                config, database_url=check_database_url(args.database_url)
            )
        return int(args.command(config, args))
    except ConfigError as error:
        print(f"pm-order: {error}", file=sys.stderr)
        return 2
    except DomainError as error:
        print(f"pm-order: {error}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pm-order",
        description="Transfer orders of physical servers between projects.",
    )
    parser.add_argument(
        "--database-url",
        help="overrides PM_ORDER_DATABASE_URL (sqlite:///PATH or postgresql://...)",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="serve the API and run the background work"
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--api-only",
        action="store_true",
        help="leave the background work to `pm-order worker` processes",
    )
    serve.set_defaults(command=serve_command)

    worker = commands.add_parser(
        "worker", help="run the background work only (projections), with standbys"
    )
    worker.set_defaults(command=worker_command)

    db = commands.add_parser("db", help="the database schema")
    db_commands = db.add_subparsers(required=True, metavar="ACTION")
    upgrade = db_commands.add_parser(
        "upgrade", help="create or upgrade every table (event store and read models)"
    )
    upgrade.set_defaults(command=upgrade_database)

    machines = commands.add_parser("machines", help="the server inventory")
    machine_commands = machines.add_subparsers(required=True, metavar="ACTION")
    load = machine_commands.add_parser(
        "import", help="register servers from a CSV file with header snid,project_id"
    )
    load.add_argument("file", type=Path)
    load.set_defaults(command=import_machines)
    listing = machine_commands.add_parser("list", help="list servers and their owners")
    listing.add_argument("--project", help="only this project's servers")
    listing.add_argument("--json", action="store_true", help="JSON lines")
    listing.set_defaults(command=list_machines)
    return parser


def serve_command(config: Config, args: argparse.Namespace) -> int:
    from aiohttp import web

    from api.app import create_app
    from api.auth import authenticator_for

    app = create_app(
        config, authenticator=authenticator_for(config), background=not args.api_only
    )
    log.info(
        "serving on http://%s:%d%s%s",
        args.host,
        args.port,
        config.api_prefix,
        " (API only)" if args.api_only else "",
    )
    web.run_app(app, host=args.host, port=args.port, print=None)
    return 0


def worker_command(config: Config, args: argparse.Namespace) -> int:
    import asyncio

    from pm_order.worker import work

    asyncio.run(work(config))
    return 0


def upgrade_database(config: Config, args: argparse.Namespace) -> int:
    store = open_store(config.database_url, create_tables=True)
    store.close()
    print("tables are up to date")
    return 0


def import_machines(config: Config, args: argparse.Namespace) -> int:
    rows = _read_inventory(args.file)
    with _opened(config) as store:
        written = OrderService(store.app).register_servers(rows)
        _catch_up(store)
    print(f"{len(rows)} rows read; the log is at {written.position}")
    return 0


def list_machines(config: Config, args: argparse.Namespace) -> int:
    with _opened(config) as store:
        _catch_up(store)
        servers = store.server_ownership.servers(store.views, args.project)
    if args.json:
        for server in servers:
            print(
                json.dumps(
                    {
                        "snid": server.snid,
                        "project_id": server.project_id,
                        "order_id": server.order_id,
                    }
                )
            )
        return 0
    print(f"{'SNID':<24} {'PROJECT':<24} ORDER")
    for server in servers:
        held = "" if server.order_id is None else str(server.order_id)
        print(f"{server.snid:<24} {server.project_id:<24} {held}")
    return 0


def _read_inventory(path: Path) -> list[tuple[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as file:
            reader = csv.DictReader(file)
            if reader.fieldnames is None or [f.strip() for f in reader.fieldnames] != [
                "snid",
                "project_id",
            ]:
                raise ConfigError(f"{path}: the first line must be 'snid,project_id'")
            rows = []
            for line, row in enumerate(reader, start=2):
                snid, project = (
                    (row.get("snid") or "").strip(),
                    (row.get("project_id") or "").strip(),
                )
                if not snid or not project or None in row:
                    raise ConfigError(f"{path}:{line}: expected 'snid,project_id'")
                rows.append((snid, project))
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"{path}: not a UTF-8 CSV file ({error})") from None
    return rows


class _opened:
    def __init__(self, config: Config) -> None:
        self.config = config

    def __enter__(self) -> Store:
        self.store = open_store(
            self.config.database_url, create_tables=self.config.create_tables
        )
        return self.store

    def __exit__(self, *exc: object) -> None:
        self.store.close()


def _catch_up(store: Store) -> None:
    """Bring the views up to date here, in case no server is running."""
    for projector in store.projectors():
        for _ in range(10):
            try:
                projector.catch_up()
                break
            except ProjectionConflict:
                continue  # a running server moved it first: read the position again


def _replace(config: Config, **changes: object) -> Config:
    from dataclasses import replace

    return replace(config, **changes)  # type: ignore[arg-type]
