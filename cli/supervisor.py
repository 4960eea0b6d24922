"""`pm-order serve --workers N`: N serving processes on one port (SO_REUSEPORT),
kept running by this parent, stopped together on SIGTERM or SIGINT.

Each serving process ends with the parent, even one killed with SIGKILL (the
kernel sends it SIGTERM), and one that fails says why, in its own log line and
in the parent's.

A serving process that ends by itself is started again after a delay that
doubles while processes keep dying young (1 s, 2 s, 4 s ... at most 30 s; see
`RestartPolicy`). When they keep dying (more than 5 in a row, each within a
minute of its start), the parent stops them all and exits 1, so that whatever
runs it (systemd, Kubernetes) sees the failure instead of a port that answers
now and then.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

log = logging.getLogger("pm_order")

_POLL_SECONDS: Final = 0.1
# Past the children's own shutdown bound: kill the stragglers.
_KILL_MARGIN_SECONDS: Final = 10.0
# <linux/prctl.h>: the signal a process gets when its parent ends.
_PR_SET_PDEATHSIG: Final = 1


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

    parent = os.getpid()
    reasons: dict[int, int] = {}  # pid -> the read end of its pipe
    _prctl()

    def start() -> None:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: serve, then leave without the parent's clean-up
            os.close(read_end)
            for fd in reasons.values():
                os.close(fd)
            os._exit(_serve_child(serve_one, parent, write_end))
        os.close(write_end)
        os.set_blocking(read_end, False)
        reasons[pid] = read_end
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
        why = _reason(reasons.pop(pid))
        if stop_at:
            failed = failed or code != 0
            continue
        if time.monotonic() - started >= restarts.healthy_after:
            young_deaths, delay = 0, restarts.first_delay
        young_deaths += 1
        if young_deaths > restarts.crash_loop_restarts:
            log.error(
                "serving processes keep ending (%d in a row, the last with status "
                "%d%s, each within %.0f s of its start): stopping",
                young_deaths,
                code,
                f": {why}" if why else "",
                restarts.healthy_after,
            )
            failed = True
            stop_all()
            continue
        log.warning(
            "serving process %d ended (status %d%s); starting another in %.1f s",
            pid,
            code,
            f": {why}" if why else "",
            delay,
        )
        _sleep_unless_stopped(delay, stop_at)
        if not stop_at:
            start()
        delay = min(delay * 2, restarts.most_delay)
    return 1 if failed else 0


def _serve_child(serve_one: Callable[[], int], parent: int, reason_fd: int) -> int:
    """In a forked child: serve until told to stop, or until the parent dies
    (whichever way: SIGKILL included); an error that ends it is logged and
    written to `reason_fd` for the parent to say."""
    code = 1
    try:
        _die_with_parent(parent)
        code = serve_one()
    except SystemExit as leaving:
        code = leaving.code if isinstance(leaving.code, int) else 1
    except BaseException as error:  # noqa: BLE001 (said, then the status says it)
        reason = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        log.error("serving process %d failed: %s", os.getpid(), reason)
        with contextlib.suppress(OSError):
            os.write(reason_fd, reason.encode(errors="replace"))
    finally:
        logging.shutdown()
    return code


def _die_with_parent(parent: int) -> None:
    """Have the kernel send SIGTERM when the parent ends, however it ends: a
    child left behind would go on serving the old configuration (Linux's
    PR_SET_PDEATHSIG; the parent may have died before it was set)."""
    if _prctl()(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    # Only now the default actions: a SIGTERM the parent sent while this process
    # was being made went to the parent's own handler, harmless here.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)
    if os.getppid() != parent:
        raise SystemExit(1)  # it died before it could be watched


@functools.cache
def _prctl() -> Any:
    """libc's prctl, looked up once (in the parent, before it forks: a child
    starts serving without the lookup's delay)."""
    return ctypes.CDLL(None, use_errno=True).prctl


def _reason(fd: int) -> str:
    """What the child wrote before it ended (empty when it said nothing)."""
    try:
        return os.read(fd, 1024).decode(errors="replace")
    except OSError:
        return ""
    finally:
        os.close(fd)


def _sleep_unless_stopped(seconds: float, stop_at: list[float]) -> None:
    deadline = time.monotonic() + seconds
    while not stop_at and time.monotonic() < deadline:
        time.sleep(min(_POLL_SECONDS, max(deadline - time.monotonic(), 0)))


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
