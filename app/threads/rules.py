"""Pure rules for threads: who counts as which party, what a message body may be, who is awaited."""

from __future__ import annotations

from app.auth import Actor, Role
from app.errors import ValidationFailed
from app.schemas import FORBIDDEN_TEXT
from app.threads.schemas import Audience, Party

MAX_BODY = 10_000

# Control characters (the shared text policy, app/schemas.py) are refused: NUL cannot be stored by
# PostgreSQL and the others have no place in a message. Checked again here because a macro's rendering
# is text too. Everything else (HTML, SQL, right-to-left marks, emoji) is kept literally, returned as sent.
_FORBIDDEN = FORBIDDEN_TEXT


def party_of(actor: Actor) -> Party:
    if actor.role == Role.BUYER:
        return Party.BUYER
    if actor.role == Role.SELLER:
        return Party.SELLER
    return Party.OPERATOR


def clean_body(body: str | None, *, field: str = "body") -> str:
    if body is None:
        raise ValidationFailed(f"{field} is required", field=field)
    text = body.strip()
    if not text:
        raise ValidationFailed(f"{field} must not be empty", field=field)
    if len(text) > MAX_BODY:
        raise ValidationFailed(f"{field} is {len(text)} characters; at most {MAX_BODY} are allowed", field=field)
    if _FORBIDDEN.search(text):
        raise ValidationFailed(f"{field} contains control characters (such as NUL)", field=field)
    return text


def clean_subject(subject: str) -> str:
    text = subject.strip()
    if not text:
        raise ValidationFailed("subject must not be empty", field="subject")
    if _FORBIDDEN.search(text):
        raise ValidationFailed("subject contains control characters", field="subject")
    return text


# Whose answer a thread waits for, given who spoke last. The operator speaking in a conversation that
# has both buyer and seller in it addresses nobody in particular, so nobody is flagged.
_AWAITED: dict[tuple[Audience, Party], Party | None] = {
    (Audience.TRIPARTITE, Party.BUYER): Party.SELLER,
    (Audience.TRIPARTITE, Party.SELLER): Party.BUYER,
    (Audience.TRIPARTITE, Party.OPERATOR): None,
    (Audience.BUYER_SELLER, Party.BUYER): Party.SELLER,
    (Audience.BUYER_SELLER, Party.SELLER): Party.BUYER,
    (Audience.BUYER_SELLER, Party.OPERATOR): None,
    (Audience.OPERATOR_SELLER, Party.SELLER): Party.OPERATOR,
    (Audience.OPERATOR_SELLER, Party.OPERATOR): Party.SELLER,
    (Audience.OPERATOR_BUYER, Party.BUYER): Party.OPERATOR,
    (Audience.OPERATOR_BUYER, Party.OPERATOR): Party.BUYER,
}


def awaiting_reply_from(audience: str, last_author: str | None) -> Party | None:
    if last_author is None:
        return None
    return _AWAITED.get((Audience(audience), Party(last_author)))
