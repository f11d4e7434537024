"""The money rules of compensation (app/payouts/rules.py), without a database: amounts, splits, and what
each role may grant on one order, counting what the order already used."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import BusinessRuleViolation, DomainError, Forbidden, ValidationFailed
from app.money import Money
from app.payouts import rules
from app.payouts.rules import NOTHING, Split

BUDGET, LIMIT = 5_000, 5_000


def check(
    role: str, grant: Split, used: Split = NOTHING, funded_by: str | None = None, budget: int | None = BUDGET
) -> str:
    """The rule's answer as a word: ``ok`` or the error code."""
    if funded_by is None:
        funded_by = "seller" if grant.seller and not grant.goodwill else "operator" if grant.goodwill else "seller"
    try:
        rules.check_grant(role, funded_by=funded_by, grant=grant, used=used, budget=budget, goodwill_limit=LIMIT)
    except DomainError as exc:
        return exc.code
    return "ok"


# (role, grant, already used on the order, funded_by, budget) -> answer. Written out by hand, not derived.
TABLE = [
    ("arbitrator", Split(seller=90_000), NOTHING, "seller", None, "ok"),
    ("admin", Split(operator=90_000, bonus=9_000), Split(operator=90_000), "operator", None, "ok"),
    ("seller", Split(seller=3_000), NOTHING, "seller", BUDGET, "ok"),
    ("seller", Split(seller=3_000), Split(seller=2_000), "seller", BUDGET, "ok"),  # exactly the budget
    ("seller", Split(seller=3_000), Split(seller=3_000), "seller", BUDGET, "refund.over_budget"),  # 3 000 + 3 000
    ("seller", Split(seller=1), Split(seller=5_000), "seller", BUDGET, "refund.over_budget"),
    # The operator's goodwill on the order does not use the shop's budget.
    ("seller", Split(seller=3_000), Split(operator=40_000, bonus=100), "seller", BUDGET, "ok"),
    ("seller", Split(seller=1), NOTHING, "seller", None, "refund.over_budget"),  # no budget at all
    ("seller", Split(seller=500, operator=500), NOTHING, "split", BUDGET, "refund.funding_not_allowed"),
    ("seller", Split(operator=500), NOTHING, "operator", BUDGET, "refund.funding_not_allowed"),
    ("seller", Split(seller=500, bonus=100), NOTHING, "seller", BUDGET, "refund.funding_not_allowed"),
    ("seller", NOTHING, NOTHING, "seller", None, "ok"),  # a repair needs no budget
    ("seller", NOTHING, NOTHING, "operator", BUDGET, "refund.funding_not_allowed"),  # but is still the shop's
    ("agent", Split(operator=3_000), NOTHING, "operator", None, "ok"),
    ("agent", Split(operator=3_000), Split(operator=2_000), "operator", None, "ok"),
    ("agent", Split(operator=3_000), Split(operator=3_000), "operator", None, "refund.over_goodwill_limit"),
    ("agent", Split(operator=2_500, bonus=500), Split(operator=2_001), "operator", None, "refund.over_goodwill_limit"),
    ("agent", Split(operator=2_500, bonus=500), Split(bonus=2_001), "operator", None, "refund.over_goodwill_limit"),
    # What the shop funded is not the operator's goodwill.
    ("agent", Split(operator=3_000), Split(seller=40_000), "operator", None, "ok"),
    ("agent", Split(seller=100), NOTHING, "seller", None, "refund.funding_not_allowed"),
    ("agent", Split(operator=100), NOTHING, "split", None, "refund.funding_not_allowed"),  # a share of 0 too
    ("agent", NOTHING, NOTHING, "seller", None, "ok"),  # proposing a repair
    ("buyer", Split(operator=1), NOTHING, "operator", None, "forbidden"),
    ("finance", NOTHING, NOTHING, "seller", None, "forbidden"),
]


@pytest.mark.parametrize(("role", "grant", "used", "funded_by", "budget", "expected"), TABLE)
def test_each_role_grants_within_its_per_order_limit(
    role: str, grant: Split, used: Split, funded_by: str, budget: int | None, expected: str
) -> None:
    assert check(role, grant, used, funded_by, budget) == expected


