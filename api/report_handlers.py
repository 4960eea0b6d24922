"""GET /pm_order_report/{tenant_id}: the reporting figures of the caller's project.

The same figures as `pm-order report --tenant T`, days in UTC; the optional
`since` and `until` (YYYY-MM-DD, both included) bound the days.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from aiohttp import web

from api.context import IDENTITY, STORE, before_read, run
from api.responses import json_ok
from domain.exceptions import InvalidInput
from projections.reports import Figures, Reports, parse_day


async def project_report(request: web.Request) -> web.Response:
    """GET: the caller's project per day, with its summary."""
    project = request[IDENTITY].project
    since, until = _day_range(request)
    await before_read(request)
    figures = await run(
        request, Reports.figures, request.app[STORE].views, project, since, until
    )
    return json_ok(report_json(project, figures))


def report_json(project: str, figures: Figures) -> dict[str, Any]:
    summary = figures.summary_of(project).as_json()
    del summary["project"]
    days = [day.as_json() for day in figures.days]
    for day in days:
        del day["project"]
    return {
        "code": 200,
        "msg": "",
        "tenant_id": project,
        "days": days,
        "summary": summary,
    }


def _day_range(request: web.Request) -> tuple[date | None, date | None]:
    since, until = _day(request, "since"), _day(request, "until")
    if since and until and since > until:
        raise InvalidInput(f"'since' ({since}) is after 'until' ({until})")
    return since, until


def _day(request: web.Request, name: str) -> date | None:
    given = request.query.getall(name, [])
    if len(given) > 1:
        raise InvalidInput(f"'{name}' is given more than once")
    if not given:
        return None
    try:
        return parse_day(given[0])
    except ValueError as error:
        raise InvalidInput(f"'{name}': {error}") from None
