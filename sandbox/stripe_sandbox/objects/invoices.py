"""Invoices, their lines, invoice items and invoice payments, and their JSON.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stripe_sandbox.calendar_math import fmt_money
from stripe_sandbox.objects.base import TIMES, Json, Tracked
from stripe_sandbox.objects.catalogue import Price
from stripe_sandbox.objects.customers import Customer


@dataclass
class InvoiceItem(Tracked):
    id: str
    customer: str
    currency: str
    amount: int
    description: str
    date: int
    period_start: int
    period_end: int
    quantity: int
    price: str | None
    proration: bool
    subscription: str | None
    subscription_item: str | None
    invoice: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    # A credit proration's debit, fixed when the credit is written: the debit's invoice
    # item while that was pending, else the invoice and line(s) that billed it.
    credited_invoice_item: str | None = None
    credited_lines: tuple[str, tuple[str, ...]] | None = None


@dataclass
class LineItem(Tracked):
    id: str
    invoice: str
    amount: int
    currency: str
    description: str
    period_start: int
    period_end: int
    quantity: int
    price: str | None
    product: str | None
    proration: bool
    subscription: str | None
    subscription_item: str | None
    invoice_item: str | None


@dataclass
class InvoicePayment(Tracked):
    id: str
    invoice: str
    amount: int
    currency: str
    created: int
    status: str
    payment_intent: str | None


@dataclass
class Invoice(Tracked):
    id: str
    customer: str
    currency: str
    created: int
    billing_reason: str
    subscription: str | None
    period_start: int
    period_end: int
    auto_advance: bool
    lines: list[LineItem] = field(default_factory=list)
    status: str = "draft"
    collection_method: str = "charge_automatically"
    number: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    starting_balance: int = 0
    ending_balance: int | None = None
    amount_due_final: int | None = None
    amount_paid: int = 0
    amount_overpaid: int = 0
    attempt_count: int = 0
    attempted: bool = False
    finalized_at: int | None = None
    paid_at: int | None = None
    voided_at: int | None = None
    automatically_finalizes_at: int | None = None
    next_payment_attempt: int | None = None
    paid_out_of_band: bool = False
    subscription_proration_date: int | None = None
    subscription_metadata: dict[str, str] | None = None
    payments: list[InvoicePayment] = field(default_factory=list)
    webhooks_delivered_at: int | None = None
    due_date: int | None = None  # send_invoice only; set while a draft

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)

    @property
    def amount_due(self) -> int:
        if self.amount_due_final is not None:
            return self.amount_due_final
        return max(0, self.total)

    @property
    def amount_remaining(self) -> int:
        if self.status in ("paid", "void", "uncollectible"):
            return 0
        return max(0, self.amount_due - self.amount_paid)


def _pricing(price: str | None, product: str | None, unit: int | None) -> Json | None:
    if price is None:
        return None
    return {
        "price_details": {"price": price, "product": product},
        "type": "price_details",
        "unit_amount_decimal": None if unit is None else str(unit),
    }


def invoice_item_json(ii: InvoiceItem, product: str | None, unit: int | None) -> Json:
    parent: Json | None = None
    if ii.subscription is not None:
        parent = {
            "subscription_details": {
                "subscription": ii.subscription,
                "subscription_item": ii.subscription_item,
            },
            "type": "subscription_details",
        }
    credited: Json | None = None
    if ii.credited_invoice_item is not None:
        credited = {
            "invoice_item": ii.credited_invoice_item,
            "invoice_line_item_details": None,
            "type": "invoice_item",
        }
    elif ii.credited_lines is not None:
        credited = {
            "invoice_item": None,
            "invoice_line_item_details": {
                "invoice": ii.credited_lines[0],
                "invoice_line_items": list(ii.credited_lines[1]),
            },
            "type": "invoice_line_items",
        }
    return {
        "id": ii.id,
        "object": "invoiceitem",
        "amount": ii.amount,
        "currency": ii.currency,
        "customer": ii.customer,
        "customer_account": None,
        "date": ii.date,
        "description": ii.description,
        "discountable": not ii.proration,
        "discounts": [],
        "invoice": ii.invoice,
        "livemode": False,
        "metadata": dict(ii.metadata),
        "net_amount": ii.amount,
        "parent": parent,
        "period": {"end": ii.period_end, "start": ii.period_start},
        "pricing": _pricing(ii.price, product, unit),
        "proration": ii.proration,
        "proration_details": (
            {"credited_items": credited, "discount_amounts": []} if ii.proration else None
        ),
        "quantity": ii.quantity,
        "quantity_decimal": str(ii.quantity),
        "tax_rates": [],
        "test_clock": None,
    }


def line_item_json(li: LineItem, unit: int | None, credited: Json | None = None) -> Json:
    """A line; ``credited`` is a credit proration's ``{invoice, invoice_line_items}``."""
    parent: Json
    details = {"credited_items": credited}
    if li.invoice_item is not None and li.subscription_item is None:
        parent = {
            "invoice_item_details": {
                "invoice_item": li.invoice_item,
                "proration": li.proration,
                "proration_details": details,
                "subscription": li.subscription,
            },
            "subscription_item_details": None,
            "type": "invoice_item_details",
        }
    else:
        parent = {
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": li.invoice_item,
                "proration": li.proration,
                "proration_details": details,
                "subscription": li.subscription,
                "subscription_item": li.subscription_item,
            },
            "type": "subscription_item_details",
        }
    return {
        "id": li.id,
        "object": "line_item",
        "amount": li.amount,
        "currency": li.currency,
        "description": li.description,
        "discount_amounts": [],
        "discountable": not li.proration,
        "discounts": [],
        "invoice": li.invoice,
        "livemode": False,
        "metadata": {},
        "parent": parent,
        "period": {"end": li.period_end, "start": li.period_start},
        "pretax_credit_amounts": [],
        "pricing": _pricing(li.price, li.product, unit),
        "quantity": li.quantity,
        "quantity_decimal": str(li.quantity),
        # 2025-03-31.basil deprecated it for parent.*_details.subscription, but the
        # 2026-10-28.endive models (stripe-python 16.1's InvoiceLineItem.subscription)
        # and Stripe's example line item still carry it: the same id, or null.
        "subscription": li.subscription,
        "subtotal": li.amount,
        "taxes": [],
    }


