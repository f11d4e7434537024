"""Every ledger entry builder, pure: what a money movement writes, account by account.

No I/O: the services post what these return (``posting.post``) and the property test
(tests/unit/test_ledger_properties.py) replays random sequences of them against an independent model of
the balances. A new kind of movement (an escrow release, a transfer reversal, a seller debt) gets its
builder here, next to the others.
"""

from __future__ import annotations

from app.ledger.posting import Account, Entry


def net(entries: list[Entry]) -> list[Entry]:
    """Merge entries on the same account, party and currency; drop those that cancel out."""
    sums: dict[tuple[Account, str, str | None], int] = {}
    for e in entries:
        sums[(e.account, e.currency, e.party_id)] = sums.get((e.account, e.currency, e.party_id), 0) + e.amount
    return [Entry(account, amount, currency, party) for (account, currency, party), amount in sums.items() if amount]


# --- the buyer's payment --------------------------------------------------------------------------------


def capture_entries(*, currency: str, total: int, previous: tuple[str, int] | None) -> list[Entry]:
    """The buyer's payment into escrow, or its correction when the marketplace changes the order's total
    or currency: the old capture undone and the new one made, netted to one delta per currency.

    ``previous`` is the (currency, total) captured before, None on the first push. Empty when nothing
    changes (then nothing is posted)."""
    entries: list[Entry] = []
    if previous is not None:
        old_currency, old_total = previous
        if (old_currency, old_total) == (currency, total):
            return []
        if old_total:
            entries += [
                Entry(Account.PROVIDER_BALANCE, -old_total, old_currency),
                Entry(Account.ESCROW, old_total, old_currency),
            ]
    if total:
        entries += [Entry(Account.PROVIDER_BALANCE, total, currency), Entry(Account.ESCROW, -total, currency)]
    return net(entries)


# --- refunds through the provider -----------------------------------------------------------------------


def issue_entries(seller_part: int, operator_part: int, currency: str, buyer_id: str, seller_id: str) -> list[Entry]:
    """Granting: the seller's part leaves its escrow, the operator's part is goodwill; the buyer is owed both."""
    entries = [Entry(Account.REFUNDS_IN_FLIGHT, -(seller_part + operator_part), currency, buyer_id)]
    if seller_part:
        entries.append(Entry(Account.ESCROW, seller_part, currency, seller_id))
    if operator_part:
        entries.append(Entry(Account.PLATFORM_GOODWILL, operator_part, currency))
    return entries


def paid_entries(amount: int, currency: str) -> list[Entry]:
    """The provider paid the buyer: what was owed leaves the marketplace's provider balance."""
    return [Entry(Account.REFUNDS_IN_FLIGHT, amount, currency), Entry(Account.PROVIDER_BALANCE, -amount, currency)]


def reversal_entries(issued: list[Entry]) -> list[Entry]:
    """The provider refused: the exact opposite of the issue."""
    return [Entry(e.account, -e.amount, e.currency, e.party_id) for e in issued]


def late_failure_entries(issued: list[Entry], paid: list[Entry]) -> list[Entry]:
    """The provider failed a refund after it had succeeded: the opposite of both the issue and the payment
    (the money is back on the provider balance, the shop's escrow and the goodwill get their parts back)."""
    return net(reversal_entries(issued) + reversal_entries(paid))


# --- credit notes and promo codes (our own ledger only) -------------------------------------------------


def _compensation_entries(
    *,
    liability: Account,
    seller_part: int,
    operator_part: int,
    bonus: int,
    currency: str,
    buyer_id: str,
    seller_id: str,
) -> list[Entry]:
    """Credit or promo value owed to the buyer (``liability``: buyer credit or promo liability), taken from
    the shop's escrow, the operator's goodwill and (for the bonus) the operator's promotion budget."""
    entries = [Entry(liability, -(seller_part + operator_part + bonus), currency, buyer_id)]
    if seller_part:
        entries.append(Entry(Account.ESCROW, seller_part, currency, seller_id))
    if operator_part:
        entries.append(Entry(Account.PLATFORM_GOODWILL, operator_part, currency))
    if bonus:
        entries.append(Entry(Account.PLATFORM_BONUS, bonus, currency))
    return entries


