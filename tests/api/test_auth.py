"""Every way a token can be wrong answers 401 with a problem document, before any handler runs."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from litestar.testing import TestClient

from app.settings import Settings
from tests.factories import TEST_SECRET, Tokens


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _token(claims: dict[str, Any], secret: str = TEST_SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def _claims(**over: Any) -> dict[str, Any]:
    claims = {"sub": "buyer-1", "role": "buyer", "name": "B", "exp": int(time.time()) + 600}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


BAD_TOKENS = {
    "expired": (_token(_claims(exp=int(time.time()) - 10)), "auth.expired_token"),
    "wrong secret": (_token(_claims(), secret="another-secret-of-sufficient-length-xx"), "auth.invalid_token"),
    "alg none": (_b64({"alg": "none", "typ": "JWT"}) + "." + _b64(_claims()) + ".", "auth.invalid_token"),
    "malformed": ("not-a-jwt", "auth.invalid_token"),
    "unknown role": (_token(_claims(role="superuser")), "auth.invalid_token"),
    "system role": (_token(_claims(role="system")), "auth.invalid_token"),
    "seller without seller_id": (_token(_claims(role="seller")), "auth.invalid_token"),
    "no exp": (_token(_claims(exp=None)), "auth.invalid_token"),
    "no sub": (_token(_claims(sub=None)), "auth.invalid_token"),
    "empty sub": (_token(_claims(sub="  ")), "auth.invalid_token"),
    "HS512 instead of HS256": (_token(_claims(), algorithm="HS512"), "auth.invalid_token"),
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_bad_token_is_rejected_with_401(client: TestClient[Any], case: str) -> None:
    token, code = BAD_TOKENS[case]
    response = client.get("/v1/orders/whatever", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer   "])
def test_missing_or_non_bearer_header_is_401(client: TestClient[Any], header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = client.get("/v1/orders/x", headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] in {"auth.missing_token", "auth.invalid_token"}


def test_probes_and_docs_need_no_token(client: TestClient[Any]) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}
    assert client.get("/schema/openapi.json").status_code == 200
    # /metrics needs its scrape token: tests/api/test_edge.py


def test_a_valid_token_reaches_the_handler(client: TestClient[Any], auth: Tokens) -> None:
    response = client.get("/v1/orders/does-not-exist", headers=auth("agent"))
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_tokens_minted_with_the_cli_helper_carry_the_seller(settings: Settings) -> None:
    from app.auth import TokenDecoder, issue_token

    actor = TokenDecoder(settings).decode(issue_token(settings, sub="u1", role="seller", seller_id="shop-1"))
    assert (actor.id, actor.role, actor.seller_id) == ("u1", "seller", "shop-1")


def test_a_remembered_token_is_still_refused_once_expired(settings: Settings) -> None:
    from app.auth import TokenDecoder, issue_token
    from app.errors import Unauthenticated

    decoder = TokenDecoder(settings)
    token = issue_token(settings, sub="u1", role="agent", ttl_seconds=1)
    assert decoder.decode(token).id == "u1"
    assert decoder.decode(token).id == "u1"  # from memory
    time.sleep(1.2)
    with pytest.raises(Unauthenticated):
        decoder.decode(token)


def test_the_decoder_gives_the_tokens_expiry_and_remembers_it(settings: Settings) -> None:
    from app.auth import TokenDecoder, issue_token

    decoder = TokenDecoder(settings)
    token = issue_token(settings, sub="u1", role="buyer", ttl_seconds=600)
    exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    assert decoder.decode_with_expiry(token) == (decoder.decode(token), float(exp))
    decoder._verify = None  # type: ignore[assignment,method-assign]  # a second verification would fail
    assert decoder.decode_with_expiry(token)[1] == float(exp)
