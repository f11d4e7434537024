"""The money rules of compensation, pure (no I/O): how much a full or partial grant is, how it splits
between the shop and the operator, and how much each role may grant on one order on its own.

``POST /v1/refunds`` and the dispute actions that commit money (``propose``, ``accept_claim``,
``decide``) both call these, so each rule and its error code exist once:

- ``refund.exceeds_refundable`` (422): more than the order (or the dispute) can still refund.
- ``refund.funding_not_allowed`` (403): a shop funds its own compensation only and grants no bonus; an
  agent grants operator-funded compensation only.
- ``refund.over_budget`` (422): the shop's seller-funded compensation on the order, this grant included,
  would pass its ``refund_budget``.
- ``refund.over_goodwill_limit`` (422): the operator-funded compensation on the order (bonuses
  included), this grant included, would pass the agents' goodwill limit.

The limits are per order, not per request: the caller passes what is already ``used`` on the order (read
under the order's row lock, so two requests at once are checked one after the other).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import BusinessRuleViolation, Forbidden, ValidationFailed
from app.money import Money, require_currency

FUNDING = "refund.funding_not_allowed"
# Kinds the payment provider pays (a card refund); credit notes and promo codes live in our ledger.
PROVIDER_KINDS = frozenset({"full", "partial"})
UNLIMITED_ROLES = frozenset({"arbitrator", "admin"})


@dataclass(frozen=True, slots=True)
class Split:
    """Who pays a compensation, in the order's currency: the shop (from its escrow), the operator (its
    goodwill), and the operator's bonus on top of a credit note or promo code."""

    seller: int = 0
    operator: int = 0
    bonus: int = 0

    @property
    def goodwill(self) -> int:
        """What the operator pays: its part and the bonus."""
        return self.operator + self.bonus

    @property
    def total(self) -> int:
        return self.seller + self.operator + self.bonus

    def __add__(self, other: Split) -> Split:
        return Split(self.seller + other.seller, self.operator + other.operator, self.bonus + other.bonus)


NOTHING = Split()


@dataclass(frozen=True, slots=True)
class Grant:
    """A validated compensation: its amount (what the buyer gets back, bonus excluded) and who pays it."""

    amount: int
    split: Split


def compensation(
    kind: str,
    *,
    amount: Money | None,
    funded_by: str,
    seller_share: Money | None,
    bonus_percent: int | None,
    currency: str,
    ceiling: int,
    field_prefix: str = "",
) -> Grant:
    """Validate a compensation request against what can still be refunded (``ceiling``).

    ``kind`` is ``full``, ``partial``, ``credit`` or ``promo_code``. ``field_prefix`` names where the
    fields sit in the request (``resolution.`` in a dispute action)."""
    require_currency(amount, currency, f"{field_prefix}amount")
    require_currency(seller_share, currency, f"{field_prefix}seller_share")
    if bonus_percent and kind in PROVIDER_KINDS:
        raise ValidationFailed(
            "bonus_percent is for credit notes and promo codes", field=f"{field_prefix}bonus_percent"
        )
    total = amount_of(kind, amount.amount if amount is not None else None, ceiling, field=f"{field_prefix}amount")
    share = seller_share.amount if seller_share is not None else None
    return Grant(total, split_of(funded_by, total, share, bonus_percent, field=f"{field_prefix}seller_share"))


def amount_of(kind: str, requested: int | None, ceiling: int, *, field: str = "amount") -> int:
    """A full refund is everything still refundable (``ceiling``); any other kind is a positive amount
    up to it."""
    if kind == "full":
        if requested is not None and requested != ceiling:
            raise ValidationFailed(f"a full refund is {ceiling}; leave amount out or make it partial", field=field)
        if ceiling == 0:
            raise BusinessRuleViolation(
                "nothing is left to refund on this order", code="refund.exceeds_refundable", refundable=0
            )
        return ceiling
    if not requested:
        raise ValidationFailed(f"a {kind} needs a positive amount", field=field)
    if requested > ceiling:
        raise BusinessRuleViolation(
            f"{requested} is more than the {ceiling} still refundable",
            code="refund.exceeds_refundable",
            refundable=ceiling,
        )
    return requested


