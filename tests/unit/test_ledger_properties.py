"""Ledger properties: random sequences of every money movement, on several orders of two shops and two
buyers, posted with the real entry builders (app/ledger/postings.py), give the balances an independent
model of the marketplace expects — per order captured, refunded and refundable (read with the very SQL of
app/ledger/views.py), escrow per shop, goodwill, bonus, refunds in flight, the provider balance, each
buyer's store credit and unredeemed promo value, and checkout clearing — not only transactions that sum
to zero."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, delete, insert, select

from app.ledger import postings
from app.ledger.models import LedgerEntry, LedgerTransaction
from app.ledger.posting import Account, Entry, TransactionKind, check_balanced
from app.ledger.views import money_columns, party_balances_query
from app.models import metadata
from app.payouts.rules import release_split

# order -> (buyer, shop)
ORDERS = {"o0": ("b0", "s0"), "o1": ("b0", "s1"), "o2": ("b1", "s0")}
BUYERS = ("b0", "b1")
SHOPS = ("s0", "s1")
K = TransactionKind

order_ids = st.sampled_from(sorted(ORDERS))
amounts = st.integers(min_value=1, max_value=100_000)
percents = st.integers(min_value=0, max_value=100)


@dataclass(frozen=True)
class Recapture:
    """The marketplace corrects an order's total (and maybe its currency)."""

    order_id: str
    total: int
    to_usd: bool


@dataclass(frozen=True)
class Refund:
    order_id: str
    amount: int
    seller_percent: int
    outcome: str  # paid, reversed, pending, paid_then_failed
    recovery_refused: bool = False  # after release: the shop's transfer cannot be reversed (a debt)


@dataclass(frozen=True)
class Compensate:
    """A credit note or a promo code."""

    kind: str
    order_id: str
    amount: int
    seller_percent: int
    bonus_percent: int
    recovery_refused: bool = False  # after release: the shop's transfer cannot be reversed (a debt)


@dataclass(frozen=True)
class RedeemCredit:
    buyer_id: str
    amount: int


@dataclass(frozen=True)
class RedeemPromo:
    index: int  # which of the codes not spent yet


@dataclass(frozen=True)
class Release:
    """The hold has passed: the order's escrow goes to its shop (commission a percent of the capture)."""

    order_id: str
    commission_percent: int
    transfer_fails: bool


@dataclass(frozen=True)
class Appeal:
    """An appeal decided in the shop's favour: the seller part of a settled compensation moves to the operator."""

    index: int  # which of the settled compensations


@dataclass(frozen=True)
class FailLate:
    """The provider fails a refund after it succeeded (a closed card): the money is back."""

    index: int  # which of the settled compensations (credit notes and promo codes never fail)


Operation = Recapture | Refund | Compensate | RedeemCredit | RedeemPromo | Release | Appeal | FailLate
operations = st.lists(
    st.one_of(
        st.builds(Recapture, order_ids, st.integers(min_value=0, max_value=200_000), st.booleans()),
        st.builds(
            Refund,
            order_ids,
            amounts,
            percents,
            st.sampled_from(["paid", "reversed", "pending", "paid_then_failed"]),
            st.booleans(),
        ),
        st.builds(
            Compensate, st.sampled_from(["credit", "promo"]), order_ids, amounts, percents, percents, st.booleans()
        ),
        st.builds(RedeemCredit, st.sampled_from(BUYERS), amounts),
        st.builds(RedeemPromo, st.integers(min_value=0, max_value=20)),
        st.builds(Release, order_ids, percents, st.booleans()),
        # Appeals and late failures need a settled compensation first: drawn more often to reach one.
        *[st.builds(Appeal, st.integers(min_value=0, max_value=20))] * 3,
        *[st.builds(FailLate, st.integers(min_value=0, max_value=20))] * 2,
    ),
    max_size=40,
)


def nonzero(amounts: Counter[str] | dict[str, int]) -> dict[str, int]:
    """Per currency, without the currencies whose amount is zero (a Counter's ``+`` would drop negatives too)."""
    return {currency: amount for currency, amount in amounts.items() if amount}


