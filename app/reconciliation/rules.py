"""What reconciliation compares, as tables: the only place these rules live. Pure.

A provider balance transaction and a ledger transaction are the same movement when they name the same
provider object (the balance transaction's source: ``ch_``, ``re_``, ``tr_``, ``trr_``...) and fall in the
same match class. The class keeps apart two movements of one object: a refund (``re_1``, money out) and its
failure (``re_1`` again, money back) are two keys, each matched on its own.

Only ledger transactions with a provider id AND an entry on ``provider_balance`` are provider movements
(a refund granted but not yet sent, a release before its transfer, a refund refused before it was paid
move nothing at the provider). Their amount is the sum of their ``provider_balance`` entries, signed as
the provider's balance: capture +, refund -, refund failure +, transfer -, transfer reversal +.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from app.ledger.posting import Account, TransactionKind

PROVIDER_ACCOUNT = Account.PROVIDER_BALANCE


class MatchClass(StrEnum):
    CHARGE = "charge"
    REFUND = "refund"
    REFUND_FAILURE = "refund_failure"
    TRANSFER = "transfer"
    TRANSFER_REVERSAL = "transfer_reversal"
    TRANSFER_FAILURE = "transfer_failure"


class BreakStatus(StrEnum):
    MATCHED = "matched"
    AMOUNT_MISMATCH = "amount_mismatch"
    MISSING_IN_LEDGER = "missing_in_ledger"
    MISSING_IN_PROVIDER = "missing_in_provider"
    IGNORED = "ignored"


# Every balance transaction ``type`` of Stripe's API (spec3.json, balance_transaction.type) and every
# ``reporting_category`` of its itemized reports, each once: the class it is matched in, or None when it is
# not ours to book (fees, payouts to the platform's bank, top-ups, Issuing, Capital, disputes...): counted as
# ignored, never a break. A type missing here (a newer one) is ignored too (``provider_class``).
PROVIDER_CLASSES: dict[str, MatchClass | None] = {
    # the buyer's payment
    "charge": MatchClass.CHARGE,
    "payment": MatchClass.CHARGE,
    # refunds, and refunds the provider failed after paying them (the money comes back)
    "refund": MatchClass.REFUND,
    "payment_refund": MatchClass.REFUND,
    "refund_failure": MatchClass.REFUND_FAILURE,
    "payment_failure_refund": MatchClass.REFUND_FAILURE,
    # escrow released to a shop (Connect transfers) and taken back
    "transfer": MatchClass.TRANSFER,
    "transfer_refund": MatchClass.TRANSFER_REVERSAL,  # the API's type of a transfer reversal
    "transfer_cancel": MatchClass.TRANSFER_REVERSAL,
    "transfer_reversal": MatchClass.TRANSFER_REVERSAL,  # the report's category of a transfer reversal
    "transfer_failure": MatchClass.TRANSFER_FAILURE,
    # not ours to book: API types
    "adjustment": None,
    "advance": None,
    "advance_funding": None,
    "anticipation_repayment": None,
    "application_fee": None,
    "application_fee_refund": None,
    "connect_collection_transfer": None,
    "contribution": None,
    "issuing_authorization_hold": None,
    "issuing_authorization_release": None,
    "issuing_dispute": None,
    "issuing_transaction": None,
    "obligation_inbound": None,
    "obligation_outbound": None,
    "obligation_payout": None,
    "obligation_payout_failure": None,
    "obligation_reversal_inbound": None,
    "obligation_reversal_outbound": None,
    "payment_reversal": None,
    "payout": None,
    "payout_cancel": None,
    "payout_failure": None,
    "reserve_transaction": None,
    "reserved_funds": None,
    "stripe_fee": None,
    "stripe_fx_fee": None,
    "tax_fee": None,
    "topup": None,
    "topup_reversal": None,
    # not ours to book: report categories (those not already above)
    "anticipation_loan": None,
    "charge_failure": None,
    "climate_order_purchase": None,
    "climate_order_refund": None,
    "connect_reserved_funds": None,
    "dispute": None,
    "dispute_reversal": None,
    "fee": None,
    "financing_paydown": None,
    "financing_payout": None,
    "network_cost": None,
    "obligation": None,
    "other_adjustment": None,
    "partial_capture_reversal": None,
    "payout_reversal": None,
    "platform_earning": None,
    "platform_earning_refund": None,
    "risk_reserved_funds": None,
    "tax": None,
    "unreconciled_customer_funds": None,
}

# Ledger transaction kinds that are provider movements (when they carry a provider id and touch
# ``provider_balance``), and their class. Every other kind lives in our ledger only.
LEDGER_CLASSES: dict[TransactionKind, MatchClass] = {
    TransactionKind.CAPTURE: MatchClass.CHARGE,
    TransactionKind.CAPTURE_ADJUSTMENT: MatchClass.CHARGE,
    TransactionKind.REFUND_PAID: MatchClass.REFUND,
    # Only a late failure (after payment) touches provider_balance; a refusal before payment does not.
    TransactionKind.REFUND_REVERSED: MatchClass.REFUND_FAILURE,
    TransactionKind.TRANSFER_PAID: MatchClass.TRANSFER,
    TransactionKind.TRANSFER_REVERSED: MatchClass.TRANSFER_REVERSAL,
}

_LEDGER_CLASSES_BY_NAME: dict[str, MatchClass] = {kind.value: cls for kind, cls in LEDGER_CLASSES.items()}

# Stands for "two or more currencies under one key" in ``break_status``: equal to no currency code.
MIXED_CURRENCIES = "*"


def provider_class(type_: str) -> MatchClass | None:
    """The class of a provider balance transaction's type or reporting category; None: ignored."""
    return PROVIDER_CLASSES.get(type_.strip().lower())


def ledger_movement(
    kind: str, provider_id: str | None, entries: Iterable[tuple[str, int, str]]
) -> tuple[MatchClass, int, str] | None:
    """(class, amount, currency) of a ledger transaction as the provider should list it, or None when it
    is not a provider movement. ``entries`` are (account, amount, currency); two currencies on
    ``provider_balance`` give ``MIXED_CURRENCIES``. The SQL that matches a period computes the same."""
    match_class = _LEDGER_CLASSES_BY_NAME.get(kind)
    if match_class is None or not provider_id:
        return None
    amount, currencies = 0, set()
    for account, value, currency in entries:
        if account == PROVIDER_ACCOUNT:
            amount += value
            currencies.add(currency)
    if not currencies:
        return None
    return match_class, amount, currencies.pop() if len(currencies) == 1 else MIXED_CURRENCIES


def break_status(provider: tuple[int, str] | None, ledger: tuple[int, str] | None) -> BreakStatus:
    """The status of one key from each side's (amount, currency) summed over the key, None when that side
    has nothing under it. A key with two currencies on one side (``MIXED_CURRENCIES``) never matches."""
    if provider is None and ledger is None:
        raise ValueError("a key comes from at least one side")
    if ledger is None:
        return BreakStatus.MISSING_IN_LEDGER
    if provider is None:
        return BreakStatus.MISSING_IN_PROVIDER
    if provider == ledger and provider[1] != MIXED_CURRENCIES:
        return BreakStatus.MATCHED
    return BreakStatus.AMOUNT_MISMATCH
