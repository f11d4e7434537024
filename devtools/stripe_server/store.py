"""The whole in-memory Stripe account: every object kind's endpoints on one store (see state.StoreBase)."""

from __future__ import annotations

from devtools.stripe_server.balance import Balance
from devtools.stripe_server.charges import Charges
from devtools.stripe_server.events import Events
from devtools.stripe_server.refunds import Refunds
from devtools.stripe_server.transfers import Transfers


class Store(Balance, Charges, Refunds, Transfers, Events):  # Balance brings Accounts
    pass