@dataclass
class Book:
    """An in-memory ledger: the transactions the services would post, built by the services' builders."""

    transactions: list[tuple[TransactionKind, str | None, list[Entry]]] = field(default_factory=list)

    def post(self, kind: TransactionKind, order_id: str | None, entries: list[Entry]) -> list[Entry]:
        check_balanced(entries)
        self.transactions.append((kind, order_id, entries))
        return entries

    def balance(self, account: Account, *, party: str | None = None, orders: set[str] | None = None) -> dict[str, int]:
        """Per currency, the sum of the entries on ``account`` (of ``party``, or of ``orders``)."""
        total: Counter[str] = Counter()
        for _, order_id, entries in self.transactions:
            for e in entries:
                if e.account != account or (party is not None and e.party_id != party):
                    continue
                if orders is not None and order_id not in orders:
                    continue
                total[e.currency] += e.amount
        return nonzero(total)


def negated(amounts: dict[str, int]) -> dict[str, int]:
    """A liability's balance as what is owed (ledger credits are negative)."""
    return {currency: -amount for currency, amount in amounts.items()}


@dataclass
class Settled:
    """A compensation the buyer has, as the services know it: what an appeal or a late failure undoes."""

    order_id: str
    amount: int
    seller_part: int
    recovered: bool  # granted after the order's release: its seller part was recovered from the shop
    issued: list[Entry]
    paid: list[Entry] | None  # a provider refund's payment; None for a credit note or promo code
    reallocated: bool = False
    failed: bool = False


@dataclass
class Model:
    """What the marketplace expects, kept with plain numbers and no ledger at all."""

    currency: dict[str, str] = field(default_factory=lambda: dict.fromkeys(ORDERS, "EUR"))
    captured: dict[str, int] = field(default_factory=dict)
    refunded: Counter[str] = field(default_factory=Counter)  # compensation granted and not given back
    seller_paid: Counter[str] = field(default_factory=Counter)  # per order: the shop's part of it
    goodwill: Counter[str] = field(default_factory=Counter)  # per currency, from here down
    bonus: Counter[str] = field(default_factory=Counter)
    in_flight: Counter[str] = field(default_factory=Counter)
    paid_out: Counter[str] = field(default_factory=Counter)
    credit: dict[str, Counter[str]] = field(default_factory=lambda: {b: Counter() for b in BUYERS})
    promo: dict[str, Counter[str]] = field(default_factory=lambda: {b: Counter() for b in BUYERS})
    spent: Counter[str] = field(default_factory=Counter)
    unredeemed: list[tuple[str, int, str]] = field(default_factory=list)  # promo codes: buyer, value, currency
    pending: set[str] = field(default_factory=set)  # orders with a refund in flight (never released)
    released: set[str] = field(default_factory=set)
    commission: Counter[str] = field(default_factory=Counter)
    transferred: Counter[str] = field(default_factory=Counter)
    debt: dict[str, Counter[str]] = field(default_factory=lambda: {s: Counter() for s in SHOPS})
    order_transferred: Counter[str] = field(default_factory=Counter)  # per order: its payout's transfer
    order_reversed: Counter[str] = field(default_factory=Counter)  # per order: taken back from that transfer
    reversed_back: Counter[str] = field(default_factory=Counter)  # per currency: back on the provider balance
    owed: dict[str, Counter[str]] = field(default_factory=lambda: {s: Counter() for s in SHOPS})  # owed back
    settled: list[Settled] = field(default_factory=list)  # compensations the buyer has: appealable

    def refundable(self, order_id: str) -> int:
        return max(self.captured[order_id] - self.refunded[order_id], 0)

    def provider(self) -> dict[str, int]:
        held: Counter[str] = Counter()
        for order_id, total in self.captured.items():
            held[self.currency[order_id]] += total
        held.subtract(self.paid_out)
        held.subtract(self.transferred)
        held.update(self.reversed_back)
        return nonzero(held)

    def seller_funded(self, shop: str) -> dict[str, int]:
        funded: Counter[str] = Counter()
        for order_id, (_, order_shop) in ORDERS.items():
            if order_shop == shop:
                funded[self.currency[order_id]] += self.seller_paid[order_id]
        return nonzero(funded)

    def escrow_owed(self, shop: str) -> dict[str, int]:
        owed: Counter[str] = Counter()
        for order_id, (_, order_shop) in ORDERS.items():
            if order_shop == shop and order_id not in self.released:
                owed[self.currency[order_id]] += self.captured[order_id] - self.seller_paid[order_id]
        return nonzero(owed)


