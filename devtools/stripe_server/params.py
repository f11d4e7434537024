"""Reading Stripe's form params: which names a route accepts, and typed getters with Stripe's error messages.

A route declares the params it accepts as bracket paths (``amount``, ``metadata[*]``, ``created[gte]``,
``capabilities[transfers][requested]``; ``*`` is any key). ``check_params`` refuses anything else with
Stripe's ``parameter_unknown``, and the contract test holds every declared path to Stripe's OpenAPI
description of the same operation, so the server cannot accept what Stripe would refuse.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from devtools.stripe_server.errors import invalid, missing, unknown_param

ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof"}
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "cad": "$", "aud": "$", "jpy": "¥"}
_ALPHABET = string.ascii_letters + string.digits

# Shared declarations, spelled once.
METADATA = ("metadata", "metadata[*]")  # `metadata=` (empty) unsets every key
PAGE = ("limit", "starting_after", "ending_before")
CREATED = ("created", "created[gt]", "created[gte]", "created[lt]", "created[lte]")


@dataclass
class Context:
    request_id: str
    idempotency_key: str | None = None
    stripe_account: str | None = None  # the Stripe-Account header: act as this connected account
    expand: list[str] = field(default_factory=list)


def new_id(prefix: str) -> str:
    # One call for the random bytes, not one per character: ids are made several times per request, and
    # this was the server's largest cost under bench/release.py. (256 % 62 skews a few letters slightly:
    # ids need only be unique.)
    return f"{prefix}_{''.join(_ALPHABET[b % 62] for b in secrets.token_bytes(24))}"


def money(amount: int, currency: str) -> str:
    """Amounts as Stripe writes them in messages: ``$12.50``, ``¥1200``, ``12.50 CHF``."""
    value = f"{amount}" if currency in ZERO_DECIMAL else f"{amount / 100:.2f}"
    symbol = SYMBOLS.get(currency)
    return f"{symbol}{value}" if symbol else f"{value} {currency.upper()}"


# --- which params a route accepts ------------------------------------------------------------------------


def leaves(params: dict[str, Any]) -> list[tuple[str, ...]]:
    """Every param as a path of keys: ``{"metadata": {"a": "1"}}`` -> ``[("metadata", "a")]``."""
    found: list[tuple[str, ...]] = []

    def walk(prefix: tuple[str, ...], value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, child in value.items():
                walk((*prefix, key), child)
        else:
            found.append(prefix)

    for name, value in params.items():
        if name != "expand":
            walk((name,), value)
    return found


def split_path(declared: str) -> tuple[str, ...]:
    """``capabilities[transfers][requested]`` -> ``("capabilities", "transfers", "requested")``."""
    head, _, rest = declared.partition("[")
    return (head, *re.findall(r"\[([^\[\]]*)\]", "[" + rest)) if rest else (head,)


def _declared(path: tuple[str, ...], accepted: Iterable[str]) -> bool:
    for pattern in accepted:
        wanted = split_path(pattern)
        if len(wanted) == len(path) and all(w in {"*", p} for w, p in zip(wanted, path, strict=True)):
            return True
    return False


def check_params(params: dict[str, Any], accepted: Iterable[str]) -> list[str]:
    """Refuse any param the route does not declare (Stripe's ``parameter_unknown``); return ``expand``."""
    accepted = tuple(accepted)
    for path in leaves(params):
        if not _declared(path, accepted):
            raise unknown_param(path[0] + "".join(f"[{p}]" for p in path[1:]))
    expand = params.get("expand", [])
    if isinstance(expand, str):
        expand = [expand]
    if not isinstance(expand, list) or not all(isinstance(e, str) for e in expand):
        raise invalid("Invalid array", param="expand")
    return expand


# --- typed getters ---------------------------------------------------------------------------------------


def get_str(params: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise missing(name)
        return None
    if not isinstance(value, str):
        raise invalid(f"Invalid string: {value!r}", param=name)
    return value


def get_int(params: dict[str, Any], name: str, *, required: bool = False, minimum: int = 1) -> int | None:
    raw = get_str(params, name, required=required)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"Invalid integer: {raw}", param=name, code="parameter_invalid_integer") from None
    if value < minimum:
        raise invalid(
            f"This value must be greater than or equal to {minimum}.", param=name, code="parameter_invalid_integer"
        )
    return value


def get_bool(params: dict[str, Any], name: str) -> bool | None:
    raw = get_str(params, name)
    if raw is None:
        return None
    if raw.lower() not in {"true", "false"}:
        raise invalid(f"Invalid boolean: {raw}", param=name)
    return raw.lower() == "true"


def get_choice(
    params: dict[str, Any], name: str, choices: tuple[str, ...], *, default: str | None = None
) -> str | None:
    value = get_str(params, name) or default
    if value is not None and value not in choices:
        raise invalid(f"Invalid {name}: must be one of {', '.join(choices)}", param=name)
    return value


def get_currency(params: dict[str, Any], *, required: bool = True, name: str = "currency") -> str | None:
    raw = get_str(params, name, required=required)
    if raw is None:
        return None
    if not re.fullmatch(r"[A-Za-z]{3}", raw):
        raise invalid(f"Invalid currency: {raw.lower()}.", param=name)
    return raw.lower()


def get_metadata(params: dict[str, Any]) -> dict[str, str]:
    raw = params.get("metadata")
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, dict):
        raise invalid("Invalid object", param="metadata")
    if len(raw) > 50:
        raise invalid("Metadata can have up to 50 keys.", param="metadata")
    metadata: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str):
            raise invalid(f"Invalid string: {value!r}", param=f"metadata[{key}]")
        if len(key) > 40:
            raise invalid(f"Metadata keys can be at most 40 characters long: {key}", param="metadata")
        if len(value) > 500:
            raise invalid("Metadata values can have up to 500 characters.", param=f"metadata[{key}]")
        if value != "":  # Stripe: an empty value unsets the key
            metadata[key] = value
    return metadata


def merged_metadata(current: dict[str, str], params: dict[str, Any]) -> dict[str, str]:
    """An update's ``metadata``: keys are added or replaced, an empty value unsets one, ``metadata=`` all."""
    raw = params["metadata"]
    if raw == "":
        return {}
    merged = {**current, **(raw if isinstance(raw, dict) else {})}
    return get_metadata({"metadata": merged})


def page_params(params: dict[str, Any]) -> tuple[int, str | None, str | None]:
    limit = get_int(params, "limit") or 10
    if limit > 100:
        raise invalid("Invalid limit: must be between 1 and 100", param="limit")
    return limit, get_str(params, "starting_after"), get_str(params, "ending_before")


def created_bounds(params: dict[str, Any]) -> list[tuple[str, int]]:
    """``created=<ts>`` or ``created[gt|gte|lt|lte]=<ts>`` as (operator, bound) pairs."""
    created = params.get("created")
    if created is None or created == "":
        return []
    if isinstance(created, str):
        created = {"eq": created}
    if not isinstance(created, dict):
        raise invalid("Invalid created", param="created")
    bounds = []
    for op, raw in created.items():
        name = "created" if op == "eq" else f"created[{op}]"
        bound = get_int({name: raw}, name, required=True, minimum=0)
        assert bound is not None
        bounds.append((op, bound))
    return bounds


def within(value: int, bounds: list[tuple[str, int]]) -> bool:
    tests = {"gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__, "eq": int.__eq__}
    return all(tests[op](value, bound) for op, bound in bounds)
