"""Escrow release and recovery with real processes: the API under uvicorn, `sav worker` processes (killed
with SIGKILL when the test says so) and the local Stripe-compatible server, reached through the real
adapter (the official SDK). After each step the provider's own records (transfers, reversals, balance
transactions, the shop's connected account) must equal our payouts, balance and ledger to the cent:
every `tr_` / `trr_` id on one side is on the other with the same amount, and nothing was sent twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.db import create_engine
from app.ledger.models import LedgerEntry, LedgerTransaction
from app.ledger.posting import Account, TransactionKind
from tests.e2e.helpers import API_KEY, Service, StripeServerProcess, WorkerProcess, wait_until
from tests.factories import Tokens, World, money, uid

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def service(
    db_url: str, stripe_server: StripeServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    svc = Service(
        db_url,
        tmp_path_factory.mktemp("release-faults"),
        SAV_STRIPE_API_KEY=API_KEY,
        SAV_STRIPE_API_BASE=stripe_server.url,
        SAV_ESCROW_HOLD_SECONDS="1",  # orders are pushed delivered an hour ago: due at once
        SAV_PAYOUT_LEASE_SECONDS="1",  # a killed worker's transfer is taken over after a second
        SAV_REFUND_LEASE_SECONDS="1",
        SAV_WORKER_POLL_SECONDS="0.2",
    )
    yield svc
    svc.stop()


@pytest.fixture
def provider(stripe_server: StripeServerProcess) -> StripeServerProcess:
    stripe_server.ctl("POST", "reset")
    return stripe_server


@pytest.fixture
def workers(service: Service) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


@dataclass
class Shop:
    seller_id: str
    account: str  # its connected account at the provider


class Market:
    """The marketplace side (shops, delivered orders paid by charges at the provider, refunds) and what our
    API and ledger say about them."""

    def __init__(self, service: Service, provider: StripeServerProcess, auth: Tokens, db_url: str) -> None:
        self.http = service.client()
        self.provider = provider
        self.auth = auth
        self.db_url = db_url
        self.finance = auth("finance", uid("fin"))
        self.arbitrator = auth("arbitrator", uid("arb"))
        self.charges: dict[str, str] = {}  # order -> charge

    def shop(self) -> Shop:
        account = self.provider.client().v1.accounts.create(
            params={"type": "express", "country": "FR", "capabilities": {"transfers": {"requested": True}}}
        )
        seller_id = uid("shop")
        body = {"name": f"Shop {seller_id}", "stripe_account_id": account.id}
        response = self.http.put(f"/v1/sellers/{seller_id}", json=body, headers=self.auth.marketplace)
        assert response.status_code == 201, response.text
        return Shop(seller_id, account.id)

    def order(self, shop: Shop, total: int, commission: int) -> str:
        charge = self.provider.client().v1.charges.create(params={"amount": total, "currency": "eur"})
        delivered = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        order = World(self.http, self.auth).order(  # type: ignore[arg-type] - httpx.Client speaks TestClient's API
            uid("buyer"),
            shop.seller_id,
            unit=total,
            qty=1,
            commission=money(commission),
            payment={"provider": "stripe", "charge_id": charge.id},
            delivered_at=delivered,
        )
        self.charges[order["order_id"]] = charge.id
        return order["order_id"]  # type: ignore[no-any-return]

    def seller_funded_refund(self, order_id: str, amount: int) -> str:
        response = self.http.post(
            "/v1/refunds",
            json={
                "order_id": order_id,
                "reason": "e2e",
                "funded_by": "seller",
                "kind": "partial",
                "amount": money(amount),
            },
            headers={**self.arbitrator, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert response.status_code == 201, response.text
        return response.json()["refund_id"]  # type: ignore[no-any-return]

    def refund_status(self, refund_id: str) -> str:
        return self.http.get(f"/v1/refunds/{refund_id}", headers=self.arbitrator).json()["status"]  # type: ignore[no-any-return]

    def payouts(self, shop: Shop) -> list[dict[str, Any]]:
        response = self.http.get(
            "/v1/payouts", params={"seller_id": shop.seller_id, "limit": 200}, headers=self.finance
        )
        assert response.status_code == 200, response.text
        return response.json()["items"]  # type: ignore[no-any-return]

    def payout(self, order_id: str) -> dict[str, Any] | None:
        items = self.http.get("/v1/payouts", params={"order_id": order_id}, headers=self.finance).json()["items"]
        return items[0] if items else None

    def balance(self, shop: Shop) -> dict[str, int]:
        response = self.http.get(f"/v1/sellers/{shop.seller_id}/balance", headers=self.finance)
        assert response.status_code == 200, response.text
        (eur,) = [b for b in response.json()["balances"] if b["currency"] == "EUR"]
        return {name: eur[name]["amount"] for name in ("held", "frozen", "paid_out", "reversed", "debt")}

    def ledger_ids(self, shop: Shop) -> tuple[dict[str, int], dict[str, int]]:
        """Our ledger's transfers and reversals for the shop: provider id -> amount (what moved on our
        provider balance in that transaction)."""

        async def run() -> list[Any]:
            engine = create_engine(self.db_url)
            try:
                async with engine.connect() as conn:
                    shops = select(LedgerEntry.transaction_id).where(LedgerEntry.party_id == shop.seller_id)
                    rows = await conn.execute(
                        select(LedgerTransaction.kind, LedgerTransaction.provider_id, LedgerEntry.amount)
                        .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
                        .where(
                            LedgerTransaction.id.in_(shops),
                            LedgerTransaction.kind.in_(
                                [TransactionKind.TRANSFER_PAID.value, TransactionKind.TRANSFER_REVERSED.value]
                            ),
                            LedgerEntry.account == Account.PROVIDER_BALANCE.value,
                        )
                    )
                    return list(rows.all())
            finally:
                await engine.dispose()

        transfers: dict[str, int] = {}
        reversals: dict[str, int] = {}
        for kind, provider_id, amount in asyncio.run(run()):
            if kind == TransactionKind.TRANSFER_PAID.value:
                transfers[provider_id] = -amount
            else:
                reversals[provider_id] = amount
        return transfers, reversals


@pytest.fixture
def market(service: Service, provider: StripeServerProcess, auth: Tokens, db_url: str) -> Iterator[Market]:
    made = Market(service, provider, auth, db_url)
    yield made
    made.http.close()


def at_provider(provider: StripeServerProcess, shop: Shop) -> tuple[dict[str, Any], dict[str, Any]]:
    """The provider's transfers to the shop's account and their reversals, by id."""
    client = provider.client()
    listed = client.v1.transfers.list(params={"destination": shop.account, "limit": 100})
    transfers = {t.id: t for t in listed.auto_paging_iter()}
    reversals = {
        r.id: r
        for t in transfers
        for r in client.v1.transfers.reversals.list(t, params={"limit": 100}).auto_paging_iter()
    }
    return transfers, reversals


def agree(market: Market, shop: Shop, *, drained: int = 0) -> dict[str, int]:
    """The provider's records of the shop equal ours to the cent; returns our balance."""
    provider = market.provider
    transfers, reversals = at_provider(provider, shop)
    ours_transfers, ours_reversals = market.ledger_ids(shop)
    assert ours_transfers == {t.id: t.amount for t in transfers.values()}
    assert ours_reversals == {r.id: r.amount for r in reversals.values()}
    for t in transfers.values():  # the transfer's own total agrees with its reversals
        assert t.amount_reversed == sum(r.amount for r in reversals.values() if r.transfer == t.id)

    payouts = [p for p in market.payouts(shop) if p["provider_ref"]]
    assert {p["provider_ref"]: p["amount"]["amount"] for p in payouts} == ours_transfers
    for p in payouts:  # each transfer is the order's: its group, funded by its charge
        sent = transfers[p["provider_ref"]]
        assert (sent.transfer_group, sent.source_transaction) == (p["order_id"], market.charges[p["order_id"]])
        assert p["reversed"]["amount"] == sent.amount_reversed
    balance = market.balance(shop)
    net = sum(t.amount for t in transfers.values()) - sum(r.amount for r in reversals.values())
    assert (balance["paid_out"], balance["reversed"]) == (sum(ours_transfers.values()), sum(ours_reversals.values()))
    assert balance["paid_out"] - balance["reversed"] == net

    # The platform's balance transactions: a `transfer` out for each tr_, a `transfer_refund` in for each trr_.
    client = provider.client()
    moved = {
        t.source: t.amount
        for kind in ("transfer", "transfer_refund")
        for t in client.v1.balance_transactions.list(params={"type": kind, "limit": 100}).auto_paging_iter()
    }
    assert {i: -moved[i] for i in transfers} == ours_transfers
    assert {i: moved[i] for i in reversals} == ours_reversals
    # The shop's connected account holds what it was sent, less what came back and what it paid out.
    (held,) = client.v1.balance.retrieve(options={"stripe_account": shop.account}).available
    assert held.amount == net - drained
    return balance


