"""The OpenAPI document against the running service: schemathesis generates requests for every operation
(valid ones and invalid ones) as every role, sends them to a real uvicorn process, and checks each
answer: no server error, a documented status, the documented content type and headers, a body that
matches the documented schema.

The marketplace is seeded first and generated ids are swapped for seeded ones half of the time, so the
requests reach past "not found" into the services. The run is bounded (``SAV_CONTRACT_EXAMPLES`` cases per
operation, role and mode; default 8) and collects every failure before failing, so one run reports
all of them. Select it with ``-m contract``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests as requests_lib
import schemathesis
import schemathesis.core
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.helpers import Service
from tests.factories import Tokens, money, order_body

pytestmark = [pytest.mark.slow, pytest.mark.contract]

EXAMPLES = int(os.environ.get("SAV_CONTRACT_EXAMPLES", "5"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SHOP = "shop-contract"
BUYER = "buyer-contract"
IDENTITIES = {
    "buyer": {"sub": BUYER},
    "seller": {"sub": "seller-contract", "seller_id": SHOP},
    "agent": {"sub": "agent-contract"},
    "arbitrator": {"sub": "arbitrator-contract"},
    "finance": {"sub": "finance-contract"},
    "admin": {"sub": "admin-contract"},
    "marketplace": {"sub": "marketplace"},
}


@dataclass
class Seeded:
    """Ids that exist, by the name of the parameter or body field that carries them."""

    ids: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, value: str) -> None:
        self.ids.setdefault(name, []).append(value)


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


def seed(http: httpx.Client, auth: Tokens) -> Seeded:
    """A shop, its orders, threads with a message and a file, macros, disputes in a few states, refunds of
    every kind (a credit note, a promo code), a webhook endpoint."""
    seeded = Seeded()
    as_ = {role: auth(role, **identity) for role, identity in IDENTITIES.items()}
    budget = {"refund_budget": money(5_000), "refund_on": "receipt"}
    _ok(http.put(f"/v1/sellers/{SHOP}", json={"name": "Contract shop", "settings": budget}, headers=as_["marketplace"]))
    seeded.add("seller_id", SHOP)
    seeded.add("buyer_id", BUYER)
    orders = [f"ord-contract-{n}-{uuid.uuid4().hex[:6]}" for n in range(4)]
    for order in orders:
        body = order_body(BUYER, SHOP, delivered_at="2026-01-05T10:00:00Z")
        _ok(http.put(f"/v1/orders/{order}", json=body, headers=as_["marketplace"]))
        seeded.add("order_id", order)
    upload = http.post(
        "/v1/attachments", files={"file": ("note.txt", b"a receipt", "text/plain")}, headers=as_["buyer"]
    )
    attachment = _ok(upload)["attachment_id"]
    seeded.add("attachment_id", attachment)
    thread = _ok(
        http.post(
            "/v1/threads",
            json={
                "audience": "tripartite",
                "subject": "Kettle",
                "body": "It leaks",
                "order_id": orders[0],
                "attachment_ids": [attachment],
            },
            headers=as_["buyer"],
        )
    )
    seeded.add("thread_id", thread["thread_id"])
    seeded.add("after", thread["first_message"]["message_id"])
    seeded.add("message_id", thread["first_message"]["message_id"])
    internal = {"audience": "internal", "subject": "Watch this shop", "body": "Slow answers"}
    seeded.add("thread_id", _ok(http.post("/v1/threads", json=internal, headers=as_["agent"]))["thread_id"])
    for role in ("agent", "seller"):
        macro = {"title": "Hello", "body": "Hello about {order_id}"}
        seeded.add("macro_id", _ok(http.post("/v1/macros", json=macro, headers=as_[role]))["macro_id"])
    for order in orders[1:3]:
        claim = {
            "order_id": order,
            "reason": "damaged",
            "requested": {"type": "refund_partial", "amount": money(1_000)},
            "description": "Broken on arrival",
        }
        dispute = _ok(http.post("/v1/disputes", json=claim, headers=as_["buyer"]))
        seeded.add("dispute_id", dispute["dispute_id"])
    escalated = seeded.ids["dispute_id"][1]
    act = f"/v1/disputes/{escalated}/actions"
    _ok(http.post(act, json={"action": "escalate", "note": "No answer"}, headers=as_["buyer"]))
    _ok(http.post(act, json={"action": "claim"}, headers=as_["arbitrator"]))
    for kind, amount in (("credit", 500), ("promo_code", 400), ("partial", 300)):
        grant = {"order_id": orders[3], "kind": kind, "amount": money(amount), "funded_by": "operator", "reason": "x"}
        headers = {**as_["arbitrator"], "Idempotency-Key": uuid.uuid4().hex}
        refund = _ok(http.post("/v1/refunds", json=grant, headers=headers))
        seeded.add("refund_id", refund["refund_id"])
        if refund.get("promo_code"):
            seeded.add("code", refund["promo_code"])
    endpoint = {"url": "https://hooks.example.com/sav", "event_types": ["*"]}
    seeded.add(
        "endpoint_id", _ok(http.post("/v1/webhook-endpoints", json=endpoint, headers=as_["admin"]))["endpoint_id"]
    )
    return seeded


@pytest.fixture(scope="module")
def contract(db_url: str, tmp_path_factory: pytest.TempPathFactory, auth: Tokens) -> Iterator[tuple[Service, Seeded]]:
    tmp = tmp_path_factory.mktemp("contract")
    # No network here: endpoint hosts are not resolved (the destination rules have their own tests).
    service = Service(db_url, tmp, SAV_STRIPE_WEBHOOK_SECRET="whsec_contract", SAV_WEBHOOKS_ALLOW_PRIVATE="true")
    try:
        with service.client() as http:
            yield service, seed(http, auth)
    finally:
        service.stop()


def _swap_ids(case: schemathesis.Case, seeded: Seeded, data: st.DataObject) -> None:
    """Half of the time, an id the generator made up becomes one that exists."""
    containers: list[dict[str, Any]] = [c for c in (case.path_parameters, case.query) if isinstance(c, dict)]
    if isinstance(case.body, dict):
        containers.append(case.body)
    for container in containers:
        for name in list(container):
            if name in seeded.ids and isinstance(container[name], str) and data.draw(st.booleans()):
                container[name] = data.draw(st.sampled_from(seeded.ids[name]))


@dataclass
class Found:
    """Each kind of mismatch (operation, role, mode, check) with its distinct messages and one request."""

    failures: dict[str, set[str]] = field(default_factory=dict)
    requests: int = 0

    def add(self, label: str, exc: FailureGroup, case: schemathesis.Case) -> None:
        for failure in exc.exceptions:
            title = f"{label}: {failure.title}"
            if title not in self.failures:
                self.failures[title] = {"e.g. " + case.as_curl_command()[:600]}
            if failure.message:
                self.failures[title].add(str(failure.message)[:300])


def server_errors(log: Path, offset: int) -> list[str]:
    """What the service logged as unhandled since ``offset``: the request and the exception's last lines."""
    found = []
    with log.open(encoding="utf-8", errors="replace") as lines:
        lines.seek(offset)
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("level") in ("error", "critical"):
                trace = str(entry.get("exc", "")).strip().splitlines()
                where = [t.strip() for t in trace if t.strip().startswith('File "/') and "/app/" in t][-1:]
                found.append(" | ".join([str(entry.get("msg")), *where, *trace[-1:]]))
    return sorted(set(found))