def replay(totals: list[int], ops: list[Operation]) -> tuple[Book, Model]:
    """Apply the operations the way the services do, refusing what they refuse (nothing is posted then)."""
    book, model = Book(), Model()
    for order_id, total in zip(sorted(ORDERS), totals, strict=True):
        entries = postings.capture_entries(currency="EUR", total=total, previous=None)
        if entries:  # an order of 0 captures nothing: nothing is posted
            book.post(K.CAPTURE, order_id, entries)
        model.captured[order_id] = total
    for op in ops:
        if isinstance(op, Recapture):
            recapture(book, model, op)
        elif isinstance(op, Refund):
            refund(book, model, op)
        elif isinstance(op, Compensate):
            compensate(book, model, op)
        elif isinstance(op, Release):
            release(book, model, op)
        elif isinstance(op, Appeal):
            appeal(book, model, op)
        elif isinstance(op, FailLate):
            fail_late(book, model, op)
        elif isinstance(op, RedeemCredit):
            if op.amount > model.credit[op.buyer_id]["EUR"]:  # 422 credit.insufficient
                continue
            book.post(K.CREDIT_REDEEMED, None, postings.credit_redemption_entries(op.amount, "EUR", op.buyer_id))
            model.credit[op.buyer_id]["EUR"] -= op.amount
            model.spent["EUR"] += op.amount
        elif model.unredeemed:  # a promo code is spent whole
            buyer, value, cur = model.unredeemed.pop(op.index % len(model.unredeemed))
            book.post(K.PROMO_REDEEMED, None, postings.promo_redemption_entries(value, cur, buyer))
            model.promo[buyer][cur] -= value
            model.spent[cur] += value
    return book, model


def recapture(book: Book, model: Model, op: Recapture) -> None:
    if model.refunded[op.order_id] or model.seller_paid[op.order_id] or op.order_id in model.released:
        return  # 409 order.immutable once compensation exists
    currency = "USD" if op.to_usd else "EUR"
    previous = (model.currency[op.order_id], model.captured[op.order_id])
    entries = postings.capture_entries(currency=currency, total=op.total, previous=previous)
    if entries:
        book.post(K.CAPTURE_ADJUSTMENT, op.order_id, entries)
    model.currency[op.order_id], model.captured[op.order_id] = currency, op.total


def refund(book: Book, model: Model, op: Refund) -> None:
    if op.amount > model.refundable(op.order_id):  # 422 refund.exceeds_refundable
        return
    buyer, shop = ORDERS[op.order_id]
    cur = model.currency[op.order_id]
    seller_part = op.amount * op.seller_percent // 100
    issued = book.post(
        K.REFUND_ISSUED, op.order_id, postings.issue_entries(seller_part, op.amount - seller_part, cur, buyer, shop)
    )
    paid = postings.paid_entries(op.amount, cur)
    if op.outcome == "reversed":  # the provider refused: as if nothing happened
        book.post(K.REFUND_REVERSED, op.order_id, postings.reversal_entries(issued))
        if op.order_id in model.released and seller_part:  # after payout: recovered, then given back untouched
            book.post(K.RECOVERY_OPENED, op.order_id, postings.recovery_entries(seller_part, cur, shop))
            reversible = max(model.order_transferred[op.order_id] - model.order_reversed[op.order_id], 0)
            pending = min(seller_part, reversible)  # a reversal never attempted: canceled
            if seller_part > pending:  # the rest was a debt at once: the debt is reduced (or owed back)
                book.post(
                    K.RECOVERY_DEBT, op.order_id, postings.recovery_debt_entries(seller_part - pending, cur, shop)
                )
                model.debt[shop][cur] += seller_part - pending
            give_back(book, model, op.order_id, seller_part, Account.ESCROW, in_escrow=False, recoverable=pending)
        return
    if op.outcome == "paid_then_failed":  # paid, then failed at the provider (a closed card): money back
        book.post(K.REFUND_PAID, op.order_id, paid)
        book.post(K.REFUND_REVERSED, op.order_id, postings.late_failure_entries(issued, paid))
        return
    if op.outcome == "paid":
        book.post(K.REFUND_PAID, op.order_id, paid)
        model.paid_out[cur] += op.amount
    else:
        model.in_flight[cur] += op.amount
        model.pending.add(op.order_id)
    model.refunded[op.order_id] += op.amount
    model.goodwill[cur] += op.amount - seller_part
    recovered = recover_or_fund(book, model, op.order_id, seller_part, refused=op.recovery_refused)
    if op.outcome == "paid":
        model.settled.append(Settled(op.order_id, op.amount, seller_part, recovered, issued, paid))


