"""Log lines: one JSON object per line (or text for people), each with the id of
the request it belongs to, and never a secret.

The request ids live in context variables: set by the API for each request,
copied into the store's threads (projections/executor.py), added to every
record by a filter on the handler.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from typing import Final, TextIO

from pythonjsonlogger.json import JsonFormatter

FORMATS: Final = ("json", "text")

# This process's id of the request being served, and the caller's id for the
# whole operation (OpenStack's global request id), when it sent one.
REQUEST_ID: Final[contextvars.ContextVar[str | None]] = contextvars.ContextVar(
    "request_id", default=None
)
GLOBAL_REQUEST_ID: Final[contextvars.ContextVar[str | None]] = contextvars.ContextVar(
    "global_request_id", default=None
)

_TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
_JSON_FIELDS: Final = ("asctime", "levelname", "name", "message")
_RENAMED: Final = {"asctime": "time", "levelname": "level", "name": "logger"}

# user:password@ in any URL (an SMTP or database URL in an error message).
_URL_CREDENTIALS: Final = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")


class RequestContext(logging.Filter):
    """Adds `request_id` and `global_request_id` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        global_id = GLOBAL_REQUEST_ID.get()
        if global_id is not None:
            record.global_request_id = global_id
        return True


class Redacting(logging.Filter):
    """Blanks the credentials of URLs, wherever a message carries one."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _URL_CREDENTIALS.sub(r"\g<scheme>***@", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact(text: str) -> str:
    """`text` with the user and password of any URL in it blanked."""
    return _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)


def configure(log_format: str = "json", *, stream: TextIO | None = None) -> None:
    """Send every log record at INFO and above to `stream` (stderr) in
    `log_format`, replacing any handler set before."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestContext())
    handler.addFilter(Redacting())
    formatter: logging.Formatter
    if log_format == "json":
        formatter = JsonFormatter(
            list(_JSON_FIELDS),
            rename_fields=dict(_RENAMED),
            timestamp=False,
        )
    else:
        formatter = logging.Formatter(_TEXT_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
