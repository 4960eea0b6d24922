"""How many messages of the mail outbox are in each delivery state (for metrics)."""

from __future__ import annotations

from typing import Final

from mail.ledger import FAILED, PENDING, SENT
from projections.database import ViewDatabase

# A message without a ledger row has not been tried yet: it is pending.
_COUNT_BY_STATE: Final = (
    f"SELECT COALESCE(d.state, '{PENDING}'), COUNT(*) FROM mail_outbox m"
    " LEFT JOIN mail_deliveries d ON d.message_id = m.message_id"
    f" GROUP BY COALESCE(d.state, '{PENDING}')"
)


def outbox_by_state(db: ViewDatabase) -> dict[str, int]:
    """Messages per state (pending, sent, failed), every state present."""
    counts = dict.fromkeys((PENDING, SENT, FAILED), 0)
    for state, count in db.query(_COUNT_BY_STATE):
        counts[str(state)] = int(count)
    return counts
