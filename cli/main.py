"""The pm-order command line: each command group lives in pm_order/commands/."""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Final

import psycopg
from eventsourcing import persistence

from cli import grammar
from cli.commands import (
    audit,
    completion,
    events,
    machines,
    mail,
    notifications,
    projections,
    report,
    serve,
)
from cli.output_file import replaced
from cli.store_path import url_named_by
from cli.terminal import paint
from domain.exceptions import DomainError, StoreUnavailable
from mail.settings import without_password
from projections.database import ViewDatabaseUnavailable
from service import interpreter, logs
from service.config import (
    COMMAND_DB_POOL_SIZE,
    Config,
    ConfigError,
    check_database_url,
)
from service.logs import redact
from service.release import VERSION

# Exit statuses (the README's Operating section lists them).
DATABASE_UNAVAILABLE: Final = 3
INTERRUPTED: Final = 130  # as a shell says of Ctrl-C (128 + SIGINT)

# What the drivers raise when the database cannot be reached or used: said in one
# line, never a traceback.
_DATABASE_UNAVAILABLE: Final = (
    ViewDatabaseUnavailable,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlite3.OperationalError,
    persistence.OperationalError,
    persistence.InterfaceError,
)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    interpreter.tune()
    # Every connection says which process opened it (pg_stat_activity's
    # application_name): libpq's own variable, so that each pool, lock and
    # listener gets it; an operator's PGAPPNAME, or an application_name in the
    # URL, wins.
    os.environ.setdefault("PGAPPNAME", application_name(args))
    log_format = args.log_format or os.environ.get("PM_ORDER_LOG_FORMAT") or "json"
    if log_format not in logs.FORMATS:
        print(
            f"pm-order: PM_ORDER_LOG_FORMAT={log_format!r} must be json or text",
            file=sys.stderr,
        )
        return 2
    logs.configure(log_format)
    if not getattr(args, "needs_config", True):
        return int(args.command(None, args))
    try:
        config = Config.from_env()  # every setting checked, the pools' size too
        if args.command_path[0] not in ("serve", "worker"):
            # A command holds two connections at most: one a pool (event store,
            # read models), whatever the serving processes' PM_ORDER_DB_POOL_SIZE.
            os.environ["PM_ORDER_DB_POOL_SIZE"] = str(COMMAND_DB_POOL_SIZE)
        if args.database_url:
            config = replace(config, database_url=_flag_url(args.database_url))
            url_named_by("--database-url")
        output = getattr(args, "output", None)
        if output is None or getattr(args, "own_output", False):
            return int(args.command(config, args))
        with replaced(Path(output)) as file, contextlib.redirect_stdout(file):
            return int(args.command(config, args))
    except ConfigError as error:
        _say(str(error))
        return 2
    except (StoreUnavailable, *_DATABASE_UNAVAILABLE) as error:
        _say(_unavailable(error, args))
        return DATABASE_UNAVAILABLE
    except DomainError as error:
        _say(str(error))
        return 1
    except KeyboardInterrupt:
        print("pm-order: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`pm-order ... | head`): not an error of ours.
        # Point stdout at /dev/null so that the exit's flush does not fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def application_name(args: argparse.Namespace) -> str:
    """`pm-order-serve`, `pm-order-serve-api-only`, `pm-order-worker`, or the
    command's words (`pm-order-machines-list`)."""
    words = ["pm-order", *args.command_path]
    if words[1:] == ["serve"] and args.api_only:
        words.append("api-only")
    return "-".join(words)


def _say(error: str) -> None:
    """One line on stderr: `pm-order: what went wrong` (in red on a terminal)."""
    print(f"{paint('pm-order:', 'red', sys.stderr)} {error}", file=sys.stderr)


def _flag_url(url: str) -> str:
    """`--database-url`'s value, checked; its error names the flag, not the
    setting it overrides."""
    try:
        return check_database_url(url)
    except ConfigError as error:
        raise ConfigError(
            str(error).replace("PM_ORDER_DATABASE_URL=", "--database-url ")
        ) from None


def _unavailable(error: Exception, args: argparse.Namespace) -> str:
    """One line: which database, and what it (or the driver) said."""
    url = args.database_url or os.environ.get("PM_ORDER_DATABASE_URL")
    where = f" ({without_password(url)})" if url else ""
    said = str(error).strip().splitlines()
    reason = redact(said[0]) if said else type(error).__name__
    return f"the database is unavailable{where}: {reason}"


def parser() -> argparse.ArgumentParser:
    root = grammar.Parser(
        prog="pm-order",
        description="Transfer orders of physical servers between projects.",
    )
    root.add_argument("--version", action="version", version=f"pm-order {VERSION}")
    grammar.global_options(root, top=True)
    commands = root.add_subparsers(required=True, metavar="COMMAND")
    serve.register(commands)
    server_actions = machines.register(commands)
    audit.register(commands, server_actions)
    projections.register(commands)
    events.register(commands)
    mail.register(commands)
    notifications.register(commands)
    report.register(commands)
    completion.register(commands, root)
    grammar.finish(root)
    return root