def invoice_payment_json(p: InvoicePayment) -> Json:
    return {
        "id": p.id,
        "object": "invoice_payment",
        "amount_paid": p.amount if p.status == "paid" else None,
        "amount_requested": p.amount,
        "created": p.created,
        "currency": p.currency,
        "invoice": p.invoice,
        "is_default": True,
        "livemode": False,
        "payment": {"payment_intent": p.payment_intent, "type": "payment_intent"},
        "status": p.status,
        "status_transitions": {
            "canceled_at": None,
            "paid_at": p.created if p.status == "paid" else None,
        },
    }


def invoice_json(inv: Invoice, cust: Customer, lines: list[Json], *, preview: bool = False) -> Json:
    parent: Json | None = None
    if inv.subscription is not None:
        parent = {
            "quote_details": None,
            "subscription_details": {
                "metadata": inv.subscription_metadata,
                "subscription": inv.subscription,
                "subscription_proration_date": inv.subscription_proration_date,
            },
            "type": "subscription_details",
        }
    total = inv.total
    return {
        "id": inv.id,
        "object": "invoice",
        "account_country": "US",
        "account_name": "Seatsync Sandbox",
        "account_tax_ids": None,
        "amount_due": inv.amount_due,
        "amount_overpaid": inv.amount_overpaid,
        "amount_paid": inv.amount_paid,
        "amount_remaining": inv.amount_remaining,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": inv.attempt_count,
        "attempted": inv.attempted,
        "auto_advance": inv.auto_advance,
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        "automatically_finalizes_at": inv.automatically_finalizes_at
        if inv.status == "draft"
        else None,
        "billing_reason": inv.billing_reason,
        "collection_method": inv.collection_method,
        "created": inv.created,
        "currency": inv.currency,
        "custom_fields": None,
        "customer": inv.customer,
        "customer_account": None,
        "customer_address": None,
        "customer_email": cust.email,
        "customer_name": cust.name,
        "customer_phone": None,
        "customer_shipping": None,
        "customer_tax_exempt": "none",
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "due_date": inv.due_date,
        "effective_at": inv.finalized_at,
        "ending_balance": inv.ending_balance,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": None
        if inv.status == "draft" or preview
        else f"https://invoice.stripe.test/{inv.id}",
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": {
            "object": "list",
            "data": lines,
            "has_more": False,
            "total_count": len(lines),
            "url": f"/v1/invoices/{inv.id}/lines",
        },
        "livemode": False,
        "metadata": dict(inv.metadata),
        "next_payment_attempt": inv.next_payment_attempt,
        "number": inv.number,
        "on_behalf_of": None,
        "parent": parent,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": inv.period_end,
        "period_start": inv.period_start,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": inv.starting_balance,
        "statement_descriptor": None,
        "status": inv.status,
        "status_transitions": {
            "finalized_at": inv.finalized_at,
            "marked_uncollectible_at": None,
            "paid_at": inv.paid_at,
            "voided_at": inv.voided_at,
        },
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "test_clock": None,
        "total": total,
        "total_discount_amounts": [],
        "total_excluding_tax": total,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": inv.webhooks_delivered_at,
    }


def line_description(quantity: int, product_name: str, price: Price) -> str:
    """Stripe's wording for a recurring line: ``8 x Seat (at $120.00 / year)`` (x is U+00D7)."""
    every = (
        price.interval
        if price.interval_count == 1
        else (f"every {price.interval_count} {price.interval}s")
    )
    money = fmt_money(price.unit_amount, price.currency)
    return f"{quantity} {TIMES} {product_name} (at {money} / {every})"
