"""The JSON log lines: the fast formatter writes what python-json-logger writes."""

from __future__ import annotations

import logging
from datetime import datetime

from pythonjsonlogger.json import JsonFormatter

from service.logs import (
    _JSON_FIELDS,
    _RENAMED,
    REQUEST_ID,
    FastJsonFormatter,
    RequestContext,
)


def records() -> list[logging.LogRecord]:
    captured: list[logging.LogRecord] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    logger = logging.getLogger("tests.log_format")
    handler = Capture()
    handler.addFilter(RequestContext())
    logger.addHandler(handler)
    logger.propagate = False
    token = REQUEST_ID.set("req-1")
    try:
        logger.warning("héllo %s ✓", "wörld", extra={"a": 1, "b": [1, 2], "c": None})
        logger.warning("plain")
        logger.warning({"a": "dict message"})
        logger.warning("a moment", extra={"when": datetime(2030, 1, 1), "_hidden": 1})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed %d", 3)
        logger.warning("with the stack", stack_info=True)
    finally:
        REQUEST_ID.reset(token)
        logger.removeHandler(handler)
    return captured


def test_every_line_is_the_librarys_line() -> None:
    library = JsonFormatter(
        list(_JSON_FIELDS), rename_fields=dict(_RENAMED), timestamp=False
    )
    fast = FastJsonFormatter()
    for record in records():
        assert fast.format(record) == library.format(record)
