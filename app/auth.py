"""Bearer JWT -> :class:`Actor`, resolved once per request by a Litestar authentication middleware.

Tokens are issued by the marketplace: HS256 with ``SAV_JWT_SECRET`` by default, RS256 with a public key
file or a JWKS file as an option. PyJWT does the cryptography; ``alg: none`` and any algorithm other than
the configured one are refused because the accepted algorithm list has exactly one entry.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from enum import StrEnum
from pathlib import Path
from typing import Any

import jwt
import msgspec
from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.middleware.base import DefineMiddleware

from app.errors import Unauthenticated
from app.keys import compound_key
from app.schemas import id_problem, text_problem
from app.settings import Settings


class Role(StrEnum):
    BUYER = "buyer"
    SELLER = "seller"
    AGENT = "agent"
    ARBITRATOR = "arbitrator"
    FINANCE = "finance"
    ADMIN = "admin"
    MARKETPLACE = "marketplace"
    SYSTEM = "system"  # timers and workers; never accepted from a token


TOKEN_ROLES = frozenset(r.value for r in Role if r is not Role.SYSTEM)
OPERATOR_STAFF = frozenset({Role.AGENT, Role.ARBITRATOR, Role.ADMIN})


class Actor(msgspec.Struct, frozen=True):
    id: str
    role: Role
    seller_id: str = ""
    name: str = ""

    @property
    def is_operator_staff(self) -> bool:
        return self.role in OPERATOR_STAFF

    @property
    def key_parts(self) -> tuple[str, str, str]:
        return (self.role.value, self.seller_id, self.id)

    @property
    def key(self) -> str:
        """Who this is, as one string that no other caller shares (uploads, read cursors, idempotency)."""
        return compound_key(*self.key_parts)


# The service itself: timers, workers, and the author of the messages it writes (a promo code to its
# buyer). Shown to readers by this name, with the role "system"; never a made-up member of staff.
SYSTEM_ACTOR = Actor(id="system", role=Role.SYSTEM, name="Marketplace after-sales")


class TokenDecoder:
    """Verifies a token and maps its claims to an Actor. Built once per application.

    Clients send the same token on every request until it expires, and verifying one costs more than the
    rest of a cheap request (JSON parsing, HMAC key preparation, signature). So a verified token is
    remembered with its expiry; a remembered token is still refused once expired.
    """

    CACHE_SIZE = 10_000

    def __init__(self, settings: Settings) -> None:
        self._verified: OrderedDict[str, tuple[Actor, float]] = OrderedDict()
        self.algorithm = settings.jwt_algorithm
        self.audience = settings.jwt_audience or None
        self._jwks: jwt.PyJWKSet | None = None
        self._key: Any
        if self.algorithm == "HS256":
            self._key = settings.jwt_secret
        elif settings.jwt_jwks_file:
            self._jwks = jwt.PyJWKSet.from_json(Path(settings.jwt_jwks_file).read_text(encoding="utf-8"))
        else:
            self._key = Path(settings.jwt_public_key_file).read_text(encoding="utf-8")

    def _key_for(self, token: str) -> Any:
        if self._jwks is None:
            return self._key
        kid = jwt.get_unverified_header(token).get("kid")
        for jwk in self._jwks.keys:
            if jwk.key_id == kid or (kid is None and len(self._jwks.keys) == 1):
                return jwk.key
        raise Unauthenticated("the token's key id is not in the configured JWKS", code="auth.invalid_token")

    def decode(self, token: str) -> Actor:
        return self.decode_with_expiry(token)[0]

    def decode_with_expiry(self, token: str) -> tuple[Actor, float]:
        """The actor and the token's ``exp`` (Unix seconds): a long-lived connection ends there."""
        remembered = self._verified.get(token)
        if remembered is not None:
            if time.time() < remembered[1]:
                return remembered
            del self._verified[token]
        verified = self._verify(token)
        self._verified[token] = verified
        if len(self._verified) > self.CACHE_SIZE:
            self._verified.popitem(last=False)
        return verified

    def _verify(self, token: str) -> tuple[Actor, float]:
        try:
            claims = jwt.decode(
                token,
                self._key_for(token),
                algorithms=[self.algorithm],
                audience=self.audience,
                options={"require": ["sub", "role", "exp"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired", code="auth.expired_token") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"the token is not valid: {exc}", code="auth.invalid_token") from None
        return actor_from_claims(claims), float(claims["exp"])


MAX_NAME_LENGTH = 200


def actor_from_claims(claims: dict[str, Any]) -> Actor:
    """Claims follow the same id and text policy as request bodies (app/schemas.py): a claim that does
    not is a 401, never a value that reaches a query or a key."""
    sub, role = claims.get("sub"), claims.get("role")
    if not isinstance(sub, str) or (problem := id_problem(sub, user=True)):
        raise Unauthenticated(
            f"the token's sub claim must be a user id: {problem if isinstance(sub, str) else 'not a string'}",
            code="auth.invalid_token",
        )
    if not isinstance(role, str) or role not in TOKEN_ROLES:
        raise Unauthenticated("the token's role claim is not a known role", code="auth.invalid_token")
    seller_id = ""
    if role == Role.SELLER:
        seller_id = claims.get("seller_id") or ""
        if not isinstance(seller_id, str) or not seller_id:
            raise Unauthenticated("a seller token must carry a seller_id claim", code="auth.invalid_token")
        if problem := id_problem(seller_id):
            raise Unauthenticated(f"the token's seller_id claim {problem}", code="auth.invalid_token")
    name = claims.get("name")
    if name is None:
        name = sub
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH or text_problem(name):
        raise Unauthenticated(
            f"the token's name claim must be 1 to {MAX_NAME_LENGTH} characters of text", code="auth.invalid_token"
        )
    return Actor(id=sub, role=Role(role), seller_id=seller_id, name=name)


def issue_token(
    settings: Settings, *, sub: str, role: str, seller_id: str = "", name: str = "", ttl_seconds: int = 86_400
) -> str:
    """Mint an HS256 token (the ``sav token`` command, the demo, tests)."""
    if settings.jwt_algorithm != "HS256":
        raise ValueError("tokens can only be minted here with HS256; RS256 tokens come from the marketplace")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "role": role, "name": name or sub, "iat": now, "exp": now + ttl_seconds}
    if seller_id:
        claims["seller_id"] = seller_id
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


def bearer_token(header: str | None) -> str:
    if not header:
        raise Unauthenticated("an Authorization: Bearer <token> header is required", code="auth.missing_token")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'", code="auth.invalid_token")
    return token.strip()


class JWTAuthMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        decoder: TokenDecoder = connection.app.state.token_decoder
        token = bearer_token(connection.headers.get("authorization"))
        return AuthenticationResult(user=decoder.decode(token), auth=token)


# Routes reachable without a token: probes, docs, metrics, provider webhooks (signed), and the
# WebSocket endpoint (it authenticates with ?token= or its first frame).
PUBLIC_PATHS = ["^/health$", "^/ready$", "^/schema", "^/metrics$", "^/v1/webhooks/", "^/v1/ws$"]

auth_middleware = DefineMiddleware(JWTAuthMiddleware, exclude=PUBLIC_PATHS)
