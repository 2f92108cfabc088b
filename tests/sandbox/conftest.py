"""Fixtures: a StripeDouble reached through the real stripe-python client via ``responses``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses
import stripe

from stripe_sandbox.double import StripeDouble
from stripe_sandbox.responses_adapter import install
from tests.sandbox.helpers import API_BASE, ts


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
