from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.errors import ServiceUnavailable, ValidationFailed
from app.idempotency import RequiredIdempotencyKey, idempotent
from app.keys import compound_key
from app.paging import Limit
from app.payouts import credit, provider_events, refunds, settlement
from app.payouts.gateway import InvalidSignature, UnreadableEvent
from app.payouts.reactions import Reactions
from app.payouts.schemas import (
    CreditRead,
    CreditRedemptionCreate,
    CreditRedemptionRead,
    PromoRedemptionCreate,
    PromoRedemptionRead,
    ProviderEventRead,
    ProviderEventStatus,
    RefundCreate,
    RefundRead,
)
from app.payouts.stripe_escrow import parse_webhook
from app.permissions.guards import allow
from app.schemas import Page, StrictBody, decode
from app.settings import Settings


class RefundController(Controller):
    path = "/v1/refunds"
    tags = ["refunds"]

    @post("/", guards=[allow("refund", "write")], summary="Grant a refund from escrow (Idempotency-Key required)")
    async def grant(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        reactions: NamedDependency[Reactions],
        data: StrictBody[RefundCreate],
        idempotency_key: RequiredIdempotencyKey,
    ) -> Response[RefundRead]:
        async def call() -> tuple[int, RefundRead]:
            refund = await refunds.grant_refund(
                db_session,
                actor=request.user,
                data=decode(RefundCreate, data),
                # The caller's whole identity: two shops' members with one user id and one key are two refunds.
                source_key=compound_key("api", *request.user.key_parts, idempotency_key.strip()),
                settings=settings,
                # Money the order's disputes committed (offers, accepted claims) counts against the limits.
                committed=reactions.committed,
                promo_issued=reactions.promo_issued,
            )
            return 201, refund

        return await idempotent(db_session, request, key=idempotency_key, call=call)

    @get("/", guards=[allow("order", "read")], summary="Refunds the caller may see, newest first")
    async def list_refunds(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        limit: Limit = 50,
        cursor: Annotated[str | None, QueryParameter()] = None,
        order_id: Annotated[str | None, QueryParameter()] = None,
        status: Annotated[Literal["pending", "succeeded", "failed"] | None, QueryParameter()] = None,
    ) -> Page[RefundRead]:
        return await refunds.list_refunds(
            db_session, actor=request.user, order_id=order_id, status=status, limit=limit, cursor=cursor
        )

    @get("/{refund_id:str}", guards=[allow("order", "read")], summary="One refund")
    async def get_refund(
        self, request: Request[Actor, str, Any], db_session: NamedDependency[AsyncSession], refund_id: FromPath[str]
    ) -> RefundRead:
        return await refunds.get_refund(db_session, actor=request.user, refund_id=refund_id)


class BuyerCreditController(Controller):
    path = "/v1/buyers/{buyer_id:str}/credit"
    tags = ["refunds"]

    @get("/", summary="A buyer's store credit balance and credit notes")
    async def get_credit(
        self, request: Request[Actor, str, Any], db_session: NamedDependency[AsyncSession], buyer_id: FromPath[str]
    ) -> CreditRead:
        return await credit.get_credit(db_session, actor=request.user, buyer_id=buyer_id)

    @post("/redemptions", summary="Spend store credit on an order (the marketplace's checkout; once per order)")
    async def redeem(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        buyer_id: FromPath[str],
        data: StrictBody[CreditRedemptionCreate],
    ) -> Response[CreditRedemptionRead]:
        body = decode(CreditRedemptionCreate, data)
        result, created = await credit.redeem_credit(db_session, actor=request.user, buyer_id=buyer_id, data=body)
        return Response(result, status_code=201 if created else 200)


class PromoCodeController(Controller):
    path = "/v1/promo-codes"
    tags = ["refunds"]

    @post("/{code:str}/redemptions", summary="Redeem a promo code on an order (the marketplace's checkout)")
    async def redeem(
        self,
        request: Request[Actor, str, Any],
        db_session: NamedDependency[AsyncSession],
        code: FromPath[str],
        data: StrictBody[PromoRedemptionCreate],
    ) -> Response[PromoRedemptionRead]:
        body = decode(PromoRedemptionCreate, data)
        result, created = await credit.redeem_promo(db_session, actor=request.user, code=code, data=body)
        return Response(result, status_code=201 if created else 200)


class StripeWebhookController(Controller):
    path = "/v1/webhooks/stripe"
    tags = ["refunds"]

    @post(
        "/",
        status_code=200,
        opt={"exclude_from_auth": True},  # Stripe authenticates with its signature, not a bearer token
        summary="Stripe events (signature verified; each event applied once)",
    )
    async def receive(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        settings: NamedDependency[Settings],
        reactions: NamedDependency[Reactions],
    ) -> dict[str, str]:
        if not settings.stripe_webhook_secret:
            raise ServiceUnavailable("SAV_STRIPE_WEBHOOK_SECRET is not set", code="stripe.webhooks_disabled")
        try:
            event = parse_webhook(
                await request.body(), request.headers.get("stripe-signature"), settings.stripe_webhook_secret
            )
        except InvalidSignature as exc:
            raise ValidationFailed(f"invalid Stripe-Signature: {exc}", field="header:Stripe-Signature") from None
        except UnreadableEvent as exc:
            raise ValidationFailed(f"not a Stripe event: {exc}", field="body") from None
        outcome = await settlement.apply_provider_event(db_session, event, on_settled=reactions.refund_settled)
        return {"received": event.id, "outcome": outcome}


class ProviderEventController(Controller):
    path = "/v1/provider-events"
    tags = ["refunds"]

    @get("/", guards=[allow("provider_event", "read")], summary="Payment provider events received, newest first")
    async def list_events(
        self,
        db_session: NamedDependency[AsyncSession],
        limit: Limit = 50,
        cursor: Annotated[str | None, QueryParameter()] = None,
        status: Annotated[ProviderEventStatus | None, QueryParameter()] = None,
    ) -> Page[ProviderEventRead]:
        return await provider_events.list_provider_events(db_session, status=status, limit=limit, cursor=cursor)
