"""A real SMTP server for tests: aiosmtpd on a loopback port, keeping what it gets.

The server runs in aiosmtpd's own thread. Tests wait for what it receives through
`Mailbox.wait_for`, woken by the handler itself, within a bound.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from mail.settings import SmtpSettings
from tests.integration.processes import free_port

WAIT_SECONDS: Final = 20.0


@dataclass(frozen=True)
class Received:
    """One message as the SMTP server took it: envelope and parsed content."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage
    encrypted: bool
    authenticated: bool

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    @property
    def subject(self) -> str:
        # As a mail client shows it: a long subject is folded onto the line after
        # "Subject:", and the parser keeps the fold's leading space.
        return str(self.message["Subject"]).strip()

    @property
    def body(self) -> str:
        return str(self.message.get_content())


class Mailbox:
    """An aiosmtpd handler: keeps every message, wakes whoever waits for one.

    `on_data`, when set, is called with each message before it is kept and the
    server answers 250 (to kill the sender at that very moment, say).
    """

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.on_data: Callable[[Received], None] | None = None
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content or envelope.content)
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        received = Received(
            mail_from=str(envelope.mail_from),
            rcpt_tos=list(envelope.rcpt_tos),
            raw=raw,
            message=message,
            encrypted=server.transport.get_extra_info("ssl_object") is not None,
            authenticated=bool(session.authenticated),
        )
        if self.on_data is not None:
            self.on_data(received)
        with self._lock:
            self.received.append(received)
            waiters = list(self._waiters)
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)
        return "250 Message accepted for delivery"

    async def wait_for(
        self, count: int, seconds: float = WAIT_SECONDS
    ) -> list[Received]:
        """Wait until `count` messages in all have arrived; return them all."""
        arrived = asyncio.Event()
        waiter = (asyncio.get_running_loop(), arrived)
        with self._lock:
            self._waiters.append(waiter)
        try:
            async with asyncio.timeout(seconds):
                while len(self.received) < count:
                    await arrived.wait()
                    arrived.clear()
        except TimeoutError:
            raise TimeoutError(
                f"{count} messages expected within {seconds}s, "
                f"{len(self.received)} arrived"
            ) from None
        finally:
            with self._lock:
                self._waiters.remove(waiter)
        return list(self.received)


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""

    cert: Path
    key: Path

    @classmethod
    def self_signed(cls, folder: Path) -> Certificate:
        cert, key = folder / "smtp-cert.pem", folder / "smtp-key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return cls(cert=cert, key=key)

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


class SmtpServer:
    """aiosmtpd on 127.0.0.1 and a port of its own, which may be stopped and
    started again on the same port (a mail server down for a while).

    `scheme` is that of PM_ORDER_SMTP_URL: `smtp` (plain), `smtp+starttls` (STARTTLS
    required) or `smtps` (TLS from the start), the last two with `certificate`;
    with `login` (user, password) the server accepts that login (and, but for
    `smtps`, mail only after it).
    """

    def __init__(
        self,
        mailbox: Mailbox,
        *,
        scheme: str = "smtp",
        certificate: Certificate | None = None,
        login: tuple[str, str] | None = None,
    ) -> None:
        self.mailbox = mailbox
        self.scheme = scheme
        self.certificate = certificate
        self.login = login
        self.port = free_port()
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        """The PM_ORDER_SMTP_URL that reaches this server."""
        user = ""
        if self.login is not None:
            name, password = (quote(part, safe="") for part in self.login)
            user = f"{name}:{password}@"
        return f"{self.scheme}://{user}127.0.0.1:{self.port}"

    @property
    def settings(self) -> SmtpSettings:
        return SmtpSettings.from_url(self.url)

    def start(self) -> None:
        options: dict[str, Any] = {}
        if self.scheme != "smtp":
            assert self.certificate is not None, "TLS needs a certificate"
            context = self.certificate.server_context()
            if self.scheme == "smtps":
                options["ssl_context"] = context
            else:
                options.update(tls_context=context, require_starttls=True)
        if self.login is not None:
            options["authenticator"] = self._authenticate
            if self.scheme == "smtps":
                # aiosmtpd counts only STARTTLS as TLS when offering AUTH, and warns
                # when AUTH is required without it: offer AUTH on this connection,
                # TLS from its start, and let the test check `Received.authenticated`.
                options["auth_require_tls"] = False
            else:
                options["auth_required"] = True
        self._controller = Controller(
            self.mailbox, hostname="127.0.0.1", port=self.port, **options
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        given = (
            (auth_data.login.decode(), auth_data.password.decode())
            if isinstance(auth_data, LoginPassword)
            else None
        )
        return AuthResult(success=given == self.login, handled=False)
