"""A Stripe-compatible local server for tests and the demo (charges, refunds, connected accounts, transfers,
reversals, payouts, balances and balance transactions, idempotency keys, injected faults, a test clock,
signed webhooks), held to Stripe's OpenAPI description by a contract test. See README.md beside this file."""

from devtools.stripe_server.app import StripeServer
from devtools.stripe_server.webhooks import sign

__all__ = ["StripeServer", "sign"]
