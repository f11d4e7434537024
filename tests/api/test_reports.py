"""Reports over HTTP: who sees which shop's figures, the CSV export, and the moments the KPIs read being
recorded when they happen (a message of the shop or the operator, a claim, a decision)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.testing import TestClient

from app.reports.export import COLUMNS
from tests.factories import Case, Tokens, World, uid


def _recent() -> str:
    """The start of a window holding what the test just made (the last day)."""
    return (datetime.now(UTC) - timedelta(days=1)).isoformat().replace("+00:00", "Z")


def kpis(client: TestClient[Any], who: dict[str, str], **params: str) -> Any:
    return client.get("/v1/reports/kpis", params={"from": _recent(), **params}, headers=who)


def csv_rows(client: TestClient[Any], who: dict[str, str], **params: str) -> list[dict[str, str]]:
    response = kpis(client, who, format="csv", **params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    reader = csv.DictReader(io.StringIO(response.text))
    assert reader.fieldnames == COLUMNS
    return list(reader)


def test_a_seller_gets_its_own_shop_whatever_it_asks_and_another_shops_scorecard_is_404(
    client: TestClient[Any], auth: Tokens, world: World
) -> None:
    case = Case(client, auth, world)
    case.open()
    other = world.seller()
    mine = kpis(client, case.seller, seller_id=other)
    assert mine.status_code == 200, mine.text
    assert (mine.json()["seller_id"], mine.json()["disputes_opened"]) == (case.shop, 1)
    assert client.get(f"/v1/sellers/{other}/metrics", headers=case.seller).status_code == 404
    own = client.get(f"/v1/sellers/{case.shop}/metrics", params={"from": _recent()}, headers=case.seller)
    assert own.status_code == 200, own.text
    assert (own.json()["orders"], own.json()["alerts"]) == (1, [])
    for who in (case.agent, case.finance):
        assert kpis(client, who, seller_id=case.shop).json()["disputes_opened"] == 1
        assert client.get(f"/v1/sellers/{case.shop}/metrics", headers=who).status_code == 200
    assert client.get(f"/v1/sellers/{uid('shop')}/metrics", headers=case.agent).status_code == 404
    for who in (case.buyer, auth.marketplace):
        assert kpis(client, who).json()["code"] == "forbidden"
        assert client.get(f"/v1/sellers/{case.shop}/metrics", headers=who).status_code == 403


def test_a_bad_window_is_a_400_naming_the_parameter(client: TestClient[Any], auth: Tokens) -> None:
    agent = auth("agent")
    backwards = client.get(
        "/v1/reports/kpis", params={"from": "2030-01-02T00:00:00Z", "to": "2030-01-01T00:00:00Z"}, headers=agent
    )
    assert (backwards.status_code, backwards.json()["code"]) == (400, "validation_error")
    assert client.get("/v1/reports/kpis", params={"from": "yesterday"}, headers=agent).status_code == 400
    assert client.get("/v1/reports/kpis", params={"format": "xml"}, headers=agent).status_code == 400
    too_long = client.get("/v1/reports/kpis", params={"from": "2020-01-01T00:00:00Z"}, headers=agent)
    assert too_long.status_code == 400  # to defaults to now: more than 366 days


def test_the_csv_streams_every_dispute_of_the_population_without_conversation_text(
    client: TestClient[Any], auth: Tokens, world: World
) -> None:
    shop = world.seller()
    cases = []
    for _ in range(3):
        case = Case(client, auth, world)
        case.order = world.order(case.buyer_id, shop)
        case.order_id = case.order["order_id"]
        case.shop = shop
        case.open(description="A secret description nobody exports.")
        cases.append(case)
    rows = csv_rows(client, auth("finance"), seller_id=shop)
    assert sorted(r["dispute_id"] for r in rows) == sorted(c.dispute["dispute_id"] for c in cases)
    assert {(r["seller_id"], r["status"], r["first_response_at"], r["sla_breached"]) for r in rows} == {
        (shop, "open", "", "false")
    }
    assert all("secret" not in value for r in rows for value in r.values())


def test_the_shops_message_and_the_operators_claim_and_decision_are_recorded_when_they_happen(
    client: TestClient[Any], auth: Tokens, world: World
) -> None:
    case = Case(client, auth, world)
    case.open()
    thread = case.dispute["thread_id"]
    # A buyer's message is no response; the shop's message in the thread the buyer reads is.
    assert (
        client.post(f"/v1/threads/{thread}/messages", json={"body": "Any news?"}, headers=case.buyer).status_code == 201
    )
    [row] = csv_rows(client, case.agent, seller_id=case.shop)
    assert row["first_response_at"] == ""
    assert (
        client.post(f"/v1/threads/{thread}/messages", json={"body": "Looking."}, headers=case.seller).status_code == 201
    )
    [row] = csv_rows(client, case.agent, seller_id=case.shop)
    assert row["first_response_at"] != ""
    assert float(row["first_response_seconds"]) >= 0
    case.act(case.seller, "escalate", note="We disagree.")
    [row] = csv_rows(client, case.agent, seller_id=case.shop)
    assert (row["first_escalated_at"] != "", row["first_operator_response_at"]) == (True, "")
    case.act(case.arbitrator, "claim")
    case.act(
        case.arbitrator,
        "decide",
        resolution={"type": "replacement", "return_required": True, "at_fault": "seller"},
        rationale="Defective on arrival.",
    )
    [row] = csv_rows(client, case.agent, seller_id=case.shop)
    assert row["first_operator_response_at"] != ""
    assert (row["at_fault"], row["return_required"], row["first_resolved_at"]) == ("seller", "true", "")
    figures = kpis(client, case.agent, seller_id=case.shop).json()
    assert figures["decisions_by_fault"] == {"seller": 1, "buyer": 0, "carrier": 0, "operator": 0, "none": 0}
    assert figures["sla_breach_rate"] == 0.0
    assert figures["first_response_seconds"]["p50"] is not None
