"""PM_ORDER_KEYSTONE_* and PM_ORDER_TOKEN_CACHE_SECONDS, read into KeystoneSettings."""

from __future__ import annotations

import pytest

from service.config import Config, ConfigError
from service.keystone_settings import KeystoneSettings

URL = "http://127.0.0.1:5000/v3"
SERVICE_USER = {
    "PM_ORDER_KEYSTONE_USER": "pm-order",
    "PM_ORDER_KEYSTONE_PASSWORD": "secret",
    "PM_ORDER_KEYSTONE_PROJECT": "service",
}
SERVICE_USER_FIELDS = {"user": "pm-order", "password": "secret", "project": "service"}


def keystone_from(env: dict[str, str]) -> KeystoneSettings:
    settings = Config.from_env({"PM_ORDER_KEYSTONE_URL": URL, **env}).keystone
    assert settings is not None
    return settings


def test_the_url_and_a_service_user_are_enough() -> None:
    settings = keystone_from(SERVICE_USER)
    assert (settings.url, settings.public_url) == (URL, URL)
    assert (settings.user_domain, settings.project_domain) == ("Default", "Default")
    assert settings.cache_seconds == 300
    Config(keystone=settings).check_identity()


def test_every_setting_is_read() -> None:
    settings = keystone_from(
        {
            **SERVICE_USER,
            "PM_ORDER_KEYSTONE_PUBLIC_URL": "https://keystone.example.com/v3",
            "PM_ORDER_KEYSTONE_USER_DOMAIN": "ops",
            "PM_ORDER_KEYSTONE_PROJECT_DOMAIN": "services",
            "PM_ORDER_TOKEN_CACHE_SECONDS": "60",
        }
    )
    assert settings.public_url == "https://keystone.example.com/v3"
    assert (settings.user, settings.password, settings.project) == (
        "pm-order",
        "secret",
        "service",
    )
    assert (settings.user_domain, settings.project_domain) == ("ops", "services")
    assert settings.cache_seconds == 60


def test_an_application_credential_may_stand_for_the_service_user() -> None:
    settings = keystone_from(
        {
            "PM_ORDER_KEYSTONE_APP_CREDENTIAL_ID": "id",
            "PM_ORDER_KEYSTONE_APP_CREDENTIAL_SECRET": "s3cret",
        }
    )
    assert (settings.app_credential_id, settings.app_credential_secret) == (
        "id",
        "s3cret",
    )
    assert settings.user is None


def test_no_keystone_url_means_no_keystone() -> None:
    assert Config.from_env(SERVICE_USER).keystone is None


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, ["PM_ORDER_KEYSTONE_USER", "PM_ORDER_KEYSTONE_APP_CREDENTIAL_ID"]),
        (
            {"PM_ORDER_KEYSTONE_USER": "pm-order"},
            ["PM_ORDER_KEYSTONE_PASSWORD", "PM_ORDER_KEYSTONE_PROJECT"],
        ),
        (
            {"PM_ORDER_KEYSTONE_APP_CREDENTIAL_ID": "id"},
            ["PM_ORDER_KEYSTONE_APP_CREDENTIAL_SECRET"],
        ),
        (
            {**SERVICE_USER, "PM_ORDER_KEYSTONE_APP_CREDENTIAL_ID": "id"},
            ["not both"],
        ),
        (
            {**SERVICE_USER, "PM_ORDER_TOKEN_CACHE_SECONDS": "5 weeks"},
            ["PM_ORDER_TOKEN_CACHE_SECONDS", "a duration"],
        ),
        (
            {**SERVICE_USER, "PM_ORDER_KEYSTONE_PUBLIC_URL": "keystone.example.com"},
            ["PM_ORDER_KEYSTONE_PUBLIC_URL"],
        ),
    ],
    ids=[
        "no-credentials",
        "user-without-password",
        "app-credential-without-secret",
        "both-kinds",
        "cache-time-not-a-duration",
        "public-url-not-a-url",
    ],
)
def test_incomplete_keystone_settings_say_what_to_set(
    env: dict[str, str], names: list[str]
) -> None:
    with pytest.raises(ConfigError) as raised:
        Config.from_env({"PM_ORDER_KEYSTONE_URL": URL, **env})
    assert all(name in str(raised.value) for name in names), raised.value


def test_the_keystone_url_must_be_http() -> None:
    with pytest.raises(ConfigError, match="PM_ORDER_KEYSTONE_URL"):
        Config.from_env({"PM_ORDER_KEYSTONE_URL": "keystone:5000", **SERVICE_USER})


@pytest.mark.parametrize(
    "url",
    [
        "http://keystone:5000",
        "http://keystone:5000/",
        "http://keystone:5000/v3",
        "http://keystone:5000/v3/",
    ],
)
def test_the_tokens_endpoint_is_under_v3_whether_the_url_names_it_or_not(
    url: str,
) -> None:
    settings = KeystoneSettings(url=url, **SERVICE_USER_FIELDS)
    assert settings.tokens_url == "http://keystone:5000/v3/auth/tokens"


def test_secrets_are_not_shown_in_the_settings_repr() -> None:
    settings = keystone_from(
        {
            "PM_ORDER_KEYSTONE_APP_CREDENTIAL_ID": "id",
            "PM_ORDER_KEYSTONE_APP_CREDENTIAL_SECRET": "s3cret",
        }
    )
    assert "s3cret" not in repr(settings)
    assert "secret" not in repr(keystone_from(SERVICE_USER))


def test_only_one_way_of_checking_tokens_may_be_set() -> None:
    with pytest.raises(ConfigError, match="only one"):
        Config.from_env(
            {
                "PM_ORDER_KEYSTONE_URL": URL,
                "PM_ORDER_TOKENS_FILE": "tokens.json",
                **SERVICE_USER,
            }
        ).check_identity()
