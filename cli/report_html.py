"""The report as one self-contained HTML page: inline CSS, inline SVG charts.

Nothing is fetched when the page is opened (no script, no font, no image from
anywhere), so it reads the same in a browser with no network.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from html import escape
from typing import Final, TypeVar

from language import ENGLISH, N_, Language
from projections.reports import (
    DAY_COLUMNS,
    PROJECT_COLUMNS,
    Column,
    DayFigures,
    Figures,
    ProjectSummary,
    percentile,
)

Row = TypeVar("Row")

# State -> (the bars' class on the page, label, colour) for the stacked bars,
# bottom to top. The page calls finished orders "accepted", as the reports do.
OUTCOMES: Final = (
    ("finished", "accepted", N_("Accepted"), "#2e7d32"),
    ("refused", "refused", N_("Refused"), "#c62828"),
    ("unfinished", "unfinished", N_("Unfinished"), "#f0a30a"),
)
HISTOGRAM_COLOUR: Final = "#1f5fa8"

# Time-to-decision bins: (label, upper bound in seconds, excluded); the last is open.
DECISION_BINS: Final[tuple[tuple[str, float], ...]] = (
    (N_("< 1 min"), 60),
    (N_("1-10 min"), 600),
    (N_("10-30 min"), 1800),
    (N_("30 min-1 h"), 3600),
    (N_("1-4 h"), 4 * 3600),
    (N_("4-12 h"), 12 * 3600),
    (N_("12-24 h"), 24 * 3600),
    (N_("1-3 d"), 3 * 86400),
    (N_("3-7 d"), 7 * 86400),
    (N_("≥ 7 d"), float("inf")),
)

# The reports' column headings (projections/reports.py), marked here for the
# catalog: the read model names its columns, the page and the terminal say them.
COLUMN_HEADINGS: Final = frozenset(
    {
        N_("Project"),
        N_("Day (UTC)"),
        N_("Requested"),
        N_("Accepted"),
        N_("Refused"),
        N_("Unfinished"),
        N_("Servers in"),
        N_("Servers out"),
        N_("Warnings"),
        N_("Decided"),
        N_("Median time to decision"),
        N_("95th percentile"),
        N_("PROJECT"),
        N_("DAY (UTC)"),
        N_("REQUESTED"),
        N_("ACCEPTED"),
        N_("REFUSED"),
        N_("UNFINISHED"),
        N_("IN"),
        N_("OUT"),
        N_("WARNINGS"),
        N_("DECIDED"),
        N_("MEDIAN"),
        N_("P95"),
    }
)

# Chart geometry, in SVG user units (the SVG scales to the page's width).
WIDTH: Final = 960
HEIGHT: Final = 320
LEFT: Final = 56
RIGHT: Final = 16
TOP: Final = 16
BOTTOM: Final = 48

_STYLE: Final = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: #1d2330;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue",
  Arial, "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 28px 24px 40px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 0 0 4px; }
.scope { color: #566074; margin: 0 0 22px; }
section { background: #fff; border: 1px solid #dde1e8; border-radius: 8px;
  padding: 18px 20px; margin: 0 0 20px; }
.note { color: #566074; margin: 0 0 12px; font-size: 14px; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px;
  background: none; border: 0; padding: 0; }
.card { background: #fff; border: 1px solid #dde1e8; border-radius: 8px;
  padding: 12px 16px; }
.card .value { font-size: 24px; font-weight: 650; }
.card .label { color: #566074; font-size: 13px; }
svg.chart { display: block; width: 100%; height: auto; }
svg.chart text { font-size: 12px; fill: #3a4356; }
svg.chart .axis { stroke: #9aa3b2; stroke-width: 1; }
svg.chart .grid { stroke: #e6e9ef; stroke-width: 1; }
svg.chart .count { font-size: 12px; fill: #1d2330; font-weight: 600; }
svg.chart .empty { font-size: 15px; fill: #7a8396; }
.legend { display: flex; gap: 18px; margin: 8px 0 0; padding: 0; list-style: none;
  font-size: 14px; }
.legend .swatch { display: inline-block; width: 12px; height: 12px;
  border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
.scroll { overflow-x: auto; }
th, td { padding: 6px 10px; border-bottom: 1px solid #e6e9ef; text-align: right; }
td { white-space: nowrap; }
th { background: #f7f8fa; color: #3a4356; font-weight: 600; vertical-align: bottom; }
th:first-child, td:first-child, td.text, th.text { text-align: left; }
tbody tr:hover { background: #f7f9fc; }
td.none { color: #9aa3b2; }
footer { color: #566074; font-size: 13px; }
footer dt { font-weight: 600; margin-top: 6px; }
footer dd { margin: 0 0 0 16px; }
@media print { body { background: #fff; } section { break-inside: avoid; } }
"""


