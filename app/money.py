"""Money: an integer amount of minor units and an ISO 4217 currency. Never floats."""

from __future__ import annotations

from typing import Annotated

import msgspec

from app.errors import BusinessRuleViolation

# Upper bound keeps every sum inside a signed 64-bit column with room to spare.
MAX_AMOUNT = 10**13

Amount = Annotated[int, msgspec.Meta(ge=0, le=MAX_AMOUNT, description="Integer minor units (cents)")]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$", description="ISO 4217 code, upper case")]


class Money(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    amount: Amount
    currency: Currency

    def __add__(self, other: Money) -> Money:
        require_currency(other, self.currency, "amount")
        return Money(self.amount + other.amount, self.currency)


def require_currency(money: Money | None, currency: str, field: str) -> None:
    if money is not None and money.currency != currency:
        raise BusinessRuleViolation(
            f"{field} is in {money.currency} but the order is in {currency}",
            code="money.currency_mismatch",
            errors=[{"field": field, "message": f"expected currency {currency}"}],
        )
