"""A SQLite store's path, checked before a command opens it: a typo in a path
must not silently give a new, empty store.

Only the commands that make a store may create its file and folder: `serve`,
`worker` and `db upgrade` (which open it themselves), `machines import` and
`events import` (`composed(config, creates_store=True)`). Every other command
refuses a path whose file does not exist, in one line (exit 2), when it comes to
open the store: after its own arguments were checked, before anything is made.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from service import bootstrap
from service.config import Config, ConfigError
from service.store import sqlite_path

# Where the store's URL came from, for the message: main() says which.
_named_by = ["PM_ORDER_DATABASE_URL"]


def url_named_by(source: str) -> None:
    """The URL in use comes from `source` (`--database-url`, or the setting)."""
    _named_by[0] = source


@contextmanager
def composed(
    config: Config, *, creates_store: bool = False
) -> Iterator[bootstrap.Composition]:
    """The configured store and service, open for one command, once its path
    is checked (unless the command `creates_store`)."""
    if not creates_store:
        check_store_path(config.database_url)
    with bootstrap.composed(config) as root:
        yield root


def check_store_path(url: str) -> None:
    """Refuse a SQLite `url` whose file does not exist."""
    if not url.startswith("sqlite:///"):
        return
    path = sqlite_path(url)
    if path.is_file():
        return
    folder = path.parent
    if not folder.is_dir():
        why = f"its folder {_shown(folder)} does not exist"
    elif path.exists():
        why = "it is not a file"
    else:
        why = "the file does not exist"
    raise ConfigError(
        f"{_named_by[0]}: no store at {_shown(path)} ({why}); check the path, or "
        "create the store with `pm-order db upgrade`"
    )


def _shown(path: Path) -> str:
    return str(path) or "."
