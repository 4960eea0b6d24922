"""The eventsourcing library as its documentation shows it, behind aiohttp (issue
27's peer).

One `Order` aggregate per POST, saved by `app.save(order)` in the default thread
executor, on the library's PostgreSQL persistence module configured by its
environment variables. No rule on servers, no read model: the least an
event-sourced create can do with the library alone.

    python bench/peers/library_service.py --port 8082 --database-url URL --tokens FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit
from uuid import UUID

from aiohttp import web
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

TOKENS: Final = web.AppKey("tokens", dict)


class Order(Aggregate):
    @event("Requested")
    def __init__(
        self, source_project: str, dest_project: str, snids: list[str], mailto: str
    ) -> None:
        self.source_project = source_project
        self.dest_project = dest_project
        self.snids = snids
        self.mailto = mailto
        self.state = "unfinished"


class Orders(Application[UUID]):
    def request_order(
        self, source_project: str, dest_project: str, snids: list[str], mailto: str
    ) -> str:
        order = Order(source_project, dest_project, snids, mailto)
        self.save(order)
        return str(order.id)


APP: Final = web.AppKey("app", Orders)


async def create_order(request: web.Request) -> web.Response:
    user = request.app[TOKENS].get(request.headers.get("X-Auth-Token", ""))
    project = request.match_info["project"]
    if user is None or user["project_id"] != project:
        return web.json_response({"code": 401, "msg": "unauthorized"}, status=401)
    body = await request.json()
    snids = [s.strip() for s in str(body["snids"]).split(",") if s.strip()]
    order_id = await asyncio.get_running_loop().run_in_executor(
        None,
        request.app[APP].request_order,
        project,
        body["dest_project"],
        snids,
        str(body.get("mailto", "")),
    )
    return web.json_response({"code": 200, "msg": "add success", "order_id": order_id})


def create_app(database_url: str, tokens: Path) -> web.Application:
    url = urlsplit(database_url)
    os.environ.update(
        PERSISTENCE_MODULE="eventsourcing.postgres",
        POSTGRES_DBNAME=url.path.lstrip("/"),
        POSTGRES_HOST=url.hostname or "127.0.0.1",
        POSTGRES_PORT=str(url.port or 5432),
        POSTGRES_USER=url.username or "postgres",
        POSTGRES_PASSWORD=url.password or "",
    )
    app = web.Application()
    app[APP] = Orders()
    app[TOKENS] = {
        entry["token"]: entry
        for entry in json.loads(tokens.read_text(encoding="utf-8"))["tokens"]
    }
    app.router.add_post("/mana_api/pm_order/{project}", create_order)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--tokens", type=Path, required=True)
    args = parser.parse_args()
    web.run_app(
        create_app(args.database_url, args.tokens),
        host="127.0.0.1",
        port=args.port,
        print=None,
    )


if __name__ == "__main__":
    main()
