"""Real processes for the end-to-end tests: `sav serve` (uvicorn) and `sav worker` as subprocesses on a
migrated database, the local Stripe-compatible server (``python -m devtools.stripe_server --port 0``),
and the real clients that drive them (httpx, websockets). Fixtures that use these live in the conftest
files; test modules import from here, never from one another."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.db import ROOT
from devtools.stripe_server.process import NotStarted, start
from tests.factories import TEST_SECRET

# --- the service and its worker ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """One `sav serve` process."""

    def __init__(self, database_url: str, tmp: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/v1/ws"
        self.log = tmp / f"server-{self.port}.log"
        self.environment = environment = {
            **os.environ,
            "SAV_DATABASE_URL": database_url,
            "SAV_JWT_SECRET": TEST_SECRET,
            "SAV_ENV": "test",
            "SAV_LOG_LEVEL": "INFO",  # so that a grep of a run's server logs for secrets means something
            "SAV_RUN_WORKER": "false",
            "SAV_WORKER_POLL_SECONDS": "0.5",
            "SAV_ATTACHMENTS_DIR": str(tmp / "attachments"),
            **env,
        }
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=environment,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(self.url + "/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server not ready: {self.log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)


class WorkerProcess:
    """One `sav worker` process on the service's database and settings, killable at any moment."""

    def __init__(self, service: Service, tmp: Path, name: str) -> None:
        self.log = tmp / f"worker-{service.port}-{name}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker"],
                env=service.environment,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """SIGKILL: no cleanup, no rollback handler, no goodbye; whatever was uncommitted is lost."""
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Poll until ``condition()`` is truthy; a timeout fails the test (this is a deadline, not a timing check)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def put(client: httpx.Client, path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    response = client.put(path, json=body, headers=headers)
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


# --- WebSocket clients and the HTTP calls around them --------------------------------------------------


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def open_socket(
    service: Service, headers: dict[str, str], *, resume: int | None = None, resume_in_url: bool = False
) -> ClientConnection:
    url = f"{service.ws_url}?token={token_of(headers)}"
    if resume is not None and resume_in_url:
        url += f"&after_event_id={resume}"
    ws = await connect(url, max_size=2**22)
    ready = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert ready["type"] == "ready"
    if resume is not None and not resume_in_url:
        await ws.send(json.dumps({"type": "resume", "after_event_id": resume}))
    return ws


async def next_events(ws: ClientConnection, count: int, timeout: float = 5) -> list[dict[str, Any]]:
    received = []
    while len(received) < count:
        received.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
    return received


async def drain(ws: ClientConnection, quiet: float = 0.6) -> list[dict[str, Any]]:
    """Everything already on its way (events of the set-up are numbered and sent asynchronously)."""
    received = []
    while True:
        try:
            received.append(json.loads(await asyncio.wait_for(ws.recv(), quiet)))
        except TimeoutError:
            return received


async def nothing_more(ws: ClientConnection, wait: float = 0.6) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), wait)
    except TimeoutError:
        return True
    return False


def open_thread(service: Service, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    with service.client() as http:
        response = http.post("/v1/threads", json={"subject": "s", "body": "first", **body}, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


def post(service: Service, headers: dict[str, str], thread_id: str, body: str) -> dict[str, Any]:
    with service.client() as http:
        response = http.post(f"/v1/threads/{thread_id}/messages", json={"body": body}, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


async def read_until_closed(ws: Any) -> tuple[list[dict[str, Any]], int | None]:
    got: list[dict[str, Any]] = []
    try:
        while True:
            got.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
    except ConnectionClosed as closed:
        return got, closed.rcvd.code if closed.rcvd else None
    except TimeoutError:
        return got, None


# --- the local Stripe-compatible server ----------------------------------------------------------------

API_KEY = "sk_test_local_0123456789"


@dataclass
class StripeServerProcess:
    url: str
    process: subprocess.Popen[str]
    control: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.control = httpx.Client(base_url=self.url, timeout=10)

    def client(self, *, retries: int = 0, api_key: str = API_KEY) -> stripe.StripeClient:
        return stripe.StripeClient(
            api_key,
            base_addresses={"api": self.url},
            http_client=stripe.HTTPXClient(allow_sync_methods=True),
            max_network_retries=retries,
        )

    def ctl(self, method: str, endpoint: str, /, **data: Any) -> Any:
        if method == "GET":
            response = self.control.get(f"/_control/{endpoint}", params=data)
        else:
            response = self.control.request(method, f"/_control/{endpoint}", json=data)
        assert response.status_code == 200, response.text
        return response.json()

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {API_KEY}", **kwargs.pop("headers", {})}
        return self.control.request(method, path, headers=headers, **kwargs)


@contextmanager
def running_stripe_server() -> Iterator[StripeServerProcess]:
    """One local Stripe-compatible server process, stopped on the way out."""
    try:
        process, url = start()
    except NotStarted as exc:
        pytest.fail(str(exc))
    server = StripeServerProcess(url=url, process=process)
    try:
        yield server
    finally:
        server.control.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
