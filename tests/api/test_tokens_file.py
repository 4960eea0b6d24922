"""The static tokens file may hold a token's SHA-256 instead of the token."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from api.auth import TokensFile
from service.config import ConfigError
from tests.api.conftest import ONE_BACKEND, MakeApi

SECRET = "tok-only-dave-knows"
DIGEST = hashlib.sha256(SECRET.encode()).hexdigest()


def tokens_file(tmp_path: Path, *entries: dict[str, Any]) -> Path:
    path = tmp_path / "hashed-tokens.json"
    path.write_text(json.dumps({"tokens": list(entries)}))
    return path


DAVE = {"user_name": "dave", "project_id": "proj-a", "roles": ["member"]}


@ONE_BACKEND
@pytest.mark.parametrize("digest", [DIGEST, DIGEST.upper()], ids=["lower", "upper"])
async def test_a_token_given_by_its_sha256_is_accepted(
    make_api: MakeApi, tmp_path: Path, digest: str
) -> None:
    # given
    path = tokens_file(tmp_path, {"token_sha256": digest, **DAVE})
    api = await make_api(tokens_file=path)
    # when
    status, body = await api.list(SECRET, "proj-a")
    # then
    assert (status, body["code"]) == (200, 200)


@ONE_BACKEND
async def test_the_sha256_itself_is_not_a_token(
    make_api: MakeApi, tmp_path: Path
) -> None:
    # given
    path = tokens_file(tmp_path, {"token_sha256": DIGEST, **DAVE})
    api = await make_api(tokens_file=path)
    # when
    status, _ = await api.list(DIGEST, "proj-a")
    # then
    assert status == 401


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"token_sha256": DIGEST, "token": SECRET, **DAVE}, "keep one"),
        ({"token_sha256": "abc", **DAVE}, "64 hexadecimal digits"),
        ({"token_sha256": DIGEST[:-1] + "g", **DAVE}, "64 hexadecimal digits"),
        ({"token_sha256": 7, **DAVE}, "64 hexadecimal digits"),
        (DAVE, "needs a non-empty 'token'"),
    ],
    ids=["both", "short", "not-hex", "not-text", "neither"],
)
def test_a_malformed_token_entry_is_a_configuration_error(
    tmp_path: Path, entry: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        TokensFile(tokens_file(tmp_path, entry))
