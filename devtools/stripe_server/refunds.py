"""Refunds: on a charge or its payment intent, partial or whole, succeeded at once or left ``pending`` until
a test settles them (``failed`` gives the money back with a ``refund_failure`` balance transaction)."""

from __future__ import annotations

import secrets
from typing import Any

from devtools.stripe_server.errors import StripeError, invalid
from devtools.stripe_server.params import Context, get_int, get_metadata, get_str, merged_metadata, money, new_id
from devtools.stripe_server.state import PLATFORM, StoreBase, fixture

REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
REFUND_FAILURE_REASONS = (
    "lost_or_stolen_card",
    "expired_or_canceled_card",
    "charge_for_pending_refund_disputed",
    "insufficient_funds",
    "declined",
    "merchant_request",
    "unknown",
)


class Refunds(StoreBase):
    def create_refund(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        charge_id = get_str(params, "charge")
        pi_id = get_str(params, "payment_intent")
        amount = get_int(params, "amount")
        reason = get_str(params, "reason")
        metadata = get_metadata(params)
        if reason is not None and reason not in REFUND_REASONS:
            raise invalid(
                "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer", param="reason"
            )
        if charge_id is None and pi_id is None:
            raise invalid(
                "One of the following params should be provided for this request: payment_intent or charge.",
                code="parameter_missing",
            )
        if pi_id is not None:
            pi = self._get("payment_intent", pi_id, param="payment_intent")
            if pi["latest_charge"] is None:
                raise StripeError(
                    400,
                    f"This PaymentIntent ({pi_id}) does not have a successful charge to refund.",
                    code="charge_not_refundable",
                    param="payment_intent",
                )
            if charge_id is not None and charge_id != pi["latest_charge"]:
                raise invalid(f"The charge {charge_id} does not belong to the PaymentIntent {pi_id}.", param="charge")
            charge_id = pi["latest_charge"]
        assert charge_id is not None
        charge = self._get("charge", charge_id, param="charge")
        remaining = charge["amount"] - charge["amount_refunded"]
        if remaining <= 0:
            raise StripeError(400, f"Charge {charge_id} has already been refunded.", code="charge_already_refunded")
        if amount is None:
            amount = remaining
        if amount > remaining:
            currency = charge["currency"]
            what = (
                f"unrefunded amount on charge ({money(remaining, currency)})"
                if charge["amount_refunded"]
                else f"charge amount ({money(charge['amount'], currency)})"
            )
            raise StripeError(
                400,
                f"Refund amount ({money(amount, currency)}) is greater than {what}",
                code="amount_too_large",
                param="amount",
            )
        return self.output(self._apply_refund(ctx, charge, amount, reason, metadata), ctx.expand)

    def _apply_refund(
        self, ctx: Context, charge: dict[str, Any], amount: int, reason: str | None, metadata: dict[str, str]
    ) -> dict[str, Any]:
        refund_id = new_id("re")
        pending = self.pending_next.get(charge["id"], 0) > 0
        if pending:
            self.pending_next[charge["id"]] -= 1
        txn_id = self._txn(
            account=PLATFORM,
            amount=-amount,
            currency=charge["currency"],
            type="refund",
            category="refund",
            source=refund_id,
        )
        refund = fixture("refund")
        refund.update(
            id=refund_id,
            amount=amount,
            balance_transaction=txn_id,
            charge=charge["id"],
            created=self.now(),
            currency=charge["currency"],
            destination_details={
                "card": {
                    "reference": None if pending else secrets.token_hex(8),
                    "reference_status": "pending" if pending else "available",
                    "reference_type": "acquirer_reference_number",
                    "type": "refund",
                },
                "type": "card",
            },
            metadata=metadata,
            payment_intent=charge["payment_intent"],
            reason=reason,
            receipt_number=None,
            source_transfer_reversal=None,
            status="pending" if pending else "succeeded",
            transfer_reversal=None,
            customer=charge["customer"],
            payment_method=charge["payment_method"],
        )
        self._put(refund)
        previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
        self.charge_refunds[charge["id"]].append(refund_id)
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self.emit("refund.created", refund_id, ctx)
        self.emit("charge.refunded", charge["id"], ctx, previous)
        return self.render(refund_id)

    def retrieve_refund(self, ctx: Context, params: dict[str, Any], refund_id: str) -> dict[str, Any]:
        return self.answer(ctx, self._get("refund", refund_id)["id"])

    def update_refund(self, ctx: Context, params: dict[str, Any], refund_id: str) -> dict[str, Any]:
        refund = self._get("refund", refund_id)
        if "metadata" in params:
            refund["metadata"] = merged_metadata(refund["metadata"], params)
        return self.answer(ctx, refund_id)

    def list_refunds(self, ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
        ids = self.order.get("refund", [])
        charge_id, pi_id = get_str(params, "charge"), get_str(params, "payment_intent")
        if charge_id is not None:
            ids = [r for r in ids if self.objects[r]["charge"] == charge_id]
        if pi_id is not None:
            ids = [r for r in ids if self.objects[r]["payment_intent"] == pi_id]
        return self.paginate(ctx, ids, params, "/v1/refunds", "refund")

    def settle_refund(self, ctx: Context, refund_id: str, status: str, failure_reason: str | None) -> dict[str, Any]:
        """Test control: a pending refund ends ``succeeded`` or ``failed`` (its money comes back)."""
        refund = self._get("refund", refund_id)
        if refund["status"] != "pending":
            raise invalid(f"Refund {refund_id} is {refund['status']}, not pending.", param="refund")
        if status not in {"succeeded", "failed"}:
            raise invalid("status must be succeeded or failed", param="status")
        failure_reason = failure_reason or "expired_or_canceled_card"
        if status == "failed" and failure_reason not in REFUND_FAILURE_REASONS:
            raise invalid(f"failure_reason must be one of {', '.join(REFUND_FAILURE_REASONS)}", param="failure_reason")
        previous: dict[str, Any] = {"status": "pending"}
        refund["status"] = status
        if status == "succeeded":
            refund["destination_details"]["card"].update(reference=secrets.token_hex(8), reference_status="available")
        else:
            charge = self.objects[refund["charge"]]
            refund["failure_reason"] = failure_reason
            refund["failure_balance_transaction"] = self._txn(
                account=PLATFORM,
                amount=refund["amount"],
                currency=refund["currency"],
                type="refund_failure",
                category="refund_failure",
                source=refund_id,
            )
            refund["destination_details"]["card"]["reference_status"] = "unavailable"
            charge["amount_refunded"] -= refund["amount"]
            charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self.emit("refund.updated", refund_id, ctx, previous)
        self.emit("charge.refund.updated", refund_id, ctx, previous)
        if status == "failed":
            self.emit("refund.failed", refund_id, ctx, previous)
        return self.render(refund_id)

    def refunds_total(self, charge_id: str) -> dict[str, Any]:
        charge = self._get("charge", charge_id, param="charge")
        refunds = [self.objects[r] for r in self.charge_refunds[charge_id]]

        def total(status: str) -> int:
            return sum(r["amount"] for r in refunds if r["status"] == status)

        return {
            "charge": charge_id,
            "currency": charge["currency"],
            "amount": charge["amount"],
            "amount_refunded": charge["amount_refunded"],
            "succeeded": total("succeeded"),
            "pending": total("pending"),
            "failed": total("failed"),
            "refunds": len(refunds),
        }
