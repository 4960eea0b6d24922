"""Which release this is: its version, as the package's metadata gives it, and
the commit it was built from.

The commit is found, in this order:

1. `service/commit_id.py` as `git archive` wrote it: the file is marked
   `export-subst` (.gitattributes), so an archive of a commit (a release's
   tarball, or a tree materialised from the repository's history) carries that
   commit's id in it, with nothing generated kept in the repository;
2. git itself, when the package runs from a git checkout (`make install`
   installs in place, so a checkout is what a developer or a test runs);
3. "unknown": neither (a copy of the files without their history).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Final

from service import commit_id

UNKNOWN_COMMIT: Final = "unknown"
# A full commit id, as `git archive`'s %H and `git rev-parse HEAD` give it.
_COMMIT_ID: Final = re.compile(r"[0-9a-f]{40}")
# Asking git is done once, at import; a hung git must not hold a start up.
_GIT_SECONDS: Final = 5.0


def _installed_version() -> str:
    try:
        return version("pm-order")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def _archived_commit() -> str | None:
    """The commit `git archive` substituted into commit_id.py (None: not an archive)."""
    archived = commit_id.ARCHIVED.strip()
    return archived if _COMMIT_ID.fullmatch(archived) else None


def _checked_out_commit(package: Path) -> str | None:
    """HEAD of the git checkout the package runs from (None: not one, or no git)."""
    git = shutil.which("git")
    if git is None:
        return None
    try:
        found = subprocess.run(  # noqa: S603 (git, found on PATH; fixed arguments)
            [git, "-C", str(package), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
            timeout=_GIT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = found.stdout.split()
    if found.returncode != 0 or len(lines) != 2:
        return None
    top, head = lines
    # The checkout must be this package's own, not one it happens to sit in
    # (a virtualenv inside some other repository).
    if Path(top).resolve() != package.resolve().parent:
        return None
    return head if _COMMIT_ID.fullmatch(head) else None


def release_commit(package: Path = Path(__file__).parent) -> str:
    """The commit this release was built from: archived, checked out, or unknown."""
    return _archived_commit() or _checked_out_commit(package) or UNKNOWN_COMMIT


VERSION: Final = _installed_version()
COMMIT: Final = release_commit()
