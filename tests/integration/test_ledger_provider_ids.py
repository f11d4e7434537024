"""Every ledger transaction carries the payment provider's id it corresponds to (``ch_`` of a capture,
``re_`` of a refund paid or reversed, none for what lives in our ledger only), and migration 0009 fills
in, on rows written before it, the very ids the service writes now — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from litestar.testing import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.db import alembic_config, create_engine, utcnow
from app.ledger.models import LedgerTransaction
from app.payouts import settlement
from tests.databases import create_pg_database, migrate
from tests.factories import Tokens, make_settings, money, order_body, uid
from tests.fakes import FakeEscrow


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own: the test migrates it down and up again."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'sav.db'}"
        return
    url, drop = create_pg_database(request.getfixturevalue("pg_admin_url"), prefix="sav_provider_ids")
    try:
        yield url
    finally:
        drop()


def provider_ids(url: str) -> dict[str, tuple[str, str | None]]:
    """reference -> (kind, provider_id) of every ledger transaction."""

    async def read() -> dict[str, tuple[str, str | None]]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(LedgerTransaction.reference, LedgerTransaction.kind, LedgerTransaction.provider_id)
                )
                return {reference: (kind, provider_id) for reference, kind, provider_id in rows.all()}
        finally:
            await engine.dispose()

    return asyncio.run(read())


def pay(url: str, escrow: FakeEscrow) -> None:
    async def run() -> None:
        engine = create_engine(url)
        try:
            sessions = async_sessionmaker(engine, expire_on_commit=False)
            await settlement.pay_due(sessions, gateway=escrow, now=utcnow() + timedelta(seconds=1))
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_transactions_carry_provider_ids_and_the_migration_fills_in_the_same(fresh_db_url: str) -> None:
    from app.main import create_app

    migrate(fresh_db_url)
    settings = make_settings(fresh_db_url)
    auth = Tokens(settings)
    escrow = FakeEscrow()
    arbitrator = auth("arbitrator")
    with TestClient(app=create_app(settings, configure_logs=False)) as client:
        seller_id, order_id = uid("shop"), uid("ord")
        assert (
            client.put(f"/v1/sellers/{seller_id}", json={"name": "Shop"}, headers=auth.marketplace).status_code == 201
        )
        body = order_body(uid("buyer"), seller_id)
        charge_id = body["payment"]["charge_id"]
        assert client.put(f"/v1/orders/{order_id}", json=body, headers=auth.marketplace).status_code == 201
        corrected = {**body, "total": money(6_000), "lines": [{**body["lines"][0], "unit_price": money(3_000)}]}
        assert client.put(f"/v1/orders/{order_id}", json=corrected, headers=auth.marketplace).status_code == 200

        def grant(kind: str, amount: int) -> Any:
            response = client.post(
                "/v1/refunds",
                json={
                    "order_id": order_id,
                    "kind": kind,
                    "amount": money(amount),
                    "funded_by": "operator",
                    "reason": "x",
                },
                headers={**arbitrator, "Idempotency-Key": uuid.uuid4().hex},
            )
            assert response.status_code == 201, response.text
            return response.json()["refund_id"]

        paid = grant("partial", 1_000)
        pay(fresh_db_url, escrow)
        escrow.status = "failed"
        refused = grant("partial", 500)
        pay(fresh_db_url, escrow)
        never_sent = grant("partial", 200)
        credit = grant("credit", 300)
        promo = grant("promo_code", 400)
        refund_ids = {
            r["refund_id"]: r["provider_ref"] for r in client.get("/v1/refunds", headers=arbitrator).json()["items"]
        }

    written = provider_ids(fresh_db_url)
    assert written[f"order:{order_id}:capture:0"] == ("capture", charge_id)
    assert written[f"order:{order_id}:capture:1"] == ("capture_adjustment", charge_id)
    assert refund_ids[paid] is not None
    assert refund_ids[refused] is not None
    assert written[f"refund:{paid}:issued"] == ("refund_issued", None)  # not sent yet when granted
    assert written[f"refund:{paid}:paid"] == ("refund_paid", refund_ids[paid])
    assert written[f"refund:{refused}:reversed"] == ("refund_reversed", refund_ids[refused])
    assert written[f"refund:{never_sent}:issued"] == ("refund_issued", None)
    assert written[f"refund:{credit}:credit"] == ("credit_issued", None)
    assert written[f"refund:{promo}:promo"] == ("promo_issued", None)

    # The same rows as written before the column existed: the migration finds the same ids.
    config = alembic_config(fresh_db_url)
    config.attributes["skip_logging_config"] = True
    command.downgrade(config, "0008")
    command.upgrade(config, "head")
    assert provider_ids(fresh_db_url) == written
