"""`pm-order serve`, `pm-order worker`, `pm-order db upgrade`: running the service."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from service.config import Config
from service.store import open_store

log = logging.getLogger("pm_order")


def register(commands: Any) -> None:
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
        "worker",
        help="run only the background work (projections, warnings, mail)",
    )
    worker.set_defaults(command=worker_command)

    db = commands.add_parser("db", help="the database schema")
    db_commands = db.add_subparsers(required=True, metavar="ACTION")
    upgrade = db_commands.add_parser(
        "upgrade", help="create or upgrade every table (event store and read models)"
    )
    upgrade.set_defaults(command=upgrade_database)


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
    from service.worker import work

    asyncio.run(work(config))
    return 0


def upgrade_database(config: Config, args: argparse.Namespace) -> int:
    store = open_store(config.database_url, create_tables=True)
    store.close()
    print("tables are up to date")
    return 0
