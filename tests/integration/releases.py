"""Two releases side by side: the previous one, built from the repository's git
history, and HEAD, each run as real processes (`serve`, `worker`, commands) with
this checkout's .venv python against one database.

A release is a source tree and the version its setup.cfg gives; its processes run
with the tree as their working folder and first on PYTHONPATH, so that its own
`domain`, `service`, `cli` ... are imported (`python -m` puts the working folder
first; the .venv's editable install of HEAD comes after both).
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.integration.processes import ApiServer, PmOrderProcess, run_pm_order

ROOT: Final = Path(__file__).resolve().parents[2]
# The release users run today (0.1.0).
PREVIOUS_COMMIT: Final = "3f1bc4c"


class MissingHistory(RuntimeError):
    """The checkout lacks the commit of a release the tests run."""


@dataclass(frozen=True)
class Release:
    """A release's source tree, and how to run its processes."""

    name: str
    tree: Path

    @property
    def version(self) -> str:
        setup = configparser.ConfigParser(interpolation=None)
        setup.read(self.tree / "setup.cfg")
        return setup["metadata"]["version"]

    @property
    def label(self) -> str:
        """Its version and name: `0.1.0 (3f1bc4c)`, `0.2.0 (HEAD)`."""
        return f"{self.version} ({self.name})"

    @property
    def env(self) -> dict[str, str]:
        """What every process of the release gets beside the test's settings."""
        return {"PYTHONPATH": str(self.tree)}

    def api(
        self, env: dict[str, str], log_path: Path, *, api_only: bool = True
    ) -> ApiServer:
        """`serve --api-only` (or, not `api_only`, a `serve` that works too),
        answering once started."""
        return ApiServer(
            {**env, **self.env}, log_path, api_only=api_only, cwd=self.tree
        )

    def process(
        self, args: list[str], env: dict[str, str], log_path: Path
    ) -> PmOrderProcess:
        """`pm-order ARGS` running in the background (`worker`, ...)."""
        return PmOrderProcess(args, {**env, **self.env}, log_path, cwd=self.tree)

    def run(self, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """`pm-order ARGS` to completion, with the test's settings only."""
        return run_pm_order(*args, cwd=self.tree, env={**env, **self.env})


def head() -> Release:
    """This checkout's code."""
    return Release(name="HEAD", tree=ROOT)


def materialise(commit: str, into: Path) -> Release:
    """Release `commit` from the repository's history, into the empty folder
    `into`: its files (`git archive`), its catalogs compiled (its code reads
    .mo files, which git does not keep), and its version's metadata (so that
    the .venv's installed HEAD does not answer for it). Checked: its processes
    import its own code, and say its version."""
    found = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if found.returncode != 0:
        raise MissingHistory(
            f"commit {commit} (a release the upgrade tests run beside HEAD) is not "
            f"in the checkout at {ROOT}: the tests need the repository's history "
            "(a full clone, not a shallow one: `git fetch --unshallow`)"
        )
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit],
        capture_output=True,
        check=True,
    ).stdout
    into.mkdir(parents=True, exist_ok=True)
    tar_path = into.parent / f"{into.name}.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(into, filter="data")
    tar_path.unlink()
    for catalog in into.glob("language/locale/*/LC_MESSAGES/*.po"):
        subprocess.run(
            [
                str(Path(sys.executable).with_name("pybabel")),
                "-q",
                "compile",
                "--input-file",
                str(catalog),
                "--output-file",
                str(catalog.with_suffix(".mo")),
            ],
            check=True,
        )
    release = Release(name=commit, tree=into)
    _add_metadata(into, release.version)
    _check_imports(release)
    return release


def _add_metadata(tree: Path, version: str) -> None:
    """pm-order's distribution metadata at `version`, found first on the path:
    `importlib.metadata.version("pm-order")` gives the release's own version."""
    info = tree / f"pm_order-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: pm-order\nVersion: {version}\n"
    )


def changed_head(into: Path, change: Callable[[Path], Path], what: str) -> Release:
    """HEAD with a change made in a test (`what`): `change` copies the code into
    the empty folder `into` and changes it; the copy is checked as a release is."""
    tree = change(into)
    shutil.copy(ROOT / "setup.cfg", tree / "setup.cfg")
    release = Release(name=f"HEAD+{what}", tree=tree)
    _check_imports(release)
    return release


def _check_imports(release: Release) -> None:
    """The release's processes import its own code and say its version."""
    probe = (
        "import importlib.metadata, cli.main, domain.service, service.store\n"
        "for m in (cli.main, domain.service, service.store): print(m.__file__)\n"
        "print(importlib.metadata.version('pm-order'))\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=release.tree,
        env={**os.environ, **release.env},
        capture_output=True,
        text=True,
        check=True,
    )
    *files, version = ran.stdout.split()
    tree = release.tree.resolve()
    strays = [f for f in files if not Path(f).resolve().is_relative_to(tree)]
    if strays or version != release.version:
        raise RuntimeError(
            f"release {release.name} in {tree} runs other code ({strays}) or says "
            f"version {version}, not {release.version}"
        )
