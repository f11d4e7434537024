"""Tell the real-time hub that events were committed — only after the commit, never for a rollback.

Services mark their session (``session.info["events_appended"]``); SQLAlchemy's ``after_commit`` hook
then calls the callback registered for that session's engine. The hub also polls the event log every
``SAV_WORKER_POLL_SECONDS``, so an event whose notification was lost (a crash right after the commit, a
broker hiccup) is still delivered, a little later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

_callbacks: dict[int, Callable[[], None]] = {}


def register(sync_engine: Any, callback: Callable[[], None]) -> None:
    _callbacks[id(sync_engine)] = callback


def unregister(sync_engine: Any) -> None:
    _callbacks.pop(id(sync_engine), None)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop("events_appended", False):
        bind = session.get_bind()
        callback = _callbacks.get(id(getattr(bind, "engine", bind)))
        if callback is not None:
            callback()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop("events_appended", None)
