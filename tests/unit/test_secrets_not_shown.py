"""Passwords in settings are never shown: not in messages, not in repr."""

from __future__ import annotations

import pytest

from mail.settings import SmtpSettings, without_password
from service.config import Config, ConfigError


def test_smtp_settings_never_show_their_password() -> None:
    settings = SmtpSettings.from_url("smtps://mailer:s3cret-pw@mail.example.com")
    assert settings.password == "s3cret-pw"
    assert "s3cret-pw" not in repr(settings)
    assert "s3cret-pw" not in repr(Config(smtp=settings))


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PM_ORDER_SMTP_URL", "smtq://mailer:s3cret-pw@mail.example.com"),
        ("PM_ORDER_SMTP_URL", "smtp://mailer:s3cret-pw@"),
        ("PM_ORDER_DATABASE_URL", "postgresq://pm:s3cret-pw@db:5432/pm"),
    ],
)
def test_a_bad_url_is_refused_without_showing_its_password(
    variable: str, value: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        Config.from_env({variable: value})
    assert "s3cret-pw" not in str(refused.value)
    assert "***" in str(refused.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("smtp://u:p@h:25", "smtp://u:***@h:25"),
        ("smtp://u:p@ss@h", "smtp://u:***@h"),
        ("smtp://u@h", "smtp://u@h"),
        ("smtp://h", "smtp://h"),
        ("not a url", "not a url"),
    ],
)
def test_without_password_masks_only_the_password(url: str, shown: str) -> None:
    assert without_password(url) == shown
