"""The demo's reconciliation (app/demo_reconciliation.py) on a freshly seeded demo database: its export
mirrors the demo ledger's provider movements, and the reconciliation shows exactly one break of each kind,
where the module says, with the fees and the bank payout ignored; made once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.cli import migrate
from app.db import create_engine
from app.demo import seed
from app.demo_reconciliation import UNBOOKED, find, movements, seed_reconciliation, summary
from app.reconciliation.models import ReconciliationItem
from tests.factories import make_settings


def test_the_demo_reconciliation_shows_one_break_of_each_kind(tmp_sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_sqlite_url, SAV_ATTACHMENTS_DIR=str(tmp_path / "files"))
    migrate(settings)

    async def run() -> None:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            assert await seed_reconciliation(engine, settings=settings) is None  # an empty ledger: nothing to show
            await seed(engine, settings=settings)
            booked = await movements(engine)
            rec = await seed_reconciliation(engine, settings=settings)
            assert rec is not None
            assert rec.status == "done", rec.error
            assert rec.counts.amount_mismatch == rec.counts.missing_in_ledger == rec.counts.missing_in_provider == 1
            assert rec.counts.ignored == 2  # Stripe's fees and the payout to the platform's bank
            # Every movement but the one left out of the export and the one listed short matches.
            assert rec.counts.matched == len(booked) - 2
            async with async_sessionmaker(engine)() as session:
                items = (
                    await session.execute(
                        select(ReconciliationItem.status, ReconciliationItem.provider_id).where(
                            ReconciliationItem.reconciliation_id == rec.reconciliation_id,
                            ReconciliationItem.status != "matched",
                        )
                    )
                ).all()
            breaks = dict(items)
            assert set(breaks) == {"amount_mismatch", "missing_in_ledger", "missing_in_provider"}
            assert breaks["missing_in_ledger"] == UNBOOKED[0]
            booked_ids = {provider_id for _, _, provider_id, *_ in booked}
            assert breaks["amount_mismatch"].startswith("ch_")
            assert breaks["amount_mismatch"] in booked_ids
            assert breaks["missing_in_provider"] in booked_ids
            assert "1 amount mismatch, 1 missing in ledger, 1 missing in provider, 2 ignored" in summary(rec)
            # Seeding again leaves it as it is.
            again = await seed_reconciliation(engine, settings=settings)
            assert again is not None
            assert again.reconciliation_id == rec.reconciliation_id
            found = await find(engine, settings=settings)
            assert found is not None
            assert found.reconciliation_id == rec.reconciliation_id
        finally:
            await engine.dispose()

    asyncio.run(run())
