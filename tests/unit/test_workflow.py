"""The workflow table: which moves an order's state may make, and which it may not."""

from __future__ import annotations

import pytest

from domain import workflow
from domain.workflow import FINISHED, REFUSED, STATES, UNFINISHED


@pytest.mark.parametrize(
    ("trigger", "source", "dest"),
    [
        ("accept", UNFINISHED, FINISHED),
        ("refuse", UNFINISHED, REFUSED),
        ("warn", UNFINISHED, UNFINISHED),
    ],
)
def test_an_unfinished_order_may_be_accepted_refused_or_warned(
    trigger: str, source: str, dest: str
) -> None:
    # given an order in `source`; when `trigger` fires; then it lands in `dest`
    assert workflow.may(trigger, source)
    assert workflow.next_state(trigger, source) == dest


@pytest.mark.parametrize("trigger", ["accept", "refuse", "warn"])
@pytest.mark.parametrize("decided", [FINISHED, REFUSED])
def test_a_decided_order_makes_no_further_move(trigger: str, decided: str) -> None:
    # given a decided order; then no trigger is allowed and asking for it is an error
    assert not workflow.may(trigger, decided)
    with pytest.raises(ValueError, match=trigger):
        workflow.next_state(trigger, decided)


def test_warning_leaves_the_state_where_it_was() -> None:
    # given an unfinished order; when warned; then it stays unfinished (reflexive)
    assert workflow.next_state("warn", UNFINISHED) == UNFINISHED


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("target", STATES)
def test_there_are_no_automatic_to_state_triggers(state: str, target: str) -> None:
    # given the table built with auto_transitions=False; then `to_<state>` is no move
    assert not workflow.may(f"to_{target}", state)
    with pytest.raises(ValueError, match=f"to_{target}"):
        workflow.next_state(f"to_{target}", state)


@pytest.mark.parametrize("state", STATES)
def test_an_unknown_trigger_is_never_allowed(state: str) -> None:
    assert not workflow.may("finish", state)


def test_the_table_names_exactly_three_triggers_and_three_states() -> None:
    # the table is the one place the workflow is written: nothing hides elsewhere
    assert {t["trigger"] for t in workflow.TRANSITIONS} == {"accept", "refuse", "warn"}
    assert set(STATES) == {UNFINISHED, FINISHED, REFUSED}
