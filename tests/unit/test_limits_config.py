"""The limits' settings: safe defaults, each from its variable, bad ones refused."""

from __future__ import annotations

import pytest

from service.config import Config, ConfigError, Limits


def limits(**env: str) -> Limits:
    return Config.from_env(env).limits


def test_the_defaults_are_safe() -> None:
    assert limits() == Limits(
        max_unfinished_orders=1000,
        max_servers_per_order=200,
        max_mailto=20,
        mail_domains=frozenset(),
        # per token: above any ordinary client's bursts (issue 16, finding 8)
        rate_per_second=100.0,
        rate_burst=200,
        # per client address: tokens not known valid (issue 16, finding 1)
        auth_failures_per_second=1.0,
        auth_failure_burst=20,
    )
    assert Config().limits == limits()


def test_each_limit_is_read_from_its_variable() -> None:
    assert limits(
        PM_ORDER_MAX_UNFINISHED_ORDERS="50",
        PM_ORDER_MAX_SERVERS_PER_ORDER="10",
        PM_ORDER_MAX_MAILTO="0",
        PM_ORDER_MAIL_DOMAINS=" Example.COM, ops.example.org ,",
        PM_ORDER_RATE_LIMIT="600/m",
        PM_ORDER_RATE_BURST="5",
        PM_ORDER_AUTH_FAILURE_LIMIT="120/m",
        PM_ORDER_AUTH_FAILURE_BURST="7",
    ) == Limits(
        max_unfinished_orders=50,
        max_servers_per_order=10,
        max_mailto=0,
        mail_domains=frozenset({"example.com", "ops.example.org"}),
        rate_per_second=10.0,
        rate_burst=5,
        auth_failures_per_second=2.0,
        auth_failure_burst=7,
    )


@pytest.mark.parametrize(
    ("text", "per_second"),
    [("20/s", 20.0), ("20", 20.0), ("3600/h", 1.0), ("0.5/s", 0.5), ("off", None)],
)
def test_the_rate_is_per_second_minute_or_hour_or_off(
    text: str, per_second: float | None
) -> None:
    assert limits(PM_ORDER_RATE_LIMIT=text).rate_per_second == per_second


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PM_ORDER_MAX_UNFINISHED_ORDERS", "0"),
        ("PM_ORDER_MAX_UNFINISHED_ORDERS", "many"),
        # The contract's bounds may be lowered, never raised.
        ("PM_ORDER_MAX_SERVERS_PER_ORDER", "201"),
        ("PM_ORDER_MAX_SERVERS_PER_ORDER", "0"),
        ("PM_ORDER_MAX_MAILTO", "21"),
        ("PM_ORDER_MAX_MAILTO", "-1"),
        ("PM_ORDER_MAIL_DOMAINS", "example.com,not a domain"),
        ("PM_ORDER_MAIL_DOMAINS", "localhost"),
        ("PM_ORDER_RATE_LIMIT", "0/s"),
        ("PM_ORDER_RATE_LIMIT", "20/day"),
        ("PM_ORDER_RATE_BURST", "0"),
    ],
)
def test_a_bad_limit_is_refused_naming_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        limits(**{variable: value})


def test_the_client_timeout_and_the_trusted_proxies_are_read_from_their_variables() -> (
    None
):
    assert Config().client_timeout == 10.0
    assert Config().trusted_proxies == frozenset()
    config = Config.from_env(
        {
            "PM_ORDER_CLIENT_TIMEOUT": "30s",
            "PM_ORDER_TRUSTED_PROXIES": " 10.0.0.2, ::1 ,10.1.0.0/16",
        }
    )
    assert config.client_timeout == 30.0
    assert config.trusted_proxies == frozenset(
        {"10.0.0.2/32", "::1/128", "10.1.0.0/16"}
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PM_ORDER_CLIENT_TIMEOUT", "0s"),
        ("PM_ORDER_CLIENT_TIMEOUT", "soon"),
        ("PM_ORDER_TRUSTED_PROXIES", "10.0.0.2,lb.example.com"),
        ("PM_ORDER_TRUSTED_PROXIES", "10.0.0.1/8"),
        ("PM_ORDER_AUTH_FAILURE_LIMIT", "0/s"),
        ("PM_ORDER_AUTH_FAILURE_BURST", "0"),
    ],
)
def test_a_bad_client_setting_is_refused_naming_its_variable(
    variable: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=variable):
        Config.from_env({variable: value})
