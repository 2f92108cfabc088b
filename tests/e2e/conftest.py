"""End-to-end fixtures: the double starts on 2026-01-01; scenarios drive the API and sync."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import stripe
from flask.testing import FlaskClient

from stripe_sandbox.double import StripeDouble
from tests.e2e.scenario import Scenario, at
from tests.helpers import utc


@pytest.fixture
def double() -> StripeDouble:
    return StripeDouble(now=at(utc(2026, 1, 1)))


@pytest.fixture
def scenario(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    make_sync: Callable[..., Any],
) -> Callable[..., Scenario]:
    def make(**terms: Any) -> Scenario:
        return Scenario(client, auth, stripe_client, double, make_sync, **terms)

    return make
