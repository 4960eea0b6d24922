"""The configuration reference (docs/configuration.md), written from the settings
table, so that the page says what the code reads.

`python -m service.settings_reference > docs/configuration.md` (`make docs` runs
it); tests/integration/test_docs.py fails while the page and the table differ.
"""

from __future__ import annotations

import sys
from typing import Any, Final

from service.settings import SETTINGS, Setting

PAGE: Final = "docs/configuration.md"

_INTRODUCTION: Final = """\
<!-- Written by `python -m service.settings_reference` from service/settings.py:
edit the table there, then `make docs`. -->

# Configuration

pm-order reads its settings from the environment; a command-line flag overrides
its variable (`pm-order --database-url ... serve`). Every setting is declared once,
in `service/settings.py`, and this page is written from that table.

- An empty or blank value is the same as none: the default.
- A **duration** is a number (decimals allowed) and a unit: `500ms`, `90s`, `15m`,
  `2h`, `1d`. A number without a unit is seconds, as it always was; where the
  setting's name does not end in `_SECONDS` a warning at start says so, and how to
  write it with its unit.
- A **whole number** is ASCII digits within the setting's range.
- A **rate** is requests per second, minute or hour (`20/s`, `600/m`, `3600/h`;
  `20` alone is per second), or `off`.
- A **list** is comma-separated; blanks around the commas are dropped.
- A **yes or no** setting takes `yes`, `no`, `true`, `false`, `1` or `0`.

Every setting is checked when any command starts, whichever settings it uses: a
bad value stops it with status 2 and one line naming the setting, the value (a
password shown as `***`) and what the setting takes, for example
`pm-order: PM_ORDER_WARN_MAX='²' must be a whole number from 0 to 1000000`.
Exactly one of `PM_ORDER_TOKENS_FILE` and `PM_ORDER_KEYSTONE_URL` must be set for
`serve`; otherwise it exits with status 2 and a line saying how to set one.
A setting that is renamed keeps its old name working, with a warning naming the
new one.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(setting: Setting[Any]) -> str:
    default = f"`{setting.default}`" if setting.default is not None else "unset"
    cells = (
        f"`{setting.name}`",
        setting.kind.allowed(),
        setting.unit or "-",
        default,
        setting.help,
    )
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def markdown() -> str:
    """The whole page: the grammar, then one table per section of settings."""
    parts = [_INTRODUCTION]
    sections: dict[str, list[Setting[Any]]] = {}
    for setting in SETTINGS:
        sections.setdefault(setting.section, []).append(setting)
    for section, members in sections.items():
        parts.append(f"\n## {section}\n\n")
        parts.append("| variable | takes | unit | default | what it does |\n")
        parts.append("| --- | --- | --- | --- | --- |\n")
        parts.extend(_row(setting) + "\n" for setting in members)
    return "".join(parts)


def main() -> None:
    sys.stdout.write(markdown())


if __name__ == "__main__":
    main()