def give_back(
    book: Book, model: Model, order_id: str, amount: int, source: Account, *, in_escrow: bool, recoverable: int
) -> None:
    """The services' give-back (app/payouts/reallocation.py) with the model's own bookkeeping: back into
    the order's escrow, a pending reversal canceled, or credited to the shop (debt first, then owed)."""
    _, shop = ORDERS[order_id]
    cur = model.currency[order_id]
    entries = postings.give_back_entries(
        source=source,
        amount=amount,
        in_escrow=in_escrow,
        recoverable=recoverable,
        debt=model.debt[shop][cur],
        currency=cur,
        seller_id=shop,
    )
    if entries:
        book.post(K.REALLOCATED if source == Account.PLATFORM_GOODWILL else K.RECOVERY_CANCELED, order_id, entries)
    if source == Account.PLATFORM_GOODWILL:
        model.goodwill[cur] += amount
        if in_escrow:
            model.seller_paid[order_id] -= amount
    credited = 0 if in_escrow else amount - recoverable
    reduced = min(credited, model.debt[shop][cur])
    model.debt[shop][cur] -= reduced
    model.owed[shop][cur] += credited - reduced


def appeal(book: Book, model: Model, op: Appeal) -> None:
    live = [g for g in model.settled if not g.failed and not g.reallocated and g.seller_part]
    if not live:
        return
    grant = live[op.index % len(live)]
    in_escrow = not grant.recovered and grant.order_id not in model.released
    give_back(
        book, model, grant.order_id, grant.seller_part, Account.PLATFORM_GOODWILL, in_escrow=in_escrow, recoverable=0
    )
    grant.reallocated = True


def fail_late(book: Book, model: Model, op: FailLate) -> None:
    failable = [g for g in model.settled if not g.failed and g.paid is not None]
    if not failable:
        return
    grant = failable[op.index % len(failable)]
    assert grant.paid is not None
    _, shop = ORDERS[grant.order_id]
    cur = model.currency[grant.order_id]
    book.post(K.REFUND_REVERSED, grant.order_id, postings.late_failure_entries(grant.issued, grant.paid))
    grant.failed = True
    model.refunded[grant.order_id] -= grant.amount
    model.paid_out[cur] -= grant.amount
    model.goodwill[cur] -= grant.amount - grant.seller_part
    if grant.reallocated:  # the operator bore the shop's part: it goes back to the operator
        if grant.seller_part:
            book.post(
                K.REALLOCATION_REVERSED,
                grant.order_id,
                postings.reallocation_reversed_entries(grant.seller_part, cur, shop),
            )
            model.goodwill[cur] -= grant.seller_part
        return
    if not grant.seller_part:
        return
    in_escrow = not grant.recovered and grant.order_id not in model.released
    if in_escrow:  # back in the order's escrow (the reversal put it there): the release pays it
        model.seller_paid[grant.order_id] -= grant.seller_part
    give_back(book, model, grant.order_id, grant.seller_part, Account.ESCROW, in_escrow=in_escrow, recoverable=0)


