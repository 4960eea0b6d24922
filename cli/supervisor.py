"""`pm-order serve --workers N`: N serving processes on one port (SO_REUSEPORT),
kept running by this parent, stopped together on SIGTERM or SIGINT.

A serving process that ends by itself is started again after a delay that
doubles while processes keep dying young (1 s, 2 s, 4 s ... at most 30 s; see
`RestartPolicy`). When they keep dying (more than 5 in a row, each within a
minute of its start), the parent stops them all and exits 1, so that whatever
runs it (systemd, Kubernetes) sees the failure instead of a port that answers
now and then.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

log = logging.getLogger("pm_order")

_POLL_SECONDS: Final = 0.1
# Past the children's own shutdown bound: kill the stragglers.
_KILL_MARGIN_SECONDS: Final = 10.0


@dataclass(frozen=True)
class RestartPolicy:
    """When a serving process that ended by itself is started again."""

    first_delay: float = 1.0
    most_delay: float = 30.0
    # A process that lived this long was healthy: the delay starts over.
    healthy_after: float = 60.0
    # Restarts in a row of processes that died young before the parent gives up.
    crash_loop_restarts: int = 5


DEFAULT_RESTARTS: Final = RestartPolicy()


def supervise(
    count: int,
    serve_one: Callable[[], int],
    shutdown_timeout: float,
    restarts: RestartPolicy = DEFAULT_RESTARTS,
) -> int:
    """Fork `count` processes running `serve_one()`; restart one that ends by
    itself (see `RestartPolicy`); on SIGTERM/SIGINT stop them all and return 0 if
    each ended well; return 1 when they keep dying or some did not stop well."""
    children: dict[int, float] = {}  # pid -> when it started
    stop_at: list[float] = []  # when the stop was asked, once asked
    failed = False
    young_deaths = 0  # in a row
    delay = restarts.first_delay

    def start() -> None:
        pid = os.fork()
        if pid == 0:  # the child: serve, then leave without the parent's clean-up
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            code = 1
            try:
                code = serve_one()
            finally:
                logging.shutdown()
                os._exit(code)
        children[pid] = time.monotonic()

    def stop_all() -> None:
        if not stop_at:
            stop_at.append(time.monotonic())
            log.info("stopping %d serving processes", len(children))
        for pid in list(children):
            _signal(pid, signal.SIGTERM)

    def stop(signum: int, frame: object) -> None:
        stop_all()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    for _ in range(count):
        start()
    log.info("started %d serving processes: %s", count, sorted(children))
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            if stop_at and time.monotonic() - stop_at[0] > (
                shutdown_timeout + _KILL_MARGIN_SECONDS
            ):
                for straggler in list(children):
                    log.error("killing serving process %d: it did not stop", straggler)
                    _signal(straggler, signal.SIGKILL)
                failed = True
            time.sleep(_POLL_SECONDS)
            continue
        started = children.pop(pid, None)
        if started is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        if stop_at:
            failed = failed or code != 0
            continue
        if time.monotonic() - started >= restarts.healthy_after:
            young_deaths, delay = 0, restarts.first_delay
        young_deaths += 1
        if young_deaths > restarts.crash_loop_restarts:
            log.error(
                "serving processes keep ending (%d in a row, the last with status "
                "%d, each within %.0f s of its start): stopping",
                young_deaths,
                code,
                restarts.healthy_after,
            )
            failed = True
            stop_all()
            continue
        log.warning(
            "serving process %d ended (status %d); starting another in %.1f s",
            pid,
            code,
            delay,
        )
        _sleep_unless_stopped(delay, stop_at)
        if not stop_at:
            start()
        delay = min(delay * 2, restarts.most_delay)
    return 1 if failed else 0


def _sleep_unless_stopped(seconds: float, stop_at: list[float]) -> None:
    deadline = time.monotonic() + seconds
    while not stop_at and time.monotonic() < deadline:
        time.sleep(min(_POLL_SECONDS, max(deadline - time.monotonic(), 0)))


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
