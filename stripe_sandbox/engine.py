"""Billing engine of the sandbox double: subscriptions, prorations, invoices, clock.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
This module holds the state and implements Stripe's billing rules as
STRIPE_NOTES.md describes them (per-second prorations on the item's period,
classic vs flexible credits, renewals that draft at the period end and
finalize an hour later, customer balance applied at finalization).  It knows
nothing of HTTP: the router validates parameters and calls these methods.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from stripe_sandbox.calendar_math import fmt_date, period_end, prorate
from stripe_sandbox.errors import bad_request, card_declined, no_such
from stripe_sandbox.objects import (
    TIMES,
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
    line_description,
    line_item_json,
    open_journal,
    price_json,
    product_json,
    subscription_item_json,
    subscription_json,
)

RENEWAL_FINALIZE_DELAY = 3600
"""Stripe leaves a renewal invoice in draft for about an hour before finalizing it."""

PRORATION_BEHAVIORS = ("create_prorations", "always_invoice", "none")
PAYMENT_BEHAVIORS = (
    "allow_incomplete",
    "error_if_incomplete",
    "pending_if_incomplete",
    "default_incomplete",
)


@dataclass
class ItemChange:
    """One ``items[i]`` entry of a subscription update, already validated."""

    id: str | None = None
    price: str | None = None
    quantity: int | None = None
    deleted: bool = False
    metadata: dict[str, Any] | None = None
    param: str = "items"


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
    payment_failures: list[ArmedFailure] = field(default_factory=list)


class Engine:
    """Stateful Stripe billing model with a movable clock.

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

    # --- ids, events, snapshots ----------------------------------------------

    def new_id(self, prefix: str) -> str:
        n = self.books.counters.get(prefix, 0) + 1
        self.books.counters[prefix] = n
        return f"{prefix}_{self.id_prefix}{n:011d}"

    def emit(self, type_: str, obj: Json, previous: Json | None = None) -> None:
        if self.silent:
            return
        req_id, idem = self.request
        evt = Event(
            id=self.new_id("evt"),
            type=type_,
            created=self.now,
            data_object=obj,  # serialisers build fresh dicts: no copy needed here
            previous_attributes=previous,
            request_id=req_id,
            idempotency_key=idem,
        )
        self.events.append(evt)

    def event_json(self, evt: Event) -> Json:
        data: Json = {"object": json.loads(json.dumps(evt.data_object))}
        if evt.previous_attributes is not None:
            data["previous_attributes"] = evt.previous_attributes
        return {
            "id": evt.id,
            "object": "event",
            "api_version": self.api_version,
            "context": None,
            "created": evt.created,
            "data": data,
            "livemode": False,
            "pending_webhooks": 0 if evt.delivered else 1,
            "request": {"id": evt.request_id, "idempotency_key": evt.idempotency_key},
            "type": evt.type,
        }

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
        return line_item_json(li, unit)

    def invoice_json(self, inv: Invoice, *, preview: bool = False) -> Json:
        lines = [self.line_json(li) for li in inv.lines]
        return invoice_json(inv, self.books.customers[inv.customer], lines, preview=preview)

    def invoice_payment_json(self, p: InvoicePayment) -> Json:
        return invoice_payment_json(p)

    def balance_transaction_json(self, t: BalanceTransaction) -> Json:
        return balance_transaction_json(t)

    # --- customers, balance ----------------------------------------------------------

    def create_customer(
        self,
        *,
        email: str | None,
        name: str | None,
        metadata: dict[str, str],
        test_clock: str | None,
        description: str | None,
    ) -> Customer:
        cid = self.new_id("cus")
        n = self.books.counters["cus"]
        c = Customer(
            id=cid,
            created=self.now,
            email=email,
            name=name,
            metadata=metadata,
            invoice_prefix=f"SBX{n:05d}",
            test_clock=test_clock,
            description=description,
        )
        self.books.customers[cid] = c
        self.emit("customer.created", customer_json(c))
        return c

    def add_balance_transaction(
        self,
        c: Customer,
        *,
        amount: int,
        currency: str,
        type_: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        invoice: str | None = None,
    ) -> BalanceTransaction:
        """Move the customer's balance (negative = credit) and record why."""
        if c.currency is not None and c.currency != currency:
            raise bad_request(
                f"The currency {currency} does not match the customer's currency {c.currency}.",
                param="currency",
            )
        before = customer_json(c)
        c.currency = currency
        c.balance += amount
        txn = BalanceTransaction(
            id=self.new_id("cbtxn"),
            customer=c.id,
            amount=amount,
            currency=currency,
            created=self.now,
            ending_balance=c.balance,
            type=type_,
            description=description,
            metadata=metadata or {},
            invoice=invoice,
        )
        self.books.balance_transactions[txn.id] = txn
        # Stripe has no ``customer.balance_transaction.created`` event: a balance
        # change shows up as ``customer.updated`` with the previous balance.
        after = customer_json(c)
        self.emit("customer.updated", after, _diff(before, after))
        return txn

    # --- catalogue ----------------------------------------------------------------

    def create_product(self, name: str, metadata: dict[str, str]) -> Product:
        p = Product(id=self.new_id("prod"), name=name, created=self.now, metadata=metadata)
        self.books.products[p.id] = p
        self.emit("product.created", product_json(p))
        return p

    def create_price(
        self,
        *,
        product: str,
        currency: str,
        unit_amount: int,
        interval: str,
        interval_count: int,
        metadata: dict[str, str],
        nickname: str | None,
        lookup_key: str | None,
    ) -> Price:
        p = Price(
            id=self.new_id("price"),
            product=product,
            currency=currency,
            unit_amount=unit_amount,
            interval=interval,
            interval_count=interval_count,
            created=self.now,
            metadata=metadata,
            nickname=nickname,
            lookup_key=lookup_key,
        )
        self.books.prices[p.id] = p
        self.emit("price.created", price_json(p))
        return p

    # --- subscriptions -------------------------------------------------------------

    def _period_end(self, s: Subscription, index: int) -> int:
        price = self.books.prices[self.books.items[s.items[0]].price]
        return period_end(s.billing_cycle_anchor, price.interval, price.interval_count, index)

    def create_subscription(
        self,
        *,
        customer: Customer,
        items: list[tuple[Price, int, dict[str, str]]],
        billing_mode: str,
        metadata: dict[str, str],
        payment_behavior: str,
    ) -> Subscription:
        first = items[0][0]
        for idx, (price, _q, _m) in enumerate(items):
            if (price.interval, price.interval_count) != (first.interval, first.interval_count):
                raise bad_request(
                    "Currency and interval fields must match across all plans on a "
                    "subscription (the sandbox does not model mixed intervals).",
                    param=f"items[{idx}][price]",
                )
            if price.currency != first.currency:
                raise bad_request(
                    "Currency and interval fields must match across all plans on a subscription.",
                    param=f"items[{idx}][price]",
                )
        if customer.currency is not None and customer.currency != first.currency:
            raise bad_request(
                f"You cannot combine currencies on a single customer. This customer has "
                f"had a subscription or payment in {customer.currency}, but you are trying "
                f"to pay in {first.currency}.",
                param="currency",
            )
        s = Subscription(
            id=self.new_id("sub"),
            customer=customer.id,
            created=self.now,
            billing_cycle_anchor=self.now,
            billing_mode=billing_mode,
            billing_mode_updated_at=self.now if billing_mode == "flexible" else None,
            currency=first.currency,
            items=[],
            metadata=metadata,
            test_clock=customer.test_clock,
        )
        end = period_end(self.now, first.interval, first.interval_count, 0)
        for price, quantity, meta in items:
            si = SubscriptionItem(
                id=self.new_id("si"),
                subscription=s.id,
                price=price.id,
                quantity=quantity,
                created=self.now,
                period_start=self.now,
                period_end=end,
                metadata=meta,
                billed_quantity=quantity,
                billed_price=price.id,
            )
            self.books.items[si.id] = si
            s.items = [*s.items, si.id]
        customer.currency = first.currency
        self.books.subscriptions[s.id] = s
        self.emit("customer.subscription.created", self.subscription_json(s))

        inv = self._new_invoice(
            customer,
            s,
            billing_reason="subscription_create",
            auto_advance=True,
            period=(self.now, self.now),
        )
        for si_id in s.items:
            si = self.books.items[si_id]
            self._add_recurring_line(inv, s, si, si.period_start, si.period_end)
        s.latest_invoice = inv.id
        self.emit("invoice.created", self.invoice_json(inv))
        paid = self.finalize(inv, attempt_payment=True)
        if not paid:
            if payment_behavior == "error_if_incomplete":
                raise card_declined()
            before = self.subscription_json(s)
            s.status = "incomplete"
            after = self.subscription_json(s)
            self.emit("customer.subscription.updated", after, _diff(before, after))
        return s

    def update_subscription(
        self,
        s: Subscription,
        *,
        changes: list[ItemChange],
        proration_behavior: str,
        proration_date: int | None,
        payment_behavior: str,
        metadata: dict[str, str] | None = None,
        cancel_at_period_end: bool | None = None,
    ) -> Invoice | None:
        """Apply item changes with Stripe's proration rules.

        Returns the invoice created by ``always_invoice`` (if any).
        """
        if s.status in ("canceled", "incomplete_expired"):
            raise bad_request(
                "A canceled subscription can only update its cancellation_details and metadata."
            )
        before = self.subscription_json(s)
        at = self.now if proration_date is None else proration_date
        created_items: list[InvoiceItem] = []
        seen: set[str] = set()
        for ch in changes:
            if ch.id is not None:
                si = self.books.items.get(ch.id)
                if si is None or si.subscription != s.id or ch.id not in s.items:
                    raise bad_request(
                        f"No such subscription item: '{ch.id}'",
                        param=f"{ch.param}[id]",
                        code="resource_missing",
                    )
                if ch.id in seen:
                    raise bad_request(
                        f"Subscription item {ch.id} appears twice in the update.",
                        param=f"{ch.param}[id]",
                    )
                seen.add(ch.id)
                created_items += self._change_item(
                    s, si, ch, at, proration_behavior, proration_date
                )
            else:
                created_items += self._add_item(s, ch, at, proration_behavior, proration_date)
        if metadata is not None:
            s.metadata = metadata
        if cancel_at_period_end is not None:
            s.cancel_at_period_end = cancel_at_period_end
        for ii in created_items:
            self.emit("invoiceitem.created", self.invoice_item_json(ii))
        after = self.subscription_json(s)
        diff = _diff(before, after)
        if diff:
            self.emit("customer.subscription.updated", after, diff)
        if proration_behavior != "always_invoice" or not created_items:
            return None
        inv = self._new_invoice(
            self.customer(s.customer),
            s,
            billing_reason="subscription_update",
            auto_advance=True,
            period=(self.now, self.now),
        )
        self._attach_pending(inv, s.customer, s.id)
        s.latest_invoice = inv.id
        self.emit("invoice.created", self.invoice_json(inv))
        paid = self.finalize(inv, attempt_payment=True)
        if not paid:
            if payment_behavior in ("error_if_incomplete", "pending_if_incomplete"):
                raise card_declined()
            before = self.subscription_json(s)
            s.status = "past_due"
            after = self.subscription_json(s)
            self.emit("customer.subscription.updated", after, _diff(before, after))
        return inv

    def _check_proration_date(self, si: SubscriptionItem, proration_date: int | None) -> None:
        if proration_date is None:
            return
        if not si.period_start <= proration_date < si.period_end:
            raise bad_request(
                f"The proration_date ({proration_date}) must be within the current "
                f"billing period of the subscription item {si.id} "
                f"([{si.period_start}, {si.period_end})).",
                param="proration_date",
            )

    def _change_item(
        self,
        s: Subscription,
        si: SubscriptionItem,
        ch: ItemChange,
        at: int,
        behavior: str,
        proration_date: int | None,
    ) -> list[InvoiceItem]:
        new_price = si.price
        if ch.price is not None and ch.price != si.price:
            price = self.price(ch.price, param=f"{ch.param}[price]")
            old = self.books.prices[si.price]
            if (price.interval, price.interval_count, price.currency) != (
                old.interval,
                old.interval_count,
                old.currency,
            ):
                raise bad_request(
                    "The sandbox only models price changes within the same interval and currency.",
                    param=f"{ch.param}[price]",
                )
            self._reject_duplicate_price(s, price.id, ch, exclude=si.id)
            new_price = price.id
        new_qty = 0 if ch.deleted else (ch.quantity if ch.quantity is not None else si.quantity)
        if ch.metadata is not None:
            si.metadata = {k: v for k, v in {**si.metadata, **ch.metadata}.items() if v != ""}
        changed = new_qty != si.quantity or new_price != si.price or ch.deleted
        if ch.deleted and len(s.items) == 1:
            raise bad_request(
                "A subscription must have at least one active plan. To cancel a "
                "subscription, please use the cancel API endpoint.",
                param=f"{ch.param}[deleted]",
            )
        created: list[InvoiceItem] = []
        if changed and behavior != "none":
            self._check_proration_date(si, proration_date)
            created = self._prorate(s, si, at, new_qty, new_price)
        si.quantity = new_qty
        si.price = new_price
        if ch.deleted:
            s.items = [x for x in s.items if x != si.id]
        return created

    def _add_item(
        self,
        s: Subscription,
        ch: ItemChange,
        at: int,
        behavior: str,
        proration_date: int | None,
    ) -> list[InvoiceItem]:
        if ch.deleted:
            raise bad_request("Cannot delete an item without an id.", param=f"{ch.param}[id]")
        if ch.price is None:
            raise bad_request(
                f"Missing required param: {ch.param}[price].",
                param=f"{ch.param}[price]",
                code="parameter_missing",
            )
        price = self.price(ch.price, param=f"{ch.param}[price]")
        first = self.books.items[s.items[0]]
        first_price = self.books.prices[first.price]
        if (price.interval, price.interval_count, price.currency) != (
            first_price.interval,
            first_price.interval_count,
            first_price.currency,
        ):
            raise bad_request(
                "Currency and interval fields must match across all plans on a subscription.",
                param=f"{ch.param}[price]",
            )
        self._reject_duplicate_price(s, price.id, ch)
        quantity = 1 if ch.quantity is None else ch.quantity
        si = SubscriptionItem(
            id=self.new_id("si"),
            subscription=s.id,
            price=price.id,
            quantity=0,
            created=self.now,
            period_start=first.period_start,
            period_end=first.period_end,
            metadata={k: v for k, v in (ch.metadata or {}).items() if v != ""},
            billed_quantity=0,
            billed_price=price.id,
        )
        self.books.items[si.id] = si
        s.items = [*s.items, si.id]
        created: list[InvoiceItem] = []
        if behavior != "none":
            self._check_proration_date(si, proration_date)
            created = self._prorate(s, si, at, quantity, price.id)
        si.quantity = quantity
        return created

    def _reject_duplicate_price(
        self, s: Subscription, price_id: str, ch: ItemChange, exclude: str | None = None
    ) -> None:
        for other in s.items:
            if other != exclude and self.books.items[other].price == price_id:
                raise bad_request(
                    f"Cannot add multiple subscription items with the same plan: {price_id}",
                    param=f"{ch.param}[price]",
                )

    def _prorate(
        self, s: Subscription, si: SubscriptionItem, at: int, new_qty: int, new_price: str
    ) -> list[InvoiceItem]:
        """Credit the old quantity's unused time and charge the new one's remaining time.

        Classic mode credits the item's current quantity/price (even if that was
        never paid for); flexible mode credits what the period was billed for.
        """
        if s.billing_mode == "classic":
            old_qty, old_price_id = si.quantity, si.price
        else:
            old_qty, old_price_id = si.billed_quantity, si.billed_price
        start, end = si.period_start, si.period_end
        if s.billing_mode == "flexible" and (old_qty, old_price_id) == (new_qty, new_price):
            return []
        created: list[InvoiceItem] = []
        old_price = self.books.prices[old_price_id]
        new_p = self.books.prices[new_price]
        if old_qty > 0:
            name = self.books.products[old_price.product].name
            ii = self._new_invoice_item(
                s,
                si,
                old_price,
                amount=-prorate(old_qty, old_price.unit_amount, start, end, at),
                quantity=old_qty,
                description=f"Unused time on {_qty_name(old_qty, name)} after {fmt_date(at)}",
                period=(at, end),
            )
            created.append(ii)
        if new_qty > 0:
            name = self.books.products[new_p.product].name
            ii = self._new_invoice_item(
                s,
                si,
                new_p,
                amount=prorate(new_qty, new_p.unit_amount, start, end, at),
                quantity=new_qty,
                description=f"Remaining time on {_qty_name(new_qty, name)} after {fmt_date(at)}",
                period=(at, end),
            )
            created.append(ii)
        si.billed_quantity = new_qty
        si.billed_price = new_price
        return created

    def _new_invoice_item(
        self,
        s: Subscription,
        si: SubscriptionItem,
        price: Price,
        *,
        amount: int,
        quantity: int,
        description: str,
        period: tuple[int, int],
    ) -> InvoiceItem:
        ii = InvoiceItem(
            id=self.new_id("ii"),
            customer=s.customer,
            currency=price.currency,
            amount=amount,
            description=description,
            date=self.now,
            period_start=period[0],
            period_end=period[1],
            quantity=quantity,
            price=price.id,
            proration=True,
            subscription=s.id,
            subscription_item=si.id,
        )
        self.books.invoice_items[ii.id] = ii
        return ii

    def cancel_subscription(self, s: Subscription, *, prorate_: bool, invoice_now: bool) -> None:
        if s.status == "canceled":
            raise bad_request(
                f"No such subscription: '{s.id}' (it is already canceled)",
                code="resource_missing",
            )
        before = self.subscription_json(s)
        created: list[InvoiceItem] = []
        if prorate_:
            for si_id in s.items:
                si = self.books.items[si_id]
                if si.period_start <= self.now < si.period_end:
                    created += self._prorate(s, si, self.now, 0, si.price)
        for ii in created:
            self.emit("invoiceitem.created", self.invoice_item_json(ii))
        s.status = "canceled"
        s.canceled_at = self.now
        s.ended_at = self.now
        s.cancel_at_period_end = False
        after = self.subscription_json(s)
        self.emit("customer.subscription.deleted", after, _diff(before, after))
        if invoice_now:
            pending = self._pending_items(s.customer, s.id)
            if pending:
                inv = self._new_invoice(
                    self.customer(s.customer),
                    s,
                    billing_reason="subscription_cycle",
                    auto_advance=True,
                    period=(self.now, self.now),
                )
                self._attach_pending(inv, s.customer, s.id)
                s.latest_invoice = inv.id
                self.emit("invoice.created", self.invoice_json(inv))
                self.finalize(inv, attempt_payment=True)

    # --- invoices ------------------------------------------------------------------

    def _new_invoice(
        self,
        customer: Customer,
        s: Subscription | None,
        *,
        billing_reason: str,
        auto_advance: bool,
        period: tuple[int, int],
        invoice_id: str | None = None,
    ) -> Invoice:
        currency = s.currency if s is not None else (customer.currency or "usd")
        inv = Invoice(
            id=invoice_id or self.new_id("in"),
            customer=customer.id,
            currency=currency,
            created=self.now,
            billing_reason=billing_reason,
            subscription=s.id if s is not None else None,
            period_start=period[0],
            period_end=period[1],
            auto_advance=auto_advance,
            subscription_metadata=dict(s.metadata) if s is not None else None,
        )
        if auto_advance:
            inv.automatically_finalizes_at = self.now + RENEWAL_FINALIZE_DELAY
        if invoice_id is None:
            self.books.invoices[inv.id] = inv
        return inv

    def _add_recurring_line(
        self,
        inv: Invoice,
        s: Subscription,
        si: SubscriptionItem,
        start: int,
        end: int,
        *,
        line_prefix: str = "il",
    ) -> None:
        price = self.books.prices[si.price]
        product = self.books.products[price.product]
        inv.lines = [
            *inv.lines,
            LineItem(
                id=self.new_id(line_prefix),
                invoice=inv.id,
                amount=si.quantity * price.unit_amount,
                currency=price.currency,
                description=line_description(si.quantity, product.name, price),
                period_start=start,
                period_end=end,
                quantity=si.quantity,
                price=price.id,
                product=product.id,
                proration=False,
                subscription=s.id,
                subscription_item=si.id,
                invoice_item=None,
            ),
        ]

    def _pending_items(self, customer: str, subscription: str | None) -> list[InvoiceItem]:
        return [
            ii
            for ii in self.books.invoice_items.values()
            if ii.customer == customer
            and ii.invoice is None
            and (subscription is None or ii.subscription == subscription)
        ]

    def _attach_pending(
        self,
        inv: Invoice,
        customer: str,
        subscription: str | None,
        *,
        line_prefix: str = "il",
        attach: bool = True,
    ) -> None:
        for ii in self._pending_items(customer, subscription):
            if attach:
                ii.invoice = inv.id
            price = self.books.prices.get(ii.price) if ii.price else None
            inv.lines = [
                *inv.lines,
                LineItem(
                    id=self.new_id(line_prefix),
                    invoice=inv.id,
                    amount=ii.amount,
                    currency=ii.currency,
                    description=ii.description,
                    period_start=ii.period_start,
                    period_end=ii.period_end,
                    quantity=ii.quantity,
                    price=ii.price,
                    product=price.product if price else None,
                    proration=ii.proration,
                    subscription=ii.subscription,
                    subscription_item=ii.subscription_item,
                    invoice_item=ii.id,
                ),
            ]

    def create_invoice(
        self,
        *,
        customer: Customer,
        subscription: Subscription | None,
        include_pending: bool,
        auto_advance: bool,
        collection_method: str,
        metadata: dict[str, str],
    ) -> Invoice:
        inv = self._new_invoice(
            customer,
            subscription,
            billing_reason="manual",
            auto_advance=auto_advance,
            period=(self.now, self.now),
        )
        inv.collection_method = collection_method
        inv.metadata = metadata
        if include_pending:
            self._attach_pending(inv, customer.id, subscription.id if subscription else None)
        self.emit("invoice.created", self.invoice_json(inv))
        return inv

    def finalize(self, inv: Invoice, *, attempt_payment: bool) -> bool:
        """Finalize a draft: apply the customer balance, number it, maybe collect.

        Returns True when the invoice ends up paid.
        """
        if inv.status != "draft":
            raise bad_request(
                "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                code="invoice_not_editable",
            )
        c = self.books.customers[inv.customer]
        total = inv.total
        balance = c.balance
        inv.starting_balance = balance
        if total < 0:
            # A credit invoice: nothing due, the credit lands on the balance.
            due, ending = 0, balance + total
        elif balance < 0:
            used = min(-balance, total)
            due, ending = total - used, balance + used
        else:
            # A debit balance is collected with this invoice.
            due, ending = total + balance, 0
        inv.amount_due_final = due
        inv.ending_balance = ending
        inv.status = "open"
        inv.finalized_at = self.now
        inv.automatically_finalizes_at = None
        inv.number = f"{c.invoice_prefix}-{c.next_invoice_sequence:04d}"
        c.next_invoice_sequence += 1
        balance_delta = inv.ending_balance - c.balance
        if balance_delta != 0:
            self.add_balance_transaction(
                c,
                amount=balance_delta,
                currency=inv.currency,
                type_="applied_to_invoice",
                invoice=inv.id,
            )
        self.emit("invoice.finalized", self.invoice_json(inv))
        if due == 0:
            self._mark_paid(inv, amount=0)
            return True
        if (
            attempt_payment
            and inv.collection_method == "charge_automatically"
            and (inv.auto_advance or inv.billing_reason != "manual")
        ):
            return self.attempt_payment(inv)
        return False

    def _take_failure(self, customer: str) -> bool:
        for f in self.books.payment_failures:
            if f.remaining > 0 and f.customer in (None, customer):
                f.remaining -= 1
                self.books.payment_failures = [
                    x for x in self.books.payment_failures if x.remaining > 0
                ]
                return True
        return False

    def attempt_payment(self, inv: Invoice) -> bool:
        """Charge the (imaginary) default card: succeeds unless a failure is armed."""
        inv.attempt_count += 1
        inv.attempted = True
        if self._take_failure(inv.customer):
            inv.next_payment_attempt = None
            self.emit("invoice.payment_failed", self.invoice_json(inv))
            return False
        pay = InvoicePayment(
            id=self.new_id("inpay"),
            invoice=inv.id,
            amount=inv.amount_remaining,
            currency=inv.currency,
            created=self.now,
            status="paid",
            payment_intent=self.new_id("pi"),
        )
        inv.payments = [*inv.payments, pay]
        self._mark_paid(inv, amount=inv.amount_remaining)
        self.emit("invoice_payment.paid", invoice_payment_json(pay))
        return True

    def _mark_paid(self, inv: Invoice, *, amount: int) -> None:
        inv.amount_paid += amount
        inv.status = "paid"
        inv.paid_at = self.now
        inv.next_payment_attempt = None
        self.emit("invoice.paid", self.invoice_json(inv))
        self.emit("invoice.payment_succeeded", self.invoice_json(inv))
        if inv.subscription is not None:
            s = self.books.subscriptions[inv.subscription]
            if s.status in ("past_due", "incomplete") and not any(
                i.status == "open" and i.subscription == s.id for i in self.books.invoices.values()
            ):
                before = self.subscription_json(s)
                s.status = "active"
                after = self.subscription_json(s)
                self.emit("customer.subscription.updated", after, _diff(before, after))

    def pay(self, inv: Invoice, *, paid_out_of_band: bool) -> None:
        if inv.status == "paid":
            raise bad_request("Invoice is already paid", code="invoice_already_paid")
        if inv.status in ("void", "uncollectible") and not paid_out_of_band:
            raise bad_request(f"This invoice can't be paid because it is {inv.status}.")
        if inv.status == "draft" and self.finalize(inv, attempt_payment=False):
            return
        if paid_out_of_band:
            inv.paid_out_of_band = True
            self._mark_paid(inv, amount=inv.amount_remaining)
            return
        if not self.attempt_payment(inv):
            raise card_declined()

    def void(self, inv: Invoice) -> None:
        if inv.status != "open":
            raise bad_request(
                f"You can only void open invoices; this invoice is {inv.status}.",
                code="invoice_not_editable" if inv.status == "draft" else None,
            )
        inv.status = "void"
        inv.voided_at = self.now
        self.emit("invoice.voided", self.invoice_json(inv))

    def receive_payment(self, inv: Invoice, amount: int) -> None:
        """A customer payment arriving through Stripe (e.g. a bank transfer).

        Paying more than remains sets ``amount_overpaid`` and credits the excess
        to the customer balance (type ``invoice_overpaid``), as Stripe does.
        """
        if inv.status != "open":
            raise bad_request(f"Invoice {inv.id} is {inv.status}, not open.")
        remaining = inv.amount_remaining
        pay = InvoicePayment(
            id=self.new_id("inpay"),
            invoice=inv.id,
            amount=amount,
            currency=inv.currency,
            created=self.now,
            status="paid",
            payment_intent=self.new_id("pi"),
        )
        inv.payments = [*inv.payments, pay]
        self.emit("invoice_payment.paid", invoice_payment_json(pay))
        if amount < remaining:
            inv.amount_paid += amount
            self.emit(
                "invoice.updated", self.invoice_json(inv), {"amount_paid": inv.amount_paid - amount}
            )
            return
        excess = amount - remaining
        inv.amount_overpaid = excess
        self._mark_paid(inv, amount=amount)
        if excess > 0:
            self.emit("invoice.overpaid", self.invoice_json(inv))
            self.add_balance_transaction(
                self.books.customers[inv.customer],
                amount=-excess,
                currency=inv.currency,
                type_="invoice_overpaid",
                invoice=inv.id,
            )

    # --- previews ---------------------------------------------------------------------

    def preview_renewal(self, s: Subscription, preview_id: str) -> Invoice:
        """The invoice the next renewal would produce (on a silent clone)."""
        end = min(self.books.items[i].period_end for i in s.items)
        inv = self._new_invoice(
            self.customer(s.customer),
            s,
            billing_reason="upcoming",
            auto_advance=True,
            period=(self.books.items[s.items[0]].period_start, end),
            invoice_id=preview_id,
        )
        inv.created = end
        next_end = self._period_end(s, s.periods_elapsed + 1)
        for si_id in s.items:
            self._add_recurring_line(
                inv, s, self.books.items[si_id], end, next_end, line_prefix="il_tmp"
            )
        self._attach_pending(inv, s.customer, s.id, line_prefix="il_tmp", attach=False)
        self._preview_balance(inv)
        inv.next_payment_attempt = end + RENEWAL_FINALIZE_DELAY
        return inv

    def preview_pending(self, customer: Customer, s: Subscription, preview_id: str) -> Invoice:
        """The invoice ``always_invoice`` would produce now (on a silent clone)."""
        inv = self._new_invoice(
            customer,
            s,
            billing_reason="subscription_update",
            auto_advance=True,
            period=(self.now, self.now),
            invoice_id=preview_id,
        )
        self._attach_pending(inv, customer.id, s.id, line_prefix="il_tmp", attach=False)
        self._preview_balance(inv)
        return inv

    def _preview_balance(self, inv: Invoice) -> None:
        c = self.books.customers[inv.customer]
        total = inv.total
        inv.starting_balance = c.balance
        if total <= 0:
            inv.amount_due_final = 0
            inv.ending_balance = c.balance + min(total, 0)
        elif c.balance < 0:
            inv.amount_due_final = max(0, total + c.balance)
            inv.ending_balance = min(0, c.balance + total)
        else:
            inv.amount_due_final = total + c.balance
            inv.ending_balance = 0
        inv.automatically_finalizes_at = None

    # --- the clock ------------------------------------------------------------------

    def advance_to(self, target: int) -> None:
        """Move time forward, renewing and finalizing whatever falls due on the way."""
        if target < self.now:
            raise ValueError(f"cannot move the clock back from {self.now} to {target}")
        while True:
            due = self._next_due(target)
            if due is None:
                break
            self.now = max(self.now, due)
            self._run_due(due)
        self.now = target

    def _next_due(self, target: int) -> int | None:
        times: list[int] = []
        for s in self.books.subscriptions.values():
            if s.status in ("canceled", "incomplete_expired", "incomplete"):
                continue
            times.append(min(self.books.items[i].period_end for i in s.items))
        for inv in self.books.invoices.values():
            if inv.status == "draft" and inv.auto_advance and inv.automatically_finalizes_at:
                times.append(inv.automatically_finalizes_at)
        due = [t for t in times if t <= target]
        return min(due) if due else None

    def _run_due(self, at: int) -> None:
        for s in list(self.books.subscriptions.values()):
            if s.status in ("canceled", "incomplete_expired", "incomplete"):
                continue
            if min(self.books.items[i].period_end for i in s.items) <= at:
                self._renew(s)
        for inv in list(self.books.invoices.values()):
            if (
                inv.status == "draft"
                and inv.auto_advance
                and inv.automatically_finalizes_at is not None
                and inv.automatically_finalizes_at <= at
            ):
                self._auto_finalize(inv)

    def _renew(self, s: Subscription) -> None:
        before = self.subscription_json(s)
        first = self.books.items[s.items[0]]
        old_start, old_end = first.period_start, first.period_end
        if s.cancel_at_period_end:
            s.status = "canceled"
            s.canceled_at = old_end
            s.ended_at = old_end
            after = self.subscription_json(s)
            self.emit("customer.subscription.deleted", after, _diff(before, after))
            return
        s.periods_elapsed += 1
        new_end = self._period_end(s, s.periods_elapsed)
        for si_id in s.items:
            si = self.books.items[si_id]
            si.period_start, si.period_end = old_end, new_end
            si.billed_quantity, si.billed_price = si.quantity, si.price
        after = self.subscription_json(s)
        inv = self._new_invoice(
            self.customer(s.customer),
            s,
            billing_reason="subscription_cycle",
            auto_advance=True,
            period=(old_start, old_end),
        )
        for si_id in s.items:
            si = self.books.items[si_id]
            self._add_recurring_line(inv, s, si, si.period_start, si.period_end)
        self._attach_pending(inv, s.customer, s.id)
        s.latest_invoice = inv.id
        after = self.subscription_json(s)
        self.emit("customer.subscription.updated", after, _diff(before, after))
        self.emit("invoice.created", self.invoice_json(inv))

    def _auto_finalize(self, inv: Invoice) -> None:
        paid = self.finalize(inv, attempt_payment=True)
        if not paid and inv.subscription is not None and inv.status == "open":
            s = self.books.subscriptions[inv.subscription]
            if s.status == "active" and inv.attempted:
                before = self.subscription_json(s)
                s.status = "past_due"
                after = self.subscription_json(s)
                self.emit("customer.subscription.updated", after, _diff(before, after))


def _qty_name(quantity: int, name: str) -> str:
    return name if quantity == 1 else f"{quantity} {TIMES} {name}"


def _diff(before: Json, after: Json) -> Json:
    """Stripe's ``previous_attributes``: old values of the top-level keys that changed."""
    return {k: v for k, v in before.items() if after.get(k) != v}
