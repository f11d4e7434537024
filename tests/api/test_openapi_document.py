"""The OpenAPI document says what the service does (statuses, problem documents, security, media types,
names), and the API explorer works without any other host. The document is checked against the running
service by tests/e2e/test_openapi_contract.py; these are the fast, structural promises."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar.testing import TestClient

from app.auth import PUBLIC_PATHS
from app.db import ROOT
from app.openapi import OPERATIONS
from tests.factories import Tokens, World, money

METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="module")
def document(client: TestClient[Any]) -> dict[str, Any]:
    response = client.get("/schema/openapi.json")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def operations(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{method.upper()} {path}": item[method]
        for path, item in document["paths"].items()
        for method in METHODS
        if method in item
    }


def is_public(path: str) -> bool:
    return any(re.search(pattern, path) for pattern in PUBLIC_PATHS)


def test_every_operation_is_described_and_the_table_names_no_missing_one(document: dict[str, Any]) -> None:
    assert set(operations(document)) == set(OPERATIONS)


def test_component_names_carry_no_python_module_path(document: dict[str, Any]) -> None:
    names = set(document["components"]["schemas"])
    assert not [name for name in names if "." in name]
    assert {"Page_ThreadRead_", "Page_DisputeRead_", "Problem", "ThreadRead"} <= names
    refs = re.findall(r'"\$ref": ?"#/components/schemas/([^"]+)"', str(document).replace("'", '"'))
    assert set(refs) <= names


def test_every_error_is_a_problem_document_and_litestars_own_400_shape_is_gone(document: dict[str, Any]) -> None:
    for key, operation in operations(document).items():
        for status, response in operation["responses"].items():
            if int(status) >= 400:
                assert list(response["content"]) == ["application/problem+json"], (key, status)
                assert response["content"]["application/problem+json"]["schema"] == {
                    "$ref": "#/components/schemas/Problem"
                }
                assert "Codes: `" in response["description"], (key, status)
    assert "Validation Exception" not in str(document)  # Litestar's default 400 body


def test_authenticated_operations_answer_401_and_public_ones_need_no_token(document: dict[str, Any]) -> None:
    assert document["security"] == [{"bearer": []}]
    for key, operation in operations(document).items():
        path = key.split(" ", 1)[1]
        if path == "/metrics":  # its own scrape token, not the marketplace's JWT
            assert operation["security"] == [{"metrics_token": []}], key
            assert "401" in operation["responses"], key
        elif is_public(path):
            assert operation["security"] == [], key
            assert "401" not in operation["responses"], key
        else:
            assert "security" not in operation, key
            assert "`auth.missing_token`" in operation["responses"]["401"]["description"], key
            assert operation["responses"]["401"]["headers"]["WWW-Authenticate"]["required"] is True


def test_success_statuses_are_the_ones_the_service_answers(document: dict[str, Any]) -> None:
    ops = operations(document)

    def successes(key: str) -> set[str]:
        return {status for status in ops[key]["responses"] if status.startswith("2")}

    assert successes("POST /v1/disputes/{dispute_id}/actions") == {"200"}
    assert successes("POST /v1/disputes") == {"201"}
    assert successes("PUT /v1/orders/{order_id}") == {"200", "201"}
    assert successes("PUT /v1/sellers/{seller_id}") == {"200", "201"}
    assert successes("POST /v1/promo-codes/{code}/redemptions") == {"200", "201"}
    assert successes("DELETE /v1/webhook-endpoints/{endpoint_id}") == {"204"}


def test_the_idempotency_key_is_required_on_refunds_only(document: dict[str, Any]) -> None:
    for key, operation in operations(document).items():
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "Idempotency-Key":
                assert parameter["required"] is (key == "POST /v1/refunds"), key
                assert parameter["schema"]["maxLength"] == 255


def test_a_refund_without_an_idempotency_key_is_a_400_problem(
    client: TestClient[Any], auth: Tokens, world: World
) -> None:
    order = world.order()
    body = {"order_id": order["order_id"], "kind": "partial", "amount": money(100), "funded_by": "operator"}
    response = client.post("/v1/refunds", json={**body, "reason": "x"}, headers=auth("arbitrator"))
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "validation_error"


def test_content_that_is_not_json_is_documented_as_what_it_is(document: dict[str, Any]) -> None:
    ops = operations(document)
    assert list(ops["GET /metrics"]["responses"]["200"]["content"]) == ["text/plain"]
    download = ops["GET /v1/attachments/{attachment_id}"]["responses"]["200"]["content"]
    assert {"image/png", "application/pdf", "text/plain"} <= set(download)
    assert "application/json" not in download
    upload = ops["POST /v1/attachments"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert upload["required"] == ["file"]


def test_every_error_code_the_code_raises_is_documented(document: dict[str, Any]) -> None:
    """A new code=... in app/ must appear in the document and in docs/api.md."""
    raised = set()
    for source in (ROOT / "app").rglob("*.py"):
        raised |= set(re.findall(r'\bcode="([a-z_]+\.[a-z_.]+)"', source.read_text(encoding="utf-8")))
    raised |= {f"dispute.{action}_not_allowed" for action in ("reopen", "appeal", "decide")}
    text = str(document)
    docs = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert raised, "the scan found no code"
    assert sorted(code for code in raised if f"`{code}`" not in text) == []
    assert sorted(code for code in raised if f"`{code}`" not in docs) == []


@pytest.mark.parametrize("page", ["/schema", "/schema/swagger"])
def test_the_api_explorer_loads_only_from_this_server(client: TestClient[Any], page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    html = response.text
    head = html.split("<body", 1)[0]
    links = re.findall(r"""(?:src|href)=["']([^"']+)""", head)
    assert links, head
    for link in links:
        assert link.startswith("/schema/assets/"), link
        asset = client.get(link)
        assert asset.status_code == 200, link
        assert len(asset.content) > 1000
    assert not re.search(r"""(?:src|href)=["']https?://""", html)
    assert "SwaggerUIBundle(" in html


def test_unknown_assets_are_404(client: TestClient[Any]) -> None:
    assert client.get("/schema/assets/nothing-here.js").status_code == 404


def test_no_project_file_links_outside_the_repository() -> None:
    """A clone has no ../shared: the project's docs stand alone."""
    offenders = []
    for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "app").rglob("*")]:
        if path.is_file() and path.suffix in {".md", ".py", ".csv", ".conf"}:
            text = path.read_text(encoding="utf-8")
            if "../shared" in text or re.search(r"\bSPEC\b", text):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
