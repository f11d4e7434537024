"""Every domain's tables, imported in one place so Alembic and tests see the whole schema."""

from app.db import Base
from app.disputes.models import Dispute, DisputeEvent, DisputeLine
from app.events.models import Event
from app.idempotency import IdempotencyRecord
from app.ledger.models import LedgerEntry, LedgerTransaction
from app.orders.models import Order, OrderLine
from app.payouts.models import (
    CreditNote,
    CreditNoteCounter,
    CreditRedemption,
    Payout,
    PromoCode,
    ProviderEventRecord,
    Refund,
    Wallet,
)
from app.reconciliation.models import Reconciliation, ReconciliationItem, reconciliation_rows
from app.sellers.models import Seller
from app.threads.models import Attachment, Macro, Message, MessageAttachment, ReadCursor, Thread
from app.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

metadata = Base.metadata

__all__ = [
    "Attachment",
    "CreditNote",
    "CreditNoteCounter",
    "CreditRedemption",
    "Dispute",
    "DisputeEvent",
    "DisputeLine",
    "Event",
    "IdempotencyRecord",
    "LedgerEntry",
    "LedgerTransaction",
    "Macro",
    "Message",
    "MessageAttachment",
    "Order",
    "OrderLine",
    "Payout",
    "PromoCode",
    "ProviderEventRecord",
    "ReadCursor",
    "Reconciliation",
    "ReconciliationItem",
    "Refund",
    "Seller",
    "Thread",
    "Wallet",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "metadata",
    "reconciliation_rows",
]
