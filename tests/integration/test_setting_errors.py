"""A bad setting stops the real `pm-order` command with one line and status 2,
before anything is opened: one setting of each kind in service/settings.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import pytest

from service import settings
from service.settings import SETTINGS, Setting, Text, Whole

# The installed console script, as an operator runs it (not `python -m cli`).
PM_ORDER: Final = Path(sys.executable).with_name("pm-order")


def representatives() -> list[tuple[str, str]]:
    """The first setting of each kind of value, and a value it refuses."""
    chosen: dict[object, tuple[str, str]] = {}
    for setting in SETTINGS:
        kind = setting.kind
        free = getattr(kind, "read", None) is settings.any_text
        key = (type(kind), getattr(kind, "read", None))
        if free or key in chosen:
            continue
        value = "²" if isinstance(kind, Whole) else "10 parsecs"
        chosen[key] = (setting.name, value)
    return list(chosen.values())


CASES: Final = [
    # the issue's own: a digit str.isdigit() takes and int() refuses
    ("PM_ORDER_WARN_MAX", "²"),
    *representatives(),
]


def test_the_representatives_cover_every_kind_of_value() -> None:
    kinds = {type(setting.kind) for setting in SETTINGS}
    covered = {type(settings.named(name).kind) for name, _ in CASES}
    assert covered == kinds
    # and every check of text with its own words (zone, language, URLs, ...)
    checked_text = {
        s.kind.read
        for s in SETTINGS
        if isinstance(s.kind, Text) and s.kind.read is not settings.any_text
    }
    covered_text = {
        getattr(settings.named(name).kind, "read", None) for name, _ in CASES
    }
    assert checked_text <= covered_text


@pytest.mark.parametrize(("name", "value"), CASES, ids=[n for n, _ in CASES])
def test_a_bad_setting_is_one_line_and_status_2_and_opens_nothing(
    name: str, value: str, tmp_path: Path
) -> None:
    store = tmp_path / "store" / "pm-order.sqlite3"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PM_ORDER_")}
    env = {**clean, "PM_ORDER_DATABASE_URL": f"sqlite:///{store}", name: value}
    # when
    result = subprocess.run(
        [str(PM_ORDER), "machines", "list"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # then
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"pm-order: {name}="), lines[0]
    setting: Setting[Any] = settings.named(name)
    if not isinstance(setting.kind, Text):
        assert setting.kind.allowed() in lines[0]
    assert not store.parent.exists()
