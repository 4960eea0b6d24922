"""The plain CRUD service a user might write instead of pm-order (issue 27's peer).

aiohttp and a psycopg pool, two tables. A POST locks the named servers (`SELECT
... FOR UPDATE`), checks they belong to the caller and are in no unfinished
order, inserts the order, marks the servers, commits and answers the id, with the
contract's success body. Written as a competent user would: small, no event log,
no read model, no group commit.

    python bench/peers/crud_service.py --port 8081 --database-url URL --tokens FILE
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Final

import psycopg
from aiohttp import web
from psycopg_pool import AsyncConnectionPool

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS servers (
    snid TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    order_id BIGINT
);
CREATE TABLE IF NOT EXISTS orders (
    id BIGSERIAL PRIMARY KEY,
    source_project TEXT NOT NULL,
    dest_project TEXT NOT NULL,
    mailto TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'unfinished',
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"""
NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
POOL: Final = web.AppKey("pool", AsyncConnectionPool)
TOKENS: Final = web.AppKey("tokens", dict)


def bad_request(message: str) -> web.Response:
    return web.json_response({"code": 400, "msg": message}, status=400)


async def create_order(request: web.Request) -> web.Response:
    user = request.app[TOKENS].get(request.headers.get("X-Auth-Token", ""))
    project = request.match_info["project"]
    if user is None or user["project_id"] != project:
        return web.json_response({"code": 401, "msg": "unauthorized"}, status=401)
    try:
        body = await request.json()
    except ValueError:
        return bad_request("the body is not JSON")
    snids = [s.strip() for s in str(body.get("snids", "")).split(",") if s.strip()]
    dest = body.get("dest_project")
    if not snids or len(snids) > 200 or len(set(snids)) != len(snids):
        return bad_request("snids: 1..200 distinct serial numbers")
    if not all(NAME.fullmatch(s) for s in snids):
        return bad_request("snids: each 1..64 of A-Z a-z 0-9 . _ -")
    if not isinstance(dest, str) or not NAME.fullmatch(dest) or dest == project:
        return bad_request("dest_project: another project's id")
    async with request.app[POOL].connection() as connection:
        rows = await (
            await connection.execute(
                "SELECT s.snid, s.project, o.state FROM servers s"
                " LEFT JOIN orders o ON o.id = s.order_id"
                " WHERE s.snid = ANY(%s) ORDER BY s.snid FOR UPDATE OF s",
                (snids,),
            )
        ).fetchall()
        if len(rows) != len(snids) or any(row[1] != project for row in rows):
            return bad_request("unknown snids")
        busy = [row[0] for row in rows if row[2] == "unfinished"]
        if busy:
            return web.json_response(
                {"code": 409, "msg": f"in an unfinished order: {','.join(busy)}"},
                status=409,
            )
        cursor = await connection.execute(
            "INSERT INTO orders (source_project, dest_project, mailto, created_by)"
            " VALUES (%s, %s, %s, %s) RETURNING id",
            (project, dest, str(body.get("mailto", "")), user["user_name"]),
        )
        order_id = (await cursor.fetchone())[0]
        await connection.execute(
            "UPDATE servers SET order_id = %s WHERE snid = ANY(%s)", (order_id, snids)
        )
    # Leaving the pool's block committed the transaction.
    return web.json_response({"code": 200, "msg": "add success", "order_id": order_id})


def create_app(database_url: str, tokens: Path) -> web.Application:
    app = web.Application()
    app[TOKENS] = {
        entry["token"]: entry
        for entry in json.loads(tokens.read_text(encoding="utf-8"))["tokens"]
    }

    async def pool(app: web.Application):  # type: ignore[no-untyped-def]
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute(SCHEMA)
        async with AsyncConnectionPool(database_url, min_size=10, open=False) as p:
            await p.open(wait=True)
            app[POOL] = p
            yield

    app.cleanup_ctx.append(pool)
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
