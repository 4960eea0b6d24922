"""Which release answers: /healthz and the pm_order_build_info metric say its
version and the commit it came from."""

from __future__ import annotations

import re
from pathlib import Path

from service.release import COMMIT, VERSION
from tests.api.conftest import ONE_BACKEND
from tests.conftest import Api

# The version setup.cfg gives this release.
SETUP_CFG_VERSION = re.compile(r"^version = (\S+)$", re.MULTILINE)
ROOT = Path(__file__).resolve().parents[2]


def test_the_version_is_setup_cfgs() -> None:
    # (the commit: tests/unit/test_release.py, where HEAD cannot move between
    # the import and the check)
    found = SETUP_CFG_VERSION.search((ROOT / "setup.cfg").read_text())
    assert found is not None
    assert found.group(1) == VERSION


@ONE_BACKEND
async def test_healthz_says_which_release_answers(api: Api) -> None:
    alive = await api.client.get("/healthz")
    assert alive.status == 200
    body = await alive.json()
    assert body["msg"] == "alive"
    assert (body["version"], body["commit"]) == (VERSION, COMMIT)


@ONE_BACKEND
async def test_the_build_info_metric_has_the_version_and_commit(api: Api) -> None:
    text = await (await api.client.get("/metrics")).text()
    (line,) = [x for x in text.splitlines() if x.startswith("pm_order_build_info{")]
    assert f'version="{VERSION}"' in line
    assert f'commit="{COMMIT}"' in line
    assert line.endswith(" 1.0")
