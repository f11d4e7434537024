"""Charges and payment intents: test setup only (a buyer's payment is made elsewhere; here it just exists).

``POST /v1/charges`` makes a captured, succeeded card charge with its balance transaction, plus the
succeeded payment intent whose ``latest_charge`` it is.
"""

from __future__ import annotations

from typing import Any

from devtools.stripe_server.errors import invalid
from devtools.stripe_server.params import Context, get_currency, get_int, get_metadata, get_str, new_id
from devtools.stripe_server.state import PLATFORM, StoreBase, fixture


class Charges(StoreBase):
    def create_charge(
        self,
        ctx: Context,
        params: dict[str, Any],
        *,
        charge_id: str | None = None,
        payment_intent: str | None = None,
        render: bool = True,
    ) -> dict[str, Any]:
        """A succeeded card charge. ``charge_id`` and ``payment_intent`` (chosen ids) are for seeding
        through /_control/charges only: Stripe's ``POST /v1/charges`` has no such params. ``render=False``
        (bulk seeding) answers ``{"id": ...}`` only."""
        amount = get_int(params, "amount", required=True)
        currency = get_currency(params)
        assert amount is not None
        assert currency is not None
        metadata = get_metadata(params)
        description = get_str(params, "description")
        pi_id = payment_intent or new_id("pi")
        if pi_id in self.objects:
            raise invalid(
                f"A payment_intent with id {pi_id} already exists.",
                param="payment_intent",
                code="resource_already_exists",
            )
        now, charge_id, pm_id = self.now(), charge_id or new_id("ch"), new_id("pm")
        txn_id = self._txn(
            account=PLATFORM,
            amount=amount,
            currency=currency,
            type="charge",
            category="charge",
            source=charge_id,
            description=description,
        )
        charge = fixture("charge")
        charge.update(
            id=charge_id,
            amount=amount,
            amount_captured=amount,
            amount_refunded=0,
            balance_transaction=txn_id,
            calculated_statement_descriptor=get_str(params, "statement_descriptor"),
            captured=True,
            created=now,
            currency=currency,
            customer=get_str(params, "customer"),
            description=description,
            livemode=False,
            metadata=metadata,
            on_behalf_of=None,
            outcome={
                "advice_code": None,
                "network_advice_code": None,
                "network_decline_code": None,
                "network_status": "approved_by_network",
                "reason": None,
                "risk_level": "normal",
                "risk_score": 32,
                "seller_message": "Payment complete.",
                "type": "authorized",
            },
            paid=True,
            payment_intent=pi_id,
            payment_method=pm_id,
            receipt_email=get_str(params, "receipt_email"),
            receipt_url=f"https://pay.stripe.com/receipts/payment/{charge_id}",
            refunded=False,
            shipping=None,
            source=None,
            status="succeeded",
            transfer_data=None,
            transfer_group=get_str(params, "transfer_group"),
        )
        charge["payment_method_details"]["card"]["overcapture"]["maximum_amount_capturable"] = amount
        self._put(charge)
        self.charge_refunds[charge_id] = []
        pi = fixture("payment_intent")
        pi.update(
            id=pi_id,
            amount=amount,
            amount_capturable=0,
            amount_details={"tip": {}},
            amount_received=amount,
            automatic_payment_methods=None,
            canceled_at=None,
            cancellation_reason=None,
            client_secret=f"{pi_id}_secret_{new_id('x')[2:]}",
            created=now,
            currency=currency,
            customer=charge["customer"],
            description=description,
            last_payment_error=None,
            latest_charge=charge_id,
            livemode=False,
            metadata=metadata,
            next_action=None,
            payment_method=pm_id,
            payment_method_configuration_details=None,
            payment_method_types=["card"],
            processing=None,
            shipping=None,
            status="succeeded",
            transfer_data=None,
            transfer_group=charge["transfer_group"],
        )
        self._put(pi)
        return self.answer(ctx, charge_id) if render else {"id": charge_id}

    def retrieve_charge(self, ctx: Context, params: dict[str, Any], charge_id: str) -> dict[str, Any]:
        return self.answer(ctx, self._get("charge", charge_id)["id"])

    def retrieve_payment_intent(self, ctx: Context, params: dict[str, Any], pi_id: str) -> dict[str, Any]:
        return self.answer(ctx, self._get("payment_intent", pi_id)["id"])
