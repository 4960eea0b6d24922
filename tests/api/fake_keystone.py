"""A fake Keystone: the v3 token API as a real HTTP server on 127.0.0.1.

It speaks what the real one does for POST /v3/auth/tokens (password and
application-credential log-in, 201 with X-Subject-Token) and GET
/v3/auth/tokens (X-Auth-Token: the caller's own token, X-Subject-Token: the one
to validate; 200 with the token body, 401 for a bad X-Auth-Token, 404 for an
unknown or expired subject). It counts every call, can be taken down (the port
refuses connections), made slow or made to answer 500, and can revoke the
service tokens it has issued.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from aiohttp import web

Scope = Literal["project", "domain", "system", "unscoped"]
Mode = Literal["up", "slow", "error"]

DEFAULT_DOMAIN: Final = {"id": "default", "name": "Default"}
# A slow Keystone holds each request at most this long (or until released).
SLOW_SECONDS: Final = 30.0


def _keystone_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _error(status: int, title: str, message: str) -> web.Response:
    return web.json_response(
        {"error": {"code": status, "title": title, "message": message}},
        status=status,
    )


class FakeKeystone:
    """Keystone v3 tokens, for tests; `url` is its endpoint once started."""

    SERVICE_USER: Final = "pm-order"
    SERVICE_PASSWORD: Final = "service-password"
    SERVICE_PROJECT: Final = "service"
    APP_CREDENTIAL_ID: Final = "0b8a9f1e2c3d4e5f"
    APP_CREDENTIAL_SECRET: Final = "app-credential-secret"

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        service_token_seconds: float = 3600,
    ) -> None:
        self.clock = clock
        self.service_token_seconds = service_token_seconds
        self.mode: Mode = "up"
        # Subject token -> how many validations (GET) were asked for it.
        self.validations: Counter[str] = Counter()
        # Validations being answered now, and the most at once so far.
        self.in_flight = 0
        self.most_in_flight = 0
        # Unknown tokens are held until `release()` (a Keystone slowed down by
        # a flood of them); known ones are answered at once.
        self.hold_unknown = False
        # How long each validation takes (a Keystone some milliseconds away).
        self.latency = 0.0
        self.logins = 0
        self._tokens: dict[str, dict[str, Any]] = {}
        self._service_tokens: set[str] = set()
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v3"

    # -- what tests set up ---------------------------------------------------------

    def issue(
        self,
        user: str = "alice",
        project: str = "proj-a",
        roles: tuple[str, ...] = ("member",),
        *,
        scope: Scope = "project",
        expires_in: timedelta = timedelta(hours=1),
    ) -> str:
        """A user token as Keystone would issue it; returns the token."""
        token = "gAAAAA" + secrets.token_urlsafe(132)
        self._tokens[token] = self._token_body(
            user, project, roles, scope=scope, expires_in=expires_in, method="password"
        )
        return token

    def revoke_service_tokens(self) -> None:
        """Every service token issued so far is refused from now on (401)."""
        for token in self._service_tokens:
            self._tokens.pop(token, None)
        self._service_tokens.clear()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v3/auth/tokens", self._log_in)
        app.router.add_get("/v3/auth/tokens", self._validate)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def down(self) -> None:
        """Stop listening and drop every connection: calls are refused."""
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def up(self) -> None:
        """Listen again, on the same port."""
        self.mode = "up"
        self._released = asyncio.Event()
        await self.start()

    def release(self) -> None:
        """Let requests held by a slow Keystone go on."""
        self._released.set()

    async def stop(self) -> None:
        await self.down()

    @classmethod
    @contextlib.contextmanager
    def in_thread(cls, **options: Any) -> Iterator[FakeKeystone]:
        """Served by an event loop of its own, for tests that block their thread."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()

        async def started() -> FakeKeystone:
            fake = cls(**options)
            await fake.start()
            return fake

        fake = asyncio.run_coroutine_threadsafe(started(), loop).result(10)
        try:
            yield fake
        finally:
            asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()

    # -- the v3 API ----------------------------------------------------------------

    async def _misbehave(self) -> web.Response | None:
        if self.mode == "error":
            return _error(
                500,
                "Internal Server Error",
                "An unexpected error prevented the server from fulfilling your "
                "request.",
            )
        if self.mode == "slow":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), SLOW_SECONDS)
        return None

    async def _log_in(self, request: web.Request) -> web.Response:
        self.logins += 1
        refused = await self._misbehave()
        if refused is not None:
            return refused
        try:
            body = await request.json()
            identity = body["auth"]["identity"]
            methods = identity["methods"]
        except (ValueError, KeyError, TypeError):
            return _error(400, "Bad Request", "Expecting to find auth in request.")
        if methods == ["password"] and self._password_ok(body["auth"]):
            method = "password"
        elif methods == ["application_credential"] and self._app_credential_ok(
            identity
        ):
            method = "application_credential"
        else:
            return _error(
                401,
                "Unauthorized",
                "The request you have made requires authentication.",
            )
        token = "gAAAAA" + secrets.token_urlsafe(132)
        self._tokens[token] = self._token_body(
            self.SERVICE_USER,
            self.SERVICE_PROJECT,
            ("service",),
            scope="project",
            expires_in=timedelta(seconds=self.service_token_seconds),
            method=method,
        )
        self._service_tokens.add(token)
        return web.json_response(
            {"token": self._tokens[token]},
            status=201,
            headers={"X-Subject-Token": token},
        )

    async def _validate(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await self._validation(request)
        finally:
            self.in_flight -= 1

    async def _validation(self, request: web.Request) -> web.Response:
        subject = request.headers.get("X-Subject-Token", "")
        self.validations[subject] += 1
        if self.latency:
            await asyncio.sleep(self.latency)  # the network and Keystone's work
        if self.hold_unknown and subject not in self._tokens:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), SLOW_SECONDS)
        refused = await self._misbehave()
        if refused is not None:
            return refused
        if not self._valid_service_token(request.headers.get("X-Auth-Token", "")):
            return _error(
                401,
                "Unauthorized",
                "The request you have made requires authentication.",
            )
        if not subject:
            return _error(
                400, "Bad Request", "Expecting to find X-Subject-Token in request."
            )
        body = self._tokens.get(subject)
        if body is None or self._expired(body):
            return _error(404, "Not Found", f"Could not find token: {subject}.")
        answer: dict[str, Any] = {"token": dict(body)}
        if "nocatalog" not in request.query:
            answer["token"]["catalog"] = []
        return web.json_response(answer, headers={"X-Subject-Token": subject})

    # -- tokens ----------------------------------------------------------------------

    def _password_ok(self, auth: dict[str, Any]) -> bool:
        try:
            user = auth["identity"]["password"]["user"]
            project = auth["scope"]["project"]
        except (KeyError, TypeError):
            return False
        return (
            user.get("name") == self.SERVICE_USER
            and user.get("domain") == {"name": "Default"}
            and user.get("password") == self.SERVICE_PASSWORD
            and project.get("name") == self.SERVICE_PROJECT
            and project.get("domain") == {"name": "Default"}
        )

    def _app_credential_ok(self, identity: dict[str, Any]) -> bool:
        credential = identity.get("application_credential")
        return isinstance(credential, dict) and (
            credential.get("id") == self.APP_CREDENTIAL_ID
            and credential.get("secret") == self.APP_CREDENTIAL_SECRET
        )

    def _valid_service_token(self, token: str) -> bool:
        return token in self._service_tokens and not self._expired(self._tokens[token])

    def _expired(self, body: dict[str, Any]) -> bool:
        expires_at = datetime.fromisoformat(body["expires_at"])
        return bool(expires_at <= self.clock())

    def _token_body(
        self,
        user: str,
        project: str,
        roles: tuple[str, ...],
        *,
        scope: Scope,
        expires_in: timedelta,
        method: str,
    ) -> dict[str, Any]:
        now = self.clock()
        body: dict[str, Any] = {
            "methods": [method],
            "user": {
                "id": secrets.token_hex(16),
                "name": user,
                "domain": DEFAULT_DOMAIN,
                "password_expires_at": None,
            },
            "audit_ids": [secrets.token_urlsafe(16)],
            "expires_at": _keystone_time(now + expires_in),
            "issued_at": _keystone_time(now),
        }
        if scope != "unscoped":
            body["roles"] = [{"id": secrets.token_hex(16), "name": r} for r in roles]
        if scope == "project":
            body["project"] = {
                "id": project,
                "name": f"{project} (name)",
                "domain": DEFAULT_DOMAIN,
            }
            body["is_domain"] = False
        elif scope == "domain":
            body["domain"] = DEFAULT_DOMAIN
        elif scope == "system":
            body["system"] = {"all": True}
        return body
