"""The documentation: the site builds with no warning, the configuration page is
the one the settings table writes, and the README stays short, with links that
lead somewhere."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Final

from markdown.extensions.toc import slugify

from service import settings_reference

ROOT: Final = Path(__file__).resolve().parents[2]
README: Final = ROOT / "README.md"
MKDOCS: Final = Path(sys.executable).with_name("mkdocs")

# [text](target), not an image, not inside inline code.
LINK: Final = re.compile(r"(?<!!)\[[^\]`]*\]\(([^)\s]+)\)")


def test_the_site_builds_with_no_warning(tmp_path: Path) -> None:
    # --strict: a link to no page, an #anchor a page lacks, any warning fails it
    result = subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    assert (tmp_path / "site" / "configuration.html").is_file()


def test_the_configuration_page_is_written_from_the_settings_table() -> None:
    page = (ROOT / settings_reference.PAGE).read_text(encoding="utf-8")
    assert page == settings_reference.markdown(), (
        "docs/configuration.md differs from service/settings.py: run "
        "`.venv/bin/python -m service.settings_reference > docs/configuration.md` "
        "(or `make docs`)"
    )


def test_the_readme_is_read_in_minutes_and_names_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 200
    assert "make run" in text
    assert "make test" in text
    # the walk-through says how to start over, so that it can be run again
    assert "rm -rf var" in text


def anchors(page: Path) -> set[str]:
    text = re.sub(r"(?ms)^```.*?^```", "", page.read_text(encoding="utf-8"))
    return {slugify(h, "-") for h in re.findall(r"(?m)^#+ (.+)$", text)}


def test_every_link_of_the_readme_leads_to_a_file_and_its_heading() -> None:
    text = README.read_text(encoding="utf-8")
    targets = [t for t in LINK.findall(text) if "://" not in t]
    assert targets
    for target in targets:
        path, _, anchor = target.partition("#")
        page = ROOT / path if path else README
        assert page.is_file(), target
        if anchor:
            assert anchor in anchors(page), target
