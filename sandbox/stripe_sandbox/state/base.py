"""The bottom layer of the sandbox's state: books, ids, undo points, lookups, JSON.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
Every layer above (one per Stripe resource, see :mod:`stripe_sandbox.state`) reads
and renders objects through the methods here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stripe_sandbox.errors import no_such
from stripe_sandbox.objects import (
    BalanceTransaction,
    Customer,
    Event,
    Invoice,
    InvoiceItem,
    InvoicePayment,
    Json,
    LineItem,
    Price,
    Product,
    Subscription,
    SubscriptionItem,
    Tracked,
    balance_transaction_json,
    close_journal,
    customer_json,
    invoice_item_json,
    invoice_json,
    invoice_payment_json,
    line_item_json,
    open_journal,
    price_json,
    product_json,
    subscription_item_json,
    subscription_json,
)
from stripe_sandbox.objects.test_clocks import TestClock


@dataclass
class Snapshot:
    """An undo point: the journal of changed objects plus table sizes and counters."""

    journal: dict[int, tuple[Any, dict[str, Any]]]
    sizes: dict[str, int]
    counters: dict[str, int]
    failures: list[ArmedFailure]
    events: int


_OBJECT_TABLES = (
    "customers",
    "balance_transactions",
    "products",
    "prices",
    "subscriptions",
    "items",
    "invoice_items",
    "invoices",
    "test_clocks",
)


@dataclass
class ArmedFailure(Tracked):
    """A payment failure a test has armed (``StripeDouble.fail_next_payments``)."""

    customer: str | None
    remaining: int


@dataclass
class Books:
    """All mutable billing state; deep-copied for rollbacks and previews."""

    counters: dict[str, int] = field(default_factory=dict)
    customers: dict[str, Customer] = field(default_factory=dict)
    balance_transactions: dict[str, BalanceTransaction] = field(default_factory=dict)
    products: dict[str, Product] = field(default_factory=dict)
    prices: dict[str, Price] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    items: dict[str, SubscriptionItem] = field(default_factory=dict)
    invoice_items: dict[str, InvoiceItem] = field(default_factory=dict)
    invoices: dict[str, Invoice] = field(default_factory=dict)
    test_clocks: dict[str, TestClock] = field(default_factory=dict)
    payment_failures: list[ArmedFailure] = field(default_factory=list)


class StateBase:
    """What every layer of :class:`stripe_sandbox.state.StripeState` shares.

    ``books`` holds the objects, ``events`` the recorded Events (kept outside
    ``books`` so that snapshots stay cheap).  ``request`` is the (request id,
    idempotency key) pair stamped on events created by the current API call.
    """

    def __init__(self, now: int, api_version: str) -> None:
        self.now = now
        self.api_version = api_version
        self.books = Books()
        self.events: list[Event] = []
        self.request: tuple[str | None, str | None] = (None, None)
        self.silent = False
        self.id_prefix = "Sbx"

    # --- ids and undo points ------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        n = self.books.counters.get(prefix, 0) + 1
        self.books.counters[prefix] = n
        return f"{prefix}_{self.id_prefix}{n:011d}"

    def snapshot(self) -> Snapshot:
        """Start an undo point; end it with :meth:`commit` or :meth:`restore`."""
        b = self.books
        return Snapshot(
            journal=open_journal(),
            sizes={name: len(getattr(b, name)) for name in _OBJECT_TABLES},
            counters=dict(b.counters),
            failures=list(b.payment_failures),
            events=len(self.events),
        )

    def commit(self, snap: Snapshot) -> None:
        close_journal(snap.journal, undo=False)

    def restore(self, snap: Snapshot) -> None:
        """Undo everything since ``snap``: changed objects, new objects, events."""
        close_journal(snap.journal, undo=True)
        for name, size in snap.sizes.items():
            table = getattr(self.books, name)
            for key in list(table)[size:]:
                del table[key]
        self.books.counters = snap.counters
        self.books.payment_failures = snap.failures
        del self.events[snap.events :]

    # --- lookups ----------------------------------------------------------------

    def customer(self, cid: str, param: str | None = None) -> Customer:
        c = self.books.customers.get(cid)
        if c is None:
            raise no_such("customer", cid, param=param)
        return c

    def price(self, pid: str, param: str | None = None) -> Price:
        p = self.books.prices.get(pid)
        if p is None:
            raise no_such("price", pid, param=param)
        return p

    def product(self, pid: str, param: str | None = None) -> Product:
        p = self.books.products.get(pid)
        if p is None:
            raise no_such("product", pid, param=param)
        return p

    def subscription(self, sid: str, param: str | None = None) -> Subscription:
        s = self.books.subscriptions.get(sid)
        if s is None:
            raise no_such("subscription", sid, param=param)
        return s

    def item(self, sid: str, param: str | None = None) -> SubscriptionItem:
        si = self.books.items.get(sid)
        if si is None:
            raise no_such("subscription_item", sid, param=param)
        return si

    def invoice(self, iid: str, param: str | None = None) -> Invoice:
        inv = self.books.invoices.get(iid)
        if inv is None:
            raise no_such("invoice", iid, param=param)
        return inv

    def invoice_item(self, iid: str) -> InvoiceItem:
        ii = self.books.invoice_items.get(iid)
        if ii is None:
            raise no_such("invoiceitem", iid)
        return ii

    # --- serialisation ------------------------------------------------------------

    def customer_json(self, c: Customer) -> Json:
        return customer_json(c)

    def product_json(self, p: Product) -> Json:
        return product_json(p)

    def price_json(self, p: Price) -> Json:
        return price_json(p)

    def item_json(self, si: SubscriptionItem) -> Json:
        return subscription_item_json(si, self.books.prices[si.price])

    def subscription_json(self, s: Subscription) -> Json:
        items = [self.item_json(self.books.items[i]) for i in s.items]
        return subscription_json(s, items)

    def invoice_item_json(self, ii: InvoiceItem) -> Json:
        price = self.books.prices.get(ii.price) if ii.price else None
        unit = price.unit_amount if price is not None and not ii.proration else None
        return invoice_item_json(ii, price.product if price else None, unit)

    def line_json(self, li: LineItem) -> Json:
        price = self.books.prices.get(li.price) if li.price else None
        unit = price.unit_amount if price is not None and not li.proration else None
        return line_item_json(li, unit, self._credited_lines(li))

    def _credited_lines(self, li: LineItem) -> Json | None:
        """A credit proration line's debit as ``{invoice, invoice_line_items}``: the lines
        fixed when the credit was written, or those that have since billed its debit's
        invoice item (None while that debit is still pending)."""
        ii = self.books.invoice_items.get(li.invoice_item) if li.invoice_item else None
        if ii is None:
            return None
        if ii.credited_lines is not None:
            return {
                "invoice": ii.credited_lines[0],
                "invoice_line_items": list(ii.credited_lines[1]),
            }
        debit = self.books.invoice_items.get(ii.credited_invoice_item or "")
        inv = self.books.invoices.get(debit.invoice) if debit and debit.invoice else None
        if debit is None or inv is None:
            return None
        lines = [x.id for x in inv.lines if x.invoice_item == debit.id]
        return {"invoice": inv.id, "invoice_line_items": lines} if lines else None

    def invoice_json(self, inv: Invoice, *, preview: bool = False) -> Json:
        lines = [self.line_json(li) for li in inv.lines]
        return invoice_json(inv, self.books.customers[inv.customer], lines, preview=preview)

    def invoice_payment_json(self, p: InvoicePayment) -> Json:
        return invoice_payment_json(p)

    def balance_transaction_json(self, t: BalanceTransaction) -> Json:
        return balance_transaction_json(t)


def previous_attributes(before: Json, after: Json) -> Json:
    """Stripe's ``previous_attributes``: old values of the top-level keys that changed."""
    return {k: v for k, v in before.items() if after.get(k) != v}
