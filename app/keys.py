"""Composite keys that cannot collide.

Ownership and idempotency keys are built from several ids (role, shop, user, client key). Joining them
with a separator is only safe if no part can contain it: ``"kx" + "y"`` and ``"kx:y"`` gave the same key,
and a shop downloaded another shop's upload. :func:`compound_key` escapes ``%`` and ``:`` in every part,
so two different tuples never give the same string. Parts made of safe id characters are unchanged, so
keys written before this rule still read the same.
"""

from __future__ import annotations


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace(":", "%3A")


def compound_key(*parts: str) -> str:
    """``("seller", "kx", "y")`` -> ``"seller:kx:y"``; ``("seller", "kx:y", "")`` -> ``"seller:kx%3Ay:"``."""
    return ":".join(_escape(part) for part in parts)