def credit_issue_entries(
    *, seller_part: int, operator_part: int, bonus: int, currency: str, buyer_id: str, seller_id: str
) -> list[Entry]:
    """A credit note: its value goes to the buyer's store credit."""
    return _compensation_entries(
        liability=Account.BUYER_CREDIT,
        seller_part=seller_part,
        operator_part=operator_part,
        bonus=bonus,
        currency=currency,
        buyer_id=buyer_id,
        seller_id=seller_id,
    )


def promo_issue_entries(
    *, seller_part: int, operator_part: int, bonus: int, currency: str, buyer_id: str, seller_id: str
) -> list[Entry]:
    """A promo code: its value is owed until the code is redeemed."""
    return _compensation_entries(
        liability=Account.PROMO_LIABILITY,
        seller_part=seller_part,
        operator_part=operator_part,
        bonus=bonus,
        currency=currency,
        buyer_id=buyer_id,
        seller_id=seller_id,
    )


def credit_redemption_entries(amount: int, currency: str, buyer_id: str) -> list[Entry]:
    """The buyer spends store credit at the marketplace's checkout, to be matched with that order's capture."""
    return [
        Entry(Account.BUYER_CREDIT, amount, currency, buyer_id),
        Entry(Account.CHECKOUT_CLEARING, -amount, currency, buyer_id),
    ]


def promo_redemption_entries(amount: int, currency: str, buyer_id: str) -> list[Entry]:
    """A promo code is spent at the marketplace's checkout: the whole value at once."""
    return [
        Entry(Account.PROMO_LIABILITY, amount, currency, buyer_id),
        Entry(Account.CHECKOUT_CLEARING, -amount, currency, buyer_id),
    ]


# --- escrow release to the shop (Stripe Connect transfer) -----------------------------------------------


def release_entries(
    *, escrow_left: int, commission: int, debt_netted: int, currency: str, seller_id: str, owed_paid: int = 0
) -> list[Entry]:
    """The order's escrow (``escrow_left``: its capture less the shop's compensation) is closed: the
    commission is the marketplace's, ``debt_netted`` repays the shop's debt, ``owed_paid`` is what the
    marketplace owed the shop back (``seller_owed``, paid with this transfer), and the rest is owed to the
    shop until the provider confirms the transfer (``transfer_paid_entries``; refused: ``reversal_entries``).
    Only for a due amount that is not negative (``escrow_left - commission + owed_paid >= debt_netted >= 0``);
    a negative one is ``debt_entries``. Empty when there is nothing to move."""
    transferred = escrow_left - commission + owed_paid - debt_netted
    if commission < 0 or debt_netted < 0 or owed_paid < 0 or transferred < 0:
        raise ValueError("a release never pays a negative amount")
    entries = [
        Entry(Account.ESCROW, escrow_left, currency),
        Entry(Account.PLATFORM_COMMISSION, -commission, currency),
        Entry(Account.SELLER_OWED, owed_paid, currency, seller_id),
        Entry(Account.SELLER_DEBT, -debt_netted, currency, seller_id),
        Entry(Account.TRANSFERS_IN_FLIGHT, -transferred, currency, seller_id),
    ]
    return [e for e in entries if e.amount]


def transfer_paid_entries(amount: int, currency: str, seller_id: str) -> list[Entry]:
    """The provider made the transfer: the shop's share leaves the marketplace's provider balance."""
    return [
        Entry(Account.TRANSFERS_IN_FLIGHT, amount, currency, seller_id),
        Entry(Account.PROVIDER_BALANCE, -amount, currency),
    ]


def debt_entries(
    *, escrow_left: int, commission: int, currency: str, seller_id: str, owed_paid: int = 0
) -> list[Entry]:
    """The shop's compensation and the commission passed what the order captured and what the marketplace
    owed the shop back (``owed_paid``, used up here): the escrow is closed, the commission earned, and the
    shortfall becomes the shop's debt."""
    debt = commission - escrow_left - owed_paid
    if commission < 0 or owed_paid < 0 or debt <= 0:
        raise ValueError("a debt is recorded only for a negative share")
    entries = [
        Entry(Account.ESCROW, escrow_left, currency),
        Entry(Account.PLATFORM_COMMISSION, -commission, currency),
        Entry(Account.SELLER_OWED, owed_paid, currency, seller_id),
        Entry(Account.SELLER_DEBT, debt, currency, seller_id),
    ]
    return [e for e in entries if e.amount]


