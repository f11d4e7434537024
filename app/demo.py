"""The demo marketplace: one operator team, two shops, buyers and orders. Seeding is idempotent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.auth import Actor, Role
from app.disputes import schemas as actions
from app.disputes import service as disputes
from app.disputes.models import Dispute
from app.disputes.schemas import DisputeCreate, Reason, Requested, Resolution, ResolutionType
from app.money import Money
from app.orders import service as orders
from app.orders.schemas import OrderLineIn, OrderUpsert, Payment
from app.payouts import refunds
from app.payouts.schemas import RefundCreate, RefundKind
from app.sellers import service as sellers
from app.sellers.schemas import RefundOn, SellerSettings, SellerUpsert
from app.settings import Settings
from app.threads import macros
from app.threads import messages as thread_messages
from app.threads import service as threads
from app.threads.models import Thread
from app.threads.schemas import Audience, MacroCreate, MessageCreate, ThreadCreate

MARKETPLACE = Actor(id="marketplace", role=Role.MARKETPLACE, name="Demo Marketplace")
CAMILLE = Actor(id="buyer-camille", role=Role.BUYER, name="Camille Martin")
HUGO = Actor(id="buyer-hugo", role=Role.BUYER, name="Hugo Bernard")
INES = Actor(id="seller-ines", role=Role.SELLER, seller_id="shop-kettles", name="Inès (Bouilloires & Co)")
YANIS = Actor(id="seller-yanis", role=Role.SELLER, seller_id="shop-bikes", name="Yanis (Vélos du Coin)")
ALICE = Actor(id="agent-alice", role=Role.AGENT, name="Alice (customer care)")
ARTHUR = Actor(id="arbitrator-arthur", role=Role.ARBITRATOR, name="Arthur (disputes)")


@dataclass(frozen=True)
class DemoUser:
    role: str
    sub: str
    name: str
    seller_id: str = ""


USERS = [
    DemoUser("buyer", "buyer-camille", "Camille Martin"),
    DemoUser("buyer", "buyer-hugo", "Hugo Bernard"),
    DemoUser("seller", "seller-ines", "Inès (Bouilloires & Co)", "shop-kettles"),
    DemoUser("seller", "seller-yanis", "Yanis (Vélos du Coin)", "shop-bikes"),
    DemoUser("agent", "agent-alice", "Alice (customer care)"),
    DemoUser("arbitrator", "arbitrator-arthur", "Arthur (disputes)"),
    DemoUser("finance", "finance-fatou", "Fatou (finance)"),
    DemoUser("admin", "admin-ada", "Ada (admin)"),
    DemoUser("marketplace", "marketplace", "Demo Marketplace"),
]

SHOPS = {
    "shop-kettles": SellerUpsert(
        name="Bouilloires & Co",
        stripe_account_id="acct_demo_kettles",
        settings=SellerSettings(refund_budget=Money(5_000, "EUR"), refund_on=RefundOn.RECEIPT),
    ),
    "shop-bikes": SellerUpsert(
        name="Vélos du Coin",
        stripe_account_id="acct_demo_bikes",
        settings=SellerSettings(refund_budget=Money(20_000, "EUR"), refund_on=RefundOn.SHIPMENT),
    ),
}

# (order id, buyer, shop, [(line, sku, title, qty, unit price)], delivered days ago or None)
ORDERS: list[tuple[str, str, str, list[tuple[str, str, str, int, int]], int | None]] = [
    ("ord-1001", "buyer-camille", "shop-kettles", [("l1", "KTL-INOX", "Bouilloire inox 1.7 L", 1, 4_990)], 3),
    ("ord-1002", "buyer-camille", "shop-bikes", [("l1", "BIKE-CITY", "Vélo de ville", 1, 38_900)], 10),
    (
        "ord-1003",
        "buyer-hugo",
        "shop-kettles",
        [("l1", "KTL-GLASS", "Bouilloire verre", 1, 5_990), ("l2", "FLT-10", "Filtres (x10)", 2, 750)],
        None,
    ),
    ("ord-1004", "buyer-hugo", "shop-bikes", [("l1", "HLM-01", "Casque urbain", 1, 6_490)], 20),
    # One order per demo dispute (a line has one open dispute at a time).
    *[
        (f"ord-20{n:02d}", buyer, shop, [("l1", sku, title, 1, price)], 5)
        for n, buyer, shop, sku, title, price in [
            (1, "buyer-camille", "shop-kettles", "KTL-RETRO", "Bouilloire rétro", 3_990),
            (2, "buyer-hugo", "shop-kettles", "KTL-MINI", "Mini bouilloire", 2_490),
            (3, "buyer-camille", "shop-bikes", "LCK-01", "Antivol U", 3_490),
            (4, "buyer-hugo", "shop-bikes", "LGT-02", "Éclairage LED", 2_990),
            (5, "buyer-camille", "shop-kettles", "KTL-SMART", "Bouilloire connectée", 4_990),
            (6, "buyer-hugo", "shop-kettles", "TEA-SET", "Service à thé", 4_490),
            (7, "buyer-camille", "shop-bikes", "BAG-01", "Sacoche vélo", 4_990),
            (8, "buyer-hugo", "shop-bikes", "PMP-01", "Pompe à pied", 2_490),
            (9, "buyer-camille", "shop-kettles", "KTL-TRAVEL", "Bouilloire de voyage", 1_990),
        ]
    ],
    # Money leaving escrow (app/demo_payouts.py): two released long ago, one released after the shop's debt.
    ("ord-3001", "buyer-camille", "shop-kettles", [("l1", "KTL-PRO", "Bouilloire à température", 1, 8_990)], 30),
    ("ord-3002", "buyer-hugo", "shop-bikes", [("l1", "WHL-700", "Roue arrière 700C", 1, 12_990)], 30),
    ("ord-3003", "buyer-hugo", "shop-bikes", [("l1", "SDL-01", "Selle confort", 1, 5_490)], 25),
]


def charge_id_of(order_id: str) -> str:
    """The card charge behind a demo order (created at the local Stripe server by ``make demo``). Letters,
    digits and ``_`` only, as Stripe's ids: a provider event naming anything else is rejected as malformed."""
    return f"ch_demo_{order_id.replace('-', '_')}"


