"""Start the local Stripe server as a child process and learn its URL (tests, the demo, benchmarks)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class NotStarted(RuntimeError):
    pass


def start(
    *,
    port: int = 0,
    webhook_url: str = "",
    webhook_secret: str = "",
    output: Callable[[str], object] | None = None,
) -> tuple[subprocess.Popen[str], str]:
    """``python -m devtools.stripe_server`` on 127.0.0.1 (``port=0``: a free one). Returns the process and
    its base URL once it prints its ready line. Its later output goes to ``output`` (dropped if None)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "STRIPE_SERVER_WEBHOOK_URL": webhook_url}
    if webhook_secret:
        env["STRIPE_SERVER_WEBHOOK_SECRET"] = webhook_secret
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.stripe_server", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # the one "ready" line (or the traceback's first line)
    if "ready on " not in line:
        process.kill()
        raise NotStarted(f"the local Stripe server did not start:\n{line}{process.stdout.read()}")
    stdout = process.stdout

    def drain() -> None:  # keep reading, or a full pipe would block the server
        for text in stdout:
            if output is not None:
                output(text)

    threading.Thread(target=drain, daemon=True).start()
    return process, line.split("ready on ", 1)[1].strip()