def recover_or_fund(book: Book, model: Model, order_id: str, seller_part: int, *, refused: bool) -> bool:
    """Before release the shop funds its part from the order's escrow; after, it is recovered: the transfer
    reversed by what it still holds, or (refused, or nothing left on it) the shop's debt."""
    if order_id not in model.released:
        model.seller_paid[order_id] += seller_part
        return False
    if not seller_part:
        return False
    _, shop = ORDERS[order_id]
    cur = model.currency[order_id]
    book.post(K.RECOVERY_OPENED, order_id, postings.recovery_entries(seller_part, cur, shop))
    reversible = model.order_transferred[order_id] - model.order_reversed[order_id]
    to_reverse = min(seller_part, reversible)
    model.order_reversed[order_id] += to_reverse  # committed to this reversal, whatever its outcome
    if to_reverse and not refused:
        book.post(K.TRANSFER_REVERSED, order_id, postings.transfer_reversed_entries(to_reverse, cur, shop))
        model.reversed_back[cur] += to_reverse
    owed = seller_part - (to_reverse if not refused else 0)
    if owed:
        book.post(K.RECOVERY_DEBT, order_id, postings.recovery_debt_entries(owed, cur, shop))
        model.debt[shop][cur] += owed
    return True


def compensate(book: Book, model: Model, op: Compensate) -> None:
    if op.amount > model.refundable(op.order_id):
        return
    buyer, shop = ORDERS[op.order_id]
    cur = model.currency[op.order_id]
    seller_part, bonus = op.amount * op.seller_percent // 100, op.amount * op.bonus_percent // 100
    parts = {"seller_part": seller_part, "operator_part": op.amount - seller_part, "bonus": bonus}
    if op.kind == "credit":
        entries = postings.credit_issue_entries(**parts, currency=cur, buyer_id=buyer, seller_id=shop)
        book.post(K.CREDIT_ISSUED, op.order_id, entries)
        model.credit[buyer][cur] += op.amount + bonus
    else:
        entries = postings.promo_issue_entries(**parts, currency=cur, buyer_id=buyer, seller_id=shop)
        book.post(K.PROMO_ISSUED, op.order_id, entries)
        model.promo[buyer][cur] += op.amount + bonus
        model.unredeemed.append((buyer, op.amount + bonus, cur))
    model.refunded[op.order_id] += op.amount
    model.goodwill[cur] += op.amount - seller_part
    model.bonus[cur] += bonus
    recovered = recover_or_fund(book, model, op.order_id, seller_part, refused=op.recovery_refused)
    model.settled.append(Settled(op.order_id, op.amount, seller_part, recovered, entries, None))


def release(book: Book, model: Model, op: Release) -> None:
    """The model's own arithmetic (share, debt, netting) next to the builders and the pure rule."""
    if op.order_id in model.released or op.order_id in model.pending:
        return
    _, shop = ORDERS[op.order_id]
    cur = model.currency[op.order_id]
    captured, funded = model.captured[op.order_id], model.seller_paid[op.order_id]
    commission = captured * op.commission_percent // 100
    owed = model.owed[shop][cur]
    split = release_split(escrow_left=captured - funded, commission=commission, debt=model.debt[shop][cur], owed=owed)
    assert split.transferred >= 0  # never a negative payout
    assert split.debt_netted >= 0
    parts = {
        "escrow_left": captured - funded,
        "commission": commission,
        "currency": cur,
        "seller_id": shop,
        "owed_paid": split.owed_paid,
    }
    if split.debt_recorded:
        entries = postings.debt_entries(**parts)
        kind = K.DEBT_RECORDED
    else:
        entries = postings.release_entries(**parts, debt_netted=split.debt_netted)
        kind = K.RELEASE
    if not entries:
        model.released.add(op.order_id)
        return
    posted = book.post(kind, op.order_id, entries)
    if op.transfer_fails and split.transferred:  # the provider refuses the transfer: undone, still held
        book.post(K.RELEASE_REVERSED, op.order_id, postings.reversal_entries(posted))
        return
    if split.transferred:
        book.post(K.TRANSFER_PAID, op.order_id, postings.transfer_paid_entries(split.transferred, cur, shop))
    model.released.add(op.order_id)
    model.commission[cur] += commission
    due = captured - funded - commission + owed  # what the shop is owed back is paid with this release
    model.owed[shop][cur] = 0
    if due < 0:
        model.debt[shop][cur] += -due
    else:
        netted = min(model.debt[shop][cur], due)
        model.debt[shop][cur] -= netted
        model.transferred[cur] += due - netted
        model.order_transferred[op.order_id] = due - netted


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    engine = create_engine("sqlite://")
    metadata.create_all(engine, tables=[LedgerTransaction.__table__, LedgerEntry.__table__])  # type: ignore[list-item]
    yield engine
    engine.dispose()


