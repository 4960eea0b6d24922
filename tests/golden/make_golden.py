"""Golden events: every kind of event as a release writes it, from its own code.

A release's golden file (tests/golden/<version>.json) is what that release's
OrderService stores for one scripted scenario (SCENARIO below) on a SQLite
store: each stored event's topic, state (the stored bytes, as text) and
originator's id and version, in the log's order. `make test` checks that HEAD
reads the files of every release (tests/golden/test_golden_events.py), and that
HEAD still writes what its own version's file holds, byte for byte.

How each file was made (run from the repository's root, with its .venv):

    # the release users run today, from the repository's history
    .venv/bin/python tests/golden/make_golden.py --release 3f1bc4c
    # this release, from the working tree
    .venv/bin/python tests/golden/make_golden.py --release HEAD

`--release COMMIT` materialises that commit with `git archive` into a temporary
folder and runs this script again there with PYTHONPATH and the working folder
set to it, so that the commit's own `domain` and `service` packages are what is
imported (the child checks it and says which files it imported); `HEAD` runs the
working tree's code in this process. The file is named after the version that
the code's setup.cfg gives.

This script must keep working with every release it has made a file for: it
uses only what 3f1bc4c already had (OrderService's commands, open_store, the
recorder's select_notifications).
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

GOLDEN: Final = Path(__file__).resolve().parent
ROOT: Final = GOLDEN.parents[1]
START: Final = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
# Every record of the scenario: far fewer than this.
MOST_EVENTS: Final = 1000


class SteppedClock:
    """The scenario's time: fixed, moved on by the scenario, and the same for the
    service's `at` and the library's event timestamps (so the bytes repeat)."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def scenario(service: Any, clock: SteppedClock) -> None:
    """Every kind of event the service stores, each written by the command that
    writes it in production:

    - Server.Registered: SN-A-1..4 (proj-a), SN-B-1..2 (proj-b), SN-C-1 (proj-c)
    - order 1: proj-a -> proj-b, SN-A-1 and SN-A-2, by alice, mail to two
      addresses; accepted by bob: Order.Accepted, two
      Server.Transferred
    - order 2: proj-a -> proj-c, SN-A-3, no mail; refused by carol:
      Order.Rejected, Server.Released
    - order 3: proj-b -> proj-a, SN-B-1, by zoë (a user not ASCII); warned
      twice: two Order.WarningRaised
    - order 4: proj-a -> proj-b, SN-A-4: left unfinished (Server.Reserved only)
    """
    service.register_servers(
        [
            *((f"SN-A-{n}", "proj-a") for n in range(1, 5)),
            *((f"SN-B-{n}", "proj-b") for n in range(1, 3)),
            ("SN-C-1", "proj-c"),
        ]
    )
    clock.advance(minutes=1)
    first = service.request_transfer(
        source_project="proj-a",
        user="alice",
        snids=["SN-A-1", "SN-A-2"],
        dest_project="proj-b",
        mailto=["ops@example.com", "jurgen@example.com"],
    ).order_id
    clock.advance(minutes=1)
    second = service.request_transfer(
        source_project="proj-a",
        user="alice",
        snids=["SN-A-3"],
        dest_project="proj-c",
        mailto=[],
    ).order_id
    clock.advance(minutes=1)
    third = service.request_transfer(
        source_project="proj-b",
        user="zoë",
        snids=["SN-B-1"],
        dest_project="proj-a",
        mailto=["b-team@example.com"],
    ).order_id
    clock.advance(minutes=1)
    service.request_transfer(
        source_project="proj-a",
        user="alice",
        snids=["SN-A-4"],
        dest_project="proj-b",
        mailto=[],
    )
    clock.advance(minutes=10)
    service.decide(
        project="proj-b",
        user="bob",
        roles=frozenset({"member"}),
        order_ids=[first],
        accept=True,
    )
    clock.advance(minutes=1)
    service.decide(
        project="proj-c",
        user="carol",
        roles=frozenset({"member"}),
        order_ids=[second],
        accept=False,
    )
    for _ in range(2):
        clock.advance(hours=1)
        service.raise_warning(third, every=timedelta(hours=1), most=3)


