"""GET /healthz (the process is alive) and GET /readyz (it can serve: the store
answers, every view is within its lag bound and moving, the NOTIFY listener
hears). No token; outside the API prefix; for load balancers and orchestrators.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from eventsourcing.persistence import PersistenceError

from api.context import BACKGROUND, CONFIG, EXECUTOR, STATUS, STORE
from api.errors import RETRY_AFTER_SECONDS, ApiError, error_json
from api.responses import json_ok
from projections.executor import in_pool
from projections.view_status import ViewStatus
from service.config import Config
from service.postgres_url import hosts_report, libpq_parameters
from service.release import COMMIT, VERSION
from service.status import Sample
from service.write_confirmation import probe_if_unconfirmed

log = logging.getLogger(__name__)

CHECKS: Final = ("store", "generation", "views", "listener")
NO_PROJECTOR_REMEDY: Final = (
    "`pm-order worker` (or a `pm-order serve` without --api-only)"
)


@dataclass
class _Readiness:
    """The checks that failed at the latest probe (None before any)."""

    failed: list[str] | None = None


_READINESS: Final = web.AppKey("readiness", _Readiness)


def add_routes(app: web.Application) -> None:
    """/healthz and /readyz, at the root: outside the API prefix."""
    app[_READINESS] = _Readiness()
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")


async def healthz(request: web.Request) -> web.Response:
    """Alive: the event loop answers. Nothing else is asked. It says which
    release answers (version and commit): during a rolling upgrade, which
    processes are replaced yet."""
    return json_ok(
        {
            "code": 200,
            "msg": "alive",
            "pid": os.getpid(),
            "version": VERSION,
            "commit": COMMIT,
        }
    )


async def readyz(request: web.Request) -> web.Response:
    """200 when every check passes; 503 naming the failed ones otherwise."""
    config = request.app[CONFIG]
    sample = await request.app[STATUS].sample()
    checks = {
        "store": await _store_check(sample, config),
        "generation": _generation_check(request.app, sample),
        "views": _views_check(sample, config, time.time(), _projects(request.app)),
        "listener": _listener_check(request.app),
        # Shown, never failed on: a broker outage must not take the API out of
        # service (the events wait in the log and are announced later).
        "notifications": _notifications_check(sample),
    }
    unconfirmed = await _unconfirmed_writes(request.app)
    if unconfirmed is not None and checks["store"]["ok"]:
        checks["store"] = {"ok": False, "detail": unconfirmed}
    failed = [name for name in CHECKS if checks[name]["ok"] is False]
    _log_change(request.app, failed, checks)
    if not failed:
        return json_ok({"code": 200, "msg": "ready", "checks": checks})
    reasons = "; ".join(f"{name}: {checks[name]['detail']}" for name in failed)
    return error_json(
        {
            "code": 503,
            "msg": f"not ready: {reasons}",
            "reason": "Service Unavailable",
            "failed": failed,
            "checks": checks,
        },
        503,
        {"Retry-After": RETRY_AFTER_SECONDS},
    )


async def _store_check(sample: Sample, config: Config) -> dict[str, Any]:
    if sample.error:
        detail = f"the store does not answer: {sample.error}"
        if config.database_url.startswith(("postgresql:", "postgres:")):
            # Say which host is down and which not yet promoted: the failover's
            # progress, from each host itself.
            hosts = await hosts_report(libpq_parameters(config.database_url)[0])
            detail += f" ({hosts})"
        return {"ok": False, "detail": detail}
    return {"ok": True, "detail": f"answers; the log's head is {sample.head}"}


async def _unconfirmed_writes(app: web.Application) -> str | None:
    """What to say while writes are not confirmed durable (a lost synchronous
    standby); None when they are (service/write_confirmation.py)."""
    try:
        return await in_pool(
            app[EXECUTOR], probe_if_unconfirmed, app[STORE].app.recorder
        )
    except PersistenceError as error:
        return f"writes are not confirmed durable: {error}"


def _notifications_check(sample: Sample) -> dict[str, Any]:
    backlog = sample.notifications
    if backlog is None:
        return {"ok": None, "detail": "not published (PM_ORDER_TRANSPORT_URL unset)"}
    return {
        "ok": True,
        "detail": f"{backlog.lag_events} events of the log not announced yet, the "
        f"oldest {backlog.lag_seconds:.1f} s old",
        "backlog_events": backlog.lag_events,
        "backlog_seconds": round(backlog.lag_seconds, 3),
    }


def _projects(app: web.Application) -> bool:
    """Whether this process projects (or stands by to): not `serve --api-only`."""
    background = app.get(BACKGROUND)
    return background is None or background.run_work


def _stuck(view: ViewStatus, config: Config, now: float) -> bool:
    """Behind, and not moved for `ready_stuck_after` since it fell behind: since
    its last move or the oldest event it waits for, whichever came later (a quiet
    spell before a write is no sign of trouble)."""
    not_moved_for = now - view.moved_at if view.moved_at is not None else math.inf
    behind_for = min(not_moved_for, view.lag_seconds)
    return view.lag_events > 0 and behind_for > config.ready_stuck_after


def _building(app: web.Application) -> bool:
    """Whether this release's read models are still being built from the log."""
    background = app.get(BACKGROUND)
    return background is not None and not background.following.caught_up_once


