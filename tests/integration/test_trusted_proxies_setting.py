"""A trusted network must hold only proxies: a PM_ORDER_TRUSTED_PROXIES that
covers everything, or loopback and other addresses alike, stops `pm-order serve`
at start (exit 2, one line naming the network), since any client inside it could
name any address as its own (issue 26, finding 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.processes import run_pm_order


@pytest.mark.parametrize(
    ("networks", "problem"),
    [
        ("0.0.0.0/0", "holds loopback and other addresses"),
        ("::/0", "holds loopback and other addresses"),
        ("10.1.2.3, 0.0.0.0/1", "holds loopback and other addresses"),
        ("::/127", "holds loopback and other addresses"),
        ("128.0.0.0/2", "is wider than a /8"),
        ("2001::/16", "is wider than a /32"),
        ("::ffff:0:0/96", "is wider than a /104"),
    ],
)
def test_a_trusted_network_that_cannot_hold_only_proxies_stops_serve(
    tmp_path: Path, networks: str, problem: str
) -> None:
    # given
    (tmp_path / "tokens.json").write_text('{"tokens": []}')
    env = {
        "PM_ORDER_TOKENS_FILE": str(tmp_path / "tokens.json"),
        "PM_ORDER_TRUSTED_PROXIES": networks,
    }
    # when
    result = run_pm_order("serve", "--port", "1", cwd=tmp_path, env=env)
    # then
    assert result.returncode == 2, result.stderr
    assert "PM_ORDER_TRUSTED_PROXIES has" in result.stderr
    assert problem in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "networks", ["127.0.0.1", "10.0.0.0/8", "192.0.2.7, 2001:db8::/32", "::1"]
)
def test_proxies_addresses_and_networks_are_taken(
    tmp_path: Path, networks: str
) -> None:
    (tmp_path / "tokens.json").write_text('{"tokens": []}')
    env = {
        "PM_ORDER_TOKENS_FILE": str(tmp_path / "tokens.json"),
        "PM_ORDER_TRUSTED_PROXIES": networks,
    }
    database = f"sqlite:///{tmp_path / 'pm-order.sqlite3'}"
    result = run_pm_order(
        "--database-url", database, "db", "upgrade", cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr
