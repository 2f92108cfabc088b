"""The sandbox double's state and Stripe's billing rules, one layer per resource.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
:class:`StripeState` holds the objects and implements Stripe's billing rules as
STRIPE_NOTES.md describes them (per-second prorations on the item's period,
classic vs flexible credits, renewals that draft at the period end and
finalize an hour later, customer balance applied at finalization).  It knows
nothing of HTTP: the routes validate parameters and call these methods.

It is built as a stack of layers, each a module here that may use the ones
below it and never the ones above (so every call is checked by mypy as is):

- :mod:`.base` - books, ids, undo points, lookups, JSON rendering;
- :mod:`.events` - the event log;
- :mod:`.catalogue` - products and prices;
- :mod:`.customers` - customers and their balance;
- :mod:`.invoices` - invoices and payments;
- :mod:`.prorations` - proration invoice items;
- :mod:`.subscriptions` - subscriptions and their items;
- :mod:`.clock` - moving time: renewals and auto-finalization;
- :mod:`.test_clocks` - Stripe's test clocks on that one clock.
"""

from stripe_sandbox.state.base import ArmedFailure, Books, Snapshot
from stripe_sandbox.state.invoices import RENEWAL_FINALIZE_DELAY
from stripe_sandbox.state.subscriptions import PAYMENT_BEHAVIORS, PRORATION_BEHAVIORS, ItemChange
from stripe_sandbox.state.test_clocks import TestClocks


class StripeState(TestClocks):
    """Stateful Stripe billing model with a movable clock (all layers together)."""


__all__ = [
    "PAYMENT_BEHAVIORS",
    "PRORATION_BEHAVIORS",
    "RENEWAL_FINALIZE_DELAY",
    "ArmedFailure",
    "Books",
    "ItemChange",
    "Snapshot",
    "StripeState",
]
