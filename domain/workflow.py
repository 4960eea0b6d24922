"""The order workflow: every state and every allowed move, in one table."""

from __future__ import annotations

from typing import Final

from transitions import Machine

UNFINISHED: Final = "unfinished"
FINISHED: Final = "finished"
REFUSED: Final = "refused"

STATES: Final = (UNFINISHED, FINISHED, REFUSED)

ACCEPT: Final = "accept"
REFUSE: Final = "refuse"
WARN: Final = "warn"

TRANSITIONS: Final = (
    {"trigger": ACCEPT, "source": UNFINISHED, "dest": FINISHED},
    {"trigger": REFUSE, "source": UNFINISHED, "dest": REFUSED},
    {"trigger": WARN, "source": UNFINISHED, "dest": "="},
)

# One machine for the whole process, with no model: aggregates keep only their
# state value (a Machine on an aggregate would be copied into its snapshots).
_MACHINE: Final = Machine(
    model=None,
    states=list(STATES),
    transitions=[dict(t) for t in TRANSITIONS],
    initial=UNFINISHED,
    auto_transitions=False,
)


def may(trigger: str, state: str) -> bool:
    """Whether `trigger` is allowed from `state`."""
    return bool(_MACHINE.get_transitions(trigger=trigger, source=state))


def decision(accept: bool) -> str:
    """The trigger of a decision: accept or refuse."""
    return ACCEPT if accept else REFUSE


def outcome(trigger: str) -> str:
    """The state a decision (`accept`, `refuse`) leads an unanswered order to."""
    return next_state(trigger, UNFINISHED)


def next_state(trigger: str, state: str) -> str:
    """The state `trigger` leads to from `state`; ValueError if it is not allowed."""
    moves = _MACHINE.get_transitions(trigger=trigger, source=state)
    if not moves:
        raise ValueError(f"{trigger!r} is not allowed from {state!r}")
    dest = moves[0].dest
    return state if dest is None else str(dest)
