"""`pm-order serve`, `pm-order worker`, `pm-order db upgrade`: running the service."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sqlite3
from typing import Any

import uvloop

from cli.listen_address import bind_failure, check_listen_address
from cli.store_path import check_store_path
from service.config import Config, ConfigError, parse_duration
from service.store import open_store, postgres_settings, sqlite_path

log = logging.getLogger("pm_order")


def register(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve the API and run the background work",
        description="Serve the REST API and, unless --api-only, run the background "
        "work (projectors, warning scheduler, mailer) under election. Stops in "
        "order on SIGTERM or SIGINT.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8080, help="port to listen on")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="serving processes on the port (PostgreSQL only when more than 1)",
    )
    serve.add_argument(
        "--api-only",
        action="store_true",
        help="leave the background work to `pm-order worker` processes; while "
        "none projects, writes are refused with 503 (see /readyz)",
    )
    serve.set_defaults(command=serve_command)

    worker = commands.add_parser(
        "worker",
        help="run only the background work (projections, warnings, mail)",
        description="Run the background work without serving the API: the "
        "projectors that keep the views, the warning scheduler and the mailer, each "
        "under its own election (one process leads, the others stand by). Needed "
        "beside `serve --api-only` processes. Stops in order on SIGTERM or SIGINT.",
    )
    worker.set_defaults(command=worker_command)

    db = commands.add_parser(
        "db",
        help="the database schema",
        description="The database schema: `db upgrade` creates or upgrades the "
        "tables (when PM_ORDER_CREATE_TABLES=no leaves that to a deployment step).",
    )
    db_commands = db.add_subparsers(required=True, metavar="ACTION")
    upgrade = db_commands.add_parser(
        "upgrade",
        help="create or upgrade every table (event store and read models)",
        description="Create or upgrade every table, of the event store and of the "
        "read models, then exit. Run it when deploying with "
        "PM_ORDER_CREATE_TABLES=no.",
    )
    upgrade.set_defaults(command=upgrade_database)
    finish = db_commands.add_parser(
        "finish-upgrade",
        help="drop the read models of releases no process runs any more",
        description="Finish an upgrade (or a rollback) once every process runs "
        "one release: drop the other generations of the read models whose "
        "processes were last seen longer ago than --idle and whose projector "
        "nobody runs, and release 0.1.0's read models when its projector is not "
        "running. The event log is untouched: a release started again later "
        "builds its read models anew from it.",
    )
    finish.add_argument(
        "--idle",
        default="10m",
        help="how long a generation's processes must have been gone (default 10m)",
    )
    finish.add_argument(
        "--generation",
        metavar="NAME",
        help="drop only this generation (or 0.1.0's read models): after a "
        "rollback, the newer release's own (see `projections generations`)",
    )
    finish.set_defaults(command=finish_upgrade)


def serve_command(config: Config, args: argparse.Namespace) -> int:
    check_listen_address(args.host, args.port)
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: must be 1 or more")
    if args.workers > 1 and config.database_url.startswith("sqlite:"):
        raise ConfigError(
            f"--workers {args.workers} needs PostgreSQL: the SQLite store belongs to "
            "one process (serve it with --workers 1, the default)"
        )
    if args.workers == 1:
        return _serve(config, args, reuse_port=False)
    from api.auth import authenticator_for
    from cli.supervisor import supervise

    authenticator_for(config)  # a setting the children would refuse: say it once
    return supervise(
        args.workers,
        lambda: _serve(config, args, reuse_port=True),
        config.shutdown_timeout,
    )


def _serve(config: Config, args: argparse.Namespace, *, reuse_port: bool) -> int:
    """Serve until SIGTERM/SIGINT: then stop accepting, let requests in flight
    finish (within the shutdown timeout), stop the background work, exit 0."""
    from api.app import create_app
    from api.auth import authenticator_for

    app = create_app(
        config, authenticator=authenticator_for(config), background=not args.api_only
    )
    # uvloop: the event loop's own work (polling, callbacks, transports) in C;
    # measured in bench/README.md ("uvloop"). "serving on" is logged once the
    # port is bound (_run_until_signalled).
    uvloop.run(
        _run_until_signalled(
            app,
            args.host,
            args.port,
            reuse_port=reuse_port,
            shutdown_timeout=config.shutdown_timeout,
            client_timeout=config.client_timeout,
            send_timeout=config.send_timeout,
            send_buffer_bytes=config.send_buffer_bytes,
            serving=f"http://{args.host}:{args.port}{config.api_prefix}"
            + (" (API only)" if args.api_only else ""),
        )
    )
    log.info("stopped")
    return 0


async def _run_until_signalled(
    app: Any,
    host: str,
    port: int,
    *,
    reuse_port: bool,
    shutdown_timeout: float,
    client_timeout: float,
    send_timeout: float,
    send_buffer_bytes: int,
    serving: str,
) -> None:
    """Serve `app` until SIGTERM or SIGINT, then shut down in order: stop
    accepting, finish the requests in flight, end the app's background work.
    "serving on `serving`" is logged once the port is bound, not before; a bind
    that fails is one line (ConfigError), after the app's clean-up.

    (Not `web.run_app`: it cleans up inside a cancelled task, and the wait for
    requests in flight then ends at once.)"""
    from aiohttp import web

    from api.server import GuardedAppRunner

    runner = GuardedAppRunner(
        app,
        client_timeout=client_timeout,
        send_timeout=send_timeout,
        send_buffer_bytes=send_buffer_bytes,
        access_log=None,  # api/observe.py logs each request, with its id
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
        try:
            await site.start()
        except OSError as error:  # taken since check_listen_address looked
            raise ConfigError(bind_failure(host, port, error)) from None
        log.info("serving on %s", serving)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("stopping: no new connections; finishing the requests in flight")
    finally:
        await runner.cleanup()


def worker_command(config: Config, args: argparse.Namespace) -> int:
    from service.worker import work

    uvloop.run(work(config))
    return 0


def finish_upgrade(config: Config, args: argparse.Namespace) -> int:
    idle = parse_duration(args.idle, "--idle").total_seconds()
    _ = config.language.gettext
    check_store_path(config.database_url)  # it drops; it never makes a store
    store = open_store(config.database_url, create_tables=False)
    try:
        dropped = store.finish_upgrade(idle, only=args.generation)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"dropped": dropped}))
        return 0
    if not dropped:
        print(_("no older read models to drop"))
    for name in dropped:
        print(_("dropped the read models of {name}", name=name))
    return 0


def upgrade_database(config: Config, args: argparse.Namespace) -> int:
    """Says "created" on a database without pm-order's event table, "up to
    date" on one that had it (upgraded or not)."""
    existed = has_event_table(config.database_url)
    # Tables only, made whatever the schema mark says: no service to build.
    store = open_store(config.database_url, create_tables=True, upgrade=True)
    store.close()
    if args.json:
        print(json.dumps({"created": not existed}))
        return 0
    _ = config.language.gettext
    print(_("tables are up to date") if existed else _("created the tables"))
    return 0


# eventsourcing's event tables: SQLite's default name, PostgreSQL's
# `{application name}_events`.
SQLITE_EVENT_TABLE = "stored_events"
POSTGRES_EVENT_TABLE = "pm_order_events"


def has_event_table(url: str) -> bool:
    """Whether the store at `url` has its event table (one short look, one
    connection; no file or folder made)."""
    if url.startswith("sqlite:///"):
        path = sqlite_path(url)
        if not path.is_file():
            return False
        with contextlib.closing(
            sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        ) as db:
            found = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                (SQLITE_EVENT_TABLE,),
            ).fetchone()
        return found is not None
    import psycopg

    settings = postgres_settings(url)
    with psycopg.connect(settings.conninfo, connect_timeout=10) as connection:
        found = connection.execute(
            "SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))",
            (settings.schema or "public", POSTGRES_EVENT_TABLE),
        ).fetchone()
    return found is not None and found[0] is not None
