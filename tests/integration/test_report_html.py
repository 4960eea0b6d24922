"""The HTML report, opened in a real browser: headless Chromium (Debian's `chromium`).

The page is made by `pm-order report --format html` from report_scenario's
orders, then rendered once to its DOM (`--dump-dom`) and once to a screenshot,
both in a temporary folder, never in the repository. Without Chromium these
tests skip, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Final

import pytest

from tests.integration.devtools import DrawnText, drawn_texts, missing_glyphs
from tests.integration.report_scenario import (
    DAYS,
    DAYS_WITH_ACCEPTED,
    DAYS_WITH_REFUSED,
    DAYS_WITH_UNFINISHED,
    record_orders,
)

WINDOW: Final = (1200, 1600)
# Times to decision of report_scenario per bin: <1 min, 1-10 min, 10-30 min, ...
BIN_COUNTS: Final = [1, 1, 2, 0, 1, 1, 0, 1, 0, 0]


def chromium() -> str:
    """Chromium's path; a skip (a failure in CI) when it is not installed."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    reason = (
        "headless Chromium is needed to render the HTML report: "
        "apt-get install -y chromium"
    )
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def run_chromium(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = folder / f"profile-{len(list(folder.glob('profile-*')))}"
    return subprocess.run(
        [
            chromium(), "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", *args,
        ],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


@dataclass
class Element:
    tag: str
    classes: set[str]
    attrs: dict[str, str]
    text: str = ""
    children: list[Element] = field(default_factory=list)


class Dom(HTMLParser):
    """The rendered page as a tree of elements, to query by tag and class."""

    VOID: Final = frozenset({"meta", "link", "br", "img", "input", "hr"})

    def __init__(self, page: str) -> None:
        super().__init__()
        self.root = Element("#root", set(), {})
        self._open = [self.root]
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        element = Element(tag, set(values.get("class", "").split()), values)
        self._open[-1].children.append(element)
        if tag not in self.VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self._open.pop()

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self._open) - 1, 0, -1):
            if self._open[depth].tag == tag:
                del self._open[depth:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._open[1:]:
            element.text += data

    def elements(self, within: Element | None = None) -> Iterator[Element]:
        """Every element under `within` (the page), in document order."""
        for child in (within or self.root).children:
            yield child
            yield from self.elements(child)

    def find(
        self, tag: str, css: str = "", within: Element | None = None
    ) -> list[Element]:
        """Every `tag` element, with class `css` if given, under `within`."""
        return [
            e
            for e in self.elements(within)
            if e.tag == tag and (not css or css in e.classes)
        ]

    def by_id(self, ident: str) -> Element:
        (element,) = [e for e in self.elements() if e.attrs.get("id") == ident]
        return element


@pytest.fixture(scope="module")
def report_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store holding report_scenario's orders."""
    chromium()  # before any work: skip (or fail in CI) at once
    folder = tmp_path_factory.mktemp("report-html")
    url = f"sqlite:///{folder}/report.sqlite3"
    record_orders(url)
    return url


def make_page(url: str, folder: Path, language: str | None = None) -> Path:
    """The HTML report made by the command, in `language` (the default if None)."""
    page = folder / f"report-{language or 'default'}.html"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PM_ORDER_")}
    if language is not None:
        clean["PM_ORDER_LANGUAGE"] = language
    result = subprocess.run(
        [sys.executable, "-m", "cli", "--database-url", url, "report",
         "--format", "html", "--output", str(page)],
        cwd=folder, env=clean, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return page


@pytest.fixture(scope="module")
def report_page(report_database: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML report of report_scenario, in the default language."""
    return make_page(report_database, tmp_path_factory.mktemp("report-page"))


@pytest.fixture(scope="module")
def chinese_page(
    report_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The same report with PM_ORDER_LANGUAGE=zh_CN."""
    return make_page(report_database, tmp_path_factory.mktemp("zh-page"), "zh_CN")


def rendered(page: Path) -> Dom:
    result = run_chromium(page.parent, "--dump-dom", page.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    assert "<svg" in result.stdout, result.stderr[-2000:]
    return Dom(result.stdout)


@pytest.fixture(scope="module")
def dom(report_page: Path) -> Dom:
    """The page as Chromium rendered it."""
    return rendered(report_page)


@pytest.fixture(scope="module")
def chinese_dom(chinese_page: Path) -> Dom:
    return rendered(chinese_page)


def test_the_orders_chart_has_a_stacked_bar_for_every_day(dom: Dom) -> None:
    # when
    chart = dom.by_id("orders-per-day")
    # then
    days = dom.find("g", "day", within=chart)
    assert [g.attrs["data-day"] for g in days] == list(DAYS)
    assert len(dom.find("rect", "accepted", within=chart)) == DAYS_WITH_ACCEPTED
    assert len(dom.find("rect", "refused", within=chart)) == DAYS_WITH_REFUSED
    assert len(dom.find("rect", "unfinished", within=chart)) == DAYS_WITH_UNFINISHED


def test_a_day_without_orders_has_an_empty_bar(dom: Dom) -> None:
    # when
    (quiet,) = [g for g in dom.find("g", "day") if g.attrs["data-day"] == "2026-11-26"]
    # then
    assert dom.find("rect", within=quiet) == []


def test_the_decision_histogram_has_a_bar_per_bin_with_its_count(dom: Dom) -> None:
    # when
    chart = dom.by_id("decision-histogram")
    # then
    bars = dom.find("rect", "bin", within=chart)
    assert [int(bar.attrs["data-count"]) for bar in bars] == BIN_COUNTS
    assert [float(bar.attrs["height"]) > 0 for bar in bars] == [
        count > 0 for count in BIN_COUNTS
    ]
    labels = [t.text for t in dom.find("text", "count", within=chart)]
    assert labels == [str(count) for count in BIN_COUNTS if count]


def test_the_charts_and_tables_have_their_titles(dom: Dom) -> None:
    # then
    headings = [h.text for h in dom.find("h2")]
    assert headings[:4] == [
        "Orders per day by outcome",
        "Time to decision",
        "Per project",
        "Per project and day",
    ]
    assert [t.text for t in dom.find("title") if t.attrs.get("id")] == [
        "Orders per day by outcome",
        "Time to decision",
    ]


def test_the_page_renders_to_a_screenshot_outside_the_repository(
    report_page: Path,
) -> None:
    # given
    screenshot = report_page.parent / "report.png"
    # when
    result = run_chromium(
        report_page.parent,
        f"--screenshot={screenshot}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        report_page.as_uri(),
    )
    # then
    assert result.returncode == 0, result.stderr[-2000:]
    header = screenshot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == WINDOW


# -- in Chinese (PM_ORDER_LANGUAGE=zh_CN) ---------------------------------------------


def test_the_default_page_is_english(dom: Dom) -> None:
    (html,) = dom.find("html")
    assert html.attrs["lang"] == "en"
    assert [h.text for h in dom.find("h1")] == ["Transfer orders report"]


def test_the_chinese_page_says_its_language_and_has_chinese_headings(
    chinese_dom: Dom,
) -> None:
    # then
    (html,) = chinese_dom.find("html")
    assert html.attrs["lang"] == "zh-CN"
    assert [h.text for h in chinese_dom.find("h1")] == ["服务器转移订单报告"]
    assert [h.text for h in chinese_dom.find("h2")] == [
        "每日订单及其结果",
        "决定耗时",
        "按项目",
        "按项目和日期",
        "数字的含义",
    ]
    assert [t.text for t in chinese_dom.find("title") if t.attrs.get("id")] == [
        "每日订单及其结果",
        "决定耗时",
    ]
    assert [li.text for li in chinese_dom.find("li")] == ["已接受", "已拒绝", "未完成"]
    labels = [c.text for c in chinese_dom.find("div", "label")]
    assert labels[:2] == ["申请的订单", "已接受"]
    terms = [t.text for t in chinese_dom.find("dt")]
    assert terms[0] == "已申请、已接受、已拒绝、未完成"


def test_the_chinese_charts_label_days_and_bins_in_chinese(chinese_dom: Dom) -> None:
    # when
    days = chinese_dom.by_id("orders-per-day")
    bins = chinese_dom.by_id("decision-histogram")
    # then the same bars as in English, labelled in Chinese
    day_labels = [
        chinese_dom.find("text", within=g)[-1].text
        for g in chinese_dom.find("g", "day", within=days)
    ]
    assert day_labels == ["11月23日", "11月24日", "11月25日", "11月26日", "11月27日"]
    bin_labels = [
        chinese_dom.find("text", within=g)[-1].text
        for g in chinese_dom.find("g", "bin", within=bins)
    ]
    assert bin_labels[0] == "< 1 分钟"
    assert bin_labels[-1] == "≥ 7 天"
    bars = chinese_dom.find("rect", "bin", within=bins)
    assert [int(bar.attrs["data-count"]) for bar in bars] == BIN_COUNTS


def cjk(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in text)


@pytest.fixture(scope="module")
def chinese_drawn(chinese_page: Path) -> list[DrawnText]:
    """Every text of the Chinese page with the fonts Chromium drew it with."""
    import asyncio

    profile = chinese_page.parent / "profile-devtools"
    return asyncio.run(drawn_texts(chromium(), chinese_page.as_uri(), profile))


def test_every_character_of_the_chinese_page_is_drawn_with_a_font_that_has_it(
    chinese_drawn: list[DrawnText],
) -> None:
    # then no text fell back to blank boxes (fonts-noto-cjk installed)
    chinese = [d for d in chinese_drawn if cjk(d.text)]
    assert len(chinese) > 50
    assert [
        (d.text, missing_glyphs(d)) for d in chinese_drawn if missing_glyphs(d)
    ] == []
    # and the Chinese texts were drawn with a CJK font
    assert {f for d in chinese for f in d.families if "CJK" in f} != set()
    assert [d.text for d in chinese if not any("CJK" in f for f in d.families)] == []


def test_the_glyph_check_sees_a_character_no_installed_font_has(
    tmp_path: Path,
) -> None:
    # given a page with a private-use character (no font draws it) beside Chinese
    import asyncio

    page = tmp_path / "boxes.html"
    page.write_text(
        '<!DOCTYPE html><html lang="zh-CN"><meta charset="utf-8">'
        "<body><p>订单 \U0010fffd</p></body></html>",
        encoding="utf-8",
    )
    # when
    drawn = asyncio.run(drawn_texts(chromium(), page.as_uri(), tmp_path / "profile"))
    # then
    assert [missing_glyphs(d) for d in drawn if d.tag == "p"] == ["\U0010fffd"]
