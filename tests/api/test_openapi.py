"""The OpenAPI document: valid OpenAPI 3.1, served, and true to what the app answers.

Every answer the app gives here is checked against the document: its status must be
one the document gives for the operation, its body must match that response's schema
and the response's required headers must be set.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final
from urllib.parse import quote

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from api.handlers import OPENAPI_PATH
from tests.api.conftest import MakeApi
from tests.api.given import decided, ordered
from tests.conftest import Api, FakeClock

ORDERS: Final = "/pm_order/{tenant_id}"
DOCUMENT_PATH: Final = "/openapi.json"
REPORT_PATH: Final = "/pm_order_report/{tenant_id}"
DOCUMENT_URI: Final = "urn:pm-order:openapi.json"
MIB: Final = 1024 * 1024
METHODS: Final = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

Json = Any


# -- the document, and what it says about one response ------------------------------


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def escape(segment: str) -> str:
    """One JSON pointer segment (RFC 6901)."""
    return segment.replace("~", "~0").replace("/", "~1")


def at(document: Json, pointer: str) -> Json:
    """The part of `document` at a JSON pointer such as /components/schemas/Order."""
    node = document
    for segment in pointer.split("/")[1:]:
        key = segment.replace("~1", "/").replace("~0", "~")
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


def followed(document: Json, pointer: str) -> tuple[Json, str]:
    """The OpenAPI object at `pointer` and where it really is, following its $ref."""
    node = at(document, pointer)
    while "$ref" in node:
        pointer = node["$ref"].removeprefix("#")
        node = at(document, pointer)
    return node, pointer


def validator(document: Json, pointer: str) -> Draft202012Validator:
    """A validator for the schema at `pointer`, its $refs resolved in the document."""
    registry: Registry[Any] = Registry().with_resource(
        DOCUMENT_URI, DRAFT202012.create_resource(document)
    )
    return Draft202012Validator(
        {"$ref": f"{DOCUMENT_URI}#{quote(pointer, safe='/~')}"}, registry=registry
    )


def assert_valid(document: Json, pointer: str, instance: Json) -> None:
    errors = sorted(validator(document, pointer).iter_errors(instance), key=str)
    assert not errors, (
        f"does not match {pointer}:\n"
        + "\n".join(f"  at {list(e.absolute_path)}: {e.message}" for e in errors)
        + f"\n{json.dumps(instance)[:2000]}"
    )


def operations(document: Json) -> Iterator[tuple[str, str, Json]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


@dataclass(frozen=True)
class Answer:
    """An HTTP answer, read in full."""

    status: int
    content_type: str
    headers: Mapping[str, str]
    body: Json


def assert_answer_matches(document: Json, pointer: str, answer: Answer) -> None:
    """`answer` is the response described at `pointer`: type, headers, body."""
    response, pointer = followed(document, pointer)
    assert answer.content_type in response["content"], answer
    for name in response.get("headers", {}):
        header, header_pointer = followed(document, f"{pointer}/headers/{escape(name)}")
        if not header.get("required"):
            continue
        assert name in answer.headers, f"{name} is documented but missing: {answer}"
        value: Json = answer.headers[name]
        if header["schema"].get("type") == "integer":
            assert value.isdigit(), f"{name}: {value!r} is not an integer"
            value = int(value)
        assert_valid(document, f"{header_pointer}/schema", value)
    schema = f"{pointer}/content/{escape(answer.content_type)}/schema"
    assert_valid(document, schema, answer.body)


def assert_conforms(document: Json, path: str, method: str, answer: Answer) -> Json:
    """The operation documents `answer`'s status, and `answer` matches it; its body."""
    operation_pointer = f"/paths/{escape(path)}/{method}"
    operation = at(document, operation_pointer)
    status = str(answer.status)
    assert status in operation["responses"], (
        f"{operation['operationId']} answered {status}, which the document does not "
        f"give for it (it gives {sorted(operation['responses'])}): {answer}"
    )
    assert_answer_matches(document, f"{operation_pointer}/responses/{status}", answer)
    return answer.body


# -- speaking to the app --------------------------------------------------------------


def url(api: Api, path: str, tenant: str = "proj-a") -> str:
    """A path of the document, under the prefix the document is served with."""
    return api.prefix + path.format(tenant_id=tenant)


async def call(
    api: Api,
    method: str,
    path: str,
    *,
    tenant: str = "proj-a",
    headers: Mapping[str, str] | None = None,
    **options: Any,
) -> Answer:
    async with api.client.request(
        method.upper(),
        url(api, path, tenant),
        headers=Api.headers("tok-alice") if headers is None else headers,
        **options,
    ) as response:
        return Answer(
            status=response.status,
            content_type=response.content_type,
            headers=response.headers,
            body=await response.json(),
        )


