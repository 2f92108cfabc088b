"""The sandbox server's controls for money arriving outside the API: a payment received
for an open invoice (which may overpay) and funds landing in a customer's cash balance."""

from __future__ import annotations

from stripe_sandbox.double import StripeDouble
from stripe_sandbox.server import create_sandbox_app
from tests.sandbox.helpers import ts

AUTH = {"Authorization": "Bearer sk_test_123"}


def test_received_payment_overpays_an_open_invoice_and_cash_funds_the_balance() -> None:
    double = StripeDouble(now=ts(2026, 1, 1))
    client = create_sandbox_app(double, None).test_client()
    customer = client.post("/v1/customers", data={"name": "Acme"}, headers=AUTH).json
    assert customer is not None
    invoice = client.post(
        "/v1/invoices", data={"customer": customer["id"], "auto_advance": "false"}, headers=AUTH
    ).json
    assert invoice is not None
    client.post(
        "/v1/invoiceitems",
        data={
            "customer": customer["id"],
            "invoice": invoice["id"],
            "amount": "1000",
            "currency": "usd",
        },
        headers=AUTH,
    )
    client.post(f"/v1/invoices/{invoice['id']}/finalize", headers=AUTH)

    paid = client.post(f"/_sandbox/invoices/{invoice['id']}/payments", json={"amount": 1500})
    assert paid.status_code == 200, paid.json
    assert paid.json is not None
    assert (paid.json["status"], paid.json["amount_overpaid"]) == ("paid", 500)
    again = client.post(f"/_sandbox/invoices/{invoice['id']}/payments", json={"amount": 1})
    assert again.status_code == 400  # paid already
    assert client.post(f"/_sandbox/invoices/{invoice['id']}/payments", json={}).status_code == 400

    funded = client.post(f"/_sandbox/customers/{customer['id']}/cash_balance", json={"amount": 700})
    assert funded.status_code == 200
    shown = client.get(f"/v1/customers/{customer['id']}?expand[]=cash_balance", headers=AUTH).json
    assert shown is not None
    assert shown["balance"] == -500
    assert shown["cash_balance"]["available"] == {"usd": 700}
    unknown = client.post("/_sandbox/customers/cus_nope/cash_balance", json={"amount": 1})
    assert unknown.status_code == 404
