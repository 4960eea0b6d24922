"""Configuration from the environment (flags override it), checked up front.

Every variable is declared once, in service/settings.py; this module gathers their
values into the Config the composition root builds the service from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

from domain.limits import OrderLimits
from language import ENGLISH, Language
from mail.settings import SmtpSettings
from notifications.settings import NotificationSettings
from service import settings as s
from service.keystone_settings import KeystoneSettings, KeystoneSettingsInvalid

# Re-exported: the error every entry point turns into one line and exit 2.
from service.settings import ConfigError as ConfigError

_NONE: Final[Mapping[str, str]] = {}

DEFAULT_DATABASE_URL: Final = s.DATABASE_URL.value(_NONE)
# Per token: a guard against a runaway script that a person or an ordinary
# client's bursts never reach (see docs/security.md).
DEFAULT_RATE_PER_SECOND: Final = s.RATE_LIMIT.value(_NONE)
DEFAULT_RATE_BURST: Final = s.RATE_BURST.value(_NONE)
# Per client address: tokens not known valid (each may cost a Keystone call).
DEFAULT_AUTH_FAILURES_PER_SECOND: Final = s.AUTH_FAILURE_LIMIT.value(_NONE)
DEFAULT_AUTH_FAILURE_BURST: Final = s.AUTH_FAILURE_BURST.value(_NONE)


@dataclass(frozen=True)
class Limits:
    """What one project or token may ask of the service: every limit in one place.

    The defaults are safe for a deployment every project of the cloud can reach.
    """

    # PM_ORDER_MAX_UNFINISHED_ORDERS: orders a project may have waiting as source.
    max_unfinished_orders: int = s.MAX_UNFINISHED_ORDERS.value(_NONE)
    # PM_ORDER_MAX_SERVERS_PER_ORDER: 1..200 (the contract's 200 is the most).
    max_servers_per_order: int = s.MAX_SERVERS_PER_ORDER.value(_NONE)
    # PM_ORDER_MAX_MAILTO: 0..20 addresses per order (the contract's 20 is the most).
    max_mailto: int = s.MAX_MAILTO.value(_NONE)
    # PM_ORDER_MAIL_DOMAINS: the only domains mail may go to; empty: any domain.
    mail_domains: frozenset[str] = frozenset()
    # PM_ORDER_RATE_LIMIT: requests per second per token, None: no limit ...
    rate_per_second: float | None = DEFAULT_RATE_PER_SECOND
    # ... PM_ORDER_RATE_BURST: and how many may come at once after a quiet spell.
    rate_burst: int = DEFAULT_RATE_BURST
    # PM_ORDER_AUTH_FAILURE_LIMIT: tokens per second that one client address may
    # present without their being known valid (None: no limit) ...
    auth_failures_per_second: float | None = DEFAULT_AUTH_FAILURES_PER_SECOND
    # ... PM_ORDER_AUTH_FAILURE_BURST: and how many at once.
    auth_failure_burst: int = DEFAULT_AUTH_FAILURE_BURST
    # PM_ORDER_AUTH_FAILURE_IPV6_PREFIX: IPv6 clients are limited by this network
    # (a /64 by default), IPv4 clients by their address.
    auth_ipv6_prefix: int = s.AUTH_FAILURE_IPV6_PREFIX.value(_NONE)
    # PM_ORDER_AUTH_VALIDATIONS_PER_ADDRESS: tokens of one address group being
    # checked with Keystone at once; more wait their turn.
    auth_validations_per_address: int = s.AUTH_VALIDATIONS_PER_ADDRESS.value(_NONE)

    @classmethod
    def from_settings(cls, values: s.Values) -> Limits:
        return cls(
            max_unfinished_orders=values[s.MAX_UNFINISHED_ORDERS],
            max_servers_per_order=values[s.MAX_SERVERS_PER_ORDER],
            max_mailto=values[s.MAX_MAILTO],
            mail_domains=values.get(s.MAIL_DOMAINS) or frozenset(),
            rate_per_second=values.get(s.RATE_LIMIT),
            rate_burst=values[s.RATE_BURST],
            auth_failures_per_second=values.get(s.AUTH_FAILURE_LIMIT),
            auth_failure_burst=values[s.AUTH_FAILURE_BURST],
            auth_ipv6_prefix=values[s.AUTH_FAILURE_IPV6_PREFIX],
            auth_validations_per_address=values[s.AUTH_VALIDATIONS_PER_ADDRESS],
        )

    def orders(self) -> OrderLimits:
        """The limits the application service judges requests by."""
        return OrderLimits(
            max_unfinished_orders=self.max_unfinished_orders,
            max_servers_per_order=self.max_servers_per_order,
            max_mailto=self.max_mailto,
            mail_domains=self.mail_domains,
        )


@dataclass(frozen=True)
class Config:
    database_url: str = DEFAULT_DATABASE_URL
    tokens_file: Path | None = None
    keystone: KeystoneSettings | None = None
    approver_roles: frozenset[str] = frozenset()
    # PM_ORDER_POLICY_FILE: oslo.policy rules overriding the defaults (api/policy.py).
    policy_file: Path | None = None
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    # PM_ORDER_LANGUAGE: what mails, the report and the command line speak.
    language: Language = ENGLISH
    warn_after: timedelta = timedelta(seconds=s.WARN_AFTER.value(_NONE))
    warn_max: int = s.WARN_MAX.value(_NONE)
    smtp: SmtpSettings | None = None
    # PM_ORDER_TRANSPORT_URL (+ PM_ORDER_NOTIFICATION_TOPIC,
    # PM_ORDER_NOTIFICATION_DURABLE): where events are announced; None: nowhere.
    notifications: NotificationSettings | None = None
    mail_from: str = s.MAIL_FROM.value(_NONE)
    api_prefix: str = s.API_PREFIX.value(_NONE)
    # Off in production: tables then come only from `pm-order db upgrade`.
    create_tables: bool = s.CREATE_TABLES.value(_NONE)
    # How long a write's answer may wait for the views to show it.
    read_your_writes_timeout: float = 10.0
    # /readyz: a view may lag this many seconds; one behind that has not moved
    # for `ready_stuck_after` seconds is stuck.
    ready_max_lag: float = s.READY_MAX_LAG.value(_NONE)
    ready_stuck_after: float = s.READY_STUCK_AFTER.value(_NONE)
    # PM_ORDER_WRITE_CONFIRM_TIMEOUT: how long a write may wait for PostgreSQL to
    # confirm it durable (a synchronous standby) before it is answered 503.
    write_confirm_timeout: float = s.WRITE_CONFIRM_TIMEOUT.value(_NONE)
    # SIGTERM: how long in-flight requests and background work may take to end.
    shutdown_timeout: float = s.SHUTDOWN_TIMEOUT.value(_NONE)
    # A client has this long to send a request's headers, and as long again for
    # its body; a connection that does not is closed (PM_ORDER_CLIENT_TIMEOUT).
    client_timeout: float = s.CLIENT_TIMEOUT.value(_NONE)
    # A client taking nothing of a large answer for this long is disconnected
    # (PM_ORDER_SEND_TIMEOUT); large answers waiting for their clients hold at
    # most this many bytes in all (PM_ORDER_SEND_BUFFER_MB).
    send_timeout: float = s.SEND_TIMEOUT.value(_NONE)
    send_buffer_bytes: int = s.SEND_BUFFER_MB.value(_NONE) * 1024 * 1024
    # Proxies whose X-Forwarded-For names the client (PM_ORDER_TRUSTED_PROXIES):
    # networks, as `ipaddress` writes them (an address is a /32 or /128).
    trusted_proxies: frozenset[str] = frozenset()
    limits: Limits = field(default_factory=Limits)
    # How often a projector idle since its last page looks for events it was not
    # told about (a missed NOTIFY, other processes on SQLite).
    idle_poll_seconds: float = s.IDLE_POLL_SECONDS.value(_NONE)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        """The configuration `env` (the process's environment) sets; ConfigError
        naming the first bad setting."""
        values = s.Values(os.environ if env is None else env)
        tokens = values.get(s.TOKENS_FILE)
        return cls(
            database_url=values[s.DATABASE_URL],
            tokens_file=Path(tokens) if tokens else None,
            keystone=_keystone_settings(values),
            approver_roles=values.get(s.APPROVER_ROLES) or frozenset(),
            policy_file=values.get(s.POLICY_FILE),
            timezone=values[s.TIMEZONE],
            language=values[s.LANGUAGE],
            warn_after=timedelta(seconds=values[s.WARN_AFTER]),
            warn_max=values[s.WARN_MAX],
            smtp=values.get(s.SMTP_URL),
            notifications=_notification_settings(values),
            mail_from=values[s.MAIL_FROM],
            api_prefix=values[s.API_PREFIX],
            create_tables=values[s.CREATE_TABLES],
            ready_max_lag=values[s.READY_MAX_LAG],
            ready_stuck_after=values[s.READY_STUCK_AFTER],
            shutdown_timeout=values[s.SHUTDOWN_TIMEOUT],
            write_confirm_timeout=values[s.WRITE_CONFIRM_TIMEOUT],
            client_timeout=values[s.CLIENT_TIMEOUT],
            send_timeout=values[s.SEND_TIMEOUT],
            send_buffer_bytes=values[s.SEND_BUFFER_MB] * 1024 * 1024,
            trusted_proxies=values.get(s.TRUSTED_PROXIES) or frozenset(),
            limits=Limits.from_settings(values),
            idle_poll_seconds=values[s.IDLE_POLL_SECONDS],
        )

    def check_identity(self) -> None:
        """Exactly one way of checking tokens must be set."""
        if self.tokens_file and self.keystone:
            raise ConfigError(
                "set only one of PM_ORDER_TOKENS_FILE and PM_ORDER_KEYSTONE_URL"
            )
        if not self.tokens_file and not self.keystone:
            raise ConfigError(
                "no way to check tokens: set PM_ORDER_TOKENS_FILE to a tokens file "
                "(see examples/tokens.json) or PM_ORDER_KEYSTONE_URL to Keystone v3"
            )


def _keystone_settings(values: s.Values) -> KeystoneSettings | None:
    url = values.get(s.KEYSTONE_URL)
    if url is None:
        return None
    try:
        return KeystoneSettings(
            url=url,
            public_url=values.get(s.KEYSTONE_PUBLIC_URL) or url,
            user=values.get(s.KEYSTONE_USER),
            password=values.get(s.KEYSTONE_PASSWORD),
            project=values.get(s.KEYSTONE_PROJECT),
            user_domain=values[s.KEYSTONE_USER_DOMAIN],
            project_domain=values[s.KEYSTONE_PROJECT_DOMAIN],
            app_credential_id=values.get(s.KEYSTONE_APP_CREDENTIAL_ID),
            app_credential_secret=values.get(s.KEYSTONE_APP_CREDENTIAL_SECRET),
            cache_seconds=values[s.TOKEN_CACHE_SECONDS],
        )
    except KeystoneSettingsInvalid as error:
        raise ConfigError(str(error)) from None


def _notification_settings(values: s.Values) -> NotificationSettings | None:
    url = values.get(s.TRANSPORT_URL)
    if url is None:
        return None
    return replace(
        url,
        topic=values[s.NOTIFICATION_TOPIC],
        durable=values[s.NOTIFICATION_DURABLE],
    )


def check_database_url(url: str) -> str:
    """`url` if it names a store (sqlite:///PATH or PostgreSQL); ConfigError if not."""
    return s.database_url(url)


def parse_duration(text: str, name: str) -> timedelta:
    """A duration written as every duration setting is ('500ms', '90s', '15m',
    '2h', '1d'; a bare number is seconds) for an option called `name`."""
    return timedelta(seconds=s.Duration(high=366 * s.DAY).parse(name, text.strip()))


# -- connections to PostgreSQL (docs/deployment-connections.md) -------------------

# A command of the command line (not serve, not worker): one connection a pool,
# two in all, whatever PM_ORDER_DB_POOL_SIZE says for the serving processes.
COMMAND_DB_POOL_SIZE: Final = 1


def db_pool_size(env: Mapping[str, str] | None = None) -> int:
    """PM_ORDER_DB_POOL_SIZE (the settings' table): the most connections each
    of a process's pools to PostgreSQL holds."""
    return s.DB_POOL_SIZE.value(os.environ if env is None else env)
