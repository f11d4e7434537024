"""A change the database refuses at commit is never reported as done: the answer is a 503 problem document
and nothing of the request is kept (not the change, not its idempotency key), so a retry runs for real."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from app.sellers.models import Seller
from app.settings import Settings
from tests.factories import Tokens, uid

DOOMED = "commit refused"


@pytest.fixture
def failing_commits() -> Iterator[list[bool]]:
    """Commits of a transaction that writes a shop named DOOMED fail, as a dropped connection or a
    serialization failure would, while ``switch[0]`` is true."""
    switch = [True]

    def after_flush(session: Session, _: Any) -> None:
        if any(isinstance(o, Seller) and o.name == DOOMED for o in session.new):
            session.info["doomed"] = True

    def before_commit(session: Session) -> None:
        if session.info.pop("doomed", False) and switch[0]:
            raise OperationalError("COMMIT", {}, ConnectionResetError("connection lost during commit"))

    event.listen(Session, "after_flush", after_flush)
    event.listen(Session, "before_commit", before_commit)
    yield switch
    event.remove(Session, "before_commit", before_commit)
    event.remove(Session, "after_flush", after_flush)


def test_a_failed_commit_is_a_503_and_nothing_is_kept(
    client: TestClient[Any], auth: Tokens, failing_commits: list[bool]
) -> None:
    shop, key = uid("shop"), uid("key")
    headers = {**auth.marketplace, "Idempotency-Key": key}
    response = client.put(f"/v1/sellers/{shop}", json={"name": DOOMED}, headers=headers)
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "database.commit_failed"
    assert client.get(f"/v1/sellers/{shop}", headers=auth.marketplace).status_code == 404

    failing_commits[0] = False  # the database is back: the same request, same key, runs for real
    retried = client.put(f"/v1/sellers/{shop}", json={"name": DOOMED}, headers=headers)
    assert retried.status_code == 201, retried.text
    assert "idempotent-replayed" not in retried.headers


@pytest.fixture
def deferred_refusal(settings: Settings) -> Iterator[None]:
    """A PostgreSQL constraint checked only at COMMIT that refuses shops named DOOMED."""
    if settings.is_sqlite:
        pytest.skip("deferred constraint triggers are PostgreSQL's; SQLite is covered by the listener above")
    dsn = make_url(settings.database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            f"""
            CREATE OR REPLACE FUNCTION sav_test_refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.name = '{DOOMED}' THEN RAISE EXCEPTION 'refused at commit'; END IF;
                RETURN NEW;
            END $$;
            CREATE CONSTRAINT TRIGGER sav_test_refuse_at_commit AFTER INSERT ON sellers
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION sav_test_refuse_at_commit();
            """
        )
    try:
        yield
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP TRIGGER sav_test_refuse_at_commit ON sellers")
            conn.execute("DROP FUNCTION sav_test_refuse_at_commit()")


def test_a_constraint_refused_at_commit_is_not_reported_as_created(
    client: TestClient[Any], auth: Tokens, deferred_refusal: None
) -> None:
    shop = uid("shop")
    response = client.put(f"/v1/sellers/{shop}", json={"name": DOOMED}, headers=auth.marketplace)
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "database.commit_failed"
    assert client.get(f"/v1/sellers/{shop}", headers=auth.marketplace).status_code == 404
