"""What tests build their world from: settings, tokens, and one factory section per domain (sellers,
orders, threads, disputes, refunds, webhooks, Stripe events). Plain functions and small classes taking
the test client and the tokens; fixtures that wrap them live in the conftest files. Test modules import
from here (and from tests/fakes.py), never from one another."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import stripe
from litestar.testing import TestClient
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import issue_token
from app.db import create_engine, utcnow
from app.disputes import resolution as disputes
from app.disputes.models import Dispute
from app.ledger.models import LedgerEntry, LedgerTransaction
from app.orders.models import Order
from app.payouts import settlement
from app.payouts.models import Refund
from app.sellers.models import Seller
from app.settings import Settings, load_settings
from tests.fakes import FakeEscrow

Headers = dict[str, str]

# --- settings and tokens -------------------------------------------------------------------------------

TEST_SECRET = "test-secret-for-the-suite-0123456789abcdef"
METRICS_TOKEN = "metrics-token-for-the-suite-0123"


def make_settings(db_url: str, **overrides: str) -> Settings:
    env = {
        "SAV_ENV": "test",
        "SAV_DATABASE_URL": db_url,
        "SAV_JWT_SECRET": TEST_SECRET,
        "SAV_LOG_JSON": "false",
        "SAV_LOG_LEVEL": "WARNING",
        "SAV_RUN_WORKER": "false",
        **overrides,
    }
    return load_settings(env, dotenv=None)


class Tokens:
    """Authorization headers for any caller."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __call__(self, role: str, sub: str | None = None, seller_id: str = "", **extra: Any) -> dict[str, str]:
        token = issue_token(
            self.settings, sub=sub or f"{role}-{uuid.uuid4().hex[:8]}", role=role, seller_id=seller_id, **extra
        )
        return {"Authorization": f"Bearer {token}"}

    @property
    def marketplace(self) -> dict[str, str]:
        return self("marketplace", "marketplace")


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def money(amount: int, currency: str = "EUR") -> dict[str, Any]:
    return {"amount": amount, "currency": currency}


# --- sellers and orders --------------------------------------------------------------------------------


