"""Progress of a command that can take more than a second: on a terminal, a line
redrawn in place; anywhere else (a pipe, a log), a plain line every few seconds
and one at the end, so that a log says how far it got and nothing else is
drawn. Written to stderr: stdout is the command's output."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Protocol, TextIO

from cli.terminal import is_terminal, paint


class Progress(Protocol):
    def update(self, position: int) -> None: ...

    def close(self) -> None: ...


def progress_for(
    name: str, total: int, out: TextIO = sys.stderr, unit: str = "events"
) -> ProgressBar | ProgressLines:
    """A bar redrawn in place on a terminal; elsewhere (a log, a pipe) a plain
    line every few seconds. `total` 0: not known, a count without a bar."""
    return (
        ProgressBar(name, total, out, unit=unit)
        if is_terminal(out)
        else ProgressLines(name, total, out, unit=unit)
    )


def on_terminal(
    name: str, total: int, out: TextIO = sys.stderr, unit: str = "events"
) -> Progress:
    """A bar on a terminal; nothing elsewhere (the command's summary says what
    was done)."""
    return ProgressBar(name, total, out, unit=unit) if is_terminal(out) else Silent()


class Silent:
    """No progress shown."""

    def update(self, position: int) -> None:
        pass

    def close(self) -> None:
        pass


class _Counted:
    """A job of `total` items (0: not known) named `name`, reported on `out`:
    what both ways of showing its progress know."""

    def __init__(
        self,
        name: str,
        total: int,
        out: TextIO = sys.stderr,
        clock: Callable[[], float] = time.monotonic,
        unit: str = "events",
    ) -> None:
        self.name = name
        self.known = total > 0
        self.total = max(total, 1)
        self.out = out
        self.clock = clock
        self.unit = unit
        self.started = clock()

    @property
    def rate_unit(self) -> str:
        return "ev/s" if self.unit == "events" else "/s"


class ProgressBar(_Counted):
    """`name [#####.....] 52% 5200/10000 events 8100 ev/s ETA 0:01` on stderr;
    without a total, `name 5200 events 8100/s`."""

    def __init__(
        self,
        name: str,
        total: int,
        out: TextIO = sys.stderr,
        clock: Callable[[], float] = time.monotonic,
        unit: str = "events",
    ) -> None:
        super().__init__(name, total, out, clock, unit)
        self.drawn = 0.0

    def update(self, position: int) -> None:
        now = self.clock()
        if now - self.drawn < 0.1 and position < self.total:
            return  # a redraw ten times a second is plenty
        self.drawn = now
        elapsed = max(now - self.started, 1e-6)
        rate = position / elapsed
        name = paint(self.name, "bold", self.out)
        if not self.known:
            self.out.write(f"\r{name} {position} {self.unit} {rate:,.0f}/s\033[K")
            self.out.flush()
            return
        share = min(position / self.total, 1.0)
        left = max(self.total - position, 0) / rate if rate else 0.0
        bar = "#" * int(share * 30) + "." * (30 - int(share * 30))
        self.out.write(
            f"\r{name} [{bar}] {share:4.0%} {position}/{self.total} {self.unit} "
            f"{rate:,.0f} {self.rate_unit} ETA {int(left // 60)}:{int(left % 60):02d}"
        )
        self.out.flush()

    def close(self) -> None:
        self.out.write("\n")
        self.out.flush()


class ProgressLines(_Counted):
    """`name: 5200/10000 events (52%), 8100 ev/s` every `every` seconds, and at
    the end: for output that is not a terminal."""

    def __init__(
        self,
        name: str,
        total: int,
        out: TextIO = sys.stderr,
        clock: Callable[[], float] = time.monotonic,
        every: float = 5.0,
        unit: str = "events",
    ) -> None:
        super().__init__(name, total, out, clock, unit)
        self.every = every
        self.last = self.started
        self.position = 0

    def update(self, position: int) -> None:
        self.position = position
        if self.clock() - self.last >= self.every:
            self._line()

    def close(self) -> None:
        self._line()

    def _line(self) -> None:
        self.last = now = self.clock()
        rate = self.position / max(now - self.started, 1e-6)
        rate_unit = self.rate_unit
        if not self.known:
            self.out.write(
                f"{self.name}: {self.position} {self.unit}, {rate:,.0f} {rate_unit}\n"
            )
        else:
            share = min(self.position / self.total, 1.0)
            self.out.write(
                f"{self.name}: {self.position}/{self.total} {self.unit} "
                f"({share:.0%}), {rate:,.0f} {rate_unit}\n"
            )
        self.out.flush()


class Steps:
    """A command's steps whose length is not known (`reading inventory.csv`,
    `updating the views`): on a terminal, the step being done and then how long
    it took, on one line each; elsewhere nothing (the summary says the rest)."""

    def __init__(
        self, out: TextIO = sys.stderr, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.out = out
        self.clock = clock
        self.shown = is_terminal(out)
        self.current: tuple[str, float] | None = None

    def step(self, what: str) -> None:
        self.done()
        self.current = (what, self.clock())
        if self.shown:
            self.out.write(f"{paint(what, 'bold', self.out)}…")
            self.out.flush()

    def done(self) -> None:
        if self.current is None:
            return
        what, started = self.current
        self.current = None
        if self.shown:
            took = paint(f"{self.clock() - started:.1f} s", "dim", self.out)
            self.out.write(f"\r{what}: {took}\033[K\n")
            self.out.flush()
