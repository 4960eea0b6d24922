"""The pm-order command line: each command group lives in pm_order/commands/."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Final

import psycopg
from eventsourcing import persistence

from cli.commands import (
    audit,
    events,
    machines,
    mail,
    notifications,
    projections,
    report,
    serve,
)
from domain.exceptions import DomainError, StoreUnavailable
from mail.settings import without_password
from projections.database import ViewDatabaseUnavailable
from service import interpreter, logs
from service.config import Config, ConfigError, check_database_url
from service.logs import redact

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
    log_format = args.log_format or os.environ.get("PM_ORDER_LOG_FORMAT") or "json"
    if log_format not in logs.FORMATS:
        print(
            f"pm-order: PM_ORDER_LOG_FORMAT={log_format!r} must be json or text",
            file=sys.stderr,
        )
        return 2
    logs.configure(log_format)
    try:
        config = Config.from_env()
        if args.database_url:
            config = replace(config, database_url=check_database_url(args.database_url))
        return int(args.command(config, args))
    except ConfigError as error:
        print(f"pm-order: {error}", file=sys.stderr)
        return 2
    except (StoreUnavailable, *_DATABASE_UNAVAILABLE) as error:
        print(f"pm-order: {_unavailable(error, args)}", file=sys.stderr)
        return DATABASE_UNAVAILABLE
    except DomainError as error:
        print(f"pm-order: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pm-order: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`pm-order ... | head`): not an error of ours.
        # Point stdout at /dev/null so that the exit's flush does not fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _unavailable(error: Exception, args: argparse.Namespace) -> str:
    """One line: which database, and what it (or the driver) said."""
    url = args.database_url or os.environ.get("PM_ORDER_DATABASE_URL")
    where = f" ({without_password(url)})" if url else ""
    said = str(error).strip().splitlines()
    reason = redact(said[0]) if said else type(error).__name__
    return f"the database is unavailable{where}: {reason}"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="pm-order",
        description="Transfer orders of physical servers between projects.",
    )
    root.add_argument(
        "--database-url",
        help="overrides PM_ORDER_DATABASE_URL (sqlite:///PATH or postgresql://...)",
    )
    root.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        help="log lines as JSON objects (default) or text; "
        "overrides PM_ORDER_LOG_FORMAT",
    )
    commands = root.add_subparsers(required=True, metavar="COMMAND")
    serve.register(commands)
    server_actions = machines.register(commands)
    audit.register(commands, server_actions)
    projections.register(commands)
    events.register(commands)
    mail.register(commands)
    notifications.register(commands)
    report.register(commands)
    return root
