"""Refund fault tests with real processes: the API under uvicorn, `sav worker` processes (killed with
SIGKILL when the test says so) and the local Stripe-compatible server, which sends its signed webhooks to
the running API. After each, the provider's refunded total equals our ledger's, and nothing was paid twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import API_KEY, Service, StripeServerProcess, WorkerProcess, wait_until
from tests.factories import Tokens, World, money, uid

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"),
]

WEBHOOK_SECRET = "whsec_e2e_0123456789abcdef"


@pytest.fixture(scope="module")
def service(
    db_url: str,
    stripe_server: StripeServerProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    svc = Service(
        db_url,
        tmp_path_factory.mktemp("refund-faults"),
        SAV_STRIPE_API_KEY=API_KEY,
        SAV_STRIPE_API_BASE=stripe_server.url,
        SAV_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        SAV_REFUND_LEASE_SECONDS="1",  # a killed worker's refunds are taken over after a second
        SAV_WORKER_POLL_SECONDS="0.2",
    )
    yield svc
    svc.stop()


@pytest.fixture
def provider(stripe_server: StripeServerProcess) -> StripeServerProcess:
    stripe_server.ctl("POST", "reset")  # also forgets the webhook endpoint: tests that want one set it
    return stripe_server


@pytest.fixture
def workers(service: Service, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


class Shop:
    """A paid order: the charge at the provider and the order the marketplace pushed for it."""

    def __init__(self, service: Service, provider: StripeServerProcess, auth: Tokens, total: int) -> None:
        self.http = service.client()
        self.provider = provider
        self.arbitrator = auth("arbitrator", uid("arb"))
        charge = provider.client().v1.charges.create(params={"amount": total, "currency": "eur"})
        self.charge_id: str = charge.id
        order = World(self.http, auth).order(  # type: ignore[arg-type] - httpx.Client speaks TestClient's API
            uid("buyer"), unit=total, qty=1, payment={"provider": "stripe", "charge_id": charge.id}
        )
        self.order_id: str = order["order_id"]

    def body(self, **refund: Any) -> dict[str, Any]:
        return {"order_id": self.order_id, "reason": "e2e", "funded_by": "operator", **refund}

    def refund(self, refund_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/refunds/{refund_id}", headers=self.arbitrator)
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def refunds(self) -> list[dict[str, Any]]:
        listed = self.http.get("/v1/refunds", params={"order_id": self.order_id}, headers=self.arbitrator)
        return listed.json()["items"]  # type: ignore[no-any-return]

    def settled(self) -> bool:
        return all(r["status"] != "pending" for r in self.refunds())

    def at_provider(self) -> dict[str, Any]:
        return dict(self.provider.ctl("GET", "refunds_total", charge=self.charge_id))

    def ledger_refunded(self) -> int:
        order = self.http.get(f"/v1/orders/{self.order_id}", headers=self.arbitrator).json()
        return int(order["refunded"]["amount"])


async def post_all(service: Service, requests: list[tuple[dict[str, str], dict[str, Any]]]) -> list[httpx.Response]:
    """Send every (headers, body) to POST /v1/refunds at the same time."""
    async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
        return list(await asyncio.gather(*(client.post("/v1/refunds", json=b, headers=h) for h, b in requests)))


def test_fifty_identical_requests_make_one_refund(
    service: Service, provider: StripeServerProcess, auth: Tokens, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    shop = Shop(service, provider, auth, 4_000)
    same = ({**shop.arbitrator, "Idempotency-Key": uuid.uuid4().hex}, shop.body(kind="partial", amount=money(1_500)))
    responses = asyncio.run(post_all(service, [same] * 50))
    assert {r.status_code for r in responses} == {201}, {r.text for r in responses if r.status_code != 201}
    assert len({r.json()["refund_id"] for r in responses}) == 1
    assert len(shop.refunds()) == 1

    workers.append(WorkerProcess(service, tmp_path, "a"))
    wait_until(shop.settled, "the refund to be paid")
    assert [r["status"] for r in shop.refunds()] == ["succeeded"]
    assert (shop.at_provider()["refunds"], shop.at_provider()["amount_refunded"]) == (1, 1_500)
    assert shop.ledger_refunded() == 1_500


def test_ten_concurrent_partials_beyond_the_capture_and_two_workers(
    service: Service, provider: StripeServerProcess, auth: Tokens, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    shop = Shop(service, provider, auth, 5_000)
    requests = [
        ({**shop.arbitrator, "Idempotency-Key": uuid.uuid4().hex}, shop.body(kind="partial", amount=money(700)))
        for _ in range(10)
    ]
    responses = asyncio.run(post_all(service, requests))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * 7 + [422] * 3  # 7 x 700 fit in 5 000; the 8th would not
    assert {r.json()["code"] for r in responses if r.status_code == 422} == {"refund.exceeds_refundable"}

    # Two workers at once: each refund is claimed by one of them, and Stripe sees each once.
    workers.append(WorkerProcess(service, tmp_path, "a"))
    workers.append(WorkerProcess(service, tmp_path, "b"))
    wait_until(shop.settled, "the refunds to be paid")
    assert [r["status"] for r in shop.refunds()] == ["succeeded"] * 7
    assert (shop.at_provider()["refunds"], shop.at_provider()["amount_refunded"]) == (7, 4_900)
    assert shop.ledger_refunded() == 4_900

    rest = shop.http.post(
        "/v1/refunds", json=shop.body(kind="full"), headers={**shop.arbitrator, "Idempotency-Key": uuid.uuid4().hex}
    )
    assert rest.status_code == 201, rest.text
    assert rest.json()["amount"] == money(100)
    wait_until(shop.settled, "the last refund to be paid")
    assert (shop.at_provider()["amount_refunded"], shop.ledger_refunded()) == (5_000, 5_000)


def test_a_worker_killed_between_the_provider_call_and_its_commit(
    service: Service, provider: StripeServerProcess, auth: Tokens, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    shop = Shop(service, provider, auth, 3_000)
    granted = shop.http.post(
        "/v1/refunds",
        json=shop.body(kind="partial", amount=money(1_200)),
        headers={**shop.arbitrator, "Idempotency-Key": uuid.uuid4().hex},
    ).json()
    # Stripe applies the refund, then holds its answer: the worker is inside the call when it dies.
    provider.ctl("POST", "faults", path="/v1/refunds", mode="hold_after_apply", ms=120_000, count=1)
    doomed = WorkerProcess(service, tmp_path, "doomed")
    workers.append(doomed)
    wait_until(lambda: shop.at_provider()["refunds"] == 1, "Stripe to apply the refund")
    doomed.kill()
    killed = shop.refund(granted["refund_id"])
    assert (killed["status"], killed["provider_ref"]) == ("pending", None)  # we never heard the answer

    workers.append(WorkerProcess(service, tmp_path, "restarted"))
    wait_until(shop.settled, "the restarted worker to settle the refund")
    paid = shop.refund(granted["refund_id"])
    assert paid["status"] == "succeeded"
    assert paid["provider_ref"] == provider.client().v1.refunds.list(params={"charge": shop.charge_id}).data[0].id
    assert (shop.at_provider()["refunds"], shop.at_provider()["amount_refunded"]) == (1, 1_200)
    assert shop.ledger_refunded() == 1_200


def test_stripe_webhooks_settle_import_and_are_applied_once_when_replayed(
    service: Service, provider: StripeServerProcess, auth: Tokens, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    provider.ctl("POST", "webhook", url=f"{service.url}/v1/webhooks/stripe", secret=WEBHOOK_SECRET)
    shop = Shop(service, provider, auth, 2_000)
    provider.ctl("POST", "next_refund_pending", charge=shop.charge_id)  # the bank takes its time
    granted = shop.http.post(
        "/v1/refunds",
        json=shop.body(kind="partial", amount=money(800)),
        headers={**shop.arbitrator, "Idempotency-Key": uuid.uuid4().hex},
    ).json()
    worker = WorkerProcess(service, tmp_path, "a")
    workers.append(worker)
    sent = wait_until(lambda: shop.refund(granted["refund_id"])["provider_ref"], "the refund to reach Stripe")
    worker.stop()  # from here on only webhooks can settle it
    assert shop.refund(granted["refund_id"])["status"] == "pending"

    provider.ctl("POST", f"refunds/{sent}/settle", status="succeeded")
    wait_until(lambda: shop.refund(granted["refund_id"])["status"] == "succeeded", "the webhook to settle it")

    # Someone refunds 500 more in the Stripe dashboard: imported from the webhook.
    provider.ctl("POST", "dashboard_refund", charge=shop.charge_id, amount=500)
    wait_until(lambda: len(shop.refunds()) == 2, "the dashboard refund to be imported")
    provider.ctl("POST", "webhooks/drain")

    # Stripe delivers every event again (it does: at-least-once): nothing changes.
    events = provider.ctl("GET", "events")["events"]
    for event in events:
        provider.ctl("POST", f"events/{event['id']}/redeliver")
    deliveries = provider.ctl("POST", "webhooks/drain")["deliveries"]
    assert len(deliveries) == 2 * len(events) > 0
    assert {d["status"] for d in deliveries} == {200}, deliveries
    # Stripe's own events fit what we know: none was rejected.
    rejected = shop.http.get(
        "/v1/provider-events", params={"status": "rejected", "limit": 200}, headers=auth("finance")
    ).json()["items"]
    assert not {e["event_id"] for e in rejected} & {e["id"] for e in events}, rejected

    assert sorted(r["status"] for r in shop.refunds()) == ["succeeded", "succeeded"]
    assert (shop.at_provider()["refunds"], shop.at_provider()["amount_refunded"]) == (2, 1_300)
    assert shop.ledger_refunded() == 1_300
