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
- A client that takes nothing of its answer (one large enough to wait on it:
  64 KiB or more) for `send_timeout` seconds is disconnected, its answer
  dropped; such answers waiting for their clients hold at most the process's
  send buffer budget (api/send_buffer.py), past which one is answered 503.
  An answer's body is let go once it is sent (aiohttp kept it until the
  connection's next request).
- The process may hold as many connections as its hard limit on open files
  allows (the soft limit is raised to it at start, and logged); when it is out
  of descriptors all the same, waiting connections are shed (accepted and
  closed at once, with a spare descriptor kept for that) and one log line a
  minute says how many, where asyncio would log a traceback for each.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import resource
import socket
import time
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    InvalidHeader,
    LineTooLong,
)
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from api.allocator import map_large_blocks
from api.context import METRICS
from api.errors import RETRY_AFTER_SECONDS, error_response
from api.observe import REQUEST_ID_HEADER, new_request_id
from api.send_buffer import LARGE_ANSWER, SendBuffer, SendBufferCollector

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
    """aiohttp's connection handler, with the headers' time bound, the send
    timeout and buffer, and the API's error answers."""

    def __init__(
        self,
        manager: web.Server,
        *,
        client_timeout: float,
        send_timeout: float,
        send_buffer: SendBuffer,
        **kwargs: Any,
    ):
        super().__init__(manager, **kwargs)
        self.client_timeout = client_timeout
        self.send_timeout = send_timeout
        self.send_buffer = send_buffer
        self._headers_due: asyncio.TimerHandle | None = None
        # The answer being sent, as counted in the send buffer (0: none); while
        # it waits for the client, when the client is next due to take some of
        # it, and how much was left to send then.
        self._held = 0
        self._send_due: asyncio.TimerHandle | None = None
        self._unsent = 0
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
        self._stop_send_clock()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        # The transport holds more than it may: the client is not taking the
        # answer as fast as it is written. From now on it must take some of it
        # every send_timeout seconds.
        super().pause_writing()
        self._start_send_clock()

    def resume_writing(self) -> None:
        self._stop_send_clock()
        super().resume_writing()

    async def hold(self, size: int) -> bool:
        """Count an answer of `size` bytes in the send buffer until it is sent;
        False when the buffer has no room for it (nothing counted)."""
        if not await self.send_buffer.admit(size):
            return False
        self._held = size
        return True

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
            response, reset = await super()._handle_request(*args, **kwargs)
            if isinstance(response, web.Response) and response.prepared:
                # Sent (or dropped): aiohttp keeps a connection's last answer
                # until its next request, up to the keep-alive's 75 s; its body
                # goes now (a 1,000-order page is 250 KiB).
                response.body = None
            return response, reset
        finally:
            # Sent (but for the transport's last 16 KiB) or dropped.
            if self._held:
                self.send_buffer.release(self._held)
                self._held = 0
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

    def _start_send_clock(self) -> None:
        assert self.transport is not None
        self._unsent = self.transport.get_write_buffer_size()
        self._send_due = self._loop.call_later(self.send_timeout, self._taking_nothing)

    def _stop_send_clock(self) -> None:
        if self._send_due is not None:
            self._send_due.cancel()
            self._send_due = None

    def _taking_nothing(self) -> None:
        self._send_due = None
        transport = self.transport
        if transport is None:
            return
        if transport.get_write_buffer_size() < self._unsent:
            self._start_send_clock()  # it took some: it has as long again
            return
        peer = transport.get_extra_info("peername")
        log.info(
            "closed a connection from %s: it took nothing of its answer "
            "(%d bytes left) within %g s",
            peer[0] if isinstance(peer, tuple) else "-",
            self._unsent,
            self.send_timeout,
        )
        self.send_buffer.too_slow += 1
        # Not close(): it would wait for the client to take what is left.
        transport.abort()

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

    def __init__(
        self,
        *args: Any,
        client_timeout: float,
        send_timeout: float,
        send_buffer: SendBuffer,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.client_timeout = client_timeout
        self.send_timeout = send_timeout
        self.send_buffer = send_buffer

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(
            self,
            loop=self._loop,
            client_timeout=self.client_timeout,
            send_timeout=self.send_timeout,
            send_buffer=self.send_buffer,
            **self._kwargs,
        )


# When the hard limit is "unlimited", the soft one is raised to this (Linux's
# default ceiling, fs.nr_open).
MOST_DESCRIPTORS: Final = 1_048_576
# At most one line in this many seconds about connections shed.
SHED_LOG_SECONDS: Final = 60.0
# Connections shed at once, at most, each time accepting fails.
SHED_AT_ONCE: Final = 256
_OUT_OF_DESCRIPTORS: Final = frozenset({errno.EMFILE, errno.ENFILE})


def raise_descriptor_limit() -> int:
    """Raise the soft limit on open files to the hard one; the limit in force
    (logged: what the process can hold is known from its first line)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MOST_DESCRIPTORS if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        log.info("open files: at most %s", soft)
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    except (ValueError, OSError) as error:
        log.warning("open files: at most %d (raising it failed: %s)", soft, error)
        return soft
    log.info("open files: at most %d (the soft limit, %d, raised)", wanted, soft)
    return wanted


class DescriptorShedding:
    """The event loop's exception handler while serving: a failure to accept for
    want of descriptors sheds the waiting connections and is logged once a
    minute at most; anything else goes to the handler it replaces."""

    def __init__(
        self,
        previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.previous = previous
        self.clock = clock
        self.shed = 0
        self.failures = 0
        self._logged_at: float | None = None
        # Two: one for a descriptor of the listening socket, one per connection.
        self._spare = _spare_descriptors()

    def __call__(
        self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]
    ) -> None:
        error = context.get("exception")
        listener = context.get("socket")
        if _retry_after_close(context):
            return  # asyncio's retry of an accept, due after the server closed
        if not (
            isinstance(error, OSError)
            and error.errno in _OUT_OF_DESCRIPTORS
            and listener is not None
        ):
            if self.previous is not None:
                self.previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        self.failures += 1
        self.shed += self._shed(listener)
        now = self.clock()
        if self._logged_at is None or now - self._logged_at >= SHED_LOG_SECONDS:
            self._logged_at = now
            log.warning(
                "out of file descriptors (at most %s): %d connections shed, "
                "%d failed accepts since the last such line; raise the limit "
                "(LimitNOFILE) or add processes",
                resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                self.shed,
                self.failures,
            )
            self.shed = self.failures = 0

    def close(self) -> None:
        for descriptor in self._spare:
            os.close(descriptor)
        self._spare = []

    def _shed(self, listener: Any) -> int:
        """Accept and close at once the connections waiting on `listener`,
        with the descriptors the spare ones free: a client is told at once,
        instead of waiting for a descriptor that may never come."""
        if not self._spare:
            return 0
        self.close()
        shed = 0
        try:
            # A descriptor of the listening socket's own (closing it leaves the
            # server's open); non-blocking, as the server's is.
            with socket.socket(fileno=os.dup(listener.fileno())) as waiting:
                waiting.setblocking(False)
                while shed < SHED_AT_ONCE:
                    connection, _address = waiting.accept()
                    connection.close()
                    shed += 1
        except OSError:
            pass  # none waiting any more, or still out of descriptors
        self._spare = _spare_descriptors()
        return shed


def _spare_descriptors() -> list[int]:
    spare: list[int] = []
    try:
        for _ in range(2):
            spare.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    return spare


def _retry_after_close(context: dict[str, Any]) -> bool:
    """asyncio's retry of accepting (scheduled when a descriptor was lacking),
    run after the server closed its socket: nothing is wrong, nothing to say."""
    handle = context.get("handle")
    callback = getattr(handle, "_callback", None)
    return isinstance(context.get("exception"), ValueError) and (
        getattr(callback, "__name__", "") == "_start_serving"
    )


class GuardedAppRunner(web.AppRunner):
    """`web.AppRunner` whose connections are `GuardedRequestHandler`s."""

    def __init__(
        self,
        app: web.Application,
        *,
        client_timeout: float,
        send_timeout: float,
        send_buffer_bytes: int,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("keepalive_timeout", KEEPALIVE_SECONDS)
        # After an answer sent before its body was read (413, 408...), what is
        # left of the body is read and dropped for at most this long.
        kwargs.setdefault("lingering_time", client_timeout)
        super().__init__(app, **kwargs)
        self.client_timeout = client_timeout
        self.send_timeout = send_timeout
        self.send_buffer = SendBuffer(send_buffer_bytes)
        self._shedding: DescriptorShedding | None = None

    async def setup(self) -> None:
        raise_descriptor_limit()
        map_large_blocks()
        if METRICS in self.app:
            self.app[METRICS].registry.register(SendBufferCollector(self.send_buffer))
        loop = asyncio.get_running_loop()
        self._shedding = DescriptorShedding(loop.get_exception_handler())
        loop.set_exception_handler(self._shedding)
        await super().setup()

    async def cleanup(self) -> None:
        await super().cleanup()
        if self._shedding is not None:
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(self._shedding.previous)
            self._shedding.close()
            self._shedding = None

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
            send_timeout=self.send_timeout,
            send_buffer=self.send_buffer,
            **plain._kwargs,
        )


async def without_versions(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: `Server` names the service, not its software."""
    response.headers["Server"] = SERVER_NAME


@web.middleware
async def send_buffer_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """A large answer is sent only if the server's send buffer has room for it
    (within a second); otherwise 503 with Retry-After. (On a server other than
    GuardedAppRunner's, as in tests, every answer is sent.)"""
    response = await handler(request)
    connection = request.protocol
    if not isinstance(response, web.Response) or response.prepared:
        return response  # streamed by its handler: sent already
    size = response.content_length or 0
    if size < LARGE_ANSWER or not isinstance(connection, GuardedRequestHandler):
        return response
    if await connection.hold(size):
        return response
    return error_response(
        503,
        "the server holds as many answers as it may for clients still taking "
        "theirs; try again",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )
