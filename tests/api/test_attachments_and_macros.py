"""Attachments (checked by content, visible through messages) and macros (rendered server-side)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.factories import Tokens, World, uid

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"


@pytest.fixture
def party(client: TestClient[Any], auth: Tokens, world: World) -> dict[str, Any]:
    buyer, shop = uid("buyer"), world.seller()
    order = world.order(buyer, shop)["order_id"]
    return {
        "buyer": auth("buyer", buyer, name="Camille"),
        "seller": auth("seller", uid("member"), seller_id=shop, name="Inès"),
        "other_buyer": auth("buyer"),
        "agent": auth("agent", name="Alice"),
        "order": order,
        "shop": shop,
        "buyer_id": buyer,
    }


def upload(client: TestClient[Any], headers: dict[str, str], data: bytes, name: str, declared: str) -> Any:
    return client.post("/v1/attachments", files={"file": (name, data, declared)}, headers=headers)


@pytest.mark.parametrize(
    ("data", "declared", "detected"),
    [
        (PNG, "image/png", "image/png"),
        (PDF, "application/pdf", "application/pdf"),
        (b"hello\n", "text/plain", "text/plain"),
        (PDF, "image/png", "application/pdf"),
    ],
)
def test_upload_records_the_type_found_in_the_content(
    client: TestClient[Any], party: dict[str, Any], data: bytes, declared: str, detected: str
) -> None:
    response = upload(client, party["buyer"], data, "photo.bin", declared)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["content_type"] == detected
    assert body["size"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"MZ\x90\x00\x03 executable", "attachment.unsupported_type"),
        (b"", "validation_error"),
        (b"\xff\xfe\x00\x00binary", "attachment.unsupported_type"),
    ],
)
def test_disallowed_files_are_400(client: TestClient[Any], party: dict[str, Any], data: bytes, code: str) -> None:
    response = upload(client, party["buyer"], data, "x.exe", "image/png")
    assert response.status_code == 400
    assert response.json()["code"] == code


def test_files_over_10_mib_are_413(client: TestClient[Any], party: dict[str, Any]) -> None:
    response = upload(client, party["buyer"], b"a" * (10 * 1024 * 1024 + 1), "big.txt", "text/plain")
    assert response.status_code == 413
    response = upload(client, party["buyer"], b"a" * (12 * 1024 * 1024), "bigger.txt", "text/plain")
    assert response.status_code == 413


def test_finance_cannot_upload(client: TestClient[Any], auth: Tokens) -> None:
    assert upload(client, auth("finance"), PNG, "a.png", "image/png").status_code == 403


def test_download_follows_message_visibility(client: TestClient[Any], party: dict[str, Any]) -> None:
    attachment = upload(client, party["buyer"], PNG, "../../etc/passwd.png", "image/png").json()
    assert attachment["filename"] == "passwd.png"
    aid = attachment["attachment_id"]
    # Before it is attached: only the uploader.
    assert client.get(f"/v1/attachments/{aid}", headers=party["buyer"]).status_code == 200
    assert client.get(f"/v1/attachments/{aid}", headers=party["seller"]).status_code == 404

    thread = client.post(
        "/v1/threads",
        json={
            "audience": "buyer_seller",
            "subject": "broken",
            "body": "see photo",
            "order_id": party["order"],
            "attachment_ids": [aid],
        },
        headers=party["buyer"],
    ).json()
    assert thread["first_message"]["attachments"][0]["attachment_id"] == aid
    listed = client.get(f"/v1/threads/{thread['thread_id']}/messages", headers=party["seller"]).json()["items"]
    assert listed[0]["attachments"][0]["sha256"] == attachment["sha256"]

    download = client.get(f"/v1/attachments/{aid}", headers=party["seller"])
    assert download.status_code == 200
    assert download.content == PNG
    assert download.headers["content-type"].startswith("image/png")
    assert download.headers["x-content-type-options"] == "nosniff"
    assert "attachment" in download.headers["content-disposition"]
    assert client.get(f"/v1/attachments/{aid}", headers=party["agent"]).status_code == 200
    assert client.get(f"/v1/attachments/{aid}", headers=party["other_buyer"]).status_code == 404


def test_attachments_of_someone_else_cannot_be_attached(client: TestClient[Any], party: dict[str, Any]) -> None:
    aid = upload(client, party["other_buyer"], PNG, "a.png", "image/png").json()["attachment_id"]
    thread = client.post(
        "/v1/threads",
        json={"audience": "tripartite", "subject": "s", "body": "b", "order_id": party["order"]},
        headers=party["buyer"],
    ).json()
    response = client.post(
        f"/v1/threads/{thread['thread_id']}/messages",
        json={"body": "mine", "attachment_ids": [aid]},
        headers=party["buyer"],
    )
    assert response.status_code == 422
    assert response.json()["code"] == "attachment.not_found"


def test_macros_render_placeholders_for_the_thread(client: TestClient[Any], party: dict[str, Any]) -> None:
    macro = client.post(
        "/v1/macros",
        json={"title": "Shipped", "body": "Hello {buyer_name}, order {order_id} from {seller_name} has shipped."},
        headers=party["seller"],
    )
    assert macro.status_code == 201, macro.text
    assert macro.json()["placeholders"] == ["buyer_name", "order_id", "seller_name"]
    assert macro.json()["scope"] == f"seller:{party['shop']}"
    thread = client.post(
        "/v1/threads",
        json={"audience": "buyer_seller", "subject": "where?", "body": "where is it", "order_id": party["order"]},
        headers=party["buyer"],
    ).json()
    posted = client.post(
        f"/v1/threads/{thread['thread_id']}/messages",
        json={"macro_id": macro.json()["macro_id"]},
        headers=party["seller"],
    )
    assert posted.status_code == 201, posted.text
    shop_name = client.get(f"/v1/sellers/{party['shop']}", headers=party["seller"]).json()["name"]
    assert posted.json()["body"] == f"Hello Camille, order {party['order']} from {shop_name} has shipped."


def test_macros_are_scoped_operator_vs_shop(
    client: TestClient[Any], auth: Tokens, world: World, party: dict[str, Any]
) -> None:
    operator_macro = client.post("/v1/macros", json={"title": "Hi", "body": "Hi {author_name}"}, headers=party["agent"])
    assert operator_macro.status_code == 201
    assert operator_macro.json()["scope"] == "operator"
    other_shop = auth("seller", seller_id=world.seller())
    assert all(m["scope"] == "operator" for m in client.get("/v1/macros", headers=party["agent"]).json())
    assert client.get("/v1/macros", headers=other_shop).json() == []
    thread = client.post(
        "/v1/threads",
        json={"audience": "buyer_seller", "subject": "s", "body": "b", "order_id": party["order"]},
        headers=party["buyer"],
    ).json()
    # A shop cannot use the operator's macro (or another shop's).
    response = client.post(
        f"/v1/threads/{thread['thread_id']}/messages",
        json={"macro_id": operator_macro.json()["macro_id"]},
        headers=party["seller"],
    )
    assert response.status_code == 404
    assert client.get("/v1/macros", headers=party["buyer"]).status_code == 403
    assert client.get("/v1/macros", headers=auth("finance")).status_code == 403


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("Dear {customer}", "macro.unknown_placeholder"),
        ("Broken {order_id", "macro.invalid_template"),
        ("{0}", "macro.unknown_placeholder"),
        ("{order_id.__class__}", "macro.unknown_placeholder"),
    ],
)
def test_bad_macro_templates_are_422(client: TestClient[Any], party: dict[str, Any], body: str, code: str) -> None:
    response = client.post("/v1/macros", json={"title": "x", "body": body}, headers=party["agent"])
    assert response.status_code == 422
    assert response.json()["code"] == code


def test_macro_needing_an_order_in_a_thread_without_one_is_422(client: TestClient[Any], party: dict[str, Any]) -> None:
    macro = client.post("/v1/macros", json={"title": "o", "body": "About {order_id}"}, headers=party["agent"]).json()
    thread = client.post(
        "/v1/threads", json={"audience": "internal", "subject": "s", "body": "b"}, headers=party["agent"]
    ).json()
    response = client.post(
        f"/v1/threads/{thread['thread_id']}/messages", json={"macro_id": macro["macro_id"]}, headers=party["agent"]
    )
    assert response.status_code == 422
    assert response.json()["code"] == "macro.not_applicable"
