"""In-memory Stripe objects of the sandbox double and their JSON serialisation.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
The dataclasses hold only what the double's billing state needs; the
``*_json`` functions render them in the shapes of API version
``2026-10-28.endive`` (periods on subscription items, ``invoice.parent``,
line-item ``parent.*_details.proration``, no ``invoice.charge``/``paid``), so the
connector parses exactly what it will get from Stripe.  One module per Stripe
resource; :mod:`.base` holds the undo journal every object takes part in.
"""

from stripe_sandbox.objects.base import TIMES, Json, Tracked, close_journal, open_journal
from stripe_sandbox.objects.catalogue import Price, Product, plan_json, price_json, product_json
from stripe_sandbox.objects.customers import (
    BalanceTransaction,
    Customer,
    balance_transaction_json,
    customer_json,
)
from stripe_sandbox.objects.events import Event
from stripe_sandbox.objects.invoices import (
    Invoice,
    InvoiceItem,
    InvoicePayment,
    LineItem,
    invoice_item_json,
    invoice_json,
    invoice_payment_json,
    line_description,
    line_item_json,
)
from stripe_sandbox.objects.subscriptions import (
    Debit,
    Subscription,
    SubscriptionItem,
    subscription_item_json,
    subscription_json,
)

__all__ = [
    "TIMES",
    "BalanceTransaction",
    "Customer",
    "Debit",
    "Event",
    "Invoice",
    "InvoiceItem",
    "InvoicePayment",
    "Json",
    "LineItem",
    "Price",
    "Product",
    "Subscription",
    "SubscriptionItem",
    "Tracked",
    "balance_transaction_json",
    "close_journal",
    "customer_json",
    "invoice_item_json",
    "invoice_json",
    "invoice_payment_json",
    "line_description",
    "line_item_json",
    "open_journal",
    "plan_json",
    "price_json",
    "product_json",
    "subscription_item_json",
    "subscription_json",
]
