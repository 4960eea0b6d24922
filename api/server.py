"""The HTTP server around the app: what aiohttp's own server does before (or
instead of) the app's middlewares.

- A client has `client_timeout` seconds from opening a connection, or from the
  first byte of a request (or the end of the one before, when the next began
  while it was handled), to finish sending its headers; otherwise the
  connection is closed, whichever request of a keep-alive connection it is.
  (aiohttp has no such bound: a connection sending nothing, or half its
  headers, stayed open for as long as the client liked.) The body's bound is
  the reading's own (api/requests.py).
- A request the HTTP parser refuses (a malformed header, a URL or a header over
  8 KiB) gets the API's JSON error with a request id, like every other error; the
  log names the kind of fault and the client, never the bytes sent (a header
  could hold a token).
- No answer names the server's software or versions.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    InvalidHeader,
    LineTooLong,
)
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from api.errors import error_response
from api.observe import REQUEST_ID_HEADER, new_request_id

log = logging.getLogger(__name__)

# What every answer says in `Server`: the service, no versions.
SERVER_NAME: Final = "pm-order"
# An idle connection between requests is closed after this (nginx's default).
KEEPALIVE_SECONDS: Final = 75.0


def _fault(error: BaseException | None) -> str:
    """The kind of fault, in words that hold nothing the client sent."""
    if isinstance(error, LineTooLong):
        return "the request line or a header is longer than 8190 bytes"
    if isinstance(error, BadHttpMethod):
        return "the method is not an HTTP method"
    if isinstance(error, BadStatusLine):
        return "the request line is not HTTP"
    if isinstance(error, InvalidHeader):
        return "a header is malformed"
    return "the request is not well-formed HTTP/1.1"


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler, with the headers' time bound and the API's
    error answers."""

    def __init__(self, manager: web.Server, *, client_timeout: float, **kwargs: Any):
        super().__init__(manager, **kwargs)
        self.client_timeout = client_timeout
        self._headers_due: asyncio.TimerHandle | None = None
        self._in_request = False
        # The body of the request being handled, and whether bytes of the next
        # request have arrived with or during it.
        self._payload: StreamReader | None = None
        self._next_begun = False
        make_request = self._request_factory
        assert make_request is not None

        def request_factory(*args: Any) -> BaseRequest:
            # Called once a request's headers are parsed (or refused).
            self._in_request = True
            self._payload = args[1]
            self._stop_clock()
            return make_request(*args)

        self._request_factory = request_factory

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._start_clock()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._in_request and self._headers_due is None:
            self._start_clock()  # the first byte of the next request
        # Bytes after a request whose body has all arrived: the next request's.
        payload = self._payload
        begun = self._in_request and payload is not None and payload.is_eof()
        requests_before = self._request_count
        super().data_received(data)
        if self._request_count > requests_before and self._messages:
            # Bytes after the last complete request without a body, in the same
            # packet: the start of the next request's headers.
            _message, last = self._messages[-1]
            begun = begun or (last is EMPTY_PAYLOAD and not data.endswith(b"\r\n\r\n"))
        self._next_begun = self._next_begun or begun

    async def _handle_request(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super()._handle_request(*args, **kwargs)
        finally:
            self._in_request = False
            self._payload = None
            if self._next_begun and not self._messages:
                # The next request has begun and its headers are not complete:
                # they have the same time as any request's (else keep-alive's).
                self._next_begun = False
                self._start_clock()

    def _start_clock(self) -> None:
        self._headers_due = self._loop.call_later(self.client_timeout, self._too_slow)

    def _stop_clock(self) -> None:
        if self._headers_due is not None:
            self._headers_due.cancel()
            self._headers_due = None

    def _too_slow(self) -> None:
        self._headers_due = None
        if self._in_request or self.transport is None:
            return
        peer = self.transport.get_extra_info("peername")
        log.info(
            "closed a connection from %s: no complete request headers within %g s",
            peer[0] if isinstance(peer, tuple) else "-",
            self.client_timeout,
        )
        self.force_close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The parser's refusals (and any error that escaped the app) as the
        API's JSON error, with a request id; the connection is closed."""
        if request.writer.output_size > 0:
            raise ConnectionError("the answer is being sent already")
        request_id = new_request_id()
        if status >= 500:
            msg = "internal error; it has been logged"
            if not isinstance(exc, ConnectionError):
                log.error(
                    "unexpected error (request_id %s)",
                    request_id,
                    exc_info=exc,
                )
        else:
            msg = f"malformed HTTP request: {_fault(exc)}"
            # Never the exception's own text: it quotes the bytes received.
            log.info(
                "refused a malformed request from %s (%s, request_id %s): %s",
                request.remote or "-",
                type(exc).__name__,
                request_id,
                _fault(exc),
            )
        response = error_response(
            status,
            msg,
            headers={REQUEST_ID_HEADER: request_id, "Server": SERVER_NAME},
        )
        response.force_close()
        return response


class GuardedServer(web.Server):
    """Makes a `GuardedRequestHandler` for each connection."""

    def __init__(self, *args: Any, client_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client_timeout = client_timeout

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(
            self,
            loop=self._loop,
            client_timeout=self.client_timeout,
            **self._kwargs,
        )


class GuardedAppRunner(web.AppRunner):
    """`web.AppRunner` whose connections are `GuardedRequestHandler`s."""

    def __init__(
        self, app: web.Application, *, client_timeout: float, **kwargs: Any
    ) -> None:
        kwargs.setdefault("keepalive_timeout", KEEPALIVE_SECONDS)
        # After an answer sent before its body was read (413, 408...), what is
        # left of the body is read and dropped for at most this long.
        kwargs.setdefault("lingering_time", client_timeout)
        super().__init__(app, **kwargs)
        self.client_timeout = client_timeout

    async def _make_server(self) -> web.Server:
        # The app's own server (its startup run, its handler and request
        # factory), rebuilt as a GuardedServer with the same settings.
        plain = await super()._make_server()
        return GuardedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            client_timeout=self.client_timeout,
            **plain._kwargs,
        )


async def without_versions(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: `Server` names the service, not its software."""
    response.headers["Server"] = SERVER_NAME
