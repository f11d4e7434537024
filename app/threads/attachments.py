"""Attachments: uploaded once, checked by content, downloadable by whoever can see a message carrying
them (and by the uploader, before the file is attached)."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import exists, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import Actor
from app.errors import BusinessRuleViolation, NotFound, PayloadTooLarge, ValidationFailed
from app.events.service import reader_key
from app.permissions.visibility import visible_threads
from app.threads.models import Attachment, Message, MessageAttachment, Thread
from app.threads.schemas import AttachmentRead, Audience
from app.threads.storage import AttachmentStorage

MAX_SIZE = 10 * 1024 * 1024

_SIGNATURES: list[tuple[bytes, int, str]] = [
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"%PDF-", 0, "application/pdf"),
]
# Every type sniff() can answer: what a download may be served as.
CONTENT_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain")


def sniff(data: bytes) -> str | None:
    """The type the bytes really are (images, PDF, plain UTF-8 text), whatever the client declared."""
    for magic, offset, kind in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if b"\x00" in data:
        return None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "text/plain"


# Control characters, path separators and lone surrogates (a multipart filename that was not UTF-8).
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f-\x9f/\\\ud800-\udfff]")


def clean_filename(name: str | None) -> str:
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE_NAME.sub("_", base).strip().strip(".") or "attachment"
    return base[:255]


async def upload(
    session: AsyncSession, storage: AttachmentStorage, *, actor: Actor, filename: str | None, data: bytes
) -> AttachmentRead:
    if len(data) > MAX_SIZE:
        raise PayloadTooLarge(
            f"the file is {len(data)} bytes; at most {MAX_SIZE} (10 MiB) are allowed", code="attachment.too_large"
        )
    if not data:
        raise ValidationFailed("the file is empty", field="file")
    content_type = sniff(data)
    if content_type is None:
        raise ValidationFailed(
            "only images (PNG, JPEG, GIF, WebP), PDF and plain UTF-8 text are accepted",
            code="attachment.unsupported_type",
            field="file",
        )
    attachment = Attachment(
        id=f"att_{uuid.uuid4().hex}",
        uploader=reader_key(actor),
        filename=clean_filename(filename),
        content_type=content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    # Bytes first, row second: if the transaction then fails, an unreferenced file is left behind,
    # never a row pointing at nothing.
    await storage.save(attachment.id, data)
    session.add(attachment)
    await session.flush()
    return to_read(attachment)


def to_read(attachment: Attachment) -> AttachmentRead:
    return AttachmentRead(
        attachment_id=attachment.id,
        filename=attachment.filename,
        content_type=attachment.content_type,
        size=attachment.size,
        sha256=attachment.sha256,
    )


async def claim_for_message(session: AsyncSession, *, actor: Actor, ids: list[str]) -> list[AttachmentRead]:
    """Attachments a caller puts on a message must be its own uploads."""
    if not ids:
        return []
    if len(set(ids)) != len(ids):
        raise ValidationFailed("attachment_ids contains duplicates", field="attachment_ids")
    rows = (
        await session.scalars(
            select(Attachment).where(Attachment.id.in_(ids), Attachment.uploader == reader_key(actor))
        )
    ).all()
    found = {row.id: row for row in rows}
    missing = [i for i in ids if i not in found]
    if missing:
        raise BusinessRuleViolation(
            f"attachment {missing[0]!r} does not exist or was not uploaded by you", code="attachment.not_found"
        )
    return [to_read(found[i]) for i in ids]


async def link(session: AsyncSession, *, message_id: str, attachments: list[AttachmentRead]) -> None:
    if attachments:
        await session.execute(
            insert(MessageAttachment),
            [
                {"message_id": message_id, "attachment_id": a.attachment_id, "position": i}
                for i, a in enumerate(attachments)
            ],
        )


async def for_messages(session: AsyncSession, message_ids: list[str]) -> dict[str, list[AttachmentRead]]:
    if not message_ids:
        return {}
    rows = await session.execute(
        select(MessageAttachment.message_id, Attachment)
        .join(Attachment, Attachment.id == MessageAttachment.attachment_id)
        .where(MessageAttachment.message_id.in_(message_ids))
        .order_by(MessageAttachment.message_id, MessageAttachment.position)
    )
    grouped: dict[str, list[AttachmentRead]] = defaultdict(list)
    for message_id, attachment in rows.all():
        grouped[message_id].append(to_read(attachment))
    return grouped


async def downloadable(session: AsyncSession, *, actor: Actor, attachment_id: str) -> Attachment:
    carried_by_visible_message = exists(
        select(1)
        .select_from(MessageAttachment)
        .join(Message, Message.id == MessageAttachment.message_id)
        .join(Thread, Thread.id == Message.thread_id)
        .where(
            MessageAttachment.attachment_id == Attachment.id,
            visible_threads(
                actor,
                audience=Thread.audience,
                buyer_id=Thread.buyer_id,
                seller_id=Thread.seller_id,
                audiences=[a.value for a in Audience],
            ),
        )
    )
    attachment: Any = await session.scalar(
        select(Attachment).where(
            Attachment.id == attachment_id,
            or_(Attachment.uploader == reader_key(actor), carried_by_visible_message),
        )
    )
    if attachment is None:
        raise NotFound(f"attachment {attachment_id!r} does not exist")
    return attachment  # type: ignore[no-any-return]
