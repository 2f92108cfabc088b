"""Subscriptions: create (and invoice), update items with prorations, cancel.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stripe_sandbox.calendar_math import period_end
from stripe_sandbox.errors import bad_request, card_declined
from stripe_sandbox.objects import (
    Customer,
    Invoice,
    InvoiceItem,
    Price,
    Subscription,
    SubscriptionItem,
)
from stripe_sandbox.state.base import previous_attributes
from stripe_sandbox.state.prorations import Prorations

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


class Subscriptions(Prorations):
    """Creates, updates and cancels subscriptions."""

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
        self._record_recurring_debits(inv)
        s.latest_invoice = inv.id
        self.emit("invoice.created", self.invoice_json(inv))
        paid = self.finalize(inv, attempt_payment=True)
        if not paid:
            if payment_behavior == "error_if_incomplete":
                raise card_declined()
            before = self.subscription_json(s)
            s.status = "incomplete"
            after = self.subscription_json(s)
            self.emit("customer.subscription.updated", after, previous_attributes(before, after))
        return s

    def seed_subscriptions(
        self, price: Price, quantities: Sequence[int], *, billing_mode: str = "flexible"
    ) -> list[Subscription]:
        """Many active subscriptions at once, for scale tests and benchmarks: per quantity a
        new customer and a subscription of one item of ``price``, its period starting now —
        the objects :meth:`create_subscription` makes, without a first invoice, payment or
        events (nothing is billed; a later prorated change credits nothing paid)."""
        end = period_end(self.now, price.interval, price.interval_count, 0)
        seeded = []
        for quantity in quantities:
            cid = self.new_id("cus")
            self.books.customers[cid] = Customer(
                id=cid,
                created=self.now,
                email=None,
                name=None,
                metadata={},
                invoice_prefix=f"SBX{self.books.counters['cus']:05d}",
                currency=price.currency,
            )
            s = Subscription(
                id=self.new_id("sub"),
                customer=cid,
                created=self.now,
                billing_cycle_anchor=self.now,
                billing_mode=billing_mode,
                billing_mode_updated_at=self.now if billing_mode == "flexible" else None,
                currency=price.currency,
                items=[],
                metadata={},
            )
            si = SubscriptionItem(
                id=self.new_id("si"),
                subscription=s.id,
                price=price.id,
                quantity=quantity,
                created=self.now,
                period_start=self.now,
                period_end=end,
                metadata={},
                billed_quantity=quantity,
                billed_price=price.id,
            )
            s.items = [si.id]
            self.books.items[si.id] = si
            self.books.subscriptions[s.id] = s
            seeded.append(s)
        return seeded

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
        diff = previous_attributes(before, after)
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
            self.emit("customer.subscription.updated", after, previous_attributes(before, after))
        return inv

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
        self.emit("customer.subscription.deleted", after, previous_attributes(before, after))
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