def scope_text(figures: Figures, language: Language = ENGLISH) -> str:
    """Which projects and days a report covers, in words."""
    _ = language.gettext
    who = (
        _("Project {project}", project=figures.project)
        if figures.project
        else _("All projects")
    )
    days = [f.day for f in figures.days]
    since = figures.since or (min(days) if days else None)
    until = figures.until or (max(days) if days else None)
    if since is None and until is None:
        return _("{who}, every day (days in UTC)", who=who)
    first = since.isoformat() if since else _("the first day")
    last = until.isoformat() if until else _("the last day")
    return _(
        "{who}, from {first} to {last} (days in UTC)", who=who, first=first, last=last
    )


def render(
    figures: Figures, generated_at: datetime, language: Language = ENGLISH
) -> str:
    """The whole page, in `language`."""
    _ = language.gettext
    title = _("Transfer orders report")
    scope = scope_text(figures, language)
    generated = _("generated {moment}", moment=language.minute(generated_at))
    return "\n".join(
        [
            "<!DOCTYPE html>",
            f'<html lang="{language.tag}">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{escape(title)} - {escape(scope)}</title>",
            f"<style>{_STYLE}</style>",
            "</head>",
            "<body>",
            "<main>",
            f"<h1>{escape(title)}</h1>",
            f'<p class="scope">{escape(scope)} · {escape(generated)}</p>',
            _cards(figures, language),
            _section(
                "orders-chart",
                _("Orders per day by outcome"),
                _("Orders requested each day, by what has become of them since."),
                orders_chart(figures.days, language) + _legend(language),
            ),
            _section(
                "decision-chart",
                _("Time to decision"),
                _decision_note(figures.decision_seconds, language),
                decision_chart(figures.decision_seconds, language),
            ),
            _section(
                "projects",
                _("Per project"),
                "",
                _project_table(figures.summaries, language),
            ),
            _section(
                "days",
                _("Per project and day"),
                "",
                _day_table(figures.days, language),
            ),
            _footer(language),
            "</main>",
            "</body>",
            "</html>",
            "",
        ]
    )


# -- charts ----------------------------------------------------------------------


@dataclass(frozen=True)
class _DayTotals:
    day: date
    finished: int = 0
    refused: int = 0
    unfinished: int = 0

    @property
    def requested(self) -> int:
        return self.finished + self.refused + self.unfinished


def daily_outcomes(days: Iterable[DayFigures]) -> list[_DayTotals]:
    """Every day from the first to the last of `days`, summed over projects."""
    totals: dict[date, tuple[int, int, int]] = {}
    for f in days:
        done, r, u = totals.get(f.day, (0, 0, 0))
        totals[f.day] = (done + f.finished, r + f.refused, u + f.unfinished)
    if not totals:
        return []
    first, last = min(totals), max(totals)
    return [
        _DayTotals(day, *totals.get(day, (0, 0, 0)))
        for day in (first + timedelta(n) for n in range((last - first).days + 1))
    ]


