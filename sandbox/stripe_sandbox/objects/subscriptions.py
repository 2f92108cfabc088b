"""Subscriptions and their items, and their JSON.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
"""

from __future__ import annotations

from dataclasses import dataclass

from stripe_sandbox.objects.base import Json, Tracked
from stripe_sandbox.objects.catalogue import Price, plan_json, price_json


@dataclass(frozen=True)
class Debit:
    """One charge for a stretch ``[start, end)`` of an item's current period: the period's
    recurring line, or a proration's debit.  Flexible mode credits each one it reverses
    separately (``proration_details.credited_items``); ``covered_until`` is where the
    credits already written against it begin (``end`` while none)."""

    quantity: int
    price: str
    amount: int
    start: int
    end: int
    covered_until: int
    invoice_item: str | None = None  # a proration debit: its invoice item
    invoice: str | None = None  # a recurring line: its invoice and line
    line: str | None = None


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
    # The current period's debits, oldest first (replaced, never mutated in place).
    debits: tuple[Debit, ...] = ()


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
