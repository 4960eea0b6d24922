"""Who is calling: tokens checked against a static file or Keystone v3.

Identity comes only from the token; headers a client sends about itself are
never read.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Protocol

from service.config import Config, ConfigError


@dataclass(frozen=True)
class Identity:
    """A user scoped to a project, as the token says."""

    user_name: str
    project: str  # "" for a system-scoped Keystone token
    roles: frozenset[str]
    # "all" for a Keystone token scoped to the system (a cloud administrator's).
    system_scope: str | None = None


class IdentityUnavailable(Exception):
    """The identity service cannot be reached (503)."""


class Authenticator(Protocol):
    async def identify(self, token: str) -> Identity | None:
        """The token's identity, or None when it is unknown or expired."""
        ...

    def vouches_for(self, token: str) -> bool:
        """Whether the token is known valid now, without asking anyone (a token
        that is not may cost a call to Keystone: api/app.py limits those)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class _StaticToken:
    identity: Identity
    expires_at: datetime | None


class TokensFile:
    """Static tokens from a JSON file: {"tokens": [{"token", "user_name", ...}]}."""

    def __init__(
        self, path: Path, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.path = path
        self.clock = clock
        self._tokens = _load_tokens(path)

    async def identify(self, token: str) -> Identity | None:
        entry = self._tokens.get(_digest(token))
        if entry is None:
            return None
        if entry.expires_at is not None and self.clock() >= entry.expires_at:
            return None
        return entry.identity

    def vouches_for(self, token: str) -> bool:
        entry = self._tokens.get(_digest(token))
        return entry is not None and (
            entry.expires_at is None or self.clock() < entry.expires_at
        )

    async def close(self) -> None:
        return None


def authenticator_for(config: Config) -> Authenticator:
    """The token check the configuration asks for; ConfigError if it is unusable."""
    config.check_identity()
    if config.tokens_file is not None:
        return TokensFile(config.tokens_file)
    assert config.keystone is not None  # check_identity: one of the two is set
    from api.keystone import KeystoneAuthenticator  # it builds on this module

    return KeystoneAuthenticator(config.keystone)


_SHA256_HEX: Final = re.compile(r"[0-9a-f]{64}")


def _digest(token: str) -> str:
    # Tokens are held by their hash only, and compared as such.
    return hashlib.sha256(token.encode()).hexdigest()


def _load_tokens(path: Path) -> dict[str, _StaticToken]:
    where = f"PM_ORDER_TOKENS_FILE={str(path)!r}"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except (OSError, ValueError) as error:
        raise ConfigError(f"{where}: not a readable JSON file ({error})") from None
    entries = document.get("tokens") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f'{where}: expected {{"tokens": [...]}}')
    tokens: dict[str, _StaticToken] = {}
    for number, entry in enumerate(entries, start=1):
        tokens[_token_digest(entry, where, number)] = _StaticToken(
            identity=Identity(
                user_name=_text(entry, "user_name", where, number),
                project=_text(entry, "project_id", where, number),
                roles=frozenset(_roles(entry, where, number)),
            ),
            expires_at=_expiry(entry, where, number),
        )
    return tokens


def _token_digest(entry: Any, where: str, number: int) -> str:
    """The SHA-256 of the entry's token: given as `token`, or as `token_sha256`
    so that the file holds no secret."""
    if isinstance(entry, dict) and "token_sha256" in entry:
        if "token" in entry:
            raise ConfigError(
                f"{where}: token {number} has both 'token' and 'token_sha256'; keep one"
            )
        digest = entry["token_sha256"]
        if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest.lower()):
            raise ConfigError(
                f"{where}: token {number} 'token_sha256' must be 64 hexadecimal "
                "digits (printf %s TOKEN | sha256sum)"
            )
        return digest.lower()
    return _digest(_text(entry, "token", where, number))


def _text(entry: Any, key: str, where: str, number: int) -> str:
    value = entry.get(key) if isinstance(entry, dict) else None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: token {number} needs a non-empty '{key}'")
    return value


# A token listed without `roles` may do what every token could before roles were
# checked (read, order, decide): it is a project member.
DEFAULT_ROLES: Final = ("member",)


def _roles(entry: dict[str, Any], where: str, number: int) -> list[str]:
    roles = entry.get("roles", list(DEFAULT_ROLES))
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise ConfigError(f"{where}: token {number} 'roles' must be a list of strings")
    return roles


def _expiry(entry: dict[str, Any], where: str, number: int) -> datetime | None:
    value = entry.get("expires_at")
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{where}: token {number} 'expires_at' must be like 2030-01-01T00:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


SP_AGENT: Final = "scloudm"


def www_authenticate(keystone_url: str | None) -> dict[str, str]:
    """401's challenge: Keystone's public URL, where the client gets a token."""
    if keystone_url:
        return {"WWW-Authenticate": f'Keystone uri="{keystone_url}"'}
    return {"WWW-Authenticate": 'Token realm="pm-order"'}
