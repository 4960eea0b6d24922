"""Real `pm-order serve` processes: graceful shutdown with requests in flight,
JSON log lines without secrets, several processes on one port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import INVENTORY, TOKENS
from tests.integration.processes import (
    ApiServer,
    PmOrderProcess,
    free_port,
    run_pm_order,
    wait_until,
)

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


def test_log_lines_are_json_and_never_hold_a_token_or_smtp_password(
    tmp_path: Path,
) -> None:
    # given: a server whose mail goes to an SMTP server (with a password) that is
    # not there, so that sending fails and is logged
    smtp_port = free_port()
    smtp_url = f"smtp://mailer:{SECRET_PASSWORD}@127.0.0.1:{smtp_port}"
    env = _env(
        tmp_path,
        f"sqlite:///{tmp_path}/store.sqlite3",
        PM_ORDER_SMTP_URL=smtp_url,
    )
    server = ApiServer(env, tmp_path / "serve.log", api_only=False)
    # when: requests with good and bad tokens, one order whose mail fails
    request = urllib.request.Request(
        f"{server.base_url}/mana_api/pm_order/proj-a",
        data=json.dumps(
            {"snids": "SN-A-001", "dest_project": "proj-b", "mailto": "x@example.com"}
        ).encode(),
        headers={
            "X-Auth-Token": "tok-alice",
            "Sp-Agent": "scloudm",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    bad = urllib.request.Request(
        f"{server.base_url}/mana_api/pm_order/proj-a",
        headers={"X-Auth-Token": "tok-made-up-secret", "Sp-Agent": "scloudm"},
    )
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(bad, timeout=30)
    server.wait_for_log("sending")  # the mailer tried and failed
    server.stop()
    # then: every line is a JSON object; none holds a token or the password
    lines = server.log().splitlines()
    records = [json.loads(line) for line in lines]
    assert all(isinstance(r, dict) and "message" in r for r in records)
    assert any(r.get("logger") == "pm_order.access" for r in records)
    for secret in (SECRET_PASSWORD, "tok-alice", "tok-made-up-secret"):
        assert not [line for line in lines if secret in line], secret


def test_several_workers_need_postgresql(tmp_path: Path) -> None:
    env = _env(tmp_path, f"sqlite:///{tmp_path}/store.sqlite3")
    result = run_pm_order("serve", "--workers", "2", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "--workers 2 needs PostgreSQL" in result.stderr


@pytest.mark.postgres
def test_several_serving_processes_share_one_port_and_stop_together(
    tmp_path: Path, postgres_schema_url: str
) -> None:
    env = _env(tmp_path, postgres_schema_url)
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli",
                "serve",
                "--port",
                str(port),
                "--workers",
                "2",
            ],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        pids = _serving_pids(port, 2)
        assert process.pid not in pids
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log_path.read_text()
        for pid in pids:
            wait_until(lambda p=pid: not _alive(p), f"process {pid} to end", 10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def _serving_pids(port: int, count: int) -> set[int]:
    """The pids of the `count` processes serving `port`, once each has answered
    (each new connection may land on any of them: SO_REUSEPORT)."""
    pids: set[int] = set()

    def all_answer() -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/healthz", timeout=2
            ) as response:
                pids.add(json.loads(response.read())["pid"])
        except OSError:
            return False
        return len(pids) == count

    wait_until(all_answer, f"{count} serving processes on one port", 60)
    return pids


def _alive(pid: int) -> bool:
    """Running (a zombie, whose parent is gone, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.mark.postgres
def test_a_worker_stops_on_sigterm_releasing_its_leadership_and_exits_0(
    tmp_path: Path, postgres_schema_url: str
) -> None:
    env = _env(tmp_path, postgres_schema_url)
    first = PmOrderProcess(["worker"], env, tmp_path / "first.log")
    first.wait_for_log("projecting order_lists")
    standby = PmOrderProcess(["worker"], env, tmp_path / "standby.log")
    standby.wait_for_log("worker started")
    try:
        stopped_at = time.monotonic()
        first.process.send_signal(signal.SIGTERM)
        assert first.process.wait(40) == 0, first.log()
        assert time.monotonic() - stopped_at < 40
        assert "worker stopped" in first.log()
        # the leadership went with it: the standby takes over
        standby.wait_for_log("projecting order_lists")
    finally:
        first.stop()
        standby.stop()


@pytest.mark.postgres
def test_serving_processes_end_when_serve_workers_is_killed_with_sigkill(
    tmp_path: Path, postgres_schema_url: str
) -> None:
    # issue 16, finding 2: the children went on serving the old configuration
    env = _env(tmp_path, postgres_schema_url)
    port = free_port()
    server = PmOrderProcess(
        ["serve", "--port", str(port), "--workers", "2"], env, tmp_path / "serve.log"
    )
    pids: set[int] = set()
    try:
        pids = _serving_pids(port, 2)
        # when
        server.kill()
        # then: both end, and nothing answers on the port any more
        for pid in pids:
            wait_until(lambda p=pid: not _alive(p), f"process {pid} to end", 40)
        assert _refuses(port)
    finally:
        server.stop()
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
