"""The mailer: delivers the outbox over SMTP, at least once, retrying with backoff.

A message is recorded as sent only after the SMTP server has taken it; a mailer
that dies in between sends it again, with the same Message-ID, so that the
receiving side can recognise the repeat. After `max_attempts` failures a message
is dead-lettered (`pm-order mail list --failed`) until retried by command.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo

import aiosmtplib

from language import ENGLISH, Language
from mail.ledger import DeliveryLedger, OutgoingMail
from mail.messages import compose
from mail.settings import SmtpSettings
from projections.database import ViewDatabase
from projections.executor import in_pool

log = logging.getLogger(__name__)

T = TypeVar("T")

SEND_TIMEOUT_SECONDS: Final = 30.0


@dataclass(frozen=True)
class Backoff:
    """Wait `first` seconds after the first failure, doubling up to `most`; give
    up after `max_attempts` failures.

    The defaults ride out a mail server down for about 80 minutes (10 s, 20 s,
    40 s, ... then every 15 minutes) before a message is dead-lettered.
    """

    first: float = 10.0
    most: float = 900.0
    max_attempts: int = 12

    def retry_at(self, now: float, attempts: int) -> float | None:
        """When to try again after `attempts` failures; None: give up."""
        if attempts >= self.max_attempts:
            return None
        wait: float = min(self.first * 2.0 ** (attempts - 1), self.most)
        return now + wait


DEFAULT_BACKOFF: Final = Backoff()


class Mailer:
    """Sends due messages of the outbox and records each attempt."""

    def __init__(
        self,
        db: ViewDatabase,
        smtp: SmtpSettings,
        executor: Executor,
        *,
        sender: str,
        zone: ZoneInfo,
        language: Language = ENGLISH,
        backoff: Backoff = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.smtp = smtp
        self.executor = executor
        self.sender = sender
        self.zone = zone
        self.language = language
        self.backoff = backoff
        self.clock = clock
        # Send attempts of this process by result: sent, failed, gave_up.
        self.attempts: Counter[str] = Counter()

    async def deliver_due(self) -> int:
        """Try every message that is due now; returns how many were sent."""
        due = await self._run(DeliveryLedger.due, self.db, self.clock())
        sent = 0
        for mail in due:
            if await self._deliver(mail):
                sent += 1
        return sent

    async def _deliver(self, mail: OutgoingMail) -> bool:
        try:
            message = compose(
                mail, sender=self.sender, zone=self.zone, language=self.language
            )
        except Exception as error:  # noqa: BLE001 - any message the code cannot build
            # Trying again cannot help until the code or the data is fixed
            # (`pm-order mail retry` then): given up on at once, so that it
            # never holds up the messages behind it.
            await self._give_up_unbuildable(mail, error)
            return False
        try:
            await aiosmtplib.send(
                message,
                sender=self.sender,
                recipients=mail.recipients,
                hostname=self.smtp.host,
                port=self.smtp.port,
                use_tls=self.smtp.use_tls,
                start_tls=self.smtp.start_tls,
                username=self.smtp.username,
                password=self.smtp.password,
                timeout=SEND_TIMEOUT_SECONDS,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            attempts = mail.attempts + 1
            retry_at = self.backoff.retry_at(self.clock(), attempts)
            self.attempts["failed" if retry_at is not None else "gave_up"] += 1
            if retry_at is None:
                log.error(
                    "giving up on %s after %d attempts: %s",
                    mail.message_id,
                    attempts,
                    error,
                )
            else:
                log.warning(
                    "sending %s failed (attempt %d): %s",
                    mail.message_id,
                    attempts,
                    error,
                )
            await self._run(
                DeliveryLedger.mark_attempt_failed,
                self.db,
                mail.message_id,
                attempts,
                retry_at,
                f"{type(error).__name__}: {error}",
            )
            return False
        self.attempts["sent"] += 1
        await self._run(
            DeliveryLedger.mark_sent, self.db, mail.message_id, self.clock()
        )
        return True

    async def _give_up_unbuildable(self, mail: OutgoingMail, error: Exception) -> None:
        self.attempts["gave_up"] += 1
        reason = f"cannot be built: {type(error).__name__}: {error}"
        log.error("giving up on %s: %s", mail.message_id, reason)
        await self._run(
            DeliveryLedger.mark_attempt_failed,
            self.db,
            mail.message_id,
            mail.attempts + 1,
            None,
            reason,
        )

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        return await in_pool(self.executor, function, *args)