def as_user(token: str | None, **extra: str) -> dict[str, str]:
    return Api.headers(token, **extra)


async def scene(api: Api, clock: FakeClock) -> None:
    """proj-a has ordered three moves to proj-b: 1 accepted, 2 refused, 3 warned."""
    for snid in ("SN-A-001", "SN-A-002", "SN-A-003"):
        await ordered(api, snid)
    clock.advance(hours=2)
    assert api.service.raise_warning(3, every=timedelta(hours=1), most=3).position
    # Answered writes after the warning: the views show the warning too.
    await decided(api, [1], accept=True)
    await decided(api, [2], accept=False)


# -- (a) the document is valid --------------------------------------------------------


def test_the_document_is_valid_openapi_3_1(document: Json) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document, cls=OpenAPIV31SpecValidator)


def test_every_component_schema_is_valid_json_schema_2020_12(document: Json) -> None:
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_the_documents_examples_match_their_schemas(document: Json) -> None:
    def examples(node: Json, pointer: str) -> Iterator[tuple[str, Json]]:
        if isinstance(node, dict):
            if isinstance(node.get("examples"), list):
                yield from ((pointer, example) for example in node["examples"])
            for key, value in node.items():
                yield from examples(value, f"{pointer}/{escape(key)}")

    checked = list(examples(document["components"]["schemas"], "/components/schemas"))
    for name, response in document["components"]["responses"].items():
        for media_type, content in response["content"].items():
            if "example" in content:
                where = f"/components/responses/{name}/content/{escape(media_type)}"
                checked.append((f"{where}/schema", content["example"]))
    assert checked
    for pointer, example in checked:
        assert_valid(document, pointer, example)


def test_the_document_describes_the_contracts_operations(document: Json) -> None:
    assert {
        (path, method): operation["operationId"]
        for path, method, operation in operations(document)
    } == {
        (ORDERS, "get"): "listOrders",
        (ORDERS, "post"): "requestTransfer",
        (ORDERS, "put"): "decideOrders",
        (REPORT_PATH, "get"): "getProjectReport",
        (DOCUMENT_PATH, "get"): "getOpenApiDocument",
        ("/pm_order_admin/unfinished_orders", "get"): "listUnfinishedOrders",
        ("/pm_order_admin/servers/{snid}", "get"): "showServer",
    }


def test_every_order_operation_takes_the_token_and_sp_agent_headers(
    document: Json,
) -> None:
    item = document["paths"][ORDERS]
    parameters = [
        followed(document, f"/paths/{escape(ORDERS)}/parameters/{n}")[0]
        for n in range(len(item["parameters"]))
    ]
    headers = {p["name"]: p for p in parameters if p["in"] == "header"}
    assert set(headers) == {"X-Auth-Token", "Sp-Agent"}
    assert all(p["required"] for p in headers.values())
    assert headers["Sp-Agent"]["schema"]["enum"] == ["scloudm"]


def test_every_error_response_is_the_error_schema(document: Json) -> None:
    for path, method, operation in operations(document):
        for status in operation["responses"]:
            if int(status) < 400:
                continue
            response, pointer = followed(
                document, f"/paths/{escape(path)}/{method}/responses/{status}"
            )
            schema = response["content"]["application/json"]["schema"]
            assert schema["$ref"] == "#/components/schemas/Error", (
                path,
                method,
                status,
            )
            assert schema["properties"]["code"] == {"const": int(status)}, pointer


# -- (b) the app serves it ------------------------------------------------------------


async def test_the_app_serves_the_document_without_a_token(
    api: Api, document: Json
) -> None:
    answer = await call(api, "get", DOCUMENT_PATH, headers={})

    served = assert_conforms(document, DOCUMENT_PATH, "get", answer)
    assert served == {**document, "servers": [{"url": "/mana_api"}]}
    validate(served, cls=OpenAPIV31SpecValidator)


async def test_the_served_document_names_the_configured_prefix(
    make_api: MakeApi, document: Json
) -> None:
    api = await make_api(api_prefix="/gateway/v2")
    api.prefix = "/gateway/v2"

    served = (await call(api, "get", DOCUMENT_PATH, headers={})).body
    listed = await call(api, "get", ORDERS)

    assert served["servers"] == [{"url": "/gateway/v2"}]
    assert assert_conforms(document, ORDERS, "get", listed)["total_count"] == 0


# -- (c) the app's answers conform: successes -----------------------------------------


@pytest.mark.parametrize("list_type", [None, "0", "1", "2", "3", "4"])
async def test_each_list_answers_as_documented(
    api: Api, clock: FakeClock, document: Json, list_type: str | None
) -> None:
    await scene(api, clock)
    params = {} if list_type is None else {"type": list_type}

    answers = [
        await call(
            api, "get", ORDERS, tenant=tenant, headers=as_user(token), params=params
        )
        for token, tenant in (("tok-alice", "proj-a"), ("tok-bob", "proj-b"))
    ]

    bodies = [assert_conforms(document, ORDERS, "get", a) for a in answers]
    assert any(body["orders"] for body in bodies), "the Order schema went untested"


