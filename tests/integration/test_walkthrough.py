"""The walk-through of the README (and of docs/api.md), run as written against a
real `pm-order serve` with the demo's tokens and inventory: every curl answers what
the page shows, and the README's again after starting over as it says
(`rm -rf var`)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from tests.integration.processes import ApiServer, run_pm_order

ROOT: Final = Path(__file__).resolve().parents[2]
README: Final = ROOT / "README.md"
SHOWN_BASE: Final = "http://127.0.0.1:8080"
# Times differ from run to run; everything else must be as shown.
TIME_FIELDS: Final = ("create_at", "update_at", "handled_at")


@dataclass(frozen=True)
class Step:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    # The JSON block the README shows after the command, if any.
    shown: Any


def walkthrough(page: Path) -> list[Step]:
    """Each curl of the page's walk-through, with the answer shown after it."""
    text = page.read_text(encoding="utf-8")
    section = text.split("## A walk through the API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(sh|json)\n(.*?)```", section, flags=re.S)
    steps: list[Step] = []
    for number, (language, block) in enumerate(blocks):
        if language != "sh":
            continue
        follows = blocks[number + 1] if number + 1 < len(blocks) else ("", "")
        commands = re.split(r"\n(?=\S)", block.replace("\\\n", " ").strip())
        curls = [c for c in commands if c.startswith("curl ")]
        for position, command in enumerate(curls):
            last = position == len(curls) - 1
            shown = json.loads(follows[1]) if last and follows[0] == "json" else None
            steps.append(parse_curl(command, shown))
    return steps


def parse_curl(command: str, shown: Any) -> Step:
    words = shlex.split(command)[1:]
    method, url, headers, body = "GET", "", {}, None
    while words:
        word = words.pop(0)
        if word == "-s":
            continue
        if word == "-X":
            method = words.pop(0)
        elif word == "-H":
            name, _, value = words.pop(0).partition(": ")
            headers[name] = value
        elif word == "-d":
            body = words.pop(0).encode()
        else:
            assert not word.startswith("-"), f"curl option {word} not understood"
            url = word
    assert url.startswith(SHOWN_BASE), url
    return Step(method, url, headers, body, shown)


def answer(step: Step, base_url: str) -> Any:
    request = urllib.request.Request(
        step.url.replace(SHOWN_BASE, base_url),
        data=step.body,
        headers=step.headers,
        method=step.method,
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        return json.loads(error.read())


def without_times(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: "TIME" if k in TIME_FIELDS else without_times(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [without_times(v) for v in value]
    return value


def make_run(var: Path, log: Path) -> ApiServer:
    """What `make run` does: import the demo inventory (new servers only), serve."""
    env = {
        "PM_ORDER_DATABASE_URL": f"sqlite:///{var}/pm-order.sqlite3",
        "PM_ORDER_TOKENS_FILE": str(ROOT / "examples" / "tokens.json"),
    }
    inventory = str(ROOT / "examples" / "inventory.csv")
    imported = run_pm_order(
        "machines", "import", "--new-only", inventory, cwd=var.parent, env=env
    )
    assert imported.returncode == 0, imported.stderr
    return ApiServer(env, log, api_only=False)


@pytest.mark.parametrize(
    ("page", "runs"),
    [(README, ("first", "after rm -rf var")), (ROOT / "docs" / "api.md", ("first",))],
    ids=["README", "docs-api"],
)
def test_the_walk_through_answers_as_shown_and_again_after_starting_over(
    page: Path, runs: tuple[str, ...], tmp_path: Path
) -> None:
    steps = walkthrough(page)
    assert [s.method for s in steps] == ["POST", "GET", "PUT", "GET", "GET"]
    var = tmp_path / "var"
    for run in runs:
        # given `make run` on the demo inventory
        server = make_run(var, tmp_path / f"serve-{run}.log")
        try:
            # when each curl is sent, in order
            answers = [answer(step, server.base_url) for step in steps]
        finally:
            server.stop()
        # then each answers what the README shows after it
        for step, got in zip(steps, answers, strict=True):
            if step.shown is not None:
                assert without_times(got) == without_times(step.shown), (run, step)
        # Alice's list (type 3, shown in words only) has the order, finished
        assert [o["state"] for o in answers[3]["orders"]] == ["finished"], run
        # starting over, as the README says
        shutil.rmtree(var)