def test_refusals_say_what_is_left() -> None:
    with pytest.raises(BusinessRuleViolation) as over:
        rules.check_grant(
            "seller", funded_by="seller", grant=Split(3_000), used=Split(3_000), budget=5_000, goodwill_limit=0
        )
    assert over.value.extra == {"budget": 5_000, "used": 3_000, "remaining": 2_000}
    with pytest.raises(BusinessRuleViolation) as limit:
        rules.check_grant(
            "agent", funded_by="operator", grant=Split(0, 100), used=Split(0, 6_000), budget=None, goodwill_limit=5_000
        )
    assert limit.value.extra == {"limit": 5_000, "used": 6_000, "remaining": 0}


@given(
    role=st.sampled_from(["seller", "agent"]),
    requests=st.lists(st.integers(min_value=1, max_value=4_000), max_size=20),
)
def test_splitting_a_grant_into_many_requests_never_passes_the_limit(role: str, requests: list[int]) -> None:
    """Whatever the requests, what passes one after the other stays within the budget (or limit), and a
    request is refused only when it would not fit."""
    used = NOTHING
    for amount in requests:
        grant = Split(seller=amount) if role == "seller" else Split(operator=amount)
        answer = check(role, grant, used)
        fits = (used.seller if role == "seller" else used.goodwill) + amount <= BUDGET
        assert answer == (
            "ok" if fits else ("refund.over_budget" if role == "seller" else "refund.over_goodwill_limit")
        )
        if answer == "ok":
            used += grant
    assert used.seller <= BUDGET
    assert used.goodwill <= LIMIT


def eur(amount: int) -> Money:
    return Money(amount, "EUR")


def grant(kind: str, amount: Money | None, funded_by: str = "seller", **over: object) -> rules.Grant:
    fields: dict[str, object] = {"seller_share": None, "bonus_percent": None, "currency": "EUR", "ceiling": 5_000}
    fields.update(over)
    return rules.compensation(kind, amount=amount, funded_by=funded_by, **fields)  # type: ignore[arg-type]


def test_a_full_refund_is_everything_left_and_a_partial_one_fits_in_it() -> None:
    assert grant("full", None).amount == 5_000
    assert grant("full", eur(5_000)).amount == 5_000
    with pytest.raises(ValidationFailed):
        grant("full", eur(4_000))
    with pytest.raises(BusinessRuleViolation) as nothing:
        grant("full", None, ceiling=0)
    assert nothing.value.code == "refund.exceeds_refundable"
    assert grant("partial", eur(5_000)).amount == 5_000
    with pytest.raises(BusinessRuleViolation) as over:
        grant("credit", eur(5_001))
    assert (over.value.code, over.value.extra) == ("refund.exceeds_refundable", {"refundable": 5_000})
    for missing in (None, eur(0)):
        with pytest.raises(ValidationFailed):
            grant("promo_code", missing)


def test_the_split_says_who_pays_and_the_bonus_is_the_operators() -> None:
    assert grant("partial", eur(1_000)).split == Split(seller=1_000)
    assert grant("partial", eur(1_000), "operator").split == Split(operator=1_000)
    assert grant("partial", eur(1_000), "split", seller_share=eur(300)).split == Split(300, 700)
    assert grant("credit", eur(1_000), "seller", bonus_percent=15).split == Split(seller=1_000, bonus=150)
    assert grant("credit", eur(999), "operator", bonus_percent=10).split == Split(operator=999, bonus=99)
    with pytest.raises(ValidationFailed) as no_share:
        grant("partial", eur(1_000), "split", field_prefix="resolution.")
    assert no_share.value.extra["errors"][0]["field"] == "resolution.seller_share"
    with pytest.raises(ValidationFailed):
        grant("partial", eur(1_000), "split", seller_share=eur(1_001))
    with pytest.raises(ValidationFailed):
        grant("partial", eur(1_000), "seller", seller_share=eur(100))
    with pytest.raises(ValidationFailed):
        grant("partial", eur(1_000), "operator", bonus_percent=10)  # a card refund carries no bonus
    with pytest.raises(BusinessRuleViolation) as usd:
        grant("partial", Money(1_000, "USD"))
    assert usd.value.code == "money.currency_mismatch"


def test_a_budget_in_another_currency_is_no_budget() -> None:
    assert rules.budget_in(5_000, "EUR", "EUR") == 5_000
    assert rules.budget_in(5_000, "USD", "EUR") is None
    assert rules.budget_in(None, None, "EUR") is None


def test_forbidden_refusals_are_403() -> None:
    with pytest.raises(Forbidden):
        rules.check_grant("seller", funded_by="operator", grant=Split(0, 1), used=NOTHING, budget=1, goodwill_limit=1)
