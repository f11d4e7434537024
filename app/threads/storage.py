"""Where attachment bytes live. Local disk today; an object store only needs another class with the
same three methods."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import anyio

CHUNK = 64 * 1024


@runtime_checkable
class AttachmentStorage(Protocol):
    async def save(self, key: str, data: bytes) -> None: ...

    def stream(self, key: str) -> AsyncIterator[bytes]: ...

    async def exists(self, key: str) -> bool: ...


class LocalDiskStorage:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        # Keys are our own ids (hex), fanned out so no directory grows too large.
        return self.root / key[-2:] / key

    async def save(self, key: str, data: bytes) -> None:
        path = self._path(key)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write to a temporary file and rename: a crash never leaves a half-written attachment.
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise

        await anyio.to_thread.run_sync(write)

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        async with await anyio.open_file(self._path(key), "rb") as handle:
            while chunk := await handle.read(CHUNK):
                yield chunk

    async def exists(self, key: str) -> bool:
        return await anyio.Path(self._path(key)).is_file()
