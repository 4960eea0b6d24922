"""A projector's NOTIFY says which views reached which position."""

from __future__ import annotations

from projections.database import progress_of


def test_an_announcement_names_the_position_and_the_views() -> None:
    assert progress_of("1234 order_lists reports") == (1234, ["order_lists", "reports"])


def test_an_announcement_without_views_asks_for_a_read_of_the_tracking() -> None:
    # a heartbeat, a rebuild's switch, or a projector of an older version
    for payload in ("", "1234", "order_lists", "x order_lists"):
        assert progress_of(payload) is None