@contextmanager
def library_clock(clock: SteppedClock) -> Iterator[None]:
    """The library's event timestamps from `clock` (they are the wall clock's
    otherwise, and the stored bytes would differ at every run)."""
    import eventsourcing.domain

    wall = eventsourcing.domain.datetime_now_with_tzinfo
    eventsourcing.domain.datetime_now_with_tzinfo = clock
    try:
        yield
    finally:
        eventsourcing.domain.datetime_now_with_tzinfo = wall


def stored_events(folder: Path) -> list[dict[str, Any]]:
    """The scenario run by the importable code on a new SQLite store in `folder`:
    every stored event, in the log's order."""
    from domain.service import OrderService
    from service.store import open_store

    clock = SteppedClock()
    store = open_store(f"sqlite:///{folder}/golden.sqlite3")
    try:
        with library_clock(clock):
            scenario(OrderService(store.app, clock=clock), clock)
        records = store.app.recorder.select_notifications(start=1, limit=MOST_EVENTS)
    finally:
        store.close()
    return [
        {
            "id": record.id,
            "originator_id": str(record.originator_id),
            "originator_version": record.originator_version,
            "topic": record.topic,
            "state": record.state.decode("utf-8"),
        }
        for record in records
    ]


def version_of(tree: Path) -> str:
    """The version that `tree`'s setup.cfg gives."""
    setup = configparser.ConfigParser(interpolation=None)
    setup.read(tree / "setup.cfg")
    return setup["metadata"]["version"]


def golden_path(version: str) -> Path:
    return GOLDEN / f"{version}.json"


def render(version: str, commit: str, events: list[dict[str, Any]]) -> str:
    """The golden file's text: stable (sorted keys, one event a line) for diffs."""
    lines = ",\n".join(
        "    " + json.dumps(e, ensure_ascii=False, sort_keys=True) for e in events
    )
    head = json.dumps(
        {
            "release": version,
            "commit": commit,
            "made_by": "tests/golden/make_golden.py",
        },
        sort_keys=True,
    )
    return head[:-1] + ', "events": [\n' + lines + "\n]}\n"


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _materialised(commit: str, into: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)


def _child(tree: Path, commit: str) -> None:
    """In the materialised `tree`: check its code is what is imported, then write
    its golden file into this repository's tests/golden (argv's --out)."""
    import domain.service
    import service.store

    for module in (domain.service, service.store):
        where = Path(str(module.__file__)).resolve()
        if not where.is_relative_to(tree.resolve()):
            sys.exit(f"{module.__name__} came from {where}, not from {tree}")
        print(f"imported {module.__name__} from {where}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as folder:
        events = stored_events(Path(folder))
    out = Path(os.environ["GOLDEN_OUT"])
    out.write_text(render(version_of(tree), commit, events), encoding="utf-8")
    print(f"wrote {len(events)} events to {out}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", required=True, help="a commit, or HEAD")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(Path(args.child), args.release)
        return
    if args.release == "HEAD":
        with tempfile.TemporaryDirectory() as folder:
            events = stored_events(Path(folder))
        version = version_of(ROOT)
        out = golden_path(version)
        made_from = f"working tree at {_git('rev-parse', 'HEAD')}"
        out.write_text(render(version, made_from, events), encoding="utf-8")
        print(f"wrote {len(events)} events to {out}", file=sys.stderr)
        return
    commit = _git("rev-parse", "--verify", f"{args.release}^{{commit}}")
    with tempfile.TemporaryDirectory() as folder:
        tree = Path(folder) / "tree"
        tree.mkdir()
        _materialised(commit, tree)
        out = golden_path(version_of(tree))
        script = tree / "make_golden.py"
        script.write_text(Path(__file__).read_text(encoding="utf-8"), encoding="utf-8")
        # Run there: the tree first on the path, its own folder the working one
        # (`python script` puts the script's folder first: the tree itself).
        subprocess.run(
            [sys.executable, str(script), "--release", commit, "--child", str(tree)],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree), "GOLDEN_OUT": str(out)},
            check=True,
        )


if __name__ == "__main__":
    main()
