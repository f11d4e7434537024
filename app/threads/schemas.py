from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

import msgspec

from app.schemas import Id, Schema, UserId

Subject = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
# Checked again after trimming (1..10 000) by the service; this bound only stops absurd payloads early.
Body = Annotated[str, msgspec.Meta(max_length=20_000)]


class Audience(StrEnum):
    TRIPARTITE = "tripartite"
    BUYER_SELLER = "buyer_seller"
    OPERATOR_SELLER = "operator_seller"
    OPERATOR_BUYER = "operator_buyer"
    INTERNAL = "internal"


class Party(StrEnum):
    BUYER = "buyer"
    SELLER = "seller"
    OPERATOR = "operator"


class ThreadCreate(Schema):
    audience: Audience
    subject: Subject
    body: Body
    order_id: Id | None = None
    seller_id: Id | None = None
    buyer_id: UserId | None = None
    attachment_ids: Annotated[list[Id], msgspec.Meta(max_length=10)] = []


class Author(Schema):
    id: str | None  # null for an operator staff member, to whom the policy keeps staff ids from
    role: str
    name: str


class AttachmentRead(Schema):
    attachment_id: str
    filename: str
    content_type: str
    size: int
    sha256: str


class MessageRead(Schema):
    message_id: str
    thread_id: str
    author: Author
    body: str
    attachments: list[AttachmentRead]
    created_at: datetime


class ThreadRead(Schema):
    thread_id: str
    audience: Audience
    subject: str
    order_id: str | None
    seller_id: str | None
    buyer_id: str | None
    dispute_id: str | None
    last_message_at: datetime
    unread_count: int
    awaiting_reply_from: Party | None
    created_at: datetime


class ThreadCreated(ThreadRead):
    first_message: MessageRead


class MessageCreate(Schema):
    body: Body | None = None
    attachment_ids: Annotated[list[Id], msgspec.Meta(max_length=10)] = []
    macro_id: Id | None = None


class ReadMark(Schema):
    message_id: Id


class MacroCreate(Schema):
    title: Subject
    body: Annotated[str, msgspec.Meta(min_length=1, max_length=10_000)]


class MacroRead(Schema):
    macro_id: str
    scope: str
    title: str
    body: str
    placeholders: list[str]
    created_at: datetime
