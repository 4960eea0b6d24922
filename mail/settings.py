"""Where the mailer sends: the SMTP server, its TLS mode and credentials."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit


class SmtpUrlInvalid(ValueError):
    """The SMTP URL is not smtp://, smtp+starttls:// or smtps:// with a host."""


@dataclass(frozen=True)
class SmtpSettings:
    """Where mail goes: smtp:// (plain), smtp+starttls:// or smtps:// (TLS)."""

    host: str
    port: int
    use_tls: bool = False
    start_tls: bool = False
    username: str | None = None
    # Never shown: not in repr, not in error messages.
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> SmtpSettings:
        parts = urlsplit(url)
        modes = {
            "smtp": (False, False, 25),
            "smtp+starttls": (False, True, 587),
            "smtps": (True, False, 465),
        }
        try:
            use_tls, start_tls, default_port = modes[parts.scheme]
            port = parts.port or default_port
        except (KeyError, ValueError):
            raise SmtpUrlInvalid(
                f"{without_password(url)!r} must be smtp://HOST:PORT, "
                "smtp+starttls://HOST:PORT or smtps://HOST:PORT, with an optional "
                "USER:PASSWORD@ before the host"
            ) from None
        if not parts.hostname:
            raise SmtpUrlInvalid(f"{without_password(url)!r} names no host")
        return cls(
            host=parts.hostname,
            port=port,
            use_tls=use_tls,
            start_tls=start_tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def without_password(url: str) -> str:
    """`url` with the password of its USER:PASSWORD@, if any, shown as ***."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}://{user}:***@{host}"
