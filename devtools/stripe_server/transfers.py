"""Transfers to connected accounts and their reversals (Connect, separate charges and transfers).

A transfer moves money from the platform's balance to a connected account's: a ``transfer`` balance
transaction on the platform (source ``tr_``), a ``payment`` on the account (source ``py_``). A reversal
moves it back: ``transfer_refund`` on the platform (source ``trr_``; the type Stripe gives a reversal on
the platform side, from when reversals were called transfer refunds), ``payment_refund`` on the account.
"""

from __future__ import annotations

from typing import Any

from devtools.stripe_server.errors import StripeError, invalid, no_such
from devtools.stripe_server.params import (
    Context,
    get_bool,
    get_currency,
    get_int,
    get_metadata,
    get_str,
    merged_metadata,
    money,
    new_id,
)
from devtools.stripe_server.state import PLATFORM, StoreBase, fixture


class Transfers(StoreBase):
    def create_transfer(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        amount = get_int(params, "amount", required=True)
        currency = get_currency(params)
        destination = get_str(params, "destination", required=True)
        assert amount is not None
        assert currency is not None
        assert destination is not None
        metadata = get_metadata(params)
        description = get_str(params, "description")
        account = self.objects.get(destination)
        if account is None or account["object"] != "account":
            raise StripeError(
                400, f"No such destination: '{destination}'", code="resource_missing", param="destination"
            )
        if account["capabilities"].get("transfers") != "active":
            raise StripeError(
                400,
                "Your destination account needs to have at least one of the following capabilities enabled: "
                "transfers, crypto_transfers, legacy_payments",
                code="insufficient_capabilities_for_transfer",
                param="destination",
            )
        source_id = get_str(params, "source_transaction")
        if source_id is not None:
            self._check_source(source_id, amount, currency)
        else:
            self.require_funds(
                PLATFORM,
                currency,
                amount,
                "You have insufficient available funds in your Stripe account. Try adding funds directly to your "
                "available balance by creating Charges using the 4000000000000077 test card. See: "
                "https://stripe.com/docs/testing#available-balance",
            )
        transfer_id, payment_id = new_id("tr"), new_id("py")
        txn_id = self._txn(
            account=PLATFORM,
            amount=-amount,
            currency=currency,
            type="transfer",
            category="transfer",
            source=transfer_id,
        )
        self._txn(
            account=destination, amount=amount, currency=currency, type="payment", category="charge", source=payment_id
        )
        transfer = fixture("transfer")
        transfer.update(
            id=transfer_id,
            amount=amount,
            amount_reversed=0,
            balance_transaction=txn_id,
            created=self.now(),
            currency=currency,
            description=description,
            destination=destination,
            destination_payment=payment_id,
            livemode=False,
            metadata=metadata,
            reversed=False,
            source_transaction=source_id,
            source_type="card",
            transfer_group=get_str(params, "transfer_group"),
        )
        self._put(transfer)
        self.transfer_reversals[transfer_id] = []
        if source_id is not None:
            self.transferred_from[source_id] += amount
        return self.answer(ctx, transfer_id)

    def _check_source(self, source_id: str, amount: int, currency: str) -> None:
        """A transfer funded by a charge (``source_transaction``) waits for no balance, but it can carry no
        more than the charge still holds: its amount, less refunds, less what earlier transfers took (net of
        their reversals)."""
        source = self._get("charge", source_id, param="source_transaction")
        if source["currency"] != currency:
            raise invalid(
                f"The currency of source_transaction's balance transaction ({source['currency']}) must be the "
                f"same as the transfer currency ({currency})",
                param="currency",
            )
        left = source["amount"] - source["amount_refunded"] - self.transferred_from[source_id]
        if amount > left:
            raise StripeError(
                400,
                f"The transfer amount ({money(amount, currency)}) exceeds the amount available from the "
                f"source_transaction {source_id} ({money(max(left, 0), currency)}).",
                code="balance_insufficient",
                param="amount",
            )

    def retrieve_transfer(self, ctx: Context, params: dict[str, Any], transfer_id: str) -> dict[str, Any]:
        return self.answer(ctx, self._get("transfer", transfer_id)["id"])

    def update_transfer(self, ctx: Context, params: dict[str, Any], transfer_id: str) -> dict[str, Any]:
        transfer = self._get("transfer", transfer_id)
        if "description" in params:
            transfer["description"] = get_str(params, "description")
        if "metadata" in params:
            transfer["metadata"] = merged_metadata(transfer["metadata"], params)
        return self.answer(ctx, transfer_id)

    def list_transfers(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ids = self.order.get("transfer", [])
        for name in ("destination", "transfer_group"):
            wanted = get_str(params, name)
            if wanted is not None:
                ids = [t for t in ids if self.objects[t][name] == wanted]
        return self.paginate(ctx, ids, params, "/v1/transfers", "transfer")

    def transfers_total(self, params: dict[str, Any]) -> dict[str, Any]:
        """Test control: what the transfers matching ``destination`` / ``transfer_group`` carried and what
        came back, to compare with the app's ledger."""
        transfers = [self.objects[t] for t in self.order.get("transfer", [])]
        for name in ("destination", "transfer_group"):
            wanted = get_str(params, name)
            if wanted is not None:
                transfers = [t for t in transfers if t[name] == wanted]
        return {
            "transfers": len(transfers),
            "amount": sum(t["amount"] for t in transfers),
            "amount_reversed": sum(t["amount_reversed"] for t in transfers),
            "reversals": sum(len(self.transfer_reversals[t["id"]]) for t in transfers),
        }

    # reversals

    def create_reversal(self, ctx: Context, params: dict[str, Any], transfer_id: str) -> dict[str, Any]:
        transfer = self._get("transfer", transfer_id)
        amount = get_int(params, "amount")
        metadata = get_metadata(params)
        description = get_str(params, "description")
        get_bool(params, "refund_application_fee")  # validated; there are no application fees here
        currency = transfer["currency"]
        left = transfer["amount"] - transfer["amount_reversed"]
        if left == 0:
            raise StripeError(400, f"The transfer {transfer_id} is already fully reversed.")
        if amount is None:
            amount = left
        if amount > left:
            raise StripeError(
                400,
                f"Insufficient funds on transfer {transfer_id}: {money(left, currency)} is left to reverse, "
                f"{money(amount, currency)} was requested.",
                code="insufficient_funds",
                param="amount",
            )
        destination = transfer["destination"]
        self.require_funds(
            destination,
            currency,
            amount,
            f"Insufficient funds in the destination account {destination} "
            f"({money(self.available(destination, currency), currency)} available) to reverse "
            f"{money(amount, currency)} of transfer {transfer_id}.",
            param="amount",
        )
        reversal_id, payment_refund_id = new_id("trr"), new_id("pyr")
        txn_id = self._txn(
            account=PLATFORM,
            amount=amount,
            currency=currency,
            type="transfer_refund",
            category="transfer_reversal",
            source=reversal_id,
            description=description,
        )
        self._txn(
            account=destination,
            amount=-amount,
            currency=currency,
            type="payment_refund",
            category="refund",
            source=payment_refund_id,
        )
        reversal = fixture("transfer_reversal")
        reversal.update(
            id=reversal_id,
            amount=amount,
            balance_transaction=txn_id,
            created=self.now(),
            currency=currency,
            destination_payment_refund=payment_refund_id,
            metadata=metadata,
            source_refund=None,
            transfer=transfer_id,
        )
        self._put(reversal)
        self.transfer_reversals[transfer_id].append(reversal_id)
        transfer["amount_reversed"] += amount
        transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
        if transfer["source_transaction"] is not None:
            self.transferred_from[transfer["source_transaction"]] -= amount
        return self.answer(ctx, reversal_id)

    def _reversal(self, transfer_id: str, reversal_id: str) -> dict[str, Any]:
        self._get("transfer", transfer_id)
        reversal = self._get("transfer_reversal", reversal_id)
        if reversal["transfer"] != transfer_id:
            raise no_such("transfer_reversal", reversal_id)
        return reversal

    def retrieve_reversal(
        self, ctx: Context, params: dict[str, Any], transfer_id: str, reversal_id: str
    ) -> dict[str, Any]:
        return self.answer(ctx, self._reversal(transfer_id, reversal_id)["id"])

    def update_reversal(
        self, ctx: Context, params: dict[str, Any], transfer_id: str, reversal_id: str
    ) -> dict[str, Any]:
        reversal = self._reversal(transfer_id, reversal_id)
        if "metadata" in params:
            reversal["metadata"] = merged_metadata(reversal["metadata"], params)
        return self.answer(ctx, reversal_id)

    def list_reversals(self, ctx: Context, params: dict[str, Any], transfer_id: str) -> dict[str, Any]:
        self._get("transfer", transfer_id)
        ids = self.transfer_reversals[transfer_id]
        return self.paginate(ctx, ids, params, f"/v1/transfers/{transfer_id}/reversals", "transfer_reversal")
