"""`serve --workers N`'s parent: restarts serving processes that end, and gives
up when they keep dying young."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cli.supervisor import RestartPolicy, supervise

QUICK = RestartPolicy(first_delay=0.01, most_delay=0.02, crash_loop_restarts=3)


@pytest.fixture(autouse=True)
def _signal_handlers_restored() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def counting(starts: Path, then: Callable[[int], int]) -> Callable[[], int]:
    """A serving process that notes its start, then does `then(n)` (n: how many
    started so far, itself included)."""

    def serve_one() -> int:
        fd = os.open(starts, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, b".")
        finally:
            os.close(fd)
        return then(starts.stat().st_size)

    return serve_one


def test_processes_that_keep_dying_young_stop_the_parent_with_status_1(
    tmp_path: Path,
) -> None:
    starts = tmp_path / "starts"
    code = supervise(2, counting(starts, lambda n: 3), 5.0, QUICK)
    assert code == 1
    # Two at first, then one restart for each of the first three deaths; the
    # fourth death in a row ends it.
    assert starts.read_bytes() == b"." * 5


def test_a_process_that_lived_long_enough_starts_the_count_over(
    tmp_path: Path,
) -> None:
    def then(n: int) -> int:
        if n < 9:
            return 3  # died by itself, after living "long enough" (see below)

        def leave(signum: int, frame: object) -> None:
            os._exit(0)

        signal.signal(signal.SIGTERM, leave)
        os.kill(os.getppid(), signal.SIGTERM)
        while True:
            signal.pause()

    # Every process counts as healthy (healthy after 0 s): no crash loop however
    # many end, so the ninth one asks the parent to stop.
    policy = RestartPolicy(first_delay=0.01, healthy_after=0.0, crash_loop_restarts=2)
    starts = tmp_path / "starts"
    code = supervise(1, counting(starts, then), 5.0, policy)
    assert code == 0
    assert starts.read_bytes() == b"." * 9
