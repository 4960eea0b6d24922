"""What the benchmarks share: a throw-away schema, server processes, load, reports.

Every benchmark measures its baseline in the same run and reports a ratio: the
machine may be busy with other work, and a ratio survives that better than a
figure alone.
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
PYTHON: Final = sys.executable
POSTGRES_URL: Final = os.environ.get(
    "PM_ORDER_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
SP_AGENT: Final = "scloudm"


# -- the database ---------------------------------------------------------------


class PostgresUnavailable(Exception):
    """No PostgreSQL answers at POSTGRES_URL: the benchmark cannot run."""


def check_postgres() -> None:
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            pass
    except psycopg.Error as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise PostgresUnavailable(
            f"no PostgreSQL at {POSTGRES_URL}: {reason}"
        ) from None


def views_schema(schema: str) -> str:
    """The schema of this release's read models beside the store's `schema`."""
    from projections.generations import generation_of, generation_schema
    from service.store import read_models

    return generation_schema(schema, generation_of(read_models()))


def search_path(schema: str) -> str:
    """Where unqualified names are found, as pm-order's own connections find
    them: this release's read models first, then the store's schema."""
    return f"{views_schema(schema)},{schema}"


def connect(schema: str, **kwargs: Any) -> Any:
    """A psycopg connection whose unqualified names are pm-order's tables of
    `schema` (its read models' and its event store's)."""
    import psycopg

    return psycopg.connect(
        POSTGRES_URL,
        options=f"-c search_path={search_path(schema)}",
        connect_timeout=5,
        **kwargs,
    )


@dataclass(frozen=True)
class Schema:
    name: str

    @property
    def url(self) -> str:
        """The pm-order database URL of this schema (created on first use)."""
        return f"{POSTGRES_URL}?schema={self.name}"


@contextmanager
def fresh_schema(*, keep: str = "") -> Iterator[Schema]:
    """A new schema bench_<random>, dropped afterwards, whatever happens.

    With `keep`, the schema is named so and is left in place when the block ends
    without an error (a later benchmark of the same run measures on it; its caller,
    bench/run.py, drops it); on an error it is dropped all the same.
    """
    check_postgres()
    schema = Schema(keep or f"bench_{secrets.token_hex(5)}")
    if keep:
        drop_schema(keep)  # a leftover of an interrupted run
    kept = False
    try:
        yield schema
        kept = bool(keep)
    finally:
        if not kept:
            drop_schema(schema.name)


@contextmanager
def kept_schema(name: str) -> Iterator[Schema]:
    """The schema a benchmark earlier in this run kept (see fresh_schema), used
    as it is and left for its owner to drop."""
    import psycopg

    check_postgres()
    with psycopg.connect(POSTGRES_URL, connect_timeout=5) as connection:
        found = connection.execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
            (name,),
        ).fetchone()
    if found is None:
        raise RuntimeError(f"no schema {name}: the benchmark that keeps it failed")
    yield Schema(name)


def drop_schema(name: str) -> None:
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5) as c:
            c.execute("SET lock_timeout = '20s'")
            # The store's schema, and those beside it (its read models').
            beside = c.execute(
                "SELECT nspname FROM pg_namespace"
                " WHERE nspname = %s OR starts_with(nspname, %s)",
                (name, f"{name}_"),
            ).fetchall()
            for (schema,) in beside:
                c.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                        sql.Identifier(schema)
                    )
                )
    except psycopg.Error as error:
        print(f"warning: could not drop schema {name}: {error}", file=sys.stderr)


# -- processes ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tokens_file(
    directory: Path, projects: Sequence[str]
) -> tuple[Path, dict[str, str]]:
    """A static tokens file with one member-and-approver token per project."""
    tokens = {project: f"tok-{project}" for project in projects}
    path = directory / "tokens.json"
    path.write_text(
        json.dumps(
            {
                "tokens": [
                    {
                        "token": token,
                        "user_name": f"user-{project}",
                        "project_id": project,
                        "roles": ["member", "approver"],
                    }
                    for project, token in tokens.items()
                ]
            }
        ),
        encoding="utf-8",
    )
    return path, tokens


class Process:
    """A child process of the benchmark (a server or a worker), logged to a file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        port: int | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.name = name
        self.port = port
        self.log_path = Path(
            tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1]
        )
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_until_answering(self, path: str, timeout: float = 60.0) -> None:
        """Until GET `path` answers (any status): the server is up."""
        deadline = time.monotonic() + timeout
        while True:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base_url + path, timeout=2):
                    return
            except urllib.error.HTTPError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.name} did not answer in {timeout:.0f}s:\n"
                        + self.log_tail()
                    ) from None
                time.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        self.log_path.unlink(missing_ok=True)


