"""Keys made of several ids never collide: a shop cannot read another shop's upload, even when the parts
of their keys join to the same string (``"kx:y" + "m"`` and ``"kx" + "y:m"``, ids the old rule allowed).

The id policy now refuses ``:`` at the edge (tests/api/test_hostile_input.py); these tests drive the
services directly, as a value that slipped past the edge would, so the keys must hold on their own.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.auth import Actor, Role
from app.db import create_engine
from app.errors import NotFound
from app.keys import compound_key
from app.threads import attachments
from app.threads.storage import LocalDiskStorage

OWNER = Actor(id="m", role=Role.SELLER, seller_id="kx:y")
LOOKALIKE = Actor(id="y:m", role=Role.SELLER, seller_id="kx")


def test_an_unattached_upload_is_not_readable_by_a_caller_whose_ids_join_to_the_same_string(
    db_url: str, tmp_path: Path
) -> None:
    async def scenario() -> None:
        engine = create_engine(db_url)
        storage = LocalDiskStorage(tmp_path)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        try:
            async with sessions() as session, session.begin():
                uploaded = await attachments.upload(session, storage, actor=OWNER, filename="a.txt", data=b"secret")
            async with sessions() as session:
                found = await attachments.downloadable(session, actor=OWNER, attachment_id=uploaded.attachment_id)
                assert found.id == uploaded.attachment_id
                with pytest.raises(NotFound):
                    await attachments.downloadable(session, actor=LOOKALIKE, attachment_id=uploaded.attachment_id)
        finally:
            await engine.dispose()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (("seller", "kx:y", "m"), ("seller", "kx", "y:m")),
        (("a", "b%3Ac"), ("a", "b:c")),
        (("a:", ""), ("a", ":")),
        (("", "", ""), ("", ":")),
        (("x%", "y"), ("x", "%y")),
    ],
)
def test_different_parts_never_make_the_same_key(one: tuple[str, ...], other: tuple[str, ...]) -> None:
    assert compound_key(*one) != compound_key(*other)


def test_keys_of_safe_ids_read_as_before() -> None:
    # Stored read cursors, uploads and idempotency scopes of well-formed ids keep their meaning.
    assert Actor(id="u-1", role=Role.SELLER, seller_id="shop-1").key == "seller:shop-1:u-1"
    assert Actor(id="b@example.com", role=Role.BUYER).key == "buyer::b@example.com"
    assert OWNER.key != LOOKALIKE.key
