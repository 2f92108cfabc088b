"""In-memory Stripe objects of the sandbox double and their JSON serialisation.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
The dataclasses hold only what the double's billing engine needs; the
``*_json`` functions render them in the shapes of API version
``2026-10-28.endive`` (periods on subscription items, ``invoice.parent``,
line-item ``parent.*_details.proration``, no ``invoice.charge``/``paid``), so the
connector parses exactly what it will get from Stripe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stripe_sandbox.calendar_math import fmt_money

Json = dict[str, Any]

_JOURNALS: list[dict[int, tuple[Any, dict[str, Any]]]] = []
"""Open undo journals (innermost last); see :class:`Tracked`."""


class Tracked:
    """Records an object's pre-image in every open undo journal before its first change.

    This makes rolling back a failed request cost what the request touched,
    not the size of the whole state.  Lists and dicts held by an object must be
    replaced, not mutated in place, for the journal to see the change.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        for journal in _JOURNALS:
            if id(self) not in journal:
                journal[id(self)] = (self, dict(self.__dict__))
        object.__setattr__(self, name, value)


def open_journal() -> dict[int, tuple[Any, dict[str, Any]]]:
    journal: dict[int, tuple[Any, dict[str, Any]]] = {}
    _JOURNALS.append(journal)
    return journal


def close_journal(journal: dict[int, tuple[Any, dict[str, Any]]], *, undo: bool) -> None:
    """Stop recording; with ``undo`` put every recorded object back as it was."""
    for i, open_one in enumerate(_JOURNALS):
        if open_one is journal:  # by identity: two journals may be equal
            del _JOURNALS[i]
            break
    if undo:
        for obj, before in journal.values():
            obj.__dict__.clear()
            obj.__dict__.update(before)


TIMES = "\u00d7"
"""The multiplication sign (U+00D7) Stripe uses in line descriptions ("8 x Seat")."""


@dataclass
class Customer(Tracked):
    id: str
    created: int
    email: str | None
    name: str | None
    metadata: dict[str, str]
    invoice_prefix: str
    test_clock: str | None = None
    balance: int = 0
    currency: str | None = None
    next_invoice_sequence: int = 1
    description: str | None = None


@dataclass
class BalanceTransaction(Tracked):
    id: str
    customer: str
    amount: int
    currency: str
    created: int
    ending_balance: int
    type: str
    description: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    invoice: str | None = None


@dataclass
class Product(Tracked):
    id: str
    name: str
    created: int
    metadata: dict[str, str]
    active: bool = True
    default_price: str | None = None


@dataclass
class Price(Tracked):
    id: str
    product: str
    currency: str
    unit_amount: int
    interval: str
    interval_count: int
    created: int
    metadata: dict[str, str]
    active: bool = True
    nickname: str | None = None
    lookup_key: str | None = None


@dataclass
class SubscriptionItem(Tracked):
    id: str
    subscription: str
    price: str
    quantity: int
    created: int
    period_start: int
    period_end: int
    metadata: dict[str, str]
    # What the current period has actually been billed for (flexible mode's
    # proration credits use it; classic mode ignores it).
    billed_quantity: int
    billed_price: str


@dataclass
class Subscription(Tracked):
    id: str
    customer: str
    created: int
    billing_cycle_anchor: int
    billing_mode: str
    billing_mode_updated_at: int | None
    currency: str
    items: list[str]
    metadata: dict[str, str]
    status: str = "active"
    periods_elapsed: int = 0
    cancel_at_period_end: bool = False
    canceled_at: int | None = None
    ended_at: int | None = None
    latest_invoice: str | None = None
    test_clock: str | None = None


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
    credited_invoice_item: str | None = None


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


@dataclass
class Event:
    id: str
    type: str
    created: int
    data_object: Json
    previous_attributes: Json | None
    request_id: str | None
    idempotency_key: str | None
    delivered: bool = False


# --- serialisation ----------------------------------------------------------


def customer_json(c: Customer) -> Json:
    return {
        "id": c.id,
        "object": "customer",
        "address": None,
        "balance": c.balance,
        "created": c.created,
        "currency": c.currency,
        "default_source": None,
        "delinquent": False,
        "description": c.description,
        "discount": None,
        "email": c.email,
        "invoice_prefix": c.invoice_prefix,
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": dict(c.metadata),
        "name": c.name,
        "next_invoice_sequence": c.next_invoice_sequence,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": c.test_clock,
    }