@contextmanager
def running(process: Process) -> Iterator[Process]:
    """`process`, stopped on leaving, whatever happens."""
    try:
        yield process
    finally:
        process.stop()


def pm_order_env(database_url: str, tokens: Path | None = None) -> dict[str, str]:
    """The settings of a benchmark's pm-order process on `database_url`."""
    # Benchmarks measure throughput: the per-token rate limit would cap it, and one
    # source project holds more unfinished orders than the default allows (the
    # limit is still checked: its count is part of each POST's cost).
    env = {
        "PM_ORDER_DATABASE_URL": database_url,
        "PM_ORDER_RATE_LIMIT": "off",
        "PM_ORDER_MAX_UNFINISHED_ORDERS": "1000000",
    }
    if tokens is not None:
        env["PM_ORDER_TOKENS_FILE"] = str(tokens)
    return env


def pm_order_process(
    command: str,
    database_url: str,
    *,
    tokens: Path | None = None,
    api_only: bool = False,
) -> Process:
    """`python -m cli serve|worker` on `database_url` (serve: on a free port)."""
    env = pm_order_env(database_url, tokens)
    argv = [PYTHON, "-m", "cli", command]
    port = None
    if command == "serve":
        port = free_port()
        argv += ["--host", "127.0.0.1", "--port", str(port)]
        if api_only:
            argv.append("--api-only")
    return Process(f"pm-order-{command}", argv, env=env, port=port)


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so schemas are dropped and children stopped.

    SIGINT is made Ctrl-C again too: a shell's background job (`make bench &`)
    starts with SIGINT ignored, which Python and every child then keep, so a
    child could not be interrupted (bench_growth stops a rebuild so)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    signal.signal(signal.SIGINT, signal.default_int_handler)


# -- figures ----------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile `p` (0..100) of `values`."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def load_average() -> str:
    """`uptime`'s three load averages, now."""
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def machine_line() -> str:
    return (
        f"machine: {os.cpu_count()} cores, load average {load_average()} (1/5/15 min)"
        " before the run (other work shares the machine: compare the ratios, not"
        " the raw figures)"
    )


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory (VmHWM) of a running process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


@dataclass
class Row:
    """One line of a report: a figure, and when judged, its baseline and verdict."""

    label: str
    value: str
    baseline: str = ""
    ratio: str = ""
    target: str = ""
    # PASS, FAIL, "CANNOT JUDGE: why" (the run cannot tell) or "" (a figure shown)
    verdict: str = ""
    load: str = ""


@dataclass
class Report:
    """A short report: what was measured, the figures, and each target's verdict."""

    title: str
    key: str = ""
    notes: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def figure(self, label: str, value: str, baseline: str = "") -> None:
        self.rows.append(Row(label, value, baseline, load=load_average()))

    def target(
        self,
        label: str,
        value: str,
        target: str,
        ok: bool,
        *,
        baseline: str = "",
        ratio: str = "",
    ) -> None:
        self.rows.append(
            Row(
                label,
                value,
                baseline,
                ratio,
                f"target {target}",
                "PASS" if ok else "FAIL",
                load_average(),
            )
        )

    def cannot_judge(self, label: str, value: str, target: str, why: str) -> None:
        """A target this run cannot judge (`why`): neither PASS nor FAIL."""
        self.rows.append(
            Row(
                label,
                value,
                target=f"target {target}",
                verdict=f"CANNOT JUDGE: {why}",
                load=load_average(),
            )
        )

    @property
    def failed(self) -> list[str]:
        return [row.label for row in self.rows if row.verdict == "FAIL"]

    def print(self) -> None:
        print(f"\n== {self.title}")
        for note in self.notes:
            print(note)
        for row in self.rows:
            print(f"  {row.label}: {row.value}")
            if row.baseline:
                print(f"      baseline (same run): {row.baseline}")
            if row.verdict:
                ratio = f"ratio {row.ratio}, " if row.ratio else ""
                print(f"      {ratio}{row.target}: {row.verdict}  (load {row.load})")
        failed = self.failed
        summary = "PASS" if not failed else "FAIL (" + "; ".join(failed) + ")"
        print(f"  result: {summary}")

    def save(self, path: str) -> None:
        """Add this report to the JSON lines file at `path` (for bench/run.py)."""
        with open(path, "a", encoding="utf-8") as f:
            f.write(
                json.dumps(
                    {
                        "title": self.title,
                        "key": self.key,
                        "notes": self.notes,
                        "rows": [row.__dict__ for row in self.rows],
                    }
                )
                + "\n"
            )


