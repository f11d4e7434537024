"""Real processes: uvicorn started as a subprocess on a migrated database, driven over HTTP and
WebSocket by real clients (httpx, websockets)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.db import ROOT
from tests.conftest import TEST_SECRET, Tokens, make_settings


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


@pytest.fixture(scope="module")
def service(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(db_url, tmp_path_factory.mktemp("e2e"))
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def auth(db_url: str) -> Tokens:
    return Tokens(make_settings(db_url))


def put(client: httpx.Client, path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    response = client.put(path, json=body, headers=headers)
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]
