"""`projections rebuild` progress: a bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from cli.commands.projections import ProgressBar, ProgressLines, progress_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_the_bar_and_anything_else_gets_lines() -> None:
    assert isinstance(progress_for("v", 10, Terminal()), ProgressBar)
    assert isinstance(progress_for("v", 10, io.StringIO()), ProgressLines)


def test_plain_progress_prints_a_line_only_every_few_seconds_and_at_the_end() -> None:
    out, clock = io.StringIO(), Clock()
    lines = ProgressLines("order_lists", 1000, out, clock, every=5.0)
    lines.update(100)
    clock.now += 1
    lines.update(200)
    assert out.getvalue() == ""
    clock.now += 4
    lines.update(500)
    clock.now += 1
    lines.close()
    assert out.getvalue().splitlines() == [
        "order_lists: 500/1000 events (50%), 100 ev/s",
        "order_lists: 500/1000 events (50%), 83 ev/s",
    ]
    assert "\r" not in out.getvalue()
