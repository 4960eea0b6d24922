"""What a terminal gets that a pipe or a file does not: colour (unless NO_COLOR
is set, https://no-color.org) and progress redrawn in place."""

from __future__ import annotations

import os
from typing import Final, TextIO

_CODES: Final = {"red": "31", "green": "32", "yellow": "33", "bold": "1", "dim": "2"}


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real stream
        return False


def colour_on(stream: TextIO) -> bool:
    """Colour only on a terminal that can show it, and never with NO_COLOR set
    (to anything but the empty string)."""
    return (
        is_terminal(stream)
        and not os.environ.get("NO_COLOR")
        and os.environ.get("TERM") != "dumb"
    )


def paint(text: str, style: str, stream: TextIO) -> str:
    """`text` in `style` (red, green, yellow, bold, dim) when `stream` shows colour."""
    if not colour_on(stream):
        return text
    return f"\033[{_CODES[style]}m{text}\033[0m"
