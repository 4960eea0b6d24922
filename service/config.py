"""Configuration from the environment (flags override it), checked up front."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# The contract's own bounds: a setting may lower them, never raise them.
from domain.limits import DEFAULT_MAX_UNFINISHED_ORDERS, OrderLimits
from domain.values import MAX_MAILTO, MAX_SNIDS_PER_ORDER
from language import ENGLISH, Language, LanguageUnknown
from mail.settings import SmtpSettings, SmtpUrlInvalid, without_password
from notifications.settings import (
    DEFAULT_TOPIC,
    NotificationSettings,
    TransportUrlInvalid,
)
from service.keystone_settings import KeystoneSettings, KeystoneSettingsInvalid

DEFAULT_DATABASE_URL: Final = "sqlite:///var/pm-order.sqlite3"
# Per token: a guard against a runaway script that a person or an ordinary
# client's bursts never reach (see the README's Security model).
DEFAULT_RATE_PER_SECOND: Final = 100.0
DEFAULT_RATE_BURST: Final = 200
# Per client address: tokens not known valid (each may cost a Keystone call).
DEFAULT_AUTH_FAILURES_PER_SECOND: Final = 1.0
DEFAULT_AUTH_FAILURE_BURST: Final = 20

_DURATION: Final = re.compile(r"(\d+)\s*(s|m|h|d)?")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_RATE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*(?:/\s*(s|m|h))?")
_MAIL_DOMAIN: Final = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
)


class ConfigError(Exception):
    """A setting is missing or invalid: the message says what to set."""


@dataclass(frozen=True)
class Limits:
    """What one project or token may ask of the service: every limit in one place.

    The defaults are safe for a deployment every project of the cloud can reach.
    """

    # PM_ORDER_MAX_UNFINISHED_ORDERS: orders a project may have waiting as source.
    max_unfinished_orders: int = DEFAULT_MAX_UNFINISHED_ORDERS
    # PM_ORDER_MAX_SERVERS_PER_ORDER: 1..200 (the contract's 200 is the most).
    max_servers_per_order: int = MAX_SNIDS_PER_ORDER
    # PM_ORDER_MAX_MAILTO: 0..20 addresses per order (the contract's 20 is the most).
    max_mailto: int = MAX_MAILTO
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

    @classmethod
    def from_env(cls, get: Callable[[str], str | None]) -> Limits:
        domains = get("PM_ORDER_MAIL_DOMAINS") or ""
        return cls(
            max_unfinished_orders=_whole_number(
                get,
                "PM_ORDER_MAX_UNFINISHED_ORDERS",
                DEFAULT_MAX_UNFINISHED_ORDERS,
                low=1,
                high=10**6,
            ),
            max_servers_per_order=_whole_number(
                get,
                "PM_ORDER_MAX_SERVERS_PER_ORDER",
                MAX_SNIDS_PER_ORDER,
                low=1,
                high=MAX_SNIDS_PER_ORDER,
            ),
            max_mailto=_whole_number(
                get,
                "PM_ORDER_MAX_MAILTO",
                MAX_MAILTO,
                low=0,
                high=MAX_MAILTO,
            ),
            mail_domains=frozenset(
                _mail_domain(d.strip()) for d in domains.split(",") if d.strip()
            ),
            rate_per_second=_rate(get, "PM_ORDER_RATE_LIMIT", DEFAULT_RATE_PER_SECOND),
            rate_burst=_whole_number(
                get, "PM_ORDER_RATE_BURST", DEFAULT_RATE_BURST, low=1, high=10**6
            ),
            auth_failures_per_second=_rate(
                get, "PM_ORDER_AUTH_FAILURE_LIMIT", DEFAULT_AUTH_FAILURES_PER_SECOND
            ),
            auth_failure_burst=_whole_number(
                get,
                "PM_ORDER_AUTH_FAILURE_BURST",
                DEFAULT_AUTH_FAILURE_BURST,
                low=1,
                high=10**6,
            ),
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
    warn_after: timedelta = timedelta(hours=1)
    warn_max: int = 3
    smtp: SmtpSettings | None = None
    # PM_ORDER_TRANSPORT_URL (+ PM_ORDER_NOTIFICATION_TOPIC,
    # PM_ORDER_NOTIFICATION_DURABLE): where events are announced; None: nowhere.
    notifications: NotificationSettings | None = None
    mail_from: str = "pm-order@localhost"
    api_prefix: str = "/mana_api"
    # Off in production: tables then come only from `pm-order db upgrade`.
    create_tables: bool = True
    # How long a write's answer may wait for the views to show it.
    read_your_writes_timeout: float = 10.0
    # /readyz: a view may lag this many seconds; one behind that has not moved
    # for `ready_stuck_after` seconds is stuck.
    ready_max_lag: float = 60.0
    ready_stuck_after: float = 30.0
    # SIGTERM: how long in-flight requests and background work may take to end.
    shutdown_timeout: float = 30.0
    # A client has this long to send a request's headers, and as long again for
    # its body; a connection that does not is closed (PM_ORDER_CLIENT_TIMEOUT).
    client_timeout: float = 10.0
    # Proxies whose X-Forwarded-For names the client (PM_ORDER_TRUSTED_PROXIES):
    # networks, as `ipaddress` writes them (an address is a /32 or /128).
    trusted_proxies: frozenset[str] = frozenset()
    limits: Limits = field(default_factory=Limits)
    # How often a projector idle since its last page looks for events it was not
    # told about (a missed NOTIFY, other processes on SQLite).
    idle_poll_seconds: float = 1.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        source: Mapping[str, str] = os.environ if env is None else env

        def get(name: str) -> str | None:
            return (source.get(name) or "").strip() or None

        zone_name = get("PM_ORDER_TIMEZONE") or "UTC"
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"PM_ORDER_TIMEZONE={zone_name!r} is not an IANA time zone "
                "(for example UTC or Asia/Shanghai)"
            ) from None
        warn_max_text = get("PM_ORDER_WARN_MAX") or "3"
        if not warn_max_text.isdigit():
            raise ConfigError(
                f"PM_ORDER_WARN_MAX={warn_max_text!r} must be a whole number, 0 or more"
            )
        prefix = get("PM_ORDER_API_PREFIX") or "/mana_api"
        if not re.fullmatch(r"(/[A-Za-z0-9._-]+)*", prefix):
            raise ConfigError(
                f"PM_ORDER_API_PREFIX={prefix!r} must be a path such as /mana_api"
            )
        tokens = get("PM_ORDER_TOKENS_FILE")
        create_tables = (get("PM_ORDER_CREATE_TABLES") or "yes").lower()
        if create_tables not in ("yes", "no", "1", "0", "true", "false"):
            raise ConfigError(
                f"PM_ORDER_CREATE_TABLES={create_tables!r} must be yes or no"
            )
        idle_poll = _positive_seconds(
            get("PM_ORDER_IDLE_POLL_SECONDS") or "1", "PM_ORDER_IDLE_POLL_SECONDS"
        )
        return cls(
            database_url=check_database_url(
                get("PM_ORDER_DATABASE_URL") or DEFAULT_DATABASE_URL
            ),
            tokens_file=Path(tokens) if tokens else None,
            keystone=_keystone_settings(get),
            approver_roles=frozenset(
                r.strip()
                for r in (get("PM_ORDER_APPROVER_ROLES") or "").split(",")
                if r.strip()
            ),
            policy_file=_policy_file(get("PM_ORDER_POLICY_FILE")),
            timezone=zone,
            language=_language(get("PM_ORDER_LANGUAGE") or "en"),
            warn_after=parse_duration(
                get("PM_ORDER_WARN_AFTER") or "1h", "PM_ORDER_WARN_AFTER"
            ),
            warn_max=int(warn_max_text),
            smtp=_smtp_settings(get("PM_ORDER_SMTP_URL")),
            notifications=_notification_settings(get),
            mail_from=check_address(get("PM_ORDER_MAIL_FROM") or "pm-order@localhost"),
            api_prefix=prefix,
            create_tables=create_tables in ("yes", "1", "true"),
            ready_max_lag=_seconds(get, "PM_ORDER_READY_MAX_LAG", "60s"),
            ready_stuck_after=_seconds(get, "PM_ORDER_READY_STUCK_AFTER", "30s"),
            shutdown_timeout=_seconds(get, "PM_ORDER_SHUTDOWN_TIMEOUT", "30s"),
            client_timeout=_seconds(get, "PM_ORDER_CLIENT_TIMEOUT", "10s"),
            trusted_proxies=_addresses(get("PM_ORDER_TRUSTED_PROXIES") or ""),
            limits=Limits.from_env(get),
            idle_poll_seconds=idle_poll,
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


def _policy_file(text: str | None) -> Path | None:
    if text is None:
        return None
    path = Path(text)
    if not path.is_file():
        raise ConfigError(
            f"PM_ORDER_POLICY_FILE={text!r}: no such file (a policy.yaml; see "
            "examples/policy.yaml.sample)"
        )
    return path


def _seconds(get: Callable[[str], str | None], name: str, default: str) -> float:
    return parse_duration(get(name) or default, name).total_seconds()


def _language(code: str) -> Language:
    try:
        return Language.named(code)
    except LanguageUnknown as error:
        raise ConfigError(f"PM_ORDER_LANGUAGE={error}") from None


def _keystone_settings(get: Callable[[str], str | None]) -> KeystoneSettings | None:
    try:
        return KeystoneSettings.from_env(get)
    except KeystoneSettingsInvalid as error:
        raise ConfigError(str(error)) from None


def _whole_number(
    get: Callable[[str], str | None], name: str, default: int, *, low: int, high: int
) -> int:
    text = get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and low <= int(text) <= high):
        raise ConfigError(
            f"{name}={text!r} must be a whole number from {low} to {high}"
        )
    return int(text)


def _addresses(text: str) -> frozenset[str]:
    """Comma-separated IP addresses or networks (10.0.0.0/8), each written as
    `ipaddress` writes a network (an address is a network of one)."""
    networks = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            networks.add(str(ipaddress.ip_network(part)))
        except ValueError:
            raise ConfigError(
                f"PM_ORDER_TRUSTED_PROXIES has {part[:60]!r}: list the proxies' IP "
                "addresses or networks (10.0.0.0/8), separated by commas"
            ) from None
    return frozenset(networks)


def _mail_domain(domain: str) -> str:
    if not _MAIL_DOMAIN.fullmatch(domain) or len(domain) > 253:
        raise ConfigError(
            f"PM_ORDER_MAIL_DOMAINS has {domain!r}: list mail domains such as "
            "example.com, separated by commas"
        )
    return domain.lower()


def _rate(
    get: Callable[[str], str | None], name: str, default: float | None
) -> float | None:
    """'20/s', '600/m', '3600/h' or plain '20' (per second) as requests per second;
    'off' for no limit."""
    text = get(name)
    if text is None:
        return default
    if text.lower() == "off":
        return None
    match = _RATE.fullmatch(text)
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(
            f"{name}={text!r} must be a rate such as 20/s, 600/m or 3600/h, or off"
        )
    return float(match.group(1)) / _UNIT_SECONDS[match.group(2)]


_TOPIC: Final = re.compile(r"[A-Za-z0-9._-]{1,200}")


def _notification_settings(
    get: Callable[[str], str | None],
) -> NotificationSettings | None:
    url = get("PM_ORDER_TRANSPORT_URL")
    if url is None:
        return None
    topic = get("PM_ORDER_NOTIFICATION_TOPIC") or DEFAULT_TOPIC
    if not _TOPIC.fullmatch(topic):
        raise ConfigError(
            f"PM_ORDER_NOTIFICATION_TOPIC={topic[:60]!r} must be 1..200 of "
            "A-Z a-z 0-9 . _ - (such as notifications)"
        )
    durable = (get("PM_ORDER_NOTIFICATION_DURABLE") or "yes").lower()
    if durable not in ("yes", "no", "1", "0", "true", "false"):
        raise ConfigError(
            f"PM_ORDER_NOTIFICATION_DURABLE={durable[:20]!r} must be yes or no"
        )
    try:
        return NotificationSettings.from_url(
            url, topic=topic, durable=durable in ("yes", "1", "true")
        )
    except TransportUrlInvalid as error:
        raise ConfigError(f"PM_ORDER_TRANSPORT_URL={error}") from None


def _smtp_settings(url: str | None) -> SmtpSettings | None:
    if url is None:
        return None
    try:
        return SmtpSettings.from_url(url)
    except SmtpUrlInvalid as error:
        raise ConfigError(f"PM_ORDER_SMTP_URL={error}") from None


def check_address(address: str) -> str:
    if "@" not in address or any(c.isspace() for c in address):
        raise ConfigError(f"PM_ORDER_MAIL_FROM={address!r} must be an e-mail address")
    return address


def parse_duration(text: str, name: str) -> timedelta:
    """'90s', '15m', '2h', '1d' (or plain seconds) as a positive timedelta."""
    match = _DURATION.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ConfigError(f"{name}={text!r} must be a duration such as 90s, 15m or 2h")
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _positive_seconds(text: str, name: str) -> float:
    """A number of seconds, more than 0 and at most a day ('0.5', '30')."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds <= 86400:  # also refuses NaN
        raise ConfigError(
            f"{name}={text!r} must be a number of seconds, such as 1 or 30"
        )
    return seconds


def check_database_url(url: str) -> str:
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return url
    if url.startswith(("postgresql://", "postgres://")):
        # Checked as libpq would, so that a bad URL stops a process at start,
        # before `serve --workers` forks (imported here: it needs ConfigError).
        from service.postgres_url import libpq_parameters

        libpq_parameters(url)
        return url
    raise ConfigError(
        f"PM_ORDER_DATABASE_URL={without_password(url)!r} must be sqlite:///PATH or "
        "postgresql://USER:PASS@HOST:PORT/DB"
    )
