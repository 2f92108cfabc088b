"""Fixtures: a StripeDouble reached through the real stripe-python client via ``responses``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import responses
import stripe

from stripe_sandbox.double import StripeDouble
from stripe_sandbox.responses_adapter import install

API_BASE = "https://api.stripe.test"


def ts(*args: int) -> int:
    """Unix seconds for a UTC date/time: ``ts(2026, 3, 15)``."""
    return int(datetime(*args, tzinfo=UTC).timestamp())  # type: ignore[misc]


@pytest.fixture
def double() -> StripeDouble:
    return StripeDouble(now=ts(2026, 1, 1))


@pytest.fixture
def client(double: StripeDouble) -> Iterator[stripe.StripeClient]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        install(rsps, double, API_BASE)
        yield stripe.StripeClient(
            "sk_test_123",
            http_client=stripe.RequestsClient(),
            base_addresses={"api": API_BASE},
        )


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
