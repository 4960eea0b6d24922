"""`pm-order report`: per project and day, orders and servers moved."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

from cli import report_html
from cli.grammar import project_option
from cli.store_path import composed
from language import Language, ljust, rjust, width
from projections.reports import (
    CSV_COLUMNS,
    DAY_COLUMNS,
    PROJECT_COLUMNS,
    Figures,
    Reports,
    parse_day,
)
from service.config import Config, ConfigError

_DESCRIPTION: Final = """\
Per project and per day (days in UTC): orders requested (as the source) and
what became of them (accepted, refused, still unfinished), servers moved in and
out, warnings raised; per project, the median and 95th percentile of the time
from request to decision.

An order counts on the day it was requested, whenever it was decided: over a
range, "unfinished" is the orders requested in the range that are still
unfinished now. Servers count on the day they moved, warnings on the day they
were raised. Percentiles interpolate linearly between the nearest ranks.
"""


def register(commands: Any) -> None:
    report = commands.add_parser(
        "report",
        help="orders per project and day, servers moved, time to decision",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    project_option(report, "only this project")
    report.add_argument(
        "--since", metavar="DATE", help="first day, YYYY-MM-DD (UTC), included"
    )
    report.add_argument(
        "--until", metavar="DATE", help="last day, YYYY-MM-DD (UTC), included"
    )
    report.add_argument(
        "--format",
        choices=tuple(RENDERERS),
        default="table",
        help="table (default) for people; csv and json (or --json) for programs; "
        "html: one self-contained page with charts",
    )
    report.add_argument(
        "-o", "--output", metavar="FILE", type=Path, help="write to FILE, not stdout"
    )
    report.add_argument("--json", action="store_true", help="as --format json")
    report.set_defaults(command=make_report, own_output=True)


def make_report(config: Config, args: argparse.Namespace) -> int:
    if args.json and args.format not in ("table", "json"):
        raise ConfigError(f"--json and --format {args.format}: choose one")
    output_format = "json" if args.json else args.format
    since = _day_option(args.since, "--since")
    until = _day_option(args.until, "--until")
    if since and until and since > until:
        raise ConfigError(f"--since {since} is after --until {until}")
    with composed(config) as root:
        root.store.catch_up()  # no server may be keeping the views up to date
        figures = Reports.figures(root.store.views, args.project, since, until)
    text = RENDERERS[output_format](figures, config.language)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{args.output}: {error.strerror}") from None
    written = config.language.gettext(
        "pm-order: report written to {file}", file=args.output
    )
    print(written, file=sys.stderr)
    return 0


def _day_option(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return parse_day(text)
    except ValueError as error:
        raise ConfigError(f"{option}: {error}") from None


# -- formats ---------------------------------------------------------------------


def as_table(figures: Figures, language: Language) -> str:
    _ = language.gettext
    lines = [report_html.scope_text(figures, language), ""]
    lines += _columns(
        [_(c.short) for c in PROJECT_COLUMNS],
        [report_html.cells(PROJECT_COLUMNS, s, language) for s in figures.summaries],
        language,
    )
    lines.append("")
    lines += _columns(
        [_(c.short) for c in DAY_COLUMNS],
        [report_html.cells(DAY_COLUMNS, f, language) for f in figures.days],
        language,
        text_columns=2,
    )
    lines += [
        "",
        _(
            "IN, OUT: servers moved in and out that day. MEDIAN, P95: time from "
            "request to decision."
        ),
    ]
    return "\n".join(lines) + "\n"


def _columns(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    language: Language,
    text_columns: int = 1,
) -> list[str]:
    """Aligned columns: text to the left, numbers to the right (CJK counts two)."""
    if not rows:
        return [language.gettext("{table}: nothing in this range", table=headers[0])]
    cells = [list(headers), *(list(row) for row in rows)]
    widths = [max(width(row[i]) for row in cells) for i in range(len(headers))]
    return [
        "  ".join(
            ljust(cell, columns) if i < text_columns else rjust(cell, columns)
            for i, (cell, columns) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in cells
    ]


def as_csv(figures: Figures, language: Language) -> str:
    """One table: a `day` row per project and day, then a `project` row each."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for day in figures.days:
        writer.writerow({"kind": "day", **day.as_json()})
    for summary in figures.summaries:
        writer.writerow({"kind": "project", **summary.as_json()})
    return out.getvalue()


def as_json(figures: Figures, language: Language) -> str:
    body = {
        "tenant": figures.project,
        "since": figures.since.isoformat() if figures.since else None,
        "until": figures.until.isoformat() if figures.until else None,
        "time_zone": "UTC",
        "days": [day.as_json() for day in figures.days],
        "projects": [summary.as_json() for summary in figures.summaries],
    }
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


def as_html(figures: Figures, language: Language) -> str:
    return report_html.render(figures, datetime.now(UTC), language)


# Every format gets the language; CSV and JSON are for programs and ignore it.
RENDERERS: Final[dict[str, Callable[[Figures, Language], str]]] = {
    "table": as_table,
    "csv": as_csv,
    "json": as_json,
    "html": as_html,
}