def main_of(run: Callable[[], Report]) -> None:
    """Run a benchmark: exit 0 when it ran (whatever the verdict), 1 on an error.

    With PM_ORDER_BENCH_RESULTS set, the report is also added to that file.
    """
    stop_on_sigterm()
    try:
        report = run()
    except PostgresUnavailable as error:
        print(f"SKIPPED: {error}")
        return
    report.print()
    results = os.environ.get("PM_ORDER_BENCH_RESULTS")
    if results:
        report.save(results)


# -- HTTP load ------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """What a closed-loop load run measured."""

    requests: int
    failures: int
    seconds: float
    p50_ms: float
    p99_ms: float
    tool: str

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


Request = tuple[str, dict[str, str]]  # (path with query, headers)


def http_load(
    base_url: str, requests: Sequence[Request], *, concurrency: int, seconds: float
) -> Load:
    """GET `requests` in turn from `concurrency` connections for `seconds`.

    wrk when installed (it costs the machine little); else an aiohttp client in
    a process of its own.
    """
    if shutil.which("wrk"):
        return _wrk_load(base_url, requests, concurrency, seconds)
    return _aiohttp_load(base_url, requests, concurrency, seconds)


_WRK_SCRIPT: Final = """
local requests = %(requests)s
local next_index = 0
init = function(args)
  next_index = math.random(#requests) - 1
end
request = function()
  next_index = next_index %% #requests + 1
  local r = requests[next_index]
  return wrk.format("GET", r[1], r[2])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.status + e.connect + e.read + e.write + e.timeout))
end
"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string of ASCII is a valid Lua string


def _wrk_load(
    base_url: str, requests: Sequence[Request], concurrency: int, seconds: float
) -> Load:
    entries = []
    for path, headers in requests:
        header_table = ", ".join(
            f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()
        )
        entries.append(f"{{{_lua_string(path)}, {{{header_table}}}}}")
    script = _WRK_SCRIPT % {"requests": "{\n" + ",\n".join(entries) + "\n}"}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        completed = subprocess.run(
            [
                "wrk",
                f"-t{min(concurrency, 2)}",
                f"-c{concurrency}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                f.name,
                base_url,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        Path(f.name).unlink()
    result = next(
        line for line in completed.stdout.splitlines() if line.startswith("RESULT ")
    )
    count, duration_us, p50_us, p99_us, failures = map(int, result.split()[1:])
    return Load(
        requests=count - failures,
        failures=failures,
        seconds=duration_us / 1e6,
        p50_ms=p50_us / 1000,
        p99_ms=p99_us / 1000,
        tool="wrk",
    )


def _aiohttp_load(
    base_url: str, requests: Sequence[Request], concurrency: int, seconds: float
) -> Load:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(
        target=_aiohttp_load_process,
        args=(base_url, list(requests), concurrency, seconds, queue),
    )
    process.start()
    try:
        result: Load = queue.get(timeout=seconds + 60)
    finally:
        process.join(10)
    return result


def _aiohttp_load_process(
    base_url: str,
    requests: list[Request],
    concurrency: int,
    seconds: float,
    queue: Any,
) -> None:
    queue.put(asyncio.run(_aiohttp_client(base_url, requests, concurrency, seconds)))


async def _aiohttp_client(
    base_url: str, requests: list[Request], concurrency: int, seconds: float
) -> Load:
    import aiohttp

    latencies: list[float] = []
    failures = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def client(session: aiohttp.ClientSession, offset: int) -> None:
        nonlocal failures
        index = offset
        while time.perf_counter() < deadline:
            path, headers = requests[index % len(requests)]
            index += 1
            began = time.perf_counter()
            async with session.get(base_url + path, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    failures += 1
                    continue
            latencies.append(time.perf_counter() - began)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        step = max(1, len(requests) // concurrency)
        await asyncio.gather(*(client(session, i * step) for i in range(concurrency)))
    elapsed = time.perf_counter() - start
    return Load(
        requests=len(latencies),
        failures=failures,
        seconds=elapsed,
        p50_ms=percentile(latencies, 50) * 1000,
        p99_ms=percentile(latencies, 99) * 1000,
        tool="aiohttp client (separate process)",
    )