def store(engine: Engine, book: Book) -> None:
    with engine.begin() as conn:
        conn.execute(delete(LedgerEntry))
        conn.execute(delete(LedgerTransaction))
        for n, (kind, order_id, _) in enumerate(book.transactions):
            conn.execute(
                insert(LedgerTransaction).values(id=f"t{n}", kind=kind.value, order_id=order_id, reference=f"r{n}")
            )
        rows = [
            {
                "transaction_id": f"t{n}",
                "account": e.account.value,
                "order_id": order_id,
                "party_id": e.party_id,
                "amount": e.amount,
                "currency": e.currency,
            }
            for n, (_, order_id, entries) in enumerate(book.transactions)
            for e in entries
        ]
        if rows:
            conn.execute(insert(LedgerEntry), rows)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(min_value=0, max_value=200_000), min_size=len(ORDERS), max_size=len(ORDERS)), operations)
def test_every_movement_keeps_the_balances_the_model_expects(
    engine: Engine, totals: list[int], ops: list[Operation]
) -> None:
    holds_the_model(engine, *replay(totals, ops))


# After release: compensations (recovered from the shop), appeals, late failures, and more releases.
after_release = st.lists(
    st.one_of(
        st.builds(
            Refund, order_ids, st.integers(min_value=1, max_value=20_000), percents, st.just("paid"), st.booleans()
        ),
        st.builds(
            Compensate, st.sampled_from(["credit", "promo"]), order_ids, amounts, percents, percents, st.booleans()
        ),
        st.builds(Appeal, st.integers(min_value=0, max_value=20)),
        st.builds(FailLate, st.integers(min_value=0, max_value=20)),
        st.builds(Release, order_ids, percents, st.booleans()),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.integers(min_value=50_000, max_value=200_000), min_size=len(ORDERS), max_size=len(ORDERS)),
    st.lists(st.integers(min_value=0, max_value=30), min_size=len(ORDERS), max_size=len(ORDERS)),
    operations,
    after_release,
)
def test_appeals_and_late_failures_around_releases_keep_the_balances(
    engine: Engine, totals: list[int], commissions: list[int], before: list[Operation], after: list[Operation]
) -> None:
    """The same, with every order released part-way (large captures, small commissions): what comes after
    is recovered from the shops, and its appeals and late failures give back to them (debt, owed)."""
    releases = [Release(o, pct, transfer_fails=False) for o, pct in zip(sorted(ORDERS), commissions, strict=True)]
    holds_the_model(engine, *replay(totals, [*before[:10], *releases, *after]))


