"""Where tokens are checked in the cloud: Keystone v3 and the service's own account."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

DEFAULT_CACHE_SECONDS: Final = 300

_PASSWORD_SETTINGS: Final = (
    "PM_ORDER_KEYSTONE_USER",
    "PM_ORDER_KEYSTONE_PASSWORD",
    "PM_ORDER_KEYSTONE_PROJECT",
)
_APP_CREDENTIAL_SETTINGS: Final = (
    "PM_ORDER_KEYSTONE_APP_CREDENTIAL_ID",
    "PM_ORDER_KEYSTONE_APP_CREDENTIAL_SECRET",
)


class KeystoneSettingsInvalid(ValueError):
    """A Keystone setting is missing or invalid: the message says what to set."""


@dataclass(frozen=True)
class KeystoneSettings:
    """Keystone's endpoints, the service's credentials, and how long answers count.

    The service logs in either as a user (name, password, project) or with an
    application credential (id, secret); exactly one of the two must be complete.
    """

    url: str
    public_url: str = ""
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    project: str | None = None
    user_domain: str = "Default"
    project_domain: str = "Default"
    app_credential_id: str | None = None
    app_credential_secret: str | None = field(default=None, repr=False)
    # How long a valid token's identity is kept (never past the token's expiry).
    cache_seconds: float = DEFAULT_CACHE_SECONDS
    # How long a refused token stays refused without asking Keystone again.
    invalid_cache_seconds: float = 5.0
    # Each call to Keystone (connect, send, answer) must finish within this.
    timeout_seconds: float = 5.0
    # The service token is renewed when it has less than this left.
    renew_before_seconds: float = 60.0
    # Most tokens held in the cache (least recently used go first).
    cache_size: int = 10_000

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise KeystoneSettingsInvalid(
                f"PM_ORDER_KEYSTONE_URL={self.url!r} must be an http:// or https:// "
                "URL such as http://keystone:5000/v3"
            )
        if not self.public_url:
            object.__setattr__(self, "public_url", self.url)
        if not self.public_url.startswith(("http://", "https://")) or any(
            c in self.public_url for c in '"\\ '
        ):
            raise KeystoneSettingsInvalid(
                f"PM_ORDER_KEYSTONE_PUBLIC_URL={self.public_url!r} must be an http:// "
                "or https:// URL such as https://keystone.example.com/v3"
            )
        by_password = (self.user, self.password, self.project)
        by_app = (self.app_credential_id, self.app_credential_secret)
        if any(by_password) and any(by_app):
            raise KeystoneSettingsInvalid(
                "set either PM_ORDER_KEYSTONE_USER, _PASSWORD and _PROJECT or "
                "PM_ORDER_KEYSTONE_APP_CREDENTIAL_ID and _SECRET, not both"
            )
        if any(by_app) and not all(by_app):
            raise KeystoneSettingsInvalid(
                "the service's application credential needs both "
                + " and ".join(_APP_CREDENTIAL_SETTINGS)
            )
        if any(by_password) and not all(by_password):
            missing = [
                n for n, v in zip(_PASSWORD_SETTINGS, by_password, strict=True) if not v
            ]
            raise KeystoneSettingsInvalid(
                "the service's Keystone account also needs " + " and ".join(missing)
            )
        if not any(by_password) and not any(by_app):
            raise KeystoneSettingsInvalid(
                "PM_ORDER_KEYSTONE_URL needs the service's own credentials: set "
                + ", ".join(_PASSWORD_SETTINGS)
                + " (and PM_ORDER_KEYSTONE_USER_DOMAIN, _PROJECT_DOMAIN if not "
                "Default), or " + " and ".join(_APP_CREDENTIAL_SETTINGS)
            )

    @property
    def tokens_url(self) -> str:
        """Keystone's /v3/auth/tokens, whether the URL names /v3 or not."""
        base = self.url.rstrip("/")
        base = base.removesuffix("/v3")
        return base + "/v3/auth/tokens"
