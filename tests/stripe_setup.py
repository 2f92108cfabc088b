"""Building Stripe objects in the double for a test, through the real SDK."""

from __future__ import annotations

from typing import Any

import stripe


def price(
    client: stripe.StripeClient, unit_amount: int, interval: str = "year", name: str = "Seat"
) -> str:
    created = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": unit_amount,
            "recurring": {"interval": interval},  # type: ignore[typeddict-item]
            "product_data": {"name": name},
        }
    )
    return created.id


def customer(client: stripe.StripeClient) -> str:
    return client.v1.customers.create(params={"email": "billing@acme.test", "name": "Acme"}).id


def subscription(
    client: stripe.StripeClient,
    items: list[tuple[str, int]],
    billing_mode: str = "flexible",
    customer_id: str | None = None,
) -> Any:
    return client.v1.subscriptions.create(
        params={
            "customer": customer_id or customer(client),
            "items": [{"price": p, "quantity": q} for p, q in items],
            "billing_mode": {"type": billing_mode},  # type: ignore[typeddict-item]
        }
    )
