"""No log line carries a secret: a real `sav serve` process logging at DEBUG (uvicorn, the websockets
protocol, the access log, the worker), driven through every path that handles one — bearer tokens in
headers, in ``?token=`` and in an auth frame, a promo code granted, pushed over the WebSocket and redeemed
through its URL, webhook endpoint secrets, Stripe-Signature and Sav-Signature — then the log is grepped."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import stripe
from websockets.asyncio.client import connect

from tests.e2e.helpers import Service, drain, open_socket, put, token_of, wait_until
from tests.factories import Receiver, Tokens, money, order_body, uid

pytestmark = pytest.mark.slow

STRIPE_SECRET = "whsec_logtest_0123456789abcdef"


def test_no_token_signature_promo_code_or_webhook_secret_reaches_the_log(
    db_url: str, tmp_path_factory: pytest.TempPathFactory, auth: Tokens
) -> None:
    receiver = Receiver()
    service = Service(
        db_url,
        tmp_path_factory.mktemp("logs"),
        SAV_LOG_LEVEL="DEBUG",
        SAV_STRIPE_WEBHOOK_SECRET=STRIPE_SECRET,
        SAV_RUN_WORKER="true",
        SAV_WEBHOOKS_ALLOW_PRIVATE="true",  # the receiver is on 127.0.0.1
    )
    secrets: list[str] = [STRIPE_SECRET]
    try:
        shop, buyer_id, order = uid("shop"), uid("buyer"), uid("ord")
        buyer, seller, arbitrator, admin = (
            auth("buyer", buyer_id),
            auth("seller", uid("m"), seller_id=shop),
            auth("arbitrator"),
            auth("admin"),
        )
        secrets += [token_of(h) for h in (buyer, seller, arbitrator, admin, auth.marketplace)]
        with service.client() as http:
            put(http, f"/v1/sellers/{shop}", {"name": shop}, auth.marketplace)
            put(http, f"/v1/orders/{order}", order_body(buyer_id, shop), auth.marketplace)
            chosen = f"chosen-secret-{uuid.uuid4().hex}"
            for body in ({}, {"secret": chosen}):
                response = http.post(
                    "/v1/webhook-endpoints",
                    json={"url": receiver.url, "event_types": ["refund.succeeded"], **body},
                    headers=admin,
                )
                assert response.status_code == 201, response.text
                secrets.append(response.json()["secret"])
            assert chosen in secrets

        async def sockets() -> str:
            by_url = await open_socket(service, buyer)  # ?token=<JWT>
            by_frame = await connect(service.ws_url)
            await by_frame.send(json.dumps({"type": "auth", "token": token_of(seller)}))
            try:
                with service.client() as http:
                    response = http.post(
                        "/v1/refunds",
                        json={
                            "order_id": order,
                            "kind": "promo_code",
                            "amount": money(500),
                            "funded_by": "operator",
                            "reason": "log test",
                        },
                        headers={**arbitrator, "Idempotency-Key": uuid.uuid4().hex},
                    )
                    assert response.status_code == 201, response.text
                    code: str = response.json()["promo_code"]
                pushed = [f for f in await drain(by_url) if f.get("type") == "refund.updated"]
                assert pushed[0]["data"]["promo_code"] == code  # it went over the wire, to the buyer
                await drain(by_frame)
                return code
            finally:
                await by_url.close()
                await by_frame.close()

        code = asyncio.run(sockets())
        secrets.append(code)
        with service.client() as http:
            redeemed = http.post(
                f"/v1/promo-codes/{code}/redemptions",
                json={"buyer_id": buyer_id, "order_id": uid("ord")},
                headers=auth.marketplace,
            )
            assert redeemed.status_code in (200, 201), redeemed.text
            refund = {"id": "re_unknown", "object": "refund", "amount": 100, "currency": "eur", "status": "succeeded"}
            event = {"id": f"evt_{uuid.uuid4().hex[:24]}", "object": "event", "type": "refund.updated"}
            payload = json.dumps({**event, "created": int(time.time()), "data": {"object": refund}})
            header = stripe.WebhookSignature.generate_signature_header(
                payload, STRIPE_SECRET, timestamp=int(time.time())
            )
            secrets.append(header.split("v1=")[1])
            for signature in (header, header.replace("v1=", "v1=0")):  # accepted, then refused
                http.post("/v1/webhooks/stripe", content=payload, headers={"Stripe-Signature": signature})
        delivered = wait_until(lambda: receiver.received, "the refund.succeeded webhook delivery", timeout=30)
        secrets.append(delivered[0]["headers"]["Sav-Signature"].split("v1=")[1])
    finally:
        service.stop()
        receiver.stop()

    log = service.log.read_text()
    # The paths were taken and logged (so the grep below means something), what is secret in them redacted.
    assert "WebSocket /v1/ws?token=[redacted]" in log
    assert "/v1/promo-codes/[redacted]/redemptions" in log
    leaked = [s for s in secrets if s in log]
    assert leaked == [], [line for line in log.splitlines() if any(s in line for s in leaked)][:5]
