"""Reconciliation over HTTP (SQLite and PostgreSQL): a generated period with known breaks uploaded in either
Stripe layout finds exactly those breaks; unreadable and unknown files; who may do what; explanations;
the CSV export read back; progress while it runs.

The tests share one database: each generates its period in a year of its own (2011...), so a period's
ledger scan only meets that test's movements.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.db import create_engine
from app.reconciliation import job
from app.reconciliation.parsing import Layout
from app.settings import Settings
from devtools.reconciliation_data import Period, write_period
from tests.factories import Tokens, book_ledger, uid

BREAK_STATUSES = ("amount_mismatch", "missing_in_ledger", "missing_in_provider")


def generate(
    settings: Settings, *, year: int, layout: Layout, rows: int = 400, breaks: int = 4
) -> tuple[bytes, Period]:
    """A month of ``rows`` provider rows in ``layout`` with ``breaks`` of each kind; its ledger is booked."""
    out, batches = io.StringIO(newline=""), []
    period = write_period(
        out,
        rows=rows,
        breaks=breaks,
        layout=layout,
        on_ledger=batches.append,
        seed=year,
        start=datetime(year, 11, 1, tzinfo=UTC),
        days=30,
        batch_size=100,
    )
    book_ledger(settings, batches)
    return out.getvalue().encode(), period


def run_jobs(settings: Settings, *, on_progress: Callable[[int], object] | None = None, rec_id: str = "") -> None:
    async def run() -> None:
        engine = create_engine(settings.database_url)
        try:
            sessions = async_sessionmaker(engine, expire_on_commit=False)
            if rec_id:
                await job.run_reconciliation(sessions, None, rec_id, on_progress)
            else:
                while await job.reconcile_due(sessions, gateway=None):
                    pass
        finally:
            await engine.dispose()

    asyncio.run(run())


def upload(client: TestClient[Any], who: dict[str, str], data: bytes, **fields: str) -> Any:
    return client.post(
        "/v1/reconciliations", files={"file": ("export.csv", data, "text/csv")}, data=fields, headers=who
    )


def all_items(client: TestClient[Any], who: dict[str, str], rec_id: str, status: str = "") -> list[dict[str, Any]]:
    items, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 200, **({"status": status} if status else {})}
        if cursor:
            params["cursor"] = cursor
        page = client.get(f"/v1/reconciliations/{rec_id}/items", params=params, headers=who)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


def reconciled(client: TestClient[Any], settings: Settings, who: dict[str, str], data: bytes, **fields: str) -> Any:
    started = upload(client, who, data, **fields)
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "running"
    run_jobs(settings)
    return client.get(f"/v1/reconciliations/{started.json()['reconciliation_id']}", headers=who).json()


@pytest.mark.parametrize(
    ("layout", "year", "with_period"), [(Layout.DASHBOARD, 2011, True), (Layout.ITEMIZED, 2012, False)]
)
def test_every_injected_break_is_found_and_nothing_else(
    client: TestClient[Any], settings: Settings, auth: Tokens, layout: Layout, year: int, with_period: bool
) -> None:
    data, period = generate(settings, year=year, layout=layout)
    fields = {"from": f"{year}-11-01T00:00:00Z", "to": f"{year}-12-01T00:00:00Z"} if with_period else {}
    finance = auth("finance")
    rec = reconciled(client, settings, finance, data, **fields)
    assert rec["status"] == "done", rec
    assert rec["source"] == "file"
    assert rec["counts"] == period.counts
    assert rec["progress"]["rows"] == period.rows
    assert ("from" in rec) is with_period
    found = {(item["status"], item["provider_id"]) for item in all_items(client, finance, rec["reconciliation_id"])}
    assert {pair for pair in found if pair[0] != "matched"} == period.breaks
    # every break has a reason; a mismatch shows both amounts
    mismatches = all_items(client, finance, rec["reconciliation_id"], "amount_mismatch")
    assert len(mismatches) == period.counts["amount_mismatch"]
    for item in mismatches:
        assert item["reason"] == "the amounts differ"
        assert item["provider_amount"]["currency"] == item["ledger_amount"]["currency"]
        assert item["provider_amount"]["amount"] != item["ledger_amount"]["amount"]
    totals = {total["currency"]: total for total in rec["totals"]}
    assert set(totals) <= {"EUR", "JPY", "KWD"}
    assert sum(total["gross_drift"] for total in totals.values()) > 0


def test_an_unreadable_row_fails_it_naming_line_and_column_with_no_items(
    client: TestClient[Any], settings: Settings, auth: Tokens
) -> None:
    finance = auth("finance")
    data = (
        b"id,Type,Source,Amount,Fee,Net,Currency,Created (UTC)\r\n"
        b"txn_u1,charge,ch_u1,10.00,0.00,10.00,eur,2013-11-02 10:00\r\n"
        b'txn_u2,charge,ch_u2,"12,50",0.00,12.50,eur,2013-11-02 10:01\r\n'
    )
    rec = reconciled(client, settings, finance, data)
    assert rec["status"] == "failed"
    assert "line 3" in rec["error"], rec["error"]
    assert "'Amount'" in rec["error"], rec["error"]
    assert all_items(client, finance, rec["reconciliation_id"]) == []
    assert "finished_at" in rec


def test_an_unknown_layout_is_refused_at_once(client: TestClient[Any], auth: Tokens) -> None:
    refused = upload(client, auth("finance"), b"date,amount,who\r\n2013-01-01,10.00,me\r\n")
    assert refused.status_code == 422
    assert refused.json()["code"] == "reconciliation.unknown_layout"
    assert upload(client, auth("finance"), b"").json()["code"] == "reconciliation.unknown_layout"


def test_a_period_needs_both_ends_in_order(client: TestClient[Any], auth: Tokens) -> None:
    finance = auth("finance")
    backwards = {"from": "2014-02-01T00:00:00Z", "to": "2014-01-01T00:00:00Z"}
    answer = client.post("/v1/reconciliations", json=backwards, headers=finance)
    assert (answer.status_code, answer.json()["code"]) == (422, "reconciliation.invalid_period")
    naive = client.post(
        "/v1/reconciliations", json={"from": "2014-01-01T00:00:00", "to": "2014-02-01T00:00:00Z"}, headers=finance
    )
    assert naive.status_code == 400
    half = client.post("/v1/reconciliations", json={"from": "2014-01-01T00:00:00Z"}, headers=finance)
    assert half.status_code == 400


def test_a_json_period_is_small_the_upload_alone_may_be_large(client: TestClient[Any], auth: Tokens) -> None:
    finance = auth("finance")
    padded = b'{"from": "2014-01-01T00:00:00Z", "to": "2014-02-01T00:00:00Z"' + b" " * 70_000 + b"}"
    headers = {**finance, "Content-Type": "application/json"}
    answer = client.post("/v1/reconciliations", content=padded, headers=headers)
    assert (answer.status_code, answer.json()["code"]) == (413, "payload_too_large")
    listed = client.get("/v1/reconciliations", headers=finance).json()["items"]
    assert not [r for r in listed if r.get("from") == "2014-01-01T00:00:00Z"]  # nothing was started


def test_only_finance_and_admins_reconcile(client: TestClient[Any], auth: Tokens) -> None:
    period = {"from": "2015-01-01T00:00:00Z", "to": "2015-02-01T00:00:00Z"}
    for role in ("buyer", "seller", "agent", "arbitrator", "marketplace"):
        who = auth(role, seller_id=uid("shop") if role == "seller" else "")
        assert client.post("/v1/reconciliations", json=period, headers=who).status_code == 403
        assert client.get("/v1/reconciliations", headers=who).status_code == 403
    started = client.post("/v1/reconciliations", json=period, headers=auth("admin"))
    assert started.status_code == 202, started.text
    rec_id = started.json()["reconciliation_id"]
    assert client.get(f"/v1/reconciliations/{rec_id}", headers=auth("buyer")).status_code == 403
    assert client.get(f"/v1/reconciliations/{rec_id}/items", headers=auth("agent")).status_code == 403
    assert client.get(f"/v1/reconciliations/{rec_id}", headers=auth("finance")).json()["source"] == "provider"
    listed = client.get("/v1/reconciliations", params={"limit": 1}, headers=auth("finance")).json()
    assert listed["items"][0]["reconciliation_id"] == rec_id  # newest first
    assert client.get("/v1/reconciliations/rec_nope", headers=auth("finance")).status_code == 404


def test_a_break_is_explained_once_by_finance_who_and_when_kept(
    client: TestClient[Any], settings: Settings, auth: Tokens
) -> None:
    data, _ = generate(settings, year=2016, layout=Layout.DASHBOARD, rows=100, breaks=2)
    finance = auth("finance", "fin-claire")
    rec_id = reconciled(client, settings, finance, data)["reconciliation_id"]
    broken = all_items(client, finance, rec_id, "missing_in_ledger")[0]
    matched = all_items(client, finance, rec_id, "matched")[0]
    path = f"/v1/reconciliations/{rec_id}/items/{broken['item_id']}/explanation"
    note = {"note": "Charge made in the Dashboard by hand; booked in December."}
    assert client.post(path, json=note, headers=auth("admin")).status_code == 403
    explained = client.post(path, json=note, headers=finance)
    assert explained.status_code == 200, explained.text
    assert explained.json()["explanation"]["note"] == note["note"]
    assert explained.json()["explanation"]["by"] == "fin-claire"
    kept = next(i for i in all_items(client, finance, rec_id, "missing_in_ledger") if i["item_id"] == broken["item_id"])
    assert kept["explanation"] == explained.json()["explanation"]
    again = client.post(path, json={"note": "again"}, headers=finance)
    assert (again.status_code, again.json()["code"]) == (409, "reconciliation.already_explained")
    not_a_break = client.post(
        f"/v1/reconciliations/{rec_id}/items/{matched['item_id']}/explanation", json=note, headers=finance
    )
    assert (not_a_break.status_code, not_a_break.json()["code"]) == (409, "reconciliation.not_a_break")
    unknown = client.post(f"/v1/reconciliations/{rec_id}/items/999999999/explanation", json=note, headers=finance)
    assert unknown.status_code == 404


def test_the_csv_export_round_trips_every_item_of_the_filter(
    client: TestClient[Any], settings: Settings, auth: Tokens
) -> None:
    data, period = generate(settings, year=2017, layout=Layout.ITEMIZED, rows=600, breaks=3)
    finance = auth("finance")
    rec_id = reconciled(client, settings, finance, data)["reconciliation_id"]
    breaks = all_items(client, finance, rec_id, "missing_in_provider")
    path = f"/v1/reconciliations/{rec_id}/items/{breaks[0]['item_id']}/explanation"
    assert client.post(path, json={"note": '=SUM(A1), "quoted"\nand a new line'}, headers=finance).status_code == 200
    for status in ("", "missing_in_provider"):
        exported = client.get(
            f"/v1/reconciliations/{rec_id}/items", params={"format": "csv", **({"status": status} if status else {})},
            headers=finance,
        )  # fmt: skip
        assert exported.status_code == 200
        assert exported.headers["content-type"].startswith("text/csv")
        read = list(csv.DictReader(io.StringIO(exported.text, newline="")))
        expected = all_items(client, finance, rec_id, status)
        assert (
            len(read) == len(expected) == (sum(period.counts.values()) - period.counts["ignored"] if not status else 3)
        )
        for row, item in zip(read, expected, strict=True):
            assert row["item_id"] == item["item_id"]
            assert row["status"] == item["status"]
            assert row["provider_id"] == item["provider_id"]
            assert row["provider_amount"] == str(item.get("provider_amount", {}).get("amount", ""))
            assert row["ledger_amount"] == str(item.get("ledger_amount", {}).get("amount", ""))
            assert row["ledger_currency"] == item.get("ledger_amount", {}).get("currency", "")
        first = next(row for row in read if row["item_id"] == breaks[0]["item_id"])
        assert first["explanation_note"] == '\'=SUM(A1), "quoted"\nand a new line'  # not run as a formula
        assert datetime.fromisoformat(first["explained_at"]) <= datetime.now(UTC) + timedelta(seconds=1)


def test_progress_shows_while_it_runs(
    client: TestClient[Any], settings: Settings, auth: Tokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, period = generate(settings, year=2018, layout=Layout.DASHBOARD, rows=250, breaks=1)
    finance = auth("finance")
    started = upload(client, finance, data)
    rec_id = started.json()["reconciliation_id"]
    monkeypatch.setattr(job, "BATCH", 60)
    seen: list[tuple[str, int, int]] = []

    def look(rows: int) -> None:
        now = client.get(f"/v1/reconciliations/{rec_id}", headers=finance).json()
        seen.append((now["status"], now["progress"]["rows"], rows))

    run_jobs(settings, on_progress=look, rec_id=rec_id)
    assert [rows for _, rows, _ in seen] == [60, 120, 180, 240, 250]
    assert all(status == "running" and shown == told for status, shown, told in seen)
    done = client.get(f"/v1/reconciliations/{rec_id}", headers=finance).json()
    assert (done["status"], done["progress"]["rows"], done["counts"]) == ("done", 250, period.counts)


def test_counts_and_totals_are_those_of_its_items_each_status_one_run_of_ids(
    client: TestClient[Any], settings: Settings, auth: Tokens
) -> None:
    """The counts and totals come from the matching's own aggregate: recomputed here from the items listed,
    they agree; the items of each status are one run of consecutive ids (the listing reads that range)."""
    data, period = generate(settings, year=2022, layout=Layout.ITEMIZED, rows=500, breaks=5)
    finance = auth("finance")
    rec = reconciled(client, settings, finance, data, **{"from": "2022-11-01T00:00:00Z", "to": "2022-12-01T00:00:00Z"})
    assert rec["status"] == "done", rec
    items = all_items(client, finance, rec["reconciliation_id"])
    counts = dict.fromkeys(rec["counts"], 0)
    totals: dict[str, dict[str, int]] = {}
    for item in items:
        counts[item["status"]] += 1
        provider, ledger = item.get("provider_amount"), item.get("ledger_amount")
        same = provider is not None and ledger is not None and provider["currency"] == ledger["currency"]
        if provider is not None:
            total = totals.setdefault(provider["currency"], {"provider_net": 0, "ledger_net": 0, "gross_drift": 0})
            total["provider_net"] += provider["amount"]
            total["gross_drift"] += abs(provider["amount"] - ledger["amount"]) if same else abs(provider["amount"])
        if ledger is not None:
            total = totals.setdefault(ledger["currency"], {"provider_net": 0, "ledger_net": 0, "gross_drift": 0})
            total["ledger_net"] += ledger["amount"]
            total["gross_drift"] += 0 if same else abs(ledger["amount"])
    counts["ignored"] = period.counts["ignored"]
    assert rec["counts"] == counts == period.counts
    assert rec["totals"] == [{"currency": cur, **total} for cur, total in sorted(totals.items())]
    assert any(total["gross_drift"] for total in rec["totals"])
    for status in ("matched", *BREAK_STATUSES):
        ids = sorted(int(item["item_id"]) for item in all_items(client, finance, rec["reconciliation_id"], status))
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        assert ids == sorted(int(item["item_id"]) for item in items if item["status"] == status)