def split_of(
    funded_by: str, amount: int, seller_share: int | None, bonus_percent: int | None, *, field: str = "seller_share"
) -> Split:
    """Who pays ``amount``: the shop (``seller``), the operator (``operator``), or ``seller_share`` from the
    shop and the rest from the operator (``split``). The bonus is always the operator's."""
    bonus = amount * (bonus_percent or 0) // 100
    if funded_by == "split":
        if seller_share is None:
            raise ValidationFailed("a split compensation needs seller_share", field=field)
        if seller_share > amount:
            raise ValidationFailed("seller_share cannot exceed the amount", field=field)
        return Split(seller_share, amount - seller_share, bonus)
    if seller_share is not None:
        raise ValidationFailed("seller_share is only for funded_by split", field=field)
    return Split(amount, 0, bonus) if funded_by == "seller" else Split(0, amount, bonus)


def budget_in(amount: int | None, budget_currency: str | None, currency: str) -> int | None:
    """A shop's refund budget in the order's currency; None when it has none in that currency."""
    return amount if amount is not None and budget_currency == currency else None


def check_grant(
    role: str, *, funded_by: str, grant: Split, used: Split, budget: int | None, goodwill_limit: int
) -> None:
    """What a role may grant on one order on its own (docs/api.md, Refunds), counting what is ``used`` already:
    arbitrators and admins anything; agents operator-funded goodwill while the order's operator-funded
    total stays within ``goodwill_limit``; a shop its own seller-funded compensation while the order's
    seller-funded total stays within its ``budget``; nobody else."""
    if role in UNLIMITED_ROLES:
        return
    if role == "agent":
        if not grant.total:
            return  # no money (a repair, a replacement): nothing to fund
        if funded_by != "operator" or grant.seller:
            raise Forbidden("an agent grants operator-funded goodwill only; ask an arbitrator", code=FUNDING)
        if used.goodwill + grant.goodwill > goodwill_limit:
            raise BusinessRuleViolation(
                f"{grant.goodwill} on top of the {used.goodwill} of operator goodwill already granted or committed "
                f"on this order is above the agent goodwill limit of {goodwill_limit}: ask an arbitrator",
                code="refund.over_goodwill_limit",
                limit=goodwill_limit,
                used=used.goodwill,
                remaining=max(goodwill_limit - used.goodwill, 0),
            )
        return
    if role == "seller":
        if funded_by != "seller":
            raise Forbidden("a shop's compensation is funded by the shop", code=FUNDING)
        if grant.goodwill:
            raise Forbidden("a bonus is the operator's money: a shop cannot grant one", code=FUNDING)
        if not grant.total:
            return
        if budget is None:
            raise BusinessRuleViolation(
                "this shop has no refund budget: escalate to the operator", code="refund.over_budget"
            )
        if used.seller + grant.seller > budget:
            raise BusinessRuleViolation(
                f"{grant.seller} on top of the {used.seller} the shop already granted or committed on this order "
                f"is above its refund budget of {budget}: escalate to the operator",
                code="refund.over_budget",
                budget=budget,
                used=used.seller,
                remaining=max(budget - used.seller, 0),
            )
        return
    raise Forbidden(f"a {role} may not grant refunds")


@dataclass(frozen=True, slots=True)
class ReleaseSplit:
    """Where an order's escrow goes at release: the shop's ``share`` (captured less commission less the
    shop's compensation), what the marketplace owed the shop back and pays now (``owed_paid``), the part
    that repays the shop's ``debt_netted``, what is ``transferred`` to the shop, and the ``debt_recorded``
    when the share and what was owed together are negative. Never a negative transfer."""

    share: int
    debt_netted: int
    transferred: int
    debt_recorded: int
    owed_paid: int = 0


def release_split(*, escrow_left: int, commission: int, debt: int, owed: int = 0) -> ReleaseSplit:
    """``escrow_left`` is what the order's escrow still holds (its capture less the seller-funded part of
    every compensation not given back); ``debt`` what the shop owes in that currency, ``owed`` what it is
    owed back (``seller_owed``: both can be outstanding when a debt came after the credit)."""
    share = escrow_left - commission
    owed_paid = max(owed, 0)
    due = share + owed_paid
    if due < 0:
        return ReleaseSplit(share=share, debt_netted=0, transferred=0, debt_recorded=-due, owed_paid=owed_paid)
    netted = min(max(debt, 0), due)
    return ReleaseSplit(share=share, debt_netted=netted, transferred=due - netted, debt_recorded=0, owed_paid=owed_paid)
