"""(Being built: see issue 5.)"""

from __future__ import annotations

from typing import Any


def register(commands: Any, *groups: Any) -> None:
    return None
