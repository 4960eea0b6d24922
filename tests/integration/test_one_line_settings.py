"""Settings that reach headers, URLs and logs are one line of printable text: a
control character stops `pm-order serve` at start (exit 2, one line naming the
setting, never its value), rather than breaking every answer that carries it."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest

from tests.integration.processes import run_pm_order

KEYSTONE: Final = {
    "PM_ORDER_KEYSTONE_URL": "http://127.0.0.1:1/v3",
    "PM_ORDER_KEYSTONE_USER": "pm-order",
    "PM_ORDER_KEYSTONE_PASSWORD": "secret-password",
    "PM_ORDER_KEYSTONE_PROJECT": "service",
}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PM_ORDER_KEYSTONE_PUBLIC_URL", "https://keystone.example.com\r\nX-A: b/v3"),
        ("PM_ORDER_KEYSTONE_PUBLIC_URL", "https://keystone.example.com/\x1bv3"),
        ("PM_ORDER_KEYSTONE_URL", "http://127.0.0.1:1/\x7fv3"),
        ("PM_ORDER_MAIL_FROM", "pm-order@example.com\x0bBcc: x@evil.com"),
        ("PM_ORDER_KEYSTONE_URL", "http://127.0.0.1:1/v3\r\nX-Injected: 1"),
    ],
)
def test_a_setting_with_a_control_character_stops_serve_naming_it(
    tmp_path: Path, variable: str, value: str
) -> None:
    # when
    result = run_pm_order(
        "serve", "--port", "1", cwd=tmp_path, env={**KEYSTONE, variable: value}
    )
    # then
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"pm-order: {variable} holds a control character")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "secret-password" not in result.stderr
