"""SQL round trips per request, counted on the wire.

A loopback TCP proxy sits between a `pm-order serve --api-only` process and
PostgreSQL (a worker projects beside it, not counted) and
counts round trips: each time the server process sends after it has heard from
PostgreSQL (or first), one trip begins. Pipelined statements sent together are
one trip, as they are on the wire; the driver cannot hide one. It also counts
the protocol's messages (Parse: a statement prepared; Query: a simple query).
One client sends N requests one after another; background work (listening, idle
polls) is measured alone over the same time and subtracted.

    .venv/bin/python bench/roundtrips.py [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from bench_create_orders import DEST, SOURCE, register_servers
from generate import grow
from harness import (
    POSTGRES_URL,
    SP_AGENT,
    fresh_schema,
    pm_order_process,
    running,
    tokens_file,
)

from service.store import open_store, postgres_settings


class Counting:
    def __init__(self) -> None:
        self.trips = 0
        self.messages: Counter[str] = Counter()

    def snapshot(self) -> tuple[int, Counter[str]]:
        return self.trips, Counter(self.messages)


async def proxy(counting: Counting, upstream: tuple[str, int]) -> asyncio.Server:
    async def handle(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection(*upstream)
        heard = {"from_server": True}

        async def client_to_server() -> None:
            first = True
            buffer = b""
            while data := await reader.read(65536):
                if heard["from_server"]:
                    counting.trips += 1
                    heard["from_server"] = False
                buffer += data
                # Frontend messages: type byte + int32 length (none for startup).
                if first:
                    first = False
                    buffer = b""  # the startup message has no type byte
                while len(buffer) >= 5:
                    length = int.from_bytes(buffer[1:5], "big")
                    if len(buffer) < 1 + length:
                        break
                    counting.messages[chr(buffer[0])] += 1
                    buffer = buffer[1 + length :]
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def server_to_client() -> None:
            while data := await up_reader.read(65536):
                heard["from_server"] = True
                writer.write(data)
                await writer.drain()
            writer.close()

        try:
            await asyncio.gather(client_to_server(), server_to_client())
        except (OSError, asyncio.CancelledError):
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def measure(requests: int) -> None:
    settings = postgres_settings(POSTGRES_URL)
    counting = Counting()
    server = await proxy(counting, (settings.host, int(settings.port)))
    port = server.sockets[0].getsockname()[1]
    with fresh_schema() as schema, tempfile.TemporaryDirectory() as directory:
        store = open_store(schema.url)
        grow(store, 2000)
        store.close()
        snids = register_servers(schema.url, requests + 10)
        proxied = schema.url.replace(f":{settings.port}/", f":{port}/")
        tokens, token_of = tokens_file(Path(directory), ["proj-0", SOURCE, DEST])
        # Only the API's trips go through the proxy; the worker projects beside.
        serve = pm_order_process("serve", proxied, tokens=tokens, api_only=True)
        worker = pm_order_process("worker", schema.url)
        with running(worker), running(serve):
            await asyncio.to_thread(
                serve.wait_until_answering, "/mana_api/openapi.json"
            )
            base = serve.base_url
            async with aiohttp.ClientSession() as session:
                lists = [
                    (
                        "GET",
                        "/mana_api/pm_order/proj-0?type=4&limit=50",
                        token_of["proj-0"],
                        None,
                    )
                ] * requests
                posts = [
                    (
                        "POST",
                        f"/mana_api/pm_order/{SOURCE}",
                        token_of[SOURCE],
                        {"snids": s, "dest_project": DEST},
                    )
                    for s in snids
                ]
                await run_all(session, base, posts[:10])  # warm up
                posts = posts[10:]
                await run_all(session, base, lists[:5])
                for name, batch in (("GET list", lists), ("POST order", posts)):
                    idle_trips, _, idle_seconds = await idle(counting)
                    before = counting.snapshot()
                    began = time.perf_counter()
                    await run_all(session, base, batch)
                    seconds = time.perf_counter() - began
                    trips = counting.trips - before[0]
                    background = idle_trips * seconds / idle_seconds
                    print(
                        f"{name}: {(trips - background) / len(batch):.1f} round trips"
                        f" per request ({trips} in {len(batch)} requests, minus"
                        f" {background:.0f} of background work)"
                    )
    server.close()


async def idle(counting: Counting, seconds: float = 3.0) -> tuple[int, Any, float]:
    await asyncio.sleep(2.0)  # the projectors finish what came before
    before = counting.snapshot()
    await asyncio.sleep(seconds)  # measuring what happens with no requests
    return counting.trips - before[0], counting.messages - before[1], seconds


async def run_all(
    session: aiohttp.ClientSession,
    base: str,
    batch: list[tuple[str, str, str, Any]],
) -> None:
    for method, path, token, body in batch:
        headers = {"X-Auth-Token": token, "Sp-Agent": SP_AGENT}
        async with session.request(
            method, base + path, json=body, headers=headers
        ) as response:
            text = await response.text()
            if response.status != 200:
                raise RuntimeError(f"{method} {path}: {response.status} {text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(measure(args.requests))


if __name__ == "__main__":
    main()
