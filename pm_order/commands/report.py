"""`pm-order report`: per project and day, orders and servers moved.

(Being built: see issue 5.)
"""

from __future__ import annotations

from typing import Any


def register(commands: Any) -> None:
    return None
