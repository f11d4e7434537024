"""Real processes: uvicorn started as a subprocess on a migrated database, driven over HTTP and
WebSocket by real clients (httpx, websockets). The processes and clients are in tests/e2e/helpers.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.helpers import Service, StripeServerProcess, running_stripe_server
from tests.factories import Tokens, make_settings


@pytest.fixture(scope="module")
def service(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(db_url, tmp_path_factory.mktemp("e2e"))
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def auth(db_url: str) -> Tokens:
    return Tokens(make_settings(db_url))


@pytest.fixture(scope="module")
def stripe_server() -> Iterator[StripeServerProcess]:
    """A local Stripe-compatible server for the module (each test resets what it needs)."""
    with running_stripe_server() as server:
        yield server