def balance_transaction_json(t: BalanceTransaction) -> Json:
    return {
        "id": t.id,
        "object": "customer_balance_transaction",
        "amount": t.amount,
        "checkout_session": None,
        "created": t.created,
        "credit_note": None,
        "currency": t.currency,
        "customer": t.customer,
        "customer_account": None,
        "description": t.description,
        "ending_balance": t.ending_balance,
        "invoice": t.invoice,
        "livemode": False,
        "metadata": dict(t.metadata),
        "type": t.type,
    }


def product_json(p: Product) -> Json:
    return {
        "id": p.id,
        "object": "product",
        "active": p.active,
        "created": p.created,
        "default_price": p.default_price,
        "description": None,
        "images": [],
        "livemode": False,
        "marketing_features": [],
        "metadata": dict(p.metadata),
        "name": p.name,
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": "service",
        "unit_label": None,
        "updated": p.created,
        "url": None,
    }


def price_json(p: Price) -> Json:
    return {
        "id": p.id,
        "object": "price",
        "active": p.active,
        "billing_scheme": "per_unit",
        "created": p.created,
        "currency": p.currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": p.lookup_key,
        "metadata": dict(p.metadata),
        "nickname": p.nickname,
        "product": p.product,
        "recurring": {
            "interval": p.interval,
            "interval_count": p.interval_count,
            "meter": None,
            "trial_period_days": None,
            "usage_type": "licensed",
        },
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring",
        "unit_amount": p.unit_amount,
        "unit_amount_decimal": str(p.unit_amount),
    }


def plan_json(p: Price) -> Json:
    """The legacy ``plan`` view Stripe still embeds in subscription items."""
    return {
        "id": p.id,
        "object": "plan",
        "active": p.active,
        "amount": p.unit_amount,
        "amount_decimal": str(p.unit_amount),
        "billing_scheme": "per_unit",
        "created": p.created,
        "currency": p.currency,
        "interval": p.interval,
        "interval_count": p.interval_count,
        "livemode": False,
        "metadata": dict(p.metadata),
        "meter": None,
        "nickname": p.nickname,
        "product": p.product,
        "tiers_mode": None,
        "transform_usage": None,
        "trial_period_days": None,
        "usage_type": "licensed",
    }


def subscription_item_json(si: SubscriptionItem, price: Price) -> Json:
    return {
        "id": si.id,
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": si.created,
        "current_period_end": si.period_end,
        "current_period_start": si.period_start,
        "discounts": [],
        "metadata": dict(si.metadata),
        "plan": plan_json(price),
        "price": price_json(price),
        "quantity": si.quantity,
        "subscription": si.subscription,
        "tax_rates": [],
    }


def subscription_json(s: Subscription, items: list[Json]) -> Json:
    return {
        "id": s.id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": s.billing_cycle_anchor,
        "billing_cycle_anchor_config": None,
        "billing_mode": {
            "flexible": {"proration_discounts": "included"}
            if s.billing_mode == "flexible"
            else None,
            "type": s.billing_mode,
            "updated_at": s.billing_mode_updated_at,
        },
        "billing_thresholds": None,
        "cancel_at": None,
        "cancel_at_period_end": s.cancel_at_period_end,
        "canceled_at": s.canceled_at,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically",
        "created": s.created,
        "currency": s.currency,
        "customer": s.customer,
        "customer_account": None,
        "days_until_due": None,
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "ended_at": s.ended_at,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": {
            "object": "list",
            "data": items,
            "has_more": False,
            "total_count": len(items),
            "url": f"/v1/subscription_items?subscription={s.id}",
        },
        "latest_invoice": s.latest_invoice,
        "livemode": False,
        "metadata": dict(s.metadata),
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": s.created,
        "status": s.status,
        "test_clock": s.test_clock,
        "transfer_data": None,
        "trial_end": None,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": None,
    }


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
            "credited_items": {
                "invoice_item": ii.credited_invoice_item,
                "invoice_line_item_details": None,
                "type": "invoice_item",
            }
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
        "proration_details": {"discount_amounts": []} if credited is None else credited,
        "quantity": ii.quantity,
        "quantity_decimal": str(ii.quantity),
        "tax_rates": [],
        "test_clock": None,
    }


def line_item_json(li: LineItem, unit: int | None) -> Json:
    parent: Json
    if li.invoice_item is not None and li.subscription_item is None:
        parent = {
            "invoice_item_details": {
                "invoice_item": li.invoice_item,
                "proration": li.proration,
                "proration_details": {"credited_items": None},
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
                "proration_details": {"credited_items": None},
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
        "due_date": None,
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
