"""Currencies' minor units, and exact conversions between decimal major units ("12.34") and integer minor
units (1234). Pure, never through a float.

A provider export writes amounts in major units; the ledger keeps minor units. The exponent is ISO 4217's:
0 for the zero-decimal currencies (JPY, KRW...), 3 for the three-decimal ones (KWD, BHD...), 2 otherwise.
A currency we do not list gets 2, as Stripe does for every currency it does not single out.
"""

from __future__ import annotations

import re

from app.money import MAX_AMOUNT

ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})

# Digits are ASCII only (``\d`` would take any script's digits); no sign but a leading minus, no thousands
# separator, no exponent notation, no "12." or ".5": exactly what a Stripe export writes.
_AMOUNT = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
_CURRENCY = re.compile(r"[A-Za-z]{3}")


class InvalidAmount(ValueError):
    """Text that is not an exact amount in the currency (the message says why)."""


class InvalidCurrency(ValueError):
    """Text that is not a three-letter currency code."""


def normalize_currency(text: str) -> str:
    """The currency code in upper case, as the ledger and ``Money`` write it ("eur" -> "EUR")."""
    code = text.strip()
    if not _CURRENCY.fullmatch(code):
        raise InvalidCurrency(f"not a three-letter currency code: {text!r}")
    return code.upper()


def exponent(currency: str) -> int:
    """How many decimals the currency's major unit has (an upper-case code, see ``normalize_currency``)."""
    if currency in ZERO_DECIMAL:
        return 0
    if currency in THREE_DECIMAL:
        return 3
    return 2


# The form exports write ("-12.34": exactly the currency's decimals, and few enough digits to stay within
# MAX_AMOUNT), read without splitting: a million rows have three amounts each, most of a row's work.
EXACT = {
    places: re.compile(rf"-?[0-9]{{1,{13 - places}}}" + (rf"\.[0-9]{{{places}}}" if places else ""))
    for places in (0, 2, 3)
}


def parse_minor(text: str, places: int) -> int:
    """``text`` (decimal major units) as signed minor units with ``places`` decimals, exactly.

    More decimals than ``places`` are accepted only when the extra ones are zeros ("12.340" in EUR).
    """
    if EXACT[places].fullmatch(text) is not None:
        return int(text.replace(".", "", 1))
    found = _AMOUNT.fullmatch(text.strip())
    if found is None:
        raise InvalidAmount(f"not a decimal amount: {text!r}")
    sign, whole, fraction = found.groups()
    if fraction is None:
        fraction = ""
    elif len(fraction) > places:
        if fraction[places:].strip("0"):
            raise InvalidAmount(f"{text!r} has more than {places} decimal(s)")
        fraction = fraction[:places]
    value = int(whole + fraction.ljust(places, "0"))
    if value > MAX_AMOUNT:
        raise InvalidAmount(f"{text!r} is out of range")
    return -value if sign else value


def to_minor(text: str, currency: str) -> int:
    """``to_minor("12.34", "eur") == 1234``; ``to_minor("500", "JPY") == 500``; ``to_minor("1.005", "KWD") == 1005``."""
    return parse_minor(text, exponent(normalize_currency(currency)))


def format_minor(amount: int, currency: str) -> str:
    """The inverse of ``to_minor``: ``format_minor(-1234, "EUR") == "-12.34"``, ``format_minor(5, "JPY") == "5"``."""
    places = exponent(normalize_currency(currency))
    sign = "-" if amount < 0 else ""
    digits = str(abs(amount))
    if not places:
        return sign + digits
    digits = digits.rjust(places + 1, "0")
    return f"{sign}{digits[:-places]}.{digits[-places:]}"
