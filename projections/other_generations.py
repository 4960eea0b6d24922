"""The read models that other releases' processes serve from, in this database.

While two releases serve one database (an upgrade or a rollback under way), a
write answered by a process of one release must show in a read answered by a
process of the other (read-your-writes: whichever process answers). Each
release's read models are its own generation, projected by its own worker, so:

- a write's answer also waits for every other generation that serves (its
  projector runs, and it has caught up) to show it;
- a read, while other generations serve, first waits for this process's read
  models to reach the log's head: a write another release answered is in it.

A generation serves while its projector's advisory lock is held (its worker
runs: the documented order of an upgrade starts a release's worker before its
API processes and stops it after them). Release 0.1.0's read models are found
beside the event store's table; later ones in the generations' registry.
PostgreSQL only: on SQLite one process owns the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from projections.database import PostgresViews
from projections.database.leadership import advisory_key
from projections.generations import generation_schema, generations

# The release whose read models were not yet in generations of their own, and
# the name of its projector's leadership (its views').
LEGACY: Final = "0.1.0"
LEGACY_PROJECTOR: Final = "order_lists+server_ownership+mail_outbox+reports"
# The name of a generation's projector's leadership, in its schema.
PROJECTOR: Final = "projector"

_HELD_KEYS: Final = (
    "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks"
    " WHERE locktype = 'advisory' AND objsubid = 1 AND granted"
    " AND database = (SELECT oid FROM pg_database"
    " WHERE datname = current_database())"
)


@dataclass(frozen=True)
class OtherGeneration:
    """Another release's read models: where their positions are, and the lock
    their projector holds while it runs."""

    name: str  # the generation, or LEGACY
    tracking: str  # the tracking table, schema-qualified and quoted
    lock_key: int


def running_others(db: PostgresViews, own: str) -> list[OtherGeneration]:
    """The other generations whose projector runs now."""
    base = db.shared_schema or "public"
    candidates = [
        _of(g.name, generation_schema(base, g.name), PROJECTOR)
        for g in generations(db)
        if g.name != own
    ]
    if db.query("SELECT to_regclass(?)", [f'"{base}".projection_tracking'])[0][0]:
        candidates.append(_of(LEGACY, base, LEGACY_PROJECTOR))
    if not candidates:
        return []
    held = {int(key) & _UNSIGNED for (key,) in db.query(_HELD_KEYS)}
    return [c for c in candidates if c.lock_key & _UNSIGNED in held]


def position_of(db: PostgresViews, other: OtherGeneration) -> int | None:
    """How far every view of `other` has got (None: its tables are gone)."""
    import psycopg

    try:
        rows = db.query(f"SELECT min(position) FROM {other.tracking}")
    except psycopg.errors.UndefinedTable:
        return None
    (position,) = rows[0]
    return None if position is None else int(position)


_UNSIGNED: Final = (1 << 64) - 1


def _of(name: str, schema: str, projector: str) -> OtherGeneration:
    # The projector's leadership, as every release names it (leadership.py).
    return OtherGeneration(
        name=name,
        tracking=f'"{schema}".projection_tracking',
        lock_key=advisory_key(f"pm-order:{schema}:{projector}"),
    )
