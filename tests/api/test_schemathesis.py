"""schemathesis against the real app from the app's own OpenAPI document.

Every check schemathesis has is on (no server error, status code, content type,
headers and response schema conformance, positive data accepted and negative
data rejected, missing headers, unsupported methods, and the stateful phase that
follows the document's links), on both stores, with a fixed seed and a bounded
number of examples so that CI repeats the same run.

Generated requests are made to get past authentication as a real client would:
the URL's project becomes one of three projects and the token that project's
(a few keep a made-up token or none, to check 401), and the servers a transfer
names are in the caller's inventory. Everything else is as generated.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import pytest
import schemathesis
from eventsourcing.application import AggregateNotFoundError
from schemathesis.engine import events
from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER
from schemathesis.specs.openapi.schemas import OpenApiSchema

from api.app import create_app
from domain.server import Server, server_aggregate_id
from domain.service import OrderService
from projections.order_lists import OrderLists
from service.config import Config
from service.store import Store
from tests.api.live_server import serving
from tests.conftest import INVENTORY, FakeClock

SEED: Final = 20261202
MAX_EXAMPLES: Final = 100
STATEFUL_STEPS: Final = 12

TOKEN_OF: Final = {"proj-a": "tok-alice", "proj-b": "tok-bob", "proj-c": "tok-carol"}
PROJECTS: Final = tuple(TOKEN_OF)
NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
IDS: Final = re.compile(r"[0-9]{1,18}(,[0-9]{1,18})*")
# One request in UNAUTHENTICATED keeps the token it was generated with (unknown).
UNAUTHENTICATED: Final = 8


def _pick(value: str, choices: tuple[str, ...]) -> str:
    """A choice that depends only on `value`: runs repeat."""
    return choices[_digest(value)[0] % len(choices)]


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _project_for(value: Any) -> Any:
    if isinstance(value, str) and NAME.fullmatch(value) and value not in PROJECTS:
        return _pick(value, PROJECTS)
    return value


def _is_date(value: Any) -> bool:
    try:
        date.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str) and len(value) == len("YYYY-MM-DD")


@dataclass
class Caller:
    """What the generated requests need to be a project's own requests."""

    service: OrderService
    store: Store

    def prepare(self, case: schemathesis.Case) -> None:
        tenant = _project_for(case.path_parameters.get("tenant_id"))
        if case.path_parameters and "tenant_id" in case.path_parameters:
            case.path_parameters["tenant_id"] = tenant
        headers = case.headers
        token = headers.get("X-Auth-Token") if headers else None
        if (
            headers is not None
            and tenant in TOKEN_OF
            and isinstance(token, str)
            and token
            and _digest(repr((token, case.query, case.body)))[0] % UNAUTHENTICATED
        ):
            headers["X-Auth-Token"] = TOKEN_OF[tenant]
        query = case.query
        if query and _is_date(query.get("since")) and _is_date(query.get("until")):
            # A range that ends before it starts is refused (400): ask in order.
            since, until = sorted((query["since"], query["until"]))
            query["since"], query["until"] = since, until
        if case.method.upper() == "POST" and isinstance(case.body, dict):
            self._prepare_transfer(case.body, tenant)
        if case.method.upper() == "PUT" and isinstance(case.body, dict):
            self._prepare_decision(case.body, tenant)

    def _prepare_decision(self, body: dict[str, Any], tenant: Any) -> None:
        """The orders a decision names are orders addressed to the caller, when
        it has some: generated ids are mapped onto theirs."""
        given = body.get("order_ids")
        as_text = isinstance(given, str) and IDS.fullmatch(given) is not None
        if as_text:
            given = [int(i) for i in given.split(",")]
        if tenant not in PROJECTS or not isinstance(given, list):
            return
        if not all(type(i) is int and i > 0 for i in given):
            return
        known = [
            order.id
            for list_type in (0, 1, 2)  # addressed to the caller: it may decide
            for order in OrderLists.page(
                self.store.views, tenant, list_type, limit=50, marker=None
            ).orders
        ]
        if not known:
            return
        mapped = [known[i % len(known)] for i in given]
        if len(set(mapped)) == len(mapped):
            body["order_ids"] = ",".join(map(str, mapped)) if as_text else mapped

    def _prepare_transfer(self, body: dict[str, Any], tenant: Any) -> None:
        dest = _project_for(body.get("dest_project"))
        if dest == tenant and tenant in PROJECTS:
            dest = PROJECTS[(PROJECTS.index(tenant) + 1) % len(PROJECTS)]
        if "dest_project" in body:
            body["dest_project"] = dest
        if isinstance(body.get("tenant_id"), str) and tenant in PROJECTS:
            body["tenant_id"] = tenant
        if tenant in PROJECTS:
            self._make_own(body.get("snids"), tenant)

    def _make_own(self, snids: Any, tenant: str) -> None:
        """The servers a transfer names are the caller's: new ones are registered
        to it, and ones another project holds are handed over by a real order
        (the order holding them refused, then one to the caller accepted)."""
        if isinstance(snids, str):
            snids = [s.strip() for s in snids.split(",")]
        if not isinstance(snids, list):
            return
        valid = [s for s in snids if isinstance(s, str) and NAME.fullmatch(s)]
        unknown = []
        for snid in dict.fromkeys(valid):
            server = self._server(snid)
            if server is None:
                unknown.append(snid)
            elif server.project_id != tenant:
                self._hand_over(server, tenant)
        if unknown:
            self.service.register_servers([(s, tenant) for s in unknown])

    def _hand_over(self, server: Server, tenant: str) -> None:
        if server.order_id is not None:
            holding = self.service.order(server.order_id)
            self.service.decide(
                project=holding.dest_project,
                user="setup",
                roles=frozenset(),
                order_ids=[server.order_id],
                accept=False,
            )
        written = self.service.request_transfer(
            source_project=server.project_id,
            user="setup",
            snids=[server.snid],
            dest_project=tenant,
            mailto=[],
        )
        assert written.order_id is not None
        self.service.decide(
            project=tenant,
            user="setup",
            roles=frozenset(),
            order_ids=[written.order_id],
            accept=True,
        )

    def _server(self, snid: str) -> Server | None:
        try:
            server = self.store.app.repository.get(server_aggregate_id(snid))
        except AggregateNotFoundError:
            return None
        assert isinstance(server, Server)
        return server