# --- recovering from a shop after its payout (transfer reversal or debt) --------------------------------


def recovery_entries(amount: int, currency: str, seller_id: str) -> list[Entry]:
    """The seller part of a compensation granted after the order's payout: the grant took it from the
    order's escrow, which the release already closed, so it is put back there and is recoverable from the
    shop instead (the escrow stays at zero, never negative)."""
    if amount <= 0:
        raise ValueError("a recovery is of a positive amount")
    return [
        Entry(Account.ESCROW, -amount, currency, seller_id),
        Entry(Account.SELLER_RECOVERABLE, amount, currency, seller_id),
    ]


def transfer_reversed_entries(amount: int, currency: str, seller_id: str) -> list[Entry]:
    """The provider reversed the shop's transfer by ``amount``: the money is back on the marketplace's balance."""
    return [
        Entry(Account.PROVIDER_BALANCE, amount, currency),
        Entry(Account.SELLER_RECOVERABLE, -amount, currency, seller_id),
    ]


def recovery_debt_entries(amount: int, currency: str, seller_id: str) -> list[Entry]:
    """The transfer cannot be reversed (the shop's balance cannot cover it): what is recoverable becomes the
    shop's debt, netted from its next releases."""
    return [
        Entry(Account.SELLER_RECOVERABLE, -amount, currency, seller_id),
        Entry(Account.SELLER_DEBT, amount, currency, seller_id),
    ]


# --- giving a shop back what it no longer bears (an appeal won, a refund failed, a transfer refused) ----


def credit_legs(amount: int, *, debt: int, currency: str, seller_id: str) -> list[Entry]:
    """``amount`` credited to a shop whose money it was: its outstanding ``debt`` is reduced first, the rest
    is owed to it (``seller_owed``, paid with its next release). Never a negative debt."""
    reduced = min(amount, max(debt, 0))
    entries = [
        Entry(Account.SELLER_DEBT, -reduced, currency, seller_id),
        Entry(Account.SELLER_OWED, -(amount - reduced), currency, seller_id),
    ]
    return [e for e in entries if e.amount]


def give_back_entries(
    *,
    source: Account,
    amount: int,
    in_escrow: bool,
    recoverable: int,
    debt: int,
    currency: str,
    seller_id: str,
) -> list[Entry]:
    """The shop's part ``amount`` of a compensation it no longer bears, now charged to ``source`` (the
    operator's ``platform_goodwill`` after an appeal; the order's ``escrow`` when the money came back: a
    refund failed, or a payout refused re-opens the escrow), and released from where it sits:

    - ``in_escrow``: the order's escrow still held it (not released, no recovery): back into the escrow;
    - otherwise ``recoverable`` of it is a transfer reversal not made yet (canceled: ``seller_recoverable``)
      and the rest was taken from the shop (a reversal, a debt, or a release that netted it): credited to
      the shop (``credit_legs``: its debt reduced first, then owed).

    Netted: a failed refund whose part was still in escrow moves nothing (empty)."""
    if amount <= 0 or not 0 <= recoverable <= amount or source not in (Account.PLATFORM_GOODWILL, Account.ESCROW):
        raise ValueError("a give-back is of a positive amount, charged to goodwill or escrow")
    entries = [Entry(source, amount, currency, seller_id if source == Account.ESCROW else None)]
    if in_escrow:
        entries.append(Entry(Account.ESCROW, -amount, currency, seller_id))
    else:
        if recoverable:
            entries.append(Entry(Account.SELLER_RECOVERABLE, -recoverable, currency, seller_id))
        entries += credit_legs(amount - recoverable, debt=debt, currency=currency, seller_id=seller_id)
    return net(entries)


def reallocation_reversed_entries(amount: int, currency: str, seller_id: str) -> list[Entry]:
    """A refund whose shop part an appeal moved to the operator fails after all: the money is back in the
    order's escrow (the refund's reversal put it there) and goes back to the operator, who bore it."""
    return [
        Entry(Account.ESCROW, amount, currency, seller_id),
        Entry(Account.PLATFORM_GOODWILL, -amount, currency),
    ]
