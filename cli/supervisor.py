"""`pm-order serve --workers N`: N serving processes on one port (SO_REUSEPORT),
kept running by this parent, stopped together on SIGTERM or SIGINT."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Final

log = logging.getLogger("pm_order")

_POLL_SECONDS: Final = 0.1
# A process that ends on its own is started again, at most this often.
_RESTART_DELAY_SECONDS: Final = 1.0
# Past the children's own shutdown bound: kill the stragglers.
_KILL_MARGIN_SECONDS: Final = 10.0


def supervise(count: int, serve_one: Callable[[], int], shutdown_timeout: float) -> int:
    """Fork `count` processes running `serve_one()`; restart one that ends by
    itself; on SIGTERM/SIGINT stop them all and return 0 if each ended well."""
    children: set[int] = set()
    stop_at: list[float] = []  # when the stop was asked, once asked
    failed = False

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
        children.add(pid)

    def stop(signum: int, frame: object) -> None:
        if not stop_at:
            stop_at.append(time.monotonic())
            log.info("stopping %d serving processes", len(children))
        for pid in list(children):
            _signal(pid, signal.SIGTERM)

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
        if pid not in children:
            continue
        children.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        if stop_at:
            failed = failed or code != 0
            continue
        log.warning("serving process %d ended (status %d); starting another", pid, code)
        time.sleep(_RESTART_DELAY_SECONDS)
        if not stop_at:
            start()
    return 1 if failed else 0


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
