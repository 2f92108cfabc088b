"""Helpers the sandbox tests import (fixtures stay in conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import stripe

API_BASE = "https://api.stripe.test"


def ts(*args: int) -> int:
    """Unix seconds for a UTC date/time: ``ts(2026, 3, 15)``."""
    return int(datetime(*args, tzinfo=UTC).timestamp())  # type: ignore[misc]


def make_plan(
    client: stripe.StripeClient,
    *,
    unit_amount: int,
    interval: str = "month",
    name: str = "Seat",
) -> str:
    """Create a product+price; returns the price id."""
    price = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": unit_amount,
            "recurring": {"interval": interval},  # type: ignore[typeddict-item]
            "product_data": {"name": name},
        }
    )
    return price.id


def make_subscription(
    client: stripe.StripeClient,
    price: str,
    quantity: int,
    *,
    billing_mode: str = "flexible",
) -> stripe.Subscription:
    cus = client.v1.customers.create(params={"email": "ops@example.test", "name": "Acme"})
    return client.v1.subscriptions.create(
        params={
            "customer": cus.id,
            "items": [{"price": price, "quantity": quantity}],
            "billing_mode": {"type": billing_mode},  # type: ignore[typeddict-item]
        }
    )
