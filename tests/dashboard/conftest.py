"""Dashboard fixtures: a subscription with a dead letter (Stripe refused its charge), keys of
each ops scope, and signing in through the form as a browser would (CSRF token included)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import stripe
from flask.testing import FlaskClient

from connector.services.apikeys import Scope
from stripe_sandbox.double import StripeDouble
from tests.e2e.scenario import Scenario, at
from tests.helpers import buying, utc

FEBRUARY_10 = at(utc(2026, 2, 10, 9, 0))
MARCH_15 = at(utc(2026, 3, 15, 10, 30))
# 365.00 a seat a year, period 2026-01-01 .. 2027-01-01: one seat from 15 March.
ONE_SEAT_FROM_MARCH_15 = 36500 * 292 // 365  # 29200
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def double() -> StripeDouble:
    return StripeDouble(now=at(utc(2026, 1, 1)))


@dataclass
class DeadLetterCase:
    scenario: Scenario
    outbox_id: int


def make_dead_letter(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    make_sync: Callable[..., Any],
) -> DeadLetterCase:
    """10 licences (floor 5) from 1 January, 2 bought and synced on 10 February, 8 holders
    assigned; on 15 March 1 more bought whose update Stripe refuses (400): 13 licences, 12 in
    Stripe, one dead letter."""
    s = Scenario(client, auth, stripe_client, double, make_sync, quantity=10, floor=5)
    double.advance_to(FEBRUARY_10)
    s.post("licenses", 2)
    s.drain()
    for number in range(8):
        put = client.put(
            f"/v1/subscriptions/{s.id}/seats/users/holders/user-{number}", json={}, headers=auth
        )
        assert put.status_code in (200, 201), put.json
    double.advance_to(MARCH_15)
    s.post("licenses", 1)
    double.inject_fault(
        "POST",
        rf"/v1/subscriptions/{s.stripe_sub.id}",
        status=400,
        error_code="parameter_invalid_integer",
    )
    assert s.sync.drain().records_dead == 1
    dead = (client.get("/v1/ops/sync", headers=auth).json or {})["dead"]
    assert len(dead) == 1
    return DeadLetterCase(s, dead[0]["id"])


@pytest.fixture
def dead_letter(
    client: FlaskClient,
    auth: dict[str, str],
    stripe_client: stripe.StripeClient,
    double: StripeDouble,
    make_sync: Callable[..., Any],
) -> DeadLetterCase:
    return make_dead_letter(client, auth, stripe_client, double, make_sync)


def csrf_token(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def sign_in(client: FlaskClient, secret: str) -> Any:
    page = client.get("/ops/sign-in")
    token = csrf_token(page.get_data(as_text=True))
    return client.post("/ops/sign-in", data={"api_key": secret, "csrf_token": token})


@pytest.fixture
def ops_key(make_key: Callable[..., str]) -> str:
    return make_key(Scope.OPS_WRITE, Scope.BILLING_READ, name="ops-alice")


@pytest.fixture
def read_key(make_key: Callable[..., str]) -> str:
    return make_key(Scope.BILLING_READ, name="finance-bob")


__all__ = ["ONE_SEAT_FROM_MARCH_15", "DeadLetterCase", "buying", "csrf_token", "sign_in"]
