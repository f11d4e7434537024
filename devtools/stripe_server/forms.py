"""Stripe's form encoding: ``metadata[k]=v``, ``expand[]=x`` / ``expand[0]=x``, ``created[gte]=1``."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from devtools.stripe_server.errors import invalid

_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def parse_form(raw: str) -> dict[str, Any]:
    """Nested dicts for bracket keys; a level whose keys are ``[]`` or indexes becomes a list."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        head, _, rest = key.partition("[")
        path = [head, *(_SEGMENT.findall("[" + rest) if rest else [])]
        node = root
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if part == "":  # `a[]`: the next free index
                part = str(len(node))
            if last:
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise invalid(f"Invalid parameter: {key}", param=path[0])
                node = child
    return _listify(root)


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def fingerprint(method: str, path: str, params: dict[str, Any]) -> str:
    """What Stripe compares when an idempotency key comes back: the same endpoint with the same parameters."""
    return json.dumps([method, path, params], sort_keys=True, separators=(",", ":"))
