"""Times to decision as the report's table and page show them."""

from __future__ import annotations

import pytest

from language import ENGLISH


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.42, "0.42s"),  # issue 16: a sub-second decision showed as "0s"
        (0.004, "0.004s"),
        (0.5, "0.5s"),
        (1.4, "1s"),
        (45.2, "45s"),
        (750, "12m 30s"),
        (7500, "2h 05m"),
        (273600, "3d 04h"),
        (None, "-"),
    ],
)
def test_a_duration_reads_as_its_size_calls_for(
    seconds: float | None, shown: str
) -> None:
    assert ENGLISH.duration(seconds) == shown
