"""The edge's contract: query parameters are as strict as bodies, media types are checked, problem documents
keep RFC 9457's members, API answers are never sniffed nor cached, /metrics needs its scrape token, and two
callers whose ids join to the same string stay two callers."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from litestar.testing import TestClient

from app.errors import problem_response
from app.settings import Settings
from tests.factories import METRICS_TOKEN, Tokens, World, make_settings, money, uid


def test_an_unknown_query_parameter_is_refused_naming_it(client: TestClient[Any], auth: Tokens) -> None:
    response = client.get("/v1/disputes", params={"priority": "critical", "limit": 5}, headers=auth("agent"))
    assert response.status_code == 400
    problem = response.json()
    assert problem["errors"] == [{"field": "query:priority", "message": "unknown query parameter"}]
    assert "'priority'" in problem["detail"]
    assert "seller_id" in problem["detail"]  # and it says what the operation accepts


def test_a_parameter_declared_by_another_operation_is_still_unknown_here(client: TestClient[Any], auth: Tokens) -> None:
    # `priority` filters the queue, not the dispute list.
    assert client.get("/v1/queue", params={"priority": "critical"}, headers=auth("agent")).status_code == 200
    assert client.get("/v1/disputes", params={"priority": "critical"}, headers=auth("agent")).status_code == 400


def test_a_single_valued_query_parameter_given_twice_is_refused(client: TestClient[Any], auth: Tokens) -> None:
    response = client.get("/v1/disputes?limit=1&limit=200", headers=auth("agent"))
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "query:limit"


def test_query_errors_name_the_field_query_colon_name(client: TestClient[Any], auth: Tokens) -> None:
    response = client.get("/v1/disputes", params={"limit": "abc"}, headers=auth("agent"))
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "query:limit"
    assert "ParamType" not in response.text


def test_a_form_encoded_body_to_a_json_operation_is_415(client: TestClient[Any], auth: Tokens) -> None:
    response = client.put(f"/v1/sellers/{uid('shop')}", data={"name": "x"}, headers=auth.marketplace)
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert response.json()["accepted"] == "application/json"


def test_json_sent_to_the_upload_is_415_in_words_not_python_types(client: TestClient[Any], auth: Tokens) -> None:
    response = client.post("/v1/attachments", json={"file": "x"}, headers=auth("buyer"))
    assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type")
    empty = client.post(
        "/v1/attachments",
        content=b"--xx--\r\n",
        headers={**auth("buyer"), "Content-Type": "multipart/form-data; boundary=xx"},
    )
    assert empty.status_code == 400
    assert empty.json()["errors"] == [{"field": "file", "message": "file: a multipart part named `file` is required"}]
    assert "class" not in empty.text


def test_a_json_body_without_a_content_type_is_read_as_json(client: TestClient[Any], auth: Tokens) -> None:
    response = client.put(f"/v1/sellers/{uid('shop')}", content=b'{"name": "x"}', headers=auth.marketplace)
    assert response.status_code == 201, response.text


def test_extension_members_never_replace_the_standard_ones() -> None:
    response = problem_response(409, "dispute.invalid_transition", "Conflict", "no", {"status": "open", "type": "x"})
    assert response.content["status"] == 409
    assert response.content["type"].endswith("/dispute/invalid_transition")


@pytest.mark.parametrize(
    ("method", "path", "who", "status"),
    [
        ("GET", "/v1/disputes", "agent", 200),
        ("GET", "/v1/orders/ord-missing", "agent", 404),
        ("GET", "/v1/no-such-route", "agent", 404),
        ("GET", "/v1/disputes", "", 401),
        ("GET", "/v1/disputes?limit=0", "agent", 400),
    ],
)
def test_every_api_answer_is_nosniff_and_not_cached(
    client: TestClient[Any], auth: Tokens, method: str, path: str, who: str, status: int
) -> None:
    response = client.request(method, path, headers=auth(who) if who else {})
    assert response.status_code == status
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


def test_a_download_carries_nosniff_once(client: TestClient[Any], auth: Tokens) -> None:
    buyer = auth("buyer")
    uploaded = client.post("/v1/attachments", files={"file": ("a.txt", b"hello", "text/plain")}, headers=buyer).json()
    download = client.get(f"/v1/attachments/{uploaded['attachment_id']}", headers=buyer)
    assert download.status_code == 200
    assert download.headers.get_list("x-content-type-options") == ["nosniff"]
    assert download.headers["cache-control"] == "no-store"


def test_metrics_need_the_scrape_token(client: TestClient[Any], auth: Tokens) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong-token-of-some-length"}).status_code == 401
    assert client.get("/metrics", headers=auth("admin")).status_code == 401  # a user's token is not a scrape token
    scraped = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scraped.status_code == 200
    assert "sav_requests_total" in scraped.text


def test_metrics_are_off_without_a_token(settings: Settings, tmp_path: Any) -> None:
    from app.main import create_app

    quiet = make_settings(settings.database_url, SAV_ATTACHMENTS_DIR=str(tmp_path))
    with TestClient(app=create_app(quiet, configure_logs=False), raise_server_exceptions=False) as client:
        response = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")


def test_two_shops_members_with_one_user_id_and_one_key_get_two_refunds(
    client: TestClient[Any], auth: Tokens, world: World
) -> None:
    """A refund granted through the API is keyed by the whole caller: the same user id and Idempotency-Key
    in two shops are two refunds, not the first shop's refund shown to the second."""
    key, member = uuid.uuid4().hex, uid("member")
    granted = []
    for _ in range(2):
        shop = world.seller(refund_budget=money(2_000))
        order_id = world.order(uid("buyer"), shop)["order_id"]
        response = client.post(
            "/v1/refunds",
            json={"order_id": order_id, "kind": "partial", "amount": money(500), "funded_by": "seller", "reason": "r"},
            headers={**auth("seller", member, seller_id=shop), "Idempotency-Key": key},
        )
        assert response.status_code == 201, response.text
        granted.append((order_id, response.json()))
    (first_order, first), (second_order, second) = granted
    assert (first["order_id"], second["order_id"]) == (first_order, second_order)
    assert first["refund_id"] != second["refund_id"]