def refuse_until_built(request: web.Request) -> None:
    """503 while this release's generation of the read models is being built
    from the log: what it would answer is not yet true (nor would a write's
    answer wait for its effect to show). Load balancers see it in /readyz."""
    if _building(request.app):
        background = request.app[BACKGROUND]
        raise ApiError(
            503,
            f"this process (release {VERSION}) is building its read models"
            f" (generation {background.following.generation}) from the event"
            " log: ask another process, or again shortly; nothing was written",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )


def _generation_check(app: web.Application, sample: Sample) -> dict[str, Any]:
    background = app.get(BACKGROUND)
    if background is None or background.following.generation is None:
        return {"ok": True, "detail": "not registered (no background work)"}
    following = background.following
    name = following.generation
    if sample.shape_problems:
        return {
            "ok": False,
            "detail": f"the tables of generation {name} are not the shape release"
            f" {VERSION} reads: {'; '.join(sample.shape_problems)}",
            "generation": name,
        }
    if not following.caught_up_once:
        position = min((v.position for v in sample.views), default=0)
        head = sample.head
        done = f"{position} of {head} events" if head else "starting"
        return {
            "ok": False,
            "detail": f"generation {name} of the read models (release {VERSION})"
            f" is being built from the event log: {done}",
            "generation": name,
        }
    return {
        "ok": True,
        "detail": f"generation {name} (release {VERSION}) has caught up",
        "generation": name,
    }


async def refuse_writes_nobody_projects(request: web.Request) -> None:
    """On a `serve --api-only` process: 503, before anything is written, while
    the views are stuck. No process projects them then (the worker is down), and
    a write's answer would wait in vain for them (read-your-writes)."""
    if _projects(request.app):
        return  # this process projects, or takes over when the leader ends
    sample = await request.app[STATUS].sample()
    config = request.app[CONFIG]
    now = time.time()
    stuck = [v.name for v in sample.views if _stuck(v, config, now)]
    if stuck:
        raise ApiError(
            503,
            f"no process is keeping the views ({', '.join(stuck)} stuck for over "
            f"{config.ready_stuck_after:g} s) and this one is API only: start "
            f"{NO_PROJECTOR_REMEDY}; nothing was written",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )


def _views_check(
    sample: Sample, config: Config, now: float, projects: bool
) -> dict[str, Any]:
    if sample.error:
        return {"ok": None, "detail": "unknown while the store does not answer"}
    views: dict[str, Any] = {}
    problems = []
    for view in sample.views:
        still_for = now - view.moved_at if view.moved_at is not None else None
        state = "ok"
        if _stuck(view, config, now):
            state = "stuck"
            problems.append(
                f"{view.name} is stuck ({view.lag_events} events behind, "
                + (
                    f"not moved for {still_for:.0f} s)"
                    if still_for is not None
                    else "never moved)"
                )
            )
        elif view.lag_seconds > config.ready_max_lag:
            state = "behind"
            problems.append(
                f"{view.name} is {view.lag_seconds:.0f} s behind "
                f"(bound {config.ready_max_lag:g} s)"
            )
        views[view.name] = {
            "state": state,
            "position": view.position,
            "lag_events": view.lag_events,
            "lag_seconds": round(view.lag_seconds, 3),
            "moved_seconds_ago": round(still_for, 3) if still_for is not None else None,
        }
    if problems:
        if not projects and any(v["state"] == "stuck" for v in views.values()):
            problems.append(
                f"this process is API only (serve --api-only) and does not "
                f"project: start {NO_PROJECTOR_REMEDY}; until then it refuses "
                "writes (503)"
            )
        return {"ok": False, "detail": "; ".join(problems), "views": views}
    return {"ok": True, "detail": "within bounds and moving", "views": views}


def _listener_check(app: web.Application) -> dict[str, Any]:
    background = app.get(BACKGROUND)
    following = background.following if background is not None else None
    alive = following.listener_alive() if following is not None else None
    if alive is None:
        return {"ok": True, "detail": "not used (one process on SQLite)"}
    if alive:
        return {"ok": True, "detail": "listening"}
    listener = following.listener if following is not None else None
    why = listener.error if listener is not None and listener.error else "not heard"
    return {"ok": False, "detail": f"the NOTIFY listener is not hearing: {why}"}


def _log_change(
    app: web.Application, failed: list[str], checks: dict[str, Any]
) -> None:
    """Say when readiness changes, not at every probe."""
    readiness = app[_READINESS]
    before = readiness.failed
    if before == failed:
        return
    readiness.failed = list(failed)
    if failed:
        log.warning(
            "not ready: %s",
            "; ".join(f"{n}: {checks[n]['detail']}" for n in failed),
        )
    elif before is not None:
        log.info("ready again")
