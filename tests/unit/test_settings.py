"""Every PM_ORDER_* setting, from its row in service/settings.py: its default is a
value it takes, blank is its default, and a bad value is one line naming it.

The cases are made from the table, so a row added there is tested here unasked.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Final

import pytest

from service import settings
from service.config import Config, ConfigError
from service.settings import (
    SETTINGS,
    Choice,
    Duration,
    Items,
    Rate,
    Setting,
    Text,
    Values,
    Whole,
)

ROOT: Final = Path(__file__).resolve().parents[2]

# Values no setting of a numeric or closed kind takes: empty is not here (it is
# the default), the others are each a way in which a value goes wrong.
PROBES: Final = {
    "negative": "-1",
    "huge": "9" * 40,
    "superscript-two": "²",  # str.isdigit() says yes, int() says no
    "arabic-indic-digits": "١٢",  # int() and float() both take these
    "fullwidth-one": "\uff11",
    "wrong-unit": "10 parsecs",
    "unit-only": "s",
    "exponent": "1e9",
    "not-a-number": "nan",
    "infinity": "inf",
    "control-character": "1\x00",
    "line-break": "1\n2",
    "words": "soon",
}

# Settings that pass any text on as written (names, passwords, a path).
FREE: Final = {
    s.name
    for s in SETTINGS
    if isinstance(s.kind, Text | Items) and s.kind.read is settings.any_text
}


def ids(setting: Setting[Any]) -> str:
    return setting.name


def refusal(setting: Setting[Any], text: str) -> str:
    with pytest.raises(ConfigError) as raised:
        setting.read({setting.name: text})
    return str(raised.value)


@pytest.mark.parametrize("setting", SETTINGS, ids=ids)
def test_every_default_is_a_value_the_setting_takes(setting: Setting[Any]) -> None:
    if setting.default is not None:
        assert setting.read({}) == setting.kind.parse(setting.name, setting.default)
    else:
        assert setting.read({}) is None


@pytest.mark.parametrize("blank", ["", "   ", "\t"], ids=["empty", "spaces", "tab"])
@pytest.mark.parametrize("setting", SETTINGS, ids=ids)
def test_an_empty_value_is_the_default(setting: Setting[Any], blank: str) -> None:
    assert setting.read({setting.name: blank}) == setting.read({})


@pytest.mark.parametrize("probe", PROBES.values(), ids=PROBES.keys())
@pytest.mark.parametrize("setting", SETTINGS, ids=ids)
def test_a_bad_value_is_one_line_naming_the_setting_and_what_it_takes(
    setting: Setting[Any], probe: str
) -> None:
    if setting.name in FREE:
        # any text is a user name or a password: taken as written, never a crash
        assert setting.read({setting.name: probe}) is not None
        return
    message = refusal(setting, probe)
    assert message.startswith(setting.name), message
    assert "\n" not in message
    assert "\x00" not in message
    assert len(message) < 300, message
    assert setting.kind.allowed() in message, message


@pytest.mark.parametrize(
    "setting", [s for s in SETTINGS if isinstance(s.kind, Whole)], ids=ids
)
def test_a_whole_number_is_taken_within_its_range_and_refused_outside_it(
    setting: Setting[int],
) -> None:
    kind = setting.kind
    assert isinstance(kind, Whole)
    for good in (kind.low, kind.high):
        assert setting.read({setting.name: str(good)}) == good
    for bad in (kind.low - 1, kind.high + 1):
        assert "a whole number from" in refusal(setting, str(bad))


@pytest.mark.parametrize(
    "setting", [s for s in SETTINGS if isinstance(s.kind, Duration)], ids=ids
)
def test_every_duration_takes_every_unit_and_refuses_what_is_out_of_range(
    setting: Setting[float],
) -> None:
    kind = setting.kind
    assert isinstance(kind, Duration)
    written = {"500ms": 0.5, "90s": 90, "15m": 900, "2h": 7200, "1d": 86400}
    for text, seconds in written.items():
        if seconds <= kind.high:
            assert setting.read({setting.name: text}) == seconds
    assert setting.read({setting.name: "1.5 S"}) == 1.5
    assert "a duration" in refusal(setting, f"{kind.high * 2}s")
    for wrong_unit in ("5w", "1h30m", "2 hours", "-5s", "²s"):
        assert "a duration" in refusal(setting, wrong_unit)
    if kind.zero:
        assert setting.read({setting.name: "0s"}) == 0
    else:
        assert "more than 0" in refusal(setting, "0s")


def test_a_bare_number_is_seconds_as_it_always_was(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Operators' values keep their meaning: PM_ORDER_WARN_AFTER=1 is one second...
    with caplog.at_level(logging.WARNING, logger="pm_order.settings"):
        assert Config.from_env({"PM_ORDER_WARN_AFTER": "7"}).warn_after.seconds == 7
    # ... said once, with the way to write it
    assert [r.getMessage() for r in caplog.records] == [
        "PM_ORDER_WARN_AFTER=7 has no unit: read as 7s (seconds); write the unit "
        "(7s, or 7m, 7h if that was meant)"
    ]
    caplog.clear()
    # where the name says seconds, a bare number is what it asks for
    with caplog.at_level(logging.WARNING, logger="pm_order.settings"):
        assert Config.from_env({"PM_ORDER_IDLE_POLL_SECONDS": "1"}).idle_poll_seconds
    assert caplog.records == []


@pytest.mark.parametrize(
    "setting", [s for s in SETTINGS if isinstance(s.kind, Rate)], ids=ids
)
def test_every_rate_is_per_second_minute_or_hour_or_off(
    setting: Setting[float | None],
) -> None:
    for text, per_second in {"20/s": 20, "20": 20, "600/m": 10, "3600/h": 1}.items():
        assert setting.read({setting.name: text}) == per_second
    assert setting.read({setting.name: "OFF"}) is None
    for bad in ("0/s", "20/day", "20/s/s"):
        assert "a rate" in refusal(setting, bad)


@pytest.mark.parametrize(
    "setting", [s for s in SETTINGS if isinstance(s.kind, Choice)], ids=ids
)
def test_a_choice_takes_its_words_in_any_case(setting: Setting[Any]) -> None:
    kind = setting.kind
    assert isinstance(kind, Choice)
    for word, value in kind.words.items():
        assert setting.read({setting.name: word.upper()}) == value


def test_a_password_in_a_refused_url_is_shown_as_stars() -> None:
    message = refusal(settings.SMTP_URL, "smtpx://user:s3cret@mail:25")
    assert "s3cret" not in message
    assert "***" in message
    message = refusal(settings.DATABASE_URL, "mysql://user:s3cret@db/pm")
    assert "s3cret" not in message
    assert "***" in message


def test_a_long_value_is_cut_in_the_message() -> None:
    message = refusal(settings.WARN_MAX, "7" * 5000)
    assert len(message) < 200
    assert message.endswith("from 0 to 1000000")


def test_the_first_bad_setting_stops_the_configuration() -> None:
    with pytest.raises(ConfigError, match=r"^PM_ORDER_WARN_MAX="):
        Config.from_env({"PM_ORDER_WARN_MAX": "²"})
    # a setting this command would not read is checked all the same
    with pytest.raises(ConfigError, match=r"^PM_ORDER_LOG_FORMAT="):
        Values({"PM_ORDER_LOG_FORMAT": "xml"})


def test_the_configuration_s_defaults_are_the_table_s() -> None:
    assert Config.from_env({}) == Config()


def test_an_old_name_is_read_with_a_warning_naming_the_new_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    renamed = Setting(
        "PM_ORDER_NEW", Whole(0, 9), "1", "A test.", "Test", old_names=("PM_ORDER_OLD",)
    )
    with caplog.at_level(logging.WARNING, logger="pm_order.settings"):
        assert renamed.read({"PM_ORDER_OLD": "5"}) == 5
        assert renamed.read({"PM_ORDER_OLD": "5", "PM_ORDER_NEW": "6"}) == 6
    assert [r.getMessage() for r in caplog.records] == [
        "PM_ORDER_OLD is deprecated: set PM_ORDER_NEW instead"
    ]
    # a bad value names the variable that holds it
    with pytest.raises(ConfigError, match=r"^PM_ORDER_OLD='x' must be"):
        renamed.read({"PM_ORDER_OLD": "x"})


# Read by pm-order's code, set by pm-order itself: not an operator's setting.
INTERNAL: Final = {"PM_ORDER_POSTGRES_CONNINFO"}
PACKAGES: Final = ("domain", "projections", "api", "service", "mail", "cli", "language")


def test_every_setting_the_code_names_is_in_the_table() -> None:
    named = {
        name
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        for name in re.findall(r"PM_ORDER_[A-Z0-9_]*[A-Z0-9]", path.read_text())
    }
    declared = {s.name for s in SETTINGS} | {o for s in SETTINGS for o in s.old_names}
    assert named - INTERNAL - declared == set()


def test_every_setting_the_contract_and_the_samples_name_is_in_the_table() -> None:
    texts = [ROOT / "examples" / "systemd" / "pm-order.env", ROOT / "Makefile"]
    named = {
        name
        for path in texts
        for name in re.findall(r"PM_ORDER_[A-Z0-9_]*[A-Z0-9]", path.read_text())
    }
    # the samples' own variables, which systemd substitutes in the unit files
    named -= {"PM_ORDER_LISTEN_HOST", "PM_ORDER_LISTEN_PORT"}
    assert named - {s.name for s in SETTINGS} == set()


def test_each_name_is_declared_once() -> None:
    names = [s.name for s in SETTINGS] + [o for s in SETTINGS for o in s.old_names]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"PM_ORDER_[A-Z0-9_]+", n) for n in names)