def _run(
    operation: Any, mode: GenerationMode, role: str, headers: dict[str, str], base: str, seeded: Seeded, session: Any
) -> Found:
    found = Found()
    label = f"{operation.method.upper()} {operation.path} [{role}, {mode.value}]"

    @settings(
        max_examples=EXAMPLES,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: failures are collected, not raised
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    def exercise(case: schemathesis.Case, data: st.DataObject) -> None:
        _swap_ids(case, seeded, data)
        if role != "anonymous":
            case.headers = {**(case.headers or {}), **headers}
        found.requests += 1
        response = case.call(base_url=base, session=session, timeout=30)
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as exc:
            found.add(label, exc, case)

    with contextlib.suppress(Unsatisfiable):  # nothing to make invalid (GET /health in negative mode)
        exercise()
    return found


RESOLUTION = {"type": "refund_partial", "amount": money(500), "funded_by": "seller"}
ACTIONS: list[dict[str, Any]] = [
    {"action": "propose", "resolution": RESOLUTION},
    {"action": "accept_offer"},
    {"action": "reject_offer"},
    {"action": "accept_claim"},
    {"action": "escalate", "note": "Please look"},
    {"action": "claim"},
    {"action": "request_info", "party": "buyer", "question": "A photo?"},
    {"action": "decide", "resolution": {**RESOLUTION, "at_fault": "seller"}, "rationale": "Broken"},
    {"action": "release"},
    {"action": "mark_returned", "carrier": "UPS", "tracking_number": "1Z"},
    {"action": "confirm_return", "condition": "ok"},
    {"action": "reopen", "note": "Still broken"},
    {"action": "appeal", "note": "Not our fault"},
    {"action": "withdraw"},
]


def bodies(seeded: Seeded) -> dict[str, list[Any]]:
    """Well-formed bodies for each operation that takes one: the requests a client really sends, so that
    role rules, state conflicts and business rules answer (and must answer as documented)."""
    ids = seeded.ids
    order, spare = ids["order_id"][0], ids["order_id"][-1]
    threads = [
        {"audience": a, "subject": "Hi", "body": "Hello", "order_id": order} for a in ("tripartite", "buyer_seller")
    ]
    return {
        "PUT /v1/sellers/{seller_id}": [{"name": "Contract shop", "settings": {"refund_budget": money(5_000)}}],
        "PUT /v1/orders/{order_id}": [order_body(BUYER, SHOP, delivered_at="2026-01-05T10:00:00Z")],
        "POST /v1/threads": [
            *threads,
            {"audience": "operator_seller", "subject": "Hi", "body": "Hello", "seller_id": SHOP},
            {"audience": "operator_buyer", "subject": "Hi", "body": "Hello", "buyer_id": BUYER},
            {"audience": "internal", "subject": "Hi", "body": "Hello"},
        ],
        "POST /v1/threads/{thread_id}/messages": [{"body": "Any news?"}, *({"macro_id": m} for m in ids["macro_id"])],
        "POST /v1/threads/{thread_id}/read": [{"message_id": ids["message_id"][0]}],
        "POST /v1/macros": [{"title": "Hi", "body": "Hello {buyer_name}"}, {"title": "Bad", "body": "{nope}"}],
        "POST /v1/disputes": [
            {
                "order_id": o,
                "reason": "not_received",
                "requested": {"type": "refund_full"},
                "description": "Nothing came",
            }
            for o in (order, spare)
        ],
        "POST /v1/disputes/{dispute_id}/actions": ACTIONS,
        "POST /v1/disputes/{dispute_id}/csat": [{"score": 5}],
        "POST /v1/webhook-endpoints": [{"url": "https://hooks.example.com/x", "event_types": ["dispute.opened"]}],
        "POST /v1/refunds": [
            {"order_id": o, "kind": kind, "amount": money(amount), "funded_by": funded_by, "reason": "goodwill"}
            for o in (order, spare)
            for kind, amount, funded_by in (
                ("partial", 700, "seller"),
                ("credit", 100, "operator"),
                ("partial", 9_999_999, "operator"),
            )
        ],
        "POST /v1/buyers/{buyer_id}/credit/redemptions": [
            {"order_id": order, "amount": money(100)},
            {"order_id": order, "amount": money(200)},
            {"order_id": spare, "amount": money(10**9)},
        ],
        "POST /v1/promo-codes/{code}/redemptions": [
            {"buyer_id": BUYER, "order_id": order},
            {"buyer_id": "x", "order_id": spare},
        ],
    }


def scripted(schema: Any, seeded: Seeded, role: str) -> Iterator[schemathesis.Case]:
    """Every operation with seeded ids in its path and each well-formed body, plus a reused
    Idempotency-Key with another body."""
    samples = bodies(seeded)
    for result in schema.get_all_operations():
        operation = result.ok()
        key = f"{operation.method.upper()} {operation.path}"
        if key in ("POST /v1/attachments", "POST /v1/webhooks/stripe"):
            continue  # a file and a signed event: covered by the generated cases and their own tests
        names = [p.name for p in operation.path_parameters]
        choices = [seeded.ids.get(name, ["unknown-id"]) for name in names]
        for values in itertools.product(*(c[:2] for c in choices)):
            keyed = any(p.name == "Idempotency-Key" for p in operation.headers)
            reused = f"reused-{role}-{uuid.uuid4().hex}"
            for number, body in enumerate(samples.get(key, [schemathesis.core.NOT_SET])):
                headers = {"Idempotency-Key": uuid.uuid4().hex} if keyed else {}
                yield schema.make_case(
                    operation=operation,
                    path_parameters=dict(zip(names, values, strict=True)),
                    body=body,
                    headers=headers,
                )
                if keyed and number < 2:  # the first body under a key, then another body under the same key
                    yield schema.make_case(
                        operation=operation,
                        path_parameters=dict(zip(names, values, strict=True)),
                        body=body,
                        headers={"Idempotency-Key": reused},
                    )


@pytest.mark.parametrize("role", [*IDENTITIES, "anonymous"])
def test_every_operation_answers_as_documented(role: str, contract: tuple[Service, Seeded], auth: Tokens) -> None:
    service, seeded = contract
    schema = schemathesis.openapi.from_url(f"{service.url}/schema/openapi.json")
    headers = auth(role, **IDENTITIES[role]) if role in IDENTITIES else {}
    failures: dict[str, set[str]] = {}
    requests = 0
    offset = service.log.stat().st_size
    with requests_lib.Session() as session:
        scripted_found = Found()
        for case in scripted(schema, seeded, role):
            case.headers = {**(case.headers or {}), **headers}
            scripted_found.requests += 1
            try:
                case.validate_response(case.call(base_url=service.url, session=session, timeout=30), checks=CHECKS)
            except FailureGroup as exc:
                scripted_found.add(f"{case.method} {case.operation.path} [{role}, scripted]", exc, case)
        failures.update(scripted_found.failures)
        requests += scripted_found.requests
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                found = _run(operation, mode, role, headers, service.url, seeded, session)
                failures.update(found.failures)
                requests += found.requests
    assert requests > 0
    if logged := server_errors(service.log, offset):
        failures["the service logged unhandled errors"] = set(logged)
    report = "\n".join(
        f"{title}\n    " + "\n    ".join(sorted(messages)) for title, messages in sorted(failures.items())
    )
    if failures:
        pytest.fail(f"{len(failures)} kinds of mismatch in {requests} requests:\n{report}", pytrace=False)
