"""Times to decision as the report's table and page show them."""

from __future__ import annotations

import pytest

from cli.report_html import human_duration


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.42, "420ms"),  # issue 16: a sub-second decision showed as "0s"
        (0.004, "4ms"),
        (0.5, "500ms"),
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
    assert human_duration(seconds) == shown
