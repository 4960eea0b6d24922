"""The reporting read model against a known scenario, on every store.

The scenario, days in UTC (the clock starts on 2026-11-27 at 09:00):

    27th 09:00  1: proj-a -> proj-b, 2 servers   accepted 09:10        (600 s)
    27th 09:00  2: proj-a -> proj-c, 1 server    refused  11:10       (7800 s)
    27th 09:00  3: proj-b -> proj-a, 1 server    accepted 28th 11:30 (95400 s)
    28th 10:00  4: proj-a -> proj-b, 1 server    accepted 10:30       (1800 s)
    28th 10:00  5: proj-a -> proj-b, 1 server    unfinished, warned 28th 11:30
                                                 and 29th 09:00
    29th 09:00  6: proj-a -> proj-c, 1 server    unfinished, warned 29th 10:00
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from domain.service import OrderService
from projections.reports import DayFigures, Figures, Reports, percentile
from service.store import Store
from tests.application.conftest import decide, request
from tests.conftest import FakeClock

EVERY = timedelta(hours=1)
NOV_27, NOV_28, NOV_29 = date(2026, 11, 27), date(2026, 11, 28), date(2026, 11, 29)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def scenario(registered: OrderService, clock: FakeClock, store: Store) -> Store:
    """The orders of the module's docstring, projected."""
    clock.now = at("2026-11-27 09:00")
    first = request(registered, ["SN-A-1", "SN-A-2"])
    second = request(registered, ["SN-A-3"], dest_project="proj-c")
    third = request(
        registered, ["SN-B-1"], source_project="proj-b", dest_project="proj-a"
    )
    clock.now = at("2026-11-27 09:10")
    decide(registered, [first], accept=True)
    clock.now = at("2026-11-27 11:10")
    decide(registered, [second], accept=False, project="proj-c")
    clock.now = at("2026-11-28 10:00")
    fourth = request(registered, ["SN-A-4"])
    fifth = request(registered, ["SN-A-5"])
    clock.now = at("2026-11-28 10:30")
    decide(registered, [fourth], accept=True)
    clock.now = at("2026-11-28 11:30")
    registered.raise_warning(fifth, every=EVERY, most=3)
    decide(registered, [third], accept=True, project="proj-a")
    clock.now = at("2026-11-29 09:00")
    sixth = request(registered, ["SN-A-6"], dest_project="proj-c")
    registered.raise_warning(fifth, every=EVERY, most=3)
    clock.now = at("2026-11-29 10:00")
    registered.raise_warning(sixth, every=EVERY, most=3)
    store.catch_up()
    return store


def figures(
    store: Store,
    project: str | None = None,
    since: date | None = None,
    until: date | None = None,
) -> Figures:
    return Reports.figures(store.views, project, since, until)


def day_of(report: Figures, project: str, day: date) -> DayFigures:
    (found,) = [f for f in report.days if f.project == project and f.day == day]
    return found


# -- orders per project and day --------------------------------------------------


def test_orders_count_for_the_source_project_on_the_day_they_were_requested(
    scenario: Store,
) -> None:
    # when
    report = figures(scenario)
    # then
    requested = {(f.project, f.day): f.requested for f in report.days}
    assert requested == {
        ("proj-a", NOV_27): 2,
        ("proj-a", NOV_28): 2,
        ("proj-a", NOV_29): 1,
        ("proj-b", NOV_27): 1,
        ("proj-b", NOV_28): 0,
    }


def test_each_requested_order_is_accepted_refused_or_still_unfinished(
    scenario: Store,
) -> None:
    # when
    report = figures(scenario, project="proj-a")
    # then
    outcomes = [(f.day, f.finished, f.refused, f.unfinished) for f in report.days]
    assert outcomes == [(NOV_27, 1, 1, 0), (NOV_28, 1, 0, 1), (NOV_29, 0, 0, 1)]


def test_a_decision_counts_on_the_day_the_order_was_requested(
    scenario: Store,
) -> None:
    # given order 3, requested by proj-b on the 27th, accepted on the 28th
    # when
    report = figures(scenario, project="proj-b")
    # then
    assert day_of(report, "proj-b", NOV_27).finished == 1
    assert day_of(report, "proj-b", NOV_28).finished == 0


def test_accepting_moves_servers_into_the_destination_and_out_of_the_source(
    scenario: Store,
) -> None:
    # when
    report = figures(scenario)
    # then servers count on the day they moved
    moved = {(f.project, f.day): (f.servers_in, f.servers_out) for f in report.days}
    assert moved == {
        ("proj-a", NOV_27): (0, 2),
        ("proj-a", NOV_28): (1, 1),
        ("proj-a", NOV_29): (0, 0),
        ("proj-b", NOV_27): (2, 0),
        ("proj-b", NOV_28): (1, 1),
    }


def test_refusing_moves_no_server(scenario: Store) -> None:
    # given order 2, proj-a -> proj-c, refused
    # when
    report = figures(scenario, project="proj-c")
    # then
    assert report.days == []
    assert report.summary_of("proj-c").servers_in == 0


def test_warnings_count_for_the_source_project_on_the_day_they_were_raised(
    scenario: Store,
) -> None:
    # when
    report = figures(scenario, project="proj-a")
    # then
    assert [(f.day, f.warnings) for f in report.days] == [
        (NOV_27, 0),
        (NOV_28, 1),
        (NOV_29, 2),
    ]


