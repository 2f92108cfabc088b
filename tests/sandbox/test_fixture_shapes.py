"""The double's objects have Stripe's shape, checked against Stripe's own example objects.

``stripe_fixtures.json`` beside this file holds Stripe's example objects (MIT licence,
``STRIPE_FIXTURES_LICENSE``).  For every kind the double produces:

- every key that both the double's object and Stripe's example have holds the same JSON
  type, recursively (``null`` on either side only says the field is nullable, so it is
  not compared; of arrays the first elements are compared);
- the top-level keys are the same, except for the differences listed below, each with
  its reason (an entry that no longer applies fails too).

The objects come from the double's raw HTTP surface, not through stripe-python, so the
SDK cannot paper over a difference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from stripe_sandbox.double import StripeDouble
from tests.sandbox.helpers import ts

Json = dict[str, Any]

FIXTURES: dict[str, Json] = json.loads(
    (Path(__file__).parent / "stripe_fixtures.json").read_text(encoding="utf-8")
)

DOUBLE_ONLY: dict[str, set[str]] = {
    # Both are in stripe-python's current models; the example objects predate them.
    "event": {"context"},
    "invoiceitem": {"proration_details"},
}
FIXTURE_ONLY: dict[str, set[str]] = {
    # Newer subscription features the double does not model.
    "subscription": {"billing_schedules", "managed_payments"},
    # Gone from the invoice since API 2025-03-31.basil (parent.subscription_details now;
    # stripe-python 16.1's Invoice has no such field); the example still lists it as null.
    # (The line item's top-level `subscription`, deprecated by the same version, is still
    # in stripe-python 16.1's InvoiceLineItem: the double renders it too.)
    "invoice": {"subscription"},
}

KINDS = [
    "customer",
    "customer_balance_transaction",
    "cash_balance",
    "customer_cash_balance_transaction",
    "product",
    "price",
    "subscription",
    "subscription_item",
    "invoice",
    "line_item",
    "invoiceitem",
    "invoice_payment",
    "event",
]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise TypeError(f"not JSON: {value!r}")


def type_mismatches(ours: Any, stripes: Any, path: str) -> tuple[list[str], int]:
    """Differences in JSON type on shared keys, and how many non-null values were compared."""
    ours_type, stripes_type = _json_type(ours), _json_type(stripes)
    if "null" in (ours_type, stripes_type):
        return [], 0
    if ours_type != stripes_type:
        return [f"{path}: the double has {ours_type}, Stripe {stripes_type}"], 1
    found: list[str] = []
    compared = 1
    children: list[tuple[Any, Any, str]] = []
    if ours_type == "object":
        children = [(ours[k], stripes[k], f"{path}.{k}") for k in sorted(set(ours) & set(stripes))]
    elif ours_type == "array" and ours and stripes:
        children = [(ours[0], stripes[0], f"{path}[0]")]
    for a, b, where in children:
        more, count = type_mismatches(a, b, where)
        found += more
        compared += count
    return found, compared


@pytest.fixture(scope="module")
def objects() -> dict[str, Json]:
    """One object of each kind, as the double's HTTP surface renders it."""
    double = StripeDouble(now=ts(2026, 1, 1))

    def call(method: str, path: str, **params: Any) -> Json:
        form = urlencode(list(params.items()))
        body, query = (form, None) if method == "POST" else (None, form)
        status, payload = double.handle(
            method, path, query, body, {"Authorization": "Bearer sk_test_123"}
        )
        assert status == 200, payload
        return payload

    customer = call(
        "POST", "/v1/customers", email="billing@acme.test", name="Acme", **{"metadata[k]": "v"}
    )
    price = call(
        "POST",
        "/v1/prices",
        currency="eur",
        unit_amount="12000",
        nickname="per seat",
        lookup_key="seat-yearly",
        **{"recurring[interval]": "year", "product_data[name]": "Seat"},
    )
    subscription = call(
        "POST",
        "/v1/subscriptions",
        customer=customer["id"],
        **{"items[0][price]": price["id"], "items[0][quantity]": "8", "metadata[k]": "v"},
    )
    item_id = subscription["items"]["data"][0]["id"]
    double.advance_to(ts(2026, 3, 15))
    call("POST", f"/v1/subscription_items/{item_id}", quantity="10")  # two prorations
    invoice = call("GET", f"/v1/invoices/{subscription['latest_invoice']}")
    transaction = call(
        "POST",
        f"/v1/customers/{customer['id']}/balance_transactions",
        amount="-500",
        currency="eur",
        description="goodwill",
    )
    funded = call(
        "POST",
        f"/v1/test_helpers/customers/{customer['id']}/fund_cash_balance",
        amount="5000",
        currency="eur",
        reference="Payment for Invoice SBX-1",
    )
    invoice_items = call("GET", "/v1/invoiceitems", customer=customer["id"])["data"]
    payments = call("GET", "/v1/invoice_payments", invoice=invoice["id"])["data"]
    events = call("GET", "/v1/events", type="customer.subscription.updated")["data"]
    assert invoice_items and payments and events
    return {
        "customer": call("GET", f"/v1/customers/{customer['id']}"),
        "customer_balance_transaction": transaction,
        "cash_balance": call("GET", f"/v1/customers/{customer['id']}/cash_balance"),
        "customer_cash_balance_transaction": funded,
        "product": call("GET", f"/v1/products/{price['product']}"),
        "price": price,
        "subscription": call("GET", f"/v1/subscriptions/{subscription['id']}"),
        "subscription_item": call("GET", f"/v1/subscription_items/{item_id}"),
        "invoice": invoice,
        "line_item": invoice["lines"]["data"][0],
        "invoiceitem": invoice_items[0],
        "invoice_payment": payments[0],
        "event": events[0],
    }


@pytest.mark.parametrize("kind", KINDS)
def test_shared_keys_have_stripes_json_types(objects: dict[str, Json], kind: str) -> None:
    ours, stripes = objects[kind], FIXTURES[kind]
    assert ours["object"] == stripes["object"] == kind
    if kind == "event":
        # Stripe's example event carries a plan: compare the envelope here, and the
        # event's object with Stripe's example of the same kind.
        inner = ours["data"]["object"]
        found, compared = type_mismatches(inner, FIXTURES[inner["object"]], "event.data.object")
        assert found == []
        assert compared > 10
        ours = {**ours, "data": {k: v for k, v in ours["data"].items() if k != "object"}}
    found, compared = type_mismatches(ours, stripes, kind)
    assert found == []
    assert compared >= 8, "too little compared for the check to mean anything"


@pytest.mark.parametrize("kind", KINDS)
def test_top_level_keys_are_stripes(objects: dict[str, Json], kind: str) -> None:
    ours, stripes = set(objects[kind]), set(FIXTURES[kind])
    assert ours - stripes == DOUBLE_ONLY.get(kind, set())
    assert stripes - ours == FIXTURE_ONLY.get(kind, set())


def test_the_type_check_can_fail(objects: dict[str, Json]) -> None:
    changed = {
        **objects["subscription"],
        "created": "2026-01-01",
        "items": {**objects["subscription"]["items"], "data": [{"quantity": "8"}]},
    }
    found, _ = type_mismatches(changed, FIXTURES["subscription"], "subscription")
    assert found == [
        "subscription.created: the double has string, Stripe integer",
        "subscription.items.data[0].quantity: the double has string, Stripe integer",
    ]