async def test_a_list_with_more_orders_answers_next_marker_as_documented(
    api: Api, clock: FakeClock, document: Json
) -> None:
    await scene(api, clock)

    first = await call(api, "get", ORDERS, params={"limit": "2"})
    marker = assert_conforms(document, ORDERS, "get", first)["next_marker"]
    last = await call(api, "get", ORDERS, params={"limit": "2", "marker": str(marker)})

    assert "next_marker" not in assert_conforms(document, ORDERS, "get", last)


async def test_the_orders_fields_are_those_the_document_gives(
    api: Api, clock: FakeClock, document: Json
) -> None:
    await scene(api, clock)

    body = (await call(api, "get", ORDERS)).body

    order_schema = document["components"]["schemas"]["Order"]
    for order in body["orders"]:
        assert (
            set(order_schema["required"])
            <= set(order)
            <= set(order_schema["properties"])
        )
    warned = {o["id"]: o["warnning_times"] for o in body["orders"]}
    assert warned[3] != ""
    assert warned[1] == ""


async def test_a_transfer_request_answers_as_documented(
    api: Api, document: Json
) -> None:
    answer = await call(
        api,
        "post",
        ORDERS,
        json={
            "snids": "SN-A-001, SN-A-002",
            "dest_project": "proj-b",
            "mailto": "jiahua@example.com",
            "tenant_id": "proj-a",
        },
    )

    assert assert_conforms(document, ORDERS, "post", answer)["order_id"] == 1


@pytest.mark.parametrize("accept", [1, 0, "1", "0"])
async def test_a_decision_answers_as_documented(
    api: Api, document: Json, accept: int | str
) -> None:
    order_id = await ordered(api, ["SN-A-001"])

    answer = await call(
        api,
        "put",
        ORDERS,
        tenant="proj-b",
        headers=as_user("tok-bob"),
        json={"order_ids": str(order_id), "accept": accept},
    )

    assert_conforms(document, ORDERS, "put", answer)


# -- (c) the app's answers conform: errors --------------------------------------------


@dataclass(frozen=True)
class Case:
    method: str
    options: dict[str, Any]
    tenant: str = "proj-a"
    token: str | None = "tok-alice"
    sp_agent: str | None = "scloudm"

    def headers(self) -> dict[str, str]:
        headers = {} if self.token is None else {"X-Auth-Token": self.token}
        if self.sp_agent is not None:
            headers["Sp-Agent"] = self.sp_agent
        return headers


TRANSFER: Final = {"snids": "SN-A-001", "dest_project": "proj-b"}
DECISION: Final = {"order_ids": "1", "accept": 1}

BAD_REQUESTS: Final = {
    "list without Sp-Agent": Case("get", {}, sp_agent=None),
    "list with another Sp-Agent": Case("get", {}, sp_agent="curl"),
    "list of another project": Case("get", {}, tenant="proj-b"),
    "list of type 5": Case("get", {"params": {"type": "5"}}),
    "list with limit 0": Case("get", {"params": {"limit": "0"}}),
    "list with a marker not a number": Case("get", {"params": {"marker": "x"}}),
    "transfer of malformed JSON": Case(
        "post", {"data": b"{", "headers": {"Content-Type": "application/json"}}
    ),
    "transfer without dest_project": Case("post", {"json": {"snids": "SN-A-001"}}),
    "transfer of a server not owned": Case(
        "post", {"json": {"snids": "SN-C-001", "dest_project": "proj-b"}}
    ),
    "transfer to another project's tenant_id": Case(
        "post", {"json": {**TRANSFER, "tenant_id": "proj-c"}}
    ),
    "decision for another project": Case("put", {"json": DECISION}, tenant="proj-c"),
    "decision with accept true": Case(
        "put", {"json": {"order_ids": "1", "accept": True}}
    ),
}