@dataclass(frozen=True)
class Finding:
    phase: str
    operation: str
    check: str
    title: str
    code_sample: str
    answer: str

    def __str__(self) -> str:
        return (
            f"[{self.phase}] {self.operation}: {self.check}: {self.title}\n"
            f"{self.code_sample}\n-> {self.answer}"
        )


@dataclass
class Run:
    findings: list[Finding]
    errors: list[str]
    calls: Counter[tuple[str, str, int]]
    phases: dict[str, str]
    transitions: int = 0

    def answered(self, method: str, mode: str, status: int) -> int:
        return self.calls[(method, mode, status)]


def run_schemathesis(schema: OpenApiSchema) -> Run:
    """Every phase schemathesis has, every check: what failed, and what was sent."""
    run = Run(findings=[], errors=[], calls=Counter(), phases={})
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            for case_id, interaction in recorder.interactions.items():
                node = recorder.cases.get(case_id)
                meta = node.value.meta if node is not None else None
                mode = meta.generation.mode.value if meta is not None else "?"
                if interaction.response is not None:
                    run.calls[
                        (
                            interaction.request.method,
                            mode,
                            interaction.response.status_code,
                        )
                    ] += 1
            for case_id, checks in recorder.checks.items():
                interaction = recorder.interactions.get(case_id)
                answer = (
                    f"{interaction.response.status_code} "
                    f"{interaction.response.content[:300]!r}"
                    if interaction is not None and interaction.response is not None
                    else "no answer"
                )
                for check in checks:
                    if check.failure_info is not None:
                        run.findings.append(
                            Finding(
                                phase=event.phase.value,
                                operation=recorder.label,
                                check=check.name,
                                title=check.failure_info.failure.title,
                                code_sample=check.failure_info.code_sample,
                                answer=answer,
                            )
                        )
        elif isinstance(event, events.PhaseFinished):
            run.phases[event.phase.name.value] = event.status.value
        elif isinstance(event, events.PhaseStarted) and event.payload is not None:
            run.transitions = event.payload.transitions_selected
        elif isinstance(event, events.NonFatalError | events.FatalError):
            run.errors.append(repr(event))
    return run


@pytest.fixture
def api_schema(
    store: Store, config: Config, clock: FakeClock
) -> Iterator[OpenApiSchema]:
    """The document the running app serves, with every generated request readied
    by the caller (see `Caller`)."""
    service = OrderService(store.app, clock=clock)
    service.register_servers(INVENTORY)
    app = create_app(config, store=store, clock=clock)
    caller = Caller(service=service, store=store)

    def before_call(
        context: schemathesis.HookContext,
        case: schemathesis.Case,
        kwargs: dict[str, Any],
    ) -> None:
        caller.prepare(case)

    with serving(app) as base_url:
        schema = schemathesis.openapi.from_url(
            f"{base_url}/mana_api/openapi.json",
            config=schemathesis.Config.from_dict(
                {
                    "seed": SEED,
                    "base-url": f"{base_url}/mana_api",
                    "workers": 1,
                    "generation": {"max-examples": MAX_EXAMPLES, "database": "none"},
                    "phases": {"stateful": {"max-steps": STATEFUL_STEPS}},
                }
            ),
        )
        # The engine calls through global hooks only; this one is removed after.
        schemathesis.hook(before_call)
        try:
            yield schema
        finally:
            GLOBAL_HOOK_DISPATCHER.unregister(before_call)


def test_every_answer_is_as_the_document_says(api_schema: OpenApiSchema) -> None:
    run = run_schemathesis(api_schema)

    assert not run.errors
    assert not run.findings, "\n\n".join(map(str, run.findings))
    for phase in ("examples", "coverage", "fuzzing", "stateful"):
        assert run.phases.get(phase) == "success", run.phases
    assert run.transitions >= 5, "the stateful phase follows the document's links"
    # The generated requests got past authentication and the rules, so the
    # answers checked are not only refusals.
    for method in ("GET", "POST", "PUT"):
        assert run.answered(method, "positive", 200) >= 5, sorted(run.calls.items())
    assert run.answered("POST", "positive", 401), "some went without a valid token"