def settled(market: Market, order_id: str) -> dict[str, Any] | None:
    """The order's payout once it is no longer pending (paid, or failed: then the test says why)."""
    payout = market.payout(order_id)
    return payout if payout is not None and payout["status"] != "pending" else None


def paid(market: Market, order_id: str, what: str, timeout: float = 60) -> dict[str, Any]:
    payout: dict[str, Any] = wait_until(lambda: settled(market, order_id), what, timeout)
    assert (payout["status"], payout["failure_reason"]) == ("paid", None)
    return payout


def test_a_worker_killed_between_the_transfer_and_its_commit(
    service: Service, market: Market, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    provider = market.provider
    shop = market.shop()
    order_id = market.order(shop, 6_000, 600)
    # Stripe makes the transfer, then holds its answer: the worker is inside the call when it dies.
    provider.ctl("POST", "faults", path="/v1/transfers", mode="hold_after_apply", ms=120_000, count=1)
    doomed = WorkerProcess(service, tmp_path, "doomed")
    workers.append(doomed)
    wait_until(lambda: at_provider(provider, shop)[0], "Stripe to make the transfer")
    doomed.kill()
    killed = market.payout(order_id)
    assert killed is not None
    assert (killed["status"], killed["provider_ref"]) == ("pending", None)  # we never heard the answer

    workers.append(WorkerProcess(service, tmp_path, "restarted"))
    payout = paid(market, order_id, "the restarted worker to record the transfer", timeout=30)
    (transfer,) = at_provider(provider, shop)[0].values()  # one transfer: the retry got the stored answer
    assert (payout["provider_ref"], payout["amount"], transfer.amount) == (transfer.id, money(5_400), 5_400)
    assert transfer.metadata["payout_id"] == payout["payout_id"]
    assert agree(market, shop)["paid_out"] == 5_400


def test_two_workers_over_many_due_orders_make_one_transfer_each(
    service: Service, market: Market, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    provider = market.provider
    shops = [market.shop() for _ in range(3)]
    totals = {shop.seller_id: 0 for shop in shops}
    orders: dict[str, Shop] = {}
    for n in range(20):  # 60 orders: more than one batch
        for shop in shops:
            orders[market.order(shop, 1_000 + 10 * n, 100)] = shop
            totals[shop.seller_id] += 900 + 10 * n
    provider.ctl("POST", "latency", path="/v1/transfers", ms=20)  # calls overlap between the workers
    workers.extend(WorkerProcess(service, tmp_path, name) for name in ("a", "b"))

    def all_settled() -> bool:
        return sum(p["status"] != "pending" for shop in shops for p in market.payouts(shop)) == len(orders)

    wait_until(all_settled, "every order's payout to be settled")
    assert {p["status"] for shop in shops for p in market.payouts(shop)} == {"paid"}
    for shop in shops:
        transfers = at_provider(provider, shop)[0].values()
        ours = [o for o, s in orders.items() if s is shop]
        assert sorted(t.transfer_group for t in transfers) == sorted(ours)  # one each, none missing
        assert agree(market, shop)["paid_out"] == totals[shop.seller_id]
    counts = [provider.ctl("GET", "transfers_total", transfer_group=o)["transfers"] for o in orders]
    assert counts == [1] * len(orders)


def test_stripe_500s_before_and_after_applying_are_retried_with_the_same_key(
    service: Service, market: Market, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    provider = market.provider
    shop = market.shop()
    order_id = market.order(shop, 3_000, 300)
    # The worker's first attempt: Stripe answers 500 without applying, then the SDK's retry (same key)
    # is applied but answered 500 too. The worker backs off; its next attempt (same key) gets the transfer.
    provider.ctl("POST", "faults", path="/v1/transfers", mode="error_500", count=1)
    provider.ctl("POST", "faults", path="/v1/transfers", mode="error_500_after_apply", count=1)
    workers.append(WorkerProcess(service, tmp_path, "a"))

    def retrying() -> bool:
        payout = market.payout(order_id)
        return payout is not None and (payout["failure_reason"] or "").startswith("retrying")

    wait_until(retrying, "the first attempt to fail")
    assert market.payout(order_id)["status"] == "pending"  # type: ignore[index]
    made = list(at_provider(provider, shop)[0])
    assert len(made) == 1  # applied by the retry that was answered 500
    payout = paid(market, order_id, "the worker's next attempt")
    assert (payout["provider_ref"], payout["amount"]) == (made[0], money(2_700))
    assert len(at_provider(provider, shop)[0]) == 1
    agree(market, shop)


def test_reversal_then_refused_reversal_becomes_debt_netted_from_the_next_release(
    service: Service, market: Market, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    provider = market.provider
    shop = market.shop()
    first = market.order(shop, 10_000, 1_000)
    workers.append(WorkerProcess(service, tmp_path, "a"))
    paid(market, first, "the first release")
    released = agree(market, shop)
    assert released == {"held": 0, "frozen": 0, "paid_out": 9_000, "reversed": 0, "debt": 0}

    # A seller-funded refund after release: the buyer is refunded, then the shop's transfer reversed.
    refund = market.seller_funded_refund(first, 2_000)
    wait_until(lambda: market.balance(shop) != released, "the shop's part to be recovered")
    assert market.refund_status(refund) == "succeeded"
    assert provider.ctl("GET", "refunds_total", charge=market.charges[first])["amount_refunded"] == 2_000
    assert agree(market, shop) == {"held": 0, "frozen": 0, "paid_out": 9_000, "reversed": 2_000, "debt": 0}

    # The shop pays its balance out to its bank: the next reversal is refused and becomes its debt.
    payout_to_bank = provider.client().v1.payouts.create(
        params={"amount": 7_000, "currency": "eur"}, options={"stripe_account": shop.account}
    )
    assert payout_to_bank.status == "paid"
    before = market.balance(shop)
    refund = market.seller_funded_refund(first, 1_500)
    wait_until(lambda: market.balance(shop) != before, "the shop's part to be recovered")
    assert market.refund_status(refund) == "succeeded"  # the buyer has the money whatever the shop's balance
    assert len(at_provider(provider, shop)[1]) == 1  # no second reversal at the provider
    assert agree(market, shop, drained=7_000) == {
        "held": 0,
        "frozen": 0,
        "paid_out": 9_000,
        "reversed": 2_000,
        "debt": 1_500,
    }

    # The next release nets the debt: 4 500 owed, 1 500 kept, 3 000 transferred.
    second = market.order(shop, 5_000, 500)
    payout = paid(market, second, "the second release")
    assert (payout["amount"], payout["debt_netted"]) == (money(3_000), money(1_500))
    assert agree(market, shop, drained=7_000) == {
        "held": 0,
        "frozen": 0,
        "paid_out": 12_000,
        "reversed": 2_000,
        "debt": 0,
    }
