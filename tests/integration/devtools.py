"""Which fonts headless Chromium draws each text of a page with, asked over the
DevTools protocol (CSS.getPlatformFontsForNode), and which characters each of
those fonts has (fontconfig's `fc-list`): to tell a page drawn with no missing
glyph from one with blank boxes.

Chromium listens on a loopback port of its choosing; the test speaks to it over
a WebSocket, with aiohttp, within a bound.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

import aiohttp

WAIT_SECONDS: Final = 60.0
# Elements whose text is never drawn: the page's and the charts' titles are
# tooltips or tab names, the style sheet is not text.
_NOT_DRAWN: Final = frozenset({"HEAD", "TITLE", "STYLE", "SCRIPT", "title"})


@dataclass(frozen=True)
class DrawnText:
    """The text of one element, and the fonts Chromium drew it with."""

    tag: str
    text: str
    fonts: tuple[str, ...]  # PostScript names
    families: tuple[str, ...]


async def drawn_texts(chromium: str, url: str, profile: Path) -> list[DrawnText]:
    """Every element's own text on the page at `url`, with its fonts."""
    process = await asyncio.create_subprocess_exec(
        chromium, "--headless", "--no-sandbox", "--disable-gpu",
        "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync",
        "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
        f"--user-data-dir={profile}", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            port = await _devtools_port(process)
            return await _fonts_of_page(port, url)
    finally:
        process.terminate()
        await process.wait()


async def _devtools_port(process: asyncio.subprocess.Process) -> int:
    assert process.stderr is not None
    while line := await process.stderr.readline():
        if found := re.search(rb"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line):
            return int(found.group(1))
    raise RuntimeError("Chromium exited without opening its DevTools port")


async def _fonts_of_page(port: int, url: str) -> list[DrawnText]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as answer:
            targets = await answer.json()
        page = next(t for t in targets if t["type"] == "page")
        async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            session = _Session(ws)
            await session.call("Page.enable")
            await session.call("Page.navigate", url=url)
            await session.event("Page.loadEventFired")
            await session.call("DOM.enable")
            await session.call("CSS.enable")
            document = await session.call("DOM.getDocument", depth=-1, pierce=False)
            drawn = []
            for node_id, tag, text in _own_texts(document["root"]):
                answer = await session.call(
                    "CSS.getPlatformFontsForNode", nodeId=node_id
                )
                fonts = answer["fonts"]
                drawn.append(
                    DrawnText(
                        tag=tag,
                        text=text,
                        fonts=tuple(f["postScriptName"] for f in fonts),
                        families=tuple(f["familyName"] for f in fonts),
                    )
                )
            return drawn


class _Session:
    """Calls and events on one DevTools WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[str] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        ident = self.next_id
        await self.ws.send_json({"id": ident, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json()
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result
            if "method" in message:
                self.events.append(message["method"])

    async def event(self, method: str) -> None:
        while method not in self.events:
            message = await self.ws.receive_json()
            if "method" in message:
                self.events.append(message["method"])


def _own_texts(node: dict[str, Any]) -> Iterator[tuple[int, str, str]]:
    """(node id, tag, text) of every element with text of its own, drawn."""
    if node.get("nodeName") in _NOT_DRAWN:
        return
    children = node.get("children", [])
    own = "".join(c["nodeValue"] for c in children if c["nodeType"] == 3).strip()
    if node["nodeType"] == 1 and own:
        yield node["nodeId"], node["nodeName"].lower(), own
    for child in children:
        yield from _own_texts(child)


@cache
def characters_of(postscript_name: str) -> frozenset[int]:
    """The code points the installed font `postscript_name` has a glyph for."""
    listed = subprocess.run(
        ["fc-list", "--format=%{charset}\\n", f":postscriptname={postscript_name}"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout.split("\n")[0]  # fmt: skip
    points: set[int] = set()
    for span in listed.split():
        first, _, last = span.partition("-")
        points.update(range(int(first, 16), int(last or first, 16) + 1))
    return frozenset(points)


def missing_glyphs(drawn: DrawnText) -> str:
    """The characters of `drawn` that none of the fonts it was drawn with has."""
    have = frozenset().union(*(characters_of(font) for font in drawn.fonts))
    return "".join(c for c in drawn.text if not c.isspace() and ord(c) not in have)