@pytest.mark.parametrize("case", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
async def test_a_bad_request_answers_400_as_documented(
    api: Api, document: Json, case: Case
) -> None:
    options = dict(case.options)
    headers = {**case.headers(), **options.pop("headers", {})}

    answer = await call(
        api, case.method, ORDERS, tenant=case.tenant, headers=headers, **options
    )

    assert answer.status == 400
    assert_conforms(document, ORDERS, case.method, answer)


async def test_a_tenant_mismatch_answers_400_with_reason_unauthorized(
    api: Api, document: Json
) -> None:
    answer = await call(api, "get", ORDERS, tenant="proj-b")

    body = assert_conforms(document, ORDERS, "get", answer)
    assert answer.status == 400
    assert body["reason"] == "Unauthorized"


@pytest.mark.parametrize("token", [None, "tok-unknown", "tok-expired"])
@pytest.mark.parametrize(
    ("method", "options"),
    [("get", {}), ("post", {"json": TRANSFER}), ("put", {"json": DECISION})],
    ids=["get", "post", "put"],
)
async def test_a_missing_unknown_or_expired_token_answers_401_as_documented(
    api: Api, document: Json, token: str | None, method: str, options: dict[str, Any]
) -> None:
    answer = await call(api, method, ORDERS, headers=as_user(token), **options)

    assert answer.status == 401
    assert_conforms(document, ORDERS, method, answer)


async def test_a_decision_without_an_approver_role_answers_403_as_documented(
    make_api: MakeApi, document: Json
) -> None:
    api = await make_api(approver_roles=frozenset({"approver"}))
    order_id = await ordered(api, ["SN-A-001"])

    answer = await call(
        api,
        "put",
        ORDERS,
        tenant="proj-b",
        headers=as_user("tok-bill"),
        json={"order_ids": [order_id], "accept": 1},
    )

    assert answer.status == 403
    assert_conforms(document, ORDERS, "put", answer)


async def test_orders_not_found_for_the_project_answer_404_as_documented(
    api: Api, document: Json
) -> None:
    order_id = await ordered(api, ["SN-A-001"])

    answer = await call(
        api,
        "put",
        ORDERS,
        tenant="proj-c",
        headers=as_user("tok-carol"),
        json={"order_ids": [order_id, 999], "accept": 1},
    )

    assert answer.status == 404
    assert_conforms(document, ORDERS, "put", answer)


@pytest.mark.parametrize("path", ["/nothing", "/pm_order", "/pm_order/proj-a/more"])
async def test_an_unknown_path_answers_404_as_documented(
    api: Api, document: Json, path: str
) -> None:
    answer = await call(api, "get", path)

    assert path not in document["paths"]
    assert answer.status == 404
    assert_answer_matches(document, "/components/responses/NotFound", answer)


@pytest.mark.parametrize(
    ("path", "method"),
    [(ORDERS, "delete"), (ORDERS, "patch"), (DOCUMENT_PATH, "post")],
)
async def test_a_method_the_path_does_not_take_answers_405_as_documented(
    api: Api, document: Json, path: str, method: str
) -> None:
    answer = await call(api, method, path, json={})

    assert method not in document["paths"][path]
    assert answer.status == 405
    assert_answer_matches(document, "/components/responses/MethodNotAllowed", answer)
    allowed = {m.strip().lower() for m in answer.headers["Allow"].split(",")}
    documented = {m for m in METHODS if m in document["paths"][path]}
    # HEAD comes with GET in HTTP; the document leaves it implicit.
    assert allowed - {"head"} == documented


async def test_a_server_already_in_an_unfinished_order_answers_409_as_documented(
    api: Api, document: Json
) -> None:
    await ordered(api, ["SN-A-001"])

    answer = await call(
        api,
        "post",
        ORDERS,
        json={"snids": ["SN-A-002", "SN-A-001"], "dest_project": "proj-c"},
    )

    assert answer.status == 409
    assert_conforms(document, ORDERS, "post", answer)


async def test_an_order_decided_the_other_way_answers_409_as_documented(
    api: Api, document: Json
) -> None:
    order_id = await ordered(api, ["SN-A-001"])
    await decided(api, [order_id], accept=True)

    answer = await call(
        api,
        "put",
        ORDERS,
        tenant="proj-b",
        headers=as_user("tok-bob"),
        json={"order_ids": [order_id], "accept": 0},
    )

    assert answer.status == 409
    assert_conforms(document, ORDERS, "put", answer)


def over_1_mib(framing: str) -> Any:
    body = b'{"pad": "' + b"x" * MIB + b'"}'
    if framing == "content-length":
        return io.BytesIO(body)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    return chunks()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("method", ["post", "put"])
async def test_a_body_over_1_mib_answers_413_as_documented(
    api: Api, document: Json, method: str, framing: str
) -> None:
    answer = await call(
        api,
        method,
        ORDERS,
        data=over_1_mib(framing),
        headers={**as_user("tok-alice"), "Content-Type": "application/json"},
    )

    assert answer.status == 413
    assert_conforms(document, ORDERS, method, answer)


@pytest.mark.parametrize("method", ["post", "put"])
async def test_a_body_that_is_not_json_answers_415_as_documented(
    api: Api, document: Json, method: str
) -> None:
    answer = await call(
        api,
        method,
        ORDERS,
        data=b"snids=SN-A-001",
        headers={**as_user("tok-alice"), "Content-Type": "text/plain"},
    )

    assert answer.status == 415
    assert_conforms(document, ORDERS, method, answer)
