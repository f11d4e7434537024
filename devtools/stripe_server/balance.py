"""Balances, balance transactions and payouts, for the platform or (``Stripe-Account`` header) a connected
account. Fees are always 0 and funds are ``available`` at once, so a balance is the sum of its account's
balance transactions."""

from __future__ import annotations

from typing import Any

from devtools.stripe_server.accounts import Accounts
from devtools.stripe_server.errors import no_such
from devtools.stripe_server.params import Context, get_currency, get_int, get_metadata, get_str, new_id
from devtools.stripe_server.state import PLATFORM, fixture


class Balance(Accounts):
    def balance(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        account = self.acting_as(ctx)
        currencies = sorted(c for a, c in self.balances if a == account) or [self.currency_of(account)]
        balance = fixture("balance")
        balance["available"] = [
            {"amount": (a := self.available(account, c)), "currency": c, "source_types": {"card": a}}
            for c in currencies
        ]
        balance["pending"] = [{"amount": 0, "currency": c, "source_types": {"card": 0}} for c in currencies]
        balance["connect_reserved"] = [{"amount": 0, "currency": c} for c in currencies]
        balance["livemode"] = False
        return self.output(balance, ctx.expand)

    def list_balance_transactions(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        account = self.acting_as(ctx)
        ids = [t for t in self.order.get("balance_transaction", []) if self.owner[t] == account]
        for name in ("type", "source", "currency"):
            wanted = get_str(params, name)
            if wanted is not None:
                ids = [t for t in ids if self.objects[t][name] in {wanted, wanted.lower()}]
        return self.paginate(ctx, ids, params, "/v1/balance_transactions", "balance_transaction")

    def retrieve_balance_transaction(self, ctx: Context, params: dict[str, Any], txn_id: str) -> dict[str, Any]:
        txn = self._get("balance_transaction", txn_id)
        if self.owner[txn_id] != self.acting_as(ctx):
            raise no_such("balance_transaction", txn_id)
        return self.answer(ctx, txn["id"])

    # payouts: what takes a balance to the bank (a connected account's, with its Stripe-Account header).
    # This is how a test empties a shop's balance so that a later reversal is refused.

    def create_payout(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        account = self.acting_as(ctx)
        amount = get_int(params, "amount", required=True)
        currency = get_currency(params)
        assert amount is not None
        assert currency is not None
        metadata = get_metadata(params)
        self.require_funds(
            account,
            currency,
            amount,
            "You have insufficient funds in your Stripe account for this transfer. Your card balance is too low. "
            "You can use the /v1/balance endpoint to view your Stripe balance (for more details, see "
            "stripe.com/docs/api#balance).",
            param="amount",
        )
        payout_id, now = new_id("po"), self.now()
        txn_id = self._txn(
            account=account, amount=-amount, currency=currency, type="payout", category="payout", source=payout_id
        )
        payout = fixture("payout")
        payout.update(
            id=payout_id,
            amount=amount,
            arrival_date=now,
            automatic=False,
            balance_transaction=txn_id,
            created=now,
            currency=currency,
            description=get_str(params, "description"),
            destination=new_id("ba"),
            metadata=metadata,
            statement_descriptor=get_str(params, "statement_descriptor"),
            status="paid",  # the bank's side is not modelled: the money is simply gone
        )
        self._put(payout)
        self.owner[payout_id] = account
        return self.answer(ctx, payout_id)

    def retrieve_payout(self, ctx: Context, params: dict[str, Any], payout_id: str) -> dict[str, Any]:
        payout = self._get("payout", payout_id)
        if self.owner[payout_id] != self.acting_as(ctx):
            raise no_such("payout", payout_id)
        return self.answer(ctx, payout["id"])

    def list_payouts(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        account = self.acting_as(ctx)
        ids = [p for p in self.order.get("payout", []) if self.owner[p] == account]
        status = get_str(params, "status")
        if status is not None:
            ids = [p for p in ids if self.objects[p]["status"] == status]
        return self.paginate(ctx, ids, params, "/v1/payouts", "payout")

    def top_up(self, amount: int, currency: str) -> dict[str, Any]:
        """Test control: money on the platform's balance without a charge."""
        txn_id = self._txn(
            account=PLATFORM, amount=amount, currency=currency, type="topup", category="topup", source=new_id("tu")
        )
        return self.render(txn_id)
