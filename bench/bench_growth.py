"""Growth: the create and list figures, catch-up, rebuild time and peak memory, by
store size.

One store grows through the sizes given (bench/generate.py: through the event
store and the views' projectors, never by writing view rows). At each size the
last `--backlog` orders are left unprojected; a fresh `pm-order worker` catches
them up (its catch-up time and rate over the same number of orders at every size,
and its peak RSS); a fresh `pm-order serve --api-only` answers the list benchmark
(16 clients, against a bare aiohttp handler of the same JSON) and the create
benchmark (32 clients POSTing orders, against bare INSERT + COMMIT) while the
worker projects; then `pm-order projections rebuild` rebuilds every view from the
whole log (its time and peak RSS; stopped past `--rebuild-seconds`, and the table
says how many views it had switched in by then) while the serve process and the
worker go on, answering orders POSTed at `--rebuild-post-rate` meanwhile (their
p99). The table says whether list latency stays flat and memory does not grow
with the store.

With `--keep-store NAME` the store is left in schema NAME at its largest size
(bench/run.py hands it to the list benchmark, then drops it).

    .venv/bin/python bench/bench_growth.py [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench_create_orders import DEST, SOURCE, bare_inserts, post_orders
from bench_list_orders import (
    alternate,
    bare_server,
    fetch,
    list_requests,
    sample_request,
)
from generate import TENANTS, Grown, grow
from harness import (
    PYTHON,
    ROOT,
    SP_AGENT,
    Report,
    Schema,
    fresh_schema,
    machine_line,
    main_of,
    peak_rss_mb,
    percentile,
    pm_order_process,
    running,
    tokens_file,
)

from domain.service import OrderService
from projections.projector import tracked_position
from service.store import Store, open_store

LIST_CLIENTS: Final = 16
CREATE_CLIENTS: Final = 32
# Creating at the largest size keeps at least this much of the smallest's rate.
CREATE_KEPT: Final = 0.8
# Issue 27's target 3: every view rebuilt from a million orders' log in 3 minutes.
REBUILD_AT: Final = 1_000_000
REBUILD_SECONDS: Final = 180.0
# Meanwhile the service answers orders POSTed at 200/s (--rebuild-post-rate)
# within this p99.
REBUILD_POST_P99_MS: Final = 20.0
# p99 at the largest size within this factor of the smallest's: "flat".
FLAT: Final = 2.0


@dataclass
class Step:
    size: int
    wanted: int
    events: int
    grown: Grown
    backlog_events: int
    catch_up_seconds: float
    worker_mb: float
    api_mb: float
    list_p99_ms: float
    list_rate: float
    bare_list_rate: float
    create_rate: float
    bare_insert_rate: float
    rebuild_seconds: float
    rebuild_mb: float
    rebuilt_views: int  # switched in before the time limit
    views: int
    rebuild_posts: int  # POSTed while the rebuild ran
    rebuild_post_p99_ms: float

    @property
    def catch_up_rate(self) -> float:
        return self.backlog_events / max(self.catch_up_seconds, 1e-9)

    @property
    def rebuild_text(self) -> str:
        if self.rebuilt_views == self.views:
            return f"{self.rebuild_seconds:.1f}"
        return (
            f"> {self.rebuild_seconds:.0f} (stopped; {self.rebuilt_views} of"
            f" {self.views} views done)"
        )


def wait_projected(store: Store, timeout: float) -> None:
    head = store.app.recorder.max_notification_id() or 0
    deadline = time.perf_counter() + timeout
    while tracked_position(store.views, "order_lists") < head:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the worker did not reach {head} in {timeout:.0f}s")
        time.sleep(0.05)


def rebuild(url: str, limit: float) -> tuple[float, float, int]:
    """(seconds, peak RSS in MiB, views switched in) of `pm-order projections
    rebuild`, interrupted (SIGINT: nothing half-switched, its scratch schema
    dropped) past `limit` seconds, killed a minute later if still running."""
    # Unbuffered: the views it switched in are counted from its output.
    env = {**os.environ, "PM_ORDER_DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    # Its progress goes to a file: a pipe nobody reads would fill and stall it.
    with tempfile.TemporaryFile() as log, tempfile.TemporaryFile() as out:
        process = subprocess.Popen(
            [PYTHON, "-m", "cli", "projections", "rebuild"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=log,
        )
        stopped = False
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > limit and not stopped:
                process.send_signal(signal.SIGINT)
                stopped = True
            if time.perf_counter() - start > limit + 60:
                process.kill()
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        out.seek(0)
        switched = out.read().decode().count("switched in")
        if process.returncode != 0 and not stopped:
            log.seek(0)
            raise RuntimeError(f"rebuild failed: {log.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, switched


def step(
    store: Store,
    schema: Schema,
    directory: Path,
    size: int,
    options: Options,
) -> Step:
    # The bulk through the generator's projectors; the backlog for the worker.
    backlog = min(options.backlog, size // 2)
    deadline = time.perf_counter() + options.generate_seconds
    grown = grow(store, size - backlog - 1, deadline=deadline)
    wanted = size
    size = min(size, grown.orders + backlog + 1)  # short when it ran out of time
    creates = options.creates
    # Servers for this step's POSTs, registered before the worker starts.
    snids = [f"GROW-{size}-{k:06d}" for k in range(creates)]
    # A source project of its own at each size, with no unfinished order yet: a
    # project's count of them is part of each POST, and would otherwise grow with
    # the steps, not with the store.
    source = f"{SOURCE}-{size}"
    service = OrderService(store.app)
    for i in range(0, creates, 1000):
        service.register_servers([(s, source) for s in snids[i : i + 1000]])
    # And for the steady POSTs while the rebuild runs (a project of their own).
    meanwhile_source = f"{SOURCE}-rebuild-{size}"
    meanwhile = [
        f"REBUILD-{size}-{k:06d}"
        for k in range(int(options.rebuild_post_rate * (options.rebuild_seconds + 30)))
    ]
    for i in range(0, len(meanwhile), 1000):
        service.register_servers(
            [(s, meanwhile_source) for s in meanwhile[i : i + 1000]]
        )
    projects = [f"proj-{k}" for k in range(TENANTS)] + [source, meanwhile_source]
    tokens, token_of = tokens_file(directory, projects)
    worker = pm_order_process("worker", schema.url)
    with running(worker):
        # One order first: once the worker shows it, it is up and following.
        grow(store, size - backlog, project=False)
        wait_projected(store, timeout=300)
        head = store.app.recorder.max_notification_id() or 0
        began = time.perf_counter()
        grow(store, size, project=False)  # the backlog, written at once
        wait_projected(store, timeout=3600)
        catch_up = time.perf_counter() - began
        backlog_events = (store.app.recorder.max_notification_id() or 0) - head
        store.analyze()
        serve = pm_order_process("serve", schema.url, tokens=tokens, api_only=True)
        with running(serve):
            serve.wait_until_answering("/mana_api/openapi.json")
            body_file = directory / "body.json"
            body_file.write_bytes(fetch(serve.base_url, sample_request(token_of)))
            with running(bare_server(body_file)) as bare:
                bare.wait_until_answering("/")
                ours, baseline = alternate(
                    serve,
                    bare,
                    list_requests(size, token_of),
                    LIST_CLIENTS,
                    options.seconds,
                )
            before = asyncio.run(bare_inserts(schema, CREATE_CLIENTS, 2.0))
            created = asyncio.run(
                post_orders(
                    [serve.base_url], token_of[source], snids, CREATE_CLIENTS, source
                )
            )
            after = asyncio.run(bare_inserts(schema, CREATE_CLIENTS, 2.0))
            api_mb = peak_rss_mb(serve.popen.pid)
            worker_mb = peak_rss_mb(worker.popen.pid)
            # The rebuild while the service serves (issue 27's target 3): orders
            # POSTed at a steady rate meanwhile, each answered once the views
            # show it.
            done = threading.Event()
            answered: list[float] = []
            posting = threading.Thread(
                target=lambda: answered.extend(
                    asyncio.run(
                        steady_posts(
                            serve.base_url,
                            token_of[meanwhile_source],
                            meanwhile_source,
                            meanwhile,
                            options.rebuild_post_rate,
                            done,
                        )
                    )
                )
            )
            posting.start()
            try:
                rebuild_seconds, rebuild_mb, rebuilt = rebuild(
                    schema.url, options.rebuild_seconds
                )
            finally:
                done.set()
                posting.join()
    return Step(
        size=size,
        wanted=wanted,
        events=store.app.recorder.max_notification_id() or 0,
        grown=grown,
        backlog_events=backlog_events,
        catch_up_seconds=catch_up,
        worker_mb=worker_mb,
        api_mb=api_mb,
        list_p99_ms=max(load.p99_ms for load in ours),
        list_rate=sum(load.per_second for load in ours) / len(ours),
        bare_list_rate=sum(load.per_second for load in baseline) / len(baseline),
        create_rate=created.per_second,
        bare_insert_rate=(before.per_second + after.per_second) / 2,
        rebuild_seconds=rebuild_seconds,
        rebuild_mb=rebuild_mb,
        rebuilt_views=rebuilt,
        views=len(store.all_views),
        rebuild_posts=len(answered),
        rebuild_post_p99_ms=percentile(answered, 99) * 1000,
    )


async def steady_posts(
    base_url: str,
    token: str,
    source: str,
    snids: list[str],
    rate: float,
    done: threading.Event,
) -> list[float]:
    """The answer times of one-server orders POSTed at `rate` (open loop: each
    at its time) until `done` is set or the servers run out."""
    import aiohttp

    url = f"{base_url}/mana_api/pm_order/{source}"
    headers = {"X-Auth-Token": token, "Sp-Agent": SP_AGENT}
    latencies: list[float] = []

    async def post(session: aiohttp.ClientSession, snid: str) -> None:
        body = {"snids": snid, "dest_project": DEST}
        began = time.perf_counter()
        async with session.post(url, json=body, headers=headers) as response:
            text = await response.text()
            if response.status != 200:
                raise RuntimeError(f"POST during the rebuild: {response.status} {text}")
        latencies.append(time.perf_counter() - began)

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=256)
    ) as session:
        posts = []
        start = time.perf_counter()
        for k, snid in enumerate(snids):
            if done.is_set():
                break
            await asyncio.sleep(max(0.0, start + k / rate - time.perf_counter()))
            posts.append(asyncio.create_task(post(session, snid)))
        await asyncio.gather(*posts)
    return latencies


@dataclass(frozen=True)
class Options:
    creates: int = 1000  # orders POSTed per size
    seconds: float = 3.0  # each list run
    backlog: int = 2000  # orders the worker catches up at each size
    rebuild_seconds: float = 600.0  # the rebuild is stopped past this
    rebuild_post_rate: float = 200.0  # orders/s POSTed while the rebuild runs
    generate_seconds: float = 1800.0  # each size's generating stops past this
    keep_store: str = ""  # leave the store in this schema (for bench/run.py)


def run(sizes: list[int], options: Options) -> Report:
    report = Report(
        "Growth: figures 1 and 2, catch-up, rebuild time and peak RSS by store size",
        key="5. growth",
    )
    report.note(machine_line())
    steps: list[Step] = []
    with (
        fresh_schema(keep=options.keep_store) as schema,
        tempfile.TemporaryDirectory() as directory,
    ):
        store = open_store(schema.url)
        try:
            for size in sizes:
                steps.append(step(store, schema, Path(directory), size, options))
                print(
                    f"  (size {size:,} done: {steps[-1].grown.describe()})", flush=True
                )
        finally:
            store.close()
    report.note(
        f"each size: {options.creates:,} orders POSTed; worker catch-up: a running"
        f" worker shows the last {options.backlog:,} generated orders (fewer below"
        f" {2 * options.backlog:,}), written at once (the writing's time included);"
        f" the rebuild is stopped past {options.rebuild_seconds:.0f}s"
    )
    for s in steps:
        short = (
            f" (STOPPED SHORT of {s.wanted:,}: generating took over"
            f" {options.generate_seconds:.0f}s)"
            if s.size < s.wanted
            else ""
        )
        report.note(f"store at {s.size:,} orders{short}: {s.grown.describe()}")
    report.note(
        "| orders | events | create orders/s (ratio to bare INSERT) | list p99 ms"
        " | list requests/s (ratio to bare handler) | worker catch-up s (events/s)"
        " | rebuild s (POST p99 ms meanwhile) | peak RSS MiB: API / worker / rebuild |"
    )
    report.note("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for s in steps:
        report.note(
            f"| {s.size:,} | {s.events:,}"
            f" | {s.create_rate:,.0f} ({s.create_rate / s.bare_insert_rate:.2f}x)"
            f" | {s.list_p99_ms:.1f}"
            f" | {s.list_rate:,.0f} ({s.list_rate / s.bare_list_rate:.2f}x)"
            f" | {s.catch_up_seconds:.1f} ({s.catch_up_rate:,.0f})"
            f" | {s.rebuild_text} ({s.rebuild_post_p99_ms:.1f})"
            f" | {s.api_mb:.0f} / {s.worker_mb:.0f} / {s.rebuild_mb:.0f} |"
        )
    last = steps[-1]
    meanwhile = (
        f"POST answered p99 while the rebuild ran, {options.rebuild_post_rate:g}"
        " orders/s"
    )
    if last.size >= REBUILD_AT:
        report.target(
            f"rebuild of every view at {last.size:,} orders",
            last.rebuild_text + " s",
            f"< {REBUILD_SECONDS:.0f} s",
            last.rebuilt_views == last.views and last.rebuild_seconds < REBUILD_SECONDS,
        )
        report.target(
            meanwhile,
            f"{last.rebuild_post_p99_ms:.1f} ms ({last.rebuild_posts:,} orders)",
            f"< {REBUILD_POST_P99_MS:.0f} ms",
            last.rebuild_post_p99_ms < REBUILD_POST_P99_MS,
        )
    else:
        why = f"the largest store is {last.size:,} orders"
        report.cannot_judge(
            "rebuild of every view at 1,000,000 orders",
            f"{last.rebuild_text} s at {last.size:,} orders",
            f"< {REBUILD_SECONDS:.0f} s",
            why,
        )
        report.cannot_judge(
            f"{meanwhile}, 1,000,000 orders",
            f"{last.rebuild_post_p99_ms:.1f} ms at {last.size:,} orders",
            f"< {REBUILD_POST_P99_MS:.0f} ms",
            why,
        )
    if len(steps) < 2:
        # One size would be compared with itself, and pass whatever it measured.
        for label, target in (
            ("list p99", f"flat (<= {FLAT:g}x)"),
            ("create (per bare INSERT)", f">= {CREATE_KEPT}x"),
            ("API peak RSS", f"flat (<= {FLAT:g}x)"),
            ("worker peak RSS", f"flat (<= {FLAT:g}x)"),
        ):
            report.cannot_judge(
                f"{label}, growth", f"at {last.size:,} orders only", target, "one size"
            )
        return report
    first = steps[0]
    span = f"{first.size:,} to {last.size:,} orders"
    growth = last.list_p99_ms / first.list_p99_ms
    report.target(
        f"list p99, {span}",
        f"{first.list_p99_ms:.1f} -> {last.list_p99_ms:.1f} ms",
        f"flat (<= {FLAT:g}x)",
        growth <= FLAT,
        baseline=f"at {first.size:,} orders",
        ratio=f"{growth:.2f}x",
    )
    # Each size's create rate against its own same-run bare INSERT rate, so that
    # the machine's load at each moment does not count as growth.
    kept = (last.create_rate / last.bare_insert_rate) / (
        first.create_rate / first.bare_insert_rate
    )
    report.target(
        f"create at {last.size:,} vs at {first.size:,} orders (each per bare INSERT)",
        f"{first.create_rate:,.0f} -> {last.create_rate:,.0f} orders/s",
        f">= {CREATE_KEPT}x",
        kept >= CREATE_KEPT,
        baseline=f"at {first.size:,} orders",
        ratio=f"{kept:.2f}x",
    )
    for label, low, high in (
        ("API", first.api_mb, last.api_mb),
        ("worker", first.worker_mb, last.worker_mb),
    ):
        report.target(
            f"{label} peak RSS, {span}",
            f"{low:.0f} -> {high:.0f} MiB",
            f"flat (<= {FLAT:g}x)",
            high / low <= FLAT,
            baseline=f"at {first.size:,} orders",
            ratio=f"{high / low:.2f}x",
        )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="10000,100000,1000000",
        help="store sizes in orders, ascending (default 10000,100000,1000000)",
    )
    parser.add_argument(
        "--creates", type=int, default=1000, help="orders POSTed per size"
    )
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="each list run (default 3)"
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=2000,
        help="orders the worker catches up at each size (default 2000)",
    )
    parser.add_argument(
        "--rebuild-seconds",
        type=float,
        default=600.0,
        help="stop each rebuild after this long (default 600)",
    )
    parser.add_argument(
        "--rebuild-post-rate",
        type=float,
        default=200.0,
        help="orders/s POSTed while each rebuild runs (default 200)",
    )
    parser.add_argument(
        "--generate-seconds",
        type=float,
        default=1800.0,
        help="stop generating each size after this long (default 1800)",
    )
    parser.add_argument(
        "--keep-store",
        default="",
        metavar="SCHEMA",
        help="leave the grown store in this schema (bench/run.py drops it)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    options = Options(
        creates=args.creates,
        seconds=args.seconds,
        backlog=args.backlog,
        rebuild_seconds=args.rebuild_seconds,
        rebuild_post_rate=args.rebuild_post_rate,
        generate_seconds=args.generate_seconds,
        keep_store=args.keep_store,
    )
    main_of(lambda: run(sizes, options))


if __name__ == "__main__":
    main()
