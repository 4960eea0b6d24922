"""How a moment is shown to people (the API, the mail, the commands): the
contract's `YYYY-MM-DD HH:MM:SS`, in the configured zone."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Final

TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"


def show_time(moment: datetime, zone: tzinfo | None = None) -> str:
    """`moment` as `YYYY-MM-DD HH:MM:SS` in `zone` (default: as recorded)."""
    shown = moment if zone is None else moment.astimezone(zone)
    return shown.strftime(TIME_FORMAT)
