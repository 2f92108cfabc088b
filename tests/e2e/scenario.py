"""A subscription driven through the seat API and synced into the Stripe double."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import stripe
from flask.testing import FlaskClient

from stripe_sandbox.double import StripeDouble
from tests import stripe_setup
from tests.helpers import buying


def at(moment: datetime) -> int:
    return int(moment.timestamp())


class Scenario:
    """One subscription driven through the API and synced into the Stripe double."""

    def __init__(
        self,
        client: FlaskClient,
        auth: dict[str, str],
        stripe_client: stripe.StripeClient,
        double: StripeDouble,
        make_sync: Callable[..., Any],
        *,
        unit_amount: int = 36500,
        interval: str = "year",
        quantity: int = 10,
        floor: int = 0,
        billing_mode: str = "flexible",
        licences: int | None = None,
        sync: Any = None,
    ) -> None:
        self.client, self.auth, self.stripe, self.double = client, auth, stripe_client, double
        self.sync = sync or make_sync()
        price = stripe_setup.price(stripe_client, unit_amount, interval=interval)
        self.stripe_sub = stripe_setup.subscription(
            stripe_client, [(price, quantity)], billing_mode=billing_mode
        )
        contract: dict[str, Any] = {"name": "users", "stripe_price_id": price, "floor": floor}
        if licences is not None:
            contract["licences"] = licences
        response = client.post(
            "/v1/subscriptions",
            json={"stripe_subscription_id": self.stripe_sub.id, "seat_types": [contract]},
            headers=auth,
        )
        assert response.status_code == 201, response.json
        self.id = (response.json or {})["id"]
        self.initial_invoices = {i.id for i in self.invoices()}

    def post(self, path: str, quantity: int) -> dict[str, Any]:
        charging = path == "licenses"  # buying can charge money: it needs a key
        response = self.client.post(
            f"/v1/subscriptions/{self.id}/seats/users/{path}",
            json={"quantity": quantity},
            headers=buying(self.auth) if charging else self.auth,
        )
        assert response.status_code == 200, response.json
        body: dict[str, Any] = response.json  # type: ignore[assignment]
        return body

    def drain(self) -> None:
        report = self.sync.drain()
        assert report.records_dead == 0 and not report.errors, report

    def invoices(self) -> list[Any]:
        return list(
            self.stripe.v1.invoices.list({"subscription": self.stripe_sub.id, "limit": 100}).data
        )

    def new_invoices(self) -> list[Any]:
        return [i for i in self.invoices() if i.id not in self.initial_invoices]

    def pending_items(self) -> list[Any]:
        customer = self.stripe_sub.customer
        return list(self.stripe.v1.invoice_items.list({"customer": customer, "pending": True}).data)

    def item_quantity(self) -> int:
        sub = self.stripe.v1.subscriptions.retrieve(self.stripe_sub.id)
        return int(sub["items"].data[0].quantity or 0)

    def updates_sent(self) -> list[Any]:
        return self.double.requests_to("POST", rf"/v1/subscriptions/{self.stripe_sub.id}")
