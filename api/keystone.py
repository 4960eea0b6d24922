"""Tokens checked against OpenStack Keystone v3, remembered by their SHA-256.

The service logs in to Keystone with its own credentials (POST /v3/auth/tokens)
and validates each caller's token with GET /v3/auth/tokens?nocatalog, the
caller's token in X-Subject-Token and its own in X-Auth-Token. Answers are
cached: a valid token for the shorter of the cache time and its own expiry, a
refused one for a few seconds. Concurrent requests with one token share one
call. Keystone failing in any way is IdentityUnavailable (503), never a 401.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import aiohttp
from cachetools import TLRUCache

from api.auth import Identity, IdentityUnavailable
from service.keystone_settings import KeystoneSettings

log = logging.getLogger(__name__)

# Keystone tokens (Fernet, JWS) are a few hundred printable ASCII characters; anything
# else is refused without troubling Keystone (and could not be sent in a header).
_PLAUSIBLE_TOKEN: Final = re.compile(r"[!-~]{1,8192}")
# Token validations in flight at once, per process; the others wait (at most the
# call's timeout, then 503). Each client address has its own, smaller, bound
# (PM_ORDER_AUTH_FAILURE_BURST), so that one address cannot take them all.
MOST_IN_FLIGHT: Final = 50


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Answer:
    """What Keystone said of a token: its identity until `expires_at`, or None."""

    identity: Identity | None
    expires_at: datetime | None = None


@dataclass(frozen=True)
class _ServiceToken:
    token: str
    expires_at: datetime


class KeystoneAuthenticator:
    """The `Authenticator` for a cloud: Keystone v3 decides who a token is."""

    def __init__(
        self,
        settings: KeystoneSettings,
        *,
        clock: Callable[[], datetime] = _utc_now,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._cache: TLRUCache[str, _Answer, float] = TLRUCache(
            settings.cache_size, self._keep_until, timer
        )
        self._pending: dict[str, asyncio.Task[_Answer]] = {}
        self._in_flight = asyncio.Semaphore(MOST_IN_FLIGHT)
        self._session: aiohttp.ClientSession | None = None
        self._service: _ServiceToken | None = None
        self._service_lock = asyncio.Lock()

    async def identify(self, token: str) -> Identity | None:
        if not _PLAUSIBLE_TOKEN.fullmatch(token):
            return None
        key = hashlib.sha256(token.encode()).hexdigest()
        answer = self._cache.get(key)
        if answer is not None:
            return answer.identity
        task = self._pending.get(key)
        if task is None:
            task = asyncio.create_task(self._check(key, token))
            task.add_done_callback(_retrieve_exception)
            self._pending[key] = task
        # A caller that goes away must not cancel the check the others wait for.
        return (await asyncio.shield(task)).identity

    def vouches_for(self, token: str) -> bool:
        if not _PLAUSIBLE_TOKEN.fullmatch(token):
            return False
        answer = self._cache.get(hashlib.sha256(token.encode()).hexdigest())
        return answer is not None and answer.identity is not None

    async def close(self) -> None:
        pending = list(self._pending.values())
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- one token's check ---------------------------------------------------------

    async def _check(self, key: str, token: str) -> _Answer:
        try:
            # At most so many validations at once, whoever asks: a flood of new
            # tokens neither piles up on Keystone nor holds every other caller.
            try:
                async with asyncio.timeout(self.settings.timeout_seconds):
                    await self._in_flight.acquire()
            except TimeoutError:
                log.warning(
                    "%d token validations are in flight already", MOST_IN_FLIGHT
                )
                raise IdentityUnavailable("too many token validations") from None
            try:
                answer = await self._validate(token)
            finally:
                self._in_flight.release()
            self._cache[key] = answer
            return answer
        finally:
            self._pending.pop(key, None)

    def _keep_until(self, key: str, answer: _Answer, now: float) -> float:
        if answer.identity is None or answer.expires_at is None:
            keep = min(self.settings.invalid_cache_seconds, self.settings.cache_seconds)
        else:
            left = (answer.expires_at - self._clock()).total_seconds()
            keep = min(self.settings.cache_seconds, left)
        return now + keep

    async def _validate(self, token: str) -> _Answer:
        stale: str | None = None
        for _attempt in range(2):
            service_token = await self._service_token(stale=stale)
            status, body = await self._call(
                "GET",
                self.settings.tokens_url + "?nocatalog",
                headers={"X-Auth-Token": service_token, "X-Subject-Token": token},
            )
            if status == 200:
                return self._answer_from(body)
            if status == 404:
                # Unknown, expired or revoked: Keystone says so with 404.
                return _Answer(identity=None)
            if status != 401:
                break
            # Keystone no longer takes the service token: renew it once.
            log.info("Keystone refused the service token; logging in again")
            stale = service_token
        log.error("Keystone answered %d to a token validation", status)
        raise IdentityUnavailable(f"Keystone answered {status} to a token validation")

    def _answer_from(self, body: Any) -> _Answer:
        try:
            token = body["token"]
            expires_at = _parse_time(token["expires_at"])
            project = token.get("project")
            system = token.get("system")
            roles = frozenset(_text(role["name"]) for role in token.get("roles", []))
            if isinstance(system, dict) and system.get("all") is True:
                # A cloud administrator's: for the admin routes (api/policy.py).
                identity = Identity(
                    user_name=_text(token["user"]["name"]),
                    project="",
                    roles=roles,
                    system_scope="all",
                )
            elif not isinstance(project, dict):
                # Domain-scoped or unscoped: not for this service.
                return _Answer(identity=None)
            else:
                identity = Identity(
                    user_name=_text(token["user"]["name"]),
                    project=_text(project["id"]),
                    roles=roles,
                )
        except (KeyError, TypeError, ValueError) as error:
            log.error("Keystone's token validation is not a v3 token: %r", error)
            raise IdentityUnavailable("Keystone's answer is not a v3 token") from None
        if expires_at <= self._clock():
            return _Answer(identity=None)
        return _Answer(identity=identity, expires_at=expires_at)

    # -- the service's own token ---------------------------------------------------

    async def _service_token(self, *, stale: str | None) -> str:
        """The service token, logging in when there is none, it is about to
        expire, or Keystone has just refused it (`stale`)."""
        async with self._service_lock:
            current = self._service
            margin = timedelta(seconds=self.settings.renew_before_seconds)
            if (
                current is not None
                and current.token != stale
                and self._clock() < current.expires_at - margin
            ):
                return current.token
            self._service = await self._log_in()
            return self._service.token

    async def _log_in(self) -> _ServiceToken:
        status, body, headers = await self._call_with_headers(
            "POST",
            self.settings.tokens_url + "?nocatalog",
            json={"auth": self._auth_body()},
        )
        if status == 401:
            log.error(
                "Keystone refused the service's credentials (PM_ORDER_KEYSTONE_USER "
                "or PM_ORDER_KEYSTONE_APP_CREDENTIAL_ID)"
            )
        if status not in (200, 201):
            log.error("Keystone answered %d to the service's log-in", status)
            raise IdentityUnavailable(f"Keystone answered {status} to the log-in")
        try:
            token = headers["X-Subject-Token"]
            expires_at = _parse_time(body["token"]["expires_at"])
        except (KeyError, TypeError, ValueError) as error:
            log.error("Keystone's log-in answer is not a v3 token: %r", error)
            raise IdentityUnavailable("Keystone's log-in answer is unusable") from None
        return _ServiceToken(token=token, expires_at=expires_at)

    def _auth_body(self) -> dict[str, Any]:
        settings = self.settings
        if settings.app_credential_id is not None:
            return {
                "identity": {
                    "methods": ["application_credential"],
                    "application_credential": {
                        "id": settings.app_credential_id,
                        "secret": settings.app_credential_secret,
                    },
                }
            }
        return {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": settings.user,
                        "domain": {"name": settings.user_domain},
                        "password": settings.password,
                    }
                },
            },
            "scope": {
                "project": {
                    "name": settings.project,
                    "domain": {"name": settings.project_domain},
                }
            },
        }

    # -- HTTP ----------------------------------------------------------------------

    async def _call(
        self, method: str, url: str, *, headers: Mapping[str, str]
    ) -> tuple[int, Any]:
        status, body, _ = await self._call_with_headers(method, url, headers=headers)
        return status, body

    async def _call_with_headers(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> tuple[int, Any, Mapping[str, str]]:
        """Status, JSON body (None unless a success) and headers; Keystone not
        answering in time, or not at all, is IdentityUnavailable."""
        try:
            async with self._client().request(
                method, url, headers=headers, json=json
            ) as response:
                body = None
                if response.status in (200, 201):
                    body = await response.json(content_type=None)
                return response.status, body, response.headers
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            log.warning(
                "Keystone at %s is unavailable: %s",
                self.settings.url,
                type(error).__name__,
            )
            raise IdentityUnavailable("Keystone is unavailable") from None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use: the authenticator may be built before the event loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds)
            )
        return self._session


def _retrieve_exception(task: asyncio.Task[_Answer]) -> None:
    # Every waiter may have gone; the failure is logged already, not "never
    # retrieved".
    if not task.cancelled():
        task.exception()


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"expected a time, got {type(value).__name__}")
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    return value
