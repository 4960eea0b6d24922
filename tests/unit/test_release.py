"""The commit a release came from: written into a `git archive` of it, asked of
git in a checkout, "unknown" otherwise."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from service.release import UNKNOWN_COMMIT, release_commit

SOURCE = Path(__file__).resolve().parents[2]


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(SOURCE), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_an_archive_of_a_commit_says_that_commit(tmp_path: Path) -> None:
    # Given: the package as `git archive` gives it (a release's tarball)
    head = git("rev-parse", "HEAD")
    archive = subprocess.run(
        ["git", "-C", str(SOURCE), "archive", "HEAD", "service"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp_path, filter="data")
    # When: it is asked which commit it is, with no git checkout around it
    found = subprocess.run(
        [sys.executable, "-c", "import service.release as r; print(r.COMMIT)"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/nonexistent"},
        capture_output=True,
        text=True,
        check=True,
    )
    # Then: the archived commit's id, substituted by git archive
    assert found.stdout.strip() == head


def test_a_checkout_says_its_head() -> None:
    assert release_commit(SOURCE / "service") == git("rev-parse", "HEAD")


def test_files_without_their_history_say_unknown(tmp_path: Path) -> None:
    copy = tmp_path / "service"
    shutil.copytree(SOURCE / "service", copy)
    assert release_commit(copy) == UNKNOWN_COMMIT
