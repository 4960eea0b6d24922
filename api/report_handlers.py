"""GET /pm_order_report/{tenant_id}: the reporting figures of the caller's project.

(Being built: see issue 5.)
"""

from __future__ import annotations

from aiohttp import web

from api.errors import ApiError


async def project_report(request: web.Request) -> web.Response:
    raise ApiError(404, "reports are not available yet")
