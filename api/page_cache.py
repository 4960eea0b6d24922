"""Rendered list pages kept in this process, each with the project's version it
was read at; a page is answered from here only after one primary-key read of the
project's current version finds it unchanged.

The version is written by the projector in the same transaction as the rows and
the tracking (projections/order_lists.py), so a write that any process answered
(its views showed it) has already moved the version that this process reads
after: read-your-writes holds whichever process answers. No notification is
trusted to invalidate anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# About a thousand pages of fifty orders: memory stays bounded and flat whatever
# the store's size.
MAX_BYTES: Final = 24 * 1024 * 1024

PageKey = tuple[str, str]  # project, the request's query string


@dataclass(frozen=True)
class CachedPage:
    version: int | None
    body: bytes


class PageCache:
    """Least recently used first, bounded by the bytes of the bodies held."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._pages: dict[PageKey, CachedPage] = {}
        self._bytes = 0

    def get(self, key: PageKey) -> CachedPage | None:
        page = self._pages.pop(key, None)
        if page is not None:
            self._pages[key] = page  # now the most recently used
        return page

    def put(self, key: PageKey, version: int | None, body: bytes) -> None:
        old = self._pages.pop(key, None)
        if old is not None:
            self._bytes -= len(old.body)
        if len(body) > self.max_bytes:
            return
        self._pages[key] = CachedPage(version, body)
        self._bytes += len(body)
        while self._bytes > self.max_bytes:
            oldest = next(iter(self._pages))
            self._bytes -= len(self._pages.pop(oldest).body)

    def __len__(self) -> int:
        return len(self._pages)

    @property
    def bytes(self) -> int:
        return self._bytes
