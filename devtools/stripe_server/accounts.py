"""Connected accounts (Connect): test setup creates them; transfers credit them and reversals debit them.

An account is ready at once (details submitted, charges and payouts enabled, nothing due): the server is
for exercising money movements, not onboarding. Its balance is the sum of its balance transactions.
"""

from __future__ import annotations

from typing import Any

from devtools.stripe_server.errors import StripeError, invalid
from devtools.stripe_server.params import (
    Context,
    get_bool,
    get_choice,
    get_currency,
    get_int,
    get_metadata,
    get_str,
    new_id,
)
from devtools.stripe_server.state import PLATFORM, StoreBase, fixture

ACCOUNT_TYPES = ("custom", "express", "standard")
BUSINESS_TYPES = ("company", "government_entity", "individual", "non_profit")
CAPABILITIES = ("card_payments", "transfers")
EURO_COUNTRIES = {"AT", "BE", "CY", "DE", "EE", "ES", "FI", "FR", "GR", "HR", "IE", "IT", "LT", "LU", "LV", "MT", "NL"}
CURRENCIES = {"US": "usd", "GB": "gbp", "CA": "cad", "AU": "aud", "JP": "jpy", "CH": "chf", "SE": "sek", "DK": "dkk"}


def no_access(account_id: str) -> StripeError:
    """What Stripe answers for an account the platform does not have (or that does not exist)."""
    return StripeError(
        403,
        f"The provided key 'sk_test_***' does not have access to account '{account_id}' (or that account does not "
        "exist). Application access may have been revoked.",
        code="account_invalid",
        stored=False,
    )


class Accounts(StoreBase):
    def create_account(self, ctx: Context, params: dict[str, Any], *, account_id: str | None = None) -> dict[str, Any]:
        """``account_id`` is for seeding through /_control/accounts only (a shop's preset id)."""
        account_type = get_choice(params, "type", ACCOUNT_TYPES, default="custom")
        country = (get_str(params, "country") or "US").upper()
        if len(country) != 2 or not country.isalpha():
            raise invalid(f"Invalid country: {country}", param="country")
        default_currency = get_currency(params, required=False, name="default_currency") or (
            "eur" if country in EURO_COUNTRIES else CURRENCIES.get(country, "usd")
        )
        business_type = get_choice(params, "business_type", BUSINESS_TYPES)
        metadata = get_metadata(params)
        requested = self._capabilities(params)
        profile = params.get("business_profile") or {}
        tos = params.get("tos_acceptance") or {}
        for name, value in (("business_profile", profile), ("tos_acceptance", tos)):
            if not isinstance(value, dict):
                raise invalid("Invalid object", param=name)

        account_id = account_id or new_id("acct")
        account = fixture("account")
        for field in ("name", "url", "mcc", "product_description"):
            account["business_profile"][field] = get_str(profile, field)
        account["tos_acceptance"].update(date=get_int(tos, "date", minimum=0), ip=get_str(tos, "ip"))
        if agreement := get_choice(tos, "service_agreement", ("full", "recipient")):
            account["tos_acceptance"]["service_agreement"] = agreement
        account.update(
            id=account_id,
            type=account_type,
            business_type=business_type,
            capabilities=dict.fromkeys(requested, "active"),
            charges_enabled=True,
            controller=(
                {"type": "account"} if account_type == "standard" else {"is_controller": True, "type": "application"}
            ),
            country=country,
            created=self.now(),
            default_currency=default_currency,
            details_submitted=True,
            email=get_str(params, "email"),
            external_accounts={
                "data": [],
                "has_more": False,
                "object": "list",
                "url": f"/v1/accounts/{account_id}/external_accounts",
            },
            metadata=metadata,
            payouts_enabled=True,
        )
        account["requirements"].update(currently_due=[], eventually_due=[], past_due=[], disabled_reason=None)
        self._put(account)
        return self.answer(ctx, account_id)

    def _capabilities(self, params: dict[str, Any]) -> list[str]:
        raw = params.get("capabilities") or {}
        if not isinstance(raw, dict):
            raise invalid("Invalid object", param="capabilities")
        requested = []
        for name in CAPABILITIES:
            entry = raw.get(name)
            if isinstance(entry, dict) and get_bool(entry, "requested"):
                requested.append(name)
        # A test account that asks for nothing can still be paid: the one capability a marketplace needs.
        return requested or ["transfers"]

    def retrieve_account(self, ctx: Context, params: dict[str, Any], account_id: str) -> dict[str, Any]:
        return self.answer(ctx, self.account(account_id)["id"])

    def list_accounts(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        return self.paginate(ctx, self.order.get("account", []), params, "/v1/accounts", "account")

    def account(self, account_id: str) -> dict[str, Any]:
        found = self.objects.get(account_id)
        if found is None or found["object"] != "account":
            raise no_access(account_id)
        return found

    def acting_as(self, ctx: Context) -> str:
        """Whose balance a Connect route reads or moves: the Stripe-Account header's account, or the platform."""
        if ctx.stripe_account is None:
            return PLATFORM
        return str(self.account(ctx.stripe_account)["id"])

    def currency_of(self, account: str) -> str:
        return "usd" if account == PLATFORM else str(self.objects[account]["default_currency"])