def order_totals() -> dict[str, int]:
    return {order_id: sum(qty * price for *_, qty, price in lines) for order_id, _, _, lines, _ in ORDERS}


async def seed(engine: AsyncEngine, *, now: datetime | None = None, settings: Settings | None = None) -> None:
    now = now or datetime.now(UTC)
    settings = settings or Settings()
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session, session.begin():
        for shop_id, shop in SHOPS.items():
            await sellers.upsert_seller(session, actor=MARKETPLACE, seller_id=shop_id, data=shop)
        for order_id, buyer, shop_id, lines, delivered_days_ago in ORDERS:
            total = sum(qty * price for _, _, _, qty, price in lines)
            data = OrderUpsert(
                buyer_id=buyer,
                seller_id=shop_id,
                currency="EUR",
                total=Money(total, "EUR"),
                commission=Money(total // 10, "EUR"),
                lines=[
                    OrderLineIn(line_id=lid, sku=sku, title=title, quantity=qty, unit_price=Money(price, "EUR"))
                    for lid, sku, title, qty, price in lines
                ],
                payment=Payment(provider="stripe", charge_id=charge_id_of(order_id), customer_id=f"cus_{buyer}"),
                delivered_at=None
                if delivered_days_ago is None
                else (now - timedelta(days=delivered_days_ago)).replace(microsecond=0),
            )
            await orders.upsert_order(session, actor=MARKETPLACE, order_id=order_id, data=data, escrow_hold_seconds=0)
        await seed_threads(session)
        await seed_disputes(session, settings)
        await seed_refunds(session, settings)


# (opened by, audience, subject, order, extra ids, [(author, reply)...]) — one conversation per audience.
THREADS: list[tuple[Actor, Audience, str, str | None, dict[str, str], list[tuple[Actor, str]]]] = [
    (
        CAMILLE,
        Audience.BUYER_SELLER,
        "Couvercle qui ferme mal",
        "ord-1001",
        {},
        [(INES, "Bonjour Camille, pouvez-vous nous envoyer une photo du couvercle ?")],
    ),
    (
        HUGO,
        Audience.TRIPARTITE,
        "Filtres manquants dans le colis",
        "ord-1003",
        {},
        [(ALICE, "Bonjour Hugo, nous avons prévenu la boutique."), (INES, "Nous renvoyons les filtres demain.")],
    ),
    (
        ALICE,
        Audience.OPERATOR_SELLER,
        "Taux de retour en hausse",
        None,
        {"seller_id": "shop-bikes"},
        [(YANIS, "Nous regardons les retours de casques cette semaine.")],
    ),
    (CAMILLE, Audience.OPERATOR_BUYER, "Question sur mon avoir", None, {}, []),
    (
        ALICE,
        Audience.INTERNAL,
        "Vérifier l'historique de Vélos du Coin",
        "ord-1002",
        {},
        [(ALICE, "Deux litiges similaires ce mois-ci.")],
    ),
]

MACROS = [
    (
        ALICE,
        "Accusé de réception",
        "Bonjour {buyer_name}, nous avons bien reçu votre demande sur la commande {order_id}.",
    ),
    (INES, "Expédition", "Bonjour {buyer_name}, votre commande {order_id} est partie aujourd'hui. {seller_name}"),
]


async def seed_threads(session: AsyncSession) -> None:
    """Threads of every audience; skipped when the demo already has them (seeding stays idempotent)."""
    if await session.scalar(select(Thread.id).where(Thread.created_by.in_([a.id for a, *_ in THREADS])).limit(1)):
        return
    for opener, audience, subject, order_id, extra, replies in THREADS:
        first = f"{subject}." if not replies else f"{subject} — pouvez-vous regarder ?"
        created = await threads.open_thread(
            session,
            actor=opener,
            data=ThreadCreate(
                audience=audience, subject=subject, body=first, order_id=order_id, seller_id=extra.get("seller_id")
            ),
        )
        for author, text in replies:
            await thread_messages.post_message(
                session, actor=author, thread_id=created.thread_id, data=MessageCreate(body=text)
            )
    for author, title, body in MACROS:
        await macros.create_macro(session, actor=author, data=MacroCreate(title=title, body=body))


def _buyer(order_id: str) -> Actor:
    return CAMILLE if int(order_id[-1]) % 2 else HUGO


def _seller(order_id: str) -> Actor:
    return INES if {o: shop for o, _, shop, _, _ in ORDERS}[order_id] == "shop-kettles" else YANIS


REPAIR = Resolution(type=ResolutionType.REPAIR)
PARTIAL = Resolution(type=ResolutionType.REFUND_PARTIAL, amount=Money(1_000, "EUR"))
RETURN_FOR_REFUND = Resolution(type=ResolutionType.REFUND_FULL, return_required=True)

# (order, reason, what the buyer asks, [(who, action)...]) — one dispute left in each status.
DISPUTES: list[tuple[str, Reason, ResolutionType, list[tuple[str, actions.ActionBody]]]] = [
    ("ord-2001", Reason.DEFECTIVE, ResolutionType.REFUND_FULL, []),  # open
    (
        "ord-2002",
        Reason.NOT_AS_DESCRIBED,
        ResolutionType.REFUND_PARTIAL,
        [("seller", actions.Propose(resolution=PARTIAL))],
    ),
    (
        "ord-2003",
        Reason.NOT_RECEIVED,
        ResolutionType.REFUND_FULL,
        [("buyer", actions.Escalate(note="Aucune réponse."))],
    ),
    (
        "ord-2004",
        Reason.WRONG_ITEM,
        ResolutionType.REPLACEMENT,
        [("seller", actions.Escalate(note="Le client refuse l'échange.")), ("arbitrator", actions.Claim())],
    ),
    ("ord-2005", Reason.DEFECTIVE, ResolutionType.REFUND_FULL, [("seller", actions.AcceptClaim(return_required=True))]),
    (
        "ord-2006",
        Reason.DAMAGED,
        ResolutionType.REFUND_FULL,
        [
            ("seller", actions.AcceptClaim(return_required=True)),
            ("buyer", actions.MarkReturned(carrier="La Poste", tracking_number="6A00000000001")),
        ],
    ),
    (
        "ord-2007",
        Reason.MISSING_PARTS,
        ResolutionType.REFUND_PARTIAL,
        [("seller", actions.Propose(resolution=PARTIAL)), ("buyer", actions.AcceptOffer())],
    ),
    (
        "ord-2008",
        Reason.DEFECTIVE,
        ResolutionType.REPAIR,
        [("seller", actions.Propose(resolution=REPAIR)), ("buyer", actions.AcceptOffer())],
    ),
    (
        "ord-2009",
        Reason.OTHER,
        ResolutionType.REFUND_FULL,
        [("buyer", actions.Withdraw(note="Finalement, ça marche."))],
    ),
]


async def seed_disputes(session: AsyncSession, settings: Settings) -> None:
    """A dispute in each status (open ... closed); skipped when the demo already has them."""
    if await session.scalar(select(Dispute.id).where(Dispute.order_id == "ord-2001").limit(1)):
        return
    for order_id, reason, wanted, steps in DISPUTES:
        buyer = _buyer(order_id)
        requested = Requested(
            type=wanted, amount=Money(1_000, "EUR") if wanted == ResolutionType.REFUND_PARTIAL else None
        )
        opened = await disputes.open_dispute(
            session,
            actor=buyer,
            data=DisputeCreate(
                order_id=order_id,
                reason=reason,
                requested=requested,
                description=f"{reason.value.replace('_', ' ')} — {order_id}",
            ),
            settings=settings,
        )
        cast = {"buyer": buyer, "seller": _seller(order_id), "arbitrator": ARTHUR}
        for who, body in steps:
            await disputes.act(session, actor=cast[who], dispute_id=opened.dispute_id, body=body, settings=settings)


# One grant of each kind outside disputes (source keys make seeding idempotent). The two card refunds are
# paid by the worker through the payment provider (`make demo` runs the local Stripe server for it).
REFUNDS = [
    ("demo-refund-partial", "ord-1001", RefundKind.PARTIAL, 1_000, "seller", None, "Couvercle abîmé"),
    ("demo-refund-full", "ord-1004", RefundKind.FULL, None, "operator", None, "Colis perdu par le transporteur"),
    ("demo-credit", "ord-1002", RefundKind.CREDIT, 2_000, "operator", 10, "Geste commercial: retard de livraison"),
    ("demo-promo", "ord-1003", RefundKind.PROMO_CODE, 500, "operator", None, "Filtres manquants"),
]


async def seed_refunds(session: AsyncSession, settings: Settings) -> None:
    for key, order_id, kind, amount, funded_by, bonus, reason in REFUNDS:
        await refunds.grant_refund(
            session,
            actor=ARTHUR,
            data=RefundCreate(
                order_id=order_id,
                kind=kind,
                amount=Money(amount, "EUR") if amount is not None else None,
                funded_by=funded_by,  # type: ignore[arg-type]
                bonus_percent=bonus,
                reason=reason,
            ),
            source_key=f"demo:{key}",
            settings=settings,
        )
