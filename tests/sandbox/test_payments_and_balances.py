"""What the double offers for payments and credit: paying an invoice out of band, customer
balance transactions (create, list, metadata), the expandable cash balance, and updating an
invoice the way Stripe allows (`auto_advance` on open invoices; `due_date` only on
`send_invoice` drafts)."""

from __future__ import annotations

import json

import pytest
import stripe

from stripe_sandbox.double import StripeDouble
from tests.sandbox.helpers import make_plan, make_subscription, ts


def _open_invoice(client: stripe.StripeClient, double: StripeDouble) -> stripe.Invoice:
    double.fail_next_payments(1)  # the card is declined: the first invoice stays open
    sub = make_subscription(client, make_plan(client, unit_amount=36500, interval="year"), 10)
    invoice = client.v1.invoices.retrieve(str(sub.latest_invoice))
    assert invoice.status == "open" and invoice.amount_remaining == 365000
    return invoice


def test_invoice_paid_out_of_band_in_full_and_not_twice(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    invoice = _open_invoice(client, double)
    paid = client.v1.invoices.pay(invoice.id or "", params={"paid_out_of_band": True})
    assert (paid.status, paid.amount_paid, paid.amount_remaining) == ("paid", 365000, 0)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.invoices.pay(invoice.id or "", params={"paid_out_of_band": True})
    assert refused.value.code == "invoice_already_paid"


def test_balance_transactions_credit_and_debit_the_customer_and_are_listed(
    client: stripe.StripeClient,
) -> None:
    customer = client.v1.customers.create(params={"name": "Acme"}).id
    credit = client.v1.customers.balance_transactions.create(
        customer,
        params={
            "amount": -5000,
            "currency": "usd",
            "description": "paid beyond the invoice",
            "metadata": {"seatsync_payment": "p-1"},
        },
        options={"idempotency_key": "credit-1"},
    )
    again = client.v1.customers.balance_transactions.create(
        customer,
        params={
            "amount": -5000,
            "currency": "usd",
            "description": "paid beyond the invoice",
            "metadata": {"seatsync_payment": "p-1"},
        },
        options={"idempotency_key": "credit-1"},
    )
    assert again.id == credit.id  # replayed: credited once
    client.v1.customers.balance_transactions.create(
        customer, params={"amount": 2000, "currency": "usd", "description": "refund"}
    )
    assert client.v1.customers.retrieve(customer).balance == -3000
    listed = client.v1.customers.balance_transactions.list(customer, params={"limit": 100})
    assert [(t.amount, t.type, t.ending_balance) for t in listed.data] == [
        (2000, "adjustment", -3000),
        (-5000, "adjustment", -5000),
    ]
    assert listed.data[1].metadata["seatsync_payment"] == "p-1"


def test_cash_balance_is_shown_only_when_expanded(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    customer = client.v1.customers.create(params={"name": "Acme"}).id
    plain = client.v1.customers.retrieve(customer, params={"expand": ["cash_balance"]})
    assert plain.cash_balance is not None and plain.cash_balance.available is None
    double.fund_cash_balance(customer, 12345, "eur")
    expanded = client.v1.customers.retrieve(customer, params={"expand": ["cash_balance"]})
    assert expanded.cash_balance is not None
    assert expanded.cash_balance.available is not None
    assert expanded.cash_balance.available.to_dict() == {"eur": 12345}
    assert "cash_balance" not in client.v1.customers.retrieve(customer)
    [event] = [
        json.loads(body)
        for body, _ in double.take_webhook_deliveries()
        if json.loads(body)["type"] == "customer_cash_balance_transaction.created"
    ]
    assert event["data"]["object"]["customer"] == customer


def test_open_invoice_collection_can_be_paused_and_resumed_but_its_due_date_never_moves(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    invoice = _open_invoice(client, double)
    paused = client.v1.invoices.update(invoice.id or "", params={"auto_advance": False})
    assert paused.auto_advance is False and paused.next_payment_attempt is None
    resumed = client.v1.invoices.update(invoice.id or "", params={"auto_advance": True})
    assert resumed.auto_advance is True
    with pytest.raises(stripe.InvalidRequestError) as not_send_invoice:
        client.v1.invoices.update(invoice.id or "", params={"due_date": ts(2026, 3, 1)})
    assert not_send_invoice.value.param == "due_date"
    updated = [
        json.loads(body)
        for body, _ in double.take_webhook_deliveries()
        if json.loads(body)["type"] == "invoice.updated"
    ]
    assert [e["data"]["previous_attributes"]["auto_advance"] for e in updated] == [True, False]


def test_due_date_moves_only_on_a_send_invoice_draft(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    customer = client.v1.customers.create(params={"name": "Acme"}).id
    draft = client.v1.invoices.create(
        params={"customer": customer, "collection_method": "send_invoice", "auto_advance": False}
    )
    moved = client.v1.invoices.update(draft.id or "", params={"due_date": ts(2026, 2, 1)})
    assert moved.due_date == ts(2026, 2, 1)
    by_days = client.v1.invoices.update(draft.id or "", params={"days_until_due": 45})
    assert by_days.due_date == draft.created + 45 * 86400
    client.v1.invoices.finalize_invoice(draft.id or "")
    with pytest.raises(stripe.InvalidRequestError) as finalized:
        client.v1.invoices.update(draft.id or "", params={"due_date": ts(2026, 3, 1)})
    assert finalized.value.code == "invoice_not_editable"


def test_a_paid_invoice_takes_no_auto_advance(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    invoice = _open_invoice(client, double)
    client.v1.invoices.pay(invoice.id or "", params={"paid_out_of_band": True})
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.invoices.update(invoice.id or "", params={"auto_advance": False})
    assert refused.value.param == "auto_advance"
