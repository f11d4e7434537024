"""A dispute's money: resolutions checked by the money rules, their refunds granted and settled.

Every call from disputes into app/payouts is in this module (the rules, the order's money, the refund
grant), so the money side of a dispute can be read, and re-pointed, in one place:

- :func:`check_requested`: what the buyer asks for when opening a dispute.
- :func:`check_resolution`: an offer (``propose``), an accepted claim or a decision (``decide``) is
  checked by the same rules as ``POST /v1/refunds`` (app/payouts/rules.py): its amount against what the
  dispute can still refund, its funding and the caller's per-order limit against what the order already
  used, under the order's row lock.
- :func:`committed_on_order`: what the order's disputes committed but have not granted yet; the refunds
  controller passes it to ``grant_refund`` so an offer and a direct refund cannot together pass a limit.
- :func:`grant_resolution_refund`: a money resolution becomes its refund, credit note or promo code when
  the dispute enters ``resolving`` (in the action's transaction).
- :func:`reallocate_appeal`: an appeal decided in the shop's favour moves the cost of the appealed
  decision's compensation from the shop to the operator (in the decision's transaction).
- :func:`refund_settled`: the payouts worker (and the provider's webhooks) settled that refund: the
  dispute resolves, or goes back to the operator flagged. Wired by app/worker.py and the refunds
  controller as their ``on_settled`` callback.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor, Role
from app.disputes import transitions
from app.disputes.models import Dispute, DisputeEvent
from app.disputes.promo_notice import tell_buyer
from app.disputes.schemas import Requested, Resolution, ResolutionType
from app.disputes.workflow import MONEY_TYPES, Action, Status
from app.errors import BusinessRuleViolation, ValidationFailed
from app.ledger.views import order_money
from app.money import Money, require_currency
from app.payouts import reallocation, refunds, rules
from app.payouts import service as payouts
from app.payouts.models import Refund
from app.payouts.schemas import RefundCreate, RefundKind, RefundRead, RefundStatus
from app.sellers.models import Seller
from app.settings import Settings

# A dispute's money resolution, as the compensation kind it becomes (app/payouts/rules.py).
COMPENSATION_KIND = {
    ResolutionType.REFUND_FULL: "full",
    ResolutionType.REFUND_PARTIAL: "partial",
    ResolutionType.CREDIT: "credit",
    ResolutionType.PROMO_CODE: "promo_code",
}
# ... and the refund granted for it. A full refund is granted as partial unless it is the whole rest of
# the order (a dispute about some lines refunds those lines).
REFUND_KIND = {
    ResolutionType.REFUND_FULL: RefundKind.PARTIAL,
    ResolutionType.REFUND_PARTIAL: RefundKind.PARTIAL,
    ResolutionType.CREDIT: RefundKind.CREDIT,
    ResolutionType.PROMO_CODE: RefundKind.PROMO_CODE,
}
# Where a dispute holds money it committed but has not granted yet: an open offer, an accepted resolution
# waiting for the return. (In ``resolving`` its refund exists; before and after, nothing is committed.)
COMMITTING = (Status.AWAITING_BUYER.value, Status.AWAITING_RETURN.value, Status.RETURN_IN_TRANSIT.value)


def _granted(resolution: Resolution) -> Money:
    """The amount of a checked money resolution: :func:`check_resolution` always stores it."""
    if resolution.amount is None:
        raise ValueError(f"a {resolution.type.value} resolution without its amount (check_resolution sets it)")
    return resolution.amount


# --- checking -------------------------------------------------------------------------------------------


def check_requested(requested: Requested, *, currency: str, disputed: int) -> None:
    """What the buyer asks for when opening: in the order's currency, with an amount where one is needed,
    no more than the disputed lines are worth. (Nothing is committed yet: the limits apply to the shop's
    or the operator's answer, :func:`check_resolution`.)"""
    if requested.amount is not None and requested.amount.currency != currency:
        raise BusinessRuleViolation(
            f"requested.amount is in {requested.amount.currency} but the order is in {currency}",
            code="money.currency_mismatch",
        )
    if requested.type == ResolutionType.DENY:
        raise ValidationFailed("a buyer cannot request a denial", field="requested.type")
    needs_amount = requested.type in (ResolutionType.REFUND_PARTIAL, ResolutionType.CREDIT, ResolutionType.PROMO_CODE)
    if needs_amount and requested.amount is None:
        raise ValidationFailed(f"a {requested.type} request needs an amount", field="requested.amount")
    if requested.amount is not None and requested.type in MONEY_TYPES and requested.amount.amount > disputed:
        raise BusinessRuleViolation(
            f"requested {requested.amount.amount} is more than the disputed {disputed}",
            code="dispute.amount_exceeds_order",
        )


async def check_resolution(
    session: AsyncSession, dispute: Dispute, actor: Actor, resolution: Resolution, settings: Settings
) -> Resolution:
    """The resolution the caller commits to, checked; a money resolution comes back with the amount it
    grants (a full refund: what the dispute can still refund)."""
    for name in ("amount", "seller_share"):
        require_currency(getattr(resolution, name), dispute.currency, f"resolution.{name}")
    kind = COMPENSATION_KIND.get(resolution.type)
    if kind is None:
        for name in ("amount", "seller_share", "bonus_percent"):
            if getattr(resolution, name) is not None:
                raise ValidationFailed(f"a {resolution.type} resolution carries no {name}", field=f"resolution.{name}")
        # No money moves; only the funding rule applies (a shop's resolution is the shop's).
        rules.check_grant(
            actor.role.value,
            funded_by=resolution.funded_by,
            grant=rules.NOTHING,
            used=rules.NOTHING,
            budget=None,
            goodwill_limit=0,
        )
        return resolution
    # The lock makes a concurrent refund or dispute action on this order wait until this one commits.
    await payouts.lock_order(session, dispute.order_id)
    refundable = (await order_money(session, order_id=dispute.order_id)).refundable
    grant = rules.compensation(
        kind,
        amount=resolution.amount,
        funded_by=resolution.funded_by,
        seller_share=resolution.seller_share,
        bonus_percent=resolution.bonus_percent,
        currency=dispute.currency,
        ceiling=min(dispute.amount, refundable),
        field_prefix="resolution.",
    )
    used = await payouts.compensation_on_order(session, order_id=dispute.order_id, currency=dispute.currency)
    used += await committed_on_order(session, dispute.order_id, excluding=dispute.id)
    seller = await session.get(Seller, dispute.seller_id) if actor.role == Role.SELLER else None
    rules.check_grant(
        actor.role.value,
        funded_by=resolution.funded_by,
        grant=grant.split,
        used=used,
        budget=rules.budget_in(
            seller.refund_budget_amount if seller else None,
            seller.refund_budget_currency if seller else None,
            dispute.currency,
        ),
        goodwill_limit=settings.agent_goodwill_limit,
    )
    return msgspec.structs.replace(resolution, amount=Money(grant.amount, dispute.currency))


async def committed_on_order(session: AsyncSession, order_id: str, *, excluding: str | None = None) -> rules.Split:
    """Money the order's disputes committed but have not granted yet (open offers, resolutions waiting
    for a return), split by who pays it: it counts against the per-order limits like a grant, so an offer
    and a direct refund cannot together pass a shop's budget."""
    rows = await session.execute(
        select(Dispute.id, Dispute.status, Dispute.offer, Dispute.resolution).where(
            Dispute.order_id == order_id, Dispute.status.in_(COMMITTING)
        )
    )
    total = rules.NOTHING
    for dispute_id, status, offer, resolution in rows.all():
        held = transitions.resolution_of(offer if status == Status.AWAITING_BUYER else resolution)
        if dispute_id == excluding or held is None or held.type not in COMPENSATION_KIND:
            continue
        total += rules.split_of(
            held.funded_by,
            _granted(held).amount,
            held.seller_share.amount if held.seller_share else None,
            held.bonus_percent,
        )
    return total


# --- granting and settling ------------------------------------------------------------------------------


async def grant_resolution_refund(
    session: AsyncSession, dispute: Dispute, *, actor: Actor, settings: Settings
) -> RefundRead | None:
    """The refund, credit note or promo code of the dispute's (money) resolution, granted by the actor who
    settled it. Its limits were checked when the resolution was committed (:func:`check_resolution`). A
    provider refund is paid by the payouts worker, which then calls :func:`refund_settled`."""
    resolution = transitions.resolution_of(dispute.resolution)
    kind = REFUND_KIND.get(resolution.type) if resolution is not None else None
    if resolution is None or kind is None:
        return None
    amount = _granted(resolution).amount
    refundable = (await order_money(session, order_id=dispute.order_id)).refundable
    if kind == RefundKind.PARTIAL and amount == refundable:
        kind = RefundKind.FULL
    previous = await session.scalar(select(func.count()).select_from(Refund).where(Refund.dispute_id == dispute.id))
    return await refunds.grant_refund(
        session,
        actor=actor,
        data=RefundCreate(
            order_id=dispute.order_id,
            kind=kind,
            amount=None if kind == RefundKind.FULL else Money(amount, dispute.currency),
            funded_by=resolution.funded_by,
            seller_share=resolution.seller_share,
            bonus_percent=resolution.bonus_percent,
            reason=f"dispute {dispute.id} ({dispute.reason})",
            dispute_id=dispute.id,
        ),
        # Derived from the dispute and how many refunds it had: the same resolution never pays twice.
        source_key=f"dispute:{dispute.id}:{int(previous or 0) + 1}",
        settings=settings,
        check_role=False,
        promo_issued=tell_buyer,  # a promo code goes to the buyer's private thread
    )


def settled_at_once(granted: RefundRead) -> bool:
    """A credit note or promo code is settled the moment it is issued (a card refund waits for the provider)."""
    return granted.status == "succeeded"


async def resolve_at_once(
    session: AsyncSession, dispute: Dispute, granted: RefundRead, *, now: datetime, settings: Settings
) -> None:
    """The follow-up change of a grant settled at once: the dispute resolves, as the service itself."""
    settled = {"refund_id": granted.refund_id, "status": granted.status, "kind": granted.kind}
    await transitions.apply_system_action(
        session, dispute, Action.REFUND_SUCCEEDED, data=settled, now=now, settings=settings
    )


async def refund_settled(session: AsyncSession, refund: Refund, now: datetime, settings: Settings) -> None:
    """The payouts worker settled a dispute's refund: resolve the dispute, or send it back flagged."""
    if refund.dispute_id is None:
        return
    dispute = await session.get(Dispute, refund.dispute_id, with_for_update=True, populate_existing=True)
    if dispute is None or dispute.status != Status.RESOLVING:
        return
    action = Action.REFUND_SUCCEEDED if refund.status == "succeeded" else Action.REFUND_FAILED
    data = {"refund_id": refund.id, "status": refund.status, "failure_reason": refund.failure_reason}
    await transitions.apply_system_action(session, dispute, action, data=data, now=now, settings=settings)


# --- appeals --------------------------------------------------------------------------------------------


def in_sellers_favour(decision: Resolution) -> bool:
    """An appeal's decision is in the shop's favour when it does not find the shop at fault (``at_fault``
    is ``buyer``, ``carrier``, ``operator`` or ``none``): the shop no longer bears the first decision's cost."""
    return decision.at_fault is not None and decision.at_fault != "seller"


async def reallocate_appeal(session: AsyncSession, dispute: Dispute, decision: Resolution, *, now: datetime) -> int:
    """The decision of an appeal (the dispute's ``decide`` after its ``appeal``): when it is in the shop's
    favour, the seller part of every compensation the appealed decision granted (the dispute's refunds,
    credit notes and promo codes granted between that decision and the appeal, not failed) moves to the
    operator; the buyer keeps them. Returns the amount moved. Called once per appeal (an appeal is
    allowed once), and each refund moves once whatever calls it (app/payouts/reallocation.py)."""
    if not in_sellers_favour(decision):
        return 0
    timeline = (
        await session.execute(
            select(DisputeEvent.action, DisputeEvent.at)
            .where(DisputeEvent.dispute_id == dispute.id, DisputeEvent.action.in_(["decide", "appeal"]))
            .order_by(DisputeEvent.id)
        )
    ).all()
    appeals = [i for i, (action, _) in enumerate(timeline) if action == "appeal"]
    decided = [at for action, at in timeline[: appeals[-1]] if action == "decide"] if appeals else []
    if not decided:
        return 0
    since, until = decided[-1], timeline[appeals[-1]][1]
    await payouts.lock_order(session, dispute.order_id)  # grants on the order wait: the limits change
    appealed = (
        await session.scalars(
            select(Refund)
            .where(
                Refund.dispute_id == dispute.id,
                Refund.created_at >= since,
                Refund.created_at <= until,
                Refund.status != RefundStatus.FAILED.value,
                Refund.seller_amount > 0,
            )
            .order_by(Refund.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).all()
    reason = f"appeal of dispute {dispute.id} decided in the shop's favour (at fault: {decision.at_fault})"
    return sum([await reallocation.reallocate(session, refund, reason=reason, now=now) for refund in appealed])