def orders_chart(days: Iterable[DayFigures], language: Language = ENGLISH) -> str:
    """Stacked bars: per day, accepted, refused and unfinished orders."""
    _ = language.gettext
    per_day = daily_outcomes(days)
    parts = [_svg_open("orders-per-day", _("Orders per day by outcome"))]
    if not per_day:
        parts.append(_empty(_("No orders in this range")))
        parts.append("</svg>")
        return "\n".join(parts)
    top, step = _scale(max(d.requested for d in per_day))
    parts.extend(_y_axis(top, step, language))
    slot = (WIDTH - LEFT - RIGHT) / len(per_day)
    bar = max(1.0, min(slot * 0.7, 48.0))
    label_every = max(1, -(-len(per_day) // 16))
    for index, totals in enumerate(per_day):
        x = LEFT + slot * index + (slot - bar) / 2
        parts.append(f'<g class="day" data-day="{totals.day.isoformat()}">')
        base = 0
        for state, css_class, label, colour in OUTCOMES:
            count: int = getattr(totals, state)
            if count:
                y0, y1 = _y(base + count, top), _y(base, top)
                parts.append(
                    f'<rect class="bar {css_class}" x="{x:.1f}" y="{y0:.1f}"'
                    f' width="{bar:.1f}" height="{y1 - y0:.1f}" fill="{colour}">'
                    f"<title>{escape(_bar_title(totals.day, count, label, language))}"
                    "</title></rect>"
                )
                base += count
        if index % label_every == 0:
            parts.append(
                _text(x + bar / 2, HEIGHT - BOTTOM + 18, language.day(totals.day))
            )
        parts.append("</g>")
    parts.append(_x_axis())
    parts.append("</svg>")
    return "\n".join(parts)


def decision_bins(seconds: Sequence[float]) -> list[int]:
    """How many times to decision fall in each of DECISION_BINS."""
    counts = [0] * len(DECISION_BINS)
    for value in seconds:
        for index, (_, upper) in enumerate(DECISION_BINS):
            if value < upper:
                counts[index] += 1
                break
    return counts


def decision_chart(seconds: Sequence[float], language: Language = ENGLISH) -> str:
    """A histogram of times to decision over DECISION_BINS."""
    _ = language.gettext
    counts = decision_bins(seconds)
    parts = [_svg_open("decision-histogram", _("Time to decision"))]
    if not seconds:
        parts.append(_empty(_("No order in this range has been decided yet")))
    top, step = _scale(max(counts))
    parts.extend(_y_axis(top, step, language))
    slot = (WIDTH - LEFT - RIGHT) / len(DECISION_BINS)
    bar = slot * 0.8
    for index, ((key, _upper), count) in enumerate(
        zip(DECISION_BINS, counts, strict=True)
    ):
        x = LEFT + slot * index + (slot - bar) / 2
        y0, y1 = _y(count, top), _y(0, top)
        label = _(key)
        bin_title = _("{range}: {orders}", range=label, orders=_orders(count, language))
        # data-bin keeps the source's words: a key for programs, not for people.
        parts.append(f'<g class="bin" data-bin="{escape(key)}">')
        parts.append(
            f'<rect class="bar bin" data-count="{count}" x="{x:.1f}" y="{y0:.1f}"'
            f' width="{bar:.1f}" height="{y1 - y0:.1f}" fill="{HISTOGRAM_COLOUR}">'
            f"<title>{escape(bin_title)}</title></rect>"
        )
        if count:
            parts.append(_text(x + bar / 2, y0 - 5, language.number(count), "count"))
        parts.append(_text(x + bar / 2, HEIGHT - BOTTOM + 18, label))
        parts.append("</g>")
    parts.append(_x_axis())
    parts.append("</svg>")
    return "\n".join(parts)


def _svg_open(ident: str, title: str) -> str:
    return (
        f'<svg id="{ident}" class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' aria-labelledby="{ident}-title">'
        f'<title id="{ident}-title">{escape(title)}</title>'
    )


def _scale(highest: int) -> tuple[int, int]:
    """(top, step) of a y axis reaching `highest` in at most 5 round steps."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if highest <= step * 5:
                return max(1, -(-highest // step)) * step, step
        magnitude *= 10


def _y(value: float, top: int) -> float:
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - value / top)


def _y_axis(top: int, step: int, language: Language) -> list[str]:
    parts = []
    for value in range(0, top + 1, step):
        y = _y(value, top)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}"'
            f' y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text x="{LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">'
            f"{language.number(value)}</text>"
        )
    return parts


def _x_axis() -> str:
    y = HEIGHT - BOTTOM
    return f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}"/>'


def _text(x: float, y: float, text: str, css: str = "") -> str:
    klass = f' class="{css}"' if css else ""
    return (
        f'<text{klass} x="{x:.1f}" y="{y:.1f}" text-anchor="middle">'
        f"{escape(text)}</text>"
    )


def _empty(message: str) -> str:
    return _text(WIDTH / 2, HEIGHT / 2, message, "empty")


def _orders(count: int, language: Language) -> str:
    return language.ngettext("{count} order", "{count} orders", count)


def _bar_title(day: date, count: int, outcome: str, language: Language) -> str:
    return language.gettext(
        "{day}: {orders} {outcome}",
        day=language.day(day),
        orders=_orders(count, language),
        outcome=language.gettext(outcome).lower(),
    )


def _legend(language: Language) -> str:
    items = "".join(
        f'<li><span class="swatch" style="background:{colour}"></span>'
        f"{escape(language.gettext(label))}</li>"
        for _state, _class, label, colour in OUTCOMES
    )
    return f'<ul class="legend">{items}</ul>'


def _decision_note(seconds: Sequence[float], language: Language) -> str:
    if not seconds:
        return language.gettext("From an order's request to its acceptance or refusal.")
    return language.ngettext(
        "From an order's request to its acceptance or refusal: {count} "
        "decided order, median {median}, 95th percentile {p95}.",
        "From an order's request to its acceptance or refusal: {count} "
        "decided orders, median {median}, 95th percentile {p95}.",
        len(seconds),
        median=language.duration(percentile(seconds, 50)),
        p95=language.duration(percentile(seconds, 95)),
    )


# -- the rest of the page --------------------------------------------------------


def _section(ident: str, title: str, note: str, body: str) -> str:
    note_html = f'<p class="note">{escape(note)}</p>' if note else ""
    return (
        f'<section id="{ident}"><h2>{escape(title)}</h2>{note_html}\n{body}\n</section>'
    )


def _cards(figures: Figures, language: Language) -> str:
    _ = language.gettext
    number = language.number
    summaries = figures.summaries
    seconds = figures.decision_seconds
    cards = [
        (_("Orders requested"), number(sum(s.requested for s in summaries))),
        (_("Accepted"), number(sum(s.finished for s in summaries))),
        (_("Refused"), number(sum(s.refused for s in summaries))),
        (_("Still unfinished"), number(sum(s.unfinished for s in summaries))),
        (
            _("Servers in / out"),
            f"{number(sum(s.servers_in for s in summaries))} / "
            f"{number(sum(s.servers_out for s in summaries))}",
        ),
        (_("Median time to decision"), language.duration(percentile(seconds, 50))),
        (_("95th percentile"), language.duration(percentile(seconds, 95))),
        (_("Warnings raised"), number(sum(s.warnings for s in summaries))),
    ]
    body = "".join(
        f'<div class="card"><div class="value">{escape(value)}</div>'
        f'<div class="label">{escape(label)}</div></div>'
        for label, value in cards
    )
    return f'<section class="cards" id="totals">{body}</section>'


def cells(
    columns: Sequence[Column[Row]], row: Row, language: Language = ENGLISH
) -> list[str]:
    """A row's cells as a person reads them (durations and counts in `language`)."""
    return [_cell(c, row, language) for c in columns]


def _cell(column: Column[Row], row: Row, language: Language) -> str:
    value = column.value(row)
    if column.seconds:
        return language.duration(value)
    if isinstance(value, int):
        return language.number(value)
    return str(value)


def _project_table(summaries: Sequence[ProjectSummary], language: Language) -> str:
    return _table(
        [language.gettext(c.heading) for c in PROJECT_COLUMNS],
        [cells(PROJECT_COLUMNS, s, language) for s in summaries],
        language,
    )


def _day_table(days: Sequence[DayFigures], language: Language) -> str:
    return _table(
        [language.gettext(c.heading) for c in DAY_COLUMNS],
        [cells(DAY_COLUMNS, f, language) for f in days],
        language,
        text_columns=2,
    )


def _table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    language: Language,
    text_columns: int = 1,
) -> str:
    if not rows:
        nothing = escape(language.gettext("Nothing in this range."))
        return f'<p class="note">{nothing}</p>'
    head = "".join(
        f"<th{' class=text' if i < text_columns else ''}>{escape(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = "\n".join(
        "<tr>"
        + "".join(
            f"<td{' class=text' if i < text_columns else ''}>{escape(v)}</td>"
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>\n'
        f"{body}\n</tbody></table></div>"
    )


def _footer(language: Language) -> str:
    _ = language.gettext
    terms = (
        (
            _("Requested, accepted, refused, unfinished"),
            _(
                "Orders a project requested (as the source) that day, and what has "
                "become of them since. Over a range, unfinished means requested in "
                "the range and still unfinished now."
            ),
        ),
        (
            _("Servers in, servers out"),
            _(
                "Servers moved by orders accepted that day: in for the destination, "
                "out for the source."
            ),
        ),
        (
            _("Time to decision"),
            _(
                "From an order's request to its acceptance or refusal, for orders "
                "requested in the range; percentiles interpolate linearly between "
                "the nearest ranks."
            ),
        ),
        (
            _("Warnings"),
            _("Warnings raised that day about orders the project requested."),
        ),
    )
    items = "".join(
        f"<dt>{escape(term)}</dt><dd>{escape(meaning)}</dd>" for term, meaning in terms
    )
    heading = escape(_("What the figures mean"))
    return f"<footer><h2>{heading}</h2><dl>{items}</dl></footer>"