def test_days_are_utc_calendar_days(
    registered: OrderService, clock: FakeClock, store: Store
) -> None:
    # given one order just before midnight UTC and one at midnight
    clock.now = at("2026-11-27 23:59:59")
    request(registered, ["SN-A-1"])
    clock.now = at("2026-11-28 00:00:00")
    request(registered, ["SN-A-2"])
    store.catch_up()
    # when
    report = figures(store)
    # then
    assert [(f.day, f.requested) for f in report.days] == [(NOV_27, 1), (NOV_28, 1)]


# -- summaries -------------------------------------------------------------------


def test_a_summary_totals_the_project_s_days(scenario: Store) -> None:
    # when
    summary = figures(scenario).summary_of("proj-a")
    # then
    totals = summary.as_json()
    del totals["median_decision_seconds"], totals["p95_decision_seconds"]
    assert totals == {
        "project": "proj-a",
        "requested": 5,
        "accepted": 2,
        "refused": 1,
        "unfinished": 2,
        "servers_in": 1,
        "servers_out": 3,
        "warnings": 3,
        "decisions": 3,
    }


def test_time_to_decision_runs_from_the_request_to_the_decision(
    scenario: Store,
) -> None:
    # when
    summary = figures(scenario).summary_of("proj-a")
    # then orders 1, 2 and 4; the unfinished 5 and 6 have no time yet
    assert summary.decision_seconds == (600.0, 1800.0, 7800.0)


def test_the_median_of_an_odd_count_is_the_middle_time(scenario: Store) -> None:
    # when
    summary = figures(scenario).summary_of("proj-a")
    # then
    assert summary.median_decision_seconds == 1800.0


def test_the_median_of_an_even_count_is_the_mean_of_the_middle_two(
    scenario: Store,
) -> None:
    # given proj-a's orders of the 27th: 600 s and 7800 s
    # when
    summary = figures(scenario, until=NOV_27).summary_of("proj-a")
    # then
    assert summary.median_decision_seconds == 4200.0


def test_the_95th_percentile_interpolates_between_the_nearest_ranks(
    scenario: Store,
) -> None:
    # given 600, 1800, 7800: rank 0.95 * (3 - 1) = 1.9, between 1800 and 7800
    # when
    summary = figures(scenario).summary_of("proj-a")
    # then
    assert summary.p95_decision_seconds == 7200.0


def test_a_project_without_decisions_has_no_time_to_decision(
    scenario: Store,
) -> None:
    # when
    summary = figures(scenario, since=NOV_29).summary_of("proj-a")
    # then
    assert summary.decisions == 0
    assert summary.median_decision_seconds is None
    assert summary.p95_decision_seconds is None


@pytest.mark.parametrize(
    ("values", "percent", "expected"),
    [
        ([], 50, None),
        ([5.0], 95, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([0.0, 10.0, 20.0, 30.0, 40.0], 95, 38.0),
        ([0.0, 10.0], 100, 10.0),
        ([0.0, 10.0], 0, 0.0),
    ],
)
def test_percentiles_interpolate_linearly_between_the_nearest_ranks(
    values: list[float], percent: int, expected: float | None
) -> None:
    assert percentile(values, percent) == expected


# -- date range and project ------------------------------------------------------


def test_a_date_range_keeps_only_its_days_both_ends_included(
    scenario: Store,
) -> None:
    # when
    report = figures(scenario, since=NOV_28, until=NOV_29)
    # then
    assert {f.day for f in report.days} == {NOV_28, NOV_29}


def test_unfinished_over_a_range_counts_its_orders_still_unfinished_now(
    scenario: Store,
) -> None:
    # given orders 4 (accepted) and 5 (unfinished), requested on the 28th
    # when
    summary = figures(scenario, since=NOV_28, until=NOV_28).summary_of("proj-a")
    # then
    assert (summary.requested, summary.finished, summary.unfinished) == (2, 1, 1)


def test_times_to_decision_follow_the_range_of_the_requests(
    scenario: Store,
) -> None:
    # when
    summary = figures(scenario, since=NOV_28).summary_of("proj-a")
    # then only order 4 was requested from the 28th on and decided
    assert summary.decision_seconds == (1800.0,)


def test_a_range_without_activity_reports_nothing(scenario: Store) -> None:
    # when
    report = figures(scenario, since=date(2026, 12, 1))
    # then
    assert report.days == []
    assert report.summaries == []


def test_a_project_report_holds_only_that_project(scenario: Store) -> None:
    # when
    report = figures(scenario, project="proj-b")
    # then
    assert {f.project for f in report.days} == {"proj-b"}
    assert [s.project for s in report.summaries] == ["proj-b"]
    assert report.summary_of("proj-b").decision_seconds == (95400.0,)


def test_a_project_without_activity_gets_a_summary_of_zeros(scenario: Store) -> None:
    # when
    report = figures(scenario, project="proj-z")
    # then
    (summary,) = report.summaries
    assert summary.project == "proj-z"
    assert (summary.requested, summary.decisions, summary.warnings) == (0, 0, 0)


def test_every_project_with_activity_has_a_summary(scenario: Store) -> None:
    # when
    report = figures(scenario)
    # then
    assert [s.project for s in report.summaries] == ["proj-a", "proj-b"]