def holds_the_model(engine: Engine, book: Book, model: Model) -> None:

    everything: Counter[str] = Counter()
    for _, _, entries in book.transactions:
        for e in entries:
            everything[e.currency] += e.amount
    assert nonzero(everything) == {}  # the whole book balances, per currency

    # The order money views, run as SQL over these very transactions.
    store(engine, book)
    with engine.connect() as conn:
        for order_id in ORDERS:
            captured, refunded = (conn.execute(select(*money_columns(order_id)))).one()
            assert (captured, refunded) == (model.captured[order_id], model.refunded[order_id]), order_id
            assert 0 <= refunded <= captured  # never more compensation than the buyer paid
        for buyer in BUYERS:
            credit = dict(conn.execute(party_balances_query(Account.BUYER_CREDIT, buyer)).all())
            assert nonzero(credit) == nonzero(model.credit[buyer])
            promo = dict(conn.execute(party_balances_query(Account.PROMO_LIABILITY, buyer)).all())
            assert nonzero(promo) == nonzero(model.promo[buyer])

    # The accounts, against the model.
    for shop in SHOPS:  # escrow still owed to each shop: its captures less what it funded
        shop_orders = {o for o, (_, s) in ORDERS.items() if s == shop}
        assert negated(book.balance(Account.ESCROW, orders=shop_orders)) == model.escrow_owed(shop)
        # The shop's own account of what it funded (escrow entries name the shop that pays).
        assert book.balance(Account.ESCROW, party=shop) == model.seller_funded(shop)
    assert book.balance(Account.PLATFORM_GOODWILL) == nonzero(model.goodwill)
    assert book.balance(Account.PLATFORM_BONUS) == nonzero(model.bonus)
    # Owed to buyers: refunds issued and not yet paid.
    assert negated(book.balance(Account.REFUNDS_IN_FLIGHT)) == nonzero(model.in_flight)
    assert book.balance(Account.PROVIDER_BALANCE) == model.provider()  # captured less what was paid out
    assert negated(book.balance(Account.CHECKOUT_CLEARING)) == nonzero(model.spent)
    assert book.balance(Account.TRANSFERS_IN_FLIGHT) == {}  # every release confirmed or undone
    assert book.balance(Account.SELLER_RECOVERABLE) == {}  # every recovery reversed or made a debt
    assert negated(book.balance(Account.PLATFORM_COMMISSION)) == nonzero(model.commission)
    for shop in SHOPS:  # debt never lost: recorded, netted, and what is left is still owed
        assert book.balance(Account.SELLER_DEBT, party=shop) == nonzero(model.debt[shop])
        assert all(amount >= 0 for amount in model.debt[shop].values())
        # Owed back never lost either: credited, then paid with the next release; never negative.
        assert negated(book.balance(Account.SELLER_OWED, party=shop)) == nonzero(model.owed[shop])
        assert all(amount >= 0 for amount in model.owed[shop].values())
    for buyer in BUYERS:
        assert negated(book.balance(Account.BUYER_CREDIT, party=buyer)) == nonzero(model.credit[buyer])
        assert negated(book.balance(Account.PROMO_LIABILITY, party=buyer)) == nonzero(model.promo[buyer])


def test_the_model_sees_every_builder() -> None:
    """The operations above reach every kind of transaction (so none is left out of the property)."""
    ops: list[Operation] = [
        Recapture("o0", 90_000, to_usd=False),
        Refund("o0", 100, 50, "paid"),
        Refund("o0", 100, 50, "reversed"),
        Refund("o0", 100, 50, "paid_then_failed"),
        Compensate("credit", "o1", 100, 0, 10),
        Compensate("promo", "o2", 100, 100, 10),
        RedeemCredit("b0", 50),
        RedeemPromo(0),
        Release("o1", 10, transfer_fails=True),
        Release("o1", 10, transfer_fails=False),
        Compensate("credit", "o2", 9_900, 100, 0),
        Release("o2", 10, transfer_fails=False),
        Refund("o1", 100, 100, "paid"),  # after release: the transfer reversed
        Refund("o1", 100, 100, "reversed"),  # after release, refused by the provider: the recovery canceled
        Compensate("credit", "o1", 50, 100, 0, recovery_refused=True),  # refused: a debt
        Appeal(3),  # the shop won an appeal on o1's reversed refund: owed back to it, the operator pays
        FailLate(1),  # ... and that refund fails after all: the part goes back to the operator
    ]
    book, _ = replay([10_000, 10_000, 10_000], ops)
    assert {kind for kind, _, _ in book.transactions} == set(TransactionKind)


def test_a_currency_change_moves_the_whole_capture() -> None:
    book, model = replay([10_000, 0, 0], [Recapture("o0", 7_000, to_usd=True)])
    assert book.balance(Account.PROVIDER_BALANCE) == {"USD": 7_000} == model.provider()


def test_a_shops_debt_is_netted_from_its_next_release() -> None:
    """o2 (shop s0) is refunded in full by the shop, so its commission becomes a debt; o0 (also s0)
    then pays it back before anything is transferred."""
    ops: list[Operation] = [
        Compensate("credit", "o2", 10_000, 100, 0),
        Release("o2", 10, transfer_fails=False),
        Release("o0", 10, transfer_fails=False),
    ]
    book, model = replay([10_000, 0, 10_000], ops)
    assert book.balance(Account.SELLER_DEBT, party="s0") == {} == nonzero(model.debt["s0"])
    assert model.transferred["EUR"] == 10_000 - 1_000 - 1_000
    assert book.balance(Account.PLATFORM_COMMISSION) == {"EUR": -2_000}
