"""A Stripe-compatible local server for tests and the demo (charges, refunds, transfers, reversals, balance
transactions, idempotency keys, injected faults, signed webhooks). See README.md beside this file."""

from devtools.stripe_server.app import StripeServer
from devtools.stripe_server.webhooks import sign

__all__ = ["StripeServer", "sign"]