def order_body(buyer_id: str, seller_id: str, *, unit: int = 2500, qty: int = 2, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "buyer_id": buyer_id,
        "seller_id": seller_id,
        "currency": "EUR",
        "total": money(unit * qty),
        "commission": money(unit * qty // 10),
        "lines": [{"line_id": "l1", "sku": "SKU-1", "title": "Kettle", "quantity": qty, "unit_price": money(unit)}],
        "payment": {"provider": "stripe", "charge_id": f"ch_{uuid.uuid4().hex[:12]}"},
    }
    body.update(over)
    return body


def make_seller(client: TestClient[Any], auth: Tokens, **settings: Any) -> str:
    """A shop with a fresh id (and the seller settings given), pushed by the marketplace."""
    seller_id = uid("shop")
    body: dict[str, Any] = {"name": f"Shop {seller_id}"}
    if settings:
        body["settings"] = settings
    response = client.put(f"/v1/sellers/{seller_id}", json=body, headers=auth.marketplace)
    assert response.status_code == 201, response.text
    return seller_id


def make_order(
    client: TestClient[Any], auth: Tokens, buyer_id: str | None = None, seller_id: str | None = None, **over: Any
) -> dict[str, Any]:
    """An order with a fresh id (for a fresh buyer and shop unless given), pushed by the marketplace."""
    order_id = uid("ord")
    body = order_body(buyer_id or uid("buyer"), seller_id or make_seller(client, auth), **over)
    response = client.put(f"/v1/orders/{order_id}", json=body, headers=auth.marketplace)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


class World:
    """Factories for the marketplace a test needs: shops, buyers, orders — all with fresh ids."""

    def __init__(self, client: TestClient[Any], auth: Tokens) -> None:
        self.client = client
        self.auth = auth

    def seller(self, **settings: Any) -> str:
        return make_seller(self.client, self.auth, **settings)

    def order(self, buyer_id: str | None = None, seller_id: str | None = None, **over: Any) -> dict[str, Any]:
        return make_order(self.client, self.auth, buyer_id, seller_id, **over)


# --- threads -------------------------------------------------------------------------------------------


def open_thread(client: TestClient[Any], headers: dict[str, str], **body: Any) -> dict[str, Any]:
    payload = {"subject": "Where is my kettle?", "body": "It has not arrived.", **body}
    response = client.post("/v1/threads", json=payload, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


# --- disputes ------------------------------------------------------------------------------------------


class Case:
    """One dispute's cast: its buyer, a member of its shop, operator staff, and strangers."""

    def __init__(self, client: TestClient[Any], auth: Tokens, world: World, **seller_settings: Any) -> None:
        self.client = client
        self.buyer_id = uid("buyer")
        self.shop = world.seller(**seller_settings)
        self.order = world.order(self.buyer_id, self.shop, unit=2500, qty=2)
        self.order_id = self.order["order_id"]
        self.buyer = auth("buyer", self.buyer_id, name="Camille")
        self.seller = auth("seller", uid("member"), seller_id=self.shop, name="Inès")
        self.agent = auth("agent", uid("agent"), name="Alice")
        self.arbitrator = auth("arbitrator", uid("arb"), name="Bruno")
        self.other_arbitrator = auth("arbitrator", uid("arb"), name="Chloé")
        self.finance = auth("finance", uid("fin"))
        self.stranger = auth("buyer", uid("buyer"))
        self.other_shop = auth("seller", uid("member"), seller_id=world.seller())
        self.dispute: dict[str, Any] = {}

    def open(self, **over: Any) -> dict[str, Any]:
        body = {
            "order_id": self.order_id,
            "reason": "defective",
            "requested": {"type": "refund_full"},
            "description": "The kettle stopped heating after two days.",
            **over,
        }
        response = self.client.post("/v1/disputes", json=body, headers=self.buyer)
        assert response.status_code == 201, response.text
        self.dispute = response.json()
        return self.dispute

    def act(self, who: Headers, action: str, expect: int = 200, **fields: Any) -> dict[str, Any]:
        response = self.client.post(
            f"/v1/disputes/{self.dispute['dispute_id']}/actions", json={"action": action, **fields}, headers=who
        )
        assert response.status_code == expect, response.text
        body: dict[str, Any] = response.json()
        if expect == 200:
            self.dispute = body
        return body

    def get(self, who: Headers) -> dict[str, Any]:
        response = self.client.get(f"/v1/disputes/{self.dispute['dispute_id']}", headers=who)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def events(self, who: Headers | None = None) -> list[dict[str, Any]]:
        response = self.client.get(f"/v1/disputes/{self.dispute['dispute_id']}/events", headers=who or self.agent)
        assert response.status_code == 200, response.text
        return response.json()["items"]  # type: ignore[no-any-return]


# --- refunds and the ledger ----------------------------------------------------------------------------


def grant(client: TestClient[Any], who: dict[str, str], expect: int = 201, key: str | None = None, **body: Any) -> Any:
    headers = {**who, "Idempotency-Key": key or uuid.uuid4().hex}
    response = client.post("/v1/refunds", json={"reason": "goodwill", **body}, headers=headers)
    assert response.status_code == expect, response.text
    return response.json()


def pay(settings: Settings, escrow: FakeEscrow, *, later: timedelta = timedelta(0)) -> int:
    async def run() -> int:
        engine = create_engine(settings.database_url)
        try:
            sessions = async_sessionmaker(engine, expire_on_commit=False)

            async def on_settled(session: Any, refund: Any, now: Any) -> None:
                await disputes.refund_settled(session, refund, now, settings)

            return await settlement.pay_due(sessions, gateway=escrow, on_settled=on_settled, now=utcnow() + later)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def ledger_is_balanced(settings: Settings) -> bool:
    async def run() -> bool:
        engine = create_engine(settings.database_url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(LedgerEntry.transaction_id, LedgerEntry.currency, func.sum(LedgerEntry.amount))
                    .group_by(LedgerEntry.transaction_id, LedgerEntry.currency)
                    .having(func.sum(LedgerEntry.amount) != 0)
                )
                return rows.first() is None
        finally:
            await engine.dispose()

    return asyncio.run(run())


def order_money(client: TestClient[Any], case: Case) -> tuple[int, int]:
    order = client.get(f"/v1/orders/{case.order_id}", headers=case.agent).json()
    return order["refunded"]["amount"], order["refundable"]["amount"]


# --- outbound webhooks ---------------------------------------------------------------------------------


class Receiver:
    """A real HTTP server on 127.0.0.1 that records what it receives and can fail on purpose."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail_next = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append({"headers": dict(self.headers), "body": body})
                status = 200
                if receiver.fail_next:
                    receiver.fail_next -= 1
                    status = 503
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def subscribe(client: TestClient[Any], admin: dict[str, str], url: str, types: list[str]) -> dict[str, Any]:
    response = client.post("/v1/webhook-endpoints", json={"url": url, "event_types": types}, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def deactivate_all(client: TestClient[Any], admin: dict[str, str]) -> None:
    """Tests share a database: switch off endpoints a test made, so others' events do not reach them."""
    for endpoint in client.get("/v1/webhook-endpoints", params={"limit": 200}, headers=admin).json()["items"]:
        if endpoint["active"]:
            client.delete(f"/v1/webhook-endpoints/{endpoint['endpoint_id']}", headers=admin)


# --- Stripe events (inbound webhooks) ------------------------------------------------------------------

STRIPE_WEBHOOK_SECRET = "whsec_test_0123456789abcdef"


def send(
    client: TestClient[Any], event: dict[str, Any], *, secret: str = STRIPE_WEBHOOK_SECRET, at: int | None = None
) -> Any:
    payload = json.dumps(event)
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=at or int(time.time()))
    return client.post(
        "/v1/webhooks/stripe",
        content=payload,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )


def refund_event(kind: str, refund: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "type": kind,
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": {"object": "refund", "currency": "eur", "metadata": {}, **refund}},
    }


def book_ledger(settings: Settings, batches: list[list[Any]]) -> None:
    """Ledger transactions as devtools/reconciliation_data.py hands them over
    ``(id, kind, provider_id, order_id, created_at, [(account, amount, currency, party_id)])``, with core
    bulk inserts."""

    async def run() -> None:
        engine = create_engine(settings.database_url)
        try:
            async with engine.begin() as conn:
                for batch in batches:
                    await conn.execute(
                        insert(LedgerTransaction),
                        [
                            {
                                "id": tx,
                                "kind": kind,
                                "provider_id": pid,
                                "order_id": order,
                                "created_at": at,
                                "reference": f"recon-test:{tx}",
                            }
                            for tx, kind, pid, order, at, _ in batch
                        ],
                    )
                    await conn.execute(
                        insert(LedgerEntry),
                        [
                            {
                                "transaction_id": tx,
                                "account": account,
                                "amount": amount,
                                "currency": currency,
                                "party_id": party,
                                "order_id": order,
                            }
                            for tx, _, _, order, _, entries in batch
                            for account, amount, currency, party in entries
                        ],
                    )
        finally:
            await engine.dispose()

    asyncio.run(run())


# --- reports: rows written directly, with chosen timestamps ----------------------------------------------

T = TypeVar("T")


def run_in_transaction(db_url: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    async def go() -> T:
        engine = create_engine(db_url)
        try:
            async with async_sessionmaker(engine, expire_on_commit=False)() as session, session.begin():
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def report_shop(session: AsyncSession) -> str:
    seller_id = f"kpi-{uuid.uuid4().hex[:10]}"
    session.add(Seller(id=seller_id, name=seller_id))
    return seller_id


def report_order(session: AsyncSession, seller_id: str, created: datetime, currency: str = "EUR") -> str:
    order_id = f"o-{uuid.uuid4().hex[:12]}"
    session.info.setdefault("report_orders", {})[order_id] = (seller_id, created)
    session.add(
        Order(
            id=order_id,
            buyer_id="buyer-kpi",
            seller_id=seller_id,
            currency=currency,
            total_amount=10_000,
            commission_amount=1_000,
            payment_provider="stripe",
            charge_id=f"ch_{order_id}",
            created_at=created,
            updated_at=created,
        )
    )
    return order_id


def report_dispute(session: AsyncSession, order_id: str, seller_id: str, created: datetime, **moments: Any) -> None:
    """A dispute opened at ``created``; ``moments`` are seconds after it (or other column values)."""
    values = {
        k: created + timedelta(seconds=v) if isinstance(v, int | float) and k.endswith(("_at", "_due")) else v
        for k, v in moments.items()
    }
    session.add(
        Dispute(
            id=f"d-{uuid.uuid4().hex[:12]}",
            order_id=order_id,
            buyer_id="buyer-kpi",
            seller_id=seller_id,
            status=values.pop("status", "open"),
            reason="defective",
            requested={"type": "refund_full"},
            currency="EUR",
            amount=10_000,
            priority="standard",
            priority_rank=1,
            thread_id="t-none",
            created_at=created,
            updated_at=created,
            **values,
        )
    )


def report_refund(session: AsyncSession, order_id: str, created: datetime, **over: Any) -> None:
    """A refund of an order written by :func:`report_order` in this session (else pass its ``seller_id``
    and ``order_created_at``)."""
    values: dict[str, Any] = {"kind": "partial", "amount": 1_000, "currency": "EUR", "funded_by": "seller"}
    values.update(over)
    values.setdefault("status", "succeeded")
    if "seller_id" not in values:  # the order's shop and date are copied, as the app does at write time
        values["seller_id"], values["order_created_at"] = session.info["report_orders"][order_id]
    session.add(
        Refund(
            id=f"r-{uuid.uuid4().hex[:12]}",
            order_id=order_id,
            source_key=f"test:{uuid.uuid4().hex}",
            seller_amount=values["amount"],
            operator_amount=0,
            reason="kpi test",
            attempts=0,
            next_attempt_at=created,
            created_by="test",
            created_at=created,
            updated_at=created,
            **values,
        )
    )
