"""Real `pm-order serve` processes: graceful shutdown with requests in flight,
JSON log lines without secrets, several processes on one port."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.conftest import INVENTORY, TOKENS
from tests.integration.processes import ApiServer, run_pm_order, wait_until

SECRET_PASSWORD = "s3cr3t-smtp-pw"


def _env(tmp_path: Path, database_url: str, **extra: str) -> dict[str, str]:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": TOKENS}))
    inventory = tmp_path / "inventory.csv"
    inventory.write_text(
        "snid,project_id\n" + "".join(f"{s},{p}\n" for s, p in INVENTORY)
    )
    env = {
        "PM_ORDER_DATABASE_URL": database_url,
        "PM_ORDER_TOKENS_FILE": str(tokens),
        **extra,
    }
    assert run_pm_order("machines", "import", str(inventory), cwd=tmp_path, env=env)
    return env


def _in_flight(base_url: str) -> float:
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith("pm_order_http_requests_in_flight "):
            return float(line.split()[1])
    raise AssertionError("no in-flight gauge in /metrics")


def _post(base_url: str, snid: str) -> int:
    request = urllib.request.Request(
        f"{base_url}/mana_api/pm_order/proj-a",
        data=json.dumps({"snids": snid, "dest_project": "proj-b"}).encode(),
        headers={
            "X-Auth-Token": "tok-alice",
            "Sp-Agent": "scloudm",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return int(response.status)


def test_sigterm_lets_requests_in_flight_finish_then_exits_0(tmp_path: Path) -> None:
    # given: an API-only server with no worker, so that each write's answer waits
    # (for the views, up to the read-your-writes bound): requests stay in flight
    env = _env(tmp_path, f"sqlite:///{tmp_path}/store.sqlite3")
    server = ApiServer(env, tmp_path / "serve.log", api_only=True)
    pool = ThreadPoolExecutor(3)
    answers = [pool.submit(_post, server.base_url, f"SN-A-00{n}") for n in (1, 2, 3)]
    # the three are being handled (and the scrape that counts them)
    wait_until(lambda: _in_flight(server.base_url) == 4, "requests in flight", 10)
    # when
    stopped_at = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    # then: no new connection is taken, the three get their 200, the exit is 0
    wait_until(lambda: _refuses(server.port), "the server to stop accepting", 10)
    assert [a.result(timeout=60) for a in answers] == [200, 200, 200]
    assert server.process.wait(30) == 0, server.log()
    assert time.monotonic() - stopped_at < 30
    assert "stopping: no new connections" in server.log()
    server.stop()
    pool.shutdown()


def _refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return True
    return False
