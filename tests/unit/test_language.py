"""PM_ORDER_LANGUAGE: which language, and dates, numbers and durations in it."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from language import ENGLISH, Language, ljust, rjust, width
from service.config import Config, ConfigError

CHINESE = Language.named("zh_CN")
SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_the_default_language_is_english() -> None:
    assert Config.from_env({}).language == ENGLISH
    assert Config().language.code == "en"


def test_pm_order_language_chooses_chinese() -> None:
    config = Config.from_env({"PM_ORDER_LANGUAGE": "zh_CN"})
    assert config.language.code == "zh_CN"
    assert config.language.tag == "zh-CN"


@pytest.mark.parametrize("code", ["fr", "zh", "zh-CN", "EN", "english", "../zh_CN"])
def test_an_unknown_language_is_a_configuration_error_naming_the_known_ones(
    code: str,
) -> None:
    with pytest.raises(ConfigError) as raised:
        Config.from_env({"PM_ORDER_LANGUAGE": code})
    assert str(raised.value) == (
        f"PM_ORDER_LANGUAGE={code!r} is not a language of pm-order: en, zh_CN"
    )


def test_english_messages_are_the_source_text_unchanged() -> None:
    assert ENGLISH.gettext("Transfer orders report") == "Transfer orders report"
    assert ENGLISH.ngettext("{count} server", "{count} servers", 1) == "1 server"
    assert ENGLISH.ngettext("{count} server", "{count} servers", 2) == "2 servers"


def test_chinese_messages_come_from_the_catalog() -> None:
    assert CHINESE.gettext("Transfer orders report") == "服务器转移订单报告"
    assert CHINESE.ngettext("{count} server", "{count} servers", 1) == "1 台服务器"
    assert CHINESE.ngettext("{count} server", "{count} servers", 7) == "7 台服务器"


@pytest.mark.parametrize(
    ("seconds", "english", "chinese"),
    [
        (None, "-", "-"),
        (45, "45s", "45秒"),
        (750, "12m 30s", "12分30秒"),
        (7500, "2h 05m", "2小时05分"),
        (3 * 86400 + 4 * 3600, "3d 04h", "3天04小时"),
    ],
)
def test_durations_read_as_each_language_writes_them(
    seconds: float | None, english: str, chinese: str
) -> None:
    assert ENGLISH.duration(seconds) == english
    assert CHINESE.duration(seconds) == chinese


def test_dates_and_times_read_as_each_language_writes_them() -> None:
    when = datetime(2026, 12, 4, 14, 47, 48, tzinfo=SHANGHAI)
    assert ENGLISH.moment(when) == "2026-12-04 14:47:48"
    assert CHINESE.moment(when) == "2026年12月4日 14:47:48"
    assert ENGLISH.day(date(2026, 12, 4)) == "4 Dec"
    assert CHINESE.day(date(2026, 12, 4)) == "12月4日"
    utc = datetime(2026, 12, 4, 6, 47, tzinfo=ZoneInfo("UTC"))
    assert ENGLISH.minute(utc) == "2026-12-04 06:47 UTC"


def test_large_numbers_are_grouped() -> None:
    assert ENGLISH.number(1234567) == "1,234,567"
    assert CHINESE.number(1234567) == "1,234,567"
    assert ENGLISH.number(42) == "42"


def test_chinese_characters_take_two_columns_when_aligned() -> None:
    assert width("项目") == 4
    assert width("proj-a") == 6
    assert ljust("项目", 6) + "|" == "项目  |"
    assert rjust("迁入", 6) == "  迁入"
